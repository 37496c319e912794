//! The Durable Object that owns the counters of some (rule, key) pairs.
//!
//! An object is single-threaded and does a whole decide (read every state, decide every
//! rule, commit them all or none) without yielding between reading and writing, so it needs
//! no compare-and-swap: it decides with `Limiter::decide_all` over states it holds in memory.
//!
//! A lease call is one such step too: it refunds the returned units (`Limit::refund` at their
//! `granted_at`), decides the call's checks as a decide does, and grants each acquisition a
//! slice with `Limit::grant` (the most units, up to `want`, that a request of that cost would
//! be admitted for, at least the request's cost), committed and written like any decision.
//!
//! # Storage
//!
//! Hot states are in memory; every commit is also written to the object's SQLite storage
//! (before the answer leaves the object: the runtime holds outgoing messages until the write
//! is durable), so an object that is evicted or restarted carries on where it was:
//!
//! ```text
//! states(name TEXT PRIMARY KEY,      -- "<rule>/<key as hex>"
//!        limit TEXT NOT NULL,        -- "<algorithm>:<limit>:<period ns>:<burst>"
//!        state BLOB NOT NULL,        -- sluice_core::State::encode_into (versioned)
//!        idle_at_ms INTEGER NOT NULL) -- when the state has fully recovered (Limit::idle_at)
//! ```
//!
//! A row written under another `limit` (the rule changed) or that does not decode is treated
//! as no state, as the filter does with its table signature.
//!
//! The storage also holds a version of the states, which every commit and refund increments
//! and every answer carries (with the states of the keys it was about), so the worker's
//! negative cache can keep the newest state of a key it has seen:
//!
//! ```text
//! meta(name TEXT PRIMARY KEY,        -- "epoch": when this storage was first used (ms);
//!      value INTEGER NOT NULL)       -- "seq": changes made to the states so far
//! ```
//!
//! # Clean-up
//!
//! An alarm is kept at the earliest `idle_at` of the stored states; when it fires, every state
//! that has fully recovered is deleted (it is equivalent to no state), and the alarm moves to
//! the next one. Storage therefore holds only keys that are still limited. Decisions, the
//! alarm and the clean-up all read one clock ([`ObjectClock`]), so a state is only ever deleted
//! once it has recovered at the time the object decides by.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use sluice_core::time::NANOS_PER_MILLI;
use sluice_core::{Check, Limit, Limiter, Mode, State, Status};
use worker::{
    Date, Delay, DurableObject, Env, Request, Response, Result, SqlStorageValue, State as Object,
    durable_object,
};

use crate::object_clock::ObjectClock;
use crate::protocol::{
    DECIDE_PATH, DecideRequest, DecideResponse, LEASE_PATH, LEASE_VERSION, LeaseRequest,
    LeaseResponse, ObjectVersion, REFUND_PATH, RELEASE_PATH, ROWS_PATH, RefundRequest,
    RefundResponse, ReleaseRequest, ReleaseResponse, RowsRequest, RowsResponse, WireAcquire,
    WireCheck, WireFault, WireGrant, WireOutcome, state_to_wire,
};
use crate::test_hooks;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS states (\
    name TEXT PRIMARY KEY, \
    limit_sig TEXT NOT NULL, \
    state BLOB NOT NULL, \
    idle_at_ms INTEGER NOT NULL)";
const SCHEMA_INDEX: &str = "CREATE INDEX IF NOT EXISTS states_idle_at ON states (idle_at_ms)";
const SCHEMA_META: &str =
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)";

/// One key's state as the object holds it.
#[derive(Debug, Clone)]
struct Slot {
    limit_sig: String,
    state: State,
}

/// What one call changed in the states.
#[derive(Debug, Default)]
struct Change {
    /// Whether any state was written.
    changed: bool,
    /// The earliest recovery time among the states written (milliseconds).
    earliest_idle: Option<u64>,
}

