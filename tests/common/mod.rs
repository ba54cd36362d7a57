//! Helpers shared by the test files: temporary spec files, and the report
//! a failing assertion shows.
// Each test file that includes this module uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A fresh directory under the system's temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dlverify-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes a file in the directory and gives its path as a string.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The directory's path as a command-line argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The verbose human report of one file, for assertion messages.
pub fn render(outcome: &dlverify::verify::outcome::FileOutcome) -> String {
    dlverify::report::human::render(
        std::slice::from_ref(outcome),
        dlverify::report::human::HumanOptions {
            verbose: true,
            ..Default::default()
        },
    )
}

/// The `*.dl` files of a directory of the crate (`specs`, `tests/corpus`),
/// sorted by name.
pub fn specs_in(dir: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dl"))
        .collect();
    paths.sort();
    paths
}

pub mod random_layer;
