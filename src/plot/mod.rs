//! `eddy plot`: PNG and SVG charts from a run's result files and from the
//! benchmark CSVs in results/.
//!
//! Each chart is drawn once through plotters' generic drawing area and saved
//! with both backends. Text uses DejaVu Sans embedded in the binary, so plots
//! render the same on a machine without fonts. A chart whose input file is
//! absent is skipped; a malformed input file is an error naming the file.

mod bench;
mod interactions;
mod market;
mod soak;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// What `eddy plot` draws and how.
#[derive(Clone, Debug)]
pub struct PlotOptions {
    /// Image size in pixels.
    pub width: u32,
    pub height: u32,
    /// Symbols for the price and bar charts (none: the four most traded).
    pub symbols: Vec<String>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            width: 1200,
            height: 700,
            symbols: Vec::new(),
        }
    }
}

/// A chart that can draw itself on any plotters backend.
pub trait Chart {
    /// The file name, without extension.
    fn name(&self) -> String;
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static;
}

/// Draws every chart whose inputs are in `input` into `out` (PNG and SVG);
/// returns the files written. Fails when `input` holds nothing to plot.
pub fn plot_dir(input: &Path, out: &Path, options: &PlotOptions) -> anyhow::Result<Vec<PathBuf>> {
    if !input.is_dir() {
        anyhow::bail!("--in {}: not a directory", input.display());
    }
    register_font();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut jobs = market::charts(input, options)?;
    jobs.extend(interactions::charts(input)?);
    jobs.extend(bench::charts(input)?);
    let mut written = Vec::new();
    for save in jobs {
        written.extend(save(out, options)?);
    }
    if written.is_empty() {
        anyhow::bail!(
            "{}: no result files to plot (bars_1s.csv, ewma.csv, corr_60s.csv, item_counts_60s.csv, \
             activity_60s.csv, metrics.json, scaling.csv, latency_vs_load.csv, peers.csv)",
            input.display()
        );
    }
    Ok(written)
}

/// A boxed job saving `chart`, for `plot_dir`'s list.
type Job = Box<dyn FnOnce(&Path, &PlotOptions) -> anyhow::Result<Vec<PathBuf>>>;

fn job<C: Chart + 'static>(chart: C) -> Job {
    Box::new(move |out: &Path, options: &PlotOptions| save(&chart, out, options))
}

/// Saves `chart` as NAME.png and NAME.svg in `out`.
fn save<C: Chart>(chart: &C, out: &Path, options: &PlotOptions) -> anyhow::Result<Vec<PathBuf>> {
    let size = (options.width, options.height);
    let png = out.join(format!("{}.png", chart.name()));
    let svg = out.join(format!("{}.svg", chart.name()));
    render(chart, BitMapBackend::new(&png, size), &png)?;
    render(chart, SVGBackend::new(&svg, size), &svg)?;
    Ok(vec![png, svg])
}

/// Draws `chart` on a white `backend` and writes it to `path`.
fn render<C: Chart, DB: DrawingBackend>(chart: &C, backend: DB, path: &Path) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let area = backend.into_drawing_area();
    area.fill(&WHITE)?;
    chart.draw(&area)?;
    area.present()
        .with_context(|| format!("cannot write {}", path.display()))
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let font: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        for style in [FontStyle::Normal, FontStyle::Bold] {
            // The embedded font is known to parse; a failure would show as missing text.
            let _ = plotters::style::register_font("sans-serif", style, font);
        }
    });
}

/// The rows of a CSV file with a header, or `None` when it does not exist.
/// The rows of a result file, or of the finished parts of its rolled
/// folder (`ID/` for `ID.csv`); none if neither is there.
fn open_result(path: &Path) -> anyhow::Result<Option<Box<dyn std::io::Read>>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    crate::rolling::open_rows(dir, &name.to_string_lossy())
        .with_context(|| format!("cannot read {}", path.display()))
}

fn read_csv<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<Vec<T>>> {
    let Some(text) = open_result(path)? else {
        return Ok(None);
    };
    let mut reader = csv::Reader::from_reader(text);
    let mut rows = Vec::new();
    for (i, row) in reader.deserialize().enumerate() {
        rows.push(row.with_context(|| format!("{}: bad row at line {}", path.display(), i + 2))?);
    }
    Ok(Some(rows))
}

/// Least and greatest of `values`, widened when equal or empty.
fn span(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5 * lo.abs().max(1.0), hi + 0.5 * hi.abs().max(1.0))
    } else {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    }
}

/// Seconds of event time since `origin_ms`.
fn seconds(ts_ms: u64, origin_ms: u64) -> f64 {
    (ts_ms as f64 - origin_ms as f64) / 1e3
}

/// A line's legend entry.
fn legend(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
}

const CAPTION: (&str, u32) = ("sans-serif", 22);
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
