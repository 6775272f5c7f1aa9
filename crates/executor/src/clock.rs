//! The workspace's one wall-clock read in milliseconds. It lives here because this is the
//! lowest crate allowed to read clocks (flotilla-types and the scheduler take time as an
//! argument); the control loop and the node use it from here.

/// Wall-clock milliseconds since the Unix epoch (0 for a clock before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
