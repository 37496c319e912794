//! Which address a request comes from: the peer, an entry of `X-Forwarded-For` written by a
//! trusted proxy, or a header set by a trusted edge (e.g. `CF-Connecting-IP`).
//!
//! # `x_forwarded_for` with `trusted_hops: N`
//!
//! Every proxy that appends to `X-Forwarded-For` adds, at the right end, the address of whoever
//! connected to it. With `N` trusted proxies in front of the point where the filter reads the
//! header, the `N` rightmost entries were written by them, and the `N`th from the right is the
//! address the outermost trusted proxy saw: the client. So the client address is the `N`th
//! entry from the right of all `X-Forwarded-For` lines taken in order (several lines are one
//! comma-separated list, RFC 9110 §5.3; empty entries are skipped, §5.6.1). If there are fewer
//! than `N` entries, or that entry is not an IP address (`unknown`, an obfuscated identifier),
//! the peer address is used instead.
//!
//! **Spoofing.** A client can put anything in the `X-Forwarded-For` it sends, but whatever it
//! sends stays to the *left* of what the trusted proxies append: the entry `N` from the right
//! is always written by a trusted proxy. A client that adds entries neither becomes another
//! client nor leaves its own counter; a client that sends none is still identified by what
//! the proxies append. A client that reaches this proxy without passing the trusted ones has
//! fewer than `N` entries appended for it, unless it forges them: so **only accept traffic from
//! the trusted proxies** (network policy) when using this source, or use `peer`.
//!
//! **Counting the hops.** `N` is what Envoy calls `xff_num_trusted_hops` (with
//! `use_remote_address: true`, Envoy's trusted client address is the `N`th entry from the right
//! of the header *as received*). The filter, though, reads the header as it is when HTTP filters
//! run. Envoy with `use_remote_address: true` and `skip_xff_append: false` appends the peer
//! address before its filters run, so there the header has one more entry: set `N` to the
//! number of trusted proxies in front of Envoy plus one. Where the proxy does not append before
//! its filters (Envoy with `use_remote_address: false`; NGINX's `$proxy_add_x_forwarded_for`
//! only changes the request sent upstream), `N` is the number of trusted proxies in front of
//! it. When Envoy itself derives the client address from `X-Forwarded-For`
//! (`use_remote_address: false`, or an original IP detection extension), its `source.address`
//! is already that address, and the `peer` source is the simpler choice.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use alloc::string::String;
use serde_json::Value;

use crate::error::ConfigError;
use crate::json::{self, Fields};
use crate::request::Request;

/// The most trusted hops accepted: more proxies than this in one path is a misconfiguration.
pub const MAX_TRUSTED_HOPS: u64 = 32;

/// Where the client address comes from (the `client_ip` section).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientIpSource {
    /// The address of the peer connected to the proxy.
    #[default]
    Peer,
    /// The `trusted_hops`th entry from the right of `X-Forwarded-For` (see the module docs);
    /// the peer if there is no such entry or it is not an address.
    XForwardedFor {
        /// How many proxies in front of the filter append to `X-Forwarded-For`.
        trusted_hops: u8,
    },
    /// The address in a header set by a trusted edge; the peer if it is missing or invalid.
    Header {
        /// The header's name, lowercase.
        name: String,
    },
}

