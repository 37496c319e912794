//! The compiled configuration and what it makes of a request: exempt, or the checks of the
//! rules that apply; then, with the limiter's verdict, the response.

use alloc::string::String;
use alloc::vec::Vec;
use sluice_core::table::{RuleTable, TableNames, TableSpec};
use sluice_core::{
    Check, FailureMode, Limit, Limiter, Mode, Nanos, RuleOutcome, SlotStore, Verdict,
};

use crate::client_ip::ClientIpSource;
use crate::cost::CostSpec;
use crate::error::ConfigError;
use crate::exempt::Exemptions;
use crate::global::{GlobalConfig, LeaseConfig, Scope};
use crate::jwt::JwtSource;
use crate::key::{KeyInput, KeySpec, WhenKeyMissing};
use crate::matching::Match;
use crate::notice::Notice;
use crate::overrides::Overrides;
use crate::request::Request;
use crate::response::{Response, ResponseConfig, WarnAt};
use crate::shaping::Shaping;
use crate::tier::{LimitKind, NamedLimit, Selected, Tiers};
use crate::uri;
use crate::warning::{self, Reason};

/// A configuration that has passed every check; see `CONFIG.md` for the format.
///
/// ```
/// use sluice_policy::Policy;
///
/// let policy = Policy::from_json(br#"{
///     "rules": [{"name": "per-client", "key": ["client_ip"],
///                "limit": {"requests": 100, "period": "1m"}}]
/// }"#).unwrap();
/// assert_eq!(policy.rules()[0].name(), "per-client");
///
/// let err = Policy::from_json(br#"{"rules": [{"name": "per-client", "key": ["client_ip"],
///     "limit": {"requests": 100, "period": "5x"}}]}"#).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "rule \"per-client\" (rules[0]): limit.period: \"5x\" is not a duration; \
///      use a number with ms, s, m, h or d, e.g. 30s"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The `namespace` field, if given.
    pub(crate) namespace: Option<String>,
    /// The namespace the tables live in: `namespace`, or one derived from the config bytes.
    pub(crate) table_namespace: String,
    pub(crate) client_ip: ClientIpSource,
    pub(crate) exemptions: Exemptions,
    pub(crate) response: ResponseConfig,
    pub(crate) cas_retries: u32,
    pub(crate) rules: Vec<Rule>,
    pub(crate) global: Option<GlobalConfig>,
    pub(crate) has_global_rules: bool,
    pub(crate) jwt: Option<JwtSource>,
    /// Whether any rule has `warn_at` (rendering then looks each check's rule up).
    pub(crate) warns: bool,
    /// Whether any rule can mark a request.
    pub(crate) marks: bool,
    pub(crate) shaping: Shaping,
    /// Whether any rule is a concurrency rule.
    pub(crate) has_concurrency: bool,
}

/// One compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub(crate) name: String,
    pub(crate) matcher: Match,
    pub(crate) key: KeySpec,
    pub(crate) when_key_missing: WhenKeyMissing,
    pub(crate) limit: Limit,
    pub(crate) cost: CostSpec,
    pub(crate) mode: Mode,
    pub(crate) failure_mode: FailureMode,
    pub(crate) max_keys: u32,
    pub(crate) scope: Scope,
    pub(crate) lease: Option<LeaseConfig>,
    /// Every limit the rule can apply, each with its check name: the rule's own `limit`, or
    /// its tiers (and the denial of unknown tiers); then its overrides.
    pub(crate) limits: Vec<NamedLimit>,
    /// `limits[i]`'s `RateLimit-Policy` item, rendered at configure time (it never changes).
    pub(crate) policy_items: Vec<String>,
    pub(crate) tiers: Option<Tiers>,
    pub(crate) overrides: Option<Overrides>,
    /// `warn_at.remaining`: a passing request leaving at most this many units is marked.
    pub(crate) warn_at: Option<u64>,
}

impl Rule {
    /// The rule's unique name (`[A-Za-z0-9_.-]{1,64}`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which requests it applies to.
    pub fn matcher(&self) -> &Match {
        &self.matcher
    }

    /// What it counts by.
    pub fn key(&self) -> &KeySpec {
        &self.key
    }

