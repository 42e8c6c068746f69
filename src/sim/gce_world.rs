//! Compute Engine's part of the simulated world: instances named per zone,
//! zonal operations that carry the errors of the work, `requestId` replay,
//! regional GPU quotas and the list filter language.
//!
//! Pure, like [`super::world`]: capacity comes from the world's pools (one
//! pool per zone and machine type, filled from the catalog and the
//! scenario), time from its clock. The wire format lives in `gce`.
//!
//! Semantics kept from GCE: `bulkInsert` creates between `minCount` and
//! `count` instances in one zone or none at all; a stock-out or a quota
//! refusal is not an HTTP error but a finished operation with
//! `error.errors[].code` (`ZONE_RESOURCE_POOL_EXHAUSTED`, `QUOTA_EXCEEDED`);
//! an operation is reported RUNNING when created and DONE from the next
//! `get`/`wait` on, so clients have to wait for it; deleted instances are
//! gone at once (no hour of visibility, unlike EC2).
//!
//! GPU quota metrics are derived from the catalog's GPU model:
//! H100 → `NVIDIA_H100_GPUS` (a3-megagpu: `NVIDIA_H100_MEGA_GPUS`, as GCE
//! counts it apart), H200 → `NVIDIA_H200_GPUS`, B200 → `NVIDIA_B200_GPUS`,
//! A100-40GB → `NVIDIA_A100_GPUS`, A100-80GB → `NVIDIA_A100_80GB_GPUS`,
//! L4 → `NVIDIA_L4_GPUS`; any other model `M` → `NVIDIA_M_GPUS`.

use super::lifecycle::{Lifecycle, after};
use super::paging::Cursor;
use super::scenario::ScenarioQuota;
use super::world::{Tags, World, scramble};
use crate::catalog::{Catalog, GCE_GPUS_ALL_REGIONS};
use crate::model::Cloud;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The largest page `maxResults` may ask for.
pub const MAX_RESULTS: u32 = 500;
/// GCE's limit on resource names.
pub const MAX_NAME_LEN: usize = 63;
/// Most instances one `bulkInsert` may create, as on GCE. Without a limit a
/// count of a billion named a billion instances before anything else was checked.
pub const MAX_BULK_COUNT: u32 = 1000;
/// The longest run of `#` a `namePattern` may hold.
const MAX_PATTERN_DIGITS: usize = 18;
/// Keeps operation ids apart from instance ids of the same sequence number.
const OPERATION_SALT: u64 = 0x0c0f_fee0_0dd5_ea11;
/// How long `zoneOperations.wait` holds its answer at most: "about two minutes".
pub const OPERATION_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The `region` of a project-wide quota, in scenarios and messages.
pub const GLOBAL: &str = "global";

/// GPUs one machine type carries, and the quota metric they count against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineGpus {
    pub metric: String,
    pub gpus: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GceQuota {
    pub region: String,
    pub metric: String,
    pub limit: u32,
}

/// One VM. Only RUNNING ones exist: a deleted VM is removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GceInstance {
    pub id: u64,
    pub name: String,
    pub project: String,
    pub region: String,
    pub zone: String,
    pub machine_type: String,
    pub created: DateTime<Utc>,
    pub spec: InstanceSpec,
    /// When a delete was asked: the instance is STOPPING, its name taken,
    /// until the lifecycle's `gce_stopping` has passed.
    #[serde(default)]
    pub deleted: Option<DateTime<Utc>>,
}

impl GceInstance {
    /// The `status` Compute Engine shows at `now`.
    pub fn status(&self, now: DateTime<Utc>, lifecycle: &Lifecycle) -> &'static str {
        let provisioned = after(self.created, lifecycle.gce_provisioning);
        match self.deleted {
            Some(_) => "STOPPING",
            None if now < provisioned => "PROVISIONING",
            None if now < after(provisioned, lifecycle.gce_staging) => "STAGING",
            None => "RUNNING",
        }
    }
}

/// What a create asks for, besides names and counts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub labels: Tags,
    /// Metadata items (`startup-script`, ...), as sent.
    pub metadata: BTreeMap<String, String>,
    pub source_image: Option<String>,
    pub on_host_maintenance: Option<String>,
    /// Network interfaces: network and subnetwork, as sent.
    #[serde(default)]
    pub networks: Vec<super::gce::account::NetworkSpec>,
    #[serde(default)]
    pub service_accounts: Vec<super::gce::account::ServiceAccountSpec>,
    /// The boot disk's `diskSizeGb`, as sent.
    #[serde(default)]
    pub disk_size_gb: Option<i64>,
}

