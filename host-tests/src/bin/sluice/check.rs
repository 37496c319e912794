//! `sluice check`: the validation the filter runs in `on_configure`, on a sluice config file or
//! on every sluice config inside an `nginx.conf`, an Envoy config or an Istio `WasmPlugin`.
//!
//! A proxy cannot see inside the plugin configuration: `nginx -t` passes a broken one, and on
//! `nginx -s reload` every new worker fails `on_configure` and exits. So the check reports what
//! the proxy would hand the filter (after NGINX's unescaping, for instance), with the file and
//! line where each config starts, before the proxy ever loads it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;

use crate::embedded::{Embedded, Found, Location, is_sluice};
use crate::{envoy_config, istio_config, nginx_conf, yaml_tree};

/// The kind of file to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A sluice config (the JSON document the filter reads).
    Json,
    /// An `nginx.conf` with ngx_wasm_module's `proxy_wasm` directives (and its includes).
    Nginx,
    /// An Envoy configuration, YAML or JSON (`envoy.filters.http.wasm` filters).
    Envoy,
    /// Istio `WasmPlugin` resources (`spec.pluginConfig`).
    Istio,
}

/// `sluice check` arguments.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Files to check: sluice JSON configs, nginx.conf, envoy.yaml, Istio WasmPlugin YAML.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Read every file as this kind instead of telling from its content.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

pub fn run(args: &CheckArgs) -> ExitCode {
    let mut failed = false;
    for file in &args.files {
        failed |= !check_file(file, args.format);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Checks one file, printing a line per config found; true if all is well.
fn check_file(path: &Path, format: Option<Format>) -> bool {
    let name = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("{name}: cannot read: {error}");
            return false;
        }
    };
    let (format, found) = match find(path, &bytes, format) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("{message}");
            return false;
        }
    };
    let mut ok = true;
    for (location, warning) in &found.warnings {
        eprintln!("{location}: warning: {warning}");
    }
    for skipped in &found.skipped {
        println!(
            "{}: {}: not a sluice plugin, not checked",
            skipped.location, skipped.what
        );
    }
    if found.configs.is_empty() {
        eprintln!("{name}: {}", nothing_found(format, found.skipped.len()));
        return false;
    }
    for embedded in &found.configs {
        ok &= report(format, embedded);
    }
    ok
}

/// Validates one config and prints the verdict; true if valid.
fn report(format: Format, embedded: &Embedded) -> bool {
    let Embedded {
        location,
        what,
        config,
    } = embedded;
    // A plain JSON file keeps the short form: `sluice.json: ok (1 rules)`.
    let prefix = if format == Format::Json {
        location.file.clone()
    } else {
        format!("{location}: {what}")
    };
    let bytes = match config {
        Ok(bytes) => bytes,
        Err(problem) => {
            eprintln!("{prefix}: {problem}");
            return false;
        }
    };
    match sluice_policy::Policy::from_json(bytes) {
        Ok(policy) => {
            println!("{prefix}: ok ({} rules)", policy.rules().len());
            true
        }
        Err(error) => {
            let hint = if format == Format::Nginx && bytes.contains(&b'\n') && is_syntax(&error) {
                " (NGINX turns \\n inside a quoted argument into a newline, which JSON strings cannot hold: write \\\\n)"
            } else {
                ""
            };
            eprintln!("{prefix}: {error}{hint}");
            false
        }
    }
}

fn is_syntax(error: &sluice_policy::ConfigError) -> bool {
    matches!(error.problem(), sluice_policy::Problem::Syntax { .. })
}

fn nothing_found(format: Format, skipped: usize) -> String {
    let looked_for = match format {
        Format::Json => "sluice config",
        Format::Nginx => "proxy_wasm directive",
        Format::Envoy => "envoy.filters.http.wasm filter",
        Format::Istio => "WasmPlugin resource",
    };
    if skipped > 0 {
        format!(
            "no sluice config: {skipped} proxy-wasm plugin(s), none of them sluice (nothing names sluice and no configuration has \"rules\")"
        )
    } else {
        let kind = format
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        format!("no sluice config: found no {looked_for} (read as {kind}; --format sets the kind)")
    }
}

