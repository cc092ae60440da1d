#!/usr/bin/env bash
# Cost of the database sinks -> results/sinks.csv
#   bash benches/sinks.sh [TRADES] [INTERACTIONS] [MONGO_TRADES] [MONGO_INTERACTIONS]
#   (defaults 1M + 500k, and 40k + 20k for MongoDB; about 25 minutes)
# Files from `eddy generate` (seed 3, 100 symbols) replayed as fast as
# possible through the full pipeline (every query, ewma's row per trade
# included), writing CSV only, CSV + SQLite, CSV + PostgreSQL, on 1 and 2
# workers, without checkpoints (at-least-once batches every 100 ms) and with
# a checkpoint every 5 s of event time (a transaction per epoch). wall_s is
# the whole command, until the last row is committed. PostgreSQL is
# Debian's, started here in a scratch folder on 127.0.0.1 (as the postgres
# user when run as root) with its default durability settings.
# MongoDB: SecantusDB (the tests' server, Python, from PyPI into
# ~/.cache/eddy-test-tools/venv-py), on a smaller input of its own with its
# own CSV-only baseline, three rounds; server_busy is the share of one core
# the server's process used during the run (near 1: the server is the
# bottleneck), and pymongo,bulk is the same server written by its own
# driver (the rows of one run into collections with the same indexes,
# unordered bulk upserts of 5 000): the server's ceiling here.
source "$(dirname "$0")/common.sh"
trades=${1:-1000000}
interactions=${2:-500000}
mongo_trades=${3:-40000}
mongo_interactions=${4:-20000}
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

# One run of $work/full.toml: a line of $runs.
#   timed_run SINK MODE WORKERS OUT FLAGS...
timed_run() {
  local sink=$1 mode=$2 workers=$3 out=$4
  shift 4
  local cpu0
  cpu0=$(server_cpu)
  start=$(date +%s.%N)
  $eddy run "$work/full.toml" --workers "$workers" --quiet --out "$out" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 - "$sink" "$mode" "$workers" "$out" "$start" "$end" "$cpu0" "$(server_cpu)" >> "$runs" <<'PY'
import glob, json, os, sys
sink, mode, workers, out, start, end, cpu0, cpu1 = sys.argv[1:]
m = json.load(open(os.path.join(out, "metrics.json")))
rows = sum(sum(1 for _ in open(f)) - 1 for f in glob.glob(os.path.join(out, "*.csv"))
           if os.path.basename(f) not in ("late.csv", "malformed.csv"))
if sink != "csv":
    assert m["sinks"][sink]["rows"] == rows, (m["sinks"], rows)
server = f"{float(cpu1) - float(cpu0):.3f}" if sink == "mongodb" else ""
print(f"{sink},{mode},{workers},{m['records']['generated']},{rows},{float(end) - float(start):.3f},{server}")
PY
}

# CPU seconds of the MongoDB server's process so far (0 before it runs).
server_pid=""
server_cpu() {
  if [ -z "$server_pid" ]; then echo 0; return; fi
  awk -v t="$(getconf CLK_TCK)" '{ print ($14 + $15) / t }' "/proc/$server_pid/stat"
}

# REPS rounds of every mode and worker count, the SINKS interleaved within
# each (a slow moment of the machine hits them alike); each figure is the
# median of its runs. Run n writes MongoDB's database bn.
#   rounds REPS SINKS...
n=0
rounds() {
  local reps=$1 mode workers rep sink
  shift
  for mode in batches checkpoints; do
    for workers in 1 2; do
      for rep in $(seq "$reps"); do
        for sink in "$@"; do
          n=$((n + 1))
          flags=()
          [ "$mode" = checkpoints ] && flags+=(--checkpoint-dir "$work/ck-$n" --checkpoint-interval-ms 5000)
          case $sink in
            sqlite) rm -f "$work/r.db"*; flags+=(--sqlite "$work/r.db") ;;
            postgres) psql -q -X -d "$url" -c "DROP SCHEMA IF EXISTS b CASCADE" >/dev/null 2>&1; flags+=(--postgres "$url" --postgres-schema b) ;;
            mongodb) flags+=(--mongodb "mongodb://127.0.0.1:$mport/b$n?directConnection=true") ;;
          esac
          timed_run "$sink" "$mode" "$workers" "$work/out-$n" "${flags[@]}"
          rm -rf "$work/out-$n" "$work/ck-$n"
        done
      done
    done
  done
}

