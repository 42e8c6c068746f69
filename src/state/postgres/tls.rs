//! TLS to the state database, as libpq's URL parameters ask for it.
//!
//! `sslmode=require`, `verify-ca` or `verify-full` turn TLS on; gpufleet
//! then always verifies the server's certificate and host name (libpq's
//! `verify-full`), against the CA file of `sslrootcert=` or else the
//! system's trusted roots: a state database holds who runs what, and its
//! password crosses the wire. Without `sslmode`, or with `disable`, `allow`
//! or `prefer`, the connection is plain (a Unix socket, or a trusted
//! network). The driver knows neither the `verify-*` modes nor
//! `sslrootcert`, so both are taken out of the URL here.

use crate::state::StateError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::PathBuf;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the URL asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tls {
    pub required: bool,
    /// `sslrootcert=`: the CA certificates (PEM) to trust instead of the system's.
    pub root_cert: Option<PathBuf>,
}

/// The URL without `sslmode` and `sslrootcert`, and what they said.
pub fn split(url: &str) -> Result<(String, Tls), StateError> {
    let mut tls = Tls::default();
    let mut take = |key: &str, value: String| -> Result<bool, StateError> {
        match key {
            "sslmode" => {
                tls.required = match value.as_str() {
                    "disable" | "allow" | "prefer" => false,
                    "require" | "verify-ca" | "verify-full" => true,
                    other => {
                        return Err(StateError::BadUrl {
                            why: format!(
                                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                            ),
                        });
                    }
                };
                Ok(true)
            }
            "sslrootcert" => {
                tls.root_cert = Some(PathBuf::from(value));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = match url.split_once('?') {
        // postgres://...?key=value&key=value
        Some((base, query)) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let mut kept = Vec::new();
            for pair in query.split('&') {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
                if !take(key, value)? {
                    kept.push(pair);
                }
            }
            if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) }
        }
        Some(_) => url.to_string(),
        // key=value key=value
        None if !url.contains("://") => {
            let mut kept = Vec::new();
            for word in url.split(' ') {
                let (key, value) = word.split_once('=').unwrap_or((word, ""));
                if !take(key.trim(), value.trim_matches('\'').to_string())? {
                    kept.push(word);
                }
            }
            kept.join(" ")
        }
        None => url.to_string(),
    };
    Ok((rest, tls))
}

impl Tls {
    /// The TLS connector, when TLS is asked for.
    pub fn connector(&self) -> Result<Option<MakeRustlsConnect>, StateError> {
        if !self.required {
            if self.root_cert.is_some() {
                return Err(StateError::BadUrl {
                    why: "sslrootcert= is given but TLS is not: add sslmode=verify-full".into(),
                });
            }
            return Ok(None);
        }
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let unreadable = |e: &dyn std::fmt::Display| StateError::BadUrl {
                    why: format!("sslrootcert={}: {e}", path.display()),
                };
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .map_err(|e| unreadable(&e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| unreadable(&e))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(unreadable(&"no PEM certificate in it"));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(StateError::BadUrl {
                        why: "sslmode asks for TLS, and this machine has no trusted CA certificates: \
                              give the database's CA with sslrootcert=FILE"
                            .into(),
                    });
                }
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StateError::BadUrl { why: format!("TLS: {e}") })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(MakeRustlsConnect::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url_and_others_stay() {
        let (url, tls) =
            split("postgres://u:p@db:5432/g?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem")
                .unwrap();
        assert_eq!(url, "postgres://u:p@db:5432/g?application_name=x");
        assert_eq!(tls, Tls { required: true, root_cert: Some("/etc/ca.pem".into()) });
        let (url, tls) = split("postgres://u@db/g?sslmode=prefer").unwrap();
        assert_eq!((url.as_str(), tls.required), ("postgres://u@db/g", false));
        let (url, tls) = split("host=db user=u sslmode=require dbname=g").unwrap();
        assert_eq!((url.as_str(), tls.required), ("host=db user=u dbname=g", true));
        let (url, tls) = split("postgres://u@db/g").unwrap();
        assert_eq!((url.as_str(), tls), ("postgres://u@db/g", Tls::default()));
    }

    #[test]
    fn an_unknown_sslmode_or_a_root_cert_without_tls_is_refused() {
        let err = split("postgres://u:secret@db/g?sslmode=always").unwrap_err();
        assert!(err.to_string().contains("sslmode=always is not one of"), "{err}");
        assert!(!err.to_string().contains("secret"));
        let (_, tls) = split("postgres://u@db/g?sslrootcert=/ca.pem").unwrap();
        assert!(tls.connector().is_err());
    }
}
