//! What can go wrong talking to Redis. Messages never carry a password.

use std::time::Duration;

/// A failure of the store. In a decision it gives the affected rules their failure mode; from
/// [`crate::RedisStore::connect`] and [`crate::RedisStore::ping`] it says why Redis is not
/// usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// The configuration cannot work (no URL, a URL that does not parse, ...).
    #[error("redis configuration: {0}")]
    Config(String),
    /// Redis did not answer within the call (or connect) timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis could not be reached or the connection broke.
    #[error("redis connection failed: {0}")]
    Connection(String),
    /// Redis answered with an error (authentication, `OOM`, a cluster that is down, ...).
    #[error("redis answered with an error: {0}")]
    Server(String),
    /// Redis answered something the store's script cannot have sent.
    #[error("{0}")]
    Reply(String),
    /// Other writers kept changing a key until the compare-and-set retries ran out.
    #[error(
        "the key kept changing under concurrent writers until {0} compare-and-set retries ran out"
    )]
    Contention(u32),
}

impl RedisError {
    pub(crate) fn from_redis(error: &redis::RedisError) -> RedisError {
        let text = error.to_string();
        if error.is_timeout()
            || error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error()
        {
            RedisError::Connection(text)
        } else {
            RedisError::Server(text)
        }
    }
}
