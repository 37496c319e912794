//! A sluice configuration found inside a proxy's configuration file, with where it is.

/// Where something starts in a file: 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as given on the command line (or as an `include` resolved it).
    pub file: String,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One plugin configuration the proxy hands the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// Where the configuration starts.
    pub location: Location,
    /// Which directive or filter holds it, e.g. `proxy_wasm sluice in http > server > location /`.
    pub what: String,
    /// The bytes the filter receives, or why the proxy cannot hand it a configuration at all.
    pub config: Result<Vec<u8>, String>,
}

/// A proxy-wasm plugin that is not sluice's, left unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where the plugin is.
    pub location: Location,
    /// Which directive or filter it is.
    pub what: String,
}

/// What one file holds: sluice configurations, other plugins, and notes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    /// The sluice configurations.
    pub configs: Vec<Embedded>,
    /// Other proxy-wasm plugins.
    pub skipped: Vec<Skipped>,
    /// Things not followed (an unreadable `include`), with where.
    pub warnings: Vec<(Location, String)>,
}

/// Whether a plugin is sluice's: one of its names says so (module, plugin, root or VM id, code
/// path or URL), or its configuration is a JSON object with `rules`.
pub fn is_sluice(names: &[&str], config: Option<&[u8]>) -> bool {
    names
        .iter()
        .any(|name| name.to_ascii_lowercase().contains("sluice"))
        || config.is_some_and(|bytes| {
            serde_json::from_slice::<serde_json::Value>(bytes)
                .is_ok_and(|value| value.get("rules").is_some())
        })
}
