//! Fuzz target: restoring a snapshot from arbitrary bytes into a scratch dir. Restore may refuse,
//! but must never panic and never write outside its targets.
//!
//! Input: one mode byte, then the snapshot. Mode odd: the rest is the tar inside the snapshot
//! (compressed here, so the fuzzer explores tar entries rather than zstd frames); even: the rest
//! is the snapshot file itself. The checksum is computed here, so restore reads past its check.
#![no_main]

use std::path::{Path, PathBuf};

use dormant::snapshot::{restore, Options, Tree, TreeKind};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let snapshot = if mode % 2 == 1 {
        match zstd::encode_all(rest, 1) {
            Ok(compressed) => compressed,
            Err(_) => return,
        }
    } else {
        rest.to_vec()
    };
    let sandbox = Sandbox::new();
    let file = sandbox.root.join("snapshot.tar.zst");
    std::fs::write(&file, &snapshot).expect("write the snapshot");
    let sha256: String = Sha256::digest(&snapshot)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let targets = sandbox.root.join("targets");
    let trees = [
        Tree {
            name: "rootfs".into(),
            dir: targets.join("rootfs"),
            kind: TreeKind::OverlayUpper,
        },
        Tree {
            name: "volumes/0".into(),
            dir: targets.join("volumes/0"),
            kind: TreeKind::Plain,
        },
    ];
    // No free-disk floor: a scratch dir on tmpfs is small, and the reader is what is fuzzed.
    let options = Options { min_free_disk: 0 };
    let _ = restore(&file, &sha256, &trees, &options, &|_| {});
    sandbox.assert_only_targets_changed(&file, &targets);
});

/// A scratch dir per run: `<tmp>/dormant-fuzz-<pid>/{snapshot.tar.zst, targets/, outside/}`.
/// `outside/` is a canary the restore must never touch; the sandbox is removed after each run.
struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let root = std::env::temp_dir().join(format!("dormant-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("outside")).expect("make the sandbox");
        Self { root }
    }

    /// Panics when anything but the snapshot and the targets' contents exists in the sandbox,
    /// counting a write from one target into another (`rootfs/../volumes/0/x`).
    fn assert_only_targets_changed(&self, snapshot: &Path, targets: &Path) {
        let outside = self.root.join("outside");
        let allowed: [(&Path, &[&Path]); 3] = [
            (&self.root, &[snapshot, targets, &outside]),
            (
                targets,
                &[&targets.join("rootfs"), &targets.join("volumes")],
            ),
            (&targets.join("volumes"), &[&targets.join("volumes/0")]),
        ];
        for (dir, expected) in allowed {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue; // restore refused before making it
            };
            for entry in entries {
                let path = entry.expect("list the sandbox").path();
                assert!(
                    expected.contains(&path.as_path()),
                    "restore wrote {} outside its targets",
                    path.display()
                );
            }
        }
        let canary = std::fs::read_dir(&outside)
            .expect("list the canary")
            .count();
        assert_eq!(canary, 0, "restore wrote into {}", outside.display());
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.root).is_ok() {
            return;
        }
        // Not root: restore may have left read-only dirs behind; open them up and try again.
        make_writable(&self.root);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&entry.path());
        }
    }
}
