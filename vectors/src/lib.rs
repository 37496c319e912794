//! The shared test vectors of `vectors/` (format: `vectors/README.md`), parsed strictly, and
//! the comparison of a rendered response with a step's expectation: one reader for every
//! runner written in Rust (the policy's native runner, the service's global-path runner).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sluice_policy::{OwnedRequest, Policy, Response};

/// `at_ms: 0`: 2026-01-01T00:00:00Z, a day boundary, so windows of a day or less start there.
pub const EPOCH_NS: u64 = 1_767_225_600_000_000_000;

/// The vectors directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Every vector file, sorted by name.
pub fn files() -> Vec<PathBuf> {
    let dir = dir();
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the vectors directory {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

/// A file's name, for messages.
pub fn name(file: &Path) -> String {
    file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

impl Step {
    /// When the step is handled, in nanoseconds since the Unix epoch.
    pub fn now(&self) -> Result<u64, String> {
        at_ns(self.at_ms)
    }
}

fn at_ns(at_ms: u64) -> Result<u64, String> {
    at_ms
        .checked_mul(1_000_000)
        .and_then(|ns| ns.checked_add(EPOCH_NS))
        .ok_or_else(|| format!("at_ms {at_ms} is too large"))
}

/// A parsed vector file.
#[derive(Debug, Clone)]
pub struct Vector {
    /// The configuration, as JSON bytes.
    pub config: Vec<u8>,
    /// The request steps, in order.
    pub steps: Vec<Step>,
    /// The end steps (streams held in flight ended later), in order; each runs just before
    /// the request step it precedes in the file.
    pub ends: Vec<End>,
}

impl Vector {
    /// The end steps that run just before request step `index` (`index == steps.len()`:
    /// after the last one).
    pub fn ends_before(&self, index: usize) -> impl Iterator<Item = &End> {
        self.ends.iter().filter(move |end| end.before_step == index)
    }
}

/// An end step: a stream held in flight (`hold_upstream`) ends (see `vectors/README.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// Milliseconds after [`EPOCH_NS`].
    pub at_ms: u64,
    /// The `id` of the request step whose stream ends.
    pub id: String,
    /// How it ends.
    pub how: EndHow,
    /// The index in [`Vector::steps`] of the request step it runs before.
    pub before_step: usize,
}

impl End {
    /// When the stream ends, in nanoseconds since the Unix epoch.
    pub fn now(&self) -> Result<u64, String> {
        at_ns(self.at_ms)
    }
}

/// How a held stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndHow {
    /// The upstream answers (200, no headers of its own) and the response reaches the client.
    Response,
    /// The upstream resets the stream: no response.
    Reset,
    /// The client goes away before the upstream answers.
    ClientClosed,
}

/// One step (see `vectors/README.md`).
#[derive(Debug, Clone)]
pub struct Step {
    /// Milliseconds after [`EPOCH_NS`].
    pub at_ms: u64,
    /// The request.
    pub request: OwnedRequest,
    /// How many times it is sent at `at_ms`.
    pub repeat: u64,
    /// Whether every counter-store call fails while it is handled.
    pub store_fails: bool,
    /// The name an end step uses for the stream, when it is held in flight.
    pub id: Option<String>,
    /// Whether the upstream holds its response until an end step names the stream (else the
    /// stream ends as soon as the upstream has the request).
    pub hold_upstream: bool,
    /// What must come back.
    pub expect: Expect,
}

/// What a step must get back.
#[derive(Debug, Clone)]
pub struct Expect {
    /// 200 (passed upstream) or the local response's status.
    pub status: u16,
    /// Headers with exactly these values.
    pub headers: Vec<(String, String)>,
    /// Headers that must not be there.
    pub absent: Vec<String>,
    /// The local response's body.
    pub body: Option<String>,
    /// Headers the request to the upstream must carry, with exactly these values (only on
    /// passed steps).
    pub upstream_headers: Vec<(String, String)>,
    /// Header names the request to the upstream must not carry (only on passed steps).
    pub upstream_absent: Vec<String>,
    /// How long the request was held before it went upstream, in milliseconds (0: at once).
    pub held_ms: u64,
}

impl Expect {
    /// Whether the step says anything about the request the upstream receives.
    pub fn checks_upstream(&self) -> bool {
        !self.upstream_headers.is_empty() || !self.upstream_absent.is_empty()
    }
}

/// The headers the upstream receives for `request` when `policy` answered `response`, as the
/// filter and the worker send them: the request's own, except the warning header when a rule
/// can mark (the upstream only ever sees sluice's mark), then the warning header of a marked
/// request. Runners without a real upstream compare these with [`compare_upstream`].
pub fn upstream_headers(
    policy: &Policy,
    request: &OwnedRequest,
    response: &Response<'_>,
) -> Vec<(String, String)> {
    let warning_header = policy.response().warning_header();
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| !(policy.marks_requests() && name == warning_header))
        .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
        .collect();
    if let Some(warning) = response.warning() {
        headers.push((warning.name.to_owned(), warning.value.clone()));
    }
    headers
}

