//! Receiving one bundle: the response header (`Bundle { count, path }`, a refusal, or a
//! violation), whose announced count must be the bundle's size in the tree, then `count` frames
//! of leaf data, at most `cap` bytes in all (past it the bundle is abandoned as too large, not as
//! a violation: the session asks for narrower bundles). Fed frame by frame; verification is the
//! engine's (`verify_range`), on a blocking thread, once all leaves are in.

use onoal_engine::Hash;
use onoal_engine::replica::range_len;

use super::error::SessionError;
use crate::proto::message::Response;
use crate::proto::misbehaved::PeerMisbehaved;

/// The leaves and path of a received bundle, not yet verified.
#[derive(Debug, PartialEq, Eq)]
pub struct ReceivedBundle {
    /// First seq.
    pub first: u64,
    /// Width requested.
    pub width: u64,
    /// Leaf data of each entry.
    pub leaves: Vec<Vec<u8>>,
    /// The path from the bundle's subtree to the checkpoint's root.
    pub path: Vec<Hash>,
}

/// Reads one bundle response, frame by frame.
#[derive(Debug)]
pub struct BundleReader {
    first: u64,
    width: u64,
    size: u64,
    cap: u64,
    header: Option<(u32, Vec<Hash>)>,
    leaves: Vec<Vec<u8>>,
    bytes: u64,
}

impl BundleReader {
    /// A reader for the bundle of width `width` at `first` of the tree of `size`, holding at
    /// most `cap` bytes of leaf data.
    pub fn new(first: u64, width: u64, size: u64, cap: u64) -> Self {
        Self { first, width, size, cap, header: None, leaves: Vec::new(), bytes: 0 }
    }

    /// Leaf bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Handles the next frame: the header first, then leaves. Returns the bundle once its last
    /// leaf arrived.
    ///
    /// # Errors
    /// A refusal, an undecodable or unexpected header, a count that is not the bundle's.
    pub fn handle_frame(&mut self, frame: Vec<u8>) -> Result<Option<ReceivedBundle>, SessionError> {
        let Some((count, _)) = &self.header else {
            let response: Response = postcard::from_bytes(&frame).map_err(|e| {
                SessionError::Misbehaved(PeerMisbehaved::UndecodableResponse(e.to_string()))
            })?;
            let (count, path) = match response {
                Response::Bundle { count, path } => (count, path),
                Response::Error { code, message } => {
                    return Err(SessionError::Refused(code, message));
                }
                other => {
                    return Err(SessionError::Misbehaved(PeerMisbehaved::UnexpectedResponse {
                        request: "Bundle",
                        response: other.kind(),
                    }));
                }
            };
            let expected = range_len(self.first, self.width, self.size).unwrap_or(0);
            if u64::from(count) != expected {
                return Err(SessionError::Misbehaved(PeerMisbehaved::BundleCount {
                    first: self.first,
                    count,
                    size: self.size,
                    expected,
                }));
            }
            self.leaves.reserve_exact(count as usize);
            self.header = Some((count, path));
            return Ok(None);
        };
        let count = *count as usize;
        self.bytes += frame.len() as u64;
        if self.bytes > self.cap {
            return Err(SessionError::TooLarge {
                entries: self.leaves.len() as u64,
                bytes: self.bytes,
            });
        }
        self.leaves.push(frame);
        if self.leaves.len() < count {
            return Ok(None);
        }
        let (_, path) = self.header.take().expect("the header was read first");
        Ok(Some(ReceivedBundle {
            first: self.first,
            width: self.width,
            leaves: std::mem::take(&mut self.leaves),
            path,
        }))
    }

    /// True once the header was read.
    pub fn has_header(&self) -> bool {
        self.header.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::message::ErrorCode;

    fn header(r: &Response) -> Vec<u8> {
        postcard::to_stdvec(r).unwrap()
    }

    #[test]
    fn a_bundle_is_its_header_then_its_leaves() {
        let mut r = BundleReader::new(256, 256, 300, u64::MAX);
        let path = vec![Hash([1; 32])];
        assert_eq!(
            r.handle_frame(header(&Response::Bundle { count: 44, path: path.clone() })),
            Ok(None)
        );
        for i in 0..43u8 {
            assert_eq!(r.handle_frame(vec![i]), Ok(None));
        }
        let b = r.handle_frame(vec![43]).unwrap().unwrap();
        assert_eq!((b.first, b.leaves.len(), b.path), (256, 44, path));
        assert_eq!(r.bytes(), 44);
    }

    #[test]
    fn a_bundle_past_its_byte_cap_is_too_large_not_a_violation() {
        let mut r = BundleReader::new(0, 8, 300, 10);
        assert_eq!(
            r.handle_frame(header(&Response::Bundle { count: 8, path: Vec::new() })),
            Ok(None)
        );
        assert_eq!(r.handle_frame(vec![0; 6]), Ok(None));
        assert_eq!(
            r.handle_frame(vec![0; 6]),
            Err(SessionError::TooLarge { entries: 1, bytes: 12 })
        );
        // A narrower bundle's count is checked against its own width.
        let mut r = BundleReader::new(8, 8, 12, 100);
        assert!(matches!(
            r.handle_frame(header(&Response::Bundle { count: 8, path: Vec::new() })),
            Err(SessionError::Misbehaved(PeerMisbehaved::BundleCount { expected: 4, .. }))
        ));
    }

    #[test]
    fn wrong_counts_refusals_and_garbage_end_the_bundle() {
        let mut r = BundleReader::new(0, 256, 300, u64::MAX);
        assert!(matches!(
            r.handle_frame(header(&Response::Bundle { count: 255, path: Vec::new() })),
            Err(SessionError::Misbehaved(PeerMisbehaved::BundleCount { expected: 256, .. }))
        ));
        let mut r = BundleReader::new(0, 256, 300, u64::MAX);
        assert!(matches!(
            r.handle_frame(header(&Response::Error {
                code: ErrorCode::BadRequest,
                message: "no".into()
            })),
            Err(SessionError::Refused(ErrorCode::BadRequest, _))
        ));
        let mut r = BundleReader::new(0, 256, 300, u64::MAX);
        assert!(matches!(
            r.handle_frame(vec![0xff, 0x13]),
            Err(SessionError::Misbehaved(PeerMisbehaved::UndecodableResponse(_)))
        ));
        let mut r = BundleReader::new(0, 256, 300, u64::MAX);
        assert!(matches!(
            r.handle_frame(header(&Response::NoCheckpoint)),
            Err(SessionError::Misbehaved(PeerMisbehaved::UnexpectedResponse { .. }))
        ));
    }
}
