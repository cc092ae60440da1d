//! Interaction charts: the most interacted-with items per window with their
//! alerts, and activity (interactions and active users) per window.

use super::{job, legend, read_csv, span, Chart, Job, CAPTION, PALETTE};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
struct CountRow {
    item_id: u64,
    window_start_ms: u64,
    total: u64,
}

#[derive(Deserialize)]
struct AlertRow {
    item_id: u64,
    window_start_ms: u64,
    total: u64,
    threshold: u64,
}

#[derive(Deserialize)]
struct ActivityRow {
    window_start_ms: u64,
    users: u64,
    interactions: u64,
}

/// Items drawn: the most interacted-with over the whole run.
const TOP_ITEMS: usize = 6;

pub(super) fn charts(dir: &Path) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    if let Some(counts) = read_csv::<CountRow>(&dir.join("item_counts_60s.csv"))? {
        if !counts.is_empty() {
            let alerts = read_csv::<AlertRow>(&dir.join("alerts.csv"))?.unwrap_or_default();
            jobs.push(job(ItemCounts::new(&counts, alerts)));
        }
    }
    if let Some(rows) = read_csv::<ActivityRow>(&dir.join("activity_60s.csv"))? {
        if !rows.is_empty() {
            jobs.push(job(Activity { rows }));
        }
    }
    Ok(jobs)
}

struct ItemCounts {
    origin: u64,
    /// Per top item: (window start, total), in time order.
    items: Vec<(u64, Vec<(u64, u64)>)>,
    alerts: Vec<AlertRow>,
}

impl ItemCounts {
    fn new(counts: &[CountRow], alerts: Vec<AlertRow>) -> Self {
        let mut totals: BTreeMap<u64, u64> = BTreeMap::new();
        for c in counts {
            *totals.entry(c.item_id).or_default() += c.total;
        }
        let mut top: Vec<(u64, u64)> = totals.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let items = top
            .iter()
            .take(TOP_ITEMS)
            .map(|&(item, _)| {
                let mut series: Vec<(u64, u64)> = counts
                    .iter()
                    .filter(|c| c.item_id == item)
                    .map(|c| (c.window_start_ms, c.total))
                    .collect();
                series.sort();
                (item, series)
            })
            .collect();
        ItemCounts {
            origin: counts.iter().map(|c| c.window_start_ms).min().unwrap_or(0),
            items,
            alerts,
        }
    }

    fn minutes(&self, ts_ms: u64) -> f64 {
        (ts_ms as f64 - self.origin as f64) / 60_000.0
    }
}

impl Chart for ItemCounts {
    fn name(&self) -> String {
        "item_counts".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let points = || self.items.iter().flat_map(|(_, s)| s.iter());
        let xs = span(
            points()
                .map(|p| self.minutes(p.0))
                .chain(self.alerts.iter().map(|a| self.minutes(a.window_start_ms))),
        );
        let ys = span(
            points()
                .map(|p| p.1 as f64)
                .chain(self.alerts.iter().map(|a| a.threshold as f64))
                .chain([0.0]),
        );
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "Interactions per 60 s window: top {} items, alerts marked",
                    self.items.len()
                ),
                CAPTION,
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(xs.0..xs.1, 0f64.max(ys.0)..ys.1)?;
        chart
            .configure_mesh()
            .x_desc(format!("window start (minutes after {} ms)", self.origin))
            .y_desc("interactions in window")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for (i, (item, series)) in self.items.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let line = series.iter().map(|&(t, n)| (self.minutes(t), n as f64));
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)).point_size(3))?
                .label(format!("item {item}"))
                .legend(legend(color));
        }
        if let Some(threshold) = self.alerts.first().map(|a| a.threshold as f64) {
            chart
                .draw_series(LineSeries::new(
                    [(xs.0, threshold), (xs.1, threshold)],
                    BLACK.mix(0.5).stroke_width(1),
                ))?
                .label(format!("alert threshold {threshold}"))
                .legend(legend(RGBColor(128, 128, 128)));
            chart
                .draw_series(self.alerts.iter().filter_map(|a| {
                    // Alerts of the drawn items, in their line's colour.
                    let i = self.items.iter().position(|(item, _)| *item == a.item_id)?;
                    let at = (self.minutes(a.window_start_ms), a.total as f64);
                    Some(Cross::new(
                        at,
                        7,
                        PALETTE[i % PALETTE.len()].stroke_width(3),
                    ))
                }))?
                .label(format!(
                    "alert ({} in all, on every item)",
                    self.alerts.len()
                ))
                .legend(|(x, y)| Cross::new((x + 10, y), 5, RED.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()?;
        Ok(())
    }
}

struct Activity {
    rows: Vec<ActivityRow>,
}

impl Chart for Activity {
    fn name(&self) -> String {
        "activity".into()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let origin = self
            .rows
            .iter()
            .map(|r| r.window_start_ms)
            .min()
            .unwrap_or(0);
        let at = |r: &ActivityRow| (r.window_start_ms - origin) as f64 / 60_000.0;
        let mut rows: Vec<&ActivityRow> = self.rows.iter().collect();
        rows.sort_by_key(|r| r.window_start_ms);
        let area = area.titled("Activity per 60 s window", CAPTION)?;
        let (top, bottom) = area.split_vertically(area.dim_in_pixel().1 / 2);
        for (panel, what, value, color) in [
            (
                &top,
                "interactions",
                (|r: &ActivityRow| r.interactions as f64) as fn(&ActivityRow) -> f64,
                PALETTE[0],
            ),
            (
                &bottom,
                "active users",
                |r: &ActivityRow| r.users as f64,
                PALETTE[2],
            ),
        ] {
            let xs = span(rows.iter().map(|r| at(r)));
            let ys = span(rows.iter().map(|r| value(r)).chain([0.0]));
            let mut chart = ChartBuilder::on(panel)
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(70)
                .build_cartesian_2d(xs.0..xs.1, 0f64.max(ys.0)..ys.1)?;
            chart
                .configure_mesh()
                .x_desc(format!("window start (minutes after {origin} ms)"))
                .y_desc(what)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .draw()?;
            chart.draw_series(
                LineSeries::new(
                    rows.iter().map(|r| (at(r), value(r))),
                    color.stroke_width(2),
                )
                .point_size(3),
            )?;
        }
        Ok(())
    }
}
