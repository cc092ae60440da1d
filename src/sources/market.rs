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
//! A worker generates only the symbols it owns (`WorkerShare::owns`), the factor path it
//! recomputes itself, so the union over workers is the same whatever their number.

use super::anomalies::{AnomalyKind, Episodes, MarketAnomalies, TruthRow};
use super::arrivals::{key_rng, ArrivalConfig, Arrivals, KeyMerge};
use super::keyed::{self, KeyedGenerator};
use super::schedule::Schedule;
use super::{Batch, Poll, Source};
use crate::record::{Symbol, Trade};
use crate::rescale::groups::WorkerShare;
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
    /// Labelled anomalies to inject (`[sources.trades.anomalies]`); none without the table.
    pub anomalies: Option<Box<MarketAnomalies>>,
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
            anomalies: None,
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
        if let Some(a) = &self.anomalies {
            a.validate()?;
        }
        self.arrivals.validate()
    }
}

/// The name of the `i`-th generated symbol.
pub fn symbol_name(i: u64) -> String {
    format!("SYM{i:03}")
}

const FACTOR_STEP_US: u64 = 100_000;

/// The market factor: a Brownian path on a 100 ms grid, walked forward.
struct MarketFactor {
    rng: ChaCha8Rng,
    step_sd: f64,
    step: u64,
    value: f64,
    /// The path's start, to walk it again from there when asked for an
    /// earlier time (once, after a rescaled restore: keys resumed from
    /// different old workers' positions are not all as far).
    origin: (ChaCha8Rng, u64),
}

impl MarketFactor {
    fn new(rng: ChaCha8Rng, step_sd: f64, start_us: u64) -> Self {
        let step = start_us / FACTOR_STEP_US;
        MarketFactor {
            origin: (rng.clone(), step),
            rng,
            step_sd,
            step,
            value: 0.0,
        }
    }

    fn at(&mut self, time_us: u64) -> f64 {
        let target = time_us / FACTOR_STEP_US;
        if target < self.step {
            (self.rng, self.step) = self.origin.clone();
            self.value = 0.0;
        }
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
    anomalies: Option<SymbolAnomalies>,
}

/// The anomalies of one symbol, on their own random stream so that the
/// symbol's prices are the same as without them up to the first one.
struct SymbolAnomalies {
    rng: ChaCha8Rng,
    /// Standard deviation of the symbol's one-second log return.
    sigma_1s: f64,
    config: MarketAnomalies,
    jumps: Option<Episodes>,
    vol_bursts: Option<Episodes>,
    volume_spikes: Option<Episodes>,
}

/// What the anomalies do to one trade.
struct Effects {
    log_jump: f64,
    vol_factor: f64,
    size_factor: f64,
}

impl SymbolAnomalies {
    fn new(config: &MarketAnomalies, seed: u64, index: u64, start_us: u64, sigma_1s: f64) -> Self {
        let mut rng = key_rng(seed, 20, index);
        let from = start_us + (config.warmup_s * 1e6) as u64;
        let jumps = Episodes::new(config.jump_every_s, 0.0, from, &mut rng);
        let vol_bursts =
            Episodes::new(config.vol_burst_every_s, config.vol_burst_s, from, &mut rng);
        let volume_spikes = Episodes::new(
            config.volume_spike_every_s,
            config.volume_spike_s,
            from,
            &mut rng,
        );
        SymbolAnomalies {
            rng,
            sigma_1s,
            config: config.clone(),
            jumps,
            vol_bursts,
            volume_spikes,
        }
    }

