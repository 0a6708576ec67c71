//! The seed's use case 2, a two-phase token transfer between two ledgers, sans-I/O.
//!
//! Every step is an entry of the stream [`STREAM`] on the ledger that takes it, and every step
//! after the first references the other ledger's previous step, which the taker has verified by
//! an inclusion proof in a checkpoint signed by the other ledger's key:
//!
//! ```text
//! source (A)                     destination (B)
//! lock      ------------------>  reserve   (refs A's lock)
//! commit    (refs B's reserve)   credit    (refs A's commit)
//! confirm   (refs B's credit)
//! unlock    (A's abort)          release   (refs A's unlock: B will not take part)
//! ```
//!
//! The source's `commit` is the decision: before it, the source may time out or be refused and
//! unlock; after it, the transfer can only complete. The destination credits only against a
//! proven commit that references its own reservation, and releases only against a proven
//! unlock. So both ledgers end committed, or both aborted, whatever crashes in between; a
//! source that never comes back leaves the destination with a reservation it cannot release
//! (the blocking case of every two-phase commit, shown by `transfer status`).
//!
//! State is never stored apart from the entries: a [`Book`] is rebuilt from the stream on
//! start, and balances are derived from it (minted + received − sent − locked).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use onoal_engine::{Entry, EntryRef, Hash, LedgerId, Name, NewEntry};

/// The stream every token entry (mints and transfer steps) is written to.
pub const STREAM: &str = "tokens";

pub use crate::proto::record::MAX_ID_BYTES;

/// One kind of token entry (its entry type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// New tokens on this ledger (not part of a transfer).
    Mint,
    /// Source: the amount is set aside for the transfer.
    Lock,
    /// Destination: it will accept the amount (refs the lock).
    Reserve,
    /// Source: the decision to transfer (refs the reservation).
    Commit,
    /// Destination: the amount is received (refs the commit).
    Credit,
    /// Source: the destination's credit is seen (refs the credit).
    Confirm,
    /// Source: the transfer is aborted; the locked amount is available again.
    Unlock,
    /// Destination: it will not take part (refs the unlock, when there is one).
    Release,
    /// A registered asset (use case 3): one unit of an asset that exists once, with its owner
    /// and what it is (not part of a transfer).
    Register,
}

impl Step {
    /// Every step.
    pub const ALL: [Self; 9] = [
        Self::Mint,
        Self::Lock,
        Self::Reserve,
        Self::Commit,
        Self::Credit,
        Self::Confirm,
        Self::Unlock,
        Self::Release,
        Self::Register,
    ];

    /// Its entry type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mint => "mint",
            Self::Lock => "lock",
            Self::Reserve => "reserve",
            Self::Commit => "commit",
            Self::Credit => "credit",
            Self::Confirm => "confirm",
            Self::Unlock => "unlock",
            Self::Release => "release",
            Self::Register => "register",
        }
    }

    /// The step of an entry type.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the source (`true`) or the destination takes it.
    fn by_source(self) -> bool {
        matches!(self, Self::Lock | Self::Commit | Self::Confirm | Self::Unlock)
    }
}

/// The payload of a transfer step (JSON, so `onoal query` shows it as it is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepBody {
    /// The transfer's id, chosen by the source.
    pub transfer: String,
    /// The asset.
    pub asset: String,
    /// The amount, in the asset's smallest unit.
    pub amount: u64,
    /// The source ledger.
    pub from: LedgerId,
    /// The destination ledger.
    pub to: LedgerId,
    /// Lock only: when the source gives up waiting for the reservation, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Unlock and release: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the asset is a registered one (exists once; the destination announces it and
    /// answers for its history after the credit). Absent for fungible tokens.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub registered: bool,
}

impl StepBody {
    /// Whether two steps are about the same transfer of the same amount.
    fn same_transfer(&self, other: &Self) -> bool {
        self.transfer == other.transfer
            && self.asset == other.asset
            && self.amount == other.amount
            && self.from == other.from
            && self.to == other.to
            && self.registered == other.registered
    }
}

