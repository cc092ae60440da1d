//! The dashboard's server without a browser: `/metrics` parsed by an
//! independent Prometheus parser (expected families, counters that only
//! grow, final values equal to metrics.json), `/health`, the page's assets,
//! and the token (`--dashboard-token-file`): 401 without it, 200 with it as a
//! bearer header or the cookie `?token=` sets; a public address without one
//! refused; over TLS, checked by curl: only with the CA, and with the token;
//! the ingest port's refusals counted in `eddy_ingest_refused_total`.

#[path = "common/apt.rs"]
mod apt;
mod common;
#[path = "common/tls.rs"]
mod tls;

use common::{metrics, temp_dir, Served};
use prometheus_parse::{Scrape, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `name{labels}` -> value, histograms as their `_count`.
fn scrape(served: &Served) -> BTreeMap<String, f64> {
    let (status, text) = served.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        text.trim_end().ends_with("# EOF"),
        "an OpenMetrics exposition ends with # EOF"
    );
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let mut values = BTreeMap::new();
    for s in parsed.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let key = format!("{}{{{}}}", s.metric, labels.join(","));
        let value = match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            Value::Histogram(buckets) => {
                // Cumulative buckets: non-decreasing, +Inf last.
                assert!(
                    buckets.windows(2).all(|w| w[0].count <= w[1].count),
                    "{key}"
                );
                buckets.last().map_or(0.0, |b| b.count)
            }
            Value::Summary(_) => panic!("no summaries expected: {key}"),
        };
        values.insert(key, value);
    }
    values
}

fn is_counter(key: &str) -> bool {
    key.contains("_total{") || key.contains("_latency_seconds{")
}

#[test]
fn metrics_have_the_expected_families_and_counters_only_grow() {
    let out = temp_dir();
    let dir = out.path().to_str().unwrap();
    // The demo's generators (disorder 150 ms) with a 50 ms bound: some records are late.
    let served = Served::start(&[
        "run",
        "--speed",
        "10",
        "--duration",
        "20",
        "--max-delay-ms",
        "50",
        "--out",
        dir,
    ]);
    std::thread::sleep(Duration::from_secs(2));
    let scrapes: Vec<BTreeMap<String, f64>> = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(700));
            scrape(&served)
        })
        .collect();
    let last = scrapes.last().unwrap();
    for stream in ["trades", "interactions"] {
        for family in ["generated", "ingested", "late", "malformed"] {
            let key = format!("eddy_records_{family}_total{{stream={stream}}}");
            assert!(last.contains_key(&key), "missing {key}");
        }
        assert!(last[&format!("eddy_records_generated_total{{stream={stream}}}")] > 0.0);
    }
    assert!(
        last["eddy_records_late_total{stream=trades}"] > 0.0,
        "disorder beyond the bound makes late records"
    );
    for key in [
        "eddy_query_rows_total{query=trades/bars_1s}",
        "eddy_query_records_consumed_total{query=interactions/item_counts_60s}",
        "eddy_window_latency_seconds{}",
        "eddy_record_latency_seconds{}",
        "eddy_watermark_lag_seconds{}",
        "eddy_generator_lag_seconds{}",
        "eddy_records_in_flight{}",
        "eddy_cpu_seconds_total{}",
        "eddy_worker_records_ingested_total{worker=0}",
        "eddy_worker_watermark_seconds{worker=1}",
        "eddy_finished{}",
    ] {
        assert!(last.contains_key(key), "missing {key}: {:?}", last.keys());
    }
    assert!(last["eddy_resident_memory_bytes{}"] > 1e6);
    assert!(
        last["eddy_window_latency_seconds{}"] > 0.0,
        "windows closed"
    );
    assert_eq!(last["eddy_finished{}"], 0.0);
    for pair in scrapes.windows(2) {
        for (key, before) in pair[0].iter().filter(|(k, _)| is_counter(k)) {
            let after = pair[1].get(key).unwrap_or_else(|| panic!("{key} vanished"));
            assert!(after >= before, "{key} went down: {before} -> {after}");
        }
    }
    let generated = |s: &BTreeMap<String, f64>| s["eddy_records_generated_total{stream=trades}"];
    assert!(
        generated(last) > generated(&scrapes[0]),
        "records keep coming in"
    );

    let (status, health) = served.get("/health");
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "running");
    assert_eq!(health["workers_running"], 2);

    let (status, page) = served.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("<canvas id=\"chart-price\"") && page.contains("/dashboard.js"));
    for asset in ["/dashboard.js", "/dashboard.css"] {
        let (status, body) = served.get(asset);
        assert_eq!(status, 200, "{asset}");
        assert!(body.len() > 1000, "{asset} is embedded");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{asset}: nothing from elsewhere"
        );
    }
    let (status, state) = served.get("/api/state?symbol=NOPE");
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert!(state["totals"]["generated"].as_u64().unwrap() > 0);
    assert!(
        state["board"]["market"]["symbol"].is_string(),
        "an unknown symbol falls back to the most traded"
    );
    assert_eq!(served.get("/nothing-here").0, 404);
}

