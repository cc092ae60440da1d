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
