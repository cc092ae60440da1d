//! The dashboard's view of the results: the latest rows of every query, kept
//! in bounded per-key histories, fed by taps on the sinks.
//!
//! Every worker of the process taps its result streams into one `Board`
//! (a lock per batch of rows: rows come at a few per key and window, except
//! ewma's one per trade, which is thinned to the last row per second). Each
//! history keeps a fixed number of the latest entries, keyed by event time,
//! so rows from different workers land in order and an hour-long run holds
//! as much as a one-minute run.

use crate::quality::{Quality, QualitySummary};
use crate::queries::activity_60s::Activity;
use crate::queries::alerts::Alert;
use crate::queries::alerts::FiredAlert;
use crate::queries::anomalies::Anomaly;
use crate::queries::bars_1s::Bar;
use crate::queries::corr_60s::Correlation;
use crate::queries::ewma::EwmaRow;
use crate::queries::forecasts::{Forecast, Target};
use crate::queries::item_counts_60s::ItemCount;
use crate::queries::item_counts_60s::ItemCountsConfig;
use crate::queries::stats_10s::PriceStats;
use crate::queries::stats_10s::StatsConfig;
use crate::queries::vol_60s::Volatility;
use crate::queries::QueryTables;
use crate::record::Symbol;
use crate::sinks::row_sink::{RowBatch, RowSink};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Seconds of per-symbol history (bars, moving averages, ewma samples).
const SYMBOL_HISTORY: usize = 300;
/// Closed 60 s windows of volatility and activity kept.
const WINDOW_HISTORY: usize = 120;
/// Item-count windows kept (the latest complete one is shown).
const ITEM_WINDOWS: usize = 3;
/// Items shown per window.
const TOP_ITEMS: usize = 10;
/// Alerts kept, newest first.
const ALERTS_KEPT: usize = 50;
/// Anomalies kept, newest first.
const ANOMALIES_KEPT: usize = 50;
/// Symbols in the latest-bars table.
const LATEST_BARS_SHOWN: usize = 30;

/// The latest rows of every query (see the module doc).
pub struct Board {
    results: Mutex<Results>,
    /// M2's window length: a moving average is drawn at its window's end.
    moving_average_ms: u64,
    /// I1's window length: an item window is shown once all its rows are out.
    item_window_ms: u64,
    /// Forecast errors and anomaly counts over the whole run.
    quality: Quality,
}

#[derive(Default)]
struct Results {
    symbols: BTreeMap<Symbol, SymbolHistory>,
    /// The latest correlation window: its start and its pairs.
    correlation: Option<(u64, Vec<Correlation>)>,
    items: BTreeMap<u64, Vec<ItemCount>>,
    activity: BTreeMap<u64, Activity>,
    alerts: VecDeque<AlertEvent>,
    alerts_total: u64,
    anomalies: VecDeque<Anomaly>,
}

#[derive(Default)]
struct SymbolHistory {
    bars: BTreeMap<u64, Bar>,
    /// Mean price of the 10 s window ending at the key (M2).
    moving_average: BTreeMap<u64, f64>,
    /// The last ewma row of each second: (price, ewma, ewm_vol).
    ewma: BTreeMap<u64, (f64, f64, Option<f64>)>,
    /// Realised volatility per 60 s window start (M3).
    volatility: BTreeMap<u64, f64>,
    /// The forecast of each bar's close, by the bar's start.
    close_forecast: BTreeMap<u64, f64>,
    /// Volatility forecasts by window start: (forecast, naive, actual).
    vol_forecast: BTreeMap<u64, (f64, f64, f64)>,
    /// This symbol's anomalies: ts -> kind.
    anomalies: BTreeMap<u64, &'static str>,
}

/// An alert, as it fired (`fired`: before its window closed) or as its window
/// closed with the final total.
#[derive(Clone, Debug, Serialize)]
pub struct AlertEvent {
    pub item_id: u64,
    pub window_start_ms: u64,
    pub total: u64,
    pub threshold: u64,
    pub fired: bool,
}

