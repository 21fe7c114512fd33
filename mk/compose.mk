# make compose-test: the compose deployment for real on a private Docker engine (CI runs it after
# `make test`, see .ci/run; scripts/compose_test.sh and docs/deploy.md). Needs root.
.PHONY: compose-test dashboards

## compose-test: build the images, bring the stack up, run real clients through it, check Prometheus
compose-test: install
	PY=$(abspath $(PY)) bash scripts/compose_test.sh

## dashboards: rewrite deploy/grafana/dashboards/*.json from scripts/grafana_dashboards.py
dashboards: install
	$(PY) scripts/grafana_dashboards.py
