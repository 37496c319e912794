//! The bytes of one key's state in Redis.
//!
//! ```text
//! value = version:u8 (= 1) | signature:u64 (little-endian) | state (sluice_core::state)
//! ```
//!
//! The signature is a hash of the rule's algorithm and quota (the burst only for GCRA, as in
//! the core's table signature): a value written under another configuration of the rule
//! decodes as [`ValueError::Signature`] and the store treats it as no state, then overwrites
//! it. So does anything else that does not decode (another version, garbage written by hand).

use core::hash::Hasher as _;

use siphasher::sip::SipHasher13;
use sluice_core::{Algorithm, Limit, State, StateError};

/// The version byte every value starts with.
pub const VALUE_VERSION: u8 = 1;

/// Bytes before the state.
const HEADER_BYTES: usize = 1 + 8;

/// The fixed SipHash key of limit signatures ("sluice-redis-sig").
const SIGNATURE_KEY: (u64, u64) = (0x736c_7569_6365_2d72, 0x6564_6973_2d73_6967);

/// Why stored bytes are not a state of the rule's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// Shorter than the header.
    Truncated,
    /// Another format version (`got`).
    Version(u8),
    /// Written under another algorithm or quota of the rule.
    Signature,
    /// The state bytes do not decode.
    State(StateError),
    /// A state of another algorithm than the rule's.
    Algorithm,
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueError::Truncated => f.write_str("the stored value is shorter than its header"),
            ValueError::Version(v) => write!(
                f,
                "the stored value has format version {v}, this store reads {VALUE_VERSION}"
            ),
            ValueError::Signature => {
                f.write_str("the stored value was written under another limit of the rule")
            }
            ValueError::State(e) => write!(f, "the stored state does not decode: {e}"),
            ValueError::Algorithm => {
                f.write_str("the stored state belongs to another algorithm than the rule's")
            }
        }
    }
}

impl std::error::Error for ValueError {}

/// The signature of a rule's limit written in its values.
pub fn signature(limit: &Limit) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(SIGNATURE_KEY.0, SIGNATURE_KEY.1);
    hasher.write(&[VALUE_VERSION]);
    hasher.write(limit.algorithm.name().as_bytes());
    hasher.write(&limit.quota.limit().to_le_bytes());
    hasher.write(&limit.quota.period().to_le_bytes());
    let burst = match limit.algorithm {
        Algorithm::Gcra => limit.quota.burst(),
        _ => 0,
    };
    hasher.write(&burst.to_le_bytes());
    hasher.finish()
}

/// Replaces `out` with the value of `state` under `limit`.
pub fn encode_into(limit: &Limit, state: &State, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEADER_BYTES + state.encoded_len());
    out.push(VALUE_VERSION);
    out.extend_from_slice(&signature(limit).to_le_bytes());
    state.encode_into(out);
}

/// The value of `state` under `limit`.
pub fn encode(limit: &Limit, state: &State) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(limit, state, &mut out);
    out
}

/// The state in `bytes`, if they hold one of `limit`'s.
///
/// ```
/// use sluice_core::{Algorithm, Limit, Quota, State};
/// use sluice_redis::value;
///
/// let limit = Limit::new(Algorithm::Gcra, Quota::new(10, 1_000_000_000, 10).unwrap());
/// let state = State::Gcra { tat: 42 };
/// assert_eq!(value::decode(&limit, &value::encode(&limit, &state)), Ok(state));
/// assert!(value::decode(&limit, b"garbage").is_err());
/// ```
pub fn decode(limit: &Limit, bytes: &[u8]) -> Result<State, ValueError> {
    let (header, state) = bytes
        .split_at_checked(HEADER_BYTES)
        .ok_or(ValueError::Truncated)?;
    let (version, sig) = header.split_first().ok_or(ValueError::Truncated)?;
    if *version != VALUE_VERSION {
        return Err(ValueError::Version(*version));
    }
    let sig: [u8; 8] = sig.try_into().map_err(|_| ValueError::Truncated)?;
    if u64::from_le_bytes(sig) != signature(limit) {
        return Err(ValueError::Signature);
    }
    let state = State::decode(state).map_err(ValueError::State)?;
    if state.algorithm() != limit.algorithm {
        return Err(ValueError::Algorithm);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Quota;

    fn limit(algorithm: Algorithm, burst: u64) -> Limit {
        Limit::new(algorithm, Quota::new(10, 1_000_000_000, burst).unwrap())
    }

    #[test]
    fn a_value_decodes_only_under_its_own_limit() {
        let gcra = limit(Algorithm::Gcra, 10);
        let bytes = encode(&gcra, &State::Gcra { tat: 7 });
        assert_eq!(decode(&gcra, &bytes), Ok(State::Gcra { tat: 7 }));
        assert_eq!(
            decode(&limit(Algorithm::Gcra, 11), &bytes),
            Err(ValueError::Signature)
        );
        assert_eq!(
            decode(&limit(Algorithm::FixedWindow, 10), &bytes),
            Err(ValueError::Signature)
        );
        let mut other_version = bytes.clone();
        other_version[0] = 2;
        assert_eq!(decode(&gcra, &other_version), Err(ValueError::Version(2)));
        assert_eq!(decode(&gcra, &bytes[..4]), Err(ValueError::Truncated));
        assert!(matches!(
            decode(&gcra, &bytes[..bytes.len() - 1]),
            Err(ValueError::State(_))
        ));
    }

    #[test]
    fn window_values_survive_a_burst_change() {
        let a = limit(Algorithm::FixedWindow, 10);
        let b = limit(Algorithm::FixedWindow, 3);
        let state = State::FixedWindow {
            window_start: 0,
            count: 3,
        };
        assert_eq!(decode(&b, &encode(&a, &state)), Ok(state));
    }
}
