//! Header maps as Envoy keeps them, and the ABI's serialisation of pairs.
//!
//! Names are stored lower-case (Envoy's `LowerCaseString`); a name may
//! appear several times; order is kept. Values are bytes: filters may write
//! anything, and only the public API converts them to text.

use crate::types::Status;

/// Header pairs as bytes, in order.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// An ordered multimap of header names to values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeaderMap {
    entries: Pairs,
}

fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

impl HeaderMap {
    /// A map from text pairs (as the public API receives them).
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> HeaderMap {
        let mut map = HeaderMap::default();
        for (name, value) in pairs {
            map.add(name.as_bytes(), value.as_bytes());
        }
        map
    }

    /// A request's map: its text pairs, then its pairs with byte values.
    pub(crate) fn from_request(
        text: &[(String, String)],
        bytes: &[(String, Vec<u8>)],
    ) -> HeaderMap {
        let mut map = HeaderMap::from_pairs(text);
        for (name, value) in bytes {
            map.add(name.as_bytes(), value);
        }
        map
    }

    /// A map from byte pairs (names lower-cased).
    pub(crate) fn from_byte_pairs(pairs: Pairs) -> HeaderMap {
        let mut map = HeaderMap::default();
        map.set_all(pairs);
        map
    }

    /// The pairs as bytes, in order.
    pub(crate) fn to_byte_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(name, value)| (name.as_slice(), value.as_slice()))
    }

    /// The pairs as text, invalid UTF-8 replaced.
    pub(crate) fn to_pairs(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|(name, value)| {
                (
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                )
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The first value of `name` (Envoy answers only the first).
    pub(crate) fn get(&self, name: &[u8]) -> Option<&[u8]> {
        let name = lower(name);
        self.entries
            .iter()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, value)| value.as_slice())
    }

    pub(crate) fn add(&mut self, name: &[u8], value: &[u8]) {
        self.entries.push((lower(name), value.to_vec()));
    }

    /// Sets `name` to `value`: the first occurrence keeps its place and takes
    /// the value, later ones are removed; a missing name is appended.
    pub(crate) fn replace(&mut self, name: &[u8], value: &[u8]) {
        let name = lower(name);
        let mut found = false;
        self.entries.retain_mut(|(candidate, existing)| {
            if *candidate != name {
                return true;
            }
            if found {
                return false;
            }
            found = true;
            *existing = value.to_vec();
            true
        });
        if !found {
            self.entries.push((name, value.to_vec()));
        }
    }

    /// Removes every occurrence of `name`.
    pub(crate) fn remove(&mut self, name: &[u8]) {
        let name = lower(name);
        self.entries.retain(|(candidate, _)| *candidate != name);
    }

    /// Replaces the whole map.
    pub(crate) fn set_all(&mut self, pairs: Pairs) {
        self.entries = pairs
            .into_iter()
            .map(|(name, value)| (lower(&name), value))
            .collect();
    }

    /// Envoy's `byteSize()`: the total length of names and values.
    pub(crate) fn byte_size(&self) -> usize {
        self.entries
            .iter()
            .map(|(name, value)| name.len().saturating_add(value.len()))
            .fold(0, usize::saturating_add)
    }

    /// The pairs in the ABI's serialisation; an empty map is empty bytes (as
    /// Envoy answers it).
    pub(crate) fn serialize(&self) -> Vec<u8> {
        if self.entries.is_empty() {
            return Vec::new();
        }
        serialize_pairs(&self.entries)
    }
}

fn length_u32(length: usize) -> [u8; 4] {
    // Header names and values come from wasm32 memory or the public API; a
    // length beyond u32 cannot be represented in the ABI and is capped.
    u32::try_from(length).unwrap_or(u32::MAX).to_le_bytes()
}

/// Serialises pairs: the count, then each name and value length, then each
/// name and value followed by a NUL byte; integers little-endian.
pub(crate) fn serialize_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let size = pairs.iter().fold(4usize, |size, (name, value)| {
        size.saturating_add(name.len())
            .saturating_add(value.len())
            .saturating_add(10)
    });
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&length_u32(pairs.len()));
    for (name, value) in pairs {
        bytes.extend_from_slice(&length_u32(name.len()));
        bytes.extend_from_slice(&length_u32(value.len()));
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name);
        bytes.push(0);
        bytes.extend_from_slice(value);
        bytes.push(0);
    }
    bytes
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let end = at.checked_add(4)?;
    let word: [u8; 4] = bytes.get(at..end)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(word)).ok()
}

