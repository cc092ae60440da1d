"""Checks a peer's M1/M2 rows against eddy's, for benches/peers.sh.

    python3 agree.py EDDY_DIR PEER_DIR
EDDY_DIR holds eddy's bars_1s.csv and stats_10s.csv; PEER_DIR holds files
NAME*.csv with the same columns, with or without a header (any number of them,
e.g. one per worker). Keys are (symbol, window_start_ms); numbers agree to a
relative tolerance of 1e-9 (absolute near zero), empty cells only with empty
cells. Prints one line per file and exits 1 on any difference.
"""

import csv
import glob
import math
import os
import sys


def rows(paths):
    table = {}
    for path in paths:
        with open(path) as f:
            for r in csv.reader(f):
                if r[0] == "symbol":  # a header row
                    continue
                table[(r[0], int(float(r[1])))] = r[2:]
    return table


def same(a, b):
    if a == "" or b == "":
        return a == b
    x, y = float(a), float(b)
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)


def main(eddy_dir, peer_dir):
    ok = True
    for name in ("bars_1s", "stats_10s"):
        ours = rows([os.path.join(eddy_dir, name + ".csv")])
        theirs = rows(sorted(glob.glob(os.path.join(peer_dir, name + "*.csv"))))
        missing = ours.keys() - theirs.keys()
        extra = theirs.keys() - ours.keys()
        differ = [k for k in ours.keys() & theirs.keys()
                  if len(ours[k]) != len(theirs[k]) or not all(map(same, ours[k], theirs[k]))]
        good = not (missing or extra or differ)
        ok &= good
        print(f"{name}: {len(ours)} rows, {'agree' if good else 'DIFFER'}"
              f" (missing {len(missing)}, extra {len(extra)}, different {len(differ)})"
              + (f" e.g. {sorted(differ)[0]}: {ours[sorted(differ)[0]]} vs {theirs[sorted(differ)[0]]}" if differ else ""))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(*sys.argv[1:])