/// Every way the headers the upstream received (`headers`, names lowercase, in order)
/// differ from `expect.upstream_headers` and `expect.upstream_absent`; empty if they match.
/// A header sent twice must have the expected value in each line.
pub fn compare_upstream(headers: &[(String, String)], expect: &Expect) -> Vec<String> {
    let mut differences = Vec::new();
    for (name, value) in &expect.upstream_headers {
        let lines: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        match lines.as_slice() {
            [] => differences.push(format!(
                "upstream {name}: expected {value:?}, but the upstream's request has none"
            )),
            [one] if one == value => {}
            other => differences.push(format!(
                "upstream {name}: expected {value:?}, got {other:?}"
            )),
        }
    }
    for name in &expect.upstream_absent {
        if let Some((_, v)) = headers.iter().find(|(n, _)| n == name) {
            differences.push(format!("upstream {name}: expected absent, got {v:?}"));
        }
    }
    if !differences.is_empty() {
        let all: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        differences.push(format!(
            "(all upstream request headers: {})",
            all.join(" | ")
        ));
    }
    differences
}

/// Whether a vector needs requests to be held (a rule with a `delay`, or a step expecting
/// `held_ms`): such rules are local only, so the global path and lease runner leave these
/// vectors out.
pub fn holds_requests(vector: &Vector) -> bool {
    vector.steps.iter().any(|step| step.expect.held_ms > 0)
        || sluice_policy::Policy::from_json(&vector.config).is_ok_and(|p| p.holds_requests())
}

/// Whether a vector has a concurrency rule (or ends held streams): its slots are released
/// when streams end, which the rate-limit service never hears of, so the global path and
/// lease runners leave these vectors out.
pub fn has_concurrency_rules(vector: &Vector) -> bool {
    !vector.ends.is_empty()
        || vector.steps.iter().any(|step| step.hold_upstream)
        || sluice_policy::Policy::from_json(&vector.config).is_ok_and(|p| p.has_concurrency_rules())
}

/// How a measured hold differs from `expect.held_ms`, if it does: `held_ns` must be at least
/// the expected hold and at most `tolerance_ns` longer (0 for runners that compute the hold
/// rather than wait it out).
pub fn held_difference(held_ns: u64, expect: &Expect, tolerance_ns: u64) -> Option<String> {
    let expected = expect.held_ms.saturating_mul(1_000_000);
    if held_ns >= expected && held_ns - expected <= tolerance_ns {
        return None;
    }
    Some(format!(
        "held: expected {} ms (tolerance +{} ms), got {}.{:06} ms",
        expect.held_ms,
        tolerance_ns as f64 / 1e6,
        held_ns / 1_000_000,
        held_ns % 1_000_000
    ))
}

/// Every way `response` differs from `expect`; empty if it matches.
pub fn compare(response: &Response<'_>, expect: &Expect) -> Vec<String> {
    let (status, mut headers, body) = match response {
        Response::Pass { headers, warning } => {
            let mut headers: Vec<(&str, String)> = headers.clone();
            if let Some(warning) = warning {
                headers.push((warning.name, warning.value.clone()));
            }
            (200, headers, None)
        }
        Response::Deny {
            status,
            body,
            content_type,
            headers,
        } => {
            let mut headers: Vec<(&str, String)> = headers.clone();
            headers.push(("content-type", (*content_type).to_owned()));
            (*status, headers, Some(*body))
        }
    };
    headers.sort();
    let actual = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut differences = Vec::new();
    if status != expect.status {
        differences.push(format!("status: expected {}, got {status}", expect.status));
    }
    for (name, value) in &expect.headers {
        match actual(name) {
            Some(v) if v == value => {}
            Some(v) => differences.push(format!("{name}: expected {value:?}, got {v:?}")),
            None => differences.push(format!("{name}: expected {value:?}, but it is absent")),
        }
    }
    for name in &expect.absent {
        if let Some(v) = actual(name) {
            differences.push(format!("{name}: expected absent, got {v:?}"));
        }
    }
    if let Some(expected) = &expect.body {
        match body {
            Some(b) if b == expected => {}
            Some(b) => differences.push(format!("body: expected {expected:?}, got {b:?}")),
            None => differences.push(format!(
                "body: expected the local response {expected:?}, but the request was passed"
            )),
        }
    }
    if !differences.is_empty() {
        let all: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        differences.push(format!("(all headers: {})", all.join(" | ")));
    }
    differences
}