impl Change {
    fn stored(&mut self, idle_at_ms: u64) {
        self.changed = true;
        self.earliest_idle = Some(self.earliest_idle.map_or(idle_at_ms, |e| e.min(idle_at_ms)));
    }
}

/// A request's checks as decided by the object.
#[derive(Debug)]
struct Share {
    committed: Vec<bool>,
    outcomes: Vec<WireOutcome>,
    states: Vec<Option<String>>,
}

/// The limiter object (class `SluiceLimiter`, binding `LIMITER`).
#[allow(
    missing_debug_implementations,
    reason = "holds runtime handles without Debug"
)]
#[durable_object]
pub struct SluiceLimiter {
    object: Object,
    /// States read or written so far; `None`: known to have no row.
    slots: RefCell<HashMap<String, Option<Slot>>>,
    /// The time everything in the object goes by.
    clock: Cell<ObjectClock>,
    /// The earliest time (object clock, milliseconds) a stored state has fully recovered.
    due_ms: Cell<Option<u64>>,
    /// The clean-up time an alarm is set for, if this instance set one.
    armed_ms: Cell<Option<u64>>,
    /// The version of the states (see the module docs).
    version: Cell<ObjectVersion>,
    hooks: bool,
    /// Why the schema could not be created, if it could not.
    schema_error: Option<String>,
}

/// The storage name of a check's state.
fn slot_name(check: &WireCheck) -> String {
    format!("{}/{}", check.rule, check.key)
}

/// The first integer of a query's first row, if it has one.
fn first_integer(cursor: worker::SqlCursor) -> Option<u64> {
    cursor
        .raw()
        .next()
        .and_then(|row| match row.ok()?.as_slice() {
            [SqlStorageValue::Integer(n)] => u64::try_from(*n).ok(),
            _ => None,
        })
}

fn meta_value(sql: &worker::SqlStorage, name: &str) -> Result<Option<u64>> {
    Ok(first_integer(sql.exec(
        "SELECT value FROM meta WHERE name = ?",
        vec![SqlStorageValue::from(name)],
    )?))
}

fn set_meta_value(sql: &worker::SqlStorage, name: &str, value: u64) -> Result<()> {
    sql.exec(
        "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
        vec![
            SqlStorageValue::from(name),
            SqlStorageValue::Integer(i64::try_from(value).unwrap_or(i64::MAX)),
        ],
    )?;
    Ok(())
}

/// Creates the tables if needed; returns the version of the stored states and the earliest
/// recovery time among them.
fn open_storage(sql: &worker::SqlStorage) -> Result<(ObjectVersion, Option<u64>)> {
    sql.exec(SCHEMA, None)?;
    sql.exec(SCHEMA_INDEX, None)?;
    sql.exec(SCHEMA_META, None)?;
    let epoch = match meta_value(sql, "epoch")? {
        Some(epoch) => epoch,
        None => {
            let epoch = Date::now().as_millis();
            set_meta_value(sql, "epoch", epoch)?;
            epoch
        }
    };
    let seq = meta_value(sql, "seq")?.unwrap_or(0);
    let due = first_integer(sql.exec("SELECT MIN(idle_at_ms) FROM states", None)?);
    Ok((ObjectVersion { epoch, seq }, due))
}

/// A JSON answer written by serde_json (exact u64 times, unlike the runtime's JSON).
fn json_response<T: serde::Serialize>(value: &T) -> Result<Response> {
    let text = serde_json::to_string(value).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::ok(text)?.with_headers(headers))
}

fn error_response(status: u16, message: &str) -> Result<Response> {
    Response::error(message, status)
}

impl SluiceLimiter {
    /// The time to decide a request at: the object's clock, moved by the request's test time
    /// (honoured only with the hooks enabled).
    fn now(&self, test_now: Option<u64>) -> u64 {
        let mut clock = self.clock.get();
        let now = clock.observe(test_now.filter(|_| self.hooks));
        self.clock.set(clock);
        now
    }

