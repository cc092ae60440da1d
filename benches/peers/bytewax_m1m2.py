"""M1 (bars_1s) and M2 (stats_10s) of WORKLOAD.md in Bytewax, for benches/peers.sh.

Input: `seq,ts_ms,symbol,price,size` (the trades file with its row number in
front, so arrival order is explicit). Event time with Bytewax's EventClock,
waiting 200 ms for disorder (eddy's max_delay); tumbling 1 s and sliding
10 s / 1 s windows aligned to the epoch; fold_window with ordered=False (the
accumulators do not depend on order: open/close keep the least/greatest
(ts, seq), mean/std are Welford moments). Rows go to OUT_DIR/{bars_1s,stats_10s}.W.csv,
one file per worker.

    python -m bytewax.run benches/peers/bytewax_m1m2.py:flow -w W
    (env: PEER_IN=trades_seq.csv PEER_OUT=dir)
"""

import math
import os
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.connectors.files import FileSource
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
IN, OUT = os.environ["PEER_IN"], os.environ["PEER_OUT"]


def parse(line):
    seq, ts, symbol, price, size = line.split(",")
    return symbol, (int(ts), int(seq), float(price), int(size))


def event_time(trade):
    return EPOCH + timedelta(milliseconds=trade[0])


def bar_fold(acc, t):
    if acc is None:
        return [t, t, t[2], t[2], t[3], 1, t[2] * t[3]]
    first, last, high, low, volume, n, notional = acc
    key = (t[0], t[1])
    return [
        t if key < (first[0], first[1]) else first,
        t if key > (last[0], last[1]) else last,
        max(high, t[2]),
        min(low, t[2]),
        volume + t[3],
        n + 1,
        notional + t[2] * t[3],
    ]


def bar_merge(a, b):
    if a is None or b is None:
        return a if b is None else b
    return [
        min(a[0], b[0], key=lambda t: (t[0], t[1])),
        max(a[1], b[1], key=lambda t: (t[0], t[1])),
        max(a[2], b[2]),
        min(a[3], b[3]),
        a[4] + b[4],
        a[5] + b[5],
        a[6] + b[6],
    ]


def stats_fold(acc, t):
    # Welford: count, mean, sum of squared deviations.
    n, mean, m2 = acc
    n += 1
    delta = t[2] - mean
    mean += delta / n
    return (n, mean, m2 + delta * (t[2] - mean))


def stats_merge(a, b):
    # Chan et al.'s parallel combination.
    n = a[0] + b[0]
    if n == 0:
        return a
    delta = b[1] - a[1]
    return (n, a[1] + delta * b[0] / n, a[2] + b[2] + delta * delta * a[0] * b[0] / n)


def bar_row(item):
    symbol, (window_id, (first, last, high, low, volume, n, notional)) = item
    start = window_id * 1000
    return "bars_1s", f"{symbol},{start},{first[2]!r},{high!r},{low!r},{last[2]!r},{volume},{n},{notional / volume!r}"


def stats_row(item):
    symbol, (window_id, (n, mean, m2)) = item
    std = "" if n < 2 else repr(math.sqrt(m2 / (n - 1)))
    return "stats_10s", f"{symbol},{window_id * 1000},{n},{mean!r},{std}"


class _Part(StatelessSinkPartition):
    def __init__(self, worker):
        self.files = {
            name: open(os.path.join(OUT, f"{name}.{worker}.csv"), "w")
            for name in ("bars_1s", "stats_10s")
        }

    def write_batch(self, items):
        for name, line in items:
            self.files[name].write(line + "\n")

    def close(self):
        for f in self.files.values():
            f.close()


class RowSink(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        return _Part(worker_index)


flow = Dataflow("m1m2")
lines = op.input("in", flow, FileSource(IN))
trades = op.map("parse", lines, parse)
clock = win.EventClock(event_time, wait_for_system_duration=timedelta(milliseconds=200))
bars = win.fold_window(
    "bars", trades, clock,
    win.TumblingWindower(length=timedelta(seconds=1), align_to=EPOCH),
    lambda: None, bar_fold, bar_merge, ordered=False,
)
stats = win.fold_window(
    "stats", trades, clock,
    win.SlidingWindower(length=timedelta(seconds=10), offset=timedelta(seconds=1), align_to=EPOCH),
    lambda: (0, 0.0, 0.0), stats_fold, stats_merge, ordered=False,
)
rows = op.merge("rows", op.map("bar_rows", bars.down, bar_row), op.map("stats_rows", stats.down, stats_row))
op.output("out", rows, RowSink())