    /// The effects on a trade arriving at `arrival_us`; labels what starts.
    fn effects(&mut self, arrival_us: u64, symbol: Symbol, truth: &mut Vec<TruthRow>) -> Effects {
        let c = &self.config;
        let rng = &mut self.rng;
        let mut effects = Effects {
            log_jump: 0.0,
            vol_factor: 1.0,
            size_factor: 1.0,
        };
        let ms = |us: u64| us / 1000;
        if let Some(jumps) = self.jumps.as_mut().filter(|j| arrival_us >= j.start_us()) {
            let sigmas = rng.gen_range(c.jump_sigmas_min..=c.jump_sigmas_max);
            let sign = if rng.gen::<bool>() { 1.0 } else { -1.0 };
            effects.log_jump = sign * sigmas * self.sigma_1s;
            let at = ms(arrival_us);
            truth.push(TruthRow::new(
                AnomalyKind::PriceJump,
                symbol.text(),
                at,
                at,
                sigmas,
            ));
            jumps.consume_point(arrival_us, rng);
        }
        if let Some(bursts) = self.vol_bursts.as_mut() {
            if let Some((start, end, u)) = bursts.at(arrival_us, rng) {
                effects.vol_factor =
                    1.0 + (c.vol_burst_factor - 1.0) * (std::f64::consts::PI * u).sin();
                if !bursts.labelled {
                    bursts.labelled = true;
                    truth.push(TruthRow::new(
                        AnomalyKind::VolBurst,
                        symbol.text(),
                        ms(start),
                        ms(end),
                        c.vol_burst_factor,
                    ));
                }
            }
        }
        if let Some(spikes) = self.volume_spikes.as_mut() {
            if let Some((start, end, _)) = spikes.at(arrival_us, rng) {
                effects.size_factor = c.volume_spike_factor;
                if !spikes.labelled {
                    spikes.labelled = true;
                    truth.push(TruthRow::new(
                        AnomalyKind::VolumeSpike,
                        symbol.text(),
                        ms(start),
                        ms(end),
                        c.volume_spike_factor,
                    ));
                }
            }
        }
        effects
    }
}

/// Generates this worker's symbols of the market stream.
pub struct MarketGenerator {
    symbols: Vec<SymbolState>,
    factor: MarketFactor,
    merge: KeyMerge,
    schedule: Schedule,
    batch_limit: usize,
    share: WorkerShare,
    /// Labels of anomalies injected since the last batch.
    truth: Vec<TruthRow>,
}

impl MarketGenerator {
    /// The generator for worker `index` of `peers` (`0` of `1` generates everything).
    pub fn new(
        config: &MarketConfig,
        schedule: Schedule,
        batch_limit: usize,
        share: WorkerShare,
    ) -> Self {
        let seed = config.arrivals.seed;
        let start_us = schedule.position_us();
        let mut symbols = Vec::new();
        for i in 0..config.symbols {
            let symbol =
                Symbol::parse(symbol_name(i).as_bytes()).expect("generated names are valid");
            if !share.owns(symbol.0) {
                continue;
            }
            let mut rng = key_rng(seed, 1, i);
            let beta = rng.gen_range(config.beta_min..=config.beta_max);
            let idio_vol = rng.gen_range(config.idio_vol_min..=config.idio_vol_max);
            let price: f64 = rng.gen_range(config.price_min..=config.price_max);
            let arrivals = Arrivals::new(&config.arrivals, config.symbols, i, start_us, &mut rng);
            let sigma_1s = (beta * beta * config.market_vol.powi(2) + idio_vol * idio_vol).sqrt();
            let anomalies = config
                .anomalies
                .as_ref()
                .map(|a| SymbolAnomalies::new(a, seed, i, start_us, sigma_1s));
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
                anomalies,
            });
        }
        let mut merge = KeyMerge::new();
        for (slot, s) in symbols.iter().enumerate() {
            merge.push(s.arrivals.peek_us(), slot);
        }
        let step_sd = config.market_vol * (FACTOR_STEP_US as f64 / 1e6).sqrt();
        let factor = MarketFactor::new(key_rng(seed, 2, 0), step_sd, start_us);
        MarketGenerator {
            symbols,
            factor,
            merge,
            schedule,
            batch_limit: batch_limit.max(1),
            share,
            truth: Vec::new(),
        }
    }

    fn trade(&mut self, slot: usize) -> (u64, Trade) {
        let s = &mut self.symbols[slot];
        let (arrival_us, ts_ms) = s.arrivals.take(&mut s.rng);
        let factor = self.factor.at(arrival_us);
        let effects = match s.anomalies.as_mut() {
            Some(a) => a.effects(arrival_us, s.symbol, &mut self.truth),
            None => Effects {
                log_jump: 0.0,
                vol_factor: 1.0,
                size_factor: 1.0,
            },
        };
        if let Some(last) = s.last_us {
            let dt = (arrival_us - last) as f64 / 1e6;
            let z: f64 = StandardNormal.sample(&mut s.rng);
            let shock = s.beta * (factor - s.last_factor) + s.idio_vol * dt.sqrt() * z;
            s.log_price += effects.vol_factor * shock + s.drift_per_s * dt;
        }
        s.log_price += effects.log_jump;
        s.last_us = Some(arrival_us);
        s.last_factor = factor;
        let size = 1 + (s.sizes.sample(&mut s.rng) * effects.size_factor) as u64;
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

    fn restore_rescaled(&mut self, all: &[Vec<u8>], _: usize, _: usize) -> anyhow::Result<()> {
        keyed::restore_rescaled(self, all)
    }
}

impl KeyedGenerator<Trade> for MarketGenerator {
    fn parts(&mut self) -> (&mut Schedule, &mut KeyMerge) {
        (&mut self.schedule, &mut self.merge)
    }
    fn batch_limit(&self) -> usize {
        self.batch_limit
    }
    fn share(&self) -> WorkerShare {
        self.share
    }
    fn slot_key(&self, slot: usize) -> u64 {
        self.symbols[slot].symbol.0
    }
    fn produce(&mut self, slot: usize) -> (u64, Trade, Option<u64>) {
        let (arrival, trade) = self.trade(slot);
        (arrival, trade, self.symbols[slot].arrivals.peek_us())
    }
    fn drain_truth(&mut self, out: &mut Vec<TruthRow>) {
        out.append(&mut self.truth);
    }
}
