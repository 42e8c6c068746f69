//! Azure's side of the simulated world: virtual machine scale sets with
//! flexible orchestration, the VMs they hold, and the asynchronous operations
//! that report on every change.
//!
//! Pure, like [`super::world`]: the wire format lives in `arm`. Changes happen
//! at once when requested (capacity is taken from the region's pool, VMs are
//! created or deleted), but the operation that reports them answers
//! `InProgress` for the lifecycle's `azure_operation` of simulated time and
//! its outcome afterwards, so clients have to follow long-running operations
//! as they must on ARM. Operations move on with the clock, not with polls.

use super::scenario::ScenarioQuota;
use super::world::{Tags, World, scramble};
use crate::catalog::{AZURE_TOTAL_REGIONAL_VCPUS, Catalog, azure_vcpu_family};
use crate::model::Cloud;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// Most VMs a scale set with flexible orchestration may hold, as on ARM.
pub const MAX_CAPACITY: u32 = 1000;
/// Keeps VM sequence numbers from yielding the same suffixes as other ids.
const VM_SALT: u64 = 0x0a2e_5ca1_e5e7_f1e7;

/// An ARM error: HTTP status, `error.code`, `error.message`, `error.details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmFault {
    pub status: u16,
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: Vec<(String, String)>,
    /// The request field the error is about (`error.target`).
    #[serde(default)]
    pub target: Option<String>,
}

impl ArmFault {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ArmFault {
        ArmFault { status, code: code.to_string(), message: message.into(), details: Vec::new(), target: None }
    }

    /// The same fault, about one field of the request.
    pub fn at(mut self, target: &str) -> ArmFault {
        self.target = Some(target.to_string());
        self
    }

    pub fn invalid(message: impl Into<String>) -> ArmFault {
        ArmFault::new(400, "InvalidParameter", message)
    }

    fn not_found(kind: &str, name: &str, resource_group: &str) -> ArmFault {
        ArmFault::new(
            404,
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.Compute/{kind}/{name}' under resource group '{resource_group}' was not found."
            ),
        )
    }
}

/// Where a scale set lives: subscription, resource group, name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSetRef {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
}

impl ScaleSetRef {
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachineScaleSets/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    /// ARM resource ids are case-insensitive.
    fn key(&self) -> String {
        self.id().to_ascii_lowercase()
    }
}

/// What a create-or-update (PUT) asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSetSpec {
    pub location: String,
    pub sku_name: String,
    pub capacity: u32,
    pub tags: Tags,
    pub platform_fault_domain_count: Option<i64>,
    /// The VM profile as sent, secrets (customData, adminPassword) removed.
    pub vm_profile: Option<Value>,
    /// The image reference new VMs report.
    pub image_reference: Option<Value>,
}

/// What an update (PATCH) asks for; absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScaleSetPatch {
    pub sku_name: Option<String>,
    pub capacity: Option<u32>,
    pub tags: Option<Tags>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleSet {
    pub id: String,
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub sku_name: String,
    /// The model's capacity: what was asked for, even when allocation fell short.
    pub capacity: u32,
    pub tags: Tags,
    pub platform_fault_domain_count: Option<i64>,
    pub vm_profile: Option<Value>,
    pub image_reference: Option<Value>,
    pub unique_id: String,
    pub time_created: DateTime<Utc>,
    /// Outcome of the last change: `Succeeded` or `Failed`.
    pub outcome: String,
    /// The operation reporting the last change, and whether that change created the set.
    pub last_operation: Option<String>,
    pub created_by_last_operation: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    pub seq: u64,
    pub id: String,
    pub name: String,
    pub subscription: String,
    pub resource_group: String,
    pub scale_set_id: String,
    pub location: String,
    pub vm_size: String,
    pub tags: Tags,
    pub vm_id: String,
    pub image_reference: Option<Value>,
    pub time_created: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub name: String,
    pub subscription: String,
    pub location: String,
    pub start: DateTime<Utc>,
    /// `None` when the work succeeded.
    pub error: Option<ArmFault>,
    /// When it reports its outcome; world files written before the
    /// lifecycle was modelled read every operation as done.
    #[serde(default = "super::world::earliest_time")]
    pub done_at: DateTime<Utc>,
}

impl Operation {
    /// What a poll at `now` says.
    pub fn status(&self, now: DateTime<Utc>) -> OperationStatus {
        match &self.error {
            _ if now < self.done_at => OperationStatus::InProgress,
            None => OperationStatus::Succeeded,
            Some(error) => OperationStatus::Failed(error.clone()),
        }
    }
}

