//! Performance charts: the latency distribution of a run (metrics.json), and
//! from the benchmark CSVs in results/: latency against offered load,
//! throughput per worker/process layout, the peer comparison, the cost of
//! checkpoints, the models' quality and the soak run (`soak.rs`).

use super::{job, legend, read_csv, Chart, Job, CAPTION, PALETTE};
use crate::metrics::decode;
use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;
use std::path::Path;

pub(super) fn charts(dir: &Path) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let metrics = dir.join("metrics.json");
    if metrics.exists() {
        let text = std::fs::read_to_string(&metrics)?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", metrics.display()))?;
        let encoded = json["latency_histogram"]
            .as_str()
            .with_context(|| format!("{}: no latency_histogram", metrics.display()))?;
        let histogram = decode(encoded)?;
        if !histogram.is_empty() {
            // (latency ms, fraction at or below), one point per recorded value.
            let cdf = histogram
                .iter_recorded()
                .map(|v| (v.value_iterated_to() as f64 / 1e3, v.percentile() / 100.0))
                .collect();
            jobs.push(job(LatencyCdf {
                cdf,
                count: histogram.len(),
            }));
        }
    }
    if let Some(rows) = read_csv::<LoadRow>(&dir.join("latency_vs_load.csv"))? {
        jobs.push(job(LatencyVsLoad { rows }));
    }
    if let Some(mut rows) = read_csv::<ScalingRow>(&dir.join("scaling.csv"))? {
        for r in &mut rows {
            r.layout = format!("{}x{}", r.processes, r.workers_per_process);
        }
        jobs.push(job(Scaling { rows }));
    }
    if let Some(rows) = read_csv::<PeerRow>(&dir.join("peers.csv"))? {
        jobs.push(job(Peers { rows }));
    }
    if let Some(rows) = read_csv::<CheckpointRow>(&dir.join("checkpoints.csv"))? {
        jobs.push(job(Checkpoints { rows }));
    }
    if let Some(rows) = read_csv(&dir.join("soak.csv"))? {
        jobs.push(job(super::soak::Soak { rows }));
    }
    let anomalies = read_csv::<AnomalyRow>(&dir.join("anomaly_quality.csv"))?;
    let forecasts = read_csv::<ForecastRow>(&dir.join("forecast_quality.csv"))?;
    if let (Some(anomalies), Some(forecasts)) = (anomalies, forecasts) {
        jobs.push(job(ModelQuality {
            anomalies,
            forecasts,
        }));
    }
    Ok(jobs)
}

/// The distinct names, in order of first appearance (one panel each).
fn distinct<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = Vec::new();
    for name in names {
        if !seen.contains(&name) {
            seen.push(name);
        }
    }
    seen
}

/// 1.5M, 620k, 950, 0.97 (fractions keep two decimals).
fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", (v / 1e5).round() / 10.0)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v.abs() < 10.0 && v.fract() != 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// The smallest and largest positive values, as a log axis range.
fn log_span(values: impl IntoIterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        1.0..10.0
    } else {
        lo / 1.5..hi * 1.5
    }
}

struct LatencyCdf {
    cdf: Vec<(f64, f64)>,
    count: u64,
}