/// Inserts and drops the oldest entries beyond `keep`.
fn put<V>(history: &mut BTreeMap<u64, V>, key: u64, value: V, keep: usize) {
    history.insert(key, value);
    while history.len() > keep {
        history.pop_first();
    }
}

impl Board {
    pub fn new(queries: &QueryTables) -> Board {
        let stats: StatsConfig = queries.get().unwrap_or_default();
        let counts: ItemCountsConfig = queries.get().unwrap_or_default();
        Board {
            results: Mutex::default(),
            moving_average_ms: stats.length_ms,
            item_window_ms: counts.size_ms,
            quality: Quality::default(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Results) -> R) -> R {
        f(&mut self.results.lock().expect("board lock"))
    }

    /// An item passed the alert threshold in a window that is still open.
    pub fn alert_fired(&self, item_id: u64, window_start_ms: u64, total: u64, threshold: u64) {
        self.with(|r| {
            r.push_alert(AlertEvent {
                item_id,
                window_start_ms,
                total,
                threshold,
                fired: true,
            })
        });
    }

    /// What the page shows for `symbol` (none: the most traded one), with
    /// item windows complete up to event time `complete_ms`.
    pub fn view(&self, symbol: Option<&str>, complete_ms: u64) -> BoardView {
        let mut view = self.with(|r| r.view(symbol, complete_ms, self.item_window_ms));
        view.quality = self.quality.summary().unwrap_or_default();
        view
    }
}

impl Results {
    fn symbol(&mut self, s: Symbol) -> &mut SymbolHistory {
        self.symbols.entry(s).or_default()
    }

    fn push_alert(&mut self, alert: AlertEvent) {
        self.alerts_total += 1;
        self.alerts.push_front(alert);
        self.alerts.truncate(ALERTS_KEPT);
    }

