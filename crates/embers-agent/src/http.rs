//! The one HTTP client of the agent and `embers query`: ureq over rustls (the `ring`
//! provider), trusting the system's root certificates plus a private CA given with
//! `--ca-cert`, so a server with a certificate from an internal CA is verified like any
//! other, never "trusted anyway".
//!
//! A failed handshake is explained ([`explain`]): which host, and why in words (unknown
//! issuer, a certificate for another name, expired, not TLS at all), because ureq's own
//! message for these is a rustls enum name behind "io:".

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::CertificateError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// Why a client cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The CA file cannot be read.
    #[error("reading the CA certificate {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("{path} holds no PEM certificate (a \"-----BEGIN CERTIFICATE-----\" block): {why}")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

/// What a client trusts and how long it waits.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// PEM file of CA certificates trusted besides the system's roots.
    pub ca_cert: Option<PathBuf>,
    /// Timeout of a whole request; `None`: ureq's default (none).
    pub timeout: Option<Duration>,
}

/// An HTTP(S) client: statuses are answers, not errors (the caller reads 4xx bodies).
pub fn client(config: &ClientConfig) -> Result<ureq::Agent, ClientError> {
    let mut roots: Vec<Certificate<'static>> = system_roots();
    if let Some(path) = &config.ca_cert {
        roots.extend(ca_file(path)?);
    }
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    Ok(ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .timeout_global(config.timeout)
            .tls_config(tls)
            .build(),
    ))
}

/// The system's roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` or the distribution's bundle); a
/// machine without any still reaches servers whose CA comes with `--ca-cert`.
fn system_roots() -> Vec<Certificate<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "skipping a system root certificate");
    }
    found
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect()
}

fn ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, ClientError> {
    let pem = std::fs::read(path).map_err(|source| ClientError::Read {
        path: path.to_owned(),
        source,
    })?;
    let no_cert = |why: String| ClientError::NoCertificate {
        path: path.to_owned(),
        why,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| no_cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(no_cert("none found".into()));
    }
    // The same check rustls makes when it builds its root store, made here so a bad
    // file is an error now instead of a silently ignored root.
    let mut store = rustls::RootCertStore::empty();
    for cert in &certs {
        store
            .add(cert.clone())
            .map_err(|e| no_cert(format!("not a usable CA certificate: {e}")))?;
    }
    Ok(certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect())
}

/// `error` from a request to `url`, in words: certificate problems say which host and
/// why, and what to do about it.
pub fn explain(error: &ureq::Error, url: &str) -> String {
    let host = host(url);
    let Some(tls) = rustls_error(error) else {
        return format!("{url}: {error}");
    };
    let why = match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "it is signed by an unknown issuer (not one of \
                the system's root certificates; for a private CA pass --ca-cert FILE)"
                .to_owned(),
            CertificateError::NotValidForName => format!("it is not valid for the name {host}"),
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "it is not valid for the name {host} (it names {})",
                presented
                    .iter()
                    .map(|name| bare_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "it has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "it is not valid yet (is this machine's clock right?)".to_owned()
            }
            CertificateError::Revoked => "it has been revoked".to_owned(),
            CertificateError::BadSignature => "its signature does not verify".to_owned(),
            // webpki's reason for the common mistake of serving the CA certificate
            // itself (what `openssl req -x509` makes) as the server's certificate.
            CertificateError::Other(e) if format!("{e:?}").contains("CaUsedAsEndEntity") => {
                "it is a CA certificate (basicConstraints CA:TRUE) serving as the server's \
                 own; serve a certificate signed by that CA instead"
                    .to_owned()
            }
            other => format!("{other:?}"),
        },
        rustls::Error::InvalidMessage(_) => {
            return format!(
                "{url}: {host} did not answer TLS (is it serving plain HTTP? then use an \
                 http:// URL): {tls}"
            )
        }
        other => return format!("{url}: TLS with {host} failed: {other}"),
    };
    format!("{url}: the server's certificate for {host} is not trusted: {why}")
}

fn rustls_error(error: &ureq::Error) -> Option<&rustls::Error> {
    match error {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// `embers.internal` from rustls' `DnsName("embers.internal")` (and an address from
/// `IpAddress(…)`): the names a certificate presents, as a person writes them.
fn bare_name(presented: &str) -> &str {
    match (presented.find('('), presented.rfind(')')) {
        (Some(open), Some(close)) if open < close => presented[open + 1..close].trim_matches('"'),
        _ => presented,
    }
}

fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match authority.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_the_name_without_user_or_port() {
        assert_eq!(host("https://localhost:4040/render?x=1"), "localhost");
        assert_eq!(host("https://u:p@embers.example/push"), "embers.example");
        assert_eq!(host("https://[::1]:4040/"), "[::1]");
        assert_eq!(host("embers.example"), "embers.example");
        assert_eq!(
            bare_name(r#"DnsName("embers.internal")"#),
            "embers.internal"
        );
        assert_eq!(bare_name("IpAddress(10.0.0.5)"), "10.0.0.5");
        assert_eq!(bare_name("plain"), "plain");
    }

    #[test]
    fn certificate_errors_say_which_host_and_why() {
        let url = "https://embers.internal:4040/render";
        let io = |e: rustls::Error| {
            ureq::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        };
        let unknown = explain(
            &io(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
            url,
        );
        assert!(unknown.contains("embers.internal"), "{unknown}");
        assert!(unknown.contains("unknown issuer"), "{unknown}");
        assert!(unknown.contains("--ca-cert"), "{unknown}");
        let expired = explain(
            &ureq::Error::Rustls(rustls::Error::InvalidCertificate(CertificateError::Expired)),
            url,
        );
        assert!(expired.contains("expired"), "{expired}");
        let other = explain(&ureq::Error::ConnectionFailed, url);
        assert!(other.starts_with(url), "{other}");
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = client(&ClientConfig {
            ca_cert: Some(path.clone()),
            timeout: None,
        })
        .unwrap_err();
        assert!(matches!(e, ClientError::NoCertificate { .. }), "{e}");
        let e = client(&ClientConfig {
            ca_cert: Some(dir.path().join("missing.pem")),
            timeout: None,
        })
        .unwrap_err();
        assert!(matches!(e, ClientError::Read { .. }), "{e}");
    }
}
