#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tests/run-unit.sh BUILD_DIR: run every unit test binary in BUILD_DIR/tests/ (the executables named
# test_*), each under a time limit, and report one line per test and a summary line:
#
#   PASS test_ring (1.3 s)
#   FAIL test_parse (0.2 s, exit 1)
#   SKIP test_gpu (0.0 s)
#   unit-build: 2 passed, 1 failed, 1 skipped
#
# A test exits 0 to pass, 77 to skip (the machine lacks what it needs) and anything else to fail; a
# failing or skipped test's output is shown, a passing one's is not. Exits 1 if any test failed, 2 on
# a usage error or when there is no test to run (a runner that ran nothing must not look green).
set -euo pipefail

TEST_TIMEOUT_S=${TEST_TIMEOUT_S:-120}

if [[ $# -ne 1 ]]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build_dir=${1%/}
tests_dir=$build_dir/tests
# One word before the colon, so that the summary line is easy to pick out of a log.
label=unit-$(basename -- "$build_dir")

if [[ ! -d $tests_dir ]]; then
	echo "$0: no $tests_dir (build first: make, or make asan)" >&2
	exit 2
fi

tests=()
for t in "$tests_dir"/test_*; do
	[[ -f $t && -x $t ]] && tests+=("$t")
done
if [[ ${#tests[@]} -eq 0 ]]; then
	echo "$0: no test_* executables in $tests_dir" >&2
	exit 2
fi

passed=0
failed=0
skipped=0
for t in "${tests[@]}"; do
	name=$(basename -- "$t")
	start=$EPOCHREALTIME
	rc=0
	# stdin from /dev/null: a test must never wait for a terminal.
	output=$(timeout --kill-after=10 "$TEST_TIMEOUT_S" "$t" </dev/null 2>&1) || rc=$?
	end=$EPOCHREALTIME
	# EPOCHREALTIME is seconds.microseconds (the separator follows the locale); bash counts in microseconds.
	elapsed_us=$(( ${end//[.,]/} - ${start//[.,]/} ))
	elapsed=$(printf '%d.%01d' $((elapsed_us / 1000000)) $((elapsed_us / 100000 % 10)))
	case $rc in
	0)
		echo "PASS $name ($elapsed s)"
		passed=$((passed + 1))
		;;
	77)
		echo "SKIP $name ($elapsed s)"
		[[ -n $output ]] && printf '%s\n' "$output" | sed 's/^/    /'
		skipped=$((skipped + 1))
		;;
	*)
		if [[ $rc -eq 124 || $rc -eq 137 ]]; then
			why="timed out after $TEST_TIMEOUT_S s"
		else
			why="exit $rc"
		fi
		echo "FAIL $name ($elapsed s, $why)"
		[[ -n $output ]] && printf '%s\n' "$output" | sed 's/^/    /'
		failed=$((failed + 1))
		;;
	esac
done

echo "$label: $passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
