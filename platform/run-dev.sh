#!/usr/bin/env bash
# `make run`: bring the dev network up, run zerohopd on it with the embedded default (the cpu device,
# the stories260K model, and the diagnostic `echo` model), ask it for one story to show it works, then
# keep it in the foreground until Ctrl-C, which stops it and takes the network down again.
#
#   platform/run-dev.sh [BUILD_DIR] [-- extra zerohopd options]
set -euo pipefail

cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
[ "${1:-}" = "--" ] && shift
eval "$(platform/devnet.sh env)"
appliance_ip=198.18.0.1
pid=

cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	platform/devnet.sh down >/dev/null 2>&1 || true
	echo "run: dev network removed"
}
trap cleanup EXIT
# Ctrl-C: stop the appliance (by its PID) and let the EXIT trap clean up.
trap 'exit 0' INT TERM

platform/devnet.sh up
client="ip netns exec $CLIENT_NS $build/zerohop-client --addr $appliance_ip"

# --no-pci: never probe this machine's own NIC. --no-huge: no hugepage set-up needed on a dev machine.
# --idle backoff: a dev machine shares its cores with the client.
ip netns exec "$APP_NS" "$build/zerohopd" \
	--no-pci --no-huge -m 512 --file-prefix "zh-run-$$" --vdev "net_af_packet0,iface=$APP_IF" -l 0-1 \
	--log-level=lib.eal:warning \
	-- --ip "$appliance_ip" --udp-port 9000 --idle backoff \
	--model stories260K=models/stories260K --model echo "$@" &
pid=$!

# Ready when it answers; bounded: 60 tries, 0.5 s each.
for _ in $(seq 60); do
	kill -0 "$pid" 2>/dev/null || { echo "run: zerohopd exited" >&2; exit 1; }
	$client --model echo --timeout-ms 500 1 >/dev/null 2>&1 && break
	sleep 0.5
done

story="$client --tokenizer models/stories260K/tok512.bin --prompt '' --max-new 200"
echo
echo "run: asking for a story:  $story"
echo
eval "$story" || true
cat <<MSG


run: zerohopd serves stories260K (the default) and echo on $APP_NS/$APP_IF, $appliance_ip UDP 9000.
run: try, in another terminal:

    $story
    $client --tokenizer models/stories260K/tok512.bin --prompt 'Once upon a time' --max-new 60 --temperature 0.8 --seed 7
    $client --model echo 1 2 3
    $build/zerohopctl status;  $build/zerohopctl models;  $build/zerohopctl stats
    ip netns exec $APP_NS curl -s 127.0.0.1:9100/metrics

run: Ctrl-C stops the appliance and removes the dev network.
MSG
wait "$pid"
