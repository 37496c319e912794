//! What the proxy does with a checked request: pass it with rate-limit headers added to the
//! upstream's response, or answer it locally with the configured denial.
//!
//! # Headers
//!
//! Only enforcing and soft rules that apply to the request are advertised; shadow rules and
//! exempt requests add nothing. Names are lowercase. A soft rule is advertised as an
//! enforcing rule is; over its limit (the request passed uncounted) it reports `r=0` and, as
//! `t`, when the request would have fitted.
//!
//! - `ietf` (draft-ietf-httpapi-ratelimit-headers-10): `RateLimit-Policy` lists every applying
//!   enforcing rule as `"<name>";q=<requests>;w=<period seconds>` (`w` is left out when the
//!   period is not a whole number of seconds: the draft has no sub-second windows).
//!   On a passed request, `RateLimit` lists the same rules' state as
//!   `"<name>";r=<remaining>;t=<seconds>`, one item per rule, in rule order, so a client can
//!   follow each policy (the draft's fields are lists). `t` is "the seconds until additional quota is made available": for a rule that
//!   denies, when the denied request would fit (so it never exceeds `Retry-After`, as the draft
//!   asks); otherwise until the rule's quota is fully back. A rule whose counter store failed
//!   open has no known state and is left out of `RateLimit`.
//! - `legacy`: `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (seconds until
//!   the quota is fully back) of the most restrictive rule: a denying rule (the one with the
//!   longest wait) if any, else the one with the fewest remaining.
//! - `both`, `none`.
//!
//! A concurrency rule (see [`crate::concurrency`]) is advertised as `"<name>";q=<max>` (no
//! `w`: its period is the slots' time to live, not a window) and, on a passed request, as
//! `"<name>";r=<slots left>` without `t`: a slot comes back when some request ends, which no
//! time predicts. Denying, it says `t=1` and `Retry-After: 1` (or less time, rounded up to a
//! second, when its oldest slot expires sooner). The legacy `X-RateLimit-Reset` of a
//! concurrency rule is the time until every slot held would have expired if none were
//! released.
//!
//! Every denial has `Retry-After` (delta-seconds, rounded up, at least 1): the longest wait
//! among the denying rules, whatever the style. A rule that failed closed says 1 second.
//! Seconds are always rounded up, so a client that waits as told is never early.
//!
//! A passed request that a soft limit marks (see [`crate::warning`]) also carries the
//! warning header, which the proxy adds to the response and to the request to the upstream.
//!
//! On a denial, `RateLimit` and the legacy headers report only the rules that denied: the
//! request spent nothing from the others (all or nothing), and what the limiter worked out for
//! them describes a spend that did not happen. Their state shows on the next passed request.

use alloc::string::String;
use alloc::vec::Vec;
use serde_json::Value;
use sluice_core::table::push_decimal;
use sluice_core::time::{NANOS_PER_SEC, ceil_secs};
use sluice_core::{Algorithm, Check, Limit, Mode, RuleOutcome, Status, Verdict};

use crate::error::{ConfigError, Problem};
use crate::json::{self, Fields};
use crate::policy::RequestBuffers;
use crate::warning::{self, DEFAULT_WARNING_HEADER, Warning};

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// `RateLimit`.
pub const RATELIMIT: &str = "ratelimit";
/// `X-RateLimit-Limit`.
pub const X_RATELIMIT_LIMIT: &str = "x-ratelimit-limit";
/// `X-RateLimit-Remaining`.
pub const X_RATELIMIT_REMAINING: &str = "x-ratelimit-remaining";
/// `X-RateLimit-Reset`.
pub const X_RATELIMIT_RESET: &str = "x-ratelimit-reset";
/// `Retry-After`.
pub const RETRY_AFTER: &str = "retry-after";

/// Which rate-limit headers responses carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderStyle {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10).
    #[default]
    Ietf,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.
    Legacy,
    /// Both sets.
    Both,
    /// None (denials still carry `Retry-After`).
    None,
}

