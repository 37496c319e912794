//! The per-key state of each algorithm, and its byte encoding.
//!
//! The encoding is stored in proxy-wasm shared data (inside a table bucket, see
//! [`crate::table`]) and in Durable Object storage, and is read back by other VMs and by later
//! versions of the code, so it is explicit, versioned and little-endian:
//!
//! ```text
//! state         = version:u8 (= 1) | algorithm:u8 | body
//! gcra          (algorithm 1) body = tat:u64
//! fixed_window  (algorithm 2) body = window_start:u64 | count:u64
//! sliding_window(algorithm 3) body = window_start:u64 | previous:u64 | current:u64
//! sliding_log   (algorithm 4) body = entries:varint | entry*
//!                             entry = gap:varint | units:varint
//! concurrency   (algorithm 5) body = epoch:u64 | taken:varint × 9 (each below 2³²)
//! ```
//!
//! `u64` values are 8 bytes little-endian; times are absolute nanoseconds since the Unix epoch.
//! `varint` is unsigned LEB128 in its shortest form (7 bits per byte, low bits first, high bit
//! set on every byte but the last). A sliding-log entry's `gap` is its time minus the previous
//! entry's time (the first entry's gap is its absolute time); gaps after the first are at least
//! 1 because entries are strictly ascending, and every entry's `units` is at least 1.
//! A concurrency state's `epoch` is the number of its newest time bucket and `taken` the
//! slots counted in it and in the 8 buckets before it, newest first (see
//! [`crate::algorithm::concurrency`]).
//!
//! Decoding never panics and never trusts a length: garbage, truncated input, another version,
//! an unknown algorithm, trailing bytes or a log that breaks its invariants is a [`StateError`].

use alloc::vec::Vec;

use crate::algorithm::Algorithm;
use crate::algorithm::concurrency::SLOT_BUCKETS;
use crate::encoding::{self, ReadError, Reader};
use crate::time::Nanos;

/// The version byte every encoded state starts with.
pub const STATE_VERSION: u8 = 1;

const TAG_GCRA: u8 = 1;
const TAG_FIXED_WINDOW: u8 = 2;
const TAG_SLIDING_WINDOW: u8 = 3;
const TAG_SLIDING_LOG: u8 = 4;
const TAG_CONCURRENCY: u8 = 5;

/// What one key has spent, as one algorithm remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// GCRA's theoretical arrival time: the instant at which the key's bucket is full again.
    Gcra {
        /// Theoretical arrival time (absolute nanoseconds).
        tat: Nanos,
    },
    /// Units spent in the aligned window starting at `window_start`.
    FixedWindow {
        /// Start of the window (absolute nanoseconds, a multiple of the period).
        window_start: Nanos,
        /// Units counted in it.
        count: u64,
    },
    /// Units spent in the aligned window starting at `window_start` (`current`) and in the window
    /// just before it (`previous`).
    SlidingWindow {
        /// Start of the current window (absolute nanoseconds, a multiple of the period).
        window_start: Nanos,
        /// Units counted in the window before it.
        previous: u64,
        /// Units counted in the current window.
        current: u64,
    },
    /// Every admission still inside the last period.
    SlidingLog {
        /// The admissions, oldest first.
        log: Log,
    },
    /// Concurrency slots held, counted per time bucket (see
    /// [`crate::algorithm::concurrency`]).
    Concurrency {
        /// The number of the newest bucket (`⌊time / bucket width⌋`).
        epoch: u64,
        /// Slots taken in bucket `epoch − i` and not given back, for each `i`.
        taken: [u32; SLOT_BUCKETS],
    },
}

/// One admission remembered by the sliding log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    /// When the units were spent (absolute nanoseconds).
    pub at: Nanos,
    /// How many units were spent at that instant (at least 1).
    pub units: u64,
}

/// The sliding log's entries, strictly ascending in time, each with at least one unit.
///
/// The invariant is kept by construction, so the algorithm can rely on the order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Log {
    entries: Vec<LogEntry>,
}

/// Why bytes could not be decoded into a [`State`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// No bytes at all.
    Empty,
    /// Written by another version of the encoding.
    UnknownVersion(u8),
    /// The algorithm byte names no known algorithm.
    UnknownAlgorithm(u8),
    /// The bytes end in the middle of a value.
    Truncated,
    /// Bytes are left after a complete state (how many).
    TrailingBytes(usize),
    /// A varint that is too long, too large, or not in its shortest form.
    MalformedVarint,
    /// Sliding-log entries out of order, or two at the same time.
    LogNotAscending,
    /// A sliding-log entry with zero units.
    LogEntryWithoutUnits,
    /// Sliding-log times that add up past the largest representable time.
    LogTimeOverflow,
}

