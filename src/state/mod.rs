//! What gpufleet remembers between runs: the state model and its local backend
//! (state file, lock, journal).

pub mod model;
pub use model::*;
