//! DNS discovery (`serve --dns _onoal._udp.example.org`): SRV records name the hosts and ports
//! of ledgers, a TXT record at each SRV target names the ledger there and its key:
//!
//! ```text
//! _onoal._udp.example.org.  SRV 10 5 4433 node1.example.org.
//! node1.example.org.        A   192.0.2.10
//! node1.example.org.        TXT "onoal-id=<ledger id>" "onoal-key=<64 hex digits>"
//! ```
//!
//! DNS is not trusted for identity: a target is used like a bootstrap node, so the QUIC
//! handshake must present the TXT's key and the node must answer with its own record of the
//! TXT's ledger id before anything it says is used.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;

use onoal_engine::LedgerId;

use crate::id::PeerId;

/// Where and what to ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The SRV name, e.g. `_onoal._udp.example.org`.
    pub name: String,
    /// The DNS server to ask (`None`: the system's, from /etc/resolv.conf).
    pub server: Option<SocketAddr>,
}

/// One ledger found through DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsTarget {
    /// From the TXT record.
    pub ledger: LedgerId,
    /// From the TXT record: the key its QUIC handshake must present.
    pub key: PeerId,
    /// From the SRV target's address and the SRV port.
    pub addr: SocketAddr,
}

/// Reads the ledger id and key from a target's TXT character strings (the strings of one TXT
/// record, or of several: `onoal-id=` and `onoal-key=` may be in one string separated by
/// spaces or in separate strings).
///
/// # Errors
/// What is missing or malformed.
pub fn parse_txt<S: AsRef<str>>(strings: &[S]) -> Result<(LedgerId, PeerId), String> {
    let (mut id, mut key) = (None, None);
    for token in strings.iter().flat_map(|s| s.as_ref().split_whitespace()) {
        if let Some(v) = token.strip_prefix("onoal-id=") {
            id = Some(v.parse::<LedgerId>().map_err(|e| format!("onoal-id {v:?}: {e}"))?);
        } else if let Some(v) = token.strip_prefix("onoal-key=") {
            let bytes = hex::decode(v).map_err(|_| format!("onoal-key {v:?} is not hex"))?;
            let peer = <[u8; 32]>::try_from(bytes.as_slice())
                .ok()
                .and_then(|b| PeerId::from_bytes(&b))
                .ok_or_else(|| format!("onoal-key {v:?} is not an Ed25519 public key"))?;
            key = Some(peer);
        }
    }
    match (id, key) {
        (Some(id), Some(key)) => Ok((id, key)),
        (None, _) => Err("the TXT record has no onoal-id=LEDGER_ID".into()),
        (_, None) => Err("the TXT record has no onoal-key=HEX".into()),
    }
}

/// A resolver asking `server` (or the system's servers), with a short timeout.
///
/// # Errors
/// When the system configuration cannot be read.
pub fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let mut builder = match server {
        Some(s) => {
            let group = NameServerConfigGroup::from_ips_clear(&[s.ip()], s.port(), true);
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), group),
                TokioConnectionProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| {
            format!("cannot read the system's DNS configuration: {e}; pass --dns-server HOST:PORT")
        })?,
    };
    let mut options = ResolverOpts::default();
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    // Ask again on every refresh: a ledger that moved is found at its new address.
    options.cache_size = 0;
    *builder.options_mut() = options;
    Ok(builder.build())
}

/// The ledgers under `config.name`: each SRV target's address, port and TXT. Targets whose
/// TXT is missing or malformed are skipped and reported in the second list.
///
/// # Errors
/// When the SRV lookup itself fails (no such name, no answer).
pub async fn resolve(config: &DnsConfig) -> Result<(Vec<DnsTarget>, Vec<String>), String> {
    let resolver = resolver(config.server)?;
    let srv = resolver
        .srv_lookup(config.name.as_str())
        .await
        .map_err(|e| format!("DNS SRV lookup of {} failed: {e}", config.name))?;
    let mut records: Vec<_> = srv.iter().cloned().collect();
    // RFC 2782: lower priority first; higher weight first within one priority (no random
    // weighting: every target is contacted anyway).
    records.sort_by_key(|r| (r.priority(), std::cmp::Reverse(r.weight())));
    let (mut found, mut skipped) = (Vec::new(), Vec::new());
    for r in records {
        let target = r.target().to_string();
        let txt = match resolver.txt_lookup(r.target().clone()).await {
            Ok(t) => t,
            Err(e) => {
                skipped.push(format!("{target}: no TXT record ({e})"));
                continue;
            }
        };
        let strings: Vec<String> = txt
            .iter()
            .flat_map(|t| t.txt_data().iter().map(|d| String::from_utf8_lossy(d).into_owned()))
            .collect();
        let (ledger, key) = match parse_txt(&strings) {
            Ok(v) => v,
            Err(e) => {
                skipped.push(format!("{target}: {e}"));
                continue;
            }
        };
        let ip: Option<IpAddr> = match resolver.lookup_ip(r.target().clone()).await {
            Ok(ips) => ips.iter().next(),
            Err(e) => {
                skipped.push(format!("{target}: no address ({e})"));
                continue;
            }
        };
        match ip {
            Some(ip) => found.push(DnsTarget { ledger, key, addr: SocketAddr::new(ip, r.port()) }),
            None => skipped.push(format!("{target}: no address")),
        }
    }
    Ok((found, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_strings_give_the_ledger_and_its_key() {
        let ledger = LedgerId::random();
        let key = PeerId::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key());
        let id = format!("onoal-id={ledger}");
        let k = format!("onoal-key={}", key.to_hex());
        assert_eq!(parse_txt(&[id.clone(), k.clone()]), Ok((ledger, key)));
        assert_eq!(parse_txt(&[format!("v=1 {id} {k}")]), Ok((ledger, key)));
        assert!(parse_txt(std::slice::from_ref(&id)).unwrap_err().contains("onoal-key"));
        assert!(parse_txt(std::slice::from_ref(&k)).unwrap_err().contains("onoal-id"));
        assert!(parse_txt(&[id.clone(), "onoal-key=zz".into()]).unwrap_err().contains("hex"));
        let short = format!("onoal-key={}", "ab".repeat(31));
        assert!(parse_txt(&[id, short]).unwrap_err().contains("Ed25519"));
        assert!(parse_txt(&["onoal-id=nope".to_owned(), k]).unwrap_err().contains("onoal-id"));
    }
}
