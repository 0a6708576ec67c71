//! Finding and talking to a running node. `onoal serve` writes `node.json` into the data
//! directory (pid, QUIC and HTTP addresses, where the token and TLS certificate are; never the
//! token itself) and removes it on exit. Writing commands go through the node's HTTP API when
//! one is running, so they work while it serves; reading commands open the database read-only
//! as before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use onoal_mesh::http::ErrorBody;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cli::Cli;

/// What `node.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct NodeFile {
    pub(crate) pid: u32,
    pub(crate) ledger_id: String,
    pub(crate) quic_addr: String,
    /// Absent when the node serves no HTTP (`--no-http`).
    pub(crate) http_addr: Option<String>,
    /// The gRPC address, when served (`--grpc`).
    #[serde(default)]
    pub(crate) grpc_addr: Option<String>,
    /// The file holding the bearer token, when the API needs one.
    pub(crate) token_file: Option<PathBuf>,
    /// The node's TLS certificate (PEM), when the API is served over TLS.
    pub(crate) tls_cert: Option<PathBuf>,
}

pub(crate) fn node_file_path(data: &Path) -> PathBuf {
    data.join("node.json")
}

fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        // Elsewhere: trust the file; a dead node's API refuses the connection, which is
        // reported.
        true
    }
}

impl NodeFile {
    /// Writes the file (replaced atomically).
    pub(crate) fn write(&self, data: &Path) -> Result<()> {
        let path = node_file_path(data);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// The running node's file, if a node runs on `data` (a stale file is ignored with a note).
    pub(crate) fn read_running(data: &Path) -> Result<Option<Self>> {
        let path = node_file_path(data);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let file: Self = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow!("{} is not a node file ({e}); delete it if no node runs here", path.display())
        })?;
        if !pid_alive(file.pid) || file.pid == std::process::id() {
            eprintln!(
                "note: ignoring {}: the node that wrote it (pid {}) is not running",
                path.display(),
                file.pid
            );
            return Ok(None);
        }
        Ok(Some(file))
    }
}

/// A client of a running node's HTTP API.
pub(crate) struct NodeClient {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// The client of the node running on `cli.data`, if any. A node that serves no HTTP is an
/// error for a command that must write (it holds the database).
pub(crate) fn running_node(cli: &Cli) -> Result<Option<NodeClient>> {
    let Some(file) = NodeFile::read_running(&cli.data)? else { return Ok(None) };
    let Some(addr) = &file.http_addr else {
        bail!(
            "a node (pid {}) is serving {} without HTTP (--no-http), so it cannot take this command; stop it, or restart it with its API",
            file.pid,
            cli.data.display()
        );
    };
    NodeClient::new(addr, &file).map(Some)
}

impl NodeClient {
    fn new(addr: &str, file: &NodeFile) -> Result<Self> {
        let token = match &file.token_file {
            None => None,
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the node's token file {}", p.display()))?
                    .trim()
                    .to_owned(),
            ),
        };
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)));
        let scheme = match &file.tls_cert {
            None => "http",
            Some(cert) => {
                let pem = std::fs::read(cert).with_context(|| {
                    format!("cannot read the node's certificate {}", cert.display())
                })?;
                let cert = ureq::tls::Certificate::from_pem(&pem).map_err(|e| {
                    anyhow!("the node's certificate {} is not PEM: {e}", cert.display())
                })?;
                config = config.tls_config(
                    ureq::tls::TlsConfig::builder()
                        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![cert])))
                        .build(),
                );
                "https"
            }
        };
        Ok(Self { base: format!("{scheme}://{addr}"), token, agent: config.build().into() })
    }

    fn finish<T: DeserializeOwned>(
        what: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T> {
        let mut response =
            response.map_err(|e| anyhow!("the running node did not answer {what}: {e}"))?;
        let status = response.status();
        let body = response.body_mut().with_config().limit(1 << 30);
        if status.is_success() {
            return body.read_json().map_err(|e| {
                anyhow!("the running node's answer to {what} is not what was expected: {e}")
            });
        }
        match body.read_json::<ErrorBody>() {
            Ok(e) => {
                Err(crate::output::Failure { kind: e.kind, message: e.error, hint: e.hint }.into())
            }
            Err(_) => bail!("the running node answered {what} with HTTP {status}"),
        }
    }

    fn with_auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => r.header("Authorization", format!("Bearer {t}")),
            None => r,
        }
    }

    fn timeout<B>(r: ureq::RequestBuilder<B>, limit: Duration) -> ureq::RequestBuilder<B> {
        r.config().timeout_global(Some(limit)).build()
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let r = Self::timeout(
            self.with_auth(self.agent.get(format!("{}{path}", self.base))),
            Duration::from_secs(60),
        );
        Self::finish(&format!("GET {path}"), r.call())
    }

    pub(crate) fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        limit: Duration,
    ) -> Result<T> {
        let r =
            Self::timeout(self.with_auth(self.agent.post(format!("{}{path}", self.base))), limit);
        Self::finish(&format!("POST {path}"), r.send_json(body))
    }

    pub(crate) fn post_ndjson<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T> {
        let r = Self::timeout(
            self.with_auth(self.agent.post(format!("{}{path}", self.base))),
            Duration::from_secs(300),
        )
        .header("Content-Type", "application/x-ndjson");
        Self::finish(&format!("POST {path}"), r.send(body))
    }

    pub(crate) fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let r = Self::timeout(
            self.with_auth(self.agent.delete(format!("{}{path}", self.base))),
            Duration::from_secs(60),
        );
        Self::finish(&format!("DELETE {path}"), r.call())
    }
}
