//! `sluice check` on proxy configuration files, as an operator runs it before `nginx -s reload`
//! or an Envoy/Istio rollout: every shipped file in `envoy-config/` passes, and a broken copy of
//! each fails with the file, the line (and column) where the broken sluice config starts, which
//! directive or filter holds it, and the policy's own message. NGINX's unescaping is modelled:
//! a `\n` written inside the quoted config reaches the filter as a newline.

use std::path::{Path, PathBuf};
use std::process::Command;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../envoy-config")
        .join(name)
}

fn read_shipped(name: &str) -> String {
    std::fs::read_to_string(shipped(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A directory of its own for one test, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sluice-check-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    /// Writes `text` to `name` in the directory and answers its path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("directory");
        }
        std::fs::write(&path, text).expect("file written");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of `sluice check` said.
struct Checked {
    success: bool,
    stdout: String,
    stderr: String,
}

fn check(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Checked {
    let output = Command::new(SLUICE)
        .arg("check")
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("sluice check runs");
    Checked {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `text` with `from` replaced by `to`, which must occur.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the file");
    text.replacen(from, to, 1)
}

/// The line and column (from 1, in characters) where `needle` first occurs in `text`.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("the needle is in the text");
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line, column)
}

const NGINX_WHAT: &str = "proxy_wasm sluice in http > server (listen 8000) > location /";

#[test]
fn every_shipped_file_passes_and_each_config_is_located() {
    let files = [
        "nginx.conf",
        "envoy.yaml",
        "istio-wasmplugin.yaml",
        "sluice.json",
        "behind-cloudflare.json",
        "behind-load-balancer.json",
        "envoy-jwt.yaml",
    ]
    .map(shipped);
    let args: Vec<&dyn AsRef<std::ffi::OsStr>> = files.iter().map(|f| f as _).collect();
    let run = check(&args);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    let line = |name: &str| {
        run.stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name}: {}", run.stdout))
            .to_string()
    };
    assert!(
        line("nginx.conf").ends_with(&format!("nginx.conf:44:31: {NGINX_WHAT}: ok (1 rules)")),
        "{}",
        run.stdout
    );
    assert!(
        line("envoy.yaml").ends_with(
            "envoy.yaml:47:29: wasm plugin \"sluice\" at static_resources.listeners[ingress].filter_chains[0].filters[envoy.filters.network.http_connection_manager].typed_config.http_filters[envoy.filters.http.wasm].typed_config: ok (2 rules)"
        ),
        "{}",
        run.stdout
    );
    assert!(
        line("istio-wasmplugin.yaml").ends_with(
            "istio-wasmplugin.yaml:21:5: WasmPlugin \"istio-system/sluice\" spec.pluginConfig: ok (2 rules)"
        ),
        "{}",
        run.stdout
    );
    assert!(line("sluice.json").ends_with("sluice.json: ok (3 rules)"));
    assert!(
        line("envoy-jwt.yaml").ends_with(
            "envoy-jwt.yaml:74:29: wasm plugin \"sluice\" at static_resources.listeners[ingress].filter_chains[0].filters[envoy.filters.network.http_connection_manager].typed_config.http_filters[envoy.filters.http.wasm].typed_config: ok (3 rules)"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 7, "{}", run.stdout);
}

#[test]
fn a_bad_period_in_nginx_conf_names_the_file_line_and_location() {
    let scratch = Scratch::new("nginx-period");
    let conf = scratch.write(
        "nginx.conf",
        &replaced(
            &read_shipped("nginx.conf"),
            r#""period": "1m""#,
            r#""period": "1 minute""#,
        ),
    );
    let run = check(&[&conf]);
    assert!(!run.success);
    let expected = format!(
        "{}:44:31: {NGINX_WHAT}: rule \"per-client\" (rules[0]): limit.period: \"1 minute\" is not a duration",
        conf.display()
    );
    assert!(run.stderr.starts_with(&expected), "{}", run.stderr);
}

#[test]
fn a_newline_escape_in_nginx_conf_breaks_the_json_as_nginx_unescapes_it() {
    let scratch = Scratch::new("nginx-newline");
    let shipped = read_shipped("nginx.conf");
    let with_body = |body: &str| {
        replaced(
            &shipped,
            r#""response": { "status": 429, "headers": "both" },"#,
            &format!(r#""response": {{ "status": 429, "headers": "both", "body": "{body}" }},"#),
        )
    };

    // `\n` as a JSON writer would put it: NGINX hands the filter a raw newline inside a string.
    let broken = scratch.write("broken.conf", &with_body(r"slow down\n"));
    let run = check(&[&broken]);
    assert!(!run.success);
    assert!(
        run.stderr.starts_with(&format!(
            "{}:44:31: {NGINX_WHAT}: configuration: not valid JSON: control character",
            broken.display()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(r"write \\n"),
        "the message says how to write it: {}",
        run.stderr
    );

    // `\\n` reaches the filter as the JSON escape `\n`.
    let fixed = scratch.write("fixed.conf", &with_body(r"slow down\\n"));
    let run = check(&[&fixed]);
    assert!(run.success, "{}", run.stderr);
}

#[test]
fn broken_json_in_envoy_yaml_names_the_line_of_the_string_value() {
    let scratch = Scratch::new("envoy-json");
    let yaml = scratch.write(
        "envoy.yaml",
        &replaced(
            &read_shipped("envoy.yaml"),
            r#""algorithm": "gcra""#,
            r#""algorithm": "gcra"#,
        ),
    );
    let run = check(&[&yaml]);
    assert!(!run.success);
    assert!(
        run.stderr.starts_with(&format!(
            "{}:47:29: wasm plugin \"sluice\" at static_resources.listeners[ingress]",
            yaml.display()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("configuration: not valid JSON"),
        "{}",
        run.stderr
    );
}

#[test]
fn of_two_envoy_filters_only_the_bad_one_is_reported_at_its_own_line() {
    let scratch = Scratch::new("envoy-two");
    let shipped = read_shipped("envoy.yaml");
    let start = shipped
        .find("                  - name: envoy.filters.http.wasm")
        .expect("the wasm filter");
    let end = shipped
        .find("                  - name: envoy.filters.http.router")
        .expect("the router");
    let first = &shipped[start..end];
    // A second sluice filter, named apart, whose GCRA rule has a burst of 0.
    let second = replaced(
        &replaced(first, "name: sluice", "name: sluice-strict"),
        r#""limit": { "requests": 5, "period": "10s" },"#,
        r#""limit": { "requests": 5, "period": "10s", "burst": 0 },"#,
    );
    let text = format!("{}{first}{second}{}", &shipped[..start], &shipped[end..]);
    let yaml = scratch.write("envoy.yaml", &text);
    let second_line = 47 + first.lines().count();

    let run = check(&[&yaml]);
    assert!(!run.success);
    let at = |line: usize, name: &str| {
        format!(
            "{}:{line}:29: wasm plugin \"{name}\" at static_resources.listeners[ingress].filter_chains[0].filters[envoy.filters.network.http_connection_manager].typed_config.http_filters[envoy.filters.http.wasm].typed_config: ",
            yaml.display()
        )
    };
    assert!(
        run.stdout
            .contains(&format!("{}ok (2 rules)", at(47, "sluice"))),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.starts_with(&format!(
            "{}rule \"per-client\" (rules[0]): limit.burst",
            at(second_line, "sluice-strict")
        )),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn a_wasm_plugin_with_a_misspelt_field_names_the_line_of_plugin_config() {
    let scratch = Scratch::new("istio-field");
    let yaml = scratch.write(
        "wasmplugin.yaml",
        &replaced(
            &read_shipped("istio-wasmplugin.yaml"),
            "burst: 20",
            "brust: 20",
        ),
    );
    let run = check(&[&yaml]);
    assert!(!run.success);
    assert!(
        run.stderr.starts_with(&format!(
            "{}:21:5: WasmPlugin \"istio-system/sluice\" spec.pluginConfig: rule \"per-client\" (rules[0]): limit.brust: unknown field \"brust\"",
            yaml.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_config_in_an_included_file_is_reported_in_that_file() {
    let scratch = Scratch::new("nginx-include");
    let main = scratch.write(
        "nginx.conf",
        "events {}\nhttp {\n    include conf.d/*.conf;\n}\n",
    );
    scratch.write(
        "conf.d/a.conf",
        "server {\n    listen 80;\n    location / {\n        proxy_wasm sluice '{\"rules\": []}';\n        proxy_pass http://backend;\n    }\n}\n",
    );
    let run = check(&[&main]);
    assert!(!run.success);
    let included = scratch.0.join("conf.d/a.conf");
    assert!(
        run.stderr.starts_with(&format!(
            "{}:4:27: proxy_wasm sluice in http > server (listen 80) > location /: rules:",
            included.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_file_nginx_would_refuse_is_reported_with_nginx_message() {
    let scratch = Scratch::new("nginx-syntax");
    let conf = scratch.write(
        "nginx.conf",
        &replaced(
            &read_shipped("nginx.conf"),
            "            }';",
            "            }'x;",
        ),
    );
    let run = check(&[&conf]);
    assert!(!run.success);
    assert!(
        run.stderr.starts_with(&format!(
            "{}:56:15: NGINX would refuse this file (nginx -t fails): unexpected \"x\"",
            conf.display()
        )),
        "{}",
        run.stderr
    );

    // NGINX reads at most 4095 bytes per argument.
    let padded = replaced(
        &read_shipped("nginx.conf"),
        r#""client_ip": { "source": "peer" },"#,
        &format!(
            r#""client_ip": {{ "source": "peer" }},{}"#,
            " ".repeat(4096)
        ),
    );
    let conf = scratch.write("long.conf", &padded);
    let run = check(&[&conf]);
    assert!(!run.success);
    assert!(
        run.stderr.starts_with(&format!(
            "{}:44:31: NGINX would refuse this file (nginx -t fails): too long parameter",
            conf.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_file_without_a_sluice_config_fails_with_a_clear_message() {
    let scratch = Scratch::new("nothing");
    let conf = scratch.write(
        "nginx.conf",
        "events {}\nhttp { server { listen 80; location / { return 200; } } }\n",
    );
    let run = check(&[&conf]);
    assert!(!run.success);
    assert_eq!(
        run.stderr.trim_end(),
        format!(
            "{}: no sluice config: found no proxy_wasm directive (read as nginx; --format sets the kind)",
            conf.display()
        )
    );

    // Another proxy-wasm filter is listed, not checked, and is not a sluice config.
    let other = scratch.write(
        "other.conf",
        "wasm { module waf /w/coraza.wasm; }\nhttp { server { location / { proxy_wasm waf '{}'; proxy_pass http://b; } } }\n",
    );
    let run = check(&[&other]);
    assert!(!run.success);
    assert!(
        run.stdout.contains("other.conf:2:45: proxy_wasm waf in http > server > location /: not a sluice plugin, not checked"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("no sluice config: 1 proxy-wasm plugin(s), none of them sluice"),
        "{}",
        run.stderr
    );
}

#[test]
fn format_overrides_what_the_content_shows() {
    // Read as a plain JSON config, an nginx.conf is not JSON.
    let run = check(&[&"--format", &"json", &shipped("nginx.conf")]);
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("nginx.conf: configuration: not valid JSON"),
        "{}",
        run.stderr
    );
    // Read as Istio, an Envoy file holds no WasmPlugin.
    let run = check(&[&"--format", &"istio", &shipped("envoy.yaml")]);
    assert!(!run.success);
    assert!(
        run.stderr.contains("found no WasmPlugin resource"),
        "{}",
        run.stderr
    );
}

#[test]
fn envoy_plugins_are_found_wherever_they_sit_in_yaml_or_json() {
    let scratch = Scratch::new("envoy-anywhere");
    let good = r#"{\"rules\": [{\"name\": \"a\", \"key\": [\"client_ip\"], \"limit\": {\"requests\": 5, \"period\": \"1s\"}}]}"#;
    let bad = r#"{\"rules\": [{\"name\": \"b\", \"key\": [\"client_ip\"], \"limit\": {\"requests\": 5, \"period\": \"1y\"}}]}"#;
    let wasm = |name: &str, configuration: &str| {
        format!(
            r#"{{"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
  "config": {{"name": "{name}", "vm_config": {{"vm_id": "{name}", "runtime": "envoy.wasm.runtime.v8",
    "code": {{"local": {{"filename": "/w/{name}.wasm"}}}}}},
    "configuration": {configuration}}}}}"#
        )
    };
    let string_value = |json: &str| {
        format!(
            r#"{{"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "{json}"}}"#
        )
    };
    // An Istio EnvoyFilter-style TypedStruct on an HTTP filter, a per-route override, a filter
    // that is not sluice's, and a sluice filter whose configuration is a Struct.
    let text = format!(
        r#"{{"resources": [
{{"name": "typed-struct", "typed_config": {{"@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
  "type_url": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
  "value": {{"config": {{"root_id": "sluice", "configuration": {good_value}}}}}}}}},
{{"name": "route", "typed_per_filter_config": {{"envoy.filters.http.wasm": {{
  "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
  "config": {per_route}}}}}}},
{{"name": "other", "typed_config": {other}}},
{{"name": "struct", "typed_config": {structured}}}
]}}
"#,
        good_value = string_value(good),
        per_route = wasm("sluice-route", &string_value(bad)),
        other = wasm(
            "waf",
            r#"{"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "{}"}"#
        ),
        structured = wasm(
            "sluice-struct",
            r#"{"@type": "type.googleapis.com/google.protobuf.Struct", "value": {"rules": []}}"#
        ),
    );
    let json = scratch.write("lds.json", &text);
    let run = check(&[&json]);
    assert!(!run.success);
    let name = json.display().to_string();
    // Each configuration is placed at the opening quote of its JSON string.
    let (good_line, good_column) = position_of(&text, r#""{\"rules\": [{\"name\": \"a\""#);
    let (bad_line, bad_column) = position_of(&text, r#""{\"rules\": [{\"name\": \"b\""#);
    assert!(
        run.stdout.contains(&format!(
            "{name}:{good_line}:{good_column}: wasm plugin \"\" at resources[typed-struct].typed_config.value: ok (1 rules)"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "wasm plugin \"waf\" at resources[other].typed_config: not a sluice plugin, not checked"
        ),
        "{}",
        run.stdout
    );
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 2, "{}", run.stderr);
    assert!(
        errors[0].starts_with(&format!("{name}:{bad_line}:{bad_column}: wasm plugin \"sluice-route\" at resources[route].typed_per_filter_config.envoy.filters.http.wasm.config: rule \"b\" (rules[0]): limit.period")),
        "{}",
        run.stderr
    );
    assert!(
        errors[1].contains("wasm plugin \"sluice-struct\" at resources[struct].typed_config: configuration is a \"type.googleapis.com/google.protobuf.Struct\""),
        "{}",
        run.stderr
    );
}

#[test]
fn every_wasm_plugin_of_a_yaml_stream_is_checked() {
    let scratch = Scratch::new("istio-stream");
    let shipped = read_shipped("istio-wasmplugin.yaml");
    let second = replaced(
        &replaced(&shipped, "name: sluice\n", "name: sluice-api\n"),
        "period: 1h",
        "period: 0s",
    );
    let yaml = scratch.write("plugins.yaml", &format!("{shipped}---\n{second}"));
    let second_start = shipped.lines().count() + 1 + 21;
    let run = check(&[&yaml]);
    assert!(!run.success);
    assert!(
        run.stdout
            .contains("21:5: WasmPlugin \"istio-system/sluice\" spec.pluginConfig: ok (2 rules)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.starts_with(&format!(
            "{}:{second_start}:5: WasmPlugin \"istio-system/sluice-api\" spec.pluginConfig: rule \"per-api-key\" (rules[1]): limit.period",
            yaml.display()
        )),
        "{}",
        run.stderr
    );
}
