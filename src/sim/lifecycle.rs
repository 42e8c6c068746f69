//! How long the simulated clouds' instances take to start and to go away,
//! in simulated time. Real clouds answer a create before the machines run:
//! EC2 instances are `pending`, Compute Engine's `PROVISIONING` then
//! `STAGING`, Azure's scale sets `Creating`; deleted ones linger as
//! `shutting-down` or `STOPPING`, their names still taken. States follow the
//! world's clock alone, so they move on with time whether or not anyone
//! polls; a client that waits must let simulated time pass (gpufleet sleeps
//! through the simulator's clock, `zoneOperations.wait` holds its answer
//! until the operation is done).
//!
//! The default world has these phases (a few seconds to half a minute, as
//! the clouds typically take); a scenario sets them with `[lifecycle]`, and
//! `"0s"` turns a phase off.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Longest phase a scenario may set: phases are seconds to minutes on the
/// clouds, and a day would only hide a client that never lets time pass.
pub const MAX_PHASE: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lifecycle {
    /// EC2: `pending` after RunInstances, before `running`.
    pub ec2_pending: Duration,
    /// EC2: `shutting-down` after TerminateInstances, before `terminated`.
    pub ec2_shutting_down: Duration,
    /// Compute Engine: `PROVISIONING` after the create, then `STAGING`.
    pub gce_provisioning: Duration,
    /// Compute Engine: `STAGING`, then `RUNNING`; the create's operation is
    /// DONE when its instances run.
    pub gce_staging: Duration,
    /// Compute Engine: `STOPPING` after a delete; the name stays taken and
    /// the delete's operation runs until the instance is gone.
    pub gce_stopping: Duration,
    /// Azure: a scale set's change (create, scale-out, deleting VMs) is
    /// `Creating`/`Updating` for this long, its async operation `InProgress`.
    pub azure_operation: Duration,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle {
            ec2_pending: Duration::from_secs(15),
            ec2_shutting_down: Duration::from_secs(30),
            gce_provisioning: Duration::from_secs(10),
            gce_staging: Duration::from_secs(15),
            gce_stopping: Duration::from_secs(30),
            azure_operation: Duration::from_secs(30),
        }
    }
}

/// `[lifecycle]` as written: each phase a duration like "15s".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLifecycle {
    ec2_pending: Option<String>,
    ec2_shutting_down: Option<String>,
    gce_provisioning: Option<String>,
    gce_staging: Option<String>,
    gce_stopping: Option<String>,
    azure_operation: Option<String>,
}

impl RawLifecycle {
    /// The checked phases, the default's where one is not given.
    pub fn check(self) -> Result<Lifecycle, String> {
        let default = Lifecycle::default();
        let phase = |key: &str, text: Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(text) => {
                let phase = humantime::parse_duration(&text)
                    .map_err(|e| format!("lifecycle {key} = \"{text}\" is not a duration like \"15s\": {e}"))?;
                if phase > MAX_PHASE {
                    return Err(format!(
                        "lifecycle {key} = \"{text}\" is longer than {}",
                        humantime::format_duration(MAX_PHASE)
                    ));
                }
                Ok(phase)
            }
        };
        Ok(Lifecycle {
            ec2_pending: phase("ec2_pending", self.ec2_pending, default.ec2_pending)?,
            ec2_shutting_down: phase("ec2_shutting_down", self.ec2_shutting_down, default.ec2_shutting_down)?,
            gce_provisioning: phase("gce_provisioning", self.gce_provisioning, default.gce_provisioning)?,
            gce_staging: phase("gce_staging", self.gce_staging, default.gce_staging)?,
            gce_stopping: phase("gce_stopping", self.gce_stopping, default.gce_stopping)?,
            azure_operation: phase("azure_operation", self.azure_operation, default.azure_operation)?,
        })
    }
}

/// `at` plus a phase, saturating at the last time the clock keeps.
pub fn after(at: chrono::DateTime<chrono::Utc>, phase: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Duration::from_std(phase)
        .ok()
        .and_then(|phase| at.checked_add_signed(phase))
        .unwrap_or_else(super::world::latest_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_phases_default_when_absent_and_are_bounded() {
        let raw: RawLifecycle = toml::from_str("ec2_pending = \"0s\"\ngce_staging = \"2m\"").unwrap();
        let lifecycle = raw.check().unwrap();
        assert_eq!(lifecycle.ec2_pending, Duration::ZERO);
        assert_eq!(lifecycle.gce_staging, Duration::from_secs(120));
        assert_eq!(lifecycle.azure_operation, Lifecycle::default().azure_operation);

        let raw: RawLifecycle = toml::from_str("gce_stopping = \"2h\"").unwrap();
        assert!(raw.check().unwrap_err().contains("longer than 1h"));
        let raw: RawLifecycle = toml::from_str("ec2_pending = \"soon\"").unwrap();
        assert!(raw.check().unwrap_err().contains("ec2_pending"));
        assert!(toml::from_str::<RawLifecycle>("ec2_booting = \"1s\"").is_err());
    }
}
