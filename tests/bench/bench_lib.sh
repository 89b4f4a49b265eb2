# SPDX-License-Identifier: MIT
#
# Shared by the dev-network benchmark scripts (bench_latency.sh, bench_loadgen.sh): sourced, not run.
# Each script sets BENCH_NAME (e.g. bench-latency) before sourcing; the functions use it in messages.

# Root, and the listed binaries built in BUILD; exits 2 otherwise.
bench_require() {
	local build=$1 why=$2 bin
	shift 2
	if [ "$(id -u)" != 0 ]; then
		echo "$BENCH_NAME: needs root ($why)" >&2
		exit 2
	fi
	for bin in "$@"; do
		if [ ! -x "$build/$bin" ]; then
			echo "$BENCH_NAME: $build/$bin is not built (make all)" >&2
			exit 2
		fi
	done
}

# The results directory as an absolute path: the one given, or BUILD/bench-results/KIND-DATE; made.
bench_results_dir() {
	local given=$1 build=$2 kind=$3 dir
	dir=${given:-$build/bench-results/$kind-$(date +%Y%m%d-%H%M%S)}
	mkdir -p "$dir"
	(cd "$dir" && pwd)
}

# Stop a server this script started, by its PID: SIGTERM, up to 20 s, then SIGKILL.
bench_stop_pid() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# Wait until LOG has a line starting with TEXT, or PID died, or 60 s passed: 0 when ready.
bench_wait_ready() {
	local log=$1 text=$2 pid=$3
	for _ in $(seq 600); do
		grep -q "^$text" "$log" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "$BENCH_NAME: the server did not start:" >&2
	tail -20 "$log" >&2
	return 1
}
