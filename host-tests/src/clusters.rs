//! The upstream clusters a filter's HTTP and gRPC calls can reach, by name,
//! and the bounds the host puts on those calls.
//!
//! Envoy resolves the `upstream` of `proxy_http_call` (and the cluster of
//! `proxy_grpc_call` and `proxy_grpc_stream`) in its cluster manager; this
//! table plays that part (`sluice serve --cluster NAME=HOST:PORT`). Under ngx_wasm_module the upstream is an address
//! (`host[:port]`); there the table stands in for NGINX's resolver: a name
//! found in it connects to its address.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Named upstream addresses, as Envoy's static clusters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clusters {
    by_name: BTreeMap<String, SocketAddr>,
}

/// Why a `NAME=HOST:PORT` cluster entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster `{0}`: expected NAME=HOST:PORT")]
    Syntax(String),
    #[error("cluster `{entry}`: the name is empty")]
    EmptyName { entry: String },
    #[error("cluster `{entry}`: cannot resolve `{address}` to HOST:PORT: {reason}")]
    Address {
        entry: String,
        address: String,
        reason: String,
    },
}

impl Clusters {
    /// An empty table: every call to a named cluster answers `BAD_ARGUMENT`.
    pub fn new() -> Clusters {
        Clusters::default()
    }

    /// Adds (or replaces) the cluster `name` at `address`.
    pub fn add(&mut self, name: &str, address: SocketAddr) {
        self.by_name.insert(name.to_string(), address);
    }

    /// The address of the cluster `name`.
    pub fn get(&self, name: &str) -> Option<SocketAddr> {
        self.by_name.get(name).copied()
    }

    /// Every cluster, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, SocketAddr)> {
        self.by_name
            .iter()
            .map(|(name, address)| (name.as_str(), *address))
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Parses `NAME=HOST:PORT` (the form of `sluice serve --cluster`); the
    /// host may be a name, resolved once, now.
    pub fn parse_entry(entry: &str) -> Result<(String, SocketAddr), ClusterError> {
        let (name, address) = entry
            .split_once('=')
            .ok_or_else(|| ClusterError::Syntax(entry.to_string()))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(ClusterError::EmptyName {
                entry: entry.to_string(),
            });
        }
        let address = address.trim();
        let resolved = address
            .to_socket_addrs()
            .map_err(|error| ClusterError::Address {
                entry: entry.to_string(),
                address: address.to_string(),
                reason: error.to_string(),
            })?
            .next()
            .ok_or_else(|| ClusterError::Address {
                entry: entry.to_string(),
                address: address.to_string(),
                reason: "no address".to_string(),
            })?;
        Ok((name.to_string(), resolved))
    }
}

/// Bounds on the HTTP and gRPC calls of one proxy. Envoy has no limit on
/// calls in flight; this host has one so a filter that dispatches without
/// bound cannot exhaust the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// Calls in flight per VM (HTTP calls, gRPC calls and streams together);
    /// one more answers `INTERNAL_FAILURE` (what Envoy answers when its
    /// async client cannot start a request).
    pub max_in_flight_per_vm: usize,
    /// A response body longer than this fails the call (0 headers, 0 body:
    /// Envoy's `ExceedResponseBufferLimit` failure). A gRPC message received
    /// longer than this, or more unsent bytes on a gRPC stream, closes it
    /// with `RESOURCE_EXHAUSTED`.
    pub max_response_body: usize,
    /// The timeout of an HTTP call or unary gRPC call made with timeout 0
    /// (Envoy then sets none; the host never lets a call hang).
    pub unset_timeout: Duration,
}

impl Default for CallLimits {
    fn default() -> CallLimits {
        CallLimits {
            max_in_flight_per_vm: 1024,
            max_response_body: 1024 * 1024,
            unset_timeout: Duration::from_secs(60),
        }
    }
}

impl fmt::Display for Clusters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, address) in self.iter() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{name}={address}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_a_resolvable_address() {
        let (name, address) = Clusters::parse_entry("limits=127.0.0.1:8081").expect("valid");
        assert_eq!(name, "limits");
        assert_eq!(address, "127.0.0.1:8081".parse().expect("an address"));
        assert!(matches!(
            Clusters::parse_entry("limits"),
            Err(ClusterError::Syntax(_))
        ));
        assert!(matches!(
            Clusters::parse_entry("=127.0.0.1:1"),
            Err(ClusterError::EmptyName { .. })
        ));
        assert!(matches!(
            Clusters::parse_entry("limits=127.0.0.1"),
            Err(ClusterError::Address { .. })
        ));
    }
}
