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

/// Memory needed to shuffle `bytes` bytes holding `records` records in memory (plus the write buffer).
pub fn gather_cost(format: RecordFormat, bytes: u64, records: u64, write_buffer: usize) -> u64 {
    bytes + records * format.index_bytes() + write_buffer as u64
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
}

impl Scratch {
    /// Permutes the whole records of `data` uniformly at random with `rng` and writes them to `out`
    /// starting at byte `at`, through a buffer of `write_buffer` bytes. Returns the record count.
    #[allow(clippy::too_many_arguments)]
    pub fn shuffle_and_write(
        &mut self,
        data: &[u8],
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
                for end in memchr::memchr_iter(b'\n', data) {
                    index.push(pack(start, end + 1 - start));
                    start = end + 1;
                }
                if start < data.len() {
                    index.push(pack(start, data.len() - start)); // defensive: piles end in '\n'
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
