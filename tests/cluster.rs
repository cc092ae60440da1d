//! Cluster mode: the same results for every layout of processes x workers
//! (1x1, 1x2, 2x1, 2x2) on generated data with disorder, through `eddy cluster`.

mod common;

use common::*;
use std::path::Path;
use std::process::Output;

fn assert_same_results(a: &Path, b: &Path, what: &str) {
    // ewma.csv: (symbol, ts, price) is not always unique; its rows are checked by count.
    let lines = |p: &Path| {
        std::fs::read_to_string(p.join("ewma.csv"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(lines(a), lines(b), "{what}: ewma.csv");
    for (name, keys) in WORKLOAD_FILES {
        let file = format!("{name}.csv");
        let (ta, tb) = (
            read_table(&a.join(&file), keys),
            read_table(&b.join(&file), keys),
        );
        assert!(!ta.is_empty(), "{what}: {file} is empty");
        assert_tables_match(&ta, &tb, &format!("{what}: {file}"));
    }
}

#[test]
fn every_layout_of_processes_and_workers_gives_the_same_results() {
    let dir = temp_dir();
    let t = dir.path().join("t.csv");
    let i = dir.path().join("i.csv");
    let ok = |o: Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    generate(
        "trades",
        &t,
        60000,
        &["--symbols", "6", "--rate", "500", "--disorder-ms", "150"],
    );
    generate(
        "interactions",
        &i,
        40000,
        &[
            "--users",
            "80",
            "--items",
            "30",
            "--rate",
            "300",
            "--disorder-ms",
            "150",
        ],
    );
    let replay = |out: &Path| -> Vec<String> {
        [
            "replay",
            "--trades",
            t.to_str().unwrap(),
            "--interactions",
            i.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
            "--threshold",
            "300",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let single = dir.path().join("1x1");
    ok(eddy(
        &replay(&single)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    for (processes, workers) in [(1, 2), (2, 1), (2, 2)] {
        let out = dir.path().join(format!("{processes}x{workers}"));
        let mut args = vec![
            "cluster".to_string(),
            "--processes".into(),
            processes.to_string(),
            "--workers".into(),
            workers.to_string(),
            "--".into(),
        ];
        args.extend(replay(&out));
        let o = eddy(&args.iter().map(String::as_str).collect::<Vec<_>>());
        ok(o);
        assert_same_results(
            &single,
            &out,
            &format!("{processes} processes x {workers} workers"),
        );
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap())
                .unwrap();
        assert_eq!(m["records"]["generated"], 100_000);
        assert_eq!(m["records"]["unaccounted"], 0);
        assert_eq!(m["processes"], processes);
    }
}

#[test]
fn generated_runs_agree_across_processes_and_a_failing_process_fails_the_launch() {
    let dir = temp_dir();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        "[sources.trades]\nkind = \"market\"\nsymbols = 5\nrate = 1000.0\ncount = 40000\ndisorder_ms = 100\n\
         [sources.interactions]\nkind = \"generator\"\nusers = 50\nitems = 20\nrate = 500.0\ncount = 20000\ndisorder_ms = 100\n",
    )
    .unwrap();
    let single = dir.path().join("single");
    let o = eddy(&[
        "run",
        pipeline.to_str().unwrap(),
        "--out",
        single.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let two = dir.path().join("two");
    let o = eddy(&[
        "cluster",
        "-n",
        "2",
        "-w",
        "2",
        "--",
        "run",
        pipeline.to_str().unwrap(),
        "--out",
        two.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_results(&single, &two, "generated, 2 processes x 2 workers");

    let o = eddy(&[
        "cluster",
        "-n",
        "2",
        "--",
        "replay",
        "--trades",
        "/nonexistent.csv",
        "--out",
        dir.path().join("bad").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("failed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
