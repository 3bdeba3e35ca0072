# medlord-nb: two commands for a newcomer (`make demo`, `make test`); each sets itself up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
DEMO_ARGS ?=

.PHONY: setup demo test test-fast export clean-nbs readme check-sync slow nbdev-test browser-deps help

help:
	@echo "make demo   - set up .venv if needed, then run the demo on the embedded real CT into runs/demo/"
	@echo "make test   - set up .venv (and Chromium for the browser test, where it can) if needed, then the whole pytest suite:"
	@echo "              sync checks, Run All of every notebook, JupyterLab in headless Chromium, the wheel in a fresh venv, ..."
	@echo "make slow   - the library notebooks as nbdev_test runs them, with #| slow cells forced"
	@echo "make nbdev-test - the library notebooks as nbdev_test runs them (slow/cuda/notest cells skipped): quick while editing"
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

# The browser test (tests/test_browser.py) drives Debian's Chromium with playwright (a dev extra; playwright never
# downloads a browser here). Install Chromium when it is missing and we may: as root, or with password-less sudo.
# Never fatal: without Chromium the test skips with one line saying why.
CHROMIUM ?= $(firstword $(wildcard /usr/bin/chromium /usr/bin/chromium-browser))
browser-deps:
	@if [ -n "$(CHROMIUM)" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "browser-deps: no apt-get here; the browser test will skip (install chromium yourself)"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "browser-deps: not root and no password-less sudo; the browser test will skip (apt-get install chromium)"; exit 0; fi; \
	echo "browser-deps: apt-get install -y chromium"; \
	( $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium ) >/tmp/medlord-apt.log 2>&1 \
	  && echo "browser-deps: $$(chromium --version 2>/dev/null)" \
	  || echo "browser-deps: apt-get install chromium failed (see /tmp/medlord-apt.log); the browser test will skip"

test: setup browser-deps
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

slow: setup
	MEDLORD_NB_FLAGS="slow" $(PY) -m pytest -q tests/test_notebooks.py

nbdev-test: setup
	MEDLORD_NBDEV_TEST=1 $(PY) -m pytest -q tests/test_notebooks.py $(PYTEST_ARGS)

export: setup
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(BIN)/nbdev_clean --fname nbs/experiments
	$(PY) .ci/make_readme.py
