//! `eddy evaluate --truth FILE --in DIR`: how good the models were, against
//! the anomalies the generators labelled.
//!
//! Anomalies, per kind. A detection *matches* a labelled anomaly of the same
//! kind and key when `start_ms - tolerance <= ts_ms <= end_ms + tolerance`
//! (default tolerance 1 000 ms: a record displaced by disorder can show a
//! jump up to `disorder_ms` before it happened, and a burst's last pane can
//! close just after it ends). Precision = detections matching some label /
//! detections; recall = labels matched by some detection / labels; F1 their
//! harmonic mean. Several detections of one labelled anomaly are all correct
//! but it counts once for recall. Detection delay of a matched label =
//! `max(0, ts of its first matching detection - start_ms)`, in event time.
//!
//! Forecasts, per target (`close`, `volatility`, `count`), over every row of
//! `forecasts.csv`: MAE and RMSE of the model and of the naive forecast, and
//! skill = 1 - MAE / naive MAE (above 0: the model beats the naive forecast).

use crate::queries::anomalies::Anomaly;
use crate::queries::forecasts::Forecast;
use crate::sources::anomalies::{AnomalyKind, TruthRow};
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The quality of one kind of anomaly detection (a row of `anomaly_quality.csv`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnomalyScore {
    pub kind: AnomalyKind,
    pub labelled: u64,
    pub detected: u64,
    pub matched_labels: u64,
    pub correct_detections: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub median_delay_ms: Option<f64>,
    pub p90_delay_ms: Option<f64>,
    pub max_delay_ms: Option<f64>,
}

/// The quality of one forecast target (a row of `forecast_quality.csv`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ForecastScore {
    pub target: String,
    pub n: u64,
    pub mae: f64,
    pub naive_mae: f64,
    pub rmse: f64,
    pub naive_rmse: f64,
    pub skill: f64,
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Scores detections against labels, per kind (kinds with neither are left out).
pub fn score_anomalies(
    truth: &[TruthRow],
    detections: &[Anomaly],
    tolerance_ms: u64,
) -> Vec<AnomalyScore> {
    let mut scores = Vec::new();
    for kind in AnomalyKind::ALL {
        let labels: Vec<&TruthRow> = truth.iter().filter(|t| t.kind == kind).collect();
        let found: Vec<&Anomaly> = detections.iter().filter(|d| d.kind == kind).collect();
        if labels.is_empty() && found.is_empty() {
            continue;
        }
        // Labels by key, for matching.
        let mut by_key: BTreeMap<&str, Vec<(usize, &TruthRow)>> = BTreeMap::new();
        for (i, l) in labels.iter().enumerate() {
            by_key.entry(l.key.as_str()).or_default().push((i, l));
        }
        let mut first_match: Vec<Option<u64>> = vec![None; labels.len()];
        let mut correct = 0;
        for d in &found {
            let mut matched = false;
            for (i, l) in by_key.get(d.key.as_str()).into_iter().flatten() {
                let from = l.start_ms.saturating_sub(tolerance_ms);
                if from <= d.ts_ms && d.ts_ms <= l.end_ms + tolerance_ms {
                    matched = true;
                    let first = &mut first_match[*i];
                    *first = Some(first.map_or(d.ts_ms, |f| f.min(d.ts_ms)));
                }
            }
            correct += u64::from(matched);
        }
        let mut delays: Vec<f64> = first_match
            .iter()
            .zip(&labels)
            .filter_map(|(m, l)| m.map(|ts| ts.saturating_sub(l.start_ms) as f64))
            .collect();
        delays.sort_by(f64::total_cmp);
        let matched_labels = delays.len() as u64;
        let ratio = |a: u64, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let precision = ratio(correct, found.len());
        let recall = ratio(matched_labels, labels.len());
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        scores.push(AnomalyScore {
            kind,
            labelled: labels.len() as u64,
            detected: found.len() as u64,
            matched_labels,
            correct_detections: correct,
            precision,
            recall,
            f1,
            median_delay_ms: quantile(&delays, 0.5),
            p90_delay_ms: quantile(&delays, 0.9),
            max_delay_ms: delays.last().copied(),
        });
    }
    scores
}

/// Scores forecasts per target, in target order.
pub fn score_forecasts(rows: &[Forecast]) -> Vec<ForecastScore> {
    let mut by_target: BTreeMap<&str, [f64; 5]> = BTreeMap::new();
    for r in rows {
        let e = by_target.entry(r.target.name()).or_default();
        let (err, naive) = (r.forecast - r.actual, r.naive - r.actual);
        e[0] += 1.0;
        e[1] += err.abs();
        e[2] += naive.abs();
        e[3] += err * err;
        e[4] += naive * naive;
    }
    by_target
        .into_iter()
        .map(
            |(target, [n, abs, naive_abs, sq, naive_sq])| ForecastScore {
                target: target.to_string(),
                n: n as u64,
                mae: abs / n,
                naive_mae: naive_abs / n,
                rmse: (sq / n).sqrt(),
                naive_rmse: (naive_sq / n).sqrt(),
                skill: if naive_abs > 0.0 {
                    1.0 - abs / naive_abs
                } else {
                    0.0
                },
            },
        )
        .collect()
}

/// The rows of a CSV file, or of the finished parts of its rolled folder.
fn read_rows<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let (dir, name) = (
        path.parent().unwrap_or(Path::new(".")),
        path.file_name().unwrap_or_default().to_string_lossy(),
    );
    let text = crate::rolling::open_rows(dir, &name)
        .with_context(|| format!("cannot read {}", path.display()))?
        .with_context(|| format!("cannot read {}: no such file", path.display()))?;
    let mut reader = csv::Reader::from_reader(text);
    reader
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.with_context(|| format!("{}: line {}", path.display(), i + 2)))
        .collect()
}