/// The payload of a mint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintBody {
    /// The asset.
    pub asset: String,
    /// The amount.
    pub amount: u64,
}

/// The payload of a registration (use case 3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBody {
    /// The asset's id.
    pub asset: String,
    /// Its owner: this ledger's OID or an OID under it.
    pub owner: String,
    /// What the asset is (any JSON, at most [`MAX_META_BYTES`] as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

/// Largest `meta` of a registration, bytes of JSON.
pub const MAX_META_BYTES: usize = 4096;

/// A registration as recorded on its ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The ledger it is on.
    pub ledger: LedgerId,
    /// Its seq there.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// When it was written, ms since the epoch.
    pub time_ms: u64,
    /// What it says.
    pub body: RegisterBody,
}

impl Registration {
    /// The reference to it.
    pub fn as_ref(&self) -> EntryRef {
        EntryRef { ledger_id: self.ledger, seq: self.seq, leaf_hash: self.leaf_hash }
    }

    /// The registration of `ledger` in `entry` (`None` when it is another token entry).
    ///
    /// # Errors
    /// A registration whose payload does not parse.
    pub fn from_entry(
        ledger: LedgerId,
        entry: &Entry,
        leaf_hash: Hash,
    ) -> Result<Option<Self>, String> {
        if entry.content.entry_type.as_str() != Step::Register.as_str() {
            return Ok(None);
        }
        let body: RegisterBody = serde_json::from_slice(&entry.content.payload)
            .map_err(|e| format!("entry {}'s payload is not a registration: {e}", entry.seq))?;
        Ok(Some(Self { ledger, seq: entry.seq, leaf_hash, time_ms: entry.timestamp_ms, body }))
    }
}

/// A step as recorded on one ledger (the own one, or the other party's, verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The ledger it is on.
    pub ledger: LedgerId,
    /// Its seq there.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// When it was written, ms since the epoch.
    pub time_ms: u64,
    /// Which step.
    pub step: Step,
    /// What it says.
    pub body: StepBody,
    /// What it references.
    pub refs: Vec<EntryRef>,
}

impl Recorded {
    /// The reference to it.
    pub fn as_ref(&self) -> EntryRef {
        EntryRef { ledger_id: self.ledger, seq: self.seq, leaf_hash: self.leaf_hash }
    }

    /// A transfer step of `ledger` from its entry (`None` for a mint or a registration).
    ///
    /// # Errors
    /// Not a token entry, or a payload that does not parse.
    pub fn from_entry(
        ledger: LedgerId,
        entry: &Entry,
        leaf_hash: Hash,
    ) -> Result<Option<Self>, String> {
        let c = &entry.content;
        if c.stream.as_str() != STREAM {
            return Err(format!("entry {} is not in the stream {STREAM}", entry.seq));
        }
        let step = Step::parse(c.entry_type.as_str())
            .ok_or_else(|| format!("entry {} has the unknown type {}", entry.seq, c.entry_type))?;
        if matches!(step, Step::Mint | Step::Register) {
            return Ok(None);
        }
        let body: StepBody = serde_json::from_slice(&c.payload)
            .map_err(|e| format!("entry {}'s payload is not a transfer step: {e}", entry.seq))?;
        Ok(Some(Self {
            ledger,
            seq: entry.seq,
            leaf_hash,
            time_ms: entry.timestamp_ms,
            step,
            body,
            refs: c.refs.clone(),
        }))
    }
}

/// A step to write: what [`Book`] decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewStep {
    /// Which step.
    pub step: Step,
    /// Its payload.
    pub body: StepBody,
    /// The other ledger's step it answers.
    pub refs: Vec<EntryRef>,
}

