//! A team of worker threads that a forward pass enters once per token.
//!
//! With a rayon pool every matmul of a token is a hand-off, and workers that have gone to sleep in
//! the serial parts between matmuls (norms, RoPE, attention set-up) need a wake-up each time. A
//! team's workers are woken once per forward pass ([`Team::enter`]) and then spin on an epoch counter,
//! so handing out a job costs a few atomic operations. The calling thread works on every job too.
//!
//! Jobs are `Fn(chunk)` closures over `0..chunks`, claimed dynamically (fast cores take more chunks).
//! A claim carries the job's epoch, so a worker that saw an old job can never run a chunk of a newer
//! one with the old closure; the caller returns only when every claimed chunk is done, so the borrowed
//! closure outlives every use.
//!
//! Who starts the workers is the caller's choice ([`Team::start`]): std threads ([`Team::new`]), or
//! threads the platform starts some other way (the browser's Web Workers over shared WASM memory,
//! see rust/wasm), each of which runs its [`TeamWorker`].

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One published job (lives on the caller's stack during `run`).
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

#[derive(Default)]
struct Shared {
    /// Incremented for every job; workers watch it to wake up.
    epoch: AtomicU64,
    /// The claim word of the current job: epoch (24 bits) | chunks (20 bits) | next chunk (20 bits).
    next: AtomicU64,
    /// Chunks of the current job finished.
    done: AtomicUsize,
    job: AtomicPtr<Job<'static>>,
    /// Set while a forward pass is inside the team (workers spin rather than park).
    active: AtomicBool,
    quit: AtomicBool,
    /// Where idle workers sleep: they check `active` / `quit` / `epoch` holding `sleep` and wait on
    /// `wake`, which `enter` and `drop` notify after setting those (holding `sleep` in between),
    /// so no wake-up is lost. A condition variable rather than thread parking: a worker started
    /// by the platform has no `Thread` handle here to unpark.
    sleep: Mutex<()>,
    wake: Condvar,
}

const FIELD: u64 = (1 << 20) - 1;
/// Most chunks one job may have (larger jobs run on the caller alone).
const MAX_CHUNKS: usize = FIELD as usize;

impl Shared {
    /// Claims and runs chunks of job `epoch` until none is left, then counts them as done (once:
    /// a shared counter bumped per chunk cost as much as the claim itself).
    fn work(&self, epoch: u64) {
        let mut ran = 0;
        loop {
            let cur = self.next.load(SeqCst);
            let (e, chunks, i) = (cur >> 40, (cur >> 20) & FIELD, cur & FIELD);
            if e != epoch & 0xff_ffff || i >= chunks {
                break; // another job, or nothing left to claim
            }
            if self
                .next
                .compare_exchange(cur, cur + 1, SeqCst, SeqCst)
                .is_ok()
            {
                // SAFETY: the caller stores the job pointer before it publishes the claim word, and
                // publishes the next job only after every claimed chunk of this one is done; so,
                // loaded after a successful claim, the pointer is this job's and it is alive.
                let job = self.job.load(SeqCst);
                unsafe { ((*job).f)(i as usize) };
                ran += 1;
            }
        }
        if ran > 0 {
            self.done.fetch_add(ran, SeqCst);
        }
    }
}

/// A pointer to elements that pieces of one job write from several threads (disjoint ranges).
struct SendPtr<T>(*mut T);
// SAFETY: only used by `for_each_chunk`, whose pieces are disjoint and end before it returns.
unsafe impl<T: Send> Sync for SendPtr<T> {}
unsafe impl<T: Send> Send for SendPtr<T> {}

/// Worker threads plus the calling thread. Dropping it stops the workers and joins those that
/// were started with a [`JoinHandle`].
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<Option<JoinHandle<()>>>,
}

