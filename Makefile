# llmq - build one `llmq` binary on a static libllmq.
#   make            build ./llmq
#   make check      layer check, unit tests (also under ASan+UBSan), CLI tests, end-to-end tests
#   make layers     only the include layer check (tests/layers.sh)
#   make bench      benchmark tables
#   make demo       the main job on the bundled model
CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -pthread -I. -Ilib
# build on every core unless the command line says otherwise (make -jN)
ifeq ($(filter -j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
endif
LDLIBS   = -lcjson -lonig -lz -lopenblas -lm -lpthread
AVX2_FLAGS   = -mavx2 -mfma -mf16c
AVX512_FLAGS = -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16
SAN_FLAGS    = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LIB_SRC  = $(sort $(wildcard lib/*.c lib/*/*.c formats/*.c calib/*.c))
CMD_SRC  = $(sort $(wildcard cmd/*.c))
UNIT_SRC = $(sort $(wildcard tests/unit/t-*.c))
TOOL_SRC = $(sort $(wildcard tests/tools/*.c))

LIB_OBJ  = $(LIB_SRC:%.c=build/%.o)
CMD_OBJ  = $(CMD_SRC:%.c=build/%.o)
SAN_OBJ  = $(LIB_SRC:%.c=build-san/%.o)
UNITS    = $(UNIT_SRC:tests/unit/%.c=build/tests/%)
SAN_UNITS= $(UNIT_SRC:tests/unit/%.c=build-san/tests/%)
TOOLS    = $(TOOL_SRC:tests/tools/%.c=build/tools/%)

all: llmq

llmq: $(CMD_OBJ) build/libllmq.a
	$(CC) $(CFLAGS) -o $@ $(CMD_OBJ) build/libllmq.a $(LDLIBS)

build/libllmq.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

build-san/libllmq.a: $(SAN_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -MMD -MP -c -o $@ $<
build/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -MMD -MP -c -o $@ $<
build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

build-san/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_FLAGS) $(AVX2_FLAGS) -MMD -MP -c -o $@ $<
build-san/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_FLAGS) $(AVX512_FLAGS) -MMD -MP -c -o $@ $<
build-san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -MMD -MP -c -o $@ $<

build/tests/%: tests/unit/%.c build/libllmq.a tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< build/libllmq.a $(LDLIBS)
build-san/tests/%: tests/unit/%.c build-san/libllmq.a tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -o $@ $< build-san/libllmq.a $(LDLIBS)
build/tools/%: tests/tools/%.c build/libllmq.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< build/libllmq.a $(LDLIBS)
# LD_PRELOAD fault injection for the write fault tests (no libllmq in it)
build/tools/faultfs.so: tests/tools/preload/faultfs.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -fPIC -o $@ $< -ldl

units: $(UNITS)
san-units: $(SAN_UNITS)
tools: $(TOOLS) build/tools/faultfs.so

check: llmq units san-units tools
	@sh tests/run.sh

# the include layer order alone (tests/layers.sh; make check runs it too)
layers:
	@sh tests/layers.sh

bench: llmq tools
	@sh bench/run.sh

demo: llmq tools
	@sh bench/demo.sh

# fuzz: libFuzzer targets of every reader of untrusted bytes (tests/fuzz/README).
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_JOBS=1] [FUZZ_TARGETS="json config"]
# needs clang and libFuzzer (Debian: clang, libclang-rt-14-dev or the clang's own)
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
FUZZ_FLAGS    = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC      = $(sort $(wildcard tests/fuzz/fuzz-*.c))
FUZZ_BINS     = $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
FUZZ_OBJ      = $(LIB_SRC:%.c=build-fuzz/%.o)
build-fuzz/libllmq.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
build-fuzz/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(AVX2_FLAGS) -MMD -MP -c -o $@ $<
build-fuzz/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(AVX512_FLAGS) -MMD -MP -c -o $@ $<
build-fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<
build-fuzz/fuzz-%: tests/fuzz/fuzz-%.c tests/fuzz/fuzz.h build-fuzz/libllmq.a
	$(FUZZ_CC) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer -DLLMQ_SRCDIR='"$(CURDIR)"' -o $@ $< build-fuzz/libllmq.a $(LDLIBS)
# the regression tests of what the fuzzers found, under clang's UBSan too
# (it reports NULL + 0, which gcc's does not)
build-fuzz/tests/%: tests/unit/%.c build-fuzz/libllmq.a tests/test.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -o $@ $< build-fuzz/libllmq.a $(LDLIBS)
fuzz-targets: $(FUZZ_BINS) build-fuzz/tests/t-fuzzfound
fuzz: fuzz-targets
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) sh tests/fuzz/fuzz.sh $(FUZZ_TARGETS)
fuzz-clean:
	rm -rf build-fuzz
clean: fuzz-clean
.PHONY: fuzz fuzz-targets fuzz-clean
-include $(FUZZ_OBJ:.o=.d)

clean:
	rm -rf build build-san llmq

.PHONY: all check bench demo clean units san-units tools layers
-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d) $(SAN_OBJ:.o=.d)
