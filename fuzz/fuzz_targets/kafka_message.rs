//! A Kafka message's payload decoded as a row of either stream: a record
//! or a reason, and the same answer as the replay parser gives the line.
#![no_main]

use eddy::kafka::source::decode_message;
use eddy::record::{Interaction, Trade};
use eddy::sources::parse::{CommaFields, ParseRow};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let mut row = csv::ByteRecord::new();
    let (line, trade) = decode_message::<Trade>(payload, &mut row, 3);
    assert!(payload.starts_with(line));
    assert_eq!(trade, Trade::parse_row(&CommaFields::split(line), 3));
    if let Err(why) = &trade {
        assert!(!why.is_empty());
    }
    let (_, interaction) = decode_message::<Interaction>(payload, &mut row, 3);
    assert_eq!(
        interaction,
        Interaction::parse_row(&CommaFields::split(line), 3)
    );
});
