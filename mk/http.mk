.PHONY: bench-http test-http

## bench-http: bootyard's HTTP service vs nginx (same files, same wrk client, alternating)
bench-http: install
	flock /tmp/bootyard-bench.lock $(PY) scripts/bench_http.py

## test-http: the HTTP service's tests
test-http: install
	$(PY) -m pytest tests/http $(PYTEST_ARGS)

## screenshots: the web console's pages as PNGs for docs/console.md (headless Chromium)
.PHONY: screenshots
screenshots: install
	BOOTYARD_SCREENSHOTS=$(CURDIR)/docs/images $(PY) -m pytest tests/http/test_console_browser.py $(PYTEST_ARGS)
