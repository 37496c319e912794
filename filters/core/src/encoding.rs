//! Byte-level building blocks shared by the state and bucket encodings: fixed-width
//! little-endian integers and LEB128 varints, read without ever indexing out of bounds.

use alloc::vec::Vec;

/// Why a read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The input ended in the middle of a value.
    Truncated,
    /// A varint longer than ten bytes, above `u64::MAX`, or not in its shortest form.
    MalformedVarint,
}

/// A cursor over untrusted bytes.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Result<&'a [u8], ReadError> {
        if len > self.rest.len() {
            return Err(ReadError::Truncated);
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ReadError> {
        let (&first, tail) = self.rest.split_first().ok_or(ReadError::Truncated)?;
        self.rest = tail;
        Ok(first)
    }

    pub(crate) fn u32_le(&mut self) -> Result<u32, ReadError> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.bytes(4)?);
        Ok(u32::from_le_bytes(buf))
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64, ReadError> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(buf))
    }

    /// An unsigned LEB128 varint in its shortest form (so every value has one encoding).
    pub(crate) fn varint(&mut self) -> Result<u64, ReadError> {
        let mut value: u64 = 0;
        for index in 0..VARINT_MAX_LEN {
            let byte = self.u8()?;
            let payload = u64::from(byte & 0x7f);
            // The tenth byte may only carry the top bit of a u64.
            if index == VARINT_MAX_LEN - 1 && payload > 1 {
                return Err(ReadError::MalformedVarint);
            }
            value |= payload << (7 * index);
            if byte & 0x80 == 0 {
                // A zero final byte after the first would be a longer encoding of a shorter value.
                if byte == 0 && index > 0 {
                    return Err(ReadError::MalformedVarint);
                }
                return Ok(value);
            }
        }
        Err(ReadError::MalformedVarint)
    }
}

/// The longest LEB128 encoding of a `u64`.
pub(crate) const VARINT_MAX_LEN: usize = 10;

pub(crate) fn put_u32_le(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64_le(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        // Truncation to the low seven bits is the point of the encoding.
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Bytes `put_varint` writes for `value`.
pub(crate) const fn varint_len(value: u64) -> usize {
    let bits = u64::BITS - value.leading_zeros();
    if bits == 0 {
        1
    } else {
        bits.div_ceil(7) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length_boundary() {
        let mut values = alloc::vec![0u64, 1, u64::MAX, u64::MAX - 1];
        for shift in 1..64 {
            values.push((1u64 << shift) - 1);
            values.push(1u64 << shift);
        }
        for value in values {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "length of {value}");
            let mut reader = Reader::new(&out);
            assert_eq!(reader.varint(), Ok(value));
            assert_eq!(reader.remaining(), 0);
        }
    }

    #[test]
    fn non_canonical_and_oversized_varints_are_rejected() {
        // 0 written in two bytes.
        assert_eq!(
            Reader::new(&[0x80, 0x00]).varint(),
            Err(ReadError::MalformedVarint)
        );
        // 2^64 (one past u64::MAX).
        let too_big = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02];
        assert_eq!(
            Reader::new(&too_big).varint(),
            Err(ReadError::MalformedVarint)
        );
        // Eleven bytes.
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(ReadError::MalformedVarint)
        );
        assert_eq!(Reader::new(&[0x80]).varint(), Err(ReadError::Truncated));
    }
}