    fn view(&self, wanted: Option<&str>, complete_ms: u64, item_window_ms: u64) -> BoardView {
        let traded = |h: &SymbolHistory| h.bars.values().map(|b| b.trades).sum::<u64>();
        let chosen = wanted
            .and_then(|w| Symbol::parse(w.as_bytes()))
            .filter(|s| self.symbols.contains_key(s))
            .or_else(|| {
                self.symbols
                    .iter()
                    .max_by_key(|(_, h)| traded(h))
                    .map(|(s, _)| *s)
            });
        let market = chosen.and_then(|s| {
            let h = self.symbols.get(&s)?;
            Some(SymbolView {
                symbol: s.to_string(),
                bars: h.bars.values().cloned().map(BarView::from).collect(),
                moving_average: h.moving_average.iter().map(|(t, v)| (*t, *v)).collect(),
                ewma: h.ewma.iter().map(|(t, (_, e, _))| (*t, *e)).collect(),
                ewm_vol: h
                    .ewma
                    .iter()
                    .filter_map(|(t, (_, _, v))| Some((*t, (*v)?)))
                    .collect(),
                volatility: h.volatility.iter().map(|(t, v)| (*t, *v)).collect(),
                close_forecast: h.close_forecast.iter().map(|(t, v)| (*t, *v)).collect(),
                vol_forecast: h
                    .vol_forecast
                    .iter()
                    .map(|(t, (f, n, a))| (*t, *f, *n, *a))
                    .collect(),
                // Drawn on the price line: at the close of the anomaly's second.
                anomalies: h
                    .anomalies
                    .iter()
                    .filter_map(|(t, kind)| {
                        let bar = h.bars.get(&(t - t % 1000))?;
                        Some((*t, bar.close, kind.to_string()))
                    })
                    .collect(),
            })
        });
        let mut latest_bars: Vec<BarView> = self
            .symbols
            .values()
            .filter_map(|h| {
                h.bars
                    .last_key_value()
                    .map(|(_, b)| BarView::from(b.clone()))
            })
            .collect();
        latest_bars.sort_by(|a, b| b.volume.cmp(&a.volume).then(a.symbol.cmp(&b.symbol)));
        latest_bars.truncate(LATEST_BARS_SHOWN);
        let correlation = self.correlation.as_ref().map(|(start, pairs)| {
            let mut symbols: Vec<String> = pairs
                .iter()
                .flat_map(|c| [c.symbol_a.to_string(), c.symbol_b.to_string()])
                .collect();
            symbols.sort();
            symbols.dedup();
            let at = |s: Symbol| symbols.binary_search(&s.to_string()).unwrap_or(0);
            CorrelationView {
                window_start_ms: *start,
                pairs: pairs
                    .iter()
                    .map(|c| (at(c.symbol_a), at(c.symbol_b), c.corr))
                    .collect(),
                symbols,
            }
        });
        // The latest item window all of whose rows are out.
        let top_items = self
            .items
            .iter()
            .rev()
            .find(|(start, _)| **start + item_window_ms <= complete_ms)
            .map(|(start, rows)| {
                let mut top = rows.clone();
                top.sort_by(|a, b| b.total.cmp(&a.total).then(a.item_id.cmp(&b.item_id)));
                top.truncate(TOP_ITEMS);
                TopItems {
                    window_start_ms: *start,
                    items: top,
                }
            });
        BoardView {
            symbols: self.symbols.keys().map(|s| s.to_string()).collect(),
            market,
            latest_bars,
            correlation,
            top_items,
            activity: self.activity.values().cloned().collect(),
            alerts: self.alerts.iter().cloned().collect(),
            alerts_total: self.alerts_total,
            anomalies: self.anomalies.iter().cloned().collect(),
            quality: QualitySummary::default(),
        }
    }
}

/// The board takes the rows it shows, by row type.
impl RowSink for Board {
    fn rows(&self, batch: &RowBatch<'_>) {
        if let Some(rows) = batch.of::<Bar>() {
            self.bars(rows)
        } else if let Some(rows) = batch.of::<PriceStats>() {
            self.stats(rows)
        } else if let Some(rows) = batch.of::<Volatility>() {
            self.volatility(rows)
        } else if let Some(rows) = batch.of::<EwmaRow>() {
            self.ewma(rows)
        } else if let Some(rows) = batch.of::<Correlation>() {
            self.correlations(rows)
        } else if let Some(rows) = batch.of::<ItemCount>() {
            self.item_counts(rows)
        } else if let Some(rows) = batch.of::<Activity>() {
            self.activity(rows)
        } else if let Some(rows) = batch.of::<Alert>() {
            self.alerts(rows)
        } else if let Some(rows) = batch.of::<FiredAlert>() {
            for a in rows {
                self.alert_fired(a.item_id, a.window_start_ms, a.count, a.threshold);
            }
        } else if let Some(rows) = batch.of::<Anomaly>() {
            self.anomalies(rows)
        } else if let Some(rows) = batch.of::<Forecast>() {
            self.forecasts(rows)
        }
    }
}

impl Board {
    fn bars(&self, rows: &[Bar]) {
        self.with(|r| {
            for b in rows {
                let h = &mut r.symbol(b.symbol).bars;
                put(h, b.window_start_ms, b.clone(), SYMBOL_HISTORY);
            }
        })
    }
    fn stats(&self, rows: &[PriceStats]) {
        let length = self.moving_average_ms;
        self.with(|r| {
            for s in rows {
                // Keyed by the window's end: the moving average *at* that time.
                let h = &mut r.symbol(s.symbol).moving_average;
                put(h, s.window_start_ms + length, s.mean, SYMBOL_HISTORY);
            }
        })
    }
    fn volatility(&self, rows: &[Volatility]) {
        self.with(|r| {
            for v in rows {
                let h = &mut r.symbol(v.symbol).volatility;
                put(h, v.window_start_ms, v.volatility, WINDOW_HISTORY);
            }
        })
    }
    fn ewma(&self, rows: &[EwmaRow]) {
        self.with(|r| {
            for e in rows {
                let second = e.ts_ms - e.ts_ms % 1000;
                let h = &mut r.symbol(e.symbol).ewma;
                put(h, second, (e.price, e.ewma, e.ewm_vol), SYMBOL_HISTORY);
            }
        })
    }
    fn correlations(&self, rows: &[Correlation]) {
        self.with(|r| {
            for c in rows {
                match &mut r.correlation {
                    Some((start, pairs)) if *start == c.window_start_ms => pairs.push(c.clone()),
                    Some((start, _)) if *start > c.window_start_ms => {}
                    _ => r.correlation = Some((c.window_start_ms, vec![c.clone()])),
                }
            }
        })
    }
    fn item_counts(&self, rows: &[ItemCount]) {
        self.with(|r| {
            for c in rows {
                r.items
                    .entry(c.window_start_ms)
                    .or_default()
                    .push(c.clone());
            }
            while r.items.len() > ITEM_WINDOWS {
                r.items.pop_first();
            }
        })
    }
    fn activity(&self, rows: &[Activity]) {
        self.with(|r| {
            for a in rows {
                put(
                    &mut r.activity,
                    a.window_start_ms,
                    a.clone(),
                    WINDOW_HISTORY,
                );
            }
        })
    }
    fn alerts(&self, rows: &[Alert]) {
        self.with(|r| {
            for a in rows {
                r.push_alert(AlertEvent {
                    item_id: a.item_id,
                    window_start_ms: a.window_start_ms,
                    total: a.total,
                    threshold: a.threshold,
                    fired: false,
                });
            }
        })
    }
    fn anomalies(&self, rows: &[Anomaly]) {
        self.quality.anomalies(rows);
        self.with(|r| {
            for a in rows {
                if let (true, Some(symbol)) =
                    (a.stream == "trades", Symbol::parse(a.key.as_bytes()))
                {
                    let h = &mut r.symbol(symbol).anomalies;
                    put(h, a.ts_ms, a.kind.name(), SYMBOL_HISTORY);
                }
                r.anomalies.push_front(a.clone());
            }
            r.anomalies.truncate(ANOMALIES_KEPT);
        })
    }
    fn forecasts(&self, rows: &[Forecast]) {
        self.quality.forecasts(rows);
        self.with(|r| {
            for f in rows.iter().filter(|f| f.stream == "trades") {
                let Some(symbol) = Symbol::parse(f.key.as_bytes()) else {
                    continue;
                };
                let h = r.symbol(symbol);
                match f.target {
                    Target::Close => put(
                        &mut h.close_forecast,
                        f.window_start_ms,
                        f.forecast,
                        SYMBOL_HISTORY,
                    ),
                    Target::Volatility => put(
                        &mut h.vol_forecast,
                        f.window_start_ms,
                        (f.forecast, f.naive, f.actual),
                        WINDOW_HISTORY,
                    ),
                    Target::Count => {}
                }
            }
        })
    }
}

/// What the page draws from the results (sent as JSON).
#[derive(Serialize)]
pub struct BoardView {
    pub symbols: Vec<String>,
    pub market: Option<SymbolView>,
    pub latest_bars: Vec<BarView>,
    pub correlation: Option<CorrelationView>,
    pub top_items: Option<TopItems>,
    pub activity: Vec<Activity>,
    pub alerts: Vec<AlertEvent>,
    pub alerts_total: u64,
    /// The latest anomalies, newest first.
    pub anomalies: Vec<Anomaly>,
    /// Anomalies by kind and forecast errors by target, over the whole run.
    pub quality: QualitySummary,
}

/// One symbol's recent history: `(ms, value)` points.
#[derive(Serialize)]
pub struct SymbolView {
    pub symbol: String,
    pub bars: Vec<BarView>,
    pub moving_average: Vec<(u64, f64)>,
    pub ewma: Vec<(u64, f64)>,
    pub ewm_vol: Vec<(u64, f64)>,
    pub volatility: Vec<(u64, f64)>,
    /// The close forecast of each bar: (bar start, forecast).
    pub close_forecast: Vec<(u64, f64)>,
    /// (window start, forecast, naive, actual) of the volatility forecasts.
    pub vol_forecast: Vec<(u64, f64, f64, f64)>,
    /// (ts, close of that second, kind) of the symbol's anomalies.
    pub anomalies: Vec<(u64, f64, String)>,
}

#[derive(Serialize)]
pub struct BarView {
    pub symbol: String,
    pub t: u64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
    pub trades: u64,
    pub vwap: f64,
}

impl From<Bar> for BarView {
    fn from(b: Bar) -> Self {
        BarView {
            symbol: b.symbol.to_string(),
            t: b.window_start_ms,
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
            trades: b.trades,
            vwap: b.vwap,
        }
    }
}

/// The latest correlation window as a matrix: `pairs` index into `symbols`.
#[derive(Serialize)]
pub struct CorrelationView {
    pub window_start_ms: u64,
    pub symbols: Vec<String>,
    pub pairs: Vec<(usize, usize, f64)>,
}

#[derive(Serialize)]
pub struct TopItems {
    pub window_start_ms: u64,
    pub items: Vec<ItemCount>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(symbol: &str, start: u64, close: f64, trades: u64) -> Bar {
        Bar {
            symbol: Symbol::parse(symbol.as_bytes()).unwrap(),
            window_start_ms: start,
            open: close,
            high: close,
            low: close,
            close,
            volume: trades,
            trades,
            vwap: close,
        }
    }

