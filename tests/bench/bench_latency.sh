#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Latency on the dev network: zerohopd against a plain kernel UDP-socket server answering the same echo
# requests, same load, same client, same run.
#
#   tests/bench/bench_latency.sh [BUILD_DIR] [--rounds N] [--count N] [--results DIR] [--idle poll|backoff]
#
# Each round runs both servers, one after the other (their order alternates between rounds, so that
# neither always goes first), and against each the same zerohop-bench command twice: closed loop, one
# request outstanding, first with a spinning client (non-blocking receive loop), then with a blocking one.
#
#   zerohopd          af_packet on a veth, the built-in echo model served inline by the rx lcore
#                     (--workers 0), --idle poll by default: one core polls, as in production;
#   zerohop-udp-echo  --busy-poll: a non-blocking recvmmsg loop on one core, the fair kernel baseline
#                     (docs/ENVIRONMENT notes: a blocking kernel server mostly measures vCPU wake-ups).
#
# Only one server exists at a time: each polls a core, and a 2-vCPU machine has one to spare beside the
# client. The server gets core 1 (zerohopd: main lcore 0, which sleeps, and rx lcore 1), the client core
# 0; BENCH_LATENCY_LCORES overrides zerohopd's --lcores (e.g. "0@1,1@1" puts its control thread beside
# the rx lcore instead of beside the client). Every server and dev network lives in namespaces of its
# own (devnet.sh --name), every EAL run has --no-pci, every process is stopped by its PID, every step
# has a timeout, and no round starts after BENCH_LATENCY_BUDGET_S (default 150) seconds: the whole run
# stays under three minutes (a quiet 4-round run takes about 30 s).
#
# Prints a markdown table (median of the rounds, with the range) and the zerohop/kernel ratio, and keeps
# every run's .hgrm, the raw JSON lines and latency.png (the last round's four distributions) in the
# results directory (default BUILD_DIR/bench-results/latency-DATE).
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build
rounds=4
count=100000
idle=poll
results=
budget_s=${BENCH_LATENCY_BUDGET_S:-150}
# zerohopd's port: af_packet (the default) or af_xdp (BENCH_LATENCY_PMD=net_af_xdp0).
zh_pmd=${BENCH_LATENCY_PMD:-net_af_packet0}
case "$zh_pmd" in
net_af_packet0) zh_port_name=af_packet ;;
net_af_xdp0) zh_port_name=af_xdp ;;
*) echo "bench-latency: BENCH_LATENCY_PMD is net_af_packet0 or net_af_xdp0, not $zh_pmd" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && [[ "$1" != --* ]] && { build=${1%/}; shift; }
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) rounds=${2:?}; shift 2 ;;
	--count) count=${2:?}; shift 2 ;;
	--results) results=${2:?}; shift 2 ;;
	--idle) idle=${2:?}; shift 2 ;;
	*) echo "usage: $0 [BUILD_DIR] [--rounds N] [--count N] [--results DIR] [--idle poll|backoff]" >&2; exit 2 ;;
	esac
done
BENCH_NAME=bench-latency
. tests/bench/bench_lib.sh
bench_require "$build" "network namespaces, af_packet" zerohopd zerohop-bench zerohop-udp-echo
results=$(bench_results_dir "$results" "$build" latency)
root=$(pwd)

ip_addr=198.18.0.1
port=9000
zh_net=zlz$$
kn_net=zlk$$
server_pid=
client_cpu=0
server_cpu=1
# zerohopd's lcores: main (the control thread, which wakes ~100 times a second) and the rx lcore.
zh_lcores=${BENCH_LATENCY_LCORES:-0@$client_cpu,1@$server_cpu}

stop_server() {
	bench_stop_pid "$server_pid"
	server_pid=
}

cleanup() {
	stop_server
	platform/devnet.sh down --name "$zh_net" >/dev/null 2>&1 || true
	platform/devnet.sh down --name "$kn_net" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Wait until LOG has a line starting with TEXT, or the server died, or 60 s passed.
wait_ready() {
	bench_wait_ready "$1" "$2" "$server_pid"
}

eval "$(platform/devnet.sh env --name "$zh_net" | sed 's/^/ZH_/')"
eval "$(platform/devnet.sh env --name "$kn_net" | sed 's/^/KN_/')"
platform/devnet.sh up --name "$zh_net" >/dev/null
platform/devnet.sh up --name "$kn_net" >/dev/null
# The kernel server's own network: its app-side veth gets the address, inside its own namespace.
ip -n "$KN_APP_NS" addr replace "$ip_addr/24" dev "$KN_APP_IF"

start_zerohop() {
	local log=$results/zerohopd-r$1.log
	ip netns exec "$ZH_APP_NS" "$root/$build/zerohopd" --no-pci --no-huge -m 512 \
		--file-prefix "zh-bench-$$-$1" --vdev "$zh_pmd,iface=$ZH_APP_IF" --lcores "$zh_lcores" \
		--log-level=lib.eal:warning -- --ip "$ip_addr" --udp-port "$port" --device cpu --workers 0 \
		--idle "$idle" >"$log" 2>&1 &
	server_pid=$!
	wait_ready "$log" "zerohopd: ready"
}

start_kernel() {
	local log=$results/udp-echo-r$1.log
	ip netns exec "$KN_APP_NS" "$root/$build/zerohop-udp-echo" --bind "$ip_addr" --port "$port" --busy-poll \
		--cpu "$server_cpu" --duration-s 300 >"$log" 2>&1 &
	server_pid=$!
	wait_ready "$log" "zerohop-udp-echo: ready"
}

# The one load command, against the server reachable from client namespace $1.
run_bench() {
	local ns=$1 label=$2 wait=$3 round=$4 out
	out=$(timeout 60 ip netns exec "$ns" "$root/$build/zerohop-bench" --addr "$ip_addr" --port "$port" \
		--mode closed --outstanding 1 --count "$count" --duration-s 20 --warmup 2000 --cpus "$client_cpu" \
		--wait "$wait" --json --hgrm "$results/$label-$wait-r$round.hgrm")
	printf '{"server": "%s", "wait": "%s", "round": %s, "load1": %s, "result": %s}\n' "$label" "$wait" \
		"$round" "$(cut -d' ' -f1 /proc/loadavg)" "$out" >>"$results/runs.jsonl"
	/usr/bin/python3 -c 'import json, sys; r = json.loads(sys.argv[1]); l = r["latency_us"]; print(
		"  %-8s %-5s round %s: p50 %6.1f  p99 %6.1f  p99.9 %7.1f  max %8.1f us, %d/%d answered" % (
		sys.argv[2], sys.argv[3], sys.argv[4], l["p50"], l["p99"], l["p99_9"], l["max"], r["answered"],
		r["sent"]))' "$out" "$label" "$wait" "$round"
}

