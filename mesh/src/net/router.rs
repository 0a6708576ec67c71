//! One endpoint, many protocols: the [`Router`] accepts every connection and hands it to the
//! handler of the protocol its ALPN names (sync today; membership, DHT and witnesses as they
//! come). Each handler is a thin driver around a protocol's sans-I/O core.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tracing::Instrument as _;

/// A protocol's driver for accepted connections.
pub(crate) trait ProtocolHandler: Send + Sync + 'static {
    /// Serves one accepted connection until it ends.
    fn handle(self: Arc<Self>, conn: quinn::Connection)
    -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// ALPN -> handler.
#[derive(Default)]
pub(crate) struct Router {
    handlers: Vec<(&'static [u8], Arc<dyn ProtocolHandler>)>,
}

impl Router {
    /// Routes connections that negotiated `alpn` to `handler`.
    pub(crate) fn accept(mut self, alpn: &'static [u8], handler: Arc<dyn ProtocolHandler>) -> Self {
        self.handlers.push((alpn, handler));
        self
    }

    /// Every ALPN the endpoint offers.
    pub(crate) fn alpns(&self) -> Vec<&'static [u8]> {
        self.handlers.iter().map(|(a, _)| *a).collect()
    }

    /// Accepts connections until the endpoint closes.
    pub(crate) async fn run(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let router = self.clone();
            let remote = incoming.remote_address();
            tokio::spawn(
                async move {
                    let conn = match incoming.await {
                        Ok(c) => c,
                        Err(e) => return tracing::debug!(error = %e, "handshake failed"),
                    };
                    let alpn = conn
                        .handshake_data()
                        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                        .and_then(|d| d.protocol);
                    let handler = router
                        .handlers
                        .iter()
                        .find(|(a, _)| alpn.as_deref() == Some(*a))
                        .map(|(_, h)| h.clone());
                    match handler {
                        Some(h) => h.handle(conn).await,
                        None => conn.close(quinn::VarInt::from_u32(2), b"no such protocol"),
                    }
                }
                .instrument(tracing::debug_span!("incoming", %remote)),
            );
        }
    }
}
