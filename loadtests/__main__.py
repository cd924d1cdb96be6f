"""`python -m loadtests ...`: the `loadtest` commands without the rest of erpops (same exit codes)."""

from __future__ import annotations

import sys

import click

from loadtests.cli import loadtest


def main() -> None:
    try:
        loadtest.main(prog_name="erpops loadtest", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)


if __name__ == "__main__":
    main()
