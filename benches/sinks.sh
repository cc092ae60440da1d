#!/usr/bin/env bash
# Cost of the database sinks -> results/sinks.csv
#   bash benches/sinks.sh [TRADES] [INTERACTIONS]   (default 1M + 500k; about 6 minutes)
# Files from `eddy generate` (seed 3, 100 symbols) replayed as fast as
# possible through the full pipeline (every query, ewma's row per trade
# included), writing CSV only, CSV + SQLite, CSV + PostgreSQL, on 1 and 2
# workers, without checkpoints (at-least-once batches every 100 ms) and with
# a checkpoint every 5 s of event time (a transaction per epoch). wall_s is
# the whole command, until the last row is committed. PostgreSQL is
# Debian's, started here in a scratch folder on 127.0.0.1 (as the postgres
# user when run as root) with its default durability settings.
source "$(dirname "$0")/common.sh"
trades=${1:-1000000}
interactions=${2:-500000}
csv=results/sinks.csv
replay_files "$trades" "$interactions"

bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
chmod 777 "$work"
as_pg "$bin/initdb" -D "$work/pg" -U eddy --auth=trust -E UTF8 >/dev/null
as_pg "$bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -o "-p $port -k $work -c listen_addresses=127.0.0.1" -w start >/dev/null
trap 'as_pg "$bin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null; rm -rf "$work"' EXIT
url="postgresql://eddy@127.0.0.1:$port/postgres"

# Five rounds, the sinks interleaved within each (a slow moment of the
# machine hits all three alike); each figure is the median of its five runs.
runs="$work/runs.csv"
echo "sink,mode,workers,records,rows,wall_s" > "$runs"
for mode in batches checkpoints; do
  for workers in 1 2; do
    for rep in 1 2 3 4 5; do
      for sink in csv sqlite postgres; do
        out="$work/out-$sink-$mode-$workers-$rep"
        flags=()
        [ "$mode" = checkpoints ] && flags+=(--checkpoint-dir "$work/ck-$sink-$workers-$rep" --checkpoint-interval-ms 5000)
        case $sink in
          sqlite) rm -f "$work/r.db"*; flags+=(--sqlite "$work/r.db") ;;
          postgres) psql -q -X -d "$url" -c "DROP SCHEMA IF EXISTS b CASCADE" >/dev/null 2>&1; flags+=(--postgres "$url" --postgres-schema b) ;;
        esac
        start=$(date +%s.%N)
        $eddy run "$work/full.toml" --workers "$workers" --quiet --out "$out" "${flags[@]}" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
        end=$(date +%s.%N)
        python3 - "$sink" "$mode" "$workers" "$out" "$start" "$end" >> "$runs" <<'PY'
import glob, json, os, sys
sink, mode, workers, out, start, end = sys.argv[1:]
m = json.load(open(os.path.join(out, "metrics.json")))
rows = sum(sum(1 for _ in open(f)) - 1 for f in glob.glob(os.path.join(out, "*.csv"))
           if os.path.basename(f) not in ("late.csv", "malformed.csv"))
if sink != "csv":
    assert m["sinks"][sink]["rows"] == rows, (m["sinks"], rows)
print(f"{sink},{mode},{workers},{m['records']['generated']},{rows},{float(end) - float(start):.3f}")
PY
        rm -rf "$out"
      done
    done
  done
done
python3 - "$runs" "$machine" > "$csv" <<'PY'
import csv, statistics, sys
runs, machine = sys.argv[1:]
groups = {}
for r in csv.DictReader(open(runs)):
    groups.setdefault((r["mode"], r["workers"], r["sink"]), []).append(r)
print("sink,mode,workers,records,rows,runs,wall_s_median,wall_s_min,wall_s_max,records_per_s,rows_per_s,vs_csv_only,machine")
for (mode, workers, sink), rs in groups.items():
    walls = [float(r["wall_s"]) for r in rs]
    wall = statistics.median(walls)
    base = statistics.median(float(r["wall_s"]) for r in groups[(mode, workers, "csv")])
    records, rows = int(rs[0]["records"]), int(rs[0]["rows"])
    print(f"{sink},{mode},{workers},{records},{rows},{len(walls)},{wall:.3f},{min(walls):.3f},"
          f"{max(walls):.3f},{records / wall:.0f},{rows / wall:.0f},{base / wall:.2f},{machine}")
PY
cat "$csv"