#[test]
fn final_metrics_equal_the_run_summary() {
    let out = temp_dir();
    let trades = out.path().join("trades.csv");
    // 4 000 trades, every 50th malformed and every 97th far behind: late.
    let mut text = String::from("ts_ms,symbol,price,size\n");
    for i in 0..4000u64 {
        let ts = 1_700_000_000_000 + i * 10;
        match (i % 50, i % 97) {
            (7, _) => text.push_str("not,a,trade\n"),
            (_, 5) if i > 200 => text.push_str(&format!("{},AAA,10.5,3\n", ts - 1500)),
            _ => text.push_str(&format!(
                "{ts},{},{}.25,{}\n",
                ["AAA", "BBB"][i as usize % 2],
                10 + i % 7,
                1 + i % 5
            )),
        }
    }
    std::fs::write(&trades, text).unwrap();
    let dir = out.path().join("out");
    let served = Served::start(&[
        "replay",
        "--trades",
        trades.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--dashboard-linger",
        "30",
    ]);
    // The run ends at once; the dashboard stays up with the final figures.
    let start = Instant::now();
    let status =
        |body: String| serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"].clone();
    while status(served.get("/health").1) == "running" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the replay did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = metrics(&dir);
    let last = scrape(&served);
    assert_eq!(last["eddy_finished{}"], 1.0);
    let s = &m["streams"]["trades"];
    for family in ["generated", "ingested", "late", "malformed"] {
        let key = format!("eddy_records_{family}_total{{stream=trades}}");
        assert_eq!(
            last[&key],
            s[family].as_f64().unwrap(),
            "{key} vs metrics.json"
        );
    }
    assert_eq!(last["eddy_records_malformed_total{stream=trades}"], 80.0);
    assert!(last["eddy_records_late_total{stream=trades}"] > 0.0);
    for q in m["queries"].as_array().unwrap() {
        let key = format!(
            "eddy_query_rows_total{{query={}}}",
            q["name"].as_str().unwrap()
        );
        assert_eq!(last[&key], q["rows"].as_f64().unwrap(), "{key}");
    }
    assert_eq!(
        last["eddy_window_latency_seconds{}"],
        m["latency_ms"]["count"].as_f64().unwrap()
    );
    assert_eq!(last["eddy_records_in_flight{}"], 0.0, "nothing lost");
}

/// GET `path` with `headers`: (status, the Set-Cookie header).
fn get_with(address: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = ureq::get(&format!("http://{address}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match request.call() {
        Ok(r) => (
            r.status().as_u16(),
            r.headers()
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        ),
        Err(ureq::Error::StatusCode(code)) => (code, String::new()),
        Err(e) => panic!("GET {path}: {e}"),
    }
}

#[test]
fn with_a_token_the_dashboard_answers_401_without_it_and_200_with_it() {
    let dir = common::temp_dir();
    let token = dir.path().join("token");
    std::fs::write(&token, "d45hb0ard\n").unwrap();
    let out = dir.path().join("out");
    let served = Served::start(&[
        "run",
        "--duration",
        "30",
        "--out",
        out.to_str().unwrap(),
        "--dashboard-token-file",
        token.to_str().unwrap(),
    ]);
    let at = served.address.as_str();
    for path in ["/", "/api/state", "/metrics", "/events"] {
        assert_eq!(get_with(at, path, &[]).0, 401, "{path}");
        let wrong = [("Authorization", "Bearer d45hb0ard-not")];
        assert_eq!(get_with(at, path, &wrong).0, 401, "{path}");
    }
    assert_eq!(get_with(at, "/health", &[]).0, 200);
    let bearer = [("Authorization", "Bearer d45hb0ard")];
    assert_eq!(get_with(at, "/metrics", &bearer).0, 200);
    assert_eq!(get_with(at, "/api/state", &bearer).0, 200);
    // ?token= once: the page, and a cookie for what it loads next.
    let (status, cookie) = get_with(at, "/?token=d45hb0ard", &[]);
    assert_eq!(status, 200);
    assert!(cookie.starts_with("eddy_token=d45hb0ard;") && cookie.contains("HttpOnly"));
    let with_cookie = [("Cookie", "other=1; eddy_token=d45hb0ard")];
    assert_eq!(get_with(at, "/api/state", &with_cookie).0, 200);
}

#[test]
fn a_dashboard_on_a_public_address_without_a_token_is_refused_in_one_line() {
    let o = common::eddy(&["run", "--duration", "1", "--dashboard", "0.0.0.0:0"]);
    assert!(!o.status.success());
    let text = common::stderr(&o);
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("eddy: error: the dashboard on 0.0.0.0:0 would answer anyone")
            && last.contains("--dashboard-public"),
        "{text}"
    );
}

