# zerohop: one Makefile for the appliance, its tools and its tests.
#
#   make deps     install every Debian package needed to build, run and test (idempotent)
#   make          build everything into build/ (CUDA too, when nvcc is there)
#   make asan     the same with ASan/UBSan into build-asan/
#   make tsan     the ring test under ThreadSanitizer (build-tsan/)
#   make run      deps, build, dev network up, zerohopd in the foreground; Ctrl-C stops it all
#   make test     deps, both builds, every test; ends with the runners' summary lines
#   make gpu-check  on a GPU machine: CUDA tests and the doorbell benchmark (sm_90), under 5 minutes
#   make clean

SHELL := /bin/bash
BUILD ?= build
SANITIZE ?= 0

CC := gcc
PKG_CONFIG ?= pkg-config

# CUDA: found on PATH or in the standard location; without it the CPU-only appliance is built.
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard $(CUDA_HOME)/bin/nvcc))
CUDA_ARCH ?= -gencode=arch=compute_90,code=sm_90

# Library flags; empty (and harmless) before `make deps` has installed the libraries.
DPDK_CFLAGS := $(shell $(PKG_CONFIG) --cflags libdpdk 2>/dev/null)
DPDK_LIBS := $(shell $(PKG_CONFIG) --libs libdpdk 2>/dev/null)
LIB_CFLAGS := $(shell $(PKG_CONFIG) --cflags msgpack liburing libibverbs 2>/dev/null)
MSGPACK_LIBS := $(shell $(PKG_CONFIG) --libs msgpack 2>/dev/null)
URING_LIBS := $(shell $(PKG_CONFIG) --libs liburing 2>/dev/null)
VERBS_LIBS := $(shell $(PKG_CONFIG) --libs libibverbs 2>/dev/null)
SYSTEMD_LIBS := $(shell $(PKG_CONFIG) --libs libsystemd 2>/dev/null)
# gpu_check links json-c statically, so that a binary built here runs on a GPU machine without it.
JSONC_STATIC := $(firstword $(wildcard $(shell $(PKG_CONFIG) --variable=libdir json-c 2>/dev/null)/libjson-c.a) -ljson-c)

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
CFLAGS := -std=gnu11 -O2 -g $(WARN) -D_GNU_SOURCE -fno-strict-aliasing \
	-Ikernels -Igpu -Idataplane -Imgmt -Iplatform
LDFLAGS :=
LDLIBS := -lpthread -lm

ifeq ($(SANITIZE),1)
CFLAGS += -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(SANITIZE),thread)
CFLAGS += -O1 -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
endif

# CUDA objects are not sanitized, so both builds share them.
CUDA_BUILD := build/cuda
ifneq ($(NVCC),)
CUDA_SRCS := gpu/gpu_cuda.cu kernels/krn_cuda.cu
CUDA_OBJS := $(patsubst %.cu,$(CUDA_BUILD)/%.o,$(CUDA_SRCS))
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcudart_static -lrt -ldl -lstdc++
NVCC_FLAGS := $(CUDA_ARCH) -O2 -std=c++17 -Ikernels -Igpu -Imgmt -cudart=static \
	-Xcompiler -Wall,-Wextra,-Werror -Werror all-warnings
CFLAGS += -I$(CUDA_HOME)/include -DZH_HAVE_CUDA=1
else
CUDA_OBJS := $(BUILD)/gpu/gpu_cuda_none.o
CUDA_LIBS :=
endif

KERNEL_SRCS := kernels/krn_msgpack.c kernels/krn_request.c kernels/krn_serve.c kernels/krn_llama.c \
	kernels/krn_ranker.c kernels/krn_cpu_math.c
GPU_SRCS := gpu/gpu_device.c
DP_SRCS := dataplane/dp_parse.c dataplane/dp_port.c dataplane/dp_lcore.c dataplane/dp_nicclk.c
PLANE_SRCS := mgmt/mgmt_registry.c mgmt/mgmt_server.c mgmt/mgmt_http.c mgmt/mgmt_ctl.c

KERNEL_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(KERNEL_SRCS))
GPU_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(GPU_SRCS)) $(CUDA_OBJS)
DP_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(DP_SRCS))
PLANE_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(PLANE_SRCS))

