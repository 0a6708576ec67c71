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
    pub(crate) request_timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            window: NonZeroUsize::new(32).expect("32 is not zero"),
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

    /// How long any request may go unanswered (connecting included) before the sync fails with
    /// a timeout naming the request. Defaults to 10 s; a long poll gets its wait on top.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

/// The transport every connection uses: a 30 s idle timeout with keep-alives well inside it
/// (the seed's heartbeat), 256 streams per connection, and windows sized for bulk sync.
pub(crate) fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000))));
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(256));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    t.stream_receive_window(quinn::VarInt::from_u32(8 << 20));
    t.receive_window(quinn::VarInt::from_u32(64 << 20));
    t.send_window(64 << 20);
    Arc::new(t)
}
