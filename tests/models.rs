//! The anomaly detectors and forecasters: the same rows for any worker count,
//! the quality targets on generated data with labelled anomalies, and
//! item bursts, item count forecasts and close forecasts against brute-force
//! references written here, apart from the engine.

mod common;

use common::{eddy, generate, read_interactions, stderr, temp_dir, Ix};
use eddy::engine::{run, Job};
use eddy::pipeline::{InteractionSource, Pipeline, TradeSource};
use eddy::queries::forecasts::ForecastsConfig;
use eddy::sources::anomalies::InteractionAnomalies;
use eddy::sources::interactions::InteractionConfig;
use eddy::sources::market::MarketConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// Both generators with their default anomalies, `seconds` of event time at 2000 records/s each.
fn generated(out: &Path, workers: usize, seconds: u64, disorder_ms: u64) -> Pipeline {
    let mut p = Pipeline::default();
    let mut m = MarketConfig {
        anomalies: Some(Box::default()),
        ..MarketConfig::default()
    };
    m.arrivals.count = Some(2_000 * seconds);
    m.arrivals.seed = 11;
    m.arrivals.disorder_ms = disorder_ms;
    let mut i = InteractionConfig {
        anomalies: Some(InteractionAnomalies::default()),
        ..InteractionConfig::default()
    };
    i.arrivals.count = Some(2_000 * seconds);
    i.arrivals.seed = 12;
    i.arrivals.disorder_ms = disorder_ms;
    p.sources.trades = Some(TradeSource::Market(m));
    p.sources.interactions = Some(InteractionSource::Generator(i));
    p.engine.workers = workers;
    p.engine.status = false;
    p.output.dir = Some(out.to_path_buf());
    p
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().skip(1).map(String::from).collect();
    lines.sort();
    lines
}

#[test]
fn models_give_the_same_rows_for_any_worker_count() {
    let dir = temp_dir();
    let mut outputs = Vec::new();
    for workers in [1, 2, 3] {
        let out = dir.path().join(format!("w{workers}"));
        run(Job::new(generated(&out, workers, 300, 150))).unwrap();
        outputs.push(out);
    }
    for file in ["truth.csv", "anomalies.csv", "forecasts.csv"] {
        let first = sorted_lines(&outputs[0].join(file));
        assert!(first.len() > 10, "{file} has rows: {}", first.len());
        for other in &outputs[1..] {
            assert!(
                first == sorted_lines(&other.join(file)),
                "{file} differs between 1 worker and {}",
                other.display()
            );
        }
    }
    let anomalies = sorted_lines(&outputs[0].join("anomalies.csv"));
    for kind in [
        "price_jump",
        "vol_burst",
        "volume_spike",
        "item_burst",
        "bot_user",
    ] {
        assert!(
            anomalies.iter().any(|l| l.contains(kind)),
            "some {kind} detected"
        );
    }
}

/// A row of anomaly_quality.csv or forecast_quality.csv, by its first column.
fn quality(path: &Path) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let values = header
                .iter()
                .zip(r.iter())
                .filter_map(|(h, v)| Some((h.clone(), v.parse().ok()?)))
                .collect();
            (r[0].to_string(), values)
        })
        .collect()
}

