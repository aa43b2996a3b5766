//! The README's walk-through, run as written, so it cannot drift from what the binary does.
//!
//! The test reads README.md, takes the commands of the walk-through's `sh` blocks in order, runs
//! each with `sh -c` against a `dormant serve` of its own (which generates its admin token, found
//! by the client commands through the data dir), and checks what each `# comment` promises.
//! What it changes in the README's text, and why:
//!
//! | the README says                    | the test runs                                  | why                          |
//! |------------------------------------|------------------------------------------------|------------------------------|
//! | `cargo run --release --`           | the `dormant` binary under test                | no build inside a test       |
//! | `alice`                            | `alice-<unique>`                               | runs share one Docker daemon |
//! | `:8080` (the proxy)                | `:<the test's proxy port>`                     | free ports                   |
//! | the API at `127.0.0.1:7070`        | `DORMANT_URL=http://<the test's API address>`  | free ports                   |
//! | `./dormant-data` (the token)       | `DORMANT_DATA_DIR=<the test's data dir>`       | its own state                |
//! | `--idle-timeout 30s`, "30 seconds" | `--idle-timeout 3s`; commands that only look (`ls`, `docker ps`) are retried until their promise holds, 90 s at most | a short test |
//!
//! Every substitution must apply somewhere and every comment must be one this test knows how to
//! check: a README that changes makes this test fail until the test is taught the new text.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{unique, Dormant};

/// The heading of the walk-through section in README.md.
const SECTION: &str = "## A one-minute walk-through";
const README_IDLE: &str = "--idle-timeout 30s";
const TEST_IDLE: &str = "--idle-timeout 3s";
/// How long a command that only looks is retried for its promise (the idle sweep, a slow CI).
const LOOK_AGAIN_FOR: Duration = Duration::from_secs(90);

/// One line of a walk-through code block: the command and what its comment promises.
#[derive(Debug)]
struct Step {
    command: String,
    promise: Option<String>,
}

/// The commands of the walk-through's `sh` blocks, in order.
fn walkthrough_steps(readme: &str) -> Vec<Step> {
    let start = readme
        .find(SECTION)
        .unwrap_or_else(|| panic!("README.md has no `{SECTION}` section"));
    let section = &readme[start + SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut steps = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => in_block = true,
            "```" => in_block = false,
            "" => {}
            text if in_block => {
                let (command, promise) = match text.split_once(" # ") {
                    Some((command, promise)) => (command, Some(promise.trim().to_owned())),
                    None => (text, None),
                };
                steps.push(Step {
                    command: command.trim().to_owned(),
                    promise,
                });
            }
            _ => {}
        }
    }
    assert!(
        steps.len() >= 10,
        "the walk-through has only {} commands: {steps:?}",
        steps.len()
    );
    steps
}

/// Applies the substitutions of the table above; each must apply at least once.
fn substitute(steps: &mut [Step], replacements: &[(&str, String)]) {
    for (from, to) in replacements {
        let mut applied = false;
        for step in steps.iter_mut() {
            applied |= step.command.contains(from);
            step.command = step.command.replace(from, to);
            if let Some(promise) = &mut step.promise {
                *promise = promise.replace(from, to);
            }
        }
        assert!(
            applied,
            "no walk-through command contains `{from}`: update the table in walkthrough.rs"
        );
    }
}

