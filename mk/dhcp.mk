.PHONY: bench-dhcp native

## native: compile the DHCP packet path (codec, policy, replies) with mypyc, part of make install;
## without mypy or a C compiler it says so and the service runs the pure-Python modules
NATIVE_SOURCES = services/dhcp/codec.py services/dhcp/policy.py services/dhcp/replies.py
services/dhcp/native.json: $(NATIVE_SOURCES) scripts/build_native.py | $(VENV)/.installed
	$(PY) scripts/build_native.py
native: services/dhcp/native.json

## bench-dhcp: perfdhcp DORA/s at <1% loss: bootyard vs kea-dhcp4 (memfile) vs dnsmasq (root)
bench-dhcp: install
	flock /tmp/bootyard-bench.lock $(PY) scripts/bench/dhcp.py $(BENCH_DHCP_ARGS)
