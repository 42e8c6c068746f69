//! Draining a node before it is deleted: the plan's `[rebalance] drain`
//! hook, given the node's place as environment variables, within a timeout.
//! A node whose drain fails or times out is kept, and the failure reported.

use crate::model::{Instance, Placement};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// The environment that tells a node's scripts where it runs: the startup
/// script (exported at its top) and the drain hook.
pub(super) fn placement_env<'a>(
    plan: &'a str,
    fleet: &'a str,
    placement: &'a Placement,
) -> [(&'static str, &'a str); 5] {
    [
        ("GPUFLEET_PLAN", plan),
        ("GPUFLEET_FLEET", fleet),
        ("GPUFLEET_CLOUD", placement.cloud.as_str()),
        ("GPUFLEET_REGION", placement.region.as_str()),
        ("GPUFLEET_ZONE", placement.zone.as_deref().unwrap_or_default()),
    ]
}

/// Moves work off a node that is about to be deleted.
#[async_trait::async_trait]
pub trait Drain: Send + Sync {
    /// `Err(why)` keeps the node.
    async fn drain(&self, plan: &str, instance: &Instance) -> Result<(), String>;
}

/// No hook: every node may go at once.
pub struct NoDrain;

#[async_trait::async_trait]
impl Drain for NoDrain {
    async fn drain(&self, _: &str, _: &Instance) -> Result<(), String> {
        Ok(())
    }
}

/// The plan's drain script.
pub struct DrainScript {
    pub path: PathBuf,
    pub timeout: Duration,
}

/// The last bytes of a drain's output worth quoting in a report.
const OUTPUT_TAIL: usize = 400;

#[async_trait::async_trait]
impl Drain for DrainScript {
    async fn drain(&self, plan: &str, instance: &Instance) -> Result<(), String> {
        let placement = Placement::of(instance);
        let child = tokio::process::Command::new(&self.path)
            .envs(placement_env(plan, &instance.fleet, &placement))
            .env("GPUFLEET_INSTANCE_ID", &instance.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.path.display()))?;
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(output) => output.map_err(|e| format!("{} failed: {e}", self.path.display()))?,
            Err(_) => {
                return Err(format!(
                    "{} did not finish within {}",
                    self.path.display(),
                    humantime::format_duration(self.timeout)
                ));
            }
        };
        if output.status.success() {
            return Ok(());
        }
        let mut said = String::from_utf8_lossy(&output.stderr).into_owned();
        said.push_str(&String::from_utf8_lossy(&output.stdout));
        let said: String = said.trim().chars().rev().take(OUTPUT_TAIL).collect::<Vec<_>>().into_iter().rev().collect();
        let said: String = said.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        Err(format!("{} exited with {}: {said}", self.path.display(), output.status))
    }
}
