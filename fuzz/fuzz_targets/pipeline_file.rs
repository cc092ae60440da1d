//! Pipeline files: any text gives a pipeline or a one-line error, and a
//! pipeline that parses is validated without a panic.
#![no_main]

use eddy::pipeline::Pipeline;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match Pipeline::parse(text, "fuzz.toml") {
        Ok(pipeline) => {
            let _ = pipeline.validate();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
