//! Matrix kernels behind one interface (scalar reference + per-ISA SIMD). (Skeleton.)
