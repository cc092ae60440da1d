//! The cluster handshake: a connection proves it comes from a peer of this
//! very run before timely sees a byte of it.
//!
//! The later process connects to the earlier one (the connector offers, the
//! acceptor admits), once for timely's data and once for the heartbeat:
//!
//! 1. connector → `EDDYCL01` and a [`Hello`]: its index, the index it means
//!    to reach, the cluster size, the channel, the pipeline's fingerprint,
//!    whether it resumes from a checkpoint, the generation it learnt from
//!    process 0 (none when it is connecting to process 0) and a fresh nonce;
//! 2. acceptor → a challenge: the run's generation, its own nonce and
//!    HMAC-SHA-256(secret, "acceptor" ‖ hello ‖ its nonce ‖ generation),
//!    or a refusal naming the reason;
//! 3. connector → HMAC-SHA-256(secret, "connector" ‖ hello ‖ acceptor's
//!    nonce ‖ generation): each side proves it knows the secret without
//!    sending it, and a recorded proof is worth nothing for a new nonce;
//! 4. acceptor → welcome, or a refusal.
//!
//! Without a secret both sides use the empty key: the exchange still checks
//! the pipeline and the generation. The generation is process 0's start
//! count, so a process that met an earlier incarnation of process 0 is
//! refused by those that met the current one. Every message is
//! length-prefixed and at most 64 KiB; junk, a port scanner or a process of
//! another pipeline fails one check and is refused with the reason.

use hmac::{Hmac, KeyInit, Mac};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::Sha256;
use std::io::{self, Read, Write};

/// The first bytes of every connection between eddy's cluster processes.
pub const MAGIC: &[u8; 8] = b"EDDYCL01";
/// The largest handshake message taken.
const MESSAGE_LIMIT: u32 = 64 * 1024;

/// What a connection carries once admitted.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Channel {
    /// timely's records and progress messages.
    Data,
    /// eddy's heartbeat (see `heartbeat.rs`).
    Heartbeat,
}

/// What this process is, as the handshake checks it.
#[derive(Clone)]
pub struct Identity {
    pub me: usize,
    pub processes: usize,
    /// The pipeline's fingerprint (`Pipeline::checkpoint_fingerprint`).
    pub fingerprint: String,
    /// The shared secret; empty without one.
    pub secret: Vec<u8>,
    /// Whether this process resumes from a checkpoint.
    pub resuming: bool,
}

#[derive(Serialize, Deserialize)]
struct Hello {
    from: u32,
    to: u32,
    processes: u32,
    channel: Channel,
    fingerprint: String,
    resuming: bool,
    generation: Option<u64>,
    nonce: [u8; 32],
}

#[derive(Serialize, Deserialize)]
enum Answer {
    Challenge {
        generation: u64,
        nonce: [u8; 32],
        proof: Vec<u8>,
    },
    Refused(String),
}

#[derive(Serialize, Deserialize)]
enum Verdict {
    Welcome,
    Refused(String),
}

/// Why an offer failed.
#[derive(Debug)]
pub enum OfferError {
    /// The connection broke or timed out: try again.
    Io(io::Error),
    /// The peer refused, or could not prove the secret: do not try again.
    Refused(String),
}

impl From<io::Error> for OfferError {
    fn from(e: io::Error) -> Self {
        OfferError::Io(e)
    }
}

fn write_message<T: Serialize>(stream: &mut impl Write, message: &T) -> io::Result<()> {
    let bytes = bincode::serialize(message).map_err(io::Error::other)?;
    stream.write_all(&(bytes.len() as u32).to_be_bytes())?;
    stream.write_all(&bytes)?;
    stream.flush()
}

fn read_bytes(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let length = u32::from_be_bytes(length);
    if length > MESSAGE_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message of {length} bytes (at most {MESSAGE_LIMIT})"),
        ));
    }
    let mut bytes = vec![0; length as usize];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    bincode::deserialize(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// HMAC-SHA-256 keyed by the secret over what both sides saw: the role,
/// the hello's bytes, the acceptor's nonce and the generation.
fn mac(
    secret: &[u8],
    role: &[u8],
    hello: &[u8],
    nonce: &[u8; 32],
    generation: u64,
) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(role);
    mac.update(hello);
    mac.update(nonce);
    mac.update(&generation.to_be_bytes());
    mac
}

