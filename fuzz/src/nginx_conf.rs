//! Target `nginx_conf`: any bytes as an `nginx.conf`, read by `sluice check`'s NGINX reader.
//!
//! Reading always ends, without panicking, in a configuration or in one error line that points
//! inside the file; every `proxy_wasm` directive found points inside the file read; and any
//! configuration written into a single-quoted `proxy_wasm` argument with NGINX's escapes
//! (`\\` for a backslash, `\'` for a quote) comes back byte for byte, so the reader unescapes
//! exactly as NGINX does.

#[allow(dead_code)]
#[path = "../../host-tests/src/bin/sluice/nginx_conf.rs"]
mod reader;

use reader::{Included, SyntaxError};

/// What every `include` in a fuzzed file reads: a small file that includes again (bounded by
/// the reader's nesting limit) and holds a directive.
const INCLUDED: &[u8] = b"proxy_wasm included 'x';\ninclude again.conf;\n";

/// The longest quoted argument NGINX reads (its 4096-byte buffer holds it, the closing quote
/// and the byte after).
const MAX_ARGUMENT: usize = 4094;

pub fn run(data: &[u8]) {
    any_file(data);
    quoted_config_round_trips(data);
}

fn include(pattern: &[u8]) -> Included {
    if pattern.first() == Some(&b'/') {
        Included::Unreadable("absolute paths are not read here".into())
    } else {
        Included::Files(vec![("included.conf".into(), INCLUDED.to_vec())])
    }
}

fn any_file(data: &[u8]) {
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    match reader::read("fuzzed.conf", data, &mut include) {
        Ok(config) => {
            for filter in reader::proxy_wasm_filters(&config) {
                let limit = if filter.position.source == 0 {
                    lines
                } else {
                    3
                };
                assert!(
                    (1..=limit).contains(&filter.position.line),
                    "a directive placed on line {} of {}",
                    filter.position.line,
                    config.sources[filter.position.source]
                );
                assert!(filter.position.column >= 1);
                assert!(!filter.context.is_empty());
            }
        }
        Err(SyntaxError { position, message }) => {
            assert!(!message.is_empty(), "an empty error message");
            assert!(
                !message.contains('\n'),
                "an error message of several lines: {message:?}"
            );
            if position.source == 0 {
                assert!(
                    (1..=lines).contains(&position.line),
                    "an error on line {} of a {lines}-line file: {message}",
                    position.line
                );
            }
        }
    }
}

/// `data` as the configuration of a `proxy_wasm` directive, escaped as NGINX requires, reads
/// back unchanged.
fn quoted_config_round_trips(data: &[u8]) {
    let mut escaped = Vec::with_capacity(data.len() * 2);
    for &byte in data {
        if byte == b'\\' || byte == b'\'' {
            escaped.push(b'\\');
        }
        escaped.push(byte);
    }
    if escaped.len() > MAX_ARGUMENT {
        return;
    }
    let mut file = b"http {\n  server {\n    location / {\n      proxy_wasm sluice '".to_vec();
    file.extend_from_slice(&escaped);
    file.extend_from_slice(b"';\n      proxy_pass http://backend;\n    }\n  }\n}\n");
    let config = reader::read("quoted.conf", &file, &mut include)
        .unwrap_or_else(|e| panic!("an escaped configuration was refused: {}", e.message));
    let filters = reader::proxy_wasm_filters(&config);
    assert_eq!(filters.len(), 1, "one proxy_wasm directive");
    assert_eq!(
        filters[0].config.as_deref(),
        Some(data),
        "the configuration did not survive NGINX's escaping"
    );
    assert_eq!(
        (filters[0].position.line, filters[0].position.column),
        (4, 25)
    );
    assert_eq!(filters[0].context, "http > server > location /");
}
