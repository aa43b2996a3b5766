//! Builds the demo workload into a local image `FROM scratch` (no registry, no compiler needed).
//!
//! The demo is part of `dormant` itself (`dormant demo-serve`), so the image holds this very
//! executable at `/dormant`, the ELF interpreter and the shared objects this process has loaded
//! (at the paths they have here), and a few fixture files. Nothing is pulled: the classic builder
//! resolves `FROM scratch` locally. It works from an installed binary, wherever it lives.

mod loaded;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context as _};
use bollard::query_parameters::{BuildImageOptionsBuilder, RemoveImageOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;

/// The tag `dormant demo-image` gives the image unless told otherwise.
pub const DEFAULT_DEMO_TAG: &str = "dormant-demo:latest";

/// Label put on the demo image, so it can be found and cleaned up.
pub const DEMO_LABEL: (&str, &str) = ("dormant.demo", "true");

/// Where the image holds the `dormant` executable.
const EXECUTABLE: &str = "/dormant";

/// The hidden subcommand that runs the demo workload.
const DEMO_SUBCOMMAND: &str = "demo-serve";

/// Files the image holds under `/srv/fixtures`.
const FIXTURES: [(&str, &str); 4] = [
    ("keep.txt", "from the image\n"),
    ("delete-me.txt", "from the image, to be deleted\n"),
    (
        "dir-to-file/inner.txt",
        "a directory the user replaces with a file\n",
    ),
    (
        "opaque-dir/old.txt",
        "a directory the user deletes and makes again\n",
    ),
];

/// Turns this executable and what it loaded into a local image named `tag`. The image `tag`
/// named before, when it was an older demo image, is removed unless something still uses it.
pub async fn build_demo_image(docker: &Docker, tag: &str) -> anyhow::Result<()> {
    let context = tokio::task::spawn_blocking(build_context)
        .await
        .context("build context task panicked")??;
    let previous = docker.inspect_image(tag).await.ok().and_then(|i| i.id);

    let labels = HashMap::from([DEMO_LABEL]);
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .build();
    let mut progress = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = progress.next().await {
        let info = item.map_err(|e| anyhow::anyhow!("docker build of {tag} failed: {e}"))?;
        if let Some(detail) = info.error_detail {
            let msg = detail.message.unwrap_or_else(|| "unknown error".into());
            bail!("docker build of {tag} failed: {msg}");
        }
        if let Some(line) = info
            .stream
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            tracing::debug!(target: "dormant::demo_image", "{line}");
        }
    }

    let image = docker
        .inspect_image(tag)
        .await
        .with_context(|| format!("docker build reported success but image {tag} is missing"))?;
    let id = image.id.unwrap_or_default();
    if let Some(old) = previous.filter(|old| *old != id) {
        remove_replaced(docker, &old).await;
    }
    tracing::info!(tag, id, "built demo image");
    Ok(())
}

/// Removes the demo image a new build replaced (each rebuild of `dormant` would otherwise leave
/// a copy of the executable behind). Only demo images, and never one a container still uses:
/// Docker refuses that without `force`, and the refusal is fine.
async fn remove_replaced(docker: &Docker, old: &str) {
    let is_demo = docker.inspect_image(old).await.ok().is_some_and(|image| {
        image.config.and_then(|c| c.labels).is_some_and(|labels| {
            labels.get(DEMO_LABEL.0).map(String::as_str) == Some(DEMO_LABEL.1)
        })
    });
    if !is_demo {
        return;
    }
    let options = RemoveImageOptionsBuilder::default().force(false).build();
    if let Err(e) = docker.remove_image(old, Some(options), None).await {
        tracing::debug!(image = old, "kept the replaced demo image: {e}");
    }
}

/// Makes the in-memory tar build context: the Dockerfile and, under `rootfs/`, the executable,
/// the interpreter, the shared objects and the fixtures.
fn build_context() -> anyhow::Result<Vec<u8>> {
    let loaded = loaded::this_process()?;
    let mut tar = tar::Builder::new(Vec::new());
    let library_dirs: BTreeSet<String> = loaded
        .shared_objects
        .iter()
        .filter_map(|path| path.parent())
        .map(|dir| dir.to_string_lossy().into_owned())
        .collect();
    append(
        &mut tar,
        "Dockerfile",
        0o644,
        dockerfile(&library_dirs)?.as_bytes(),
    )?;
    append(&mut tar, &rootfs(EXECUTABLE), 0o755, &loaded.executable)?;
    for path in &loaded.shared_objects {
        let data = std::fs::read(path)
            .with_context(|| format!("reading the shared object {}", path.display()))?;
        append(&mut tar, &rootfs(&path.to_string_lossy()), 0o755, &data)?;
    }
    if let Some(interpreter) = &loaded.interpreter {
        add_interpreter(&mut tar, interpreter, &loaded.shared_objects)?;
    }
    // Files that come from the image, so tests can change and delete them.
    for (name, text) in FIXTURES {
        let path = rootfs(&format!("/srv/fixtures/{name}"));
        append(&mut tar, &path, 0o644, text.as_bytes())?;
    }
    tar.into_inner().context("finishing the build context tar")
}

