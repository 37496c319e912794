//! The parts of a request target and authority that rules look at, taken apart without
//! allocating.

use alloc::vec::Vec;

/// Splits a request target (`:path`) into the path and the query string (without `?`). A
/// fragment, which clients should not send, is dropped.
pub(crate) fn split_target(target: &[u8]) -> (&[u8], Option<&[u8]>) {
    let target = match split_once(target, b'#') {
        Some((before, _)) => before,
        None => target,
    };
    match split_once(target, b'?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// The host of an authority: without a port, and without the trailing dot of a fully
/// qualified name. An IPv6 literal keeps its brackets (`[2001:db8::1]`).
pub(crate) fn host_of(authority: &[u8]) -> &[u8] {
    // Userinfo is not allowed in :authority, but never let it pass as part of the host.
    let authority = match rsplit_once(authority, b'@') {
        Some((_, host)) => host,
        None => authority,
    };
    let host = if authority.starts_with(b"[") {
        match authority.iter().position(|&b| b == b']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        }
    } else {
        match rsplit_once(authority, b':') {
            Some((host, port)) if port.iter().all(u8::is_ascii_digit) => host,
            _ => authority,
        }
    };
    host.strip_suffix(b".").unwrap_or(host)
}

/// The raw (still percent-encoded) value of the first parameter of `query` whose decoded
/// name is `name`. A parameter without `=` has an empty value.
pub(crate) fn query_value<'q>(query: &'q [u8], name: &str) -> Option<&'q [u8]> {
    query
        .split(|&b| b == b'&')
        .map(|pair| split_once(pair, b'=').unwrap_or((pair, &[])))
        .find(|(key, _)| decoded(key).eq(name.bytes()))
        .map(|(_, value)| value)
}

/// Appends the decoded form of a query component to `out`: `%XX` becomes the byte, `+` a
/// space (form encoding), and a `%` not followed by two hex digits stays as it is.
pub(crate) fn decode_into(component: &[u8], out: &mut Vec<u8>) {
    out.extend(decoded(component));
}

fn split_once(bytes: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|&b| b == at)?;
    Some((bytes.get(..i)?, bytes.get(i + 1..)?))
}

fn rsplit_once(bytes: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().rposition(|&b| b == at)?;
    Some((bytes.get(..i)?, bytes.get(i + 1..)?))
}

fn decoded(bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    core::iter::from_fn(move || {
        let b = *bytes.get(i)?;
        i += 1;
        match b {
            b'+' => Some(b' '),
            b'%' => {
                let hi = bytes.get(i).and_then(|h| hex(*h));
                let lo = bytes.get(i + 1).and_then(|l| hex(*l));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => {
                        i += 2;
                        Some(hi << 4 | lo)
                    }
                    _ => Some(b'%'),
                }
            }
            _ => Some(b),
        }
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_string_and_fragment_are_split_off() {
        let split = |t: &'static str| {
            let (path, query) = split_target(t.as_bytes());
            (path, query.map(<[u8]>::to_vec))
        };
        assert_eq!(
            split("/a/b?x=1&y=2"),
            (&b"/a/b"[..], Some(b"x=1&y=2".to_vec()))
        );
        assert_eq!(split("/a?"), (&b"/a"[..], Some(Vec::new())));
        assert_eq!(split("/a"), (&b"/a"[..], None));
        assert_eq!(split("/a#frag?x"), (&b"/a"[..], None));
        assert_eq!(split("/a?x=1#frag"), (&b"/a"[..], Some(b"x=1".to_vec())));
        assert_eq!(
            split_target(b"/\xff?k=\xfe"),
            (&b"/\xff"[..], Some(&b"k=\xfe"[..]))
        );
    }

    #[test]
    fn the_host_loses_its_port_and_trailing_dot() {
        assert_eq!(host_of(b"api.example.com"), b"api.example.com");
        assert_eq!(host_of(b"api.example.com:8443"), b"api.example.com");
        assert_eq!(host_of(b"api.example.com.:80"), b"api.example.com");
        assert_eq!(host_of(b"[2001:db8::1]:443"), b"[2001:db8::1]");
        assert_eq!(host_of(b"[2001:db8::1]"), b"[2001:db8::1]");
        assert_eq!(host_of(b"user@evil.example:80"), b"evil.example");
        assert_eq!(host_of(b""), b"");
    }

    #[test]
    fn query_parameters_are_found_by_decoded_name_first_occurrence_first() {
        let q = b"a=1&api%5Fkey=first&api_key=second&flag";
        assert_eq!(query_value(q, "api_key"), Some(&b"first"[..]));
        assert_eq!(query_value(q, "a"), Some(&b"1"[..]));
        assert_eq!(query_value(q, "flag"), Some(&b""[..]));
        assert_eq!(query_value(q, "missing"), None);
        assert_eq!(query_value(b"", "a"), None);
    }

    #[test]
    fn decoding_handles_escapes_plus_and_broken_escapes() {
        let mut out = Vec::new();
        decode_into(b"a%20b+c%2Bd%zz%4", &mut out);
        assert_eq!(out, b"a b c+d%zz%4");
        out.clear();
        decode_into(b"%ff%00", &mut out);
        assert_eq!(out, [0xff, 0x00]);
    }
}
