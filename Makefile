# Sightline: `make run` starts the whole service on this machine, `make test` runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lock run deploy test test-unit test-e2e lint clean

install: $(STAMP)

# From the lock files: every package at the version locked, each file checked against its hash.
$(STAMP): requirements.lock requirements-lint.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# checkov first: its own pins lose to requirements.lock's (see requirements-lint.txt).
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-lint.lock
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# After changing a pin in requirements.txt or requirements-lint.txt: resolve again, for every platform, with hashes.
lock:
	$(BIN)/python -m pip install --quiet uv==0.13.9
	$(BIN)/uv pip compile requirements.txt --generate-hashes --universal --python-version 3.11 \
		--custom-compile-command "make lock" --quiet -o requirements.lock
	$(BIN)/uv pip compile requirements-lint.txt --generate-hashes --universal --python-version 3.11 \
		--custom-compile-command "make lock" --quiet -o requirements-lint.lock

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
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .sightline .pytest_cache
