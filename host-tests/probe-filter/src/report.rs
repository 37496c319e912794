//! How the probe writes its results into header values.

/// Bytes as a header value: printable UTF-8 as is, anything else as
/// `hex:<digits>`.
pub fn bytes(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => text.to_string(),
        _ => {
            let mut hex = String::from("hex:");
            for byte in value {
                hex.push_str(&format!("{byte:02x}"));
            }
            hex
        }
    }
}

/// A status alone, or a status and the value read.
pub fn status_and_value(status: u32, value: Option<&[u8]>) -> String {
    match (status, value) {
        (0, Some(value)) => format!("0 value={}", bytes(value)),
        (0, None) => "0 value=".to_string(),
        (status, _) => status.to_string(),
    }
}
