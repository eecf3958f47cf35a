"""Reads template.yaml the way ``sam package`` + CloudFormation would: code folders become S3 objects,
the SAM transform expands the serverless resources, and what remains is plain CloudFormation."""
from __future__ import annotations

import copy
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


@dataclass
class PackagedTemplate:
    """The expanded CloudFormation template and where each function's and layer's code lives locally."""

    resources: dict[str, dict]
    outputs: dict[str, dict]
    parameters: dict[str, dict]
    conditions: dict[str, Any] = field(default_factory=dict)  # name -> its (unresolved) condition function
    code_dirs: dict[str, Path] = field(default_factory=dict)  # S3 key of the package -> folder
    archives: dict[str, bytes] = field(default_factory=dict)  # S3 key of the package -> zip


class _NoManagedPolicies:
    """The translator only needs this for managed policy names in ``Policies``; Sightline uses none."""

    def load(self) -> dict[str, str]:
        return {}


def zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in sorted(files):
                path = Path(root) / name
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def load_template(path: Path, parameters: dict[str, str], deployment_bucket: str, region: str = "us-east-1") -> PackagedTemplate:
    # The translator reads the region from the default boto3 session.
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    root = path.parent
    template = yaml_parse(path.read_text())
    packaged = PackagedTemplate(resources={}, outputs={}, parameters=template.get("Parameters", {}))
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for code_property in ("CodeUri", "ContentUri"):
            uri = properties.get(code_property)
            if isinstance(uri, str) and not uri.startswith("s3://"):
                folder = (root / uri).resolve()
                key = f"packages/{logical_id}.zip"
                packaged.code_dirs[key] = folder
                packaged.archives[key] = zip_folder(folder)
                properties[code_property] = f"s3://{deployment_bucket}/{key}"
        definition_uri = properties.get("DefinitionUri")
        if isinstance(definition_uri, str) and not definition_uri.startswith("s3://"):
            # Inline the ASL so DefinitionSubstitutions resolve exactly as CloudFormation resolves them.
            properties["Definition"] = json.loads((root / properties.pop("DefinitionUri")).read_text())
    expanded = transform(copy.deepcopy(template), parameters, _NoManagedPolicies())
    packaged.resources = expanded["Resources"]
    packaged.outputs = expanded.get("Outputs", {})
    packaged.conditions = expanded.get("Conditions", {})
    return packaged


def code_location(code: Any) -> str | None:
    """The package key of a Lambda ``Code``/``Content`` property ({S3Bucket, S3Key})."""
    if isinstance(code, dict):
        return code.get("S3Key")
    return None