impl ClientIpSource {
    /// Parses the `client_ip` section.
    pub(crate) fn parse(value: &Value, path: &str) -> Result<ClientIpSource, ConfigError> {
        #[derive(Clone, Copy)]
        enum Source {
            Peer,
            XForwardedFor,
            Header,
        }
        let fields = Fields::open(value, path, &["source", "trusted_hops", "name"])?;
        let source = json::variant(
            fields.require("source", "\"source\": \"peer\"")?,
            &fields.path("source"),
            &["peer", "x_forwarded_for", "header"],
            &[Source::Peer, Source::XForwardedFor, Source::Header],
        )?;
        // Each source takes only its own fields, so a misplaced one is reported, not ignored.
        let own_fields: &'static [&'static str] = match source {
            Source::Peer => &["source"],
            Source::XForwardedFor => &["source", "trusted_hops"],
            Source::Header => &["source", "name"],
        };
        Fields::open(value, path, own_fields)?;
        match source {
            Source::Peer => Ok(ClientIpSource::Peer),
            Source::XForwardedFor => {
                let hops = json::integer(
                    fields.require("trusted_hops", "\"trusted_hops\": 1")?,
                    &fields.path("trusted_hops"),
                    1,
                    MAX_TRUSTED_HOPS,
                    "the number of proxies in front of this one that append to X-Forwarded-For",
                )?;
                Ok(ClientIpSource::XForwardedFor {
                    trusted_hops: u8::try_from(hops).unwrap_or(u8::MAX),
                })
            }
            Source::Header => {
                let name = crate::key::field_name(
                    fields.require("name", "\"name\": \"cf-connecting-ip\"")?,
                    &fields.path("name"),
                )?;
                Ok(ClientIpSource::Header { name })
            }
        }
    }

    /// The client address of `request` from this source (IPv4-mapped IPv6 addresses as IPv4),
    /// or `None` if neither the source nor the peer gives one.
    pub fn client_ip(&self, request: &(impl Request + ?Sized)) -> Option<IpAddr> {
        let from_source = match self {
            ClientIpSource::Peer => None,
            ClientIpSource::XForwardedFor { trusted_hops } => {
                forwarded_for(request, usize::from(*trusted_hops))
            }
            ClientIpSource::Header { name } => request.header(name).and_then(parse_address),
        };
        from_source.or_else(|| request.peer_address().and_then(parse_address))
    }
}

/// The `hops`th entry from the right of every `X-Forwarded-For` line, if it is an address.
fn forwarded_for(request: &(impl Request + ?Sized), hops: usize) -> Option<IpAddr> {
    let mut total = 0usize;
    request.for_each_header("x-forwarded-for", &mut |line| {
        total = total.saturating_add(entries(line).count());
    });
    let wanted = total.checked_sub(hops)?;
    let mut seen = 0usize;
    let mut found = None;
    request.for_each_header("x-forwarded-for", &mut |line| {
        for entry in entries(line) {
            if seen == wanted {
                found = Some(parse_address(entry));
            }
            seen = seen.saturating_add(1);
        }
    });
    found.flatten()
}

/// The entries of one line, as bytes: an entry that is not valid text is still an entry (it
/// counts as a hop but is no address), so invalid bytes cannot shift which entry is read.
fn entries(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b',')
        .map(trim_whitespace)
        .filter(|entry| !entry.is_empty())
}

/// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
fn trim_whitespace(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Parses an address as proxies write it: `IP`, `IPv4:port`, `[IPv6]:port`, `[IPv6]` or a bare
/// IPv6 address, with surrounding whitespace. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`)
/// come back as IPv4, so a client is the same client over either family's socket.
///
/// ```
/// use core::net::{IpAddr, Ipv4Addr};
/// use sluice_policy::client_ip::parse_address;
///
/// let v4 = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
/// assert_eq!(parse_address(b"203.0.113.7:41000"), Some(v4));
/// assert_eq!(parse_address(b"[::ffff:203.0.113.7]:41000"), Some(v4));
/// assert_eq!(parse_address(b"unknown"), None);
/// ```
pub fn parse_address(text: &[u8]) -> Option<IpAddr> {
    let text = trim_whitespace(text);
    let ip = if let Some(rest) = text.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let (inside, after) = (&rest[..close], &rest[close + 1..]);
        if !(after.is_empty() || after.strip_prefix(b":").is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(parse_ipv6(inside)?)
    } else {
        // The colons say the form, so each address is parsed once (this runs per request):
        // an IPv4 address has none, `IPv4:port` (Envoy's peer address) one, an IPv6 address
        // at least two.
        match text.iter().position(|&b| b == b':') {
            None => IpAddr::V4(parse_ipv4(text)?),
            Some(colon) => {
                let (host, port) = (&text[..colon], &text[colon + 1..]);
                if port.contains(&b':') {
                    IpAddr::V6(parse_ipv6(text)?)
                } else if is_port(port) {
                    IpAddr::V4(parse_ipv4(host)?)
                } else {
                    return None;
                }
            }
        }
    };
    Some(ip.to_canonical())
}

/// Dotted-quad IPv4 exactly as `core`'s `Ipv4Addr::from_str` accepts it (four decimal octets of
/// at most three digits, no leading zero, each at most 255), parsed from the bytes: the peer
/// address is parsed on every request, and `core`'s general parser costs several times this.
fn parse_ipv4(bytes: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = bytes.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        let mut value = 0u16;
        for &digit in part {
            if !digit.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(digit - b'0');
        }
        *octet = u8::try_from(value).ok()?;
    }
    match parts.next() {
        None => Some(Ipv4Addr::from(octets)),
        Some(_) => None,
    }
}

