//! gpufleet: an infrastructure-as-code provisioner for GPU capacity across
//! AWS, Google Cloud and Azure.
//!
//! # Layout
//!
//! Pure logic in the middle, I/O at the edges:
//!
//! - [`model`]: the shared vocabulary as plain data (clouds, placements,
//!   instances and their account scopes, ownership tags, shortages, the clock).
//! - [`plan`]: plan files (TOML) → validated [`plan::Plan`], with located
//!   diagnostics; which offerings may host a fleet ([`plan::offerings`]).
//! - [`catalog`]: the dated data of GPU offerings, regions, jurisdictions and
//!   prices, and the refreshed catalog (what the clouds said they sell) merged over it.
//! - [`planner`]: PURE. (plan, observed instances, shortage memory, catalog, now) → changeset.
//! - [`state`]: what gpufleet remembers between runs, behind [`state::StateBackend`].
//! - [`apply`]: refresh, and executing a changeset through the providers, journaling intent first.
//! - [`providers`]: the one trait at the cloud boundary, one module per cloud.
//! - [`sim`]: the cloud simulator, speaking the clouds' real wire protocols.
//! - [`history_page`]: PURE. A plan's history → one self-contained HTML page.
//! - [`cli`]: command-line definitions, rendering and per-command glue; builds
//!   the concrete parts (backend, clouds or simulator, clock) and hands them down.
//!
//! # Imports point down
//!
//! Checked by `tests/layering.rs` on every `crate::` path in `src/`:
//! - `model`, `json` (reading gpufleet's own JSON files with errors that
//!   name the field) and `files` (writing them privately, atomically, through
//!   no symlink) use no other module; every module may use them;
//! - `catalog` uses only `model`; `plan` only `model` and `catalog`;
//! - `planner` uses only `model`, `plan` and `catalog`, with no async, file
//!   system, environment or clock;
//! - `state` and `providers` use `model` (and `providers` the `catalog`),
//!   never each other;
//! - `apply` uses `planner`, `state` and `providers` through their traits,
//!   never `sim` or `cli`;
//! - `sim` uses only `model` and `catalog`: it knows wire protocols and its
//!   world, and cannot tell gpufleet from any other client;
//! - `history_page` uses only `state` (its history entries), with no async,
//!   file system, environment or clock;
//! - `cli` may use everything.

pub mod apply;
pub mod catalog;
pub mod cli;
mod files;
pub mod history_page;
mod json;
pub mod model;
pub mod plan;
pub mod planner;
pub mod providers;
pub mod rebalance;
pub mod sim;
pub mod state;
