#!/usr/bin/env bash
# The per-VM plumbing vmnic does, as an operator would script it with
# iproute2, tc and the CNI plugin binary: the baseline of
# bench/alternatives_bench.ts.
#
#   baseline_plumbing.sh add NETNS NICS [QUEUES]
#   baseline_plumbing.sh del NETNS NICS
#
# Environment:
#   BASELINE_CONF       the plugin's network config (JSON, one line, with
#                       "name" and "cniVersion"), as CNI gives it on stdin
#   BASELINE_STATE_DIR  where the CNI results are kept between add and del
#   BASELINE_PLUGIN     the plugin to exec (default: bridge)
#   CNI_PATH            plugin directory (default: /usr/lib/cni)
#
# add: `ip netns add`, then per NIC: CNI ADD (ethN), the veth's IPv6
# address generation off and its addresses flushed, a TAP (vnet_hdr, plus
# multi_queue when QUEUES > 1) with the veth's MTU and txqueuelen 10000,
# ingress qdiscs and u32 match-all mirred redirects both ways, links up.
# del: per NIC, CNI DEL with the saved result (netns still present, so the
# plugin removes the veth pair), then `ip netns del` (the TAPs go with it).
#
# Like a hand-written script, it keeps no records, takes no lock and does
# not roll back a half-done add: `set -e` stops at the first failure.
set -euo pipefail

usage() {
  echo "usage: $0 add NETNS NICS [QUEUES] | del NETNS NICS" >&2
  exit 2
}

[[ $# -ge 3 ]] || usage
mode=$1 ns=$2 nics=$3 queues=${4:-1}
conf_file=${BASELINE_CONF:?BASELINE_CONF: the plugin config file}
state=${BASELINE_STATE_DIR:?BASELINE_STATE_DIR: a directory}
plugin=${BASELINE_PLUGIN:-bridge}
export CNI_PATH=${CNI_PATH:-/usr/lib/cni}
conf=$(<"$conf_file")

cni() { # cni COMMAND IFNAME  (config on stdin, result on stdout)
  CNI_COMMAND=$1 CNI_CONTAINERID=$ns CNI_NETNS=/var/run/netns/$ns \
    CNI_IFNAME=$2 "$CNI_PATH/$plugin"
}

case $mode in
add)
  ip netns add "$ns"
  mq=()
  ((queues > 1)) && mq=(multi_queue)
  for ((i = 0; i < nics; i++)); do
    eth=eth$i tap=tap$i
    cni ADD "$eth" <<<"$conf" >"$state/$ns.$eth.json"
    ip -n "$ns" link set "$eth" addrgenmode none
    ip -n "$ns" addr flush dev "$eth"
    link=$(ip -n "$ns" -o link show dev "$eth")
    [[ $link =~ mtu\ ([0-9]+) ]] || {
      echo "$eth: no mtu in: $link" >&2
      exit 1
    }
    mtu=${BASH_REMATCH[1]}
    ip -n "$ns" tuntap add dev "$tap" mode tap vnet_hdr "${mq[@]}"
    ip -n "$ns" link set "$tap" addrgenmode none mtu "$mtu" txqueuelen 10000
    tc -n "$ns" qdisc add dev "$eth" ingress
    tc -n "$ns" filter add dev "$eth" parent ffff: protocol all prio 1 \
      u32 match u32 0 0 action mirred egress redirect dev "$tap"
    tc -n "$ns" qdisc add dev "$tap" ingress
    tc -n "$ns" filter add dev "$tap" parent ffff: protocol all prio 1 \
      u32 match u32 0 0 action mirred egress redirect dev "$eth"
    ip -n "$ns" link set "$tap" up
    ip -n "$ns" link set "$eth" up
  done
  ;;
del)
  for ((i = nics - 1; i >= 0; i--)); do
    eth=eth$i
    saved=$state/$ns.$eth.json
    # DEL gets the ADD result as prevResult, as libcni gives it; the config
    # is one JSON object, so the field goes in before its closing brace.
    if [[ -s $saved ]]; then
      cni DEL "$eth" <<<"${conf%\}},\"prevResult\":$(<"$saved")}" >/dev/null
    else
      cni DEL "$eth" <<<"$conf" >/dev/null
    fi
    rm -f "$saved"
  done
  ip netns del "$ns"
  ;;
*) usage ;;
esac
