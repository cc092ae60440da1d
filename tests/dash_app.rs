//! The Dash app of `examples/dash/` in a real browser: eddy replays
//! generated data (three 60 s windows of interactions) into MongoDB (SecantusDB) and SQLite, the app is started
//! over each (with the packages of `examples/dash/requirements.txt`, in the
//! test's virtual environment), headless Chromium loads it, and its "Top
//! items" table must show the largest view count of the latest complete
//! `item_counts_60s` window, read independently from eddy's CSV file; the
//! alerts table, the activity chart and the symbol picker must be filled.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/mongodb.rs"]
mod mongodb;
#[path = "common/tables.rs"]
mod tables;

use browser::{ensure_chromium, free_port, open_browser, Driver};
use common::{eddy, generate, stderr, temp_dir};
use mongodb::{venv_bin, MongoServer};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The latest window of `item_counts_60s.csv` and its largest view count.
fn latest_window_top_views(out: &Path) -> (u64, u64) {
    let mut reader = csv::Reader::from_path(out.join("item_counts_60s.csv")).unwrap();
    let rows: Vec<(u64, u64)> = reader
        .deserialize::<(u64, u64, u64, u64, u64, u64)>()
        .map(|r| {
            let (_, window, views, ..) = r.unwrap();
            (window, views)
        })
        .collect();
    let latest = rows.iter().map(|r| r.0).max().unwrap();
    let top = rows
        .iter()
        .filter(|r| r.0 == latest)
        .map(|r| r.1)
        .max()
        .unwrap();
    (latest, top)
}

/// `examples/dash/app.py` with `source` flags on a free port; killed when dropped.
struct App(Child, u16);

impl App {
    fn start(source: &[&str]) -> App {
        let port = free_port();
        let child = Command::new(venv_bin().join("python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dash/app.py"))
            .args(source)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Dash app starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the Dash app did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        App(child, port)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the page shows, read in the browser.
const READ_PAGE: &str = r##"
const cells = (id, n) => [...document.querySelectorAll(`#${id} tbody tr td:nth-child(${n})`)]
  .map((td) => Number(td.textContent));
const window = document.getElementById("top-items-window");
return {
  views: cells("top-items", 2),
  window: window ? window.textContent : "",
  alerts: cells("alerts", 3).length,
  activity_bars: document.querySelectorAll("#activity .bars path").length,
  price_lines: document.querySelectorAll("#prices .scatterlayer .trace").length,
};
"##;

/// Loads the app in the browser until its tables are filled; returns what it shows.
async fn read_app(driver: &Driver, app: &App, profile: &Path) -> Value {
    let client = open_browser(driver, profile, (1100, 1800)).await;
    client
        .goto(&format!("http://127.0.0.1:{}/", app.1))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = client.execute(READ_PAGE, vec![]).await.unwrap();
        let filled = !page["views"].as_array().unwrap().is_empty()
            && page["alerts"].as_u64() > Some(0)
            && page["activity_bars"].as_u64() > Some(0)
            && page["price_lines"].as_u64() >= Some(2);
        if filled {
            client.close().await.unwrap();
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "the Dash app never filled its page: {page}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_dash_app_shows_the_top_view_count_of_the_latest_complete_window() {
    ensure_chromium();
    // 40 s of trades; 150 s of interactions: three 60 s windows, so that
    // the latest is told from the others.
    let dir = temp_dir();
    let (trades, interactions) = (dir.path().join("t.csv"), dir.path().join("i.csv"));
    generate(
        "trades",
        &trades,
        2_000,
        &["--symbols", "8", "--rate", "50"],
    );
    let flags = ["--users", "300", "--items", "40", "--rate", "100"];
    generate("interactions", &interactions, 15_000, &flags);
    let server = MongoServer::start();
    let uri = server.uri("dash");
    let out = dir.path().join("out");
    let db = dir.path().join("results.db");
    let o = eddy(&[
        "replay",
        "--quiet",
        "--workers",
        "2",
        "--trades",
        trades.to_str().unwrap(),
        "--interactions",
        interactions.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--mongodb",
        &uri,
        "--sqlite",
        db.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (window, top_views) = latest_window_top_views(&out);
    let windows = csv::Reader::from_path(out.join("activity_60s.csv"))
        .unwrap()
        .records()
        .count();
    assert!(windows >= 3, "{windows} windows");
    let driver = Driver::start();
    for (n, source) in [
        ["--mongodb", uri.as_str()],
        ["--sqlite", db.to_str().unwrap()],
    ]
    .iter()
    .enumerate()
    {
        let app = App::start(source);
        let page = read_app(&driver, &app, &dir.path().join(format!("profile{n}"))).await;
        let views: Vec<u64> = page["views"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(views.first(), Some(&top_views), "{source:?}: {page}");
        assert!(
            views.windows(2).all(|w| w[0] >= w[1]),
            "{source:?}: {views:?}"
        );
        assert!(
            page["window"]
                .as_str()
                .unwrap()
                .contains(&window.to_string()),
            "{source:?}: {page}"
        );
    }
}
