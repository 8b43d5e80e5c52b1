//! Out-of-core uniform shuffler for line records (text, JSONL) and fixed-size binary records.
//!
//! Algorithm (two passes, provably uniform): every record goes to a pile chosen uniformly at random
//! (pass 1, "scatter"); each pile is then small enough to be read into memory, shuffled with
//! Fisher–Yates and written at its place in the output (pass 2, "gather"). Piles are independent, so
//! pass 2 runs several at once when the memory budget allows. Given the pile of every record, each pile
//! order is uniform and independent, so every permutation of the input is equally likely. A pile that
//! turns out too large for the budget is shuffled the same way recursively. Pass 1 runs on several
//! threads too: each fixed-size input chunk draws its records' piles from its own random stream and
//! claims its place in the piles in chunk order (see `scatter`).
//!
//! The result depends only on the input, the seed and the memory budget (which fixes the number of
//! piles and the chunk size) — never on the thread count. Temporary files live in a private directory removed on success
//! and on error; the output is written under a temporary name and renamed when complete.
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

mod gather;
mod records;
mod rng;
mod scatter;
mod tmp;

pub use records::RecordFormat;
pub use rng::Rng;

use gather::{gather_cost, Scratch};
use scatter::{scatter, ScatterPlan};
use tmp::{PendingOutput, WorkDir};

/// The smallest memory budget accepted (the fixed buffers alone need about this much).
pub const MIN_MEMORY: u64 = 1 << 20;
/// At most this many open pile files at once during pass 1 (a line pile is two files: its lines and
/// their lengths), which keeps well within the usual limit of 1024 open files; more data means
/// recursion. Fixed, not read from the limit, so that the output never depends on the machine.
pub const MAX_PILE_FILES: u64 = 1000;
const MAX_DEPTH: u32 = 6;
/// Largest amount of data shuffled in memory at once (line offsets are u32).
const MAX_IN_MEMORY: u64 = 7 << 29; // 3.5 GiB

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bad input records (with the file and byte offset in the message).
    #[error("{0}")]
    Records(String),
    /// Bad options.
    #[error("{0}")]
    Options(String),
    /// Stopped through `Options::cancel` (temporary files are removed, no output is written).
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How to shuffle.
#[derive(Clone, Debug)]
pub struct Options {
    /// Peak memory budget in bytes for buffers and piles (the process adds its own small baseline).
    pub memory: u64,
    pub seed: u64,
    /// Directory for the temporary piles (default: the output's directory).
    pub tmp_dir: Option<PathBuf>,
    /// Worker threads for both passes (default: all cores); the output does not depend on it.
    pub threads: Option<usize>,
    pub format: RecordFormat,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Set to true (from another thread) to stop early with `Error::Cancelled`; checked between
    /// read chunks, between piles, and last just before the output is complete.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Tuning and tests: the target pile size in bytes instead of the one derived from `memory`
    /// (forces the two-pass path even for small inputs).
    pub pile_bytes: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memory: 256 << 20,
            seed: 0,
            tmp_dir: None,
            threads: None,
            format: RecordFormat::Lines,
            progress: false,
            cancel: None,
            pile_bytes: None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub bytes: u64,
    /// Piles of the first scatter pass (0 when the input was shuffled in memory directly).
    pub piles: usize,
    /// Piles too large for the budget that were shuffled recursively.
    pub recursive_piles: usize,
    /// Most piles shuffled at once in pass 2.
    pub gather_threads: usize,
}

/// Byte counter behind the (optional) progress bar.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new(total: u64, visible: bool) -> Progress {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        if let Ok(style) = ProgressStyle::with_template(
            "shuffle {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        Progress { bar }
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn more_work(&self, bytes: u64) {
        self.bar.inc_length(bytes);
    }
}

/// Memory plan derived from the budget.
struct Budget {
    /// Largest gather cost (pile bytes + index + write buffer) shuffled in memory.
    in_memory: u64,
    pile_target: u64,
    read_chunk: usize,
    /// Pass 1 input chunk; with the seed it fixes every record's pile, so it depends on the budget only.
    scatter_chunk: usize,
    write_buffer: usize,
    max_record: u64,
}

