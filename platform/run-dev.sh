#!/usr/bin/env bash
# `make run`: bring the dev network up, run zerohopd in the foreground on it with the embedded default
# (the cpu device, the echo model), and take the network down again when it stops (Ctrl-C).
#
#   platform/run-dev.sh [BUILD_DIR] [-- extra zerohopd options]
set -euo pipefail

cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
[ "${1:-}" = "--" ] && shift
eval "$(platform/devnet.sh env)"
appliance_ip=198.18.0.1

cleanup() {
	platform/devnet.sh down >/dev/null 2>&1 || true
	echo "run: dev network removed"
}
trap cleanup EXIT
# Ctrl-C reaches zerohopd too; this shell only waits for it to stop, then cleans up.
trap 'true' INT TERM

platform/devnet.sh up
cat <<MSG
run: starting zerohopd on $APP_NS/$APP_IF at $appliance_ip, UDP port 9000. In another terminal, try:

    ip netns exec $CLIENT_NS $build/zerohop-client --addr $appliance_ip 1 2 3

run: Ctrl-C stops the appliance and removes the dev network.
MSG

# --no-pci: never probe this machine's own NIC. --no-huge: no hugepage set-up needed on a dev machine.
# --idle backoff: a dev machine shares its cores with the client.
rc=0
ip netns exec "$APP_NS" "$build/zerohopd" \
	--no-pci --no-huge -m 512 --file-prefix "zh-run-$$" --vdev "net_af_packet0,iface=$APP_IF" -l 0-1 \
	--log-level=lib.eal:warning \
	-- --ip "$appliance_ip" --udp-port 9000 --idle backoff "$@" || rc=$?
exit $rc
