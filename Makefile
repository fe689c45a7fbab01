# heavyd: `make` builds what is shipped: build/heavyd and the worker it runs
# beside it.  `make test-programs` builds the test programs (the worker with
# test tools, the mock LLM, the bench, the unit tests).  `make check` runs
# every test through scripts/check: unit, integration, integration with the
# supervisor under valgrind, and unit + integration again under ASan+UBSan;
# a failed stage does not stop the later ones, and one summary ends the run.

BUILD	?= build
CC	?= cc
OPT	?= -O2 -g
SAN	?=
PKG	 = pkg-config

CFLAGS_ALL = -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE $(OPT) $(SAN) \
	-MMD -MP $(CFLAGS)
LDFLAGS_ALL = $(SAN) $(LDFLAGS)

# hogweed, gmp, libcurl: the OAuth resource server's signatures and JWKS
# fetch (supervisor/oauth.c, jwk.c).  libpq: the PostgreSQL task store
# (supervisor/pgconn.c, store_pg.c).
SUP_CFLAGS = $(shell $(PKG) --cflags libevent json-c yaml-0.1 sqlite3 libcap nettle \
	hogweed libcurl libpq)
SUP_LIBS   = $(shell $(PKG) --libs libevent json-c yaml-0.1 sqlite3 libcap nettle \
	hogweed libcurl libpq) -lgmp
WRK_CFLAGS = $(shell $(PKG) --cflags libcurl json-c libxml-2.0 libseccomp libcap)
# libxml2: headers only; html.c opens it at run time.  No libcurl in the
# worker: each library the zygote maps costs every forked worker memory and
# CPU; only heavyd-egress (EGR_SRC) makes requests.
WRK_LIBS   = $(shell $(PKG) --libs json-c libseccomp libcap) -lm
EGR_LIBS   = $(shell $(PKG) --libs libcurl json-c libseccomp libcap) -lm
TST_CFLAGS = $(shell $(PKG) --cflags criterion)
TST_LIBS   = $(shell $(PKG) --libs criterion)

