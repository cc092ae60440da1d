//! Row sinks: receivers of result rows as the dataflow emits them, beside the
//! CSV files. The dashboard's board is one; a program embedding eddy adds its
//! own with `Job::with_sink` (see `examples/custom_source_and_sink.rs`).
//!
//! A sink is called on the worker that computed the rows, from every worker
//! of the process at once, with one batch of one query's rows at a time, in
//! no particular order across keys or workers. It implements the methods of
//! the rows it wants; the others do nothing.

use crate::operators::activity::Activity;
use crate::operators::alerts::Alert;
use crate::operators::anomalies::Anomaly;
use crate::operators::bars::Bar;
use crate::operators::correlation::Correlation;
use crate::operators::ewma::EwmaRow;
use crate::operators::forecasts::Forecast;
use crate::operators::item_counts::ItemCount;
use crate::operators::stats::PriceStats;
use crate::operators::volatility::Volatility;
use std::sync::Arc;

/// Receives result rows (see the module doc).
pub trait RowSink: Send + Sync {
    fn bars(&self, _rows: &[Bar]) {}
    fn stats(&self, _rows: &[PriceStats]) {}
    fn volatility(&self, _rows: &[Volatility]) {}
    fn ewma(&self, _rows: &[EwmaRow]) {}
    fn correlations(&self, _rows: &[Correlation]) {}
    fn item_counts(&self, _rows: &[ItemCount]) {}
    fn activity(&self, _rows: &[Activity]) {}
    fn alerts(&self, _rows: &[Alert]) {}
    fn anomalies(&self, _rows: &[Anomaly]) {}
    fn forecasts(&self, _rows: &[Forecast]) {}
}

/// The row sinks of a run.
pub type RowSinks = Arc<Vec<Arc<dyn RowSink>>>;

/// A row type a [`RowSink`] takes: which of its methods receives it.
pub trait SinkRow: Sized {
    fn hand_to(sink: &dyn RowSink, rows: &[Self]);
}

macro_rules! sink_row {
    ($($row:ty => $method:ident),* $(,)?) => {
        $(impl SinkRow for $row {
            fn hand_to(sink: &dyn RowSink, rows: &[Self]) {
                sink.$method(rows)
            }
        })*
    };
}

sink_row! {
    Bar => bars,
    PriceStats => stats,
    Volatility => volatility,
    EwmaRow => ewma,
    Correlation => correlations,
    ItemCount => item_counts,
    Activity => activity,
    Alert => alerts,
    Anomaly => anomalies,
    Forecast => forecasts,
}
