//! Temporary files and directories that a later run can clean up.
//!
//! Writers put their output under a temporary name beside its final path and rename it into place
//! when complete; a writer killed outright (SIGKILL, power loss) leaves the temporary behind. Every
//! temporary name here is `{prefix}{pid}-{unique}`, `pid` being the writer's process id, so that the
//! next run in the same place can tell whose it is: [`clean_stale`] removes those whose process is
//! gone. For a file written to `DIR/NAME` the prefix is `.NAME.tmp-` ([`temp_prefix`]); Python's
//! atomic writes use the same scheme.
//!
//! Whether a process is alive is known on Linux only (`/proc/PID`); elsewhere nothing is removed.
//! A reused process id keeps a stale temporary until that process ends too: removal errs on the
//! side of keeping.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The prefix of temporary names for a file written to `target`: `.NAME.tmp-`.
pub fn temp_prefix(target: &Path) -> Option<String> {
    let name = target.file_name()?;
    Some(format!(".{}.tmp-", name.to_string_lossy()))
}

/// The directory `target` is written in (`.` for a bare file name).
pub fn parent_dir(target: &Path) -> &Path {
    target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A fresh name `{prefix}{pid}-{counter}-{nanos}` in `dir` (unique within this process, and
/// across processes by the pid).
pub fn unique_path(dir: &Path, prefix: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    dir.join(format!(
        "{prefix}{}-{}-{nanos:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A fresh temporary path beside `target` for writing it (`.NAME.tmp-{pid}-...`).
pub fn temp_path(target: &Path) -> Option<PathBuf> {
    Some(unique_path(parent_dir(target), &temp_prefix(target)?))
}

/// The process id a temporary name carries after `prefix`, if it has the form `{prefix}{pid}-...`.
fn owner(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, _) = rest.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` is running (unknown = yes).
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists() || !Path::new("/proc/self").exists()
    } else {
        true
    }
}

/// Removes the entries of `dir` named `{prefix}{pid}-...` whose process is gone (files, or
/// directories with their content); returns how many it removed. Errors (an unreadable directory,
/// an entry another process removes first) are ignored: cleaning up is best effort.
pub fn clean_stale(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| owner(n, prefix)) else {
            continue;
        };
        if alive(pid) {
            continue;
        }
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        removed += gone.is_ok() as usize;
    }
    removed
}

/// [`clean_stale`] for the temporaries of a file written to `target`.
pub fn clean_stale_temps(target: &Path) -> usize {
    match temp_prefix(target) {
        Some(prefix) => clean_stale(parent_dir(target), &prefix),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process id that is not running: the largest ids below the kernel's limit are free on a
    /// test machine; the test looks for one and checks it.
    fn dead_pid() -> u32 {
        (1..1000)
            .map(|i| 4_194_304 - i)
            .find(|&p| !alive(p))
            .expect("a free process id")
    }

    #[test]
    fn owner_parses_only_the_temporary_form() {
        assert_eq!(owner(".m.bin.tmp-123-0-ff", ".m.bin.tmp-"), Some(123));
        assert_eq!(owner(".m.bin.tmp-x-0", ".m.bin.tmp-"), None);
        assert_eq!(owner(".m.bin.tmp-123", ".m.bin.tmp-"), None);
        assert_eq!(owner(".m.bin.tmp--1-0", ".m.bin.tmp-"), None);
        assert_eq!(owner(".other.tmp-123-0", ".m.bin.tmp-"), None);
        assert_eq!(owner("m.bin", ".m.bin.tmp-"), None);
    }

    #[test]
    fn stale_temporaries_are_removed_and_live_ones_kept() {
        let dir = std::env::temp_dir().join(format!("nano-tmpfiles-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("m.bin");
        let dead = dead_pid();
        let mine = temp_path(&target).unwrap();
        let stale = dir.join(format!(".m.bin.tmp-{dead}-0-0"));
        let stale_dir = dir.join(format!(".m.bin.tmp-{dead}-1-0"));
        let other_target = dir.join(format!(".n.bin.tmp-{dead}-0-0"));
        let unrelated = dir.join(format!(".m.bin.tmpx-{dead}-0-0"));
        for f in [&mine, &stale, &other_target, &unrelated, &target] {
            std::fs::write(f, b"x").unwrap();
        }
        std::fs::create_dir(&stale_dir).unwrap();
        std::fs::write(stale_dir.join("pile"), b"x").unwrap();
        let removed = clean_stale_temps(&target);
        let exists = |p: &PathBuf| p.exists();
        if cfg!(target_os = "linux") {
            assert_eq!(removed, 2);
            assert!(!exists(&stale) && !exists(&stale_dir));
        } else {
            assert_eq!(removed, 0);
        }
        // this process's own temporary, other targets' and other names stay, and the target
        assert!(exists(&mine) && exists(&other_target) && exists(&unrelated) && exists(&target));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