/// One entry of an operation's `error.errors[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationError {
    pub code: String,
    pub message: String,
    /// For QUOTA_EXCEEDED: the metric, its limit and the region.
    pub quota: Option<GceQuota>,
}

/// A zonal operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GceOperation {
    pub id: u64,
    pub name: String,
    pub project: String,
    pub zone: String,
    /// `insert`, `bulkInsert` or `delete`.
    pub operation_type: String,
    /// Instance name, or `None` for a bulk insert (it targets the zone).
    pub target: Option<String>,
    pub target_id: Option<u64>,
    pub request_id: Option<String>,
    pub inserted: DateTime<Utc>,
    pub errors: Vec<OperationError>,
    /// HTTP status GCE reports for a failed operation.
    pub http_error_status: Option<u16>,
    /// For a bulk insert: instances asked for and created.
    pub bulk: Option<(u32, u32)>,
    /// When its work is finished: a create's when its instances run, a
    /// delete's when the instance is gone. World files written before the
    /// lifecycle was modelled read every operation as done.
    #[serde(default = "super::world::earliest_time")]
    pub done_at: DateTime<Utc>,
}

impl GceOperation {
    pub fn done(&self, now: DateTime<Utc>) -> bool {
        now >= self.done_at
    }
}

/// How a create names its instances.
#[derive(Debug, Clone, PartialEq)]
pub enum Naming {
    /// `instances.insert`: one instance of this name.
    Name(String),
    /// `bulkInsert`'s `namePattern`, with one run of `#`.
    Pattern(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateInstances {
    pub project: String,
    pub zone: String,
    pub machine_type: String,
    pub naming: Naming,
    pub count: u32,
    pub min_count: u32,
    pub spec: InstanceSpec,
    pub request_id: Option<String>,
    /// `insert` or `bulkInsert`, for the operation.
    pub operation_type: &'static str,
}

/// A request GCE refuses outright with an HTTP error (no operation).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GceError {
    #[error("The resource '{0}' was not found")]
    NotFound(String),
    #[error("The resource '{0}' already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
}

/// A page of a list call.
#[derive(Debug, Clone, PartialEq)]
pub struct GcePage<'w> {
    pub instances: Vec<&'w GceInstance>,
    pub next_page_token: Option<String>,
}

/// One `(project, region, metric)` quota as `regions.get` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaUsage {
    pub metric: String,
    pub limit: u32,
    pub usage: u32,
}

/// Compute Engine's state inside the [`World`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GceWorld {
    /// By creation sequence number, so pages walk them in creation order.
    instances: BTreeMap<u64, GceInstance>,
    operations: BTreeMap<u64, GceOperation>,
    /// `requestId` → operation sequence number.
    request_ids: BTreeMap<String, u64>,
    quotas: Vec<GceQuota>,
    machine_types: BTreeMap<String, MachineGpus>,
    pub(super) next_seq: u64,
}

/// `us-central1-a` → `us-central1`.
pub fn region_of_zone(zone: &str) -> &str {
    zone.rsplit_once('-').map_or(zone, |(region, _)| region)
}

/// GCE's resource name rule: `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-'
}

impl GceWorld {
    pub fn new(catalog: &Catalog, quotas: &[ScenarioQuota]) -> GceWorld {
        let machine_types = catalog
            .instance_types
            .iter()
            .filter(|t| t.cloud == Cloud::Gcp)
            .map(|t| {
                (
                    t.name.clone(),
                    MachineGpus { metric: crate::catalog::gce_gpu_quota_metric(&t.name, &t.gpu), gpus: t.gpus },
                )
            })
            .collect();
        let quotas = quotas
            .iter()
            .filter(|q| q.cloud == Cloud::Gcp)
            .map(|q| GceQuota { region: q.region.clone(), metric: q.metric.clone(), limit: q.limit })
            .collect();
        GceWorld { machine_types, quotas, ..GceWorld::default() }
    }

    pub fn instances(&self) -> impl Iterator<Item = &GceInstance> {
        self.instances.values()
    }