impl core::fmt::Display for StateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StateError::Empty => f.write_str("the stored counter state is empty"),
            StateError::UnknownVersion(v) => write!(
                f,
                "the stored counter state has encoding version {v}, this build reads version {STATE_VERSION}"
            ),
            StateError::UnknownAlgorithm(a) => {
                write!(f, "the stored counter state names unknown algorithm {a}")
            }
            StateError::Truncated => f.write_str("the stored counter state is cut short"),
            StateError::TrailingBytes(n) => {
                write!(
                    f,
                    "the stored counter state has {n} unexpected trailing bytes"
                )
            }
            StateError::MalformedVarint => {
                f.write_str("the stored counter state holds a malformed variable-length integer")
            }
            StateError::LogNotAscending => {
                f.write_str("the stored sliding log's entries are not in ascending time order")
            }
            StateError::LogEntryWithoutUnits => {
                f.write_str("the stored sliding log has an entry with zero units")
            }
            StateError::LogTimeOverflow => {
                f.write_str("the stored sliding log's times overflow the clock range")
            }
        }
    }
}

impl From<ReadError> for StateError {
    fn from(e: ReadError) -> StateError {
        match e {
            ReadError::Truncated => StateError::Truncated,
            ReadError::MalformedVarint => StateError::MalformedVarint,
        }
    }
}

impl State {
    /// The algorithm this state belongs to.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            State::Gcra { .. } => Algorithm::Gcra,
            State::FixedWindow { .. } => Algorithm::FixedWindow,
            State::SlidingWindow { .. } => Algorithm::SlidingWindow,
            State::SlidingLog { .. } => Algorithm::SlidingLog,
            State::Concurrency { .. } => Algorithm::Concurrency,
        }
    }

    /// Appends the encoding (see the module docs) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(STATE_VERSION);
        match self {
            State::Gcra { tat } => {
                out.push(TAG_GCRA);
                encoding::put_u64_le(out, *tat);
            }
            State::FixedWindow {
                window_start,
                count,
            } => {
                out.push(TAG_FIXED_WINDOW);
                encoding::put_u64_le(out, *window_start);
                encoding::put_u64_le(out, *count);
            }
            State::SlidingWindow {
                window_start,
                previous,
                current,
            } => {
                out.push(TAG_SLIDING_WINDOW);
                encoding::put_u64_le(out, *window_start);
                encoding::put_u64_le(out, *previous);
                encoding::put_u64_le(out, *current);
            }
            State::SlidingLog { log } => {
                out.push(TAG_SLIDING_LOG);
                encoding::put_varint(out, log.entries.len() as u64);
                let mut previous_at = 0;
                for entry in &log.entries {
                    encoding::put_varint(out, entry.at.saturating_sub(previous_at));
                    encoding::put_varint(out, entry.units);
                    previous_at = entry.at;
                }
            }
            State::Concurrency { epoch, taken } => {
                out.push(TAG_CONCURRENCY);
                encoding::put_u64_le(out, *epoch);
                for count in taken {
                    encoding::put_varint(out, u64::from(*count));
                }
            }
        }
    }

    /// The number of bytes [`State::encode_into`] appends.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            State::Gcra { .. } => 8,
            State::FixedWindow { .. } => 16,
            State::SlidingWindow { .. } => 24,
            State::SlidingLog { log } => {
                let mut len = encoding::varint_len(log.entries.len() as u64);
                let mut previous_at = 0;
                for entry in &log.entries {
                    len += encoding::varint_len(entry.at.saturating_sub(previous_at))
                        + encoding::varint_len(entry.units);
                    previous_at = entry.at;
                }
                len
            }
            State::Concurrency { taken, .. } => {
                8 + taken
                    .iter()
                    .map(|count| encoding::varint_len(u64::from(*count)))
                    .sum::<usize>()
            }
        }
    }

    /// Decodes a complete state; anything else in `bytes` is an error.
    pub fn decode(bytes: &[u8]) -> Result<State, StateError> {
        if bytes.is_empty() {
            return Err(StateError::Empty);
        }
        let mut reader = Reader::new(bytes);
        let version = reader.u8()?;
        if version != STATE_VERSION {
            return Err(StateError::UnknownVersion(version));
        }
        let state = match reader.u8()? {
            TAG_GCRA => State::Gcra {
                tat: reader.u64_le()?,
            },
            TAG_FIXED_WINDOW => State::FixedWindow {
                window_start: reader.u64_le()?,
                count: reader.u64_le()?,
            },
            TAG_SLIDING_WINDOW => State::SlidingWindow {
                window_start: reader.u64_le()?,
                previous: reader.u64_le()?,
                current: reader.u64_le()?,
            },
            TAG_SLIDING_LOG => State::SlidingLog {
                log: decode_log(&mut reader)?,
            },
            TAG_CONCURRENCY => {
                let epoch = reader.u64_le()?;
                let mut taken = [0; SLOT_BUCKETS];
                for count in &mut taken {
                    *count =
                        u32::try_from(reader.varint()?).map_err(|_| StateError::MalformedVarint)?;
                }
                State::Concurrency { epoch, taken }
            }
            other => return Err(StateError::UnknownAlgorithm(other)),
        };
        match reader.remaining() {
            0 => Ok(state),
            n => Err(StateError::TrailingBytes(n)),
        }
    }
}

