//! The simulated world: capacity pools per zone and instance type, the
//! instances launched from them, a clock that only moves when told, and a
//! count of every API call.
//!
//! Pure: no sockets, no files, no wall clock. The wire protocols
//! ([`super::ec2`]) translate requests into the calls below and the
//! [`WorldError`]s back into each cloud's error codes; the semantics (MinCount
//! is all-or-nothing, ClientToken makes a launch idempotent, terminated
//! instances stay visible for an hour) live here, where plain unit tests reach
//! them.

use super::faults::{CredentialTrouble, Fault, Faults};
use super::gce_world::GceWorld;
use super::lifecycle::{Lifecycle, after};
use super::paging::{Cursor, Paging};
use super::scenario::Scenario;
use crate::catalog::Catalog;
use crate::model::Cloud;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

/// How long a terminated instance stays visible, as on EC2.
pub const TERMINATED_VISIBLE_FOR: Duration = Duration::from_secs(3600);
/// EC2's limit of tags per resource.
pub const MAX_TAGS_PER_RESOURCE: usize = 50;
/// Sequence numbers a world file may hold: far more than any simulation
/// uses (2^53, the integers every JSON reader keeps exactly), far from where
/// adding one overflows.
pub const MAX_SEQ: u64 = 1 << 53;

/// The first moment the simulated clock may show.
pub fn earliest_time() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

/// The last moment the simulated clock may show: the clouds' wire formats
/// write four-digit years, and arithmetic on times near chrono's limits overflows.
pub fn latest_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Most instances one launch may ask for: EC2's bucket of instances
/// launched holds 1000, so a larger request could never be served at once.
/// Without a limit, an unlimited pool took `MaxCount` at its word and
/// allocated a billion instances.
pub const MAX_LAUNCH_COUNT: u32 = 1000;

/// The page size range EC2 accepts for DescribeInstances `MaxResults`.
pub const MAX_RESULTS_RANGE: std::ops::RangeInclusive<u32> = 5..=1000;

/// Tags of a resource, by key (keys are unique on every cloud).
pub type Tags = BTreeMap<String, String>;

/// Instances of one instance type that one zone can still launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub cloud: Cloud,
    pub region: String,
    pub zone: String,
    pub instance_type: String,
    /// `None` means unlimited.
    pub available: Option<u32>,
    /// The account may not use the type here (Azure's `NotAvailableForSubscription`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restricted: bool,
}

/// A change of one pool that the scenario's timeline schedules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledCapacity {
    pub at: DateTime<Utc>,
    pub cloud: Cloud,
    pub region: String,
    pub zone: String,
    pub instance_type: String,
    pub capacity: Option<u32>,
}

/// An EC2 instance's state. A stored instance is `Running` from its launch
/// and `Terminated` once asked to; what EC2 shows in between (`pending`,
/// `shutting-down`) follows from the clock, see [`Instance::phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
}

impl InstanceState {
    /// EC2's numeric state code.
    pub fn code(self) -> u32 {
        match self {
            InstanceState::Pending => 0,
            InstanceState::Running => 16,
            InstanceState::ShuttingDown => 32,
            InstanceState::Terminated => 48,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Launch order; paging walks instances in this order.
    pub seq: u64,
    pub id: String,
    pub reservation_id: String,
    pub cloud: Cloud,
    pub region: String,
    pub zone: String,
    pub instance_type: String,
    pub image_id: String,
    pub state: InstanceState,
    pub launch_time: DateTime<Utc>,
    pub terminated_at: Option<DateTime<Utc>>,
    /// Position within its launch request (EC2 `amiLaunchIndex`).
    pub launch_index: u32,
    pub client_token: Option<String>,
    pub tags: Tags,
    /// As sent (base64 on EC2); kept so tests can check what was asked for.
    pub user_data: Option<String>,
    /// EC2: what the instance was launched with besides its image.
    #[serde(default, skip_serializing_if = "super::account::Ec2Attachments::is_empty")]
    pub attach: super::account::Ec2Attachments,
}

impl Instance {
    /// The state EC2 shows at `now`: `pending` for the lifecycle's first
    /// moments, `shutting-down` for a while after termination.
    pub fn phase(&self, now: DateTime<Utc>, lifecycle: &Lifecycle) -> InstanceState {
        match (self.state, self.terminated_at) {
            (InstanceState::Terminated, Some(at)) if now < after(at, lifecycle.ec2_shutting_down) => {
                InstanceState::ShuttingDown
            }
            (InstanceState::Terminated | InstanceState::ShuttingDown, _) => InstanceState::Terminated,
            _ if now < after(self.launch_time, lifecycle.ec2_pending) => InstanceState::Pending,
            _ => InstanceState::Running,
        }
    }
}

/// The facts of an EC2 instance type that DescribeInstanceTypes reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ec2TypeSpec {
    pub vcpus: u32,
    /// GPU model as the catalog names it (`H100`, `A100-80GB`).
    pub gpu: String,
    pub gpus: u32,
    pub gpu_memory_gib: u32,
}

/// The catalog's EC2 instance types by name.
fn ec2_types(catalog: &Catalog) -> BTreeMap<String, Ec2TypeSpec> {
    catalog
        .instance_types
        .iter()
        .filter(|t| t.cloud == Cloud::Aws)
        .map(|t| {
            let spec =
                Ec2TypeSpec { vcpus: t.vcpus, gpu: t.gpu.clone(), gpus: t.gpus, gpu_memory_gib: t.gpu_memory_gib };
            (t.name.clone(), spec)
        })
        .collect()
}

fn builtin_ec2_types() -> BTreeMap<String, Ec2TypeSpec> {
    ec2_types(&Catalog::builtin())
}

/// Everything that decides what a launch does. Two requests with the same
/// client token must be equal in all of this, or the second is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchRequest {
    pub region: String,
    pub image_id: String,
    pub instance_type: String,
    pub min_count: u32,
    pub max_count: u32,
    pub client_token: Option<String>,
    /// Requested zone; `None` lets the world pick the zone with the most stock.
    pub zone: Option<String>,
    pub tags: Tags,
    pub user_data: Option<String>,
    /// Network, identity, key pair and block devices, as sent.
    #[serde(default)]
    pub attach: super::account::Ec2Attachments,
}

/// A launch remembered under its client token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TokenRecord {
    request: LaunchRequest,
    reservation_id: String,
    instance_ids: Vec<String>,
}

/// The result of a launch: one reservation, all of it in one zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub reservation_id: String,
    pub instances: Vec<Instance>,
}

/// One filter of a describe call: any of `values` (globs with `*` and `?`)
/// may match; all filters of a call must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DescribeQuery {
    pub region: String,
    pub instance_ids: Vec<String>,
    pub filters: Vec<Filter>,
    pub max_results: Option<u32>,
    pub next_token: Option<String>,
}

/// One page of instances, grouped into their reservations in launch order.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribePage<'w> {
    pub reservations: Vec<(&'w str, Vec<&'w Instance>)>,
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub instance_id: String,
    pub previous: InstanceState,
    pub current: InstanceState,
}