impl Budget {
    fn new(memory: u64, pile_bytes: Option<u64>) -> Budget {
        let clamp = |v: u64, lo: u64, hi: u64| v.clamp(lo, hi) as usize;
        Budget {
            // Line starts are u32 offsets, so nothing shuffled in memory may reach 4 GiB.
            in_memory: (memory / 4 * 3).min(MAX_IN_MEMORY),
            pile_target: pile_bytes
                .unwrap_or((memory / 4).min(MAX_IN_MEMORY / 3))
                .max(1),
            read_chunk: clamp(memory / 16, 64 << 10, 8 << 20),
            // A chunk and its grouped copy per scatter thread; larger chunks mean fewer, larger pile
            // writes, up to the size that still leaves the copies in cache (docs/data.md, "Memory").
            scatter_chunk: clamp(memory / 64, 16 << 10, 4 << 20),
            // Small enough to stay in cache between the gathering copy and the kernel's copy
            // (docs/data.md, "Memory").
            write_buffer: clamp(memory / 64, 16 << 10, 1 << 20),
            // Long records are the one thing copied whole through several buffers at once
            // (and line ends within a scatter chunk are u32).
            max_record: (memory / 16).min(1 << 31),
        }
    }
}

struct Ctx<'a> {
    opts: &'a Options,
    budget: Budget,
    out: &'a std::fs::File,
    out_path: &'a Path,
    tmp_parent: PathBuf,
    threads: usize,
    progress: Progress,
}

impl Ctx<'_> {
    fn cancelled(&self) -> bool {
        self.opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    fn check_cancel(&self) -> Result<(), Error> {
        if self.cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Runs `work` on `threads` scoped threads (on this one when 1); each copy claims its own jobs.
pub(crate) fn run_workers(threads: usize, work: impl Fn() + Sync) {
    if threads <= 1 {
        return work();
    }
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(&work);
        }
    });
}

/// Shuffles the records of `inputs` (concatenated, in order) into `output`. See the crate docs.
pub fn shuffle_files(inputs: &[PathBuf], output: &Path, opts: &Options) -> Result<Summary, Error> {
    shuffle_files_uncommitted(inputs, output, opts)?.commit()
}

/// A complete shuffle whose output still has its temporary name beside `output`: [`Finished::commit`]
/// renames it into place, dropping it deletes it. A caller that must honour a late stop request (an
/// interrupt noticed only once the work is done) checks for it between the two.
pub struct Finished {
    pub summary: Summary,
    output: PendingOutput,
}

impl Finished {
    /// Renames the output into place; the run is then complete.
    pub fn commit(self) -> Result<Summary, Error> {
        self.output.commit()?;
        Ok(self.summary)
    }
}

/// [`shuffle_files`] up to, not including, the rename of the output into place.
pub fn shuffle_files_uncommitted(
    inputs: &[PathBuf],
    output: &Path,
    opts: &Options,
) -> Result<Finished, Error> {
    check_options(inputs, opts)?;
    let mut bytes = 0u64;
    for path in inputs {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::Options(format!(
                "{}: not a regular file",
                path.display()
            )));
        }
        if let RecordFormat::Fixed(n) = opts.format {
            if meta.len() % n as u64 != 0 {
                return Err(Error::Records(format!(
                    "{}: size {} is not a multiple of the record size {n} (a truncated file?)",
                    path.display(),
                    meta.len()
                )));
            }
        }
        bytes += meta.len();
    }
    let pending = PendingOutput::create(output)?;
    let tmp_parent = match &opts.tmp_dir {
        Some(dir) => dir.clone(),
        None => output
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let ctx = Ctx {
        opts,
        budget: Budget::new(opts.memory, opts.pile_bytes),
        out: &pending.file,
        out_path: output,
        tmp_parent,
        threads,
        progress: Progress::new(bytes, opts.progress),
    };
    let mut summary = Summary::default();
    let records = if opts.pile_bytes.is_none() {
        count_if_small(&ctx, inputs, bytes)?
    } else {
        None
    };
    ctx.check_cancel()?;
    let written = shuffle_sources(&ctx, inputs, bytes, records, opts.seed, 0, 0, &mut summary)?;
    summary.records = written.0;
    summary.bytes = written.1;
    ctx.progress.bar.finish_and_clear();
    // A stop requested while the last piece was being written still wins: nothing is renamed.
    ctx.check_cancel()?;
    Ok(Finished {
        summary,
        output: pending,
    })
}

