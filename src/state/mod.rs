//! What gpufleet remembers between runs: the state model and its backends,
//! local (state file, lock, journal) and PostgreSQL (shared by a team). The
//! clouds are the source of truth for what exists; state is the memory of
//! what was intended, what failed, when.

pub mod backend;
pub mod history;
pub mod journal;
pub mod local;
pub mod lock;
pub mod model;
pub mod postgres;

pub use backend::{Lease, PlanCopy, Repaired, StateBackend};
pub use local::{LocalBackend, StateError};
pub use model::*;
