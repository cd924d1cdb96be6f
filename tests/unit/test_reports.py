"""Outputs other tools read, checked the way those tools read them: the gate's JUnit XML against the
JUnit format CI servers read (tests/schemas/junit.xsd, our own schema of it)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from loadtests import report, stats
from tests.unit.test_loadtest_stats import _baseline, _hist, _run

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


@pytest.fixture(scope="module")
def junit_xsd() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(SCHEMAS / "junit.xsd")


def _verdict(slow: float = 1.0, crash: bool = False) -> stats.Verdict:
    runs = [_run({"a:read": _hist(40 * slow, 5, 300, 80 + s), "b:write": _hist(80, 10, 300, 90 + s),
                  "c:rare": _hist(50, 5, 3, 95 + s)}) for s in range(3)]
    if crash:
        runs[0]["exceptions"] = [{"count": 2, "msg": "KeyError: 'id'", "traceback": ""}]
    return stats.judge("dev", "http://odoo.test", _baseline(), runs, 0.01, 1.0)


def _junit(v: stats.Verdict) -> str:
    return report.junit_xml(v, started_at="2026-12-03T12:00:00+00:00", duration_s=61.25, hostname="ci-runner-7",
                            properties={"baseline": "loadtests/baselines/dev.json", "users": 10})


@pytest.mark.parametrize(("slow", "crash"), [(1.0, False), (1.5, False), (1.0, True)], ids=["pass", "regression",
                                                                                            "crash"])
def test_gate_junit_is_valid_against_the_jenkins_xsd(junit_xsd: xmlschema.XMLSchema, slow: float,
                                                     crash: bool) -> None:
    text = _junit(_verdict(slow, crash))
    errors = [str(e) for e in junit_xsd.iter_errors(text)]
    assert errors == []


def test_gate_junit_carries_what_ci_shows(junit_xsd: xmlschema.XMLSchema) -> None:
    verdict = _verdict(slow=1.5, crash=True)
    text = _junit(verdict)
    junit_xsd.validate(text)
    doc = ET.fromstring(text)  # noqa: S314 (our own output)
    assert doc.tag == "testsuites"
    [suite] = doc.findall("testsuite")
    failed = [c for c in verdict.checks if not c.ok and c.kind != "crash"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (
        str(len(verdict.checks)), str(len(failed)), "1")
    assert (doc.get("tests"), doc.get("failures"), doc.get("errors")) == (
        suite.get("tests"), suite.get("failures"), suite.get("errors"))
    assert suite.get("skipped") == str(sum(not c.judged for c in verdict.checks)) != "0"  # c:rare: 9 requests
    assert (suite.get("hostname"), suite.get("timestamp"), float(suite.get("time"))) == (
        "ci-runner-7", "2026-12-03T12:00:00+00:00", 61.25)
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["baseline"] == "loadtests/baselines/dev.json"
    assert (props["host"], props["runs"], props["users"]) == ("http://odoo.test", "3", "10")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    assert cases[("loadtest.dev.p95", "a:read")].find("failure") is not None
    assert cases[("loadtest.dev.crash", "user code")].find("error").get("message").endswith("KeyError: 'id'")
    assert cases[("loadtest.dev.p95", "c:rare")].find("skipped") is not None
    assert "not above" in cases[("loadtest.dev.p95", "b:write")].findtext("system-out")


def test_a_junit_with_a_stray_attribute_is_caught(junit_xsd: xmlschema.XMLSchema) -> None:
    """The schema check can fail: `skipped` on <testsuites> is not in the XSD (junitparser's own
    update_statistics() writes it, which is why report.junit_xml sets the root's counts by hand)."""
    text = _junit(_verdict()).replace("<testsuites ", '<testsuites skipped="0" ', 1)
    assert [e for e in junit_xsd.iter_errors(text)]


@pytest.mark.parametrize("attribute", ["errors", "hostname", "timestamp", "time"])
def test_the_schema_refuses_a_report_without_what_ci_shows(junit_xsd: xmlschema.XMLSchema, attribute: str) -> None:
    doc = ET.fromstring(_junit(_verdict()))  # noqa: S314 (our own output)
    del doc.find("testsuite").attrib[attribute]
    assert not junit_xsd.is_valid(ET.tostring(doc, encoding="unicode"))
