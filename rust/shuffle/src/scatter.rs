//! Pass 1: send every record to a uniformly random pile (a temporary file).
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{channel, sync_channel};

use crate::records::{read_whole_records, RecordFormat};
use crate::rng::Rng;
use crate::{Error, Progress};

/// A finished pile: its file, its size and its number of records.
pub struct Pile {
    pub path: PathBuf,
    pub bytes: u64,
    pub records: u64,
}

/// The sizes that bound pass 1's memory: the read chunk and each pile's write buffer.
pub struct ScatterPlan {
    pub piles: usize,
    pub read_chunk: usize,
    pub pile_buffer: usize,
    pub max_record: u64,
}

/// Spare pile buffers in flight between the scattering thread and the writer thread.
pub const SPARE_BUFFERS: usize = 4;
/// Read chunks in flight between the reader thread and the scattering thread.
pub const CHUNKS_IN_FLIGHT: usize = 2;

/// Scatters the records of `sources` (in order) to `plan.piles` piles named by `pile_path(i)`.
/// The pile of each record is drawn from `rng`, one draw per record in input order, so the result
/// depends only on the seed and the input, never on timing or threads.
///
/// Three threads overlap the work: one reads chunks of whole records, this one draws piles and copies
/// records into per-pile buffers, one writes full buffers to the pile files. Buffers are recycled
/// through channels, so memory stays fixed.
pub fn scatter(
    sources: &[PathBuf],
    format: RecordFormat,
    plan: &ScatterPlan,
    pile_path: impl Fn(usize) -> PathBuf,
    rng: &mut Rng,
    progress: &Progress,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<Pile>, Error> {
    let mut files = Vec::with_capacity(plan.piles);
    let mut piles = Vec::with_capacity(plan.piles);
    for i in 0..plan.piles {
        let path = pile_path(i);
        files.push(File::create(&path).map_err(|e| Error::io(&path, e))?);
        piles.push(Pile {
            path,
            bytes: 0,
            records: 0,
        });
    }
    let mut buffers: Vec<Vec<u8>> = (0..plan.piles)
        .map(|_| Vec::with_capacity(plan.pile_buffer))
        .collect();
    let (chunk_tx, chunk_rx) = sync_channel::<Result<Vec<u8>, Error>>(CHUNKS_IN_FLIGHT);
    let (spare_chunk_tx, spare_chunk_rx) = channel::<Vec<u8>>();
    let (full_tx, full_rx) = sync_channel::<(usize, Vec<u8>)>(SPARE_BUFFERS);
    let (empty_tx, empty_rx) = channel::<Vec<u8>>();
    for _ in 0..SPARE_BUFFERS {
        let _ = empty_tx.send(Vec::with_capacity(plan.pile_buffer));
    }
    let n = plan.piles as u64;
    let pile_buffer = plan.pile_buffer;
    let paths: Vec<PathBuf> = piles.iter().map(|p| p.path.clone()).collect();

    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            for source in sources {
                let sent =
                    read_whole_records(source, format, plan.read_chunk, plan.max_record, |chunk| {
                        let mut buf = spare_chunk_rx.try_recv().unwrap_or_default();
                        buf.clear();
                        buf.extend_from_slice(chunk);
                        // A closed channel means the scattering side stopped on an error: stop quietly.
                        chunk_tx
                            .send(Ok(buf))
                            .map_err(|_| Error::Options(String::new()))
                    });
                if let Err(e) = sent {
                    let _ = chunk_tx.send(Err(e));
                    return;
                }
            }
        });
        let writer = scope.spawn(move || -> Result<(), Error> {
            let mut result = Ok(());
            for (i, mut buf) in full_rx {
                if result.is_ok() {
                    result = files[i]
                        .write_all(&buf)
                        .map_err(|e| Error::io(&paths[i], e));
                }
                // Pool buffers go back (also after an error, so the scatterer never blocks); a lone
                // long record's buffer is larger than any pool buffer and is freed instead.
                if buf.capacity() <= pile_buffer {
                    buf.clear();
                    let _ = empty_tx.send(buf);
                }
            }
            result
        });

        let mut result: Result<(), Error> = Ok(());
        for chunk in &chunk_rx {
            if cancelled() {
                result = Err(Error::Cancelled);
                break;
            }
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            format.for_each(&chunk, |record| {
                let i = rng.below(n) as usize;
                let pile = &mut piles[i];
                pile.bytes += record.len() as u64;
                pile.records += 1;
                let buf = &mut buffers[i];
                if buf.len() + record.len() > buf.capacity() && !buf.is_empty() {
                    let fresh = empty_rx.recv().unwrap_or_default();
                    let full = std::mem::replace(buf, fresh);
                    let _ = full_tx.send((i, full));
                }
                if record.len() > buf.capacity() {
                    // Longer than a pile buffer: sent on its own (the writer frees it, see below).
                    let _ = full_tx.send((i, record.to_vec()));
                } else {
                    buf.extend_from_slice(record);
                }
            });
            progress.add(chunk.len() as u64);
            let _ = spare_chunk_tx.send(chunk);
        }
        drop(chunk_rx); // unblocks the reader if we stopped early
        if result.is_ok() {
            for (i, buf) in buffers.drain(..).enumerate() {
                if !buf.is_empty() {
                    let _ = full_tx.send((i, buf));
                }
            }
        }
        drop(full_tx);
        let _ = reader.join();
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::Options("pile writer thread panicked".into())));
        result.and(written)
    })?;
    Ok(piles)
}