/// The kernel opens the interpreter by the path written in the executable, which is often a
/// symlink (`/lib64/ld-linux-x86-64.so.2`) to the file mapped here: the same link goes in the
/// image. An interpreter not seen among the mappings is copied there whole.
fn add_interpreter(
    tar: &mut tar::Builder<Vec<u8>>,
    interpreter: &str,
    shared_objects: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    let real = std::fs::canonicalize(interpreter)
        .with_context(|| format!("resolving the ELF interpreter {interpreter}"))?;
    if real == Path::new(interpreter) && shared_objects.contains(&real) {
        return Ok(());
    }
    if shared_objects.contains(&real) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_mtime(0);
        return tar
            .append_link(&mut header, rootfs(interpreter), &real)
            .with_context(|| format!("adding the link {interpreter} to the build context"));
    }
    let data = std::fs::read(&real)
        .with_context(|| format!("reading the ELF interpreter {}", real.display()))?;
    append(tar, &rootfs(interpreter), 0o755, &data)
}

/// The Dockerfile. `LD_LIBRARY_PATH` names the directories the shared objects came from, so
/// they are found even where this host found them through its `ld.so.cache` (which the image
/// lacks).
fn dockerfile(library_dirs: &BTreeSet<String>) -> anyhow::Result<String> {
    let mut text = String::from("FROM scratch\nCOPY rootfs/ /\n");
    if !library_dirs.is_empty() {
        if let Some(odd) = library_dirs.iter().find(|dir| {
            !dir.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._+-@".contains(c))
        }) {
            bail!("the shared objects' directory `{odd}` has characters a Dockerfile ENV cannot hold plainly");
        }
        let dirs: Vec<&str> = library_dirs.iter().map(String::as_str).collect();
        text.push_str(&format!("ENV LD_LIBRARY_PATH={}\n", dirs.join(":")));
    }
    text.push_str(&format!(
        "EXPOSE 8080\nENTRYPOINT [\"{EXECUTABLE}\", \"{DEMO_SUBCOMMAND}\"]\n"
    ));
    Ok(text)
}

/// Where the file at `path` in the image goes in the build context.
fn rootfs(path: &str) -> String {
    format!("rootfs/{}", path.trim_start_matches('/'))
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    mode: u32,
    data: &[u8],
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0); // deterministic context, so the builder's cache can hit
    header.set_cksum();
    tar.append_data(&mut header, name, data)
        .with_context(|| format!("adding {name} to the build context"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dockerfile_runs_the_demo_with_the_library_dirs() {
        let dirs = BTreeSet::from([
            "/usr/lib/x86_64-linux-gnu".to_owned(),
            "/usr/local/lib".to_owned(),
        ]);
        let text = dockerfile(&dirs).unwrap();
        assert!(text.starts_with("FROM scratch\n"), "{text}");
        assert!(
            text.contains("ENV LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:/usr/local/lib\n"),
            "{text}"
        );
        assert!(
            text.contains("ENTRYPOINT [\"/dormant\", \"demo-serve\"]"),
            "{text}"
        );
        assert!(text.contains("EXPOSE 8080"), "{text}");
        assert!(
            !dockerfile(&BTreeSet::new()).unwrap().contains("ENV"),
            "a static executable"
        );
        let odd = BTreeSet::from(["/opt/my libs\nRUN x".to_owned()]);
        assert!(dockerfile(&odd).is_err());
    }

    #[test]
    fn the_entrypoint_runs_the_demo_with_its_flags_untouched() {
        use clap::Parser;
        let flags = ["--exit-immediately", "--port", "9", "--help"];
        let args = std::iter::once("dormant")
            .chain(std::iter::once(DEMO_SUBCOMMAND))
            .chain(flags);
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        assert!(
            matches!(&cli.command, crate::cli::Command::DemoServe { args } if args == &flags),
            "{:?}",
            cli.command
        );
    }

    #[test]
    fn the_context_holds_the_executable_its_libraries_and_the_fixtures() {
        let context = build_context().unwrap();
        let mut archive = tar::Archive::new(context.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        for expected in [
            "Dockerfile",
            "rootfs/dormant",
            "rootfs/srv/fixtures/keep.txt",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing: {names:?}"
            );
        }
        assert!(names.iter().any(|n| n.contains("libc.so")), "{names:?}");
    }
}
