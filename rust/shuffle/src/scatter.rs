//! Pass 1: send every record to a uniformly random pile (a temporary file).
//!
//! The input is cut into fixed-size chunks (a chunk owns the records that *start* in its byte range).
//! Workers take chunks in order; for chunk `g` a worker reads it with one `pread`, draws a pile for
//! each of its records from the random stream `g` (so a record's pile depends on the seed, the chunk
//! size and the input only), groups the records by pile in a second buffer and writes each group with
//! one `pwrite` at its offset in the pile file. The offsets come from a running total that chunks
//! advance strictly in chunk order (a cheap step between drawing and copying), so every pile holds
//! its records in input order whatever the number of threads: the output never depends on it.
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::records::{open_input, too_long, RecordFormat};
use crate::rng::Rng;
use crate::{Error, Progress};

/// A finished pile: its file, its size and its number of records; for lines also a file of their
/// lengths (u32, little-endian, in pile order), so pass 2 need not scan the pile for line ends.
pub struct Pile {
    pub path: PathBuf,
    pub lengths: Option<PathBuf>,
    pub bytes: u64,
    pub records: u64,
}

/// Pass 1's shape: pile count, chunk size (which, with the seed, fixes every record's pile), longest
/// record accepted, worker threads (which change nothing in the result).
pub struct ScatterPlan {
    pub piles: usize,
    pub chunk: usize,
    pub max_record: u64,
    pub threads: usize,
}

/// The records starting in bytes `lo..hi` of input `source`.
struct Chunk {
    source: usize,
    lo: u64,
    hi: u64,
}

/// Running pile sizes, advanced by one chunk at a time in chunk order.
struct Totals {
    next_chunk: usize,
    bytes: Vec<u64>,
    records: Vec<u64>,
    error: Option<Error>,
}

struct Shared<'a> {
    totals: Mutex<Totals>,
    turn: Condvar,
    files: &'a [File],
    paths: &'a [PathBuf],
    /// Lines only: one file of line lengths per pile.
    length_files: &'a [File],
    length_paths: &'a [PathBuf],
}

impl Shared<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, e: Error) {
        self.lock().error.get_or_insert(e);
        self.turn.notify_all();
    }

    fn failed(&self) -> bool {
        self.lock().error.is_some()
    }
}

/// Marks the run failed if its worker panics, so no other worker waits forever for its turn.
struct FailOnPanic<'a, 'b>(&'a Shared<'b>);

impl Drop for FailOnPanic<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .fail(Error::Options("a scatter thread panicked".into()));
        }
    }
}

/// Buffers one worker reuses from chunk to chunk.
#[derive(Default)]
struct Worker {
    /// The chunk as read (plus the byte before it and the tail of its last record).
    input: Vec<u8>,
    /// The chunk's records grouped by pile, and (lines) their lengths grouped the same way.
    grouped: Vec<u8>,
    grouped_lengths: Vec<u8>,
    /// Per record: its end in `input` (lines) and its pile.
    ends: Vec<u32>,
    piles: Vec<u16>,
    /// Per pile: bytes and records of this chunk, then the write cursor.
    bytes: Vec<u64>,
    records: Vec<u64>,
    cursor: Vec<usize>,
    length_cursor: Vec<usize>,
    offsets: Vec<u64>,
    record_offsets: Vec<u64>,
}

