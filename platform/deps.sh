#!/usr/bin/env bash
# Install every Debian package zerohop needs to build, run and test. Idempotent: installs only what
# is missing, and runs `apt-get update` only when something is.
set -euo pipefail

packages=(
	# build
	gcc make pkg-config
	libdpdk-dev dpdk              # DPDK 22.11: EAL, ethdev, af_packet/af_xdp/null/ring PMDs (no testpmd in Debian 12)
	libmsgpack-dev                # msgpack-c 4.0 (tools and the decoder's reference in tests)
	liburing-dev                  # io_uring management plane
	libibverbs-dev                # rdma-core verbs (GPUDirect RDMA checks)
	libsystemd-dev                # sd_notify: Type=notify, the watchdog
	libnuma-dev
	libinih-dev                   # inih 55: the configuration file (mgmt/mgmt_config.c)
	libjson-c-dev                 # json-c: model config.json and safetensors headers; the test suite JSON
	# run: the dev network
	iproute2 ethtool iputils-ping procps
	curl                          # README's /metrics and /healthz examples
	# test
	clang-14 libclang-rt-14-dev   # libFuzzer and sanitizer runtimes
	python3-msgpack python3-scapy python3-pytest python3-numpy
	# bench
	gnuplot-nox                   # zerohop-bench --plot and bench-latency's percentile plots
)

if [ "$(id -u)" != 0 ]; then
	echo "deps: run as root (apt-get install)" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	[[ "$p" == \#* ]] && continue
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#packages[@]} packages present"
	exit 0
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
	cat "$log" >&2
	rm -f "$log"
	echo "deps: apt-get failed" >&2
	exit 1
fi
rm -f "$log"
echo "deps: installed ${#missing[@]} package(s)"
