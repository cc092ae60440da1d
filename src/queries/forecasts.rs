//! The forecasters' shared parts: their pipeline settings
//! (`[queries.forecasts]`), the `forecasts.csv` row and the running error
//! each key keeps against the naive forecast (the last value).
//!
//! The forecasters, one a file: `bar_forecast.rs` (per symbol, from 1-second
//! bars: the next bar's close, the next window's volatility) and
//! `item_forecast.rs` (per item: the next window's interaction count). A row
//! is written when its target is known, with the forecast made before it,
//! the naive forecast and the actual value.
//! Output: `stream,key,target,window_start_ms,forecast,naive,actual,mae,naive_mae`
//! (`mae`, `naive_mae`: the key's running mean absolute errors, this row included).

use super::anomalies::AnomaliesConfig;
use super::bar_forecast::BarForecast;
use super::bars_1s::BarsConfig;
use super::item_forecast::ItemForecast;
use super::{Build, Input, QueryConfig, QueryTables, RowFile};
use crate::time::gcd;
use crate::framework::ordered::ordered;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::core::Concatenate;

/// Pipeline `[queries.forecasts]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastsConfig {
    pub enabled: bool,
    /// Holt's linear trend on the log close: level and trend smoothing.
    pub close_alpha: f64,
    pub close_beta: f64,
    /// The volatility target: realised volatility of 1-second bar returns over windows this long.
    pub vol_window_ms: u64,
    /// Half-life, in bar returns, of the squared returns' weighted mean.
    pub vol_half_life_bars: f64,
    /// The item target: interactions per window this long.
    pub count_window_ms: u64,
    /// Half-life, in windows, of the counts' weighted mean.
    pub count_half_life_windows: f64,
    /// An item this many windows in a row without interactions is forgotten:
    /// no more rows for it, and it starts afresh when seen again.
    pub count_forget_after_windows: u64,
}

impl Default for ForecastsConfig {
    fn default() -> Self {
        ForecastsConfig {
            enabled: true,
            close_alpha: 0.9,
            close_beta: 0.05,
            vol_window_ms: 10_000,
            vol_half_life_bars: 60.0,
            count_window_ms: 10_000,
            count_half_life_windows: 6.0,
            count_forget_after_windows: 30,
        }
    }
}

impl QueryConfig for ForecastsConfig {
    const ID: &'static str = "forecasts";
    fn enabled(&self) -> bool {
        self.enabled
    }
    /// Bar closes (1 s bars) and both forecasters' windows.
    fn window_grid_ms(&self, _: &QueryTables) -> Option<u64> {
        Some(gcd(gcd(1_000, self.vol_window_ms), self.count_window_ms))
    }
    /// The forecasts read 1-second bars and the anomaly detectors' item panes.
    fn validate(&self, all: &QueryTables) -> Result<(), String> {
        ForecastsConfig::validate(self)?;
        let bars: BarsConfig = all.get()?;
        if bars.size_ms != 1_000 {
            return Err("needs 1-second bars (queries.bars_1s.size_ms = 1000)".into());
        }
        let pane = Self::item_pane_ms(all)?;
        if !self.count_window_ms.is_multiple_of(pane) {
            return Err(format!(
                "forecasts.count_window_ms must be a multiple of queries.anomalies.items.pane_ms ({pane})"
            ));
        }
        Ok(())
    }
    fn reads(&self) -> &[Input] {
        &[Input::Bars, Input::ItemPanes]
    }
    fn output(&self) -> RowFile {
        RowFile::of::<Forecast>().identified_by(&["stream", "key", "target", "window_start_ms"])
    }
    /// Both forecasters' rows, in one file.
    fn build<'s>(&self, b: &mut Build<'s, '_>) -> anyhow::Result<()> {
        let bars = b.bars()?;
        let closes = ordered(
            bars,
            b.trades_end(),
            "bar_forecast",
            BarForecast::new(self),
            b.counters("bars/forecast"),
            b.states,
        )?;
        let pane_ms = Self::item_pane_ms(b.tables).map_err(anyhow::Error::msg)?;
        let item_panes = b.item_panes(pane_ms)?;
        let counts = ordered(
            item_panes,
            b.interactions_end(),
            "item_forecast",
            ItemForecast::new(self),
            b.counters("item_panes/forecast"),
            b.states,
        )?;
        let rows = b.scope.concatenate([closes, counts]);
        b.emit(rows);
        Ok(())
    }
}


