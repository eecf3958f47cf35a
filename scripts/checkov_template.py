"""Run checkov on template.yaml and fail on any finding not in the checked-in skip list (checkov-skips.yaml).

    python scripts/checkov_template.py [template.yaml]

Each skip names a check, optionally the resources it covers, and why it does not apply. A finding outside the
list fails, and so does a skip that no longer matches any finding (the list stays the current truth).
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SKIPS = ROOT / "checkov-skips.yaml"


@dataclass(frozen=True)
class Finding:
    check: str
    resource: str  # the logical id
    name: str


def load_skips(path: Path = SKIPS) -> list[dict]:
    skips = yaml.safe_load(path.read_text())["skips"]
    for skip in skips:
        if not str(skip.get("reason", "")).strip():
            raise ValueError(f"skip of {skip.get('check')} gives no reason")
    return skips


def findings(template: Path) -> list[Finding]:
    """checkov's failed checks of ``template`` (CloudFormation and SAM)."""
    checkov = Path(sys.executable).parent / "checkov"
    result = subprocess.run([str(checkov), "-f", str(template), "--framework", "cloudformation", "--quiet",
                             "--compact", "-o", "json"], capture_output=True, text=True, cwd=template.parent)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {result.returncode}: {result.stderr[-2000:]}")
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    return [Finding(f["check_id"], f["resource"].rpartition(".")[2], f["check_name"])
            for f in report.get("results", {}).get("failed_checks", [])]


def covered(finding: Finding, skip: dict) -> bool:
    return skip["check"] == finding.check and (not skip.get("resources") or finding.resource in skip["resources"])


def unexplained(found: list[Finding], skips: list[dict]) -> tuple[list[Finding], list[dict]]:
    """Findings no skip covers, and skips that cover no finding."""
    new = [f for f in found if not any(covered(f, skip) for skip in skips)]
    stale = [skip for skip in skips if not any(covered(f, skip) for f in found)]
    return new, stale


def main(argv: list[str]) -> int:
    template = Path(argv[0]).resolve() if argv else ROOT / "template.yaml"
    found = findings(template)
    new, stale = unexplained(found, load_skips())
    for f in new:
        print(f"FAILED {f.check} {f.resource}: {f.name}")
    for skip in stale:
        print(f"STALE skip {skip['check']} {skip.get('resources', '')}: nothing fails it any more; remove it")
    print(f"checkov: {len(found)} findings, {len(found) - len(new)} skipped with a reason, {len(new)} new")
    # A stale skip is reported, not failed: the API part of the template changes alongside this list.
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
