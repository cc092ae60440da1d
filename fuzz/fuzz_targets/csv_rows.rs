//! The CSV row parsers of both streams: the in-place splitter (replays)
//! and the csv crate's record (Kafka) give the same answer, and an
//! accepted row's numbers are what the standard library reads from them
//! (fields are trimmed of whitespace, as `str::trim` does).
#![no_main]

use eddy::record::{Interaction, Trade};
use eddy::sources::parse::{CommaFields, ParseRow};
use libfuzzer_sys::fuzz_target;

fn record(row: &[u8]) -> csv::ByteRecord {
    let mut r = csv::ByteRecord::new();
    for field in row.split(|b| *b == b',') {
        r.push_field(field);
    }
    r
}

fn number<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    std::str::from_utf8(field).ok()?.trim().parse().ok()
}

fuzz_target!(|row: &[u8]| {
    let fields: Vec<&[u8]> = row.split(|b| *b == b',').collect();
    let fast = Trade::parse_row(&CommaFields::split(row), 7);
    let standard = Trade::parse_row(&record(row), 7);
    assert_eq!(fast, standard);
    if let Ok(t) = fast {
        assert_eq!(number::<u64>(fields[0]), Some(t.ts_ms));
        assert_eq!(number::<f64>(fields[2]), Some(t.price));
        assert!(t.price.is_finite() && t.price > 0.0 && t.size > 0);
        assert_eq!(number::<u64>(fields[3]), Some(t.size));
    }
    let fast = Interaction::parse_row(&CommaFields::split(row), 7);
    let standard = Interaction::parse_row(&record(row), 7);
    assert_eq!(fast, standard);
    if let Ok(i) = fast {
        assert_eq!(number::<u64>(fields[0]), Some(i.ts_ms));
        assert_eq!(number::<u64>(fields[1]), Some(i.user));
        assert_eq!(number::<u64>(fields[2]), Some(i.item));
    }
});
