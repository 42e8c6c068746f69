//! Plan files: the TOML format, its validation with source spans, its JSON schema.

pub mod model;
pub use model::*;
