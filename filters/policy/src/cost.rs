//! How many units a request spends: a constant, or a number from a request header.

use alloc::string::String;
use serde_json::Value;

use crate::error::{ConfigError, Problem};
use crate::json::{self, Fields};
use crate::key::field_name;
use crate::request::Request;

/// A rule's compiled `cost`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CostSpec {
    /// Every request spends this many units.
    Constant(u64),
    /// The request's header gives the cost.
    Header {
        /// The header name, lowercase.
        name: String,
        /// The cost of a request without the header, or with a value that is not a whole
        /// number of at least 1.
        default: u64,
        /// The most a request is charged, whatever the header says.
        max: u64,
    },
}

impl Default for CostSpec {
    fn default() -> CostSpec {
        CostSpec::Constant(1)
    }
}

impl CostSpec {
    /// Parses a `cost` value. `capacity` is the most the rule admits at once, named by
    /// `capacity_field`: a cost above it could never pass.
    pub(crate) fn parse(
        value: &Value,
        path: &str,
        capacity: u64,
        capacity_field: &str,
    ) -> Result<CostSpec, ConfigError> {
        let within_capacity = |cost: u64, path: &str| {
            if cost > capacity {
                return Err(ConfigError::new(
                    path,
                    Problem::CostAboveCapacity {
                        cost,
                        capacity,
                        capacity_field: String::from(capacity_field),
                    },
                ));
            }
            Ok(cost)
        };
        const AT_LEAST_ONE: &str = "a request spends at least one unit";
        if !value.is_object() {
            if !value.is_number() {
                return Err(ConfigError::new(
                    path,
                    Problem::WrongType {
                        expected: "a whole number, or {\"header\": \"x-cost\", \"default\": 1, \"max\": 10}",
                        found: json::kind(value),
                    },
                ));
            }
            let cost = json::integer(value, path, 1, u64::MAX, AT_LEAST_ONE)?;
            return within_capacity(cost, path).map(CostSpec::Constant);
        }
        let fields = Fields::open(value, path, &["header", "default", "max"])?;
        let name = field_name(
            fields.require("header", "\"header\": \"x-cost\"")?,
            &fields.path("header"),
        )?;
        let default_path = fields.path("default");
        let default = match fields.get("default") {
            Some(v) => json::integer(v, &default_path, 1, u64::MAX, AT_LEAST_ONE)?,
            None => 1,
        };
        let max_path = fields.path("max");
        let max = match fields.get("max") {
            Some(v) => within_capacity(
                json::integer(v, &max_path, 1, u64::MAX, AT_LEAST_ONE)?,
                &max_path,
            )?,
            None => capacity,
        };
        if default > max {
            return Err(ConfigError::new(
                default_path,
                Problem::DefaultAboveMax { default, max },
            ));
        }
        Ok(CostSpec::Header { name, default, max })
    }

    /// The cost of `request`. A header cost is parsed as a whole decimal number (surrounding
    /// whitespace allowed); missing, malformed or 0 gives the default (a client must not make
    /// its requests free), above the maximum gives the maximum.
    pub fn cost(&self, request: &(impl Request + ?Sized)) -> u64 {
        match self {
            CostSpec::Constant(cost) => *cost,
            CostSpec::Header { name, default, max } => request
                .header(name)
                .and_then(parse_cost)
                .map_or(*default, |cost| cost.min(*max)),
        }
    }
}

/// A positive decimal number; anything too large to represent is as good as "very large".
fn parse_cost(value: &[u8]) -> Option<u64> {
    let digits = core::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = digits.parse::<u64>().unwrap_or(u64::MAX);
    (value > 0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_request::TestRequest;
    use alloc::string::ToString;
    use serde_json::json;

    fn header_cost() -> CostSpec {
        CostSpec::parse(
            &json!({"header": "X-Cost", "default": 2, "max": 10}),
            "cost",
            100,
            "limit.requests",
        )
        .unwrap()
    }

    #[test]
    fn a_constant_cost_is_charged_as_is() {
        let c = CostSpec::parse(&json!(5), "cost", 10, "limit.requests").unwrap();
        assert_eq!(c.cost(&TestRequest::get("/")), 5);
    }

    #[test]
    fn a_header_cost_is_read_clamped_or_defaulted() {
        let c = header_cost();
        let with = |v: &str| c.cost(&TestRequest::get("/").header("x-cost", v));
        assert_eq!(with("7"), 7);
        assert_eq!(with(" 3 "), 3);
        assert_eq!(with("11"), 10);
        assert_eq!(with("99999999999999999999999"), 10);
        assert_eq!(with("0"), 2);
        assert_eq!(with("-1"), 2);
        assert_eq!(with("1.5"), 2);
        assert_eq!(with(""), 2);
        assert_eq!(c.cost(&TestRequest::get("/")), 2);
    }

    #[test]
    fn a_header_cost_defaults_to_one_and_the_capacity() {
        let c = CostSpec::parse(&json!({"header": "x-cost"}), "cost", 20, "limit.burst").unwrap();
        assert_eq!(
            c,
            CostSpec::Header {
                name: "x-cost".into(),
                default: 1,
                max: 20
            }
        );
    }

    #[test]
    fn costs_that_could_never_pass_are_rejected() {
        let err = CostSpec::parse(&json!(11), "cost", 10, "limit.burst").unwrap_err();
        assert_eq!(err.path(), "cost");
        assert!(err.to_string().contains("(10, from limit.burst)"), "{err}");
        let err = CostSpec::parse(
            &json!({"header": "x-cost", "max": 11}),
            "cost",
            10,
            "limit.requests",
        )
        .unwrap_err();
        assert_eq!(err.path(), "cost.max");
    }

    #[test]
    fn invalid_costs_are_rejected_with_their_field() {
        let cases = [
            (json!(0), "cost", "use 1 or more"),
            (json!("1"), "cost", "expected a whole number"),
            (json!(1.5), "cost", "expected a whole number"),
            (json!({"default": 1}), "cost.header", "required"),
            (
                json!({"header": "x-cost", "default": 0}),
                "cost.default",
                "use 1 or more",
            ),
            (
                json!({"header": "x-cost", "default": 5, "max": 4}),
                "cost.default",
                "above max",
            ),
            (
                json!({"header": "x-cost", "min": 1}),
                "cost.min",
                "unknown field",
            ),
        ];
        for (value, path, message) in cases {
            let err = CostSpec::parse(&value, "cost", 10, "limit.requests").unwrap_err();
            assert_eq!(err.path(), path, "{value}");
            assert!(err.to_string().contains(message), "{value}: {err}");
        }
    }
}
