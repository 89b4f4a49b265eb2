#!/usr/bin/env bash
# The dev network: the appliance's veth end in its own namespace (so that no kernel stack routes or
# forwards its traffic anywhere), and a client namespace on the other end with an address from
# 198.18.0.0/15. Nothing else is touched: no physical NIC, no route outside the two namespaces.
#
#   platform/devnet.sh up|down|status [--name PREFIX] [--client-ip ADDR/LEN]
#
# With PREFIX "zh" (the default): namespaces zh-app and zh-client, veth zh0 (appliance side, no
# address: DPDK owns it through af_packet) and zh0c (client side, 198.18.0.2/24).
# `up` and `down` are idempotent. `env` prints the names as shell assignments.
set -euo pipefail

usage() {
	echo "usage: $0 up|down|status|env [--name PREFIX] [--client-ip 198.18.x.y/LEN]" >&2
	exit 2
}

[ $# -ge 1 ] || usage
cmd=$1
shift
prefix=zh
client_ip=198.18.0.2/24
while [ $# -gt 0 ]; do
	case "$1" in
	--name) prefix=${2:?}; shift 2 ;;
	--client-ip) client_ip=${2:?}; shift 2 ;;
	*) usage ;;
	esac
done

# veth names are at most 15 characters.
if ! [[ "$prefix" =~ ^[a-z][a-z0-9]{0,11}$ ]]; then
	echo "devnet: PREFIX must be 1-12 lower-case letters or digits, starting with a letter" >&2
	exit 2
fi
# Only the benchmarking range, never anything routable or private.
if ! [[ "$client_ip" =~ ^198\.(18|19)\.[0-9]{1,3}\.[0-9]{1,3}/[0-9]{1,2}$ ]]; then
	echo "devnet: the client address must be in 198.18.0.0/15" >&2
	exit 2
fi

app_ns=$prefix-app
client_ns=$prefix-client
app_if=${prefix}0
client_if=${prefix}0c

ns_exists() { [ -e "/run/netns/$1" ]; }

up() {
	ns_exists "$app_ns" || ip netns add "$app_ns"
	ns_exists "$client_ns" || ip netns add "$client_ns"
	if ! ip -n "$app_ns" link show "$app_if" >/dev/null 2>&1; then
		# A half-made pair from an interrupted run: start again.
		ip -n "$client_ns" link del "$client_if" 2>/dev/null || true
		ip link add "$app_if" netns "$app_ns" type veth peer name "$client_if" netns "$client_ns"
	fi
	# The kernel's IPv6 chatter would reach the appliance through af_packet; it has no use for it.
	ip netns exec "$app_ns" sysctl -qw "net.ipv6.conf.$app_if.disable_ipv6=1"
	ip netns exec "$client_ns" sysctl -qw "net.ipv6.conf.$client_if.disable_ipv6=1"
	ip -n "$app_ns" link set lo up
	ip -n "$app_ns" link set "$app_if" up
	ip -n "$client_ns" link set lo up
	ip -n "$client_ns" link set "$client_if" up
	ip -n "$client_ns" addr replace "$client_ip" dev "$client_if"
	# veth leaves UDP checksums partial when tx offload is on; the appliance would see them wrong.
	ip netns exec "$client_ns" ethtool -K "$client_if" tx off >/dev/null
	echo "devnet: up: $app_ns/$app_if <-> $client_ns/$client_if ($client_ip)"
}

down() {
	ns_exists "$client_ns" && ip netns del "$client_ns"
	ns_exists "$app_ns" && ip netns del "$app_ns"
	echo "devnet: down: $app_ns, $client_ns removed"
}

status() {
	for ns in "$app_ns" "$client_ns"; do
		if ns_exists "$ns"; then
			echo "== $ns"
			ip -n "$ns" -br addr
		else
			echo "== $ns: absent"
		fi
	done
}

case "$cmd" in
up) up ;;
down) down ;;
status) status ;;
env) printf 'APP_NS=%s\nCLIENT_NS=%s\nAPP_IF=%s\nCLIENT_IF=%s\nCLIENT_IP=%s\n' \
	"$app_ns" "$client_ns" "$app_if" "$client_if" "${client_ip%/*}" ;;
*) usage ;;
esac
