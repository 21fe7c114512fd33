# bootyard: `make test` installs what it needs on a fresh Debian 12 machine, then runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test test-fast lint clean debian-packages

# Each service and the lab add their own targets (bench-*, demo, compose-test) in mk/*.mk.
-include mk/*.mk

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

debian-packages:
	bash scripts/install-debian-packages.sh

## install: Debian packages (when root) and .venv with bootyard and its test tools
install: debian-packages $(VENV)/.installed

## test: every test, as CI runs them (real Redis, network namespaces, real peers)
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

## test-fast: the same, skipping tests marked slow (QEMU boots, load tests)
test-fast: install
	$(PY) -m pytest --skip-slow $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
