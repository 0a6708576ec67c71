//! The asset registry driver (use case 3; docs/design/mesh.md, "Asset registry"): registers
//! assets on this ledger, announces the ones it holds, answers for their history, and finds an
//! asset's owner by walking the proven histories of the ledgers it passed through
//! ([`crate::transfer::asset::Tracer`]).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use onoal_engine::checkpoint::NoteVerifier;
use onoal_engine::{Filter, LedgerId};

use super::routed::Target;
use super::transfer::{TransferError, proven_seqs};
use super::{Inner, Node};
use crate::proto::envelope::MessageType;
use crate::proto::message::ErrorCode;
use crate::proto::record::oid_is_under;
use crate::proto::routed::{AnswerError, RoutedAnswer, RoutedRequest, verify_query};
use crate::routing::Destination;
use crate::transfer::asset::{AssetHistory, Hop, Trace, Tracer, Walk};
use crate::transfer::{Book, Registration, STREAM, check_id};

/// Most claimants of one asset a trace walks from.
const MAX_CLAIMS: usize = 8;

/// A registration as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistrationView {
    /// The asset.
    pub asset: String,
    /// Its first owner, an OID on (or under) the registering ledger's.
    pub owner: String,
    /// What it is, as registered.
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Value>,
    /// The registering ledger.
    pub ledger: String,
    /// The entry's seq there.
    pub seq: u64,
    /// Its leaf hash, hex.
    pub leaf_hash: String,
    /// `LEDGER_ID:SEQ:LEAF_HASH`.
    pub reference: String,
    /// When it was written, ms since the epoch.
    pub time_ms: u64,
}

impl RegistrationView {
    fn of(r: &Registration) -> Self {
        Self {
            asset: r.body.asset.clone(),
            owner: r.body.owner.clone(),
            meta: r.body.meta.clone(),
            ledger: r.ledger.to_string(),
            seq: r.seq,
            leaf_hash: r.leaf_hash.to_hex(),
            reference: r.as_ref().to_string(),
            time_ms: r.time_ms,
        }
    }
}

/// A ledger that claims an asset, and what its claim came to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimView {
    /// The claiming ledger.
    pub ledger: String,
    /// Its OID.
    pub oid: String,
    /// Where the claim was found: `local`, `dht`, `registry`, `gossip`, ...
    pub source: String,
    /// `owner` (it holds the asset, proven), `handed_over` (its history proves it passed the
    /// asset on, to the owner) or `refuted` (its history does not hold; see `reason`).
    pub outcome: String,
    /// Why a claim was refuted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Who owns a registered asset, proven.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssetView {
    /// The asset.
    pub asset: String,
    /// Whether one owner is proven (no claim at all, every claim refuted, or two proven
    /// owners: `false`).
    pub verified: bool,
    /// The owning ledger.
    pub owner: Option<String>,
    /// The owner's OID: the registered owner while the asset never moved, else the owning
    /// ledger's.
    pub owner_oid: Option<String>,
    /// The registration, checked by its inclusion proof in the registering ledger's checkpoint.
    pub registration: Option<RegistrationView>,
    /// Its hand-overs, oldest first; each commit and credit checked by proof, each credit
    /// referencing its commit.
    pub hops: Vec<Hop>,
    /// Two claims proved different owners (two registrations of one id on two ledgers).
    pub contested: bool,
    /// Every claim found, with its outcome.
    pub claims: Vec<ClaimView>,
}

/// This ledger's history of `asset`, from its book (no proof needed: its own entries).
fn local_history(book: &Book, asset: &str) -> AssetHistory {
    AssetHistory { registration: book.registration(asset).cloned(), steps: book.asset_steps(asset) }
}

/// The answer to an asset request: this ledger's entries about the registered asset, proven
/// (none, when it has no history of it).
pub(super) fn answer(inner: &Inner, asset: &str, path: Vec<[u8; 32]>) -> RoutedAnswer {
    let refused = |code, message: String| RoutedAnswer::Refused { code, message };
    if let Err(e) = check_id("asset", asset) {
        return refused(ErrorCode::BadRequest, e);
    }
    let Some(desk) = inner.transfers.get() else {
        return refused(ErrorCode::BadRequest, TransferError::Disabled.to_string());
    };
    // No history is an answer too (proven against a checkpoint like any other): a destination
    // that has not credited yet says so.
    let seqs = desk.book.lock().asset_history(asset);
    match proven_seqs(&inner.ledger, seqs) {
        Ok((note, entries)) => RoutedAnswer::Query { note, entries, next_cursor: None, path },
        Err(e) => refused(ErrorCode::Internal, e),
    }
}

