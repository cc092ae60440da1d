//! Fuzzing the input paths with proptest: CSV files and TCP input logs made
//! of valid, damaged and arbitrary lines never make a source panic, and every
//! non-empty line comes out exactly once — on time, late or malformed — on
//! any number of workers. The frame decoder and the TCP handshake parser take
//! arbitrary bytes without panicking.

use eddy::ingest::log::{decode, Decoded};
use eddy::ingest::{parse_hello, StreamLog};
use eddy::record::{Event, Interaction, Trade};
use eddy::sources::csv_replay::CsvReplay;
use eddy::sources::parse::ParseRow;
use eddy::sources::tcp_log::TcpLog;
use eddy::sources::{Batch, Poll, Source};
use eddy::time::Watermark;
use proptest::prelude::*;
use std::sync::Arc;

/// A line: a valid trade or interaction, one with a field damaged, or anything
/// (no line ends inside).
fn line() -> impl Strategy<Value = String> {
    let trade = (
        0u64..3_000_000_000_000,
        "[A-Z0-9]{1,12}",
        0.01f64..1e6,
        1u64..1000,
    )
        .prop_map(|(ts, s, p, n)| format!("{ts},{s},{p},{n}"));
    let interaction = (0u64..3_000_000_000_000, 0u64..1000, 0u64..1000, 0usize..3)
        .prop_map(|(ts, u, i, k)| format!("{ts},{u},{i},{}", ["view", "click", "purchase"][k]));
    let damaged = (any::<prop::sample::Index>(), "[^\r\n]{0,6}", 0usize..4)
        .prop_map(|(at, junk, field)| (at, junk, field));
    let anything = "[^\r\n]{0,40}";
    prop_oneof![
        3 => trade.clone(),
        3 => interaction.clone(),
        2 => (trade, damaged.clone()).prop_map(|(l, d)| damage(&l, d)),
        2 => (interaction, damaged).prop_map(|(l, d)| damage(&l, d)),
        2 => anything.prop_map(String::from),
    ]
}

fn damage(line: &str, (_, junk, field): (prop::sample::Index, String, usize)) -> String {
    let mut fields: Vec<String> = line.split(',').map(String::from).collect();
    let i = field % fields.len();
    fields[i] = junk;
    fields.join(",")
}

/// Runs a source to its end; returns on-time + late + malformed records.
fn drain<E: Event>(source: &mut dyn Source<E>) -> u64 {
    let mut watermark = Watermark::new(100);
    let mut batch = Batch::default();
    let mut out = 0;
    for _ in 0..100_000 {
        batch.clear();
        let poll = source.next_batch(&mut batch, &mut watermark).unwrap();
        assert_eq!(
            batch.generated,
            (batch.on_time.len() + batch.late.len() + batch.malformed.len()) as u64
        );
        for m in &batch.malformed {
            assert!(!m.error.is_empty() && m.line > 0);
        }
        out += batch.generated;
        if poll == Poll::Done {
            return out;
        }
    }
    panic!("the source never ended");
}

fn csv_counts<E: Event + ParseRow>(lines: &[String], workers: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.csv");
    std::fs::write(&path, format!("{}\n{}\n", E::CSV_HEADER, lines.join("\n"))).unwrap();
    let mut replays: Vec<CsvReplay<E>> = (0..workers)
        .map(|w| CsvReplay::<E>::open(&path, 7, w, workers).unwrap())
        .collect();
    // What the engine's all-gather does: every worker's share to every worker.
    let shares: Vec<Vec<u8>> = replays.iter().filter_map(|r| r.share()).collect();
    if !shares.is_empty() {
        replays.iter_mut().for_each(|r| r.shared(&shares).unwrap());
    }
    replays.iter_mut().map(|r| drain(r)).sum()
}

fn log_counts<E: Event + ParseRow>(lines: &[String], chunk: usize, workers: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    // Segments of 256 bytes: the readers go from segment to segment.
    let log = Arc::new(StreamLog::open(dir.path(), E::STREAM, workers, 256).unwrap());
    for part in lines.chunks(chunk.max(1)) {
        // The listener drops empty lines before logging.
        let kept: Vec<String> = part.iter().filter(|l| !l.is_empty()).cloned().collect();
        if !kept.is_empty() {
            log.append_lines("fuzz", kept).unwrap();
        }
    }
    log.end().unwrap();
    (0..workers)
        .map(|w| drain(&mut TcpLog::<E>::open(Arc::clone(&log), 5, w, w, workers).unwrap()))
        .sum()
}

fn non_empty(lines: &[String]) -> u64 {
    lines.iter().filter(|l| !l.is_empty()).count() as u64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_csv_line_is_counted_once(lines in prop::collection::vec(line(), 0..120), workers in 1usize..4) {
        prop_assert_eq!(csv_counts::<Trade>(&lines, workers), non_empty(&lines));
        prop_assert_eq!(csv_counts::<Interaction>(&lines, workers), non_empty(&lines));
    }

    #[test]
    fn every_logged_tcp_line_is_counted_once(
        lines in prop::collection::vec(line(), 0..120),
        chunk in 1usize..50,
        workers in 1usize..4,
    ) {
        prop_assert_eq!(log_counts::<Trade>(&lines, chunk, workers), non_empty(&lines));
        prop_assert_eq!(log_counts::<Interaction>(&lines, chunk, workers), non_empty(&lines));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_frame_decoder_or_the_handshake(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        match decode(&bytes) {
            Decoded::Frame(_, size) => prop_assert!(size <= bytes.len()),
            Decoded::Partial | Decoded::Bad(_) => {}
        }
        let _ = parse_hello(&bytes);
    }
}
