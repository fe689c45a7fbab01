# libFuzzer harnesses for every parser of untrusted input (tests/fuzz/).
# `make fuzz` runs each for FUZZ_TIME seconds (default 60), keeping what it
# learns in build/fuzz/corpus/NAME and any crash in build/fuzz/artifacts;
# `make fuzz-smoke` replays the seed corpus and a few thousand mutations of
# it, as a step of `make check`.  clang 14 (Debian's clang and
# libclang-rt-14-dev) builds them.

FUZZ_CC		?= clang
FUZZ_TIME	?= 60
FUZZ_RUNS	?= 3000
FUZZ_BUILD	 = $(BUILD)/fuzz
FUZZ_SAN	 = -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
FUZZ_CFLAGS	 = -std=gnu11 -Wall -Wextra -Werror -Wno-missing-field-initializers \
	-D_GNU_SOURCE -g -O1 -MMD -MP \
	$(FUZZ_SAN) -fsanitize=fuzzer-no-link $(SUP_CFLAGS) $(WRK_CFLAGS)
FUZZ_NAMES	 = rpc calc plan review llm search html schema proto egress configfile mcp http jwt tokens h1

fuzz_obj = $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(1))
# The parsers under test, built with the fuzzer's instrumentation, in
# archives: each harness links only the objects it uses.
FUZZ_LIB	 = $(FUZZ_BUILD)/libparsers.a
FUZZ_LIB_SRC	 = $(COMMON_SRC) supervisor/rpc.c supervisor/oauth.c supervisor/jwk.c \
	supervisor/loop.c supervisor/h1.c \
	$(filter-out worker/main.c worker/egress_main.c,$(sort $(WRK_SRC) $(EGR_SRC)))
FUZZ_PROGS	 = $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_NAMES))

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_LIB): $(call fuzz_obj,$(FUZZ_LIB_SRC))
	$(AR) rcs $@ $^

# The supervisor, for the MCP harness: all of it but main().
FUZZ_SUP	 = $(FUZZ_BUILD)/libsupervisor.a
$(FUZZ_SUP): $(call fuzz_obj,$(filter-out supervisor/main.c supervisor/rpc.c supervisor/oauth.c supervisor/jwk.c supervisor/loop.c supervisor/h1.c,$(SUP_SRC)))
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_mcp: $(call fuzz_obj,tests/fuzz/fuzz_mcp.c) $(FUZZ_SUP) \
    $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(SUP_LIBS) $(WRK_LIBS)

$(FUZZ_BUILD)/fuzz_http: $(call fuzz_obj,tests/fuzz/fuzz_http.c) $(FUZZ_SUP) \
    $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(SUP_LIBS) $(WRK_LIBS)

$(FUZZ_BUILD)/fuzz_%: $(call fuzz_obj,tests/fuzz/fuzz_%.c) $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(SUP_LIBS) $(WRK_LIBS)

.PHONY: fuzz-build fuzz fuzz-smoke
fuzz-build: $(FUZZ_PROGS)

fuzz: fuzz-build
	FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz run $(FUZZ_TIME) $(FUZZ_NAMES)

fuzz-smoke: fuzz-build
	FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz smoke $(FUZZ_RUNS) $(FUZZ_NAMES)
