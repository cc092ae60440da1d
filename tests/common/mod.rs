//! Helpers for the integration tests: a brute-force reference for M1 and M2,
//! written independently of the engine (sort everything, compute each window
//! directly, two-pass variance), data set writers and result readers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A trade as the reference sees it: `seq` is its row index in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub ts: u64,
    pub seq: u64,
    pub symbol: String,
    pub price: f64,
    pub size: u64,
}

/// Reads a trades file (every row must parse).
pub fn read_trades(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            Row {
                ts: f[0].parse().unwrap(),
                seq: i as u64,
                symbol: f[1].to_string(),
                price: f[2].parse().unwrap(),
                size: f[3].parse().unwrap(),
            }
        })
        .collect()
}

pub fn write_trades(path: &Path, rows: &[Row]) {
    let mut text = String::from("ts_ms,symbol,price,size\n");
    for r in rows {
        text.push_str(&format!("{},{},{},{}\n", r.ts, r.symbol, r.price, r.size));
    }
    std::fs::write(path, text).unwrap();
}

/// Result rows keyed by their key columns, values as text.
pub type Table = BTreeMap<Vec<String>, BTreeMap<String, String>>;

/// M1 by brute force: group by (symbol, second), order each group by (ts, seq).
pub fn reference_bars(rows: &[Row], size_ms: u64) -> Table {
    let mut groups: BTreeMap<(String, u64), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.symbol.clone(), r.ts / size_ms * size_ms))
            .or_default()
            .push(r);
    }
    let mut table = Table::new();
    for ((symbol, start), mut g) in groups {
        g.sort_by_key(|r| (r.ts, r.seq));
        let volume: u64 = g.iter().map(|r| r.size).sum();
        let notional: f64 = g.iter().map(|r| r.price * r.size as f64).sum();
        let high = g.iter().map(|r| r.price).fold(f64::MIN, f64::max);
        let low = g.iter().map(|r| r.price).fold(f64::MAX, f64::min);
        let mut v = BTreeMap::new();
        v.insert("open".into(), g[0].price.to_string());
        v.insert("close".into(), g[g.len() - 1].price.to_string());
        v.insert("high".into(), high.to_string());
        v.insert("low".into(), low.to_string());
        v.insert("volume".into(), volume.to_string());
        v.insert("trades".into(), g.len().to_string());
        v.insert("vwap".into(), (notional / volume as f64).to_string());
        table.insert(vec![symbol, start.to_string()], v);
    }
    table
}

/// M2 by brute force: every window [k*slide, k*slide + length) that holds a trade.
pub fn reference_stats(rows: &[Row], length_ms: u64, slide_ms: u64) -> Table {
    let mut windows: BTreeMap<(String, u64), Vec<f64>> = BTreeMap::new();
    for r in rows {
        let last = r.ts / slide_ms * slide_ms;
        let mut start = last;
        loop {
            if start + length_ms <= r.ts {
                break;
            }
            windows
                .entry((r.symbol.clone(), start))
                .or_default()
                .push(r.price);
            if start < slide_ms {
                break;
            }
            start -= slide_ms;
        }
    }
    let mut table = Table::new();
    for ((symbol, start), prices) in windows {
        let n = prices.len() as f64;
        let mean = prices.iter().sum::<f64>() / n;
        let std = if prices.len() > 1 {
            let ss: f64 = prices.iter().map(|p| (p - mean) * (p - mean)).sum();
            (ss / (n - 1.0)).sqrt().to_string()
        } else {
            String::new()
        };
        let mut v = BTreeMap::new();
        v.insert("count".into(), prices.len().to_string());
        v.insert("mean".into(), mean.to_string());
        v.insert("std".into(), std);
        table.insert(vec![symbol, start.to_string()], v);
    }
    table
}

/// Reads a result file into a table keyed by `keys`.
pub fn read_table(path: &Path, keys: &[&str]) -> Table {
    let mut reader =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let mut table = Table::new();
    for record in reader.records() {
        let record = record.unwrap();
        let mut key = Vec::new();
        let mut values = BTreeMap::new();
        for (h, v) in headers.iter().zip(record.iter()) {
            if keys.contains(&h.as_str()) {
                key.push(v.to_string());
            } else {
                values.insert(h.clone(), v.to_string());
            }
        }
        assert!(
            table.insert(key.clone(), values).is_none(),
            "duplicate key {key:?} in {}",
            path.display()
        );
    }
    table
}