    /// What it does with a request lacking a key part.
    pub fn when_key_missing(&self) -> WhenKeyMissing {
        self.when_key_missing
    }

    /// Its algorithm and quota; for a tiered rule, those of the tier unknown requests get
    /// (else of its first tier). See [`Rule::limits`] for every limit it can apply.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// What a request costs.
    pub fn cost(&self) -> &CostSpec {
        &self.cost
    }

    /// Enforce, shadow or soft.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `warn_at.remaining`, if set: a request it passes leaving at most this many units is
    /// marked (see [`crate::warning`]).
    pub fn warn_at(&self) -> Option<u64> {
        self.warn_at
    }

    /// Whether the rule can mark a request: it is soft, or has `warn_at`.
    pub fn marks_requests(&self) -> bool {
        self.mode == Mode::Soft || self.warn_at.is_some()
    }

    /// What it decides when its counter store fails.
    pub fn failure_mode(&self) -> FailureMode {
        self.failure_mode
    }

    /// The most distinct keys it tracks at once (its memory ceiling).
    pub fn max_keys(&self) -> u32 {
        self.max_keys
    }

    /// Where its counters live: shared data, or the rate-limit service.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Its `lease`, if its holders reserve slices of the global count and spend them
    /// locally.
    pub fn lease(&self) -> Option<&LeaseConfig> {
        self.lease.as_ref()
    }

    /// Every limit the rule can apply, each with the name its checks carry: the rule's own
    /// `limit` (named like the rule), or its tiers (`<rule>:<tier>`, and `<rule>:deny` for
    /// `"default": "deny"`); then its overrides (`<rule>:<override>`).
    pub fn limits(&self) -> &[NamedLimit] {
        &self.limits
    }

    /// Its tiers, if its limit depends on the caller.
    pub fn tiers(&self) -> Option<&Tiers> {
        self.tiers.as_ref()
    }

    /// Its per-key overrides.
    pub fn overrides(&self) -> Option<&Overrides> {
        self.overrides.as_ref()
    }

    /// Its `delay.max`: the longest it holds a request rather than deny it (0: never).
    pub fn max_delay(&self) -> Nanos {
        self.limit.max_delay
    }

    /// The check of the rule's limit named `name` (one of [`Rule::limits`], as a check of
    /// this rule carries it) for a request with `key` and `cost`: how the rate-limit service
    /// rebuilds the checks a proxy sends.
    pub fn check_named(&self, name: &str, key: Vec<u8>, cost: u64) -> Option<Check<'_>> {
        let named = self.limits.iter().find(|l| l.name == name)?;
        Some(self.check_of(named, key, cost))
    }

    pub(crate) fn check_of<'r>(
        &'r self,
        named: &'r NamedLimit,
        key: Vec<u8>,
        cost: u64,
    ) -> Check<'r> {
        Check {
            rule: &named.name,
            limit: named.limit,
            max_keys: named.max_keys,
            key,
            // Nothing fits a denial; other limits charge at most their capacity.
            cost: match named.kind {
                LimitKind::Deny => u64::MAX,
                _ => cost.min(named.limit.capacity()),
            },
            mode: self.mode,
            failure_mode: self.failure_mode,
        }
    }

    /// The `RateLimit-Policy` item rendered at configure time for `check`, if it is a check
    /// of one of the rule's limits.
    pub(crate) fn policy_item(&self, check: &Check<'_>) -> Option<&str> {
        let position = self
            .limits
            .iter()
            .position(|l| l.name == check.rule && l.limit == check.limit)?;
        self.policy_items.get(position).map(String::as_str)
    }

    /// Where the rule first reads a JWT claim, if it does (such rules need the `jwt`
    /// section).
    pub(crate) fn first_claim_path(&self) -> Option<String> {
        if let Some(index) = self.key.first_claim() {
            return Some(crate::json::index("key", index));
        }
        if self.tiers.as_ref().is_some_and(Tiers::reads_claims) {
            return Some(String::from("tier.from"));
        }
        self.matcher
            .reads_claims()
            .then(|| String::from("match.claims"))
    }

    /// The check of this rule for a request with `key` and `cost` (as the rate-limit
    /// service builds it from a decide request).
    pub fn check(&self, key: Vec<u8>, cost: u64) -> Check<'_> {
        Check {
            rule: &self.name,
            limit: self.limit,
            max_keys: self.max_keys,
            key,
            cost,
            mode: self.mode,
            failure_mode: self.failure_mode,
        }
    }

    /// The most bytes (store key names and values) the rule's tables (its own, or each
    /// tier's, and each override's) can ever occupy in the counter store.
    pub fn max_store_bytes(&self) -> u64 {
        self.limits
            .iter()
            .filter(|l| l.has_table())
            .map(|l| RuleTable::new(&l.name, l.limit, l.max_keys).max_store_bytes())
            .fold(0u64, u64::saturating_add)
    }
}

