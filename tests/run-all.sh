#!/usr/bin/env bash
# Every test, in both builds: unit tests (build/, build-asan/), then the integration suite against the
# zerohopd of each build. Ends with each runner's summary and one total line.
# Expects `make all` and `make asan` to have run (make test does both).
set -uo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
passed=0 failed=0 skipped=0 rc=0
summaries=()

# Add the counts of a line like "... 3 passed, 1 failed, 2 skipped ..." to the totals.
count() {
	local line=$1 n
	n=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+') && passed=$((passed + n))
	n=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+') && failed=$((failed + n))
	n=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+') && skipped=$((skipped + n))
	n=$(grep -oE '[0-9]+ errors?' <<<"$line" | grep -oE '[0-9]+') && failed=$((failed + n))
	summaries+=("$line")
}

run() {
	local name=$1 log
	shift
	echo "== $name: $*"
	log=$(mktemp)
	"$@" 2>&1 | tee "$log"
	local status=${PIPESTATUS[0]}
	local last
	last=$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -n 1)
	if [ -z "$last" ]; then
		last="$name: 0 passed, 1 failed (no summary; exit $status)"
	fi
	count "$last"
	[ "$status" = 0 ] || rc=1
	rm -f "$log"
}

run unit-build tests/run-unit.sh build
run unit-asan tests/run-unit.sh build-asan
run unit-tsan tests/run-unit.sh build-tsan
run fuzz tests/run-fuzz-smoke.sh
run integration tests/run-integration.sh build build-asan

echo
echo "== summary ($(( $(date +%s) - started )) s)"
for s in "${summaries[@]}"; do echo "   $s"; done
[ "$failed" = 0 ] || rc=1
echo "total: $passed passed, $failed failed, $skipped skipped"
exit $rc
