"""The SAM template: it lints, its wiring points at code that exists, and it matches the API description."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from samtranslator.yaml_helper import yaml_parse

from support import load_module

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
RESOURCES = TEMPLATE["Resources"]


def _functions() -> dict[str, dict]:
    return {name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}


def test_cfn_lint_passes():
    result = subprocess.run([str(BIN / "cfn-lint"), str(ROOT / "template.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_passes():
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([str(BIN / "sam"), "validate", "--lint"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(_functions()))
def test_every_handler_exists(name):
    properties = _functions()[name]
    code_dir = ROOT / properties["CodeUri"]
    module_name, _, function_name = properties["Handler"].rpartition(".")
    module = load_module(code_dir / f"{module_name}.py")
    assert callable(getattr(module, function_name))
    assert (code_dir / "requirements.txt").exists()


def test_state_machine_substitutions_are_complete():
    machine = RESOURCES["TrainingStateMachine"]["Properties"]
    definition = (ROOT / machine["DefinitionUri"]).read_text()
    json.loads(definition)
    used = set(re.findall(r"\$\{(\w+)\}", definition))
    assert used == set(machine["DefinitionSubstitutions"])


def test_every_task_of_the_state_machine_ends_somewhere_recorded():
    """No Task's failure leaves an execution without an end state: each catches every error (the failure step's
    own catch ends in a Fail state, which the reconciler settles from the FAILED status)."""
    machine = RESOURCES["TrainingStateMachine"]["Properties"]
    states = json.loads((ROOT / machine["DefinitionUri"]).read_text())["States"]
    for name, state in states.items():
        if state["Type"] == "Task":
            caught = [entry for entry in state.get("Catch", []) if "States.ALL" in entry["ErrorEquals"]]
            assert caught and caught[0]["Next"] in states, name
    assert states[states["RecordTrainingFailure"]["Catch"][0]["Next"]]["Type"] == "Fail"


def test_api_routes_match_the_openapi_description():
    routed = set()
    for properties in _functions().values():
        for event in properties.get("Events", {}).values():
            if event["Type"] == "Api":
                routed.add((event["Properties"]["Method"].lower(), event["Properties"]["Path"]))
    # Routes API Gateway answers itself (MOCK integrations) are in the API's own definition body.
    for path, operations in RESOURCES["SightlineApi"]["Properties"]["DefinitionBody"]["paths"].items():
        routed |= {(method.lower(), path) for method in operations}
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    described = {(method.lower(), path) for path, ops in spec["paths"].items() for method in ops if method.lower() in ("get", "post", "put", "delete", "patch")}
    assert routed == described


def test_only_health_is_open_and_no_function_answers_it():
    open_routes = [
        event["Properties"]["Path"]
        for properties in _functions().values()
        for event in properties.get("Events", {}).values()
        if event["Type"] == "Api" and (event["Properties"].get("Auth", {}).get("ApiKeyRequired") is False
                                       or event["Properties"].get("Auth", {}).get("Authorizer") == "NONE")
    ]
    assert open_routes == []
    api = RESOURCES["SightlineApi"]["Properties"]
    assert api["Auth"]["ApiKeyRequired"] is True
    assert api["Auth"]["DefaultAuthorizer"] == {"Ref": "ApiAuthorizer"}
    health = api["DefinitionBody"]["paths"]["/v1/health"]["get"]
    assert health["x-amazon-apigateway-integration"]["type"] == "mock"
    assert health["security"] == [{"NONE": []}, {"api_key_false": []}]


def test_predict_function_ships_onnxruntime_and_no_torch():
    requirements = (ROOT / "functions" / "predict" / "requirements.txt").read_text().lower()
    assert "onnxruntime" in requirements and "torch" not in requirements
    layer = (ROOT / "layers" / "sightline" / "requirements.txt").read_text().lower()
    assert "torch" not in layer


def _makefile_built() -> dict[str, Path]:
    built = {}
    for name, resource in RESOURCES.items():
        if resource.get("Metadata", {}).get("BuildMethod") == "makefile":
            properties = resource["Properties"]
            built[name] = ROOT / (properties.get("CodeUri") or properties["ContentUri"])
    return built


def test_every_function_and_the_layer_build_with_a_makefile():
    built = _makefile_built()
    assert set(built) == set(_functions()) | {"SightlineLayer"}
    assert TEMPLATE["Globals"]["Function"]["Runtime"] == "python3.12"


@pytest.mark.parametrize("name", sorted(_makefile_built()))
def test_the_makefile_has_the_build_target_sam_calls(name, tmp_path):
    folder = _makefile_built()[name]
    result = subprocess.run(
        ["make", "--dry-run", "-f", str(folder / "Makefile"), f"build-{name}", f"ARTIFACTS_DIR={tmp_path}"],
        cwd=folder, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    requirements = [line for line in (folder / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
    if requirements:
        # Binary wheels must be the Lambda runtime's, not this machine's.
        assert "--python-version 3.12" in result.stdout and "--only-binary=:all:" in result.stdout
