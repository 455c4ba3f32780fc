//! TLS settings for OpenFlow connections, as OVS's `ssl:`/`pssl:` peers expect them.
//!
//! Both directions are mutual: as a client (`tls:`) we present `--tls-cert`/`--tls-key` and
//! check the controller's certificate chains to `--tls-ca`; as a server (`pssl:`) we require a
//! client certificate signed by `--tls-ca`. Like OVS, the controller's certificate is not
//! checked against its address (OVS certificates name a switch or controller id, not an IP):
//! the chain to our CA is the authentication. TLS 1.2 and 1.3, ring provider only.
//! This module only builds configurations; it never opens sockets.

use crate::config::TlsFiles;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::io;
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
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

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| invalid(path, "cannot read private key", e))
}

fn roots(path: &Path) -> io::Result<Arc<RootCertStore>> {
    let mut store = RootCertStore::empty();
    for c in load_certs(path)? {
        store
            .add(c)
            .map_err(|e| invalid(path, "unusable CA certificate", e))?;
    }
    Ok(Arc::new(store))
}

struct Files<'a> {
    key: &'a Path,
    cert: &'a Path,
    ca: &'a Path,
}

fn files(tls: &TlsFiles) -> io::Result<Files<'_>> {
    match (&tls.key, &tls.cert, &tls.ca) {
        (Some(key), Some(cert), Some(ca)) => Ok(Files { key, cert, ca }),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TLS needs --tls-key, --tls-cert and --tls-ca",
        )),
    }
}

/// Checks a server's chain against our CA but accepts any name in it (see the module doc).
#[derive(Debug)]
struct ChainOnlyVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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

/// Client settings for `tls:` controllers: our certificate, the controller's chain to the CA.
pub fn client_config(tls: &TlsFiles) -> io::Result<Arc<ClientConfig>> {
    let f = files(tls)?;
    let provider = provider();
    let inner = WebPkiServerVerifier::builder_with_provider(roots(f.ca)?, provider.clone())
        .build()
        .map_err(|e| invalid(f.ca, "CA", e))?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnlyVerifier { inner }))
        .with_client_auth_cert(load_certs(f.cert)?, load_key(f.key)?)
        .map_err(|e| invalid(f.key, "key does not fit the certificate", e))?;
    Ok(Arc::new(config))
}

/// Server settings for `pssl:`: our certificate; clients must present one signed by the CA.
pub fn server_config(tls: &TlsFiles) -> io::Result<Arc<ServerConfig>> {
    let f = files(tls)?;
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(f.ca)?, provider.clone())
        .build()
        .map_err(|e| invalid(f.ca, "CA", e))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(f.cert)?, load_key(f.key)?)
        .map_err(|e| invalid(f.key, "key does not fit the certificate", e))?;
    Ok(Arc::new(config))
}