    /// Forgets finished operations created before `cutoff` (and their
    /// request ids), so that a long-lived world does not grow without end.
    pub fn forget_operations_before(&mut self, cutoff: DateTime<Utc>) {
        self.operations.retain(|_, op| !(op.done(cutoff) && op.inserted < cutoff));
        let operations = &self.operations;
        self.request_ids.retain(|_, seq| operations.contains_key(seq));
    }

    /// Forgets deleted instances whose STOPPING is over.
    pub fn forget_deleted(&mut self, now: DateTime<Utc>, lifecycle: &Lifecycle) {
        self.instances.retain(|_, i| i.deleted.is_none_or(|at| now < after(at, lifecycle.gce_stopping)));
    }

    /// Sequence number of the newest instance (0 without any).
    pub(super) fn largest_instance_seq(&self) -> u64 {
        self.instances.keys().next_back().copied().unwrap_or(0)
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// GPUs of `metric` held by the project's instances in `region`; of
    /// every model in every region for [`GCE_GPUS_ALL_REGIONS`].
    fn usage(&self, project: &str, region: &str, metric: &str) -> u32 {
        let everywhere = region == GLOBAL && metric == GCE_GPUS_ALL_REGIONS;
        self.instances
            .values()
            .filter(|i| i.project == project && (everywhere || i.region == region))
            .filter_map(|i| self.machine_types.get(&i.machine_type))
            .filter(|m| everywhere || m.metric == metric)
            .map(|m| m.gpus)
            .fold(0, u32::saturating_add)
    }

    /// The quotas configured for a region (or the project's, for
    /// [`GLOBAL`]), with the project's usage.
    pub fn quotas(&self, project: &str, region: &str) -> Vec<QuotaUsage> {
        self.quotas
            .iter()
            .filter(|q| q.region == region)
            .map(|q| QuotaUsage {
                metric: q.metric.clone(),
                limit: q.limit,
                usage: self.usage(project, region, &q.metric),
            })
            .collect()
    }

    /// How many more instances of `machine_type` the quotas admit (`None`:
    /// no quota applies), and the quota that binds: the region's quota of
    /// its GPU model, or the project's [`GCE_GPUS_ALL_REGIONS`], the smaller.
    fn quota_room(&self, project: &str, region: &str, machine_type: &str) -> Option<(u32, &GceQuota)> {
        let gpus = self.machine_types.get(machine_type)?;
        let applies = |q: &&GceQuota| {
            (q.region == region && q.metric == gpus.metric) || (q.region == GLOBAL && q.metric == GCE_GPUS_ALL_REGIONS)
        };
        self.quotas
            .iter()
            .filter(applies)
            .map(|quota| {
                let free = quota.limit.saturating_sub(self.usage(project, &quota.region, &quota.metric));
                (free.checked_div(gpus.gpus).unwrap_or(u32::MAX), quota)
            })
            .min_by_key(|(room, _)| *room)
    }

    /// The names of a zone's instances: one pass, not one per name of a bulk insert.
    fn names_in(&self, project: &str, zone: &str) -> HashSet<&str> {
        self.instances.values().filter(|i| i.project == project && i.zone == zone).map(|i| i.name.as_str()).collect()
    }

    /// Names for `count` new instances from a pattern such as `web-####`:
    /// numbering starts after the largest number already used in the zone.
    fn names_from_pattern(
        &self,
        project: &str,
        zone: &str,
        pattern: &str,
        count: u32,
    ) -> Result<Vec<String>, GceError> {
        let start = pattern.find('#').ok_or_else(|| GceError::Invalid(format!("Invalid value for field 'resource.namePattern': '{pattern}'. The pattern must contain a sequence of '#' characters.")))?;
        let width = pattern[start..].bytes().take_while(|b| *b == b'#').count();
        let (prefix, suffix) = (&pattern[..start], &pattern[start + width..]);
        if width > MAX_PATTERN_DIGITS || suffix.contains('#') {
            return Err(GceError::Invalid(format!(
                "Invalid value for field 'resource.namePattern': '{pattern}'. The pattern must contain one sequence of at most {MAX_PATTERN_DIGITS} '#' characters."
            )));
        }
        let used = self
            .instances
            .values()
            .filter(|i| i.project == project && i.zone == zone)
            .filter_map(|i| i.name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let names: Vec<String> =
            (1..=u64::from(count)).map(|n| format!("{prefix}{:0width$}{suffix}", used + n)).collect();
        match names.iter().find(|n| n.len() != pattern.len() || !is_valid_name(n)) {
            Some(bad) => Err(GceError::Invalid(format!(
                "Invalid value for field 'resource.namePattern': '{pattern}'. Generated name '{bad}' is not a valid name: lowercase letters, digits and hyphens, starting with a letter, at most {MAX_NAME_LEN} characters."
            ))),
            None => Ok(names),
        }
    }
}

impl World {
    /// `instances.insert` and `instances.bulkInsert`: refuses bad requests
    /// outright; otherwise records an operation that holds either the
    /// created instances or the reason none were (stock-out, quota).
    pub fn gce_create(&mut self, request: CreateInstances) -> Result<&GceOperation, GceError> {
        if let Some(seq) = request.request_id.as_ref().and_then(|id| self.gce.request_ids.get(id)).copied()
            && self.gce.operations.contains_key(&seq)
        {
            return Ok(&self.gce.operations[&seq]);
        }
        let region = region_of_zone(&request.zone).to_string();
        if !self.has_gce_zone(&request.zone) {
            return Err(GceError::NotFound(format!("projects/{}/zones/{}", request.project, request.zone)));
        }
        if request.count < 1 || request.min_count < 1 || request.min_count > request.count {
            return Err(GceError::Invalid(format!(
                "Invalid value for field 'resource.minCount': '{}'. minCount must be between 1 and count ({}).",
                request.min_count, request.count
            )));
        }
        if request.count > MAX_BULK_COUNT {
            return Err(GceError::Invalid(format!(
                "Invalid value for field 'resource.count': '{}'. A bulk request creates at most {MAX_BULK_COUNT} instances.",
                request.count
            )));
        }
        let names = match &request.naming {
            Naming::Name(name) => {
                if !is_valid_name(name) {
                    return Err(GceError::Invalid(format!(
                        "Invalid value for field 'resource.name': '{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
                    )));
                }
                vec![name.clone()]
            }
            Naming::Pattern(pattern) => {
                self.gce.names_from_pattern(&request.project, &request.zone, pattern, request.count)?
            }
        };
        let in_zone = self.gce.names_in(&request.project, &request.zone);
        if let Some(taken) = names.iter().find(|n| in_zone.contains(n.as_str())) {
            return Err(GceError::AlreadyExists(format!(
                "projects/{}/zones/{}/instances/{taken}",
                request.project, request.zone
            )));
        }
        let Some(available) = self.pool_mut(Cloud::Gcp, &request.zone, &request.machine_type).map(|p| p.available)
        else {
            return Err(GceError::Invalid(format!(
                "Invalid value for field 'resource.machineType': 'zones/{zone}/machineTypes/{mt}'. Machine type with name '{mt}' does not exist in zone '{zone}'.",
                zone = request.zone,
                mt = request.machine_type
            )));
        };
        let quota = self
            .gce
            .quota_room(&request.project, &region, &request.machine_type)
            .map(|(room, quota)| (room, quota.clone()));
        let mut errors = Vec::new();
        let mut created = 0;
        let mut http_error_status = None;
        match &quota {
            Some((room, quota)) if *room < request.min_count => {
                http_error_status = Some(403);
                errors.push(OperationError {
                    code: "QUOTA_EXCEEDED".into(),
                    message: format!(
                        "Quota '{}' exceeded.  Limit: {}.0 {}.",
                        quota.metric,
                        quota.limit,
                        if quota.region == GLOBAL {
                            "globally".to_string()
                        } else {
                            format!("in region {}", quota.region)
                        }
                    ),
                    quota: Some(quota.clone()),
                });
            }
            _ if available.is_some_and(|a| a < request.min_count) => {
                http_error_status = Some(503);
                errors.push(OperationError {
                    code: "ZONE_RESOURCE_POOL_EXHAUSTED".into(),
                    message: format!(
                        "The zone 'projects/{}/zones/{}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.",
                        request.project, request.zone
                    ),
                    quota: None,
                });
            }
            _ => {
                created = [Some(request.count), available, quota.map(|(room, _)| room)]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(0);
            }
        }
        if let Some(Some(available)) =
            self.pool_mut(Cloud::Gcp, &request.zone, &request.machine_type).map(|p| p.available.as_mut())
        {
            *available -= created.min(*available);
        }
        let mut first_id = None;
        for name in names.into_iter().take(created as usize) {
            let seq = self.gce.next_seq();
            let id = scramble(seq);
            first_id.get_or_insert(id);
            let instance = GceInstance {
                id,
                name,
                project: request.project.clone(),
                region: region.clone(),
                zone: request.zone.clone(),
                machine_type: request.machine_type.clone(),
                created: self.now,
                spec: request.spec.clone(),
                deleted: None,
            };
            self.gce.instances.insert(seq, instance);
        }
        let target = match &request.naming {
            Naming::Name(name) => Some(name.clone()),
            Naming::Pattern(_) => None,
        };
        let bulk = matches!(request.naming, Naming::Pattern(_)).then_some((request.count, created));
        let running_at = after(after(self.now, self.lifecycle.gce_provisioning), self.lifecycle.gce_staging);
        Ok(self.gce_operation(GceOperation {
            id: 0,
            name: String::new(),
            project: request.project,
            zone: request.zone,
            operation_type: request.operation_type.into(),
            target_id: if target.is_some() { first_id } else { None },
            target,
            request_id: request.request_id,
            inserted: self.now,
            errors,
            http_error_status,
            bulk,
            // A refused create takes its provisioning phase to find out.
            done_at: if created > 0 { running_at } else { after(self.now, self.lifecycle.gce_provisioning) },
        }))
    }

    /// `instances.delete`: the instance is STOPPING, its name still taken,
    /// for the lifecycle's `gce_stopping` (gone at once without one); its
    /// capacity returns to the zone's pool now.
    pub fn gce_delete(
        &mut self,
        project: &str,
        zone: &str,
        name: &str,
        request_id: Option<String>,
    ) -> Result<&GceOperation, GceError> {
        if let Some(seq) = request_id.as_ref().and_then(|id| self.gce.request_ids.get(id)).copied()
            && self.gce.operations.contains_key(&seq)
        {
            return Ok(&self.gce.operations[&seq]);
        }
        let found = self.gce.instances.iter().find(|(_, i)| i.project == project && i.zone == zone && i.name == name);
        let Some((&seq, instance)) = found else {
            return Err(GceError::NotFound(format!("projects/{project}/zones/{zone}/instances/{name}")));
        };
        let (id, machine_type, already_deleted) = (instance.id, instance.machine_type.clone(), instance.deleted);
        let gone_at = after(already_deleted.unwrap_or(self.now), self.lifecycle.gce_stopping);
        if already_deleted.is_none() {
            if gone_at <= self.now {
                self.gce.instances.remove(&seq);
            } else if let Some(instance) = self.gce.instances.get_mut(&seq) {
                instance.deleted = Some(self.now);
            }
            if let Some(Some(available)) = self.pool_mut(Cloud::Gcp, zone, &machine_type).map(|p| p.available.as_mut())
            {
                *available = available.saturating_add(1);
            }
        }
        Ok(self.gce_operation(GceOperation {
            id: 0,
            name: String::new(),
            project: project.into(),
            zone: zone.into(),
            operation_type: "delete".into(),
            target: Some(name.into()),
            target_id: Some(id),
            request_id,
            inserted: self.now,
            errors: Vec::new(),
            http_error_status: None,
            bulk: None,
            done_at: gone_at,
        }))
    }

    /// Stores an operation under a fresh id and name.
    fn gce_operation(&mut self, mut operation: GceOperation) -> &GceOperation {
        let seq = self.gce.next_seq();
        operation.id = scramble(seq ^ OPERATION_SALT);
        operation.name = format!(
            "operation-{}-{:013x}-{:08x}-{:08x}",
            operation.inserted.timestamp_millis(),
            operation.id >> 12,
            scramble(seq) >> 32,
            seq
        );
        if let Some(request_id) = &operation.request_id {
            self.gce.request_ids.insert(request_id.clone(), seq);
        }
        self.gce.operations.entry(seq).or_insert(operation)
    }

    /// `zoneOperations.get`: the operation as it stands.
    pub fn gce_find_operation(&self, project: &str, zone: &str, name: &str) -> Result<&GceOperation, GceError> {
        self.gce
            .operations
            .values()
            .find(|op| op.project == project && op.zone == zone && op.name == name)
            .ok_or_else(|| GceError::NotFound(format!("projects/{project}/zones/{zone}/operations/{name}")))
    }

    /// `zoneOperations.wait`: the answer is held until the operation is
    /// done or [`OPERATION_WAIT_LIMIT`] has passed, in simulated time, so
    /// the clock moves on to then.
    pub fn gce_wait_operation(&mut self, project: &str, zone: &str, name: &str) -> Result<&GceOperation, GceError> {
        let done_at = self.gce_find_operation(project, zone, name)?.done_at;
        if let Some(wait) = (done_at - self.now).to_std().ok().filter(|wait| !wait.is_zero()) {
            self.advance(wait.min(OPERATION_WAIT_LIMIT)).map_err(|e| GceError::Invalid(e.to_string()))?;
        }
        self.gce_find_operation(project, zone, name)
    }

    /// The `status` Compute Engine shows of an instance now.
    pub fn gce_status(&self, instance: &GceInstance) -> &'static str {
        instance.status(self.now, &self.lifecycle)
    }

    pub fn gce_instance(&self, project: &str, zone: &str, name: &str) -> Result<&GceInstance, GceError> {
        self.gce
            .instances
            .values()
            .find(|i| i.project == project && i.zone == zone && i.name == name)
            .ok_or_else(|| GceError::NotFound(format!("projects/{project}/zones/{zone}/instances/{name}")))
    }

    /// `instances.list` (with `zone`) and `aggregatedList` (without): one
    /// page, in creation order.
    pub fn gce_list(
        &self,
        project: &str,
        zone: Option<&str>,
        filter: Option<&str>,
        max_results: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<GcePage<'_>, GceError> {
        if let Some(zone) = zone
            && !self.has_gce_zone(zone)
        {
            return Err(GceError::NotFound(format!("projects/{project}/zones/{zone}")));
        }
        let filter = filter.map(Filter::parse).transpose()?;
        let page_size = match max_results {
            None => MAX_RESULTS as usize,
            Some(n) if n <= MAX_RESULTS => n.max(1) as usize,
            Some(n) => {
                return Err(GceError::Invalid(format!(
                    "Invalid value for field 'maxResults': '{n}'. Must be less than or equal to {MAX_RESULTS}"
                )));
            }
        };
        let cursor = match page_token {
            None | Some("") => Cursor::default(),
            Some(token) => parse_page_token(token)
                .ok_or_else(|| GceError::Invalid(format!("Invalid value for field 'pageToken': '{token}'.")))?,
        };
        let matching = self
            .gce
            .instances
            .range(cursor.after.saturating_add(1)..)
            .filter(|(_, i)| i.project == project && zone.is_none_or(|z| i.zone == z))
            .filter(|(_, i)| filter.as_ref().is_none_or(|f| f.matches(i, self.gce_status(i))))
            .map(|(seq, i)| (*seq, i));
        let (instances, next) = self.paging.page(cursor, page_size, matching);
        Ok(GcePage { instances, next_page_token: next.map(|c| format!("{PAGE_TOKEN_PREFIX}{}", c.token())) })
    }

    /// `projects.get`: the project's own quotas ([`GCE_GPUS_ALL_REGIONS`]).
    pub fn gce_project_quotas(&self, project: &str) -> Vec<QuotaUsage> {
        self.gce.quotas(project, GLOBAL)
    }

    /// `regions.get`: the region's zones and quotas, or `None` for a region
    /// the world does not know.
    pub fn gce_region(&self, project: &str, region: &str) -> Option<(Vec<String>, Vec<QuotaUsage>)> {
        // AWS regions live in the same map; their zones (`us-east-1a`) do
        // not follow GCE's `<region>-<letter>`.
        let zones =
            self.known_zones(region).filter(|zones| zones.iter().all(|z| region_of_zone(z) == region))?.to_vec();
        Some((zones, self.gce.quotas(project, region)))
    }

    fn has_gce_zone(&self, zone: &str) -> bool {
        self.known_zones(region_of_zone(zone)).is_some_and(|zones| zones.iter().any(|z| z == zone))
    }
}

const PAGE_TOKEN_PREFIX: &str = "sim-gce-after-";

fn parse_page_token(token: &str) -> Option<Cursor> {
    Cursor::parse(token.strip_prefix(PAGE_TOKEN_PREFIX)?)
}

/// A list filter: terms that must all hold (`a = b AND c != d`, or
/// `(a = b) (c = d)`). Fields: `name`, `status`, `machineType`, `zone`, `id`,
/// `labels.KEY`. Operators: `=`, `!=`, `:` (`:*` tests presence), and `eq`/
/// `ne`, whose value is a regular expression that must match all of it.
#[derive(Debug)]
struct Filter {
    terms: Vec<Term>,
}

#[derive(Debug)]
struct Term {
    field: String,
    op: Op,
}

#[derive(Debug)]
enum Op {
    Equals(String, bool),
    Has(String),
    Regex(regex::Regex, bool),
}

impl Filter {
    fn parse(text: &str) -> Result<Filter, GceError> {
        let invalid = |why: &str| {
            GceError::Invalid(format!(
                "Invalid value for field 'filter': '{text}'. Invalid list filter expression: {why}."
            ))
        };
        let tokens = tokenize(text).ok_or_else(|| invalid("unbalanced quotes"))?;
        let mut terms = Vec::new();
        let mut rest = tokens.as_slice();
        while let Some(first) = rest.first() {
            match first.as_str() {
                "(" | ")" | "AND" => {
                    rest = &rest[1..];
                    continue;
                }
                "OR" => return Err(invalid("OR is not supported by the simulator")),
                _ => {}
            }
            let [field, op, value, tail @ ..] = rest else {
                return Err(invalid("expected FIELD OPERATOR VALUE"));
            };
            if !is_filter_field(field) {
                return Err(invalid(&format!("unknown field {field}")));
            }
            let regex = |negate: bool| {
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map(|re| Op::Regex(re, negate))
                    .map_err(|e| invalid(&format!("bad regular expression {value}: {e}")))
            };
            let op = match op.as_str() {
                "=" => Op::Equals(value.clone(), false),
                "!=" => Op::Equals(value.clone(), true),
                ":" => Op::Has(value.clone()),
                "eq" => regex(false)?,
                "ne" => regex(true)?,
                other => return Err(invalid(&format!("unknown operator {other}"))),
            };
            terms.push(Term { field: field.clone(), op });
            rest = tail;
        }
        Ok(Filter { terms })
    }

