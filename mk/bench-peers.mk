# `make bench`: tlsgate side by side with HAProxy, nginx and stunnel on
# loopback (bench/run.py, about 6 minutes), then the tables and the plot in
# docs/performance.md and docs/bench.png (bench/report.py), then the
# uplink-bytes bench of mk/bench.mk when that target exists.  Settings:
# BENCH_SECONDS, BENCH_REPEATS, BENCH_CONNS, BENCH_IDLE, BENCH_BYTES_N,
# BENCH_ONLY, BENCH_PROFILE, BENCH_FIXED (see bench/run.py).
BENCH_OUT ?= build/bench

bench: all
	@sh bench/deps.sh
	@rc=0; BENCH_OUT=$(BENCH_OUT) TLSGATE=$(CURDIR)/tlsgate \
	  python3 bench/run.py || rc=$$?; \
	if [ -f $(BENCH_OUT)/results.json ]; then \
	  python3 bench/report.py $(BENCH_OUT)/results.json || rc=1; fi; \
	exit $$rc
	@if $(MAKE) -n bench-uplink >/dev/null 2>&1; then $(MAKE) bench-uplink; fi
