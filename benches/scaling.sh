#!/usr/bin/env bash
# Throughput of replayed files by layout -> results/scaling.csv (+ plots/scaling.png)
#   bash benches/scaling.sh [REPS]      (default 3 repetitions; about a minute)
# Files from `eddy generate` (seed 3, 100 symbols): 2M trades and 1M
# interactions, replayed as fast as possible (`kind = "csv"`): the full
# pipeline (both files, every query), M1+M2 alone (the trades file) and the
# interaction queries alone (the interactions file), for
# processes x workers = 1x1, 1x2, 2x1. Multi-process layouts run through
# `eddy cluster` on 127.0.0.1. wall_s is the whole command (process start,
# connecting, reading, writing every result file into an empty folder),
# timed by this script; layouts alternate within each repetition so that
# drift hits all alike. Each repetition also times two independent 1-worker
# runs of the full pipeline at once (`full_pair`): the machine's ceiling for
# two workers.
source "$(dirname "$0")/common.sh"
reps=${1:-3}
csv=results/scaling.csv
replay_files 2000000 1000000
echo "pipeline,processes,workers_per_process,total_workers,oversubscribed,rep,records,wall_s,records_per_s,machine" > "$csv"
for rep in $(seq 1 "$reps"); do
  # The machine's own ceiling: two independent 1-worker runs of the full
  # pipeline at once (pipeline "full_pair"), each into an empty folder. Two
  # workers of one run cannot beat it: it has no exchange, no shared files,
  # no coordination, and it shows what two busy cores give on this machine.
  rm -rf "$work/pair-a" "$work/pair-b"
  start=$(date +%s.%N)
  $eddy run "$work/full.toml" --workers 1 --quiet --out "$work/pair-a" >/dev/null 2>&1 &
  $eddy run "$work/full.toml" --workers 1 --quiet --out "$work/pair-b" >/dev/null 2>&1
  wait
  end=$(date +%s.%N)
  python3 - "$rep" "$work" "$start" "$end" "$machine" >> "$csv" <<'PY'
import json, sys
rep, work, start, end, machine = sys.argv[1:]
records = sum(json.load(open(f"{work}/pair-{x}/metrics.json"))["records"]["generated"] for x in "ab")
wall = float(end) - float(start)
print(f'full_pair,2,1,2,no,{rep},{records},{wall:.3f},{records / wall:.0f},{machine}')
PY
  for pipeline in full m1m2 interactions; do
    for layout in 1x1 1x2 2x1; do
      p=${layout%x*}; w=${layout#*x}
      out="$work/$pipeline-$layout"
      # Each run writes into an empty folder (as a first run does): otherwise
      # the kernel's freeing of the last repetition's 140 MB ewma.csv, when
      # the run truncates it, is timed as part of the next run.
      rm -rf "$out"
      start=$(date +%s.%N)
      if [ "$p" = 1 ]; then
        $eddy run "$work/$pipeline.toml" --workers "$w" --quiet --out "$out" >/dev/null 2>&1
      else
        $eddy cluster --processes "$p" --workers "$w" -- run "$work/$pipeline.toml" --quiet --out "$out" >/dev/null 2>&1
      fi
      end=$(date +%s.%N)
      python3 - "$pipeline" "$p" "$w" "$rep" "$out/metrics.json" "$start" "$end" "$machine" >> "$csv" <<'PY'
import json, sys
name, p, w, rep, path, start, end, machine = sys.argv[1:]
records = json.load(open(path))["records"]["generated"]
wall = float(end) - float(start)
total = int(p) * int(w)
print(f'{name},{p},{w},{total},no,{rep},{records},{wall:.3f},{records / wall:.0f},{machine}')
PY
    done
  done
done
$eddy plot --in results --out "$work/plots" >/dev/null && cp "$work/plots/scaling.png" results/plots/
python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
walls = {}
for r in rows:
    walls.setdefault((r["pipeline"], r["processes"], r["workers_per_process"]), {})[r["rep"]] = float(r["wall_s"])
# Ratios both ways: of the medians, and the median of each repetition's own
# ratio (its three layouts ran back to back, so the machine's drift between
# repetitions cancels).
for p in ("full", "m1m2", "interactions"):
    one, two, procs = walls[(p, "1", "1")], walls[(p, "1", "2")], walls[(p, "2", "1")]
    med = lambda w: statistics.median(w.values())
    scale = statistics.median(one[k] / two[k] for k in one)
    cross = statistics.median(two[k] / procs[k] for k in two)
    print(f"{p}: median wall 1x1 {med(one):.2f} s, 1x2 {med(two):.2f} s, 2x1 {med(procs):.2f} s; "
          f"2 workers / 1 worker {med(one) / med(two):.2f}x (per repetition {scale:.2f}x), "
          f"2 processes / 2 workers {med(two) / med(procs):.2f}x (per repetition {cross:.2f}x)")
rate = {}
for r in rows:
    rate.setdefault((r["pipeline"], r["processes"], r["workers_per_process"]), {})[r["rep"]] = float(r["records_per_s"])
one, pair, two = rate[("full", "1", "1")], rate[("full_pair", "2", "1")], rate[("full", "1", "2")]
ceiling = statistics.median(pair[k] / one[k] for k in one)
reached = statistics.median((two[k] / one[k]) / (pair[k] / one[k]) for k in one)
print(f"machine ceiling: two independent 1-worker full runs at once move {ceiling:.2f}x one run's "
      f"events/s (per repetition); 2 workers of one run reach {reached:.0%} of it")
PY
