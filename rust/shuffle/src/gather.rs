//! Pass 2: shuffle one pile (or a small input) in memory and write it at its place in the output.
//!
//! The records stay where they are: an index of them is shuffled (Fisher–Yates), then the records are
//! copied in index order into a write buffer small enough to stay in cache, written with one `pwrite`
//! whenever it fills. The copy reads the records in random order, so the records a few places ahead in
//! the index are prefetched while the current one is copied.
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::records::RecordFormat;
use crate::rng::Rng;
use crate::Error;

/// Memory needed to shuffle `bytes` bytes holding `records` records in memory (plus the write buffer
/// and, for lines, the pile's file of line lengths).
pub fn gather_cost(format: RecordFormat, bytes: u64, records: u64, write_buffer: usize) -> u64 {
    let lengths = match format {
        RecordFormat::Lines => 4,
        RecordFormat::Fixed(_) => 0,
    };
    bytes + records * (format.index_bytes() + lengths) + write_buffer as u64
}

/// How many records ahead of the one being copied are prefetched.
const PREFETCH_AHEAD: usize = 8;

/// Buffers one gather worker reuses from pile to pile (fresh allocations would page-fault every time).
#[derive(Default)]
pub struct Scratch {
    /// Lines: start (low 32 bits) and length (high 32 bits) of each line.
    lines: Vec<u64>,
    /// Fixed-size records: record numbers.
    numbers: Vec<u32>,
    out: Vec<u8>,
    /// A pile's line lengths as read from its file (u32, little-endian).
    lengths: Vec<u8>,
}

impl Scratch {
    /// Reads a pile's line lengths (`records` of them) into `self.lengths`.
    pub fn read_lengths(&mut self, path: &Path, records: u64) -> Result<(), Error> {
        let len = records as usize * 4;
        self.lengths.resize(len, 0);
        File::open(path)
            .and_then(|f| f.read_exact_at(&mut self.lengths, 0))
            .map_err(|e| Error::io(path, e))
    }

    /// Permutes the whole records of `data` uniformly at random with `rng` and writes them to `out`
    /// starting at byte `at`, through a buffer of `write_buffer` bytes. Returns the record count.
    /// With `known_lengths`, lines are cut by `self.lengths` (read by `read_lengths`) instead of by
    /// scanning `data` for newlines.
    #[allow(clippy::too_many_arguments)]
    pub fn shuffle_and_write(
        &mut self,
        data: &[u8],
        known_lengths: bool,
        format: RecordFormat,
        rng: &mut Rng,
        out: &File,
        out_path: &Path,
        at: u64,
        write_buffer: usize,
    ) -> Result<u64, Error> {
        let mut writer = Writer {
            buf: std::mem::take(&mut self.out),
            cap: write_buffer.max(1),
            file: out,
            path: out_path,
            pos: at,
        };
        writer.buf.clear();
        writer.buf.reserve(writer.cap);
        let count;
        match format {
            RecordFormat::Lines => {
                let index = &mut self.lines;
                index.clear();
                let mut start = 0usize;
                if known_lengths {
                    for len in self.lengths.chunks_exact(4) {
                        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                        index.push(pack(start, len));
                        start += len;
                    }
                    if start != data.len() {
                        return Err(Error::Records(format!(
                            "a pile's line lengths add up to {start} bytes, not {} (temporary files \
                             changed during the run?)",
                            data.len()
                        )));
                    }
                } else {
                    for end in memchr::memchr_iter(b'\n', data) {
                        index.push(pack(start, end + 1 - start));
                        start = end + 1;
                    }
                    if start < data.len() {
                        index.push(pack(start, data.len() - start)); // defensive: input ends in '\n'
                    }
                }
                rng.shuffle(index);
                for k in 0..index.len() {
                    if let Some(&ahead) = index.get(k + PREFETCH_AHEAD) {
                        let (s, len) = unpack(ahead);
                        prefetch(data, s, len);
                    }
                    let (s, len) = unpack(index[k]);
                    writer.put(&data[s..s + len])?;
                }
                count = index.len();
            }
            RecordFormat::Fixed(size) => {
                let n = data.len() / size;
                let index = &mut self.numbers;
                index.clear();
                index.extend(0..n as u32);
                rng.shuffle(index);
                for k in 0..n {
                    if let Some(&ahead) = index.get(k + PREFETCH_AHEAD) {
                        prefetch(data, ahead as usize * size, size);
                    }
                    let s = index[k] as usize * size;
                    writer.put(&data[s..s + size])?;
                }
                count = n;
            }
        }
        writer.flush()?;
        self.out = writer.buf;
        Ok(count as u64)
    }
}

fn pack(start: usize, len: usize) -> u64 {
    start as u64 | (len as u64) << 32
}

fn unpack(v: u64) -> (usize, usize) {
    ((v & 0xFFFF_FFFF) as usize, (v >> 32) as usize)
}

/// Asks the CPU to start loading (up to 4 cache lines of) `data[start..start + len]`.
#[inline(always)]
fn prefetch(data: &[u8], start: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let end = (start + len).min(start + 256).min(data.len());
        let mut p = start;
        while p < end {
            // SAFETY: a prefetch never faults and reads nothing architecturally; `p` is in bounds anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().add(p).cast()) };
            p += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, start, len);
}

/// Buffered positional writer into the output file.
struct Writer<'a> {
    buf: Vec<u8>,
    cap: usize,
    file: &'a File,
    path: &'a Path,
    pos: u64,
}

impl Writer<'_> {
    #[inline]
    fn put(&mut self, record: &[u8]) -> Result<(), Error> {
        if self.buf.len() + record.len() > self.cap {
            self.flush()?;
            if record.len() > self.cap {
                // A record longer than the buffer is written straight from where it is.
                return self.write(record);
            }
        }
        self.buf.extend_from_slice(record);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        let buf = std::mem::take(&mut self.buf);
        let r = self.write(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(bytes, self.pos)
            .map_err(|e| Error::io(self.path, e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }
}
