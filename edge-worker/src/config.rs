//! Where the worker's configuration comes from, compiled once per isolate.
//!
//! The wrangler variable `SLUICE_CONFIG` holds the same JSON document the filter takes (as a
//! string, or as a JSON object in `[vars]`); without it, the worker uses the file bundled at
//! build time, `edge-worker/sluice.json`. An invalid configuration is not fatal to the isolate:
//! every request is answered with a 500 that says what is wrong, in the words of
//! `sluice check`, and the same line is logged.

use std::cell::RefCell;
use std::rc::Rc;

use sluice_policy::Policy;
use worker::Env;

/// The variable holding the configuration.
pub const CONFIG_VARIABLE: &str = "SLUICE_CONFIG";

/// The configuration used when `SLUICE_CONFIG` is not set.
pub const BUNDLED_CONFIG: &str = include_str!("../sluice.json");

/// A configuration that does not compile: the message to answer and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig(pub String);

impl core::fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

type Compiled = Result<Rc<Policy>, InvalidConfig>;

thread_local! {
    /// The last configuration text seen and what it compiled to.
    static COMPILED: RefCell<Option<(String, Compiled)>> = const { RefCell::new(None) };
}

/// The configuration text: the variable, else the bundled file.
fn text(env: &Env) -> Result<String, InvalidConfig> {
    if let Ok(var) = env.var(CONFIG_VARIABLE) {
        let text = var.to_string();
        if !text.is_empty() {
            return Ok(text);
        }
    }
    match env.object_var::<serde_json::Value>(CONFIG_VARIABLE) {
        Ok(value) if !value.is_null() => Ok(value.to_string()),
        _ => Ok(BUNDLED_CONFIG.to_owned()),
    }
}

/// The compiled configuration of this isolate (compiled again only if the text changed).
pub fn policy(env: &Env) -> Compiled {
    let text = text(env)?;
    COMPILED.with(|compiled| {
        let mut compiled = compiled.borrow_mut();
        if let Some((seen, result)) = compiled.as_ref()
            && *seen == text
        {
            return result.clone();
        }
        // The edge view: every rule counts in objects, so any rule may have a lease.
        let result = Policy::from_json_edge(text.as_bytes())
            .map(Rc::new)
            .map_err(|error| InvalidConfig(error.to_string()));
        *compiled = Some((text, result.clone()));
        result
    })
}