/// What a policy makes of a request before any counter is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluation<'p> {
    /// An exemption matched: no rule looks at the request, and no header is added.
    Exempt,
    /// The checks of the rules that apply (possibly none).
    Rules(AppliedRules<'p>),
}

/// The checks of the rules that apply to a request, in rule order, with each rule's index in
/// [`Policy::rules`] (for per-rule metrics).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppliedRules<'p> {
    pub(crate) checks: Vec<Check<'p>>,
    pub(crate) rule_indices: Vec<usize>,
    /// Each check's scope; left empty (no allocation) when the policy has no global rule.
    pub(crate) scopes: Vec<Scope>,
}

impl<'p> AppliedRules<'p> {
    /// The checks, ready for [`Limiter::check`].
    pub fn checks(&self) -> &[Check<'p>] {
        &self.checks
    }

    /// `rule_indices()[i]` is the index in [`Policy::rules`] of `checks()[i]`'s rule.
    pub fn rule_indices(&self) -> &[usize] {
        &self.rule_indices
    }

    /// Whether no rule applies.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// The scope of `checks()[i]`'s rule: decided in shared data, or by the rate-limit
    /// service.
    pub fn scope(&self, i: usize) -> Scope {
        self.scopes.get(i).copied().unwrap_or_default()
    }

    /// Whether a global rule applies (the request needs the rate-limit service).
    pub fn has_global(&self) -> bool {
        self.scopes.contains(&Scope::Global)
    }
}

impl<'p> Evaluation<'p> {
    /// Whether the request is exempt.
    pub fn is_exempt(&self) -> bool {
        matches!(self, Evaluation::Exempt)
    }

    /// The checks to run (none when exempt).
    pub fn checks(&self) -> &[Check<'p>] {
        match self {
            Evaluation::Exempt => &[],
            Evaluation::Rules(rules) => rules.checks(),
        }
    }

    /// The rule index of each check (none when exempt).
    pub fn rule_indices(&self) -> &[usize] {
        match self {
            Evaluation::Exempt => &[],
            Evaluation::Rules(rules) => rules.rule_indices(),
        }
    }

    /// The scope of `checks()[i]` (see [`AppliedRules::scope`]).
    pub fn scope(&self, i: usize) -> Scope {
        match self {
            Evaluation::Exempt => Scope::Local,
            Evaluation::Rules(rules) => rules.scope(i),
        }
    }
}

/// Everything [`Policy::handle`] did for one request.
#[derive(Debug, Clone)]
pub struct Handled<'p> {
    /// Exempt, or the checks of the applying rules.
    pub evaluation: Evaluation<'p>,
    /// The limiter's verdict; `None` when exempt or when no rule applies (nothing is read).
    pub verdict: Option<Verdict>,
    /// What to do with the request.
    pub response: Response<'p>,
    pub(crate) policy: &'p Policy,
    /// Positions of checks that were not decided (global rules not asked because a local
    /// rule denied): their outcomes in `verdict` only fill the place for rendering.
    pub(crate) unasked: Vec<usize>,
    /// Set when the rate-limit service call failed and the global rules' failure modes
    /// decided (logged by the caller through [`FailureLog`](crate::global::FailureLog),
    /// not per request).
    pub(crate) global_failure: bool,
}

