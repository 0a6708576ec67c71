//! The ledger certificate: a ledger's self-signed binding of its id, OID and key, with a
//! validity period. Exchanged in `Hello`, served for replicated ledgers (`Certificate`).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use onoal_engine::LedgerId;

/// Domain separation of certificate signatures.
const CERTIFICATE_CONTEXT: &[u8] = b"onoal ledger certificate v1\n";

/// A ledger's self-signed certificate: binds ledger id, OID and key, with a validity period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerCertificate {
    /// Ledger id.
    pub ledger_id: LedgerId,
    /// Hierarchical OID.
    pub oid: String,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Issued at (ms since the epoch).
    pub issued_ms: u64,
    /// Expires at (ms since the epoch).
    pub expires_ms: u64,
    /// Ed25519 signature by `public_key` over the context and the fields above.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Signature or key invalid.
    #[error("the ledger certificate's signature does not verify")]
    BadSignature,
    /// Outside its validity period.
    #[error("the ledger certificate is not valid now (issued {issued_ms}, expires {expires_ms})")]
    Expired {
        /// Issued.
        issued_ms: u64,
        /// Expires.
        expires_ms: u64,
    },
    /// The OID does not parse.
    #[error("the ledger certificate's OID is invalid: {0}")]
    BadOid(String),
}

impl LedgerCertificate {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = CERTIFICATE_CONTEXT.to_vec();
        out.extend_from_slice(self.ledger_id.as_bytes());
        // OIDs are at most 255 bytes; a longer one from a peer fails to parse below anyway.
        let len = u32::try_from(self.oid.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.oid.as_bytes());
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&self.issued_ms.to_be_bytes());
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        out
    }

    /// Issues a certificate valid from `now_ms` for `valid_ms`.
    pub fn issue(
        identity: &onoal_engine::Identity,
        key: &SigningKey,
        now_ms: u64,
        valid_ms: u64,
    ) -> Self {
        let mut cert = Self {
            ledger_id: identity.ledger_id,
            oid: identity.oid.as_str().to_owned(),
            public_key: *identity.public_key.as_bytes(),
            issued_ms: now_ms,
            expires_ms: now_ms.saturating_add(valid_ms),
            signature: Vec::new(),
        };
        cert.signature = key.sign(&cert.signed_bytes()).to_bytes().to_vec();
        cert
    }

    /// Checks the self-signature and validity at `now_ms`; returns the identity it binds.
    ///
    /// # Errors
    /// [`CertificateError`].
    pub fn verify(&self, now_ms: u64) -> Result<onoal_engine::Identity, CertificateError> {
        let key = VerifyingKey::from_bytes(&self.public_key)
            .map_err(|_| CertificateError::BadSignature)?;
        let sig =
            Signature::from_slice(&self.signature).map_err(|_| CertificateError::BadSignature)?;
        key.verify_strict(&self.signed_bytes(), &sig)
            .map_err(|_| CertificateError::BadSignature)?;
        if now_ms < self.issued_ms.saturating_sub(5 * 60_000) || now_ms > self.expires_ms {
            return Err(CertificateError::Expired {
                issued_ms: self.issued_ms,
                expires_ms: self.expires_ms,
            });
        }
        let oid = onoal_engine::Oid::parse(&self.oid)
            .map_err(|e| CertificateError::BadOid(e.to_string()))?;
        Ok(onoal_engine::Identity { ledger_id: self.ledger_id, oid, public_key: key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_verify_and_any_change_is_refused() {
        let key = onoal_engine::identity::SecretKey::from_seed(&[3; 32]);
        let identity = onoal_engine::Identity {
            ledger_id: LedgerId::from_bytes([9; 16]),
            oid: onoal_engine::Oid::parse("oid:onoal:test:a").unwrap(),
            public_key: key.public(),
        };
        let cert = LedgerCertificate::issue(&identity, key.signing_key(), 1_000_000, 1_000);
        assert_eq!(cert.verify(1_000_500).unwrap(), identity);
        assert!(matches!(cert.verify(2_000_001), Err(CertificateError::Expired { .. })));
        let bytes = postcard::to_stdvec(&cert).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            if let Ok(c) = postcard::from_bytes::<LedgerCertificate>(&b) {
                assert!(c.verify(1_000_500).is_err(), "byte {i} changed yet verified");
            }
        }
    }
}
