//! Builds the demo workload into a local image `FROM scratch` (no registry needed).
//!
//! The image holds one file, the statically linked `dormant-demo` binary, so nothing is ever
//! pulled: the classic builder resolves `FROM scratch` locally. The binary is either given or
//! built from this workspace with its own `--target-dir`, so a `cargo test` in progress (which
//! holds the lock on `target/`) cannot deadlock against it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

/// The tag `dormant demo-image` gives the image unless told otherwise.
pub const DEFAULT_DEMO_TAG: &str = "dormant-demo:latest";

/// Label put on the demo image, so it can be found and cleaned up.
pub const DEMO_LABEL: (&str, &str) = ("dormant.demo", "true");

const DOCKERFILE: &str = "FROM scratch\n\
COPY dormant-demo /dormant-demo\n\
COPY fixtures /srv/fixtures\n\
EXPOSE 8080\n\
ENTRYPOINT [\"/dormant-demo\"]\n";

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

/// Builds (or finds) the static demo binary and turns it into a local image named `tag`.
pub async fn build_demo_image(
    docker: &Docker,
    tag: &str,
    binary: Option<&Path>,
) -> anyhow::Result<()> {
    let binary = match binary {
        Some(path) => path.to_path_buf(),
        None => tokio::task::spawn_blocking(build_static_demo_binary)
            .await
            .context("demo binary build task panicked")??,
    };
    let context = tokio::task::spawn_blocking(move || build_context(&binary))
        .await
        .context("build context task panicked")??;

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
    tracing::info!(tag, id, "built demo image");
    Ok(())
}

/// Makes the in-memory tar build context: the Dockerfile and the binary (mode 0755).
fn build_context(binary: &Path) -> anyhow::Result<Vec<u8>> {
    let content = std::fs::read(binary)
        .with_context(|| format!("reading demo binary {}", binary.display()))?;
    check_static_elf(&content).with_context(|| {
        format!(
            "{} cannot run in a FROM scratch image; build it static with \
             RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release -p dormant-demo \
             --target {}",
            binary.display(),
            host_target()
        )
    })?;
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "Dockerfile", 0o644, DOCKERFILE.as_bytes())?;
    append(&mut tar, "dormant-demo", 0o755, &content)?;
    // Files that come from the image, so tests can change and delete them.
    for (name, text) in FIXTURES {
        append(
            &mut tar,
            &format!("fixtures/{name}"),
            0o644,
            text.as_bytes(),
        )?;
    }
    tar.into_inner().context("finishing the build context tar")
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

/// Fails unless `elf` is a 64-bit little-endian ELF executable without a program interpreter
/// (a dynamically linked binary dies with "no such file or directory" in an empty image).
fn check_static_elf(elf: &[u8]) -> anyhow::Result<()> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        bail!("not a 64-bit little-endian ELF executable");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let at = phoff.saturating_add(i.saturating_mul(phentsize));
        let Some(p_type) = elf.get(at..at + 4) else {
            bail!("truncated ELF program headers");
        };
        if u32::from_le_bytes(p_type.try_into().expect("4 bytes")) == PT_INTERP {
            bail!("it is dynamically linked (it has an ELF program interpreter)");
        }
    }
    Ok(())
}

/// The Rust target the demo is built for: this machine's architecture, GNU libc, linked static.
fn host_target() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// Runs `RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p dormant-demo
/// --target <arch>-unknown-linux-gnu --target-dir <root>/target/demo` in this workspace and
/// returns the binary's path. Needs the source tree this `dormant` was built from.
pub fn build_static_demo_binary() -> anyhow::Result<PathBuf> {
    // CARGO_MANIFEST_DIR is <root>/crates/dormant.
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.ancestors().nth(2).unwrap_or(manifest_dir);
    let target = host_target();
    if !root.join("crates/demo/Cargo.toml").is_file() {
        bail!(
            "the dormant workspace ({}) is not here to build the demo from; build it yourself \
             with RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release \
             -p dormant-demo --target {target} and pass the binary with --binary PATH",
            root.display()
        );
    }
    let root = root
        .canonicalize()
        .context("resolving the workspace root")?;
    let target_dir = root.join("target/demo");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args([
            "build",
            "--release",
            "-p",
            "dormant-demo",
            "--target",
            &target,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .with_context(|| {
            format!(
                "running {} (is cargo installed? else build the demo yourself and pass --binary)",
                Path::new(&cargo).display()
            )
        })?;
    if !status.success() {
        bail!(
            "building the static demo binary failed ({status}); if the {target} target or a \
             static libc (libc6-dev / glibc-static) is missing, install it or build the demo \
             elsewhere and pass --binary PATH"
        );
    }
    let binary = target_dir.join(&target).join("release/dormant-demo");
    if !binary.is_file() {
        bail!("cargo succeeded but {} is missing", binary.display());
    }
    Ok(binary)
}