fn decode_log(reader: &mut Reader<'_>) -> Result<Log, StateError> {
    let count = reader.varint()?;
    // Each entry takes at least two bytes: a count the input cannot hold is a lie, and must not
    // become a huge allocation.
    if count > (reader.remaining() / 2) as u64 {
        return Err(StateError::Truncated);
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut previous_at: Nanos = 0;
    for index in 0..count {
        let gap = reader.varint()?;
        if index > 0 && gap == 0 {
            return Err(StateError::LogNotAscending);
        }
        let at = previous_at
            .checked_add(gap)
            .ok_or(StateError::LogTimeOverflow)?;
        let units = reader.varint()?;
        if units == 0 {
            return Err(StateError::LogEntryWithoutUnits);
        }
        entries.push(LogEntry { at, units });
        previous_at = at;
    }
    Ok(Log { entries })
}

impl Log {
    /// An empty log.
    pub fn new() -> Log {
        Log::default()
    }

    /// A log from entries, which must be strictly ascending in time and each have units.
    pub fn from_entries(entries: Vec<LogEntry>) -> Result<Log, StateError> {
        if entries.iter().any(|e| e.units == 0) {
            return Err(StateError::LogEntryWithoutUnits);
        }
        if entries.windows(2).any(|pair| match pair {
            [a, b] => a.at >= b.at,
            _ => false,
        }) {
            return Err(StateError::LogNotAscending);
        }
        Ok(Log { entries })
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[LogEntry] {
        &self.entries
    }

    /// Whether the log has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Units in the log (saturating).
    pub fn units(&self) -> u64 {
        self.entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.units))
    }

    /// The time of the newest entry.
    pub fn last_at(&self) -> Option<Nanos> {
        self.entries.last().map(|e| e.at)
    }

    /// Drops every entry at or before `cutoff`.
    pub(crate) fn expire_through(&mut self, cutoff: Nanos) {
        let keep_from = self.entries.partition_point(|e| e.at <= cutoff);
        self.entries.drain(..keep_from);
    }

    /// Records `units` at `at`, which must not be older than the newest entry; an entry at
    /// the same instant absorbs them.
    pub(crate) fn record(&mut self, at: Nanos, units: u64) {
        if units == 0 {
            return;
        }
        match self.entries.last_mut() {
            Some(last) if last.at == at => last.units = last.units.saturating_add(units),
            Some(last) if last.at > at => {
                // Callers clamp `at` to the newest entry; keep the order even if one does not.
                last.units = last.units.saturating_add(units);
            }
            _ => self.entries.push(LogEntry { at, units }),
        }
    }

    /// Takes up to `units` back from the entry at exactly `at`, dropping it when emptied.
    pub(crate) fn take_back(&mut self, at: Nanos, units: u64) {
        if let Ok(index) = self.entries.binary_search_by_key(&at, |e| e.at)
            && let Some(entry) = self.entries.get_mut(index)
        {
            entry.units = entry.units.saturating_sub(units);
            if entry.units == 0 {
                self.entries.remove(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn round_trip(state: &State) -> Vec<u8> {
        let mut out = Vec::new();
        state.encode_into(&mut out);
        assert_eq!(out.len(), state.encoded_len(), "encoded_len of {state:?}");
        assert_eq!(State::decode(&out).as_ref(), Ok(state));
        out
    }

    #[test]
    fn fixed_width_layouts_are_as_documented() {
        let gcra = round_trip(&State::Gcra { tat: 0x0102 });
        assert_eq!(gcra, [1, 1, 0x02, 0x01, 0, 0, 0, 0, 0, 0]);
        let fixed = round_trip(&State::FixedWindow {
            window_start: 7,
            count: 3,
        });
        assert_eq!(fixed.len(), 18);
        assert_eq!(&fixed[..3], &[1, 2, 7]);
        let sliding = round_trip(&State::SlidingWindow {
            window_start: 1,
            previous: 2,
            current: 3,
        });
        assert_eq!(sliding.len(), 26);
        assert_eq!(sliding[2 + 8], 2);
        assert_eq!(sliding[2 + 16], 3);
    }

    #[test]
    fn concurrency_stores_its_epoch_and_nine_counts() {
        let mut taken = [0; SLOT_BUCKETS];
        taken[0] = 3;
        taken[8] = 200;
        let bytes = round_trip(&State::Concurrency { epoch: 7, taken });
        // version, tag, epoch (8 bytes), 3, seven zeros, 200 (two bytes)
        assert_eq!(
            bytes,
            [
                1, 5, 7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0xc8, 0x01
            ]
        );
        assert_eq!(State::decode(&bytes[..19]), Err(StateError::Truncated));
        // A count of 2^32 does not fit.
        let mut too_many = bytes[..18].to_vec();
        encoding::put_varint(&mut too_many, 1 << 32);
        assert_eq!(State::decode(&too_many), Err(StateError::MalformedVarint));
    }

    #[test]
    fn sliding_log_stores_gaps_between_entries() {
        let log = Log::from_entries(vec![
            LogEntry { at: 300, units: 1 },
            LogEntry { at: 305, units: 2 },
        ])
        .unwrap();
        let bytes = round_trip(&State::SlidingLog { log });
        // version, tag, 2 entries, gap 300 (two bytes), 1 unit, gap 5, 2 units
        assert_eq!(bytes, [1, 4, 2, 0xac, 0x02, 1, 5, 2]);
    }

    #[test]
    fn decode_names_what_is_wrong() {
        assert_eq!(State::decode(&[]), Err(StateError::Empty));
        assert_eq!(State::decode(&[2, 1]), Err(StateError::UnknownVersion(2)));
        assert_eq!(State::decode(&[1, 9]), Err(StateError::UnknownAlgorithm(9)));
        assert_eq!(State::decode(&[1, 1, 0, 0]), Err(StateError::Truncated));
        assert_eq!(
            State::decode(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]),
            Err(StateError::TrailingBytes(1))
        );
        assert_eq!(
            State::decode(&[1, 4, 2, 5, 1, 0, 1]),
            Err(StateError::LogNotAscending)
        );
        assert_eq!(
            State::decode(&[1, 4, 1, 5, 0]),
            Err(StateError::LogEntryWithoutUnits)
        );
        // A count of 1,000,000 entries backed by four bytes.
        assert_eq!(
            State::decode(&[1, 4, 0xc0, 0x84, 0x3d, 1, 1, 1, 1]),
            Err(StateError::Truncated)
        );
        let mut overflow = vec![1, 4, 2];
        encoding::put_varint(&mut overflow, u64::MAX);
        overflow.push(1);
        encoding::put_varint(&mut overflow, 1);
        overflow.push(1);
        assert_eq!(State::decode(&overflow), Err(StateError::LogTimeOverflow));
    }

    #[test]
    fn log_construction_enforces_order_and_units() {
        assert_eq!(
            Log::from_entries(vec![
                LogEntry { at: 5, units: 1 },
                LogEntry { at: 5, units: 1 }
            ]),
            Err(StateError::LogNotAscending)
        );
        assert_eq!(
            Log::from_entries(vec![LogEntry { at: 5, units: 0 }]),
            Err(StateError::LogEntryWithoutUnits)
        );
    }

    #[test]
    fn log_expiry_recording_and_take_back() {
        let mut log = Log::new();
        log.record(10, 1);
        log.record(10, 2);
        log.record(20, 1);
        log.record(15, 1); // older than the newest: joins the newest, keeps the order
        assert_eq!(
            log.entries(),
            &[LogEntry { at: 10, units: 3 }, LogEntry { at: 20, units: 2 }]
        );
        log.take_back(20, 2);
        assert_eq!(log.entries(), &[LogEntry { at: 10, units: 3 }]);
        log.take_back(11, 1); // nothing at 11
        assert_eq!(log.units(), 3);
        log.expire_through(10);
        assert!(log.is_empty());
    }
}
