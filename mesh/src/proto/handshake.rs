//! The handshake after TLS: both sides exchange ledger certificates (`Hello`), and a receiver
//! decides which identity (ledger id, OID, pinned key) to replicate a ledger under. The TLS
//! layer already proved which key is on the other end; these checks bind that key to a ledger.

use onoal_engine::{Identity, LedgerId, Oid};

use super::cert::LedgerCertificate;
use super::message::{Request, Response};
use super::misbehaved::PeerMisbehaved;
use crate::id::PeerId;

/// What the client checks in the server's answer to its `Hello`: a certificate that verifies
/// now and names the key of the TLS handshake. Returns the certificate to remember.
///
/// # Errors
/// The answer is another message, or the certificate is invalid or for another key.
pub fn check_hello(
    response: Response,
    server: &PeerId,
    now_ms: u64,
) -> Result<LedgerCertificate, PeerMisbehaved> {
    let Response::Hello { certificate } = response else {
        return Err(PeerMisbehaved::UnexpectedResponse {
            request: "Hello",
            response: response.kind(),
        });
    };
    let identity = certificate.verify(now_ms).map_err(PeerMisbehaved::BadCertificate)?;
    if identity.public_key != *server.key() {
        return Err(PeerMisbehaved::CertificateMismatch(
            "its certificate names another key than its handshake",
        ));
    }
    Ok(certificate)
}

/// What the server takes from a client's `Hello`: the client's certificate, when it verifies
/// and names the client's TLS key (otherwise nothing is learned; the answer is the same).
pub fn client_certificate(
    request: &Request,
    client: &PeerId,
    now_ms: u64,
) -> Option<(LedgerCertificate, Identity)> {
    let Request::Hello { certificate } = request else { return None };
    let identity = certificate.verify(now_ms).ok()?;
    (identity.public_key == *client.key()).then(|| (certificate.clone(), identity))
}

/// Where the identity to replicate a ledger under comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityPlan {
    /// Known locally: the replica's pinned identity, or the pinned key with a learned OID.
    Known(Identity),
    /// Ask the source for the ledger's certificate and check it against the pinned key.
    AskCertificate(Request),
}

/// The identity to replicate `ledger` under: the replica's own (pinned when it was created),
/// else the pinned key with the OID learned from a verified certificate, else a certificate
/// the source serves.
pub fn identity_plan(
    ledger: LedgerId,
    replica: Option<&Identity>,
    pinned: &PeerId,
    learned_oid: Option<&str>,
) -> IdentityPlan {
    if let Some(identity) = replica {
        return IdentityPlan::Known(identity.clone());
    }
    match learned_oid.and_then(|o| Oid::parse(o).ok()) {
        Some(oid) => {
            IdentityPlan::Known(Identity { ledger_id: ledger, oid, public_key: *pinned.key() })
        }
        None => IdentityPlan::AskCertificate(Request::Certificate { ledger }),
    }
}

/// Checks the source's answer to [`IdentityPlan::AskCertificate`]: a valid certificate of
/// `ledger` under the pinned key. Returns the certificate (to remember) and the identity.
///
/// # Errors
/// Another message, an invalid certificate, or one of another key or ledger.
pub fn check_certificate(
    response: Response,
    ledger: LedgerId,
    pinned: &PeerId,
    now_ms: u64,
) -> Result<(LedgerCertificate, Identity), PeerMisbehaved> {
    let Response::Certificate { certificate } = response else {
        return Err(PeerMisbehaved::UnexpectedResponse {
            request: "Certificate",
            response: response.kind(),
        });
    };
    let identity = certificate.verify(now_ms).map_err(PeerMisbehaved::BadCertificate)?;
    if identity.public_key != *pinned.key() || identity.ledger_id != ledger {
        return Err(PeerMisbehaved::CertificateMismatch(
            "served a certificate of another key or ledger",
        ));
    }
    Ok((certificate, identity))
}

#[cfg(test)]
mod tests {
    use onoal_engine::identity::SecretKey;

    use super::*;

    fn cert(seed: u8, ledger: u8) -> (LedgerCertificate, PeerId) {
        let key = SecretKey::from_seed(&[seed; 32]);
        let identity = Identity {
            ledger_id: LedgerId::from_bytes([ledger; 16]),
            oid: Oid::parse("oid:onoal:test:x").unwrap(),
            public_key: key.public(),
        };
        (
            LedgerCertificate::issue(&identity, key.signing_key(), 1_000, 10_000),
            PeerId::new(key.public()),
        )
    }

    #[test]
    fn hello_needs_the_handshake_key() {
        let (c, peer) = cert(1, 1);
        let (_, other) = cert(2, 1);
        assert!(check_hello(Response::Hello { certificate: c.clone() }, &peer, 2_000).is_ok());
        assert!(matches!(
            check_hello(Response::Hello { certificate: c.clone() }, &other, 2_000),
            Err(PeerMisbehaved::CertificateMismatch(_))
        ));
        assert!(matches!(
            check_hello(Response::Hello { certificate: c }, &peer, 20_000),
            Err(PeerMisbehaved::BadCertificate(_))
        ));
        assert!(matches!(
            check_hello(Response::NoCheckpoint, &peer, 2_000),
            Err(PeerMisbehaved::UnexpectedResponse { request: "Hello", response: "NoCheckpoint" })
        ));
    }

    #[test]
    fn identity_comes_from_the_replica_then_the_learned_oid_then_a_certificate() {
        let (c, peer) = cert(1, 1);
        let id = LedgerId::from_bytes([1; 16]);
        let known = c.verify(2_000).unwrap();
        assert_eq!(
            identity_plan(id, Some(&known), &peer, None),
            IdentityPlan::Known(known.clone())
        );
        assert_eq!(
            identity_plan(id, None, &peer, Some("oid:onoal:test:x")),
            IdentityPlan::Known(known.clone())
        );
        assert_eq!(
            identity_plan(id, None, &peer, Some("not an oid")),
            IdentityPlan::AskCertificate(Request::Certificate { ledger: id })
        );
        assert_eq!(
            check_certificate(Response::Certificate { certificate: c.clone() }, id, &peer, 2_000)
                .unwrap()
                .1,
            known
        );
        let (_, other) = cert(3, 1);
        assert!(
            check_certificate(Response::Certificate { certificate: c.clone() }, id, &other, 2_000)
                .is_err()
        );
        assert!(
            check_certificate(
                Response::Certificate { certificate: c },
                LedgerId::from_bytes([2; 16]),
                &peer,
                2_000
            )
            .is_err()
        );
    }
}
