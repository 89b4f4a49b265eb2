#!/usr/bin/env bash
# make gpu-check: the CUDA tests and the doorbell benchmark in one bounded run (under 5 minutes on an
# H200). Prints a short table last; full results go to $OUT (when set, as on the device machine) or
# BUILD_DIR/gpu-check/. Without a GPU or without nvcc it says so and exits 0: nothing is measured.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
bin=$build/tests/gpu_check
out=${OUT:-$build/gpu-check}
mkdir -p "$out"

if [ ! -x "$bin" ]; then
	echo "gpu-check: $bin was not built (no nvcc at build time): nothing to check"
	exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1; then
	nvidia-smi --query-gpu=name,driver_version,pci.bus_id,clocks.sm,clocks.max.sm,persistence_mode \
		--format=csv >"$out/nvidia-smi.csv" 2>&1 || true
	cat "$out/nvidia-smi.csv"
fi
# 100k round trips per mode by default; GPU_CHECK_ROUND_TRIPS overrides.
timeout 280 "$bin" "$out/gpu-check-results.txt" "${GPU_CHECK_ROUND_TRIPS:-100000}" 2>&1 | tee "$out/gpu-check.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 124 ] && echo "gpu-check: timed out after 280 s"
exit "$rc"
