//! Live tallies of the models' output, for `metrics.json`, `/metrics` and the
//! dashboard: anomalies detected by kind, and each forecast target's errors
//! against the naive forecast, over every key. (`eddy evaluate` computes the
//! same errors from `forecasts.csv`, and scores anomalies against the truth.)

use crate::queries::anomalies::Anomaly;
use crate::queries::forecasts::Forecast;
use crate::sinks::row_sink::{RowBatch, RowSink};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Errors of one forecast target, of the model and of the naive forecast.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorSummary {
    pub n: u64,
    pub mae: f64,
    pub rmse: f64,
    pub naive_mae: f64,
    pub naive_rmse: f64,
}

#[derive(Clone, Copy, Default)]
struct ErrorSums {
    n: u64,
    abs: f64,
    sq: f64,
    naive_abs: f64,
    naive_sq: f64,
}

impl ErrorSums {
    fn add(&mut self, error: f64, naive_error: f64) {
        self.n += 1;
        self.abs += error.abs();
        self.sq += error * error;
        self.naive_abs += naive_error.abs();
        self.naive_sq += naive_error * naive_error;
    }

    fn of(s: &ErrorSummary) -> Self {
        let n = s.n as f64;
        ErrorSums {
            n: s.n,
            abs: s.mae * n,
            sq: s.rmse * s.rmse * n,
            naive_abs: s.naive_mae * n,
            naive_sq: s.naive_rmse * s.naive_rmse * n,
        }
    }

    fn summary(&self) -> ErrorSummary {
        let n = self.n.max(1) as f64;
        ErrorSummary {
            n: self.n,
            mae: self.abs / n,
            rmse: (self.sq / n).sqrt(),
            naive_mae: self.naive_abs / n,
            naive_rmse: (self.naive_sq / n).sqrt(),
        }
    }
}

/// What the models produced in a run (`metrics.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QualitySummary {
    /// Anomalies detected, by kind.
    pub anomalies: BTreeMap<String, u64>,
    /// Forecast errors, by target.
    pub forecasts: BTreeMap<String, ErrorSummary>,
}

impl QualitySummary {
    /// The summary of a cluster from its processes'.
    pub fn merge<'a>(parts: impl IntoIterator<Item = &'a QualitySummary>) -> QualitySummary {
        let mut anomalies = BTreeMap::new();
        let mut sums: BTreeMap<String, ErrorSums> = BTreeMap::new();
        for p in parts {
            for (k, n) in &p.anomalies {
                *anomalies.entry(k.clone()).or_insert(0) += n;
            }
            for (k, s) in &p.forecasts {
                let e = sums.entry(k.clone()).or_default();
                let o = ErrorSums::of(s);
                e.n += o.n;
                e.abs += o.abs;
                e.sq += o.sq;
                e.naive_abs += o.naive_abs;
                e.naive_sq += o.naive_sq;
            }
        }
        QualitySummary {
            anomalies,
            forecasts: sums.iter().map(|(k, s)| (k.clone(), s.summary())).collect(),
        }
    }
}

/// The live tallies of a process, shared by its workers.
#[derive(Default)]
pub struct Quality {
    inner: Mutex<(BTreeMap<String, u64>, BTreeMap<String, ErrorSums>)>,
}

/// The tallies take the models' rows as they are emitted.
impl RowSink for Quality {
    fn rows(&self, batch: &RowBatch<'_>) {
        if let Some(rows) = batch.of::<Anomaly>() {
            self.anomalies(rows);
        } else if let Some(rows) = batch.of::<Forecast>() {
            self.forecasts(rows);
        }
    }
}

impl Quality {
    pub fn anomalies(&self, rows: &[Anomaly]) {
        let mut inner = self.inner.lock().expect("quality lock");
        for r in rows {
            *inner.0.entry(r.kind.name().to_string()).or_insert(0) += 1;
        }
    }

    pub fn forecasts(&self, rows: &[Forecast]) {
        let mut inner = self.inner.lock().expect("quality lock");
        for r in rows {
            let e = inner.1.entry(r.target.name().to_string()).or_default();
            e.add(r.forecast - r.actual, r.naive - r.actual);
        }
    }

    pub fn summary(&self) -> Option<QualitySummary> {
        let inner = self.inner.lock().expect("quality lock");
        (!inner.0.is_empty() || !inner.1.is_empty()).then(|| QualitySummary {
            anomalies: inner.0.clone(),
            forecasts: inner
                .1
                .iter()
                .map(|(k, s)| (k.clone(), s.summary()))
                .collect(),
        })
    }
}
