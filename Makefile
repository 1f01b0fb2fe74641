# The two set-up commands (README): `make repro` and `make test`. Each creates .venv
# when missing and installs vaelab with the pinned constraints first (the test and docs extras).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.vaelab-installed
# The page `dvc plots show` fills (.dvc/config: plots.html_template), with Vega inlined from the
# installed vl-convert-python: the plots draw offline. Made, not committed (about 1 MB).
PLOTS_PAGE := .dvc/plots/page.html

# Keep DVC and MLflow offline and quiet: no telemetry, no update checks.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
# mkdocs-material's banner about its successor, printed on every build.
export NO_MKDOCS_2_WARNING := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install repro test lint docs deps bench clean ui

install: $(STAMP) $(PLOTS_PAGE)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --upgrade -c constraints.txt pip
	$(BIN)/python -m pip install -c constraints.txt -e '.[test,docs]'
	touch $@

$(PLOTS_PAGE): $(STAMP) scripts/plots_page.py
	$(BIN)/python scripts/plots_page.py $@

# params.yaml is checked first: DVC itself would fail on a bad one with a message about
# its own templating (`failed to parse 'stages.train.foreach'`), not about the file.
repro: install
	@$(BIN)/vaelab params > /dev/null
	$(BIN)/dvc repro

# ruff (lint and format) and mypy, configured in pyproject.toml; .pre-commit-config.yaml runs the same.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install lint docs
	$(BIN)/python -m pytest

# The documentation site (mkdocs.yml, docs/) in site/: --strict fails on any warning, a broken
# link or anchor, or a page missing from the nav. The params reference, the command line and the
# API pages are generated from the code as it builds (scripts/docs_hooks.py).
docs: install
	$(BIN)/mkdocs build --strict

# Each stage's deps in dvc.yaml: the files of src/vaelab its script imports (scripts/dvc_deps.py;
# tests/test_dvc_deps.py fails until this is run after an import changes).
deps: install
	$(BIN)/python scripts/dvc_deps.py --write

# The MLflow UI over the project's store (mlflow.db, or MLFLOW_TRACKING_URI) on 127.0.0.1; it
# prints the address of the vaelab experiment. `make ui UI_PORT=5001` for another port.
UI_PORT ?= 5000
ui: install
	$(BIN)/vaelab ui --port $(UI_PORT)

bench: install
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/train.py

clean:
	rm -rf data/prepared data/raw
