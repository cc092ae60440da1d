//! PostgreSQL connections with libpq's TLS settings in the URL, over rustls.
//!
//! The Rust client understands `sslmode=disable|prefer|require` only; this
//! module reads libpq's full set from the URL (or `key=value` string) and
//! removes what the client would refuse:
//!
//! | `sslmode`     | TLS                | certificate checked          |
//! |---------------|--------------------|------------------------------|
//! | `disable`     | no                 | —                            |
//! | `prefer` (default) | if the server offers it | no                  |
//! | `require`     | yes                | no; with `sslrootcert`: as `verify-ca` (libpq's rule) |
//! | `verify-ca`   | yes                | signed by `sslrootcert`      |
//! | `verify-full` | yes                | signed by `sslrootcert` and naming the host |
//!
//! Without `sslrootcert`, `verify-ca` and `verify-full` trust the public web
//! roots (libpq's `sslrootcert=system`).

use anyhow::{anyhow, bail, Context};
use postgres::config::SslMode;
use postgres::{Client, Config};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Check {
    None,
    Chain,
    ChainAndName,
}

/// A parsed connection string and the TLS it asks for.
pub struct PgTarget {
    pub config: Config,
    tls: Option<MakeRustlsConnect>,
}

impl PgTarget {
    /// Parses `url` (a `postgresql://` URL or `key=value` words).
    pub fn parse(url: &str) -> anyhow::Result<PgTarget> {
        let (rest, sslmode, rootcert) = take_tls_settings(url)?;
        let mut config = Config::from_str(&rest).map_err(|e| anyhow!("{e}"))?;
        let mode = sslmode.as_deref().unwrap_or("prefer");
        let check = match (mode, &rootcert) {
            ("disable", _) => None,
            ("prefer" | "allow", _) => Some(Check::None),
            ("require", None) => Some(Check::None),
            ("require" | "verify-ca", _) => Some(Check::Chain),
            ("verify-full", _) => Some(Check::ChainAndName),
            (other, _) => {
                bail!("sslmode={other}: one of disable, prefer, require, verify-ca, verify-full")
            }
        };
        config.ssl_mode(match mode {
            "disable" => SslMode::Disable,
            "prefer" | "allow" => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let tls = match check {
            None => None,
            Some(check) => Some(MakeRustlsConnect::new(client_config(check, rootcert)?)),
        };
        Ok(PgTarget { config, tls })
    }

    pub fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(postgres::NoTls),
        }
    }
}

/// A client error with its causes (`db error` alone says nothing: the
/// server's message, or the TLS failure, is its source).
pub fn explain(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Splits `sslmode` and `sslrootcert` off `url`, leaving what the client parses.
fn take_tls_settings(url: &str) -> anyhow::Result<(String, Option<String>, Option<PathBuf>)> {
    let (mut sslmode, mut rootcert) = (None, None);
    let mut take = |key: &str, value: &str| -> bool {
        match key {
            "sslmode" => sslmode = Some(value.to_string()),
            "sslrootcert" => rootcert = Some(PathBuf::from(value)),
            _ => return false,
        }
        true
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        !take(k, &percent_decode(v))
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        url.split_whitespace()
            .filter(|word| {
                let (k, v) = word.split_once('=').unwrap_or((word, ""));
                !take(k.trim(), v.trim().trim_matches('\''))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Ok((rest, sslmode, rootcert))
}

/// `%2F` and the like in a URL's query value (a path in `sslrootcert`).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn client_config(check: Check, rootcert: Option<PathBuf>) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let mut roots = rustls::RootCertStore::empty();
    match &rootcert {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            for certificate in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("sslrootcert {}: cannot read it", path.display()))?
            {
                let certificate = certificate
                    .with_context(|| format!("sslrootcert {}: not PEM", path.display()))?;
                roots
                    .add(certificate)
                    .with_context(|| format!("sslrootcert {}: unusable", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("sslrootcert: no usable certificate")?;
    let verifier = Arc::new(Verifier {
        check,
        webpki,
        provider,
    });
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// libpq's three levels of checking the server's certificate; the
/// handshake's signatures are checked at every level.
#[derive(Debug)]
struct Verifier {
    check: Check,
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check == Check::None {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.check == Check::Chain => Ok(ServerCertVerified::assertion()),
            outcome => outcome,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_settings_are_taken_out_of_urls_and_words() {
        let (rest, mode, root) = take_tls_settings(
            "postgresql://u:p@db.example:5432/eddy?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgresql://u:p@db.example:5432/eddy?application_name=x"
        );
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root, Some(PathBuf::from("/tmp/ca.pem")));
        let (rest, mode, root) =
            take_tls_settings("host=db user=u sslmode=require sslrootcert='/ca.pem'").unwrap();
        assert_eq!(rest, "host=db user=u");
        assert_eq!(mode.as_deref(), Some("require"));
        assert_eq!(root, Some(PathBuf::from("/ca.pem")));
        let (rest, mode, _) = take_tls_settings("postgres://localhost/db").unwrap();
        assert_eq!((rest.as_str(), mode), ("postgres://localhost/db", None));
    }

    #[test]
    fn an_unknown_sslmode_is_named() {
        let e = PgTarget::parse("postgres://localhost/db?sslmode=maybe")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sslmode=maybe"), "{e}");
    }
}
