#!/usr/bin/env python3
"""Memory under overload (see benches/overload.sh): the demo pipeline (every
query) offered `--speed` × 7000 events/s for `--duration` seconds, and the same
at `--normal-speed` for comparison; RSS, records processed a second and the
generator's lag every `--every` seconds, one row per sample."""

import argparse
import csv
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soak import free_port, rss_mib  # noqa: E402

import urllib.request  # noqa: E402


def counters(port):
    """Records ingested so far and the generator's lag (s)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    ingested, lag = 0.0, 0.0
    for line in text.splitlines():
        if line.startswith("eddy_records_ingested_total"):
            ingested += float(line.split()[-1])
        elif line.startswith("eddy_generator_lag_seconds "):
            lag = float(line.split()[-1])
    return ingested, lag


def run(eddy, name, speed, duration, every, work, writer):
    port = free_port()
    cmd = [eddy, "run", "--speed", str(speed), "-d", str(duration), "-q",
           "--dashboard", f"127.0.0.1:{port}", "--dashboard-linger", "0",
           "-o", os.path.join(work, name)]
    print("overload:", " ".join(cmd), file=sys.stderr)
    p = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    began, last = time.time(), None
    while p.poll() is None:
        time.sleep(every)
        if p.poll() is not None:
            break
        now, rss = counters(port), rss_mib(p.pid)
        t = round(time.time() - began, 1)
        per_s = round((now[0] - last[0]) / every) if now and last else ""
        writer.writerow([name, t, int(speed * 7000), round(rss, 1), per_s,
                         round(now[1], 2) if now else ""])
        last = now
    return p.wait()


def main():
    a = argparse.ArgumentParser(description=__doc__)
    a.add_argument("--eddy", required=True)
    a.add_argument("--speed", type=float, default=1300)
    a.add_argument("--normal-speed", type=float, default=10)
    a.add_argument("--duration", type=float, default=300)
    a.add_argument("--every", type=float, default=10)
    a.add_argument("--work", required=True)
    a.add_argument("--csv", required=True)
    args = a.parse_args()
    with open(args.csv, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["run", "t_s", "offered_per_s", "rss_mib", "processed_per_s", "generator_lag_s"])
        codes = [
            run(args.eddy, "normal", args.normal_speed, 60, args.every, args.work, w),
            run(args.eddy, "overload", args.speed, args.duration, args.every, args.work, w),
        ]
    return 0 if codes == [0, 0] else 1


if __name__ == "__main__":
    sys.exit(main())