impl ForecastsConfig {
    /// The item panes are the anomaly detectors' (`[queries.anomalies.items]`).
    fn item_pane_ms(all: &QueryTables) -> Result<u64, String> {
        let anomalies: AnomaliesConfig = all.get()?;
        Ok(anomalies.items.burst.pane_ms)
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("close_alpha", self.close_alpha),
            ("close_beta", self.close_beta),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("forecasts.{name} must be between 0 and 1, got {v}"));
            }
        }
        if self.vol_window_ms < 3_000 || !self.vol_window_ms.is_multiple_of(1_000) {
            return Err(format!(
                "forecasts.vol_window_ms must be a multiple of 1000 of at least 3000, got {}",
                self.vol_window_ms
            ));
        }
        if self.count_window_ms == 0 {
            return Err("forecasts.count_window_ms must be positive".into());
        }
        if self.count_forget_after_windows == 0 {
            return Err("forecasts.count_forget_after_windows must be positive".into());
        }
        for (name, v) in [
            ("vol_half_life_bars", self.vol_half_life_bars),
            ("count_half_life_windows", self.count_half_life_windows),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("forecasts.{name} must be positive, got {v}"));
            }
        }
        Ok(())
    }
}

/// What is forecast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The next 1-second bar's close.
    Close,
    /// The next window's realised volatility of 1-second returns.
    Volatility,
    /// The next window's interaction count of an item.
    Count,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Close => "close",
            Target::Volatility => "volatility",
            Target::Count => "count",
        }
    }
}

/// A row of `forecasts.csv` (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub stream: String,
    pub key: String,
    pub target: Target,
    /// The start of the bar or window forecast.
    pub window_start_ms: u64,
    pub forecast: f64,
    pub naive: f64,
    pub actual: f64,
    pub mae: f64,
    pub naive_mae: f64,
}

/// A key's running absolute errors, of the model and of the naive forecast.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct ErrorTally {
    n: u64,
    abs: f64,
    naive_abs: f64,
}

impl ErrorTally {
    /// Scores one forecast and returns its row.
    pub fn row(
        &mut self,
        (stream, key): (&str, String),
        target: Target,
        window_start_ms: u64,
        (forecast, naive, actual): (f64, f64, f64),
    ) -> Forecast {
        self.n += 1;
        self.abs += (forecast - actual).abs();
        self.naive_abs += (naive - actual).abs();
        Forecast {
            stream: stream.into(),
            key,
            target,
            window_start_ms,
            forecast,
            naive,
            actual,
            mae: self.abs / self.n as f64,
            naive_mae: self.naive_abs / self.n as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::testing::{run, trade, Record};

    const T: u64 = 1_700_000_040_000;

    #[test]
    fn a_constant_price_is_forecast_exactly() {
        let records: Vec<Record> = (0..20u64)
            .map(|s| trade(T + s * 1_000 + 5, s, "AAA", 50.0, 1))
            .collect();
        let rows = run::<Forecast, _>(ForecastsConfig::default(), &records, 200).rows;
        let closes: Vec<&Forecast> = rows.iter().filter(|f| f.target == Target::Close).collect();
        assert!(closes.len() >= 18, "{} close forecasts", closes.len());
        for f in closes {
            assert_eq!((f.stream.as_str(), f.key.as_str()), ("trades", "AAA"));
            assert!((f.forecast - 50.0).abs() < 1e-9 && f.actual == 50.0, "{f:?}");
            assert!(f.mae.abs() < 1e-9 && f.naive_mae == 0.0, "{f:?}");
        }
    }
}