/// `curl ARGS`: its exit code and what it printed.
fn curl(args: &[&str]) -> (i32, String) {
    let o = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn over_tls_the_dashboard_answers_a_client_trusting_its_ca_with_the_token() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(apt::apt_install(&["curl"]), "cannot install curl");
    }
    let dir = common::temp_dir();
    let pki = tls::make_pki(&dir.path().join("pki"), &["localhost"]);
    let token = dir.path().join("token");
    std::fs::write(&token, "7l5-d45hb0ard\n").unwrap();
    let out = dir.path().join("out");
    let served = Served::start(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--idle-exit",
        "20",
        "--out",
        out.to_str().unwrap(),
        "--dashboard-token-file",
        token.to_str().unwrap(),
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        pki.key.to_str().unwrap(),
    ]);
    let port = served.address.rsplit_once(':').unwrap().1.to_string();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let ca = pki.ca.to_str().unwrap();
    let status = |path: &str, extra: &[&str]| {
        let target = url(path);
        let mut args = vec!["--resolve", &resolve, "--cacert", ca, "-o", "/dev/null"];
        args.extend(["-w", "%{http_code}", &target]);
        args.extend_from_slice(extra);
        curl(&args).1
    };
    let bearer = ["-H", "Authorization: Bearer 7l5-d45hb0ard"];
    for path in ["/", "/api/state", "/metrics"] {
        assert_eq!(status(path, &[]), "401", "{path}");
        assert_eq!(status(path, &bearer), "200", "{path}");
    }
    assert_eq!(status("/health", &[]), "200");
    // Without the CA curl trusts nothing here (60: the certificate).
    let (code, _) = curl(&["--resolve", &resolve, &url("/health")]);
    assert_eq!(
        code, 60,
        "curl trusted a certificate of a CA it was not given"
    );
    // Plain HTTP to the TLS port gets no answer.
    let (code, _) = curl(&[&format!("http://127.0.0.1:{port}/health")]);
    assert_ne!(code, 0, "plain HTTP was answered on a TLS port");
    // A plain-text sender on the TLS ingest port: refused, and counted.
    let ingest = {
        let log = served.log.lock().unwrap().clone();
        let at = log.split("listening for records on ").nth(1).unwrap_or("");
        at.split_whitespace().next().unwrap_or("").to_string()
    };
    assert!(served.log.lock().unwrap().contains("over TLS"));
    let mut plain = std::net::TcpStream::connect(&ingest).unwrap();
    std::io::Write::write_all(&mut plain, b"trades feed-1 token=7l5-d45hb0ard\n").unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("ok"));
    let scraped = curl(&[
        "--resolve",
        &resolve,
        "--cacert",
        ca,
        "-H",
        "Authorization: Bearer 7l5-d45hb0ard",
        &url("/metrics"),
    ])
    .1;
    assert!(
        scraped.contains("eddy_ingest_refused_total{reason=\"tls\"} 1"),
        "{scraped}"
    );
    // The input log's size on disk: nothing of the refused sender.
    let log_bytes = scraped
        .lines()
        .find_map(|l| l.strip_prefix("eddy_input_log_bytes{stream=\"trades\"} "))
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(log_bytes, Some(0.0), "{scraped}");
}
