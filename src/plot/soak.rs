//! The soak benchmark's chart (results/soak.csv, `benches/soak.sh`): memory,
//! disk and latency of the two engines over the run, one panel each, so that
//! a line that keeps rising is seen at once.

use super::{legend, span, Chart, CAPTION, PALETTE};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct SoakRow {
    t_s: f64,
    engine: String,
    rss_mib: f64,
    results_mb: f64,
    checkpoints_mb: f64,
    input_log_mb: f64,
    window_p99_ms: Option<f64>,
}

pub(super) struct Soak {
    pub rows: Vec<SoakRow>,
}

type Column = fn(&SoakRow) -> Option<f64>;

impl Chart for Soak {
    fn name(&self) -> String {
        "soak".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let area = area.titled(
            "Soak: the demo (generators) and the same queries over TCP, rolling results, retention, checkpoints",
            CAPTION,
        )?;
        let panels = area.split_evenly((2, 2));
        let measures: [(&str, &str, Column); 4] = [
            ("resident memory", "MiB", |r| Some(r.rss_mib)),
            ("result folder", "MB", |r| Some(r.results_mb)),
            ("input log (TCP) and checkpoints", "MB", |r| {
                Some(r.input_log_mb + r.checkpoints_mb)
            }),
            ("window latency p99 (demo)", "ms", |r| r.window_p99_ms),
        ];
        let engines = ["demo", "tcp"];
        for (panel, (title, unit, value)) in panels.iter().zip(measures) {
            let series: Vec<(&str, Vec<(f64, f64)>)> = engines
                .iter()
                .map(|e| {
                    let points = (self.rows.iter())
                        .filter(|r| r.engine == *e)
                        .filter_map(|r| Some((r.t_s / 60.0, value(r)?)))
                        .collect();
                    (*e, points)
                })
                .filter(|(_, points): &(&str, Vec<(f64, f64)>)| !points.is_empty())
                .collect();
            let all = series.iter().flat_map(|(_, p)| p);
            let (_, x_hi) = span(all.clone().map(|p| p.0));
            let (_, y_hi) = span(all.map(|p| p.1));
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(0.0..x_hi, 0.0..y_hi * 1.1)?;
            chart
                .configure_mesh()
                .x_desc("minutes")
                .y_desc(unit)
                .draw()?;
            for (i, (engine, points)) in series.into_iter().enumerate() {
                let color = PALETTE[i];
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                    .label(engine)
                    .legend(legend(color));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 12))
                .draw()?;
        }
        Ok(())
    }
}