/// What a poll of an operation says.
#[derive(Debug, Clone, PartialEq)]
pub enum OperationStatus {
    InProgress,
    Succeeded,
    Failed(ArmFault),
}

impl OperationStatus {
    pub fn name(&self) -> &'static str {
        match self {
            OperationStatus::InProgress => "InProgress",
            OperationStatus::Succeeded => "Succeeded",
            OperationStatus::Failed(_) => "Failed",
        }
    }
}

/// All ARM resources of the world.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ArmState {
    /// By lowercase resource id.
    scale_sets: BTreeMap<String, ScaleSet>,
    /// By creation order, which is the order lists return them in.
    vms: BTreeMap<u64, Vm>,
    operations: BTreeMap<String, Operation>,
    pub(super) next_vm_seq: u64,
    /// Regional vCPU family quotas from the scenario (every subscription
    /// gets the same limits); absent from older world files.
    #[serde(default)]
    quotas: Vec<FamilyQuota>,
    /// vCPUs of each Azure size, by lowercase size name.
    #[serde(default)]
    vcpus: BTreeMap<String, u32>,
    /// Items per page of list operations (absent from older world files).
    #[serde(default)]
    pub(super) page_size: PageSize,
}

/// Items per page of ARM's lists: the scenario's `arm_page_size`, at least
/// one whatever a hand-edited world file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PageSize(usize);

impl Default for PageSize {
    fn default() -> PageSize {
        PageSize(super::arm::PAGE_SIZE)
    }
}

impl PageSize {
    pub fn get(self) -> usize {
        self.0.clamp(1, super::arm::PAGE_SIZE)
    }
}

/// A regional vCPU quota of one family, e.g. `standardNDSH100v5Family` in eastus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyQuota {
    pub region: String,
    pub family: String,
    pub limit: u32,
}

/// One entry of `usages`: a family's quota and the vCPUs in use against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyUsage {
    pub family: String,
    pub limit: u32,
    pub current: u32,
}

impl ArmState {
    /// No resources yet; the catalog's vCPUs per size and the scenario's Azure quotas.
    pub fn new(catalog: &Catalog, quotas: &[ScenarioQuota], page_size: usize) -> ArmState {
        ArmState {
            page_size: PageSize(page_size),
            quotas: quotas
                .iter()
                .filter(|q| q.cloud == Cloud::Azure)
                .map(|q| FamilyQuota { region: q.region.clone(), family: q.metric.clone(), limit: q.limit })
                .collect(),
            vcpus: catalog
                .instance_types
                .iter()
                .filter(|t| t.cloud == Cloud::Azure)
                .map(|t| (t.name.to_ascii_lowercase(), t.vcpus))
                .collect(),
            ..ArmState::default()
        }
    }

    fn vcpus_of(&self, size: &str) -> u32 {
        self.vcpus.get(&size.to_ascii_lowercase()).copied().unwrap_or(0)
    }

    /// vCPUs of the subscription's VMs of `family` in `location`; of every
    /// family for [`AZURE_TOTAL_REGIONAL_VCPUS`].
    fn family_usage(&self, subscription: &str, location: &str, family: &str) -> u32 {
        let total = family.eq_ignore_ascii_case(AZURE_TOTAL_REGIONAL_VCPUS);
        self.vms
            .values()
            .filter(|vm| {
                vm.subscription.eq_ignore_ascii_case(subscription) && vm.location.eq_ignore_ascii_case(location)
            })
            .filter(|vm| total || azure_vcpu_family(&vm.vm_size).is_some_and(|f| f.eq_ignore_ascii_case(family)))
            .map(|vm| self.vcpus_of(&vm.vm_size))
            .fold(0, u32::saturating_add)
    }

    /// Refuses, as ARM does before touching anything, a scale-out by `extra`
    /// VMs of `size` that would exceed its family's vCPU quota or the
    /// location's total regional vCPUs.
    fn check_quota(&self, subscription: &str, location: &str, size: &str, extra: u32) -> Result<(), ArmFault> {
        let Some(family) = azure_vcpu_family(size) else { return Ok(()) };
        let required = extra.saturating_mul(self.vcpus_of(size));
        let applies = |q: &&FamilyQuota| {
            q.region.eq_ignore_ascii_case(location)
                && (q.family.eq_ignore_ascii_case(family) || q.family.eq_ignore_ascii_case(AZURE_TOTAL_REGIONAL_VCPUS))
        };
        for quota in self.quotas.iter().filter(applies) {
            let usage = self.family_usage(subscription, location, &quota.family);
            if required == 0 || usage.saturating_add(required) <= quota.limit {
                continue;
            }
            let named = if quota.family.eq_ignore_ascii_case(AZURE_TOTAL_REGIONAL_VCPUS) {
                "Total Regional"
            } else {
                &quota.family
            };
            return Err(ArmFault::new(
                409,
                "OperationNotAllowed",
                format!(
                    "Operation could not be completed as it results in exceeding approved {named} Cores quota. Additional details - Deployment Model: Resource Manager, Location: {location}, Current Limit: {}, Current Usage: {usage}, Additional Required: {required}, (Minimum) New Limit Required: {}. Submit a request for Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView by specifying parameters listed in the ‘Details’ section for deployment to succeed.",
                    quota.limit,
                    usage.saturating_add(required)
                ),
            ));
        }
        Ok(())
    }

