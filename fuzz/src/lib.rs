//! The mesh's pure wire formats, compiled from their own source files in `mesh/src` (not a
//! copy): `onoal-mesh` itself needs the engine with storage, and a fuzz build of it would
//! rebuild RocksDB under the sanitizer. These files need only the engine's formats, ed25519,
//! serde/postcard and foca.
#![allow(dead_code, unreachable_pub, missing_docs, unused_imports)]

#[path = "../../mesh/src/id.rs"]
pub mod id;

#[path = "../../mesh/src/swim.rs"]
pub mod swim;

pub mod proto;

#[path = "../../mesh/src/witness/mod.rs"]
pub mod witness;

/// The witness key the fuzz targets cosign with: seed 43.
pub fn cosigner() -> &'static onoal_engine::cosignature::Cosigner {
    static C: std::sync::OnceLock<onoal_engine::cosignature::Cosigner> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let key = onoal_engine::identity::SecretKey::from_seed(&[43; 32]);
        onoal_engine::cosignature::Cosigner::new("oid:onoal:fuzz/witness", key.signing_key().clone())
            .unwrap()
    })
}

/// The note verifier the fuzz targets check against: key seed 42, name `oid:onoal:fuzz`.
pub fn note_verifier() -> &'static onoal_engine::checkpoint::NoteVerifier {
    static V: std::sync::OnceLock<onoal_engine::checkpoint::NoteVerifier> =
        std::sync::OnceLock::new();
    V.get_or_init(|| {
        let key = onoal_engine::identity::SecretKey::from_seed(&[42; 32]);
        onoal_engine::checkpoint::NoteSigner::new("oid:onoal:fuzz", key.signing_key().clone())
            .unwrap()
            .verifier()
            .clone()
    })
}