// Parsing: strict, so a typo in a vector is an error rather than a silently skipped check.

pub fn load(path: &Path) -> Result<Vector, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))?;
    parse_vector(&value)
}

fn object<'v>(
    value: &'v Value,
    at: &str,
    allowed: &[&str],
) -> Result<&'v Map<String, Value>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{at}: expected an object"))?;
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "{at}: unknown field {unknown:?} (allowed: {})",
            allowed.join(", ")
        ));
    }
    Ok(map)
}

fn string(map: &Map<String, Value>, field: &str, at: &str) -> Result<String, String> {
    map.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("{at}.{field}: expected a string"))
}

fn parse_vector(value: &Value) -> Result<Vector, String> {
    let map = object(value, "vector", &["description", "config", "steps"])?;
    let description = string(map, "description", "vector")?;
    if description.trim().is_empty() {
        return Err("description: say what the vector proves".to_owned());
    }
    let config = map.get("config").ok_or("config: required")?;
    let items = map
        .get("steps")
        .and_then(Value::as_array)
        .filter(|steps| !steps.is_empty())
        .ok_or("steps: expected a non-empty list")?;
    let mut steps: Vec<Step> = Vec::new();
    let mut ends: Vec<End> = Vec::new();
    let mut last_ms = 0;
    for (i, item) in items.iter().enumerate() {
        let at = format!("steps[{i}]");
        let at_ms = if item.get("end").is_some() {
            let end = parse_end(item, &at, steps.len())?;
            let held = steps
                .iter()
                .any(|step| step.id.as_deref() == Some(end.id.as_str()));
            if !held {
                return Err(format!(
                    "{at}.end: no earlier step has \"id\": {:?}",
                    end.id
                ));
            }
            if ends.iter().any(|e| e.id == end.id) {
                return Err(format!("{at}.end: {:?} has ended already", end.id));
            }
            let at_ms = end.at_ms;
            ends.push(end);
            at_ms
        } else {
            let step = parse_step(item, &at)?;
            if let Some(id) = &step.id
                && steps.iter().any(|s| s.id.as_ref() == Some(id))
            {
                return Err(format!("{at}.id: {id:?} is used by an earlier step"));
            }
            let at_ms = step.at_ms;
            steps.push(step);
            at_ms
        };
        if at_ms < last_ms {
            return Err(format!("{at}.at_ms: steps never go back in time"));
        }
        last_ms = at_ms;
    }
    if steps.is_empty() {
        return Err("steps: expected at least one request step".to_owned());
    }
    Ok(Vector {
        config: config.to_string().into_bytes(),
        steps,
        ends,
    })
}

fn parse_end(value: &Value, at: &str, before_step: usize) -> Result<End, String> {
    let map = object(value, at, &["at_ms", "note", "end", "how"])?;
    if map.get("note").is_some_and(|note| !note.is_string()) {
        return Err(format!("{at}.note: expected a string"));
    }
    let at_ms = map
        .get("at_ms")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{at}.at_ms: expected a whole number"))?;
    let how = match string(map, "how", at)?.as_str() {
        "response" => EndHow::Response,
        "reset" => EndHow::Reset,
        "client_closed" => EndHow::ClientClosed,
        other => {
            return Err(format!(
                "{at}.how: {other:?} is not response, reset or client_closed"
            ));
        }
    };
    Ok(End {
        at_ms,
        id: string(map, "end", at)?,
        how,
        before_step,
    })
}

fn parse_step(value: &Value, at: &str) -> Result<Step, String> {
    let map = object(
        value,
        at,
        &[
            "at_ms",
            "note",
            "request",
            "repeat",
            "store_fails",
            "expect",
            "id",
            "hold_upstream",
        ],
    )?;
    if map.get("note").is_some_and(|note| !note.is_string()) {
        return Err(format!("{at}.note: expected a string"));
    }
    let at_ms = map
        .get("at_ms")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{at}.at_ms: expected a whole number"))?;
    let repeat = match map.get("repeat") {
        None => 1,
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{at}.repeat: expected a whole number of at least 1"))?,
    };
    let store_fails = match map.get("store_fails") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| format!("{at}.store_fails: expected true or false"))?,
    };
    let hold_upstream = match map.get("hold_upstream") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| format!("{at}.hold_upstream: expected true or false"))?,
    };
    let id = match map.get("id") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .filter(|id| !id.is_empty())
                .ok_or_else(|| format!("{at}.id: expected a non-empty string"))?
                .to_owned(),
        ),
    };
    if hold_upstream != id.is_some() {
        return Err(format!(
            "{at}: a step held in flight has both \"hold_upstream\": true and an \"id\" for \
             its end step"
        ));
    }
    let request = parse_request(
        map.get("request")
            .ok_or_else(|| format!("{at}.request: required"))?,
        &format!("{at}.request"),
    )?;
    let expect = parse_expect(
        map.get("expect")
            .ok_or_else(|| format!("{at}.expect: required"))?,
        &format!("{at}.expect"),
    )?;
    if hold_upstream && (repeat != 1 || expect.status != 200 || expect.held_ms > 0) {
        return Err(format!(
            "{at}: a step held in flight is one request (no repeat) that reaches the upstream \
             (status 200) at once (no held_ms)"
        ));
    }
    Ok(Step {
        at_ms,
        request,
        repeat,
        store_fails,
        id,
        hold_upstream,
        expect,
    })
}