    fn scale_set(&self, at: &ScaleSetRef) -> Result<&ScaleSet, ArmFault> {
        self.scale_sets
            .get(&at.key())
            .ok_or_else(|| ArmFault::not_found("virtualMachineScaleSets", &at.name, &at.resource_group))
    }

    /// The provisioning state ARM shows at `now`: `Creating`/`Updating`
    /// until the change's operation has its outcome, then the outcome.
    pub fn provisioning_state<'a>(&'a self, set: &'a ScaleSet, now: DateTime<Utc>) -> &'a str {
        let pending =
            set.last_operation.as_ref().and_then(|name| self.operations.get(name)).is_some_and(|op| now < op.done_at);
        match (pending, set.created_by_last_operation) {
            (true, true) => "Creating",
            (true, false) => "Updating",
            (false, _) => &set.outcome,
        }
    }

    /// One pass over the world's VMs. Callers make a fixed number of passes
    /// per request, never one per VM: scale-outs of thousands of VMs took
    /// minutes when each new VM's name was checked by a pass of its own.
    fn vms_of<'a>(&'a self, scale_set_id: &'a str) -> impl Iterator<Item = &'a Vm> + 'a {
        #[cfg(test)]
        VM_PASSES.with(|passes| passes.set(passes.get() + 1));
        self.vms.values().filter(move |vm| vm.scale_set_id.eq_ignore_ascii_case(scale_set_id))
    }

    /// The lowercase names of a scale set's VMs (ARM names are case-insensitive).
    fn names_of(&self, scale_set_id: &str) -> HashSet<String> {
        self.vms_of(scale_set_id).map(|vm| vm.name.to_ascii_lowercase()).collect()
    }
}

#[cfg(test)]
thread_local! {
    /// Passes over the world's VMs ([`ArmState::vms_of`]) made on this thread.
    static VM_PASSES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Refuses a capacity above [`MAX_CAPACITY`] before anything is allocated.
fn check_capacity(capacity: u32) -> Result<(), ArmFault> {
    if capacity <= MAX_CAPACITY {
        return Ok(());
    }
    Err(ArmFault::invalid(format!(
        "The value {capacity} of parameter 'sku.capacity' is out of range. The value must be between 0 and {MAX_CAPACITY}, inclusive."
    )))
}

/// Refuses tag names with the characters ARM reserves, as ARM does.
fn check_tags(tags: &Tags) -> Result<(), ArmFault> {
    let reserved = |name: &&String| name.chars().any(|c| "<>%&\\?/".contains(c) || c.is_control());
    let bad: Vec<&String> = tags.keys().filter(reserved).collect();
    if bad.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = bad.iter().map(|name| name.as_str()).collect();
    Err(ArmFault::new(
        400,
        "InvalidTagNameCharacters",
        format!("The tag names '{}' have reserved characters '<,>,%,&,\\,?,/' or control characters.", names.join(",")),
    ))
}

/// The outcome of a change: the scale set after it, whether it was created,
/// and the operation that reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub scale_set: Option<ScaleSet>,
    pub created: bool,
    pub operation: Operation,
}

