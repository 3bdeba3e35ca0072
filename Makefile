# medlord-nb: two commands for a newcomer (`make demo`, `make test`); each sets itself up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
DEMO_ARGS ?=

.PHONY: setup demo test test-fast export clean-nbs readme check-sync slow help

help:
	@echo "make demo   - set up .venv if needed, then run the demo on the embedded real CT into runs/demo/"
	@echo "make test   - set up .venv if needed, then sync checks + notebook tests + pytest suite"
	@echo "make export - nbdev_export + nbdev_clean + README from nbs/index.ipynb"

# Set-up: create the venv, install the pinned CPU torch only when no torch is there yet (GPU users keep
# theirs), then the package with its dev extras. Re-run when settings.ini or setup.py change.
$(VENV)/.installed: settings.ini setup.py
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/medlord demo --out runs/demo --force $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

slow: setup
	MEDLORD_NB_FLAGS="slow" $(PY) -m pytest -q tests/test_notebooks.py

export: setup
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(BIN)/nbdev_clean --fname nbs/experiments
	$(PY) .ci/make_readme.py
