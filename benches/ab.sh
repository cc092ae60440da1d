#!/usr/bin/env bash
# A/B of two eddy binaries on the same files, interleaved -> results/NAME.csv
#   bash benches/ab.sh OLD_EDDY [REPS] [NAME] [OLD_KNOWS_I5]
# NAME defaults to ab_query_registry; OLD_KNOWS_I5 (yes/no, default no): whether
# OLD_EDDY has I5 (item_users_60s); I5 is off in both runs where it has.
# OLD_EDDY: an eddy binary built from another commit (for the query-registry
# change: `git worktree add /tmp/old 32e6a95 && (cd /tmp/old && cargo build
# --release)`, then /tmp/old/target/release/eddy). The new one is this tree's.
# Files from `eddy generate` (seed 3, 100 symbols): 2M trades, 1M interactions.
# Runs: M1+M2 alone (trades), and every query of both streams, on 1 and 2
# workers, the whole command timed (wall clock, process start included), REPS
# times each, A and B alternating. I5 (item_users_60s, new) is off in B so
# that both do the same work.
source "$(dirname "$0")/common.sh"
old=${1:?usage: bash benches/ab.sh OLD_EDDY [REPS] [NAME] [OLD_KNOWS_I5]}
reps=${2:-3}
csv=results/${3:-ab_query_registry}.csv
old_knows_i5=${4:-no}
replay_files 2000000 1000000
# The new binary: the same pipelines, with I5 off.
for p in full m1m2; do
  { cat "$work/$p.toml"; printf '[queries.item_users_60s]\nenabled = false\n'; } > "$work/$p-b.toml"
done
echo "pipeline,workers,binary,rep,events,wall_s,events_per_s,machine" > "$csv"
for rep in $(seq 1 "$reps"); do
  for pipeline in m1m2 full; do
    for workers in 1 2; do
      for side in A B; do
        if [ "$side" = A ] && [ "$old_knows_i5" != yes ]; then file="$work/$pipeline.toml"; else file="$work/$pipeline-b.toml"; fi
        if [ "$side" = A ]; then bin=$old; else bin=$eddy; fi
        start=$(date +%s.%N)
        $bin run "$file" --workers "$workers" --quiet --out "$work/out" >/dev/null 2>&1
        end=$(date +%s.%N)
        events=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['records']['generated'])" "$work/out/metrics.json")
        python3 -c "import sys; p,w,s,r,e,a,b,m=sys.argv[1:]; t=float(b)-float(a); print(f'{p},{w},{s},{r},{e},{t:.3f},{int(e)/t:.0f},{m}')" \
          "$pipeline" "$workers" "$side" "$rep" "$events" "$start" "$end" "$machine" >> "$csv"
      done
    done
  done
done
python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for p in ["m1m2", "full"]:
    for w in ["1", "2"]:
        med = {s: statistics.median(float(r["wall_s"]) for r in rows if (r["pipeline"], r["workers"], r["binary"]) == (p, w, s)) for s in "AB"}
        print(f"{p:5} {w} worker(s): A {med['A']:.2f} s, B {med['B']:.2f} s, B/A {med['B'] / med['A']:.3f}")
PY
