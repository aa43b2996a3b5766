//! Container names: what a valid one looks like, and how to make one up.

/// Longest name we accept: short enough to leave room for the base domain in
/// a 63-character DNS label budget and for the Docker name prefix.
pub const MAX_NAME_LEN: usize = 40;

/// Checks `name` is a DNS label `[a-z0-9]([a-z0-9-]*[a-z0-9])?` of at most
/// `MAX_NAME_LEN` characters; the error says what is wrong.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "contains `{bad}`; only lowercase letters, digits and `-` are allowed"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// A fresh random name such as `c-3f9a1b2c`.
pub fn generate_name() -> String {
    format!("c-{}", crate::token::random_hex(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels_only() {
        for ok in ["a", "alice", "a-1", "0", "x".repeat(40).as_str()] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "a-", "Alice", "a_b", "a.b", "é", &"x".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_names_are_valid_and_distinct() {
        let a = generate_name();
        assert_eq!(check_name(&a), Ok(()));
        assert_ne!(a, generate_name());
    }
}