fn close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// Asserts two tables hold the same keys and values (floats to 1e-9, relative).
pub fn assert_tables_match(expected: &Table, got: &Table, what: &str) {
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(3)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(3)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} expected rows, {} got; missing {missing:?}, extra {extra:?}",
        expected.len(),
        got.len()
    );
    for (key, values) in expected {
        for (column, want) in values {
            let have = &got[key][column];
            assert!(
                close(want, have),
                "{what}: {key:?} {column}: expected {want}, got {have}"
            );
        }
    }
}

/// A temporary folder for one test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The shared sample, when the checkout has it beside the project.
pub fn shared_sample() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/workload/sample");
    p.join("trades.csv").exists().then_some(p)
}

/// Asserts with the shared sample's `compare.py` that `out` holds its
/// expected results; `what` names the run in the failure.
pub fn assert_matches_sample(sample: &Path, out: &Path, what: &str) {
    let compare = std::process::Command::new("python3")
        .arg(sample.join("../compare.py"))
        .arg(sample.join("expected"))
        .arg(out)
        .output()
        .unwrap();
    assert!(
        compare.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&compare.stdout),
        String::from_utf8_lossy(&compare.stderr)
    );
}

/// `eddy replay` of the shared sample's two files into `out` on `workers`
/// workers, quiet, with `extra` flags.
pub fn replay_sample(
    sample: &Path,
    out: &Path,
    workers: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "replay",
        "--quiet",
        "--workers",
        workers,
        "--out",
        out.to_str().unwrap(),
    ];
    let (trades, interactions) = (sample.join("trades.csv"), sample.join("interactions.csv"));
    args.extend(["--trades", trades.to_str().unwrap()]);
    args.extend(["--interactions", interactions.to_str().unwrap()]);
    args.extend_from_slice(extra);
    eddy(&args)
}

fn two_pass_std(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()
}

fn sorted_by_symbol(rows: &[Row]) -> BTreeMap<String, Vec<&Row>> {
    let mut by: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by.entry(r.symbol.clone()).or_default().push(r);
    }
    for v in by.values_mut() {
        v.sort_by_key(|r| (r.ts, r.seq));
    }
    by
}

/// M3 by brute force: each window's trades in order, consecutive log returns, two-pass std.
pub fn reference_vol(rows: &[Row], size_ms: u64) -> Table {
    let mut table = Table::new();
    for (symbol, trades) in sorted_by_symbol(rows) {
        let mut windows: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for r in trades {
            windows
                .entry(r.ts / size_ms * size_ms)
                .or_default()
                .push(r.price);
        }
        for (start, prices) in windows {
            let returns: Vec<f64> = prices.windows(2).map(|p| (p[1] / p[0]).ln()).collect();
            if returns.len() >= 2 {
                let mut v = BTreeMap::new();
                v.insert("returns".into(), returns.len().to_string());
                v.insert("volatility".into(), two_pass_std(&returns).to_string());
                table.insert(vec![symbol.clone(), start.to_string()], v);
            }
        }
    }
    table
}

/// C1 by brute force: closes per second, returns of consecutive seconds, Pearson per pair and window.
pub fn reference_corr(rows: &[Row], size_ms: u64) -> Table {
    let mut returns: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    for (symbol, trades) in sorted_by_symbol(rows) {
        let mut closes: BTreeMap<u64, f64> = BTreeMap::new();
        for r in trades {
            closes.insert(r.ts / 1000, r.price);
        }
        let series = returns.entry(symbol).or_default();
        for (&k, &close) in &closes {
            if let Some(&prev) = k.checked_sub(1).and_then(|p| closes.get(&p)) {
                series.insert(k, (close / prev).ln());
            }
        }
    }
    let symbols: Vec<&String> = returns.keys().collect();
    let windows: std::collections::BTreeSet<u64> = returns
        .values()
        .flat_map(|s| s.keys().map(|k| k * 1000 / size_ms * size_ms))
        .collect();
    let mut table = Table::new();
    for &w in &windows {
        for (i, a) in symbols.iter().enumerate() {
            for b in &symbols[i + 1..] {
                let pairs: Vec<(f64, f64)> = returns[*a]
                    .iter()
                    .filter(|(k, _)| **k * 1000 >= w && **k * 1000 < w + size_ms)
                    .filter_map(|(k, x)| returns[*b].get(k).map(|y| (*x, *y)))
                    .collect();
                let constant =
                    |f: fn(&(f64, f64)) -> f64| pairs.iter().all(|p| f(p) == f(&pairs[0]));
                if pairs.len() < 3 || constant(|p| p.0) || constant(|p| p.1) {
                    continue;
                }
                let n = pairs.len() as f64;
                let mx = pairs.iter().map(|p| p.0).sum::<f64>() / n;
                let my = pairs.iter().map(|p| p.1).sum::<f64>() / n;
                let cov: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
                let vx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
                let vy: f64 = pairs.iter().map(|p| (p.1 - my).powi(2)).sum();
                let mut v = BTreeMap::new();
                v.insert("n".into(), pairs.len().to_string());
                v.insert("corr".into(), (cov / (vx * vy).sqrt()).to_string());
                table.insert(vec![(*a).clone(), (*b).clone(), w.to_string()], v);
            }
        }
    }
    table
}