    fn count(item: u64, start: u64, total: u64) -> ItemCount {
        ItemCount {
            item_id: item,
            window_start_ms: start,
            views: total,
            clicks: 0,
            purchases: 0,
            total,
        }
    }

    #[test]
    fn histories_stay_bounded_and_in_event_time_order_whatever_the_arrival_order() {
        let board = Board::new(&QueryTables::default());
        // Two workers' rows interleaved out of order, for far longer than kept.
        for s in (0..2_000u64).rev() {
            board.bars(&[bar("AAA", s * 1000, s as f64, 1)]);
        }
        let view = board.view(Some("AAA"), 0);
        let bars = view.market.unwrap().bars;
        assert_eq!(bars.len(), SYMBOL_HISTORY);
        assert!(bars.windows(2).all(|w| w[0].t < w[1].t));
        // Arriving newest first, the oldest kept are the latest 300 seconds.
        assert_eq!(bars.last().unwrap().t, 1_999_000);
        assert_eq!(bars[0].t, (2_000 - SYMBOL_HISTORY as u64) * 1000);
        for i in 0..500 {
            board.alert_fired(i, 0, 51, 50);
        }
        let view = board.view(None, 0);
        assert_eq!(view.alerts.len(), ALERTS_KEPT);
        assert_eq!(view.alerts_total, 500);
        assert_eq!(view.alerts[0].item_id, 499, "newest first");
    }

