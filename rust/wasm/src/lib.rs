//! `nano-wasm`: the browser build of Nano's inference engine. It wraps `nano_infer` (no second
//! implementation) with a small wasm-bindgen API used by the page's Web Worker.
use wasm_bindgen::prelude::*;

/// The engine's version, shown by the page once the worker has loaded the module.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