/// Parses serialised pairs. Like Envoy, fewer than four bytes (the spec's
/// empty map of zero or one byte) is an empty map; data whose lengths run
/// past its end is refused with `BAD_ARGUMENT` rather than read beyond it.
pub(crate) fn deserialize_pairs(bytes: &[u8]) -> Result<Pairs, Status> {
    let Some(count) = read_u32(bytes, 0) else {
        return Ok(Vec::new());
    };
    let header_end = count
        .checked_mul(8)
        .and_then(|sizes| sizes.checked_add(4))
        .ok_or(Status::BadArgument)?;
    if header_end > bytes.len() {
        return Err(Status::BadArgument);
    }
    let mut pairs = Vec::with_capacity(count);
    let mut data = header_end;
    for index in 0..count {
        let sizes_at = 4 + index * 8;
        let name_len = read_u32(bytes, sizes_at).ok_or(Status::BadArgument)?;
        let value_len = read_u32(bytes, sizes_at + 4).ok_or(Status::BadArgument)?;
        let name_end = data.checked_add(name_len).ok_or(Status::BadArgument)?;
        let name = bytes.get(data..name_end).ok_or(Status::BadArgument)?;
        let value_start = name_end.checked_add(1).ok_or(Status::BadArgument)?;
        let value_end = value_start
            .checked_add(value_len)
            .ok_or(Status::BadArgument)?;
        let value = bytes
            .get(value_start..value_end)
            .ok_or(Status::BadArgument)?;
        pairs.push((name.to_vec(), value.to_vec()));
        data = value_end.checked_add(1).ok_or(Status::BadArgument)?;
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Pairs {
        items
            .iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn pairs_serialise_as_the_spec_example() {
        let bytes = serialize_pairs(&pairs(&[("a", "1"), ("b", "22")]));
        let expected: Vec<u8> = vec![
            2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'1', 0, b'b', 0,
            b'2', b'2', 0,
        ];
        assert_eq!(bytes, expected);
        assert_eq!(
            deserialize_pairs(&bytes),
            Ok(pairs(&[("a", "1"), ("b", "22")]))
        );
    }

    #[test]
    fn short_input_is_an_empty_map_and_overruns_are_refused() {
        assert_eq!(deserialize_pairs(&[]), Ok(Vec::new()));
        assert_eq!(deserialize_pairs(&[0]), Ok(Vec::new()));
        assert_eq!(deserialize_pairs(&[0, 0, 0, 0]), Ok(Vec::new()));
        let mut bytes = serialize_pairs(&pairs(&[("name", "value")]));
        bytes.truncate(bytes.len() - 3);
        assert_eq!(deserialize_pairs(&bytes), Err(Status::BadArgument));
        assert_eq!(
            deserialize_pairs(&[255, 255, 255, 255]),
            Err(Status::BadArgument)
        );
    }

    #[test]
    fn names_are_lower_case_and_replace_keeps_the_first_place() {
        let mut map = HeaderMap::default();
        map.add(b"X-A", b"1");
        map.add(b"b", b"2");
        map.add(b"x-a", b"3");
        assert_eq!(map.get(b"X-a"), Some(&b"1"[..]));
        map.replace(b"x-A", b"9");
        assert_eq!(
            map.to_pairs(),
            [
                ("x-a".to_string(), "9".to_string()),
                ("b".to_string(), "2".to_string())
            ]
        );
        map.replace(b"new", b"n");
        map.remove(b"B");
        assert_eq!(map.len(), 2);
        assert_eq!(map.byte_size(), 3 + 1 + 3 + 1);
        assert_eq!(HeaderMap::default().serialize(), Vec::<u8>::new());
    }

    #[test]
    fn a_requests_byte_values_follow_its_text_ones_unchanged() {
        let text = [("X-Text".to_string(), "t".to_string())];
        let bytes = [("X-Bytes".to_string(), vec![0x80, 0xff])];
        let map = HeaderMap::from_request(&text, &bytes);
        assert_eq!(map.get(b"x-text"), Some(&b"t"[..]));
        assert_eq!(map.get(b"x-bytes"), Some(&[0x80, 0xff][..]));
        assert_eq!(
            deserialize_pairs(&map.serialize()),
            Ok(vec![
                (b"x-text".to_vec(), b"t".to_vec()),
                (b"x-bytes".to_vec(), vec![0x80, 0xff])
            ])
        );
    }
}