    #[test]
    fn the_default_symbol_is_the_most_traded_and_unknown_ones_fall_back_to_it() {
        let board = Board::new(&QueryTables::default());
        board.bars(&[
            bar("AAA", 0, 1.0, 5),
            bar("BBB", 0, 2.0, 9),
            bar("CCC", 0, 3.0, 1),
        ]);
        assert_eq!(board.view(None, 0).market.unwrap().symbol, "BBB");
        assert_eq!(board.view(Some("CCC"), 0).market.unwrap().symbol, "CCC");
        assert_eq!(board.view(Some("ZZZ"), 0).market.unwrap().symbol, "BBB");
        assert_eq!(
            board.view(Some("not a symbol!"), 0).market.unwrap().symbol,
            "BBB"
        );
    }

    #[test]
    fn top_items_come_from_the_latest_window_whose_rows_are_all_out() {
        let board = Board::new(&QueryTables::default());
        board.item_counts(&[count(1, 0, 10), count(2, 0, 30), count(3, 0, 20)]);
        board.item_counts(&[count(1, 60_000, 99)]);
        // Results complete to 90 s: the window [60 s, 120 s) may still get rows.
        let top = board.view(None, 90_000).top_items.unwrap();
        assert_eq!(top.window_start_ms, 0);
        let order: Vec<u64> = top.items.iter().map(|c| c.item_id).collect();
        assert_eq!(order, vec![2, 3, 1]);
        assert_eq!(
            board.view(None, 120_000).top_items.unwrap().window_start_ms,
            60_000
        );
        assert!(board.view(None, 59_999).top_items.is_none());
    }
}
