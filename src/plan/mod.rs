//! Plan files: the TOML format, its validation with source spans, its JSON schema.
//!
//! Loading happens in two stages, like ripgrep's flags:
//! 1. `raw`: the TOML is parsed keeping the span of every key and value, and
//!    read into raw types that know the format (keys, types, required keys) but
//!    not the world;
//! 2. `validate` (with `fleet`): the raw plan is checked against the rules
//!    and the catalog (with the plan's own `[[offerings]]` applied), defaults are
//!    filled in, and the validated [`model::Plan`] is built.
//!
//! Neither stage stops at the first problem: a [`PlanError`] carries every
//! problem found, each with its line, column and a hint.
//!
//! # Format
//!
//! ```toml
//! name = "demo"                      # lowercase letters, digits, '-'; ≤ 63 chars
//! shortage_ttl = "5m"                # optional
//!
//! [providers.aws]
//! regions = ["us-east-1", "us-west-2"]
//! subnets = { "us-east-1a" = "subnet-0123456789abcdef0" }   # optional, per zone
//! security_groups = { "us-east-1" = ["sg-0123456789abcdef0"] }  # optional, per region
//!
//! [fleets.trainers]
//! gpu = "H100"
//! gpus_per_node = 8
//! nodes = 4
//! min_nodes = 2                      # optional, defaults to nodes
//! placement = "spread"               # or "fill" (the default) or "pack"
//! spread_by = "zone"                 # spread: "zone", "region" or "cloud"
//! max_skew = 1
//! prefer = ["aws:us-east-1"]         # "cloud", "cloud:region", "cloud:zone"
//! residency = ["US"]                 # optional
//! max_price_per_gpu_hour = 9.0       # optional
//! image = { aws = "ami-0123456789abcdef0" }
//! startup = "scripts/join.sh"        # optional, relative to the plan file
//! labels = { team = "research" }     # optional
//! disk_gb = 200                      # optional boot disk, GB
//! identity = { aws = "gpu-node" }    # optional, per cloud
//! ssh_key = { aws = "ops" }          # optional, per cloud
//!
//! [[offerings]]                      # optional: add to / override the catalog
//! cloud = "aws"
//! instance_type = "p5.48xlarge"
//! region = "us-east-1"
//! price_per_hour = 50.0
//! ```

mod diagnostic;
mod fleet;
pub mod model;
pub mod offerings;
mod raw;
mod reader;
mod validate;

pub use diagnostic::{Diagnostic, Location, PlanError};
pub use model::*;

use crate::catalog::Catalog;
use diagnostic::Problems;
use std::path::Path;

/// How a plan file is loaded, as the command line asks.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Accept a `startup` script outside the plan file's directory
    /// (`--allow-startup-outside`).
    pub allow_startup_outside: bool,
}

/// Reads, parses and validates the plan file at `path`. Relative `startup`
/// paths are resolved against the file's directory.
pub fn load(path: &Path, catalog: &Catalog, options: LoadOptions) -> Result<Plan, PlanError> {
    let source_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| PlanError::unreadable(&source_name, &error))?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new(""));
    parse_with(&source_name, &text, base_dir, catalog, options)
}

/// Parses and validates plan text. `source_name` names the file in messages;
/// `base_dir` is where relative `startup` paths start, and the directory a
/// `startup` script must stay inside.
pub fn parse(source_name: &str, text: &str, base_dir: &Path, catalog: &Catalog) -> Result<Plan, PlanError> {
    parse_with(source_name, text, base_dir, catalog, LoadOptions::default())
}

fn parse_with(
    source_name: &str,
    text: &str,
    base_dir: &Path,
    catalog: &Catalog,
    options: LoadOptions,
) -> Result<Plan, PlanError> {
    let mut problems = Problems::default();
    let (document, syntax_errors) = toml::de::DeTable::parse_recoverable(text);
    if let Some(first) = syntax_errors.first() {
        // After a syntax error the parser guesses; what it reports next is mostly
        // the echo of the first mistake. Report that one, precisely.
        report_syntax_error(first, text, &mut problems);
        return Err(problems.into_error(source_name, text));
    }
    // A control character is reported once, as what it is, not again by
    // each check its value then fails.
    let refused = reader::refuse_control_characters(document.get_ref(), &mut problems);
    let raw = raw::RawPlan::read(document.get_ref(), &mut problems);
    let plan = validate::validate(raw, source_name, base_dir, options, catalog, &mut problems);
    problems.keep_first_at(&refused);
    match plan {
        Some(plan) if problems.is_empty() => Ok(plan),
        _ => Err(problems.into_error(source_name, text)),
    }
}

fn report_syntax_error(error: &toml::de::Error, text: &str, problems: &mut Problems) {
    let span = error.span().unwrap_or(0..0);
    if error.message() == "duplicate key" {
        let key = text.get(span.clone()).unwrap_or_default();
        problems
            .error(span, format!("duplicate key `{key}`"))
            .help("a key may appear once per table; keep one of them")
            .label("set again here");
        return;
    }
    problems
        .error(span, format!("invalid TOML: {}", error.message()))
        .help("the mistake may be just before this point: look for an unclosed quote or bracket");
}

/// The JSON Schema (draft 2020-12) of plan files, for editors and linters.
pub fn json_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<raw::RawPlan>();
    let mut value = schema.to_value();
    remove_null_types(&mut value);
    value
}

/// TOML has no null: a key is absent or has a value. schemars marks optional
/// fields as nullable, which would let editors suggest `null`; drop that.
fn remove_null_types(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".to_string(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                let Some(serde_json::Value::Array(options)) = map.get_mut(key) else { continue };
                options.retain(|o| o.get("type").and_then(|t| t.as_str()) != Some("null"));
                // `anyOf: [X]` is X: merge it, so that editors see a plain reference.
                if options.len() == 1
                    && let serde_json::Value::Object(only) = options.remove(0)
                {
                    map.remove(key);
                    map.extend(only);
                }
            }
            if let Some(serde_json::Value::Array(values)) = map.get_mut("enum") {
                values.retain(|v| !v.is_null());
            }
            map.values_mut().for_each(remove_null_types);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(remove_null_types),
        _ => {}
    }
}
