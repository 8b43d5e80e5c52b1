//! `nano-infer`: command-line front end of the engine. (Filled in below.)
fn main() {}
