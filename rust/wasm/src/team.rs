//! The engine's thread team in the browser. WebAssembly has no way to start a thread: in the build
//! with shared memory (`+atomics`), the page starts Web Workers that instantiate this same module over
//! the same `WebAssembly.Memory`, and each runs one team worker ([`run_team_worker`]). An engine's
//! team is made with `nano_infer::sched::Team::start`, whose spawn step only files each worker
//! here under an id; the page hands the ids to its Web Workers. The team works before they run
//! (the engine's thread takes every chunk no worker claimed), so nothing waits for a Web Worker to
//! start, which a browser may delay until the starting thread is idle.

use std::sync::Mutex;

use nano_infer::sched::{Team, TeamWorker};
use wasm_bindgen::prelude::*;

/// Most threads an engine may have in the page. Workers spin while a token is computed, so more
/// threads than the device's cores only take turns; the page offers at most its
/// `navigator.hardwareConcurrency`.
pub const MAX_THREADS: u32 = 16;

/// Team workers filed by [`start`] and not yet run, with their ids. One registry for every thread:
/// in the shared-memory build all instances of the module share their statics.
struct Waiting {
    next_id: u32,
    workers: Vec<(u32, TeamWorker)>,
}

static WAITING: Mutex<Waiting> = Mutex::new(Waiting {
    next_id: 1,
    workers: Vec::new(),
});

fn waiting() -> std::sync::MutexGuard<'static, Waiting> {
    WAITING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether this build has shared memory (WASM threads), so that an engine may have more than one
/// thread.
#[wasm_bindgen(js_name = sharedMemory)]
pub fn shared_memory() -> bool {
    cfg!(target_feature = "atomics")
}

/// Refuses a thread count the build cannot run (checked before the model is loaded).
pub(crate) fn check_threads(threads: u32) -> Result<(), String> {
    if threads == 0 || threads > MAX_THREADS {
        return Err(format!(
            "threads must be between 1 and {MAX_THREADS}, got {threads}"
        ));
    }
    if threads > 1 && !shared_memory() {
        return Err(format!(
            "this build of the engine runs on one thread (no shared memory), {threads} were asked for"
        ));
    }
    Ok(())
}

/// A team of `threads` threads (checked by [`check_threads`]) and the ids of its workers, filed to
/// wait for [`run_team_worker`].
pub(crate) fn start(threads: u32) -> (Team, Vec<u32>) {
    let mut ids = Vec::new();
    let team = Team::start(threads as usize, |_, worker| {
        let mut w = waiting();
        let id = w.next_id;
        w.next_id = w.next_id.wrapping_add(1).max(1);
        w.workers.push((id, worker));
        ids.push(id);
        Ok(None)
    });
    (team.expect("filing a worker does not fail"), ids)
}

/// Drops the filed workers among `ids` (their engine is gone before they ran).
pub(crate) fn forget(ids: &[u32]) {
    waiting().workers.retain(|(id, _)| !ids.contains(id));
}

/// Runs the team worker filed under `id` on the calling thread (a Web Worker of the page) until its
/// engine is freed. An id that is not waiting (already run, forgotten, or never given) is an error.
#[wasm_bindgen(js_name = runTeamWorker)]
pub fn run_team_worker(id: u32) -> Result<(), JsError> {
    let worker = {
        let mut w = waiting();
        let at = w.workers.iter().position(|(i, _)| *i == id);
        at.map(|at| w.workers.swap_remove(at).1)
    };
    let worker = worker.ok_or_else(|| {
        JsError::new(&format!(
            "no team worker {id} is waiting (already running, or its engine is gone)"
        ))
    })?;
    worker.run();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_are_checked() {
        assert!(check_threads(0).is_err());
        assert!(check_threads(MAX_THREADS + 1).is_err());
        assert!(check_threads(1).is_ok());
        assert_eq!(check_threads(2).is_ok(), shared_memory());
    }

    /// Filed workers run once by id on threads started afterwards, and end when the team is dropped;
    /// forgotten ones are gone.
    #[test]
    fn filed_workers_run_by_id() {
        let (team, ids) = start(3);
        assert_eq!((team.threads(), ids.len()), (3, 2));
        let threads: Vec<_> = ids
            .iter()
            .map(|&id| std::thread::spawn(move || run_team_worker(id).is_ok()))
            .collect();
        let total = std::sync::atomic::AtomicUsize::new(0);
        team.enter(|| {
            for _ in 0..50 {
                team.run(8, &|i| {
                    total.fetch_add(i, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        assert_eq!(total.into_inner(), 50 * 28);
        drop(team);
        for t in threads {
            assert!(t.join().unwrap());
        }
        let (_team, ids) = start(2);
        forget(&ids);
        assert!(waiting().workers.iter().all(|(id, _)| !ids.contains(id)));
    }
}
