//! Test certificates: a CA the test makes, and a server certificate it
//! signs for the names given (rcgen), written as PEM files.

use std::path::{Path, PathBuf};

pub struct Pki {
    /// The CA's certificate: what clients trust (`--tls-ca`, `sslrootcert`).
    pub ca: PathBuf,
    /// The server's certificate and key (`--tls-cert`, `--tls-key`).
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A new CA in `dir` and a server certificate signed by it for `names`
/// (host names or IP addresses).
pub fn make_pki(dir: &Path, names: &[&str]) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "eddy test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("eddy"));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}
