# make compose-test: the compose deployment for real on a private Docker engine (CI runs it after
# `make test`, see .ci/run; scripts/compose_test.sh and docs/deploy.md). Needs root.
.PHONY: compose-test compose-test-ha dashboards

## compose-test: build the images, bring the stack up, run real clients through it, check Prometheus
compose-test: install
	PY=$(abspath $(PY)) bash scripts/compose_test.sh

## compose-test-ha: the same with the ha profile (sentinels, a replica); kills the master's container
compose-test-ha: install
	COMPOSE_TEST_HA=1 PY=$(abspath $(PY)) bash scripts/compose_test.sh

## dashboards: rewrite deploy/grafana/dashboards/*.json from scripts/grafana_dashboards.py
dashboards: install
	$(PY) scripts/grafana_dashboards.py
