//! `nano._native.serve_main`: `python -m nano.serve`, the server of `nano-infer serve` run inside
//! the Python process (the GIL released while it runs).
use std::ffi::OsString;

use nano_infer::Error;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// Runs the server with command-line `argv` (program name first, no "serve" word) until SIGINT or
/// SIGTERM; returns the exit status (clap's for --help and usage errors, which it prints).
#[pyfunction]
fn serve_main(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    let argv: Vec<OsString> = argv.into_iter().map(OsString::from).collect();
    let result =
        py.detach(|| std::panic::catch_unwind(|| nano_infer::serve::main_returning(&argv)));
    match result {
        Ok(Ok(code)) => Ok(code),
        Ok(Err(e @ Error::Io { .. })) => Err(PyOSError::new_err(e.to_string())),
        Ok(Err(e)) => Err(PyValueError::new_err(e.to_string())),
        Err(_) => Err(PyRuntimeError::new_err(
            "internal error in the native server (a bug; please report it)",
        )),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(serve_main, m)?)
}
