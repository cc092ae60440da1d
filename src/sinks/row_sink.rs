//! Row sinks: receivers of result rows as the dataflow emits them, beside the
//! CSV files. The dashboard's board and the models' quality tallies are row
//! sinks; a program embedding eddy adds its own with `Job::with_sink` (see
//! `examples/custom_source_and_sink.rs`).
//!
//! A sink is called on the worker that computed the rows, from every worker
//! of the process at once, with one batch of one query's rows at a time, in
//! no particular order across keys or workers. It looks at the batches of the
//! row types it wants ([`RowBatch::of`]) and ignores the others: a new query
//! needs no new method here.

use std::any::Any;
use std::sync::Arc;

/// One batch of one query's rows, typed by row.
pub struct RowBatch<'a> {
    /// The query's id (its file is `ID.csv`).
    pub query: &'a str,
    rows: &'a dyn Any,
}

impl<'a> RowBatch<'a> {
    pub fn new<T: 'static>(query: &'a str, rows: &'a Vec<T>) -> Self {
        RowBatch { query, rows }
    }

    /// The rows, when they are of type `T`.
    pub fn of<T: 'static>(&self) -> Option<&'a [T]> {
        self.rows.downcast_ref::<Vec<T>>().map(Vec::as_slice)
    }
}

/// Receives result rows (see the module doc).
pub trait RowSink: Send + Sync {
    fn rows(&self, batch: &RowBatch<'_>);
}

/// The row sinks of a run.
pub type RowSinks = Arc<Vec<Arc<dyn RowSink>>>;

/// Hands a batch to every sink.
pub fn hand_to_all<T: 'static>(sinks: &[Arc<dyn RowSink>], query: &str, rows: &Vec<T>) {
    let batch = RowBatch::new(query, rows);
    for sink in sinks {
        sink.rows(&batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_seen_only_as_its_own_row_type() {
        let rows = vec![1u64, 2, 3];
        let batch = RowBatch::new("q", &rows);
        assert_eq!(batch.of::<u64>(), Some(&[1u64, 2, 3][..]));
        assert!(batch.of::<u32>().is_none());
        assert_eq!(batch.query, "q");
    }
}