COMMON_SRC = $(wildcard common/*.c) $(wildcard proto/*.c)
# fixtures.c only goes into the test build, build/test/heavyd.
SUP_SRC    = $(filter-out supervisor/fixtures.c,$(wildcard supervisor/*.c))
# heavyd-egress: its own sources, and the sandbox it shares with workers.
EGR_ONLY   = worker/egress.c worker/egress_curl.c worker/egress_fence.c \
	worker/egress_gov.c worker/egress_main.c worker/egress_sandbox.c
EGR_SRC    = $(EGR_ONLY) worker/backoff.c worker/landlock.c worker/mountns.c \
	worker/sandbox.c worker/seccomp.c worker/cgroup.c
WRK_SRC    = $(filter-out $(EGR_ONLY),$(wildcard worker/*.c))
UNIT_SRC   = $(wildcard tests/unit/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
COMMON_OBJ = $(call obj,$(COMMON_SRC))
# An archive: each program links only the common objects it uses (the
# worker never pulls in the YAML loader, nor libyaml).
COMMON_LIB = $(BUILD)/libcommon.a
SUP_OBJ    = $(call obj,$(SUP_SRC))
WRK_OBJ    = $(call obj,$(WRK_SRC))
EGR_OBJ    = $(call obj,$(EGR_SRC))
HOOK_OBJ   = $(patsubst %.c,$(BUILD)/obj-hooks/%.o,$(WRK_SRC))
FIX_OBJ    = $(patsubst %.c,$(BUILD)/obj-fixtures/%.o,$(SUP_SRC) \
	supervisor/fixtures.c)
UNIT_OBJ   = $(call obj,$(UNIT_SRC))
NOMAIN     = $(filter-out %/main.o %/egress_main.o,$(1))

PROGS = $(BUILD)/heavyd $(BUILD)/heavyd-worker $(BUILD)/heavyd-egress
TEST_PROGS = $(BUILD)/test/heavyd-worker $(BUILD)/test/heavyd-egress \
	$(BUILD)/mockllm $(BUILD)/bench \
	$(BUILD)/bench-http $(BUILD)/defer/heavyd \
	$(BUILD)/unit-tests $(BUILD)/dgramsink

.PHONY: all unit test-programs check check-unit check-integration \
	check-valgrind check-asan check-vm check-conformance asan-programs \
	bench demo clean
all: $(PROGS)

test-programs: $(TEST_PROGS)

$(COMMON_LIB): $(COMMON_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/heavyd: $(SUP_OBJ) $(COMMON_LIB)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(SUP_LIBS)

# Bound at once (-z now) in the zygote, never lazily in a worker: a lazy
# first call to a library runs the dynamic linker's lookup in every forked
# worker and writes the worker's copy of the GOT (a page of its own); with
# full RELRO the resolved GOT is read-only, shared by every fork.
WRK_LDFLAGS = -Wl,-z,now -Wl,-z,relro

$(BUILD)/heavyd-worker: $(WRK_OBJ) $(COMMON_LIB)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(WRK_LDFLAGS) $(WRK_LIBS)

$(BUILD)/heavyd-egress: $(EGR_OBJ) $(COMMON_LIB)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(EGR_LIBS)

# heavyd runs heavyd-egress from beside its worker: the test worker's is
# built with the test hooks too (the sandbox's probes).
$(BUILD)/test/heavyd-egress: $(patsubst %.c,$(BUILD)/obj-hooks/%.o,$(EGR_SRC)) \
    $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(EGR_LIBS)

# The same worker with test-only agent tools that crash, spin and block.
$(BUILD)/test/heavyd-worker: $(HOOK_OBJ) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(WRK_LDFLAGS) $(WRK_LIBS)

# heavyd with the MCP conformance suite's fixtures (supervisor/fixtures.c,
# tests/conformance/FIXTURES.md); it runs the test worker beside it.
$(BUILD)/test/heavyd: $(FIX_OBJ) $(COMMON_LIB) $(BUILD)/test/heavyd-worker \
    $(BUILD)/test/heavyd-egress
	@mkdir -p $(@D)
	$(CC) -o $@ $(FIX_OBJ) $(COMMON_LIB) $(LDFLAGS_ALL) $(SUP_LIBS)

# heavyd whose task store answers every call on a later turn of the loop,
# as a backend that waits for its server does (scripts/deferred-integration).
DEFER_OBJ = $(filter-out $(BUILD)/obj/supervisor/store.o,$(SUP_OBJ)) \
	$(BUILD)/obj-defer/supervisor/store.o
$(BUILD)/defer/heavyd: $(DEFER_OBJ) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(SUP_LIBS)

$(BUILD)/obj-defer/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -DHEAVY_TEST_STORE_DEFER $(SUP_CFLAGS) -c -o $@ $<

# -t: TLS with a certificate of its own (tests/mock/mocktls.c).
$(BUILD)/mockllm: $(call obj,tests/mock/mockllm.c tests/mock/mocktls.c) \
    $(COMMON_LIB)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(SUP_LIBS) \
	    $(shell $(PKG) --libs libevent_openssl openssl) -lm

# A unix datagram socket for the tests: systemd's notify socket, journald's.
$(BUILD)/dgramsink: $(call obj,tests/mock/dgramsink.c)
	$(CC) -o $@ $^ $(LDFLAGS_ALL)

$(BUILD)/bench: $(call obj,tests/bench/bench.c tests/bench/cost.c \
    supervisor/metrics.c) \
    $(COMMON_LIB)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(SUP_LIBS)

$(BUILD)/bench-http: $(call obj,tests/bench/httpbench.c) $(COMMON_LIB)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(SUP_LIBS)

$(BUILD)/unit-tests: $(UNIT_OBJ) $(call NOMAIN,$(SUP_OBJ) $(WRK_OBJ) \
    $(call obj,$(EGR_ONLY))) $(COMMON_LIB)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(TST_LIBS) $(SUP_LIBS) $(WRK_LIBS) \
	    $(EGR_LIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(SUP_CFLAGS) $(WRK_CFLAGS) $(TST_CFLAGS) -c -o $@ $<

$(BUILD)/obj-hooks/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -DHEAVY_TEST_HOOKS $(WRK_CFLAGS) -c -o $@ $<

$(BUILD)/obj-fixtures/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -DHEAVY_TEST_FIXTURES $(SUP_CFLAGS) -c -o $@ $<

# --version names the commit; main.o is rebuilt when it changes.
HEAVY_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
$(shell mkdir -p $(BUILD) && echo $(HEAVY_COMMIT) | cmp -s - $(BUILD)/commit || echo $(HEAVY_COMMIT) > $(BUILD)/commit)
COMMIT_OBJ = $(BUILD)/obj/supervisor/main.o $(BUILD)/obj/worker/main.o \
	$(BUILD)/obj-hooks/worker/main.o $(BUILD)/obj-fixtures/supervisor/main.o \
	$(BUILD)/obj/worker/egress_main.o $(BUILD)/obj-hooks/worker/egress_main.o
$(COMMIT_OBJ): $(BUILD)/commit
$(COMMIT_OBJ): CFLAGS_ALL += -DHEAVY_COMMIT='"$(HEAVY_COMMIT)"'

# The worker too: the worker table's tests run it.
unit: $(BUILD)/unit-tests $(BUILD)/heavyd-worker $(BUILD)/heavyd-egress

check-unit: unit
	$(BUILD)/unit-tests --jobs 2

# One stage each, stopping at the first failure; `make check` runs them all.
check-integration: all test-programs
	HEAVYD_BUILD=$(BUILD) scripts/integration

check-valgrind: all test-programs
	HEAVYD_BUILD=$(BUILD) scripts/valgrind-integration

ASAN_MAKE = $(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g" \
	SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
asan-programs:
	$(ASAN_MAKE) all test-programs
check-asan: asan-programs
	$(ASAN_MAKE) check-unit check-integration

# The official MCP conformance suite against the fixture build on loopback
# (scripts/check's conformance stage; results in build/check/).
check-conformance: all $(BUILD)/test/heavyd
	HEAVYD_BUILD=$(BUILD) scripts/conformance heavyd

# The jobs of tests/vm in a Debian 12 guest under qemu (cached in build/vm);
# results, logs and the guest's console in build/vm-check.
check-vm: all test-programs
	scripts/vm-check build/vm-check

# Installs missing packages first, so a fresh Debian 12 machine can build.
# Every stage runs; the last line is "N passed, N failed, N skipped".
check:
	scripts/check

bench:
	scripts/bench

demo:
	scripts/demo

clean:
	rm -rf build

# (build/vm holds the test guest's Debian tree, whose /etc/rc?.d are no
# dependency files.)
-include $(shell find $(BUILD) -path $(BUILD)/vm -prune -o -name '*.d' -type f -print 2>/dev/null)
include tests/fuzz/fuzz.mk
include scripts/install.mk
