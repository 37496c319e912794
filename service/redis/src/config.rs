//! How the store reaches Redis.

use std::fmt;
use std::time::Duration;

use crate::tls::TlsConfig;

/// Standalone Redis, a Redis Cluster, or whichever the server says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Topology {
    /// One URL: ask the server (`INFO cluster`); several URLs: a cluster.
    #[default]
    Auto,
    /// One Redis server (or a proxy in front of several); only the first URL is used.
    Standalone,
    /// A Redis Cluster; the URLs are seed nodes, the rest is discovered.
    Cluster,
}

/// Where Redis is and how to talk to it.
///
/// `Debug` shows no password (neither the field nor one inside a URL).
///
/// ```
/// use sluice_redis::RedisConfig;
///
/// let mut config = RedisConfig::new("redis://sluice:s3cret@10.0.0.5:6379");
/// config.password = Some("other-s3cret".to_owned());
/// let shown = format!("{config:?}");
/// assert!(!shown.contains("s3cret"), "{shown}");
/// assert!(shown.contains("redis://sluice:***@10.0.0.5:6379"), "{shown}");
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS. One for a
    /// standalone server, one or more seed nodes for a cluster; all of one scheme.
    pub urls: Vec<String>,
    /// Standalone or cluster.
    pub topology: Topology,
    /// ACL user name; overrides one in the URLs.
    pub username: Option<String>,
    /// Password (of `username`, or `requirepass`); overrides one in the URLs.
    pub password: Option<String>,
    /// For `rediss://`: a private CA and a client certificate (mutual TLS). `None`: the
    /// system's certificate authorities, no client certificate.
    pub tls: Option<TlsConfig>,
    /// How long one Redis call may take before the rules of the decision get their failure
    /// mode. A decision makes one call in the common case.
    pub call_timeout: Duration,
    /// How long connecting (and reconnecting) to a node may take.
    pub connect_timeout: Duration,
    /// Compare-and-set races a decision may lose (each costs a round trip) before its rules
    /// get their failure mode.
    pub max_cas_retries: u32,
    /// How many keys' last seen values are remembered, to send the expected value with the
    /// first call. A key not remembered costs a second round trip if it exists in Redis.
    pub cache_capacity: usize,
}

impl RedisConfig {
    /// Default call timeout: well under the filter's default 100 ms for the whole call to the
    /// service.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(50);
    /// Default connect timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Default compare-and-set retries.
    pub const DEFAULT_MAX_CAS_RETRIES: u32 = 8;
    /// Default number of keys whose last seen value is kept.
    pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

    /// One URL, the topology asked from the server, default timeouts and retries.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig::with_urls(vec![url.into()], Topology::Auto)
    }

    /// A Redis Cluster reached through these seed nodes.
    pub fn cluster<I, S>(urls: I) -> RedisConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisConfig::with_urls(
            urls.into_iter().map(Into::into).collect(),
            Topology::Cluster,
        )
    }

    fn with_urls(urls: Vec<String>, topology: Topology) -> RedisConfig {
        RedisConfig {
            urls,
            topology,
            username: None,
            password: None,
            tls: None,
            call_timeout: RedisConfig::DEFAULT_CALL_TIMEOUT,
            connect_timeout: RedisConfig::DEFAULT_CONNECT_TIMEOUT,
            max_cas_retries: RedisConfig::DEFAULT_MAX_CAS_RETRIES,
            cache_capacity: RedisConfig::DEFAULT_CACHE_CAPACITY,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("topology", &self.topology)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("call_timeout", &self.call_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_cas_retries", &self.max_cas_retries)
            .field("cache_capacity", &self.cache_capacity)
            .finish()
    }
}

impl RedisConfig {
    /// Whether the URLs ask for TLS (`rediss://`).
    pub fn uses_tls(&self) -> bool {
        self.urls.iter().any(|url| is_tls_url(url))
    }

    /// Refuses what cannot work: no URL, URLs of both schemes, certificates for plain
    /// `redis://`, or a URL asking to skip certificate checks.
    pub fn validate(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Err("no Redis URL given".to_owned());
        }
        let tls = self.urls.iter().filter(|url| is_tls_url(url)).count();
        if tls != 0 && tls != self.urls.len() {
            return Err(format!(
                "the Redis URLs mix rediss:// (TLS) and redis:// ({}): use one scheme for every node",
                self.urls
                    .iter()
                    .map(|url| redact_url(url))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(url) = self.urls.iter().find(|url| url.contains("#insecure")) {
            return Err(format!(
                "{}: #insecure (no certificate verification) is not supported; trust the \
                 server's CA with a CA certificate instead",
                redact_url(url)
            ));
        }
        if self.tls.is_some() && tls == 0 {
            return Err(format!(
                "TLS certificates are set but the Redis URL {} is not rediss://",
                redact_url(self.urls.first().map_or("", String::as_str))
            ));
        }
        Ok(())
    }
}

fn is_tls_url(url: &str) -> bool {
    url.get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
}

/// `url` with the password of its user info replaced by `***`, for logs and errors.
///
/// ```
/// use sluice_redis::config::redact_url;
/// assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://:***@h:1/0");
/// assert_eq!(redact_url("redis://u:pw@h"), "redis://u:***@h");
/// assert_eq!(redact_url("redis://pw@h"), "redis://***@h");
/// assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let redacted = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{redacted}{path}"),
        None => format!("{redacted}{path}"),
    }
}
