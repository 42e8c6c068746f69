//! The planner: PURE. (plan, observed instances, shortage memory, catalog, now) → changeset.

pub mod offerings;
pub use offerings::{Exclusion, allowed_offerings, candidate_offerings, preference_rank};