fn parse_request(value: &Value, at: &str) -> Result<OwnedRequest, String> {
    let map = object(
        value,
        at,
        &["method", "path", "authority", "peer", "headers"],
    )?;
    let peer = match map.get("peer") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| format!("{at}.peer: expected a string"))?
                .to_owned(),
        ),
    };
    let headers = match map.get("headers") {
        None => Vec::new(),
        Some(v) => pairs(v, &format!("{at}.headers"))?
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes()))
            .collect(),
    };
    Ok(OwnedRequest {
        method: string(map, "method", at)?.into_bytes(),
        path: string(map, "path", at)?.into_bytes(),
        authority: string(map, "authority", at)?.into_bytes(),
        peer,
        headers,
    })
}

/// `[["name", "value"], ...]`, names lowercase.
fn pairs(value: &Value, at: &str) -> Result<Vec<(String, String)>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("{at}: expected a list of [name, value] pairs"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, pair)| match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(name), Value::String(value)]) if *name == name.to_lowercase() => {
                Ok((name.clone(), value.clone()))
            }
            _ => Err(format!(
                "{at}[{i}]: expected [name, value] with a lowercase name"
            )),
        })
        .collect()
}

fn parse_expect(value: &Value, at: &str) -> Result<Expect, String> {
    let map = object(
        value,
        at,
        &[
            "status",
            "headers",
            "absent",
            "body",
            "upstream_headers",
            "upstream_absent",
            "held_ms",
        ],
    )?;
    let status = map
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| format!("{at}.status: expected a status code"))?;
    let headers = header_values(map.get("headers"), &format!("{at}.headers"))?;
    let absent = header_names(map.get("absent"), &format!("{at}.absent"))?;
    let upstream_headers = header_values(
        map.get("upstream_headers"),
        &format!("{at}.upstream_headers"),
    )?;
    let upstream_absent =
        header_names(map.get("upstream_absent"), &format!("{at}.upstream_absent"))?;
    if status != 200 && (!upstream_headers.is_empty() || !upstream_absent.is_empty()) {
        return Err(format!(
            "{at}: upstream_headers and upstream_absent are only for steps that expect status \
             200 (a local response never reaches the upstream)"
        ));
    }
    let body = match map.get("body") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| format!("{at}.body: expected a string"))?
                .to_owned(),
        ),
    };
    let held_ms = match map.get("held_ms") {
        None => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("{at}.held_ms: expected a whole number of milliseconds"))?,
    };
    if held_ms > 0 && status != 200 {
        return Err(format!(
            "{at}.held_ms: only a request passed upstream (status 200) is held"
        ));
    }
    Ok(Expect {
        status,
        headers,
        absent,
        body,
        upstream_headers,
        upstream_absent,
        held_ms,
    })
}

/// `{"name": "value", ...}`, names lowercase.
fn header_values(value: Option<&Value>, at: &str) -> Result<Vec<(String, String)>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .as_object()
        .ok_or_else(|| format!("{at}: expected an object"))?
        .iter()
        .map(|(name, value)| match value.as_str() {
            Some(text) if *name == name.to_lowercase() => Ok((name.clone(), text.to_owned())),
            _ => Err(format!(
                "{at}.{name}: expected a string value and a lowercase name"
            )),
        })
        .collect()
}

/// `["name", ...]`, names lowercase.
fn header_names(value: Option<&Value>, at: &str) -> Result<Vec<String>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .as_array()
        .ok_or_else(|| format!("{at}: expected a list of header names"))?
        .iter()
        .map(|name| match name.as_str() {
            Some(text) if text == text.to_lowercase() => Ok(text.to_owned()),
            _ => Err(format!("{at}: expected lowercase header names")),
        })
        .collect()
}