impl<'p> Handled<'p> {
    /// Each applying rule's index in [`Policy::rules`], its check and its outcome.
    /// Global rules left unasked (a local rule denied first) are not listed.
    pub fn outcomes(&self) -> impl Iterator<Item = (usize, &Check<'p>, &RuleOutcome)> {
        let outcomes = self.verdict.iter().flat_map(|v| v.outcomes.iter());
        self.evaluation
            .rule_indices()
            .iter()
            .copied()
            .zip(self.evaluation.checks())
            .zip(outcomes)
            .enumerate()
            .filter(|(position, _)| !self.unasked.contains(position))
            .map(|(_, ((index, check), outcome))| (index, check, outcome))
    }

    /// The rules that marked the passed request (see [`crate::warning`]), each as its index
    /// in [`Policy::rules`] and why; none when the request was denied or not marked.
    pub fn marks(&self) -> impl Iterator<Item = (usize, Reason)> + '_ {
        let marked = self.response.warning().is_some();
        self.outcomes()
            .filter(move |_| marked)
            .filter_map(|(index, check, outcome)| {
                let rule = self.policy.rules.get(index)?;
                Some((index, warning::reason(check, outcome, rule.warn_at)?))
            })
    }

    /// What is worth a log line: shadow rules that would have denied, and counter store
    /// failures. Each displays as one line naming the rule and the key (secret parts
    /// fingerprinted).
    ///
    /// Outcomes that a failed call to the rate-limit service decided are left out: a storm of
    /// failing calls must not become a storm of log lines (see
    /// [`FailureLog`](crate::global::FailureLog)).
    pub fn notices(&self) -> impl Iterator<Item = Notice<'_>> {
        self.outcomes().filter_map(|(index, check, outcome)| {
            let rule = self.policy.rules.get(index)?;
            if self.global_failure && rule.scope == Scope::Global {
                return None;
            }
            Notice::of(rule, check, outcome)
        })
    }
}

impl Policy {
    /// Parses and validates a JSON configuration, as a proxy and the rate-limit service
    /// read it: only rules with `"scope": "global"` may have a `lease`.
    pub fn from_json(config: &[u8]) -> Result<Policy, ConfigError> {
        crate::config::compile(config, crate::config::Deployment::Proxy)
    }

    /// Parses and validates a JSON configuration as the edge worker reads it: every rule's
    /// counters are global there (Durable Objects), so a `lease` is allowed on any rule whose
    /// algorithm can be leased, whatever its `scope`. Everything else is checked as
    /// [`Policy::from_json`] checks it.
    pub fn from_json_edge(config: &[u8]) -> Result<Policy, ConfigError> {
        crate::config::compile(config, crate::config::Deployment::Edge)
    }

    /// The rules, in configuration order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The `namespace` field, if the configuration names one.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The namespace the rules' tables live in: the `namespace` field, or else `~` followed
    /// by 16 hex digits of a hash of the configuration's bytes, private to this configuration.
    pub fn table_namespace(&self) -> &str {
        &self.table_namespace
    }

    /// The names of the rules' tables in [`Policy::table_namespace`], before any CRC32
    /// separation (see [`TableNames::separate_crc32`] and [`Policy::table_specs`]).
    pub fn table_names(&self) -> TableNames {
        TableNames::new(self.table_namespace.as_str())
    }

