//! The synthetic market: trades of `symbols` symbols whose prices follow
//! geometric Brownian motion driven by a common market factor.
//!
//! Symbol `i` (named `SYM000`, `SYM001`, ...) has a beta `b_i`, an idiosyncratic
//! volatility `s_i` and a starting price, all drawn from its own seeded stream.
//! Between two of its trades, `dt` seconds apart, its log price moves by
//! `b_i * dM + s_i * sqrt(dt) * Z - (b_i^2 * m^2 + s_i^2) * dt / 2`, where `M` is
//! the market factor, a Brownian motion of volatility `m` sampled on a 100 ms
//! grid, and `Z` is standard normal. Returns of two symbols therefore correlate
//! through `M`, by about `b_i b_j m^2 / sqrt(...)`. Reported prices are rounded to
//! 1e-4; sizes are `1 + floor(LogNormal(ln(size_median), 1))`.
//!
//! A worker generates only the symbols it owns (`owner_of`), the factor path it
//! recomputes itself, so the union over workers is the same whatever their number.

use super::arrivals::{key_rng, ArrivalConfig, Arrivals, KeyMerge};
use super::keyed::{self, KeyedGenerator};
use super::schedule::Schedule;
use super::{Batch, Poll, Source};
use crate::record::{owner_of, Symbol, Trade};
use crate::time::Watermark;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, StandardNormal};
use serde::{Deserialize, Serialize};

/// Parameters of the market generator (pipeline `[sources.trades]` with `kind = "market"`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MarketConfig {
    /// Number of symbols, named SYM000, SYM001, ...
    pub symbols: u64,
    /// Volatility of the common market factor, per sqrt(second).
    pub market_vol: f64,
    /// Range of the symbols' betas to the market factor.
    pub beta_min: f64,
    pub beta_max: f64,
    /// Range of the symbols' own volatility, per sqrt(second).
    pub idio_vol_min: f64,
    pub idio_vol_max: f64,
    /// Range of starting prices.
    pub price_min: f64,
    pub price_max: f64,
    /// Median trade size.
    pub size_median: f64,
    #[serde(flatten)]
    pub arrivals: ArrivalConfig,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            symbols: 20,
            market_vol: 0.0006,
            beta_min: 0.6,
            beta_max: 1.4,
            idio_vol_min: 0.0003,
            idio_vol_max: 0.0008,
            price_min: 20.0,
            price_max: 500.0,
            size_median: 200.0,
            arrivals: ArrivalConfig::default(),
        }
    }
}

impl MarketConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.symbols == 0 || self.symbols > 1_000_000 {
            return Err(format!(
                "symbols must be between 1 and 1000000, got {}",
                self.symbols
            ));
        }
        let ranges = [
            ("beta", self.beta_min, self.beta_max),
            ("idio_vol", self.idio_vol_min, self.idio_vol_max),
            ("price", self.price_min, self.price_max),
        ];
        for (name, lo, hi) in ranges {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(format!(
                    "{name}_min must not exceed {name}_max ({lo} > {hi})"
                ));
            }
        }
        if self.price_min <= 0.0
            || self.market_vol < 0.0
            || self.idio_vol_min < 0.0
            || self.size_median < 1.0
        {
            return Err(
                "prices must be positive, volatilities non-negative, size_median at least 1".into(),
            );
        }
        self.arrivals.validate()
    }
}

/// The name of the `i`-th generated symbol.
pub fn symbol_name(i: u64) -> String {
    format!("SYM{i:03}")
}

const FACTOR_STEP_US: u64 = 100_000;

/// The market factor: a Brownian path on a 100 ms grid, walked forward only.
struct MarketFactor {
    rng: ChaCha8Rng,
    step_sd: f64,
    step: u64,
    value: f64,
}

impl MarketFactor {
    fn at(&mut self, time_us: u64) -> f64 {
        let target = time_us / FACTOR_STEP_US;
        while self.step < target {
            let z: f64 = StandardNormal.sample(&mut self.rng);
            self.value += self.step_sd * z;
            self.step += 1;
        }
        self.value
    }
}

struct SymbolState {
    symbol: Symbol,
    index: u64,
    rng: ChaCha8Rng,
    arrivals: Arrivals,
    beta: f64,
    idio_vol: f64,
    /// Ito correction per second, so that E[price] stays flat.
    drift_per_s: f64,
    log_price: f64,
    last_us: Option<u64>,
    last_factor: f64,
    sizes: LogNormal<f64>,
    emitted: u64,
}