    /// Counts a change to the states, in memory and in storage.
    fn bump_version(&self) -> Result<ObjectVersion> {
        let mut version = self.version.get();
        version.seq = version.seq.saturating_add(1);
        set_meta_value(&self.object.storage().sql(), "seq", version.seq)?;
        self.version.set(version);
        Ok(version)
    }

    fn load(&self, name: &str, limit_sig: &str) -> Result<Option<State>> {
        if let Some(slot) = self.slots.borrow().get(name) {
            return Ok(slot
                .as_ref()
                .filter(|slot| slot.limit_sig == limit_sig)
                .map(|slot| slot.state.clone()));
        }
        let cursor = self.object.storage().sql().exec(
            "SELECT limit_sig, state FROM states WHERE name = ?",
            vec![SqlStorageValue::from(name)],
        )?;
        let mut stored = None;
        if let Some(row) = cursor.raw().next()
            && let [SqlStorageValue::String(sig), SqlStorageValue::Blob(bytes)] = row?.as_slice()
            && let Ok(state) = State::decode(bytes)
        {
            stored = Some(Slot {
                limit_sig: sig.clone(),
                state,
            });
        }
        let state = stored
            .as_ref()
            .filter(|slot| slot.limit_sig == limit_sig)
            .map(|slot| slot.state.clone());
        self.slots.borrow_mut().insert(name.to_owned(), stored);
        Ok(state)
    }

    /// Writes a state to memory and storage; returns when it has fully recovered.
    fn store(&self, name: &str, limit_sig: &str, limit: &Limit, state: State) -> Result<u64> {
        let idle_at_ms = limit.idle_at(&state).div_ceil(NANOS_PER_MILLI);
        let mut bytes = Vec::with_capacity(state.encoded_len());
        state.encode_into(&mut bytes);
        self.object.storage().sql().exec(
            "INSERT OR REPLACE INTO states (name, limit_sig, state, idle_at_ms) VALUES (?, ?, ?, ?)",
            vec![
                SqlStorageValue::from(name),
                SqlStorageValue::from(limit_sig),
                SqlStorageValue::Blob(bytes),
                SqlStorageValue::Integer(i64::try_from(idle_at_ms).unwrap_or(i64::MAX)),
            ],
        )?;
        self.slots.borrow_mut().insert(
            name.to_owned(),
            Some(Slot {
                limit_sig: limit_sig.to_owned(),
                state,
            }),
        );
        Ok(idle_at_ms)
    }

    /// Notes that a stored state fully recovers at `idle_at_ms` (object clock).
    fn due_by(&self, idle_at_ms: Option<u64>) {
        if let Some(idle) = idle_at_ms {
            self.due_ms
                .set(Some(self.due_ms.get().map_or(idle, |due| due.min(idle))));
        }
    }

    /// Makes sure an alarm fires for the earliest clean-up due, as soon as the object's clock
    /// allows (see [`ObjectClock::alarm_delay_ms`]).
    async fn keep_alarm(&self) -> Result<()> {
        let Some(due) = self.due_ms.get() else {
            return Ok(());
        };
        if self.armed_ms.get().is_some_and(|at| at <= due) {
            return Ok(());
        }
        let Some(delay_ms) = self.clock.get().alarm_delay_ms(due) else {
            return Ok(());
        };
        self.object.storage().set_alarm(delay_ms).await?;
        self.armed_ms.set(Some(due));
        Ok(())
    }

    /// Injected faults (tests only): waits, then `Some(answer)` if the call must fail.
    async fn inject(&self, fault: Option<WireFault>) -> Option<Result<Response>> {
        let fault = fault.filter(|_| self.hooks)?;
        if fault.delay_ms > 0 {
            Delay::from(Duration::from_millis(fault.delay_ms)).await;
        }
        fault
            .fail
            .then(|| error_response(503, "sluice: injected limiter object failure"))
    }

