//! Client addresses a client cannot forge, through the filter. With `X-Forwarded-For` and two
//! trusted hops, a client cannot make itself count as another client, nor escape its own limit
//! by adding entries or header lines; and the default `client_ip` key groups an IPv6 /64, so
//! changing the interface identifier gains nothing.

use serde_json::json;
use sluice_host::{HttpRequest, Proxy};

use crate::support::{HOSTS, Host, get, send, start, status};

const LIMIT: usize = 3;
/// The second trusted proxy, which connects to this one.
const EDGE_PEER: &str = "10.0.0.2:5000";
/// The first trusted proxy's address, appended by the second.
const FIRST_PROXY: &str = "10.0.0.1";

fn behind_two_proxies(host: Host) -> Proxy {
    start(
        host,
        &json!({"client_ip": {"source": "x_forwarded_for", "trusted_hops": 2},
                "rules": [{"name": "per-client", "key": ["client_ip"],
                           "limit": {"requests": LIMIT, "period": "1h"}}]}),
        2,
    )
}

/// What arrives when `client` sends `sent` (its own `X-Forwarded-For` lines, possibly
/// forged) through the two trusted proxies: the first appends the client's address to the
/// last line, the second appends the first's.
fn through_proxies(client: &str, sent: &[&str]) -> HttpRequest {
    let mut request = get("/", EDGE_PEER);
    let mut lines: Vec<String> = sent.iter().map(|line| line.to_string()).collect();
    match lines.last_mut() {
        Some(last) => *last = format!("{last}, {client}, {FIRST_PROXY}"),
        None => lines.push(format!("{client}, {FIRST_PROXY}")),
    }
    for line in &lines {
        request = request.header("x-forwarded-for", line);
    }
    request
}

fn admitted(proxy: &Proxy, requests: impl IntoIterator<Item = HttpRequest>) -> usize {
    requests
        .into_iter()
        .enumerate()
        .filter(|(i, request)| status(&send(proxy, i % 2, request.clone())) == 200)
        .count()
}

const VICTIM: &str = "203.0.113.80";
const SPOOFER: &str = "198.51.100.90";

/// Forged `X-Forwarded-For` lines a spoofer might send.
fn forgeries(i: usize) -> Vec<String> {
    match i % 6 {
        0 => vec![VICTIM.to_string()],
        1 => vec![format!("{VICTIM}, {FIRST_PROXY}")],
        2 => vec![format!("192.0.2.{i}, 192.0.2.{}", i + 1)],
        3 => vec![VICTIM.to_string(), format!("2001:db8::{i}")],
        4 => vec!["unknown, , ,".to_string()],
        _ => vec![
            format!("[2001:db8::{i}]:443"),
            format!("{VICTIM}:80, 192.0.2.{i}"),
        ],
    }
}

#[test]
fn forged_entries_neither_borrow_another_clients_limit_nor_escape_ones_own() {
    for host in HOSTS {
        let proxy = behind_two_proxies(host);
        let spoofed = (0..30).map(|i| {
            let lines = forgeries(i);
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            through_proxies(SPOOFER, &lines)
        });
        assert_eq!(
            admitted(&proxy, spoofed),
            LIMIT,
            "{host:?}: 30 forged requests are one client, limited once"
        );
        // The victim's counter was never touched by the forgeries naming it.
        let honest = (0..LIMIT + 2).map(|_| through_proxies(VICTIM, &[]));
        assert_eq!(
            admitted(&proxy, honest),
            LIMIT,
            "{host:?}: the victim keeps its limit"
        );
        // A client that sends no header at all is still identified by what the proxies add.
        let bare = (0..LIMIT + 1).map(|_| through_proxies("192.0.2.200", &[]));
        assert_eq!(admitted(&proxy, bare), LIMIT, "{host:?}");
    }
}

#[test]
fn an_ipv6_client_is_one_client_across_its_slash_64() {
    for host in HOSTS {
        let proxy = start(
            host,
            &json!({"rules": [{"name": "per-client", "key": ["client_ip"],
                               "limit": {"requests": LIMIT, "period": "1h"}}]}),
            2,
        );
        // Every request from a new interface identifier in 2001:db8:1:2::/64.
        let same_64 = (0..10u32).map(|i| {
            let peer = format!(
                "[2001:db8:1:2:{:x}:{:x}::{:x}]:4000",
                (i * 7919) % 0xffff,
                i,
                i + 1
            );
            get("/", &peer)
        });
        assert_eq!(
            admitted(&proxy, same_64),
            LIMIT,
            "{host:?}: one /64, one counter"
        );
        // The neighbouring /64s are other clients.
        for peer in [
            "[2001:db8:1:3::1]:4000",
            "[2001:db8:1:1:ffff:ffff:ffff:ffff]:4000",
        ] {
            let neighbour = (0..LIMIT + 1).map(|_| get("/", peer));
            assert_eq!(admitted(&proxy, neighbour), LIMIT, "{host:?}: {peer}");
        }
    }
}

#[test]
fn an_ipv4_client_is_the_same_client_over_an_ipv4_mapped_socket() {
    let proxy = start(
        Host::Envoy,
        &json!({"rules": [{"name": "per-client", "key": ["client_ip"],
                           "limit": {"requests": LIMIT, "period": "1h"}}]}),
        2,
    );
    let requests = (0..2 * LIMIT).map(|i| {
        if i % 2 == 0 {
            get("/", "203.0.113.81:4000")
        } else {
            get("/", "[::ffff:203.0.113.81]:4000")
        }
    });
    assert_eq!(admitted(&proxy, requests), LIMIT);
}
