//! Subcommands of the `nano-infer` binary.
pub mod bench;
pub mod run;