/// `PUT .../virtualMachineScaleSets/{name}`: create, or replace the model and
/// scale to its capacity.
pub fn create_or_update(world: &mut World, at: &ScaleSetRef, spec: ScaleSetSpec) -> Result<Change, ArmFault> {
    if !world.knows_region(&spec.location) {
        return Err(ArmFault::new(
            400,
            "LocationNotAvailableForResourceType",
            format!(
                "The provided location '{}' is not available for resource type 'Microsoft.Compute/virtualMachineScaleSets'.",
                spec.location
            ),
        ));
    }
    check_sku(world, &spec.location, &spec.sku_name)?;
    check_capacity(spec.capacity)?;
    check_tags(&spec.tags)?;
    if spec.capacity > 0 && spec.vm_profile.is_none() {
        return Err(ArmFault::invalid(
            "A scale set with Flexible orchestration needs properties.virtualMachineProfile to hold virtual machines (sku.capacity > 0).",
        ));
    }
    let key = at.key();
    let have = world.arm.scale_sets.get(&key).map_or(0, |set| world.arm.vms_of(&set.id).count());
    let extra = spec.capacity.saturating_sub(u32::try_from(have).unwrap_or(u32::MAX));
    world.arm.check_quota(&at.subscription, &spec.location, &spec.sku_name, extra)?;
    let created = match world.arm.scale_sets.get(&key) {
        Some(existing) if !existing.location.eq_ignore_ascii_case(&spec.location) => {
            return Err(ArmFault::new(
                409,
                "PropertyChangeNotAllowed",
                "Changing property 'location' is not allowed.".to_string(),
            ));
        }
        Some(_) => false,
        None => true,
    };
    let now = world.now;
    let unique_id = match world.arm.scale_sets.get(&key) {
        Some(existing) => existing.unique_id.clone(),
        None => world.next_request_id(),
    };
    let time_created = world.arm.scale_sets.get(&key).map_or(now, |s| s.time_created);
    world.arm.scale_sets.insert(
        key.clone(),
        ScaleSet {
            id: at.id(),
            subscription: at.subscription.clone(),
            resource_group: at.resource_group.clone(),
            name: at.name.clone(),
            location: spec.location,
            sku_name: spec.sku_name,
            capacity: spec.capacity,
            tags: spec.tags,
            platform_fault_domain_count: spec.platform_fault_domain_count,
            vm_profile: spec.vm_profile,
            image_reference: spec.image_reference,
            unique_id,
            time_created,
            outcome: String::new(),
            last_operation: None,
            created_by_last_operation: created,
        },
    );
    let operation = scale_and_report(world, &key, created);
    Ok(Change { scale_set: world.arm.scale_sets.get(&key).cloned(), created, operation })
}

/// `PATCH .../virtualMachineScaleSets/{name}`: change size, capacity or tags.
pub fn update(world: &mut World, at: &ScaleSetRef, patch: ScaleSetPatch) -> Result<Change, ArmFault> {
    let set = world.arm.scale_set(at)?;
    patch.capacity.map(check_capacity).transpose()?;
    patch.tags.as_ref().map(check_tags).transpose()?;
    let (location, size) = (set.location.clone(), patch.sku_name.clone().unwrap_or_else(|| set.sku_name.clone()));
    let have = u32::try_from(world.arm.vms_of(&set.id).count()).unwrap_or(u32::MAX);
    let extra = patch.capacity.unwrap_or(set.capacity).saturating_sub(have);
    if let Some(sku_name) = &patch.sku_name {
        check_sku(world, &location, sku_name)?;
    }
    world.arm.check_quota(&at.subscription, &location, &size, extra)?;
    let key = at.key();
    if let Some(set) = world.arm.scale_sets.get_mut(&key) {
        if let Some(sku_name) = patch.sku_name {
            set.sku_name = sku_name;
        }
        if let Some(capacity) = patch.capacity {
            set.capacity = capacity;
        }
        if let Some(tags) = patch.tags {
            set.tags = tags;
        }
        if set.capacity > 0 && set.vm_profile.is_none() {
            return Err(ArmFault::invalid("This scale set has no virtualMachineProfile, so its capacity must stay 0."));
        }
    }
    let operation = scale_and_report(world, &key, false);
    Ok(Change { scale_set: world.arm.scale_sets.get(&key).cloned(), created: false, operation })
}

/// `GET .../virtualMachineScaleSets/{name}`
pub fn get<'w>(world: &'w World, at: &ScaleSetRef) -> Result<&'w ScaleSet, ArmFault> {
    world.arm.scale_set(at)
}

/// `GET .../resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets`,
/// in id order.
pub fn list<'w>(world: &'w World, subscription: &str, resource_group: &str) -> Vec<&'w ScaleSet> {
    world
        .arm
        .scale_sets
        .values()
        .filter(|s| {
            s.subscription.eq_ignore_ascii_case(subscription) && s.resource_group.eq_ignore_ascii_case(resource_group)
        })
        .collect()
}

/// `DELETE .../virtualMachineScaleSets/{name}`: the set and all its VMs.
/// `None` when there was no such set (ARM answers 204).
pub fn delete(world: &mut World, at: &ScaleSetRef) -> Option<Operation> {
    let set = world.arm.scale_sets.remove(&at.key())?;
    let names: Vec<String> = world.arm.vms_of(&set.id).map(|vm| vm.name.clone()).collect();
    remove_vms(world, &set.id, &names);
    Some(new_operation(world, &at.subscription, &set.location, None))
}