    /// Every local rule's tables, in rule order, as [`TableNames::separate_crc32`] takes
    /// them: one per rule, or one per tier, and one per override (global rules count in the
    /// rate-limit service and have no table in shared data).
    pub fn table_specs(&self) -> Vec<TableSpec<'_>> {
        self.rules
            .iter()
            .filter(|rule| rule.scope == Scope::Local)
            .flat_map(|rule| rule.limits.iter().filter(|l| l.has_table()))
            .map(|named| TableSpec {
                rule: &named.name,
                limit: named.limit,
                max_keys: named.max_keys,
            })
            .collect()
    }

    /// The rule named `name`.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.name == name)
    }

    /// The rule a check named `name` belongs to: the rule of that name, or for a tier's or
    /// an override's check (`<rule>:<name>`) the rule before the colon.
    pub fn rule_of_check(&self, name: &str) -> Option<&Rule> {
        let rule = name.split_once(':').map_or(name, |(rule, _)| rule);
        self.rule(rule)
    }

    /// Which of rule `rule`'s limits a check named `check` applied (an index in
    /// [`Rule::limits`]: its own limit, the caller's tier or an override; 0 if none matches).
    pub(crate) fn limit_index(&self, rule: usize, check: &str) -> usize {
        self.rules
            .get(rule)
            .and_then(|rule| rule.limits.iter().position(|l| l.name == check))
            .unwrap_or_default()
    }

    /// Whether any rule can mark a request (see [`Rule::marks_requests`]): only then can a
    /// response carry the warning header.
    pub fn marks_requests(&self) -> bool {
        self.marks
    }

    /// Where JWT claims come from (`jwt`), if configured.
    pub fn jwt(&self) -> Option<&JwtSource> {
        self.jwt.as_ref()
    }

    /// How to reach the rate-limit service (`global`), if configured.
    pub fn global(&self) -> Option<&GlobalConfig> {
        self.global.as_ref()
    }

    /// Whether any rule has `"scope": "global"`: requests may then wait for the service
    /// ([`Policy::start`]); otherwise [`Policy::handle`] does everything.
    pub fn has_global_rules(&self) -> bool {
        self.has_global_rules
    }

    /// The service's domain for this configuration: `global.domain`, by default `sluice`.
    pub fn domain(&self) -> &str {
        self.global
            .as_ref()
            .map_or(crate::global::DEFAULT_DOMAIN, GlobalConfig::domain)
    }

    /// CAS retries per request for the limiter (`store.cas_retries`).
    pub fn cas_retries(&self) -> u32 {
        self.cas_retries
    }

    /// Where client addresses come from.
    pub fn client_ip_source(&self) -> &ClientIpSource {
        &self.client_ip
    }

    /// The exempt requests.
    pub fn exemptions(&self) -> &Exemptions {
        &self.exemptions
    }

    /// The denial and header style.
    pub fn response(&self) -> &ResponseConfig {
        &self.response
    }

    /// Decides which rules apply to `request` and builds their checks: the request's key and
    /// cost for each. Reads only the request (no counter); the client address is worked out
    /// only if an applying rule's key needs it.
    pub fn evaluate<R: Request + ?Sized>(&self, request: &R) -> Evaluation<'_> {
        self.evaluate_into(request, &mut RequestBuffers::default())
    }

    /// [`Policy::evaluate`] with the checks, their rule indices and keys built in `buffers`
    /// (lent to the evaluation; give them back with [`RequestBuffers::reclaim`]).
    pub fn evaluate_into<'p, R: Request + ?Sized>(
        &'p self,
        request: &R,
        buffers: &mut RequestBuffers,
    ) -> Evaluation<'p> {
        let (path, query) = uri::split_target(request.path());
        if self.exemptions.is_exempt(request, path) {
            return Evaluation::Exempt;
        }
        let mut input = KeyInput::new(request, path, query, &self.client_ip, self.jwt.as_ref())
            .reusing(core::mem::take(&mut buffers.attributes));
        let method = request.method();
        let mut applied = buffers.applied_rules();
        for (index, rule) in self.rules.iter().enumerate() {
            // The host is worked out only for a rule that matches on it.
            let host = if rule.matcher.has_hosts() {
                input.host()
            } else {
                &[]
            };
            if !rule.matcher.matches(method, path, host)
                || !rule.matcher.conditions_hold(&mut input)
            {
                continue;
            }
            let mut key = buffers.key();
            let complete = rule.key.build(&mut input, &mut key);
            if !complete && rule.when_key_missing == WhenKeyMissing::Skip {
                buffers.give_back_key(key);
                continue;
            }
            // An override of the key wins; then the request's tier; else the rule's limit.
            let chosen = match (&rule.overrides, &rule.tiers) {
                (Some(overrides), _) if complete && let Some(i) = overrides.find(&key) => i,
                (_, Some(tiers)) => match tiers.select(&mut input) {
                    Selected::Limit(i) => i,
                    Selected::Exempt => {
                        buffers.give_back_key(key);
                        continue;
                    }
                },
                _ => 0,
            };
            let Some(named) = rule.limits.get(chosen) else {
                buffers.give_back_key(key);
                continue;
            };
            applied
                .checks
                .push(rule.check_of(named, key, rule.cost.cost(request)));
            applied.rule_indices.push(index);
            if self.has_global_rules {
                applied.scopes.push(rule.scope);
            }
        }
        buffers.attributes = input.into_buffers();
        Evaluation::Rules(applied)
    }

    /// The `shaping` section: how many requests a VM may hold for delay rules.
    pub fn shaping(&self) -> Shaping {
        self.shaping
    }

    /// Whether any rule holds requests (has a `delay`), so a proxy needs a timer to release
    /// them.
    pub fn holds_requests(&self) -> bool {
        self.rules.iter().any(|rule| rule.max_delay() > 0)
    }

    /// The response for `checks` (from [`Policy::evaluate`]) given the limiter's `verdict`
    /// on them, e.g. from [`Limiter::decide_all`] where there is no shared store.
    pub fn respond(&self, checks: &[Check<'_>], verdict: &Verdict) -> Response<'_> {
        if !self.marks {
            return self.response.render_with(
                checks,
                verdict,
                None,
                |_, _| None,
                &mut RequestBuffers::default(),
            );
        }
        if !self.warns {
            return self.response.render(checks, verdict);
        }
        self.response.render_marking(checks, verdict, &|check| {
            self.rule_of_check(check.rule).and_then(Rule::warn_at)
        })
    }

    /// Evaluates `request`, checks the applying rules with `limiter` over `store` at `now`
    /// (nanoseconds since the Unix epoch), and renders the response: the whole per-request
    /// path, shared by the filter and the test-vector runners.
    pub fn handle<R: Request + ?Sized, S: SlotStore>(
        &self,
        request: &R,
        now: Nanos,
        limiter: &mut Limiter,
        store: &mut S,
    ) -> Handled<'_> {
        self.decide_locally(self.evaluate(request), now, limiter, store)
    }

    /// [`Policy::handle`] with everything per request (checks, keys, verdict, response
    /// headers) built in `buffers`, and the `RateLimit-Policy` items rendered at configure
    /// time: once the buffers are given back ([`RequestBuffers::reclaim`]) and have held a
    /// request of as many rules, the next one allocates nothing.
    pub fn handle_into<R: Request + ?Sized, S: SlotStore>(
        &self,
        request: &R,
        now: Nanos,
        limiter: &mut Limiter,
        store: &mut S,
        buffers: &mut RequestBuffers,
    ) -> Handled<'_> {
        let evaluation = self.evaluate_into(request, buffers);
        self.decide_into(evaluation, now, limiter, store, buffers)
    }

    /// Decides an evaluation's checks locally (every rule in `store`) and renders the
    /// response, in `buffers`.
    pub fn decide_into<'p, S: SlotStore>(
        &'p self,
        evaluation: Evaluation<'p>,
        now: Nanos,
        limiter: &mut Limiter,
        store: &mut S,
        buffers: &mut RequestBuffers,
    ) -> Handled<'p> {
        if evaluation.checks().is_empty() {
            return self.respond_into(evaluation, None, buffers);
        }
        let mut verdict = buffers.verdict();
        limiter.check_into(evaluation.checks(), now, store, &mut verdict);
        self.respond_into(evaluation, Some(verdict), buffers)
    }

    /// The request of `evaluation` (from [`Policy::evaluate_into`]) with `verdict` on its
    /// checks, decided elsewhere (e.g. from leased slices), its response rendered in
    /// `buffers` as [`Policy::decide_into`] renders it; `None` when no rule applies. Take the
    /// verdict's outcomes from [`RequestBuffers::verdict`] to allocate nothing.
    pub fn respond_into<'p>(
        &'p self,
        evaluation: Evaluation<'p>,
        verdict: Option<Verdict>,
        buffers: &mut RequestBuffers,
    ) -> Handled<'p> {
        let checks = evaluation.checks();
        let (verdict, response) = match verdict {
            None => (None, Response::pass()),
            Some(verdict) => {
                let indices = evaluation.rule_indices();
                let item = |i: usize, check: &Check<'_>| {
                    self.rules.get(*indices.get(i)?)?.policy_item(check)
                };
                let warn_at =
                    |check: &Check<'_>| self.rule_of_check(check.rule).and_then(Rule::warn_at);
                let marking: Option<&WarnAt<'_>> = match (self.marks, self.warns) {
                    (false, _) => None,
                    (true, false) => Some(&|_| None),
                    (true, true) => Some(&warn_at),
                };
                let response = self
                    .response
                    .render_with(checks, &verdict, marking, item, buffers);
                (Some(verdict), response)
            }
        };
        Handled {
            evaluation,
            verdict,
            response,
            policy: self,
            unasked: Vec::new(),
            global_failure: false,
        }
    }
}

