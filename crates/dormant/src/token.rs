//! Secrets and random names: the admin token and random identifiers.

use std::path::{Path, PathBuf};

/// `len` random bytes as lowercase hex, from the OS's secure generator.
pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// File name of the generated admin token inside the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Where the admin token came from, for the start-up log.
pub enum TokenSource {
    Env,
    File(PathBuf),
    Generated(PathBuf),
}

/// The admin token: `from_env` when set, else the token kept in the data dir,
/// else a new one written there with mode 0600.
pub fn load_or_create_admin_token(
    from_env: Option<String>,
    data_dir: &Path,
) -> anyhow::Result<(String, TokenSource)> {
    if let Some(token) = from_env.filter(|t| !t.trim().is_empty()) {
        return Ok((token.trim().to_owned(), TokenSource::Env));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        // Its mode was made private with the rest of the data dir (`data_dir::prepare`).
        Ok(token) if !token.trim().is_empty() => {
            return Ok((token.trim().to_owned(), TokenSource::File(path)));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read the admin token at {}: {e}", path.display()),
    }
    let token = random_hex(24);
    crate::data_dir::write_private(&path, format!("{token}\n").as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write the admin token to {}: {e}", path.display()))?;
    Ok((token, TokenSource::Generated(path)))
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_token_is_kept_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("dormant-token-test-{}", random_hex(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let (first, source) = load_or_create_admin_token(None, &dir).unwrap();
        assert!(matches!(source, TokenSource::Generated(_)));
        let mode = std::fs::metadata(dir.join(ADMIN_TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (second, source) = load_or_create_admin_token(None, &dir).unwrap();
        assert!(matches!(source, TokenSource::File(_)));
        assert_eq!(first, second);
        let (env, _) = load_or_create_admin_token(Some("s3cret".into()), &dir).unwrap();
        assert_eq!(env, "s3cret");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