/// Generates this worker's symbols of the market stream.
pub struct MarketGenerator {
    symbols: Vec<SymbolState>,
    factor: MarketFactor,
    merge: KeyMerge,
    schedule: Schedule,
    batch_limit: usize,
}

impl MarketGenerator {
    /// The generator for worker `index` of `peers` (`0` of `1` generates everything).
    pub fn new(
        config: &MarketConfig,
        schedule: Schedule,
        batch_limit: usize,
        index: usize,
        peers: usize,
    ) -> Self {
        let seed = config.arrivals.seed;
        let start_us = schedule.position_us();
        let mut symbols = Vec::new();
        for i in 0..config.symbols {
            let symbol =
                Symbol::parse(symbol_name(i).as_bytes()).expect("generated names are valid");
            if owner_of(symbol.0, peers) != index {
                continue;
            }
            let mut rng = key_rng(seed, 1, i);
            let beta = rng.gen_range(config.beta_min..=config.beta_max);
            let idio_vol = rng.gen_range(config.idio_vol_min..=config.idio_vol_max);
            let price: f64 = rng.gen_range(config.price_min..=config.price_max);
            let arrivals = Arrivals::new(&config.arrivals, config.symbols, i, start_us, &mut rng);
            symbols.push(SymbolState {
                symbol,
                index: i,
                rng,
                arrivals,
                beta,
                idio_vol,
                drift_per_s: -0.5 * (beta * beta * config.market_vol.powi(2) + idio_vol * idio_vol),
                log_price: price.ln(),
                last_us: None,
                last_factor: 0.0,
                sizes: LogNormal::new(config.size_median.ln(), 1.0)
                    .expect("valid size distribution"),
                emitted: 0,
            });
        }
        let mut merge = KeyMerge::new();
        for (slot, s) in symbols.iter().enumerate() {
            merge.push(s.arrivals.peek_us(), slot);
        }
        let factor = MarketFactor {
            rng: key_rng(seed, 2, 0),
            step_sd: config.market_vol * (FACTOR_STEP_US as f64 / 1e6).sqrt(),
            step: start_us / FACTOR_STEP_US,
            value: 0.0,
        };
        MarketGenerator {
            symbols,
            factor,
            merge,
            schedule,
            batch_limit: batch_limit.max(1),
        }
    }

    fn trade(&mut self, slot: usize) -> (u64, Trade) {
        let s = &mut self.symbols[slot];
        let (arrival_us, ts_ms) = s.arrivals.take(&mut s.rng);
        let factor = self.factor.at(arrival_us);
        if let Some(last) = s.last_us {
            let dt = (arrival_us - last) as f64 / 1e6;
            let z: f64 = StandardNormal.sample(&mut s.rng);
            s.log_price +=
                s.beta * (factor - s.last_factor) + s.idio_vol * dt.sqrt() * z + s.drift_per_s * dt;
        }
        s.last_us = Some(arrival_us);
        s.last_factor = factor;
        let size = 1 + s.sizes.sample(&mut s.rng) as u64;
        let price = (s.log_price.exp() * 1e4).round() / 1e4;
        let trade = Trade {
            ts_ms,
            // Unique and increasing within the symbol, whatever the worker count.
            seq: s.emitted * 1_000_003 + s.index,
            symbol: s.symbol,
            price: price.max(1e-4),
            size,
        };
        s.emitted += 1;
        (arrival_us, trade)
    }
}

impl Source<Trade> for MarketGenerator {
    fn next_batch(
        &mut self,
        batch: &mut Batch<Trade>,
        watermark: &mut Watermark,
    ) -> anyhow::Result<Poll> {
        keyed::next_batch(self, batch, watermark)
    }

    fn save(&self) -> anyhow::Result<Vec<u8>> {
        keyed::save(&self.schedule, &self.merge)
    }

    fn restore(&mut self, saved: &[u8]) -> anyhow::Result<()> {
        keyed::restore(self, saved)
    }
}

impl KeyedGenerator<Trade> for MarketGenerator {
    fn parts(&mut self) -> (&mut Schedule, &mut KeyMerge) {
        (&mut self.schedule, &mut self.merge)
    }
    fn batch_limit(&self) -> usize {
        self.batch_limit
    }
    fn produce(&mut self, slot: usize) -> (u64, Trade, Option<u64>) {
        let (arrival, trade) = self.trade(slot);
        (arrival, trade, self.symbols[slot].arrivals.peek_us())
    }
}