fn check_options(inputs: &[PathBuf], opts: &Options) -> Result<(), Error> {
    if inputs.is_empty() {
        return Err(Error::Options("no input files".into()));
    }
    if opts.memory < MIN_MEMORY {
        return Err(Error::Options(format!(
            "memory budget {} bytes is below the minimum {MIN_MEMORY}",
            opts.memory
        )));
    }
    if opts.threads == Some(0) {
        return Err(Error::Options("threads must be at least 1".into()));
    }
    if opts.format == RecordFormat::Fixed(0) {
        return Err(Error::Options("record size must be at least 1 byte".into()));
    }
    Ok(())
}

/// Record count of an input small enough that it may fit in memory (a fast newline count), else None.
fn count_if_small(ctx: &Ctx, inputs: &[PathBuf], bytes: u64) -> Result<Option<u64>, Error> {
    if bytes > ctx.budget.in_memory {
        return Ok(None);
    }
    let format = ctx.opts.format;
    let mut records = 0;
    for path in inputs {
        records_in(path, format, &mut records, ctx.budget.max_record)?;
    }
    Ok(Some(records))
}

fn records_in(
    path: &Path,
    format: RecordFormat,
    count: &mut u64,
    max_record: u64,
) -> Result<(), Error> {
    records::read_whole_records(path, format, 1 << 20, max_record.max(1 << 20), |chunk| {
        *count += format.count(chunk);
        Ok(())
    })
}

/// Reads whole (normalised) records of `sources` into one buffer.
fn load(ctx: &Ctx, sources: &[PathBuf], bytes: u64) -> Result<Vec<u8>, Error> {
    let mut data = Vec::with_capacity(bytes as usize + sources.len());
    for path in sources {
        records::read_whole_records(
            path,
            ctx.opts.format,
            ctx.budget.read_chunk,
            u64::MAX,
            |chunk| {
                ctx.check_cancel()?;
                data.extend_from_slice(chunk);
                Ok(())
            },
        )?;
    }
    Ok(data)
}

fn remove_pile(pile: &scatter::Pile) {
    let _ = std::fs::remove_file(&pile.path);
    if let Some(lengths) = &pile.lengths {
        let _ = std::fs::remove_file(lengths);
    }
}

/// Maps a finished pile (our own private file, so nothing truncates it under the map) with its pages
/// populated at once: no copy into a buffer, and the page cache pages are shared, not duplicated.
fn map_pile(path: &Path, bytes: u64) -> Result<memmap2::Mmap, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the pile lives in this run's private work directory and is never written again, so the
    // mapped bytes cannot change or vanish while mapped.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
        .map_err(|e| Error::io(path, e))?;
    if map.len() as u64 != bytes {
        return Err(Error::Records(format!(
            "{}: pile holds {} bytes, expected {bytes}",
            path.display(),
            map.len()
        )));
    }
    Ok(map)
}