fn proof(secret: &[u8], role: &[u8], hello: &[u8], nonce: &[u8; 32], generation: u64) -> Vec<u8> {
    mac(secret, role, hello, nonce, generation)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Checks a proof in constant time.
fn proof_holds(
    secret: &[u8],
    role: &[u8],
    hello: &[u8],
    nonce: &[u8; 32],
    generation: u64,
    claimed: &[u8],
) -> bool {
    mac(secret, role, hello, nonce, generation)
        .verify_slice(claimed)
        .is_ok()
}

/// The connector's side: offers `channel` to process `to`; returns the
/// run's generation. `generation` is the one learnt from process 0 (none
/// when `to` is process 0).
pub fn offer(
    stream: &mut (impl Read + Write),
    id: &Identity,
    to: usize,
    channel: Channel,
    generation: Option<u64>,
) -> Result<u64, OfferError> {
    let hello = Hello {
        from: id.me as u32,
        to: to as u32,
        processes: id.processes as u32,
        channel,
        fingerprint: id.fingerprint.clone(),
        resuming: id.resuming,
        generation,
        nonce: rand::random(),
    };
    let hello_bytes = bincode::serialize(&hello).map_err(io::Error::other)?;
    stream.write_all(MAGIC)?;
    stream.write_all(&(hello_bytes.len() as u32).to_be_bytes())?;
    stream.write_all(&hello_bytes)?;
    stream.flush()?;
    let (their_generation, nonce, their_proof) = match decode(&read_bytes(stream)?)? {
        Answer::Refused(reason) => return Err(OfferError::Refused(reason)),
        Answer::Challenge {
            generation,
            nonce,
            proof,
        } => (generation, nonce, proof),
    };
    // Our proof goes first, so that the acceptor can log a wrong secret as such.
    let answer = proof(
        &id.secret,
        b"connector",
        &hello_bytes,
        &nonce,
        their_generation,
    );
    write_message(stream, &answer)?;
    if let Verdict::Refused(reason) = decode(&read_bytes(stream)?)? {
        return Err(OfferError::Refused(reason));
    }
    if !proof_holds(
        &id.secret,
        b"acceptor",
        &hello_bytes,
        &nonce,
        their_generation,
        &their_proof,
    ) {
        return Err(OfferError::Refused(
            "it could not prove the cluster secret (a different secret, or none)".into(),
        ));
    }
    // A generation other than ours was refused by the acceptor already.
    Ok(their_generation)
}

/// A connection the acceptor admitted.
#[derive(Debug, PartialEq, Eq)]
pub struct Admitted {
    pub peer: usize,
    pub channel: Channel,
}

/// The acceptor's side: checks a connection's hello and proof. `generation`
/// waits for the run's generation (process 0 knows it at once, the others
/// once they have met process 0). An `Err` is the reason for the refusal,
/// also sent to the peer where it got as far as a hello.
pub fn admit(
    stream: &mut (impl Read + Write),
    id: &Identity,
    generation: impl FnOnce() -> Option<u64>,
) -> Result<Admitted, String> {
    let mut magic = [0u8; 8];
    stream
        .read_exact(&mut magic)
        .map_err(|e| format!("no handshake ({e})"))?;
    if &magic != MAGIC {
        return Err(format!(
            "not an eddy cluster peer (its first bytes: {:?})",
            String::from_utf8_lossy(&magic)
        ));
    }
    let hello_bytes = read_bytes(stream).map_err(|e| format!("a bad hello ({e})"))?;
    let hello: Hello = decode(&hello_bytes).map_err(|e| format!("a bad hello ({e})"))?;
    let mut refuse = |reason: String| -> String {
        let _ = write_message(stream, &Answer::Refused(reason.clone()));
        reason
    };
    let (from, me) = (hello.from as usize, id.me);
    if hello.to as usize != me {
        return Err(refuse(format!(
            "it meant process {}, this is process {me}",
            hello.to
        )));
    }
    if hello.processes as usize != id.processes {
        return Err(refuse(format!(
            "it belongs to a cluster of {} processes, this one of {}",
            hello.processes, id.processes
        )));
    }
    if from <= me || from >= id.processes {
        return Err(refuse(format!(
            "it calls itself process {from}, which does not connect to process {me}"
        )));
    }
    if hello.fingerprint != id.fingerprint {
        return Err(refuse(format!(
            "it runs another pipeline: it differs in {}",
            crate::checkpoint::differences(&id.fingerprint, &hello.fingerprint)
        )));
    }
    if hello.resuming != id.resuming {
        let (resumes, starts) = if id.resuming {
            (format!("process {me}"), format!("process {from}"))
        } else {
            (format!("process {from}"), format!("process {me}"))
        };
        return Err(refuse(format!(
            "{resumes} resumes from a checkpoint but {starts} has none: \
             restore {starts}'s checkpoint folder, or start every process afresh"
        )));
    }
    let Some(ours) = generation() else {
        return Err(refuse(
            "this process has not met process 0 yet (no cluster generation)".into(),
        ));
    };
    if me != 0 && hello.generation != Some(ours) {
        return Err(refuse(format!(
            "it joined cluster generation {}, this process generation {ours}",
            hello
                .generation
                .map_or_else(|| "none".to_string(), |g| g.to_string())
        )));
    }
    let nonce: [u8; 32] = rand::random();
    let challenge = Answer::Challenge {
        generation: ours,
        nonce,
        proof: proof(&id.secret, b"acceptor", &hello_bytes, &nonce, ours),
    };
    write_message(stream, &challenge).map_err(|e| format!("the connection broke ({e})"))?;
    let claimed: Vec<u8> = read_bytes(stream)
        .and_then(|b| decode(&b))
        .map_err(|e| format!("no proof ({e})"))?;
    if !proof_holds(
        &id.secret,
        b"connector",
        &hello_bytes,
        &nonce,
        ours,
        &claimed,
    ) {
        let reason = "it could not prove the cluster secret (a different secret, or none)";
        let _ = write_message(stream, &Verdict::Refused(reason.into()));
        return Err(format!("process {from} claimed, but {reason}"));
    }
    write_message(stream, &Verdict::Welcome).map_err(|e| format!("the connection broke ({e})"))?;
    Ok(Admitted {
        peer: from,
        channel: hello.channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn identity(me: usize, secret: &str) -> Identity {
        Identity {
            me,
            processes: 3,
            fingerprint: r#"{"queries":"all","workers":1}"#.into(),
            secret: secret.as_bytes().to_vec(),
            resuming: false,
        }
    }

    /// Runs `admit` for `acceptor` (whose generation is 7) on one end of a
    /// real socket and `offer` from `connector` on the other.
    fn exchange(
        acceptor: Identity,
        connector: Identity,
        generation: Option<u64>,
    ) -> (Result<Admitted, String>, Result<u64, OfferError>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let to = acceptor.me;
        let admitting = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            admit(&mut s, &acceptor, || Some(7))
        });
        let mut s = TcpStream::connect(address).unwrap();
        let offered = offer(&mut s, &connector, to, Channel::Data, generation);
        drop(s);
        (admitting.join().unwrap(), offered)
    }

    #[test]
    fn peers_with_the_same_secret_and_pipeline_are_admitted() {
        let (admitted, offered) = exchange(identity(0, "s3cret"), identity(2, "s3cret"), None);
        assert_eq!(
            admitted.unwrap(),
            Admitted {
                peer: 2,
                channel: Channel::Data
            }
        );
        assert_eq!(offered.unwrap(), 7, "the generation comes from process 0");
    }

    #[test]
    fn a_wrong_secret_is_refused_on_both_sides() {
        let (admitted, offered) = exchange(identity(0, "s3cret"), identity(1, "guess"), None);
        assert!(admitted.unwrap_err().contains("cluster secret"));
        assert!(matches!(offered, Err(OfferError::Refused(r)) if r.contains("cluster secret")));
        // A connector without a secret fails against one with a secret, too.
        let (admitted, _) = exchange(identity(0, "s3cret"), identity(1, ""), None);
        assert!(admitted.unwrap_err().contains("cluster secret"));
    }

    #[test]
    fn another_pipeline_is_refused_naming_what_differs() {
        let mut other = identity(1, "");
        other.fingerprint = r#"{"queries":"all","workers":2}"#.into();
        let (admitted, offered) = exchange(identity(0, ""), other, None);
        let reason = admitted.unwrap_err();
        assert!(
            reason.contains("another pipeline") && reason.contains("workers"),
            "{reason}"
        );
        assert!(matches!(offered, Err(OfferError::Refused(r)) if r == reason));
    }

    #[test]
    fn another_generation_is_refused() {
        // Process 1 (generation 7) refuses a process that met process 0 at generation 6.
        let (admitted, offered) = exchange(identity(1, ""), identity(2, ""), Some(6));
        assert!(admitted.unwrap_err().contains("generation 6"));
        assert!(matches!(offered, Err(OfferError::Refused(_))));
    }

    #[test]
    fn junk_and_oversized_messages_are_refused_without_reading_them_whole() {
        let id = identity(0, "");
        let mut junk = std::io::Cursor::new(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
        let reason = admit(&mut ReadOnly(&mut junk), &id, || Some(1)).unwrap_err();
        assert!(reason.contains("not an eddy cluster peer"), "{reason}");
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut huge = std::io::Cursor::new(huge);
        let reason = admit(&mut ReadOnly(&mut huge), &id, || Some(1)).unwrap_err();
        assert!(reason.contains("at most 65536"), "{reason}");
        let mut empty = std::io::Cursor::new(Vec::new());
        let reason = admit(&mut ReadOnly(&mut empty), &id, || Some(1)).unwrap_err();
        assert!(reason.contains("no handshake"), "{reason}");
    }

    /// A reader whose writes go nowhere.
    struct ReadOnly<'a, R>(&'a mut R);
    impl<R: Read> Read for ReadOnly<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl<R> Write for ReadOnly<'_, R> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
