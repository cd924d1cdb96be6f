"""No module under erpops/ reaches into another erpops module's private names (issue 14).

A `_name` is private to the module that defines it: `from erpops.x import _name`, or `x._name` on an
imported erpops module, from any other module is refused. A private module (`erpops/local/_proc.py`)
is private to its package: its siblings may import it, nothing outside the package may. Dunder names
(`__version__`) are public. Read from the source (AST), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests import sources

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "erpops"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def resolve(node: ast.ImportFrom, module: str, path: Path) -> str:
    if not node.level:
        return node.module or ""
    base = package_of(module, path).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def module_problems(mod_path: str, target: str, module: str, path: Path) -> list[str]:
    """A private module in target's dotted path, reached from outside its package."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _private(part):
            owner = ".".join(parts[:i])  # the package the private module belongs to
            here = package_of(module, path)
            if here != owner and not here.startswith(owner + "."):
                return [f"{mod_path}: imports {target}, a private module of {owner}"]
    return []


def violations(path: Path, module: str | None = None) -> list[str]:
    """module: the dotted name path stands for (default: its place under the repository)."""
    module = module or module_name(path)
    rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    aliases: dict[str, str] = {}  # local name -> erpops module it is bound to
    found: list[str] = []
    for node in sources.nodes(path):  # parsed once per process, shared with the layout tests
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "erpops" or a.name.startswith("erpops."):
                    found += module_problems(rel, a.name, module, path)
                    if a.asname:
                        aliases[a.asname] = a.name
                    else:
                        aliases.setdefault("erpops", "erpops")
        elif isinstance(node, ast.ImportFrom):
            source = resolve(node, module, path)
            if source != "erpops" and not source.startswith("erpops."):
                continue
            found += module_problems(rel, source, module, path)
            for a in node.names:
                full = f"{source}.{a.name}"
                if is_module(full):
                    found += module_problems(rel, full, module, path)
                    aliases[a.asname or a.name] = full
                elif _private(a.name) and source != module:
                    found.append(f"{rel}:{node.lineno}: imports {a.name} from {source}")
    for node in sources.nodes(path):  # parsed once per process, shared with the layout tests
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain = dotted(node.value)
            if chain is None:
                continue
            head, _, rest = chain.partition(".")
            if head not in aliases:
                continue
            target = ".".join(p for p in (aliases[head], rest) if p)
            if is_module(target) and target != module:
                found.append(f"{rel}:{node.lineno}: uses {target}.{node.attr}")
    return found


def test_no_erpops_module_uses_a_private_name_of_another() -> None:
    problems = [p for path in sorted(PACKAGE.rglob("*.py")) for p in violations(path)]
    assert problems == [], "private names used across modules (make them public where they are defined):\n" + \
        "\n".join(problems)


def test_the_rule_finds_each_kind_of_reach(tmp_path: Path) -> None:
    """The checker itself: each way of reaching a private name is caught, public use is not."""
    probe = tmp_path / "probe.py"  # read as if it were erpops/backup/probe.py
    probe.write_text(
        "from erpops.backup.engine import _SetWriter\n"
        "from erpops.backup import engine\n"
        "import erpops.backup.storage as st\n"
        "from erpops.local import _proc\n"
        "engine._fail\n"
        "st._check_key\n"
        "engine.backup\n"
        "from erpops import __version__\n"
    )
    found = violations(probe, "erpops.backup.probe")
    assert sorted(f.split(": ", 1)[1] for f in found) == [
        "imports _SetWriter from erpops.backup.engine",
        "imports erpops.local._proc, a private module of erpops.local",
        "uses erpops.backup.engine._fail",
        "uses erpops.backup.storage._check_key",
    ]