/// An `ewma.csv` row without its symbol: (ts, price, ewma, ewm_vol).
pub type EwmaPoint = (u64, f64, f64, Option<f64>);

/// EWMA rows per symbol, in (ts, seq) order.
pub fn reference_ewma(rows: &[Row], half_life: f64) -> BTreeMap<String, Vec<EwmaPoint>> {
    let a = 1.0 - 0.5f64.powf(1.0 / half_life);
    let mut out = BTreeMap::new();
    for (symbol, trades) in sorted_by_symbol(rows) {
        let mut list = Vec::new();
        let (mut ewma, mut var): (f64, Option<f64>) = (trades[0].price, None);
        for (i, r) in trades.iter().enumerate() {
            if i > 0 {
                let ret = (r.price / trades[i - 1].price).ln();
                var = Some(match var {
                    None => ret * ret,
                    Some(v) => a * ret * ret + (1.0 - a) * v,
                });
                ewma = a * r.price + (1.0 - a) * ewma;
            }
            list.push((r.ts, r.price, ewma, var.map(f64::sqrt)));
        }
        out.insert(symbol, list);
    }
    out
}

/// An interaction as the reference sees it.
#[derive(Clone, Debug)]
pub struct Ix {
    pub ts: u64,
    pub user: u64,
    pub item: u64,
    pub kind: String,
}

pub fn read_interactions(path: &Path) -> Vec<Ix> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            Ix {
                ts: f[0].parse().unwrap(),
                user: f[1].parse().unwrap(),
                item: f[2].parse().unwrap(),
                kind: f[3].to_string(),
            }
        })
        .collect()
}

fn kind_counts(rows: &[&Ix]) -> [u64; 3] {
    let count = |k: &str| rows.iter().filter(|r| r.kind == k).count() as u64;
    [count("view"), count("click"), count("purchase")]
}

/// I1, I2, I3 and I4 by brute force.
pub fn reference_interactions(
    rows: &[Ix],
    size_ms: u64,
    threshold: u64,
) -> (Table, Table, Table, Table) {
    let mut by_item_window: BTreeMap<(u64, u64), Vec<&Ix>> = BTreeMap::new();
    let mut by_window: BTreeMap<u64, Vec<&Ix>> = BTreeMap::new();
    let mut by_item: BTreeMap<u64, Vec<&Ix>> = BTreeMap::new();
    for r in rows {
        let w = r.ts / size_ms * size_ms;
        by_item_window.entry((r.item, w)).or_default().push(r);
        by_window.entry(w).or_default().push(r);
        by_item.entry(r.item).or_default().push(r);
    }
    let (mut counts, mut activity, mut alerts, mut totals) =
        (Table::new(), Table::new(), Table::new(), Table::new());
    for ((item, w), list) in &by_item_window {
        let [v, c, p] = kind_counts(list);
        let total = list.len() as u64;
        let row: BTreeMap<String, String> = [
            ("views", v),
            ("clicks", c),
            ("purchases", p),
            ("total", total),
        ]
        .iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
        counts.insert(vec![item.to_string(), w.to_string()], row);
        if total > threshold {
            let row = [("total", total), ("threshold", threshold)]
                .iter()
                .map(|(k, n)| (k.to_string(), n.to_string()))
                .collect();
            alerts.insert(vec![item.to_string(), w.to_string()], row);
        }
    }
    for (w, list) in &by_window {
        let users: std::collections::BTreeSet<u64> = list.iter().map(|r| r.user).collect();
        let mut per_item: BTreeMap<u64, u64> = BTreeMap::new();
        for r in list {
            *per_item.entry(r.item).or_default() += 1;
        }
        // Max: largest count, smallest item; min: smallest count, smallest item.
        let (max_item, max_count) =
            per_item.iter().fold(
                (0, 0),
                |best, (i, n)| if *n > best.1 { (*i, *n) } else { best },
            );
        let (min_item, min_count) =
            per_item.iter().fold(
                (0, u64::MAX),
                |best, (i, n)| if *n < best.1 { (*i, *n) } else { best },
            );
        let mut row = BTreeMap::new();
        row.insert("users".into(), users.len().to_string());
        row.insert("interactions".into(), list.len().to_string());
        row.insert(
            "avg_per_user".into(),
            (list.len() as f64 / users.len() as f64).to_string(),
        );
        row.insert("max_item".into(), max_item.to_string());
        row.insert("max_count".into(), max_count.to_string());
        row.insert("min_item".into(), min_item.to_string());
        row.insert("min_count".into(), min_count.to_string());
        activity.insert(vec![w.to_string()], row);
    }
    for (item, list) in &by_item {
        let [v, c, p] = kind_counts(list);
        let row = [
            ("views", v),
            ("clicks", c),
            ("purchases", p),
            ("total", list.len() as u64),
        ]
        .iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
        totals.insert(vec![item.to_string()], row);
    }
    (counts, activity, alerts, totals)
}

