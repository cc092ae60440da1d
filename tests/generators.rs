//! The generators: the same stream whatever the worker count, the disorder and
//! ties asked for, Poisson arrivals at the asked rate, correlated returns,
//! Zipf-like item popularity and the asked interaction mix.

// Configs are set field by field: nested defaults make literals longer, not clearer.
#![allow(clippy::field_reassign_with_default)]

use eddy::record::{Interaction, InteractionKind, Trade};
use eddy::rescale::groups::{KeyGroups, WorkerShare};
use eddy::sources::interactions::{InteractionConfig, InteractionGenerator};
use eddy::sources::market::{MarketConfig, MarketGenerator};
use eddy::sources::schedule::{Schedule, Timing};
use eddy::sources::{Batch, Poll, Source};
use eddy::time::Watermark;
use std::collections::BTreeMap;
use std::time::Instant;

const START: u64 = 1_700_000_000_000;

fn drain<E: eddy::record::Event>(mut source: impl Source<E>) -> Vec<E> {
    let mut all = Vec::new();
    let mut batch = Batch::default();
    let mut watermark = Watermark::new(u64::MAX);
    loop {
        batch.clear();
        let poll = source.next_batch(&mut batch, &mut watermark).unwrap();
        all.extend(batch.on_time.iter().cloned());
        if poll == Poll::Done {
            return all;
        }
    }
}

fn schedule(batch_span_us: u64) -> Schedule {
    Schedule::new(Timing::AsFast, 1.0, START, Instant::now(), batch_span_us)
}

fn market(config: &MarketConfig, index: usize, peers: usize) -> Vec<Trade> {
    drain(MarketGenerator::new(
        config,
        schedule(10_000),
        512,
        WorkerShare {
            index,
            peers,
            groups: KeyGroups::default(),
        },
    ))
}

fn interactions(config: &InteractionConfig, index: usize, peers: usize) -> Vec<Interaction> {
    drain(InteractionGenerator::new(
        config,
        schedule(10_000),
        512,
        WorkerShare {
            index,
            peers,
            groups: KeyGroups::default(),
        },
    ))
}

fn market_config() -> MarketConfig {
    let mut c = MarketConfig::default();
    c.symbols = 12;
    c.arrivals.rate = 2_000.0;
    c.arrivals.count = Some(30_000);
    c.arrivals.disorder_ms = 80;
    c.arrivals.tie_prob = 0.05;
    c
}

#[test]
fn the_union_over_workers_is_the_same_stream_for_any_worker_count() {
    let c = market_config();
    let mut one = market(&c, 0, 1);
    one.sort_by_key(|t| (t.symbol, t.seq));
    for peers in [2, 3, 5] {
        let mut union: Vec<Trade> = (0..peers).flat_map(|i| market(&c, i, peers)).collect();
        union.sort_by_key(|t| (t.symbol, t.seq));
        assert_eq!(union, one, "{peers} workers");
    }
    let mut ic = InteractionConfig::default();
    ic.users = 40;
    ic.arrivals.count = Some(10_000);
    ic.arrivals.disorder_ms = 50;
    let mut one = interactions(&ic, 0, 1);
    one.sort_by_key(|r| (r.user, r.seq));
    let mut union: Vec<Interaction> = (0..3).flat_map(|i| interactions(&ic, i, 3)).collect();
    union.sort_by_key(|r| (r.user, r.seq));
    assert_eq!(union, one);
}

/// Takes `batches` batches (or all) from a source: its records and its saved position.
fn take_some<E: eddy::record::Event>(
    source: &mut impl Source<E>,
    batches: usize,
) -> (Vec<E>, Vec<u8>) {
    let mut taken = Vec::new();
    let mut batch = Batch::default();
    let mut watermark = Watermark::new(u64::MAX);
    for _ in 0..batches {
        batch.clear();
        let poll = source.next_batch(&mut batch, &mut watermark).unwrap();
        taken.extend(batch.on_time.iter().cloned());
        if poll == Poll::Done {
            break;
        }
    }
    (taken, source.save().unwrap())
}

fn share(index: usize, peers: usize) -> WorkerShare {
    WorkerShare {
        index,
        peers,
        groups: KeyGroups::new(16).unwrap(),
    }
}

/// A stream stopped on `old` workers after a different number of batches
/// each (batches cut short by the limit included: a small batch limit), then
/// resumed on `new` workers from all their positions: what the old workers
/// took and what the new ones take afterwards is the whole stream, once.
fn rescaled<E: eddy::record::Event + Clone, S: Source<E>>(
    make: impl Fn(WorkerShare) -> S,
    old: usize,
    new: usize,
) -> Vec<E> {
    let mut all = Vec::new();
    let mut positions = Vec::new();
    for q in 0..old {
        let (taken, position) = take_some(&mut make(share(q, old)), 7 + 5 * q);
        all.extend(taken);
        positions.push(position);
    }
    for w in 0..new {
        let mut resumed = make(share(w, new));
        resumed.restore_rescaled(&positions, w, new).unwrap();
        all.extend(drain(resumed));
    }
    all
}

