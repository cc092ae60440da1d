//! TLS (rustls, with the ring provider) for eddy's own TCP protocols: the
//! ingest port (`--tls-cert`/`--tls-key`), `eddy send` (`--tls-ca`, or
//! `--tls` for the public roots) and the dashboard (same flags as ingest).
//!
//! A [`Conn`] is a plain or a TLS connection behind one `Read + Write`, so
//! the protocols are written once. TLS 1.2 and 1.3 are accepted; the client
//! checks the engine's certificate against the host name or IP address it
//! connects to, like a browser.

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection};
use rustls::{SideData, StreamOwned};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side of `--tls-cert FILE --tls-key FILE` (PEM: the
/// certificate chain, leaf first; a PKCS#8, PKCS#1 or SEC1 key).
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = read_certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("--tls-key {}: no private key read: {e}", key.display()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "--tls-cert {} and its key do not make a TLS identity",
                cert.display()
            )
        })?;
    Ok(Arc::new(config))
}

/// The client side: the certificates of `ca` (PEM) as the only roots, or
/// the public web roots without one.
pub fn client_config(ca: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            for certificate in read_certificates(ca)? {
                roots.add(certificate).with_context(|| {
                    format!("--tls-ca {}: a certificate is unusable", ca.display())
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: a certificate is not valid PEM", path.display()))?;
    if certificates.is_empty() {
        bail!("{}: no PEM certificate in it", path.display());
    }
    Ok(certificates)
}

/// A connection, plain or TLS.
pub enum Conn<C> {
    Plain(TcpStream),
    Tls(Box<StreamOwned<C, TcpStream>>),
}

pub type ServerConn = Conn<ServerConnection>;
pub type ClientConn = Conn<ClientConnection>;

/// The server side of an accepted socket: TLS when `config` is given (the
/// handshake happens on the first read, in the connection's own thread).
pub fn accept(config: Option<&Arc<ServerConfig>>, socket: TcpStream) -> anyhow::Result<ServerConn> {
    Ok(match config {
        None => Conn::Plain(socket),
        Some(config) => {
            let tls = ServerConnection::new(Arc::clone(config))?;
            Conn::Tls(Box::new(StreamOwned::new(tls, socket)))
        }
    })
}

/// The client side of a socket connected to `address` (`HOST:PORT`): TLS
/// when `config` is given, the certificate checked against HOST.
pub fn connect(
    config: Option<&Arc<ClientConfig>>,
    address: &str,
    socket: TcpStream,
) -> anyhow::Result<ClientConn> {
    Ok(match config {
        None => Conn::Plain(socket),
        Some(config) => {
            let host = host_of(address);
            let name = ServerName::try_from(host.to_string())
                .with_context(|| format!("`{host}` is not a host name or an IP address"))?;
            let tls = ClientConnection::new(Arc::clone(config), name)?;
            Conn::Tls(Box::new(StreamOwned::new(tls, socket)))
        }
    })
}

/// HOST of `HOST:PORT` (`[::1]:9000` → `::1`).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl<C, S> Conn<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(socket) => socket,
            Conn::Tls(stream) => &stream.sock,
        }
    }

    /// Whether the connection can carry an answer: plain, or TLS with its
    /// handshake done.
    pub fn handshake_done(&self) -> bool {
        match self {
            Conn::Plain(_) => true,
            Conn::Tls(stream) => !stream.conn.is_handshaking(),
        }
    }

    /// Ends this side's writing (TLS: a close_notify first), so that the
    /// peer reads the end of input while its answers still come back.
    pub fn close_writing(&mut self) -> std::io::Result<()> {
        if let Conn::Tls(stream) = self {
            stream.conn.send_close_notify();
            stream.flush()?;
        }
        self.tcp().shutdown(Shutdown::Write)
    }
}

impl<C, S> Read for Conn<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(socket) => socket.read(buf),
            Conn::Tls(stream) => stream.read(buf),
        }
    }
}

impl<C, S> Write for Conn<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(socket) => socket.write(buf),
            Conn::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(socket) => socket.flush(),
            Conn::Tls(stream) => stream.flush(),
        }
    }
}

/// Whether bytes a client read back are a TLS record (an alert or a
/// handshake): the engine speaks TLS on that port and the client did not.
pub fn looks_like_tls(reply: &[u8]) -> bool {
    matches!(reply, [0x15 | 0x16, 0x03, ..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address() {
        assert_eq!(host_of("engine.example:9000"), "engine.example");
        assert_eq!(host_of("10.0.0.1:9000"), "10.0.0.1");
        assert_eq!(host_of("[::1]:9000"), "::1");
    }

    #[test]
    fn missing_or_empty_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err().to_string();
        assert!(e.contains("empty.pem: no PEM certificate"), "{e}");
        let e = server_config(&dir.path().join("absent.pem"), &empty)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent.pem"), "{e}");
    }
}
