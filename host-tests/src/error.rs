//! Errors of the host: loading a filter, starting a proxy, driving streams.
//!
//! A filter answering a host call with an error status is not an error of
//! the host, nor is a trap during a stream (that is a
//! [`StreamFailure`](crate::StreamFailure) outcome). These are the cases
//! where the host cannot do what it was asked.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::logs::LogRecord;

/// The filter's log lines, rendered for an error message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterLogs(pub Vec<LogRecord>);

impl fmt::Display for FilterLogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("; the filter logged nothing");
        }
        f.write_str("; the filter logged:")?;
        for record in &self.0 {
            write!(f, "\n  [{}] {}", record.level, record.message)?;
        }
        Ok(())
    }
}

/// Why the host could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read the filter module {path}: {source}")]
    ReadModule {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the filter module is not valid WebAssembly or does not compile: {message}")]
    Compile { message: String },

    #[error(
        "the filter module does not export `proxy_abi_version_0_2_1` or `proxy_abi_version_0_2_0`: \
         it was not built with a proxy-wasm SDK for ABI 0.2 (the Rust SDK 0.2.x exports the first)"
    )]
    UnsupportedAbi,

    #[error("the filter module does not export its linear memory as `memory`")]
    MissingMemory,

    #[error(
        "the filter module's export `{name}` does not have the ABI's signature ({expected}): {message}"
    )]
    BadExport {
        name: &'static str,
        expected: &'static str,
        message: String,
    },

    #[error("the filter module cannot be linked to the host: {message}")]
    Link { message: String },

    #[error("instantiating the filter failed on worker {worker}: {message}")]
    Instantiate { worker: usize, message: String },

    #[error(
        "the filter rejected its VM configuration (proxy_on_vm_start returned false) on worker {worker}{logs}"
    )]
    VmStartRejected { worker: usize, logs: FilterLogs },

    #[error(
        "the filter rejected its plugin configuration (proxy_on_configure returned false) on worker {worker}{logs}"
    )]
    ConfigurationRejected { worker: usize, logs: FilterLogs },

    #[error("the filter trapped in {callback} on worker {worker}: {trap}{logs}")]
    StartTrapped {
        worker: usize,
        callback: &'static str,
        trap: String,
        logs: FilterLogs,
    },

    #[error("a proxy needs at least one worker; `workers` is 0")]
    NoWorkers,

    #[error("there is no worker {worker}: this proxy has {workers} (numbered from 0)")]
    NoSuchWorker { worker: usize, workers: usize },

    #[error("worker {worker} has stopped (its thread ended); the proxy cannot use it any more")]
    WorkerStopped { worker: usize },

    #[error("cannot start a worker thread: {0}")]
    Spawn(#[source] std::io::Error),

    #[error("cannot {operation}: the stream {state}")]
    InvalidStreamState {
        operation: &'static str,
        state: &'static str,
    },

    #[error(
        "the filter kept the {phase} paused for {waited:?} without resuming it (proxy_continue_stream); \
         raise `pause_timeout` or drive the ticks that resume it"
    )]
    PauseTimedOut {
        phase: &'static str,
        waited: Duration,
    },
}