/// The buffers one request's checks, keys, token payload, verdict and response headers are
/// built in, kept from one request to the next (one per VM or thread), so that a warmed-up
/// request allocates nothing: lend them to [`Policy::handle_into`] (or
/// [`Policy::evaluate_into`]), then give them back with [`RequestBuffers::reclaim`], and a
/// passed request's headers, once added to the response, with
/// [`RequestBuffers::reclaim_headers`].
#[derive(Debug, Default)]
pub struct RequestBuffers {
    /// Always empty: the allocation the next request's checks are built in.
    checks: Vec<Check<'static>>,
    rule_indices: Vec<usize>,
    scopes: Vec<Scope>,
    /// Spare key buffers.
    keys: Vec<Vec<u8>>,
    /// The buffers of attribute values (tiers, conditions) and of a token's decoded payload.
    attributes: (Vec<u8>, Vec<u8>),
    pub(crate) outcomes: Vec<RuleOutcome>,
    /// Spare header lists and header values.
    header_lists: Vec<Vec<(&'static str, String)>>,
    values: Vec<String>,
    /// Spare lists of concurrency slots (see [`crate::concurrency`]).
    pub(crate) slot_lists: crate::concurrency::SlotLists,
    /// Spare lists of held requests' commits (see [`crate::shaping`]).
    pub(crate) held_lists: crate::shaping::HeldLists,
}

impl RequestBuffers {
    /// Empty buffers; they grow to what requests need and stay that size.
    pub fn new() -> RequestBuffers {
        RequestBuffers::default()
    }

