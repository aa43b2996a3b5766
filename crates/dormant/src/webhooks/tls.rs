//! TLS for `https://` webhooks: which certificate authorities are trusted
//! (the public ones, plus `--webhook-ca-file`), the handshake on a
//! connection already made to a checked address, and what a failed
//! handshake means in words a person can act on.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Longest `--webhook-ca-file` read: a bundle of a few hundred certificates.
pub const MAX_CA_FILE: u64 = 1024 * 1024;
/// Longest wait for the TLS handshake, once connected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How deliveries to `https://` URLs check the receiver: the public
/// certificate authorities, plus those in `ca_file` (PEM) when given. The
/// error names the file and what is wrong with it.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        for cert in read_certificates(path)? {
            roots.add(cert).map_err(|e| {
                format!(
                    "{} holds a certificate that cannot be used as a trust root: {e}",
                    path.display()
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate in the PEM file at `path` (at least one).
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .len();
    if size > MAX_CA_FILE {
        return Err(format!(
            "{shown} is {size} bytes; a CA file may have at most {MAX_CA_FILE}"
        ));
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not a readable PEM file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{shown} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certs)
}

/// The name the receiver's certificate must carry: the URL's host (a name,
/// or an address literal). The error says why it cannot be one.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| format!("`{host}` cannot be checked against a certificate"))
}

/// Speaks TLS over `tcp` (already connected to a checked address), sending
/// `name` as SNI and checking the certificate against it, within
/// [`HANDSHAKE_TIMEOUT`].
pub async fn handshake(
    config: &Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, String> {
    let shown = name.to_str().into_owned();
    let connecting = TlsConnector::from(config.clone()).connect(name, tcp);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(explain(&shown, &e)),
        Err(_) => Err(format!(
            "no TLS handshake within {HANDSHAKE_TIMEOUT:?} (does it serve https on this port?)"
        )),
    }
}

const UNTRUSTED: &str = "its TLS certificate is not trusted: no known certificate authority \
    issued it (for a private CA, or a self-signed certificate, add it with --webhook-ca-file)";

const FORGED: &str = "its TLS certificate is not trusted: the certificate authority it names \
    did not sign it (if the receiver's CA or self-signed certificate changed, put the new one in \
    --webhook-ca-file)";

/// A failed handshake with `host`, said so that a person knows what to fix.
fn explain(host: &str, e: &io::Error) -> String {
    let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return format!("the TLS handshake failed: {e} (does it serve https on this port?)");
    };
    match tls {
        rustls::Error::InvalidCertificate(why) => match why {
            CertificateError::UnknownIssuer => UNTRUSTED.into(),
            // It names a trusted issuer (often: another self-signed
            // certificate with the same subject) that did not sign it.
            CertificateError::BadSignature => FORGED.into(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "its TLS certificate is not valid for `{host}`, the host in the webhook's URL"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "its TLS certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "its TLS certificate is not valid yet (is a clock wrong?)".into()
            }
            other => format!("its TLS certificate was refused: {other}"),
        },
        rustls::Error::InvalidMessage(_) => {
            format!("it does not speak TLS ({tls}); does it serve https on this port?")
        }
        other => format!("the TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::runtime::fake::TempDir;

    /// `contents` as a file in `dir`.
    fn file(dir: &TempDir, contents: &[u8]) -> std::path::PathBuf {
        let path = dir
            .path()
            .join(format!("{}.pem", crate::token::random_hex(4)));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn a_ca_file_adds_its_certificates_to_the_public_ones() {
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["ca.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let two = format!("{}{}", ca.pem(), ca.pem());
        let dir = TempDir::new("ca-file");
        let path = file(&dir, two.as_bytes());
        assert!(client_config(Some(&path)).is_ok());
        assert!(client_config(None).is_ok());
    }

    #[test]
    fn a_bad_ca_file_is_refused_naming_the_file_and_why() {
        let missing = std::path::Path::new("/nonexistent/ca.pem");
        let why = client_config(Some(missing)).unwrap_err();
        assert!(
            why.contains("/nonexistent/ca.pem") && why.contains("cannot read"),
            "{why}"
        );
        let dir = TempDir::new("ca-file");
        let empty = file(&dir, b"not a certificate\n");
        let why = client_config(Some(&empty)).unwrap_err();
        assert!(
            why.contains(&*empty.to_string_lossy()) && why.contains("no certificate"),
            "{why}"
        );
        let garbled = file(
            &dir,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let why = client_config(Some(&garbled)).unwrap_err();
        assert!(why.contains("cannot be used as a trust root"), "{why}");
    }

    #[test]
    fn a_certificate_refusal_says_what_to_do() {
        let refused = |why| {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(why),
            );
            explain("hooks.example.com", &e)
        };
        for (why, says) in [
            (CertificateError::UnknownIssuer, "not trusted"),
            (CertificateError::BadSignature, "not trusted"),
        ] {
            let told = refused(why);
            assert!(
                told.contains(says) && told.contains("--webhook-ca-file"),
                "{told}"
            );
        }
        assert!(refused(CertificateError::NotValidForName)
            .contains("not valid for `hooks.example.com`"));
        assert!(refused(CertificateError::Expired).contains("expired"));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(explain("h", &reset).contains("TLS handshake failed"));
    }
}
