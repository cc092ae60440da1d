"""M1 (bars_1s) and M2 (stats_10s) of WORKLOAD.md in Apache Flink (PyFlink's
Table API, SQL), for benches/peers.sh.

Input: `seq,ts_ms,symbol,price,size` (the trades file with its row number in
front, so arrival order is explicit). Streaming mode with an event-time
watermark 200 ms behind the largest ts (eddy's max_delay); windowing table
functions TUMBLE (1 s) and HOP (10 s, slide 1 s); both queries in one job
(a statement set) writing CSV through the filesystem connector. open/close are
the prices of the least/greatest (ts_ms, seq), taken with MIN/MAX over an
order-preserving string key; std is STDDEV_SAMP. The session time zone is UTC.

    python benches/peers/flink_m1m2.py TRADES_SEQ_CSV OUT_DIR PARALLELISM
"""

import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

source, out, parallelism = sys.argv[1], sys.argv[2], sys.argv[3]
env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
config = env.get_config()
config.set("parallelism.default", parallelism)
config.set("table.local-time-zone", "UTC")

env.execute_sql(f"""
CREATE TABLE trades (
  seq BIGINT, ts_ms BIGINT, symbol STRING, price_text STRING, size BIGINT,
  price AS CAST(price_text AS DOUBLE),
  ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
  -- 13-digit ts, 12-digit seq, then the price as written: sorts by (ts, seq).
  order_key AS LPAD(CAST(ts_ms AS STRING), 13, '0') || LPAD(CAST(seq AS STRING), 12, '0') || price_text,
  WATERMARK FOR ts AS ts - INTERVAL '0.2' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{source}', 'format' = 'csv')
""")
for name, columns in [
    ("bars_1s", "open_ DOUBLE, high DOUBLE, low DOUBLE, close_ DOUBLE, volume BIGINT, trades BIGINT, vwap DOUBLE"),
    ("stats_10s", "n BIGINT, mean DOUBLE, std DOUBLE"),
]:
    env.execute_sql(f"""
    CREATE TABLE {name} (symbol STRING, window_start_ms BIGINT, {columns})
    WITH ('connector' = 'filesystem', 'path' = '{out}/{name}', 'format' = 'csv')
    """)

start_ms = "UNIX_TIMESTAMP(DATE_FORMAT(window_start, 'yyyy-MM-dd HH:mm:ss')) * 1000"
jobs = env.create_statement_set()
jobs.add_insert_sql(f"""
INSERT INTO bars_1s
SELECT symbol, {start_ms},
       CAST(SUBSTRING(MIN(order_key) FROM 26) AS DOUBLE), MAX(price), MIN(price),
       CAST(SUBSTRING(MAX(order_key) FROM 26) AS DOUBLE), SUM(size), COUNT(*),
       SUM(price * size) / SUM(size)
FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY symbol, window_start, window_end
""")
jobs.add_insert_sql(f"""
INSERT INTO stats_10s
SELECT symbol, {start_ms}, COUNT(*), AVG(price), STDDEV_SAMP(price)
FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '10' SECOND))
GROUP BY symbol, window_start, window_end
""")
jobs.execute().wait()