BINS := $(BUILD)/zerohopd $(BUILD)/zerohop-client
UNIT_TESTS := $(BUILD)/tests/test_ring $(BUILD)/tests/test_request $(BUILD)/tests/test_parse \
	$(BUILD)/tests/test_kernels

.PHONY: all asan tsan deps run test test-unit test-integration gpu-check clean help
all: $(BINS) $(UNIT_TESTS)

asan:
	$(MAKE) BUILD=build-asan SANITIZE=1 all

# The ring test under ThreadSanitizer (every state change of the ring is an atomic TSan can check).
tsan:
	$(MAKE) BUILD=build-tsan SANITIZE=thread build-tsan/tests/test_ring
	TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/test_ring

deps:
	@platform/deps.sh

run: deps
	$(MAKE) all
	platform/run-dev.sh $(BUILD)

test: deps
	$(MAKE) all
	$(MAKE) asan
	$(MAKE) BUILD=build-tsan SANITIZE=thread build-tsan/tests/test_ring
	tests/run-all.sh

test-unit: all
	tests/run-unit.sh $(BUILD)

test-integration: all
	tests/run-integration.sh $(BUILD)

# The CUDA tests and the doorbell benchmark; says so and exits 0 where there is no GPU or no nvcc.
gpu-check:
	$(if $(NVCC),$(MAKE) $(BUILD)/tests/gpu_check,@echo "gpu-check: nvcc not found: the CUDA parts are not built")
	tests/gpu/gpu-check.sh $(BUILD)

help:
	@sed -n '3,11p' Makefile

ifeq ($(V),1)
Q :=
else
Q := @
endif

# The kernels are the hot loops: -O3 lets gcc vectorize the loops around the matrix products.
$(BUILD)/kernels/%.o: CFLAGS += -O3

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) $(DPDK_CFLAGS) $(LIB_CFLAGS) -MMD -MP -c $< -o $@

