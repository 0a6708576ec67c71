//! `onoal serve`: the node daemon. QUIC for peers, the HTTP API and dashboard for operators,
//! follow tasks, `node.json` for the CLI, and its settings from flags over a TOML file.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::{Ledger, LedgerId};
use onoal_mesh::control::Control;
use onoal_mesh::grpc::{GrpcConfig, GrpcServer};
use onoal_mesh::http::{DEFAULT_HTTP_ADDR, HttpConfig, HttpServer};
use onoal_mesh::id::{KeyTextError, PeerId};
use onoal_mesh::membership::MembershipConfig;
use onoal_mesh::net::DiscoveryConfig;
use onoal_mesh::net::dns::DnsConfig;
use onoal_mesh::registry::client::RegistryClient;
use onoal_mesh::swim::SwimConfig;
use onoal_mesh::{Node, NodeConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cli::{Cli, DurabilityArg, ServeArgs};
use crate::client::{NodeFile, node_file_path};
use crate::cmd::mesh::{open_for_mesh, parse_peer_spec, runtime, shutdown_signal};
use crate::output::print;

const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

/// The serve settings a TOML file may hold (the flags' names with `_`). Unknown keys are
/// errors naming the key.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServeConfig {
    listen: Option<String>,
    http: Option<String>,
    grpc: Option<String>,
    no_http: Option<bool>,
    http_token_file: Option<PathBuf>,
    http_tls_cert: Option<PathBuf>,
    http_tls_key: Option<PathBuf>,
    allow_insecure_key: Option<bool>,
    follow: Option<Vec<String>>,
    bootstrap: Option<Vec<String>>,
    bootstrap_key: Option<Vec<String>>,
    advertise: Option<String>,
    gossip_interval: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
    heartbeat_misses: Option<u32>,
    swim_probe_ms: Option<u64>,
    registry: Option<String>,
    registry_api_key_file: Option<PathBuf>,
    dns: Option<String>,
    dns_server: Option<String>,
    refresh_interval: Option<u64>,
    links_only: Option<bool>,
    verify_refs: Option<bool>,
    witness: Option<Vec<String>>,
    witness_quorum: Option<usize>,
    witness_log: Option<Vec<String>>,
    trust_witness: Option<Vec<String>>,
    require_witnesses: Option<usize>,
    durability: Option<DurabilityArg>,
    /// `[visibility]`: `default = "trusted:0.4"` and `[visibility.streams]` `name = "private"`;
    /// applied at start (a change is the policy's next signed version).
    visibility: Option<VisibilityConfig>,
    /// `[routing]`: `direct`, `oid`, `dht`, `flood` (strategies on or off), `max_distance`,
    /// `ttl`, `min_trust`.
    routing: Option<onoal_mesh::routing::RoutingConfig>,
}

/// Stream visibility from the config file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct VisibilityConfig {
    default: Option<String>,
    streams: Option<std::collections::BTreeMap<String, String>>,
}

impl VisibilityConfig {
    /// The changes it asks for, checked: (stream or `None` for the default, visibility).
    fn changes(&self) -> Result<Vec<(Option<String>, onoal_mesh::trust::visibility::Visibility)>> {
        let parse = |v: &str, what: &str| {
            v.parse().map_err(|e| anyhow!("config file [visibility] {what}: {e}"))
        };
        let mut out = Vec::new();
        if let Some(d) = &self.default {
            out.push((None, parse(d, "default")?));
        }
        for (stream, v) in self.streams.iter().flatten() {
            onoal_mesh::trust::visibility::check_stream(stream)
                .map_err(|e| anyhow!("config file [visibility.streams]: {e}"))?;
            out.push((Some(stream.clone()), parse(v, stream)?));
        }
        Ok(out)
    }
}

