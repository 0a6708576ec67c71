//! The gRPC service against a real `onoal serve --grpc`: a streaming append of 10,000 entries
//! in pipelined groups, get/query/prove agreeing with the HTTP API, the watch stream in order,
//! a bad group mid-stream, the token rule.

use std::time::Duration;

use onoal_engine::hash::Hash;
use onoal_mesh::grpc::pb;
use onoal_mesh::grpc::pb::ledger_client::LedgerClient;
use onoal_tests::node::{Serve, init};
use serde_json::Value;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn group(round: u64, n: u64) -> pb::AppendRequest {
    pb::AppendRequest {
        entries: (0..n)
            .map(|i| pb::NewEntry {
                stream: if i % 2 == 0 { "even".into() } else { "odd".into() },
                r#type: "t".into(),
                subject: None,
                issuer: None,
                payload: format!("round {round} entry {i}").into_bytes(),
                ..pb::NewEntry::default()
            })
            .collect(),
    }
}

fn http_get(url: &str) -> Value {
    let mut r = ureq::get(url).call().unwrap();
    r.body_mut().read_json().unwrap()
}

#[test]
fn streaming_append_get_query_prove_and_watch_over_grpc() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    let serve = Serve::start_with(&dir, 0, &[], &["--grpc", "127.0.0.1:0"]);
    let grpc = format!("http://{}", serve.3["grpc_addr"].as_str().unwrap());
    let rt = runtime();
    rt.block_on(async {
        let mut client = LedgerClient::connect(grpc.clone()).await.unwrap();
        // A watcher from seq 0, started before the appends.
        let mut watch_client = client.clone();
        let watcher = tokio::spawn(async move {
            let mut stream = watch_client
                .watch(pb::WatchRequest { ledger: None, stream: None, from: Some(0) })
                .await
                .unwrap()
                .into_inner();
            let mut next = 0u64;
            while next < 10_000 {
                let e = stream.message().await.unwrap().unwrap();
                if e.r#type == "entry" {
                    assert_eq!(e.seq, next, "in order, none skipped");
                    next += 1;
                }
            }
            next
        });
        // 20 groups of 500, sent as one client stream; replies come in order.
        let requests = tokio_stream::iter((0..20).map(|r| group(r, 500)));
        let mut replies = client.append(requests).await.unwrap().into_inner();
        let mut seq = 0u64;
        while let Some(reply) = replies.message().await.unwrap() {
            assert_eq!(reply.receipts.len(), 500);
            for r in &reply.receipts {
                assert_eq!(r.seq, seq);
                assert_eq!(r.leaf_hash.len(), 32);
                seq += 1;
            }
            assert_eq!(reply.tree_size, seq);
        }
        assert_eq!(seq, 10_000);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(60), watcher).await.unwrap().unwrap(),
            10_000
        );

        // Get agrees with the HTTP API.
        let e = client.get(pb::GetRequest { seq: 777, ledger: None }).await.unwrap().into_inner();
        let h = http_get(&format!("{}/ledger/entries/777", serve.url()));
        assert_eq!(hex::encode(&e.leaf_hash), h["leaf_hash"].as_str().unwrap());
        assert_eq!(e.stream, "odd");
        let missing = client.get(pb::GetRequest { seq: 10_000, ledger: None }).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound, "{missing}");

        // Query with a filter and a cursor.
        let page = client
            .query(pb::QueryRequest {
                stream: Some("even".into()),
                limit: Some(3),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 2, 4]);
        assert!(page.next_cursor.is_some());
        let bad = client
            .query(pb::QueryRequest { limit: Some(0), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);

        // Prove: the inclusion proof verifies against the returned root.
        let p = client
            .prove(pb::ProveRequest {
                ledger: None,
                what: Some(pb::prove_request::What::Inclusion(pb::Inclusion {
                    seq: 4321,
                    tree_size: Some(10_000),
                })),
            })
            .await
            .unwrap()
            .into_inner();
        let proof: Vec<Hash> = p.proof.iter().map(|h| Hash::from_slice(h).unwrap()).collect();
        onoal_engine::merkle::verify_inclusion(
            4321,
            10_000,
            &Hash::from_slice(&p.leaf_hash).unwrap(),
            &proof,
            &Hash::from_slice(&p.root).unwrap(),
        )
        .unwrap();

        // A bad group mid-stream: the groups before it are answered, then the error; nothing
        // of the bad group or after it is appended.
        let mut bad = group(99, 2);
        bad.entries[1].stream = "NOT A STREAM".into();
        let requests = tokio_stream::iter(vec![group(50, 10), bad, group(51, 10)]);
        let mut replies = client.append(requests).await.unwrap().into_inner();
        let first = replies.message().await.unwrap().unwrap();
        assert_eq!(first.receipts.len(), 10);
        let err = replies.message().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().starts_with("entry 1:"), "{}", err.message());
    });
    let status = http_get(&format!("{}/status", serve.url()));
    assert_eq!(status["tree_size"], 10_010);
    serve.stop();
}

#[test]
fn grpc_asks_for_the_token_and_stays_on_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    let err = onoal_tests::run_fail(onoal_tests::onoal(&dir).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--grpc",
        "0.0.0.0:0",
    ]));
    assert!(err.contains("gRPC") && err.contains("loopback"), "{err}");
    let token_file = tmp.path().join("token");
    let token_arg = token_file.to_str().unwrap();
    let serve =
        Serve::start_with(&dir, 0, &[], &["--grpc", "127.0.0.1:0", "--http-token-file", token_arg]);
    let grpc = format!("http://{}", serve.3["grpc_addr"].as_str().unwrap());
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_owned();
    runtime().block_on(async {
        let mut client = LedgerClient::connect(grpc).await.unwrap();
        let refused = client.get(pb::GetRequest { seq: 0, ledger: None }).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
        let mut request = tonic::Request::new(pb::QueryRequest::default());
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let page = client.query(request).await.unwrap().into_inner();
        assert!(page.entries.is_empty());
    });
    serve.stop();
}
