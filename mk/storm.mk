# The boot storm (issue 19): N machines powering on at once against bootyard and dnsmasq+nginx.
.PHONY: bench-storm

## bench-storm: 1,000 simulated machines (PXE firmware, then iPXE) booting at once in a lab
## namespace, bootyard vs dnsmasq+nginx (defaults, tftp-max raised, tuned); root, a few minutes.
## BENCH_STORM_ARGS e.g. "--clients 300 --spread 10 --rounds 2 --stacks bootyard,classic-tuned"
BENCH_STORM_ARGS ?=
bench-storm: install
	flock /tmp/bootyard-bench.lock $(PY) scripts/bench/storm.py $(BENCH_STORM_ARGS)
