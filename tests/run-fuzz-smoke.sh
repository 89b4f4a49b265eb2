#!/usr/bin/env bash
# Build the libFuzzer targets (make fuzzers, into build-fuzz/) and run each for FUZZ_SMOKE_SECONDS
# (default 20) on a temporary copy of its committed seeds, so the repository is never written; a
# crash, a leak or a failed check is saved under build-fuzz/artifacts/. Prints per target its executions,
# speed and coverage, and ends with "fuzz: N passed, N failed, N skipped" (one per target).
# A machine without clang-14 and its runtimes (make deps installs them) skips every target.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SMOKE_SECONDS:-20}
max_len=2048
targets=(request msgpack safetensors)
passed=0 failed=0 skipped=0

summary() {
	echo "fuzz: $passed passed, $failed failed, $skipped skipped"
}

if ! command -v clang-14 >/dev/null 2>&1; then
	echo "fuzz: SKIP: clang-14 not found (make deps installs clang-14 and libclang-rt-14-dev)"
	skipped=${#targets[@]}
	summary
	exit 0
fi
if ! make -s fuzzers build-fuzz/fuzz_safetensors; then
	echo "fuzz: FAIL: make fuzzers"
	failed=${#targets[@]}
	summary
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p build-fuzz/artifacts

for t in "${targets[@]}"; do
	corpus=$work/corpus-$t
	log=$work/$t.log
	mkdir -p "$corpus"
	extra=()
	if [ "$t" = safetensors ]; then
		# The model reader's seeds and dictionary live with the model test data.
		cp tests/data/models/safetensors-seeds/* "$corpus"/
		extra=(-dict=tests/data/models/safetensors.dict)
	else
		cp tests/fuzz/corpus/"$t"/* "$corpus"/
	fi
	# The msgpack reader also starts from the requests: they are msgpack too.
	[ "$t" = msgpack ] && cp tests/fuzz/corpus/request/* "$corpus"/
	started=$(date +%s)
	# -max_total_time ends a healthy run; timeout ends one that hangs outside libFuzzer's control.
	timeout -k 10 $((seconds + 60)) build-fuzz/fuzz_"$t" -max_total_time="$seconds" -max_len="$max_len" \
		-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" \
		-artifact_prefix=build-fuzz/artifacts/fuzz_"$t"- "$corpus" >"$log" 2>&1
	status=$?
	execs=$(grep -oE 'stat::number_of_executed_units:[[:space:]]+[0-9]+' "$log" | grep -oE '[0-9]+$')
	rate=$(grep -oE 'stat::average_exec_per_sec:[[:space:]]+[0-9]+' "$log" | grep -oE '[0-9]+$')
	cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
	files=$(find "$corpus" -type f | wc -l)
	if [ "$status" = 0 ]; then
		passed=$((passed + 1))
		echo "fuzz_$t: ok, $(( $(date +%s) - started )) s, ${execs:-?} execs (${rate:-?}/s), ${cov:-cov ?}, corpus $files files"
	else
		failed=$((failed + 1))
		echo "fuzz_$t: FAIL (exit $status); the end of its log:"
		tail -n 40 "$log"
		ls -1 build-fuzz/artifacts/fuzz_"$t"-* 2>/dev/null | sed 's/^/  saved: /'
	fi
done

summary
[ "$failed" = 0 ]
