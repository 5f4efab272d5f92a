//! TLS for the center, the agent and the CLI: rustls with one crypto provider (ring), configs
//! built from PEM files, and the device a client certificate names.
//!
//! A device certificate names its device by its subject: common name (CN) = the device id,
//! organization (O) = the tenant. The center accepts only certificates that chain to the
//! configured device CA; which routes require one is the center's choice (see
//! `device_client_cert` in `examples/center.toml`).
//!
//! Clients trust exactly the CA certificates in their `ca_file` (there are no built-in roots:
//! a center normally has a private CA; point `ca_file` at the system's bundle, such as
//! `/etc/ssl/certs/ca-certificates.crt`, to trust public CAs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

pub use rustls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
}

/// The CA certificates in a PEM file (DER each), for clients that take them one by one.
pub fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs(path)
}

/// The one crypto provider in the tree.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = |message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(e.to_string()))?;
    if certs.is_empty() {
        return Err(file("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.to_owned(),
        message: format!("no usable PEM private key: {e}"),
    })
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(path)? {
        roots.add(c).map_err(|e| TlsError::File {
            path: path.to_owned(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// The center's TLS: its certificate chain and key, and, with `client_ca`, client
/// certificates verified against it (optional at the handshake, so operators and devices
/// without one still connect; routes decide whether they need one).
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Config(format!("device CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs(cert_file)?, key(key_file)?)
        .map_err(|e| {
            TlsError::Config(format!(
                "{} and {} do not make a certificate and its key: {e}",
                cert_file.display(),
                key_file.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client's TLS: trusts the CA certificates in `ca_file`; with `identity` (certificate
/// chain file, key file) presents a client certificate.
pub fn client_config(
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca_file)?);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, k)) => builder
            .with_client_auth_cert(certs(cert)?, key(k)?)
            .map_err(|e| TlsError::Config(format!("client certificate {}: {e}", cert.display())))?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The device a (verified) certificate names: `(tenant, device id)` from its subject's O and
/// CN. `None` if it names none.
pub fn device_name(cert: &[u8]) -> Option<(String, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?;
    let o = subject.iter_organization().next()?.as_str().ok()?;
    Some((o.to_owned(), cn.to_owned()))
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

    use super::*;

    #[test]
    fn a_device_certificate_names_its_tenant_and_device() {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "MFP-0042");
        dn.push(DnType::OrganizationName, "acme");
        p.distinguished_name = dn;
        let cert = p.self_signed(&key).expect("cert");
        assert_eq!(
            device_name(cert.der()),
            Some(("acme".into(), "MFP-0042".into()))
        );
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&key).expect("ca");
        assert_eq!(device_name(ca.der()), None, "no CN and O: names no device");
        assert_eq!(device_name(b"not a certificate"), None);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().expect("dir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").expect("write");
        let e = server_config(&junk, &junk, None).expect_err("junk");
        assert!(e.to_string().contains("junk.pem"), "{e}");
        let e = client_config(&dir.path().join("missing.pem"), None).expect_err("missing");
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }
}