/// IPv6 (rarer, and with forms of its own) goes through `core`'s parser.
fn parse_ipv6(bytes: &[u8]) -> Option<Ipv6Addr> {
    core::str::from_utf8(bytes).ok()?.parse().ok()
}

fn is_port(text: &[u8]) -> bool {
    !text.is_empty() && text.len() <= 5 && text.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_request::TestRequest;
    use alloc::vec::Vec;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    fn v6(text: &str) -> Option<IpAddr> {
        Some(IpAddr::V6(text.parse().unwrap()))
    }

    #[test]
    fn peer_addresses_parse_in_every_form_the_hosts_give() {
        // Envoy: IP:port and [v6]:port; ngx_wasm_module: the bare IP.
        assert_eq!(parse_address(b"203.0.113.7:41000"), v4(203, 0, 113, 7));
        assert_eq!(parse_address(b"203.0.113.7"), v4(203, 0, 113, 7));
        assert_eq!(parse_address(b"[2001:db8::7]:41000"), v6("2001:db8::7"));
        assert_eq!(parse_address(b"2001:db8::7"), v6("2001:db8::7"));
        assert_eq!(parse_address(b"[2001:db8::7]"), v6("2001:db8::7"));
        assert_eq!(parse_address(b" 203.0.113.7 "), v4(203, 0, 113, 7));
        assert_eq!(parse_address(b"\t203.0.113.7:41000 "), v4(203, 0, 113, 7));
    }

    #[test]
    fn ipv4_is_accepted_exactly_as_cores_parser_accepts_it() {
        // Every string of up to 7 characters over digits, dots and one other byte, and a set
        // of longer edge cases: the hand-written parser and `Ipv4Addr::from_str` agree on all.
        const ALPHABET: &[u8] = b"0129.5x";
        let mut compared = 0usize;
        let mut text = Vec::with_capacity(7);
        for len in 0..=7u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                let core = core::str::from_utf8(&text)
                    .unwrap()
                    .parse::<Ipv4Addr>()
                    .ok();
                assert_eq!(
                    parse_ipv4(&text),
                    core,
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
                compared += 1;
            }
        }
        for text in [
            "255.255.255.255",
            "256.0.0.1",
            "0.0.0.0",
            "00.0.0.0",
            "1.2.3.04",
            "1.2.3.4.",
            ".1.2.3.4",
            "1..2.3",
            "1.2.3.4.5",
            "999.1.1.1",
            "1000.1.1.1",
            "+1.2.3.4",
            "1.2.3.4 ",
            "203.0.113.7",
            "203.0.113.07",
            "1.2.3.\u{0661}",
        ] {
            let core = text.parse::<Ipv4Addr>().ok();
            assert_eq!(parse_ipv4(text.as_bytes()), core, "{text}");
            compared += 1;
        }
        assert!(compared > 900_000);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_treated_as_ipv4() {
        assert_eq!(parse_address(b"::ffff:203.0.113.7"), v4(203, 0, 113, 7));
        assert_eq!(parse_address(b"[::ffff:cb00:7107]:80"), v4(203, 0, 113, 7));
    }

    #[test]
    fn things_that_are_not_addresses_are_rejected() {
        for text in [
            "",
            " \t ",
            "unknown",
            "_hidden",
            "203.0.113",
            "203.0.113.7:",
            "203.0.113.7:port",
            "203.0.113.7:123456",
            "[2001:db8::7",
            "[2001:db8::7]x",
            "[203.0.113.7]:80",
            "2001:db8::7:80:1:2:3:4:5",
            "host.example:80",
        ] {
            assert_eq!(parse_address(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn the_peer_source_uses_the_peer_address() {
        let req = TestRequest::get("/")
            .peer("198.51.100.1:5000")
            .header("x-forwarded-for", "1.1.1.1");
        assert_eq!(ClientIpSource::Peer.client_ip(&req), v4(198, 51, 100, 1));
        assert_eq!(ClientIpSource::Peer.client_ip(&TestRequest::get("/")), None);
    }

    #[test]
    fn x_forwarded_for_takes_the_nth_entry_from_the_right_across_lines() {
        let one = ClientIpSource::XForwardedFor { trusted_hops: 1 };
        let two = ClientIpSource::XForwardedFor { trusted_hops: 2 };
        let req = TestRequest::get("/")
            .peer("10.0.0.2:80")
            .header("x-forwarded-for", "192.0.2.1, 192.0.2.2")
            .header("x-forwarded-for", "192.0.2.3,,192.0.2.4");
        assert_eq!(one.client_ip(&req), v4(192, 0, 2, 4));
        assert_eq!(two.client_ip(&req), v4(192, 0, 2, 3));
        let four = ClientIpSource::XForwardedFor { trusted_hops: 4 };
        assert_eq!(four.client_ip(&req), v4(192, 0, 2, 1));
    }

    #[test]
    fn an_entry_that_is_not_text_still_counts_as_a_hop() {
        let xff = ClientIpSource::XForwardedFor { trusted_hops: 1 };
        let req = TestRequest::get("/")
            .peer("10.0.0.1:80")
            .header_bytes("x-forwarded-for", b"203.0.113.7, \xff\xfe");
        // The rightmost entry is the trusted proxy's: not an address, so the peer counts.
        assert_eq!(xff.client_ip(&req), v4(10, 0, 0, 1));
        let xff = ClientIpSource::XForwardedFor { trusted_hops: 2 };
        assert_eq!(xff.client_ip(&req), v4(203, 0, 113, 7));
        let header = ClientIpSource::Header {
            name: "cf-connecting-ip".into(),
        };
        let req = req.header_bytes("cf-connecting-ip", b"203.0.113.8\xff");
        assert_eq!(header.client_ip(&req), v4(10, 0, 0, 1));
    }

    #[test]
    fn entries_a_client_prepends_cannot_change_its_address() {
        // The trusted proxy appended 203.0.113.7; the client sent the rest.
        let src = ClientIpSource::XForwardedFor { trusted_hops: 1 };
        let honest = TestRequest::get("/")
            .peer("10.0.0.2:80")
            .header("x-forwarded-for", "203.0.113.7");
        let spoofing = TestRequest::get("/")
            .peer("10.0.0.2:80")
            .header("x-forwarded-for", "198.51.100.99")
            .header("x-forwarded-for", "1.2.3.4, 5.6.7.8, 203.0.113.7");
        assert_eq!(src.client_ip(&honest), v4(203, 0, 113, 7));
        assert_eq!(src.client_ip(&spoofing), v4(203, 0, 113, 7));
    }

    #[test]
    fn x_forwarded_for_falls_back_to_the_peer_when_short_or_not_an_address() {
        let two = ClientIpSource::XForwardedFor { trusted_hops: 2 };
        let short = TestRequest::get("/")
            .peer("10.0.0.2:80")
            .header("x-forwarded-for", "203.0.113.7");
        assert_eq!(two.client_ip(&short), v4(10, 0, 0, 2));
        let absent = TestRequest::get("/").peer("10.0.0.2:80");
        assert_eq!(two.client_ip(&absent), v4(10, 0, 0, 2));
        let garbage = TestRequest::get("/")
            .peer("10.0.0.2:80")
            .header("x-forwarded-for", "unknown, 10.0.0.1");
        assert_eq!(two.client_ip(&garbage), v4(10, 0, 0, 2));
        // An entry with a port, as some load balancers write it, is still an address.
        let with_port = TestRequest::get("/")
            .peer("10.0.0.2:80")
            .header("x-forwarded-for", "[2001:db8::1]:443, 10.0.0.1");
        assert_eq!(two.client_ip(&with_port), v6("2001:db8::1"));
    }

    #[test]
    fn a_header_source_reads_the_header_and_falls_back_to_the_peer() {
        let src = ClientIpSource::Header {
            name: String::from("cf-connecting-ip"),
        };
        let set = TestRequest::get("/")
            .peer("10.0.0.2:80")
            .header("cf-connecting-ip", "2001:db8::42");
        assert_eq!(src.client_ip(&set), v6("2001:db8::42"));
        let invalid = TestRequest::get("/")
            .peer("10.0.0.2:80")
            .header("cf-connecting-ip", "not-an-ip");
        assert_eq!(src.client_ip(&invalid), v4(10, 0, 0, 2));
        let missing = TestRequest::get("/").peer("10.0.0.2");
        assert_eq!(src.client_ip(&missing), v4(10, 0, 0, 2));
    }
}
