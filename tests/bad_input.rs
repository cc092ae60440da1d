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

fn row() -> impl Strategy<Value = String> {
    prop::collection::vec(field(), 1..6).prop_map(|fields| fields.join(","))
}

fn replay(trades: &str, interactions: &str, workers: usize) -> eddy::metrics::Summary {
    let dir = temp_dir();
    let t = dir.path().join("t.csv");
    let i = dir.path().join("i.csv");
    std::fs::write(&t, trades).unwrap();
    std::fs::write(&i, interactions).unwrap();
    let mut p = replay_pipeline(Some(&t), Some(&i), &dir.path().join("out"), workers);
    p.engine.batch_size = 3;
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
        let body = |header: &str, rows: &[String]| {
            let mut text = format!("{header}\n");
            for r in rows {
                text.push_str(r);
                text.push('\n');
            }
            text
        };
        let summary = replay(
            &body("ts_ms,symbol,price,size", &trade_rows),
            &body("ts_ms,user_id,item_id,interaction", &interaction_rows),
            workers,
        );
        let rows = trade_rows.iter().chain(&interaction_rows).filter(|r| !r.is_empty()).count() as u64;
        let r = &summary.records;
        prop_assert_eq!(r.generated, rows);
        prop_assert_eq!(r.ingested + r.late + r.malformed, r.generated);
        prop_assert_eq!(r.unaccounted, 0);
    }
}