$(CUDA_BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC    $@")
	$(Q)$(NVCC) $(NVCC_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/zerohopd: $(BUILD)/dataplane/zerohopd.o $(DP_OBJS) $(PLANE_OBJS) $(GPU_OBJS) $(KERNEL_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(DPDK_LIBS) $(URING_LIBS) $(MSGPACK_LIBS) $(SYSTEMD_LIBS) $(VERBS_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/zerohop-client: $(BUILD)/tools/zerohop_client.o $(KERNEL_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(MSGPACK_LIBS) $(LDLIBS)

$(BUILD)/tests/test_ring: $(BUILD)/tests/unit/test_ring.o $(KERNEL_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/test_request: $(BUILD)/tests/unit/test_request.o $(KERNEL_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(MSGPACK_LIBS) $(LDLIBS)

$(BUILD)/tests/test_kernels: $(BUILD)/tests/unit/test_kernels.o $(KERNEL_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# test_clock: the device clock map (kernels/zh_clock.h), header-only, and a live CLOCK_MONOTONIC
# calibration against the TSC.
UNIT_TESTS += $(BUILD)/tests/test_clock
# `all` took UNIT_TESTS as it stood when its rule was read; name the test again so that it is built.
all: $(BUILD)/tests/test_clock

$(BUILD)/tests/test_clock: $(BUILD)/tests/unit/test_clock.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/test_parse: $(BUILD)/tests/unit/test_parse.o $(BUILD)/dataplane/dp_parse.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(DPDK_LIBS) $(LDLIBS)

# The rx lcore on header-split frames, in process (net_ring), with the cpu device inline.
all: $(BUILD)/tests/test_split
$(BUILD)/tests/test_split: $(BUILD)/tests/unit/test_split.o $(DP_OBJS) $(BUILD)/dataplane/dp_acl.o $(GPU_OBJS) \
		$(KERNEL_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(DPDK_LIBS) -lrte_net_ring $(VERBS_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/tests/gpu_check: tests/gpu/gpu_check.cu $(filter $(CUDA_BUILD)/%,$(CUDA_OBJS)) $(BUILD)/mgmt/mgmt_model.o \
		$(KERNEL_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC    $@")
	$(Q)$(NVCC) $(NVCC_FLAGS) $< $(filter %.o,$^) -o $@ -lpthread $(JSONC_STATIC)

clean:
	rm -rf build build-asan build-tsan build-fuzz

-include $(shell find build build-asan -name '*.d' 2>/dev/null)

# --- ring benchmark (tests/bench/bench_ring.c) ---
# A benchmark, not a test: `make all` does not build it. `make bench-ring` builds and runs it
# (BENCH_RING_ARGS="--seconds 20" etc. are passed on); `make bench` runs every benchmark.
BENCH_RING_ARGS ?=

.PHONY: bench bench-ring bench-llama bench-path bench-ranker
bench: bench-ring bench-llama bench-path bench-ranker

# The ranker's serving path in-process beside echo's, for a stated shape (a random model).
BENCH_RANKER_SHAPE ?= --vocab 100000 --embedding-dim 32 --dense 16 --hidden 256,128 --outputs 1
bench-ranker: $(BUILD)/bench/bench_ranker $(BUILD)/zerohop-mkmodel
	$(BUILD)/zerohop-mkmodel ranker $(BUILD)/bench/ranker-model --seed 1 $(BENCH_RANKER_SHAPE) >/dev/null
	$(BUILD)/bench/bench_ranker $(BUILD)/bench/ranker-model $(BENCH_RANKER_ARGS)

$(BUILD)/bench/bench_ranker: $(BUILD)/tests/bench/bench_ranker.o $(BUILD)/mgmt/mgmt_model.o $(KERNEL_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(JSONC_LIBS) $(LDLIBS)

# The whole path on one core beside a 5-tuple-swap forwarder, on an in-process ring port.
bench-path: $(BUILD)/bench/bench_path
	$(BUILD)/bench/bench_path $(BENCH_PATH_ARGS)

$(BUILD)/bench/bench_path: $(BUILD)/tests/bench/bench_path.o $(DP_OBJS) $(BUILD)/dataplane/dp_acl.o $(GPU_OBJS) $(KERNEL_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(DPDK_LIBS) -lrte_net_ring $(VERBS_LIBS) $(CUDA_LIBS) $(LDLIBS)

# CPU forward speed on stories260K, one thread, the chosen matrix kernel beside the portable one.
bench-llama: $(BUILD)/bench/bench_llama
	$(BUILD)/bench/bench_llama models/stories260K $(BENCH_LLAMA_ARGS)

$(BUILD)/bench/bench_llama: $(BUILD)/tests/bench/bench_llama.o $(BUILD)/mgmt/mgmt_model.o $(KERNEL_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(JSONC_LIBS) $(LDLIBS)

bench-ring: $(BUILD)/bench/bench_ring
	$(BUILD)/bench/bench_ring $(BENCH_RING_ARGS)

$(BUILD)/bench/bench_ring: $(BUILD)/tests/bench/bench_ring.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(DPDK_LIBS) $(LDLIBS)

# --- conformance and fuzzing (tests/unit/test_mp_suite.c, tests/fuzz/) ---
# test_mp_suite: krn_msgpack against msgpack-c and the msgpack test suite (tests/data/, read with json-c).
# test_mp_random: krn_request_decode against a reference decoder on random and mutated requests.
# `make fuzzers` builds the libFuzzer targets with clang-14 into build-fuzz/ (the kernels' sources
# compiled again, sanitized); `make fuzz` runs each for FUZZ_SECONDS and keeps what it finds in
# build-fuzz/corpus/; `make fuzz-smoke` runs each for 20 s on a temporary copy of the committed seeds
# (tests/run-fuzz-smoke.sh). Crashes land in build-fuzz/artifacts/.
JSONC_CFLAGS := $(shell $(PKG_CONFIG) --cflags json-c 2>/dev/null)
JSONC_LIBS := $(shell $(PKG_CONFIG) --libs json-c 2>/dev/null)
MSGPACK_CFLAGS := $(shell $(PKG_CONFIG) --cflags msgpack 2>/dev/null)

MP_TESTS := $(BUILD)/tests/test_mp_suite $(BUILD)/tests/test_mp_random
UNIT_TESTS += $(MP_TESTS)
# `all` took UNIT_TESTS as it stood when its rule was read; name these again so that it builds them.
all: $(MP_TESTS)

$(BUILD)/tests/unit/test_mp_suite.o: CFLAGS += $(JSONC_CFLAGS)

$(BUILD)/tests/test_mp_suite: $(BUILD)/tests/unit/test_mp_suite.o $(BUILD)/kernels/krn_msgpack.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(MSGPACK_LIBS) $(JSONC_LIBS) $(LDLIBS)

# Only the decoder and its reader: the models behind krn_serve are not this test's business.
$(BUILD)/tests/test_mp_random: $(BUILD)/tests/unit/test_mp_random.o $(BUILD)/kernels/krn_msgpack.o \
		$(BUILD)/kernels/krn_request.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(MSGPACK_LIBS) $(LDLIBS)

FUZZ_CC ?= clang-14
FUZZ_BUILD := build-fuzz
FUZZ_SECONDS ?= 300
# Past a datagram (1472 bytes), so that the size bound is crossed too.
FUZZ_MAX_LEN ?= 2048
FUZZ_NAMES := request msgpack
FUZZ_TARGETS := $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_NAMES))
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer $(WARN) -D_GNU_SOURCE -fno-strict-aliasing -Ikernels $(MSGPACK_CFLAGS)

.PHONY: fuzzers fuzz fuzz-smoke clean-fuzz
fuzzers: $(FUZZ_TARGETS)

# Each target compiles the kernels' sources it needs: the request path all of them, the reader one.
$(FUZZ_BUILD)/fuzz_request: $(KERNEL_SRCS)
$(FUZZ_BUILD)/fuzz_msgpack: kernels/krn_msgpack.c
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard kernels/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(filter %.c,$^) -o $@ $(MSGPACK_LIBS) -lm

# The msgpack target also starts from the requests: they are msgpack too.
fuzz: $(FUZZ_TARGETS)
	@set -e; for t in $(FUZZ_NAMES); do \
		seeds=tests/fuzz/corpus/$$t; [ $$t = msgpack ] && seeds="$$seeds tests/fuzz/corpus/request"; \
		mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts; \
		echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
		$(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -timeout=10 \
			-artifact_prefix=$(FUZZ_BUILD)/artifacts/fuzz_$$t- $(FUZZ_BUILD)/corpus/$$t $$seeds; \
	done

fuzz-smoke:
	tests/run-fuzz-smoke.sh

clean: clean-fuzz
clean-fuzz:
	rm -rf $(FUZZ_BUILD)

# --- tokenizer (tools/zh_tokenizer.c) ---
# The llama2.c tokenizer, linked into zerohop-client for --tokenizer/--prompt. test_tokenizer checks it
# against tests/data/ (tok512.bin and llama2.c's stories260K greedy output), and runs the client
# against a fake appliance on the loopback, so the client is built before it runs.
TOKENIZER_OBJ := $(BUILD)/tools/zh_tokenizer.o
UNIT_TESTS += $(BUILD)/tests/test_tokenizer
# `all` took UNIT_TESTS as it stood when its rule was read; name the test again so that it is built.
all: $(BUILD)/tests/test_tokenizer

# Prerequisite only: the client's link recipe links $^.
$(BUILD)/zerohop-client: $(TOKENIZER_OBJ)

$(BUILD)/tests/unit/test_tokenizer.o: CFLAGS += -Itools

$(BUILD)/tests/test_tokenizer: $(BUILD)/tests/unit/test_tokenizer.o $(TOKENIZER_OBJ) \
		$(BUILD)/kernels/krn_msgpack.o $(BUILD)/kernels/krn_request.o | $(BUILD)/zerohop-client
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# --- model tools (tools/zerohop_convert.c, tools/zerohop_mkmodel.c) ---
# zerohop-convert imports a llama2.c checkpoint, zerohop-mkmodel writes random llama/ranker models; both
# write config.json and model.safetensors through tools/zh_safetensors_write.c (docs/MODELS.md).
# test_tools_models is a shell script (an embedded Python reader); make copies it next to the other
# unit tests so that tests/run-unit.sh runs it, and it finds the tools in the build it sits in.
MODEL_TOOLS := $(BUILD)/zerohop-convert $(BUILD)/zerohop-mkmodel
BINS += $(MODEL_TOOLS)
UNIT_TESTS += $(BUILD)/tests/test_tools_models
# `all` took BINS and UNIT_TESTS as they stood when its rule was read; name these again.
all: $(MODEL_TOOLS) $(BUILD)/tests/test_tools_models

$(BUILD)/zerohop-convert: $(BUILD)/tools/zerohop_convert.o $(BUILD)/tools/zh_safetensors_write.o
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/zerohop-mkmodel: $(BUILD)/tools/zerohop_mkmodel.o $(BUILD)/tools/zh_safetensors_write.o
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/test_tools_models: tests/unit/test_tools_models.sh | $(MODEL_TOOLS)
	@mkdir -p $(dir $@)
	cp $< $@
	chmod +x $@

# --- model repository loader (mgmt/mgmt_model.c) ---
# mgmt_model.o reads a model repository (docs/MODELS.md: config.json and model.safetensors) with json-c
# into an F32 arena laid out by the kernels; zerohopd links MGMT_OBJS. test_model_load writes its models
# and malformed files into a temporary directory. `make fuzz-safetensors` builds the safetensors reader's
# libFuzzer target (clang-14, sanitized, into build-fuzz/) and runs it for FUZZ_SECONDS from the seeds
# in tests/data/models/safetensors-seeds/, keeping what it finds in build-fuzz/corpus/safetensors/.
MGMT_OBJS := $(BUILD)/mgmt/mgmt_model.o
UNIT_TESTS += $(BUILD)/tests/test_model_load
# `all` took UNIT_TESTS as it stood when its rule was read; name the test again so that it is built.
all: $(BUILD)/tests/test_model_load

$(BUILD)/mgmt/mgmt_model.o: CFLAGS += $(JSONC_CFLAGS)

# zerohopd loads its --model repositories with it. Prerequisite only: zerohopd's recipe links $^.
$(BUILD)/zerohopd: $(MGMT_OBJS)
$(BUILD)/zerohopd: LDLIBS += $(JSONC_LIBS)

$(BUILD)/tests/test_model_load: $(BUILD)/tests/unit/test_model_load.o $(MGMT_OBJS) $(KERNEL_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(JSONC_LIBS) $(LDLIBS)

MODEL_FUZZ_SEEDS := tests/data/models/safetensors-seeds
MODEL_FUZZ_DICT := tests/data/models/safetensors.dict
# Room for a header with a few dozen entries.
MODEL_FUZZ_MAX_LEN ?= 4096

.PHONY: fuzz-safetensors
# The reader needs no kernel at run time, but mgmt_model.c calls the kernels' bind functions.
$(FUZZ_BUILD)/fuzz_safetensors: tests/fuzz/fuzz_safetensors.c mgmt/mgmt_model.c kernels/krn_llama.c \
		kernels/krn_ranker.c kernels/krn_cpu_math.c mgmt/mgmt_model.h $(wildcard kernels/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Imgmt $(JSONC_CFLAGS) $(filter %.c,$^) -o $@ $(JSONC_LIBS) -lm

fuzz-safetensors: $(FUZZ_BUILD)/fuzz_safetensors
	mkdir -p $(FUZZ_BUILD)/corpus/safetensors $(FUZZ_BUILD)/artifacts
	$(FUZZ_BUILD)/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -max_len=$(MODEL_FUZZ_MAX_LEN) \
		-timeout=10 -dict=$(MODEL_FUZZ_DICT) -artifact_prefix=$(FUZZ_BUILD)/artifacts/fuzz_safetensors- \
		$(FUZZ_BUILD)/corpus/safetensors $(MODEL_FUZZ_SEEDS)

# --- dataplane hardening (dataplane/dp_parse.c, dataplane/dp_acl.c) ---
# dp_acl.o holds the --allow list (dataplane/dp_acl.h) that the rx lcore checks before the ring.
# test_acl parses prefixes and matches addresses against them; it needs no EAL.
DP_ACL_OBJ := $(BUILD)/dataplane/dp_acl.o
UNIT_TESTS += $(BUILD)/tests/test_acl
# `all` took UNIT_TESTS as it stood when its rule was read; name the test again so that it is built.
all: $(BUILD)/tests/test_acl

# Prerequisite only: zerohopd's recipe links $^.
$(BUILD)/zerohopd: $(DP_ACL_OBJ)

$(BUILD)/tests/test_acl: $(BUILD)/tests/unit/test_acl.o $(DP_ACL_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# --- NIC rx timestamps (dataplane/dp_nicclk.c): the port clock -> TSC map, tested without the EAL ---
UNIT_TESTS += $(BUILD)/tests/test_nicclk
# `all` took UNIT_TESTS as it stood when its rule was read; name the test again so that it is built.
all: $(BUILD)/tests/test_nicclk

$(BUILD)/tests/test_nicclk: $(BUILD)/tests/unit/test_nicclk.o $(BUILD)/dataplane/dp_nicclk.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# --- zerohopctl (tools/zerohopctl.c) ---
# The operator's command line for a running zerohopd over its control socket (docs/MGMT.md); packs and
# unpacks with msgpack-c after the bounded reader (krn_msgpack.o) has checked each reply.
# tests/integration/test_mgmt.py and test_hotswap.py run it against the appliance.
BINS += $(BUILD)/zerohopctl
# `all` took BINS as it stood when its rule was read; name the binary again so that it is built.
all: $(BUILD)/zerohopctl

$(BUILD)/zerohopctl: $(BUILD)/tools/zerohopctl.o $(BUILD)/kernels/krn_msgpack.o
	$(CC) $(LDFLAGS) $^ -o $@ $(MSGPACK_LIBS) $(LDLIBS)

# --- load generator (tools/zerohop_bench.c, tools/zh_udp_server.c) ---
# zerohop-bench: closed, open and poisson load over kernel UDP sockets (sendmmsg/recvmmsg, one pinned
# thread per core asked), latency from the intended send time into a log-linear histogram
# (tools/zh_hist.c), printed, as JSON, as HdrHistogram .hgrm text and as a gnuplot PNG.
# --dpdk sends through a DPDK port instead (tools/zh_bench_dpdk.c: af_xdp or af_packet on the client veth,
# frames and checksums built in software, ARP, TSC timestamps); `make bench-loadgen` compares the two.
# zerohop-udp-echo: the same protocol answered by a plain kernel UDP socket through krn_serve_request,
# the baseline of `make bench-latency` (tests/bench/bench_latency.sh, BENCH_LATENCY_ARGS passed on).
LOADGEN_BINS := $(BUILD)/zerohop-bench $(BUILD)/zerohop-udp-echo
BINS += $(LOADGEN_BINS)
# `all` took BINS as it stood when its rule was read; name these again so that it builds them.
all: $(LOADGEN_BINS)

$(BUILD)/tools/zerohop_bench.o: CFLAGS += -Itools

$(BUILD)/zerohop-bench: $(BUILD)/tools/zerohop_bench.o $(BUILD)/tools/zh_hist.o $(BUILD)/tools/zh_bench_dpdk.o \
		$(BUILD)/kernels/krn_msgpack.o
	$(CC) $(LDFLAGS) $^ -o $@ $(DPDK_LIBS) $(LDLIBS)

$(BUILD)/zerohop-udp-echo: $(BUILD)/tools/zh_udp_server.o $(KERNEL_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

.PHONY: bench-latency
bench: bench-latency
bench-latency: $(BUILD)/zerohopd $(LOADGEN_BINS)
	tests/bench/bench_latency.sh $(BUILD) $(BENCH_LATENCY_ARGS)

# zerohop-bench over kernel sockets against zerohop-bench --dpdk (af_xdp, af_packet), same appliance,
# same run (tests/bench/bench_loadgen.sh, BENCH_LOADGEN_ARGS passed on).
.PHONY: bench-loadgen
bench: bench-loadgen
bench-loadgen: $(BUILD)/zerohopd $(LOADGEN_BINS)
	tests/bench/bench_loadgen.sh $(BUILD) $(BENCH_LOADGEN_ARGS)

# --- config file (mgmt/mgmt_config.c) ---
# mgmt_config.o reads the INI file of `zerohopd --config` with Debian's libinih (docs/MGMT.md,
# "Configuration file"); docs/config-example.ini shows every key. test_config writes its files into a
# temporary directory and also loads the example.
INIH_CFLAGS := $(shell $(PKG_CONFIG) --cflags inih 2>/dev/null)
INIH_LIBS := $(shell $(PKG_CONFIG) --libs inih 2>/dev/null)
UNIT_TESTS += $(BUILD)/tests/test_config
# `all` took UNIT_TESTS as it stood when its rule was read; name the test again so that it is built.
all: $(BUILD)/tests/test_config

$(BUILD)/mgmt/mgmt_config.o: CFLAGS += $(INIH_CFLAGS)

# Prerequisite only: zerohopd's recipe links $^.
$(BUILD)/zerohopd: $(BUILD)/mgmt/mgmt_config.o
$(BUILD)/zerohopd: LDLIBS += $(INIH_LIBS)

$(BUILD)/tests/test_config: $(BUILD)/tests/unit/test_config.o $(BUILD)/mgmt/mgmt_config.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(INIH_LIBS) $(LDLIBS)

# --- platform doctor (platform/doctor.c) ---
# zerohop-doctor checks this machine for what the NIC-to-GPU path needs (docs/DOCTOR.md); it reads
# sysfs and procfs only. test_doctor is a shell script (an embedded Python driver): make copies it next
# to the other unit tests so that tests/run-unit.sh runs it against the doctor of the build it sits in.
DOCTOR := $(BUILD)/zerohop-doctor
BINS += $(DOCTOR)
UNIT_TESTS += $(BUILD)/tests/test_doctor
# `all` took BINS and UNIT_TESTS as they stood when its rule was read; name these again.
all: $(DOCTOR) $(BUILD)/tests/test_doctor

$(DOCTOR): $(BUILD)/platform/doctor.o
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/test_doctor: tests/unit/test_doctor.sh | $(DOCTOR)
	@mkdir -p $(dir $@)
	cp $< $@
	chmod +x $@

# --- zerohop-probe (tools/zerohop_probe.c) ---
# zerohop-probe: per-stage latency from the answers' traces (docs/PROBE.md): kernel UDP requests stamped
# with the TSC, single, rate, payload and idle-gap modes, a table, --csv, --json and gnuplot --plot charts.
# --dpdk sends through zerohop-bench's DPDK port module (tools/zh_bench_dpdk.c) instead of a socket.
# tests/integration/test_probe.py and test_probe_dpdk.py run it against the appliance on the dev network.
BINS += $(BUILD)/zerohop-probe
# `all` took BINS as it stood when its rule was read; name the binary again so that it is built.
all: $(BUILD)/zerohop-probe

$(BUILD)/zerohop-probe: $(BUILD)/tools/zerohop_probe.o $(BUILD)/tools/zh_bench_dpdk.o $(BUILD)/kernels/krn_msgpack.o
	$(CC) $(LDFLAGS) $^ -o $@ $(DPDK_LIBS) $(LDLIBS)

# --- shared tool helpers (tools/zh_cli.c) ---
# Strict decimal option values, the destinations a tool may send to (198.18.0.0/15, 127.0.0.0/8) and
# the msgpack-to-JSON printer, one copy for every command-line tool. zh_cli.o calls nothing in
# libmsgpackc (it only reads msgpack_object), so the tools that do not link it need not.
ZH_CLI_OBJ := $(BUILD)/tools/zh_cli.o

# Prerequisites only: each of these link recipes links $^.
$(BUILD)/zerohop-client: $(ZH_CLI_OBJ)
$(BUILD)/zerohopctl: $(ZH_CLI_OBJ)
$(BUILD)/zerohop-bench: $(ZH_CLI_OBJ)
$(BUILD)/zerohop-probe: $(ZH_CLI_OBJ)
$(BUILD)/zerohop-udp-echo: $(ZH_CLI_OBJ)