impl HeaderStyle {
    const NAMES: &'static [&'static str] = &["ietf", "legacy", "both", "none"];
    const VALUES: &'static [HeaderStyle] = &[
        HeaderStyle::Ietf,
        HeaderStyle::Legacy,
        HeaderStyle::Both,
        HeaderStyle::None,
    ];

    fn ietf(self) -> bool {
        matches!(self, HeaderStyle::Ietf | HeaderStyle::Both)
    }

    fn legacy(self) -> bool {
        matches!(self, HeaderStyle::Legacy | HeaderStyle::Both)
    }
}

/// The compiled `response` section: the denial and the header style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseConfig {
    status: u16,
    body: String,
    content_type: String,
    headers: HeaderStyle,
    warning_header: String,
}

/// The default denial status: 429 Too Many Requests.
pub const DEFAULT_STATUS: u16 = 429;
/// The default denial body.
pub const DEFAULT_BODY: &str = "rate limit exceeded\n";
/// The default denial content type.
pub const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

impl Default for ResponseConfig {
    fn default() -> ResponseConfig {
        ResponseConfig {
            status: DEFAULT_STATUS,
            body: String::from(DEFAULT_BODY),
            content_type: String::from(DEFAULT_CONTENT_TYPE),
            headers: HeaderStyle::default(),
            warning_header: String::from(DEFAULT_WARNING_HEADER),
        }
    }
}

impl ResponseConfig {
    /// Parses a `response` section.
    pub(crate) fn parse(value: &Value, path: &str) -> Result<ResponseConfig, ConfigError> {
        let fields = Fields::open(
            value,
            path,
            &[
                "status",
                "body",
                "content_type",
                "headers",
                "warning_header",
            ],
        )?;
        let mut config = ResponseConfig::default();
        if let Some(v) = fields.get("status") {
            let status = json::integer(
                v,
                &fields.path("status"),
                400,
                599,
                "a denial is a client or server error; 429 Too Many Requests is the standard \
                 status, 503 Service Unavailable the usual alternative",
            )?;
            config.status = u16::try_from(status).unwrap_or(DEFAULT_STATUS);
        }
        if let Some(v) = fields.get("body") {
            config.body = String::from(json::string(v, &fields.path("body"))?);
        }
        if let Some(v) = fields.get("content_type") {
            let type_path = fields.path("content_type");
            let content_type = json::non_empty_string(v, &type_path)?;
            json::header_value(content_type, &type_path)?;
            config.content_type = String::from(content_type);
        }
        if let Some(v) = fields.get("headers") {
            config.headers = json::variant(
                v,
                &fields.path("headers"),
                HeaderStyle::NAMES,
                HeaderStyle::VALUES,
            )?;
        }
        if let Some(v) = fields.get("warning_header") {
            let header_path = fields.path("warning_header");
            let name = crate::key::field_name(v, &header_path)?;
            if RESERVED.contains(&name.as_str()) {
                return Err(ConfigError::new(
                    header_path,
                    Problem::WarningHeaderReserved { name },
                ));
            }
            config.warning_header = name;
        }
        Ok(config)
    }

    /// The denial's status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The denial's body.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The denial's `Content-Type`.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// Which rate-limit headers responses carry.
    pub fn header_style(&self) -> HeaderStyle {
        self.headers
    }

    /// The name of the header that marks requests a soft limit passed
    /// (`response.warning_header`, lowercase).
    pub fn warning_header(&self) -> &str {
        &self.warning_header
    }