/// The file's settings with the flags laid over them, defaults filled in.
pub(crate) fn effective(cli: &Cli, args: &ServeArgs) -> Result<ServeConfig> {
    let file: ServeConfig = match &args.config {
        None => ServeConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the config file {}", path.display()))?;
            toml::from_str(&text)
                .map_err(|e| anyhow!("config file {}: {}", path.display(), e.message()))?
        }
    };
    let over = |flag: Option<String>, file: Option<String>, default: &str| {
        Some(flag.or(file).unwrap_or_else(|| default.to_owned()))
    };
    let mut follow = file.follow.unwrap_or_default();
    follow.extend(args.follow.iter().cloned());
    let mut bootstrap = file.bootstrap.unwrap_or_default();
    bootstrap.extend(args.bootstrap.iter().cloned());
    let mut bootstrap_key = file.bootstrap_key.unwrap_or_default();
    bootstrap_key.extend(args.bootstrap_key.iter().cloned());
    Ok(ServeConfig {
        listen: over(args.listen.clone(), file.listen, DEFAULT_LISTEN),
        http: over(args.http.clone(), file.http, DEFAULT_HTTP_ADDR),
        grpc: args.grpc.clone().or(file.grpc),
        no_http: Some(args.no_http || file.no_http.unwrap_or(false)),
        http_token_file: args.http_token_file.clone().or(file.http_token_file),
        http_tls_cert: args.http_tls_cert.clone().or(file.http_tls_cert),
        http_tls_key: args.http_tls_key.clone().or(file.http_tls_key),
        allow_insecure_key: Some(
            args.allow_insecure_key || file.allow_insecure_key.unwrap_or(false),
        ),
        follow: Some(follow),
        bootstrap: Some(bootstrap),
        bootstrap_key: Some(bootstrap_key),
        advertise: args.advertise.clone().or(file.advertise),
        gossip_interval: Some(args.gossip_interval.or(file.gossip_interval).unwrap_or(5)),
        heartbeat_interval_ms: Some(
            args.heartbeat_interval_ms.or(file.heartbeat_interval_ms).unwrap_or(2000),
        ),
        heartbeat_misses: Some(args.heartbeat_misses.or(file.heartbeat_misses).unwrap_or(3)),
        swim_probe_ms: Some(args.swim_probe_ms.or(file.swim_probe_ms).unwrap_or(1000)),
        registry: args.registry.clone().or(file.registry),
        registry_api_key_file: args.registry_api_key_file.clone().or(file.registry_api_key_file),
        dns: args.dns.clone().or(file.dns),
        dns_server: args.dns_server.clone().or(file.dns_server),
        refresh_interval: Some(args.refresh_interval.or(file.refresh_interval).unwrap_or(60)),
        links_only: Some(args.links_only || file.links_only.unwrap_or(false)),
        verify_refs: Some(args.verify_refs || file.verify_refs.unwrap_or(false)),
        witness: Some(merged(file.witness, &args.witness)),
        witness_quorum: Some(args.witness_quorum.or(file.witness_quorum).unwrap_or(0)),
        witness_log: Some(merged(file.witness_log, &args.witness_log)),
        trust_witness: Some(merged(file.trust_witness, &args.trust_witness)),
        require_witnesses: Some(args.require_witnesses.or(file.require_witnesses).unwrap_or(0)),
        durability: Some(cli.durability.or(file.durability).unwrap_or(DurabilityArg::Sync)),
        visibility: file.visibility,
        routing: file.routing,
    })
}

/// The file's list, then the flags'.
fn merged(file: Option<Vec<String>>, flags: &[String]) -> Vec<String> {
    let mut v = file.unwrap_or_default();
    v.extend(flags.iter().cloned());
    v
}

/// What `serve` witnesses, and what it asks of witnesses.
struct Witnessing {
    witnesses: Vec<LedgerId>,
    quorum: usize,
    extra_logs: Vec<onoal_engine::checkpoint::NoteVerifier>,
    trusted: Vec<onoal_engine::cosignature::CosignatureVerifier>,
    required: usize,
}

