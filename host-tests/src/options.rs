//! How a proxy is set up: the filter, its configuration, and the host it
//! imitates.

use std::time::Duration;

use std::net::SocketAddr;

use crate::clock::Clock;
use crate::clusters::{CallLimits, Clusters};
use crate::logs::LogSink;
use crate::metrics::Metrics;
use crate::module::FilterModule;
use crate::shared_data::{Eviction, SharedData, SharedDataSemantics, StrictLimits};
use crate::types::LogLevel;

/// The proxy whose observable behaviour the host imitates where hosts differ
/// (other than shared data, which has its own [`SharedDataSemantics`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HostFlavor {
    /// Envoy (and Istio): `source.address` is `IP:port`, integers in
    /// properties are 8-byte little-endian, a trap fails the stream with 503.
    #[default]
    Envoy,
    /// Kong's ngx_wasm_module: `source.address` is the IP alone, properties
    /// are text, local-response bodies end with a newline, a trap fails the
    /// stream with 500.
    NgxWasmModule,
}

/// Envoy's node identity, served as the `node` property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub cluster: String,
}

impl Default for NodeInfo {
    fn default() -> NodeInfo {
        NodeInfo {
            id: "sluice-host".to_string(),
            cluster: "sluice".to_string(),
        }
    }
}

/// Everything [`Proxy::start`](crate::Proxy::start) needs.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// The compiled filter.
    pub module: FilterModule,
    /// The plugin configuration (`proxy_on_configure`).
    pub plugin_config: Vec<u8>,
    /// The VM configuration (`proxy_on_vm_start`).
    pub vm_config: Vec<u8>,
    /// The number of worker threads, each with its own VM.
    pub workers: usize,
    /// The VM id: VMs with the same id share a shared-data namespace.
    pub vm_id: String,
    /// The root id (`plugin_root_id`).
    pub root_id: String,
    /// The plugin name (`plugin_name`).
    pub plugin_name: String,
    pub flavor: HostFlavor,
    /// The shared-data store; its semantics are chosen when it is created.
    pub shared_data: SharedData,
    pub metrics: Metrics,
    pub logs: LogSink,
    pub clock: Clock,
    /// Lines logged below this level are dropped, and `proxy_get_log_level`
    /// answers it.
    pub log_level: LogLevel,
    pub node: NodeInfo,
    /// With a fuel-metered module, the fuel each callback may use before it
    /// traps; `None` is no limit. Ignored by unmetered modules.
    pub fuel_per_callback: Option<u64>,
    /// How long [`Proxy::exchange`](crate::Proxy::exchange) waits for a paused
    /// stream to be resumed.
    pub pause_timeout: Duration,
    /// The clusters `proxy_http_call` and the gRPC calls can reach, by name.
    pub clusters: Clusters,
    /// Bounds on HTTP and gRPC calls.
    pub call_limits: CallLimits,
}

impl ProxyOptions {
    /// One Envoy-like worker with an empty configuration, Envoy shared-data
    /// semantics, the system clock and log level `info`.
    pub fn new(module: FilterModule) -> ProxyOptions {
        ProxyOptions {
            module,
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            workers: 1,
            vm_id: "sluice".to_string(),
            root_id: "sluice".to_string(),
            plugin_name: "sluice".to_string(),
            flavor: HostFlavor::Envoy,
            shared_data: SharedData::new(SharedDataSemantics::Envoy),
            metrics: Metrics::new(),
            logs: LogSink::default(),
            clock: Clock::System,
            log_level: LogLevel::Info,
            node: NodeInfo::default(),
            fuel_per_callback: None,
            pause_timeout: Duration::from_secs(5),
            clusters: Clusters::new(),
            call_limits: CallLimits::default(),
        }
    }

    /// Like [`ProxyOptions::new`], imitating Kong's ngx_wasm_module: its
    /// flavour and strict shared data without a size limit.
    pub fn ngx_wasm_module(module: FilterModule) -> ProxyOptions {
        ProxyOptions {
            flavor: HostFlavor::NgxWasmModule,
            shared_data: SharedData::new(SharedDataSemantics::Strict(StrictLimits::default())),
            ..ProxyOptions::new(module)
        }
    }

    /// Sets the plugin configuration.
    pub fn plugin_config(mut self, config: impl Into<Vec<u8>>) -> ProxyOptions {
        self.plugin_config = config.into();
        self
    }

    /// Sets the VM configuration.
    pub fn vm_config(mut self, config: impl Into<Vec<u8>>) -> ProxyOptions {
        self.vm_config = config.into();
        self
    }

    /// Sets the number of workers.
    pub fn workers(mut self, workers: usize) -> ProxyOptions {
        self.workers = workers;
        self
    }

    /// Uses `clock`.
    pub fn clock(mut self, clock: Clock) -> ProxyOptions {
        self.clock = clock;
        self
    }

    /// Sets the log level.
    pub fn log_level(mut self, level: LogLevel) -> ProxyOptions {
        self.log_level = level;
        self
    }

    /// Uses a new, empty store with these semantics.
    pub fn shared_data_semantics(mut self, semantics: SharedDataSemantics) -> ProxyOptions {
        self.shared_data = SharedData::new(semantics);
        self
    }

    /// Uses a new, empty strict store whose namespaces are ngx_wasm_module
    /// `shm_kv` zones of `bytes` with `eviction` (`shm_kv sluice <bytes>
    /// eviction=...`).
    pub fn shm_zone(self, bytes: usize, eviction: Eviction) -> ProxyOptions {
        self.shared_data_semantics(SharedDataSemantics::Strict(StrictLimits::zone(
            bytes, eviction,
        )))
    }

    /// Uses `store` (to share it with another proxy or keep a handle).
    pub fn shared_data(mut self, store: SharedData) -> ProxyOptions {
        self.shared_data = store;
        self
    }

    /// Sets the flavour.
    pub fn flavor(mut self, flavor: HostFlavor) -> ProxyOptions {
        self.flavor = flavor;
        self
    }

    /// Sets the VM id.
    pub fn vm_id(mut self, vm_id: &str) -> ProxyOptions {
        self.vm_id = vm_id.to_string();
        self
    }

    /// Limits the fuel of each callback (fuel-metered modules only).
    pub fn fuel_per_callback(mut self, fuel: u64) -> ProxyOptions {
        self.fuel_per_callback = Some(fuel);
        self
    }

    /// Sets how long [`Proxy::exchange`](crate::Proxy::exchange) waits for a
    /// paused stream.
    pub fn pause_timeout(mut self, timeout: Duration) -> ProxyOptions {
        self.pause_timeout = timeout;
        self
    }

    /// Adds the cluster `name` at `address` (`sluice serve --cluster
    /// NAME=HOST:PORT`): `proxy_http_call`, `proxy_grpc_call` and
    /// `proxy_grpc_stream` to `name` connect there.
    pub fn cluster(mut self, name: &str, address: SocketAddr) -> ProxyOptions {
        self.clusters.add(name, address);
        self
    }

    /// Sets the bounds on HTTP and gRPC calls.
    pub fn call_limits(mut self, limits: CallLimits) -> ProxyOptions {
        self.call_limits = limits;
        self
    }
}
