//! TLS configurations from files, on rustls with ring: the listener's (`server.tls`), and
//! clients' (HTTP egress, the CLI) that trust the system's roots plus a private CA, with a
//! client certificate when one is given (PEM certificate and key, or a PKCS#12 bundle).
//! AMQP connections use lapin's own loading of the same `TlsConfig`.

use crate::check::{ConfigError, invalid};
use crate::redact::HIDDEN;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

/// TLS to a broker or endpoint (`amqps://`, `https://`): a private CA, and a client
/// certificate when the peer asks for one (PEM certificate and PKCS#8 key, or a PKCS#12
/// bundle).
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust (the system's are trusted too).
    #[schema(value_type = Option<String>)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate (with `key`).
    #[schema(value_type = Option<String>)]
    pub cert: Option<PathBuf>,
    /// PEM PKCS#8 private key of `cert`.
    #[schema(value_type = Option<String>)]
    pub key: Option<PathBuf>,
    /// PKCS#12 bundle of client certificate and key, instead of `cert` and `key`.
    #[schema(value_type = Option<String>)]
    pub pkcs12: Option<PathBuf>,
    #[serde(default)]
    pub pkcs12_password: String,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("pkcs12", &self.pkcs12)
            .field(
                "pkcs12_password",
                &if self.pkcs12_password.is_empty() {
                    ""
                } else {
                    "***"
                },
            )
            .finish()
    }
}

/// A client bundle's password sent back hidden keeps the stored one, for the same bundle only.
pub fn bundle_password_kept(
    new: &mut Option<TlsConfig>,
    old: &Option<TlsConfig>,
) -> Result<(), ConfigError> {
    let Some(tls) = new.as_mut().filter(|t| t.pkcs12_password == HIDDEN) else {
        return Ok(());
    };
    match old {
        Some(old) if old.pkcs12 == tls.pkcs12 => {
            tls.pkcs12_password = old.pkcs12_password.clone();
            Ok(())
        }
        _ => Err(invalid(
            "tls.pkcs12_password",
            "is hidden (***) but the bundle is another: give its password",
        )),
    }
}

/// `tls.pkcs12_password` when it is still shown hidden.
pub fn hidden_bundle(tls: &Option<TlsConfig>) -> Option<String> {
    tls.as_ref()
        .is_some_and(|t| t.pkcs12_password == HIDDEN)
        .then(|| "tls.pkcs12_password".to_owned())
}

/// What is wrong with a TLS file or setting, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {problem}")]
pub struct TlsError {
    pub what: String,
    pub problem: String,
}

fn failed(what: &Path, problem: impl std::fmt::Display) -> TlsError {
    TlsError {
        what: what.display().to_string(),
        problem: problem.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(path, format!("cannot be read as PEM: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(path, format!("holds a bad certificate: {e}")))?;
    if certs.is_empty() {
        return Err(failed(path, "holds no certificate (PEM `CERTIFICATE`)"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| failed(path, format!("holds no usable private key (PEM): {e}")))
}

/// The listener's configuration: its certificate chain and key; HTTP/2 and HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(cert, e))?
        .with_no_client_auth()
        .with_single_cert(certificates(cert)?, private_key(key)?)
        .map_err(|e| failed(cert, format!("does not go with its key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A client's configuration: the system's roots and `tls.ca`, and a client certificate when
/// `tls` gives one.
pub fn client_config(tls: Option<&TlsConfig>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    // The system's roots: those that do not load are skipped (a bad one in the system's store
    // should not stop every connection).
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = tls.and_then(|t| t.ca.as_deref()) {
        for cert in certificates(ca)? {
            roots
                .add(cert)
                .map_err(|e| failed(ca, format!("holds a CA certificate rustls refuses: {e}")))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            what: "tls".into(),
            problem: e.to_string(),
        })?
        .with_root_certificates(roots);
    let identity = match tls {
        Some(TlsConfig {
            pkcs12: Some(bundle),
            pkcs12_password,
            ..
        }) => Some(pkcs12_identity(bundle, pkcs12_password)?),
        Some(TlsConfig {
            cert: Some(cert),
            key: Some(key),
            ..
        }) => Some((certificates(cert)?, private_key(key)?)),
        _ => None,
    };
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError {
                what: "tls.cert".into(),
                problem: format!("does not go with its key: {e}"),
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn pkcs12_identity(
    bundle: &Path,
    password: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let der = std::fs::read(bundle).map_err(|e| failed(bundle, format!("cannot be read: {e}")))?;
    let store = p12_keystore::KeyStore::from_pkcs12(&der, password)
        .map_err(|e| failed(bundle, format!("cannot be opened (wrong password?): {e}")))?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| failed(bundle, "holds no private key with its certificate"))?;
    let certs = chain
        .chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.key().to_vec()));
    Ok((certs, key))
}

/// Checks that a `TlsConfig`'s files say one thing: a certificate with its key, or a bundle.
pub fn check(tls: &TlsConfig) -> Result<(), String> {
    match (&tls.cert, &tls.key, &tls.pkcs12) {
        (Some(_), None, None) => Err("`cert` needs its `key`".into()),
        (None, Some(_), None) => Err("`key` needs its `cert`".into()),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            Err("give a client certificate as `cert` and `key`, or as `pkcs12`, not both".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(cert: bool, key: bool, pkcs12: bool) -> TlsConfig {
        TlsConfig {
            ca: Some("ca.pem".into()),
            cert: cert.then(|| "c.pem".into()),
            key: key.then(|| "c.key".into()),
            pkcs12: pkcs12.then(|| "c.p12".into()),
            pkcs12_password: String::new(),
        }
    }

    #[test]
    fn a_client_certificate_is_a_pair_or_a_bundle() {
        assert!(check(&tls(false, false, false)).is_ok(), "a CA alone");
        assert!(check(&tls(true, true, false)).is_ok(), "cert and key");
        assert!(check(&tls(false, false, true)).is_ok(), "a bundle alone");
        assert!(check(&tls(true, false, false)).unwrap_err().contains("key"));
        assert!(
            check(&tls(false, true, false))
                .unwrap_err()
                .contains("cert")
        );
        assert!(
            check(&tls(true, true, true))
                .unwrap_err()
                .contains("not both")
        );
        assert!(
            check(&tls(true, false, true))
                .unwrap_err()
                .contains("not both")
        );
    }
}