/// Scatters the records of `sources` (in order) to `plan.piles` piles named by `pile_path(i)` (line
/// lengths go beside, with the extension `len`).
/// Each record's pile is drawn uniformly from a stream that depends on `seed` and its chunk only.
pub fn scatter(
    sources: &[PathBuf],
    format: RecordFormat,
    plan: &ScatterPlan,
    pile_path: impl Fn(usize) -> PathBuf,
    seed: u64,
    progress: &Progress,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<Pile>, Error> {
    assert!(plan.piles <= u16::MAX as usize, "pile ids are u16");
    let mut inputs = Vec::with_capacity(sources.len());
    let mut chunks = Vec::new();
    let step = match format {
        RecordFormat::Lines => plan.chunk.max(1) as u64,
        RecordFormat::Fixed(n) => (plan.chunk / n).max(1) as u64 * n as u64,
    };
    for (source, path) in sources.iter().enumerate() {
        let (file, size) = open_input(path, format)?;
        let mut lo = 0;
        while lo < size {
            let hi = (lo + step).min(size);
            chunks.push(Chunk { source, lo, hi });
            lo = hi;
        }
        inputs.push((file, size));
    }

    let mut paths = Vec::with_capacity(plan.piles);
    let mut files = Vec::with_capacity(plan.piles);
    let mut length_paths = Vec::new();
    let mut length_files = Vec::new();
    for i in 0..plan.piles {
        let path = pile_path(i);
        files.push(File::create(&path).map_err(|e| Error::io(&path, e))?);
        if format == RecordFormat::Lines {
            let lengths = path.with_extension("len");
            length_files.push(File::create(&lengths).map_err(|e| Error::io(&lengths, e))?);
            length_paths.push(lengths);
        }
        paths.push(path);
    }
    let shared = Shared {
        totals: Mutex::new(Totals {
            next_chunk: 0,
            bytes: vec![0; plan.piles],
            records: vec![0; plan.piles],
            error: None,
        }),
        turn: Condvar::new(),
        files: &files,
        paths: &paths,
        length_files: &length_files,
        length_paths: &length_paths,
    };
    let chunk_seed = Rng::new(seed, 0).next_u64();
    let next = AtomicUsize::new(0);
    let work = || {
        let _guard = FailOnPanic(&shared);
        let mut w = Worker::default();
        loop {
            if shared.failed() {
                return;
            }
            let g = next.fetch_add(1, Ordering::Relaxed);
            let Some(chunk) = chunks.get(g) else { return };
            if cancelled() {
                shared.fail(Error::Cancelled);
                return;
            }
            let (file, size) = &inputs[chunk.source];
            let path = &sources[chunk.source];
            let mut rng = Rng::new(chunk_seed, g as u64);
            if let Err(e) =
                w.scatter_chunk(g, chunk, file, *size, path, format, plan, &mut rng, &shared)
            {
                shared.fail(e);
                return;
            }
            progress.add(chunk.hi - chunk.lo);
        }
    };
    crate::run_workers(plan.threads.clamp(1, chunks.len().max(1)), work);
    let totals = shared
        .totals
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(e) = totals.error {
        return Err(e);
    }
    let mut length_paths = length_paths.into_iter();
    Ok(paths
        .into_iter()
        .zip(totals.bytes.iter().zip(&totals.records))
        .map(|(path, (&bytes, &records))| Pile {
            path,
            lengths: length_paths.next(),
            bytes,
            records,
        })
        .collect())
}

impl Worker {
    /// Reads chunk `g`, draws its records' piles, takes its turn to claim pile offsets and writes.
    #[allow(clippy::too_many_arguments)]
    fn scatter_chunk(
        &mut self,
        g: usize,
        chunk: &Chunk,
        file: &File,
        size: u64,
        path: &Path,
        format: RecordFormat,
        plan: &ScatterPlan,
        rng: &mut Rng,
        shared: &Shared,
    ) -> Result<(), Error> {
        let n = plan.piles;
        self.bytes.clear();
        self.bytes.resize(n, 0);
        self.records.clear();
        self.records.resize(n, 0);
        self.piles.clear();
        self.ends.clear();
        let (first, end) = match format {
            RecordFormat::Lines => self.read_lines(chunk, file, size, path, plan.max_record)?,
            RecordFormat::Fixed(_) => {
                let len = (chunk.hi - chunk.lo) as usize;
                self.input.resize(len, 0);
                file.read_exact_at(&mut self.input, chunk.lo)
                    .map_err(|e| Error::io(path, e))?;
                (0, len)
            }
        };

        // Draw every record's pile (one draw per record, in input order).
        match format {
            RecordFormat::Lines => {
                let mut start = first;
                for e in memchr::memchr_iter(b'\n', &self.input[first..end]) {
                    let stop = first + e + 1;
                    let len = (stop - start) as u64;
                    if len > plan.max_record {
                        let at = chunk.lo.saturating_sub(1) + start as u64;
                        return Err(too_long(path, at, plan.max_record, plan.max_record));
                    }
                    let p = rng.below(n as u64) as usize;
                    self.bytes[p] += len;
                    self.records[p] += 1;
                    self.piles.push(p as u16);
                    self.ends.push(stop as u32);
                    start = stop;
                }
            }
            RecordFormat::Fixed(r) => {
                for _ in 0..(end - first) / r {
                    let p = rng.below(n as u64) as usize;
                    self.bytes[p] += r as u64;
                    self.records[p] += 1;
                    self.piles.push(p as u16);
                }
            }
        }

        // Claim this chunk's place in every pile: chunks advance the totals strictly in order.
        {
            let mut t = shared.lock();
            while t.next_chunk != g {
                if t.error.is_some() {
                    return Ok(()); // the run stops; the failing worker reported why
                }
                t = shared.turn.wait(t).unwrap_or_else(|p| p.into_inner());
            }
            self.offsets.clear();
            self.offsets.extend_from_slice(&t.bytes);
            self.record_offsets.clear();
            self.record_offsets.extend_from_slice(&t.records);
            for p in 0..n {
                t.bytes[p] += self.bytes[p];
                t.records[p] += self.records[p];
            }
            t.next_chunk += 1;
        }
        shared.turn.notify_all();

        // Group the records by pile (a counting sort), then one write per pile.
        self.cursor.clear();
        let mut at = 0usize;
        for &b in &self.bytes {
            self.cursor.push(at);
            at += b as usize;
        }
        self.grouped.resize(at, 0);
        match format {
            RecordFormat::Lines => {
                self.length_cursor.clear();
                let mut at = 0usize;
                for &r in &self.records {
                    self.length_cursor.push(at);
                    at += r as usize * 4;
                }
                self.grouped_lengths.resize(at, 0);
                let mut start = first;
                for (&p, &stop) in self.piles.iter().zip(&self.ends) {
                    let stop = stop as usize;
                    let len = stop - start;
                    let c = &mut self.cursor[p as usize];
                    self.grouped[*c..*c + len].copy_from_slice(&self.input[start..stop]);
                    *c += len;
                    let c = &mut self.length_cursor[p as usize];
                    self.grouped_lengths[*c..*c + 4].copy_from_slice(&(len as u32).to_le_bytes());
                    *c += 4;
                    start = stop;
                }
            }
            RecordFormat::Fixed(r) => {
                for (k, &p) in self.piles.iter().enumerate() {
                    let c = &mut self.cursor[p as usize];
                    self.grouped[*c..*c + r].copy_from_slice(&self.input[k * r..(k + 1) * r]);
                    *c += r;
                }
            }
        }
        let mut from = 0usize;
        let mut lengths_from = 0usize;
        for p in 0..n {
            let len = self.bytes[p] as usize;
            if len > 0 {
                shared.files[p]
                    .write_all_at(&self.grouped[from..from + len], self.offsets[p])
                    .map_err(|e| Error::io(&shared.paths[p], e))?;
            }
            from += len;
            if let Some(file) = shared.length_files.get(p) {
                let len = self.records[p] as usize * 4;
                if len > 0 {
                    file.write_all_at(
                        &self.grouped_lengths[lengths_from..lengths_from + len],
                        self.record_offsets[p] * 4,
                    )
                    .map_err(|e| Error::io(&shared.length_paths[p], e))?;
                }
                lengths_from += len;
            }
        }
        Ok(())
    }

    /// Reads the lines starting in the chunk into `self.input`; returns the range of `self.input` they
    /// fill (whole lines, a missing final newline added). `self.input[0]` is the byte before the chunk
    /// (when there is one), which tells whether a line starts right at the chunk's first byte.
    fn read_lines(
        &mut self,
        chunk: &Chunk,
        file: &File,
        size: u64,
        path: &Path,
        max_record: u64,
    ) -> Result<(usize, usize), Error> {
        let base = chunk.lo.saturating_sub(1);
        // The last line usually ends soon after the chunk: read a little past it at once.
        let mut want = (chunk.hi - base + 4096).min(size - base) as usize;
        self.input.resize(want, 0);
        file.read_exact_at(&mut self.input, base)
            .map_err(|e| Error::io(path, e))?;
        let own = (chunk.hi - base) as usize; // input[..own] is the chunk (and the byte before)
        let first = if chunk.lo == 0 {
            0
        } else {
            match memchr::memchr(b'\n', &self.input[..own - 1]) {
                Some(i) => i + 1,
                None => return Ok((0, 0)), // inside a line that started in an earlier chunk
            }
        };
        // The chunk's last line ends at the first newline at or after its last byte.
        let mut searched = own - 1;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.input[searched..]) {
                return Ok((first, searched + i + 1));
            }
            if base + want as u64 == size {
                // The input ends without a newline: add one so records never merge.
                self.input.push(b'\n');
                return Ok((first, want + 1));
            }
            // The unfinished line is the chunk's last one (it has no newline up to `want`).
            let last = memchr::memrchr(b'\n', &self.input[first..own - 1])
                .map_or(first, |i| first + i + 1);
            if (want - last) as u64 > max_record {
                return Err(too_long(
                    path,
                    base + last as u64,
                    (want - last) as u64,
                    max_record,
                ));
            }
            searched = want;
            want = (want + (own.max(64 << 10))).min((size - base) as usize);
            self.input.resize(want, 0);
            file.read_exact_at(&mut self.input[searched..], base + searched as u64)
                .map_err(|e| Error::io(path, e))?;
        }
    }
}
