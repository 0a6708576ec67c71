//! The seed's use case 3, a distributed asset registry, sans-I/O: who owns a registered asset
//! now, proven from the entries of the ledgers it passed through.
//!
//! A registered asset exists once: a `register` entry on its first owner's ledger, then moved
//! by two-phase transfers of amount 1 (their steps carry `registered`). Each ledger answers an
//! asset request with its [`AssetHistory`]: its registration of the asset and its steps of
//! transfers of it, each proven in a checkpoint signed by its key. A [`Tracer`] walks those:
//! forward from any ledger that claims the asset, along its committed hand-overs, to the
//! ledger that holds it now; then backward from there, each credit to the commit it
//! references on the previous holder, until the registration. A ledger that handed the asset
//! over twice, or a credit that references a commit its ledger does not show, ends the trace
//! with the reason. The driver fetches the histories the tracer asks for
//! ([`Walk::Need`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use onoal_engine::{Entry, Hash, LedgerId};

use super::{Recorded, Registration, Step};

/// Most hand-overs a trace follows.
pub const MAX_HOPS: usize = 64;

/// One ledger's verified entries about one registered asset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssetHistory {
    /// Its registration of the asset, when it registered it.
    pub registration: Option<Registration>,
    /// Its steps of transfers of the asset.
    pub steps: Vec<Recorded>,
}

/// A point where the asset came in, or went out, on one ledger.
#[derive(Clone, Copy, Debug)]
enum Event<'a> {
    Registered(&'a Registration),
    Credited(&'a Recorded),
    Committed(&'a Recorded),
}

impl Event<'_> {
    fn seq(&self) -> u64 {
        match self {
            Self::Registered(r) => r.seq,
            Self::Credited(r) | Self::Committed(r) => r.seq,
        }
    }
}

impl AssetHistory {
    /// The history of `ledger` from its (verified) entries about `asset`.
    ///
    /// # Errors
    /// An entry that is neither the asset's registration nor a step of a transfer of it as a
    /// registered asset.
    pub fn from_entries(
        ledger: LedgerId,
        asset: &str,
        entries: &[(Entry, Hash)],
    ) -> Result<Self, String> {
        let mut h = Self::default();
        for (e, leaf) in entries {
            if let Some(r) = Registration::from_entry(ledger, e, *leaf)? {
                if r.body.asset != asset || h.registration.is_some() {
                    return Err(format!("entry {} is not the one registration of {asset}", e.seq));
                }
                h.registration = Some(r);
            } else if let Some(r) = Recorded::from_entry(ledger, e, *leaf)? {
                if r.body.asset != asset || !r.body.registered || r.body.amount != 1 {
                    return Err(format!(
                        "entry {} is not a step of a transfer of the registered asset {asset}",
                        e.seq
                    ));
                }
                h.steps.push(r);
            } else {
                return Err(format!("entry {} is a mint, not about a registered asset", e.seq));
            }
        }
        h.steps.sort_by_key(|r| r.seq);
        Ok(h)
    }

    fn events(&self, ledger: LedgerId) -> Vec<Event<'_>> {
        let mut v: Vec<Event<'_>> = self.registration.iter().map(Event::Registered).collect();
        for r in &self.steps {
            match r.step {
                Step::Credit if r.body.to == ledger => v.push(Event::Credited(r)),
                Step::Commit if r.body.from == ledger => v.push(Event::Committed(r)),
                _ => {}
            }
        }
        v.sort_by_key(Event::seq);
        v
    }

    /// Whether this history shows the asset held by `ledger` at its end.
    pub fn holds(&self, ledger: LedgerId) -> bool {
        matches!(self.events(ledger).last(), Some(Event::Registered(_) | Event::Credited(_)))
    }
}

/// One hand-over of the asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hop {
    /// The transfer's id.
    pub transfer: String,
    /// The ledger that handed it over.
    pub from: String,
    /// The ledger it went to.
    pub to: String,
    /// The source's commit (`LEDGER_ID:SEQ:LEAF_HASH`).
    pub commit: String,
    /// The destination's credit; absent while the destination has not credited yet (the
    /// commit decided the transfer already).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit: Option<String>,
    /// When the commit was written, ms since the epoch.
    pub time_ms: u64,
}

/// Who owns the asset, and the proven path from its registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The ledger that holds it now.
    pub owner: LedgerId,
    /// Its registration.
    pub registration: Registration,
    /// Its hand-overs, oldest first.
    pub hops: Vec<Hop>,
}

/// What a [`Tracer`] wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Walk {
    /// The history of this ledger (then call [`Tracer::give`] or [`Tracer::unreachable`]).
    Need(LedgerId),
    /// The trace.
    Done(Trace),
    /// The trace does not hold, and why.
    Failed(String),
}

/// A walk from one claimant of an asset to its owner and back to its registration.
#[derive(Clone, Debug)]
pub struct Tracer {
    start: LedgerId,
    histories: HashMap<LedgerId, AssetHistory>,
    unreachable: HashMap<LedgerId, String>,
}

/// Why a walk stops before its result: a history is missing, or the walk does not hold.
enum Stop {
    Need(LedgerId),
    Failed(String),
}

impl From<Stop> for Walk {
    fn from(s: Stop) -> Self {
        match s {
            Stop::Need(l) => Self::Need(l),
            Stop::Failed(why) => Self::Failed(why),
        }
    }
}

