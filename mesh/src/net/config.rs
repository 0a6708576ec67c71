//! Node settings and the QUIC transport configuration.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::proto::DEFAULT_MAX_FRAME;

/// Node settings. Each setter states its default and trade-off.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub(crate) max_frame: u32,
    pub(crate) window: NonZeroUsize,
    pub(crate) window_bytes: usize,
    pub(crate) bundle_bytes: usize,
    pub(crate) request_timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            window: NonZeroUsize::new(32).expect("32 is not zero"),
            window_bytes: 32 << 20,
            bundle_bytes: 8 << 20,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl NodeConfig {
    /// Largest frame accepted from a peer. Defaults to 4 MiB; it also bounds an entry's leaf
    /// data in a sync, so a peer whose entries are larger cannot be synced from.
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Bundle requests in flight per sync (256 entries each). Defaults to 32: fewer leave the
    /// pipe idle between round trips, more only add memory (measured in docs/performance.md).
    pub fn window(mut self, bundles: NonZeroUsize) -> Self {
        self.window = bundles;
        self
    }

    /// Most bytes of bundles a sync holds at once (received, verified or waiting for their
    /// commit). Defaults to 32 MiB; the bundle next in line may go past it by one bundle's
    /// bytes (see [`Self::bundle_bytes`]), so a sync always progresses.
    pub fn window_bytes(mut self, bytes: usize) -> Self {
        self.window_bytes = bytes;
        self
    }

    /// Most bytes one bundle's answer may hold. Defaults to 8 MiB (at least one frame): a
    /// bundle that grows past it is asked for again in narrower bundles, so large entries sync
    /// in small requests and a peer sending fat bundles costs at most this much per request.
    pub fn bundle_bytes(mut self, bytes: usize) -> Self {
        self.bundle_bytes = bytes;
        self
    }

    /// Per-request cap in effect: at least one frame.
    pub(crate) fn bundle_cap(&self) -> usize {
        self.bundle_bytes.max(self.max_frame as usize + 4)
    }

    /// How long any request may go unanswered (connecting included) before the sync fails with
    /// a timeout naming the request. Defaults to 10 s; a long poll gets its wait on top.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

fn base_transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // The seed's heartbeat: keep-alive well inside the idle timeout.
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000))));
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    t
}

/// Connections a node accepts: what a client sends it are requests (16 KiB at most), so its
/// receive windows are small — half-sent requests cannot make it hold more than 256 KiB per
/// connection — and at most 64 requests at once; its send window bounds what it buffers per
/// connection for a client that reads slowly.
pub(crate) fn server_transport() -> Arc<quinn::TransportConfig> {
    let mut t = base_transport();
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(64));
    // A server only receives requests (at most 16 KiB each, most under 1 KiB): small receive
    // windows bound what half-sent requests can make it buffer, before any is read.
    t.stream_receive_window(quinn::VarInt::from_u32(32 << 10));
    t.receive_window(quinn::VarInt::from_u32(256 << 10));
    t.send_window(8 << 20);
    Arc::new(t)
}

/// Receive window of one stream of a connection a node opens (one bundle or page each).
const CLIENT_STREAM_WINDOW: u32 = 1 << 20;

/// Connections a node opens (to sync), for `window` requests in flight. What QUIC buffers
/// before the sync reads it comes on top of the sync's byte budget, so the windows are small
/// per stream; the connection's is one stream's more than all requests in flight can fill, so
/// the bundle next in line (which the sync always reads) always has credit, however many others
/// wait for the budget unread.
pub(crate) fn client_transport(window: usize) -> Arc<quinn::TransportConfig> {
    let mut t = base_transport();
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(0));
    t.stream_receive_window(quinn::VarInt::from_u32(CLIENT_STREAM_WINDOW));
    let connection = u64::from(CLIENT_STREAM_WINDOW) * (window as u64 + 2);
    t.receive_window(quinn::VarInt::from_u64(connection).unwrap_or(quinn::VarInt::MAX));
    t.send_window(1 << 20);
    Arc::new(t)
}
