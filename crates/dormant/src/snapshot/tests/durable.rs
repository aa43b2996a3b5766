//! Making restored trees durable: what the walk fsyncs, what it leaves alone, and that it
//! never leaves the tree.

use std::fs;
use std::os::unix::fs::symlink;

use super::super::{self as snapshot, make_durable, DurableStats, Tree, TreeKind};
use super::{fsops, TempDir};

fn tree(dir: std::path::PathBuf) -> Tree {
    Tree {
        name: "rootfs".into(),
        dir,
        kind: TreeKind::OverlayUpper,
    }
}

#[test]
fn every_regular_file_and_directory_is_fsynced_and_nothing_outside() {
    let tmp = TempDir::new("durable");
    let root = tmp.path().join("upper");
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("top"), "1").unwrap();
    fs::write(root.join("a/b/c/deep"), "2").unwrap();
    fs::hard_link(root.join("top"), root.join("a/hard")).unwrap();
    // Outside the tree, reachable only through symlinks: never walked.
    let outside = tmp.path().join("outside");
    fs::create_dir_all(outside.join("d")).unwrap();
    fs::write(outside.join("d/f"), "x").unwrap();
    symlink(&outside, root.join("a/to-outside")).unwrap();
    symlink(outside.join("d/f"), root.join("link-to-file")).unwrap();
    fsops::mkfifo(&root.join("fifo"), 0o600).unwrap();
    fsops::mknod_whiteout(&root.join("gone")).unwrap();

    let stats = make_durable(&[tree(root.clone())]).unwrap();
    // Files: top, deep, hard (a second name of top's inode). Dirs: the root, a, b, c, empty.
    assert_eq!(stats, DurableStats { files: 3, dirs: 5 });

    // A FIFO is never opened (that would block), so a tree of only special files is quick.
    let missing = make_durable(&[tree(tmp.path().join("never-made"))]).unwrap();
    assert_eq!(
        missing,
        DurableStats::default(),
        "a missing tree has nothing to flush"
    );
}

#[test]
fn a_tree_deeper_than_the_limit_is_refused() {
    let tmp = TempDir::new("durable-deep");
    let root = tmp.path().join("upper");
    // Relative creation: the absolute path is longer than PATH_MAX.
    fs::create_dir_all(&root).unwrap();
    let mut at = fs::File::open(&root).unwrap();
    for _ in 0..520 {
        let fd = std::os::fd::AsFd::as_fd(&at);
        rustix::fs::mkdirat(fd, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        let next = rustix::fs::openat(
            fd,
            "d",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        at = fs::File::from(next);
    }
    let err = make_durable(&[tree(root.clone())]).unwrap_err();
    assert!(err.to_string().contains("deeper than 512 levels"), "{err}");
}

#[test]
fn a_restore_then_its_flush_leave_the_files_as_the_snapshot_holds_them() {
    let tmp = TempDir::new("durable-restore");
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f"), "content").unwrap();
    let snap = tmp.path().join("s.snap");
    let info =
        snapshot::write(&[tree(src)], &snap, &super::ANY_FREE, super::no_progress()).unwrap();
    let dst = tree(tmp.path().join("dst"));
    snapshot::restore(
        &snap,
        &info.sha256,
        std::slice::from_ref(&dst),
        &super::ANY_FREE,
        super::no_progress(),
    )
    .unwrap();
    let stats = make_durable(std::slice::from_ref(&dst)).unwrap();
    assert_eq!(stats, DurableStats { files: 1, dirs: 2 });
    assert_eq!(fs::read_to_string(dst.dir.join("d/f")).unwrap(), "content");
}
