//! The registry client a node uses (`onoal serve --registry URL`): blocking HTTP (ureq) with a
//! deadline on every call; the node runs it on its blocking pool.
//!
//! Nothing a registry answers is trusted: records come back as the ledgers signed them and the
//! node checks each one before use, so a registry can withhold records but not forge them.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;

use onoal_engine::{LedgerId, Oid};

use super::server::{RegisterAnswer, RegisterRequest, RegistryList, RegistryRecord};
use crate::http::error::ErrorBody;
use crate::proto::record::PeerRecord;

/// The deadline of one registry call, connecting included.
pub const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// Largest answer read (a full list of records is well under it).
const MAX_ANSWER: u64 = 8 << 20;

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryCallError {
    /// No answer (unreachable, refused connection, deadline).
    #[error("the registry at {url} did not answer: {reason}")]
    Unreachable {
        /// The registry.
        url: String,
        /// What happened.
        reason: String,
    },
    /// An error answer.
    #[error("the registry refused ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// An answer that is not what a registry sends.
    #[error("the registry's answer is not what was expected: {0}")]
    BadAnswer(String),
}

/// A registry's client.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    base: String,
    api_key: Option<String>,
    agent: ureq::Agent,
}

impl RegistryClient {
    /// A client of the registry at `url` (`http://HOST:PORT` or `https://…`).
    ///
    /// # Errors
    /// When `url` is not an http(s) URL.
    pub fn new(url: &str, api_key: Option<String>) -> Result<Self, String> {
        let base = url.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() < 10 {
            return Err(format!(
                "{url:?} is not a registry URL; give it as http://HOST:PORT or https://HOST"
            ));
        }
        if api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err("the registry API key file is empty".into());
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CALL_DEADLINE))
            .build()
            .into();
        Ok(Self { base, api_key: api_key.map(|k| k.trim().to_owned()), agent })
    }

    /// The registry's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> RegistryCallError {
        RegistryCallError::Unreachable { url: self.base.clone(), reason: e.to_string() }
    }

    fn finish<T: DeserializeOwned>(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Option<T>, RegistryCallError> {
        let mut response = response.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.body_mut().with_config().limit(MAX_ANSWER);
        if status.is_success() {
            return body
                .read_json()
                .map(Some)
                .map_err(|e| RegistryCallError::BadAnswer(e.to_string()));
        }
        if status == ureq::http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let message = match body.read_json::<ErrorBody>() {
            Ok(e) => e.error,
            Err(_) => status.canonical_reason().unwrap_or("error").to_owned(),
        };
        Err(RegistryCallError::Refused { status: status.as_u16(), message })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, RegistryCallError> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(k) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {k}"));
        }
        self.finish(request.call())
    }

    /// Registers (or refreshes) `record`.
    ///
    /// # Errors
    /// [`RegistryCallError`].
    pub fn register(&self, record: &PeerRecord) -> Result<RegisterAnswer, RegistryCallError> {
        let body = RegisterRequest { record: B64.encode(record.encode()) };
        let mut request = self.agent.post(format!("{}/v1/records", self.base));
        if let Some(k) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {k}"));
        }
        self.finish(request.send_json(&body))?.ok_or_else(|| {
            RegistryCallError::BadAnswer("404 to a registration: is this a registry?".into())
        })
    }

    /// The registry's record of `ledger` (`None`: it holds none). Not checked: the caller
    /// checks it.
    ///
    /// # Errors
    /// [`RegistryCallError`].
    pub fn lookup(&self, ledger: LedgerId) -> Result<Option<PeerRecord>, RegistryCallError> {
        match self.get::<RegistryRecord>(&format!("/v1/records/{ledger}"))? {
            Some(r) => decode(&r).map(Some),
            None => Ok(None),
        }
    }

    /// Records under `oid_prefix` (all, most recently refreshed first, when `None`), at most
    /// `limit`. Not checked: the caller checks them.
    ///
    /// # Errors
    /// [`RegistryCallError`].
    pub fn list(
        &self,
        oid_prefix: Option<&Oid>,
        limit: usize,
    ) -> Result<Vec<PeerRecord>, RegistryCallError> {
        let path = match oid_prefix {
            Some(p) => format!("/v1/records?limit={limit}&oid_prefix={}", p.as_str()),
            None => format!("/v1/records?limit={limit}"),
        };
        let list: RegistryList = self.get(&path)?.ok_or_else(|| {
            RegistryCallError::BadAnswer("404 to a listing: is this a registry?".into())
        })?;
        list.records.iter().map(decode).collect()
    }

    /// Records that announce the registered asset `asset`, newest first, at most `limit`. Not
    /// checked: the caller checks them.
    ///
    /// # Errors
    /// [`RegistryCallError`].
    pub fn by_asset(
        &self,
        asset: &str,
        limit: usize,
    ) -> Result<Vec<PeerRecord>, RegistryCallError> {
        crate::transfer::check_id("asset", asset).map_err(RegistryCallError::BadAnswer)?;
        let path = format!("/v1/records?limit={limit}&asset={asset}");
        let list: RegistryList = self.get(&path)?.ok_or_else(|| {
            RegistryCallError::BadAnswer("404 to a listing: is this a registry?".into())
        })?;
        list.records.iter().map(decode).collect()
    }
}

fn decode(r: &RegistryRecord) -> Result<PeerRecord, RegistryCallError> {
    let bytes = B64
        .decode(r.record.as_bytes())
        .map_err(|e| RegistryCallError::BadAnswer(format!("a record is not base64: {e}")))?;
    postcard::from_bytes(&bytes)
        .map_err(|e| RegistryCallError::BadAnswer(format!("a record does not decode: {e}")))
}
