//! The compare-and-set script: the only command the store sends to decide.
//!
//! One call covers the keys of one hash slot. For each key the caller passes the value it
//! expects to find (or that the key is absent) and what to do if every key matches: set a new
//! value with an expiry, delete the key, or leave it. Redis runs a script atomically, so either
//! every key matched and every write happened, or nothing was written and the reply carries
//! every key's current value for the caller to decide again.
//!
//! ```text
//! KEYS = k1 .. kn
//! ARGV = per key, 5 arguments: expect ("1" a value | "0" absent), expected bytes,
//!        action ("s" set | "d" delete | "k" keep), new bytes, expiry in ms (for "s")
//! reply: {1} (all matched, writes done) | {0, current1, .., currentn} (nil: absent)
//! ```
//!
//! A key holding another Redis type than a string reads as the empty string, which decodes as
//! no state, so the next call expects `""` and overwrites it.

use redis::Value;

/// The Lua source. Loaded once per server and run with `EVALSHA` (the client falls back to
/// loading it on `NOSCRIPT`, e.g. after a Redis restart or `SCRIPT FLUSH`).
pub const COMPARE_AND_SET: &str = r#"
local n = #KEYS
local current = {}
local same = true
for i = 1, n do
  local base = (i - 1) * 5
  local v = redis.pcall('GET', KEYS[i])
  if type(v) == 'table' then v = '' end
  current[i] = v
  if ARGV[base + 1] == '1' then
    if v ~= ARGV[base + 2] then same = false end
  elseif v ~= false then
    same = false
  end
end
if not same then
  local reply = {0}
  for i = 1, n do reply[i + 1] = current[i] end
  return reply
end
for i = 1, n do
  local base = (i - 1) * 5
  local action = ARGV[base + 3]
  if action == 's' then
    redis.call('SET', KEYS[i], ARGV[base + 4], 'PX', ARGV[base + 5])
  elseif action == 'd' then
    redis.call('DEL', KEYS[i])
  end
end
return {1}
"#;

/// What to do with one key when every key of the call matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Leave the key as it is (only compare it).
    Keep,
    /// Set the value, expiring after `ttl_ms` milliseconds (at least 1).
    Set {
        /// The new value.
        value: Vec<u8>,
        /// Milliseconds until Redis deletes the key.
        ttl_ms: u64,
    },
    /// Delete the key (its new state is no state).
    Delete,
}

/// One key of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOp {
    /// The Redis key.
    pub key: String,
    /// The value expected (`None`: the key is expected to be absent).
    pub expected: Option<Vec<u8>>,
    /// What to do if every key matches.
    pub write: Write,
}

/// The SHA1 of [`COMPARE_AND_SET`], as `EVALSHA` names it.
pub fn sha1() -> String {
    redis::Script::new(COMPARE_AND_SET).get_hash().to_owned()
}

/// `EVALSHA <sha1> ...` (or, with `sha1` `None`, `EVAL <source> ...`, which also loads the
/// script) for `ops`.
pub fn command(sha1: Option<&str>, ops: &[KeyOp]) -> redis::Cmd {
    let mut cmd = match sha1 {
        Some(sha1) => {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(sha1);
            cmd
        }
        None => {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(COMPARE_AND_SET);
            cmd
        }
    };
    cmd.arg(ops.len());
    for op in ops {
        cmd.arg(op.key.as_str());
    }
    for op in ops {
        match &op.expected {
            Some(value) => cmd.arg("1").arg(value.as_slice()),
            None => cmd.arg("0").arg(""),
        };
        match &op.write {
            Write::Keep => cmd.arg("k").arg("").arg(0u64),
            Write::Set { value, ttl_ms } => {
                cmd.arg("s").arg(value.as_slice()).arg((*ttl_ms).max(1))
            }
            Write::Delete => cmd.arg("d").arg("").arg(0u64),
        };
    }
    cmd
}

/// What the script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Every key matched; the writes are done.
    Applied,
    /// Some key did not match; nothing was written. The current value of every key, in the
    /// order of the call (`None`: absent).
    Mismatch(Vec<Option<Vec<u8>>>),
}

/// A reply the script cannot have given: another script under our name, or a proxy in the
/// way. The store treats it as a Redis failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError(pub String);

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unexpected reply from the compare-and-set script: {}",
            self.0
        )
    }
}

impl std::error::Error for ReplyError {}

/// Reads the script's reply for a call on `keys` keys.
pub fn parse_reply(value: Value, keys: usize) -> Result<Reply, ReplyError> {
    let Value::Array(items) = value else {
        return Err(ReplyError(format!(
            "expected an array, got {}",
            kind(&value)
        )));
    };
    let mut items = items.into_iter();
    match items.next() {
        Some(Value::Int(1)) if items.len() == 0 => Ok(Reply::Applied),
        Some(Value::Int(0)) => {
            if items.len() != keys {
                return Err(ReplyError(format!(
                    "expected {keys} current values, got {}",
                    items.len()
                )));
            }
            let mut current = Vec::with_capacity(keys);
            for item in items {
                current.push(match item {
                    Value::Nil => None,
                    Value::BulkString(bytes) => Some(bytes),
                    other => {
                        return Err(ReplyError(format!(
                            "expected a value or nil, got {}",
                            kind(&other)
                        )));
                    }
                });
            }
            Ok(Reply::Mismatch(current))
        }
        Some(Value::Int(1)) => Err(ReplyError(format!(
            "an applied reply with {} extra elements",
            items.len()
        ))),
        Some(other) => Err(ReplyError(format!(
            "expected status 0 or 1, got {}",
            kind(&other)
        ))),
        None => Err(ReplyError("an empty array".to_owned())),
    }
}

fn kind(value: &Value) -> String {
    match value {
        Value::Nil => "nil".to_owned(),
        Value::Int(i) => format!("the integer {i}"),
        Value::BulkString(b) => format!("a string of {} bytes", b.len()),
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::SimpleString(_) => "a status".to_owned(),
        Value::Okay => "OK".to_owned(),
        Value::ServerError(e) => format!("the error {e:?}"),
        _ => "another RESP3 type".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_and_wrong_shapes_are_errors() {
        assert_eq!(
            parse_reply(Value::Array(vec![Value::Int(1)]), 2),
            Ok(Reply::Applied)
        );
        assert_eq!(
            parse_reply(
                Value::Array(vec![
                    Value::Int(0),
                    Value::Nil,
                    Value::BulkString(b"x".to_vec())
                ]),
                2
            ),
            Ok(Reply::Mismatch(vec![None, Some(b"x".to_vec())]))
        );
        for bad in [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(2)]),
            Value::Array(vec![Value::Int(1), Value::Nil]),
            Value::Array(vec![Value::Int(0), Value::Nil]),
            Value::Array(vec![Value::Int(0), Value::Int(3), Value::Nil]),
            Value::Array(vec![Value::BulkString(b"1".to_vec())]),
        ] {
            assert!(parse_reply(bad.clone(), 2).is_err(), "{bad:?}");
        }
    }
}
