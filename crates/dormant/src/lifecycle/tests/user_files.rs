//! The user's files as the harness sees them: what a user wrote in a
//! container's writable layer or volume, and the snapshot files on disk.

use std::path::PathBuf;

use super::harness::Harness;
use crate::domain::volume_name;

impl Harness {
    pub fn snapshot_dir(&self) -> PathBuf {
        self.data_dir().join("snapshots")
    }

    /// Snapshot files on disk, sorted.
    pub fn snapshot_files(&self) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(self.snapshot_dir())
            .expect("read the snapshot dir")
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        files.sort();
        files
    }

    /// Writes what a user would: `path` under `/data` goes to the volume,
    /// anything else to the writable layer.
    pub fn write_file(&self, name: &str, path: &str, content: &str) {
        let file = self.file_path(name, path);
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
        std::fs::write(file, content).expect("write a user's file");
    }

    /// What the user's file holds now, if it exists.
    pub fn read_file(&self, name: &str, path: &str) -> Option<String> {
        std::fs::read_to_string(self.file_path(name, path)).ok()
    }

    fn file_path(&self, name: &str, path: &str) -> PathBuf {
        let path = path.trim_start_matches('/');
        match path.strip_prefix("data/") {
            Some(rest) => self
                .fake()
                .volume(&volume_name(name, 0))
                .expect("the container's volume")
                .join(rest),
            None => self
                .fake()
                .container(name)
                .expect("the container in Docker")
                .upper_dir
                .join(path),
        }
    }
}
