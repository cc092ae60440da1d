//! The live dashboard served by the engine itself, and the Prometheus endpoint.
//!
//! `eddy run --dashboard 127.0.0.1:8080` binds the address before the
//! dataflow starts and serves, from a thread of its own (a one-thread tokio
//! runtime, so the timely workers keep their cores):
//! - `/`: one page (HTML, CSS and JS embedded in the binary; no CDN) that
//!   subscribes to `/events` and draws the charts on canvases;
//! - `/events?symbol=S`: server-sent events, one message per health sample
//!   (every [`SAMPLE_EVERY`]): the health points the page has not seen, the
//!   totals, per-worker state and the board's view for symbol `S`;
//! - `/api/state?symbol=S`: the same message once, as JSON;
//! - `/metrics`: Prometheus / OpenMetrics text (see `prometheus.rs`);
//! - `/health`: `{"status": "running"|"finished", ...}`.
//!
//! Memory is bounded on both sides: the server keeps fixed-size histories
//! (`board.rs`, `health.rs`) and the page keeps as many points as the server.

pub mod board;
pub mod health;
pub mod prometheus;

mod guard;
mod tls;

use crate::metrics::Metrics;
use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use board::{Board, BoardView};
use health::{HealthLog, HealthPoint, Totals};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How often the health is sampled and the pages are updated.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

/// What the page shows in its title bar.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    pub name: String,
    pub workers: usize,
    pub processes: usize,
    pub timing: String,
    pub speed: f64,
    pub max_delay_ms: u64,
    pub sample_every_ms: u64,
}

struct Shared {
    metrics: Arc<Metrics>,
    board: Arc<Board>,
    health: Mutex<HealthLog>,
    registry: prometheus_client::registry::Registry,
    info: RunInfo,
    /// Bumped after each sample: wakes the event streams.
    sampled: watch::Sender<u64>,
    /// The token every page but /health asks for; none: open.
    token: Option<Vec<u8>>,
}

/// A running dashboard; dropping it stops the server.
pub struct Dashboard {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `address` and serves the dashboard of `metrics` and `board`.
pub fn start(
    address: &str,
    metrics: Arc<Metrics>,
    board: Arc<Board>,
    info: RunInfo,
    token: Option<Vec<u8>>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<Dashboard> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot serve the dashboard on {address}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let (sampled, _) = watch::channel(0);
    let shared = Arc::new(Shared {
        registry: prometheus::registry(Arc::clone(&metrics)),
        metrics,
        board,
        health: Mutex::default(),
        info,
        sampled,
        token,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("dashboard: {e}");
                        return;
                    }
                };
                tokio::spawn(sample_forever(Arc::clone(&shared)));
                let stopped = async move {
                    let _ = stopped.await;
                };
                let served = match tls {
                    None => {
                        axum::serve(listener, router(shared))
                            .with_graceful_shutdown(stopped)
                            .await
                    }
                    Some(config) => match tls::TlsListener::new(listener, config) {
                        Ok(listener) => {
                            axum::serve(listener, router(shared))
                                .with_graceful_shutdown(stopped)
                                .await
                        }
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = served {
                    tracing::error!("dashboard: {e}");
                }
            })
        })?;
    Ok(Dashboard {
        address: bound,
        stop: Some(stop),
        thread: Some(thread),
    })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/dashboard.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SCRIPT) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE) }),
        )
        .route("/events", get(events))
        .route("/api/state", get(state))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            guard::guard,
        ))
        .with_state(shared)
}

/// Refuses to serve a non-loopback `address` without a token unless asked
/// (`--dashboard-public`).
pub fn refuse_public_without_token(address: &str, token: bool, public: bool) -> anyhow::Result<()> {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback && !token && !public {
        anyhow::bail!(
            "the dashboard on {address} would answer anyone who can reach it: \
             give it --dashboard-token-file FILE, or say --dashboard-public"
        );
    }
    Ok(())
}

async fn sample_forever(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let snapshot = shared.metrics.snapshot();
        let seq = {
            let mut log = shared.health.lock().expect("health lock");
            log.sample(snapshot);
            log.last_seq().unwrap_or(0)
        };
        shared.sampled.send_replace(seq);
    }
}

#[derive(Deserialize)]
struct Selection {
    symbol: Option<String>,
}

/// One update of the page.
#[derive(Serialize)]
struct Update {
    info: RunInfo,
    /// Health points after the last one this page has.
    health: Vec<HealthPoint>,
    totals: Totals,
    board: BoardView,
}

impl Shared {
    fn update(&self, symbol: Option<&str>, after: Option<u64>) -> (Update, Option<u64>) {
        let (health, totals, complete_ms, last) = {
            let log = self.health.lock().expect("health lock");
            (
                log.points_after(after),
                log.totals().clone(),
                log.complete_ms(),
                log.last_seq(),
            )
        };
        let update = Update {
            info: self.info.clone(),
            health,
            totals,
            board: self.board.view(symbol, complete_ms),
        };
        (update, last.or(after))
    }
}

async fn events(
    State(shared): State<Arc<Shared>>,
    Query(selection): Query<Selection>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let sampled = shared.sampled.subscribe();
    let start = (shared, sampled, selection.symbol, None::<u64>, true);
    let stream = futures_util::stream::unfold(
        start,
        |(shared, mut sampled, symbol, after, first)| async move {
            // The first message goes out at once; later ones after each sample.
            if !first && sampled.changed().await.is_err() {
                return None;
            }
            let (update, last) = shared.update(symbol.as_deref(), after);
            let data = serde_json::to_string(&update).unwrap_or_else(|_| "{}".into());
            let event = Event::default().event("update").data(data);
            Some((Ok(event), (shared, sampled, symbol, last, false)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn state(
    State(shared): State<Arc<Shared>>,
    Query(selection): Query<Selection>,
) -> Json<serde_json::Value> {
    let (update, _) = shared.update(selection.symbol.as_deref(), None);
    Json(serde_json::to_value(update).unwrap_or_default())
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
        prometheus::encode(&shared.registry),
    )
}

async fn health(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let s = shared.metrics.snapshot();
    let running = s
        .workers
        .iter()
        .filter(|w| w.state != crate::metrics::WorkerState::Done)
        .count();
    Json(serde_json::json!({
        "status": if s.finished { "finished" } else { "running" },
        "uptime_s": s.elapsed_s,
        "workers_running": running,
        "records_generated": s.generated(),
    }))
}
