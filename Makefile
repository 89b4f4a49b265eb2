# zerohop: one Makefile for the appliance, its tools and its tests.
#
#   make deps     install every Debian package needed to build, run and test (idempotent)
#   make          build everything into build/ (CUDA too, when nvcc is there)
#   make asan     the same with ASan/UBSan into build-asan/
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

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
CFLAGS := -std=gnu11 -O2 -g $(WARN) -D_GNU_SOURCE -fno-strict-aliasing \
	-Ikernels -Igpu -Idataplane -Imgmt -Iplatform
LDFLAGS :=
LDLIBS := -lpthread -lm

ifeq ($(SANITIZE),1)
CFLAGS += -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

# CUDA objects are not sanitized, so both builds share them.
CUDA_BUILD := build/cuda
ifneq ($(NVCC),)
CUDA_SRCS := gpu/gpu_cuda.cu kernels/krn_cuda.cu
CUDA_OBJS := $(patsubst %.cu,$(CUDA_BUILD)/%.o,$(CUDA_SRCS))
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcudart_static -lrt -ldl -lstdc++
NVCC_FLAGS := $(CUDA_ARCH) -O2 -std=c++17 -Ikernels -Igpu -cudart=static \
	-Xcompiler -Wall,-Wextra,-Werror -Werror all-warnings
CFLAGS += -I$(CUDA_HOME)/include -DZH_HAVE_CUDA=1
else
CUDA_OBJS := $(BUILD)/gpu/gpu_cuda_none.o
CUDA_LIBS :=
endif

KERNEL_SRCS := kernels/krn_msgpack.c kernels/krn_request.c kernels/krn_serve.c
GPU_SRCS := gpu/gpu_device.c
DP_SRCS := dataplane/dp_parse.c dataplane/dp_port.c dataplane/dp_lcore.c

KERNEL_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(KERNEL_SRCS))
GPU_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(GPU_SRCS)) $(CUDA_OBJS)
DP_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(DP_SRCS))

BINS := $(BUILD)/zerohopd $(BUILD)/zerohop-client
UNIT_TESTS := $(BUILD)/tests/test_ring $(BUILD)/tests/test_request $(BUILD)/tests/test_parse

.PHONY: all asan deps run test test-unit test-integration gpu-check clean help
all: $(BINS) $(UNIT_TESTS)

asan:
	$(MAKE) BUILD=build-asan SANITIZE=1 all

deps:
	@platform/deps.sh

run: deps
	$(MAKE) all
	platform/run-dev.sh $(BUILD)

test: deps
	$(MAKE) all
	$(MAKE) asan
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
	@sed -n '3,10p' Makefile

ifeq ($(V),1)
Q :=
else
Q := @
endif

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) $(DPDK_CFLAGS) $(LIB_CFLAGS) -MMD -MP -c $< -o $@

$(CUDA_BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC    $@")
	$(Q)$(NVCC) $(NVCC_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/zerohopd: $(BUILD)/dataplane/zerohopd.o $(DP_OBJS) $(GPU_OBJS) $(KERNEL_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(DPDK_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/zerohop-client: $(BUILD)/tools/zerohop_client.o $(KERNEL_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(MSGPACK_LIBS) $(LDLIBS)

$(BUILD)/tests/test_ring: $(BUILD)/tests/unit/test_ring.o $(KERNEL_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/test_request: $(BUILD)/tests/unit/test_request.o $(KERNEL_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(MSGPACK_LIBS) $(LDLIBS)

$(BUILD)/tests/test_parse: $(BUILD)/tests/unit/test_parse.o $(BUILD)/dataplane/dp_parse.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(DPDK_LIBS) $(LDLIBS)

$(BUILD)/tests/gpu_check: tests/gpu/gpu_check.cu $(filter $(CUDA_BUILD)/%,$(CUDA_OBJS))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC    $@")
	$(Q)$(NVCC) $(NVCC_FLAGS) $< $(filter %.o,$^) -o $@ -lpthread

clean:
	rm -rf build build-asan

-include $(shell find build build-asan -name '*.d' 2>/dev/null)

# --- ring benchmark (tests/bench/bench_ring.c) ---
# A benchmark, not a test: `make all` does not build it. `make bench-ring` builds and runs it
# (BENCH_RING_ARGS="--seconds 20" etc. are passed on); `make bench` runs every benchmark.
BENCH_RING_ARGS ?=

.PHONY: bench bench-ring
bench: bench-ring

bench-ring: $(BUILD)/bench/bench_ring
	$(BUILD)/bench/bench_ring $(BENCH_RING_ARGS)

$(BUILD)/bench/bench_ring: $(BUILD)/tests/bench/bench_ring.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(DPDK_LIBS) $(LDLIBS)
