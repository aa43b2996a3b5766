//! The key that signs session cookies: 32 random bytes in the data dir
//! (`session.key`, 0600), made once and kept across restarts so sessions
//! outlive them. Deleting the file signs everyone out at the next start.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// File name of the session signing key inside the data dir.
pub const SESSION_KEY_FILE: &str = "session.key";
/// Bytes in the key: HMAC-SHA256's block of security.
pub const KEY_LEN: usize = 32;

/// Where the key came from, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Generated(PathBuf),
}

/// The key kept in `data_dir`, or a new one written there.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<([u8; KEY_LEN], KeySource)> {
    let path = data_dir.join(SESSION_KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "the session key {} holds {} bytes, not {KEY_LEN}; remove it to make a new one (everyone signed in through a login link is signed out)",
                    path.display(),
                    bytes.len()
                )
            })?;
            return Ok((key, KeySource::File(path)));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the session key {}", path.display()))
        }
    }
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key)
        .map_err(|e| anyhow::anyhow!("the OS random generator failed: {e}"))?;
    // Written whole under another name and renamed, so a crash never
    // leaves a short key behind.
    let partial = data_dir.join(format!("{SESSION_KEY_FILE}.partial"));
    crate::data_dir::write_private(&partial, &key)
        .and_then(|()| std::fs::rename(&partial, &path))
        .with_context(|| format!("cannot write the session key {}", path.display()))?;
    Ok((key, KeySource::Generated(path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_made_once_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("dormant-key-{}", crate::token::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let (first, source) = load_or_create(&dir).unwrap();
        assert!(matches!(source, KeySource::Generated(_)));
        let path = dir.join(SESSION_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (second, source) = load_or_create(&dir).unwrap();
        assert_eq!(source, KeySource::File(path.clone()));
        assert_eq!(first, second);
        assert_ne!(first, [0u8; KEY_LEN]);

        std::fs::write(&path, b"short").unwrap();
        let err = load_or_create(&dir).unwrap_err().to_string();
        assert!(
            err.contains("5 bytes") && err.contains("remove it"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