impl NewStep {
    /// The entry to append.
    ///
    /// # Errors
    /// Never for the names used here; kept as a `Result` for the engine's name rules.
    pub fn to_entry(&self) -> Result<NewEntry, String> {
        let payload = serde_json::to_vec(&self.body).map_err(|e| e.to_string())?;
        let mut e = NewEntry::new(stream_name(), step_name(self.step), payload);
        e.refs.clone_from(&self.refs);
        Ok(e)
    }
}

fn stream_name() -> Name {
    Name::stream(STREAM).unwrap_or_else(|_| unreachable!("`tokens` is a valid stream name"))
}

fn step_name(step: Step) -> Name {
    Name::entry_type(step.as_str()).unwrap_or_else(|_| unreachable!("step names are valid types"))
}

/// The mint entry of `amount` of `asset`.
///
/// # Errors
/// A bad asset id or a zero amount.
pub fn mint_entry(asset: &str, amount: u64) -> Result<NewEntry, String> {
    check_id("asset", asset)?;
    if amount == 0 {
        return Err("mint a positive amount".into());
    }
    let payload = serde_json::to_vec(&MintBody { asset: asset.to_owned(), amount })
        .map_err(|e| e.to_string())?;
    Ok(NewEntry::new(stream_name(), step_name(Step::Mint), payload))
}

/// Checks an asset or transfer id: 1 to [`MAX_ID_BYTES`] bytes of letters, digits, `-_.:`.
///
/// # Errors
/// What is wrong with it.
pub fn check_id(what: &str, id: &str) -> Result<(), String> {
    if crate::proto::record::is_valid_id(id) {
        Ok(())
    } else {
        Err(format!("the {what} id {id:?} must be 1 to {MAX_ID_BYTES} letters, digits or `-_.:`"))
    }
}

/// Where a transfer stands on one ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Source: locked, waiting for the reservation.
    Locked,
    /// Source: committed, waiting for the credit.
    Committed,
    /// Source: confirmed (complete).
    Confirmed,
    /// Source: unlocked (aborted).
    Unlocked,
    /// Destination: reserved, waiting for the commit or the unlock.
    Reserved,
    /// Destination: credited (complete).
    Credited,
    /// Destination: released (aborted).
    Released,
}

impl Phase {
    /// Whether this side has nothing more to do.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Confirmed | Self::Unlocked | Self::Credited | Self::Released)
    }

    /// `committed`, `aborted` or `pending`, the same word on both sides.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Committed | Self::Confirmed | Self::Credited => "committed",
            Self::Unlocked | Self::Released => "aborted",
            Self::Locked | Self::Reserved => "pending",
        }
    }
}

/// The steps of one transfer on one ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Its steps, by kind (each at most once).
    pub steps: BTreeMap<Step, Recorded>,
}

impl Transfer {
    /// The first step's body (what the transfer is).
    pub fn body(&self) -> &StepBody {
        &self.steps.values().next().unwrap_or_else(|| unreachable!("a transfer has a step")).body
    }

    /// This ledger's phase.
    pub fn phase(&self) -> Phase {
        let has = |s| self.steps.contains_key(&s);
        if has(Step::Confirm) {
            Phase::Confirmed
        } else if has(Step::Commit) {
            Phase::Committed
        } else if has(Step::Unlock) {
            Phase::Unlocked
        } else if has(Step::Lock) {
            Phase::Locked
        } else if has(Step::Credit) {
            Phase::Credited
        } else if has(Step::Release) {
            Phase::Released
        } else {
            Phase::Reserved
        }
    }

    /// The recorded step of a kind.
    pub fn get(&self, step: Step) -> Option<&Recorded> {
        self.steps.get(&step)
    }

    /// Whether this ledger is the source.
    pub fn is_source(&self) -> bool {
        self.steps.keys().any(|s| s.by_source())
    }
}

/// A transfer's key: its source and its id (ids are the source's to choose).
pub type Key = (LedgerId, String);