    /// An allowed verdict with no outcome yet, in the outcomes' buffer.
    pub fn verdict(&mut self) -> Verdict {
        let mut outcomes = core::mem::take(&mut self.outcomes);
        outcomes.clear();
        Verdict {
            allowed: true,
            outcomes,
        }
    }

    /// Takes back what an evaluation was built in (its checks and keys), for one that is not
    /// decided through [`Policy::decide_into`] or [`Policy::respond_into`].
    pub fn reclaim_evaluation(&mut self, evaluation: Evaluation<'_>) {
        if let Evaluation::Rules(applied) = evaluation {
            let AppliedRules {
                mut checks,
                mut rule_indices,
                mut scopes,
            } = applied;
            for check in checks.drain(..) {
                self.give_back_key(check.key);
            }
            keep_larger(&mut self.checks, relifetime(checks));
            rule_indices.clear();
            keep_larger(&mut self.rule_indices, rule_indices);
            scopes.clear();
            keep_larger(&mut self.scopes, scopes);
        }
    }

    /// Takes back what a request was built in: its checks and keys, its verdict's outcomes
    /// and its response's headers (take out the headers first to keep them longer, and give
    /// them back later with [`RequestBuffers::reclaim_headers`]).
    pub fn reclaim(&mut self, handled: Handled<'_>) {
        let Handled {
            evaluation,
            verdict,
            response,
            ..
        } = handled;
        self.reclaim_evaluation(evaluation);
        if let Some(mut verdict) = verdict {
            verdict.outcomes.clear();
            keep_larger(&mut self.outcomes, verdict.outcomes);
        }
        match response {
            Response::Pass { headers, .. } | Response::Deny { headers, .. } => {
                self.reclaim_headers(headers);
            }
        }
    }

