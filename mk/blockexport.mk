# Block export service targets (docs/blockexport.md, docs/benchmarks.md).
.PHONY: test-blockexport bench-aoe bench-iscsi

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

## bench-iscsi: bootyard's iSCSI target vs tgtd (rdwr backing) on loopback, libiscsi's
## iscsi-perf (128 KiB sequential and 4 KiB random reads, QD 32) and a libiscsi writer (128 KiB
## sequential writes), 1 and 4 sessions, alternating; CPU per I/O of both targets;
## BENCH_ISCSI_ARGS="--seconds 3 --rounds 1" for a quick run
BENCH_ISCSI_ARGS ?=
bench-iscsi: install
	flock /tmp/bootyard-bench.lock $(PY) scripts/bench/iscsi.py $(BENCH_ISCSI_ARGS)
