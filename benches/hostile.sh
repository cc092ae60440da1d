#!/usr/bin/env bash
# Hostile senders against `eddy run --listen` (defaults: 1 MiB lines, 256
# senders, 256 connections waiting for a first line, 10 s for it, 60 s idle
# timeout): the engine's peak RSS and a good sender's time for the same
# file, with no attack, while an attacker streams 1 GiB without a newline,
# and while 10 000 connections are opened and left silent, then churned
# (the oldest closed and a new one opened, without pause).
# Writes results/hostile.csv.   Usage: bash benches/hostile.sh [LINES]
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
# EDDY=path/to/eddy uses a built binary as it is.
[ -n "${EDDY:-}" ] || cargo build --release -q
eddy=${EDDY:-$PWD/target/release/eddy}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 20000
"$eddy" generate trades -o "$work/trades.csv" -n "$lines" --rate 20000 >/dev/null 2>&1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

attack_gigabyte='
import socket, sys
chunk, sent, connections = b"7" * (1 << 16), 0, 0
while sent < (1 << 30):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    connections += 1
    try:
        s.sendall(b"trades attacker\n")
        while sent < (1 << 30):
            s.sendall(chunk); sent += len(chunk)
    except OSError:
        s.close()
print(f"attacker: {sent >> 20} MiB without a newline over {connections} connections", file=sys.stderr)
'
attack_idle='
import socket, sys, time
held, opened = [], 0
def connect():
    global opened
    opened += 1
    return socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
for _ in range(10000):
    try:
        held.append(connect())
    except OSError as e:
        print(f"attacker: {e}", file=sys.stderr); break
print(f"attacker: {len(held)} connections opened", file=sys.stderr, flush=True)
open(sys.argv[3], "w").close()
# Then churn: close the oldest and open a new one, as fast as it can, so
# that new silent connections keep arriving while the good sender sends.
end, i = time.time() + float(sys.argv[2]), 0
while time.time() < end:
    held[i].close()
    try:
        held[i] = connect()
    except OSError:
        pass
    i = (i + 1) % len(held)
print(f"attacker: {opened} connections opened in all", file=sys.stderr)
'


echo "scenario,peak_rss_mib,sender_s,sender_lines_per_s,refused" > results/hostile.csv
for scenario in none gigabyte idle10k; do
  port=$(free_port)
  out="$work/out-$scenario"
  "$eddy" run --listen "127.0.0.1:$port" --out "$out" --idle-exit 2 --quiet --no-dashboard 2>"$work/engine-$scenario.log" &
  engine=$!
  sleep 1
  attacker=""
  case $scenario in
    gigabyte) python3 -c "$attack_gigabyte" "$port" 2>>"$work/attack.log" & attacker=$! ;;
    idle10k)
      python3 -c "$attack_idle" "$port" 60 "$work/ready" 2>>"$work/attack.log" & attacker=$!
      for _ in $(seq 300); do [ -f "$work/ready" ] && break; sleep 0.1; done ;;
  esac
  sleep 0.5
  peak=0
  ( while kill -0 $engine 2>/dev/null; do
      rss=$(awk '/VmRSS/ {print $2}' /proc/$engine/status 2>/dev/null || echo 0)
      echo "$rss"; sleep 0.1
    done ) > "$work/rss-$scenario" &
  sampler=$!
  start=$(date +%s.%N)
  sent=ok
  "$eddy" send "$work/trades.csv" --to "127.0.0.1:$port" --id good 2>"$work/send-$scenario.log" || sent=refused
  end=$(date +%s.%N)
  [ -z "$attacker" ] || kill "$attacker" 2>/dev/null || true
  [ -z "$attacker" ] || kill "$attacker" 2>/dev/null || true
  [ $sent = ok ] || kill -INT $engine 2>/dev/null || true
  wait $engine || true
  wait $sampler || true
  peak=$(sort -n "$work/rss-$scenario" | tail -1)
  refused=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['ingest']['refused'])" "$out/metrics.json" | tr ',' ';')
  secs=$(python3 -c "print(f'{$end - $start:.2f}')")
  rate=$(python3 -c "print(f'{$lines / ($end - $start):.0f}')")
  if [ $sent = refused ]; then rate="refused: $(tail -1 "$work/send-$scenario.log" | tr ',' ';')"; fi
  echo "$scenario,$(python3 -c "print(f'{$peak/1024:.1f}')"),$secs,\"$rate\",\"$refused\"" >> results/hostile.csv
done
cat "$work/attack.log"
cat results/hostile.csv
