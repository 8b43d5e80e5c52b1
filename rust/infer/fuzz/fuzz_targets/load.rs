//! Arbitrary bytes into the model and LoRA loaders (both formats): they must return an error or a model,
//! never panic. A model that loads must also run one forward pass.
//!
//!     cargo +nightly fuzz run load         (from rust/infer)
#![no_main]
use libfuzzer_sys::fuzz_target;
use nano_infer::{Engine, Lora, Model};

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = Model::from_bytes(data.to_vec()) {
        // keep the fuzzer's inputs to models small enough to run
        let c = model.config();
        if c.n_layer * c.n_embd * c.block_size < 1 << 22 {
            if let Ok(mut engine) = Engine::new(model, Some(1)) {
                let _ = engine.logits(&[0]);
            }
        }
    }
    let _ = Lora::from_bytes(data.to_vec());
});