/// Balances of one asset on one ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Balance {
    /// The asset.
    pub asset: String,
    /// What can be sent: minted + received − sent − locked.
    pub available: u64,
    /// Locked by transfers not yet committed or unlocked.
    pub locked: u64,
    /// Reserved for incoming transfers not yet credited or released.
    pub incoming: u64,
    /// Minted here.
    pub minted: u64,
    /// Credited by incoming transfers.
    pub received: u64,
    /// Committed by outgoing transfers.
    pub sent: u64,
}

/// Why a step was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The user's request cannot be done (a bad id, not enough balance).
    #[error("{0}")]
    Invalid(String),
    /// The other party's steps are wrong: forged, about another transfer, contradicting.
    #[error("the other ledger's steps do not hold: {0}")]
    Peer(String),
}

/// Every transfer and mint of one ledger, from its token entries.
#[derive(Clone, Debug)]
pub struct Book {
    me: LedgerId,
    transfers: HashMap<Key, Transfer>,
    minted: BTreeMap<String, u64>,
    registered: BTreeMap<String, Registration>,
    /// The transfers of each asset (so per-asset questions do not scan every transfer).
    by_asset: HashMap<String, Vec<Key>>,
    version: u64,
}

impl Book {
    /// An empty book of ledger `me`.
    pub fn new(me: LedgerId) -> Self {
        Self {
            me,
            transfers: HashMap::new(),
            minted: BTreeMap::new(),
            registered: BTreeMap::new(),
            by_asset: HashMap::new(),
            version: 0,
        }
    }

    /// This ledger.
    pub fn me(&self) -> LedgerId {
        self.me
    }

    /// Takes in one of the own ledger's token entries (in seq order).
    ///
    /// # Errors
    /// An entry that is not a token entry, or a second step of a kind for one transfer (the
    /// entry stays in the log; the book keeps the first).
    pub fn apply(&mut self, entry: &Entry, leaf_hash: Hash) -> Result<(), String> {
        self.version += 1;
        if let Some(reg) = Registration::from_entry(self.me, entry, leaf_hash)? {
            if self.knows(&reg.body.asset) {
                return Err(format!(
                    "entry {} registers the asset {}, which this ledger knows already",
                    entry.seq, reg.body.asset
                ));
            }
            *self.minted.entry(reg.body.asset.clone()).or_default() += 1;
            self.registered.insert(reg.body.asset.clone(), reg);
            return Ok(());
        }
        let Some(r) = Recorded::from_entry(self.me, entry, leaf_hash)? else {
            let m: MintBody = serde_json::from_slice(&entry.content.payload)
                .map_err(|e| format!("entry {}'s payload is not a mint: {e}", entry.seq))?;
            if self.is_registered(&m.asset) {
                return Err(format!("entry {} mints the registered asset {}", entry.seq, m.asset));
            }
            let total = self.minted.entry(m.asset).or_default();
            *total = total.saturating_add(m.amount);
            return Ok(());
        };
        let key = (r.body.from, r.body.transfer.clone());
        let by_asset = &mut self.by_asset;
        let t = self.transfers.entry(key.clone()).or_insert_with(|| {
            by_asset.entry(r.body.asset.clone()).or_default().push(key);
            Transfer { steps: BTreeMap::new() }
        });
        if t.steps.contains_key(&r.step) {
            return Err(format!(
                "entry {} repeats the {} of transfer {}",
                r.seq,
                r.step.as_str(),
                r.body.transfer
            ));
        }
        t.steps.insert(r.step, r);
        Ok(())
    }

    /// Changes with every entry taken in (a cheap "did anything change").
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the asset appears in this book at all (minted, registered, transferred).
    fn knows(&self, asset: &str) -> bool {
        self.minted.contains_key(asset) || self.by_asset.contains_key(asset)
    }

