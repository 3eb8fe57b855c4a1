# `make bench-uplink`: the constrained-uplink figures (OpenSSL route vs
# builtin route vs builtin + max_fragment 512) of docs/performance.md,
# measured by bench/uplink.sh against a local nginx (loopback only, about
# two minutes; needs nginx, wrk, gdb and the openssl CLI).  Settings:
# BENCH_N, BENCH_SECONDS, BENCH_CONNS, BENCH_ROUNDS, BENCH_OUT.
.PHONY: bench-uplink

bench-uplink: all
	TLSGATE=$(CURDIR)/tlsgate sh bench/uplink.sh
