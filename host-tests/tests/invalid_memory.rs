//! Pointers outside the filter's memory answer `INVALID_MEMORY_ACCESS` (6):
//! the host neither panics nor traps, and the VM keeps serving.

mod common;

use common::{exchange, options, probe_request, result, start};

#[test]
fn out_of_bounds_pointers_answer_invalid_memory_access() {
    let proxy = start(options());
    let operations = [
        "log-invalid-memory",
        "header-value-invalid-memory",
        "set-header-map-invalid-memory",
        "shared-get-invalid-memory",
    ];
    let instructions: Vec<(&str, &str)> = operations
        .iter()
        .map(|operation| ("x-probe-raw", *operation))
        .collect();
    let done = exchange(&proxy, probe_request(&instructions));
    for operation in operations {
        assert_eq!(
            result(&done, &format!("raw-{operation}")).as_deref(),
            Some("6"),
            "{operation}"
        );
    }
    assert_eq!(done.status(), Some(200));
    assert_eq!(
        exchange(&proxy, probe_request(&[])).status(),
        Some(200),
        "the VM still serves"
    );
}
