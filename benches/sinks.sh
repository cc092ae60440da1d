#!/usr/bin/env bash
# Cost of the database sinks -> results/sinks.csv
#   bash benches/sinks.sh [TRADES] [INTERACTIONS]   (default 1M + 500k; about 3 minutes)
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

echo "sink,mode,workers,records,rows,wall_s,records_per_s,rows_per_s,vs_csv_only,machine" > "$csv"
for mode in batches checkpoints; do
  for workers in 1 2; do
    base=""
    for sink in csv sqlite postgres; do
      out="$work/out-$sink-$mode-$workers"
      flags=()
      [ "$mode" = checkpoints ] && flags+=(--checkpoint-dir "$work/ck-$sink-$workers" --checkpoint-interval-ms 5000)
      case $sink in
        sqlite) rm -f "$work/r.db"*; flags+=(--sqlite "$work/r.db") ;;
        postgres) psql -q -X -d "$url" -c "DROP SCHEMA IF EXISTS b CASCADE" >/dev/null; flags+=(--postgres "$url" --postgres-schema b) ;;
      esac
      start=$(date +%s.%N)
      $eddy run "$work/full.toml" --workers "$workers" --quiet --out "$out" "${flags[@]}" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
      end=$(date +%s.%N)
      line=$(python3 - "$sink" "$mode" "$workers" "$out" "$start" "$end" "$machine" "$base" <<'PY'
import glob, json, os, sys
sink, mode, workers, out, start, end, machine, base = sys.argv[1:]
m = json.load(open(os.path.join(out, "metrics.json")))
records = m["records"]["generated"]
rows = sum(sum(1 for _ in open(f)) - 1 for f in glob.glob(os.path.join(out, "*.csv"))
           if os.path.basename(f) not in ("late.csv", "malformed.csv"))
if sink != "csv":
    assert m["sinks"][sink]["rows"] == rows, (m["sinks"], rows)
wall = float(end) - float(start)
ratio = f"{float(base) / wall:.2f}" if base else "1.00"
print(f"{sink},{mode},{workers},{records},{rows},{wall:.3f},{records / wall:.0f},{rows / wall:.0f},{ratio},{machine}")
PY
)
      echo "$line" | tee -a "$csv"
      [ "$sink" = csv ] && base=$(echo "$line" | cut -d, -f6)
    done
  done
done
