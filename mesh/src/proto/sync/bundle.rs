//! Receiving one bundle: the response header (`Bundle { count, path }`, a refusal, or a
//! violation), whose announced count must be the bundle's size in the tree, then `count` frames
//! of leaf data. Fed frame by frame; verification is the engine's (`verify_bundle`), on a
//! blocking thread, once all leaves are in.

use onoal_engine::Hash;
use onoal_engine::replica::bundle_len;

use super::session::SessionError;
use crate::proto::message::Response;
use crate::proto::misbehaved::PeerMisbehaved;

/// The leaves and path of a received bundle, not yet verified.
#[derive(Debug, PartialEq, Eq)]
pub struct ReceivedBundle {
    /// First seq.
    pub first: u64,
    /// Leaf data of each entry.
    pub leaves: Vec<Vec<u8>>,
    /// The path from the bundle's subtree to the checkpoint's root.
    pub path: Vec<Hash>,
}

/// Reads one bundle response, frame by frame.
#[derive(Debug)]
pub struct BundleReader {
    first: u64,
    size: u64,
    header: Option<(u32, Vec<Hash>)>,
    leaves: Vec<Vec<u8>>,
    bytes: u64,
}

impl BundleReader {
    /// A reader for bundle `first` of the tree of `size`.
    pub fn new(first: u64, size: u64) -> Self {
        Self { first, size, header: None, leaves: Vec::new(), bytes: 0 }
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
            let expected = bundle_len(self.first, self.size).unwrap_or(0);
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
        self.leaves.push(frame);
        if self.leaves.len() < count {
            return Ok(None);
        }
        let (_, path) = self.header.take().expect("the header was read first");
        Ok(Some(ReceivedBundle {
            first: self.first,
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
        let mut r = BundleReader::new(256, 300);
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
    fn wrong_counts_refusals_and_garbage_end_the_bundle() {
        let mut r = BundleReader::new(0, 300);
        assert!(matches!(
            r.handle_frame(header(&Response::Bundle { count: 255, path: Vec::new() })),
            Err(SessionError::Misbehaved(PeerMisbehaved::BundleCount { expected: 256, .. }))
        ));
        let mut r = BundleReader::new(0, 300);
        assert!(matches!(
            r.handle_frame(header(&Response::Error {
                code: ErrorCode::BadRequest,
                message: "no".into()
            })),
            Err(SessionError::Refused(ErrorCode::BadRequest, _))
        ));
        let mut r = BundleReader::new(0, 300);
        assert!(matches!(
            r.handle_frame(vec![0xff, 0x13]),
            Err(SessionError::Misbehaved(PeerMisbehaved::UndecodableResponse(_)))
        ));
        let mut r = BundleReader::new(0, 300);
        assert!(matches!(
            r.handle_frame(header(&Response::NoCheckpoint)),
            Err(SessionError::Misbehaved(PeerMisbehaved::UnexpectedResponse { .. }))
        ));
    }
}
