//! `eddy plot`: every chart is written as PNG and SVG, at the requested size,
//! with something drawn on it; missing or malformed inputs are one-line errors.

mod common;

use common::*;
use std::path::Path;

/// Checks NAME.png is `width` x `height` with a real drawing on it, and NAME.svg exists.
fn assert_chart(dir: &Path, name: &str, width: u32, height: u32) {
    let png = dir.join(format!("{name}.png"));
    let image = image::open(&png)
        .unwrap_or_else(|e| panic!("{}: {e}", png.display()))
        .to_rgb8();
    assert_eq!(image.dimensions(), (width, height), "{name}.png size");
    let pixels = (width * height) as usize;
    let inked = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    // Axes and labels alone ink about 1 %; a chart with data inks more.
    assert!(
        inked * 100 > pixels * 2,
        "{name}.png is nearly blank: {inked} of {pixels} pixels"
    );
    let colours: std::collections::BTreeSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 10,
        "{name}.png has {} colours",
        colours.len()
    );
    let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<text"),
        "{name}.svg"
    );
}

fn plot(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "plot",
        "--in",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    eddy(&args)
}

#[test]
fn replayed_results_give_every_data_chart() {
    let dir = temp_dir();
    let trades = dir.path().join("trades.csv");
    let interactions = dir.path().join("interactions.csv");
    let results = dir.path().join("results");
    for (stream, file, count) in [
        ("trades", &trades, 60_000),
        ("interactions", &interactions, 60_000),
    ] {
        generate(stream, file, count, &[]);
    }
    let o = eddy(&[
        "replay",
        "--trades",
        trades.to_str().unwrap(),
        "--interactions",
        interactions.to_str().unwrap(),
        "--out",
        results.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let charts = dir.path().join("charts");
    let o = plot(&results, &charts, &["--width", "900", "--height", "500"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in [
        "price",
        "bars",
        "correlation",
        "item_counts",
        "activity",
        "latency_cdf",
    ] {
        assert_chart(&charts, name, 900, 500);
    }
    // Named symbols replace the default choice.
    let o = plot(&results, &charts, &["--symbols", "SYM003"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_chart(&charts, "price", 1200, 700);
}

#[test]
fn the_shared_samples_expected_results_plot() {
    let Some(sample) = shared_sample() else {
        eprintln!("../shared absent: the shared sample's plot is not checked here");
        return;
    };
    let dir = temp_dir();
    let o = plot(&sample.join("expected"), dir.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["price", "bars", "correlation", "item_counts", "activity"] {
        assert_chart(dir.path(), name, 1200, 700);
    }
}

#[test]
fn the_committed_benchmark_csvs_plot() {
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let dir = temp_dir();
    let o = plot(&results, dir.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in [
        "latency_vs_load",
        "scaling",
        "peers",
        "checkpoints",
        "model_quality",
    ] {
        assert_chart(dir.path(), name, 1200, 700);
    }
}

#[test]
fn nothing_to_plot_and_bad_files_are_one_line_errors() {
    let dir = temp_dir();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = plot(&empty, &dir.path().join("out"), &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no result files to plot"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));

    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(
        bad.join("bars_1s.csv"),
        "symbol,window_start_ms,open,high,low,close,volume,trades,vwap\nA,1000,1,2,0.5,1.5,10,3,1.2\nA,2000,x,2,1,1,1,1,1\n",
    )
    .unwrap();
    let o = plot(&bad, &dir.path().join("out"), &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("bars_1s.csv") && err.contains("line 3"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let o = plot(&dir.path().join("missing"), &dir.path().join("out"), &[]);
    assert!(
        !o.status.success() && stderr(&o).contains("not a directory"),
        "{}",
        stderr(&o)
    );
}
