//! The service's side of the decide and lease protocols over states held in memory: the reference the
//! filter's tests run against, and a model of what `sluice-service` does over Redis.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde::Serialize;
use sluice_core::{Limiter, Nanos, State};

use super::lease_wire::{LeaseGrant, LeaseReply, LeaseRequest, LeaseReturned};
use super::wire::{DecideReply, DecideRequest, RequestError};
use crate::policy::Policy;

/// Decides decide requests for one configuration with the core's [`Limiter::decide_all`]
/// (all or nothing: nothing is consumed when an enforcing rule denies), keeping each
/// (rule, key)'s state in memory.
///
/// ```
/// use sluice_policy::Policy;
/// use sluice_policy::global::{DecideReply, MemoryService};
///
/// let policy = Policy::from_json(br#"{"global": {"cluster": "limits"}, "rules": [
///     {"name": "r", "scope": "global", "key": ["client_ip"],
///      "limit": {"requests": 1, "period": "1m"}}]}"#).unwrap();
/// let mut service = MemoryService::new(policy);
/// let body = br#"{"domain": "sluice", "checks": [{"rule": "r", "key": "6b", "cost": 1,
///                 "limit": "gcra:1/60000000000/1"}]}"#;
/// let (status, reply) = service.decide(body, 0);
/// assert_eq!(status, 200);
/// assert!(DecideReply::parse(&reply, 1).unwrap().allowed);
/// let (_, reply) = service.decide(body, 1);
/// assert!(!DecideReply::parse(&reply, 1).unwrap().allowed);
/// assert_eq!(service.decide(b"{}", 2).0, 400);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryService {
    policy: Policy,
    states: BTreeMap<(String, Vec<u8>), State>,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl MemoryService {
    /// A service for `policy`'s domain and rules, with no state yet.
    pub fn new(policy: Policy) -> MemoryService {
        MemoryService {
            policy,
            states: BTreeMap::new(),
        }
    }

    /// Answers one request body at `now`: the HTTP status and the JSON body (a
    /// [`DecideReply`], or `{"error": "..."}` naming the field).
    pub fn decide(&mut self, body: &[u8], now: Nanos) -> (u16, Vec<u8>) {
        match self.try_decide(body, now) {
            Ok(reply) => (200, reply.to_json()),
            Err(error) => {
                let body = ErrorBody {
                    error: format!("{error}"),
                };
                (
                    error.http_status(),
                    serde_json::to_vec(&body).unwrap_or_default(),
                )
            }
        }
    }

    fn try_decide(&mut self, body: &[u8], now: Nanos) -> Result<DecideReply, RequestError> {
        let request = DecideRequest::from_json(body)?;
        let checks = request.checks(&self.policy)?;
        let mut states: Vec<Option<State>> = checks
            .iter()
            .map(|check| {
                self.states
                    .get(&(String::from(check.rule), check.key.clone()))
                    .cloned()
            })
            .collect();
        let verdict = Limiter::decide_all(&checks, &mut states, now);
        if verdict.allowed {
            for (check, state) in checks.iter().zip(states) {
                if let Some(state) = state {
                    self.states
                        .insert((String::from(check.rule), check.key.clone()), state);
                }
            }
        }
        Ok(DecideReply::from_verdict(&verdict))
    }

    /// Answers one lease request body at `now` (`POST /v1/lease`): the HTTP status and the
    /// JSON body (a [`LeaseReply`], or `{"error": "..."}` naming the field). Returns are
    /// handled first, each refunded with [`Limit::refund`](sluice_core::Limit::refund) at
    /// its grant's time; then each acquisition is granted with
    /// [`Limit::grant`](sluice_core::Limit::grant) and committed.
    ///
    /// ```
    /// use sluice_policy::Policy;
    /// use sluice_policy::global::{LeaseReply, LeaseRequest, MemoryService};
    ///
    /// let policy = Policy::from_json(br#"{"global": {"cluster": "limits"}, "rules": [
    ///     {"name": "r", "scope": "global", "key": ["client_ip"],
    ///      "limit": {"requests": 10, "period": "1m"}, "lease": {"size": 4}}]}"#).unwrap();
    /// let mut service = MemoryService::new(policy);
    /// let body = br#"{"domain": "sluice", "acquire": [{"rule": "r", "key": "6b",
    ///                 "limit": "gcra:10/60000000000/10", "min": 1, "want": 8}]}"#;
    /// let request = LeaseRequest::from_json(body).unwrap();
    /// let (status, reply) = service.lease(body, 0);
    /// assert_eq!(status, 200);
    /// assert_eq!(LeaseReply::parse(&reply, &request).unwrap().acquired[0].granted, 8);
    /// let (_, reply) = service.lease(body, 0);
    /// assert_eq!(LeaseReply::parse(&reply, &request).unwrap().acquired[0].granted, 2);
    /// ```
    pub fn lease(&mut self, body: &[u8], now: Nanos) -> (u16, Vec<u8>) {
        match self.try_lease(body, now) {
            Ok(reply) => (200, reply.to_json()),
            Err(error) => {
                let body = ErrorBody {
                    error: format!("{error}"),
                };
                (
                    error.http_status(),
                    serde_json::to_vec(&body).unwrap_or_default(),
                )
            }
        }
    }

    fn try_lease(&mut self, body: &[u8], now: Nanos) -> Result<LeaseReply, RequestError> {
        let request = LeaseRequest::from_json(body)?;
        let items = request.resolve(&self.policy)?;
        let mut returned = Vec::with_capacity(items.returns.len());
        for item in &items.returns {
            let key = (String::from(item.rule.name()), item.key.clone());
            let limit = item.rule.limit();
            let units = match self.states.get(&key) {
                Some(before) => {
                    let after = limit.refund(before, item.units, item.granted_at);
                    let units = limit.restored(before, &after, now);
                    self.states.insert(key, after);
                    units
                }
                None => 0,
            };
            returned.push(LeaseReturned { units });
        }
        let mut acquired = Vec::with_capacity(items.acquire.len());
        for item in &items.acquire {
            let key = (String::from(item.rule.name()), item.key.clone());
            let grant = item
                .rule
                .limit()
                .grant(self.states.get(&key), now, item.min, item.want);
            let outcome = item.outcome(&grant);
            acquired.push(LeaseGrant::new(grant.granted, now, &outcome));
            if let Some(state) = grant.state {
                self.states.insert(key, state);
            }
        }
        Ok(LeaseReply { acquired, returned })
    }

    /// The stored state of `rule`'s `key`, if it has spent anything.
    pub fn state(&self, rule: &str, key: &[u8]) -> Option<&State> {
        self.states.get(&(String::from(rule), key.to_vec()))
    }
}
