//! Reading structured values out of a fuzzer's bytes: a cursor that never fails, answering
//! zeros and empty strings once the bytes run out, so every input means something.

/// A cursor over the fuzzer's bytes.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(bytes: &'a [u8]) -> Input<'a> {
        Input { bytes }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The next byte (0 when none is left).
    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((first, rest)) => {
                self.bytes = rest;
                *first
            }
            None => 0,
        }
    }

    /// The next `u16`, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next `u32`, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    /// The next `n` bytes (fewer if the input ends).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        taken
    }

    /// Bytes up to the next `0xff` separator (or the end), which is consumed.
    pub fn chunk(&mut self) -> &'a [u8] {
        match self.bytes.iter().position(|&b| b == 0xff) {
            Some(at) => {
                let chunk = &self.bytes[..at];
                self.bytes = &self.bytes[at + 1..];
                chunk
            }
            None => self.take(self.bytes.len()),
        }
    }

    /// The next chunk as text, invalid UTF-8 replaced (header values reach the filter as
    /// text; the byte-level decoders are fuzzed on their own).
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.chunk()).into_owned()
    }

    /// One of `choices`, chosen by the next byte.
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.byte()) % choices.len()]
    }
}
