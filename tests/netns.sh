#!/usr/bin/env bash
# Test hosts on one machine: network namespaces on a bridge, for the
# multi-host tests (tests/multihost.rs) and benches/multihost.sh. Needs root
# and iproute2. Every name starts with eddy-TAG-, every address is
# 10.77.0.0/24 inside the namespaces made here: no traffic leaves them.
#
#   netns.sh up TAG N     hosts eddy-TAG-h0 .. h(N-1) at 10.77.0.1 .. N, on a
#                         bridge in eddy-TAG-sw
#   netns.sh cut TAG I    host I's cable out of the switch: its frames go
#                         nowhere (no FIN, no RST, no error on the host)
#   netns.sh heal TAG I   plugged back in
#   netns.sh down TAG     kills what runs in the namespaces and removes them
set -euo pipefail
what=${1:?usage: netns.sh up|cut|heal|down TAG [N|I]}
tag=${2:?a tag}
switch="eddy-$tag-sw"
case $what in
  up)
    n=${3:?the number of hosts}
    ip netns add "$switch"
    ip -n "$switch" link set lo up
    ip -n "$switch" link add br0 type bridge
    ip -n "$switch" link set br0 up
    for i in $(seq 0 $((n - 1))); do
      host="eddy-$tag-h$i"
      ip netns add "$host"
      ip -n "$host" link set lo up
      # Made inside the namespaces: no interface of the machine's own is touched.
      ip -n "$host" link add eth0 type veth peer name "port$i" netns "$switch"
      ip -n "$host" addr add "10.77.0.$((i + 1))/24" dev eth0
      ip -n "$host" link set eth0 up
      ip -n "$switch" link set "port$i" master br0
      ip -n "$switch" link set "port$i" up
    done
    ;;
  cut) ip -n "$switch" link set "port${3:?host}" nomaster ;;
  heal) ip -n "$switch" link set "port${3:?host}" master br0 ;;
  down)
    for ns in $(ip netns list | awk '{print $1}' | grep "^eddy-$tag-" || true); do
      ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
      ip netns del "$ns"
    done
    ;;
  *) echo "netns.sh: unknown command $what" >&2; exit 2 ;;
esac
