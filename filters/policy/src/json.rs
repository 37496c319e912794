//! Reading the configuration's JSON values with the field path at hand, so every error can say
//! exactly where it is. Objects are checked for unknown fields as soon as they are opened.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde_json::{Map, Value};

use crate::error::{ConfigError, Problem};

/// `parent.field`, or `field` at the root.
pub(crate) fn join(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        String::from(field)
    } else {
        format!("{parent}.{field}")
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The JSON type of a value, as a user would name it.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(path: &str, expected: &'static str, value: &Value) -> ConfigError {
    ConfigError::new(
        path,
        Problem::WrongType {
            expected,
            found: kind(value),
        },
    )
}

/// An object whose fields have been checked against the allowed names.
pub(crate) struct Fields<'v> {
    map: &'v Map<String, Value>,
    path: String,
}

impl<'v> Fields<'v> {
    /// Opens `value` as an object with only `allowed` fields.
    pub(crate) fn open(
        value: &'v Value,
        path: &str,
        allowed: &'static [&'static str],
    ) -> Result<Fields<'v>, ConfigError> {
        let Value::Object(map) = value else {
            return Err(wrong_type(path, "an object", value));
        };
        if let Some(field) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ConfigError::new(
                join(path, field),
                Problem::UnknownField {
                    field: field.clone(),
                    allowed,
                },
            ));
        }
        Ok(Fields {
            map,
            path: String::from(path),
        })
    }

    /// The field's value, if present.
    pub(crate) fn get(&self, field: &str) -> Option<&'v Value> {
        self.map.get(field)
    }

    /// The field's value, or a "required" error with `example`.
    pub(crate) fn require(
        &self,
        field: &str,
        example: &'static str,
    ) -> Result<&'v Value, ConfigError> {
        self.get(field)
            .ok_or_else(|| ConfigError::new(self.path(field), Problem::Missing { example }))
    }

    /// The path of one of the object's fields.
    pub(crate) fn path(&self, field: &str) -> String {
        join(&self.path, field)
    }
}

pub(crate) fn string<'v>(value: &'v Value, path: &str) -> Result<&'v str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| wrong_type(path, "a string", value))
}

pub(crate) fn non_empty_string<'v>(value: &'v Value, path: &str) -> Result<&'v str, ConfigError> {
    let text = string(value, path)?;
    if text.is_empty() {
        return Err(ConfigError::new(path, Problem::EmptyString));
    }
    Ok(text)
}

pub(crate) fn boolean(value: &Value, path: &str) -> Result<bool, ConfigError> {
    value
        .as_bool()
        .ok_or_else(|| wrong_type(path, "true or false", value))
}

/// A whole number in `min..=max`; `why` explains the range in the error.
pub(crate) fn integer(
    value: &Value,
    path: &str,
    min: u64,
    max: u64,
    why: &'static str,
) -> Result<u64, ConfigError> {
    let Some(number) = value.as_u64() else {
        return Err(wrong_type(
            path,
            "a whole number of 0 or more (no sign, no fraction)",
            value,
        ));
    };
    if number < min || number > max {
        return Err(ConfigError::new(
            path,
            Problem::OutOfRange {
                value: number,
                min,
                max,
                why,
            },
        ));
    }
    Ok(number)
}

pub(crate) fn list<'v>(value: &'v Value, path: &str) -> Result<&'v [Value], ConfigError> {
    match value {
        Value::Array(items) => Ok(items),
        _ => Err(wrong_type(path, "a list", value)),
    }
}

/// A non-empty list of strings, each checked and converted by `item`.
pub(crate) fn string_list<T>(
    value: &Value,
    path: &str,
    empty_hint: &'static str,
    mut item: impl FnMut(&str, &str) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    let items = list(value, path)?;
    if items.is_empty() {
        return Err(ConfigError::new(
            path,
            Problem::EmptyList { hint: empty_hint },
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let item_path = index(path, i);
            let text = string(v, &item_path)?;
            item(text, &item_path)
        })
        .collect()
}

/// One of a fixed set of words.
pub(crate) fn variant<T: Copy>(
    value: &Value,
    path: &str,
    names: &'static [&'static str],
    values: &[T],
) -> Result<T, ConfigError> {
    let text = string(value, path)?;
    names
        .iter()
        .position(|name| *name == text)
        .and_then(|i| values.get(i).copied())
        .ok_or_else(|| {
            ConfigError::new(
                path,
                Problem::UnknownVariant {
                    value: String::from(text),
                    allowed: names,
                },
            )
        })
}

/// Validates a path (`/` first) and returns it owned.
pub(crate) fn http_path(text: &str, path: &str) -> Result<String, ConfigError> {
    if !text.starts_with('/') {
        return Err(ConfigError::new(
            path,
            Problem::InvalidPath {
                path: String::from(text),
            },
        ));
    }
    Ok(String::from(text))
}

/// Validates a header value: visible ASCII, spaces and tabs, or any non-ASCII UTF-8.
pub(crate) fn header_value(text: &str, path: &str) -> Result<(), ConfigError> {
    if text.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ConfigError::new(path, Problem::InvalidHeaderValue));
    }
    Ok(())
}
