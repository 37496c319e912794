//! Log lines written by filters (`proxy_log`, stdout and stderr) and by the
//! host about them, collected from every VM of a proxy.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::types::LogLevel;

/// One log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub level: LogLevel,
    /// Who wrote it: a filter VM or the host itself.
    pub origin: LogOrigin,
    pub message: String,
}

/// The writer of a [`LogRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogOrigin {
    /// A filter, from inside one of its contexts.
    Filter {
        /// The VM that wrote it.
        vm: VmLabel,
        /// The effective context of the call (the root context, or a stream).
        context_id: u32,
    },
    /// The host, about a VM (a trap, a call it does not support…).
    Host { vm: VmLabel },
}

impl LogOrigin {
    /// The VM the line is about.
    pub fn vm(&self) -> VmLabel {
        match *self {
            LogOrigin::Filter { vm, .. } | LogOrigin::Host { vm } => vm,
        }
    }
}

/// Names one VM: the worker it runs on, and a number unique within the
/// proxy (a VM replaced after a trap gets a new one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmLabel {
    pub worker: usize,
    pub instance: u64,
}

impl fmt::Display for VmLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {} vm {}", self.worker, self.instance)
    }
}

impl fmt::Display for LogRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            LogOrigin::Filter { vm, context_id } => write!(
                f,
                "[{}] {vm} context {context_id}: {}",
                self.level, self.message
            ),
            LogOrigin::Host { vm } => write!(f, "[{}] host, {vm}: {}", self.level, self.message),
        }
    }
}

/// Also called with every record as it is written (to print them, say).
pub type LogForwarder = Arc<dyn Fn(&LogRecord) + Send + Sync>;

/// Where log records go: the most recent `capacity` are kept. Cloning shares
/// the sink.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<LogSinkInner>,
}

struct LogSinkInner {
    records: Mutex<VecDeque<LogRecord>>,
    capacity: usize,
    forwarder: Option<LogForwarder>,
}

impl LogSink {
    /// How many records [`LogSink::default`] keeps.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A sink keeping the last `capacity` records.
    pub fn new(capacity: usize) -> LogSink {
        LogSink::build(capacity, None)
    }

    /// A sink that also hands each record to `forwarder` as it arrives.
    pub fn with_forwarder(capacity: usize, forwarder: LogForwarder) -> LogSink {
        LogSink::build(capacity, Some(forwarder))
    }

    fn build(capacity: usize, forwarder: Option<LogForwarder>) -> LogSink {
        LogSink {
            inner: Arc::new(LogSinkInner {
                records: Mutex::new(VecDeque::new()),
                capacity,
                forwarder,
            }),
        }
    }

    pub(crate) fn push(&self, record: LogRecord) {
        if let Some(forwarder) = &self.inner.forwarder {
            forwarder(&record);
        }
        if self.inner.capacity == 0 {
            return;
        }
        let mut records = self.lock();
        while records.len() >= self.inner.capacity {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// Every record kept, oldest first.
    pub fn records(&self) -> Vec<LogRecord> {
        self.lock().iter().cloned().collect()
    }

    /// The records written by or about one VM, oldest first.
    pub fn records_of(&self, vm: VmLabel) -> Vec<LogRecord> {
        self.lock()
            .iter()
            .filter(|record| record.origin.vm() == vm)
            .cloned()
            .collect()
    }

    /// The messages kept, oldest first.
    pub fn messages(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|record| record.message.clone())
            .collect()
    }

    /// Whether any kept message contains `text`.
    pub fn contains(&self, text: &str) -> bool {
        self.lock()
            .iter()
            .any(|record| record.message.contains(text))
    }

    /// Forgets every record.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<LogRecord>> {
        self.inner
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for LogSink {
    fn default() -> LogSink {
        LogSink::new(LogSink::DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSink")
            .field("records", &self.lock().len())
            .field("capacity", &self.inner.capacity)
            .field("forwarder", &self.inner.forwarder.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: &str, worker: usize) -> LogRecord {
        LogRecord {
            level: LogLevel::Info,
            origin: LogOrigin::Filter {
                vm: VmLabel {
                    worker,
                    instance: 1,
                },
                context_id: 1,
            },
            message: message.to_string(),
        }
    }

    #[test]
    fn a_sink_keeps_only_the_most_recent_records() {
        let sink = LogSink::new(2);
        sink.push(record("one", 0));
        sink.push(record("two", 0));
        sink.push(record("three", 0));
        assert_eq!(sink.messages(), ["two", "three"]);
        assert!(sink.contains("thr"));
        assert!(!sink.contains("one"));
    }

    #[test]
    fn records_can_be_selected_by_vm_and_forwarded() {
        let forwarded = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&forwarded);
        let sink = LogSink::with_forwarder(
            10,
            Arc::new(move |record: &LogRecord| {
                into.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(record.message.clone())
            }),
        );
        sink.push(record("a", 0));
        sink.push(record("b", 1));
        let vm_one = VmLabel {
            worker: 1,
            instance: 1,
        };
        assert_eq!(sink.records_of(vm_one).len(), 1);
        assert_eq!(
            *forwarded.lock().unwrap_or_else(PoisonError::into_inner),
            ["a", "b"]
        );
    }
}