    /// Decides `wires` (already checked to convert) as one request at `now`, committing them
    /// all if it is allowed: a decide call, and the checks of a lease call.
    fn decide_share(&self, wires: &[WireCheck], now: u64, change: &mut Change) -> Result<Share> {
        let checks = wires
            .iter()
            .map(WireCheck::to_check)
            .collect::<std::result::Result<Vec<Check<'_>>, _>>()
            .map_err(|e| worker::Error::RustError(format!("sluice: bad check: {e}")))?;
        let mut states = Vec::with_capacity(checks.len());
        for wire in wires {
            states.push(self.load(&slot_name(wire), &wire.limit_signature())?);
        }
        let before = states.clone();
        let verdict = Limiter::decide_all(&checks, &mut states, now);
        let mut committed = vec![false; checks.len()];
        if verdict.allowed {
            for (index, (wire, check)) in wires.iter().zip(&checks).enumerate() {
                let (Some(Some(after)), Some(prior)) = (states.get(index), before.get(index))
                else {
                    continue;
                };
                if prior.as_ref() == Some(after) {
                    continue;
                }
                let idle = self.store(
                    &slot_name(wire),
                    &wire.limit_signature(),
                    &check.limit,
                    after.clone(),
                )?;
                change.stored(idle);
                if let Some(flag) = committed.get_mut(index) {
                    *flag = true;
                }
            }
        }
        let outcomes = verdict
            .outcomes
            .iter()
            .filter_map(|outcome| WireOutcome::new(outcome.status, &outcome.decision))
            .collect();
        // What the object holds now: the committed states if the share was allowed, else the
        // states as they were read (a denial changes nothing).
        let states = states
            .iter()
            .map(|state| state.as_ref().map(state_to_wire))
            .collect();
        Ok(Share {
            committed,
            outcomes,
            states,
        })
    }

    /// Gives back `wire.cost` units spent at `committed_at`; the key's state after it.
    fn give_back(
        &self,
        wire: &WireCheck,
        committed_at: u64,
        change: &mut Change,
    ) -> Result<Option<State>> {
        let name = slot_name(wire);
        let sig = wire.limit_signature();
        let state = self.load(&name, &sig)?;
        Ok(match (wire.to_check(), state) {
            (Ok(check), Some(state)) => {
                let given_back = check.limit.refund(&state, check.cost, committed_at);
                let idle = self.store(&name, &sig, &check.limit, given_back.clone())?;
                change.stored(idle);
                Some(given_back)
            }
            (_, state) => state,
        })
    }

    /// Grants a slice of at least `acquire.check.cost` and at most `acquire.want` units, as
    /// one commit of that many.
    fn grant(&self, acquire: &WireAcquire, now: u64, change: &mut Change) -> Result<WireGrant> {
        let wire = &acquire.check;
        let check = wire
            .to_check()
            .map_err(|e| worker::Error::RustError(format!("sluice: bad acquisition: {e}")))?;
        let name = slot_name(wire);
        let sig = wire.limit_signature();
        let state = self.load(&name, &sig)?;
        let grant = check
            .limit
            .grant(state.as_ref(), now, wire.cost, acquire.want);
        let mut after = state;
        if grant.granted > 0
            && let Some(next) = grant.state
        {
            let idle = self.store(&name, &sig, &check.limit, next.clone())?;
            change.stored(idle);
            after = Some(next);
        }
        let status = match (grant.granted > 0, check.mode) {
            (true, _) => Status::Allowed,
            (false, Mode::Enforce) => Status::Denied,
            (false, Mode::Shadow | Mode::Soft) => Status::ShadowDenied,
        };
        let outcome = WireOutcome::new(status, &grant.decision).ok_or_else(|| {
            worker::Error::RustError("sluice: a grant has no failure status".to_owned())
        })?;
        Ok(WireGrant {
            granted: grant.granted,
            outcome,
            state: after.as_ref().map(state_to_wire),
        })
    }

