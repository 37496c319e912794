//! ABI values shared by the host and its users: status codes and log levels
//! (proxy-wasm spec, `abi-versions/v0.2.1`, section "Types").

use std::fmt;

/// `proxy_status_t`: the answer of every host function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

impl Status {
    /// The number the guest receives.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The status with this number, if the ABI defines one.
    pub fn from_code(code: u32) -> Option<Status> {
        Some(match code {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::BadArgument,
            3 => Status::SerializationFailure,
            4 => Status::ParseFailure,
            6 => Status::InvalidMemoryAccess,
            7 => Status::Empty,
            8 => Status::CasMismatch,
            10 => Status::InternalFailure,
            12 => Status::Unimplemented,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Status::Ok => "OK",
            Status::NotFound => "NOT_FOUND",
            Status::BadArgument => "BAD_ARGUMENT",
            Status::SerializationFailure => "SERIALIZATION_FAILURE",
            Status::ParseFailure => "PARSE_FAILURE",
            Status::InvalidMemoryAccess => "INVALID_MEMORY_ACCESS",
            Status::Empty => "EMPTY",
            Status::CasMismatch => "CAS_MISMATCH",
            Status::InternalFailure => "INTERNAL_FAILURE",
            Status::Unimplemented => "UNIMPLEMENTED",
        };
        write!(f, "{name} ({})", self.code())
    }
}

/// `proxy_log_level_t`, ordered from the most to the least verbose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    /// The number the guest uses.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The level with this number, if the ABI defines one.
    pub fn from_code(code: u32) -> Option<LogLevel> {
        Some(match code {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }

    /// The lower-case name (`"info"`).
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_code() {
        for code in 0..16 {
            if let Some(status) = Status::from_code(code) {
                assert_eq!(status.code(), code);
            }
        }
        assert_eq!(Status::from_code(5), None, "5 is not assigned by the spec");
        assert_eq!(Status::Unimplemented.code(), 12);
    }

    #[test]
    fn log_levels_are_ordered_by_severity() {
        assert!(LogLevel::Trace < LogLevel::Info);
        assert!(LogLevel::Error < LogLevel::Critical);
        assert_eq!(LogLevel::from_code(6), None);
    }
}