/// Where the backward walk stands: the asset entered `at` by `event`.
enum Entered<'a> {
    Event(LedgerId, Event<'a>),
    /// Committed to `to` by this commit, which `to` has not credited yet.
    Pending(LedgerId, &'a Recorded),
}

impl Tracer {
    /// A walk that starts at the claimant `start`.
    pub fn new(start: LedgerId) -> Self {
        Self { start, histories: HashMap::new(), unreachable: HashMap::new() }
    }

    /// Gives the history of `ledger`, verified by the caller.
    pub fn give(&mut self, ledger: LedgerId, history: AssetHistory) {
        self.histories.insert(ledger, history);
    }

    /// Records that the history of `ledger` cannot be had, and why.
    pub fn unreachable(&mut self, ledger: LedgerId, why: String) {
        self.unreachable.insert(ledger, why);
    }

    fn history(&self, ledger: LedgerId) -> Result<&AssetHistory, Stop> {
        if let Some(h) = self.histories.get(&ledger) {
            return Ok(h);
        }
        Err(match self.unreachable.get(&ledger) {
            Some(why) => Stop::Failed(format!("the history on {ledger} cannot be had: {why}")),
            None => Stop::Need(ledger),
        })
    }

    /// The next thing to do: fetch a history, or the result. Runs the whole walk over the
    /// histories given so far (at most [`MAX_HOPS`] hand-overs each way).
    pub fn step(&self) -> Walk {
        match self.forward().and_then(|holder| self.backward(holder)) {
            Ok(t) => Walk::Done(t),
            Err(stop) => stop.into(),
        }
    }

    /// From the claimant along committed hand-overs to the ledger that holds the asset.
    fn forward(&self) -> Result<Entered<'_>, Stop> {
        let mut cur = self.start;
        let h = self.history(cur)?;
        let events = h.events(cur);
        let Some(mut last) = events.last().copied() else {
            return Err(Stop::Failed(format!("{cur} shows no history of the asset")));
        };
        for _ in 0..MAX_HOPS {
            let Event::Committed(commit) = last else { return Ok(Entered::Event(cur, last)) };
            let next = commit.body.to;
            let hn = self.history(next)?;
            let credit = hn.steps.iter().find(|r| {
                r.step == Step::Credit && r.body.to == next && r.refs.contains(&commit.as_ref())
            });
            let Some(credit) = credit else { return Ok(Entered::Pending(next, commit)) };
            // The first hand-over after that credit, if any.
            let after: Vec<Event<'_>> =
                hn.events(next).into_iter().filter(|e| e.seq() >= credit.seq).collect();
            cur = next;
            last = after
                .iter()
                .find(|e| matches!(e, Event::Committed(_)))
                .copied()
                .unwrap_or(after.first().copied().unwrap_or(Event::Credited(credit)));
        }
        Err(Stop::Failed(format!("more than {MAX_HOPS} hand-overs")))
    }

    /// From the holder back to the registration, each link checked.
    fn backward(&self, holder: Entered<'_>) -> Result<Trace, Stop> {
        let fail = |s: String| Err(Stop::Failed(s));
        let (owner, mut at, mut event, mut hops) = match holder {
            Entered::Event(l, e) => (l, l, e, Vec::new()),
            Entered::Pending(to, commit) => {
                let from = commit.body.from;
                let hop = hop_of(commit, None);
                (to, from, Event::Committed(commit), vec![hop])
            }
        };
        for _ in 0..=MAX_HOPS {
            let h = self.history(at)?;
            // The asset came in before `event` (itself, if it is the entry).
            let entry = match event {
                Event::Committed(c) => {
                    let before: Vec<Event<'_>> =
                        h.events(at).into_iter().filter(|e| e.seq() < c.seq).collect();
                    let Some(entry) =
                        before.iter().rev().find(|e| !matches!(e, Event::Committed(_))).copied()
                    else {
                        return fail(format!("{at} handed over an asset it never held"));
                    };
                    let twice =
                        before.iter().filter(|e| e.seq() > entry.seq()).find_map(|e| match e {
                            Event::Committed(other) => Some(other),
                            _ => None,
                        });
                    if let Some(other) = twice {
                        return fail(format!(
                            "{at} handed the asset over twice (transfers {} and {})",
                            other.body.transfer, c.body.transfer
                        ));
                    }
                    entry
                }
                e => e,
            };
            match entry {
                Event::Registered(r) => {
                    hops.reverse();
                    return Ok(Trace { owner, registration: r.clone(), hops });
                }
                Event::Credited(credit) => {
                    let from = credit.body.from;
                    let hp = self.history(from)?;
                    let Some(commit) = hp
                        .steps
                        .iter()
                        .find(|r| r.step == Step::Commit && credit.refs.contains(&r.as_ref()))
                    else {
                        return fail(format!(
                            "{at}'s credit of transfer {} references a commit {from} does not show",
                            credit.body.transfer
                        ));
                    };
                    if !commit.body.same_transfer(&credit.body) || commit.body.to != at {
                        return fail(format!(
                            "{from}'s commit of transfer {} is not the one {at} credited",
                            credit.body.transfer
                        ));
                    }
                    hops.push(hop_of(commit, Some(credit)));
                    at = from;
                    event = Event::Committed(commit);
                }
                Event::Committed(c) => {
                    return fail(format!("{at}'s commit {} has no entry before it", c.seq));
                }
            }
        }
        fail(format!("more than {MAX_HOPS} hand-overs"))
    }
}

fn hop_of(commit: &Recorded, credit: Option<&Recorded>) -> Hop {
    Hop {
        transfer: commit.body.transfer.clone(),
        from: commit.body.from.to_string(),
        to: commit.body.to.to_string(),
        commit: commit.as_ref().to_string(),
        credit: credit.map(|c| c.as_ref().to_string()),
        time_ms: commit.time_ms,
    }
}

#[cfg(test)]
mod tests;
