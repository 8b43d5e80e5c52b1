//! Pass 1: send every record to a uniformly random pile (a temporary file).
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::records::{read_whole_records, RecordFormat};
use crate::rng::Rng;
use crate::{Error, Progress};

/// A finished pile: its file, its size and its number of records.
pub struct Pile {
    pub path: PathBuf,
    pub bytes: u64,
    pub records: u64,
}

struct PileWriter {
    pile: Pile,
    file: File,
    buf: Vec<u8>,
}

impl PileWriter {
    fn flush(&mut self) -> Result<(), Error> {
        self.file
            .write_all(&self.buf)
            .map_err(|e| Error::io(&self.pile.path, e))?;
        self.buf.clear();
        Ok(())
    }

    #[inline]
    fn push(&mut self, record: &[u8]) -> Result<(), Error> {
        if self.buf.len() + record.len() > self.buf.capacity() {
            self.flush()?;
            if record.len() > self.buf.capacity() {
                self.file
                    .write_all(record)
                    .map_err(|e| Error::io(&self.pile.path, e))?;
                self.pile.bytes += record.len() as u64;
                self.pile.records += 1;
                return Ok(());
            }
        }
        self.buf.extend_from_slice(record);
        self.pile.bytes += record.len() as u64;
        self.pile.records += 1;
        Ok(())
    }
}

/// The sizes that bound pass 1's memory: the read chunk and each pile's write buffer.
pub struct ScatterPlan {
    pub piles: usize,
    pub read_chunk: usize,
    pub pile_buffer: usize,
    pub max_record: u64,
}

/// Scatters the records of `sources` (in order) to `plan.piles` piles named by `pile_path(i)`.
/// The pile of each record is drawn from `rng`, one draw per record, so the result depends only on the
/// seed and the input, never on timing or threads.
pub fn scatter(
    sources: &[PathBuf],
    format: RecordFormat,
    plan: &ScatterPlan,
    pile_path: impl Fn(usize) -> PathBuf,
    rng: &mut Rng,
    progress: &Progress,
) -> Result<Vec<Pile>, Error> {
    let mut writers = Vec::with_capacity(plan.piles);
    for i in 0..plan.piles {
        let path = pile_path(i);
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        writers.push(PileWriter {
            pile: Pile {
                path,
                bytes: 0,
                records: 0,
            },
            file,
            buf: Vec::with_capacity(plan.pile_buffer),
        });
    }
    let n = plan.piles as u64;
    for source in sources {
        scatter_one(source, format, plan, &mut writers, n, rng, progress)?;
    }
    let mut piles = Vec::with_capacity(writers.len());
    for mut w in writers {
        w.flush()?;
        piles.push(w.pile);
    }
    Ok(piles)
}

fn scatter_one(
    source: &Path,
    format: RecordFormat,
    plan: &ScatterPlan,
    writers: &mut [PileWriter],
    n: u64,
    rng: &mut Rng,
    progress: &Progress,
) -> Result<(), Error> {
    read_whole_records(source, format, plan.read_chunk, plan.max_record, |chunk| {
        let mut result = Ok(());
        format.for_each(chunk, |record| {
            if result.is_ok() {
                result = writers[rng.below(n) as usize].push(record);
            }
        });
        progress.add(chunk.len() as u64);
        result
    })
}
