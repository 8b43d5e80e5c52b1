//! `nano._native`: the thin PyO3 layer over Nano's Rust crates.
//! Each submodule file binds one crate; this file only registers them.
use pyo3::prelude::*;

mod infer;
mod serve;
mod shuffle;
mod tokenizer;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    tokenizer::register(m)?;
    shuffle::register(m)?;
    infer::register(m)?;
    serve::register(m)?;
    Ok(())
}
