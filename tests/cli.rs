//! The command line as users meet it: malformed rows, bad flags, missing files,
//! bad pipeline files, the shared sample, and the generate command.

mod common;

use common::*;

#[test]
fn malformed_rows_are_counted_with_their_line_numbers_and_the_run_finishes() {
    let dir = temp_dir();
    let trades = dir.path().join("trades.csv");
    let mut text = String::from("ts_ms,symbol,price,size\n");
    let mut bad_lines = Vec::new();
    let bad = [
        "1700000000100,SYM1,10.5",         // too few fields
        "1700000000200,SYM1,abc,5",        // price not a number
        "1700000000300,,10.0,5",           // empty symbol
        "-1700000000400,SYM1,10.0,5",      // negative ts
        "1700000000500,SYM1,10.0,-5",      // negative size
        "1700000000600,SYM1,10.0,5,extra", // too many fields
        "1700000000700,sym1,10.0,5",       // lowercase symbol
    ];
    let mut good = 0;
    for i in 0..200u64 {
        let line_no = i + 2 + bad_lines.len() as u64;
        if i % 25 == 7 && bad_lines.len() < bad.len() {
            text.push_str(bad[bad_lines.len()]);
            text.push('\n');
            bad_lines.push(line_no);
        }
        text.push_str(&format!(
            "{},SYM{},{}.25,{}\n",
            1_700_000_000_000 + i * 10,
            i % 3,
            100 + i % 7,
            1 + i % 5
        ));
        good += 1;
    }
    std::fs::write(&trades, text).unwrap();
    let out = dir.path().join("out");
    let o = eddy(&[
        "replay",
        "--trades",
        trades.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&out);
    assert_eq!(m["records"]["malformed"], bad.len() as u64);
    assert_eq!(m["records"]["processed"], good);
    assert_eq!(m["records"]["generated"], good + bad.len() as u64);
    let malformed = read_table(&out.join("malformed.csv"), &["line"]);
    let mut lines: Vec<u64> = malformed.keys().map(|k| k[0].parse().unwrap()).collect();
    lines.sort();
    assert_eq!(lines, bad_lines);
    let first = &malformed[&vec![bad_lines[1].to_string()]];
    assert!(first["error"].contains("price"), "{first:?}");
    // The first few are reported on the terminal with their line numbers.
    let err = stderr(&o);
    assert!(err.contains(&format!("line {}", bad_lines[0])), "{err}");
    // The good rows still make bars.
    let bars = read_table(&out.join("bars_1s.csv"), &["symbol", "window_start_ms"]);
    assert_eq!(
        bars.values()
            .map(|v| v["trades"].parse::<u64>().unwrap())
            .sum::<u64>(),
        good
    );
}

#[test]
fn bad_flags_and_missing_files_give_one_line_and_fail() {
    let dir = temp_dir();
    let out = dir.path().join("o");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "replay",
                "--trades",
                "/nonexistent/t.csv",
                "--out",
                out.to_str().unwrap(),
            ],
            "/nonexistent/t.csv",
        ),
        (
            vec!["replay", "--tradez", "x.csv", "--out", "o"],
            "--tradez",
        ),
        (
            vec![
                "replay",
                "--trades",
                "x.csv",
                "--out",
                "o",
                "--workers",
                "two",
            ],
            "two",
        ),
        (vec!["replay", "--out", "o"], "--trades"),
        (
            vec!["run", "/nonexistent/pipeline.toml"],
            "/nonexistent/pipeline.toml",
        ),
        (vec!["generate", "stocks", "--out", "x.csv"], "stocks"),
        (vec!["run", "--workers", "0", "--duration", "1"], "workers"),
    ];
    for (args, needle) in cases {
        let o = eddy(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn a_file_with_the_wrong_header_is_refused() {
    let dir = temp_dir();
    let file = dir.path().join("t.csv");
    std::fs::write(&file, "time,sym,px,qty\n1,A,1.0,1\n").unwrap();
    let o = eddy(&[
        "replay",
        "--trades",
        file.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("header"), "{}", stderr(&o));
}

#[test]
fn bad_pipeline_files_name_the_key_and_line() {
    let dir = temp_dir();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "[engine]\nworkers = 1\n\n[sources.trades]\nkind = \"market\"\nsymbolz = 3\n",
    )
    .unwrap();
    let o = eddy(&["run", file.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("symbolz") && err.contains("p.toml:"), "{err}");
}

#[test]
fn generate_writes_the_workload_format_deterministically() {
    let dir = temp_dir();
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv");
    for path in [&a, &b] {
        generate(
            "trades",
            path,
            5000,
            &["--seed", "9", "--symbols", "7", "--disorder-ms", "100"],
        );
    }
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(text, std::fs::read_to_string(&b).unwrap());
    let rows = read_trades(&a);
    assert_eq!(rows.len(), 5000);
    let symbols: std::collections::BTreeSet<_> = rows.iter().map(|r| r.symbol.clone()).collect();
    assert_eq!(symbols.len(), 7);
    let mut max_ts = 0;
    for r in &rows {
        assert!(
            r.ts + 100 >= max_ts,
            "row {} is {} ms behind",
            r.seq,
            max_ts - r.ts
        );
        assert!(r.price > 0.0 && r.size > 0);
        max_ts = max_ts.max(r.ts);
    }
    let ix = dir.path().join("i.csv");
    generate(
        "interactions",
        &ix,
        3000,
        &["--users", "50", "--items", "20"],
    );
    let text = std::fs::read_to_string(&ix).unwrap();
    assert!(text.starts_with("ts_ms,user_id,item_id,interaction\n"));
    assert_eq!(text.lines().count(), 3001);
    // The generated file replays cleanly.
    let out = dir.path().join("out");
    let o = eddy(&[
        "replay",
        "--trades",
        a.to_str().unwrap(),
        "--interactions",
        ix.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
        "-w",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&out);
    assert_eq!(m["records"]["generated"], 8000);
    assert_eq!(m["records"]["late"], 0);
    assert_eq!(m["records"]["loss_rate"], 0.0);
}

#[test]
fn a_short_real_time_run_produces_bars_and_metrics() {
    let dir = temp_dir();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "[engine]\nworkers = 2\ntiming = \"real_time\"\nspeed = 10.0\n\n[sources.trades]\nkind = \"market\"\nsymbols = 5\nrate = 2000.0\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = eddy(&[
        "run",
        file.to_str().unwrap(),
        "--duration",
        "1.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&out);
    // At 10x speed, 1.5 s of wall time is about 15 s of event time: about 30 000 trades.
    let generated = m["records"]["generated"].as_u64().unwrap();
    assert!((20_000..40_000).contains(&generated), "{generated}");
    assert_eq!(m["records"]["unaccounted"], 0);
    assert!(m["latency_ms"]["count"].as_u64().unwrap() > 0);
    assert!(m["generator_lag_ms"]["count"].as_u64().unwrap() > 0);
    let bars = read_table(&out.join("bars_1s.csv"), &["symbol", "window_start_ms"]);
    assert!(bars.len() >= 5 * 10, "{} bars", bars.len());
}

/// The shared sample, checked when the checkout has it (the project itself does not need it).
#[test]
fn the_shared_sample_reproduces_all_eight_expected_files() {
    let Some(sample) = shared_sample() else {
        eprintln!("../shared/workload/sample is not here: nothing to compare against");
        return;
    };
    for workers in ["1", "3"] {
        let dir = temp_dir();
        let out = dir.path().join("out");
        let o = eddy(&[
            "replay",
            "--trades",
            sample.join("trades.csv").to_str().unwrap(),
            "--interactions",
            sample.join("interactions.csv").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
            "-w",
            workers,
            "--threshold",
            "50",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let header = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_string()
        };
        for (name, keys) in WORKLOAD_FILES {
            let expected_file = sample.join("expected").join(format!("{name}.csv"));
            let got_file = out.join(format!("{name}.csv"));
            // Headers exactly as WORKLOAD.md gives them.
            assert_eq!(header(&got_file), header(&expected_file), "{name}");
            let expected = read_table(&expected_file, keys);
            let got = read_table(&got_file, keys);
            assert_tables_match(&expected, &got, name);
        }
    }
}

#[test]
fn threshold_and_correlation_symbols_are_taken_from_the_command_line() {
    let dir = temp_dir();
    let t = dir.path().join("t.csv");
    let i = dir.path().join("i.csv");
    generate("trades", &t, 40000, &["--symbols", "5", "--rate", "500"]);
    generate(
        "interactions",
        &i,
        20000,
        &["--users", "50", "--items", "30", "--rate", "300"],
    );
    let out = dir.path().join("out");
    let o = eddy(&[
        "replay",
        "--trades",
        t.to_str().unwrap(),
        "--interactions",
        i.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
        "--threshold",
        "400",
        "--symbols-for-correlation",
        "SYM001,SYM003,SYM004",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let corr = read_table(
        &out.join("corr_60s.csv"),
        &["symbol_a", "symbol_b", "window_start_ms"],
    );
    let pairs: std::collections::BTreeSet<(String, String)> =
        corr.keys().map(|k| (k[0].clone(), k[1].clone())).collect();
    let want: std::collections::BTreeSet<(String, String)> = [
        ("SYM001", "SYM003"),
        ("SYM001", "SYM004"),
        ("SYM003", "SYM004"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(pairs, want);
    let alerts = read_table(&out.join("alerts.csv"), &["item_id", "window_start_ms"]);
    assert!(!alerts.is_empty());
    assert!(alerts
        .values()
        .all(|a| a["threshold"] == "400" && a["total"].parse::<u64>().unwrap() > 400));
    // Alerts are logged the moment they fire, once per item and window.
    let fired = stderr(&o).matches("ALERT item").count();
    assert_eq!(fired, alerts.len(), "{}", stderr(&o));
    let o = eddy(&[
        "replay",
        "--trades",
        t.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--symbols-for-correlation",
        "sym1",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("sym1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn every_ewma_row_has_a_per_record_latency() {
    let dir = temp_dir();
    let trades = dir.path().join("trades.csv");
    let out = dir.path().join("out");
    generate("trades", &trades, 20000, &[]);
    for workers in ["1", "2"] {
        let o = eddy(&[
            "replay",
            "--trades",
            trades.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
            "--workers",
            workers,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let rows = std::fs::read_to_string(out.join("ewma.csv"))
            .unwrap()
            .lines()
            .count()
            - 1;
        assert_eq!(rows, 20_000);
        let m = metrics(&out);
        assert_eq!(
            m["record_latency_ms"]["count"].as_u64(),
            Some(rows as u64),
            "{workers} workers"
        );
        assert!(m["record_latency_ms"]["p99"].as_f64().unwrap() >= 0.0);
    }
}

#[test]
fn merge_refuses_folders_of_different_runs_and_cluster_flags_are_checked() {
    let dir = temp_dir();
    let t = dir.path().join("t.csv");
    generate("trades", &t, 2000, &["--symbols", "3"]);
    let replay = |name: &str, workers: &str| {
        let out = dir.path().join(name);
        let o = eddy(&[
            "replay",
            "--quiet",
            "--trades",
            t.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--workers",
            workers,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        out.to_str().unwrap().to_string()
    };
    let (a, b) = (replay("a", "1"), replay("b", "2"));
    let merged = dir.path().join("m");
    let merged = merged.to_str().unwrap();
    let hostfile = dir.path().join("hosts.txt");
    std::fs::write(&hostfile, "127.0.0.1:1\n127.0.0.1:2\n").unwrap();
    let short = dir.path().join("short-secret");
    std::fs::write(&short, "tiny\n").unwrap();
    let cases: Vec<(Vec<&str>, &str, i32)> = vec![
        // Another pipeline: the difference is named.
        (
            vec!["merge", &a, &b, "--out", merged],
            "differ in workers",
            1,
        ),
        // The same process twice.
        (
            vec!["merge", &a, &a, "--out", merged],
            "both hold the results of process 0",
            1,
        ),
        (
            vec!["merge", "/nonexistent/out", "--out", merged],
            "/nonexistent/out/metrics.json",
            1,
        ),
        (
            vec![
                "replay",
                "--trades",
                "x.csv",
                "--out",
                "o",
                "--peer-timeout-s",
                "0",
            ],
            "not a positive number of seconds",
            2,
        ),
        (
            vec![
                "replay",
                "--trades",
                t.to_str().unwrap(),
                "--out",
                merged,
                "--processes",
                "2",
                "--hostfile",
                hostfile.to_str().unwrap(),
                "--cluster-secret-file",
                short.to_str().unwrap(),
            ],
            "at least 16 bytes",
            1,
        ),
    ];
    for (args, needle, code) in cases {
        let o = eddy(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(
        !std::path::Path::new(merged).join("metrics.json").exists(),
        "nothing merged"
    );
}
