//! What a record is (a line, or a fixed number of bytes) and how files are cut into whole records.
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::Error;

/// The unit the shuffler permutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFormat {
    /// Text lines ending in `\n` (JSONL included). A last line without `\n` gets one in the output.
    Lines,
    /// Binary records of exactly this many bytes (e.g. token blocks); file sizes must be multiples.
    Fixed(usize),
}

impl RecordFormat {
    /// Bytes of bookkeeping per record while a pile is shuffled in memory: a line's start and length
    /// (two u32), a fixed record's number (u32).
    pub fn index_bytes(self) -> u64 {
        match self {
            RecordFormat::Lines => 8,
            RecordFormat::Fixed(_) => 4,
        }
    }

    /// Number of whole records in `data` (which holds whole records only).
    pub fn count(self, data: &[u8]) -> u64 {
        match self {
            RecordFormat::Lines => memchr::memchr_iter(b'\n', data).count() as u64,
            RecordFormat::Fixed(n) => (data.len() / n) as u64,
        }
    }
}

/// Reads `path` in pieces of about `chunk` bytes, each cut at a record boundary, calling `f` with each
/// piece (whole, normalised records: a missing final newline is added). A record longer than
/// `max_record` is an error naming the file and byte offset.
pub fn read_whole_records(
    path: &Path,
    format: RecordFormat,
    chunk: usize,
    max_record: u64,
    mut f: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let (mut file, size) = open_input(path, format)?;
    // Never allocate (and zero) more than the file needs; grow only for a record longer than a chunk.
    let chunk = chunk.min(size as usize + 1).max(1);
    let mut buf = vec![0u8; chunk];
    let mut filled = 0usize; // buf[..filled] holds data not yet handed out
    let mut offset = 0u64; // file offset of buf[0]
    loop {
        if filled == buf.len() {
            if filled as u64 > max_record {
                return Err(too_long(path, offset, filled as u64, max_record));
            }
            buf.resize(filled + chunk, 0);
        }
        let n = read_full(&mut file, &mut buf[filled..]).map_err(|e| Error::io(path, e))?;
        filled += n;
        let eof = n == 0;
        let cut = match format {
            RecordFormat::Lines if eof => filled,
            RecordFormat::Lines => memchr::memrchr(b'\n', &buf[..filled]).map_or(0, |i| i + 1),
            RecordFormat::Fixed(r) => filled / r * r,
        };
        if cut > 0 {
            if format == RecordFormat::Lines {
                check_lengths(&buf[..cut], path, offset, max_record)?;
                if eof && buf[cut - 1] != b'\n' {
                    let mut last = buf[..cut].to_vec();
                    last.push(b'\n');
                    return f(&last);
                }
            }
            f(&buf[..cut])?;
            buf.copy_within(cut..filled, 0);
            filled -= cut;
            offset += cut as u64;
        }
        if eof {
            return Ok(());
        }
    }
}

/// Opens an input file and returns it with its size; a fixed-record file whose size is not a multiple
/// of the record size is refused (a truncated file).
pub(crate) fn open_input(path: &Path, format: RecordFormat) -> Result<(File, u64), Error> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if let RecordFormat::Fixed(n) = format {
        if size % n as u64 != 0 {
            return Err(Error::Records(format!(
                "{}: size {size} is not a multiple of the record size {n} (a truncated file?)",
                path.display()
            )));
        }
    }
    Ok((file, size))
}

pub(crate) fn too_long(path: &Path, offset: u64, len: u64, max: u64) -> Error {
    Error::Records(format!(
        "{}: the record at byte {offset} is longer than {len} bytes, more than this memory budget allows \
         ({max} bytes per record); raise --memory",
        path.display()
    ))
}

fn check_lengths(data: &[u8], path: &Path, offset: u64, max: u64) -> Result<(), Error> {
    if (data.len() as u64) <= max {
        return Ok(());
    }
    let mut start = 0usize;
    for end in memchr::memchr_iter(b'\n', data) {
        if (end + 1 - start) as u64 > max {
            return Err(too_long(path, offset + start as u64, max, max));
        }
        start = end + 1;
    }
    if (data.len() - start) as u64 > max {
        return Err(too_long(path, offset + start as u64, max, max));
    }
    Ok(())
}

/// Like `read`, but keeps reading until the buffer is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