#[test]
fn detectors_and_forecasts_meet_the_quality_targets_on_generated_data() {
    let dir = temp_dir();
    let out = dir.path().join("out");
    // Ten minutes of event time, with disorder: the shape of the demo.
    run(Job::new(generated(&out, 2, 600, 150))).unwrap();
    // The keys of a counted generator run out one by one in the last minute.
    let until = (eddy::engine::DEFAULT_START_MS + 540_000).to_string();
    let truth = out.join("truth.csv");
    let o = eddy(&[
        "evaluate",
        "--truth",
        truth.to_str().unwrap(),
        "--in",
        out.to_str().unwrap(),
        "--until-ms",
        &until,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = quality(&out.join("anomaly_quality.csv"));
    let jumps = &a["price_jump"];
    assert!(jumps["labelled"] >= 100.0, "{jumps:?}");
    assert!(jumps["recall"] >= 0.95, "price jump recall: {jumps:?}");
    assert!(jumps["precision"] >= 0.9, "price jump precision: {jumps:?}");
    assert!(jumps["median_delay_ms"] <= 1_000.0, "{jumps:?}");
    let bursts = &a["item_burst"];
    assert!(
        bursts["labelled"] >= 5.0 && bursts["f1"] >= 0.9,
        "{bursts:?}"
    );
    for kind in ["vol_burst", "volume_spike", "bot_user"] {
        assert!(a[kind]["f1"] >= 0.8, "{kind}: {:?}", a[kind]);
    }
    let f = quality(&out.join("forecast_quality.csv"));
    let vol = &f["volatility"];
    assert!(
        vol["n"] >= 500.0 && vol["mae"] < vol["naive_mae"],
        "{vol:?}"
    );
    assert!(
        f["count"]["mae"] < f["count"]["naive_mae"],
        "{:?}",
        f["count"]
    );
}

/// Holt's linear trend on the log close, per symbol, over bars_1s.csv: the
/// forecast of every bar after a symbol's first.
fn reference_close_forecasts(bars: &Path, alpha: f64, beta: f64) -> BTreeMap<(String, u64), f64> {
    let mut by_symbol: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    let mut reader = csv::Reader::from_path(bars).unwrap();
    for r in reader.records() {
        let r = r.unwrap();
        by_symbol
            .entry(r[0].to_string())
            .or_default()
            .push((r[1].parse().unwrap(), r[5].parse().unwrap()));
    }
    let mut out = BTreeMap::new();
    for (symbol, mut bars) in by_symbol {
        bars.sort_by_key(|b| b.0);
        let (mut level, mut trend) = (bars[0].1.ln(), 0.0);
        for &(start, close) in &bars[1..] {
            out.insert((symbol.clone(), start), (level + trend).exp());
            let next = alpha * close.ln() + (1.0 - alpha) * (level + trend);
            trend = beta * (next - level) + (1.0 - beta) * trend;
            level = next;
        }
    }
    out
}

/// Item bursts by brute force: every pane of every item from its first on,
/// the window's sum recounted from the records each time.
fn reference_item_bursts(rows: &[Ix]) -> Vec<(u64, u64)> {
    let c = eddy::framework::burst::BurstConfig::default();
    let weight = 1.0 - 0.5f64.powf(1.0 / c.baseline_half_life_panes);
    let mut panes: BTreeMap<u64, BTreeMap<u64, u64>> = BTreeMap::new();
    for r in rows {
        *panes
            .entry(r.item)
            .or_default()
            .entry(r.ts / c.pane_ms)
            .or_default() += 1;
    }
    let mut found = Vec::new();
    for (item, counts) in panes {
        let first = *counts.keys().next().unwrap();
        let last = *counts.keys().last().unwrap();
        let (mut baseline, mut updates, mut alarm) = (0.0f64, 0u64, false);
        for p in first..=last {
            if p > first && !alarm {
                // The pane before is complete: it joins the baseline.
                updates += 1;
                let a = weight.max(1.0 / updates as f64);
                baseline += a * (counts.get(&(p - 1)).copied().unwrap_or(0) as f64 - baseline);
            }
            if !counts.contains_key(&p) {
                continue;
            }
            let from = p.saturating_sub(c.window_panes as u64 - 1);
            let recent: u64 = (from..=p).filter_map(|q| counts.get(&q)).sum();
            let expected = baseline * c.window_panes as f64;
            let r = recent as f64;
            if alarm {
                alarm = r >= c.ratio * expected / 2.0;
                continue;
            }
            if p - first >= c.warmup_panes
                && recent >= c.min_count
                && r >= c.ratio * expected
                && r - expected >= c.min_z * expected.max(1.0).sqrt()
            {
                alarm = true;
                found.push((item, (p + 1) * c.pane_ms));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn item_bursts_and_close_forecasts_match_brute_force_references() {
    let dir = temp_dir();
    let ix = dir.path().join("ix.csv");
    let trades = dir.path().join("trades.csv");
    generate(
        "interactions",
        &ix,
        400000,
        &["--items", "200", "--anomalies"],
    );
    generate("trades", &trades, 100000, &["--symbols", "5"]);
    for workers in [1, 3] {
        let out = dir.path().join(format!("out{workers}"));
        let p = common::replay_pipeline(Some(&trades), Some(&ix), &out, workers);
        run(Job::new(p)).unwrap();

        let mut got: Vec<(u64, u64)> = Vec::new();
        let mut reader = csv::Reader::from_path(out.join("anomalies.csv")).unwrap();
        for r in reader.records() {
            let r = r.unwrap();
            if &r[3] == "item_burst" {
                got.push((r[1].parse().unwrap(), r[2].parse().unwrap()));
            }
        }
        got.sort();
        let expected = reference_item_bursts(&read_interactions(&ix));
        assert!(expected.len() >= 3, "the data has bursts: {expected:?}");
        assert_eq!(got, expected, "item bursts on {workers} worker(s)");

        let reference = reference_close_forecasts(&out.join("bars_1s.csv"), 0.9, 0.05);
        let mut compared = 0;
        let mut reader = csv::Reader::from_path(out.join("forecasts.csv")).unwrap();
        for r in reader.records() {
            let r = r.unwrap();
            if &r[2] != "close" {
                continue;
            }
            let key = (r[1].to_string(), r[3].parse::<u64>().unwrap());
            let forecast: f64 = r[4].parse().unwrap();
            let want = reference[&key];
            assert!(
                (forecast - want).abs() <= 1e-9 * want,
                "{key:?}: {forecast} vs {want}"
            );
            compared += 1;
        }
        assert_eq!(
            compared,
            reference.len(),
            "a close forecast for every bar but the first"
        );
    }
}

#[test]
fn evaluate_refuses_a_folder_without_model_output() {
    let dir = temp_dir();
    let truth = dir.path().join("truth.csv");
    std::fs::write(&truth, "stream,kind,key,start_ms,end_ms,size\n").unwrap();
    let o = eddy(&[
        "evaluate",
        "--truth",
        truth.to_str().unwrap(),
        "--in",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("neither anomalies.csv nor forecasts.csv"),
        "{err}"
    );
}

/// What closes when the input ends must not depend on how far the frontier
/// was seen to move before: here the watermark (last event − 200 ms) never
/// passes the end of the second count window, yet the last event (20.1 s)
/// does, so that window is scored — on any worker count.
#[test]
fn windows_before_the_last_event_are_scored_whatever_frontier_was_seen() {
    let dir = temp_dir();
    let ix = dir.path().join("ix.csv");
    let base = 1_700_000_000_000u64;
    let mut text = String::from("ts_ms,user_id,item_id,interaction\n");
    // Item 1: ten interactions a second for 20 s; item 2: one, just after.
    for k in 0..200u64 {
        text.push_str(&format!("{},{},1,view\n", base + k * 100, k % 7));
    }
    text.push_str(&format!("{},3,2,view\n", base + 20_100));
    std::fs::write(&ix, text).unwrap();
    for workers in [1, 2, 3] {
        let out = dir.path().join(format!("out{workers}"));
        let mut p = common::replay_pipeline(None, Some(&ix), &out, workers);
        p.engine.max_delay_ms = 200;
        run(Job::new(p)).unwrap();
        let rows: Vec<String> = sorted_lines(&out.join("forecasts.csv"))
            .into_iter()
            .filter(|l| l.contains(",count,"))
            .collect();
        // The first window only seeds the model; the second is forecast from it.
        let second = base + 10_000;
        assert_eq!(
            rows,
            [format!(
                "interactions,1,count,{second},100.0,100.0,100.0,0.0,0.0"
            )],
            "{workers} worker(s)"
        );
    }
}

#[test]
fn keys_idle_for_years_cost_a_bounded_number_of_rows() {
    let dir = temp_dir();
    let (trades, ix) = (dir.path().join("t.csv"), dir.path().join("ix.csv"));
    let (first, last) = (1u64, eddy::sources::parse::MAX_TS_MS);
    std::fs::write(
        &trades,
        format!("ts_ms,symbol,price,size\n{first},A,2,3\n{last},A,2.5,3\n"),
    )
    .unwrap();
    std::fs::write(
        &ix,
        format!("ts_ms,user_id,item_id,interaction\n{first},2,3,view\n{last},2,3,click\n"),
    )
    .unwrap();
    let forget = ForecastsConfig::default().count_forget_after_windows;
    let window = ForecastsConfig::default().count_window_ms;
    for workers in [1, 2] {
        let out = dir.path().join(format!("out{workers}"));
        run(Job::new(common::replay_pipeline(
            Some(&trades),
            Some(&ix),
            &out,
            workers,
        )))
        .unwrap();
        let counts: Vec<String> = sorted_lines(&out.join("forecasts.csv"))
            .into_iter()
            .filter(|l| l.contains(",count,"))
            .collect();
        // The item's empty windows after its first are scored (actual 0) until
        // it is forgotten; seen again years later, it starts afresh.
        let starts: Vec<u64> = counts
            .iter()
            .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
            .collect();
        let mut expected: Vec<u64> = (1..=forget).map(|w| w * window).collect();
        expected.sort_by_key(|s| s.to_string());
        assert_eq!(starts, expected, "{workers} worker(s)");
        assert!(counts.iter().all(|l| l.split(',').nth(6) == Some("0.0")));
        // The symbol: one close forecast, no volatility rows (no returns).
        let trades_rows = sorted_lines(&out.join("forecasts.csv"))
            .into_iter()
            .filter(|l| l.starts_with("trades,"))
            .count();
        assert_eq!(trades_rows, 1, "{workers} worker(s)");
    }
}
