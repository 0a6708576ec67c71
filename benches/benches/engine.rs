//! Criterion benches of the engine's hot paths. `cargo bench -p onoal-benches`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use onoal_engine::checkpoint::{Checkpoint, NoteSigner};
use onoal_engine::hash::{Hash, leaf_hash};
use onoal_engine::merkle::verify_inclusion;
use onoal_engine::tile::Tile;
use onoal_engine::{Durability, Entry, Ledger, Name, NewEntry, Oid};

fn sample_entry() -> NewEntry {
    NewEntry::new(
        Name::stream("orders").unwrap(),
        Name::entry_type("order.created").unwrap(),
        vec![7u8; 256],
    )
}

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("leaf");
    g.throughput(Throughput::Elements(1));
    let prepared = sample_entry().prepare();
    let mut buf = Vec::new();
    g.bench_function("prepare (encode + content hash, caller thread)", |b| {
        b.iter(|| sample_entry().prepare())
    });
    g.bench_function("seal (sequencer share of the leaf hash)", |b| {
        b.iter(|| prepared.seal(123_456, 1_700_000_000_000, &Hash::ZERO, &mut buf))
    });
    let entry = Entry { seq: 1, timestamp_ms: 2, content: sample_entry(), prev_hash: Hash::ZERO };
    let data = entry.leaf_data();
    g.bench_function("encode", |b| b.iter(|| entry.leaf_data()));
    g.bench_function("decode", |b| b.iter(|| Entry::decode(&data).unwrap()));
    g.bench_function("leaf_hash 300 B", |b| b.iter(|| leaf_hash(&data)));
    g.finish();
}

fn tiles(c: &mut Criterion) {
    let leaves: Vec<Hash> = (0..256u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut g = c.benchmark_group("tile");
    g.throughput(Throughput::Elements(256));
    g.bench_function("fill 256 leaves", |b| {
        b.iter(|| {
            let mut t = Tile::new();
            for h in &leaves {
                t.push(*h);
            }
            t
        })
    });
    g.finish();
}

fn proofs_and_checkpoints(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::builder(dir.path())
        .durability(Durability::Buffered)
        .create(Oid::parse("oid:onoal:bench").unwrap())
        .unwrap();
    for _ in 0..100 {
        ledger.append_batch((0..1000).map(|_| sample_entry()).collect()).unwrap();
    }
    let cp = ledger.checkpoint_now().unwrap();
    let size = cp.size;
    let seq = size / 3;
    let leaf = ledger.entry(seq).unwrap().leaf_hash;
    let proof = ledger.inclusion_proof(seq, size).unwrap();
    let mut g = c.benchmark_group("proof (100k entries)");
    g.bench_function("inclusion build", |b| b.iter(|| ledger.inclusion_proof(seq, size).unwrap()));
    g.bench_function("inclusion verify", |b| {
        b.iter(|| verify_inclusion(seq, size, &leaf, &proof, &cp.root).unwrap())
    });
    g.bench_function("consistency build", |b| {
        b.iter(|| ledger.consistency_proof(size / 2 + 1, size).unwrap())
    });
    g.finish();

    let key = onoal_engine::identity::SecretKey::from_seed(&[9; 32]).signing_key().clone();
    let signer = NoteSigner::new("oid:onoal:bench", key).unwrap();
    let body =
        Checkpoint { origin: "oid:onoal:bench".into(), size, root: cp.root, extensions: vec![] };
    let note = signer.sign(&body);
    let mut g = c.benchmark_group("checkpoint");
    g.bench_function("sign", |b| b.iter(|| signer.sign(&body)));
    g.bench_function("verify", |b| b.iter(|| signer.verifier().open(note.as_bytes()).unwrap()));
    g.finish();
}

/// What a sync receiver does per bundle of 256 entries before writing it: decode, chain links,
/// subtree root through the path. Built from a real ledger on disk.
fn sync_bundles(c: &mut Criterion) {
    use onoal_engine::replica::{bundle_path_from_inclusion, verify_bundle};
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::builder(dir.path())
        .durability(Durability::Buffered)
        .create(Oid::parse("oid:onoal:bench:sync").unwrap())
        .unwrap();
    ledger.append_batch((0..4096).map(|_| sample_entry()).collect()).unwrap();
    let cp = ledger.checkpoint_now().unwrap();
    let leaves = ledger.log().leaf_data_range(1024, 1280).unwrap();
    let proof = ledger.inclusion_proof(1024, cp.size).unwrap();
    let path = bundle_path_from_inclusion(1024, cp.size, &proof).unwrap();
    let mut g = c.benchmark_group("sync");
    g.throughput(Throughput::Elements(256));
    g.bench_function("verify_bundle (256 entries of 256 B)", |b| {
        b.iter(|| verify_bundle(&cp, 1024, leaves.clone(), &path).unwrap())
    });
    g.bench_function("serve bundle (read 256 entries + path)", |b| {
        b.iter(|| {
            let l = ledger.log().leaf_data_range(1024, 1280).unwrap();
            let p = ledger.inclusion_proof(1024, cp.size).unwrap();
            (l, bundle_path_from_inclusion(1024, cp.size, &p).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, hashing, tiles, proofs_and_checkpoints, sync_bundles);
criterion_main!(benches);
