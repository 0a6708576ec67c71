//! The node's gRPC service (tonic; `proto/onoal.proto`, compiled by protox in build.rs): a
//! streaming `Append` for high-throughput clients, `Get`, `Query`, `Prove` and a streaming
//! `Watch`. Same rules as the HTTP API: loopback only unless a token is set (and, since this
//! server speaks no TLS, never off loopback: [`GrpcConfig::check`]), the same payload and
//! batch limits, errors with a message that says what to do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use onoal_engine::{Filter, Log, NewEntry, PendingAppend, ReadError};

use crate::control::feed::LogFeed;
use crate::control::{Control, Event, LogLookupError};

/// The generated protobuf types and service stubs.
#[allow(missing_docs, unreachable_pub, unused_qualifications, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("onoal.v1");
}

use pb::ledger_server::{Ledger as LedgerService, LedgerServer};

/// Most entries one append request may carry.
const MAX_GROUP: usize = 100_000;
/// Groups an append stream may have in flight before it stops reading the client.
const IN_FLIGHT: usize = 8;
/// Largest message accepted.
const MAX_MESSAGE: usize = 64 << 20;

/// How the gRPC service is served.
#[derive(Clone, Debug)]
pub struct GrpcConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The bearer token every call needs (metadata `authorization: Bearer T`), when set.
    pub token: Option<String>,
}

impl GrpcConfig {
    /// Refuses a non-loopback address: this server has no TLS, so a token would cross the
    /// network in clear.
    ///
    /// # Errors
    /// A message saying what to do.
    pub fn check(&self) -> Result<(), String> {
        if self.addr.ip().is_loopback() {
            Ok(())
        } else {
            Err(format!(
                "refusing to serve gRPC on {}: the gRPC server has no TLS yet, so it stays on loopback; use the HTTP API (with a token and TLS) across the network",
                self.addr
            ))
        }
    }
}

/// The service.
#[derive(Clone, Debug)]
struct Service {
    control: Control,
}

