#!/usr/bin/env bash
# Kafka throughput -> results/kafka.csv
#   bash benches/kafka.sh [TRADES] [REPS]     (default 500 000 trades, 2 reps)
# A tansu broker on 127.0.0.1 (memory storage; from PATH or the tests' cache
# ~/.cache/eddy-test-tools/bin), one trades file from `eddy generate` (seed 3,
# 100 symbols) published to a 4-partition topic. Rows, whole commands timed:
#   produce       `eddy produce --file` as fast as possible
#   eddy_topic    `eddy run` of every trade query from the topic (stop = "end"), 1 and 2 workers
#   eddy_topic_2_processes  the same through `eddy cluster`, 2 processes of 1 worker
#   eddy_file     the same queries replaying the file, 1 and 2 workers
#   client_produce / client_consume   kafka-python publishing the file and
#                 reading the topic back: what the broker gives an independent client
source "$(dirname "$0")/common.sh"
trades=${1:-500000}
reps=${2:-2}
csv=results/kafka.csv
tansu=$(command -v tansu || echo "$HOME/.cache/eddy-test-tools/bin/tansu")
[ -x "$tansu" ] || { echo "no tansu: cargo install tansu --features dynostore" >&2; exit 1; }
python3 -c "import kafka" 2>/dev/null || python3 -m pip install --quiet kafka-python==3.0.12
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
"$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ >/dev/null 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; rm -rf "$work"' EXIT
sleep 1
$eddy generate trades -n "$trades" --seed 3 --symbols 100 --out "$work/t.csv" >/dev/null
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); python3 -c "print(f'{$e - $s:.3f}')"; }
row() { python3 -c "import sys; w,n,what,k,s,m=sys.argv[1:]; print(f'{what},{k},{n},{s},{int(n)/float(s):.0f},{m}')" "$@"; }
echo "what,workers,records,wall_s,records_per_s,machine" > "$csv"
for rep in $(seq 1 "$reps"); do
  topic="t$rep"
  s=$(seconds $eddy produce --file "$work/t.csv" --brokers "127.0.0.1:$port" --topic "$topic" --partitions 4)
  row x "$trades" produce "" "$s" "$machine" >> "$csv"
  printf '[sources.trades]\nkind = "kafka"\nbrokers = "127.0.0.1:%s"\ntopic = "%s"\nstop = "end"\n' "$port" "$topic" > "$work/k.toml"
  printf '[sources.trades]\nkind = "csv"\npath = "%s"\n' "$work/t.csv" > "$work/f.toml"
  for workers in 1 2; do
    s=$(seconds $eddy run "$work/k.toml" --workers "$workers" --quiet --out "$work/ok")
    row x "$trades" eddy_topic "$workers" "$s" "$machine" >> "$csv"
    s=$(seconds $eddy run "$work/f.toml" --workers "$workers" --quiet --out "$work/of")
    row x "$trades" eddy_file "$workers" "$s" "$machine" >> "$csv"
  done
  s=$(seconds $eddy cluster --processes 2 --workers 1 -- run "$work/k.toml" --quiet --out "$work/oc")
  row x "$trades" eddy_topic_2_processes 2 "$s" "$machine" >> "$csv"
  # ewma's last column (seq) is each source's own arrival number: compared without it.
  rows_of() { if [ "$2" = ewma ]; then sed 's/,[^,]*$//' "$1/$2.csv" | sort; else sort "$1/$2.csv"; fi; }
  for f in bars_1s stats_10s vol_60s corr_60s ewma; do
    for run in ok oc; do
      cmp -s <(rows_of "$work/$run" "$f") <(rows_of "$work/of" "$f") \
        || { echo "$f.csv differs between topic ($run) and file" >&2; exit 1; }
    done
  done
  s=$(seconds python3 - "127.0.0.1:$port" "c$rep" "$work/t.csv" <<'PY'
import sys
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
brokers, topic, path = sys.argv[1:]
KafkaAdminClient(bootstrap_servers=brokers).create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
p = KafkaProducer(bootstrap_servers=brokers, linger_ms=5, batch_size=1 << 20)
for line in open(path).read().splitlines()[1:]:
    p.send(topic, key=line.split(",")[1].encode(), value=line.encode())
p.flush()
PY
)
  row x "$trades" client_produce "" "$s" "$machine" >> "$csv"
  s=$(seconds python3 - "127.0.0.1:$port" "c$rep" "$trades" <<'PY'
import sys
from kafka import KafkaConsumer, TopicPartition
brokers, topic, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = KafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False, max_partition_fetch_bytes=64 << 20, fetch_max_bytes=128 << 20)
c.assign([TopicPartition(topic, p) for p in range(4)])
c.seek_to_beginning()
import time
n, deadline = 0, time.time() + 300
while n < want and time.time() < deadline:
    for msgs in c.poll(timeout_ms=1000).values():
        n += len(msgs)
assert n == want, (n, want)
PY
)
  row x "$trades" client_consume "" "$s" "$machine" >> "$csv"
done
cat "$csv"
