#!/usr/bin/env bash
# Several hosts on one machine (network namespaces, tests/netns.sh), one eddy
# process each, 1 worker apiece. Measures, into results/multihost.csv:
#   detect_kill   a host's process SIGKILLed: until every other has exited (s)
#   detect_cut    a host's cable pulled: until every process has exited (s)
#   detect_hang   a host's process stopped (SIGSTOP): until every other has exited (s)
#                 (each for peer timeouts of 2, 5 and 10 s)
#   recovery      under deploy/supervise.sh, from a SIGKILL to the first new
#                 checkpoint of every process (s)
#   replay        events/s of a replay on 1, 2, 3 hosts, with 0 and 20 ms
#                 (± 5 ms, each way, tests/delay_relay.py) added to the last host
#   heartbeat     heartbeat payload bytes a second per process, and on the
#                 wire (one TCP segment a beat: 1 byte + 66 of headers, and an ACK)
#
#   bash benches/multihost.sh            # needs root and iproute2
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
eddy=$PWD/target/release/eddy
net="bash tests/netns.sh"
tag="bm$$"
work=$(mktemp -d)
csv=results/multihost.csv
trap '$net down $tag >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
$net up "$tag" 3
on() { local h=$1; shift; ip netns exec "eddy-$tag-h$h" "$@"; }
# In the background: `ip netns exec` execs the command, so $! is its pid.
on_bg() { local h=$1; shift; exec ip netns exec "eddy-$tag-h$h" "$@"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$(now)"; }
printf '10.77.0.1:7100\n10.77.0.2:7100\n10.77.0.3:7100\n' > "$work/hosts3.txt"
printf '10.77.0.1:7100\n10.77.0.2:7100\n' > "$work/hosts2.txt"
echo "measure,peer_timeout_s,hosts,added_latency_ms,value,unit" > "$csv"
row() { echo "$1" >> "$csv"; echo "$1"; }

cat > "$work/slow.toml" <<'EOF'
name = "slow"
[engine]
timing = "real_time"
speed = 1.0
max_delay_ms = 200
[sources.trades]
kind = "market"
symbols = 10
rate = 1000.0
count = 60000
seed = 1
disorder_ms = 100
[sources.interactions]
kind = "generator"
users = 200
items = 50
rate = 500.0
count = 30000
seed = 2
disorder_ms = 100
EOF

# Starts the slow pipeline on 3 hosts; waits until all joined. Sets pids[].
start_slow() { # NAME TIMEOUT [EXTRA...]
  local name=$1 timeout=$2; shift 2
  pids=()
  for h in 0 1 2; do
    on_bg "$h" "$eddy" run "$work/slow.toml" --quiet --out "$work/$name-out-$h" \
      --processes 3 --process "$h" --hostfile "$work/hosts3.txt" \
      --peer-timeout-s "$timeout" "$@" 2> "$work/$name-$h.log" &
    pids+=($!)
  done
  for h in 0 1 2; do
    until grep -q "joined generation" "$work/$name-$h.log" 2>/dev/null; do sleep 0.02; done
  done
  sleep 2
}

for timeout in 2 5 10; do
  start_slow "kill$timeout" "$timeout"
  kill -9 "${pids[1]}"; t0=$(now)
  wait "${pids[0]}" || true; wait "${pids[2]}" || true
  row "detect_kill,$timeout,3,0,$(since "$t0"),s"
  wait "${pids[1]}" 2>/dev/null || true

  start_slow "cut$timeout" "$timeout"
  $net cut "$tag" 2; t0=$(now)
  for p in "${pids[@]}"; do wait "$p" || true; done
  row "detect_cut,$timeout,3,0,$(since "$t0"),s"
  $net heal "$tag" 2

  start_slow "hang$timeout" "$timeout"
  kill -STOP "${pids[0]}"; t0=$(now)
  wait "${pids[1]}" || true; wait "${pids[2]}" || true
  row "detect_hang,$timeout,3,0,$(since "$t0"),s"
  kill -9 "${pids[0]}"; kill -CONT "${pids[0]}" 2>/dev/null || true
  wait "${pids[0]}" 2>/dev/null || true
done

# Recovery under the supervisor loop: SIGKILL to the first new checkpoint everywhere.
sv=()
for h in 0 1 2; do
  EDDY_PID_FILE="$work/sv-$h.pid" EDDY_RESTART_DELAY_S=0.2 on_bg "$h" bash deploy/supervise.sh \
    "$eddy" run "$work/slow.toml" --quiet --out "$work/sv-out-$h" \
    --processes 3 --process "$h" --hostfile "$work/hosts3.txt" --peer-timeout-s 2 \
    --checkpoint-dir "$work/sv-ck-$h" --checkpoint-interval-ms 1000 2> "$work/sv-$h.log" &
  sv+=($!)
done
until [ -f "$work/sv-ck-0/manifest-p0" ] && [ -f "$work/sv-ck-1/manifest-p1" ] && [ -f "$work/sv-ck-2/manifest-p2" ]; do sleep 0.05; done
sleep 3
kill -9 "$(cat "$work/sv-1.pid")"; t0=$(now); killed_at=$(date +%s)
sleep 0.01
for h in 0 1 2; do
  # A manifest written after the kill is the new incarnation's first checkpoint.
  until [ "$(stat -c %Y "$work/sv-ck-$h/manifest-p$h")" -gt "$killed_at" ]; do sleep 0.01; done
done
row "recovery,2,3,0,$(since "$t0"),s"
for p in "${sv[@]}"; do kill "$p" 2>/dev/null || true; done
pkill -f "$work/slow.toml" || true
sleep 0.5

# Replay throughput on 1, 2 and 3 hosts, with and without 20 ms to the last host.
"$eddy" generate trades -o "$work/t.csv" -n 1000000 --symbols 100 2>/dev/null
"$eddy" generate interactions -o "$work/i.csv" -n 500000 2>/dev/null
events=1500000
replay() { # HOSTS DELAY
  local n=$1 delay=$2 hostfile=$work/hosts$1.txt relays=()
  if [ "$delay" -gt 0 ]; then
    hostfile=$work/far$n.txt
    : > "$hostfile"
    for p in $(seq 0 $((n - 2))); do
      on_bg $((n - 1)) python3 tests/delay_relay.py $((7200 + p)) "10.77.0.$((p + 1)):7100" "$delay" 5 &
      relays+=($!)
      echo "127.0.0.1:$((7200 + p))" >> "$hostfile"
    done
    echo "10.77.0.$n:7100" >> "$hostfile"
    sleep 0.5
  fi
  local t0 p pids=()
  t0=$(now)
  if [ "$n" -eq 1 ]; then
    on 0 "$eddy" replay --trades "$work/t.csv" --interactions "$work/i.csv" --out "$work/r1" --quiet 2>/dev/null
  else
    for h in $(seq 0 $((n - 1))); do
      local f=$work/hosts$n.txt
      [ "$h" -eq $((n - 1)) ] && f=$hostfile
      on_bg "$h" "$eddy" replay --trades "$work/t.csv" --interactions "$work/i.csv" --out "$work/r$n-$h" \
        --quiet --processes "$n" --process "$h" --hostfile "$f" 2>/dev/null &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
  fi
  local s
  s=$(since "$t0")
  for r in "${relays[@]}"; do kill "$r" 2>/dev/null || true; done
  row "replay,10,$n,$delay,$(python3 -c "print(round($events / $s))"),events/s"
}
for n in 1 2 3; do replay "$n" 0; done
for n in 2 3; do replay "$n" 20; done

# Heartbeat: the 10 s cut run lived longest; its metrics are not written (it
# failed), so a short real-time cluster run that ends well is measured.
sed 's/count = 60000/count = 10000/; s/count = 30000/count = 5000/' "$work/slow.toml" > "$work/short.toml"
pids=()
for h in 0 1 2; do
  on_bg "$h" "$eddy" run "$work/short.toml" --quiet --out "$work/hb-$h" --processes 3 --process "$h" \
    --hostfile "$work/hosts3.txt" --peer-timeout-s 10 2>/dev/null &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
python3 - "$work/hb-0/metrics.json" >> "$csv" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
c, wall = m["cluster"], m["wall_time_s"]
beats = c["heartbeat_bytes_sent"] / wall           # one byte a beat, to 2 peers
print(f"heartbeat_payload,{c['peer_timeout_s']:g},3,0,{beats:.2f},bytes/s per process")
print(f"heartbeat_wire,{c['peer_timeout_s']:g},3,0,{beats * (67 + 66):.0f},bytes/s per process (segment + ACK)")
EOF
tail -2 "$csv"
echo "wrote $csv"
