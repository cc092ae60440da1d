//! The input log's frame decoder: any bytes give a frame, a partial frame
//! or a named refusal; a frame it accepts encodes back to the same bytes.
#![no_main]

use eddy::ingest::log::{decode, frame, Decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut at = 0;
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Decoded::Frame(entry, size) => {
                assert!(size > 0 && at + size <= bytes.len());
                assert_eq!(frame(&entry).unwrap(), &bytes[at..at + size]);
                at += size;
            }
            Decoded::Partial => break,
            Decoded::Bad(why) => {
                assert!(!why.is_empty());
                break;
            }
        }
    }
});
