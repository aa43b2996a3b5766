//! Making restored trees durable after the restore returned: every regular file and directory
//! beneath them is fsynced, by a few threads at once, without following any symlink.
//!
//! `syncfs` would be one call, but it writes back every dirty page of Docker's filesystem,
//! other containers' and unrelated programs' included, so its latency is anyone's guess. One
//! fsync after another costs a disk cache flush each (2.7 ms here: 102 s for the 25,000 files
//! of the throughput test); fsyncs in flight together share their flushes and journal commits.
//!
//! The trees are walked rather than listed by the restore so that a start-up after a crash
//! finishes the same job from the disk alone. By then the container may run: a file it put in
//! place of a restored one is opened only after its type is checked on the very inode opened
//! (`O_PATH`, then reopened through `/proc/self/fd`), so a device node is never opened.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

use super::{io_err, SnapshotError, Tree};

/// Fsyncs in flight at once. Measured here (ext4 on virtio, release build, medians of 5): a
/// restore of 2,000 files took 0.53 s with 64 threads (1.14 s with 1 GB of unrelated dirty
/// data) where `syncfs` took 0.78 s (2.20 s); 16 threads were slower on 25,000 files.
const THREADS: usize = 64;
/// Files waiting for a thread; the walk waits when this many are queued, which bounds the
/// files held open.
const QUEUE: usize = 256;
/// Directories held open at once while walking (one per level): a tree deeper than this is
/// refused rather than exhausting the process's file descriptors.
const MAX_DEPTH: usize = 512;

/// What [`make_durable`] fsynced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurableStats {
    pub files: u64,
    pub dirs: u64,
}

/// Fsyncs every regular file and directory beneath each tree's dir, the dir itself and its
/// parent. Entries that vanish or change type while walked are skipped: whoever removed or
/// replaced them owns them now.
pub fn make_durable(trees: &[Tree]) -> Result<DurableStats, SnapshotError> {
    let mut syncer = Syncer::new();
    let mut stats = DurableStats::default();
    for tree in trees {
        if let Some(parent) = tree.dir.parent() {
            syncer.push_dir(parent)?;
        }
        walk(&tree.dir, &mut syncer, &mut stats)?;
    }
    syncer.finish()?;
    Ok(stats)
}

/// Depth first, one open directory per level.
fn walk(root: &Path, syncer: &mut Syncer, stats: &mut DurableStats) -> Result<(), SnapshotError> {
    let Some(fd) = open_dir(CWD, root.as_os_str().as_encoded_bytes(), root)? else {
        return Ok(());
    };
    let mut stack = vec![(enter(fd, root, syncer, stats)?, root.to_path_buf())];
    loop {
        let depth = stack.len();
        let Some((dir, path)) = stack.last_mut() else {
            return Ok(());
        };
        let Some(entry) = dir.next() else {
            stack.pop();
            continue;
        };
        let entry = entry.map_err(|e| io_err(path, e.into()))?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let at = path.join(OsStr::from_bytes(name.to_bytes()));
        let dirfd = dir.fd().map_err(|e| io_err(path, e.into()))?;
        let kind = match entry.file_type() {
            FileType::Unknown => match rfs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(io_err(&at, e.into())),
            },
            known => known,
        };
        match kind {
            FileType::Directory => {
                if depth >= MAX_DEPTH {
                    let why = format!("deeper than {MAX_DEPTH} levels");
                    return Err(io_err(&at, std::io::Error::other(why)));
                }
                if let Some(fd) = open_dir(dirfd, name.to_bytes(), &at)? {
                    let dir = enter(fd, &at, syncer, stats)?;
                    stack.push((dir, at));
                }
            }
            FileType::RegularFile => {
                if let Some(file) = open_regular(dirfd, name, &at)? {
                    stats.files += 1;
                    syncer.push(&at, file)?;
                }
            }
            // Symlinks, whiteouts, FIFOs, sockets: their directory entry is the directory's.
            _ => {}
        }
    }
}

