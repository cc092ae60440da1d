#!/usr/bin/env bash
# results/dash_app.png: the pipeline of the source document, live, as
# docs/DATABASES.md gives it: tansu (Kafka), two `eddy produce` at 5x event
# time, `eddy run dataflows/mongodb.toml` into SecantusDB, the Dash app of
# examples/dash/ over it, and headless Chromium taking the whole page about a
# minute in. Needs tansu (the Kafka tests install it into
# ~/.cache/eddy-test-tools/bin) and Debian's chromium; makes the Python
# virtual environment of the tests when missing. Ports: 9092, 27017, 8080
# (the run's dashboard) and 8050 must be free.
#   bash benches/dash_screenshot.sh [SECONDS]   (default 70)
source "$(dirname "$0")/common.sh"
seconds=${1:-70}
tools="${HOME:-/tmp}/.cache/eddy-test-tools"
venv="$tools/venv-py"
if ! "$venv/bin/python" -c "import secantus, pymongo, dash, pandas" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check secantusdb==0.7.0b3 -r examples/dash/requirements.txt
fi
tansu=$(command -v tansu || echo "$tools/bin/tansu")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
wait_port() { until python3 -c "import socket; socket.create_connection(('127.0.0.1', $1))" 2>/dev/null; do sleep 0.2; done; }

"$tansu" broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/ >/dev/null 2>&1 &
pids+=($!)
"$venv/bin/secantusd-py" --host 127.0.0.1 --port 27017 --storage-path "$work/mongo" --log-level ERROR >/dev/null 2>&1 &
pids+=($!)
wait_port 9092
wait_port 27017
$eddy produce interactions --brokers 127.0.0.1:9092 --topic interactions --partitions 4 --count 1000000 --rate 100 --send-rate 500 >/dev/null 2>&1 &
pids+=($!)
$eddy produce trades --brokers 127.0.0.1:9092 --topic trades --partitions 4 --count 1000000 --symbols 8 --rate 40 --send-rate 200 >/dev/null 2>&1 &
pids+=($!)
(cd "$work" && exec "$OLDPWD/$eddy" run "$OLDPWD/dataflows/mongodb.toml" >run.log 2>&1) &
pids+=($!)
"$venv/bin/python" examples/dash/app.py --mongodb "mongodb://127.0.0.1:27017/eddy?directConnection=true" --port 8050 >/dev/null 2>&1 &
pids+=($!)
sleep "$seconds"
chromium --headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --window-size=1100,1800 --virtual-time-budget=8000 \
  --screenshot="$PWD/results/dash_app.png" http://127.0.0.1:8050/ 2>/dev/null
grep -v ALERT "$work/run.log" | tail -2
echo "results/dash_app.png"
