#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The load generator's own cost: zerohop-bench over kernel UDP sockets against zerohop-bench --dpdk
# (its frames through a DPDK port on the client veth), same appliance, same run, same settings.
#
#   tests/bench/bench_loadgen.sh [BUILD_DIR] [--rounds N] [--count N] [--outstanding N] [--results DIR]
#
# One zerohopd (af_packet on its veth, the echo model served inline by the rx lcore, --idle poll) on
# one dev network of its own; against it, per round, the same closed-loop command three ways, in an
# order that rotates between rounds:
#
#   kernel     zerohop-bench (sendmmsg/recvmmsg on a UDP socket, spinning)
#   af_xdp     zerohop-bench --dpdk, net_af_xdp on the client veth (the recommended port)
#   af_packet  zerohop-bench --dpdk, net_af_packet on the client veth
#
# Same request ({"id", "tokens": [1, 2, 3]}), same --outstanding, --count, --batch, warm-up and client
# core (cpu 0; zerohopd's rx lcore polls cpu 1). Every EAL run has --no-pci and a file prefix of its
# own, every process is stopped by its PID, every step has a timeout, and no round starts after
# BENCH_LOADGEN_BUDGET_S (default 120) seconds. BENCH_LOADGEN_AF_XDP_DEVARGS appends devargs to the
# af_xdp port (",busy_budget=0" turns the PMD's preferred busy polling off).
#
# Prints a markdown table (median of the rounds, min–max) and the ratio of each DPDK port to the kernel
# mode, and keeps the raw JSON lines and every run's .hgrm in the results directory (default
# BUILD_DIR/bench-results/loadgen-DATE).
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build
rounds=3
count=100000
outstanding=8
results=
budget_s=${BENCH_LOADGEN_BUDGET_S:-120}
[ $# -gt 0 ] && [[ "$1" != --* ]] && { build=${1%/}; shift; }
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) rounds=${2:?}; shift 2 ;;
	--count) count=${2:?}; shift 2 ;;
	--outstanding) outstanding=${2:?}; shift 2 ;;
	--results) results=${2:?}; shift 2 ;;
	*) echo "usage: $0 [BUILD_DIR] [--rounds N] [--count N] [--outstanding N] [--results DIR]" >&2; exit 2 ;;
	esac
done
BENCH_NAME=bench-loadgen
. tests/bench/bench_lib.sh
bench_require "$build" "network namespaces, af_packet, af_xdp" zerohopd zerohop-bench
results=$(bench_results_dir "$results" "$build" loadgen)
root=$(pwd)

ip_addr=198.18.0.1
port=9000
net=zlg$$
server_pid=
client_cpu=0
# Extra net_af_xdp devargs, e.g. ",busy_budget=0" (the PMD's default is preferred busy polling, 64).
af_xdp_devargs=${BENCH_LOADGEN_AF_XDP_DEVARGS:-}

