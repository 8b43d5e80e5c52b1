//! Temporary files that never outlive an error: a private work directory for the piles, and the output
//! written under a temporary name that is renamed into place only on success.
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::Error;

/// Prefix of the pile directories (`.nano-shuffle-PID-...`, see `nano_tmpfiles`).
const WORK_PREFIX: &str = ".nano-shuffle-";

/// A directory for pile files, removed (with its content) when dropped.
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Removes the pile directories of killed earlier runs in `parent` (best effort).
    pub fn clean_stale(parent: &Path) {
        nano_tmpfiles::clean_stale(parent, WORK_PREFIX);
    }

    /// A new pile directory in `parent`.
    pub fn create(parent: &Path) -> Result<WorkDir, Error> {
        let path = nano_tmpfiles::unique_path(parent, WORK_PREFIX);
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
    /// The temporary beside `target`, after removing those of killed earlier writers of it.
    pub fn create(target: &Path) -> Result<PendingOutput, Error> {
        let temp = nano_tmpfiles::temp_path(target)
            .ok_or_else(|| Error::Options(format!("{}: not a file name", target.display())))?;
        nano_tmpfiles::clean_stale_temps(target);
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
