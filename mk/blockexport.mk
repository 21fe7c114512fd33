# Block export service targets (docs/blockexport.md, docs/benchmarks.md).
.PHONY: test-blockexport bench-aoe

## test-blockexport: the block export service's tests (codec, policy, storage, kill -9, namespace
## service tests, Linux aoe and iPXE sanboot/netroot in QEMU)
test-blockexport: install
	$(PY) -m pytest tests/blockexport $(PYTEST_ARGS)

## bench-aoe: bootyard's AoE target vs vblade (and vblade -s), read and written by one QEMU guest
## through Linux's aoe driver at MTU 1500 and 9000 (root); BENCH_AOE_ARGS="--size-mb 8 --rounds 1"
## for a quick run
BENCH_AOE_ARGS ?=
bench-aoe: install
	flock /tmp/bootyard-bench.lock $(PY) scripts/bench_aoe.py $(BENCH_AOE_ARGS)