fn write_rows<T: Serialize>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

/// What `eddy evaluate` found.
pub struct Evaluation {
    pub anomalies: Vec<AnomalyScore>,
    pub forecasts: Vec<ForecastScore>,
}

/// What to evaluate and where to write the scores.
pub struct EvaluateOptions<'a> {
    pub truth_files: &'a [PathBuf],
    pub results: &'a Path,
    pub tolerance_ms: u64,
    /// Only labels that start, detections and forecast windows before this
    /// event time count: a generator with a record count tails off at its
    /// end, as its keys run out one by one.
    pub until_ms: Option<u64>,
    pub out: &'a Path,
}

/// Reads the truth files and the run's `anomalies.csv` / `forecasts.csv`,
/// scores them and writes `anomaly_quality.csv` and `forecast_quality.csv` to `out`.
pub fn evaluate(o: &EvaluateOptions) -> anyhow::Result<Evaluation> {
    let (results, out) = (o.results, o.out);
    let before = |ts: u64| o.until_ms.is_none_or(|u| ts < u);
    let mut truth = Vec::new();
    for t in o.truth_files {
        truth.extend(read_rows::<TruthRow>(t)?);
    }
    truth.retain(|t| before(t.start_ms));
    let anomalies_file = results.join("anomalies.csv");
    let forecasts_file = results.join("forecasts.csv");
    let there =
        |name: &str| crate::rolling::finished_files(results, name).is_ok_and(|f| !f.is_empty());
    if !there("anomalies.csv") && !there("forecasts.csv") {
        anyhow::bail!(
            "{} has neither anomalies.csv nor forecasts.csv: was it written by `eddy run` with [queries.anomalies] or [queries.forecasts] on?",
            results.display()
        );
    }
    let detections: Vec<Anomaly> = if there("anomalies.csv") {
        read_rows(&anomalies_file)?
    } else {
        Vec::new()
    };
    let forecasts: Vec<Forecast> = if there("forecasts.csv") {
        read_rows(&forecasts_file)?
    } else {
        Vec::new()
    };
    let detections: Vec<Anomaly> = detections.into_iter().filter(|d| before(d.ts_ms)).collect();
    let forecasts: Vec<Forecast> = forecasts
        .into_iter()
        .filter(|f| before(f.window_start_ms))
        .collect();
    let evaluation = Evaluation {
        anomalies: score_anomalies(&truth, &detections, o.tolerance_ms),
        forecasts: score_forecasts(&forecasts),
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_rows(&out.join("anomaly_quality.csv"), &evaluation.anomalies)?;
    write_rows(&out.join("forecast_quality.csv"), &evaluation.forecasts)?;
    Ok(evaluation)
}

impl std::fmt::Display for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        writeln!(
            f,
            "{:<13} {:>8} {:>8} {:>9} {:>7} {:>6} {:>15}",
            "anomaly", "labelled", "detected", "precision", "recall", "F1", "delay p50/p90"
        )?;
        for a in &self.anomalies {
            writeln!(
                f,
                "{:<13} {:>8} {:>8} {:>9.3} {:>7.3} {:>6.3} {:>15}",
                a.kind.name(),
                a.labelled,
                a.detected,
                a.precision,
                a.recall,
                a.f1,
                format!("{}/{} ms", ms(a.median_delay_ms), ms(a.p90_delay_ms))
            )?;
        }
        writeln!(
            f,
            "\n{:<11} {:>8} {:>12} {:>12} {:>7}",
            "forecast", "n", "MAE", "naive MAE", "skill"
        )?;
        for s in &self.forecasts {
            writeln!(
                f,
                "{:<11} {:>8} {:>12.6} {:>12.6} {:>7.3}",
                s.target, s.n, s.mae, s.naive_mae, s.skill
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(kind: AnomalyKind, key: &str, start: u64, end: u64) -> TruthRow {
        TruthRow::new(kind, key.into(), start, end, 5.0)
    }

    #[test]
    fn detections_match_labels_of_their_kind_and_key_within_the_tolerance() {
        let truth = vec![
            label(AnomalyKind::PriceJump, "A", 10_000, 10_000),
            label(AnomalyKind::PriceJump, "B", 20_000, 20_000),
            label(AnomalyKind::ItemBurst, "7", 30_000, 40_000),
        ];
        let found = vec![
            // Two detections of A's jump (one 800 ms early: disorder), one counts for recall.
            Anomaly::new(AnomalyKind::PriceJump, "A".into(), 9_200, 4.0),
            Anomaly::new(AnomalyKind::PriceJump, "A".into(), 10_300, 4.0),
            // B's jump seen on the wrong key, and too late: two false alarms.
            Anomaly::new(AnomalyKind::PriceJump, "C".into(), 20_000, 4.0),
            Anomaly::new(AnomalyKind::PriceJump, "B".into(), 21_001, 4.0),
            // The burst, 6 s in; a burst detection of a jump's key is no match.
            Anomaly::new(AnomalyKind::ItemBurst, "7".into(), 36_000, 3.0),
            Anomaly::new(AnomalyKind::ItemBurst, "A".into(), 10_000, 3.0),
        ];
        let scores = score_anomalies(&truth, &found, 1_000);
        let jump = &scores[0];
        assert_eq!(jump.kind, AnomalyKind::PriceJump);
        assert_eq!((jump.labelled, jump.detected), (2, 4));
        assert_eq!((jump.matched_labels, jump.correct_detections), (1, 2));
        assert_eq!((jump.precision, jump.recall), (0.5, 0.5));
        // The first matching detection is early: the delay is 0.
        assert_eq!(jump.median_delay_ms, Some(0.0));
        let burst = &scores[1];
        assert_eq!(burst.kind, AnomalyKind::ItemBurst);
        assert_eq!((burst.precision, burst.recall), (0.5, 1.0));
        assert_eq!(burst.median_delay_ms, Some(6_000.0));
        assert!((burst.f1 - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn forecast_scores_compare_with_the_naive_forecast() {
        use crate::queries::forecasts::Target;
        let row = |forecast: f64, naive: f64, actual: f64| Forecast {
            stream: "trades".into(),
            key: "A".into(),
            target: Target::Volatility,
            window_start_ms: 0,
            forecast,
            naive,
            actual,
            mae: 0.0,
            naive_mae: 0.0,
        };
        let s = &score_forecasts(&[row(1.0, 3.0, 2.0), row(2.0, 2.0, 5.0)])[0];
        assert_eq!((s.n, s.mae, s.naive_mae), (2, 2.0, 2.0));
        assert_eq!(s.rmse, 5.0f64.sqrt());
        assert_eq!(s.naive_rmse, 5.0f64.sqrt());
        assert_eq!(s.skill, 0.0);
    }
}
