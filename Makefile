# Sightline: `make run` starts the whole service on this machine, `make test` runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run deploy test test-unit test-e2e lint clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-lint.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# checkov first: its own pins lose to requirements.txt's (see requirements-lint.txt).
	$(BIN)/python -m pip install --quiet -r requirements-lint.txt
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: install
	$(BIN)/sightline local up $(ARGS)

# To AWS: checks, sam build, sam deploy (guided the first time), the training image, the API URL. ARGS=--dry-run
# prints every step without running it (README, Deploying to AWS).
deploy: install
	$(BIN)/sightline deploy $(ARGS)

test: install
	sh scripts/install_browser.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest -q -m "not e2e" $(PYTEST_ARGS)

test-e2e: install
	sh scripts/install_browser.sh
	$(BIN)/python -m pytest -q -m e2e $(PYTEST_ARGS)

lint: install
	$(BIN)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 $(BIN)/sam validate --lint
	# checkov: fails on any finding not in checkov-skips.yaml (each skip with its reason).
	$(BIN)/python scripts/checkov_template.py template.yaml

clean:
	rm -rf $(VENV) .sightline .pytest_cache
