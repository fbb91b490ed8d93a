# qkit — one non-recursive Makefile. Objects go to $(BUILD)/ (build/ by default, build-asan/ for
# the sanitizer tier). Sources are found by folder, so adding a file needs no edit here.

BUILD   ?= build
PREFIX  ?= /usr/local
CC      ?= cc
PKGS    := libcjson zlib libzstd libcrypto libpcre2-8

CPPFLAGS += -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 $(shell pkg-config --cflags $(PKGS))
CFLAGS   ?= -O2 -g
# Bit-exactness needs IEEE semantics: no fast-math flags, and no FMA contraction where the reference
# multiplies then adds.
QK_CFLAGS := -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror -ffp-contract=off -fopenmp
SAN      ?=
ALL_CFLAGS = $(QK_CFLAGS) $(CFLAGS) $(SAN) -MMD -MP
LDLIBS   := $(shell pkg-config --libs $(PKGS)) -lm
LDFLAGS  += -fopenmp $(SAN)

AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512dq

LIB_SRC   := $(wildcard formats/*.c quant/*.c calib/*.c convert/*.c)
CLI_SRC   := $(wildcard cli/*.c)
TEST_SRC  := $(wildcard tests/test_*.c)
TU_SRC    := tests/tu.c
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
BENCH_SRC := $(wildcard tests/bench/bench_*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/libqkit.a
QKIT      := $(BUILD)/qkit
TESTS     := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
FUZZERS   := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
BENCHES   := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

.PHONY: test-more all deps test test-all test-neon bench demo install clean fuzz fuzz-smoke fuzz-long
.SECONDARY:
all: $(QKIT)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(ISA_FLAGS) -c $< -o $@

# Only the ISA files get ISA flags: the rest of the binary runs on any x86-64. On other machines
# the x86 files compile to empty tables.
ifneq ($(filter x86_64 i686 i386,$(shell uname -m)),)
$(BUILD)/%_avx2.o:   ISA_FLAGS = $(AVX2_FLAGS)
$(BUILD)/%_avx512.o: ISA_FLAGS = $(AVX512_FLAGS)
endif

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(QKIT): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(BUILD)/tests/tu.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/fuzz/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/bench_%: $(BUILD)/tests/bench/bench_%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential pkg-config clang libomp-dev \
	    libcjson-dev zlib1g-dev libzstd-dev libcmocka-dev libssl-dev libpcre2-dev python3 \
	    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user \
	    slurmctld slurmd slurm-client munge procps iproute2

# Fast tier: unit tests, then every fuzz target replays its corpus, then the end-to-end script.
test: $(QKIT) $(TESTS) $(FUZZERS)
	@QKIT=$(QKIT) BUILD=$(BUILD) sh tests/run.sh $(TESTS) $(FUZZERS)

# The tests with long cases (QKIT_LONG=1); the rest already ran in the fast tier.
LONG_TESTS := $(BUILD)/tests/test_engine $(BUILD)/tests/test_fp8 $(BUILD)/tests/test_simd_quant
LONG_E2E   := isa.sh

# Adds an ASan+UBSan build of every test, the long cases and a short libFuzzer run of every fuzz
# target (FUZZ_SECONDS each, 10 here). test-more is that without the fast tier (CI runs `make
# test` first, then test-more).
test-all: test test-more
test-more: $(QKIT) $(TESTS) test-neon
	$(MAKE) BUILD=build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" test
	@QKIT_LONG=1 QKIT_E2E="$(LONG_E2E)" QKIT=$(QKIT) BUILD=$(BUILD) sh tests/run.sh $(LONG_TESTS)
	$(MAKE) fuzz-smoke FUZZ_SECONDS=$${FUZZ_SECONDS:-10}

# NEON kernels: cross-compiled for AArch64 and run under qemu-user (Debian: gcc-aarch64-linux-gnu,
# qemu-user, libc6-dev-arm64-cross). Only the quant sources the check needs: no cJSON, cmocka or
# OpenMP. Built twice: baseline ARMv8.0 and ARMv8.2 with the dot-product extension (SDOT).
NEON_CC     ?= aarch64-linux-gnu-gcc
NEON_RUN    ?= qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu
NEON_SRC    := quant/types.c quant/status.c quant/floats.c quant/legacy.c quant/iq4.c quant/kquants.c \
               quant/kquants_search.c quant/dot_neon.c tests/neon/check_neon.c
NEON_CFLAGS := -std=c11 -O2 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror -ffp-contract=off \
               -D_DEFAULT_SOURCE
test-neon:
	@mkdir -p $(BUILD)/neon
	$(NEON_CC) $(NEON_CFLAGS) -march=armv8-a $(NEON_SRC) -lm -o $(BUILD)/neon/check_neon
	$(NEON_CC) $(NEON_CFLAGS) -march=armv8.2-a+dotprod $(NEON_SRC) -lm -o $(BUILD)/neon/check_neon_dotprod
	$(NEON_RUN) $(BUILD)/neon/check_neon
	$(NEON_RUN) $(BUILD)/neon/check_neon_dotprod

bench: $(QKIT) $(BENCHES)
	@for b in $(BENCHES); do QKIT=$(QKIT) $$b || exit 1; done
	@for s in tests/bench/*.sh; do QKIT=$(QKIT) sh $$s || exit 1; done

demo: $(QKIT)
	@QKIT=$(QKIT) sh tests/demo.sh

# libFuzzer builds (clang); `make test` builds the same targets as corpus replayers. The library
# is built in its own tree (the sub-make's $(LIB) is build-fuzz/libqkit.a, so name it literally
# here: this make's $(LIB) is build/'s).
FUZZ_LIB := build-fuzz/libqkit.a
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang SAN="-fsanitize=fuzzer-no-link,address,undefined" $(FUZZ_LIB)
	@mkdir -p build-fuzz/fuzz
	for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	    clang -fsanitize=fuzzer,address,undefined $(CPPFLAGS) -std=c11 -g -O1 -fopenmp $$f \
	    $(FUZZ_LIB) $(LDLIBS) -o build-fuzz/fuzz/$$n || exit 1; done

# libFuzzer campaigns of every target (tests/fuzz/run.sh): FUZZ_SECONDS each (default 30),
# FUZZ_JOBS at a time (default 1), seeded with its corpus; new inputs go to build-fuzz/corpus/NAME
# (the checked-in seeds are not touched). Prints the executions per target; a crash fails it with
# the reproducer's path. fuzz-long is the 20-minute campaign the README's figures come from.
FUZZ_SECONDS ?= 30
FUZZ_JOBS ?= 1
fuzz-smoke: fuzz
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_JOBS)
fuzz-long: fuzz
	@sh tests/fuzz/run.sh 1200 2

install: $(QKIT)
	install -D -m 755 $(QKIT) $(DESTDIR)$(PREFIX)/bin/qkit

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