    /// Whether the instance, whose status is `status` now, passes every term.
    fn matches(&self, instance: &GceInstance, status: &str) -> bool {
        self.terms.iter().all(|term| {
            let value = field_value(instance, status, &term.field);
            match &term.op {
                Op::Equals(wanted, negate) => (value.as_deref() == Some(wanted.as_str())) != *negate,
                Op::Has(wanted) if wanted == "*" => value.is_some(),
                Op::Has(wanted) => value.is_some_and(|v| v.contains(wanted.as_str())),
                Op::Regex(re, negate) => value.is_some_and(|v| re.is_match(&v)) != *negate,
            }
        })
    }
}

fn is_filter_field(field: &str) -> bool {
    matches!(field, "name" | "status" | "machineType" | "zone" | "id")
        || field.strip_prefix("labels.").is_some_and(|key| !key.is_empty())
}

fn field_value(instance: &GceInstance, status: &str, field: &str) -> Option<String> {
    if let Some(key) = field.strip_prefix("labels.") {
        return instance.spec.labels.get(key).cloned();
    }
    Some(match field {
        "name" => instance.name.clone(),
        "status" => status.into(),
        "machineType" => instance.machine_type.clone(),
        "zone" => instance.zone.clone(),
        "id" => instance.id.to_string(),
        _ => return None,
    })
}

/// Splits a filter into words, quoted strings (unquoted), parentheses and
/// the operators `=`, `!=`, `:`. `None` on an unterminated quote.
fn tokenize(text: &str) -> Option<Vec<String>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' | ')' | '=' | ':' => tokens.push(c.to_string()),
            '!' if chars.peek() == Some(&'=') => {
                chars.next();
                tokens.push("!=".into());
            }
            '"' | '\'' => {
                let mut word = String::new();
                loop {
                    match chars.next()? {
                        q if q == c => break,
                        '\\' => word.push(chars.next()?),
                        other => word.push(other),
                    }
                }
                tokens.push(word);
            }
            _ => {
                let mut word = c.to_string();
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || matches!(next, '(' | ')' | '=' | ':') || next == '!' {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                tokens.push(word);
            }
        }
    }
    Some(tokens)
}