    /// The response for a request whose `checks` got `verdict` (see the module docs), with no
    /// `warn_at` threshold on any rule (soft rules still mark).
    pub fn render(&self, checks: &[Check<'_>], verdict: &Verdict) -> Response<'_> {
        self.render_with(
            checks,
            verdict,
            Some(&|_| None),
            |_, _| None,
            &mut RequestBuffers::default(),
        )
    }

    /// The response for a request whose `checks` got `verdict`; `warn_at` gives each check's
    /// rule's `warn_at.remaining`, if it has one.
    pub fn render_marking(
        &self,
        checks: &[Check<'_>],
        verdict: &Verdict,
        warn_at: &WarnAt<'_>,
    ) -> Response<'_> {
        self.render_with(
            checks,
            verdict,
            Some(warn_at),
            |_, _| None,
            &mut RequestBuffers::default(),
        )
    }

    /// The response, into header lists and values from `buffers`. `marking` is `None` when
    /// no rule can mark (the warning is not looked for at all), else each check's rule's
    /// `warn_at.remaining`; `policy_item(i, check)` is the `RateLimit-Policy` item of
    /// `checks[i]` if it was rendered ahead ([`policy_item`] otherwise). Numbers are written
    /// without `core::fmt`, which costs several times the digits.
    pub(crate) fn render_with<'c>(
        &self,
        checks: &[Check<'c>],
        verdict: &Verdict,
        marking: Option<&WarnAt<'_>>,
        policy_item: impl Fn(usize, &Check<'c>) -> Option<&'c str>,
        buffers: &mut RequestBuffers,
    ) -> Response<'_> {
        let request_denied = !verdict.allowed;
        let advertised = || {
            checks
                .iter()
                .zip(verdict.outcomes.iter())
                .enumerate()
                .filter(|(_, (check, _))| check.mode != Mode::Shadow)
        };
        let reports = || {
            advertised()
                .filter_map(move |(_, (check, outcome))| report(check, outcome, request_denied))
        };
        let mut headers = buffers.header_list();
        // Sized for the usual one or two headers of a few rules, so rendering does not regrow.
        headers.reserve(4);

        if self.headers.ietf() {
            let mut policy = buffers.value(64 * checks.len());
            for (i, (check, _)) in advertised() {
                list_separator(&mut policy);
                match policy_item(i, check) {
                    Some(item) => policy.push_str(item),
                    None => push_policy_item(&mut policy, check.rule, &check.limit),
                }
            }
            let mut state = buffers.value(64 * checks.len());
            for report in reports() {
                list_separator(&mut state);
                state.push('"');
                state.push_str(report.rule);
                state.push_str("\";r=");
                push_decimal(&mut state, report.remaining);
                if let Some(t) = report.t {
                    state.push_str(";t=");
                    push_decimal(&mut state, t);
                }
            }
            for (name, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
                if value.is_empty() {
                    buffers.give_back_value(value);
                } else {
                    headers.push((name, value));
                }
            }
        }

        if self.headers.legacy()
            && let Some(tightest) = reports().reduce(|best, next| {
                let tighter = match (best.denying, next.denying) {
                    (true, true) => next.retry_after > best.retry_after,
                    (false, true) => true,
                    (true, false) => false,
                    (false, false) => next.remaining < best.remaining,
                };
                if tighter { next } else { best }
            })
        {
            for (name, n) in [
                (X_RATELIMIT_LIMIT, tightest.limit),
                (X_RATELIMIT_REMAINING, tightest.remaining),
                (X_RATELIMIT_RESET, tightest.reset),
            ] {
                headers.push((name, number(n, buffers)));
            }
        }

        if !request_denied {
            let warning = marking
                .and_then(|warn_at| warning::value(checks, verdict, warn_at))
                .map(|value| Warning {
                    name: &self.warning_header,
                    value,
                });
            return Response::Pass { headers, warning };
        }
        let wait = verdict
            .outcomes
            .iter()
            .filter(|o| matches!(o.status, Status::Denied | Status::FailedClosed))
            .map(|o| o.decision.retry_after)
            .max()
            .unwrap_or(0);
        headers.push((RETRY_AFTER, number(ceil_secs(wait).max(1), buffers)));
        Response::Deny {
            status: self.status,
            body: &self.body,
            content_type: &self.content_type,
            headers,
        }
    }
}

/// The `RateLimit-Policy` item of the limit named `name`: `"<name>";q=<requests>`, and
/// `;w=<period seconds>` when the period is whole seconds.
pub(crate) fn policy_item(name: &str, limit: &Limit) -> String {
    let mut item = String::new();
    push_policy_item(&mut item, name, limit);
    item
}

fn push_policy_item(out: &mut String, name: &str, limit: &Limit) {
    let quota = limit.quota;
    out.push('"');
    out.push_str(name);
    out.push_str("\";q=");
    push_decimal(out, quota.limit());
    // A concurrency rule's period is its slots' time to live, not a window.
    if limit.algorithm != Algorithm::Concurrency && quota.period().is_multiple_of(NANOS_PER_SEC) {
        out.push_str(";w=");
        push_decimal(out, quota.period() / NANOS_PER_SEC);
    }
}

/// One rule's state as advertised.
struct Report<'a> {
    rule: &'a str,
    limit: u64,
    remaining: u64,
    /// Seconds for `RateLimit`'s `t`; none for a concurrency rule that allows (its slots come
    /// back when requests end, which no time predicts).
    t: Option<u64>,
    /// Seconds until the quota is fully back.
    reset: u64,
    denying: bool,
    retry_after: u64,
}

fn report<'a>(
    check: &Check<'a>,
    outcome: &RuleOutcome,
    request_denied: bool,
) -> Option<Report<'a>> {
    let decision = &outcome.decision;
    let denying = match outcome.status {
        Status::Denied | Status::FailedClosed => true,
        // Allowed (or over a soft limit), but another rule denied the request: nothing was
        // spent here.
        Status::Allowed | Status::ShadowDenied if request_denied => return None,
        Status::Allowed => false,
        // A soft rule over its limit: the request passed uncounted; reported as spent, with
        // `t` saying when such a request fits again.
        Status::ShadowDenied if outcome.store_error.is_none() && check.mode == Mode::Soft => false,
        // Failed open: the counter could not be read or written, so its state is unknown.
        // Shadow rules do not reach here (they are not advertised).
        Status::FailedOpen | Status::ShadowDenied => return None,
    };
    let exceeded = outcome.status == Status::ShadowDenied;
    let reset = ceil_secs(decision.reset_after);
    Some(Report {
        rule: check.rule,
        limit: check.limit.quota.limit(),
        remaining: if denying || exceeded {
            0
        } else {
            decision.remaining
        },
        t: if denying || exceeded {
            Some(ceil_secs(decision.retry_after))
        } else if check.limit.algorithm == Algorithm::Concurrency {
            None
        } else {
            Some(reset)
        },
        reset,
        denying,
        retry_after: decision.retry_after,
    })
}

