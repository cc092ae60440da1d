#!/usr/bin/env python3
"""The soak benchmark (see benches/soak.sh): two engines left running with
rolling results, retention and checkpoints, sampled every few seconds.

- "demo": the built-in demo (generators of both streams, every query) at
  --speed, with checkpoints every 5 s of wall time;
- "tcp": the same queries fed over `--listen` by `eddy send` from generated
  files, one round after another (each round's event time follows the last),
  so that the input log is written and trimmed for the whole run.

Each sample row: seconds since the start, the engine, its RSS (MiB) and CPU
(cores over the interval), the bytes of its result folder, checkpoint folder
and input log (MB), the window latency p99 over the interval (ms, from the
Prometheus histogram's buckets) and the generator lag (s). The window latency is the demo's: over TCP a window
becomes due by the senders' event time, which is theirs to keep."""

import argparse
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def folder_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass  # a part renamed or removed while walking
    return total


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def scrape(port):
    """The metrics a sample needs from /metrics: window latency buckets,
    generator lag, input-log bytes."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    buckets, lag, log_bytes = {}, 0.0, 0
    for line in text.splitlines():
        if line.startswith("eddy_window_latency_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.split()[-1])
        elif line.startswith("eddy_generator_lag_seconds "):
            lag = float(line.split()[-1])
        elif line.startswith("eddy_input_log_bytes"):
            log_bytes += int(float(line.split()[-1]))
    return buckets, lag, log_bytes


def p99_ms(now, before):
    """The 99th percentile of the window latencies observed between two
    scrapes, interpolated within its bucket; empty if none were."""
    bounds = sorted(now)
    counts = [now[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if total <= 0:
        return ""
    rank, lower, below = 0.99 * total, 0.0, 0.0
    for bound, cumulative in zip(bounds, counts):
        if cumulative >= rank:
            if bound == float("inf"):
                return round(lower * 1000, 2)
            share = (rank - below) / max(cumulative - below, 1e-9)
            return round((lower + share * (bound - lower)) * 1000, 2)
        lower, below = bound, cumulative
    return ""


def last_ts_ms(path):
    """The event time of the last line of a generated CSV file."""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 4096))
        return int(f.read().splitlines()[-1].split(b",")[0])


def feeder(eddy, work, port, rate, stop):
    """Sends rounds of generated trades and interactions at `rate` lines/s
    (2/3 trades), each round's event time after the last's."""
    rounds, start_ms, seconds = 0, 0, 120
    last_ms = 0
    while not stop():
        # Each round's event time starts now (or after the last round's).
        start_ms = max(start_ms, int(time.time() * 1000))
        t, i = int(rate * 2 / 3), int(rate / 3)
        files = {}
        for stream, per_s, n in (("trades", t, t * seconds), ("interactions", i, i * seconds)):
            path = os.path.join(work, f"{stream}-{rounds}.csv")
            subprocess.run(
                [eddy, "generate", stream, "-o", path, "-n", str(n), "--rate", str(per_s),
                 "--start-ms", str(start_ms), "--seed", str(rounds + 1)],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            files[stream] = (path, per_s)
            # n records at a rate span about n / rate seconds, not exactly:
            # the next round starts after the latest record of both streams
            # (else its first records are late for the one that ran longer).
            last_ms = max(last_ms, last_ts_ms(path))
        senders = [
            subprocess.Popen(
                [eddy, "send", "--to", f"127.0.0.1:{port}", "--rate", str(per_s),
                 "--id", f"{stream}-{rounds}", path],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for stream, (path, per_s) in files.items()
        ]
        for s in senders:
            while s.poll() is None:
                if stop():
                    s.terminate()
                time.sleep(0.5)
        for path, _ in files.values():
            os.remove(path)
        rounds += 1
        start_ms = max(start_ms + seconds * 1000, last_ms + 1)
    return rounds


def main():
    a = argparse.ArgumentParser(description=__doc__)
    a.add_argument("--eddy", required=True)
    a.add_argument("--duration", type=float, default=3600)
    a.add_argument("--every", type=float, default=10)
    a.add_argument("--speed", type=float, default=10)
    a.add_argument("--tcp-rate", type=float, default=3000, help="lines/s sent to the tcp engine")
    a.add_argument("--roll-mb", type=float, default=16)
    a.add_argument("--roll-s", type=float, default=60)
    a.add_argument("--keep-s", type=float, default=300)
    a.add_argument("--segment-mib", type=int, default=8)
    a.add_argument("--work", required=True)
    a.add_argument("--csv", required=True)
    args = a.parse_args()

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    common = ["--roll-mb", str(args.roll_mb), "--roll-s", str(args.roll_s),
              "--keep-s", str(args.keep_s),
              "-d", str(args.duration), "--dashboard-linger", "0", "-q"]
    ports = {"demo": free_port(), "tcp": free_port()}
    listen = free_port()
    engines = {
        "demo": [args.eddy, "run", "--speed", str(args.speed),
                 "--checkpoint-dir", f"{work}/demo/ck",
                 "--checkpoint-interval-ms", str(int(5000 * args.speed)),
                 "--dashboard", f"127.0.0.1:{ports['demo']}", "-o", f"{work}/demo/out"] + common,
        "tcp": [args.eddy, "run", "--listen", f"127.0.0.1:{listen}",
                "--input-log-segment-mib", str(args.segment_mib),
                "--checkpoint-dir", f"{work}/tcp/ck", "--checkpoint-interval-ms", "5000",
                "--dashboard", f"127.0.0.1:{ports['tcp']}", "-o", f"{work}/tcp/out"] + common,
    }
    procs = {}
    for name, cmd in engines.items():
        os.makedirs(f"{work}/{name}")
        log = open(f"{work}/{name}/stderr.log", "w")
        procs[name] = subprocess.Popen(cmd, stderr=log, stdout=log)
    print("soak:", " ;; ".join(" ".join(c) for c in engines.values()), file=sys.stderr)

    began = time.time()
    import threading
    stopping = threading.Event()
    rounds = []
    time.sleep(1)
    thread = threading.Thread(
        target=lambda: rounds.append(feeder(args.eddy, work, listen, args.tcp_rate, stopping.is_set)))
    thread.start()

    rows, before = [], {n: (None, None) for n in engines}
    fields = ["t_s", "engine", "rss_mib", "cpu_cores", "results_mb", "checkpoints_mb",
              "input_log_mb", "window_p99_ms", "generator_lag_s"]
    with open(args.csv, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(fields)
        while any(p.poll() is None for p in procs.values()):
            time.sleep(args.every)
            t = round(time.time() - began, 1)
            for name, p in procs.items():
                if p.poll() is not None:
                    continue
                cpu, metrics = cpu_seconds(p.pid), scrape(ports[name])
                last_cpu, last_metrics = before[name]
                buckets, lag, log_bytes = metrics or ({}, 0.0, 0)
                row = [
                    t, name, round(rss_mib(p.pid), 1),
                    round((cpu - last_cpu) / args.every, 3) if last_cpu is not None else "",
                    round(folder_bytes(f"{work}/{name}/out") / 1e6, 2),
                    round((folder_bytes(f"{work}/{name}/ck") - log_bytes) / 1e6, 2),
                    round(log_bytes / 1e6, 2),
                    # Over TCP, event time is the sender's: only the
                    # generators' windows become due on the engine's clock.
                    p99_ms(buckets, last_metrics[0]) if last_metrics and name == "demo" else "",
                    round(lag, 3),
                ]
                before[name] = (cpu, metrics)
                w.writerow(row)
                out.flush()
                rows.append(dict(zip(fields, row)))
    stopping.set()
    thread.join()
    codes = {n: p.wait() for n, p in procs.items()}
    print(f"soak: {len(rows)} samples, {rounds[0] if rounds else 0} tcp rounds, exit codes {codes}",
          file=sys.stderr)
    failed = [n for n, c in codes.items() if c != 0]
    for n in failed:
        sys.stderr.write(open(f"{work}/{n}/stderr.log").read()[-3000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
