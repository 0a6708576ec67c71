//! The sync cores in the simulator: real ledgers (RocksDB in temporary directories), the real
//! sessions and server core, messages through [`Net`] with latency, loss and partitions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onoal_engine::checkpoint::Checkpoint;
use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::replica::{ReplicaWriter, VerifiedBundle};
use onoal_engine::{Ledger, LedgerId, Name, NewEntry, Oid, TreeSize};

use crate::id::PeerId;
use crate::peer::PeerStore;
use crate::proto::LedgerCertificate;
use crate::proto::message::{Request, Response};
use crate::proto::serve::{self, Answer, Decision, Plan, ServeCore};
use crate::proto::sync::replica as apply;
use crate::proto::sync::{
    BundleReader, Event, FollowAction, FollowSession, RequestId, SessionError, SessionMode,
    SyncSession,
};
use crate::proto::{MAX_WAIT_MS, handshake};
use crate::sim::net::{Conditions, Net};
use crate::trust::store::TrustStore;

/// A request or an answer, on a stream the client numbered.
#[derive(Debug)]
pub(crate) enum Msg {
    Request { stream: u64, request: Request },
    Answer { stream: u64, response: Response, frames: Vec<u8> },
}

const TIMEOUT: Duration = Duration::from_secs(2);

/// What a follower's stream was for.
enum Pending {
    Hello,
    Wait,
    Session(RequestId),
}

struct Session {
    core: SyncSession<VerifiedBundle>,
    writer: ReplicaWriter,
    target: Option<Checkpoint>,
    /// Verified bundles the session holds, waiting for their predecessors (commits here are
    /// immediate, so these are all it holds).
    held: usize,
}

struct Follower {
    source: usize,
    ledger: LedgerId,
    follow: FollowSession,
    /// Open streams: what for, and when the answer is due (connects and long polls; the
    /// session keeps its own deadlines).
    streams: BTreeMap<u64, (Pending, Option<Instant>)>,
    session: Option<Session>,
    sleeping_until: Option<Instant>,
    syncs: u64,
    failures: u64,
}

pub(crate) struct SimNode {
    pub(crate) ledger: Arc<Ledger>,
    peers: PeerStore,
    trust: TrustStore,
    core: ServeCore,
    key: PeerId,
    follower: Option<Follower>,
    waits: Vec<(usize, u64, Plan, u64, Instant)>,
    _dir: tempfile::TempDir,
}

fn new_node(i: usize) -> SimNode {
    let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
    let dir = tempfile::Builder::new().prefix("onoal-sim-").tempdir_in(base).unwrap();
    let oid = Oid::parse(&format!("oid:onoal:sim:n{i}")).unwrap();
    let ledger = Arc::new(Ledger::builder(dir.path()).create(oid).unwrap());
    let secret = SecretKey::read_file(&key_path(dir.path())).unwrap();
    let cert =
        LedgerCertificate::issue(ledger.identity(), secret.signing_key(), now_ms(), 86_400_000);
    let peers = PeerStore::open(ledger.clone()).unwrap();
    let trust =
        TrustStore::open(ledger.clone(), peers.clone(), secret.signing_key().clone()).unwrap();
    SimNode {
        trust,
        key: PeerId::new(secret.public()),
        core: ServeCore::new(cert),
        peers,
        ledger,
        follower: None,
        waits: Vec::new(),
        _dir: dir,
    }
}

/// An answer as one message: the response, and a bundle's entry frames read all at once.
fn answer_msg(stream: u64, answer: Answer) -> Msg {
    match answer {
        Answer::Response(response) => Msg::Answer { stream, response, frames: Vec::new() },
        Answer::Bundle { header, mut entries } => {
            let mut frames = Vec::new();
            while let Some(chunk) =
                entries.next_chunk(1 << 20).expect("the source holds its entries")
            {
                frames.extend_from_slice(&chunk);
            }
            Msg::Answer { stream, response: header, frames }
        }
    }
}

fn now_ms() -> u64 {
    onoal_engine::time::now_ms()
}

