//! Out-of-core uniform shuffler. (Skeleton: filled in by the data issue.)
