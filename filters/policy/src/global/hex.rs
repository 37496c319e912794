//! Keys on the wire: lowercase hex of the key bytes (keys are bytes, not text).

use alloc::string::String;
use alloc::vec::Vec;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex, appended to `out`.
pub fn encode_into(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// `bytes` as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    encode_into(bytes, &mut out);
    out
}

/// Why a hex string did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexError {
    /// An odd number of digits.
    OddLength,
    /// A character that is not a hex digit, at this byte offset.
    NotHex(usize),
}

impl core::fmt::Display for HexError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HexError::OddLength => f.write_str("an odd number of hex digits"),
            HexError::NotHex(at) => write!(f, "not a hex digit at offset {at}"),
        }
    }
}

/// Decodes hex (either case).
///
/// ```
/// use sluice_policy::global::hex;
///
/// assert_eq!(hex::encode(b"203.0.113.7"), "3230332e302e3131332e37");
/// assert_eq!(hex::decode("3230332E30").unwrap(), b"203.0");
/// assert!(hex::decode("abc").is_err());
/// ```
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    let digit = |at: usize| -> Result<u8, HexError> {
        let b = bytes.get(at).copied().ok_or(HexError::OddLength)?;
        match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            b'A'..=b'F' => Ok(b - b'A' + 10),
            _ => Err(HexError::NotHex(at)),
        }
    };
    (0..bytes.len() / 2)
        .map(|i| Ok(digit(2 * i)? << 4 | digit(2 * i + 1)?))
        .collect()
}
