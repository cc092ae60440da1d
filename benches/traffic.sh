#!/usr/bin/env bash
# What the workers send each other -> results/traffic.csv
#   bash benches/traffic.sh          (about a minute)
# The full pipeline (dataflows/both.toml: both streams, every query, 4.5M
# events) as fast as possible with --measure-traffic, for processes x workers
# 1x1, 1x2, 2x1, 2x2 (2x2 oversubscribed on 2 cores; only the counts matter
# here). Counts come from timely's own logging (src/traffic.rs): records sent
# to another worker (and in how many messages), progress-tracking messages
# and the pointstamp updates in them, operators and channels per worker.
# Each layout runs twice: with timestamps at ticks (--as-fast-timestamp-ms 0,
# how eddy ran before the coarse as-fast timestamps: the "before" figures) and
# with the default (up to 1 000 ms: "after").
# These are the inputs of the scaling projection in results/REPORT.md.
source "$(dirname "$0")/common.sh"
csv=results/traffic.csv
echo "as_fast_timestamp_ms,processes,workers_per_process,total_workers,events,wall_s,remote_records_per_event,records_per_remote_message,progress_messages_per_s,progress_updates_per_s,progress_updates_per_event,operators_per_worker,channels_per_worker,machine" > "$csv"
for step in 0 1000; do
for layout in 1x1 1x2 2x1 2x2; do
  p=${layout%x*}; w=${layout#*x}
  out="$work/$step-$layout"
  flags=(--quiet --measure-traffic --as-fast-timestamp-ms "$step" --out "$out")
  if [ "$p" = 1 ]; then
    $eddy run dataflows/both.toml --workers "$w" "${flags[@]}" >/dev/null 2>&1
  else
    $eddy cluster --processes "$p" --workers "$w" -- run dataflows/both.toml "${flags[@]}" >/dev/null 2>&1
  fi
  python3 - "$step" "$p" "$w" "$out/metrics.json" "$machine" >> "$csv" <<'PY'
import json, sys
step, p, w, path, machine = sys.argv[1:]
m = json.load(open(path))
t, n, wall = m["traffic"], m["records"]["generated"], m["wall_time_s"]
workers = int(p) * int(w)
per_message = t["records_remote"] / t["messages_remote"] if t["messages_remote"] else 0
print(f'{step},{p},{w},{workers},{n},{wall:.3f},{t["records_remote"] / n:.3f},{per_message:.1f},'
      f'{t["progress_messages"] / wall:.0f},{t["progress_updates"] / wall:.0f},{t["progress_updates"] / n:.4f},'
      f'{t["operators"] / workers:.0f},{t["channels"] / workers:.0f},{machine}')
PY
done
done
cat "$csv"
