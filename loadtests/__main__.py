"""`python -m loadtests ...`: the `loadtest` commands without the rest of erpops (same exit codes)."""

from __future__ import annotations

import sys
import traceback

import click

from erpops.errors import EXIT_INTERNAL
from loadtests.cli import loadtest


def main() -> None:
    try:
        loadtest.main(prog_name="erpops loadtest", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except Exception:  # not one of ours: never let it pass for a regression (1) or an unreachable target (3)
        traceback.print_exc()
        print(f"internal error in erpops loadtest (exit {EXIT_INTERNAL}): please report it with the traceback above",
              file=sys.stderr)
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