/// `POST .../virtualMachineScaleSets/{name}/delete` with `instanceIds`: the
/// named VMs (flexible orchestration names VMs, not numbers), all or none;
/// the model's capacity shrinks by as many.
pub fn delete_instances(world: &mut World, at: &ScaleSetRef, names: &[String]) -> Result<Operation, ArmFault> {
    let set = world.arm.scale_set(at)?;
    let (set_id, location) = (set.id.clone(), set.location.clone());
    if names.is_empty() {
        return Err(ArmFault::invalid("instanceIds must name at least one virtual machine."));
    }
    let members = world.arm.names_of(&set_id);
    let unknown: Vec<&str> =
        names.iter().filter(|name| !members.contains(&name.to_ascii_lowercase())).map(String::as_str).collect();
    if !unknown.is_empty() {
        return Err(ArmFault::new(
            404,
            "NotFound",
            format!("The virtual machines {} are not in scale set {}.", unknown.join(", "), at.name),
        ));
    }
    let removed = remove_vms(world, &set_id, names);
    if let Some(set) = world.arm.scale_sets.get_mut(&at.key()) {
        set.capacity = set.capacity.saturating_sub(removed);
    }
    Ok(new_operation(world, &at.subscription, &location, None))
}

/// VMs of a resource group, optionally of one scale set (by id), in creation order.
pub fn vms<'w>(world: &'w World, subscription: &str, resource_group: &str, scale_set_id: Option<&str>) -> Vec<&'w Vm> {
    world
        .arm
        .vms
        .values()
        .filter(|vm| {
            vm.subscription.eq_ignore_ascii_case(subscription)
                && vm.resource_group.eq_ignore_ascii_case(resource_group)
                && scale_set_id.is_none_or(|id| vm.scale_set_id.eq_ignore_ascii_case(id))
        })
        .collect()
}

/// Every VM of the world, of every subscription, in creation order.
pub fn all_vms(world: &World) -> impl Iterator<Item = &Vm> {
    world.arm.vms.values()
}

/// `GET .../virtualMachines/{name}`
pub fn vm<'w>(world: &'w World, subscription: &str, resource_group: &str, name: &str) -> Result<&'w Vm, ArmFault> {
    vms(world, subscription, resource_group, None)
        .into_iter()
        .find(|vm| vm.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| ArmFault::not_found("virtualMachines", name, resource_group))
}

/// `GET /subscriptions/{sub}/providers/Microsoft.Compute/locations/{location}/usages`:
/// the location's family quotas, with the subscription's vCPUs in use.
pub fn usages(world: &World, subscription: &str, location: &str) -> Vec<FamilyUsage> {
    world
        .arm
        .quotas
        .iter()
        .filter(|q| q.region.eq_ignore_ascii_case(location))
        .map(|q| FamilyUsage {
            family: q.family.clone(),
            limit: q.limit,
            current: world.arm.family_usage(subscription, location, &q.family),
        })
        .collect()
}

/// An operation and what a poll of it says now; `None` for an operation
/// the world never started.
pub fn poll(world: &World, subscription: &str, name: &str) -> Option<(Operation, OperationStatus)> {
    let op = world.arm.operations.get(name).filter(|op| op.subscription.eq_ignore_ascii_case(subscription))?;
    Some((op.clone(), op.status(world.now)))
}

/// Whether a size is offered in a region to the subscription (not
/// restricted for it there); ARM refuses others up front.
fn check_sku(world: &World, location: &str, sku_name: &str) -> Result<(), ArmFault> {
    let restricted = world
        .pools()
        .iter()
        .any(|p| p.cloud == Cloud::Azure && p.region == location && p.instance_type == sku_name && p.restricted);
    if world.offers(Cloud::Azure, location, sku_name) && !restricted {
        return Ok(());
    }
    if !world.sells(Cloud::Azure, sku_name) {
        return Err(ArmFault::invalid(format!(
            "The value {sku_name} provided for the VM size is not valid. The valid sizes in the current region are listed by the resource SKUs API."
        )));
    }
    Err(ArmFault::new(
        409,
        "SkuNotAvailable",
        format!(
            "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {sku_name}' is currently not available in location '{location}'. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details."
        ),
    ))
}

