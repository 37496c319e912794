//! Istio `WasmPlugin` resources (`extensions.istio.io`), alone, several in one stream, or in a
//! `List`: `spec.pluginConfig` is the plugin configuration, a YAML mapping that Istio turns into
//! the JSON document the filter reads.

use saphyr::{MarkedYaml, YamlData};

use crate::embedded::{Embedded, Found, Skipped, is_sluice};
use crate::yaml_tree::{as_str, at, get, location, to_json};

/// Every `WasmPlugin` in `documents` (read from `file`).
pub fn plugins(file: &str, documents: &[MarkedYaml<'_>]) -> Found {
    let mut found = Found::default();
    for document in documents {
        walk(file, document, &mut found);
    }
    found
}

fn walk(file: &str, node: &MarkedYaml<'_>, found: &mut Found) {
    if get(node, "kind").and_then(as_str) == Some("WasmPlugin") {
        plugin(file, node, found);
        return;
    }
    // A `List` (as `kubectl get -o yaml` prints several resources).
    if let Some(items) = get(node, "items")
        && let YamlData::Sequence(items) = &items.data
    {
        for item in items {
            walk(file, item, found);
        }
    }
}

fn plugin(file: &str, resource: &MarkedYaml<'_>, found: &mut Found) {
    let text = |keys: &[&str]| at(resource, keys).and_then(as_str).unwrap_or("");
    let namespace = text(&["metadata", "namespace"]);
    let name = text(&["metadata", "name"]);
    let what = if namespace.is_empty() {
        format!("WasmPlugin \"{name}\" spec.pluginConfig")
    } else {
        format!("WasmPlugin \"{namespace}/{name}\" spec.pluginConfig")
    };
    let names = [name, text(&["spec", "pluginName"]), text(&["spec", "url"])];
    let plugin_config = at(resource, &["spec", "pluginConfig"]);
    let (start, config) = match plugin_config {
        // No pluginConfig: the filter receives an empty configuration.
        None => (get(resource, "spec").unwrap_or(resource), Ok(Vec::new())),
        Some(node) => match &node.data {
            YamlData::Mapping(_) => (
                node,
                to_json(node)
                    .map(|json| json.to_string().into_bytes())
                    .map_err(|e| format!("spec.pluginConfig: {e}")),
            ),
            _ => (
                node,
                Err(
                    "spec.pluginConfig must be a mapping (the sluice config written as YAML)"
                        .to_string(),
                ),
            ),
        },
    };
    let location = location(file, start);
    if is_sluice(&names, config.as_deref().ok()) {
        found.configs.push(Embedded {
            location,
            what,
            config,
        });
    } else {
        found.skipped.push(Skipped { location, what });
    }
}
