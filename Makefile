# bootyard: `make test` installs what it needs on a fresh Debian 12 machine, then runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PYTEST_ARGS ?=
# test workers (pytest-xdist; 0 = one process, the default CI runs): TEST_WORKERS=2 takes about
# two thirds of the time on a 2-core machine, but doubles the load the lab tests run under
# (docs/benchmarks.md, "The test suite")
TEST_WORKERS ?= 0
XDIST = -n $(TEST_WORKERS) --dist loadscope

.PHONY: native install test test-fast lint lock clean debian-packages bench

# Each service and the lab add their own targets (bench-*, demo, compose-test) in mk/*.mk.
-include mk/*.mk

# constraints.txt: the exact versions the tests passed with (make lock writes it)
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,native]'
	touch $@

debian-packages:
	bash scripts/install-debian-packages.sh

## native: compile the DHCP packet path and the TFTP per-block path with mypyc from their typed
## source (scripts/build_native.py; part of install, again when a source changes); without mypy
## or a C compiler it says so and the services run the pure-Python modules
NATIVE_BUILDS = services/dhcp/native.json services/tftp/native.json
services/dhcp/native.json: $(addprefix services/dhcp/,codec.py policy.py replies.py server.py transport.py)
services/tftp/native.json: $(addprefix services/tftp/,session.py codec.py content.py pump.py pump.pxd)
$(NATIVE_BUILDS): scripts/build_native.py shared/native.py | $(VENV)/.installed
	$(PY) scripts/build_native.py $(subst /,.,$(@D))
native: $(NATIVE_BUILDS)
# (NATIVE_BUILDS is defined before install: make expands a rule's prerequisites as it reads it)

## install: Debian packages (when root) and .venv with bootyard and its test tools
install: debian-packages $(VENV)/.installed $(NATIVE_BUILDS)

## lock: write constraints.txt, the exact versions of the runtime and test dependencies installed
## in .venv (after upgrading one and running the tests); make install and the image use it
lock:
	$(PY) scripts/lock.py

## lint: ruff and the import contracts (pyproject.toml [tool.ruff], [tool.importlinter]; the
## contracts are the floor plan of docs/architecture.md)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

## test: every test, as CI runs them (real Redis, network namespaces, real peers)
test: install
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

## test-fast: the same, skipping tests marked slow (QEMU boots, load tests)
test-fast: install
	$(PY) -m pytest $(XDIST) --skip-slow $(PYTEST_ARGS)

## bench: every service against its peer, one after the other (root; ~30 min); each run's log
## goes to build/bench/<name>.log and the RESULT lines are printed together at the end
BENCHES ?= bench-dhcp bench-tftp bench-http bench-boot bench-aoe bench-mirror bench-iscsi bench-storm
bench: install
	@mkdir -p build/bench; \
	for b in $(BENCHES); do \
	    ( $(MAKE) --no-print-directory $$b || echo "make bench: $$b FAILED" ) 2>&1 | tee build/bench/$$b.log; \
	done; \
	echo "== make bench: RESULT lines =="; \
	cat $(addprefix build/bench/,$(addsuffix .log,$(BENCHES))) | grep -E '^RESULT|^make bench: .* FAILED'; \
	! grep -q '^make bench: .* FAILED' $(addprefix build/bench/,$(addsuffix .log,$(BENCHES)))

## fuzz: every codec under atheris and every service fed mutated messages in a lab namespace,
## 1M inputs each per protocol (root; about an hour); `make test` runs a short version
## (tests/fuzz). FUZZ_ARGS e.g. --protocols tftp --inputs 200000. RESULT lines at the end.
FUZZ_ARGS ?=
fuzz: install
	flock /tmp/bootyard-bench.lock $(PY) scripts/fuzz/run.py $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .import_linter_cache build *.egg-info