runs="$work/runs.csv"
echo "sink,mode,workers,records,rows,wall_s,server_cpu_s" > "$runs"
rounds 5 csv sqlite postgres
# MongoDB: its own smaller input and CSV-only baseline, three rounds.
replay_files "$mongo_trades" "$mongo_interactions"
venv="${HOME:-/tmp}/.cache/eddy-test-tools/venv-py"
if ! "$venv/bin/python" -c "import secantus, pymongo" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check secantusdb==0.7.0b3 pymongo==4.20.1
fi
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/secantusd-py" --host 127.0.0.1 --port "$mport" --storage-path "$work/mongo" --log-level ERROR >/dev/null 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null; as_pg "$bin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null; rm -rf "$work"' EXIT
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $mport))" 2>/dev/null; do sleep 0.2; done
rounds 3 csv mongodb
# The server's ceiling: the documents of the last run written again by
# pymongo, unordered bulk upserts of 5 000, no transaction.
for rep in 1 2 3; do
  "$venv/bin/python" - "mongodb://127.0.0.1:$mport/?directConnection=true" "b$n" "$rep" >> "$runs" <<'PY'
import sys, time
from pymongo import MongoClient, ReplaceOne
client = MongoClient(sys.argv[1])
source, target = client[sys.argv[2]], client[f"ceiling{sys.argv[3]}"]
names = [c for c in source.list_collection_names() if c != "eddy_progress"]
documents = {c: list(source[c].find()) for c in names}
for c in names:  # the same indexes as eddy's (by key, by time)
    for name, spec in source[c].index_information().items():
        if name != "_id_":
            target[c].create_index(spec["key"], name=name)
rows = sum(len(d) for d in documents.values())
start = time.time()
for c, docs in documents.items():
    for i in range(0, len(docs), 5000):
        target[c].bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs[i:i + 5000]], ordered=False)
print(f"pymongo,bulk,1,,{rows},{time.time() - start:.3f},")
PY
done

python3 - "$runs" "$machine" > "$csv" <<'PY'
import csv, statistics, sys
runs, machine = sys.argv[1:]
groups = {}
for r in csv.DictReader(open(runs)):
    groups.setdefault((r["mode"], r["workers"], r["records"], r["sink"]), []).append(r)
print("sink,mode,workers,records,rows,runs,wall_s_median,wall_s_min,wall_s_max,records_per_s,rows_per_s,vs_csv_only,server_busy,machine")
for (mode, workers, records, sink), rs in groups.items():
    walls = [float(r["wall_s"]) for r in rs]
    wall = statistics.median(walls)
    rows = int(rs[0]["rows"])
    if sink == "pymongo":
        print(f"{sink},{mode},,,{rows},{len(walls)},{wall:.3f},{min(walls):.3f},{max(walls):.3f},,"
              f"{rows / wall:.0f},,,{machine}")
        continue
    base = statistics.median(float(r["wall_s"]) for r in groups[(mode, workers, records, "csv")])
    busy = ""
    if sink == "mongodb":
        busy = f"{statistics.median(float(r['server_cpu_s']) / float(r['wall_s']) for r in rs):.2f}"
    records = int(records)
    print(f"{sink},{mode},{workers},{records},{rows},{len(walls)},{wall:.3f},{min(walls):.3f},"
          f"{max(walls):.3f},{records / wall:.0f},{rows / wall:.0f},{base / wall:.3g},{busy},{machine}")
PY
cat "$csv"
