//! Market charts: price with its moving averages and volatility band, 1-second
//! candlesticks, and the correlation heatmap of the latest window.

use super::{job, legend, read_csv, seconds, span, Chart, Job, PlotOptions, CAPTION, PALETTE};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Deserialize, Clone)]
struct BarRow {
    symbol: String,
    window_start_ms: u64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    trades: u64,
}

#[derive(Deserialize)]
struct StatsRow {
    symbol: String,
    window_start_ms: u64,
    mean: f64,
    std: Option<f64>,
}

#[derive(Deserialize)]
struct EwmaRow {
    symbol: String,
    ts_ms: u64,
    ewma: f64,
}

#[derive(Deserialize)]
struct CorrRow {
    symbol_a: String,
    symbol_b: String,
    window_start_ms: u64,
    corr: f64,
}

/// Most points drawn per line; longer series are thinned evenly.
const MAX_POINTS: usize = 4_000;
/// Candlesticks drawn: the latest this many bars.
const CANDLES: usize = 120;

pub(super) fn charts(dir: &Path, options: &PlotOptions) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    if let Some(bars) = read_csv::<BarRow>(&dir.join("bars_1s.csv"))? {
        if !bars.is_empty() {
            let symbols = chosen_symbols(&bars, options);
            let origin = bars.iter().map(|b| b.window_start_ms).min().unwrap_or(0);
            let stats = read_csv::<StatsRow>(&dir.join("stats_10s.csv"))?.unwrap_or_default();
            let ewma = read_ewma(&dir.join("ewma.csv"), &symbols)?;
            let series = symbols
                .iter()
                .map(|s| PriceSeries::new(s, &bars, &stats, ewma.get(s), origin))
                .collect();
            jobs.push(job(PriceChart { series, origin }));
            let mut candles: Vec<BarRow> = bars
                .iter()
                .filter(|b| b.symbol == symbols[0])
                .cloned()
                .collect();
            candles.sort_by_key(|b| b.window_start_ms);
            let keep = candles.len().saturating_sub(CANDLES);
            jobs.push(job(Candles {
                symbol: symbols[0].clone(),
                bars: candles.split_off(keep),
                origin,
            }));
        }
    }
    if let Some(rows) = read_csv::<CorrRow>(&dir.join("corr_60s.csv"))? {
        if let Some(latest) = rows.iter().map(|r| r.window_start_ms).max() {
            jobs.push(job(Heatmap::of(&rows, latest)));
        }
    }
    Ok(jobs)
}

/// The requested symbols, or the four with the most trades.
fn chosen_symbols(bars: &[BarRow], options: &PlotOptions) -> Vec<String> {
    if !options.symbols.is_empty() {
        return options.symbols.clone();
    }
    let mut trades: BTreeMap<&str, u64> = BTreeMap::new();
    for b in bars {
        *trades.entry(&b.symbol).or_default() += b.trades;
    }
    let mut by_trades: Vec<(&str, u64)> = trades.into_iter().collect();
    by_trades.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    by_trades
        .iter()
        .take(4)
        .map(|(s, _)| s.to_string())
        .collect()
}

/// EWMA points of the chosen symbols, read as a stream (the file can be large).
fn read_ewma(path: &Path, symbols: &[String]) -> anyhow::Result<BTreeMap<String, Vec<(u64, f64)>>> {
    let mut points: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    let Some(text) = super::open_result(path)? else {
        return Ok(points);
    };
    let mut reader = csv::Reader::from_reader(text);
    for (i, row) in reader.deserialize::<EwmaRow>().enumerate() {
        let row =
            row.map_err(|e| anyhow::anyhow!("{}: bad row at line {}: {e}", path.display(), i + 2))?;
        if symbols.contains(&row.symbol) {
            points
                .entry(row.symbol)
                .or_default()
                .push((row.ts_ms, row.ewma));
        }
    }
    for p in points.values_mut() {
        p.sort_by_key(|(ts, _)| *ts);
    }
    Ok(points)
}

/// Every `len / MAX_POINTS`-th point.
fn thin<T: Copy>(points: &[T]) -> Vec<T> {
    let step = points.len().div_ceil(MAX_POINTS).max(1);
    points.iter().step_by(step).copied().collect()
}

struct PriceSeries {
    symbol: String,
    close: Vec<(f64, f64)>,
    ewma: Vec<(f64, f64)>,
    /// The 10 s moving average and its ±2σ band, at each window's end.
    mean: Vec<(f64, f64)>,
    band: Vec<(f64, f64, f64)>,
}

