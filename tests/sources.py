"""The repository's Python files parsed once per test process: several unit tests judge the whole tree
by its AST (one home per fact, the import graph), and parsing it again for each would cost the unit
tier seconds. Callers only read the trees."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path


@cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


@cache
def nodes(path: Path) -> tuple[ast.AST, ...]:
    """Every node of the file, in ast.walk's order: walking a tuple is ten times cheaper than ast.walk."""
    return tuple(ast.walk(parse(path)))
