//! Result tables compared as sets of rows: every query's CSV file, and the
//! same read back from a database by its own client, normalised so that both
//! sides agree on numbers (parsed as f64) and on absent values (empty).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

/// Every query's table.
pub const TABLES: [&str; 12] = [
    "activity_60s",
    "alerts",
    "anomalies",
    "bars_1s",
    "corr_60s",
    "ewma",
    "forecasts",
    "item_counts_60s",
    "item_totals",
    "item_users_60s",
    "stats_10s",
    "vol_60s",
];

/// A value as text both sides agree on: numbers by their parsed f64
/// (shortest exact form), NULL as empty.
pub fn normalise(text: &str) -> String {
    match text.parse::<f64>() {
        Ok(v) => format!("{v}"),
        Err(_) => text.to_string(),
    }
}

/// Sorted normalised rows of each result file, and its header.
pub type Tables = BTreeMap<String, (Vec<String>, Vec<Vec<String>>)>;

pub fn csv_tables(dir: &Path) -> Tables {
    csv_tables_of(dir, &TABLES)
}

/// As [`csv_tables`], of the tables `names` only.
pub fn csv_tables_of(dir: &Path, names: &[&str]) -> Tables {
    names
        .iter()
        .map(|t| {
            let mut reader = csv::Reader::from_path(dir.join(format!("{t}.csv"))).unwrap();
            let header: Vec<String> = reader
                .headers()
                .unwrap()
                .iter()
                .map(str::to_string)
                .collect();
            let mut rows: Vec<Vec<String>> = reader
                .records()
                .map(|r| r.unwrap().iter().map(normalise).collect())
                .collect();
            rows.sort();
            (t.to_string(), (header, rows))
        })
        .collect()
}

pub fn assert_same_tables(expected: &Tables, got: &Tables, what: &str) {
    for (t, (_, rows)) in expected {
        let got_rows = &got[t].1;
        if rows != got_rows {
            let missing: Vec<_> = rows.iter().filter(|r| !got_rows.contains(r)).collect();
            let extra: Vec<_> = got_rows.iter().filter(|r| !rows.contains(r)).collect();
            panic!(
                "{what}: table {t}: {} rows expected, {} got, {} missing (first {:?}), {} not expected (first {:?})",
                rows.len(),
                got_rows.len(),
                missing.len(),
                missing.first(),
                extra.len(),
                extra.first()
            );
        }
    }
}

/// Each row of `got` is a row of `expected`, at most as often.
pub fn assert_subset(expected: &Tables, got: &Tables, what: &str) {
    for (t, (_, rows)) in got {
        let mut left = expected[t].1.clone();
        for row in rows {
            let at = left.binary_search(row).unwrap_or_else(|_| {
                panic!("{what}: {t} holds {row:?}, not a final row (or twice)")
            });
            left.remove(at);
        }
    }
}
