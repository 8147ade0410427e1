//! HTTPS: the server's certificate and key, loaded from PEM files with rustls (the `ring`
//! provider; TLS 1.2 and 1.3 only), checked at start so a mistake stops the server with a
//! plain message instead of failing every handshake later.
//!
//! ALPN offers `h2` and `http/1.1`: gRPC clients (OTLP exporters) insist on `h2` over
//! TLS, and `serve.rs` hands the decrypted stream to the same `auto` builder that
//! detects HTTP/2 from its preface.
//!
//! The certificate is held behind a resolver that can swap it while serving:
//! [`Tls::reload`] reads the files again (on SIGHUP, or when their modification time
//! changes, see [`Tls::watch`]), and a pair that fails the start checks is logged and
//! ignored, so a half-written renewal never takes HTTPS down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Only one of the two settings is given.
    #[error("tls_cert and tls_key go together: {given} is set but {missing} is not")]
    Half {
        /// The setting given.
        given: &'static str,
        /// The one missing.
        missing: &'static str,
    },
    /// A file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file has no `CERTIFICATE` block.
    #[error("{path} holds no PEM certificate (a \"-----BEGIN CERTIFICATE-----\" block)")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A PEM block is damaged.
    #[error("{path} is not valid PEM: {why}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        why: String,
    },
    /// The key file has no private key block.
    #[error(
        "{path} holds no private key (a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \
         \"EC PRIVATE KEY\" block)"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is of a kind rustls cannot sign with.
    #[error("{path}: unsupported private key: {why}")]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        why: String,
    },
    /// The key is not the certificate's.
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate cannot be parsed or used.
    #[error("{path}: unusable certificate: {why}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        why: String,
    },
}

/// The server's TLS settings: the files, and the certificate they hold now.
#[derive(Debug)]
pub struct Tls {
    cert_path: PathBuf,
    key_path: PathBuf,
    resolver: Arc<Resolver>,
    config: Arc<rustls::ServerConfig>,
    /// Modification times of the files when last loaded.
    stamps: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Tls {
    /// From the `tls_cert`/`tls_key` settings: `None` when neither is set (plain HTTP).
    pub fn from_settings(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Arc<Tls>>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Half {
                given: "tls_cert",
                missing: "tls_key",
            }),
            (None, Some(_)) => Err(TlsError::Half {
                given: "tls_key",
                missing: "tls_cert",
            }),
            (Some(cert), Some(key)) => Tls::load(cert, key).map(|tls| Some(Arc::new(tls))),
        }
    }

    /// Loads and checks the pair, and builds the acceptor.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let stamps = (modified(cert), modified(key));
        let certified = certified_key(cert, key)?;
        let resolver = Arc::new(Resolver(RwLock::new(Arc::new(certified))));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            resolver,
            config: Arc::new(config),
            stamps: RwLock::new(stamps),
        })
    }

    /// What accepts TLS connections with the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }

    /// Reads the files again; the new pair is served from the next handshake on. On
    /// error the old pair stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = (modified(&self.cert_path), modified(&self.key_path));
        let certified = certified_key(&self.cert_path, &self.key_path)?;
        *self.resolver.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
        *self.stamps.write().unwrap_or_else(|e| e.into_inner()) = stamps;
        Ok(())
    }

    /// Reloads on SIGHUP, and when either file's modification time changes (looked at
    /// every `every`), until the runtime stops. Logs the outcome either way. Call it
    /// within the Tokio runtime.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let tls = Arc::clone(self);
        // Registered before returning, so a SIGHUP from the moment the server says it is
        // ready reloads instead of ending the process (the signal's default action).
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let why = tokio::select! {
                    Some(()) = async { match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    } } => "SIGHUP",
                    _ = tick.tick() => {
                        if !tls.changed() {
                            continue;
                        }
                        "the files changed"
                    }
                };
                match tls.reload() {
                    Ok(()) => tracing::info!(cert = %tls.cert_path.display(), reason = %why,
                        "TLS certificate reloaded"),
                    Err(e) => {
                        // Do not retry the same broken files every tick.
                        let stamps = (modified(&tls.cert_path), modified(&tls.key_path));
                        *tls.stamps.write().unwrap_or_else(|e| e.into_inner()) = stamps;
                        tracing::error!(error = %e, reason = %why,
                            "TLS certificate not reloaded; still serving the previous one");
                    }
                }
            }
        });
    }

    fn changed(&self) -> bool {
        let now = (modified(&self.cert_path), modified(&self.key_path));
        *self.stamps.read().unwrap_or_else(|e| e.into_inner()) != now
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The crypto provider of every TLS endpoint in Embers.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads the chain and key and checks that they belong together.
fn certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_path.to_owned(),
            why: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: key_path.to_owned(),
        },
        e => TlsError::Pem {
            path: key_path.to_owned(),
            why: e.to_string(),
        },
    })?;
    let signing =
        provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::UnsupportedKey {
                path: key_path.to_owned(),
                why: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        }),
        Err(e) => Err(TlsError::BadCertificate {
            path: cert_path.to_owned(),
            why: e.to_string(),
        }),
    }
}

/// Hands every handshake the current pair.
#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `name` and its key, written to `dir`.
    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    fn served_name(tls: &Tls) -> Vec<u8> {
        let current = tls.resolver.0.read().unwrap();
        current.end_entity_cert().unwrap().to_vec()
    }

    #[test]
    fn settings_need_both_files_and_a_matching_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a.example");
        let (_, other_key) = pair(dir.path(), "b.example");
        assert!(Tls::from_settings(None, None).unwrap().is_none());
        assert!(matches!(
            Tls::from_settings(Some(&cert), None),
            Err(TlsError::Half {
                missing: "tls_key",
                ..
            })
        ));
        assert!(matches!(
            Tls::from_settings(None, Some(&key)),
            Err(TlsError::Half {
                missing: "tls_cert",
                ..
            })
        ));
        assert!(matches!(
            Tls::load(&cert, &other_key),
            Err(TlsError::KeyMismatch { .. })
        ));
        assert!(matches!(
            Tls::load(&key, &key),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(
            Tls::load(&cert, &cert),
            Err(TlsError::NoKey { .. })
        ));
        assert!(matches!(
            Tls::load(&dir.path().join("none"), &key),
            Err(TlsError::Read { .. })
        ));
        let tls = Tls::from_settings(Some(&cert), Some(&key))
            .unwrap()
            .unwrap();
        assert_eq!(
            tls.config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn reload_swaps_the_pair_and_keeps_the_old_one_when_the_new_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "old.example");
        let tls = Tls::load(&cert, &key).unwrap();
        let old = served_name(&tls);
        let (new_cert, new_key) = pair(dir.path(), "new.example");
        std::fs::copy(&new_cert, &cert).unwrap();
        // A renewal caught half-way: the new certificate, the old key.
        assert!(matches!(tls.reload(), Err(TlsError::KeyMismatch { .. })));
        assert_eq!(served_name(&tls), old);
        std::fs::copy(&new_key, &key).unwrap();
        tls.reload().unwrap();
        let new = served_name(&tls);
        assert_ne!(new, old);
        assert_eq!(
            new,
            std::fs::read(&new_cert)
                .map(|pem| { CertificateDer::from_pem_slice(&pem).unwrap().to_vec() })
                .unwrap()
        );
    }
}
