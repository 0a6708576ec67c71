//! TLS 1.3 with RFC 7250 raw public keys: the ledger's Ed25519 key is the TLS identity on both
//! sides. No certificates, no CAs: a client checks the server's key against the key pinned for
//! the peer it dials; a server accepts any client key and learns it from the handshake (what
//! the client may read is decided per request, by pinning).

use std::sync::{Arc, Mutex};

use ed25519_dalek::{Signature, VerifyingKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use zeroize::Zeroize;

use onoal_engine::identity::SecretKey;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the key's 32 bytes follow.
const SPKI_ED25519_PREFIX: [u8; 12] =
    [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410); the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The SubjectPublicKeyInfo a raw-public-key handshake carries for `key`.
pub fn spki(key: &VerifyingKey) -> Vec<u8> {
    let mut out = SPKI_ED25519_PREFIX.to_vec();
    out.extend_from_slice(key.as_bytes());
    out
}

/// The Ed25519 key inside a raw-public-key "certificate", if it is one.
pub fn key_from_spki(der: &[u8]) -> Option<VerifyingKey> {
    let raw = der.strip_prefix(&SPKI_ED25519_PREFIX[..])?;
    VerifyingKey::from_bytes(raw.try_into().ok()?).ok()
}

fn certified_key(
    secret: &SecretKey,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    let mut seed = secret.signing_key().to_bytes();
    der.extend_from_slice(&seed);
    seed.zeroize();
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))?;
    let cert = CertificateDer::from(spki(&secret.public()));
    Ok(Arc::new(CertifiedKey::new(vec![cert], key)))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verify_ed25519(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::NoSignatureSchemesInCommon,
        ));
    }
    let key = key_from_spki(cert.as_ref())
        .ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let sig = Signature::from_slice(dss.signature())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))?;
    key.verify_strict(message, &sig)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}

/// What the client saw of the server's key, for a clear error after a refused handshake.
#[derive(Debug, Default)]
pub struct SeenKey(Mutex<Option<VerifyingKey>>);

impl SeenKey {
    /// The key the server presented, if the handshake got that far.
    pub fn get(&self) -> Option<VerifyingKey> {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct PinnedServerKey {
    expected: VerifyingKey,
    seen: Arc<SeenKey>,
}

impl ServerCertVerifier for PinnedServerKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = key_from_spki(end_entity.as_ref())
            .ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        *self.seen.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key);
        if key != self.expected {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct AnyClientKey;

impl ClientCertVerifier for AnyClientKey {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        key_from_spki(end_entity.as_ref())
            .ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Server side: present `secret`'s key, require a client key, offer `alpn`.
///
/// # Errors
/// When rustls refuses the configuration (never for a valid key).
pub fn server_config(
    secret: &SecretKey,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = provider();
    let key = certified_key(secret, &provider)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyClientKey))
        .with_cert_resolver(Arc::new(rustls::server::AlwaysResolvesServerRawPublicKeys::new(key)));
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(config)
}

/// Client side: present `secret`'s key, accept only a server presenting `expected`.
///
/// # Errors
/// When rustls refuses the configuration (never for a valid key).
pub fn client_config(
    secret: &SecretKey,
    expected: VerifyingKey,
    alpn: &[&[u8]],
) -> Result<(rustls::ClientConfig, Arc<SeenKey>), rustls::Error> {
    let provider = provider();
    let key = certified_key(secret, &provider)?;
    let seen = Arc::new(SeenKey::default());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerKey {
            expected,
            seen: seen.clone(),
        }))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(key),
        ));
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok((config, seen))
}

/// The key a peer presented in the handshake of `conn`.
pub fn peer_key(conn: &quinn::Connection) -> Option<VerifyingKey> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    key_from_spki(certs.first()?.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_round_trips_and_rejects_other_bytes() {
        let k = SecretKey::from_seed(&[7; 32]).public();
        assert_eq!(key_from_spki(&spki(&k)), Some(k));
        let mut bad = spki(&k);
        bad[3] ^= 1;
        assert_eq!(key_from_spki(&bad), None);
        assert_eq!(key_from_spki(&spki(&k)[..40]), None);
    }
}
