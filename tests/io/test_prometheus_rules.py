"""The fleet view: Prometheus alert rules and the Grafana dashboard in deploy/.

promtool (Debian package `prometheus`, installed by scripts/system-deps.sh) checks the
rules and runs their unit tests (deploy/prometheus/swarmd.rules.test.yml), and parses
every dashboard query. Without promtool these skip, but only when not root: as root
system-deps.sh installs it, so its absence is then a failure of the setup.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from swarmd.metrics import Metrics

pytestmark = pytest.mark.io

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "swarmd.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "swarmd.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "swarmd-dashboard.json"
_NAME = re.compile(r"\b(swarmd_[a-z0-9_]+)")
# Series a rule may use that swarmd does not export: Prometheus's own.
_PROMETHEUS_SERIES = frozenset({"up", "ALERTS"})


@pytest.fixture(name="promtool")
def _promtool() -> str:
    path = shutil.which("promtool")
    if path is not None:
        return path
    if os.geteuid() == 0:
        pytest.fail("promtool is missing although the tests run as root: "
                    "scripts/system-deps.sh installs it (apt-get install prometheus)")
    pytest.skip("promtool not installed (Debian package prometheus; "
                "scripts/system-deps.sh installs it when run as root)")


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _queries() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def _exported() -> set[str]:
    """Metric names as a scrape shows them (counters with _total, histogram series),
    once every labelled family has a child (restarts are labelled by reason)."""
    metrics = Metrics()
    metrics.restart("stall")
    text = metrics.render().decode()
    return set(re.findall(r"^(swarmd_[a-z0-9_]+)", text, re.MULTILINE))


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    """`promtool check rules` accepts the shipped rules file."""
    out = _run([promtool, "check", "rules", str(RULES)], RULES.parent)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_rules_unit_tests_pass(promtool: str) -> None:
    """Each alert fires on the history it is for and stays quiet on its near miss."""
    out = _run([promtool, "test", "rules", RULE_TESTS.name], RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    """Every dashboard query is valid PromQL: each becomes a recording rule that
    `promtool check rules` parses (JSON is YAML, so no YAML writer is needed)."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": q.replace("$instance", ".*")}
        for i, q in enumerate(_queries())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    out = _run([promtool, "check", "rules", str(path)], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_and_dashboard_use_only_series_swarmd_exports() -> None:
    """A renamed metric would leave an alert that can never fire: every swarmd_* name in
    the rules and the dashboard is one a scrape shows."""
    exported = _exported()
    used = set(_NAME.findall(RULES.read_text(encoding="utf-8")))
    for q in _queries():
        used |= set(_NAME.findall(q))
    assert used, "no swarmd series found in the rules or the dashboard"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_dashboard_shows_every_exported_series() -> None:
    """Each family swarmd exports has a panel (histograms through their buckets)."""
    def family(name: str) -> str:
        return re.sub(r"_(total|bucket|count|sum|created)$", "", name)

    families = {family(n) for n in _exported()}
    shown = {family(n) for q in _queries() for n in _NAME.findall(q)}
    assert families <= shown, f"no panel for: {sorted(families - shown)}"


def test_dashboard_panels_are_well_formed() -> None:
    """Unique panel ids, a query on every non-row panel, one datasource variable."""
    dash = _dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["targets"], p["title"]
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "instance"]