impl Chart for LatencyCdf {
    fn name(&self) -> String {
        "latency_cdf".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("Window-emission latency, CDF of {} windows", self.count),
                CAPTION,
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(log_span(self.cdf.iter().map(|p| p.0)).log_scale(), 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("latency (ms, log scale)")
            .y_desc("fraction of windows at or below")
            .draw()?;
        chart.draw_series(LineSeries::new(
            self.cdf.iter().copied(),
            PALETTE[0].stroke_width(2),
        ))?;
        for (q, color) in [(0.5, PALETTE[2]), (0.99, PALETTE[1]), (0.999, PALETTE[3])] {
            if let Some(&(ms, _)) = self.cdf.iter().find(|p| p.1 >= q) {
                chart
                    .draw_series(std::iter::once(Circle::new((ms, q), 5, color.filled())))?
                    .label(format!("p{}: {ms:.3} ms", q * 100.0))
                    .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()?;
        Ok(())
    }
}

#[derive(Deserialize)]
struct LoadRow {
    pipeline: String,
    /// `--release-ms` of the run (older files: the default).
    #[serde(default = "default_release_ms")]
    release_ms: u64,
    offered_per_s: f64,
    achieved_per_s: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_p999_ms: f64,
    lag_p99_ms: f64,
}

fn default_release_ms() -> u64 {
    crate::pipeline::EngineConfig::default().release_ms
}

/// One figure of a load row.
type LoadColumn = fn(&LoadRow) -> f64;

struct LatencyVsLoad {
    rows: Vec<LoadRow>,
}

impl Chart for LatencyVsLoad {
    fn name(&self) -> String {
        "latency_vs_load".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let pipelines = distinct(self.rows.iter().map(|r| r.pipeline.as_str()));
        let area = area.titled(
            "Latency under open-loop load (real time, default release)",
            CAPTION,
        )?;
        let panels = area.split_evenly((1, pipelines.len().max(1)));
        for (panel, pipeline) in panels.iter().zip(&pipelines) {
            let rows: Vec<&LoadRow> = self
                .rows
                .iter()
                .filter(|r| r.pipeline == *pipeline && r.release_ms == default_release_ms())
                .collect();
            let xs = log_span(rows.iter().map(|r| r.offered_per_s));
            let ys = log_span(
                rows.iter()
                    .flat_map(|r| [r.latency_p50_ms, r.latency_p999_ms, r.lag_p99_ms]),
            );
            let mut chart = ChartBuilder::on(panel)
                .caption(*pipeline, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(xs.log_scale(), ys.clone().log_scale())?;
            chart
                .configure_mesh()
                .x_desc("offered events/s (log)")
                .y_desc("ms (log)")
                .x_labels(6)
                .x_label_formatter(&|v| human(*v))
                .draw()?;
            let series: [(&str, LoadColumn, RGBColor); 4] = [
                ("latency p50", |r| r.latency_p50_ms, PALETTE[2]),
                ("latency p99", |r| r.latency_p99_ms, PALETTE[1]),
                ("latency p99.9", |r| r.latency_p999_ms, PALETTE[3]),
                ("generator lag p99", |r| r.lag_p99_ms, PALETTE[4]),
            ];
            for (label, value, color) in series {
                let points: Vec<(f64, f64)> = rows
                    .iter()
                    .map(|r| (r.offered_per_s, value(r)))
                    .filter(|p| p.1 > 0.0)
                    .collect();
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)).point_size(3))?
                    .label(label)
                    .legend(legend(color));
            }
            // Where achieved throughput fell short of the offered rate.
            let short: Vec<&&LoadRow> = rows
                .iter()
                .filter(|r| r.achieved_per_s < 0.97 * r.offered_per_s)
                .collect();
            if let Some(first) = short.first() {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![
                            (first.offered_per_s, ys.start),
                            (first.offered_per_s, ys.end),
                        ],
                        BLACK.mix(0.4).stroke_width(1),
                    )))?
                    .label("saturated (achieved < 97 % offered)")
                    .legend(legend(RGBColor(128, 128, 128)));
            }
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

#[derive(Deserialize)]
struct ScalingRow {
    pipeline: String,
    /// `PROCESSES x WORKERS` (filled in after reading).
    #[serde(skip)]
    layout: String,
    processes: u32,
    workers_per_process: u32,
    oversubscribed: String,
    records_per_s: f64,
}

/// A bar chart of throughput per labelled bar, one panel a group.
fn bars<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    bars: &[(String, f64, RGBColor)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(panel)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(
            // n segments: 0..=n-1.
            (0..bars.len().saturating_sub(1)).into_segmented(),
            0.0..top.max(1.0),
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc(y_desc)
        .y_label_formatter(&|v| human(*v))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), b.1),
            ],
            b.2.filled(),
        );
        bar.set_margin(0, 0, 8, 8);
        bar
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let centred = TextStyle::from(("sans-serif", 13).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        Text::new(human(b.1), (SegmentValue::CenterOf(i), b.1), centred)
    }))?;
    Ok(())
}

struct Scaling {
    rows: Vec<ScalingRow>,
}

