"""Fixtures of the API tests: moto resources, the training state machine, datasets registered for real."""
from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest

from support import TEST_ENV, create_training_state_machine


@pytest.fixture
def api_env(datasets):
    """moto resources and the state machine; ``datasets`` registers real uploads (the API reads them through
    ``sightline.datasets.store``)."""
    state_machine_arn = create_training_state_machine()
    assert state_machine_arn == TEST_ENV["TRAINING_STATE_MACHINE_ARN"]
    return SimpleNamespace(
        resources=datasets.resources, datasets=datasets, sfn=boto3.client("stepfunctions"),
        state_machine_arn=state_machine_arn,
    )


@pytest.fixture
def api_datasets(api_env):
    """The datasets the API tests train on: "pets" and "more-pets" (classification), "shapes" (detection only)
    and "broken" (its only file is not an image: ``invalid``, so not ready)."""
    api_env.datasets.classification("pets")
    api_env.datasets.classification("more-pets")
    api_env.datasets.detection("shapes")
    api_env.datasets.invalid("broken")
    return api_env
