"""`python -m healthchecks ...`: the `health` command alone, with erpops' exit codes."""

from erpops.cli import run
from healthchecks.cli import health

run(health, prog_name="erpops health", obj={})
