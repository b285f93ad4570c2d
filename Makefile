# llmq - build one `llmq` binary on a static libllmq.
#   make            build ./llmq
#   make check      unit tests (also under ASan+UBSan), CLI tests, end-to-end tests
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

units: $(UNITS)
san-units: $(SAN_UNITS)
tools: $(TOOLS)

check: llmq units san-units tools
	@sh tests/run.sh

bench: llmq tools
	@sh bench/run.sh

demo: llmq tools
	@sh bench/demo.sh

clean:
	rm -rf build build-san llmq

.PHONY: all check bench demo clean units san-units tools
-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d) $(SAN_OBJ:.o=.d)
