//! Parsing and printing the quantities people type: memory sizes.

/// Parses a memory size: bytes (`1048576`) or a number with a binary unit
/// `k`, `m`, `g` (optionally followed by `b`/`ib`, any case): `512m`, `1.5g`.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write e.g. `512m` or `2g`"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("`{other}` is not a size unit; use k, m or g")),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes as u64)
}

/// Prints a byte count the way `parse_memory` reads it, exact when possible.
pub fn format_memory(bytes: u64) -> String {
    for (unit, size) in [("g", 1u64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if bytes >= size && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings() {
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("512MiB"), Ok(512 << 20));
        assert_eq!(parse_memory("1.5g"), Ok(3 << 29));
        assert_eq!(parse_memory("4096"), Ok(4096));
        assert_eq!(parse_memory(" 2G "), Ok(2 << 30));
        assert!(parse_memory("").is_err());
        assert!(parse_memory("m").is_err());
        assert!(parse_memory("12x").is_err());
        assert!(parse_memory("0").is_err());
        assert!(parse_memory("-1m").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for bytes in [512 << 20, 1 << 30, 1536, 1000] {
            assert_eq!(parse_memory(&format_memory(bytes)), Ok(bytes));
        }
        assert_eq!(format_memory(256 << 20), "256m");
    }
}
