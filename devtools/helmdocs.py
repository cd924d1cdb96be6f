"""Chart README parameter tables generated from `## @param` comments in values.yaml.

The format is bitnami's readme-generator-for-helm, so values.yaml stays the one documented interface:

    ## @section Image parameters
    image:
      ## @param image.repository Odoo image repository
      repository: docker.io/library/odoo

Every leaf value (a scalar, a list, or an empty map) needs a `@param` naming its full dotted path;
a `@param` on a non-empty map documents the whole map. `## @skip key` leaves a key (and what is
below it) out on purpose. A leaf without a `@param`, or a `@param` naming a key that does not exist,
is an error: the table can never silently fall behind the values.

    python -m devtools.helmdocs helm/odoo           # rewrite README.md between the markers
    python -m devtools.helmdocs helm/odoo --check   # exit 1 and print a diff if README.md is stale

Pure Python (PyYAML only); no Helm needed.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from erpops.errors import ErpopsError

START_MARKER = "<!-- params:start -->"
END_MARKER = "<!-- params:end -->"
_DIRECTIVE = re.compile(r"^\s*##\s*@(?P<tag>param|section|skip)\b\s*(?P<rest>.*?)\s*$")


class HelmDocsError(ErpopsError):
    """values.yaml and its `## @param` comments disagree, or README.md has no markers (exit 2)."""

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]], source: str) -> None:
        self.problems = problems
        self.source = source
        count = len(problems)
        head = f"{source}: {count} documentation problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([head] + [f"  - {where}: {message}" for where, message in problems]))


@dataclass(frozen=True)
class Param:
    path: str
    description: str
    value: Any
    line: int


@dataclass
class Section:
    title: str
    params: list[Param] = field(default_factory=list)


def _leaves(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of every leaf: scalars, lists, and empty maps."""
    if isinstance(node, dict) and node:
        for key, child in node.items():
            yield from _leaves(child, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix


def _lookup(values: Any, path: str) -> tuple[bool, Any]:
    node = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _covered(leaf: str, paths: set[str]) -> bool:
    """True when `leaf` or one of its ancestors is in `paths`."""
    parts = leaf.split(".")
    return any(".".join(parts[:i]) in paths for i in range(1, len(parts) + 1))


def parse(values_text: str, source: str = "values.yaml") -> list[Section]:
    """Sections with their parameters, in file order. Raises HelmDocsError listing every problem."""
    try:
        values = yaml.safe_load(values_text) or {}
    except yaml.YAMLError as err:
        raise HelmDocsError([("(file)", f"not valid YAML: {err}")], source) from err
    if not isinstance(values, dict):
        raise HelmDocsError([("(file)", "the top level must be a map")], source)

    problems: list[tuple[str, str]] = []
    sections: list[Section] = []
    documented: dict[str, int] = {}
    skipped: set[str] = set()
    for number, line in enumerate(values_text.splitlines(), start=1):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        tag, rest = match["tag"], match["rest"]
        where = f"line {number}"
        if tag == "section":
            if not rest:
                problems.append((where, "@section needs a title"))
            sections.append(Section(rest))
            continue
        key, _, description = rest.partition(" ")
        if not key:
            problems.append((where, f"@{tag} needs a key"))
            continue
        found, value = _lookup(values, key)
        if not found:
            problems.append(
                (
                    key,
                    f"{where}: @{tag} names a key that does not exist in the values; "
                    "fix the path or remove the comment",
                )
            )
            continue
        if tag == "skip":
            skipped.add(key)
            continue
        if key in documented:
            problems.append((key, f"{where}: documented twice (first on line {documented[key]})"))
            continue
        description = description.strip()
        if not description:
            problems.append((key, f"{where}: @param needs a description after the key"))
        documented[key] = number
        if not sections:
            sections.append(Section("Parameters"))
        sections[-1].params.append(Param(key, description, value, number))

    known = set(documented) | skipped
    for leaf in _leaves(values):
        if not _covered(leaf, known):
            problems.append((leaf, f"has no '## @param {leaf} <description>' line above it"))
    if problems:
        raise HelmDocsError(problems, source)
    return [s for s in sections if s.params]


def format_value(value: Any) -> str:
    """A default as the table shows it: JSON-ish like bitnami's generator (strings quoted, nil, [], {})."""
    if value is None:
        text = "nil"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", r"\|").replace("\n", " ")


def render_table(sections: list[Section]) -> str:
    """The markdown that goes between the README markers."""
    out: list[str] = []
    for section in sections:
        out += [f"### {section.title}", "", "| Name | Description | Value |", "| ---- | ----------- | ----- |"]
        out += [f"| `{p.path}` | {_cell(p.description)} | {_cell(format_value(p.value))} |" for p in section.params]
        out.append("")
    return "\n".join(out)


def update_readme(readme_text: str, table: str, source: str = "README.md") -> str:
    """`readme_text` with the part between the markers replaced by `table`."""
    start, end = readme_text.find(START_MARKER), readme_text.find(END_MARKER)
    if start < 0 or end < 0 or end < start:
        raise HelmDocsError([("(file)", f"needs the markers {START_MARKER} and {END_MARKER}, in that order")], source)
    head = readme_text[: start + len(START_MARKER)]
    return f"{head}\n\n{table.rstrip()}\n\n{readme_text[end:]}"


def generate(chart_dir: Path) -> tuple[str, str]:
    """(current README text, README text with a fresh parameter table) of a chart directory."""
    values_path, readme_path = chart_dir / "values.yaml", chart_dir / "README.md"
    sections = parse(values_path.read_text(encoding="utf-8"), str(values_path))
    current = readme_path.read_text(encoding="utf-8")
    return current, update_readme(current, render_table(sections), str(readme_path))


def drift(chart_dir: Path) -> str:
    """Unified diff from the README on disk to the generated one; empty when in sync."""
    current, wanted = generate(chart_dir)
    readme = str(chart_dir / "README.md")
    lines = difflib.unified_diff(
        current.splitlines(keepends=True), wanted.splitlines(keepends=True), readme, f"{readme} (generated)"
    )
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.helmdocs", description=__doc__.splitlines()[0])
    parser.add_argument("chart_dir", type=Path, help="chart directory holding values.yaml and README.md")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 and print a diff on drift")
    args = parser.parse_args(argv)
    try:
        if args.check:
            diff = drift(args.chart_dir)
            if diff:
                sys.stdout.write(diff)
                print(
                    f"{args.chart_dir / 'README.md'} is stale: run python -m devtools.helmdocs {args.chart_dir}",
                    file=sys.stderr,
                )
                return 1
            return 0
        current, wanted = generate(args.chart_dir)
        if wanted != current:
            (args.chart_dir / "README.md").write_text(wanted, encoding="utf-8")
            print(f"updated {args.chart_dir / 'README.md'}", file=sys.stderr)
        return 0
    except HelmDocsError as err:
        print(err, file=sys.stderr)
        return err.exit_code
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
