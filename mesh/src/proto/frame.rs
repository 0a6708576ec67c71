//! Frames: `len (u32 BE) || body`. A receiver checks `len` against its cap *before* it
//! allocates anything; a larger frame is the violation `oversize_frame`.

use super::misbehaved::PeerMisbehaved;

/// Checks a frame header: the body length, if within `max`.
///
/// # Errors
/// [`PeerMisbehaved::OversizeFrame`].
pub fn frame_len(header: [u8; 4], max: u32) -> Result<usize, PeerMisbehaved> {
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(PeerMisbehaved::OversizeFrame { len, max });
    }
    Ok(len as usize)
}

/// Appends `len || body` to `out`.
///
/// # Panics
/// If `body` is 4 GiB or more; every frame we build is capped far below.
pub fn encode_frame(body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len()).expect("frames are capped far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
}

/// Frames out of a byte stream, for cores driven by bytes (and fuzzing). Incomplete input is
/// kept until the rest arrives; a header over the cap is an error before any allocation.
#[derive(Debug)]
pub struct FrameDecoder {
    max: u32,
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder that refuses frames over `max` bytes.
    pub fn new(max: u32) -> Self {
        Self { max, buf: Vec::new() }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's body, if one has arrived.
    ///
    /// # Errors
    /// [`PeerMisbehaved::OversizeFrame`]; the decoder is unusable afterwards.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, PeerMisbehaved> {
        let Some(header) = self.buf.get(..4) else { return Ok(None) };
        let header: [u8; 4] = header.try_into().expect("a 4-byte slice");
        let len = frame_len(header, self.max)?;
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_above_the_cap_are_refused_before_allocation() {
        assert_eq!(frame_len(100u32.to_be_bytes(), 100), Ok(100));
        assert_eq!(
            frame_len(101u32.to_be_bytes(), 100),
            Err(PeerMisbehaved::OversizeFrame { len: 101, max: 100 })
        );
        let mut out = Vec::new();
        encode_frame(b"abc", &mut out);
        assert_eq!(out, [0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn the_decoder_reassembles_split_frames_and_refuses_big_ones() {
        let mut bytes = Vec::new();
        encode_frame(b"hello", &mut bytes);
        encode_frame(b"", &mut bytes);
        encode_frame(b"xyz", &mut bytes);
        let mut d = FrameDecoder::new(10);
        let mut got = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, [b"hello".to_vec(), Vec::new(), b"xyz".to_vec()]);
        assert_eq!(d.buffered(), 0);
        let mut d = FrameDecoder::new(10);
        d.push(&11u32.to_be_bytes());
        assert_eq!(d.next_frame(), Err(PeerMisbehaved::OversizeFrame { len: 11, max: 10 }));
    }
}