fn list_separator(list: &mut String) {
    if !list.is_empty() {
        list.push_str(", ");
    }
}

fn number(n: u64, buffers: &mut RequestBuffers) -> String {
    let mut text = buffers.value(20);
    push_decimal(&mut text, n);
    text
}

/// Each check's rule's `warn_at.remaining`, if it has one.
pub type WarnAt<'a> = dyn Fn(&Check<'_>) -> Option<u64> + 'a;

/// Header names sluice sets itself, which `response.warning_header` may not take.
const RESERVED: &[&str] = &[
    RATELIMIT_POLICY,
    RATELIMIT,
    X_RATELIMIT_LIMIT,
    X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
    RETRY_AFTER,
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
];

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'p> {
    /// Forward the request; add `headers` to the upstream's response.
    Pass {
        /// Rate-limit headers (lowercase names), possibly none.
        headers: Vec<(&'static str, String)>,
        /// Set when a soft limit marks the request: add it to the request to the upstream
        /// and to the upstream's response.
        warning: Option<Warning<'p>>,
    },
    /// Answer locally with this response instead of forwarding.
    Deny {
        /// The status code.
        status: u16,
        /// The body.
        body: &'p str,
        /// The body's `Content-Type`.
        content_type: &'p str,
        /// Rate-limit headers and `Retry-After` (lowercase names).
        headers: Vec<(&'static str, String)>,
    },
}

impl Response<'_> {
    /// A pass with no headers (exempt requests, requests no rule applies to).
    pub fn pass() -> Response<'static> {
        Response::Pass {
            headers: Vec::new(),
            warning: None,
        }
    }

    /// The mark a soft limit put on a passed request, if any.
    pub fn warning(&self) -> Option<&Warning<'_>> {
        match self {
            Response::Pass { warning, .. } => warning.as_ref(),
            Response::Deny { .. } => None,
        }
    }

    /// The rate-limit headers to add, whichever the variant (the warning header is apart:
    /// [`Response::warning`]).
    pub fn headers(&self) -> &[(&'static str, String)] {
        match self {
            Response::Pass { headers, .. } | Response::Deny { headers, .. } => headers,
        }
    }

    /// The value of header `name` (lowercase), if the response has it (the warning header
    /// included).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| {
                self.warning()
                    .filter(|w| w.name == name)
                    .map(|w| w.value.as_str())
            })
    }

    /// Whether the request is denied.
    pub fn is_deny(&self) -> bool {
        matches!(self, Response::Deny { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use serde_json::json;
    use sluice_core::{Algorithm, Decision, FailureMode, Limit, Quota};

    const S: u64 = NANOS_PER_SEC;

    fn check(rule: &'static str, requests: u64, period: u64, mode: Mode) -> Check<'static> {
        Check {
            rule,
            limit: Limit::new(
                Algorithm::FixedWindow,
                Quota::new(requests, period, requests).unwrap(),
            ),
            max_keys: 16,
            key: vec![],
            cost: 1,
            mode,
            failure_mode: FailureMode::Open,
        }
    }

    fn outcome(status: Status, limit: u64, remaining: u64, reset: u64, retry: u64) -> RuleOutcome {
        RuleOutcome {
            status,
            decision: Decision {
                allowed: matches!(status, Status::Allowed | Status::FailedOpen),
                limit,
                remaining,
                reset_after: reset,
                retry_after: retry,
                delay: 0,
            },
            cas_retries: 0,
            store_error: None,
        }
    }

    fn config(style: &str) -> ResponseConfig {
        ResponseConfig::parse(&json!({"headers": style}), "response").unwrap()
    }

    fn verdict(outcomes: Vec<RuleOutcome>) -> Verdict {
        let allowed = !outcomes
            .iter()
            .any(|o| matches!(o.status, Status::Denied | Status::FailedClosed));
        Verdict { allowed, outcomes }
    }

    #[test]
    fn ietf_headers_list_every_enforcing_rule() {
        let checks = [
            check("per-client", 100, 60 * S, Mode::Enforce),
            check("daily", 5000, 86_400 * S, Mode::Enforce),
        ];
        let v = verdict(vec![
            outcome(Status::Allowed, 100, 42, 29 * S + 1, 0),
            outcome(Status::Allowed, 5000, 4000, 3600 * S, 0),
        ]);
        let c = config("ietf");
        let r = c.render(&checks, &v);
        assert!(!r.is_deny());
        assert_eq!(
            r.header("ratelimit-policy"),
            Some("\"per-client\";q=100;w=60, \"daily\";q=5000;w=86400")
        );
        assert_eq!(
            r.header("ratelimit"),
            Some("\"per-client\";r=42;t=30, \"daily\";r=4000;t=3600")
        );
        assert_eq!(r.header("x-ratelimit-limit"), None);
        assert_eq!(r.header("retry-after"), None);
    }

    #[test]
    fn sub_second_windows_have_no_w() {
        let checks = [check("burst", 5, 500_000_000, Mode::Enforce)];
        let v = verdict(vec![outcome(Status::Allowed, 5, 4, 500_000_000, 0)]);
        let c = config("ietf");
        let r = c.render(&checks, &v);
        assert_eq!(r.header("ratelimit-policy"), Some("\"burst\";q=5"));
        assert_eq!(r.header("ratelimit"), Some("\"burst\";r=4;t=1"));
    }

    #[test]
    fn legacy_headers_come_from_the_rule_with_fewest_remaining() {
        let checks = [
            check("a", 100, 60 * S, Mode::Enforce),
            check("b", 10, 60 * S, Mode::Enforce),
            check("c", 10, 60 * S, Mode::Enforce),
        ];
        let v = verdict(vec![
            outcome(Status::Allowed, 100, 50, 10 * S, 0),
            outcome(Status::Allowed, 10, 3, 20 * S, 0),
            outcome(Status::Allowed, 10, 3, 40 * S, 0),
        ]);
        let c = config("legacy");
        let r = c.render(&checks, &v);
        assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some("3"));
        // Ties go to the first rule.
        assert_eq!(r.header("x-ratelimit-reset"), Some("20"));
        assert_eq!(r.header("ratelimit"), None);
    }

    #[test]
    fn a_denial_reports_the_denying_rule_with_the_longest_wait() {
        let checks = [
            check("a", 100, 60 * S, Mode::Enforce),
            check("b", 10, 60 * S, Mode::Enforce),
            check("c", 5, 3600 * S, Mode::Enforce),
        ];
        let v = verdict(vec![
            outcome(Status::Allowed, 100, 0, 10 * S, 0),
            outcome(Status::Denied, 10, 0, 20 * S, 20 * S),
            outcome(Status::Denied, 5, 0, 1800 * S, 1500 * S + 1),
        ]);
        let c = config("both");
        let r = c.render(&checks, &v);
        let Response::Deny {
            status,
            body,
            content_type,
            ..
        } = &r
        else {
            panic!("expected a denial");
        };
        assert_eq!(
            (*status, *body, *content_type),
            (429, DEFAULT_BODY, DEFAULT_CONTENT_TYPE)
        );
        assert_eq!(r.header("retry-after"), Some("1501"));
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(r.header("x-ratelimit-reset"), Some("1800"));
        // Only the denying rules: the allowing one spent nothing and keeps its last state.
        assert_eq!(
            r.header("ratelimit"),
            Some("\"b\";r=0;t=20, \"c\";r=0;t=1501")
        );
        assert_eq!(
            r.header("ratelimit-policy"),
            Some("\"a\";q=100;w=60, \"b\";q=10;w=60, \"c\";q=5;w=3600")
        );
    }

    #[test]
    fn shadow_rules_add_no_headers() {
        let checks = [check("watch", 1, 60 * S, Mode::Shadow)];
        let v = verdict(vec![outcome(Status::ShadowDenied, 1, 0, 60 * S, 60 * S)]);
        let c = config("both");
        let r = c.render(&checks, &v);
        assert_eq!(r, Response::pass());
    }

    #[test]
    fn failing_open_leaves_the_rule_out_of_the_state_headers() {
        let checks = [check("a", 10, 60 * S, Mode::Enforce)];
        let v = verdict(vec![outcome(Status::FailedOpen, 10, 0, 0, 0)]);
        let c = config("both");
        let r = c.render(&checks, &v);
        assert_eq!(r.header("ratelimit-policy"), Some("\"a\";q=10;w=60"));
        assert_eq!(r.header("ratelimit"), None);
        assert_eq!(r.header("x-ratelimit-remaining"), None);
        assert!(!r.is_deny());
    }

    #[test]
    fn failing_closed_denies_with_retry_after_one() {
        let checks = [check("a", 10, 60 * S, Mode::Enforce)];
        let v = verdict(vec![outcome(Status::FailedClosed, 10, 0, S, S)]);
        let c = config("none");
        let r = c.render(&checks, &v);
        assert!(r.is_deny());
        assert_eq!(r.headers(), &[("retry-after", String::from("1"))]);
    }

    #[test]
    fn retry_after_is_rounded_up_and_at_least_one() {
        let checks = [check("a", 10, 60 * S, Mode::Enforce)];
        for (retry, expected) in [(1, "1"), (S, "1"), (S + 1, "2"), (0, "1")] {
            let v = verdict(vec![outcome(Status::Denied, 10, 0, retry, retry)]);
            let c = config("none");
            let r = c.render(&checks, &v);
            assert_eq!(r.header("retry-after"), Some(expected), "{retry}");
        }
    }

    #[test]
    fn the_response_section_is_validated() {
        let cases = [
            (json!({"status": 200}), "response.status", "400 to 599"),
            (
                json!({"status": "429"}),
                "response.status",
                "expected a whole number",
            ),
            (
                json!({"headers": "draft"}),
                "response.headers",
                "ietf, legacy, both or none",
            ),
            (
                json!({"content_type": "text/plain\r\nx: y"}),
                "response.content_type",
                "HTTP header",
            ),
            (
                json!({"content_type": ""}),
                "response.content_type",
                "must not be empty",
            ),
            (json!({"bdy": ""}), "response.bdy", "unknown field"),
        ];
        for (value, path, message) in cases {
            let err = ResponseConfig::parse(&value, "response").unwrap_err();
            assert_eq!(err.path(), path, "{value}");
            assert!(err.to_string().contains(message), "{value}: {err}");
        }
        let custom = ResponseConfig::parse(
            &json!({"status": 503, "body": "{}", "content_type": "application/json"}),
            "response",
        )
        .unwrap();
        assert_eq!(
            (custom.status(), custom.body(), custom.content_type()),
            (503, "{}", "application/json")
        );
        assert_eq!(custom.header_style(), HeaderStyle::Ietf);
    }
}