/// Reads `bytes` as `format`, or as the kind its content shows.
fn find(path: &Path, bytes: &[u8], format: Option<Format>) -> Result<(Format, Found), String> {
    let name = path.display().to_string();
    let starts_with_brace = bytes.trim_ascii_start().first() == Some(&b'{');
    match format {
        Some(Format::Json) => Ok((Format::Json, json(&name, bytes))),
        Some(Format::Nginx) => Ok((Format::Nginx, nginx(path, bytes)?)),
        Some(kind @ (Format::Envoy | Format::Istio)) => {
            let text = std::str::from_utf8(bytes).map_err(|e| format!("{name}: not UTF-8: {e}"))?;
            let documents = yaml_tree::load(text)
                .map_err(|e| format!("{name}:{}:{}: not YAML: {}", e.line, e.column, e.message))?;
            Ok(match kind {
                Format::Envoy => (kind, envoy_config::plugins(&name, &documents)),
                _ => (kind, istio_config::plugins(&name, &documents)),
            })
        }
        None => {
            let yaml = std::str::from_utf8(bytes)
                .ok()
                .map(|text| (text, yaml_tree::load(text)));
            match yaml {
                Some((_, Ok(documents))) => {
                    let istio = istio_config::plugins(&name, &documents);
                    if !istio.configs.is_empty() || !istio.skipped.is_empty() {
                        return Ok((Format::Istio, istio));
                    }
                    let envoy = envoy_config::plugins(&name, &documents);
                    if !envoy.configs.is_empty() || !envoy.skipped.is_empty() {
                        return Ok((Format::Envoy, envoy));
                    }
                    if starts_with_brace {
                        return Ok((Format::Json, json(&name, bytes)));
                    }
                    if documents.iter().any(|d| d.data.is_mapping()) {
                        return Err(format!(
                            "{name}: no sluice config: a YAML document with neither an envoy.filters.http.wasm filter nor a WasmPlugin (--format sets the kind)"
                        ));
                    }
                    Ok((Format::Nginx, nginx(path, bytes)?))
                }
                _ if starts_with_brace => Ok((Format::Json, json(&name, bytes))),
                Some((_, Err(error)))
                    if path.extension().is_some_and(|e| e == "yaml" || e == "yml") =>
                {
                    Err(format!(
                        "{name}:{}:{}: not YAML: {}",
                        error.line, error.column, error.message
                    ))
                }
                _ => Ok((Format::Nginx, nginx(path, bytes)?)),
            }
        }
    }
}

/// A plain sluice config: the whole file is the configuration.
fn json(name: &str, bytes: &[u8]) -> Found {
    Found {
        configs: vec![Embedded {
            location: Location {
                file: name.to_string(),
                line: 1,
                column: 1,
            },
            what: "sluice config".to_string(),
            config: Ok(bytes.to_vec()),
        }],
        ..Found::default()
    }
}

/// The `proxy_wasm` directives of an nginx.conf and the files it includes. Relative include
/// paths are taken from the main file's directory, as NGINX does for the `-c` file's.
fn nginx(path: &Path, bytes: &[u8]) -> Result<Found, String> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut include = |pattern: &[u8]| include_files(&base, pattern);
    let config =
        nginx_conf::read(&path.display().to_string(), bytes, &mut include).map_err(|error| {
            format!(
                "{}:{}:{}: NGINX would refuse this file (nginx -t fails): {}",
                path.display(),
                error.position.line,
                error.position.column,
                error.message
            )
        })?;
    let locate = |position: nginx_conf::Position| Location {
        file: config.sources[position.source].clone(),
        line: position.line,
        column: position.column,
    };
    let mut found = Found {
        warnings: config
            .warnings
            .iter()
            .map(|(position, message)| (locate(*position), message.clone()))
            .collect(),
        ..Found::default()
    };
    for filter in nginx_conf::proxy_wasm_filters(&config) {
        let what = format!("proxy_wasm {} in {}", filter.module, filter.context);
        let location = locate(filter.position);
        let names = [
            filter.module.as_str(),
            filter.module_path.as_deref().unwrap_or(""),
        ];
        let bytes = filter.config.clone().unwrap_or_default();
        if let Some(invalid) = filter.invalid {
            found.configs.push(Embedded {
                location,
                what,
                config: Err(format!("NGINX would refuse this directive: {invalid}")),
            });
        } else if is_sluice(&names, Some(&bytes)) {
            found.configs.push(Embedded {
                location,
                what,
                config: Ok(bytes),
            });
        } else {
            found
                .skipped
                .push(crate::embedded::Skipped { location, what });
        }
    }
    Ok(found)
}

/// The files an `include` names: one path, or a glob (matches in name order, none is fine).
fn include_files(base: &Path, pattern: &[u8]) -> nginx_conf::Included {
    let pattern = String::from_utf8_lossy(pattern);
    let full = base.join(pattern.as_ref());
    let shown = full.display().to_string();
    let unreadable = |reason: String| {
        nginx_conf::Included::Unreadable(format!(
            "include \"{pattern}\": {reason}; sluice configs in it are not checked"
        ))
    };
    let paths: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
        match glob::glob(&shown) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(error) => return unreadable(format!("bad pattern: {error}")),
        }
    } else {
        vec![full]
    };
    let mut files = Vec::new();
    for path in paths {
        match std::fs::read(&path) {
            Ok(text) => files.push((path.display().to_string(), text)),
            Err(error) => return unreadable(format!("cannot read {}: {error}", path.display())),
        }
    }
    nginx_conf::Included::Files(files)
}