fn status_of(e: ReadError) -> Status {
    match e {
        ReadError::OutOfRange { .. } | ReadError::NoCheckpoint(_) | ReadError::NotHeld { .. } => {
            Status::not_found(e.to_string())
        }
        ReadError::BadCursor(_)
        | ReadError::Sparse(_)
        | ReadError::SparseProofSize { .. }
        | ReadError::Proof(_) => Status::invalid_argument(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

impl Service {
    fn log(&self, ledger: Option<&str>) -> Result<Log, Status> {
        self.control.log(ledger).map_err(|e| match e {
            LogLookupError::BadId(_) => Status::invalid_argument(e.to_string()),
            _ => Status::not_found(e.to_string()),
        })
    }

    fn entries(&self, request: pb::AppendRequest) -> Result<Vec<NewEntry>, Status> {
        if request.entries.is_empty() {
            return Err(Status::invalid_argument("no entries to append"));
        }
        if request.entries.len() > MAX_GROUP {
            return Err(Status::resource_exhausted(format!(
                "more than {MAX_GROUP} entries in one request; split it"
            )));
        }
        let max = self.control.node().ledger().max_payload_bytes();
        request
            .entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let input = onoal_engine::import::EntryInput {
                    stream: e.stream,
                    entry_type: e.r#type,
                    subject: e.subject,
                    issuer: e.issuer,
                    payload: None,
                    payload_b64: None,
                    refs: e.refs,
                    issuer_key: e.issuer_key.map(hex::encode),
                    issuer_signature: e.issuer_signature.map(hex::encode),
                };
                input
                    .into_entry_with_payload(e.payload, max)
                    .map_err(|err| Status::invalid_argument(format!("entry {i}: {err}")))
            })
            .collect()
    }
}

fn entry_pb(e: &onoal_engine::StoredEntry) -> pb::Entry {
    let c = &e.entry.content;
    pb::Entry {
        seq: e.entry.seq,
        timestamp_ms: e.entry.timestamp_ms,
        stream: c.stream.as_str().to_owned(),
        r#type: c.entry_type.as_str().to_owned(),
        subject: c.subject.as_ref().map(|o| o.as_str().to_owned()),
        issuer: c.issuer.as_ref().map(|o| o.as_str().to_owned()),
        payload: c.payload.clone(),
        prev_hash: e.entry.prev_hash.as_bytes().to_vec(),
        leaf_hash: e.leaf_hash.as_bytes().to_vec(),
        leaf_data: e.leaf_data.clone(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("a storage task failed: {e}")))?
}

type ReplyStream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl LedgerService for Service {
    type AppendStream = ReplyStream<pb::AppendReply>;
    type WatchStream = ReplyStream<pb::Event>;

    async fn append(
        &self,
        request: Request<Streaming<pb::AppendRequest>>,
    ) -> Result<Response<Self::AppendStream>, Status> {
        let mut inbound = request.into_inner();
        // Submitted groups, or the error that ends the stream, in request order.
        let (pending_tx, mut pending_rx) =
            mpsc::channel::<Result<(Instant, PendingAppend), Status>>(IN_FLIGHT);
        let (reply_tx, reply_rx) = mpsc::channel(IN_FLIGHT);
        // Reader: validates and submits each group without waiting for it.
        let reader = {
            let service = self.clone();
            tokio::spawn(async move {
                loop {
                    let request = match inbound.message().await {
                        Ok(Some(r)) => r,
                        Ok(None) => return,
                        Err(status) => {
                            let _ = pending_tx.send(Err(status)).await;
                            return;
                        }
                    };
                    let started = Instant::now();
                    // Submitting prepares the entries (content hashes) on this thread: off the
                    // async workers.
                    let submitted = match service.entries(request) {
                        Err(status) => Err(status),
                        Ok(entries) => {
                            let ledger = service.control.node().ledger().clone();
                            match tokio::task::spawn_blocking(move || ledger.submit_batch(entries))
                                .await
                            {
                                Ok(Ok(p)) => Ok((started, p)),
                                Ok(Err(e)) => Err(Status::invalid_argument(e.to_string())),
                                Err(e) => {
                                    Err(Status::internal(format!("the append task failed: {e}")))
                                }
                            }
                        }
                    };
                    // Earlier groups are still answered; nothing after a bad one is read.
                    let failed = submitted.is_err();
                    if pending_tx.send(submitted).await.is_err() || failed {
                        return;
                    }
                }
            })
        };
        // Acknowledger: waits for each group in order and answers it.
        let control = self.control.clone();
        tokio::spawn(async move {
            while let Some(next) = pending_rx.recv().await {
                let reply = match next {
                    Err(status) => Err(status),
                    Ok((started, pending)) => {
                        match tokio::task::spawn_blocking(move || pending.wait()).await {
                            Ok(Ok(receipts)) => {
                                control.observe_append(started.elapsed());
                                let tree_size = receipts.last().map_or(0, |r| r.seq + 1);
                                Ok(pb::AppendReply {
                                    receipts: receipts
                                        .iter()
                                        .map(|r| pb::Receipt {
                                            seq: r.seq,
                                            leaf_hash: r.leaf_hash.as_bytes().to_vec(),
                                        })
                                        .collect(),
                                    tree_size,
                                })
                            }
                            Ok(Err(e)) => Err(Status::internal(e.to_string())),
                            Err(e) => Err(Status::internal(format!("the append task failed: {e}"))),
                        }
                    }
                };
                let failed = reply.is_err();
                if reply_tx.send(reply).await.is_err() || failed {
                    reader.abort();
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(reply_rx)))
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::Entry>, Status> {
        let r = request.into_inner();
        let log = self.log(r.ledger.as_deref())?;
        let e = blocking(move || log.entry(r.seq).map_err(status_of)).await?;
        Ok(Response::new(entry_pb(&e)))
    }

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryReply>, Status> {
        let r = request.into_inner();
        if let Some(l) = r.limit
            && !(1..=onoal_engine::log::MAX_QUERY_LIMIT).contains(&(l as usize))
        {
            return Err(Status::invalid_argument(format!(
                "limit {l} is out of range; give 1 to {}",
                onoal_engine::log::MAX_QUERY_LIMIT
            )));
        }
        let log = self.log(r.ledger.as_deref())?;
        let filter = Filter {
            stream: r.stream,
            entry_type: r.r#type,
            subject: r.subject,
            issuer: r.issuer,
            since_ms: r.since_ms,
            until_ms: r.until_ms,
        };
        filter.validate().map_err(|e| Status::invalid_argument(e.to_string()))?;
        let query = onoal_engine::Query {
            filter,
            cursor: r.cursor,
            limit: r.limit.map(|l| l as usize),
            max_bytes: None,
        };
        let page = blocking(move || log.query(&query).map_err(status_of)).await?;
        Ok(Response::new(pb::QueryReply {
            entries: page.entries.iter().map(entry_pb).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    async fn prove(
        &self,
        request: Request<pb::ProveRequest>,
    ) -> Result<Response<pb::ProveReply>, Status> {
        let r = request.into_inner();
        let log = self.log(r.ledger.as_deref())?;
        let what =
            r.what.ok_or_else(|| Status::invalid_argument("say inclusion or consistency"))?;
        let reply = blocking(move || {
            let bytes =
                |v: Vec<onoal_engine::Hash>| v.iter().map(|h| h.as_bytes().to_vec()).collect();
            Ok(match what {
                pb::prove_request::What::Inclusion(i) => {
                    let size = match i.tree_size {
                        Some(s) => s,
                        None => log.head().map_err(status_of)?.size,
                    };
                    let e = log.entry(i.seq).map_err(status_of)?;
                    pb::ProveReply {
                        tree_size: size,
                        root: log.root_at(size).map_err(status_of)?.as_bytes().to_vec(),
                        proof: bytes(log.inclusion_proof(i.seq, size).map_err(status_of)?),
                        leaf_hash: e.leaf_hash.as_bytes().to_vec(),
                        ..pb::ProveReply::default()
                    }
                }
                pb::prove_request::What::Consistency(c) => pb::ProveReply {
                    tree_size: c.new_size,
                    root: log.root_at(c.new_size).map_err(status_of)?.as_bytes().to_vec(),
                    proof: bytes(log.consistency_proof(c.old_size, c.new_size).map_err(status_of)?),
                    old_size: c.old_size,
                    old_root: log.root_at(c.old_size).map_err(status_of)?.as_bytes().to_vec(),
                    ..pb::ProveReply::default()
                },
            })
        })
        .await?;
        Ok(Response::new(reply))
    }

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        let log = self.log(r.ledger.as_deref())?;
        let mut feed = LogFeed::new(&self.control, log, r.from, r.stream);
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            while let Some(event) = feed.next().await {
                let message = event.map_err(status_of).map(|e| match e {
                    Event::Entry {
                        ledger_id,
                        seq,
                        leaf_hash,
                        stream,
                        entry_type,
                        timestamp_ms,
                    } => pb::Event {
                        r#type: "entry".into(),
                        ledger_id,
                        seq,
                        leaf_hash: hex::decode(leaf_hash).unwrap_or_default(),
                        stream,
                        entry_type,
                        timestamp_ms,
                        size: 0,
                    },
                    Event::Checkpoint { ledger_id, size } => pb::Event {
                        r#type: "checkpoint".into(),
                        ledger_id,
                        size,
                        ..pb::Event::default()
                    },
                    // A log feed yields entries and checkpoints only.
                    _ => pb::Event::default(),
                });
                let failed = message.is_err();
                if tx.send(message).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A running gRPC server.
#[derive(Debug)]
pub struct GrpcServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcServer {
    /// Binds and serves the gRPC service of `control`.
    ///
    /// # Errors
    /// A refused configuration, a taken address.
    pub async fn start(control: Control, config: GrpcConfig) -> Result<Self, String> {
        config.check()?;
        let listener = tokio::net::TcpListener::bind(config.addr).await.map_err(|e| {
            format!(
                "cannot serve gRPC on {}: {e}; pass --grpc 127.0.0.1:0 for any free port",
                config.addr
            )
        })?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let token: Option<Arc<str>> = config.token.as_deref().map(Arc::from);
        let check = move |request: Request<()>| -> Result<Request<()>, Status> {
            let Some(token) = &token else { return Ok(request) };
            let given = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match given {
                Some(g) if crate::http::same_secret(g.trim().as_bytes(), token.as_bytes()) => {
                    Ok(request)
                }
                Some(_) => Err(Status::unauthenticated("the bearer token is wrong")),
                None => Err(Status::unauthenticated(
                    "this node needs a bearer token: send metadata authorization: Bearer TOKEN",
                )),
            }
        };
        let server = LedgerServer::new(Service { control }).max_decoding_message_size(MAX_MESSAGE);
        let service = tonic::service::interceptor::InterceptedService::new(server, check);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let r = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "the gRPC server stopped");
            }
        });
        Ok(Self { addr, task })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
