"""Audit the pinned requirements for known vulnerabilities with pip-audit; never fake a pass.

    python -m devstack.audit [--service pypi|osv] [requirements/dev.txt ...]

Runs ``pip-audit -r FILE --no-deps --disable-pip -f json`` on each pinned file (default: every
``requirements/*.txt`` lock plus ``gcp_functions/requirements.txt``, hashes and all) and reads
the JSON report:

- exit 1 (FAILED) when any pin has a known vulnerability, listing the ids and fixed versions;
- exit 0 with ``PASSED`` only when every pin was actually looked up;
- exit 0 with ``SKIPPED: <reason>`` when pip-audit is missing, the advisory service cannot be
  reached, or some pins could not be looked up (pip-audit itself exits 0 for those, which a
  naive check would take for a pass).

pip-audit finds itself next to the running interpreter, on PATH, or at ``$PIP_AUDIT``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXIT_OK, EXIT_VULNERABLE = 0, 1


@dataclass
class Verdict:
    """What an audit found: vulnerabilities, pins it could not look up, pins it checked."""

    vulnerable: list[str] = field(default_factory=list)
    unaudited: list[str] = field(default_factory=list)
    audited: int = 0
    problems: list[str] = field(default_factory=list)  # the service or the tool failed

    @property
    def status(self) -> str:
        """``FAILED``, ``SKIPPED`` or ``PASSED`` (only when every pin was really checked)."""
        if self.vulnerable:
            return "FAILED"
        if self.problems or self.unaudited or not self.audited:
            return "SKIPPED"
        return "PASSED"

    def reason(self) -> str:
        """One line explaining the status."""
        if self.vulnerable:
            return f"{len(self.vulnerable)} known vulnerabilities: " + "; ".join(self.vulnerable)
        if self.problems:
            return " | ".join(self.problems)
        if self.unaudited:
            shown = ", ".join(self.unaudited[:5]) + (" ..." if len(self.unaudited) > 5 else "")
            return (
                f"{len(self.unaudited)} of {len(self.unaudited) + self.audited} pins could not "
                f"be looked up ({shown}); the advisory service here does not answer for them"
            )
        if not self.audited:
            return "no pins were audited"
        return f"{self.audited} pins audited, no known vulnerabilities"


def read_report(report: dict[str, Any], verdict: Verdict, source: str) -> None:
    """Fold one pip-audit JSON report into ``verdict``."""
    for dep in report.get("dependencies", []):
        name = f"{dep.get('name')}=={dep.get('version', '?')}"
        if dep.get("skip_reason"):
            verdict.unaudited.append(f"{dep.get('name')} ({source})")
            continue
        verdict.audited += 1
        for vuln in dep.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
            verdict.vulnerable.append(f"{name} {vuln.get('id')} (fixed in {fixes})")


def find_pip_audit() -> list[str] | None:
    """The command that runs pip-audit here, or None."""
    explicit = os.environ.get("PIP_AUDIT")
    if explicit:
        return [explicit]
    beside = Path(sys.executable).parent / "pip-audit"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("pip-audit")
    return [found] if found else None


def audit(files: list[Path], service: str = "pypi", timeout: float = 300) -> Verdict:
    """Run pip-audit on every pinned requirements file."""
    verdict = Verdict()
    command = find_pip_audit()
    if command is None:
        verdict.problems.append(
            "pip-audit is not installed (add pip-audit to requirements/dev.txt, or set PIP_AUDIT)"
        )
        return verdict
    for path in files:
        argv = [*command, "-r", str(path), "--no-deps", "--disable-pip", "-s", service]
        argv += ["-f", "json", "--progress-spinner", "off"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            verdict.problems.append(f"{path.name}: pip-audit timed out after {timeout:.0f} s")
            continue
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            verdict.problems.append(f"{path.name}: pip-audit could not run: {last[:300]}")
            continue
        read_report(report, verdict, path.name)
    return verdict


def main(argv: list[str] | None = None) -> int:
    """Print PASSED / SKIPPED / FAILED with the reason; exit 1 only on vulnerabilities."""
    parser = argparse.ArgumentParser(prog="python -m devstack.audit", description=__doc__)
    parser.add_argument("files", nargs="*", type=Path, help="pinned requirements files")
    parser.add_argument("--service", choices=["pypi", "osv"], default="pypi")
    args = parser.parse_args(argv)
    files = args.files or [
        *sorted((REPO / "requirements").glob("*.txt")),
        REPO / "gcp_functions" / "requirements.txt",
    ]
    verdict = audit(files, args.service)
    print(f"dependency audit {verdict.status}: {verdict.reason()}")
    return EXIT_VULNERABLE if verdict.status == "FAILED" else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
