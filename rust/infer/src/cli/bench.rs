//! `nano-infer bench MODEL.bin ...`: reserved for the kernel benchmarks (fast-engine issue).
use nano_infer::Error;

pub fn main(_args: &[std::ffi::OsString]) -> Result<(), Error> {
    Err(Error::Unsupported("`nano-infer bench` is not part of this build yet".into()))
}