/// The nodes and the network.
pub(crate) struct Sim {
    pub(crate) nodes: Vec<SimNode>,
    pub(crate) net: Net<Msg>,
    next_stream: u64,
    /// Most bytes one bundle's answer may hold (followers narrow their bundles past it).
    pub(crate) bundle_bytes: u64,
    /// Most verified bundles a follower holds besides the next in line: its memory budget, in
    /// bundles (a bundle past it is deferred, as the quinn driver does past its byte budget).
    pub(crate) hold_bundles: usize,
    /// Bundles deferred so far.
    pub(crate) deferred: u64,
}

impl Sim {
    /// `n` nodes, each pinning every other.
    pub(crate) fn new(n: usize, seed: u64, conditions: Conditions) -> Self {
        let nodes: Vec<SimNode> = (0..n).map(new_node).collect();
        for a in &nodes {
            for b in &nodes {
                if a.key != b.key {
                    a.peers.pin(b.ledger.identity().ledger_id, *b.key.as_bytes(), None).unwrap();
                }
            }
        }
        // Every node holds every other node's trust statements (as a trust_request to each
        // would give it), so relays serve replicas within their origins' policies.
        for a in &nodes {
            for b in &nodes {
                if a.key != b.key {
                    let statements = b.trust.own_statements(now_ms());
                    let signer = b.ledger.identity().ledger_id;
                    a.trust
                        .take_statements(signer, b.key.as_bytes(), statements, now_ms())
                        .unwrap();
                }
            }
        }
        Self {
            nodes,
            net: Net::new(seed, conditions),
            next_stream: 0,
            bundle_bytes: u64::MAX,
            hold_bundles: usize::MAX,
            deferred: 0,
        }
    }

    /// Node `node` follows `ledger` from node `source`.
    pub(crate) fn follow(&mut self, node: usize, source: usize, ledger: LedgerId) {
        self.nodes[node].follower = Some(Follower {
            source,
            ledger,
            follow: FollowSession::new(ledger, MAX_WAIT_MS),
            streams: BTreeMap::new(),
            session: None,
            sleeping_until: None,
            syncs: 0,
            failures: 0,
        });
    }

    /// Appends `n` entries to node `node`'s own log and signs a checkpoint.
    pub(crate) fn append(&mut self, node: usize, n: u64, tag: &str) {
        self.append_sized(node, n, tag, 0);
    }

    /// As [`Self::append`], each payload padded with `pad` bytes.
    pub(crate) fn append_sized(&mut self, node: usize, n: u64, tag: &str, pad: usize) {
        let l = &self.nodes[node].ledger;
        let entries = (0..n)
            .map(|i| {
                NewEntry::new(
                    Name::stream(["a", "b", "c"][(i % 3) as usize]).unwrap(),
                    Name::entry_type("t").unwrap(),
                    format!("{tag} {i} {}", "x".repeat(pad)).into_bytes(),
                )
            })
            .collect();
        l.append_batch(entries).unwrap();
        l.checkpoint_now().unwrap();
    }

    fn open_stream(
        &mut self,
        node: usize,
        pending: Pending,
        request: Request,
        deadline: Option<Instant>,
    ) {
        self.next_stream += 1;
        let stream = self.next_stream;
        let f = self.nodes[node].follower.as_mut().expect("a follower");
        let source = f.source;
        f.streams.insert(stream, (pending, deadline));
        self.net.send(node, source, Msg::Request { stream, request });
    }

