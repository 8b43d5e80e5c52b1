//! Nano's model-file format and inference engine. (Skeleton: filled in by the format/engine issue;
//! `kernels/` by the fast-engine issue.)

pub mod kernels;
