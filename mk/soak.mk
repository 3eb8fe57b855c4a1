# `make soak`: the soak benchmark of docs/performance.md ("Soak"): the
# daemon for SOAK_SECONDS (default 120, after a 10 s warm-up) under
# loopback load from SOAK_THREADS raw clients (default 8) with faults
# injected on both sides (bench/soak.py).  Fails on any unexpected
# outcome, on RSS growth of SOAK_RSS_BOUND_KB (default 1024) or more, or
# on a descriptor leak.  `make soak SOAK_SECONDS=600` for a longer run;
# SOAK_TLSGATE picks another binary (build-asan/tlsgate: RSS not judged).
SOAK_SECONDS ?= 120
SOAK_TLSGATE ?= $(CURDIR)/tlsgate

.PHONY: soak

soak: all
	SOAK_SECONDS=$(SOAK_SECONDS) TLSGATE=$(SOAK_TLSGATE) TOP=$(CURDIR) \
	  python3 bench/soak.py
