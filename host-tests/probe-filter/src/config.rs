//! The probe's plugin configuration: `key=value` pairs separated by `;`.
//!
//! - `tick_ms=<n>`: the tick period set from `on_configure`.
//! - `reject=<message>`: log `<message>` at error level and reject the plugin.
//! - `trap=configure`: trap inside `on_configure`.
//!
//! Unknown keys are ignored so that any bytes can be used to test the
//! configuration echo.

#[derive(Debug, Default)]
pub struct ProbeConfig {
    pub tick_period_ms: Option<u64>,
    pub reject_with: Option<String>,
    pub trap_on_configure: bool,
}

impl ProbeConfig {
    pub fn parse(bytes: &[u8]) -> ProbeConfig {
        let text = String::from_utf8_lossy(bytes);
        let mut config = ProbeConfig::default();
        for item in text.split(';') {
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            match key.trim() {
                "tick_ms" => config.tick_period_ms = value.trim().parse().ok(),
                "reject" => config.reject_with = Some(value.to_string()),
                "trap" => config.trap_on_configure = value.trim() == "configure",
                _ => {}
            }
        }
        config
    }
}