/// Queues an open directory for fsync and returns it, ready to be read.
fn enter(
    fd: OwnedFd,
    path: &Path,
    syncer: &mut Syncer,
    stats: &mut DurableStats,
) -> Result<Dir, SnapshotError> {
    let io = |e: std::io::Error| io_err(path, e);
    let for_sync = fd.try_clone().map_err(io)?;
    syncer.push(path, File::from(for_sync))?;
    stats.dirs += 1;
    Dir::new(fd).map_err(|e| io(e.into()))
}

/// A directory, never through a symlink; `None` if it is gone or no longer a directory.
fn open_dir(
    at: impl AsFd,
    name: impl rustix::path::Arg,
    path: &Path,
) -> Result<Option<OwnedFd>, SnapshotError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rfs::openat(at, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(None),
        Err(e) => Err(io_err(path, e.into())),
    }
}

/// A regular file, opened for fsync only once the inode behind the name is known to be one;
/// `None` if it is gone or is something else now.
fn open_regular(at: impl AsFd, name: &CStr, path: &Path) -> Result<Option<File>, SnapshotError> {
    let io = |e: Errno| io_err(path, e.into());
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let handle = match rfs::openat(at, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let st = rfs::fstat(&handle).map_err(io)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    let again = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&handle));
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let fd = rfs::openat(CWD, again.as_str(), flags, Mode::empty()).map_err(io)?;
    Ok(Some(File::from(fd)))
}

/// Files and directories on their way to disk.
struct Syncer {
    queue: Option<SyncSender<(PathBuf, File)>>,
    threads: Vec<JoinHandle<()>>,
    /// The first fsync that failed.
    failed: Arc<Mutex<Option<SnapshotError>>>,
}

impl Syncer {
    /// Starts the threads (on the first file, so a walk that finds none starts none).
    fn new() -> Self {
        Syncer {
            queue: None,
            threads: Vec::new(),
            failed: Arc::new(Mutex::new(None)),
        }
    }

    /// Queues a directory, by path, for fsync.
    fn push_dir(&mut self, dir: &Path) -> Result<(), SnapshotError> {
        match open_dir(CWD, dir.as_os_str().as_encoded_bytes(), dir)? {
            Some(fd) => self.push(dir, File::from(fd)),
            None => Ok(()),
        }
    }

    fn push(&mut self, path: &Path, file: File) -> Result<(), SnapshotError> {
        let queue = match &self.queue {
            Some(queue) => queue,
            None => self.start(),
        };
        // The threads only stop once the queue is closed, so this fails only if one panicked.
        queue
            .send((path.to_path_buf(), file))
            .map_err(|_| io_err(path, std::io::Error::other("the fsync threads stopped")))
    }

    /// Waits until everything queued is fsynced; the first failure, if any.
    fn finish(mut self) -> Result<(), SnapshotError> {
        self.stop();
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner()).take();
        failed.map_or(Ok(()), Err)
    }

    fn start(&mut self) -> &SyncSender<(PathBuf, File)> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..THREADS {
            let (rx, failed) = (rx.clone(), self.failed.clone());
            self.threads
                .push(std::thread::spawn(move || fsync_all(&rx, &failed)));
        }
        self.queue.insert(tx)
    }

    fn stop(&mut self) {
        self.queue = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Syncer {
    /// A failed walk still waits for its threads: none outlives it.
    fn drop(&mut self) {
        self.stop();
    }
}

/// One thread's loop: fsync what comes until the queue closes; keep the first error.
fn fsync_all(queue: &Mutex<Receiver<(PathBuf, File)>>, failed: &Mutex<Option<SnapshotError>>) {
    loop {
        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((path, file)) = next else {
            return;
        };
        if let Err(e) = file.sync_all() {
            failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(io_err(&path, e));
        }
    }
}