/// Checks an asset answer: the note with `verifier`, every proof, every entry about `asset`.
fn verified_history(
    verifier: &NoteVerifier,
    target: &Target,
    asset: &str,
    answer: RoutedAnswer,
) -> Result<(AssetHistory, Vec<[u8; 32]>), AnswerError> {
    let filter = Filter { stream: Some(STREAM.to_owned()), ..Filter::default() };
    let page = verify_query(verifier, &filter, 0, answer)?;
    let entries: Vec<_> = page.entries.iter().map(|e| (e.entry.clone(), e.leaf_hash)).collect();
    let history =
        AssetHistory::from_entries(target.ledger, asset, &entries).map_err(AnswerError::Content)?;
    Ok((history, page.path))
}

impl Node {
    /// Registers `asset` on this ledger, owned by `owner` (this ledger's OID when `None`, or
    /// an OID under it), with `meta`; the record announcing it follows from the transfer loop.
    ///
    /// # Errors
    /// [`TransferError`]: transfers not running, a bad id, an asset this ledger knows already,
    /// an owner outside this ledger's OID.
    pub async fn asset_register(
        &self,
        asset: &str,
        owner: Option<&str>,
        meta: Option<serde_json::Value>,
    ) -> Result<RegistrationView, TransferError> {
        let desk = self.desk()?;
        let own = self.inner.ledger.identity().oid.clone();
        let owner = owner.unwrap_or(own.as_str()).to_owned();
        if !oid_is_under(&owner, &own) {
            return Err(TransferError::Invalid(format!(
                "the owner {owner} is not this ledger's OID {own} or under it: an asset is registered on its owner's ledger"
            )));
        }
        let (d, ledger, wanted) = (desk.clone(), self.inner.ledger.clone(), asset.to_owned());
        let registration = self
            .blocking(move || {
                let mut book = d.book.lock();
                let entry = book
                    .register(&wanted, &owner, meta)
                    .map_err(|e| TransferError::Invalid(e.to_string()))?;
                let r = ledger.append(entry).map_err(|e| TransferError::Local(e.to_string()))?;
                let stored =
                    ledger.entry(r.seq).map_err(|e| TransferError::Local(e.to_string()))?;
                book.apply(&stored.entry, stored.leaf_hash).map_err(TransferError::Local)?;
                book.registration(&wanted)
                    .map(RegistrationView::of)
                    .ok_or_else(|| TransferError::Local("the registration was not taken".into()))
            })
            .await
            .map_err(|e| TransferError::Local(e.to_string()))??;
        desk.wake.notify_one();
        tracing::info!(asset = %registration.asset, seq = registration.seq, "asset registered");
        Ok(registration)
    }

    /// The registered assets this ledger holds.
    ///
    /// # Errors
    /// [`TransferError::Disabled`].
    pub async fn assets_held(&self) -> Result<Vec<HeldAsset>, TransferError> {
        let desk = self.desk()?;
        self.blocking(move || {
            let book = desk.book.lock();
            book.held_assets()
                .into_iter()
                .map(|a| HeldAsset {
                    registration: book.registration(&a).map(RegistrationView::of),
                    asset: a,
                })
                .collect()
        })
        .await
        .map_err(|e| TransferError::Local(e.to_string()))
    }

    /// This ledger's history of `asset`, or another ledger's, verified.
    async fn asset_history(&self, ledger: LedgerId, asset: &str) -> Result<AssetHistory, String> {
        if ledger == self.inner.ledger.identity().ledger_id {
            let desk = self.desk().map_err(|e| e.to_string())?;
            let wanted = asset.to_owned();
            return self
                .blocking(move || local_history(&desk.book.lock(), &wanted))
                .await
                .map_err(|e| e.to_string());
        }
        let request = RoutedRequest::Asset { asset: asset.to_owned() };
        let check = |verifier: &NoteVerifier, target: &Target, answer| {
            verified_history(verifier, target, asset, answer)
        };
        let to = Destination::Ledger(ledger);
        self.remote_call_checked(&to, request, MessageType::QueryRequest, check)
            .await
            .map(|a| a.value)
            .map_err(|e| e.to_string())
    }

