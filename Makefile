# tlsgate: see README.md.  `make run` and `make check` do all set-up.
VERSION     := 0.1.0
CC          ?= cc
FUZZ_CC     ?= clang
PKG_CONFIG  ?= pkg-config
# libevent_core and libevent_extra, not libevent: libevent_openssl links
# libevent_core, and libevent.so would load a second copy of the core
# (with its own allocator hooks, see src/evmem.c) next to it.
PKGS        := libevent_core openssl inih libsystemd

# O: object directory; BIN: where the programs go.  `make asan` reuses
# every rule with its own O and BIN.
O           ?= build
BIN         ?= .
SAN         ?=
OPT         ?= -O2

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS_ALL = -Isrc -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DTLSGATE_VERSION='"$(VERSION)"' \
	       $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
CFLAGS_ALL   = -std=c11 $(OPT) -g $(WARN) $(SAN) $(CFLAGS)
LIBS         = -levent_openssl -levent_extra $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

TLS13_SRCS  := $(wildcard src/tls13/*.c)
CORE_SRCS   := $(filter-out src/main.c,$(wildcard src/*.c))
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
FUZZ_SRCS   := $(wildcard tests/fuzz/fuzz_*.c)

TLS13_OBJS  := $(TLS13_SRCS:%.c=$(O)/%.o)
CORE_OBJS   := $(CORE_SRCS:%.c=$(O)/%.o)
UNIT_BINS   := $(UNIT_SRCS:%.c=$(O)/%)
FUZZ_BINS   := $(FUZZ_SRCS:tests/fuzz/%.c=build-fuzz/%)

PROGS := $(BIN)/tlsgate
ifneq ($(wildcard tools/tlsgate-probe.c),)
PROGS += $(BIN)/tlsgate-probe
endif

.PHONY: all run check unit asan fuzz fuzz-build deps clean
# Keep the objects of unit tests and fuzz targets between runs.
.SECONDARY:

all: $(PROGS)

deps:
	@sh mk/deps.sh

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -MMD -MP -c -o $@ $<

$(O)/libtls13.a: $(TLS13_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/tlsgate: $(O)/src/main.o $(CORE_OBJS) $(O)/libtls13.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) -o $@ $(O)/src/main.o $(CORE_OBJS) $(O)/libtls13.a $(LIBS)

$(BIN)/tlsgate-probe: $(O)/tools/tlsgate-probe.o $(O)/libtls13.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) -o $@ $^ $(LIBS)

$(O)/tests/unit/%: $(O)/tests/unit/%.o $(CORE_OBJS) $(O)/libtls13.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

unit: $(UNIT_BINS)

# ---- libFuzzer targets: everything rebuilt with clang and sanitizers ----
FUZZ_FLAGS := -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined \
	      -fno-sanitize-recover=undefined -DFUZZING
build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS_ALL) $(FUZZ_FLAGS:-fsanitize=fuzzer%=-fsanitize=fuzzer-no-link%) -MMD -MP -c -o $@ $<
build-fuzz/%: build-fuzz/obj/tests/fuzz/%.o $(CORE_SRCS:%.c=build-fuzz/obj/%.o) $(TLS13_SRCS:%.c=build-fuzz/obj/%.o)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ $(LIBS)

fuzz-build: $(FUZZ_BINS)

# `make fuzz` runs every target for FUZZ_SECONDS each (default 300).
FUZZ_SECONDS ?= 300
fuzz: deps $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do t=$${f#build-fuzz/fuzz_}; \
	  mkdir -p build-fuzz/corpus/$$t; \
	  echo "== $$f ($(FUZZ_SECONDS)s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	     build-fuzz/corpus/$$t tests/fuzz/corpus/$$t || exit 1; done

# ---- the two commands of the README ----
run: deps all
	./tlsgate -c conf/tlsgate.conf

check: deps all unit fuzz-build
	@sh tests/run.sh

# The whole suite again, every program built with ASan + UBSan.
asan: deps
	$(MAKE) O=build-asan BIN=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  build-asan/tlsgate $(if $(wildcard tools/tlsgate-probe.c),build-asan/tlsgate-probe) \
	  $(UNIT_SRCS:%.c=build-asan/%)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  O=build-asan TLSGATE=build-asan/tlsgate TLSGATE_PROBE=build-asan/tlsgate-probe \
	  NO_FUZZ=1 sh tests/run.sh

clean:
	rm -rf build build-asan build-fuzz tlsgate tlsgate-probe

-include $(shell find $(O)/src $(O)/tools $(O)/tests build-fuzz/obj -name '*.d' -type f 2>/dev/null)

# Further targets (packaging, benchmarks) live in their own fragments.
-include $(wildcard mk/*.mk)