/// Brings a scale set's VMs to its capacity: new VMs from the region's pool
/// (as many as it holds), or the newest VMs deleted. Records the outcome and
/// returns the operation that reports it.
fn scale_and_report(world: &mut World, key: &str, created: bool) -> Operation {
    let Some(set) = world.arm.scale_sets.get(key).cloned() else {
        return new_operation(world, "", "", Some(ArmFault::new(500, "InternalServerError", "scale set vanished")));
    };
    let current: Vec<String> = world.arm.vms_of(&set.id).map(|vm| vm.name.clone()).collect();
    let have = u32::try_from(current.len()).unwrap_or(u32::MAX);
    let mut error = None;
    if set.capacity > have {
        let wanted = set.capacity - have;
        let got = world.take_capacity(Cloud::Azure, &set.location, &set.sku_name, wanted).unwrap_or(0);
        let mut taken: HashSet<String> = current.iter().map(|name| name.to_ascii_lowercase()).collect();
        for _ in 0..got {
            add_vm(world, &set, &mut taken);
        }
        if got < wanted {
            error = Some(ArmFault {
                status: 200,
                code: "AllocationFailed".into(),
                message: "Allocation failed. We do not have sufficient capacity for the requested VM size in this region. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance".into(),
                details: vec![(
                    "AllocationFailed".into(),
                    format!("{got} of {wanted} {} could be allocated in {}.", set.sku_name, set.location),
                )],
                target: None,
            });
        }
    } else if set.capacity < have {
        // Scale-in removes the newest VMs first.
        let excess = (have - set.capacity) as usize;
        let newest: Vec<String> = current.iter().rev().take(excess).cloned().collect();
        remove_vms(world, &set.id, &newest);
    }
    let operation = new_operation(world, &set.subscription, &set.location, error.clone());
    if let Some(set) = world.arm.scale_sets.get_mut(key) {
        set.outcome = if error.is_some() { "Failed" } else { "Succeeded" }.to_string();
        set.last_operation = Some(operation.name.clone());
        set.created_by_last_operation = created;
    }
    operation
}

/// Adds one VM to `set`, whose VMs' lowercase names are `taken` (and then this one's too).
fn add_vm(world: &mut World, set: &ScaleSet, taken: &mut HashSet<String>) {
    // Flexible orchestration names VMs `<scale set>_<8 hex digits>`; skip a
    // suffix already taken in this set (32 bits of a 64-bit bijection can clash).
    let name = loop {
        world.arm.next_vm_seq += 1;
        let candidate = format!("{}_{:08x}", set.name, scramble(world.arm.next_vm_seq ^ VM_SALT) as u32);
        if taken.insert(candidate.to_ascii_lowercase()) {
            break candidate;
        }
    };
    let seq = world.arm.next_vm_seq;
    let vm_id = world.next_request_id();
    let vm = Vm {
        seq,
        id: format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{name}",
            set.subscription, set.resource_group
        ),
        name,
        subscription: set.subscription.clone(),
        resource_group: set.resource_group.clone(),
        scale_set_id: set.id.clone(),
        location: set.location.clone(),
        vm_size: set.sku_name.clone(),
        tags: set.tags.clone(),
        vm_id,
        image_reference: set.image_reference.clone(),
        time_created: world.now,
    };
    world.arm.vms.insert(seq, vm);
}

/// Deletes the named VMs of a scale set, giving their capacity back; returns how many went.
fn remove_vms(world: &mut World, scale_set_id: &str, names: &[String]) -> u32 {
    let names: HashSet<String> = names.iter().map(|name| name.to_ascii_lowercase()).collect();
    let doomed: Vec<u64> = world
        .arm
        .vms_of(scale_set_id)
        .filter(|vm| names.contains(&vm.name.to_ascii_lowercase()))
        .map(|vm| vm.seq)
        .collect();
    for seq in &doomed {
        if let Some(vm) = world.arm.vms.remove(seq) {
            world.return_capacity(Cloud::Azure, &vm.location, &vm.vm_size, 1);
        }
    }
    u32::try_from(doomed.len()).unwrap_or(u32::MAX)
}

