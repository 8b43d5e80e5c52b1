//! Scheduling of the engine's work over threads, beside the kernels that do the work: how many
//! threads by default ([`performance_cores`]), the team a forward pass hands its jobs to ([`Team`]),
//! and how per-token work is spread over it ([`spread`], [`token_chunk`]).

mod team;
mod topology;

pub use team::{Team, TeamWorker};
pub use topology::performance_cores;

/// Values below which per-token work (norms, activation quantization, gates) stays on the calling
/// thread: handing it to the team would cost more than the work.
const SPREAD_MIN_VALUES: usize = 1 << 13;

/// Tokens per chunk for spreading `n` tokens of `row` values each over the current team: two
/// chunks per thread; all `n` (one chunk) when there is no team or too little work.
pub(crate) fn token_chunk(n: usize, row: usize) -> usize {
    if let Some(team) = Team::current() {
        if team.threads() > 1 && n > 1 && n * row >= SPREAD_MIN_VALUES {
            return n.div_ceil(team.threads() * 2);
        }
    }
    n.max(1)
}

/// Runs `f` on every item, over the current team when there is one and several items (see
/// [`token_chunk`]), else in order on this thread. Items are independent, so the results do not
/// depend on the thread count.
pub(crate) fn spread<T: Send>(items: impl Iterator<Item = T>, f: impl Fn(T) + Sync) {
    let items: Vec<T> = items.collect();
    if let Some(team) = Team::current() {
        if items.len() > 1 && team.threads() > 1 {
            return team.for_each(items, f);
        }
    }
    items.into_iter().for_each(f)
}
