"""Stand-in for the get-pip.py that ansible-test downloads from its own CI file host.

ansible-test creates an empty virtual environment for each sanity test that has requirements
and bootstraps pip in it with a get-pip script fetched from a host this machine cannot reach.
It runs the cached copy as `python get_pip.py [pip options] pip==X [--no-setuptools] [--no-wheel]`.
This stand-in does the same job from what is reachable: pip from the standard library's
ensurepip, then the pip version ansible-test asked for from the package index.
"""

import subprocess
import sys


def main(argv: list[str]) -> int:
    # setuptools/wheel are never installed by ensurepip on 3.12+, and not wanted here either
    args = [a for a in argv if a not in ("--no-setuptools", "--no-wheel")]
    subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], check=True,
                   stdout=subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "pip", "install", "--upgrade", *args]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
