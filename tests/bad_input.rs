//! Bad input never crashes the engine and never disappears: random rows, valid
//! and broken, through the whole replay path on 1 and 2 workers.

mod common;

use common::{replay_pipeline, temp_dir};
use eddy::engine::{self, Job};
use proptest::prelude::*;

/// A field: often valid, sometimes anything (no quotes or line breaks, so that
/// one line is one row and the expected row count is known).
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        (1_700_000_000_000u64..1_700_000_100_000).prop_map(|t| t.to_string()),
        "SYM[0-9]{1,3}",
        (0.01f64..1000.0).prop_map(|p| p.to_string()),
        (1u64..1000).prop_map(|s| s.to_string()),
        prop_oneof![Just("view"), Just("click"), Just("purchase")].prop_map(String::from),
        "[ -!#-+\\--~]{0,12}",
        Just(String::new()),
        Just("-5".to_string()),
        Just("NaN".to_string()),
        Just("99999999999999999999999".to_string()),
    ]
}

/// An event time anywhere in the accepted range, clustered so that keys
/// recur after gaps of seconds or of centuries.
fn event_time() -> impl Strategy<Value = u64> {
    let max = eddy::sources::parse::MAX_TS_MS;
    prop_oneof![
        0u64..100_000,
        1_700_000_000_000u64..1_700_000_100_000,
        max - 100_000..=max,
    ]
}

fn trade_row() -> impl Strategy<Value = String> {
    (event_time(), 0..4u8, 0.01f64..1000.0, 1u64..1000)
        .prop_map(|(ts, s, price, size)| format!("{ts},S{s},{price},{size}"))
}

fn interaction_row() -> impl Strategy<Value = String> {
    let kind = prop_oneof![Just("view"), Just("click"), Just("purchase")];
    (event_time(), 1u64..20, 1u64..10, kind)
        .prop_map(|(ts, user, item, kind)| format!("{ts},{user},{item},{kind}"))
}

fn row() -> impl Strategy<Value = String> {
    prop::collection::vec(field(), 1..6).prop_map(|fields| fields.join(","))
}

/// Replays the rows (one file per stream, with its header) in batches of 3.
fn replay(
    trade_rows: &[String],
    interaction_rows: &[String],
    workers: usize,
    checkpoints: bool,
) -> eddy::metrics::Summary {
    let dir = temp_dir();
    let file = |name: &str, header: &str, rows: &[String]| {
        let path = dir.path().join(name);
        let mut text = format!("{header}\n");
        for r in rows {
            text.push_str(r);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let t = file("t.csv", "ts_ms,symbol,price,size", trade_rows);
    let i = file(
        "i.csv",
        "ts_ms,user_id,item_id,interaction",
        interaction_rows,
    );
    let mut p = replay_pipeline(Some(&t), Some(&i), &dir.path().join("out"), workers);
    p.engine.batch_size = Some(3);
    if checkpoints {
        p.engine.checkpoint.dir = Some(dir.path().join("checkpoints"));
    }
    engine::run(Job::new(p)).expect("bad rows never fail the run")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn every_row_is_accounted_for_whatever_it_holds(
        trade_rows in prop::collection::vec(row(), 0..60),
        interaction_rows in prop::collection::vec(row(), 0..60),
        workers in 1usize..3,
    ) {
        let summary = replay(&trade_rows, &interaction_rows, workers, false);
        let rows = trade_rows.iter().chain(&interaction_rows).filter(|r| !r.is_empty()).count() as u64;
        let r = &summary.records;
        prop_assert_eq!(r.generated, rows);
        prop_assert_eq!(r.ingested + r.late + r.malformed, r.generated);
        prop_assert_eq!(r.unaccounted, 0);
    }

    /// Valid rows whose event times jump by centuries: every row is ingested
    /// or late, and the run stays small (windows, models and checkpoints
    /// never walk the gaps one by one).
    #[test]
    fn event_times_anywhere_in_the_range_are_handled(
        trade_rows in prop::collection::vec(trade_row(), 0..40),
        interaction_rows in prop::collection::vec(interaction_row(), 0..40),
        workers in 1usize..3,
    ) {
        let summary = replay(&trade_rows, &interaction_rows, workers, true);
        let r = &summary.records;
        prop_assert_eq!(r.generated, (trade_rows.len() + interaction_rows.len()) as u64);
        prop_assert_eq!(r.ingested + r.late, r.generated);
        prop_assert_eq!(r.malformed, 0);
        let rows_out = r.rows_out;
        prop_assert!(rows_out < 100_000, "{rows_out} rows out of {} records", r.generated);
    }
}
