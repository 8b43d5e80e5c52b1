#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nano_tokenizer::fuzzing::vocab_json(data));
