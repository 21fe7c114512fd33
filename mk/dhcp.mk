.PHONY: bench-dhcp

## bench-dhcp: perfdhcp DORA/s at <1% loss: bootyard vs kea-dhcp4 (memfile) vs dnsmasq (root)
bench-dhcp: install
	flock /tmp/bootyard-bench.lock $(PY) scripts/bench/dhcp.py $(BENCH_DHCP_ARGS)