impl PriceSeries {
    fn new(
        symbol: &str,
        bars: &[BarRow],
        stats: &[StatsRow],
        ewma: Option<&Vec<(u64, f64)>>,
        origin: u64,
    ) -> Self {
        let mut close: Vec<(f64, f64)> = bars
            .iter()
            .filter(|b| b.symbol == symbol)
            .map(|b| (seconds(b.window_start_ms + 1_000, origin), b.close))
            .collect();
        close.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut window: Vec<&StatsRow> = stats.iter().filter(|s| s.symbol == symbol).collect();
        window.sort_by_key(|s| s.window_start_ms);
        // Hopping windows that started before the data are partial: skip them.
        let first_bar = bars.iter().map(|b| b.window_start_ms).min().unwrap_or(0);
        let full: Vec<&&StatsRow> = window
            .iter()
            .filter(|s| s.window_start_ms >= first_bar)
            .collect();
        let at_end = |s: &StatsRow| seconds(s.window_start_ms + 10_000, origin);
        PriceSeries {
            symbol: symbol.to_string(),
            close: thin(&close),
            ewma: ewma
                .map(|p| {
                    thin(
                        &p.iter()
                            .map(|(ts, v)| (seconds(*ts, origin), *v))
                            .collect::<Vec<_>>(),
                    )
                })
                .unwrap_or_default(),
            mean: thin(&full.iter().map(|s| (at_end(s), s.mean)).collect::<Vec<_>>()),
            band: thin(
                &full
                    .iter()
                    .filter_map(|s| {
                        s.std
                            .map(|d| (at_end(s), s.mean - 2.0 * d, s.mean + 2.0 * d))
                    })
                    .collect::<Vec<_>>(),
            ),
        }
    }
}

/// Price (1 s closes), EWMA, 10 s mean and its ±2σ band, one panel a symbol.
struct PriceChart {
    series: Vec<PriceSeries>,
    origin: u64,
}

impl Chart for PriceChart {
    fn name(&self) -> String {
        "price".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let area = area.titled(
            "Price, moving averages and volatility band (mean ± 2σ over 10 s)",
            CAPTION,
        )?;
        let rows = self.series.len().div_ceil(2).max(1);
        let cols = self.series.len().clamp(1, 2);
        for (panel, s) in area.split_evenly((rows, cols)).iter().zip(&self.series) {
            let xs = span(
                s.close
                    .iter()
                    .map(|p| p.0)
                    .chain(s.ewma.iter().map(|p| p.0)),
            );
            let ys = span(
                s.close
                    .iter()
                    .map(|p| p.1)
                    .chain(s.band.iter().flat_map(|b| [b.1, b.2]))
                    .chain(s.ewma.iter().map(|p| p.1)),
            );
            let mut chart = ChartBuilder::on(panel)
                .caption(&s.symbol, ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(xs.0..xs.1, ys.0..ys.1)?;
            chart
                .configure_mesh()
                .x_desc(format!("event time (s after {} ms)", self.origin))
                .light_line_style(WHITE)
                .draw()?;
            if !s.band.is_empty() {
                let upper = s.band.iter().map(|b| (b.0, b.2));
                let lower = s.band.iter().rev().map(|b| (b.0, b.1));
                chart.draw_series(std::iter::once(Polygon::new(
                    upper.chain(lower).collect::<Vec<_>>(),
                    PALETTE[0].mix(0.15),
                )))?;
            }
            chart
                .draw_series(LineSeries::new(
                    s.close.iter().copied(),
                    BLACK.stroke_width(1),
                ))?
                .label("price (1 s close)")
                .legend(legend(BLACK));
            if !s.ewma.is_empty() {
                chart
                    .draw_series(LineSeries::new(
                        s.ewma.iter().copied(),
                        PALETTE[1].stroke_width(2),
                    ))?
                    .label("EWMA (per trade)")
                    .legend(legend(PALETTE[1]));
            }
            chart
                .draw_series(LineSeries::new(
                    s.mean.iter().copied(),
                    PALETTE[0].stroke_width(2),
                ))?
                .label("10 s mean")
                .legend(legend(PALETTE[0]));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 12))
                .draw()?;
        }
        Ok(())
    }
}

/// 1-second OHLC candlesticks of one symbol.
struct Candles {
    symbol: String,
    bars: Vec<BarRow>,
    origin: u64,
}