/// Why the world refused a request, in terms of the world; each protocol maps
/// these onto its own error codes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorldError {
    #[error("{available} {instance_type} available in {zone}, at least {min_count} requested")]
    InsufficientCapacity { instance_type: String, zone: String, requested_zone: bool, available: u32, min_count: u32 },
    #[error("{instance_type} is not offered in {place}")]
    Unsupported { instance_type: String, place: String },
    #[error("{0} is not an instance type")]
    UnknownInstanceType(String),
    #[error("zone {zone} is not a zone of region {region}")]
    UnknownZone { zone: String, region: String },
    #[error(
        "MinCount {min_count} and MaxCount {max_count}: both must be between 1 and {MAX_LAUNCH_COUNT}, and MinCount at most MaxCount"
    )]
    InvalidCount { min_count: u32, max_count: u32 },
    #[error("client token {token} was used with different parameters")]
    ClientTokenReused { token: String },
    #[error("instances not found: {}", ids.join(", "))]
    InstancesNotFound { ids: Vec<String> },
    #[error("MaxResults cannot be combined with instance ids")]
    MaxResultsWithInstanceIds,
    #[error("MaxResults {0} is outside 5..=1000")]
    MaxResultsOutOfRange(u32),
    #[error("next token {0} is not valid")]
    InvalidNextToken(String),
    #[error("filter {0} is not supported")]
    UnknownFilter(String),
    #[error("filter {0} has no values")]
    FilterWithoutValues(String),
    #[error("{id} would have more than {MAX_TAGS_PER_RESOURCE} tags")]
    TooManyTags { id: String },
    #[error("image {id} does not exist in this region")]
    ImageNotFound { id: String },
    #[error("region {region} has no default VPC")]
    NoDefaultVpc { region: String },
    #[error("the launch would exceed the vCPU quota of {limit}")]
    VcpuLimitExceeded { limit: u32 },
    /// Something the launch names that the account lacks or refuses (a
    /// subnet, security group, key pair, instance profile, a root disk
    /// smaller than its image), with EC2's own code.
    #[error("{code}: {message}")]
    Refused { code: &'static str, message: String },
    #[error(
        "cannot move the clock by {}: the simulated clock stops at the end of year 9999",
        humantime::format_duration(*.0)
    )]
    ClockOverflow(Duration),
}

/// The world itself; serializable so that it survives between commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct World {
    /// Hash of the scenario this world was created from.
    pub scenario_hash: String,
    pub start: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// Zones of every region the world knows, in order.
    zones: BTreeMap<String, Vec<String>>,
    pools: Vec<Pool>,
    /// Timeline changes not yet due, earliest first.
    scheduled: Vec<ScheduledCapacity>,
    instances: BTreeMap<u64, Instance>,
    /// Client tokens by region, then token.
    client_tokens: BTreeMap<String, BTreeMap<String, TokenRecord>>,
    /// Calls by cloud, then action.
    counters: BTreeMap<String, BTreeMap<String, u64>>,
    next_instance_seq: u64,
    next_reservation_seq: u64,
    next_request_seq: u64,
    /// What EC2 says of each instance type it sells (DescribeInstanceTypes),
    /// from the catalog; world files written before it was served get the
    /// built-in catalog's.
    #[serde(default = "builtin_ec2_types")]
    ec2_types: BTreeMap<String, Ec2TypeSpec>,
    /// Compute Engine's instances, operations and quotas; its capacity
    /// lives in `pools` with everyone else's.
    #[serde(default)]
    pub(super) gce: GceWorld,
    /// Azure Resource Manager's resources (scale sets, their VMs, async
    /// operations); absent from world files written before ARM was served.
    #[serde(default)]
    pub(super) arm: super::vmss::ArmState,
    /// Images, networks and EC2 vCPU quotas of the simulated accounts;
    /// absent from world files written before they were modelled.
    #[serde(default)]
    pub(super) account: super::account::Account,
    /// Injected errors and rate limits, with their PRNG and bucket state
    /// (kept in the world file, so a restarted simulator continues the
    /// same sequence).
    #[serde(default)]
    faults: Faults,
    /// Real time every cloud response is held back (`wire_latency`, or
    /// `sim serve --latency`), at most [`super::scenario::MAX_WIRE_LATENCY`].
    #[serde(default)]
    pub wire_latency: Duration,
    /// How long instances take to start and to go away; world files written
    /// before it was modelled get the default.
    #[serde(default)]
    pub(super) lifecycle: Lifecycle,
    /// Whether lists give short and empty pages; world files written before
    /// they were modelled get the default.
    #[serde(default)]
    pub(super) paging: Paging,
    /// Clouds whose every call is refused for its credentials (`[credentials]`).
    #[serde(default)]
    credentials: BTreeMap<Cloud, CredentialTrouble>,
    /// Set when the current call met [`Fault::Reset`]: the server then drops
    /// the connection instead of answering (see [`World::take_reset`]).
    #[serde(skip)]
    reset_pending: bool,
}

