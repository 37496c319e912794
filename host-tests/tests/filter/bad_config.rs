//! A bad configuration makes `on_configure` return false, so the proxy rejects the plugin,
//! with one log line that names the rule and the field.

use serde_json::json;
use sluice_host::{HostError, Proxy};

use crate::support::{Host, options};

fn rejection(config: serde_json::Value) -> String {
    match Proxy::start(options(Host::Envoy, &config, 1)) {
        Ok(_) => panic!("the filter accepted {config}"),
        Err(error) => {
            let text = error.to_string();
            assert!(
                matches!(error, HostError::ConfigurationRejected { .. }),
                "a rejection, not another failure: {text}"
            );
            text
        }
    }
}

#[test]
fn a_bad_period_names_the_rule_and_the_field() {
    let text = rejection(json!({"rules": [{
        "name": "per-client", "key": ["client_ip"],
        "limit": {"requests": 10, "period": "5x"}}]}));
    assert!(text.contains("rule \"per-client\""), "{text}");
    assert!(text.contains("limit.period"), "{text}");
}

#[test]
fn an_unknown_field_is_rejected() {
    let text = rejection(json!({"rules": [{
        "name": "r", "key": ["client_ip"], "limt": {"requests": 1, "period": "1s"},
        "limit": {"requests": 10, "period": "1s"}}]}));
    assert!(text.contains("limt"), "{text}");
}

#[test]
fn burst_on_a_window_algorithm_is_rejected() {
    let text = rejection(json!({"rules": [{
        "name": "w", "key": ["client_ip"], "algorithm": "fixed_window",
        "limit": {"requests": 10, "period": "1m", "burst": 5}}]}));
    assert!(
        text.contains("rule \"w\"") && text.contains("burst"),
        "{text}"
    );
}

#[test]
fn a_config_that_is_not_json_is_rejected() {
    match Proxy::start(options(Host::Envoy, &json!(null), 1).plugin_config("{ not json")) {
        Ok(_) => panic!("accepted garbage"),
        Err(error) => assert!(
            error.to_string().contains("sluice: invalid configuration"),
            "{error}"
        ),
    }
}

#[test]
fn an_empty_configuration_is_rejected() {
    match Proxy::start(options(Host::Envoy, &json!(null), 1).plugin_config("")) {
        Ok(_) => panic!("accepted an empty configuration"),
        Err(error) => assert!(
            error.to_string().contains("sluice: invalid configuration"),
            "{error}"
        ),
    }
}
