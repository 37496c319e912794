//! Every config shipped in `envoy-config/` is valid: the example sluice configs, and the
//! plugin configuration embedded in the Envoy, Istio and NGINX files. Each is checked by the
//! policy (as `sluice check` does) and loaded by the real filter in the host.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{Host, start};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy-config")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn yaml(name: &str) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The filter's plugin configuration inside `envoy.yaml`.
fn envoy_plugin_config() -> String {
    let doc = yaml("envoy.yaml");
    let filters = &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"];
    let wasm = filters
        .as_sequence()
        .and_then(|f| {
            f.iter()
                .find(|f| f["name"].as_str() == Some("envoy.filters.http.wasm"))
        })
        .expect("envoy.yaml has the wasm HTTP filter");
    let config = &wasm["typed_config"]["config"];
    assert_eq!(
        config["vm_config"]["vm_id"].as_str(),
        Some("sluice"),
        "a shared vm_id"
    );
    assert!(
        config["vm_config"]["code"]["local"]["filename"]
            .as_str()
            .is_some_and(|f| f.ends_with("sluice_filter.wasm")),
        "loads the built .wasm"
    );
    config["configuration"]["value"]
        .as_str()
        .expect("a StringValue configuration")
        .to_string()
}

/// Istio's `pluginConfig`, as the JSON document Istio hands the filter.
fn istio_plugin_config() -> String {
    let doc = yaml("istio-wasmplugin.yaml");
    assert_eq!(doc["kind"].as_str(), Some("WasmPlugin"));
    let config: Value = serde_json::to_value(&doc["spec"]["pluginConfig"]).expect("JSON-able");
    config.to_string()
}

/// The single-quoted configuration of the `proxy_wasm sluice '...'` directive.
fn nginx_plugin_config() -> String {
    let text = read("nginx.conf");
    assert!(
        text.contains("shm_kv sluice "),
        "the sluice shm zone is declared"
    );
    let start = text
        .find("proxy_wasm sluice '")
        .expect("a proxy_wasm directive")
        + "proxy_wasm sluice '".len();
    let len = text[start..].find('\'').expect("a closing quote");
    text[start..start + len].to_string()
}

fn configs() -> Vec<(String, String)> {
    let mut configs: Vec<(String, String)> = std::fs::read_dir(dir())
        .expect("envoy-config/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).expect("readable"),
            )
        })
        .collect();
    assert!(configs.len() >= 3, "the example configs");
    configs.push(("envoy.yaml".into(), envoy_plugin_config()));
    configs.push(("istio-wasmplugin.yaml".into(), istio_plugin_config()));
    configs.push(("nginx.conf".into(), nginx_plugin_config()));
    configs
}

#[test]
fn every_shipped_config_is_valid_and_loads_in_the_filter() {
    for (name, config) in configs() {
        if let Err(error) = sluice_policy::Policy::from_json(config.as_bytes()) {
            panic!("{name}: {error}");
        }
        let value: Value = serde_json::from_str(&config).expect("JSON");
        let host = if name == "nginx.conf" {
            Host::Ngx
        } else {
            Host::Envoy
        };
        drop(start(host, &value, 1));
    }
}
