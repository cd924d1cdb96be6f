"""`ansible-test sanity` on the erpops.ops collection, as a collection's CI runs it (offline but for PyPI).

ansible-test needs the collection under `ansible_collections/<namespace>/<name>/` (it is:
playbooks/collections/ansible_collections/erpops/ops) and creates one virtual environment per sanity
test with that test's pinned requirements, bootstrapping pip there with a script it downloads from its
own CI host. That host is out of reach here: a stand-in (ansible_test_get_pip.py beside this file) is put
in its cache first. ansible-test keeps the cache and the environments under ~/.ansible/test, so HOME
points at the project's .venv-ansible-test/home (reused by the next run, gitignored).

The collection's README lists the tests that run and the ones with nothing to check; this test holds
the README to what ansible-test did.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "playbooks/collections/ansible_collections/erpops/ops"
VENV_BIN = Path(sys.executable).parent
HOME = ROOT / ".venv-ansible-test" / "home"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
RUNNING = re.compile(r'^Running sanity test "([\w-]+)"', re.M)


def _readme_list(label: str) -> set[str]:
    """The comma-separated test names of the README paragraph starting with `label`."""
    text = (COLLECTION / "README.md").read_text()
    m = re.search(rf"^{re.escape(label)}(.*?)(?:\n\n|\Z)", text, re.M | re.S)
    assert m, f"no paragraph starting with {label!r} in the collection README"
    body = re.sub(r"\([^)]*\)", "", m.group(1).split(":", 1)[1] if ":" in m.group(1) else m.group(1))
    return {name.strip(" .\n") for name in body.replace("\n", " ").split(",") if name.strip(" .\n")}


def _install_pip_bootstrap() -> None:
    from ansible_test._internal.python_requirements import get_venv_packages

    pip_version = get_venv_packages(SimpleNamespace(version=PYTHON))["pip"]
    cache = HOME / ".ansible/test/cache"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("ansible_test_get_pip.py"),
                    cache / f"get_pip_{pip_version.replace('.', '_')}.py")


def test_every_ignore_entry_says_why() -> None:
    """tests/sanity/ignore-*.txt: one `path test:code # reason` per line, as collections keep them."""
    files = sorted((COLLECTION / "tests/sanity").glob("ignore-*.txt"))
    assert files, "no ignore file: delete this test if the collection needs none"
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            entry, _, reason = line.partition(" # ")
            assert len(entry.split(" ")) == 2 and reason.strip(), f"{path.name}:{n} has no reason: {line!r}"
            assert (COLLECTION / entry.split(" ")[0]).is_file(), f"{path.name}:{n} names a missing file"


@pytest.mark.slow
def test_ansible_test_sanity_is_clean() -> None:
    _install_pip_bootstrap()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYTHON"))}
    env.update(HOME=str(HOME), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
               PIP_DISABLE_PIP_VERSION_CHECK="1", LC_ALL="C.UTF-8")
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-test"), "sanity", "--local", "--python", PYTHON, "--color", "no", "-v"],
        cwd=COLLECTION, env=env, capture_output=True, text=True, timeout=1500, check=False)
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if line.startswith(("ERROR:", "FATAL:"))]
    assert proc.returncode == 0 and not errors, "\n".join(errors) or out[-4000:]

    # what ran, and which of those found nothing to check ("No tests applicable." follows its name)
    ran = RUNNING.findall(out)
    blocks = RUNNING.split(out)[1:]
    idle = {name for name, body in zip(blocks[::2], blocks[1::2], strict=True) if "No tests applicable." in body}
    assert ran, out[-4000:]
    assert set(ran) - idle == _readme_list("Run, and clean:"), "the README's list of tests run has drifted"
    assert idle == _readme_list("Not applicable"), "the README's list of tests with nothing to check has drifted"
