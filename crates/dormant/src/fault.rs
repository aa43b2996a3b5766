//! Fault points for crash tests: `DORMANT_FAULT_POINT=<name>` makes dormant
//! abort (as abruptly as SIGKILL) when it reaches the point of that name.
//! Unset, a fault point costs one comparison.

use std::sync::OnceLock;

/// Aborts the process if `DORMANT_FAULT_POINT` names this point.
pub fn point(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("DORMANT_FAULT_POINT").ok());
    if armed.as_deref() == Some(name) {
        eprintln!(
            "dormant: fault point `{name}` reached; aborting as asked by DORMANT_FAULT_POINT"
        );
        std::process::abort();
    }
}
