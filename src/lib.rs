//! gpufleet: an infrastructure-as-code provisioner for GPU capacity across
//! AWS, Google Cloud and Azure.
//!
//! # Layout
//!
//! Pure logic in the middle, I/O at the edges:
//!
//! - [`plan`]: plan files (TOML) → validated [`plan::Plan`], with located diagnostics.
//! - [`catalog`]: the dated data of GPU offerings, regions, jurisdictions and prices.
//! - [`planner`]: PURE. (plan, observed instances, shortage memory, catalog, now) → changeset.
//! - [`state`]: what gpufleet remembers between runs: state file, lock, journal.
//! - [`apply`]: executes a changeset through the providers, journaling intent first.
//! - [`providers`]: the one trait at the cloud boundary, one module per cloud.
//! - [`sim`]: the cloud simulator, speaking the clouds' real wire protocols.
//! - [`cli`]: command-line definitions, rendering and per-command glue.
//! - `json`: reading gpufleet's own JSON files with errors that name the field.

pub mod apply;
pub mod catalog;
pub mod cli;
mod json;
pub mod plan;
pub mod planner;
pub mod providers;
pub mod sim;
pub mod state;
