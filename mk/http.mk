.PHONY: bench-http test-http

## bench-http: bootyard's HTTP service vs nginx (same files, same wrk client, alternating)
bench-http: install
	flock /tmp/bootyard-bench.lock $(PY) scripts/bench_http.py

## test-http: the HTTP service's tests
test-http: install
	$(PY) -m pytest tests/http $(PYTEST_ARGS)