/// One worker's share of a team, handed to the thread that is to run it ([`TeamWorker::run`]). It
/// keeps the team's shared state alive by itself, so a worker that starts late (or after the team
/// was dropped) is safe: it runs whatever job is current, or sees the team stopped and returns.
pub struct TeamWorker(Arc<Shared>);

impl TeamWorker {
    /// The worker loop: runs chunks of the team's jobs until the team is dropped.
    pub fn run(self) {
        worker(&self.0)
    }
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Team({} threads)", self.threads())
    }
}

thread_local! {
    /// The team the current thread leads, while inside [`Team::enter`].
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

/// Spins before a worker sleeps when no forward pass is running.
const SPINS_BEFORE_SLEEP: u32 = 1 << 16;
/// Longest sleep of an idle worker before it looks again: a safety net only (no wake-up is lost,
/// see `Shared::sleep`), long enough that idle workers cost nothing noticeable.
const SLEEP: Duration = Duration::from_millis(50);

impl Team {
    /// A team of `threads` threads in all (the caller counts as one). When a worker cannot be
    /// started, the ones already started are stopped and joined before the error is returned.
    pub fn new(threads: usize) -> std::io::Result<Team> {
        Team::start(threads, |i, w| {
            std::thread::Builder::new()
                .name(format!("nano-worker-{i}"))
                .spawn(move || w.run())
                .map(Some)
        })
    }

    /// A team of `threads` threads in all whose workers `spawn(i, worker)` starts (i in
    /// 1..threads): it must have `worker` run ([`TeamWorker::run`]) on a thread of its own, and
    /// return its handle, or `None` for a thread that cannot be joined (it ends by itself once the
    /// team is dropped). The team works before its workers run: the caller works on every job
    /// and takes whatever chunks no worker has claimed. When `spawn` fails, the workers already
    /// started are stopped (and joined) before the error is returned.
    pub fn start(
        threads: usize,
        mut spawn: impl FnMut(usize, TeamWorker) -> std::io::Result<Option<JoinHandle<()>>>,
    ) -> std::io::Result<Team> {
        // Built first, so that an early return drops it: `Drop` stops and joins every worker
        // started so far (a detached worker would spin or sleep forever).
        let mut team = Team {
            shared: Arc::new(Shared::default()),
            workers: Vec::new(),
        };
        for i in 1..threads.max(1) {
            let handle = spawn(i, TeamWorker(Arc::clone(&team.shared)))?;
            team.workers.push(handle);
        }
        Ok(team)
    }

    /// Wakes the sleeping workers after `active` or `quit` was set (see [`Shared::sleep`]).
    fn wake_workers(&self) {
        drop(self.shared.sleep.lock().unwrap_or_else(|e| e.into_inner()));
        self.shared.wake.notify_all();
    }

    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f` with this team as the current one: [`Team::current`] finds it and the workers spin,
    /// ready for jobs, until `f` returns.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Leave<'a>(&'a Team, *const Team);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.shared.active.store(false, SeqCst);
                CURRENT.with(|c| c.set(self.1));
            }
        }
        let previous = CURRENT.with(|c| c.replace(self as *const Team));
        self.shared.active.store(true, SeqCst);
        if !self.workers.is_empty() {
            self.wake_workers();
        }
        let _leave = Leave(self, previous);
        f()
    }

    /// The team the current thread is inside, if any. Use the reference only before returning from
    /// the work `enter` is running (that is what keeps the team alive).
    pub(crate) fn current<'a>() -> Option<&'a Team> {
        let p = CURRENT.with(|c| c.get());
        // SAFETY: set only for the duration of `enter`, whose `&self` outlives every use here
        // (callers use the reference within the job they are running inside `enter`).
        unsafe { p.as_ref() }
    }

    /// Runs `f(0..chunks)` on all threads of the team, each chunk exactly once; returns when all
    /// are done.
    pub fn run(&self, chunks: usize, f: &(dyn Fn(usize) + Sync)) {
        if chunks == 0 {
            return;
        }
        if chunks > MAX_CHUNKS || self.workers.is_empty() {
            (0..chunks).for_each(f);
            return;
        }
        let s = &*self.shared;
        let job = Job { f };
        let epoch = s.epoch.load(SeqCst) + 1;
        // Order matters (see `Shared::work`): the job pointer, then the claim word, then the epoch
        // that wakes the workers.
        s.done.store(0, SeqCst);
        // SAFETY (lifetime): workers dereference the pointer only for successful claims of this
        // job's chunks, and this function returns only after all of them are done.
        let ptr = &job as *const Job as *mut Job<'static>;
        s.job.store(ptr, SeqCst);
        s.next.store(
            ((epoch & 0xff_ffff) << 40) | ((chunks as u64) << 20),
            SeqCst,
        );
        s.epoch.store(epoch, SeqCst);
        s.work(epoch);
        while s.done.load(SeqCst) < chunks {
            std::hint::spin_loop();
        }
    }
}

impl Team {
    /// Runs `f(part, index, chunk)` for every `chunk`-element piece of every slice in `parts` (the
    /// last piece of a slice may be shorter), spread over the team. Pieces are handed out by index:
    /// no list of them is built and nothing is locked per piece (this runs ~70 times per token).
    pub(crate) fn for_each_chunk<T: Send>(
        &self,
        parts: &mut [&mut [T]],
        chunk: usize,
        f: impl Fn(usize, usize, &mut [T]) + Sync,
    ) {
        assert!(chunk > 0, "chunks must hold at least one element");
        // First piece number of each part, and where each part's elements are.
        let mut first = Vec::with_capacity(parts.len() + 1);
        let mut total = 0;
        for p in parts.iter() {
            first.push(total);
            total += p.len().div_ceil(chunk);
        }
        first.push(total);
        let bases: Vec<(SendPtr<T>, usize)> = parts
            .iter_mut()
            .map(|p| (SendPtr(p.as_mut_ptr()), p.len()))
            .collect();
        self.run(total, &|i| {
            let part = first.partition_point(|&f| f <= i) - 1;
            let index = i - first[part];
            let (base, len) = &bases[part];
            let start = index * chunk;
            let n = chunk.min(len - start);
            // SAFETY: piece `i` is run exactly once (`run`) and the pieces of a part are disjoint
            // ranges of it, so no two calls alias; `parts` is borrowed mutably until `run`
            // returns, after every piece is done.
            let piece = unsafe { std::slice::from_raw_parts_mut(base.0.add(start), n) };
            f(part, index, piece);
        });
    }

    /// Runs `f` once for every item, spread over the team (items claimed dynamically).
    pub(crate) fn for_each<T: Send>(&self, items: Vec<T>, f: impl Fn(T) + Sync) {
        let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
        self.run(slots.len(), &|i| {
            let item = slots[i].lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(item) = item {
                f(item);
            }
        });
    }
}

fn worker(s: &Shared) {
    let mut seen = s.epoch.load(SeqCst);
    let mut idle = 0u32;
    while !s.quit.load(SeqCst) {
        let epoch = s.epoch.load(SeqCst);
        if epoch != seen {
            seen = epoch;
            idle = 0;
            s.work(epoch);
            continue;
        }
        if s.active.load(SeqCst) || idle < SPINS_BEFORE_SLEEP {
            idle = idle.saturating_add(1);
            std::hint::spin_loop();
        } else {
            // Woken by `enter` or `drop` (see `Shared::sleep`), or by the timeout.
            let guard = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            if !s.active.load(SeqCst) && !s.quit.load(SeqCst) && s.epoch.load(SeqCst) == seen {
                drop(s.wake.wait_timeout(guard, SLEEP));
            }
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.quit.store(true, SeqCst);
        self.wake_workers();
        for w in self.workers.drain(..).flatten() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many back-to-back jobs of varying size: every chunk of every job runs exactly once, with the
    /// job's own closure (a stale worker must never run a chunk of a newer job).
    #[test]
    fn every_chunk_runs_once_per_job() {
        let team = Team::new(3).unwrap();
        team.enter(|| {
            for job in 0..20_000usize {
                let chunks = 1 + job % 37;
                let hits: Vec<AtomicUsize> = (0..chunks).map(|_| AtomicUsize::new(0)).collect();
                team.run(chunks, &|i| {
                    hits[i].fetch_add(job + 1, SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(SeqCst) == job + 1), "job {job}");
            }
        });
        // Outside `enter` the workers park; a later pass still works.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let total = AtomicUsize::new(0);
        team.enter(|| {
            team.for_each((0..100).collect(), |v: usize| {
                total.fetch_add(v, SeqCst);
            })
        });
        assert_eq!(total.load(SeqCst), 4950);
        assert!(Team::current().is_none());
    }

    /// A start that fails part-way returns the error and leaves no worker running: every started
    /// worker has ended (its handle on the shared state is gone) when `start` returns.
    #[test]
    fn failed_start_joins_the_workers_it_started() {
        let mut shared = None;
        let result = Team::start(8, |i, w| {
            shared.get_or_insert_with(|| Arc::downgrade(&w.0));
            if i == 5 {
                return Err(std::io::Error::other("no more threads"));
            }
            std::thread::Builder::new().spawn(move || w.run()).map(Some)
        });
        assert_eq!(result.unwrap_err().to_string(), "no more threads");
        let shared = shared.expect("spawn was called");
        assert!(
            shared.upgrade().is_none(),
            "a started worker is still running"
        );
        // and a team can be started afterwards
        assert_eq!(Team::new(3).unwrap().threads(), 3);
    }

    /// Workers that start only after the team has run jobs (as Web Workers do, which the thread
    /// starting them cannot wait for) and are never joined: the caller alone ran the early jobs;
    /// once the workers run, jobs still run every chunk once; dropping the team ends them.
    #[test]
    fn late_unjoined_workers() {
        let mut pending = Vec::new();
        let team = Team::start(3, |_, w| {
            pending.push(w);
            Ok(None)
        })
        .unwrap();
        assert_eq!(team.threads(), 3);
        let sum = |team: &Team| {
            let total = AtomicUsize::new(0);
            team.enter(|| {
                for _ in 0..100 {
                    team.run(16, &|i| {
                        total.fetch_add(i, SeqCst);
                    });
                }
            });
            total.load(SeqCst)
        };
        assert_eq!(sum(&team), 100 * 120);
        let threads: Vec<_> = pending
            .into_iter()
            .map(|w| std::thread::spawn(move || w.run()))
            .collect();
        assert_eq!(sum(&team), 100 * 120);
        drop(team);
        for t in threads {
            t.join().unwrap();
        }
    }

    /// Every element of every part is handed out once, in the piece its index says, for parts of
    /// uneven lengths (empty ones included) and pieces that do not divide them.
    #[test]
    fn for_each_chunk_covers_every_element_once() {
        let team = Team::new(3).unwrap();
        for chunk in [1, 3, 16] {
            let lens = [0usize, 5, 48, 17, 1];
            let mut bufs: Vec<Vec<usize>> = lens.iter().map(|&n| vec![usize::MAX; n]).collect();
            let mut parts: Vec<&mut [usize]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            team.enter(|| {
                team.for_each_chunk(&mut parts, chunk, |part, index, piece| {
                    for (k, v) in piece.iter_mut().enumerate() {
                        assert_eq!(*v, usize::MAX, "element written twice");
                        *v = part * 1000 + index * chunk + k;
                    }
                })
            });
            for (part, b) in bufs.iter().enumerate() {
                let want: Vec<usize> = (0..b.len()).map(|e| part * 1000 + e).collect();
                assert_eq!(b, &want, "part {part}, chunk {chunk}");
            }
        }
    }
}
