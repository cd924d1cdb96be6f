"""helm/odoo's own files, read as files (no Helm engine): what `helm package` and Artifact Hub show.

Everything the chart renders is checked by the real Helm engine in tests/tool/test_chart.py.
"""

from __future__ import annotations

from tests.paths import ODOO_CHART


def test_chart_metadata_names_an_icon_and_maintainers() -> None:
    import yaml

    chart = yaml.safe_load((ODOO_CHART / "Chart.yaml").read_text())
    assert chart["icon"].startswith("https://") and chart["icon"].endswith(".svg")
    assert chart["maintainers"] and all(m.get("name") for m in chart["maintainers"])
