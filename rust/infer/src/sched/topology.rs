//! The default thread count: physical performance cores. On big.LITTLE boards (RK3588: 4×A76 + 4×A55)
//! the little cores would make every row split wait for the slowest chunk, and SMT siblings share one
//! core's SIMD units, so both are left out.

use std::collections::BTreeSet;
use std::fs;

/// Physical cores of the fastest class (Linux sysfs: unique `core_cpus_list` / `thread_siblings_list`,
/// keeping the cores whose `cpuinfo_max_freq` is the highest); elsewhere, or when sysfs says nothing,
/// the number of logical CPUs.
pub fn performance_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    performance_cores_in("/sys/devices/system/cpu")
        .unwrap_or(logical)
        .clamp(1, logical)
}

fn performance_cores_in(root: &str) -> Option<usize> {
    // (max frequency, sibling list) of every online CPU; siblings identify the physical core.
    let mut cores: BTreeSet<(u64, String)> = BTreeSet::new();
    for entry in fs::read_dir(root).ok()? {
        let name = entry.ok()?.file_name().into_string().ok()?;
        let Some(id) = name
            .strip_prefix("cpu")
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty())
        else {
            continue;
        };
        let dir = format!("{root}/cpu{id}");
        if fs::read_to_string(format!("{dir}/online")).is_ok_and(|s| s.trim() == "0") {
            continue;
        }
        let siblings = fs::read_to_string(format!("{dir}/topology/core_cpus_list"))
            .or_else(|_| fs::read_to_string(format!("{dir}/topology/thread_siblings_list")))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| id.to_string());
        let freq = fs::read_to_string(format!("{dir}/cpufreq/cpuinfo_max_freq"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        cores.insert((freq, siblings));
    }
    let top = cores.iter().map(|(f, _)| *f).max()?;
    // Cores within 10% of the fastest count as performance cores (boost bins differ slightly).
    let n = cores.iter().filter(|(f, _)| *f * 10 >= top * 9).count();
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(root: &std::path::Path, id: usize, siblings: &str, freq: Option<u64>) {
        let dir = root.join(format!("cpu{id}"));
        fs::create_dir_all(dir.join("topology")).unwrap();
        fs::write(dir.join("topology/core_cpus_list"), siblings).unwrap();
        if let Some(f) = freq {
            fs::create_dir_all(dir.join("cpufreq")).unwrap();
            fs::write(dir.join("cpufreq/cpuinfo_max_freq"), f.to_string()).unwrap();
        }
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("nano-topology-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn big_little_counts_big_cores_only() {
        // RK3588: cpu0-3 A55 at 1.8 GHz, cpu4-7 A76 at 2.4 GHz.
        let d = tmp("rk3588");
        for i in 0..8 {
            let f = if i < 4 { 1_800_000 } else { 2_400_000 };
            cpu(&d, i, &i.to_string(), Some(f));
        }
        assert_eq!(performance_cores_in(d.to_str().unwrap()), Some(4));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn smt_siblings_count_once() {
        let d = tmp("smt");
        for i in 0..4 {
            cpu(&d, i, if i % 2 == 0 { "0,2" } else { "1,3" }, None);
        }
        fs::create_dir_all(d.join("cpufreq")).unwrap(); // not a cpuN directory: ignored
        assert_eq!(performance_cores_in(d.to_str().unwrap()), Some(2));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn at_least_one_thread() {
        assert!(performance_cores() >= 1);
    }
}
