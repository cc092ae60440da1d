//! What a checkpoint saves of a worker's feed of one stream: its source's
//! position (opaque to all but the source), its watermark, the on-time
//! records it held back at the cut, and whether its source was done.

use crate::record::{Event, Interaction, Trade};
use crate::time::Watermark;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "")]
pub struct FeedState<E: Event> {
    pub source: Vec<u8>,
    pub watermark: Watermark,
    pub held: Vec<E>,
    pub source_done: bool,
}

/// One line about a saved feed (`feed/trades`, `feed/interactions`).
pub fn summary(name: &str, bytes: &[u8]) -> anyhow::Result<String> {
    fn line<E: Event>(bytes: &[u8]) -> anyhow::Result<String> {
        let s: FeedState<E> = bincode::deserialize(bytes)?;
        Ok(format!(
            "position {} bytes, {} records held back, watermark {} ms{}",
            s.source.len(),
            s.held.len(),
            s.watermark.current(),
            if s.source_done { ", source done" } else { "" }
        ))
    }
    match name.strip_prefix("feed/") {
        Some(s) if s == Trade::STREAM => line::<Trade>(bytes),
        Some(s) if s == Interaction::STREAM => line::<Interaction>(bytes),
        _ => anyhow::bail!("not a feed this eddy knows"),
    }
}