run_server() {
	local which=$1 round=$2
	if [ "$which" = zerohop ]; then
		start_zerohop "$round"
		run_bench "$ZH_CLIENT_NS" zerohop spin "$round"
		run_bench "$ZH_CLIENT_NS" zerohop block "$round"
	else
		start_kernel "$round"
		run_bench "$KN_CLIENT_NS" kernel spin "$round"
		run_bench "$KN_CLIENT_NS" kernel block "$round"
	fi
	stop_server
}

echo "bench-latency: $(nproc) vCPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel" \
	"$(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench-latency: $rounds rounds of $count round trips per run; zerohopd --idle $idle --workers 0;" \
	"client on cpu $client_cpu, server on cpu $server_cpu; results in $results"
: >"$results/runs.jsonl"
done_rounds=0
for round in $(seq "$rounds"); do
	if [ "$SECONDS" -ge "$budget_s" ]; then
		echo "bench-latency: time budget of $budget_s s reached after $done_rounds rounds"
		break
	fi
	if [ $((round % 2)) = 1 ]; then order="zerohop kernel"; else order="kernel zerohop"; fi
	for which in $order; do
		run_server "$which" "$round"
	done
	done_rounds=$round
done

/usr/bin/python3 - "$results/runs.jsonl" "$zh_port_name" <<'EOF' | tee "$results/table.md"
import json, statistics, sys

runs = [json.loads(line) for line in open(sys.argv[1])]
names = {"zerohop": f"zerohopd ({sys.argv[2]}, inline, poll)", "kernel": "zerohop-udp-echo --busy-poll"}
keys = [("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9")]


def pick(server, wait):
    return [r["result"] for r in runs if r["server"] == server and r["wait"] == wait]


def cell(results, key):
    vals = [r["latency_us"][key] for r in results]
    if not vals:
        return "-"
    return "%.1f (%.1f–%.1f)" % (statistics.median(vals), min(vals), max(vals))


rounds = max((r["round"] for r in runs), default=0)
print(f"\nmedian of {rounds} rounds (min–max), µs; closed loop, 1 outstanding\n")
print("| client | server | " + " | ".join(k[1] for k in keys) + " | answers/s | lost |")
print("|---|---|" + "---|" * len(keys) + "---|---|")
for wait in ("spin", "block"):
    for server in ("zerohop", "kernel"):
        res = pick(server, wait)
        lost = sum(r["lost"] for r in res)
        rps = statistics.median(r["throughput_rps"] for r in res) if res else 0
        print(f"| {wait} | {names[server]} | " + " | ".join(cell(res, k[0]) for k in keys) +
              f" | {rps:.0f} | {lost} |")
    z, k = pick("zerohop", wait), pick("kernel", wait)
    if z and k:
        ratios = []
        for key, _ in keys:
            ratios.append("%.2f" % (statistics.median(r["latency_us"][key] for r in z) /
                                    statistics.median(r["latency_us"][key] for r in k)))
        ratios.append("%.2f" % (statistics.median(r["throughput_rps"] for r in z) /
                                statistics.median(r["throughput_rps"] for r in k)))
        print(f"| {wait} | ratio zerohop / kernel | " + " | ".join(ratios) + " | |")
EOF

# The last round's four distributions on one percentile plot.
if command -v gnuplot >/dev/null; then
	last=$done_rounds
	gnuplot <<EOF
set terminal pngcairo size 1024,640 font 'sans,10'
set encoding utf8
set output '$results/latency.png'
set title 'zerohopd vs kernel UDP busy-poll server, closed loop, 1 outstanding (round $last)'
set logscale x
set xrange [1:100000]
set xtics ('0%%' 1, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000)
set xlabel 'percentile'
set ylabel 'latency (µs)'
set logscale y
set format y '%g'
set grid
set key top left
plot '$results/zerohop-spin-r$last.hgrm' using 4:1 with lines lw 2 title 'zerohopd, spinning client', \
     '$results/kernel-spin-r$last.hgrm' using 4:1 with lines lw 2 title 'kernel busy-poll, spinning client', \
     '$results/zerohop-block-r$last.hgrm' using 4:1 with lines lw 2 title 'zerohopd, blocking client', \
     '$results/kernel-block-r$last.hgrm' using 4:1 with lines lw 2 title 'kernel busy-poll, blocking client'
EOF
	echo "bench-latency: plot $results/latency.png"
else
	echo "bench-latency: gnuplot is not installed (gnuplot-nox): no plot"
fi
echo "bench-latency: $done_rounds rounds in $SECONDS s"
