//! The extension points of `src/extend.rs`: queries added in code (an
//! ordered trade query, a windowed interaction query) and a row sink, checked
//! against brute force on replayed files, for 1 and 3 workers.

mod common;

use common::{generate, read_trades, replay_pipeline, temp_dir};
use eddy::engine::{run, Job};
use eddy::extend::{OrderedQuery, WindowQuery};
use eddy::framework::ordered::OrderedLogic;
use eddy::framework::pane_window::{WindowAggregate, WindowSpec};
use eddy::queries::bars_1s::Bar;
use eddy::record::Symbol;
use eddy::record::{Interaction, InteractionKind, Trade};
use eddy::rescale::groups::KeyGroups;
use eddy::rescale::parts::{restored_entries, save_by_group, Grouped, RestoredParts, SavedParts};
use eddy::sinks::row_sink::{RowBatch, RowSink};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Per symbol, the running maximum price, one row per trade in (ts, seq) order.
#[derive(Serialize, Deserialize, Default)]
struct RunningMax(BTreeMap<String, f64>);

#[derive(Clone, Serialize, Deserialize)]
struct MaxRow {
    symbol: String,
    seq: u64,
    max: f64,
}

/// Checkpointed in key groups: each symbol's maximum goes with the symbol
/// (routed as the trades are, by the symbol's code).
impl Grouped for RunningMax {
    fn save_parts(&mut self, groups: KeyGroups) -> anyhow::Result<SavedParts> {
        let route = |s: &String| Symbol::parse(s.as_bytes()).map_or(0, |s| s.0);
        let entries = self.0.iter().map(|e| (route(e.0), e));
        Ok(SavedParts {
            rest: Vec::new(),
            groups: save_by_group(entries, groups)?,
        })
    }

    fn restore_parts(&mut self, parts: &RestoredParts) -> anyhow::Result<()> {
        self.0.extend(restored_entries::<(String, f64)>(parts)?);
        Ok(())
    }
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
    fn rows(&self, batch: &RowBatch<'_>) {
        if let Some(bars) = batch.of::<Bar>() {
            self.0.fetch_add(bars.len() as u64, Relaxed);
        }
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
        let query = OrderedQuery::new("running_max", RunningMax::default);
        let summary = run(Job::new(p).with_query(query).with_sink(bars.clone())).unwrap();
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

/// Per item and 5-second window, the purchases and the largest user id seen.
struct Purchases;

#[derive(Clone, Serialize, Deserialize)]
struct PurchaseRow {
    item_id: u64,
    window_start_ms: u64,
    purchases: u64,
    max_user: u64,
}

impl WindowAggregate for Purchases {
    type In = Interaction;
    type Key = u64;
    type State = (u64, u64);
    const ORDER_SENSITIVE: bool = false;
    type Out = PurchaseRow;
    fn key(&self, r: &Interaction) -> u64 {
        r.item
    }
    fn ts_ms(&self, r: &Interaction) -> u64 {
        r.ts_ms
    }
    fn seq(&self, r: &Interaction) -> u64 {
        r.seq
    }
    fn init(&self, r: &Interaction) -> (u64, u64) {
        ((r.kind == InteractionKind::Purchase) as u64, r.user)
    }
    fn add(&self, s: &mut (u64, u64), r: &Interaction) {
        s.0 += (r.kind == InteractionKind::Purchase) as u64;
        s.1 = s.1.max(r.user);
    }
    fn merge(&self, s: &mut (u64, u64), o: &(u64, u64)) {
        s.0 += o.0;
        s.1 = s.1.max(o.1);
    }
    fn finish(&self, item_id: u64, window_start_ms: u64, s: &(u64, u64)) -> Option<PurchaseRow> {
        Some(PurchaseRow {
            item_id,
            window_start_ms,
            purchases: s.0,
            max_user: s.1,
        })
    }
}

#[test]
fn a_windowed_interaction_query_added_in_code_equals_brute_force() {
    let dir = temp_dir();
    let interactions = dir.path().join("interactions.csv");
    generate(
        "interactions",
        &interactions,
        20000,
        &["--items", "40", "--disorder-ms", "80"],
    );
    let text = std::fs::read_to_string(&interactions).unwrap();
    let mut expected: BTreeMap<(u64, u64), (u64, u64)> = BTreeMap::new();
    for line in text.lines().skip(1) {
        // ts_ms,user_id,item_id,kind
        let f: Vec<&str> = line.split(',').collect();
        let (ts, user, item) = (
            f[0].parse::<u64>().unwrap(),
            f[1].parse::<u64>().unwrap(),
            f[2].parse::<u64>().unwrap(),
        );
        let e = expected.entry((item, ts - ts % 5_000)).or_insert((0, 0));
        e.0 += (f[3] == "purchase") as u64;
        e.1 = e.1.max(user);
    }
    let expected: Vec<String> = expected
        .iter()
        .map(|((item, w), (p, u))| format!("{item},{w},{p},{u}"))
        .collect();
    for workers in [1, 3] {
        let out = dir.path().join(format!("out{workers}"));
        let mut p = replay_pipeline(None, Some(&interactions), &out, workers);
        p.engine.max_delay_ms = 100;
        let query =
            WindowQuery::new("purchases_5s", WindowSpec::tumbling(5_000), || Purchases).unwrap();
        let summary = run(Job::new(p).with_query(query)).unwrap();
        assert_eq!(summary.records.late, 0);
        let text = std::fs::read_to_string(out.join("purchases_5s.csv")).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("item_id,window_start_ms,purchases,max_user")
        );
        let mut got: Vec<String> = text.lines().skip(1).map(String::from).collect();
        got.sort_by_key(|l| {
            let f: Vec<u64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            (f[0], f[1])
        });
        assert_eq!(got, expected, "purchases_5s.csv on {workers} worker(s)");
    }
}
