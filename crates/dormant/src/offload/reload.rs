//! Running `--nginx-reload`: the command, bounded in time, with what it
//! wrote to stderr kept for the log when it fails.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// Longest a reload command may run before it is killed and counted failed.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Most stderr kept from one failed reload.
const STDERR_KEPT: usize = 4096;

/// Runs `command` with `sh -c`. `Err` says why it failed, with its exit
/// status and stderr.
pub async fn run(command: &str) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run `sh -c {command:?}`: {e}"))?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let finished = tokio::time::timeout(RELOAD_TIMEOUT, async {
        let mut kept = Vec::new();
        // Read it all (so the command never blocks on a full pipe), keep
        // the start.
        let mut chunk = [0u8; 1024];
        loop {
            match stderr.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = STDERR_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
        (child.wait().await, kept)
    })
    .await;
    match finished {
        Err(_) => Err(format!(
            "`{command}` did not finish within {RELOAD_TIMEOUT:?} and was killed"
        )),
        Ok((Err(e), _)) => Err(format!("cannot wait for `{command}`: {e}")),
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), stderr)) => Err(format!(
            "`{command}` failed ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failure_says_the_status_and_stderr() {
        assert_eq!(run("true").await, Ok(()));
        let why = run("echo 'nginx: [emerg] bad map' >&2; exit 3")
            .await
            .unwrap_err();
        assert!(why.contains("exit status: 3"), "{why}");
        assert!(why.contains("nginx: [emerg] bad map"), "{why}");
    }
}
