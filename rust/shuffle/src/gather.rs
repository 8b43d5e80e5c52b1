//! Pass 2: shuffle one pile (or a small input) in memory and write it at its place in the output.
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::records::RecordFormat;
use crate::rng::Rng;
use crate::Error;

/// Memory needed to shuffle `bytes` bytes holding `records` records in memory (plus the write buffer).
pub fn gather_cost(format: RecordFormat, bytes: u64, records: u64, write_buffer: usize) -> u64 {
    bytes + records * format.index_bytes() + write_buffer as u64
}

/// Buffers one gather worker reuses from pile to pile (fresh allocations would page-fault every time).
#[derive(Default)]
pub struct Scratch {
    pub data: Vec<u8>,
    pub(crate) starts: Vec<u32>,
    pub(crate) out: Vec<u8>,
}

impl Scratch {
    /// Reads the whole file into `self.data`.
    pub fn read_file(&mut self, path: &Path) -> Result<(), Error> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
        if self.data.len() < len {
            self.data.resize(len, 0);
        }
        file.read_exact(&mut self.data[..len])
            .map_err(|e| Error::io(path, e))?;
        self.data.truncate(len); // keeps the capacity for the next pile
        Ok(())
    }

    /// Permutes the whole records in `self.data` uniformly at random with `rng` and writes them to
    /// `out` starting at byte `at`, through a buffer of `write_buffer` bytes. Returns the record count.
    pub fn shuffle_and_write(
        &mut self,
        format: RecordFormat,
        rng: &mut Rng,
        out: &File,
        out_path: &Path,
        at: u64,
        write_buffer: usize,
    ) -> Result<u64, Error> {
        let data = &mut self.data;
        match format {
            RecordFormat::Fixed(size) => {
                let n = data.len() / size;
                // Fisher–Yates over records, swapping them in place: no index memory.
                for i in (1..n).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    if i != j {
                        let (head, tail) = data.split_at_mut(i * size);
                        head[j * size..(j + 1) * size].swap_with_slice(&mut tail[..size]);
                    }
                }
                out.write_all_at(data, at)
                    .map_err(|e| Error::io(out_path, e))?;
                Ok(n as u64)
            }
            RecordFormat::Lines => {
                let starts = &mut self.starts;
                starts.clear();
                let mut start = 0u32;
                for end in memchr::memchr_iter(b'\n', data) {
                    starts.push(start);
                    start = end as u32 + 1;
                }
                rng.shuffle(starts);
                let buf = &mut self.out;
                buf.clear();
                let mut pos = at;
                for &s in starts.iter() {
                    let s = s as usize;
                    let len = memchr::memchr(b'\n', &data[s..]).map_or(data.len() - s, |i| i + 1);
                    if buf.len() + len > write_buffer && !buf.is_empty() {
                        out.write_all_at(buf, pos)
                            .map_err(|e| Error::io(out_path, e))?;
                        pos += buf.len() as u64;
                        buf.clear();
                    }
                    buf.extend_from_slice(&data[s..s + len]);
                }
                out.write_all_at(buf, pos)
                    .map_err(|e| Error::io(out_path, e))?;
                Ok(starts.len() as u64)
            }
        }
    }
}
