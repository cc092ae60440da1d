//! A real browser on the live dashboard: headless Chromium (Debian's
//! `chromium`, driven through `chromedriver` over WebDriver) loads the page of
//! a running engine, waits for live data, and checks that every chart and
//! counter (anomalies and forecast errors included) shows non-zero values that keep updating, that the symbol picker
//! switches the market panels, and saves a screenshot.
//!
//! Chromium and chromedriver are installed with apt-get when missing (as root,
//! or through `sudo -n`); where that is impossible the test fails saying so.
//! The screenshot goes to target/dashboard.png, or to $EDDY_SCREENSHOT.

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::{ensure_chromium, open_browser, Driver};
use common::{temp_dir, Served};
use fantoccini::Client;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every chart on the page.
const CHARTS: [&str; 11] = [
    "chart-throughput",
    "chart-latency",
    "chart-lag",
    "chart-resources",
    "chart-price",
    "chart-volatility",
    "chart-volforecast",
    "chart-bars",
    "chart-correlation",
    "chart-items",
    "chart-activity",
];

/// What the page shows, read in the browser: counters, per chart the points
/// drawn and the pixels that are not background, tables and alerts.
const READ_PAGE: &str = r##"
const text = (id) => document.getElementById(id).textContent;
const num = (id) => Number(text(id).replace(/[^0-9.]/g, "")) || 0;
const charts = {};
for (const id of arguments[0]) {
  const c = document.getElementById(id);
  let inked = 0;
  if (c.width > 0 && c.height > 0) {
    const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < px.length; i += 4) if (px[i] > 0) inked++;
  }
  charts[id] = { points: Number(c.dataset.points || 0), last: c.dataset.last || "", inked };
}
return {
  updates: Number(document.body.dataset.updates),
  status: text("connection"),
  generated: num("c-generated"), ingested: num("c-ingested"), rows: num("c-rows"),
  windows: num("c-windows"), cpu: text("c-cpu"), rss: text("c-rss"), wmlag: text("c-wmlag"),
  late: text("c-late"), malformed: text("c-malformed"), inflight: text("c-inflight"),
  workers: document.querySelectorAll("#workers tbody tr").length,
  worker_states: [...document.querySelectorAll("#workers tbody tr td:nth-child(2)")].map((td) => td.textContent),
  latest_bars: document.querySelectorAll("#latest-bars tbody tr").length,
  alerts: document.querySelectorAll("#alerts li").length,
  anomalies: document.querySelectorAll("#anomalies li").length,
  forecast_targets: [...document.querySelectorAll("#forecast-errors tbody tr td:first-child")].map((td) => td.textContent),
  symbols: [...document.getElementById("symbol").options].map((o) => o.value),
  symbol: text("market-symbol"),
  charts,
};
"##;

async fn read(client: &Client) -> Value {
    client
        .execute(READ_PAGE, vec![json!(CHARTS)])
        .await
        .expect("the page answers")
}

fn all_charts_drawn(page: &Value) -> bool {
    CHARTS
        .iter()
        .all(|id| page["charts"][id]["points"].as_u64().unwrap_or(0) > 0)
}

fn screenshot_path() -> PathBuf {
    std::env::var_os("EDDY_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png"))
}