    /// The version after `change`, counted once for the whole call; the clean-up kept due.
    async fn settle(&self, change: Change) -> Result<ObjectVersion> {
        let version = if change.changed {
            self.bump_version()?
        } else {
            self.version.get()
        };
        self.due_by(change.earliest_idle);
        self.keep_alarm().await?;
        Ok(version)
    }

    async fn decide(&self, request: DecideRequest) -> Result<Response> {
        if let Some(failed) = self.inject(request.fault.clone()).await {
            return failed;
        }
        let now = self.now(request.now);
        if let Err(error) = request
            .checks
            .iter()
            .map(WireCheck::to_check)
            .collect::<std::result::Result<Vec<Check<'_>>, _>>()
        {
            return error_response(400, &format!("sluice: bad check: {error}"));
        }
        let mut change = Change::default();
        let share = self.decide_share(&request.checks, now, &mut change)?;
        let version = self.settle(change).await?;
        json_response(&DecideResponse {
            now,
            committed: share.committed,
            outcomes: share.outcomes,
            states: share.states,
            version,
        })
    }

    /// Gives back the concurrency slots of a request that has ended: each from the bucket it
    /// was taken in, if that bucket is still live (`Limit::release`); an expired slot has come
    /// back on its own, and its release changes nothing.
    async fn release(&self, request: ReleaseRequest) -> Result<Response> {
        let now = self.now(request.now);
        let mut change = Change::default();
        let mut released = 0;
        let mut states = Vec::with_capacity(request.checks.len());
        for wire in &request.checks {
            let name = slot_name(wire);
            let sig = wire.limit_signature();
            let state = self.load(&name, &sig)?;
            let after = match (wire.to_check(), state) {
                (Ok(check), Some(state)) => {
                    match check.limit.release(&state, request.taken_at, now) {
                        Some(freed) => {
                            let idle = self.store(&name, &sig, &check.limit, freed.clone())?;
                            change.stored(idle);
                            released += 1;
                            Some(freed)
                        }
                        None => Some(state),
                    }
                }
                (_, state) => state,
            };
            states.push(after.as_ref().map(state_to_wire));
        }
        let version = self.settle(change).await?;
        json_response(&ReleaseResponse {
            released,
            states,
            version,
        })
    }

    async fn refund(&self, request: RefundRequest) -> Result<Response> {
        let mut change = Change::default();
        let mut refunded = 0;
        let mut states = Vec::with_capacity(request.checks.len());
        for wire in &request.checks {
            let before = change.changed;
            change.changed = false;
            let after = self.give_back(wire, request.committed_at, &mut change)?;
            if change.changed {
                refunded += 1;
            }
            change.changed |= before;
            states.push(after.as_ref().map(state_to_wire));
        }
        let version = self.settle(change).await?;
        json_response(&RefundResponse {
            refunded,
            states,
            version,
        })
    }

    /// A lease call: returns first (so their units are there for the acquisitions), then the
    /// checks, then the acquisitions, all in one step of the object.
    async fn lease(&self, request: LeaseRequest) -> Result<Response> {
        if let Some(failed) = self.inject(request.fault.clone()).await {
            return failed;
        }
        let now = self.now(request.now);
        let mut change = Change::default();
        let mut returned = Vec::with_capacity(request.returns.len());
        for item in &request.returns {
            let after = self.give_back(&item.check, item.granted_at, &mut change)?;
            returned.push(after.as_ref().map(state_to_wire));
        }
        let share = self.decide_share(&request.checks, now, &mut change)?;
        let mut acquired = Vec::with_capacity(request.acquire.len());
        for acquire in &request.acquire {
            acquired.push(self.grant(acquire, now, &mut change)?);
        }
        let version = self.settle(change).await?;
        json_response(&LeaseResponse {
            v: LEASE_VERSION,
            now,
            returned,
            committed: share.committed,
            outcomes: share.outcomes,
            states: share.states,
            acquired,
            version,
        })
    }

