#!/usr/bin/env bash
# Throughput for worker/process layouts -> results/scaling.csv
#   bash benches/scaling.sh
# The full pipeline (dataflows/both.toml: both streams, every query, 4.5M events) and
# M1+M2 alone on the market generator (5M trades), as fast as possible, for
# processes x workers = 1x1, 1x2, 2x1 (up to this machine's cores) and 2x2, 1x4
# (oversubscribed: more workers than cores, marked so). Multi-process layouts run
# through `eddy cluster` on 127.0.0.1; wall time includes process start and connection.
source "$(dirname "$0")/common.sh"
cores=$(nproc)
csv=results/scaling.csv
echo "pipeline,processes,workers_per_process,total_workers,oversubscribed,records,wall_s,records_per_s,machine" > "$csv"
m1m2 dataflows/market.toml > "$work/m1m2.toml"
for pipeline in dataflows/both.toml "$work/m1m2.toml"; do
  name=$(basename "$pipeline" .toml)
  for layout in 1x1 1x2 2x1 2x2 1x4; do
    p=${layout%x*}; w=${layout#*x}; total=$((p * w))
    out="$work/$name-$layout"
    if [ "$p" = 1 ]; then
      $eddy run "$pipeline" --workers "$w" --quiet --out "$out" 2>/dev/null
    else
      $eddy cluster --processes "$p" --workers "$w" -- run "$pipeline" --quiet --out "$out" >/dev/null 2>&1
    fi
    python3 - "$name" "$p" "$w" "$total" "$([ "$total" -gt "$cores" ] && echo yes || echo no)" "$out/metrics.json" "$cores-core $(uname -m)" >> "$csv" <<'PY'
import json, sys
name, p, w, total, over, path, machine = sys.argv[1:]
m = json.load(open(path))
print(f'{name},{p},{w},{total},{over},{m["records"]["generated"]},{m["wall_time_s"]:.3f},{m["throughput"]["records_per_s"]:.0f},{machine}')
PY
  done
done
cat "$csv"