impl World {
    /// A world with the catalog's offerings (unlimited) overlaid with the
    /// scenario's capacity and timeline, for all three clouds.
    pub fn new(scenario: Option<&Scenario>, catalog: &Catalog) -> Result<World, WorldError> {
        let start = scenario.map_or_else(super::scenario::default_start, |s| s.start);
        let mut world = World {
            scenario_hash: scenario
                .map_or_else(|| super::scenario::NO_SCENARIO_HASH.to_string(), |s| s.content_hash.clone()),
            start,
            now: start,
            zones: BTreeMap::new(),
            pools: Vec::new(),
            scheduled: Vec::new(),
            instances: BTreeMap::new(),
            client_tokens: BTreeMap::new(),
            counters: BTreeMap::new(),
            ec2_types: ec2_types(catalog),
            next_instance_seq: 0,
            next_reservation_seq: 0,
            next_request_seq: 0,
            gce: GceWorld::new(catalog, scenario.map(|s| s.quotas.as_slice()).unwrap_or_default()),
            arm: super::vmss::ArmState::new(
                catalog,
                scenario.map(|s| s.quotas.as_slice()).unwrap_or_default(),
                scenario.map_or(super::arm::PAGE_SIZE, |s| s.arm_page_size),
            ),
            faults: Faults::new(
                scenario.and_then(|s| s.faults.clone()),
                scenario.map(|s| s.rate_limits.clone()).unwrap_or_default(),
            ),
            account: super::account::Account::new(scenario, catalog),
            reset_pending: false,
            wire_latency: scenario.map_or(Duration::ZERO, |s| s.wire_latency),
            lifecycle: scenario.map(|s| s.lifecycle).unwrap_or_default(),
            paging: scenario.map(|s| s.paging).unwrap_or_default(),
            credentials: scenario.map(|s| s.credentials.clone()).unwrap_or_default(),
        };
        for region in &catalog.regions {
            let zones = match region.cloud {
                // Azure places by region: one pool per region, whose "zone" is the region itself.
                Cloud::Azure => vec![region.name.clone()],
                Cloud::Aws | Cloud::Gcp => zones_or_default(&region.name, &region.zones),
            };
            world.zones.insert(region.name.clone(), zones);
        }
        for instance_type in &catalog.instance_types {
            for offer in &instance_type.offers {
                let zones = if offer.zones.is_empty() { world.zones_of(&offer.region) } else { offer.zones.clone() };
                for zone in zones {
                    world.ensure_pool(instance_type.cloud, &offer.region, &zone, &instance_type.name);
                }
            }
        }
        for offering in scenario.map(|s| s.offerings.as_slice()).unwrap_or_default() {
            let zones = world.scenario_zones(
                offering.cloud,
                &offering.region,
                offering.zone.as_deref(),
                &offering.instance_type,
            )?;
            for zone in &zones {
                let pool = world.ensure_pool(offering.cloud, &offering.region, zone, &offering.instance_type);
                pool.available = offering.capacity;
                pool.restricted = offering.restricted;
                for step in &offering.timeline {
                    let at = chrono::Duration::from_std(step.after)
                        .ok()
                        .and_then(|after| start.checked_add_signed(after))
                        .ok_or(WorldError::ClockOverflow(step.after))?;
                    world.scheduled.push(ScheduledCapacity {
                        at,
                        cloud: offering.cloud,
                        region: offering.region.clone(),
                        zone: zone.clone(),
                        instance_type: offering.instance_type.clone(),
                        capacity: step.capacity,
                    });
                }
            }
        }
        // Stable sort: steps due at the same time apply in file order.
        world.scheduled.sort_by_key(|s| s.at);
        world.apply_due_capacity();
        Ok(world)
    }

    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    pub fn scheduled(&self) -> &[ScheduledCapacity] {
        &self.scheduled
    }

    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values()
    }

    pub fn counters(&self) -> &BTreeMap<String, BTreeMap<String, u64>> {
        &self.counters
    }

    /// The EC2 instance types the world knows, by name.
    pub fn ec2_types(&self) -> &BTreeMap<String, Ec2TypeSpec> {
        &self.ec2_types
    }

    /// The instance of a region with this id, found from the sequence number
    /// its id encodes rather than by a pass over every instance: the
    /// per-resource reads name one instance each, thousands of times.
    pub fn instance(&self, region: &str, id: &str) -> Option<&Instance> {
        let seq = id.strip_prefix("i-0").filter(|hex| hex.len() == 16).and_then(unscramble_hex)?;
        self.instances.get(&seq).filter(|i| i.id == id && i.region == region)
    }

    /// The instance with sequence number `seq`, if the world still shows it.
    /// The state EC2 shows of an instance now.
    pub fn ec2_phase(&self, instance: &Instance) -> InstanceState {
        instance.phase(self.now, &self.lifecycle)
    }

    pub fn instance_by_seq(&self, seq: u64) -> Option<&Instance> {
        self.instances.get(&seq)
    }

    /// Counts one API call (every call, failed ones included).
    pub fn record_call(&mut self, cloud: Cloud, action: &str) {
        let count = self.counters.entry(cloud.as_str().to_string()).or_default().entry(action.to_string()).or_default();
        *count = count.saturating_add(1);
    }

    /// What a world file may have wrong that its types do not say: a clock
    /// outside [`earliest_time`]..=[`latest_time`], sequence numbers beyond
    /// [`MAX_SEQ`]. Checked on load, so that a damaged file is refused with
    /// its name instead of overflowing in the middle of a call.
    pub fn check(&self) -> Result<(), String> {
        let span = earliest_time()..=latest_time();
        for (field, time) in [("start", self.start), ("now", self.now)] {
            if !span.contains(&time) {
                return Err(format!(
                    "world.{field} = {} is outside the years 1970 to 9999 the simulated clock keeps to",
                    time.to_rfc3339()
                ));
            }
        }
        let last_key = |keys: Option<&u64>| keys.copied().unwrap_or(0);
        let sequences = [
            ("world.next_instance_seq", self.next_instance_seq),
            ("world.next_reservation_seq", self.next_reservation_seq),
            ("world.next_request_seq", self.next_request_seq),
            ("world.instances (largest key)", last_key(self.instances.keys().next_back())),
            ("world.gce.next_seq", self.gce.next_seq),
            ("world.gce.instances (largest key)", self.gce.largest_instance_seq()),
            ("world.arm.next_vm_seq", self.arm.next_vm_seq),
        ];
        for (field, value) in sequences {
            if value > MAX_SEQ {
                return Err(format!("{field} = {value} is beyond {MAX_SEQ}, more than any simulation counts"));
            }
        }
        if let Some((seq, instance)) =
            self.instances.iter().find(|(seq, i)| i.seq != **seq || i.id != instance_id(**seq))
        {
            return Err(format!(
                "world.instances[{seq}] has id {} and seq {}: an EC2 instance's id is derived from its sequence number",
                instance.id, instance.seq
            ));
        }
        Ok(())
    }

    /// Decides whether the scenario's faults refuse this call before it is
    /// applied; `region` is used by EC2 only, whose limits are per region.
    /// The call's simulated latency moves the clock whatever the outcome. A
    /// [`Fault::Reset`] is returned like any refusal, so the protocol applies
    /// nothing, and is also noted for the server to drop the connection.
    pub fn inject_fault(&mut self, cloud: Cloud, region: &str, call: &str) -> Option<Fault> {
        if let Some(trouble) = self.credentials.get(&cloud) {
            return Some(Fault::Credentials(*trouble));
        }
        let verdict = self.faults.check(cloud, region, call);
        if !verdict.delay.is_zero() {
            // Only a clock at the end of chrono's range fails; it stays put.
            let _ = self.advance(verdict.delay);
        }
        self.reset_pending |= verdict.fault == Some(Fault::Reset);
        verdict.fault
    }

    /// Whether the call just handled met a connection reset; clears it.
    pub fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset_pending)
    }

    /// A fresh request id, deterministic so that runs are reproducible.
    pub fn next_request_id(&mut self) -> String {
        self.next_request_seq += 1;
        let n = scramble(self.next_request_seq);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            n >> 32,
            (n >> 16) & 0xffff,
            n & 0xfff,
            (n >> 20) & 0xfff,
            self.next_request_seq
        )
    }

    /// Moves the clock forward, applies the timeline steps now due and
    /// forgets instances terminated more than an hour ago.
    pub fn advance(&mut self, by: Duration) -> Result<DateTime<Utc>, WorldError> {
        self.now = chrono::Duration::from_std(by)
            .ok()
            .and_then(|step| self.now.checked_add_signed(step))
            .filter(|now| *now <= latest_time())
            .ok_or(WorldError::ClockOverflow(by))?;
        self.apply_due_capacity();
        let visible = chrono::Duration::from_std(TERMINATED_VISIBLE_FOR).unwrap_or(chrono::Duration::MAX);
        let now = self.now;
        self.instances.retain(|_, i| i.terminated_at.is_none_or(|t| now - t < visible));
        self.gce.forget_operations_before(now - visible);
        self.gce.forget_deleted(now, &self.lifecycle);
        Ok(self.now)
    }

    /// Sets the available pool of an instance type in one zone, or in every
    /// zone of the region (creating pools where the type was not offered).
    /// Returns how many pools changed.
    pub fn set_capacity(
        &mut self,
        cloud: Cloud,
        region: &str,
        zone: Option<&str>,
        instance_type: &str,
        capacity: Option<u32>,
    ) -> Result<usize, WorldError> {
        let zones = self.scenario_zones(cloud, region, zone, instance_type)?;
        for zone in &zones {
            self.ensure_pool(cloud, region, zone, instance_type).available = capacity;
        }
        Ok(zones.len())
    }

    /// Launches between `min_count` and `max_count` instances in the one zone
    /// of the region with the most stock, or replays an earlier launch with
    /// the same client token.
    pub fn launch(&mut self, request: LaunchRequest) -> Result<Reservation, WorldError> {
        if request.min_count < 1 || request.max_count < request.min_count || request.max_count > MAX_LAUNCH_COUNT {
            return Err(WorldError::InvalidCount { min_count: request.min_count, max_count: request.max_count });
        }
        if let Some(token) = &request.client_token
            && let Some(record) = self.client_tokens.get(&request.region).and_then(|t| t.get(token))
        {
            if record.request != request {
                return Err(WorldError::ClientTokenReused { token: token.clone() });
            }
            // Instances forgotten since (terminated over an hour ago) are left out, as on EC2.
            let instances = self.instances.values().filter(|i| record.instance_ids.contains(&i.id)).cloned().collect();
            return Ok(Reservation { reservation_id: record.reservation_id.clone(), instances });
        }
        let (max_count, attach) = self.admit_ec2_launch(&request)?;
        // A subnet decides the zone.
        let placed = LaunchRequest { zone: attach.zone.clone().or(request.zone.clone()), ..request.clone() };
        let pool_index = self.choose_pool(&placed)?;
        let pool = &mut self.pools[pool_index];
        let count = match pool.available {
            None => max_count,
            Some(available) if available >= request.min_count => available.min(max_count),
            Some(available) => {
                return Err(WorldError::InsufficientCapacity {
                    instance_type: request.instance_type.clone(),
                    zone: pool.zone.clone(),
                    requested_zone: request.zone.is_some(),
                    available,
                    min_count: request.min_count,
                });
            }
        };
        if let Some(available) = &mut pool.available {
            *available -= count;
        }
        let zone = pool.zone.clone();
        self.next_reservation_seq += 1;
        let reservation_id = format!("r-0{:016x}", scramble(self.next_reservation_seq ^ RESERVATION_SALT));
        let mut instances = Vec::with_capacity(count as usize);
        for launch_index in 0..count {
            self.next_instance_seq += 1;
            let seq = self.next_instance_seq;
            let instance = Instance {
                seq,
                id: instance_id(seq),
                reservation_id: reservation_id.clone(),
                cloud: Cloud::Aws,
                region: request.region.clone(),
                zone: zone.clone(),
                instance_type: request.instance_type.clone(),
                image_id: request.image_id.clone(),
                state: InstanceState::Running,
                launch_time: self.now,
                terminated_at: None,
                launch_index,
                client_token: request.client_token.clone(),
                tags: request.tags.clone(),
                user_data: request.user_data.clone(),
                attach: attach.attachments.clone(),
            };
            self.instances.insert(seq, instance.clone());
            instances.push(instance);
        }
        if let Some(token) = &request.client_token {
            let record = TokenRecord {
                request: request.clone(),
                reservation_id: reservation_id.clone(),
                instance_ids: instances.iter().map(|i| i.id.clone()).collect(),
            };
            self.client_tokens.entry(request.region.clone()).or_default().insert(token.clone(), record);
        }
        Ok(Reservation { reservation_id, instances })
    }

    /// One page of the instances of a region that match the query.
    pub fn describe(&self, query: &DescribeQuery) -> Result<DescribePage<'_>, WorldError> {
        if query.max_results.is_some() && !query.instance_ids.is_empty() {
            return Err(WorldError::MaxResultsWithInstanceIds);
        }
        if let Some(max) = query.max_results
            && !MAX_RESULTS_RANGE.contains(&max)
        {
            return Err(WorldError::MaxResultsOutOfRange(max));
        }
        for filter in &query.filters {
            if !is_supported_filter(&filter.name) {
                return Err(WorldError::UnknownFilter(filter.name.clone()));
            }
            if filter.values.is_empty() {
                return Err(WorldError::FilterWithoutValues(filter.name.clone()));
            }
        }
        let missing = self.missing_ids(&query.region, &query.instance_ids);
        if !missing.is_empty() {
            return Err(WorldError::InstancesNotFound { ids: missing });
        }
        let cursor = match &query.next_token {
            None => Cursor::default(),
            Some(token) => parse_next_token(token).ok_or_else(|| WorldError::InvalidNextToken(token.clone()))?,
        };
        let page_size = query.max_results.map_or(usize::MAX, |m| m as usize);
        // Named instances are looked up, not searched for among all of them.
        let named: BTreeMap<u64, &Instance> =
            query.instance_ids.iter().filter_map(|id| self.instance(&query.region, id)).map(|i| (i.seq, i)).collect();
        let from = cursor.after.saturating_add(1);
        let candidates: Box<dyn Iterator<Item = &Instance>> = if query.instance_ids.is_empty() {
            Box::new(self.instances.range(from..).map(|(_, i)| i))
        } else {
            Box::new(named.range(from..).map(|(_, i)| *i))
        };
        let matching = candidates
            .filter(|i| i.region == query.region)
            .filter(|i| query.filters.iter().all(|f| filter_matches(f, i, self.ec2_phase(i))))
            .map(|i| (i.seq, i));
        let (page, next) = self.paging.page(cursor, page_size, matching);
        let next_token = next.map(next_token_at);
        let mut reservations: Vec<(&str, Vec<&Instance>)> = Vec::new();
        for instance in page {
            match reservations.last_mut() {
                Some((id, members)) if *id == instance.reservation_id => members.push(instance),
                _ => reservations.push((&instance.reservation_id, vec![instance])),
            }
        }
        Ok(DescribePage { reservations, next_token })
    }

    /// Terminates every listed instance, or none if any id is unknown.
    /// Capacity goes back to the pool it came from.
    pub fn terminate(&mut self, region: &str, ids: &[String]) -> Result<Vec<StateChange>, WorldError> {
        let missing = self.missing_ids(region, ids);
        if !missing.is_empty() {
            return Err(WorldError::InstancesNotFound { ids: missing });
        }
        let (now, lifecycle) = (self.now, self.lifecycle);
        let mut changes = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(seq) = self.instance(region, id).map(|i| i.seq) else {
                continue;
            };
            let Some(instance) = self.instances.get_mut(&seq) else {
                continue;
            };
            let previous = instance.phase(now, &lifecycle);
            if instance.state == InstanceState::Running {
                instance.state = InstanceState::Terminated;
                instance.terminated_at = Some(now);
                let (cloud, zone, instance_type) =
                    (instance.cloud, instance.zone.clone(), instance.instance_type.clone());
                if let Some(available) = &mut self.ensure_pool(cloud, region, &zone, &instance_type).available {
                    *available = available.saturating_add(1);
                }
            }
            let current = self.instances.get(&seq).map_or(InstanceState::Terminated, |i| i.phase(now, &lifecycle));
            changes.push(StateChange { instance_id: id.clone(), previous, current });
        }
        Ok(changes)
    }

    /// Adds or overwrites tags on every listed instance, or on none if any id
    /// is unknown or would exceed the tag limit.
    pub fn tag(&mut self, region: &str, ids: &[String], tags: &Tags) -> Result<(), WorldError> {
        let missing = self.missing_ids(region, ids);
        if !missing.is_empty() {
            return Err(WorldError::InstancesNotFound { ids: missing });
        }
        let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let targets = |i: &Instance| i.region == region && ids.contains(i.id.as_str());
        for instance in self.instances.values().filter(|i| targets(i)) {
            let new_keys = tags.keys().filter(|k| !instance.tags.contains_key(*k)).count();
            if instance.tags.len() + new_keys > MAX_TAGS_PER_RESOURCE {
                return Err(WorldError::TooManyTags { id: instance.id.clone() });
            }
        }
        for instance in self.instances.values_mut().filter(|i| targets(i)) {
            instance.tags.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(())
    }

    /// The pool of one instance type in one zone, if the zone offers it.
    pub(super) fn pool_mut(&mut self, cloud: Cloud, zone: &str, instance_type: &str) -> Option<&mut Pool> {
        self.pools.iter_mut().find(|p| p.cloud == cloud && p.zone == zone && p.instance_type == instance_type)
    }

    /// The zones of a region the world knows, `None` for an unknown region.
    pub(super) fn known_zones(&self, region: &str) -> Option<&[String]> {
        self.zones.get(region).map(Vec::as_slice)
    }

    /// Takes up to `wanted` instances of a type from a region's first pool
    /// (regions placed by region have exactly one); returns how many it got.
    /// `None` when the region does not offer the type at all.
    pub(super) fn take_capacity(
        &mut self,
        cloud: Cloud,
        region: &str,
        instance_type: &str,
        wanted: u32,
    ) -> Option<u32> {
        let pool = self.region_pool(cloud, region, instance_type)?;
        let got = pool.available.map_or(wanted, |available| available.min(wanted));
        if let Some(available) = &mut pool.available {
            *available -= got;
        }
        Some(got)
    }

    /// Gives `count` instances back to the pool [`World::take_capacity`] took them from.
    pub(super) fn return_capacity(&mut self, cloud: Cloud, region: &str, instance_type: &str, count: u32) {
        if let Some(available) = self.region_pool(cloud, region, instance_type).and_then(|p| p.available.as_mut()) {
            *available = available.saturating_add(count);
        }
    }

    /// Whether a region offers a type at all (even with no stock left).
    pub(super) fn offers(&self, cloud: Cloud, region: &str, instance_type: &str) -> bool {
        self.pools.iter().any(|p| p.cloud == cloud && p.region == region && p.instance_type == instance_type)
    }

    /// Every Compute Engine zone of the world, in order: the scopes an
    /// aggregatedList reports on, with or without instances.
    pub fn gce_zones(&self) -> Vec<&str> {
        let regions: BTreeSet<&str> =
            self.pools.iter().filter(|p| p.cloud == Cloud::Gcp).map(|p| p.region.as_str()).collect();
        regions.into_iter().filter_map(|r| self.known_zones(r)).flatten().map(String::as_str).collect()
    }

    /// Whether the cloud sells the instance type anywhere.
    pub(super) fn sells(&self, cloud: Cloud, instance_type: &str) -> bool {
        self.pools.iter().any(|p| p.cloud == cloud && p.instance_type == instance_type)
    }

    /// Whether the world knows a region (of any cloud).
    pub(super) fn knows_region(&self, region: &str) -> bool {
        self.zones.contains_key(region)
    }

    fn region_pool(&mut self, cloud: Cloud, region: &str, instance_type: &str) -> Option<&mut Pool> {
        self.pools.iter_mut().find(|p| p.cloud == cloud && p.region == region && p.instance_type == instance_type)
    }

    fn missing_ids(&self, region: &str, ids: &[String]) -> Vec<String> {
        ids.iter().filter(|id| self.instance(region, id).is_none()).cloned().collect()
    }

    /// The pool a launch draws from: among the zones allowed by the request
    /// that offer the type, the one with the most available (first on ties).
    fn choose_pool(&self, request: &LaunchRequest) -> Result<usize, WorldError> {
        if let Some(zone) = &request.zone
            && !self.zones_of(&request.region).contains(zone)
        {
            return Err(WorldError::UnknownZone { zone: zone.clone(), region: request.region.clone() });
        }
        let candidates = self.pools.iter().enumerate().filter(|(_, p)| {
            p.cloud == Cloud::Aws
                && p.region == request.region
                && p.instance_type == request.instance_type
                && request.zone.as_ref().is_none_or(|z| *z == p.zone)
        });
        // Unlimited (`None`) ranks above any number; `max_by_key` keeps the
        // last maximum, so reverse to keep the first zone on ties.
        candidates
            .rev()
            .max_by_key(|(_, p)| p.available.map_or(u64::MAX, u64::from))
            .map(|(index, _)| index)
            .ok_or_else(|| {
                // A type sold nowhere is no type at all, not one to look for elsewhere.
                if !self.sells(Cloud::Aws, &request.instance_type) {
                    return WorldError::UnknownInstanceType(request.instance_type.clone());
                }
                WorldError::Unsupported {
                    instance_type: request.instance_type.clone(),
                    place: request.zone.clone().unwrap_or_else(|| request.region.clone()),
                }
            })
    }

    fn zones_of(&self, region: &str) -> Vec<String> {
        self.zones.get(region).cloned().unwrap_or_else(|| zones_or_default(region, &[]))
    }

    /// The zones a scenario line or an admin call addresses.
    fn scenario_zones(
        &mut self,
        cloud: Cloud,
        region: &str,
        zone: Option<&str>,
        instance_type: &str,
    ) -> Result<Vec<String>, WorldError> {
        // Azure places by region: its one pool per region is named after the region.
        let known = if cloud == Cloud::Azure { vec![region.to_string()] } else { self.zones_of(region) };
        self.zones.entry(region.to_string()).or_insert_with(|| known.clone());
        if let Some(zone) = zone {
            if !known.iter().any(|z| z == zone) {
                return Err(WorldError::UnknownZone { zone: zone.to_string(), region: region.to_string() });
            }
            return Ok(vec![zone.to_string()]);
        }
        let offered: Vec<String> = self
            .pools
            .iter()
            .filter(|p| p.cloud == cloud && p.region == region && p.instance_type == instance_type)
            .map(|p| p.zone.clone())
            .collect();
        Ok(if offered.is_empty() { known } else { offered })
    }

    fn ensure_pool(&mut self, cloud: Cloud, region: &str, zone: &str, instance_type: &str) -> &mut Pool {
        let found = self
            .pools
            .iter()
            .position(|p| p.cloud == cloud && p.region == region && p.zone == zone && p.instance_type == instance_type);
        let index = match found {
            Some(index) => index,
            None => {
                self.pools.push(Pool {
                    cloud,
                    region: region.to_string(),
                    zone: zone.to_string(),
                    instance_type: instance_type.to_string(),
                    available: None,
                    restricted: false,
                });
                self.pools.len() - 1
            }
        };
        &mut self.pools[index]
    }

    fn apply_due_capacity(&mut self) {
        let due = self.scheduled.iter().take_while(|s| s.at <= self.now).count();
        for step in self.scheduled.drain(..due).collect::<Vec<_>>() {
            self.ensure_pool(step.cloud, &step.region, &step.zone, &step.instance_type).available = step.capacity;
        }
    }
}