/// Runs the eddy binary with `args`, warnings and errors only on stderr.
pub fn eddy(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("eddy runs")
}

/// `eddy generate STREAM --out PATH --count COUNT EXTRA...`, which must succeed.
pub fn generate(stream: &str, path: &Path, count: u64, extra: &[&str]) {
    let count = count.to_string();
    let mut args = vec![
        "generate",
        stream,
        "--out",
        path.to_str().unwrap(),
        "--count",
        &count,
    ];
    args.extend_from_slice(extra);
    let o = eddy(&args);
    assert!(
        o.status.success(),
        "eddy {}: {}",
        args.join(" "),
        stderr(&o)
    );
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A run's metrics.json.
pub fn metrics(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
}

/// The eight WORKLOAD.md result files and their key columns.
pub const WORKLOAD_FILES: [(&str, &[&str]); 8] = [
    ("bars_1s", &["symbol", "window_start_ms"]),
    ("stats_10s", &["symbol", "window_start_ms"]),
    ("vol_60s", &["symbol", "window_start_ms"]),
    ("corr_60s", &["symbol_a", "symbol_b", "window_start_ms"]),
    ("item_counts_60s", &["item_id", "window_start_ms"]),
    ("activity_60s", &["window_start_ms"]),
    ("alerts", &["item_id", "window_start_ms"]),
    ("item_totals", &["item_id"]),
];

/// A quiet pipeline replaying CSV files into `out` on `workers` workers.
pub fn replay_pipeline(
    trades: Option<&Path>,
    interactions: Option<&Path>,
    out: &Path,
    workers: usize,
) -> eddy::pipeline::Pipeline {
    use eddy::pipeline::{CsvSource, InteractionSource, Pipeline, TradeSource};
    let mut p = Pipeline::default();
    p.sources.trades = trades.map(|t| {
        TradeSource::Csv(CsvSource {
            path: t.to_path_buf(),
        })
    });
    p.sources.interactions = interactions.map(|i| {
        InteractionSource::Csv(CsvSource {
            path: i.to_path_buf(),
        })
    });
    p.output.dir = Some(out.to_path_buf());
    p.engine.workers = workers;
    p.engine.status = false;
    p
}

/// An eddy process serving its dashboard; killed when dropped.
pub struct Served {
    child: std::process::Child,
    /// `host:port` the dashboard is on, as eddy printed it.
    pub address: String,
    /// What eddy wrote on stderr so far (the reader thread keeps appending).
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    /// Starts `eddy ARGS --dashboard 127.0.0.1:0` and waits for the address it prints.
    pub fn start(args: &[&str]) -> Served {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(args)
            .args(["--dashboard", "127.0.0.1:0", "--quiet"])
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("eddy starts");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (found, address) = std::sync::mpsc::channel();
        let appended = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                // http:// or https://
                if let Some(rest) = line.split("dashboard: http").nth(1) {
                    let rest = rest.trim_start_matches('s').trim_start_matches("://");
                    let _ = found.send(rest.split('/').next().unwrap_or("").to_string());
                }
                let mut log = appended.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let address = address
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!("eddy printed no dashboard address: {}", log.lock().unwrap())
            });
        Served {
            child,
            address,
            log,
        }
    }

    /// GET `path` from the dashboard's server: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.address);
        match ureq::get(&url).call() {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().expect("a text body"),
            ),
            Err(ureq::Error::StatusCode(code)) => (code, String::new()),
            Err(e) => panic!("GET {url}: {e}"),
        }
    }

    /// Waits for the process to end by itself.
    pub fn wait(&mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "eddy did not end within {limit:?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
