//! A proxy-wasm header map as the host serialises it, read in place.
//!
//! `proxy_get_header_map_pairs` answers one buffer: the number of pairs (u32, little endian),
//! then each pair's name and value lengths (u32 each), then each name and value followed by a
//! NUL byte. The SDK copies every name into a `String` (panicking on one that is not UTF-8)
//! and every value into a `Vec`; here the buffer is kept as it came and pairs are found by
//! walking it, so reading a request allocates nothing beyond the host's own copy.

/// The serialised map. A buffer that does not follow the format reads as the pairs before the
/// first inconsistency (never a panic).
#[derive(Debug, Default)]
pub struct HeaderMap {
    bytes: Vec<u8>,
}

impl HeaderMap {
    pub fn new(bytes: Vec<u8>) -> HeaderMap {
        HeaderMap { bytes }
    }

    /// Every (name, value) pair, in the order the host gave them.
    pub fn pairs(&self) -> Pairs<'_> {
        let count = read_u32(&self.bytes, 0).unwrap_or(0) as usize;
        // Each pair takes at least 8 bytes of lengths and 2 NULs: a count larger than the
        // buffer can hold is damaged.
        let count = count.min(self.bytes.len() / 10);
        Pairs {
            bytes: &self.bytes,
            next: 0,
            count,
            data: 4 + count * 8,
        }
    }

    /// The first value of `name` (lowercase), compared without ASCII case: Envoy lowercases
    /// names, ngx_wasm_module may pass HTTP/1 names as the client sent them.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// The pairs of a [`HeaderMap`].
#[derive(Debug)]
pub struct Pairs<'a> {
    bytes: &'a [u8],
    next: usize,
    count: usize,
    /// Where the next name starts.
    data: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let lengths = 4 + self.next * 8;
        let name_len = read_u32(self.bytes, lengths)? as usize;
        let value_len = read_u32(self.bytes, lengths + 4)? as usize;
        let name_end = self.data.checked_add(name_len)?;
        let name = self.bytes.get(self.data..name_end)?;
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(value_len)?;
        let value = self.bytes.get(value_start..value_end)?;
        self.data = value_end.checked_add(1)?;
        self.next += 1;
        Some((name, value))
    }
}

/// Writes `pairs` into `out` (cleared first) in the host's format, e.g. for a local response's
/// headers.
pub fn serialise_into<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    out: &mut Vec<u8>,
) {
    out.clear();
    let count = pairs.clone().count();
    out.extend_from_slice(&u32::try_from(count).unwrap_or(0).to_le_bytes());
    for (name, value) in pairs.clone() {
        out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(0).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(word.try_into().ok()?))
}

#[cfg(test)]
// Tests cut and patch buffers by index on purpose; the filter's own code must not.
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn serialised_pairs_read_back() {
        let mut out = vec![1, 2, 3];
        let pairs = [("content-type", "text/plain"), ("retry-after", "2")];
        serialise_into(pairs.iter().copied(), &mut out);
        let map = HeaderMap::new(out);
        let read: Vec<_> = map.pairs().collect();
        assert_eq!(
            read,
            [
                (&b"content-type"[..], &b"text/plain"[..]),
                (b"retry-after", b"2")
            ]
        );
    }

    fn serialise(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut bytes = (pairs.len() as u32).to_le_bytes().to_vec();
        for (name, value) in pairs {
            bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            bytes.extend_from_slice(name);
            bytes.push(0);
            bytes.extend_from_slice(value);
            bytes.push(0);
        }
        bytes
    }

    #[test]
    fn reads_every_pair_in_order_with_bytes_as_they_came() {
        let pairs: &[(&[u8], &[u8])] = &[
            (b":method", b"GET"),
            (b"X-Key", b"\xff\xfe"),
            (b"x-key", b""),
            (b"\xc3(", b"v"),
        ];
        let map = HeaderMap::new(serialise(pairs));
        assert_eq!(map.pairs().collect::<Vec<_>>(), pairs);
        assert_eq!(map.get("x-key"), Some(&b"\xff\xfe"[..]));
        assert_eq!(map.get(":method"), Some(&b"GET"[..]));
        assert_eq!(map.get("host"), None);
    }

    #[test]
    fn a_damaged_buffer_reads_as_the_pairs_before_the_damage() {
        let whole = serialise(&[(b"a", b"1"), (b"b", b"2")]);
        for cut in 0..whole.len() {
            let map = HeaderMap::new(whole[..cut].to_vec());
            assert!(map.pairs().count() <= 2, "cut at {cut}");
        }
        let mut huge = whole.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMap::new(huge).pairs().count() <= 2);
        let mut long = whole;
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderMap::new(long).pairs().count(), 0);
        assert_eq!(HeaderMap::default().pairs().count(), 0);
    }
}