cleanup() {
	bench_stop_pid "$server_pid"
	platform/devnet.sh down --name "$net" >/dev/null 2>&1 || true
	# zerohopd's EAL leaves its runtime directory behind; this prefix is this script's own.
	rm -rf "/var/run/dpdk/zh-loadgen-$$"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$(platform/devnet.sh env --name "$net")"
platform/devnet.sh up --name "$net" >/dev/null
log=$results/zerohopd.log
ip netns exec "$APP_NS" "$root/$build/zerohopd" --no-pci --no-huge -m 512 --file-prefix "zh-loadgen-$$" \
	--vdev "net_af_packet0,iface=$APP_IF" --lcores "0@$client_cpu,1@1" --log-level=lib.eal:warning -- \
	--ip "$ip_addr" --udp-port "$port" --device cpu --workers 0 --idle poll >"$log" 2>&1 &
server_pid=$!
bench_wait_ready "$log" "zerohopd: ready" "$server_pid" || exit 1

# The one load command; $1 is kernel, af_xdp or af_packet.
run_bench() {
	local mode=$1 round=$2 out dpdk=() devargs=
	[ "$mode" = af_xdp ] && devargs=$af_xdp_devargs
	if [ "$mode" != kernel ]; then
		dpdk=(--dpdk --src "$CLIENT_IP" -- --no-pci --no-shconf --no-telemetry --no-huge -m 256 --vdev "net_${mode}0,iface=$CLIENT_IF$devargs"
			-l "$client_cpu" --file-prefix "zh-loadgen-$$-$mode-$round" --log-level=lib.eal:warning)
	fi
	out=$(timeout 60 ip netns exec "$CLIENT_NS" "$root/$build/zerohop-bench" --addr "$ip_addr" --port "$port" \
		--mode closed --outstanding "$outstanding" --count "$count" --duration-s 20 --warmup 2000 \
		--cpus "$client_cpu" --json --hgrm "$results/$mode-r$round.hgrm" "${dpdk[@]}" 2>>"$results/stderr.log")
	printf '{"client": "%s", "round": %s, "load1": %s, "result": %s}\n' "$mode" "$round" \
		"$(cut -d' ' -f1 /proc/loadavg)" "$out" >>"$results/runs.jsonl"
	/usr/bin/python3 -c 'import json, sys; r = json.loads(sys.argv[1]); l = r["latency_us"]; print(
		"  %-9s round %s: %8.0f answers/s  p50 %6.1f  p99 %6.1f  p99.9 %7.1f us, %d/%d answered" % (
		sys.argv[2], sys.argv[3], r["throughput_rps"], l["p50"], l["p99"], l["p99_9"], r["answered"],
		r["sent"]))' "$out" "$mode" "$round"
}

echo "bench-loadgen: $(nproc) vCPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel" \
	"$(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench-loadgen: $rounds rounds; closed loop, $outstanding outstanding, $count requests per run; client on" \
	"cpu $client_cpu, zerohopd's rx lcore on cpu 1; results in $results"
: >"$results/runs.jsonl"
modes=(kernel af_xdp af_packet)
done_rounds=0
for round in $(seq "$rounds"); do
	if [ "$SECONDS" -ge "$budget_s" ]; then
		echo "bench-loadgen: time budget of $budget_s s reached after $done_rounds rounds"
		break
	fi
	# Rotate the order, so that no mode always runs first.
	for i in 0 1 2; do
		run_bench "${modes[$(((i + round - 1) % 3))]}" "$round"
	done
	done_rounds=$round
done

/usr/bin/python3 - "$results/runs.jsonl" "$outstanding" <<'EOF' | tee "$results/table.md"
import json, statistics, sys

runs = [json.loads(line) for line in open(sys.argv[1])]
names = {"kernel": "kernel UDP socket", "af_xdp": "--dpdk net_af_xdp", "af_packet": "--dpdk net_af_packet"}
keys = ["p50", "p99", "p99_9"]


def pick(mode):
    return [r["result"] for r in runs if r["client"] == mode]


def cell(vals, fmt):
    if not vals:
        return "-"
    return (fmt + " (" + fmt + "–" + fmt + ")") % (statistics.median(vals), min(vals), max(vals))


rounds = max((r["round"] for r in runs), default=0)
print(f"\nmedian of {rounds} rounds (min–max); closed loop, {sys.argv[2]} outstanding; latency µs\n")
print("| client | answers/s | p50 | p99 | p99.9 | lost |")
print("|---|---|---|---|---|---|")
for mode in ("kernel", "af_xdp", "af_packet"):
    res = pick(mode)
    print(f"| {names[mode]} | {cell([r['throughput_rps'] for r in res], '%.0f')} | " +
          " | ".join(cell([r["latency_us"][k] for r in res], "%.1f") for k in keys) +
          f" | {sum(r['lost'] for r in res)} |")
k = pick("kernel")
for mode in ("af_xdp", "af_packet"):
    d = pick(mode)
    if not (d and k):
        continue
    ratios = ["%.2f" % (statistics.median(r["throughput_rps"] for r in d) /
                        statistics.median(r["throughput_rps"] for r in k))]
    ratios += ["%.2f" % (statistics.median(r["latency_us"][key] for r in d) /
                         statistics.median(r["latency_us"][key] for r in k)) for key in keys]
    print(f"| ratio {mode} / kernel | " + " | ".join(ratios) + " | |")
EOF
echo "bench-loadgen: $done_rounds rounds in $SECONDS s"