fn witnessing(config: &ServeConfig) -> Result<Witnessing> {
    let witnesses = config
        .witness
        .iter()
        .flatten()
        .map(|w| {
            w.parse::<LedgerId>().map_err(|_| {
                anyhow!("--witness {w:?} is not a ledger id (UUID); pin the witness first (onoal peer add) and name it by its id")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let quorum = config.witness_quorum.unwrap_or(0);
    if quorum > witnesses.len() {
        usage_bail!(
            "--witness-quorum {quorum} needs at least {quorum} --witness ledgers; {} given",
            witnesses.len()
        );
    }
    let extra_logs = config
        .witness_log
        .iter()
        .flatten()
        .map(|v| {
            onoal_engine::checkpoint::NoteVerifier::from_vkey(v)
                .map_err(|e| anyhow!("--witness-log {v:?}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let trusted = config
        .trust_witness
        .iter()
        .flatten()
        .map(|v| {
            onoal_engine::cosignature::CosignatureVerifier::from_vkey(v)
                .map_err(|e| anyhow!("--trust-witness {v:?}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let required = config.require_witnesses.unwrap_or(0);
    if required > trusted.len() {
        usage_bail!(
            "--require-witnesses {required} needs at least {required} --trust-witness keys; {} given",
            trusted.len()
        );
    }
    Ok(Witnessing { witnesses, quorum, extra_logs, trusted, required })
}

/// The node's witness key (`witness.key` in the data directory, created on first use): a key of
/// its own, as C2SP asks, named `<ledger OID>/witness`.
pub(crate) fn witness_cosigner(
    data: &Path,
    oid: &str,
) -> Result<onoal_engine::cosignature::Cosigner> {
    let path = data.join(WITNESS_KEY_FILE);
    let name = format!("{oid}/witness");
    let key = if path.exists() {
        SecretKey::read_file(&path)?
    } else {
        let key = SecretKey::generate().context("cannot generate a witness key")?;
        key.write_file(&path, &name)
            .with_context(|| format!("cannot write the witness key {}", path.display()))?;
        key
    };
    onoal_engine::cosignature::Cosigner::new(&name, key.signing_key().clone())
        .map_err(|e| anyhow!("witness key name {name:?}: {e}"))
}

/// The witness key's file in a data directory.
pub(crate) const WITNESS_KEY_FILE: &str = "witness.key";

/// `HOST:PORT` (a name is resolved) or `IP:PORT`.
fn resolve(flag: &str, addr: &str) -> Result<SocketAddr> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    addr.to_socket_addrs()
        .map_err(|e| anyhow!("{flag} {addr:?} is not HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| anyhow!("{flag} {addr:?} resolves to no address"))
}

/// The bootstrap nodes: each `LEDGER_ID@HOST:PORT` with its key, in order.
fn bootstrap_nodes(config: &ServeConfig) -> Result<Vec<(LedgerId, PeerId, SocketAddr)>> {
    let specs = config.bootstrap.clone().unwrap_or_default();
    let keys = config.bootstrap_key.clone().unwrap_or_default();
    if specs.len() != keys.len() {
        bail!(
            "{} --bootstrap node(s) but {} --bootstrap-key(s): give each bootstrap node's key, in the same order",
            specs.len(),
            keys.len()
        );
    }
    specs
        .iter()
        .zip(&keys)
        .map(|(spec, key)| {
            let (id, addr) = parse_peer_spec(spec)
                .with_context(|| format!("--bootstrap {spec:?}: give LEDGER_ID@HOST:PORT"))?;
            let key = PeerId::parse_hex(key).map_err(|e| {
                anyhow!(
                    "--bootstrap-key {key:?}: {}",
                    match e {
                        KeyTextError::NotHex32 => "not 64 hex characters (32 bytes)",
                        KeyTextError::Unusable => "not a usable Ed25519 public key",
                    }
                )
            })?;
            Ok((id, key, resolve("--bootstrap", &addr)?))
        })
        .collect()
}

/// Reads the token file, creating it (mode 0600, 256 random bits in hex) when missing.
pub(crate) fn token(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => return Ok(t.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e)
                .with_context(|| format!("cannot read the token file {}", path.display()));
        }
        Err(_) => {}
    }
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create the token file {}", path.display()))?;
    writeln!(f, "{token}").with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("created the HTTP token file {} (mode 0600)", path.display());
    Ok(token)
}

/// Removes `node.json` when the node stops, however it stops.
struct NodeFileGuard(PathBuf);

impl Drop for NodeFileGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(crate) fn run(cli: &Cli, args: &ServeArgs) -> Result<ExitCode> {
    let config = effective(cli, args)?;
    if args.print_config {
        print!("{}", toml::to_string(&config).context("cannot print the config")?);
        return Ok(ExitCode::SUCCESS);
    }
    let follows: Vec<(LedgerId, String)> =
        config.follow.iter().flatten().map(|p| parse_peer_spec(p)).collect::<Result<_>>()?;
    let bootstrap = bootstrap_nodes(&config)?;
    let visibility = config.visibility.as_ref().map(VisibilityConfig::changes).transpose()?;
    let routing = config.routing.clone().unwrap_or_default();
    let witnessing = witnessing(&config)?;
    if !(1..=32).contains(&routing.ttl)
        || routing.max_distance == 0
        || !(0.0..=1.0).contains(&routing.min_trust)
    {
        bail!(
            "config file [routing]: ttl must be 1 to 32, max_distance at least 1, min_trust 0 to 1 (got ttl {}, max_distance {}, min_trust {})",
            routing.ttl,
            routing.max_distance,
            routing.min_trust
        );
    }
    let advertise = match &config.advertise {
        Some(a) => Some(resolve("--advertise", a)?),
        None => None,
    };
    let gossip_interval = match config.gossip_interval.unwrap_or(5) {
        s @ 1..=3600 => Duration::from_secs(s),
        s => usage_bail!("--gossip-interval {s} is out of range: give 1 to 3600 seconds"),
    };
    let heartbeat_interval = match config.heartbeat_interval_ms.unwrap_or(2000) {
        ms @ 100..=600_000 => Duration::from_millis(ms),
        ms => usage_bail!("--heartbeat-interval-ms {ms} is out of range: give 100 to 600000"),
    };
    let heartbeat_misses = match config.heartbeat_misses.unwrap_or(3) {
        n @ 1..=100 => n,
        n => usage_bail!("--heartbeat-misses {n} is out of range: give 1 to 100"),
    };
    let swim_probe = match config.swim_probe_ms.unwrap_or(1000) {
        ms @ 100..=600_000 => Duration::from_millis(ms),
        ms => usage_bail!("--swim-probe-ms {ms} is out of range: give 100 to 600000"),
    };
    let swim = SwimConfig {
        probe_period: swim_probe,
        probe_rtt: swim_probe / 2,
        suspect_to_down_after: swim_probe * 4,
        ..SwimConfig::default()
    };
    let refresh_interval = match config.refresh_interval.unwrap_or(60) {
        s @ 1..=86_400 => Duration::from_secs(s),
        s => usage_bail!("--refresh-interval {s} is out of range: give 1 to 86400 seconds"),
    };
    let registry = match &config.registry {
        None => None,
        Some(url) => {
            let key = match &config.registry_api_key_file {
                None => None,
                Some(p) => Some(std::fs::read_to_string(p).with_context(|| {
                    format!("cannot read the registry API key file {}", p.display())
                })?),
            };
            Some(RegistryClient::new(url, key).map_err(|e| anyhow!("--registry: {e}"))?)
        }
    };
    let dns = match &config.dns {
        None => None,
        Some(name) => {
            if name.trim().is_empty() || name.contains(char::is_whitespace) {
                usage_bail!(
                    "--dns {name:?} is not a DNS name: give the SRV name, e.g. _onoal._udp.example.org"
                );
            }
            let server = match &config.dns_server {
                Some(s) => Some(resolve("--dns-server", s)?),
                None => None,
            };
            Some(DnsConfig { name: name.trim().to_owned(), server })
        }
    };
    if let Some(mode) = crate::cmd::ledger::key_file_exposed(cli)? {
        let path = key_path(&cli.data);
        if config.allow_insecure_key != Some(true) {
            bail!(
                "key file {} is readable by other users (mode {mode:o}); a node signs with it and proves its identity with it: run `chmod 600 {}`, or pass --allow-insecure-key",
                path.display(),
                path.display()
            );
        }
    }
    let listen = config.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let quic_addr = resolve("--listen", &listen)?;
    let http = match (config.no_http, &config.http) {
        (Some(true), _) | (_, None) => None,
        (_, Some(addr)) => {
            let mut h = HttpConfig::new(resolve("--http", addr)?);
            h.tls = config.http_tls_cert.clone().zip(config.http_tls_key.clone());
            h.token = match &config.http_token_file {
                Some(p) => Some(token(p)?),
                None => None,
            };
            h.check().map_err(|e| anyhow!(e))?;
            Some(h)
        }
    };
    let grpc = match &config.grpc {
        None => None,
        Some(addr) => {
            let token = match &config.http_token_file {
                Some(p) => Some(token(p)?),
                None => None,
            };
            let g = GrpcConfig { addr: resolve("--grpc", addr)?, token };
            g.check().map_err(|e| anyhow!(e))?;
            Some(g)
        }
    };
    let durability = config.durability.unwrap_or(DurabilityArg::Sync).into();
    let ledger = open_for_mesh(cli, "serve", durability)?;
    let rt = runtime()?;
    rt.block_on(async {
        let node = bind(cli, ledger, quic_addr)?;
        // The config file's visibility, as a new signed version only where it differs.
        for (stream, v) in visibility.into_iter().flatten() {
            let trust = node.trust();
            let current = trust.policy(&trust.me());
            let now_is = stream.as_deref().map_or(current.default, |s| current.of(s));
            if now_is != v {
                trust.set_visibility(stream.as_deref(), v, onoal_engine::time::now_ms())?;
            }
        }
        node.set_routing_config(routing);
        let cosigner = witness_cosigner(&cli.data, node.ledger().identity().oid.as_str())?;
        node.enable_witness(cosigner, witnessing.extra_logs).map_err(|e| anyhow!(e))?;
        node.start_transfers().await.map_err(|e| anyhow!("cannot start transfers: {e}"))?;
        if !witnessing.trusted.is_empty() {
            node.set_witness_policy(onoal_engine::cosignature::Cosigners {
                witnesses: witnessing.trusted,
                quorum: witnessing.required,
            });
        }
        for w in &witnessing.witnesses {
            if node.peers().get(w)?.is_none() {
                bail!("--witness {w}: pin it first: onoal peer add {w}@HOST:PORT --key HEX");
            }
        }
        let control = Control::new(node.clone());
        for (id, addr) in &follows {
            let record = node.peers().get(id)?.ok_or_else(|| {
                anyhow!(
                    "--follow {id}@{addr}: pin its key first: onoal peer add {id}@{addr} --key HEX"
                )
            })?;
            node.peers().pin(*id, record.public_key, Some(addr.clone()))?;
        }
        let http_server = match http.clone() {
            None => None,
            Some(h) => Some(HttpServer::start(control.clone(), h).await.map_err(|e| anyhow!(e))?),
        };
        let tls = http.as_ref().is_some_and(|h| h.tls.is_some());
        let scheme = if tls { "https" } else { "http" };
        let discovery = DiscoveryConfig {
            bootstrap: bootstrap.iter().map(|(id, key, addr)| (*id, *key, *addr)).collect(),
            advertise,
            http: http_server.as_ref().map(|h| format!("{scheme}://{}", h.local_addr())),
            gossip_interval,
            registry,
            dns,
            refresh_interval,
            swim,
            links_only: config.links_only.unwrap_or(false),
            membership: MembershipConfig {
                interval: heartbeat_interval,
                misses: heartbeat_misses,
                ..MembershipConfig::default()
            },
            ..DiscoveryConfig::default()
        };
        let server = node.serve_with(discovery);
        if !witnessing.witnesses.is_empty() {
            node.start_witnessing(witnessing.witnesses, witnessing.quorum)
                .map_err(|e| anyhow!(e))?;
        }
        let _ref_verifier = config.verify_refs.unwrap_or(false).then(|| node.spawn_ref_verifier());
        let grpc_server = match grpc {
            None => None,
            Some(g) => Some(GrpcServer::start(control.clone(), g).await.map_err(|e| anyhow!(e))?),
        };
        let addr = node.local_addr()?;
        let http_addr = http_server.as_ref().map(HttpServer::local_addr);
        let grpc_addr = grpc_server.as_ref().map(GrpcServer::local_addr);
        let file = NodeFile {
            pid: std::process::id(),
            ledger_id: node.ledger().identity().ledger_id.to_string(),
            quic_addr: addr.to_string(),
            http_addr: http_addr.map(|a| a.to_string()),
            grpc_addr: grpc_addr.map(|a| a.to_string()),
            token_file: config.http_token_file.as_ref().map(|p| absolute(p)),
            tls_cert: if tls { config.http_tls_cert.as_ref().map(|p| absolute(p)) } else { None },
        };
        file.write(&cli.data)?;
        let _guard = NodeFileGuard(node_file_path(&cli.data));
        for (id, addr) in follows {
            control.follow(id, Some(addr))?;
        }
        let id = node.ledger().identity().clone();
        // The address others should dial: the advertised one as the user wrote it, else ours.
        let ticket = onoal_mesh::ticket::Ticket {
            ledger_id: id.ledger_id,
            address: Some(config.advertise.clone().unwrap_or_else(|| addr.to_string())),
            public_key: *id.public_key.as_bytes(),
        };
        let dashboard = http_addr.map(|a| format!("{}://{a}/", if tls { "https" } else { "http" }));
        let v = json!({
            "ledger_id": id.ledger_id.to_string(),
            "oid": id.oid.as_str(),
            "public_key": hex::encode(id.public_key.as_bytes()),
            "addr": addr.to_string(),
            "ticket": ticket.to_string(),
            "http_addr": http_addr.map(|a| a.to_string()),
            "grpc_addr": grpc_addr.map(|a| a.to_string()),
            "dashboard": dashboard,
        });
        print(cli, v, || {
            let mut s = format!(
                "serving ledger {} ({})\npublic key {}\nQUIC on {addr}\nticket {ticket} (`onoal peer add TICKET` pins this ledger)",
                id.ledger_id,
                id.oid,
                hex::encode(id.public_key.as_bytes())
            );
            match &dashboard {
                Some(d) => s.push_str(&format!("\nHTTP API and dashboard on {d}")),
                None => s.push_str("\nno HTTP API (--no-http)"),
            }
            if let Some(g) = grpc_addr {
                s.push_str(&format!("\ngRPC on {g}"));
            }
            s
        });
        let _ = std::io::stdout().flush();
        shutdown_signal().await;
        control.shutdown();
        if let Some(h) = &http_server {
            h.stop();
        }
        if let Some(g) = &grpc_server {
            g.stop();
        }
        node.close().await;
        server.abort();
        Ok(ExitCode::SUCCESS)
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn bind(cli: &Cli, ledger: Ledger, addr: SocketAddr) -> Result<Node> {
    let key = SecretKey::read_file(&key_path(&cli.data))?;
    Node::bind(Arc::new(ledger), key, addr, NodeConfig::default()).map_err(|e| {
        let text = e.to_string();
        if text.contains("in use") {
            anyhow!(
                "{text}; pass --listen 127.0.0.1:0 for any free port, or is a node already running?"
            )
        } else {
            e.into()
        }
    })
}
