//! STUB, replaced by the real module on merge.
use std::path::{Path, PathBuf};

pub struct Tree {
    pub name: String,
    pub dir: PathBuf,
    pub kind: TreeKind,
}
pub enum TreeKind {
    OverlayUpper,
    Plain,
}
pub struct SnapshotInfo {
    pub bytes: u64,
    pub files: u64,
    pub sha256: String,
}
pub struct RestoreStats {
    pub files: u64,
}
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("checksum")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("other")]
    Other,
}
pub fn write(
    _trees: &[Tree],
    _final_path: &Path,
    _progress: Progress,
) -> Result<SnapshotInfo, SnapshotError> {
    Err(SnapshotError::Other)
}
pub fn restore(
    _path: &Path,
    _expected_sha256: &str,
    _trees: &[Tree],
    _progress: Progress,
) -> Result<RestoreStats, SnapshotError> {
    Err(SnapshotError::Other)
}
pub fn remove_partial_files(_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(vec![])
}
