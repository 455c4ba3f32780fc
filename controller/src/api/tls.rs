//! TLS for the API: the server's settings (TLS 1.2 and 1.3, ring only, optional client certificates) and the check that makes a client certificate the ISP role.
//!
//! Client certificates are optional at the TLS layer so that token users connect without one.
//! The handshake still proves the client holds the key of the certificate it sent (its
//! signature is verified), but whether the chain leads to the ISP CA is decided after the
//! handshake ([`IspVerifier::check`]), so a certificate from another CA gets an HTTP 401 with
//! the reason instead of a bare TLS alert. Only configurations are built here; no sockets.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The one crypto provider (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(path: &Path, what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}: {e}", path.display()),
    )
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(path, "cannot read certificates", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, "bad certificate", e))?;
    if certs.is_empty() {
        return Err(invalid(
            path,
            "no certificate",
            "the file holds no CERTIFICATE block",
        ));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| invalid(path, "cannot read private key", e))
}

/// A root store of every certificate in a PEM file.
pub fn roots(path: &Path) -> io::Result<Arc<RootCertStore>> {
    let mut store = RootCertStore::empty();
    for c in load_certs(path)? {
        store
            .add(c)
            .map_err(|e| invalid(path, "unusable CA certificate", e))?;
    }
    Ok(Arc::new(store))
}

/// Checks client certificates against the ISP CA.
#[derive(Debug, Clone)]
pub struct IspVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl IspVerifier {
    /// From the ISP CA file.
    pub fn from_ca(path: &Path) -> io::Result<IspVerifier> {
        let inner = WebPkiClientVerifier::builder_with_provider(roots(path)?, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| invalid(path, "ISP CA", e))?;
        Ok(IspVerifier { inner })
    }

    /// Whether the chain the client sent leads to the ISP CA (and is valid now).
    pub fn check(&self, chain: &[CertificateDer<'_>]) -> Result<(), String> {
        let Some((end, rest)) = chain.split_first() else {
            return Err("no client certificate".into());
        };
        self.inner
            .verify_client_cert(end, rest, UnixTime::now())
            .map(|_| ())
            .map_err(|e| format!("client certificate not accepted: {e}"))
    }
}

/// Accepts any chain in the handshake (signatures are still verified) and offers the ISP CA
/// names; [`IspVerifier::check`] decides afterwards.
#[derive(Debug)]
struct DeferredVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The files the API's TLS needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// CA whose client certificates are the ISP role.
    pub isp_ca: std::path::PathBuf,
}

/// Server settings and the ISP check, from the files.
pub fn server_config(f: &TlsFiles) -> io::Result<(Arc<ServerConfig>, IspVerifier)> {
    let isp = IspVerifier::from_ca(&f.isp_ca)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?
        .with_client_cert_verifier(Arc::new(DeferredVerifier {
            inner: isp.inner.clone(),
        }))
        .with_single_cert(load_certs(&f.cert)?, load_key(&f.key)?)
        .map_err(|e| invalid(&f.key, "key does not fit the certificate", e))?;
    Ok((Arc::new(config), isp))
}

/// Client settings: the server's chain must lead to `ca`; with `cert_key`, a client
/// certificate is presented (the ISP role).
pub fn client_config(ca: &Path, cert_key: Option<(&Path, &Path)>) -> io::Result<Arc<ClientConfig>> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?
        .with_root_certificates(roots(ca)?);
    let config = match cert_key {
        Some((cert, key)) => b
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| invalid(key, "key does not fit the certificate", e))?,
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
