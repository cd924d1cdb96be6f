"""One exception hierarchy for erpops, each class with a stable CLI exit code.

Exit codes follow a fixed table so scripts and CI can tell failures apart:
  1  `erpops rehearse`, `erpops loadtest gate` and `erpops health` (WARN): the run completed and
     its verdict is a failure
  2  bad input: spec, flags or values (nothing was changed)
  3  a required service or tool is missing or unreachable, or rejected our credentials
  4  an operation failed half-way and was rolled back
  5  integrity: stored data does not match its checksums, or a source is corrupt
  6  refused by a pre-flight check: nothing was changed (target exists, disk too small, versions)
 7  inconclusive: the run completed but could not see what it had to judge (`erpops loadtest gate`:
    too few samples to catch the slow-down the spec requires); neither a pass nor a failure
 70 unexpected internal error (a bug in erpops; a traceback is printed): never 1 (a verdict) or 3
 130 interrupted (Ctrl-C); 143 terminated (SIGTERM): what the command started was cleaned up
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # a verdict of failure (and ErpopsError's own code)
EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE


class ErpopsError(Exception):
    """Base class: every error erpops raises on purpose."""

    exit_code = EXIT_FAILED


class SpecError(ErpopsError):
    """The environment spec (or a CLI flag derived from it) is invalid.

    Carries every problem at once, each as (key path, message with the fix).
    """

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        where = f" in {self.source}" if self.source else ""
        count = len(self.problems)
        head = f"invalid erpops spec{where}: {count} problem{'s' if count != 1 else ''}"
        lines = [head] + [f"  - {path}: {message}" for path, message in self.problems]
        return "\n".join(lines)


class UsageError(ErpopsError):
    """A command was called with arguments that cannot work."""

    exit_code = 2


class ServiceError(ErpopsError):
    """A service (PostgreSQL, Redis, S3) or an external tool is missing or failed to start."""

    exit_code = 3


class OperationFailed(ErpopsError):
    """An operation failed half-way; what it had built was rolled back."""

    exit_code = 4


class CredentialsError(ServiceError):
    """A service rejected the credentials it was given (or none were found). Never carries them."""


class BackupError(OperationFailed):
    """A backup, restore or prune step failed; what it had written was removed (the message says what)."""


class IntegrityError(ErpopsError):
    """Stored bytes do not match the recorded size/sha256, or a source file does not match its sha1 name."""

    exit_code = 5


class Inconclusive(ErpopsError):
    """A check ran to the end but could not decide: rerun it with more data (longer, more users)."""

    exit_code = 7


class PreflightError(ErpopsError):
    """A pre-flight check refused the operation before anything was changed.

    Carries every failed check at once, each as one line with the fix.
    """

    exit_code = 6

    def __init__(self, problems: list[str], what: str = "operation") -> None:
        self.problems = problems
        head = f"{what} refused by pre-flight checks (nothing was changed):"
        super().__init__("\n".join([head] + [f"  - {p}" for p in problems]))
