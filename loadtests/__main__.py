"""`python -m loadtests ...`: the `loadtest` commands without the rest of erpops (same exit codes)."""

from __future__ import annotations

from erpops.cli import run
from loadtests.cli import loadtest


def main() -> None:
    run(loadtest, prog_name="erpops loadtest")


if __name__ == "__main__":
    main()