#[tokio::test(flavor = "current_thread")]
async fn the_dashboard_shows_live_updating_data_in_a_real_browser() {
    ensure_chromium();
    let out = temp_dir();
    let results = out.path().join("out");
    // The demo at 20x: the 60 s windows close every 3 s of wall time.
    let served = Served::start(&[
        "run",
        "--speed",
        "20",
        "--duration",
        "90",
        "--out",
        results.to_str().unwrap(),
    ]);
    let driver = Driver::start();
    let client = open_browser(&driver, &out.path().join("profile"), (1500, 2600)).await;
    client
        .goto(&format!("http://{}/", served.address))
        .await
        .unwrap();

    // Wait until every panel has data.
    let start = Instant::now();
    let mut page = read(&client).await;
    let models_shown = |p: &Value| {
        p["anomalies"].as_u64() > Some(0) && p["forecast_targets"].as_array().unwrap().len() == 3
    };
    while !(all_charts_drawn(&page) && page["alerts"].as_u64() > Some(0) && models_shown(&page)) {
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "not every panel got data in 45 s: {page:#}\neddy said: {}",
            served.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        page = read(&client).await;
    }
    let first = page;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let second = read(&client).await;

    // Pushed at least twice a second: 3 s give 6 updates, allow for jitter.
    let updates = |p: &Value| p["updates"].as_u64().unwrap();
    assert!(
        updates(&second) >= updates(&first) + 5,
        "updates {} -> {}",
        updates(&first),
        updates(&second)
    );
    assert_eq!(second["status"], "live");
    for counter in ["generated", "ingested", "rows", "windows"] {
        let (a, b) = (
            first[counter].as_f64().unwrap(),
            second[counter].as_f64().unwrap(),
        );
        assert!(
            a > 0.0 && b > a,
            "counter {counter} is live and growing: {a} -> {b}"
        );
    }
    for text in ["cpu", "rss", "wmlag"] {
        assert!(
            second[text]
                .as_str()
                .unwrap()
                .chars()
                .any(|c| c.is_ascii_digit()),
            "{text}: {}",
            second[text]
        );
    }
    assert!(
        second["rss"].as_str().unwrap().ends_with("MiB")
            && !second["rss"].as_str().unwrap().starts_with("0.0")
    );
    for counter in ["late", "malformed", "inflight"] {
        assert!(
            // Counts of 1 000 and more carry thousands separators (`1,234`).
            second[counter]
                .as_str()
                .unwrap()
                .replace(',', "")
                .parse::<u64>()
                .is_ok(),
            "{counter} shows a count"
        );
    }
    assert_eq!(second["workers"], 2, "a row per worker");
    assert_eq!(
        second["forecast_targets"],
        json!(["close", "count", "volatility"]),
        "a forecast error row per target"
    );
    for state in second["worker_states"].as_array().unwrap() {
        assert!(
            ["running", "backpressured"].contains(&state.as_str().unwrap()),
            "{state}"
        );
    }
    assert!(
        second["latest_bars"].as_u64().unwrap() >= 20,
        "a latest bar per symbol: {}",
        second["latest_bars"]
    );
    assert_eq!(
        second["symbols"].as_array().unwrap().len(),
        20,
        "the picker lists the 20 symbols"
    );
    for id in CHARTS {
        let chart = &second["charts"][id];
        assert!(
            chart["points"].as_u64().unwrap() > 0,
            "{id} draws data: {chart}"
        );
        assert!(
            chart["inked"].as_u64().unwrap() > 2_000,
            "{id} is not blank: {chart}"
        );
    }
    // Time series over wall time gain points.
    for id in ["chart-throughput", "chart-latency", "chart-resources"] {
        let (a, b) = (
            &first["charts"][id]["points"],
            &second["charts"][id]["points"],
        );
        assert!(b.as_u64() > a.as_u64(), "{id} grows: {a} -> {b}");
    }
    // The market's move with event time: the price chart gains points until
    // each of its series holds its last 300 seconds (a minute of wall time
    // at 20x, less than the wait above may take on a slow machine), then
    // its newest point moves on.
    let (a, b) = (
        &first["charts"]["chart-price"],
        &second["charts"]["chart-price"],
    );
    assert!(
        b["points"].as_u64() > a["points"].as_u64() || b["last"] != a["last"],
        "chart-price moves: {a} -> {b}"
    );
    let last_price: f64 = second["charts"]["chart-price"]["last"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(last_price > 0.0);

    // The symbol picker switches the market panels.
    let other = second["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .find(|s| *s != second["symbol"].as_str().unwrap())
        .unwrap();
    client
        .execute(
            "const s = document.getElementById('symbol'); s.value = arguments[0]; s.dispatchEvent(new Event('change'));",
            vec![json!(other)],
        )
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let p = read(&client).await;
        if p["symbol"] == other.as_str() && p["charts"]["chart-price"]["points"].as_u64() > Some(0)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the picker did not switch to {other}: {p:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let png = client.screenshot().await.unwrap();
    let path = screenshot_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &png).unwrap();
    let image = image::load_from_memory(&png).unwrap();
    assert!(
        image.width() >= 1000 && image.height() >= 1000,
        "{}x{}",
        image.width(),
        image.height()
    );
    eprintln!("screenshot: {}", path.display());
    client.close().await.unwrap();
}
