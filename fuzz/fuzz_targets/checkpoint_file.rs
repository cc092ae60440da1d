//! Checkpoint files: any bytes are refused with the file's name, unless
//! they are a whole, checksummed file of the expected kind.
#![no_main]

use eddy::checkpoint::store::{decode_file, Manifest, ProcessFile, WorkerFile};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "ckpt/epoch-3/worker-1.bin";

fn check<T: serde::de::DeserializeOwned>(bytes: &[u8]) {
    if let Err(e) = decode_file::<T>(bytes, NAME) {
        assert!(format!("{e:#}").contains(NAME), "{e:#}");
    }
}

fuzz_target!(|bytes: &[u8]| {
    check::<WorkerFile>(bytes);
    check::<ProcessFile>(bytes);
    check::<Manifest>(bytes);
});