#[test]
fn a_generator_resumed_on_another_number_of_workers_goes_on_with_exactly_the_rest() {
    let mut c = market_config();
    // Anomalies early and often, so that their own random streams move too.
    c.anomalies = Some(Box::new(eddy::sources::anomalies::MarketAnomalies {
        warmup_s: 0.5,
        jump_every_s: 0.5,
        vol_burst_every_s: 2.0,
        vol_burst_s: 1.0,
        volume_spike_every_s: 2.0,
        volume_spike_s: 1.0,
        ..Default::default()
    }));
    c.arrivals.count = Some(12_000);
    let market_with = |s| MarketGenerator::new(&c, schedule(10_000), 40, s);
    let mut one = drain(market_with(share(0, 1)));
    one.sort_by_key(|t| (t.symbol, t.seq));
    for (old, new) in [(1, 2), (2, 3), (3, 1), (2, 2)] {
        let mut got = rescaled(market_with, old, new);
        got.sort_by_key(|t| (t.symbol, t.seq));
        assert_eq!(got.len(), one.len(), "trades {old} -> {new} workers");
        assert!(got == one, "trades {old} -> {new} workers");
    }
    let mut ic = InteractionConfig::default();
    ic.users = 40;
    ic.arrivals.count = Some(8_000);
    ic.arrivals.disorder_ms = 50;
    ic.anomalies = Some(eddy::sources::anomalies::InteractionAnomalies {
        warmup_s: 0.5,
        item_burst_every_s: 1.0,
        item_burst_s: 1.0,
        bot_every_s: 1.5,
        bot_s: 1.0,
        ..Default::default()
    });
    let interactions_with = |s| InteractionGenerator::new(&ic, schedule(10_000), 40, s);
    let mut one = drain(interactions_with(share(0, 1)));
    one.sort_by_key(|r| (r.seq, r.user));
    // A user's own records have seq = n * 1 000 003 + user; injected ones do not.
    let injected = one.iter().filter(|r| r.seq % 1_000_003 != r.user).count();
    assert!(injected > 100, "episodes inject records: {injected}");
    for (old, new) in [(1, 3), (3, 2), (2, 1)] {
        let mut got = rescaled(interactions_with, old, new);
        got.sort_by_key(|r| (r.seq, r.user));
        assert_eq!(got.len(), one.len(), "interactions {old} -> {new} workers");
        assert!(got == one, "interactions {old} -> {new} workers");
    }
}

#[test]
fn disorder_is_bounded_ties_occur_and_arrivals_follow_the_rate() {
    let c = market_config();
    let trades = market(&c, 0, 1);
    assert_eq!(trades.len(), 30_000);
    let mut max_ts = 0;
    let (mut displaced, mut ties) = (0, 0);
    let mut last_by_symbol = BTreeMap::new();
    for t in &trades {
        assert!(
            t.ts_ms + c.arrivals.disorder_ms >= max_ts,
            "displaced by more than the bound"
        );
        displaced += (t.ts_ms < max_ts) as u32;
        max_ts = max_ts.max(t.ts_ms);
        if last_by_symbol.insert(t.symbol, t.ts_ms) == Some(t.ts_ms) {
            ties += 1;
        }
        assert!(t.price > 0.0 && t.size >= 1);
    }
    assert!(displaced > 1_000, "{displaced}");
    assert!(ties > 500, "{ties}");
    // 30 000 trades at 2 000/s span about 15 s of event time.
    let span_s = (trades.iter().map(|t| t.ts_ms).max().unwrap() - START) as f64 / 1e3;
    assert!((14.0..16.0).contains(&span_s), "{span_s} s");
}

#[test]
fn returns_correlate_through_the_market_factor() {
    let mut c = market_config();
    c.symbols = 4;
    c.arrivals.count = Some(200_000);
    c.arrivals.rate = 4_000.0;
    c.arrivals.disorder_ms = 0;
    c.idio_vol_min = 0.0002;
    c.idio_vol_max = 0.0002;
    let trades = market(&c, 0, 1);
    // Last price per symbol per second, then 1 s log returns.
    let mut closes: BTreeMap<(u64, u64), f64> = BTreeMap::new();
    for t in &trades {
        closes.insert((t.symbol.0, t.ts_ms / 1000), t.price);
    }
    let symbols: Vec<u64> = closes
        .keys()
        .map(|k| k.0)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let returns = |s: u64| -> BTreeMap<u64, f64> {
        let series: Vec<(u64, f64)> = closes
            .iter()
            .filter(|(k, _)| k.0 == s)
            .map(|(k, p)| (k.1, *p))
            .collect();
        series
            .windows(2)
            .filter(|w| w[1].0 == w[0].0 + 1)
            .map(|w| (w[1].0, (w[1].1 / w[0].1).ln()))
            .collect()
    };
    let (a, b) = (returns(symbols[0]), returns(symbols[1]));
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .filter_map(|(k, x)| b.get(k).map(|y| (*x, *y)))
        .collect();
    let n = pairs.len() as f64;
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let vx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let vy: f64 = pairs.iter().map(|p| (p.1 - my).powi(2)).sum();
    let corr = cov / (vx * vy).sqrt();
    assert!(pairs.len() > 40, "{} paired seconds", pairs.len());
    assert!(corr > 0.4, "correlation of returns {corr}");
}

#[test]
fn items_follow_popularity_and_kinds_follow_their_probabilities() {
    let mut c = InteractionConfig::default();
    c.users = 100;
    c.items = 50;
    c.click_prob = 0.2;
    c.purchase_prob = 0.05;
    c.arrivals.count = Some(50_000);
    let records = interactions(&c, 0, 1);
    let mut per_item = vec![0u64; 50];
    let mut kinds = BTreeMap::new();
    for r in &records {
        per_item[r.item as usize] += 1;
        *kinds.entry(format!("{:?}", r.kind)).or_insert(0u64) += 1;
        assert!(r.user < 100);
    }
    // Zipf with exponent 1: item 0 about twice item 1 and ten times item 9.
    let ratio = per_item[0] as f64 / per_item[9] as f64;
    assert!((7.0..13.0).contains(&ratio), "{ratio}");
    let share = |k: InteractionKind| kinds[&format!("{k:?}")] as f64 / records.len() as f64;
    assert!((share(InteractionKind::Click) - 0.2).abs() < 0.01);
    assert!((share(InteractionKind::Purchase) - 0.05).abs() < 0.01);
}