    /// Who owns the registered asset `asset`: the claims found here, in the DHT and in the
    /// registry (within `deadline`), each walked to the owner and back to the registration,
    /// every step checked by proof.
    ///
    /// # Errors
    /// [`TransferError`]: a bad id, transfers not running.
    pub async fn asset_trace(
        &self,
        asset: &str,
        deadline: Duration,
    ) -> Result<AssetView, TransferError> {
        check_id("asset", asset).map_err(TransferError::Invalid)?;
        let desk = self.desk()?;
        let identity = self.inner.ledger.identity();
        let me = identity.ledger_id;
        let mut claims: Vec<(LedgerId, String, String)> = Vec::new();
        let wanted = asset.to_owned();
        let here = self
            .blocking(move || !desk.book.lock().asset_history(&wanted).is_empty())
            .await
            .map_err(|e| TransferError::Local(e.to_string()))?;
        if here {
            claims.push((me, identity.oid.as_str().to_owned(), "local".into()));
        }
        for k in self.discover_asset(asset, deadline).await {
            if !claims.iter().any(|c| c.0 == k.record.ledger_id) {
                claims.push((k.record.ledger_id, k.record.oid.clone(), k.source.as_str().into()));
            }
        }
        let mut histories: HashMap<LedgerId, Result<AssetHistory, String>> = HashMap::new();
        if claims.is_empty() {
            // Nothing announced it where this node looked (a mesh of pins, no DHT contacts, no
            // registry): ask the ledgers this node pinned.
            self.ask_pinned(asset, &mut claims, &mut histories).await;
        }
        claims.truncate(MAX_CLAIMS);
        let mut traced: Vec<(usize, Result<Trace, String>)> = Vec::new();
        for (i, (ledger, _, _)) in claims.iter().enumerate() {
            let mut tracer = Tracer::new(*ledger);
            for (l, h) in &histories {
                match h {
                    Ok(h) => tracer.give(*l, h.clone()),
                    Err(e) => tracer.unreachable(*l, e.clone()),
                }
            }
            let outcome = loop {
                match tracer.step() {
                    Walk::Need(l) => {
                        let h = self.asset_history(l, asset).await;
                        match &h {
                            Ok(h) => tracer.give(l, h.clone()),
                            Err(e) => tracer.unreachable(l, e.clone()),
                        }
                        histories.insert(l, h);
                    }
                    Walk::Done(t) => break Ok(t),
                    Walk::Failed(why) => break Err(why),
                }
            };
            traced.push((i, outcome));
        }
        let mut owners: Vec<&Trace> = Vec::new();
        for (_, t) in &traced {
            if let Ok(t) = t
                && !owners.iter().any(|o| o.owner == t.owner && o.registration == t.registration)
            {
                owners.push(t);
            }
        }
        let contested = owners.len() > 1;
        let proven = (owners.len() == 1).then(|| owners[0].clone());
        let claims = traced
            .iter()
            .map(|(i, t)| {
                let (ledger, oid, source) = &claims[*i];
                let (outcome, reason) = match t {
                    Ok(t) if t.owner == *ledger => ("owner", None),
                    Ok(_) => ("handed_over", None),
                    Err(why) => ("refuted", Some(why.clone())),
                };
                ClaimView {
                    ledger: ledger.to_string(),
                    oid: oid.clone(),
                    source: source.clone(),
                    outcome: outcome.to_owned(),
                    reason,
                }
            })
            .collect::<Vec<_>>();
        let owner_oid = match &proven {
            Some(t) if t.hops.is_empty() => Some(t.registration.body.owner.clone()),
            Some(t) => self.oid_of(t.owner, &claims).await,
            None => None,
        };
        Ok(AssetView {
            asset: asset.to_owned(),
            verified: proven.is_some(),
            owner: proven.as_ref().map(|t| t.owner.to_string()),
            owner_oid,
            registration: proven.as_ref().map(|t| RegistrationView::of(&t.registration)),
            hops: proven.map(|t| t.hops).unwrap_or_default(),
            contested,
            claims,
        })
    }

    /// Asks up to [`MAX_CLAIMS`] pinned ledgers, at once, for their history of `asset`; those
    /// with one become claims (source `pinned`).
    async fn ask_pinned(
        &self,
        asset: &str,
        claims: &mut Vec<(LedgerId, String, String)>,
        histories: &mut HashMap<LedgerId, Result<AssetHistory, String>>,
    ) {
        let me = self.inner.ledger.identity().ledger_id;
        let pinned: Vec<LedgerId> = self
            .inner
            .peers
            .pinned_keys()
            .into_iter()
            .map(|(l, _)| l)
            .filter(|l| *l != me)
            .take(MAX_CLAIMS)
            .collect();
        let asks =
            pinned.into_iter().map(|l| async move { (l, self.asset_history(l, asset).await) });
        for (l, h) in futures_util::future::join_all(asks).await {
            if let Ok(found) = &h
                && (found.registration.is_some() || !found.steps.is_empty())
            {
                let oid = self.inner.peers.get(&l).ok().flatten().and_then(|p| p.oid);
                claims.push((l, oid.unwrap_or_default(), "pinned".into()));
            }
            histories.insert(l, h);
        }
    }

    /// The OID of `ledger`: its claim, this node's own, or the record book's.
    async fn oid_of(&self, ledger: LedgerId, claims: &[ClaimView]) -> Option<String> {
        let text = ledger.to_string();
        if let Some(c) = claims.iter().find(|c| c.ledger == text) {
            return Some(c.oid.clone());
        }
        let identity = self.inner.ledger.identity();
        if identity.ledger_id == ledger {
            return Some(identity.oid.as_str().to_owned());
        }
        self.resolve_target(&Destination::Ledger(ledger)).await.ok().map(|t| t.oid)
    }
}

/// A registered asset this ledger holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeldAsset {
    /// The asset.
    pub asset: String,
    /// Its registration, when it was registered here.
    pub registration: Option<RegistrationView>,
}