    async fn rows(&self, request: RowsRequest) -> Result<Response> {
        self.now(request.now);
        self.keep_alarm().await?;
        let rows = self
            .object
            .storage()
            .sql()
            .exec("SELECT name FROM states", None)?
            .raw()
            .count();
        let in_memory = self
            .slots
            .borrow()
            .values()
            .filter(|slot| slot.is_some())
            .count();
        json_response(&RowsResponse {
            rows: u64::try_from(rows).unwrap_or(u64::MAX),
            in_memory: u64::try_from(in_memory).unwrap_or(u64::MAX),
        })
    }
}

impl DurableObject for SluiceLimiter {
    fn new(object: Object, env: Env) -> Self {
        let (version, due_ms, schema_error) = match open_storage(&object.storage().sql()) {
            Ok((version, due)) => (version, due, None),
            Err(error) => (ObjectVersion::default(), None, Some(error.to_string())),
        };
        SluiceLimiter {
            object,
            slots: RefCell::new(HashMap::new()),
            clock: Cell::new(ObjectClock::Runtime),
            due_ms: Cell::new(due_ms),
            armed_ms: Cell::new(None),
            version: Cell::new(version),
            hooks: test_hooks::enabled(&env),
            schema_error,
        }
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        if let Some(error) = &self.schema_error {
            return error_response(500, &format!("sluice: limiter storage unusable: {error}"));
        }
        // Parsed by serde_json, not the runtime's JSON: times are u64 nanoseconds, beyond
        // what a JavaScript number holds exactly.
        let text = request.text().await?;
        match request.path().as_str() {
            DECIDE_PATH => match serde_json::from_str::<DecideRequest>(&text) {
                Ok(body) => self.decide(body).await,
                Err(error) => error_response(400, &format!("sluice: bad decide call: {error}")),
            },
            RELEASE_PATH => match serde_json::from_str::<ReleaseRequest>(&text) {
                Ok(body) => self.release(body).await,
                Err(error) => error_response(400, &format!("sluice: bad release call: {error}")),
            },
            REFUND_PATH => match serde_json::from_str::<RefundRequest>(&text) {
                Ok(body) => self.refund(body).await,
                Err(error) => error_response(400, &format!("sluice: bad refund call: {error}")),
            },
            LEASE_PATH => match LeaseRequest::parse(text.as_bytes()) {
                Ok(body) => self.lease(body).await,
                Err(error) => error_response(400, &format!("sluice: bad lease call: {error}")),
            },
            ROWS_PATH if self.hooks => match serde_json::from_str::<RowsRequest>(&text) {
                Ok(body) => self.rows(body).await,
                Err(error) => error_response(400, &format!("sluice: bad rows call: {error}")),
            },
            _ => error_response(404, "sluice: no such limiter call"),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let now_ms = self.clock.get().now_ms();
        let sql = self.object.storage().sql();
        let removed: Vec<String> = sql
            .exec(
                "DELETE FROM states WHERE idle_at_ms <= ? RETURNING name",
                vec![SqlStorageValue::Integer(
                    i64::try_from(now_ms).unwrap_or(i64::MAX),
                )],
            )?
            .raw()
            .filter_map(|row| match row.ok()?.as_slice() {
                [SqlStorageValue::String(name)] => Some(name.clone()),
                _ => None,
            })
            .collect();
        {
            let mut slots = self.slots.borrow_mut();
            for name in &removed {
                slots.remove(name);
            }
            // "No row" markers are cheap to rebuild; drop them so memory follows storage.
            slots.retain(|_, slot| slot.is_some());
        }
        self.armed_ms.set(None);
        self.due_ms.set(first_integer(
            sql.exec("SELECT MIN(idle_at_ms) FROM states", None)?,
        ));
        self.keep_alarm().await?;
        Response::ok("swept")
    }
}
