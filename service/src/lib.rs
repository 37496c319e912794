//! sluice's global tier: a stateless rate-limit service. It loads the same sluice JSON
//! configuration as the proxies and decides with the same policy and core, keeping every
//! counter in Redis (standalone or Cluster), so one count holds across every proxy and every
//! replica of the service.
//!
//! - [`domains`]: the configurations served, by `global.domain`.
//! - [`decider`]: protocol-independent decisions (rules by name, keys, costs in; the core's
//!   verdict and the rendered headers out), bounded in flight and in time.
//! - [`store`]: the [`DecisionStore`](store::DecisionStore) trait, over Redis (`sluice-redis`);
//!   [`redis_setup`]: the Redis options (URLs, password file, TLS files), checked.
//! - [`rls`], [`rls_json`]: Envoy's rate-limit service API v3, over gRPC and as JSON.
//! - [`native`]: sluice's decide API, used by the filter.
//! - [`http_api`], [`server`]: the listeners; [`metrics`]: Prometheus metrics.

pub mod clock;
pub mod decider;
pub mod domains;
pub mod http_api;
pub mod metrics;
pub mod native;
pub mod redis_setup;
pub mod rls;
pub mod rls_json;
pub mod server;
pub mod store;
