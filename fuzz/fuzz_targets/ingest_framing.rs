//! The TCP ingest's first line and line framing: any bytes give a hello or
//! a refusal, and lines no longer than the limit, never more bytes than
//! were sent.
#![no_main]

use eddy::ingest::{parse_hello, read_line};
use libfuzzer_sys::fuzz_target;
use std::io::BufReader;

const MAX_LINE: usize = 64;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(hello) = parse_hello(bytes) {
        assert!(hello.stream == "trades" || hello.stream == "interactions");
        assert!(hello.id.len() <= 64);
    }
    // A small buffer, so that lines cross buffer ends.
    let mut reader = BufReader::with_capacity(16, bytes);
    let mut line = Vec::new();
    let mut seen = 0;
    while let Ok(true) = read_line(&mut reader, &mut line, MAX_LINE) {
        assert!(line.len() <= MAX_LINE);
        assert!(!line.contains(&b'\n'));
        seen += line.len() + 1;
        assert!(seen <= bytes.len() + 1);
    }
});