/// The zones of a region; a region known without zones is simulated as one
/// zone, `<region>a`, rather than refusing every launch there.
fn zones_or_default(region: &str, zones: &[String]) -> Vec<String> {
    if zones.is_empty() { vec![format!("{region}a")] } else { zones.to_vec() }
}

/// Keeps reservation ids from looking like the instance ids of the same sequence number.
const RESERVATION_SALT: u64 = 0x005e_ed0f_7e5e_7a71;

/// SplitMix64's finalizer: a bijection on u64, so ids derived from distinct
/// sequence numbers never collide, yet look as scattered as real ones.
pub(super) fn scramble(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The id of the EC2 instance with sequence number `seq`.
fn instance_id(seq: u64) -> String {
    format!("i-0{:016x}", scramble(seq))
}

/// The inverse of [`scramble`]: the sequence number a scrambled id was made from.
pub(super) fn unscramble(mut z: u64) -> u64 {
    z = unshift_xor(z, 31).wrapping_mul(inverse_mod_2_64(0x94d0_49bb_1331_11eb));
    z = unshift_xor(z, 27).wrapping_mul(inverse_mod_2_64(0xbf58_476d_1ce4_e5b9));
    unshift_xor(z, 30).wrapping_sub(0x9e37_79b9_7f4a_7c15)
}

/// The number 16 hex digits spell, unscrambled; `None` if they are not hex.
pub(super) fn unscramble_hex(hex: &str) -> Option<u64> {
    u64::from_str_radix(hex, 16).ok().filter(|_| hex.bytes().all(|b| b.is_ascii_hexdigit())).map(unscramble)
}

/// Undoes `y = x ^ (x >> shift)`: each round recovers `shift` more high bits.
fn unshift_xor(y: u64, shift: u32) -> u64 {
    let mut x = y;
    for _ in 0..64 / shift {
        x = y ^ (x >> shift);
    }
    x
}

/// The multiplicative inverse of an odd number modulo 2^64, by Newton's
/// iteration (each round doubles the correct low bits: 3, 6, … 96).
const fn inverse_mod_2_64(odd: u64) -> u64 {
    let mut x = odd;
    let mut round = 0;
    while round < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(x)));
        round += 1;
    }
    x
}