/// Shuffles `sources` into the output at byte `at`; returns (records, bytes) written.
#[allow(clippy::too_many_arguments)]
fn shuffle_sources(
    ctx: &Ctx,
    sources: &[PathBuf],
    bytes: u64,
    records: Option<u64>,
    seed: u64,
    at: u64,
    depth: u32,
    summary: &mut Summary,
) -> Result<(u64, u64), Error> {
    let format = ctx.opts.format;
    let budget = &ctx.budget;
    if let Some(n) = records {
        if gather_cost(format, bytes, n, budget.write_buffer) <= budget.in_memory {
            let data = load(ctx, sources, bytes)?;
            let size = data.len() as u64;
            let mut rng = Rng::new(seed, 1);
            let n = Scratch::default().shuffle_and_write(
                &data,
                false,
                format,
                &mut rng,
                ctx.out,
                ctx.out_path,
                at,
                budget.write_buffer,
            )?;
            ctx.progress.add(size);
            return Ok((n, size));
        }
    }
    if depth >= MAX_DEPTH {
        return Err(Error::Records(format!(
            "could not split the input into piles that fit the memory budget of {} bytes (records too large?); \
             raise --memory",
            ctx.opts.memory
        )));
    }
    let cost = gather_cost(format, bytes, records.unwrap_or(0), 0);
    let files_per_pile = match format {
        RecordFormat::Lines => 2,
        RecordFormat::Fixed(_) => 1,
    };
    let max_piles = MAX_PILE_FILES / files_per_pile;
    let piles = cost.div_ceil(budget.pile_target).clamp(2, max_piles) as usize;
    let work = WorkDir::create(&ctx.tmp_parent)?;
    ctx.progress.more_work(bytes);
    let plan = ScatterPlan {
        piles,
        chunk: budget.scatter_chunk,
        max_record: budget.max_record,
        // Each thread holds a chunk and its grouped copy: together at most a quarter of the budget.
        threads: ctx
            .threads
            .min((ctx.opts.memory / 4 / (2 * budget.scatter_chunk as u64)).max(1) as usize),
    };
    let piles = scatter(
        sources,
        format,
        &plan,
        |i| work.file(&format!("pile-{i}")),
        seed,
        &ctx.progress,
        &|| ctx.cancelled(),
    )?;
    if depth == 0 {
        summary.piles = piles.len();
    }

    // Where each pile goes in the output: piles are concatenated in index order.
    let mut offsets = Vec::with_capacity(piles.len());
    let mut end = at;
    for p in &piles {
        offsets.push(end);
        end += p.bytes;
    }
    let pile_seed = |i: usize| Rng::new(seed, u64::MAX - i as u64).next_u64();
    let cost_of = |p: &scatter::Pile| gather_cost(format, p.bytes, p.records, budget.write_buffer);
    let (small, large): (Vec<usize>, Vec<usize>) =
        (0..piles.len()).partition(|&i| cost_of(&piles[i]) <= budget.in_memory);

    // Several piles at once, as many as the budget holds (each worker holds one pile).
    let largest = small
        .iter()
        .map(|&i| cost_of(&piles[i]))
        .max()
        .unwrap_or(1)
        .max(1);
    let workers = ((budget.in_memory / largest) as usize).clamp(1, ctx.threads);
    summary.gather_threads = summary.gather_threads.max(workers);
    let gather_one = |i: usize, scratch: &mut Scratch| {
        let pile = &piles[i];
        if pile.bytes > 0 {
            let map = map_pile(&pile.path, pile.bytes)?;
            if let Some(lengths) = &pile.lengths {
                scratch.read_lengths(lengths, pile.records)?;
            }
            let mut rng = Rng::new(pile_seed(i), 1);
            scratch.shuffle_and_write(
                &map,
                pile.lengths.is_some(),
                format,
                &mut rng,
                ctx.out,
                ctx.out_path,
                offsets[i],
                budget.write_buffer,
            )?;
        }
        remove_pile(pile); // free the disk (and page cache) early
        ctx.progress.add(pile.bytes);
        Ok::<(), Error>(())
    };
    // Workers take the next pile from a shared counter; each reuses its own buffers.
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let work = || {
        let mut scratch = Scratch::default();
        while !failed.load(Ordering::Relaxed) {
            if ctx.cancelled() {
                failed.store(true, Ordering::Relaxed);
                first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(Error::Cancelled);
                break;
            }
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = small.get(k) else { break };
            if let Err(e) = gather_one(i, &mut scratch) {
                failed.store(true, Ordering::Relaxed);
                first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
            }
        }
    };
    run_workers(workers, work);
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    for &i in &large {
        ctx.check_cancel()?;
        let pile = &piles[i];
        summary.recursive_piles += 1;
        let sub = [pile.path.clone()];
        shuffle_sources(
            ctx,
            &sub,
            pile.bytes,
            Some(pile.records),
            pile_seed(i),
            offsets[i],
            depth + 1,
            summary,
        )?;
        remove_pile(pile);
    }
    let records = piles.iter().map(|p| p.records).sum();
    Ok((records, end - at))
}