    /// Takes back a response's header list and values once they are sent.
    pub fn reclaim_headers(&mut self, mut headers: Vec<(&'static str, String)>) {
        for (_, value) in headers.drain(..) {
            if value.capacity() > 0 && self.values.len() < MAX_SPARE {
                self.values.push(value);
            }
        }
        if headers.capacity() > 0 && self.header_lists.len() < MAX_SPARE {
            self.header_lists.push(headers);
        }
    }

    /// The checks' buffers, emptied.
    fn applied_rules<'p>(&mut self) -> AppliedRules<'p> {
        let mut rule_indices = core::mem::take(&mut self.rule_indices);
        rule_indices.clear();
        let mut scopes = core::mem::take(&mut self.scopes);
        scopes.clear();
        AppliedRules {
            checks: relifetime(core::mem::take(&mut self.checks)),
            rule_indices,
            scopes,
        }
    }

    /// An empty key buffer, with room for a typical key (an address and a short header).
    fn key(&mut self) -> Vec<u8> {
        match self.keys.pop() {
            Some(mut key) => {
                key.clear();
                key
            }
            None => Vec::with_capacity(32),
        }
    }

    pub(crate) fn give_back_key(&mut self, key: Vec<u8>) {
        if key.capacity() > 0 && self.keys.len() < MAX_SPARE {
            self.keys.push(key);
        }
    }

    /// An empty header list.
    pub(crate) fn header_list(&mut self) -> Vec<(&'static str, String)> {
        self.header_lists.pop().unwrap_or_default()
    }

    /// An empty header value with room for `bytes`.
    pub(crate) fn value(&mut self, bytes: usize) -> String {
        let mut value = self.values.pop().unwrap_or_default();
        value.clear();
        value.reserve(bytes);
        value
    }

    /// Gives back a value that was not used.
    pub(crate) fn give_back_value(&mut self, value: String) {
        if value.capacity() > 0 && self.values.len() < MAX_SPARE {
            self.values.push(value);
        }
    }
}

/// The most spare keys, header lists and header values [`RequestBuffers`] keeps: enough for
/// the requests a VM has in flight at once, and a bound for callers that give back what other
/// paths built (e.g. requests decided with the rate-limit service), so the spares never grow
/// without end.
pub(crate) const MAX_SPARE: usize = 256;

/// Keeps whichever of two emptied buffers has the larger allocation.
fn keep_larger<T>(kept: &mut Vec<T>, other: Vec<T>) {
    if other.capacity() > kept.capacity() {
        *kept = other;
    }
}

/// An emptied vector of checks under another borrow of the policy, in the same allocation:
/// std collects a vector's iterator into a vector of a same-sized element in place, so the
/// buffer outlives the request whose checks borrowed the policy without `unsafe`.
// Not `filter`: the element type changes (its lifetime), which is the point.
#[allow(clippy::unnecessary_filter_map)]
fn relifetime<'a, 'b>(checks: Vec<Check<'a>>) -> Vec<Check<'b>> {
    checks.into_iter().filter_map(|_| None).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_request::TestRequest;
    use sluice_core::memory_store::{MemoryStore, Semantics};
    use sluice_core::{Limiter, Seed};

    /// Giving back what owned requests built (which took nothing from the buffers) keeps at
    /// most `MAX_SPARE` of each spare.
    #[test]
    fn spares_given_back_from_elsewhere_stay_bounded() {
        let policy = Policy::from_json(
            br#"{"response": {"headers": "both"}, "rules": [
                {"name": "a", "key": ["path"], "limit": {"requests": 1000, "period": "1m"}},
                {"name": "b", "key": ["method"], "limit": {"requests": 1000, "period": "1m"}}
            ]}"#,
        )
        .unwrap();
        let mut limiter = Limiter::new(Seed { k0: 1, k1: 2 }, 8);
        let mut store = MemoryStore::new(Semantics::Envoy);
        let mut buffers = RequestBuffers::new();
        for i in 0..(MAX_SPARE as u64 + 10) {
            let request = TestRequest::get("/x");
            let handled = policy.handle(&request, i, &mut limiter, &mut store);
            buffers.reclaim(handled);
        }
        assert_eq!(buffers.keys.len(), MAX_SPARE);
        assert_eq!(buffers.values.len(), MAX_SPARE);
        assert_eq!(buffers.header_lists.len(), MAX_SPARE);
    }
}