const NEXT_TOKEN_PREFIX: &str = "sim-after-";

fn next_token_at(cursor: Cursor) -> String {
    format!("{NEXT_TOKEN_PREFIX}{}", cursor.token())
}

fn parse_next_token(token: &str) -> Option<Cursor> {
    Cursor::parse(token.strip_prefix(NEXT_TOKEN_PREFIX)?)
}

const SUPPORTED_FILTERS: &[&str] = &[
    "tag-key",
    "tag-value",
    "instance-state-name",
    "instance-state-code",
    "instance-type",
    "instance-id",
    "availability-zone",
    "image-id",
    "reservation-id",
];

fn is_supported_filter(name: &str) -> bool {
    name.strip_prefix("tag:").is_some_and(|key| !key.is_empty()) || SUPPORTED_FILTERS.contains(&name)
}

fn filter_matches(filter: &Filter, instance: &Instance, phase: InstanceState) -> bool {
    let any = |candidate: &str| filter.values.iter().any(|pattern| glob_matches(pattern, candidate));
    if let Some(key) = filter.name.strip_prefix("tag:") {
        return instance.tags.get(key).is_some_and(|value| any(value));
    }
    match filter.name.as_str() {
        "tag-key" => instance.tags.keys().any(|k| any(k)),
        "tag-value" => instance.tags.values().any(|v| any(v)),
        "instance-state-name" => any(phase.name()),
        "instance-state-code" => any(&phase.code().to_string()),
        "instance-type" => any(&instance.instance_type),
        "instance-id" => any(&instance.id),
        "availability-zone" => any(&instance.zone),
        "image-id" => any(&instance.image_id),
        "reservation-id" => any(&instance.reservation_id),
        _ => false,
    }
}

