#!/usr/bin/env bash
# CPU in real time -> results/realtime_cpu.csv
#   bash benches/realtime_cpu.sh     (about 4 minutes)
# The demo pipeline (dataflows/demo.toml: both generators, every query) at
# speed 1 (about 7 000 events/s) for 10 s of wall time, 1 and 2 workers, with
# each record taken as it falls due (--release-ms 0, what eddy did before the
# releases), released every tick (10) and with the default release (every
# 50 ms of wall time at most, and at every window end); the same with the
# generators nearly idle (1 event/s each). `as_fast_cores` is what the
# same events cost as fast as possible (the demo as fast as possible for 3 s,
# CPU per event, times this run's events, over its 10 s); the budget of issue
# 17 is twice that plus 3 % of a core per worker. CPU is the process's user +
# system time over its wall time (metrics.json).
source "$(dirname "$0")/common.sh"
csv=results/realtime_cpu.csv
sed -e 's/^speed = 10.0$/speed = 1.0/' -e 's/^dashboard = .*$//' dataflows/demo.toml > "$work/demo.toml"
sed -e 's/^rate = .*$/rate = 1.0/' "$work/demo.toml" > "$work/idle.toml"

cores() { python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print((m["cpu_user_s"]+m["cpu_system_s"])/m["wall_time_s"], m["records"]["generated"])' "$1"; }
declare -A per_event
for workers in 1 2; do
  $eddy run "$work/demo.toml" --timing as-fast --duration 3 --workers "$workers" --quiet --out "$work/fast" >/dev/null 2>&1
  read -r c n < <(cores "$work/fast/metrics.json")
  per_event[$workers]=$(python3 -c "print($c * 3 / $n)")
done

echo "load,workers,release_ms,events_per_s,cpu_cores,cpu_per_worker,as_fast_cores,budget_cores,window_p50_ms,window_p99_ms,record_p50_ms,record_p99_ms,machine" > "$csv"
for load in demo_speed_1 idle; do
  for workers in 1 2; do
    for release in 0 10 50; do
      pipeline=$work/demo.toml; [ "$load" = idle ] && pipeline=$work/idle.toml
      $eddy run "$pipeline" --duration 10 --workers "$workers" --release-ms "$release" --quiet --out "$work/out" >/dev/null 2>&1
      python3 - "$load" "$workers" "$release" "$work/out/metrics.json" "${per_event[$workers]}" "$machine" >> "$csv" <<'PY'
import json, sys
load, workers, release, path, per_event, machine = sys.argv[1:]
m = json.load(open(path))
workers, wall = int(workers), m["wall_time_s"]
cores = (m["cpu_user_s"] + m["cpu_system_s"]) / wall
events = m["records"]["generated"]
fast = events * float(per_event) / wall
budget = 2 * fast + 0.03 * workers
lat = m.get("latency_ms") or {}
rec = m.get("record_latency_ms") or {}
print(f'{load},{workers},{release},{events / wall:.0f},{cores:.3f},{cores / workers:.3f},{fast:.3f},{budget:.3f},'
      f'{lat.get("p50", "")},{lat.get("p99", "")},{rec.get("p50", "")},{rec.get("p99", "")},{machine}')
PY
    done
  done
done
cat "$csv"