/// The cells of each table row (columns are separated by two or more spaces).
fn table(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The `ls` cell under `column` of the row for `name`.
fn ls_cell(output: &str, name: &str, column: &str) -> Result<String, String> {
    let rows = table(output);
    let header = rows.first().ok_or("no output")?;
    let at = header
        .iter()
        .position(|h| h == column)
        .ok_or_else(|| format!("no column {column}"))?;
    let row = rows
        .iter()
        .find(|row| row.first().map(String::as_str) == Some(name))
        .ok_or_else(|| format!("no row for {name}"))?;
    row.get(at)
        .cloned()
        .ok_or_else(|| format!("the row for {name} has no {column}"))
}

/// Checks the output of `command` against its comment's promise.
fn check(command: &str, promise: &str, output: &str) -> Result<(), String> {
    let words: Vec<&str> = promise.split_whitespace().collect();
    let is_ls = command.contains(" ls");
    if let Some(image) = promise.strip_prefix("builds ") {
        let image = image.split_whitespace().next().unwrap_or_default();
        return output
            .contains(image)
            .then_some(())
            .ok_or_else(|| format!("does not say it built {image}"));
    }
    if command.starts_with("curl ") {
        // `hello from <container id> ...` promises a prefix; `my notes  (how)` the whole body.
        return match promise.split_once('<') {
            Some((prefix, _)) => output
                .starts_with(prefix)
                .then_some(())
                .ok_or_else(|| format!("does not start with `{prefix}`")),
            None => {
                let body = promise.split(" (").next().unwrap_or_default().trim();
                (output.trim() == body)
                    .then_some(())
                    .ok_or_else(|| format!("is not `{body}`"))
            }
        };
    }
    if is_ls {
        let [name, state, ..] = words[..] else {
            return Err(format!("`{promise}` does not say `<name> <state>`"));
        };
        let actual = ls_cell(output, name, "STATE")?;
        if actual != state {
            return Err(format!("{name} is {actual}, not {state}"));
        }
        if promise.contains("LAST WAKE") {
            let wake = ls_cell(output, name, "LAST WAKE")?;
            let ms = wake.strip_suffix(" ms").and_then(|n| n.parse::<u64>().ok());
            ms.ok_or_else(|| format!("LAST WAKE is `{wake}`, not a time in ms"))?;
        }
        if promise.contains("ARCHIVE") {
            let size = ls_cell(output, name, "ARCHIVE")?;
            if !size.ends_with('B') {
                return Err(format!("ARCHIVE is `{size}`, not a size"));
            }
        }
        return Ok(());
    }
    if command.starts_with("docker ps") {
        let rows = output.lines().skip(1).count();
        return match words.first().copied().unwrap_or_default() {
            "Exited" => output
                .contains("Exited")
                .then_some(())
                .ok_or_else(|| "no exited container".to_owned()),
            "nothing:" => (rows == 0)
                .then_some(())
                .ok_or_else(|| format!("{rows} containers remain")),
            other => Err(format!("no check for `{other}`")),
        };
    }
    if command.contains(" archive ") {
        return output
            .contains(promise)
            .then_some(())
            .ok_or_else(|| format!("does not say `{promise}`"));
    }
    Err("this test does not know how to check that promise; teach it".to_owned())
}

/// Runs one command line as a user's shell would; returns its stdout, or why it failed.
fn run(line: &str, dormant: &Dormant, dir: &std::path::Path) -> Result<String, String> {
    let mut command = Command::new("sh");
    command.args(["-c", line]).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DORMANT_") {
            command.env_remove(key);
        }
    }
    let output = command
        .env("DORMANT_URL", format!("http://{}", dormant.api))
        .env("DORMANT_DATA_DIR", &dormant.data_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "exited with {}: {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(stdout)
}

#[test]
fn the_readme_walkthrough_does_what_it_says() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("read README.md");
    let mut steps = walkthrough_steps(&readme);
    // No DORMANT_ADMIN_TOKEN: dormant writes its token to the data dir, where clients find it.
    let dormant = Dormant::start_with_env(&[], &[("DORMANT_ADMIN_TOKEN", "")]);
    let name = unique("alice");
    let binary = env!("CARGO_BIN_EXE_dormant");
    substitute(
        &mut steps,
        &[
            ("cargo run --release --", format!("'{binary}'")),
            ("alice", name.clone()),
            (":8080", format!(":{}", dormant.proxy.port())),
            (README_IDLE, TEST_IDLE.to_owned()),
        ],
    );
    let dir = std::env::temp_dir().join(unique("dormant-walkthrough"));
    std::fs::create_dir_all(&dir).unwrap();

    for step in &steps {
        let looks_only = step.command.contains(" ls") || step.command.starts_with("docker ps");
        let deadline = Instant::now()
            + if looks_only {
                LOOK_AGAIN_FOR
            } else {
                Duration::ZERO
            };
        loop {
            let outcome = run(&step.command, &dormant, &dir).and_then(|output| {
                match &step.promise {
                    Some(promise) => check(&step.command, promise, &output),
                    None => Ok(()),
                }
                .map_err(|why| format!("{why}; the output:\n{output}"))
            });
            match outcome {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250))
                }
                Err(why) => panic!(
                    "the walk-through's `{}` (promising {:?}) failed: {why}",
                    step.command, step.promise
                ),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_promise_of_the_walkthrough_has_a_check() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("read README.md");
    for step in walkthrough_steps(&readme) {
        if let Some(promise) = &step.promise {
            let why = check(&step.command, promise, "").err().unwrap_or_default();
            assert!(
                !why.contains("teach it") && !why.starts_with("no check"),
                "`{}`: {why}",
                step.command
            );
        }
    }
}
