//! YAML (and JSON, which is YAML) read with positions, for the Envoy and Istio files.
//!
//! `saphyr` keeps every node's span and resolves aliases under a node budget, so a config
//! found deep in a tree can be reported at its line, and a hostile file cannot blow up memory.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use crate::embedded::Location;

/// Why a file is not YAML, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The parser's message.
    pub message: String,
}

/// Every document of `text`.
pub fn load(text: &str) -> Result<Vec<MarkedYaml<'_>>, YamlError> {
    MarkedYaml::load_from_str(text).map_err(|error| YamlError {
        line: error.marker().line(),
        column: error.marker().col() + 1,
        message: error.info().to_string(),
    })
}

/// Where `node` starts in `file`.
pub fn location(file: &str, node: &MarkedYaml<'_>) -> Location {
    Location {
        file: file.to_string(),
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

/// The node under `key` in a mapping (a tagged mapping too).
pub fn get<'n, 'i>(node: &'n MarkedYaml<'i>, key: &str) -> Option<&'n MarkedYaml<'i>> {
    match &node.data {
        YamlData::Mapping(map) => map
            .iter()
            .find(|(k, _)| scalar_text(k).as_deref() == Some(key))
            .map(|(_, v)| v),
        YamlData::Tagged(_, inner) => get(inner, key),
        _ => None,
    }
}

/// The node at `keys`, one mapping key after another.
pub fn at<'n, 'i>(node: &'n MarkedYaml<'i>, keys: &[&str]) -> Option<&'n MarkedYaml<'i>> {
    keys.iter().try_fold(node, |node, key| get(node, key))
}

/// A string scalar's text.
pub fn as_str<'n>(node: &'n MarkedYaml<'_>) -> Option<&'n str> {
    match &node.data {
        YamlData::Value(Scalar::String(text)) => Some(text),
        YamlData::Tagged(_, inner) => as_str(inner),
        _ => None,
    }
}

/// A scalar as text, as a key in a path or a JSON object: strings as they are, numbers and
/// booleans as written in JSON.
pub fn scalar_text(node: &MarkedYaml<'_>) -> Option<String> {
    match &node.data {
        YamlData::Value(Scalar::String(text)) => Some(text.to_string()),
        YamlData::Value(Scalar::Integer(n)) => Some(n.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Value(Scalar::Null) => Some("null".to_string()),
        YamlData::Tagged(_, inner) => scalar_text(inner),
        _ => None,
    }
}

/// A YAML value as the JSON document a control plane makes of it (Istio turns `pluginConfig`
/// into a protobuf `Struct`, then into JSON text for the filter).
pub fn to_json(node: &MarkedYaml<'_>) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match &node.data {
        YamlData::Value(Scalar::Null) => Value::Null,
        YamlData::Value(Scalar::Boolean(b)) => Value::Bool(*b),
        YamlData::Value(Scalar::Integer(n)) => Value::from(*n),
        YamlData::Value(Scalar::FloatingPoint(f)) => serde_json::Number::from_f64(f.into_inner())
            .map(Value::Number)
            .ok_or_else(|| format!("{} has no JSON form", f.into_inner()))?,
        YamlData::Value(Scalar::String(text)) => Value::String(text.to_string()),
        YamlData::Sequence(items) => {
            Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        YamlData::Mapping(map) => {
            let mut object = serde_json::Map::new();
            for (key, value) in map {
                let key = scalar_text(key).ok_or_else(|| {
                    format!(
                        "line {}: a mapping key must be a string",
                        key.span.start.line()
                    )
                })?;
                object.insert(key, to_json(value)?);
            }
            Value::Object(object)
        }
        YamlData::Tagged(_, inner) => to_json(inner)?,
        YamlData::Representation(text, _, _) => Value::String(text.to_string()),
        YamlData::Alias(_) | YamlData::BadValue => {
            return Err(format!(
                "line {}: a value YAML cannot resolve",
                node.span.start.line()
            ));
        }
    })
}
