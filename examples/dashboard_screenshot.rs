//! Screenshots of a running dashboard, as a user would see it: headless
//! Chromium (installed from Debian when missing, see tests/common/browser.rs)
//! opens the page, lets it receive live updates, and saves a PNG of the whole page.
//!
//! ```sh
//! cargo run --release &                      # the demo, dashboard on :8080
//! cargo run --release --example dashboard_screenshot -- http://127.0.0.1:8080/ results/dashboard.png 5
//! ```
//! Arguments: the page's URL, the PNG to write, seconds of live updates to wait.

#[path = "../tests/common/browser.rs"]
mod browser;

use browser::{ensure_chromium, open_browser, Driver};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: dashboard_screenshot URL OUT.png [SECONDS]";
    let url = args.next().ok_or(usage)?;
    let out = args.next().ok_or(usage)?;
    let seconds: f64 = args.next().map_or(Ok(5.0), |s| s.parse())?;
    ensure_chromium();
    let driver = Driver::start();
    let profile = tempfile::tempdir()?;
    let client = open_browser(&driver, profile.path(), (1500, 1200)).await;
    client.goto(&url).await?;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    // The whole page: make the window as tall as the document.
    let height = client
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await?
        .as_u64()
        .unwrap_or(2400) as u32;
    client.set_window_size(1500, height + 140).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let updates = client
        .execute("return document.body.dataset.updates;", vec![])
        .await?;
    std::fs::write(&out, client.screenshot().await?)?;
    eprintln!("wrote {out} after {updates} live updates");
    client.close().await?;
    Ok(())
}