    /// The transfers of `asset`.
    fn transfers_of<'a>(&'a self, asset: &str) -> impl Iterator<Item = &'a Transfer> + 'a {
        self.by_asset.get(asset).into_iter().flatten().filter_map(|k| self.transfers.get(k))
    }

    /// Whether `asset` is a registered asset here: registered on this ledger, or moved to or
    /// from it as one.
    pub fn is_registered(&self, asset: &str) -> bool {
        self.registered.contains_key(asset) || self.transfers_of(asset).any(|t| t.body().registered)
    }

    /// The registration of `asset` on this ledger.
    pub fn registration(&self, asset: &str) -> Option<&Registration> {
        self.registered.get(asset)
    }

    /// The registration entry of `asset` owned by `owner`, with `meta`.
    ///
    /// # Errors
    /// [`Refusal::Invalid`]: a bad id, an asset this ledger knows already (registered, minted
    /// or transferred), meta over [`MAX_META_BYTES`].
    pub fn register(
        &self,
        asset: &str,
        owner: &str,
        meta: Option<serde_json::Value>,
    ) -> Result<NewEntry, Refusal> {
        check_id("asset", asset).map_err(Refusal::Invalid)?;
        if self.knows(asset) {
            return Err(Refusal::Invalid(format!(
                "the asset {asset} exists on this ledger already (`onoal balance --asset {asset}`); a registered asset exists once"
            )));
        }
        onoal_engine::Oid::parse(owner)
            .map_err(|e| Refusal::Invalid(format!("the owner {owner:?} is not an OID: {e}")))?;
        if let Some(m) = &meta
            && serde_json::to_vec(m).map_or(usize::MAX, |v| v.len()) > MAX_META_BYTES
        {
            return Err(Refusal::Invalid(format!(
                "the asset's meta is larger than {MAX_META_BYTES} bytes of JSON"
            )));
        }
        let body = RegisterBody { asset: asset.to_owned(), owner: owner.to_owned(), meta };
        let payload = serde_json::to_vec(&body).map_err(|e| Refusal::Invalid(e.to_string()))?;
        Ok(NewEntry::new(stream_name(), step_name(Step::Register), payload))
    }

    /// Checks that `asset` may be minted: not a registered asset.
    ///
    /// # Errors
    /// [`Refusal::Invalid`].
    pub fn may_mint(&self, asset: &str) -> Result<(), Refusal> {
        if self.is_registered(asset) {
            return Err(Refusal::Invalid(format!(
                "{asset} is a registered asset: it exists once and cannot be minted"
            )));
        }
        Ok(())
    }

    /// The registered assets this ledger holds now (available or locked), sorted.
    pub fn held_assets(&self) -> Vec<String> {
        let moved = self.by_asset.keys().filter(|a| !self.registered.contains_key(*a));
        let mut held: Vec<String> = self
            .registered
            .keys()
            .chain(moved)
            .filter(|a| self.is_registered(a))
            .filter(|a| {
                let b = self.balance_of(a);
                b.available + b.locked > 0
            })
            .cloned()
            .collect();
        held.sort();
        held
    }

    /// The seqs of this ledger's entries about the registered asset `asset`: its registration
    /// and every step of a transfer of it, in seq order (empty when it is not registered here).
    pub fn asset_history(&self, asset: &str) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.registered.get(asset).map(|r| r.seq).into_iter().collect();
        seqs.extend(self.asset_steps(asset).iter().map(|r| r.seq));
        seqs.sort_unstable();
        seqs
    }

    /// This ledger's steps of transfers of the registered asset `asset`, in seq order.
    pub fn asset_steps(&self, asset: &str) -> Vec<Recorded> {
        let mut steps: Vec<Recorded> = self
            .transfers_of(asset)
            .filter(|t| t.body().registered)
            .flat_map(|t| t.steps.values().cloned())
            .collect();
        steps.sort_by_key(|r| r.seq);
        steps
    }

    /// One transfer.
    pub fn get(&self, key: &Key) -> Option<&Transfer> {
        self.transfers.get(key)
    }

    /// Every transfer with this id (from any source).
    pub fn find(&self, id: &str) -> Vec<(&Key, &Transfer)> {
        self.transfers.iter().filter(|(k, _)| k.1 == id).collect()
    }

    /// Every transfer.
    pub fn all(&self) -> impl Iterator<Item = (&Key, &Transfer)> {
        self.transfers.iter()
    }

    /// Transfers this ledger still has to act on.
    pub fn open(&self) -> Vec<Key> {
        let mut v: Vec<Key> = self
            .transfers
            .iter()
            .filter(|(_, t)| !t.phase().is_final())
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    /// Balances per asset.
    pub fn balances(&self) -> Vec<Balance> {
        fn slot<'a>(by: &'a mut BTreeMap<String, Balance>, asset: &str) -> &'a mut Balance {
            by.entry(asset.to_owned())
                .or_insert_with(|| Balance { asset: asset.to_owned(), ..Balance::default() })
        }
        let mut by: BTreeMap<String, Balance> = BTreeMap::new();
        for (asset, n) in &self.minted {
            let b = slot(&mut by, asset);
            b.minted = b.minted.saturating_add(*n);
        }
        for t in self.transfers.values() {
            count(slot(&mut by, &t.body().asset), t);
        }
        by.into_values().map(settle).collect()
    }

    /// The balance of one asset (its transfers only).
    fn balance_of(&self, asset: &str) -> Balance {
        let mut b = Balance {
            asset: asset.to_owned(),
            minted: self.minted.get(asset).copied().unwrap_or(0),
            ..Balance::default()
        };
        for t in self.transfers_of(asset) {
            count(&mut b, t);
        }
        settle(b)
    }

    fn available(&self, asset: &str) -> u64 {
        self.balance_of(asset).available
    }

    /// The lock that starts a transfer of `amount` of `asset` to `to`.
    ///
    /// # Errors
    /// [`Refusal::Invalid`]: a bad id, a used id, a transfer to itself, nothing to send, or not
    /// enough available.
    pub fn lock(
        &self,
        id: &str,
        asset: &str,
        amount: u64,
        to: LedgerId,
        deadline_ms: u64,
    ) -> Result<NewStep, Refusal> {
        check_id("transfer", id).map_err(Refusal::Invalid)?;
        check_id("asset", asset).map_err(Refusal::Invalid)?;
        if to == self.me {
            return Err(Refusal::Invalid("a transfer goes to another ledger".into()));
        }
        if amount == 0 {
            return Err(Refusal::Invalid("transfer a positive amount".into()));
        }
        if self.transfers.contains_key(&(self.me, id.to_owned())) {
            return Err(Refusal::Invalid(format!(
                "transfer {id} exists already: see `onoal transfer status {id}`"
            )));
        }
        let have = self.available(asset);
        if have < amount {
            return Err(Refusal::Invalid(format!(
                "{amount} {asset} asked, {have} available (`onoal balance`)"
            )));
        }
        Ok(NewStep {
            step: Step::Lock,
            body: StepBody {
                transfer: id.to_owned(),
                asset: asset.to_owned(),
                amount,
                from: self.me,
                to,
                deadline_ms: Some(deadline_ms),
                reason: None,
                registered: self.is_registered(asset),
            },
            refs: Vec::new(),
        })
    }

    /// The unlock of a locked transfer (the source gives up: a timeout, a refusal).
    pub fn unlock(&self, key: &Key, reason: &str) -> Option<NewStep> {
        let t = self.transfers.get(key)?;
        let lock = t.get(Step::Lock)?;
        (t.phase() == Phase::Locked).then(|| NewStep {
            step: Step::Unlock,
            body: StepBody {
                deadline_ms: None,
                reason: Some(reason.to_owned()),
                ..lock.body.clone()
            },
            refs: Vec::new(),
        })
    }

    /// Whether a locked transfer's deadline has passed at `now_ms`.
    pub fn expired(&self, key: &Key, now_ms: u64) -> bool {
        self.transfers.get(key).is_some_and(|t| {
            t.phase() == Phase::Locked
                && t.get(Step::Lock).and_then(|l| l.body.deadline_ms).is_some_and(|d| now_ms >= d)
        })
    }

    /// The next step this ledger takes after seeing the other party's steps of transfer `key`
    /// (verified by the caller: each proven in a checkpoint signed by `peer`'s key), or none.
    ///
    /// # Errors
    /// [`Refusal::Peer`] when the other party's steps are not about this transfer, are taken by
    /// the wrong side, do not reference this ledger's steps, or contradict each other.
    pub fn next_step(
        &self,
        key: &Key,
        peer: LedgerId,
        theirs: &[Recorded],
    ) -> Result<Option<NewStep>, Refusal> {
        let bad = |s: String| Err(Refusal::Peer(s));
        let mine = self.transfers.get(key);
        // Their steps: all on their ledger, of this transfer, taken by their side, once each.
        let mut by: BTreeMap<Step, &Recorded> = BTreeMap::new();
        let source = key.0;
        let i_am_source = source == self.me;
        for r in theirs {
            if r.ledger != peer {
                return bad(format!("step {} is not on {peer}", r.seq));
            }
            if (r.body.from, r.body.transfer.as_str()) != (key.0, key.1.as_str()) {
                return bad(format!("entry {} is about another transfer", r.seq));
            }
            if r.step.by_source() == i_am_source || r.step == Step::Mint {
                return bad(format!(
                    "entry {} is a {} taken by the wrong side",
                    r.seq,
                    r.step.as_str()
                ));
            }
            let expect_other = if i_am_source { r.body.to } else { r.body.from };
            if expect_other != peer
                || (if i_am_source { r.body.from } else { r.body.to }) != self.me
            {
                return bad(format!("entry {} names other ledgers than these two", r.seq));
            }
            if by.insert(r.step, r).is_some() {
                return bad(format!("two {} steps", r.step.as_str()));
            }
        }
        // Bodies agree with each other and with ours.
        let first_mine = mine.map(Transfer::body);
        for r in by.values() {
            if let Some(m) = first_mine
                && !m.same_transfer(&r.body)
            {
                return bad(format!("its {} is about another amount or asset", r.step.as_str()));
            }
        }
        let refs_my = |r: &Recorded, step: Step| -> Result<bool, Refusal> {
            let Some(m) = mine.and_then(|t| t.get(step)) else { return Ok(false) };
            if r.refs.contains(&m.as_ref()) {
                Ok(true)
            } else {
                Err(Refusal::Peer(format!(
                    "its {} does not reference this ledger's {}",
                    r.step.as_str(),
                    step.as_str()
                )))
            }
        };
        let take = |step: Step, on: &Recorded, base: &StepBody, reason: Option<String>| {
            Ok(Some(NewStep {
                step,
                body: StepBody { deadline_ms: None, reason, ..base.clone() },
                refs: vec![on.as_ref()],
            }))
        };
        if i_am_source {
            let Some(t) = mine else {
                return bad(format!("this ledger has no transfer {}", key.1));
            };
            // Each of their steps answers ours: the reservation our lock, the credit our commit,
            // the release our unlock. Anything else is not what an honest destination writes.
            for (step, answers) in [
                (Step::Reserve, Step::Lock),
                (Step::Credit, Step::Commit),
                (Step::Release, Step::Unlock),
            ] {
                if let Some(r) = by.get(&step)
                    && !refs_my(r, answers)?
                {
                    return bad(format!(
                        "a {} before this ledger's {}",
                        step.as_str(),
                        answers.as_str()
                    ));
                }
            }
            let body = t.body().clone();
            return match t.phase() {
                Phase::Locked => match by.get(&Step::Reserve) {
                    Some(r) => take(Step::Commit, r, &body, None),
                    None => Ok(None),
                },
                Phase::Committed => match by.get(&Step::Credit) {
                    Some(r) => take(Step::Confirm, r, &body, None),
                    None => Ok(None),
                },
                Phase::Unlocked | Phase::Confirmed => Ok(None),
                p => bad(format!("this ledger is the source, not in phase {p:?}")),
            };
        }
        // The destination.
        if by.contains_key(&Step::Commit) && by.contains_key(&Step::Unlock) {
            return bad("it both committed and unlocked".into());
        }
        let Some(lock) = by.get(&Step::Lock) else {
            return if by.is_empty() { Ok(None) } else { bad("steps without a lock".into()) };
        };
        if lock.body.to != self.me {
            return bad("the lock is for another ledger".into());
        }
        let body = lock.body.clone();
        check_id("transfer", &body.transfer).map_err(Refusal::Peer)?;
        check_id("asset", &body.asset).map_err(Refusal::Peer)?;
        if body.amount == 0 {
            return bad("a lock of nothing".into());
        }
        let commit = by.get(&Step::Commit);
        if let Some(c) = commit
            && !refs_my(c, Step::Reserve)?
        {
            return bad("a commit before this ledger reserved".into());
        }
        let phase = mine.map(Transfer::phase);
        if phase == Some(Phase::Credited) && by.contains_key(&Step::Unlock) {
            return bad("it unlocked a transfer this ledger credited".into());
        }
        match phase {
            None => match by.get(&Step::Unlock) {
                // Told of the abort before any reservation: recorded, so a late lock is refused.
                Some(u) => take(Step::Release, u, &body, Some("the source unlocked it".into())),
                None => take(Step::Reserve, lock, &body, None),
            },
            Some(Phase::Reserved) => {
                if let Some(u) = by.get(&Step::Unlock) {
                    let why = u.body.reason.clone().unwrap_or_else(|| "unlocked".into());
                    take(Step::Release, u, &body, Some(format!("the source unlocked it: {why}")))
                } else if let Some(c) = commit {
                    take(Step::Credit, c, &body, None)
                } else {
                    Ok(None)
                }
            }
            _ => Ok(None),
        }
    }
}

