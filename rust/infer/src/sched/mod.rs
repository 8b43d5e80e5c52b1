//! Scheduling of the engine's work over threads, beside the kernels that do the work: how many
//! threads by default ([`performance_cores`]) and the team a forward pass hands its jobs to ([`Team`]).

#[cfg(feature = "threads")]
mod team;
mod topology;

#[cfg(feature = "threads")]
pub use team::Team;
pub use topology::performance_cores;
