//! One multiplexed, self-healing connection to standalone Redis or to a Redis Cluster, with a
//! timeout on every call.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Client, ConnectionInfo, IntoConnectionInfo, Value};

use crate::config::{RedisConfig, Topology, redact_url};
use crate::error::RedisError;
use crate::script::{self, KeyOp, Reply};

/// A clonable handle: every clone shares the same connection(s).
#[derive(Clone)]
pub(crate) enum Connection {
    /// `ConnectionManager` multiplexes one connection and reconnects in the background after
    /// the server went away.
    Standalone(ConnectionManager),
    /// The cluster client keeps a connection per node, follows `MOVED`/`ASK` and refreshes
    /// the slot map when nodes change.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Connection::Standalone(_) => "Connection::Standalone",
            Connection::Cluster(_) => "Connection::Cluster",
        })
    }
}

impl Connection {
    /// Connects as `config` says, asking the server its topology if need be.
    pub(crate) async fn open(config: &RedisConfig) -> Result<Connection, RedisError> {
        config.validate().map_err(RedisError::Config)?;
        crate::tls::install_crypto_provider();
        let infos = connection_infos(config)?;
        let first = infos
            .first()
            .cloned()
            .ok_or_else(|| RedisError::Config("no Redis URL given".to_owned()))?;
        let cluster = match config.topology {
            Topology::Cluster => true,
            Topology::Standalone => false,
            Topology::Auto if infos.len() > 1 => true,
            Topology::Auto => {
                let standalone = standalone(first.clone(), config).await?;
                let info = standalone
                    .call(redis::cmd("INFO").arg("cluster"), config.connect_timeout)
                    .await?;
                let cluster = match &info {
                    Value::BulkString(text) => text
                        .split(|b| *b == b'\n')
                        .any(|line| line.trim_ascii() == b"cluster_enabled:1"),
                    Value::VerbatimString { text, .. } => {
                        text.lines().any(|line| line.trim() == "cluster_enabled:1")
                    }
                    _ => false,
                };
                if !cluster {
                    return Ok(standalone);
                }
                true
            }
        };
        if cluster {
            let mut builder = ClusterClientBuilder::new(infos)
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.call_timeout)
                .retries(2);
            if let Some(tls) = &config.tls {
                builder = builder.certs(tls.certificates());
            }
            let client = builder
                .build()
                .map_err(|e| RedisError::Config(e.to_string()))?;
            let connection =
                tokio::time::timeout(config.connect_timeout, client.get_async_connection())
                    .await
                    .map_err(|_| RedisError::Timeout(config.connect_timeout))?
                    .map_err(|e| RedisError::from_redis(&e))?;
            Ok(Connection::Cluster(connection))
        } else {
            standalone(first, config).await
        }
    }

    /// Sends `cmd`, waiting at most `timeout`.
    pub(crate) async fn call(
        &self,
        cmd: &redis::Cmd,
        timeout: Duration,
    ) -> Result<Value, RedisError> {
        self.call_raw(cmd, timeout).await.map_err(|e| match e {
            CallError::NoScript => RedisError::Server("NOSCRIPT".to_owned()),
            CallError::Other(e) => e,
        })
    }

    /// Runs the compare-and-set script over `ops` (keys of one hash slot). Returns the reply
    /// and the round trips it took: 1, or 2 when the server did not have the script yet.
    pub(crate) async fn compare_and_set(
        &self,
        sha1: &str,
        token: u64,
        turn_ms: u64,
        ops: &[KeyOp],
        timeout: Duration,
    ) -> (Result<Reply, RedisError>, u32) {
        let started = tokio::time::Instant::now();
        let first = self
            .call_raw(&script::command(Some(sha1), token, turn_ms, ops), timeout)
            .await;
        let (value, round_trips) = match first {
            Err(CallError::NoScript) => {
                let left = timeout.saturating_sub(started.elapsed());
                let value = match self
                    .call_raw(&script::command(None, token, turn_ms, ops), left)
                    .await
                {
                    Ok(value) => Ok(value),
                    Err(CallError::NoScript) => Err(RedisError::Server(
                        "NOSCRIPT after EVAL of the script".to_owned(),
                    )),
                    Err(CallError::Other(e)) => Err(e),
                };
                (value, 2)
            }
            Err(CallError::Other(e)) => (Err(e), 1),
            Ok(value) => (Ok(value), 1),
        };
        let reply = value.and_then(|value| {
            script::parse_reply(value, ops.len()).map_err(|e| RedisError::Reply(e.to_string()))
        });
        (reply, round_trips)
    }

    async fn call_raw(&self, cmd: &redis::Cmd, timeout: Duration) -> Result<Value, CallError> {
        let result = match self.clone() {
            Connection::Standalone(mut c) => {
                tokio::time::timeout(timeout, cmd.query_async::<Value>(&mut c)).await
            }
            Connection::Cluster(mut c) => {
                tokio::time::timeout(timeout, cmd.query_async::<Value>(&mut c)).await
            }
        };
        match result {
            Err(_) => Err(CallError::Other(RedisError::Timeout(timeout))),
            Ok(Err(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                Err(CallError::NoScript)
            }
            Ok(Err(e)) if e.is_timeout() => Err(CallError::Other(RedisError::Timeout(timeout))),
            Ok(Err(e)) => Err(CallError::Other(RedisError::from_redis(&e))),
            Ok(Ok(value)) => Ok(value),
        }
    }
}

enum CallError {
    NoScript,
    Other(RedisError),
}

async fn standalone(info: ConnectionInfo, config: &RedisConfig) -> Result<Connection, RedisError> {
    let client = match &config.tls {
        Some(tls) => Client::build_with_tls(info, tls.certificates()),
        None => Client::open(info),
    }
    .map_err(|e| RedisError::Config(e.to_string()))?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.call_timeout))
        // Reconnect quickly after a restart: the calls' own timeout bounds the wait.
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(500))
        // One quick retry: a refusal (a certificate that does not verify, a wrong password)
        // is then reported as itself well within the connect timeout, not as a timeout; the
        // caller decides whether to try again.
        .set_number_of_retries(1);
    let manager = tokio::time::timeout(
        config.connect_timeout,
        ConnectionManager::new_with_config(client, manager_config),
    )
    .await
    .map_err(|_| RedisError::Timeout(config.connect_timeout))?
    .map_err(|e| RedisError::from_redis(&e))?;
    Ok(Connection::Standalone(manager))
}

/// The connection info of every URL, with the configured user and password applied.
fn connection_infos(config: &RedisConfig) -> Result<Vec<ConnectionInfo>, RedisError> {
    config
        .urls
        .iter()
        .map(|url| {
            let info = url.as_str().into_connection_info().map_err(|e| {
                RedisError::Config(format!("the URL {} does not parse: {e}", redact_url(url)))
            })?;
            let mut redis = info.redis_settings().clone().set_skip_set_lib_name();
            if let Some(username) = &config.username {
                redis = redis.set_username(username);
            }
            if let Some(password) = &config.password {
                redis = redis.set_password(password);
            }
            Ok(info.set_redis_settings(redis))
        })
        .collect()
}