/// EC2 filter values: `*` matches any run of characters, `?` any one.
pub(super) fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it absorbed up to).
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                resume = Some((p + 1, t));
                p += 1;
            }
            Some(c) if *c == '?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((after_star, absorbed)) => {
                    p = after_star;
                    t = absorbed + 1;
                    resume = Some((after_star, absorbed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SOLD_OUT: &str = r#"
        [[offering]]
        cloud = "aws"
        region = "us-east-1"
        instance_type = "p5.48xlarge"
        capacity = 0
        [[offering.timeline]]
        after = "20m"
        capacity = 3
    "#;

    fn world(scenario: &str) -> World {
        let scenario = Scenario::parse(scenario, Path::new("test.toml")).unwrap();
        World::new(Some(&scenario), &Catalog::builtin()).unwrap()
    }

    /// A world where g6.48xlarge can be launched in us-east-1b only, `capacity`
    /// of them: the catalog sells it in every zone of us-east-1, so the
    /// scenario empties the region first, then stocks the one zone.
    fn only_us_east_1b_with(capacity: u32) -> World {
        world(&format!(
            r#"
            [[offering]]
            cloud = "aws"
            region = "us-east-1"
            instance_type = "g6.48xlarge"
            capacity = 0
            [[offering]]
            cloud = "aws"
            region = "us-east-1"
            zone = "us-east-1b"
            instance_type = "g6.48xlarge"
            capacity = {capacity}
            "#
        ))
    }

    /// The available pool of one zone and type; panics if there is none.
    fn available(world: &World, region: &str, zone: &str, instance_type: &str) -> Option<u32> {
        world
            .pools()
            .iter()
            .find(|p| p.region == region && p.zone == zone && p.instance_type == instance_type)
            .unwrap_or_else(|| panic!("no {instance_type} pool in {zone}"))
            .available
    }

    const US_EAST_1_ZONES: [&str; 5] = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f"];

    fn request(instance_type: &str, min_count: u32, max_count: u32) -> LaunchRequest {
        LaunchRequest {
            region: "us-east-1".into(),
            image_id: "ami-12345678".into(),
            instance_type: instance_type.into(),
            min_count,
            max_count,
            client_token: None,
            zone: None,
            tags: Tags::new(),
            user_data: None,
            attach: Default::default(),
        }
    }

    fn tagged(instance_type: &str, count: u32, key: &str, value: &str) -> LaunchRequest {
        LaunchRequest {
            tags: Tags::from([(key.to_string(), value.to_string())]),
            ..request(instance_type, count, count)
        }
    }

    #[test]
    fn sim_catalog_offerings_are_unlimited_in_every_zone() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let p5_in_us_east_1: Vec<&Pool> =
            world.pools().iter().filter(|p| p.region == "us-east-1" && p.instance_type == "p5.48xlarge").collect();
        assert_eq!(p5_in_us_east_1.iter().map(|p| p.zone.as_str()).collect::<Vec<_>>(), US_EAST_1_ZONES);
        assert!(p5_in_us_east_1.iter().all(|p| p.available.is_none()));

        let reservation = world.launch(request("p5.48xlarge", 100, 100)).unwrap();
        assert_eq!(reservation.instances.len(), 100);
        assert!(reservation.instances.iter().all(|i| i.zone == reservation.instances[0].zone));
        assert_eq!(reservation.instances[0].state, InstanceState::Running);
        assert_eq!(reservation.instances[0].id.len(), 19);
        assert!(reservation.instances[0].id.starts_with("i-"));
        for zone in US_EAST_1_ZONES {
            let in_zone = LaunchRequest { zone: Some(zone.into()), ..request("p5.48xlarge", 100, 100) };
            let reservation = world.launch(in_zone).unwrap();
            assert_eq!(reservation.instances.len(), 100);
            assert!(reservation.instances.iter().all(|i| i.zone == zone), "{zone}");
        }
    }

    #[test]
    fn sim_type_not_offered_is_unsupported_and_a_type_sold_nowhere_is_unknown() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let err = world.launch(request("p9.nope", 1, 1)).unwrap_err();
        assert_eq!(err, WorldError::UnknownInstanceType("p9.nope".into()));
        let err =
            world.launch(LaunchRequest { region: "eu-west-9".into(), ..request("p5.48xlarge", 1, 1) }).unwrap_err();
        assert!(matches!(err, WorldError::Unsupported { .. }), "{err:?}");
        // A region of the catalog that does not sell this type (p5 is not sold in eu-west-1).
        let err =
            world.launch(LaunchRequest { region: "eu-west-1".into(), ..request("p5.48xlarge", 1, 1) }).unwrap_err();
        assert_eq!(err, WorldError::Unsupported { instance_type: "p5.48xlarge".into(), place: "eu-west-1".into() });
    }

    #[test]
    fn sim_min_count_is_all_or_nothing_and_max_count_takes_what_is_there() {
        let mut world = only_us_east_1b_with(3);
        let err = world.launch(request("g6.48xlarge", 4, 8)).unwrap_err();
        assert_eq!(
            err,
            WorldError::InsufficientCapacity {
                instance_type: "g6.48xlarge".into(),
                zone: "us-east-1b".into(),
                requested_zone: false,
                available: 3,
                min_count: 4
            }
        );
        assert_eq!(world.instances().count(), 0, "a refused launch leaves nothing behind");
        let reservation = world.launch(request("g6.48xlarge", 2, 8)).unwrap();
        assert_eq!(reservation.instances.len(), 3);
        assert!(reservation.instances.iter().all(|i| i.zone == "us-east-1b"));
        for zone in US_EAST_1_ZONES {
            assert_eq!(available(&world, "us-east-1", zone, "g6.48xlarge"), Some(0), "{zone}");
        }
    }

    #[test]
    fn sim_launch_picks_the_zone_with_most_stock_and_termination_gives_back() {
        let mut world = world(
            r#"
            [[offering]]
            cloud = "aws"
            region = "us-east-1"
            instance_type = "p5.48xlarge"
            capacity = 2
            [[offering]]
            cloud = "aws"
            region = "us-east-1"
            zone = "us-east-1c"
            instance_type = "p5.48xlarge"
            capacity = 5
            "#,
        );
        let first = world.launch(request("p5.48xlarge", 4, 4)).unwrap();
        assert!(first.instances.iter().all(|i| i.zone == "us-east-1c"));
        // The other four zones hold 8 between them, but a launch lands in one zone.
        let err = world.launch(request("p5.48xlarge", 3, 3)).unwrap_err();
        assert!(matches!(err, WorldError::InsufficientCapacity { available: 2, .. }), "{err:?}");

        let ids: Vec<String> = first.instances.iter().map(|i| i.id.clone()).collect();
        let changes = world.terminate("us-east-1", &ids).unwrap();
        assert!(
            changes.iter().all(|c| c.previous == InstanceState::Pending && c.current == InstanceState::ShuttingDown)
        );
        let again = world.launch(request("p5.48xlarge", 5, 5)).unwrap();
        assert!(again.instances.iter().all(|i| i.zone == "us-east-1c"));
    }

    #[test]
    fn sim_requested_zone_is_honoured_or_refused() {
        // p5.48xlarge: unlimited in every zone of us-east-1 but us-east-1d, which has none.
        // g6.48xlarge: the catalog does not sell it in us-west-1 (zones a and c);
        // the scenario offers one, in us-west-1c only.
        let mut world = world(
            r#"
            [[offering]]
            cloud = "aws"
            region = "us-east-1"
            zone = "us-east-1d"
            instance_type = "p5.48xlarge"
            capacity = 0
            [[offering]]
            cloud = "aws"
            region = "us-west-1"
            zone = "us-west-1c"
            instance_type = "g6.48xlarge"
            capacity = 1
            "#,
        );
        let in_zone = |region: &str, zone: &str, instance_type: &str| LaunchRequest {
            region: region.into(),
            zone: Some(zone.into()),
            ..request(instance_type, 1, 1)
        };
        // Honoured, although on a tie the world would pick the first zone, us-east-1a.
        let honoured = world.launch(in_zone("us-east-1", "us-east-1c", "p5.48xlarge")).unwrap();
        assert!(honoured.instances.iter().all(|i| i.zone == "us-east-1c"));
        // Refused when the requested zone is out of stock, though its neighbours have plenty.
        assert_eq!(
            world.launch(in_zone("us-east-1", "us-east-1d", "p5.48xlarge")).unwrap_err(),
            WorldError::InsufficientCapacity {
                instance_type: "p5.48xlarge".into(),
                zone: "us-east-1d".into(),
                requested_zone: true,
                available: 0,
                min_count: 1
            }
        );
        // Refused when the type is offered in the region, but not in that zone.
        assert_eq!(
            world.launch(in_zone("us-west-1", "us-west-1a", "g6.48xlarge")).unwrap_err(),
            WorldError::Unsupported { instance_type: "g6.48xlarge".into(), place: "us-west-1a".into() }
        );
        let there = world.launch(in_zone("us-west-1", "us-west-1c", "g6.48xlarge")).unwrap();
        assert!(there.instances.iter().all(|i| i.zone == "us-west-1c"));
        // Refused when the region has no such zone.
        for (region, zone) in [("us-east-1", "us-east-1z"), ("us-west-1", "us-west-1b")] {
            assert_eq!(
                world.launch(in_zone(region, zone, "g6.48xlarge")).unwrap_err(),
                WorldError::UnknownZone { zone: zone.into(), region: region.into() }
            );
        }
        assert_eq!(world.instances().count(), 2, "refused launches leave nothing behind");
    }

    #[test]
    fn sim_client_token_replays_the_launch_and_refuses_other_parameters() {
        let mut world = only_us_east_1b_with(10);
        let with_token = LaunchRequest { client_token: Some("tok-1".into()), ..request("g6.48xlarge", 2, 2) };
        let first = world.launch(with_token.clone()).unwrap();
        let replay = world.launch(with_token.clone()).unwrap();
        assert_eq!(first, replay);
        assert_eq!(world.instances().count(), 2);
        assert_eq!(available(&world, "us-east-1", "us-east-1b", "g6.48xlarge"), Some(8), "the replay took no stock");
        let changed = LaunchRequest { max_count: 3, ..with_token };
        assert_eq!(world.launch(changed).unwrap_err(), WorldError::ClientTokenReused { token: "tok-1".into() });
    }

    #[test]
    fn sim_invalid_counts_are_refused() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        assert!(matches!(world.launch(request("p5.48xlarge", 0, 1)), Err(WorldError::InvalidCount { .. })));
        assert!(matches!(world.launch(request("p5.48xlarge", 3, 2)), Err(WorldError::InvalidCount { .. })));
        // An unlimited pool took MaxCount 10^9 at its word and aborted on allocation.
        for max in [MAX_LAUNCH_COUNT + 1, 1_000_000_000] {
            assert!(matches!(world.launch(request("p5.48xlarge", 1, max)), Err(WorldError::InvalidCount { .. })));
        }
        assert_eq!(world.launch(request("p5.48xlarge", 1, MAX_LAUNCH_COUNT)).unwrap().instances.len(), 1000);
    }

    #[test]
    fn sim_timeline_changes_capacity_when_the_clock_reaches_it() {
        let mut world = world(SOLD_OUT);
        assert!(matches!(world.launch(request("p5.48xlarge", 1, 1)), Err(WorldError::InsufficientCapacity { .. })));
        world.advance(Duration::from_secs(19 * 60)).unwrap();
        assert!(matches!(world.launch(request("p5.48xlarge", 1, 1)), Err(WorldError::InsufficientCapacity { .. })));
        let now = world.advance(Duration::from_secs(60)).unwrap();
        assert_eq!(now.to_rfc3339(), "2026-01-01T00:20:00+00:00");
        let launched = world.launch(request("p5.48xlarge", 1, 10)).unwrap();
        assert_eq!(launched.instances.len(), 3);
        assert_eq!(launched.instances[0].launch_time, now);
        // A zone-less capacity applies to each zone: the next launch finds 3 in another zone.
        let next = world.launch(request("p5.48xlarge", 1, 10)).unwrap();
        assert_eq!(next.instances.len(), 3);
        assert_ne!(next.instances[0].zone, launched.instances[0].zone);
        for zone in US_EAST_1_ZONES {
            let used = [&launched, &next].iter().any(|r| r.instances[0].zone == zone);
            assert_eq!(available(&world, "us-east-1", zone, "p5.48xlarge"), Some(if used { 0 } else { 3 }), "{zone}");
        }
        assert!(world.scheduled().is_empty());
    }

    #[test]
    fn sim_terminated_instances_stay_visible_for_an_hour() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let id = world.launch(request("p5.48xlarge", 1, 1)).unwrap().instances[0].id.clone();
        world.terminate("us-east-1", std::slice::from_ref(&id)).unwrap();
        let query = DescribeQuery { region: "us-east-1".into(), ..DescribeQuery::default() };
        world.advance(Duration::from_secs(3599)).unwrap();
        assert_eq!(world.describe(&query).unwrap().reservations[0].1[0].state, InstanceState::Terminated);
        world.advance(Duration::from_secs(1)).unwrap();
        assert!(world.describe(&query).unwrap().reservations.is_empty());
        assert!(matches!(world.terminate("us-east-1", &[id]), Err(WorldError::InstancesNotFound { .. })));
    }

    #[test]
    fn sim_terminate_is_all_or_nothing() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let id = world.launch(request("p5.48xlarge", 1, 1)).unwrap().instances[0].id.clone();
        let err = world.terminate("us-east-1", &[id.clone(), "i-0000000000000000f".into()]).unwrap_err();
        assert_eq!(err, WorldError::InstancesNotFound { ids: vec!["i-0000000000000000f".into()] });
        assert!(world.instances().all(|i| i.state == InstanceState::Running));
        assert!(matches!(world.terminate("us-west-2", &[id]), Err(WorldError::InstancesNotFound { .. })));
    }

    #[test]
    fn sim_describe_pages_group_instances_into_reservations() {
        let mut world = world("[paging]\nshort_pages = false\n");
        for _ in 0..4 {
            world.launch(tagged("p5.48xlarge", 3, "team", "ml")).unwrap();
        }
        world.launch(tagged("p5.48xlarge", 2, "team", "web")).unwrap();
        let mut query = DescribeQuery {
            region: "us-east-1".into(),
            filters: vec![Filter { name: "tag:team".into(), values: vec!["ml".into()] }],
            max_results: Some(5),
            ..DescribeQuery::default()
        };
        let mut pages = Vec::new();
        loop {
            let page = world.describe(&query).unwrap();
            let sizes: Vec<usize> = page.reservations.iter().map(|(_, members)| members.len()).collect();
            pages.push(sizes);
            match page.next_token {
                Some(token) => query.next_token = Some(token),
                None => break,
            }
        }
        assert_eq!(pages, vec![vec![3, 2], vec![1, 3, 1], vec![2]]);
    }

    #[test]
    fn sim_ec2_instances_are_pending_then_running_and_shutting_down_then_terminated_with_time_alone() {
        let mut world = world("[lifecycle]\nec2_pending = \"20s\"\nec2_shutting_down = \"40s\"\n");
        let id = world.launch(request("p5.48xlarge", 1, 1)).unwrap().instances[0].id.clone();
        let phase = |world: &World| world.ec2_phase(world.instance("us-east-1", &id).unwrap());
        assert_eq!(phase(&world), InstanceState::Pending);
        world.advance(Duration::from_secs(19)).unwrap();
        assert_eq!(phase(&world), InstanceState::Pending);
        world.advance(Duration::from_secs(1)).unwrap();
        assert_eq!(phase(&world), InstanceState::Running);
        let change = world.terminate("us-east-1", std::slice::from_ref(&id)).unwrap().remove(0);
        assert_eq!((change.previous, change.current), (InstanceState::Running, InstanceState::ShuttingDown));
        world.advance(Duration::from_secs(39)).unwrap();
        assert_eq!(phase(&world), InstanceState::ShuttingDown);
        world.advance(Duration::from_secs(1)).unwrap();
        assert_eq!(phase(&world), InstanceState::Terminated);
    }

    #[test]
    fn sim_describe_pages_may_be_short_or_empty_and_still_list_every_instance_once() {
        let mut world = world("[paging]\nseed = 7\n");
        for _ in 0..40 {
            world.launch(request("p5.48xlarge", 3, 3)).unwrap();
        }
        let mut query = DescribeQuery { region: "us-east-1".into(), max_results: Some(10), ..DescribeQuery::default() };
        let (mut seen, mut sizes) = (Vec::new(), Vec::new());
        loop {
            let page = world.describe(&query).unwrap();
            let ids: Vec<String> = page.reservations.iter().flat_map(|(_, m)| m.iter().map(|i| i.id.clone())).collect();
            sizes.push(ids.len());
            seen.extend(ids);
            match page.next_token {
                Some(token) => query.next_token = Some(token),
                None => break,
            }
        }
        let all: Vec<String> = world.instances().map(|i| i.id.clone()).collect();
        assert_eq!(seen, all);
        assert!(sizes.contains(&0), "an empty page with a next token: {sizes:?}");
        assert!(sizes.iter().any(|&n| n > 0 && n < 10), "a short page: {sizes:?}");
    }

    #[test]
    fn sim_describe_filters_and_rejects_bad_queries() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let ml = world.launch(tagged("p5.48xlarge", 2, "team", "ml-train")).unwrap();
        world.launch(tagged("p5.48xlarge", 1, "owner", "ops")).unwrap();
        world.terminate("us-east-1", std::slice::from_ref(&ml.instances[0].id)).unwrap();
        world.advance(Duration::from_secs(60)).unwrap();
        let count = |filters: Vec<Filter>| {
            let query = DescribeQuery { region: "us-east-1".into(), filters, ..DescribeQuery::default() };
            world.describe(&query).unwrap().reservations.iter().map(|(_, m)| m.len()).sum::<usize>()
        };
        let filter = |name: &str, values: &[&str]| Filter {
            name: name.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        assert_eq!(count(vec![filter("tag:team", &["ml-*"])]), 2);
        assert_eq!(count(vec![filter("tag:team", &["ml-*"]), filter("instance-state-name", &["running"])]), 1);
        assert_eq!(count(vec![filter("tag-key", &["owner", "team"])]), 3);
        assert_eq!(count(vec![filter("instance-type", &["p5.48xlarge"])]), 3);
        assert_eq!(count(vec![filter("tag:team", &["ml"])]), 0);

        let bad =
            |query: DescribeQuery| world.describe(&DescribeQuery { region: "us-east-1".into(), ..query }).unwrap_err();
        assert_eq!(
            bad(DescribeQuery { max_results: Some(4), ..Default::default() }),
            WorldError::MaxResultsOutOfRange(4)
        );
        assert_eq!(
            bad(DescribeQuery {
                max_results: Some(5),
                instance_ids: vec![ml.instances[1].id.clone()],
                ..Default::default()
            }),
            WorldError::MaxResultsWithInstanceIds
        );
        assert!(matches!(
            bad(DescribeQuery { next_token: Some("garbage".into()), ..Default::default() }),
            WorldError::InvalidNextToken(_)
        ));
        assert!(matches!(
            bad(DescribeQuery { filters: vec![filter("color", &["red"])], ..Default::default() }),
            WorldError::UnknownFilter(_)
        ));
    }

    #[test]
    fn sim_tags_are_added_atomically_within_the_limit() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let id = world.launch(tagged("p5.48xlarge", 1, "a", "1")).unwrap().instances[0].id.clone();
        world.tag("us-east-1", std::slice::from_ref(&id), &Tags::from([("b".into(), "2".into())])).unwrap();
        assert_eq!(world.instances().next().unwrap().tags.len(), 2);
        let many: Tags = (0..49).map(|n| (format!("k{n}"), String::new())).collect();
        assert!(matches!(
            world.tag("us-east-1", std::slice::from_ref(&id), &many),
            Err(WorldError::TooManyTags { .. })
        ));
        assert_eq!(world.instances().next().unwrap().tags.len(), 2);
    }

    #[test]
    fn sim_ids_are_deterministic_and_distinct() {
        let launch_all = || {
            let mut world = World::new(None, &Catalog::builtin()).unwrap();
            world
                .launch(request("p5.48xlarge", 50, 50))
                .unwrap()
                .instances
                .into_iter()
                .map(|i| i.id)
                .collect::<Vec<_>>()
        };
        let ids = launch_all();
        assert_eq!(ids, launch_all());
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn sim_shipped_scenarios_build_worlds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans").join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                World::new(Some(&scenario), &Catalog::builtin()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 2, "plans/scenarios holds the example scenarios");
    }

    #[test]
    fn sim_sold_out_scenario_does_what_its_comments_say() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/scenarios/us-east-1-h100-soldout.toml");
        let scenario = Scenario::load(&path).unwrap();
        let mut world = World::new(Some(&scenario), &Catalog::builtin()).unwrap();
        let p5 = |world: &World| US_EAST_1_ZONES.map(|zone| available(world, "us-east-1", zone, "p5.48xlarge"));
        assert_eq!(p5(&world), [Some(0); 5]);
        world.advance(Duration::from_secs(20 * 60)).unwrap();
        assert_eq!(p5(&world), [Some(8); 5]);
        let err = world.launch(request("p5.48xlarge", 9, 9)).unwrap_err();
        assert!(matches!(err, WorldError::InsufficientCapacity { available: 8, .. }), "{err:?}");
        world.advance(Duration::from_secs(10 * 60)).unwrap();
        assert_eq!(p5(&world), [Some(8), Some(8), Some(64), Some(8), Some(8)]);
    }

    #[test]
    fn sim_instance_ids_lead_back_to_their_sequence_numbers() {
        for seq in [0, 1, 2, 1000, MAX_SEQ, u64::MAX] {
            assert_eq!(unscramble(scramble(seq)), seq);
        }
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let launched = world.launch(request("p5.48xlarge", 3, 3)).unwrap();
        for instance in &launched.instances {
            assert_eq!(world.instance("us-east-1", &instance.id), Some(instance));
            assert_eq!(world.instance("us-west-2", &instance.id), None, "another region's");
        }
        for other in ["i-0123456789abcdef0", "i-0zzzzzzzzzzzzzzzz", "i-12345678", "i-0+123456789abcde", ""] {
            assert_eq!(world.instance("us-east-1", other), None, "{other}");
        }
        let mut renamed = world.clone();
        let seq = launched.instances[0].seq;
        renamed.instances.get_mut(&seq).unwrap().id = "i-0123456789abcdef0".into();
        assert!(renamed.check().unwrap_err().contains("derived from its sequence number"));
        assert_eq!(world.check(), Ok(()));
    }

    #[test]
    fn sim_glob_matches_like_ec2_filters() {
        assert!(glob_matches("ml-*", "ml-train"));
        assert!(glob_matches("*train", "ml-train"));
        assert!(glob_matches("m?-*n", "ml-train"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("ml", "ml-train"));
        assert!(!glob_matches("*x*", "ml-train"));
    }
}