    /// Runs until `until` (virtual), delivering messages and honouring every deadline.
    pub(crate) fn run_until(&mut self, until: Instant) {
        loop {
            self.step_nodes();
            while let Some(d) = self.net.pop_due() {
                self.deliver(d.from, d.to, d.msg);
                self.step_nodes();
            }
            let next = [self.net.next_arrival(), self.next_deadline()].into_iter().flatten().min();
            match next {
                Some(t) if t <= until => self.net.advance_to(t),
                _ => {
                    self.net.advance_to(until);
                    self.step_nodes();
                    return;
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut out: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                out = Some(out.map_or(t, |o| o.min(t)));
            }
        };
        for n in &self.nodes {
            for w in &n.waits {
                consider(Some(w.4));
            }
            if let Some(f) = &n.follower {
                // A follower that has just failed has nothing pending: it acts at once.
                if f.session.is_none() && f.streams.is_empty() && f.sleeping_until.is_none() {
                    consider(Some(self.net.now()));
                }
                consider(f.sleeping_until);
                for (_, d) in f.streams.values() {
                    consider(*d);
                }
                consider(f.session.as_ref().and_then(|s| s.core.poll_timeout()));
            }
        }
        out
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) {
        let now = self.net.now();
        match msg {
            Msg::Request { stream, request } => {
                let client = self.nodes[from].key;
                let node = &mut self.nodes[to];
                let pinned = node.peers.is_pinned(&client);
                let reader = node.peers.ledger_of(&client);
                let trust = &node.trust;
                let access: serve::Access<'_> =
                    &|l, scope| trust.admits(l, reader.as_ref(), scope, now_ms());
                let (decision, _) =
                    node.core.handle_request(&client, pinned, access, request, now_ms());
                match decision {
                    Decision::Respond(r) => self.net.send(to, from, answer_msg(stream, r.into())),
                    Decision::Execute(plan) => {
                        let answer = serve::execute(&node.ledger, &node.peers, &node.trust, plan);
                        self.net.send(to, from, answer_msg(stream, answer));
                    }
                    Decision::Wait { plan, have, wait } => {
                        node.waits.push((from, stream, plan, have, now + wait))
                    }
                    Decision::Witness(_) | Decision::Evidence(_) => {
                        panic!("the sync simulation sends no witness requests")
                    }
                }
            }
            Msg::Answer { stream, response, frames } => self.answered(to, stream, response, frames),
        }
    }

    fn answered(&mut self, node: usize, stream: u64, response: Response, frames: Vec<u8>) {
        let now = self.net.now();
        let Some(source) = self.nodes[node].follower.as_ref().map(|f| f.source) else { return };
        let source_key = self.nodes[source].key;
        let f = self.nodes[node].follower.as_mut().expect("checked");
        let Some((pending, _)) = f.streams.remove(&stream) else { return };
        match pending {
            Pending::Hello => match handshake::check_hello(response, &source_key, now_ms()) {
                Ok(_) => f.follow.connected(),
                Err(e) => panic!("honest Hello refused: {e}"),
            },
            Pending::Wait => {
                f.follow.wait_answered(&response).expect("an honest answer to a long poll");
            }
            Pending::Session(id) => {
                let Some(s) = f.session.as_mut() else { return };
                match (response, &s.target) {
                    (Response::Bundle { count, path }, Some(cp)) => {
                        let Some((first, width)) = s.core.bundle_of(id) else { return };
                        let mut reader =
                            BundleReader::new(first, width, cp.size, self.bundle_bytes);
                        let header =
                            postcard::to_stdvec(&Response::Bundle { count, path }).unwrap();
                        let mut result = reader.handle_frame(header).map(|_| None);
                        let mut d = crate::proto::FrameDecoder::new(u32::MAX);
                        d.push(&frames);
                        while let (Ok(None), Ok(Some(frame))) = (&result, d.next_frame()) {
                            result = reader.handle_frame(frame);
                        }
                        let verified = match result {
                            Ok(Some(_))
                                if s.held >= self.hold_bundles
                                    && s.core.next_commit() != Some(first) =>
                            {
                                self.deferred += 1;
                                Err(SessionError::Deferred)
                            }
                            Ok(Some(b)) => apply::verify(cp, b),
                            Ok(None) => Err(SessionError::Transport("bundle cut short".into())),
                            Err(e) => Err(e),
                        };
                        s.held += usize::from(verified.is_ok());
                        s.core.handle_bundle(now, id, verified);
                    }
                    (response, _) => s.core.handle_response(now, id, response),
                }
            }
        }
    }

    fn step_nodes(&mut self) {
        for i in 0..self.nodes.len() {
            self.serve_waits(i);
            self.step_follower(i);
        }
    }

    fn serve_waits(&mut self, i: usize) {
        let now = self.net.now();
        let node = &mut self.nodes[i];
        let mut k = 0;
        while k < node.waits.len() {
            let (client, stream, plan, have, deadline) = &node.waits[k];
            let ready = node
                .ledger
                .log_of(&plan.ledger())
                .is_none_or(|log| serve::newer_checkpoint(&log, *have));
            if ready || now >= *deadline {
                let (client, stream, plan) = (*client, *stream, plan.clone());
                node.waits.remove(k);
                let answer = serve::execute(&node.ledger, &node.peers, &node.trust, plan);
                self.net.send(i, client, answer_msg(stream, answer));
                return self.serve_waits(i);
            }
            k += 1;
        }
    }

    fn step_follower(&mut self, i: usize) {
        let now = self.net.now();
        let Some(f) = self.nodes[i].follower.as_mut() else { return };
        // Streams whose answer is overdue (connect, long poll): a transient failure.
        if f.streams.values().any(|(_, d)| d.is_some_and(|d| now >= d)) {
            return self.fail(i);
        }
        if let Some(s) = f.session.as_mut() {
            s.core.handle_timeout(now);
            return self.pump_session(i);
        }
        if f.sleeping_until.is_some_and(|t| now < t) || !f.streams.is_empty() {
            return;
        }
        f.sleeping_until = None;
        match f.follow.poll_action(now) {
            FollowAction::Connect => {
                let hello =
                    Request::Hello { certificate: self.nodes[i].core.certificate().clone() };
                self.open_stream(i, Pending::Hello, hello, Some(now + TIMEOUT));
            }
            FollowAction::Sync => {
                let node = &self.nodes[i];
                let f = node.follower.as_ref().expect("checked");
                // The pinned identity (every node pinned every other, with its OID).
                let owner = self.nodes.iter().find(|n| n.ledger.identity().ledger_id == f.ledger);
                let identity = owner.expect("a node owns the ledger").ledger.identity().clone();
                let writer = node.ledger.replica_writer(&identity).unwrap();
                let (held, have) = (writer.held(), writer.checkpoint().map_or(0, |c| c.size));
                let window = std::num::NonZeroUsize::new(8).expect("8");
                let core = SyncSession::new(
                    f.ledger,
                    TreeSize(held),
                    TreeSize(have),
                    SessionMode::Entries,
                    window,
                    TIMEOUT,
                    now,
                );
                let mut core = core;
                core.set_bundle_bytes(self.bundle_bytes);
                let f = self.nodes[i].follower.as_mut().expect("checked");
                f.session = Some(Session { core, writer, target: None, held: 0 });
                self.pump_session(i);
            }
            FollowAction::Wait(request) => {
                let deadline = now + TIMEOUT + Duration::from_millis(u64::from(MAX_WAIT_MS));
                self.open_stream(i, Pending::Wait, request, Some(deadline));
            }
            FollowAction::Sleep(until) => f.sleeping_until = Some(until),
        }
    }

    fn fail(&mut self, i: usize) {
        let now = self.net.now();
        let f = self.nodes[i].follower.as_mut().expect("a follower");
        f.streams.clear();
        if let Some(mut s) = f.session.take() {
            apply::record_failure(&mut s.writer, "sim failure");
        }
        f.failures += 1;
        f.follow.failed(now);
    }

    fn pump_session(&mut self, i: usize) {
        loop {
            let now = self.net.now();
            let f = self.nodes[i].follower.as_mut().expect("a follower");
            let Some(s) = f.session.as_mut() else { return };
            if let Some((id, request)) = s.core.poll_transmit() {
                self.open_stream(i, Pending::Session(id), request, None);
                continue;
            }
            let Some(event) = s.core.poll_event() else { return };
            match event {
                Event::AcceptCheckpoint { note, consistency } => {
                    let verdict = apply::accept(&mut s.writer, &note, &consistency, false);
                    s.target = s.writer.checkpoint().map(|c| c.checkpoint.clone());
                    s.core.checkpoint_accepted(now, verdict);
                }
                Event::CheckFork { note } => {
                    let r = apply::check_fork(&mut s.writer, &note);
                    s.core.fork_checked(now, r);
                }
                Event::CheckForkProof { old_root, proof } => {
                    let r = apply::check_fork_proof(&mut s.writer, old_root, &proof);
                    s.core.fork_proof_checked(now, r);
                }
                Event::Commit(bundles) => {
                    s.held -= bundles.len();
                    let c = apply::commit(&mut s.writer, bundles);
                    s.core.committed(now, c.bundles, c.result);
                }
                Event::CommitPage { .. } => panic!("no filtered syncs here"),
                Event::NothingToSync | Event::Done => {
                    apply::finish(&mut s.writer, &SessionMode::Entries).unwrap();
                    let size = TreeSize(s.writer.checkpoint().map_or(0, |c| c.size));
                    f.session = None;
                    f.syncs += 1;
                    f.follow.synced(size);
                    return;
                }
                Event::Failed(e) => {
                    // Lost messages, a relay that holds nothing yet, and a policy that does not
                    // let this node read are the only ways an honest session ends early; all are
                    // retried.
                    assert!(
                        matches!(
                            e,
                            SessionError::TimedOut { .. }
                                | SessionError::Refused(
                                    crate::proto::ErrorCode::UnknownLedger
                                        | crate::proto::ErrorCode::NotVisible,
                                    _
                                )
                        ),
                        "an honest session failed: {e}"
                    );
                    return self.fail(i);
                }
            }
        }
    }

    /// (syncs, failures) of node `i`'s follower.
    pub(crate) fn follower_stats(&self, i: usize) -> (u64, u64) {
        self.nodes[i].follower.as_ref().map_or((0, 0), |f| (f.syncs, f.failures))
    }
}

#[test]
fn a_log_travels_through_a_chain_of_relays_under_loss_and_a_healed_partition() {
    // A -> B -> C -> D: each follows the one before it; B, C and D serve the replica they hold.
    let conditions =
        Conditions { latency: (Duration::from_millis(5), Duration::from_millis(40)), loss: 0.05 };
    let mut sim = Sim::new(4, 0x5eed, conditions);
    let a = sim.nodes[0].ledger.identity().ledger_id;
    sim.append(0, 3000, "first");
    for (node, source) in [(1, 0), (2, 1), (3, 2)] {
        sim.follow(node, source, a);
    }
    let t0 = sim.net.now();
    // B and C cannot reach each other for the first 20 s (virtual).
    sim.net.partition(1, 2, t0 + Duration::from_secs(20));
    sim.run_until(t0 + Duration::from_secs(10));
    let held =
        |sim: &Sim, n: usize| sim.nodes[n].ledger.replica(&a).map_or(0, |r| r.head().unwrap().size);
    assert_eq!(held(&sim, 1), 3000, "B synced from A despite the loss");
    assert_eq!(held(&sim, 2), 0, "C is cut off from B");
    // A keeps appending while the partition lasts, and after it heals.
    sim.append(0, 1000, "second");
    sim.run_until(t0 + Duration::from_secs(30));
    sim.append(0, 777, "third");
    sim.run_until(t0 + Duration::from_secs(120));

    let source = sim.nodes[0].ledger.head().unwrap();
    let source_cp = sim.nodes[0].ledger.latest_checkpoint().unwrap().unwrap();
    for n in 1..4 {
        let r = sim.nodes[n].ledger.replica(&a).expect("a replica");
        assert_eq!(r.head().unwrap(), source, "node {n}");
        assert_eq!(r.latest_checkpoint().unwrap().unwrap().note, source_cp.note, "node {n}");
        r.verify(&|_| {}).unwrap();
        for seq in [0, 2999, 3000, 4776] {
            assert_eq!(r.entry(seq).unwrap(), sim.nodes[0].ledger.entry(seq).unwrap());
        }
    }
    // The conditions really were adverse: messages were lost and cut, and syncs failed and
    // resumed.
    assert!(sim.net.lost > 0 && sim.net.cut > 0, "lost {} cut {}", sim.net.lost, sim.net.cut);
    let failures: u64 = (1..4).map(|n| sim.follower_stats(n).1).sum();
    eprintln!(
        "sent {} lost {} cut {}; (syncs, failures) B {:?} C {:?} D {:?}",
        sim.net.sent,
        sim.net.lost,
        sim.net.cut,
        sim.follower_stats(1),
        sim.follower_stats(2),
        sim.follower_stats(3)
    );
    assert!(failures > 0, "no sync failed: the loss was not exercised");
}

#[test]
fn large_entries_sync_in_narrower_bundles_under_a_byte_cap() {
    let conditions =
        Conditions { latency: (Duration::from_millis(1), Duration::from_millis(5)), loss: 0.0 };
    let mut sim = Sim::new(2, 7, conditions);
    sim.bundle_bytes = 8 << 10;
    let a = sim.nodes[0].ledger.identity().ledger_id;
    sim.append_sized(0, 1000, "big", 1000);
    sim.follow(1, 0, a);
    let t0 = sim.net.now();
    sim.run_until(t0 + Duration::from_secs(60));
    let r = sim.nodes[1].ledger.replica(&a).expect("a replica");
    assert_eq!(r.head().unwrap(), sim.nodes[0].ledger.head().unwrap());
    r.verify(&|_| {}).unwrap();
    // Each answer stayed under the cap: far more requests than 1,000 / 256 bundles.
    assert!(sim.net.sent > 200, "only {} messages: the bundles were not narrowed", sim.net.sent);
    assert_eq!(sim.follower_stats(1).1, 0, "a too-large bundle is not a failure");
}

#[test]
fn a_follower_short_of_memory_defers_bundles_and_still_ends_equal() {
    // Latency spread makes bundles arrive out of order; the follower may hold only two besides
    // the next in line, so the rest are deferred and asked again.
    let conditions =
        Conditions { latency: (Duration::from_millis(1), Duration::from_millis(40)), loss: 0.02 };
    let mut sim = Sim::new(2, 11, conditions);
    sim.hold_bundles = 2;
    let a = sim.nodes[0].ledger.identity().ledger_id;
    sim.append(0, 20_000, "a");
    sim.follow(1, 0, a);
    let t0 = sim.net.now();
    sim.run_until(t0 + Duration::from_secs(120));
    let r = sim.nodes[1].ledger.replica(&a).expect("a replica");
    assert_eq!(r.head().unwrap(), sim.nodes[0].ledger.head().unwrap());
    r.verify(&|_| {}).unwrap();
    assert!(sim.deferred > 0, "no bundle was deferred: the budget was not exercised");
}

#[test]
fn a_relay_stops_serving_what_the_origin_closes_and_resumes_when_it_opens() {
    use crate::trust::visibility::Visibility;
    // A -> B -> C; B serves C its replica of A within A's policy.
    let conditions =
        Conditions { latency: (Duration::from_millis(5), Duration::from_millis(20)), loss: 0.0 };
    let mut sim = Sim::new(3, 0x7a11, conditions);
    let a = sim.nodes[0].ledger.identity().ledger_id;
    let a_key = *sim.nodes[0].key.as_bytes();
    sim.append(0, 600, "open");
    sim.follow(1, 0, a);
    sim.follow(2, 1, a);
    let t0 = sim.net.now();
    sim.run_until(t0 + Duration::from_secs(10));
    let held =
        |sim: &Sim, n: usize| sim.nodes[n].ledger.replica(&a).map_or(0, |r| r.head().unwrap().size);
    assert_eq!((held(&sim, 1), held(&sim, 2)), (600, 600));

    // A closes stream `a`; B holds the new policy (as the trust exchange gives it to B).
    let now = now_ms();
    let policy = sim.nodes[0].trust.set_visibility(Some("a"), Visibility::Private, now).unwrap();
    assert!(sim.nodes[1].trust.take_policy(policy, &a_key).unwrap());
    let failures_before = sim.follower_stats(1).1 + sim.follower_stats(2).1;
    sim.append(0, 300, "closed");
    sim.run_until(t0 + Duration::from_secs(40));
    assert_eq!((held(&sim, 1), held(&sim, 2)), (600, 600), "nothing new left A or B");
    let failures = sim.follower_stats(1).1 + sim.follower_stats(2).1;
    assert!(failures > failures_before, "both followers were refused");

    // A opens it again: both catch up, verified.
    let policy = sim.nodes[0].trust.set_visibility(Some("a"), Visibility::Public, now + 1).unwrap();
    assert!(sim.nodes[1].trust.take_policy(policy, &a_key).unwrap());
    sim.run_until(t0 + Duration::from_secs(120));
    assert_eq!((held(&sim, 1), held(&sim, 2)), (900, 900));
    sim.nodes[2].ledger.replica(&a).unwrap().verify(&|_| {}).unwrap();
}