impl Chart for Scaling {
    fn name(&self) -> String {
        "scaling".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let pipelines = distinct(self.rows.iter().map(|r| r.pipeline.as_str()));
        let area = area.titled(
            "Throughput by layout (processes x workers; grey: more workers than cores)",
            CAPTION,
        )?;
        for (panel, pipeline) in area
            .split_evenly((1, pipelines.len().max(1)))
            .iter()
            .zip(&pipelines)
        {
            // Repetitions of a layout are drawn as one bar: their median.
            let mine: Vec<&ScalingRow> = self
                .rows
                .iter()
                .filter(|r| r.pipeline == *pipeline)
                .collect();
            let layouts = distinct(mine.iter().map(|r| r.layout.as_str()));
            let rows: Vec<(String, f64, RGBColor)> = layouts
                .iter()
                .map(|layout| {
                    let reps: Vec<&&ScalingRow> =
                        mine.iter().filter(|r| r.layout == *layout).collect();
                    let mut rates: Vec<f64> = reps.iter().map(|r| r.records_per_s).collect();
                    rates.sort_by(f64::total_cmp);
                    let color = if reps[0].oversubscribed == "yes" {
                        RGBColor(170, 170, 170)
                    } else {
                        PALETTE[0]
                    };
                    (layout.to_string(), rates[rates.len() / 2], color)
                })
                .collect();
            bars(panel, pipeline, "records/s", &rows)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct PeerRow {
    engine: String,
    parallelism: u32,
    per_s: f64,
    agrees_with_eddy: String,
}

struct Peers {
    rows: Vec<PeerRow>,
}

impl Chart for Peers {
    fn name(&self) -> String {
        "peers".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let rows: Vec<(String, f64, RGBColor)> = self
            .rows
            .iter()
            .map(|r| {
                let mark = if r.agrees_with_eddy == "yes" {
                    ""
                } else {
                    " (differs!)"
                };
                let color = if r.engine == "eddy" {
                    PALETTE[0]
                } else {
                    PALETTE[1]
                };
                (
                    format!("{} p={}{mark}", r.engine, r.parallelism),
                    r.per_s,
                    color,
                )
            })
            .collect();
        let area = area.titled("M1+M2 on the same file: trades/s after start-up", CAPTION)?;
        bars(&area, "", "trades/s", &rows)
    }
}

/// The median of `values` (the middle one of an odd count, else the mean of the two).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[derive(Deserialize)]
struct CheckpointRow {
    interval_ms: String,
    records_per_s: f64,
    mean_ms: f64,
}

/// Throughput without and with checkpoints (median of the repetitions), and
/// the mean time a checkpoint takes.
struct Checkpoints {
    rows: Vec<CheckpointRow>,
}

impl Chart for Checkpoints {
    fn name(&self) -> String {
        "checkpoints".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let area = area.titled(
            "Checkpoints: full pipeline throughput and checkpoint time (median of repetitions)",
            CAPTION,
        )?;
        let intervals = distinct(self.rows.iter().map(|r| r.interval_ms.as_str()));
        let of = |interval: &str, value: fn(&CheckpointRow) -> f64| {
            median(
                (self.rows.iter())
                    .filter(|r| r.interval_ms == interval)
                    .map(value)
                    .collect(),
            )
        };
        let label = |i: &str| match i {
            "none" => "no checkpoints".to_string(),
            ms => format!("every {} s", ms.parse::<f64>().unwrap_or(0.0) / 1000.0),
        };
        let throughput: Vec<_> = (intervals.iter())
            .map(|i| (label(i), of(i, |r| r.records_per_s), PALETTE[0]))
            .collect();
        let time: Vec<_> = (intervals.iter())
            .filter(|i| **i != "none")
            .map(|i| (label(i), of(i, |r| r.mean_ms), PALETTE[1]))
            .collect();
        let panels = area.split_evenly((1, 2));
        bars(&panels[0], "throughput", "records/s", &throughput)?;
        bars(&panels[1], "mean time per checkpoint", "ms", &time)?;
        Ok(())
    }
}

#[derive(Deserialize)]
struct AnomalyRow {
    disorder_ms: u64,
    kind: String,
    f1: f64,
}

#[derive(Deserialize)]
struct ForecastRow {
    disorder_ms: u64,
    target: String,
    skill: f64,
}

/// Detection F1 per anomaly kind, and forecast skill against the naive
/// forecast per target, for each disorder setting.
struct ModelQuality {
    anomalies: Vec<AnomalyRow>,
    forecasts: Vec<ForecastRow>,
}

impl Chart for ModelQuality {
    fn name(&self) -> String {
        "model_quality".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let area = area.titled(
            "Models against the generators' labels (colour: disorder 0 / 150 ms)",
            CAPTION,
        )?;
        let color = |disorder: u64| PALETTE[usize::from(disorder > 0)];
        let f1: Vec<_> = (self.anomalies.iter())
            .map(|r| (r.kind.replace('_', " "), r.f1, color(r.disorder_ms)))
            .collect();
        // Skill = 1 - MAE / naive MAE: above 0 beats the last value.
        let skill: Vec<_> = (self.forecasts.iter())
            .map(|r| {
                let s = r.skill.max(0.0);
                (r.target.clone(), s, color(r.disorder_ms))
            })
            .collect();
        let (width, _) = area.dim_in_pixel();
        let (left, right) = area.split_horizontally(width * 5 / 8);
        bars(&left, "anomaly detection F1", "F1", &f1)?;
        bars(
            &right,
            "forecast skill vs naive (negative shown as 0)",
            "skill",
            &skill,
        )?;
        Ok(())
    }
}