impl Chart for Candles {
    fn name(&self) -> String {
        "bars".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let at = |b: &BarRow| seconds(b.window_start_ms, self.origin) + 0.5;
        let xs = span(self.bars.iter().map(at));
        let ys = span(self.bars.iter().flat_map(|b| [b.low, b.high]));
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "1-second bars: {} (latest {})",
                    self.symbol,
                    self.bars.len()
                ),
                CAPTION,
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(xs.0..xs.1, ys.0..ys.1)?;
        chart
            .configure_mesh()
            .x_desc(format!("event time (s after {} ms)", self.origin))
            .y_desc("price")
            .draw()?;
        let width =
            (area.dim_in_pixel().0 as usize / self.bars.len().max(1) * 6 / 10).clamp(1, 20) as u32;
        chart.draw_series(self.bars.iter().map(|b| {
            CandleStick::new(
                at(b),
                b.open,
                b.high,
                b.low,
                b.close,
                PALETTE[2].filled(),
                PALETTE[3].filled(),
                width,
            )
        }))?;
        Ok(())
    }
}

/// Pairwise correlations of one window as a symmetric matrix.
struct Heatmap {
    window_start_ms: u64,
    symbols: Vec<String>,
    corr: BTreeMap<(usize, usize), f64>,
}

impl Heatmap {
    fn of(rows: &[CorrRow], window_start_ms: u64) -> Self {
        let latest: Vec<&CorrRow> = rows
            .iter()
            .filter(|r| r.window_start_ms == window_start_ms)
            .collect();
        let symbols: Vec<String> = latest
            .iter()
            .flat_map(|r| [r.symbol_a.clone(), r.symbol_b.clone()])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index = |s: &str| {
            symbols
                .binary_search_by(|x| x.as_str().cmp(s))
                .expect("collected above")
        };
        let mut corr = BTreeMap::new();
        for r in &latest {
            let (a, b) = (index(&r.symbol_a), index(&r.symbol_b));
            corr.insert((a, b), r.corr);
            corr.insert((b, a), r.corr);
        }
        for i in 0..symbols.len() {
            corr.insert((i, i), 1.0);
        }
        Heatmap {
            window_start_ms,
            symbols,
            corr,
        }
    }
}

/// Blue (-1) through white (0) to red (+1).
fn diverging(c: f64) -> RGBColor {
    let c = c.clamp(-1.0, 1.0);
    let toward = |from: (f64, f64, f64), t: f64| {
        let mix = |a: f64| (255.0 + (a - 255.0) * t).round() as u8;
        RGBColor(mix(from.0), mix(from.1), mix(from.2))
    };
    if c < 0.0 {
        toward((33.0, 102.0, 172.0), -c)
    } else {
        toward((178.0, 24.0, 43.0), c)
    }
}

impl Chart for Heatmap {
    fn name(&self) -> String {
        "correlation".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let n = self.symbols.len();
        let (map_area, scale_area) = area.split_horizontally(area.dim_in_pixel().0 as i32 - 110);
        let mut chart = ChartBuilder::on(&map_area)
            .caption(
                format!(
                    "Correlation of 1 s returns, window starting {} ms ({n} symbols)",
                    self.window_start_ms
                ),
                CAPTION,
            )
            .margin(10)
            .x_label_area_size(80)
            .y_label_area_size(70)
            .build_cartesian_2d(
                // n segments each way: 0..=n-1.
                (0..n.saturating_sub(1)).into_segmented(),
                (0..n.saturating_sub(1)).into_segmented(),
            )?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => self.symbols.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n.min(30))
            .y_labels(n.min(30))
            .x_label_formatter(&label)
            .y_label_formatter(&label)
            .x_label_style(if n > 12 {
                ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate90)
            } else {
                ("sans-serif", 11).into_font()
            })
            .draw()?;
        chart.draw_series(self.corr.iter().map(|(&(a, b), &c)| {
            let corner = |i: usize, j: usize| (SegmentValue::Exact(i), SegmentValue::Exact(j));
            Rectangle::new([corner(a, b), corner(a + 1, b + 1)], diverging(c).filled())
        }))?;
        // The colour scale.
        let mut scale = ChartBuilder::on(&scale_area)
            .margin_top(50)
            .margin_bottom(70)
            .margin_right(10)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..1.0, -1.0..1.0)?;
        scale
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_desc("corr")
            .draw()?;
        scale.draw_series((0..100).map(|i| {
            let lo = -1.0 + 0.02 * i as f64;
            Rectangle::new([(0.0, lo), (1.0, lo + 0.02)], diverging(lo + 0.01).filled())
        }))?;
        Ok(())
    }
}
