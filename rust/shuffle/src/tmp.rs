//! Temporary files that never outlive an error: a private work directory for the piles, and the output
//! written under a temporary name that is renamed into place only on success.
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A directory for pile files, removed (with its content) when dropped.
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn create(parent: &Path) -> Result<WorkDir, Error> {
        let path = parent.join(format!(".nano-shuffle-{}", unique_suffix()));
        fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(WorkDir { path })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The output file under a temporary name beside its final path; `commit` renames it into place,
/// dropping it uncommitted deletes it.
pub struct PendingOutput {
    temp: PathBuf,
    target: PathBuf,
    pub file: File,
    committed: bool,
}

impl PendingOutput {
    pub fn create(target: &Path) -> Result<PendingOutput, Error> {
        let name = target
            .file_name()
            .ok_or_else(|| Error::Options(format!("{}: not a file name", target.display())))?;
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let temp = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            unique_suffix()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| Error::io(&temp, e))?;
        Ok(PendingOutput {
            temp,
            target: target.to_path_buf(),
            file,
            committed: false,
        })
    }

    pub fn commit(mut self) -> Result<(), Error> {
        fs::rename(&self.temp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}