/// Adds what `t` does to a balance of its asset.
fn count(b: &mut Balance, t: &Transfer) {
    let n = t.body().amount;
    match t.phase() {
        Phase::Locked => b.locked = b.locked.saturating_add(n),
        Phase::Committed | Phase::Confirmed => b.sent = b.sent.saturating_add(n),
        Phase::Reserved => b.incoming = b.incoming.saturating_add(n),
        Phase::Credited => b.received = b.received.saturating_add(n),
        Phase::Unlocked | Phase::Released => {}
    }
}

/// Fills in `available`: minted + received − sent − locked.
fn settle(mut b: Balance) -> Balance {
    b.available =
        (b.minted.saturating_add(b.received)).saturating_sub(b.sent).saturating_sub(b.locked);
    b
}

/// Reads the token entries of a ledger's own log into a book (entries the book does not take,
/// such as a second step of one kind, are logged and skipped).
///
/// # Errors
/// The log cannot be read.
pub fn load_book(ledger: &onoal_engine::Ledger) -> Result<Book, String> {
    let mut book = Book::new(ledger.identity().ledger_id);
    let filter = onoal_engine::Filter { stream: Some(STREAM.to_owned()), ..Default::default() };
    let mut cursor = None;
    loop {
        let query = onoal_engine::Query {
            filter: filter.clone(),
            cursor,
            limit: Some(10_000),
            max_bytes: None,
        };
        let page = ledger.query(&query).map_err(|e| e.to_string())?;
        for e in &page.entries {
            if let Err(why) = book.apply(&e.entry, e.leaf_hash) {
                tracing::warn!(seq = e.entry.seq, %why, "a token entry the book does not take");
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(book),
        }
    }
}

pub mod asset;

#[cfg(test)]
mod tests;
