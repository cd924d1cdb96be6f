"""devtools.helmdocs: the chart README's parameter table is generated from values.yaml and never drifts."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from devtools import helmdocs
from devtools.helmdocs import END_MARKER, START_MARKER, HelmDocsError, format_value, parse, render_table
from tests.paths import ODOO_CHART


def test_odoo_chart_readme_is_in_sync_with_values() -> None:
    diff = helmdocs.drift(ODOO_CHART)
    assert diff == "", f"run `python -m devtools.helmdocs helm/odoo`:\n{diff}"


def test_every_odoo_value_is_in_the_table() -> None:
    sections = parse((ODOO_CHART / "values.yaml").read_text(), "values.yaml")
    paths = [p.path for s in sections for p in s.params]
    assert "odoo.limits.memorySoft" in paths and "persistence.accessModes" in paths
    assert len(paths) == len(set(paths))


VALUES = """\
## @section Image
image:
  ## @param image.repository Image repository
  repository: odoo
  ## @param image.pullSecrets Pull secrets
  pullSecrets: []
## @section Odoo
odoo:
  ## @param odoo.workers Workers | per pod
  workers: 2
  ## @param odoo.extra Extra options as a whole map
  extra:
    a: 1
    b: [x]
  ## @skip odoo.internal
  internal:
    anything: true
"""


def test_parse_and_render_a_good_values_file() -> None:
    table = render_table(parse(VALUES))
    assert table.splitlines() == [
        "### Image",
        "",
        "| Name | Description | Value |",
        "| ---- | ----------- | ----- |",
        '| `image.repository` | Image repository | `"odoo"` |',
        "| `image.pullSecrets` | Pull secrets | `[]` |",
        "",
        "### Odoo",
        "",
        "| Name | Description | Value |",
        "| ---- | ----------- | ----- |",
        r"| `odoo.workers` | Workers \| per pod | `2` |",
        '| `odoo.extra` | Extra options as a whole map | `{"a":1,"b":["x"]}` |',
    ]


@pytest.mark.parametrize(
    ("values", "key", "message"),
    [
        (VALUES.replace("  ## @param odoo.workers Workers | per pod\n", ""), "odoo.workers", "has no '## @param"),
        (VALUES + "## @param odoo.wrokers Typo\n", "odoo.wrokers", "does not exist"),
        (VALUES + "## @skip nothing.here\n", "nothing.here", "does not exist"),
        (VALUES + "## @param image.repository Again\n", "image.repository", "documented twice"),
        (VALUES.replace("image.repository Image repository", "image.repository"), "image.repository", "description"),
        (VALUES + "## @param newkey New\nnewkey: {}\nundocumented: {}\n", "undocumented", "has no '## @param"),
    ],
    ids=["missing-param", "unknown-key", "unknown-skip", "twice", "no-description", "empty-map-leaf"],
)
def test_documentation_problems_are_errors(values: str, key: str, message: str) -> None:
    with pytest.raises(HelmDocsError) as err:
        parse(values, "crafted/values.yaml")
    assert any(where == key and message in text for where, text in err.value.problems), err.value.problems
    assert err.value.exit_code == 2
    assert str(err.value).startswith("crafted/values.yaml:")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", '`""`'),
        ("odoo", '`"odoo"`'),
        (None, "`nil`"),
        (True, "`true`"),
        (False, "`false`"),
        (0, "`0`"),
        (671088640, "`671088640`"),
        (1.5, "`1.5`"),
        ([], "`[]`"),
        ({}, "`{}`"),
        (["ReadWriteOnce"], '`["ReadWriteOnce"]`'),
        ({"a": "b"}, '`{"a":"b"}`'),
    ],
)
def test_values_are_shown_like_bitnami(value: Any, shown: str) -> None:
    assert format_value(value) == shown


def chart_copy(tmp_path: Path) -> Path:
    target = tmp_path / "odoo"
    shutil.copytree(ODOO_CHART, target)
    return target


def test_check_reports_drift_and_a_rewrite_fixes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = chart_copy(tmp_path)
    values = chart / "values.yaml"
    values.write_text(values.read_text().replace("Replaces the chart name in object names", "Chart name override"))
    assert helmdocs.main([str(chart), "--check"]) == 1
    out = capsys.readouterr().out
    assert "-| `nameOverride` | Replaces the chart name in object names |" in out
    assert "+| `nameOverride` | Chart name override |" in out
    assert helmdocs.main([str(chart)]) == 0
    assert helmdocs.main([str(chart), "--check"]) == 0
    readme = (chart / "README.md").read_text()
    assert readme.startswith("# odoo\n") and readme.count(START_MARKER) == 1 and readme.count(END_MARKER) == 1


def test_command_fails_on_an_undocumented_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = chart_copy(tmp_path)
    values = chart / "values.yaml"
    values.write_text(values.read_text() + "\nsurprise: true\n")
    assert helmdocs.main([str(chart), "--check"]) == 2
    assert "surprise: has no '## @param surprise <description>'" in capsys.readouterr().err


def test_readme_without_markers_is_an_error() -> None:
    with pytest.raises(HelmDocsError, match="markers"):
        helmdocs.update_readme("# chart\n", "table")


def test_update_readme_keeps_the_text_around_the_markers() -> None:
    readme = textwrap.dedent(f"""\
        # chart
        intro
        {START_MARKER}
        old table
        {END_MARKER}
        footer
        """)
    updated = helmdocs.update_readme(readme, "new table\n")
    assert updated == f"# chart\nintro\n{START_MARKER}\n\nnew table\n\n{END_MARKER}\nfooter\n"