fn new_operation(world: &mut World, subscription: &str, location: &str, error: Option<ArmFault>) -> Operation {
    let operation = Operation {
        name: world.next_request_id(),
        subscription: subscription.to_string(),
        location: location.to_string(),
        start: world.now,
        error,
        done_at: super::lifecycle::after(world.now, world.lifecycle.azure_operation),
    };
    world.arm.operations.insert(operation.name.clone(), operation.clone());
    operation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::sim::Scenario;
    use std::path::Path;

    fn world(scenario: &str) -> World {
        let scenario = Scenario::parse(scenario, Path::new("test.toml")).unwrap();
        World::new(Some(&scenario), &Catalog::builtin()).unwrap()
    }

    fn at(name: &str) -> ScaleSetRef {
        ScaleSetRef { subscription: "sub".into(), resource_group: "rg".into(), name: name.into() }
    }

    fn spec(size: &str, capacity: u32) -> ScaleSetSpec {
        ScaleSetSpec {
            location: "eastus".into(),
            sku_name: size.into(),
            capacity,
            tags: Tags::from([("gpufleet-plan".into(), "p".into())]),
            platform_fault_domain_count: Some(1),
            vm_profile: Some(serde_json::json!({})),
            image_reference: None,
        }
    }

    const FIVE_H100: &str = r#"
        [[offering]]
        cloud = "azure"
        region = "eastus"
        instance_type = "Standard_ND96isr_H100_v5"
        capacity = 5
    "#;

    #[test]
    fn sim_arm_scale_out_takes_capacity_and_fails_with_allocation_failed_when_short() {
        let mut world = world(FIVE_H100);
        let change = create_or_update(&mut world, &at("a"), spec("Standard_ND96isr_H100_v5", 3)).unwrap();
        assert!(change.created);
        assert_eq!(vms(&world, "sub", "rg", None).len(), 3);
        let set = get(&world, &at("a")).unwrap().clone();
        assert_eq!(world.arm.provisioning_state(&set, world.now), "Creating");
        assert_eq!(poll(&world, "sub", &change.operation.name).unwrap().1, OperationStatus::InProgress);
        assert_eq!(
            poll(&world, "sub", &change.operation.name).unwrap().1,
            OperationStatus::InProgress,
            "polls alone move nothing"
        );
        world.advance(std::time::Duration::from_secs(29)).unwrap();
        assert_eq!(poll(&world, "sub", &change.operation.name).unwrap().1, OperationStatus::InProgress);
        world.advance(std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(poll(&world, "sub", &change.operation.name).unwrap().1, OperationStatus::Succeeded);
        assert_eq!(world.arm.provisioning_state(&set, world.now), "Succeeded");

        let patch = ScaleSetPatch { capacity: Some(6), ..Default::default() };
        let change = update(&mut world, &at("a"), patch).unwrap();
        assert_eq!(vms(&world, "sub", "rg", Some(&set.id)).len(), 5, "the two left were allocated");
        world.advance(std::time::Duration::from_secs(30)).unwrap();
        let (_, status) = poll(&world, "sub", &change.operation.name).unwrap();
        assert!(matches!(status, OperationStatus::Failed(ref e) if e.code == "AllocationFailed"), "{status:?}");
        assert_eq!(get(&world, &at("a")).unwrap().capacity, 6, "the model keeps what was asked");
    }

    #[test]
    fn sim_arm_delete_instances_gives_capacity_back_and_shrinks_the_model() {
        let mut world = world(FIVE_H100);
        create_or_update(&mut world, &at("a"), spec("Standard_ND96isr_H100_v5", 5)).unwrap();
        let names: Vec<String> = vms(&world, "sub", "rg", None).iter().take(2).map(|v| v.name.clone()).collect();
        assert!(names.iter().all(|n| n.starts_with("a_") && n.len() == 10), "{names:?}");
        delete_instances(&mut world, &at("a"), &names).unwrap();
        assert_eq!(get(&world, &at("a")).unwrap().capacity, 3);
        let err = delete_instances(&mut world, &at("a"), &names).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (404, "NotFound"));
        create_or_update(&mut world, &at("b"), spec("Standard_ND96isr_H100_v5", 2)).unwrap();
        assert_eq!(vms(&world, "sub", "rg", None).len(), 5);
        assert!(delete(&mut world, &at("a")).is_some());
        assert!(delete(&mut world, &at("a")).is_none());
        assert_eq!(vms(&world, "sub", "rg", None).len(), 2);
    }

    /// A capacity of 10^9 (the region's pool unlimited) created VMs one by
    /// one with the world's lock held, and the simulator never answered again.
    #[test]
    fn sim_arm_capacity_beyond_the_scale_set_limit_is_refused_before_anything_happens() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let err = create_or_update(&mut world, &at("a"), spec("Standard_ND96isr_H100_v5", 1_000_000_000)).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (400, "InvalidParameter"), "{err:?}");
        assert!(list(&world, "sub", "rg").is_empty());
        create_or_update(&mut world, &at("a"), spec("Standard_ND96isr_H100_v5", MAX_CAPACITY)).unwrap();
        let patch = ScaleSetPatch { capacity: Some(MAX_CAPACITY + 1), ..Default::default() };
        let err = update(&mut world, &at("a"), patch).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (400, "InvalidParameter"), "{err:?}");
        assert_eq!(get(&world, &at("a")).unwrap().capacity, MAX_CAPACITY);
        assert_eq!(vms(&world, "sub", "rg", None).len(), MAX_CAPACITY as usize);
    }

    #[test]
    fn sim_arm_tag_names_with_reserved_characters_are_refused_as_arm_does() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let mut bad = spec("Standard_ND96isr_H100_v5", 1);
        bad.tags.insert("team/owner".into(), "a/b".into());
        let err = create_or_update(&mut world, &at("a"), bad).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (400, "InvalidTagNameCharacters"), "{err:?}");
        assert!(err.message.contains("'team/owner'"), "{}", err.message);
        create_or_update(&mut world, &at("a"), spec("Standard_ND96isr_H100_v5", 1)).unwrap();
        let tags = Tags::from([("cost?".to_string(), "x".to_string())]);
        let err = update(&mut world, &at("a"), ScaleSetPatch { tags: Some(tags), ..Default::default() }).unwrap_err();
        assert_eq!(err.code, "InvalidTagNameCharacters");
    }

    /// A world file is hand-editable, vCPUs per size included: usage adds up
    /// saturating instead of overflowing (a panic in debug builds).
    #[test]
    fn sim_arm_usage_of_a_hand_edited_vcpu_count_saturates() {
        let mut world = world(&format!(
            "{FIVE_H100}\n[[quota]]\ncloud = \"azure\"\nregion = \"eastus\"\nmetric = \"standardNDSH100v5Family\"\nlimit = 1000\n"
        ));
        create_or_update(&mut world, &at("a"), spec("Standard_ND96isr_H100_v5", 2)).unwrap();
        world.arm.vcpus.insert("standard_nd96isr_h100_v5".into(), u32::MAX);
        assert_eq!(usages(&world, "sub", "eastus")[0].current, u32::MAX);
        let err = update(&mut world, &at("a"), ScaleSetPatch { capacity: Some(3), ..Default::default() }).unwrap_err();
        assert_eq!(err.code, "OperationNotAllowed");
    }

    /// Scale-outs to 2,000, 4,000 and 8,000 VMs took 2 s, 18 s and 95 s: each
    /// new VM's name was checked by a pass over every VM of the world.
    #[test]
    fn sim_arm_scale_out_to_8000_vms_passes_over_them_a_fixed_number_of_times_per_request() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let passes = || VM_PASSES.with(std::cell::Cell::get);
        let mut most = 0;
        for set in 0..8 {
            let before = passes();
            let name = format!("s{set}");
            create_or_update(&mut world, &at(&name), spec("Standard_ND96isr_H100_v5", MAX_CAPACITY)).unwrap();
            most = most.max(passes() - before);
        }
        assert_eq!(vms(&world, "sub", "rg", None).len(), 8000);
        assert!(most <= 3, "a scale-out by 1000 VMs made {most} passes over the world's VMs");
        let names: Vec<String> = vms(&world, "sub", "rg", None).iter().take(1000).map(|vm| vm.name.clone()).collect();
        let before = passes();
        delete_instances(&mut world, &at("s0"), &names).unwrap();
        assert!(passes() - before <= 3, "deleting 1000 VMs made {} passes", passes() - before);
        assert_eq!(vms(&world, "sub", "rg", None).len(), 7000);
    }

    #[test]
    fn sim_arm_refuses_sizes_not_offered_and_scales_in_newest_first() {
        let mut world = world(FIVE_H100);
        let err = create_or_update(&mut world, &at("a"), spec("Standard_ND96isr_H200_v5", 1)).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (409, "SkuNotAvailable"));
        let err = create_or_update(&mut world, &at("a"), ScaleSetSpec { location: "mars".into(), ..spec("x", 1) })
            .unwrap_err();
        assert_eq!(err.code, "LocationNotAvailableForResourceType");
        assert!(list(&world, "sub", "rg").is_empty(), "refused requests leave nothing behind");

        create_or_update(&mut world, &at("a"), spec("Standard_ND96isr_H100_v5", 3)).unwrap();
        let first = vms(&world, "sub", "rg", None)[0].name.clone();
        update(&mut world, &at("A"), ScaleSetPatch { capacity: Some(1), ..Default::default() }).unwrap();
        let left: Vec<String> = vms(&world, "sub", "rg", None).iter().map(|v| v.name.clone()).collect();
        assert_eq!(left, vec![first]);
        assert_eq!(world.take_capacity(Cloud::Azure, "eastus", "Standard_ND96isr_H100_v5", 10), Some(4));
    }
}
