"""devstack/audit.py: a vulnerability fails, an unanswered lookup skips, a full check passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.audit import REPO, Verdict, audit, find_pip_audit, main, read_report


def verdict_of(*reports: dict) -> Verdict:
    verdict = Verdict()
    for report in reports:
        read_report(report, verdict, "runtime.txt")
    return verdict


def test_a_known_vulnerability_fails_with_id_and_fix() -> None:
    verdict = verdict_of(
        {
            "dependencies": [
                {
                    "name": "requests",
                    "version": "2.19.0",
                    "vulns": [{"id": "PYSEC-2018-28", "fix_versions": ["2.20.0"]}],
                },
                {"name": "boto3", "version": "1.0", "vulns": []},
            ]
        }
    )
    assert verdict.status == "FAILED"
    assert "requests==2.19.0 PYSEC-2018-28 (fixed in 2.20.0)" in verdict.reason()


def test_pins_that_could_not_be_looked_up_skip_rather_than_pass() -> None:
    verdict = verdict_of(
        {
            "dependencies": [
                {"name": "pandas", "skip_reason": "Dependency not found on PyPI"},
                {"name": "boto3", "version": "1.0", "vulns": []},
            ]
        }
    )
    assert verdict.status == "SKIPPED"
    assert "1 of 2 pins could not be looked up" in verdict.reason()
    assert verdict_of({"dependencies": []}).status == "SKIPPED"


def test_only_a_complete_clean_audit_passes() -> None:
    verdict = verdict_of({"dependencies": [{"name": "boto3", "version": "1.0", "vulns": []}]})
    assert verdict.status == "PASSED"


def test_a_missing_tool_is_a_skip_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("devstack.audit.find_pip_audit", lambda: None)
    assert main([str(REPO / "requirements" / "dev.txt")]) == 0
    assert "SKIPPED: pip-audit is not installed" in capsys.readouterr().out


def test_the_pinned_requirements_have_no_known_vulnerabilities() -> None:
    if find_pip_audit() is None:
        pytest.skip("pip-audit is not installed in this environment (see devstack/audit.py)")
    verdict = audit(sorted(Path(REPO / "requirements").glob("*.txt")), timeout=120)
    if verdict.status == "SKIPPED":
        pytest.skip(f"dependency audit could not run here: {verdict.reason()}")
    assert verdict.status == "PASSED", verdict.reason()
