//! Python binding of the `nano-shuffle` crate: `nano._native.shuffle_files`, wrapped by
//! `nano.data.shuffle`. The shuffle runs with the GIL released.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use nano_shuffle::{shuffle_files_uncommitted, Error, Options, RecordFormat};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn to_py_err(e: Error) -> PyErr {
    match e {
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// Shuffle the records of `inputs` into `output`; returns a summary dict
/// (records, bytes, piles, recursive_piles, gather_threads). `pile_bytes` is for tests and tuning:
/// it forces the two-pass path with piles of about that size.
#[pyfunction]
#[pyo3(signature = (inputs, output, memory, seed=0, tmp_dir=None, threads=None, record_size=None, progress=false, pile_bytes=None))]
#[allow(clippy::too_many_arguments)]
fn shuffle_files<'py>(
    py: Python<'py>,
    inputs: Vec<PathBuf>,
    output: PathBuf,
    memory: u64,
    seed: u64,
    tmp_dir: Option<PathBuf>,
    threads: Option<usize>,
    record_size: Option<usize>,
    progress: bool,
    pile_bytes: Option<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let format = match record_size {
        None => RecordFormat::Lines,
        Some(n) => RecordFormat::Fixed(n),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = Options {
        memory,
        seed,
        tmp_dir,
        threads,
        format,
        progress,
        cancel: Some(cancel.clone()),
        pile_bytes,
    };
    // The shuffle runs on its own thread; this one wakes every 100 ms to let Python handle signals,
    // so Ctrl-C stops a long shuffle promptly (and the shuffler removes its temporary files). The
    // output is renamed into place here, under the GIL, only after one more check for a signal: an
    // interrupt that arrived while the last piece of work finished (before this thread noticed it)
    // still leaves no output behind.
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        // If the receiver is gone, the result is dropped here, which deletes the temporary output.
        let _ = done_tx.send(shuffle_files_uncommitted(&inputs, &output, &opts));
    });
    let mut rx = done_rx;
    let result = loop {
        // The receiver moves into the GIL-free closure and back (it is Send but not Sync).
        let (got, back) = py.detach(move || (rx.recv_timeout(Duration::from_millis(100)), rx));
        rx = back;
        match got {
            Ok(result) => break result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(interrupt) = py.check_signals() {
                    cancel.store(true, Ordering::Relaxed);
                    let _ = py.detach(move || worker.join());
                    // Whatever the worker finished with (cancelled, or done just before it saw the
                    // flag) is dropped uncommitted: temporary output and piles are removed.
                    drop(rx.try_recv());
                    return Err(interrupt);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(Error::Options(
                    "the shuffle thread stopped unexpectedly".into(),
                ))
            }
        }
    };
    let finished = result.map_err(to_py_err)?;
    // Dropping `finished` on this error path deletes the temporary output.
    py.check_signals()?;
    let result = finished.commit();
    let summary = result.map_err(to_py_err)?;
    let d = PyDict::new(py);
    d.set_item("records", summary.records)?;
    d.set_item("bytes", summary.bytes)?;
    d.set_item("piles", summary.piles)?;
    d.set_item("recursive_piles", summary.recursive_piles)?;
    d.set_item("gather_threads", summary.gather_threads)?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(shuffle_files, m)?)
}
