//! The extension points of `src/extend.rs`: a registered trade query and a
//! row sink, checked against brute force on a replayed file, for 1 and 3
//! workers.

mod common;

use common::{generate, read_trades, replay_pipeline, temp_dir};
use eddy::engine::{run, Job};
use eddy::extend::TradeQuery;
use eddy::operators::bars::Bar;
use eddy::operators::ordered::OrderedLogic;
use eddy::record::Trade;
use eddy::sinks::row_sink::RowSink;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Per symbol, the running maximum price, one row per trade in (ts, seq) order.
#[derive(Serialize, Deserialize, Default)]
struct RunningMax(BTreeMap<String, f64>);

#[derive(Clone, Serialize)]
struct MaxRow {
    symbol: String,
    seq: u64,
    max: f64,
}

impl OrderedLogic for RunningMax {
    type In = Trade;
    type Out = MaxRow;
    fn order(&self, t: &Trade) -> (u64, u64) {
        (t.ts_ms, t.seq)
    }
    fn on_record(&mut self, t: &Trade, out: &mut Vec<MaxRow>) {
        let max = self.0.entry(t.symbol.text()).or_insert(f64::MIN);
        *max = max.max(t.price);
        out.push(MaxRow {
            symbol: t.symbol.text(),
            seq: t.seq,
            max: *max,
        });
    }
    fn on_frontier(&mut self, _: Option<u64>, _: &mut Vec<MaxRow>) {}
    fn owes_at(&self) -> Option<u64> {
        None
    }
}

#[derive(Default)]
struct BarCount(AtomicU64);

impl RowSink for BarCount {
    fn bars(&self, rows: &[Bar]) {
        self.0.fetch_add(rows.len() as u64, Relaxed);
    }
}

#[test]
fn a_registered_query_and_a_row_sink_see_what_brute_force_computes() {
    let dir = temp_dir();
    let trades = dir.path().join("trades.csv");
    generate(
        "trades",
        &trades,
        30000,
        &["--symbols", "7", "--disorder-ms", "80"],
    );
    // Brute force: the rows in (ts, seq) order, a running maximum per symbol.
    let mut rows = read_trades(&trades);
    rows.sort_by_key(|r| (r.ts, r.seq));
    let mut max: BTreeMap<String, f64> = BTreeMap::new();
    let mut expected: Vec<String> = rows
        .iter()
        .map(|r| {
            let m = max.entry(r.symbol.clone()).or_insert(f64::MIN);
            *m = m.max(r.price);
            format!("{},{},{}", r.symbol, r.seq, m)
        })
        .collect();
    expected.sort();

    for workers in [1, 3] {
        let out = dir.path().join(format!("out{workers}"));
        let mut p = replay_pipeline(Some(&trades), None, &out, workers);
        p.engine.max_delay_ms = 100;
        let bars = Arc::new(BarCount::default());
        let query = TradeQuery::ordered(
            "running_max",
            &["symbol", "seq", "max"],
            RunningMax::default,
        );
        let summary = run(Job::new(p).with_trade_query(query).with_sink(bars.clone())).unwrap();
        assert_eq!(
            summary.records.late, 0,
            "the file's disorder is within the bound"
        );

        let text = std::fs::read_to_string(out.join("running_max.csv")).unwrap();
        assert_eq!(text.lines().next(), Some("symbol,seq,max"));
        let mut got: Vec<String> = text.lines().skip(1).map(String::from).collect();
        got.sort();
        assert_eq!(got, expected, "running_max.csv on {workers} worker(s)");

        let query = summary
            .queries
            .iter()
            .find(|q| q.name == "trades/running_max");
        assert_eq!(query.map(|q| (q.consumed, q.rows)), Some((30_000, 30_000)));

        let bar_rows = std::fs::read_to_string(out.join("bars_1s.csv"))
            .unwrap()
            .lines()
            .count()
            - 1;
        assert_eq!(
            bars.0.load(Relaxed),
            bar_rows as u64,
            "the sink saw every bar"
        );
    }
}
