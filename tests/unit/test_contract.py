"""The contract module is the one place for the names the parts share, and docs/architecture.md shows it."""
from __future__ import annotations

import re
from pathlib import Path

from sightline import contract

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()


def _state_table(title: str, transitions: dict) -> str:
    rows = [f"| {title} | may become |", "| --- | --- |"]
    for state, nexts in transitions.items():
        name = "(new)" if state is None else f"`{state}`"
        rows.append(f"| {name} | {', '.join(f'`{n}`' for n in sorted(nexts)) or '(final)'} |")
    return "\n".join(rows)


def test_the_architecture_document_shows_the_contracts_state_tables():
    for title, transitions in (("dataset", contract.DATASET_TRANSITIONS),
                               ("model version", contract.VERSION_TRANSITIONS),
                               ("model", contract.MODEL_TRANSITIONS)):
        assert _state_table(title, transitions) in ARCHITECTURE, f"docs/architecture.md: the {title} states differ"


def test_every_state_has_its_transitions_written_down():
    for states, transitions in ((contract.DatasetStatus, contract.DATASET_TRANSITIONS),
                                (contract.VersionStatus, contract.VERSION_TRANSITIONS),
                                (contract.ModelStatus, contract.MODEL_TRANSITIONS)):
        assert set(transitions) == {None, *states}
        assert all(target in states for targets in transitions.values() for target in targets)


def test_a_finished_version_is_written_only_from_training():
    assert contract.states_leading_to(contract.VERSION_TRANSITIONS, contract.VersionStatus.READY) == ("training",)
    assert contract.states_leading_to(contract.VERSION_TRANSITIONS, contract.VersionStatus.FAILED) == ("training",)


def _python_sources() -> list[Path]:
    folders = ("layers/sightline/sightline", "training/sightline_training", "functions", "local/sightline_local")
    return [path for folder in folders for path in (ROOT / folder).rglob("*.py") if path.name != "contract.py"]


def test_the_shared_names_are_written_only_in_the_contract_module():
    # String literals of the shared names anywhere else mean a second copy that can drift.
    shared = [contract.LABELS_FORMAT, contract.MANIFEST_FORMAT, contract.MODEL_FILE, contract.LABELS_FILE,
              contract.METRICS_FILE, contract.CHECKPOINT_FILE, contract.MANIFEST_FILE, *contract.JobEnvironment]
    pattern = re.compile("|".join(re.escape(f'"{name}"') + "|" + re.escape(f"'{name}'") for name in shared))
    copies = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
              for path in _python_sources()
              for number, line in enumerate(path.read_text().splitlines(), start=1)
              if pattern.search(line)]
    assert copies == []
