//! `nano._native`: the thin PyO3 layer over Nano's Rust crates.
//! Each submodule file binds one crate; this file only registers them.
use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
