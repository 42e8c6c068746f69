//! The shared vocabulary, as plain data: clouds, placements, the instances
//! gpufleet owns and the account scope each lives in, ownership tags, shortage
//! memory, offering overrides, and the clock every layer reads time from.
//!
//! Every other module uses these words; this module uses none of them. No I/O
//! beyond the system clock behind [`Clock`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A cloud gpufleet can place capacity on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Gcp,
    Azure,
}

impl Cloud {
    pub const ALL: [Cloud; 3] = [Cloud::Aws, Cloud::Gcp, Cloud::Azure];

    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
            Cloud::Azure => "azure",
        }
    }

    pub fn parse(s: &str) -> Option<Cloud> {
        Cloud::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Google Cloud and AWS place instances in a zone (EC2 launches each call
    /// in one zone, so a stock-out or partial fill is a zone's, and the next
    /// zone is worth trying); Azure is asked for a region.
    pub fn places_by_zone(self) -> bool {
        self != Cloud::Azure
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest plan and fleet name: they become tag values and GCP label values (≤ 63).
pub const MAX_NAME_LEN: usize = 63;

/// Whether `name` is a valid plan or fleet name: 1 to [`MAX_NAME_LEN`]
/// lowercase letters, digits and inner `-`, like a DNS label. Names end up in
/// tags, labels and file names, so nothing else (no `/`, no `.`) passes.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `text` safe to show on a terminal: control characters (ESC, BEL, CR, NUL,
/// the C1 range, ...) are written as `\u{1b}` escapes, so that a value read
/// from a file or a database row cannot retitle, recolor or rewrite the
/// user's terminal. Every untrusted value printed goes through here.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect(),
    )
}

/// The most nodes one create call asks for: Compute Engine's bulkInsert
/// count and a flexible scale set's capacity both stop at 1,000, and EC2
/// launches are best kept to the same size. Larger creates are split.
pub const MAX_NODES_PER_CREATE: u32 = 1000;

/// Ownership tag: the plan's name.
pub const TAG_PLAN: &str = "gpufleet-plan";
/// Ownership tag: the fleet's name within the plan.
pub const TAG_FLEET: &str = "gpufleet-fleet";
/// Ownership tag: the apply run that created the instance.
pub const TAG_RUN: &str = "gpufleet-run";

/// The unit a cloud lists in one go, and so the unit of "gone": an instance
/// leaves the state only when its own scope was listed and did not return it.
/// With the instance's region and zone it names the account scope it lives in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// An EC2 region, reached through a named profile of the shared AWS
    /// configuration, or the default chain (DescribeInstances is regional,
    /// and the profile picks the account).
    AwsRegion {
        region: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// A Compute Engine project (aggregatedList covers every zone of it).
    GcpProject { project: String },
    /// An Azure resource group of a subscription (every region in it).
    AzureResourceGroup { subscription: String, resource_group: String },
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::AwsRegion { region, profile: None } => write!(f, "aws region {region}"),
            Scope::AwsRegion { region, profile: Some(profile) } => write!(f, "aws region {region} (profile {profile})"),
            Scope::GcpProject { project } => write!(f, "gcp project {project}"),
            Scope::AzureResourceGroup { subscription, resource_group } => {
                write!(f, "azure subscription {subscription} resource group {resource_group}")
            }
        }
    }
}

/// One instance the clouds report as owned by a plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub cloud: Cloud,
    pub region: String,
    pub zone: Option<String>,
    pub instance_type: String,
    pub fleet: String,
    /// The apply run that created it (its `gpufleet-run` tag).
    pub run: String,
    pub launched_at: DateTime<Utc>,
    /// The account scope it was listed in. `None` only in states written
    /// before scopes were recorded (format 1); refresh assigns those the
    /// scope the plan configures for their cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// What a node is launched with besides its type and image: the network it
/// joins, who it runs as, the key its admin logs in with, and its boot disk.
/// Each value as its own cloud names it; `None` or empty means the cloud's
/// default (the default VPC or network, no identity, no key).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Launch {
    /// EC2 subnet id of the zone, Compute Engine subnetwork of the region.
    pub subnet: Option<String>,
    /// Compute Engine network.
    pub network: Option<String>,
    /// EC2 security group ids.
    pub security_groups: Vec<String>,
    /// EC2 instance profile (name or ARN), Compute Engine service account
    /// email, Azure user-assigned managed identity resource id.
    pub identity: Option<String>,
    /// OAuth scopes of a Compute Engine service account.
    pub scopes: Vec<String>,
    /// EC2 key pair name; an OpenSSH public key on Compute Engine and Azure.
    pub ssh_key: Option<String>,
    /// Boot disk size in GB (GiB on EC2 and Azure).
    pub disk_gb: u32,
}

/// Where to create nodes: one offering of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Placement {
    pub cloud: Cloud,
    pub region: String,
    pub zone: Option<String>,
    pub instance_type: String,
}

impl Placement {
    pub fn of(instance: &Instance) -> Placement {
        Placement {
            cloud: instance.cloud,
            region: instance.region.clone(),
            zone: instance.zone.clone(),
            instance_type: instance.instance_type.clone(),
        }
    }

    /// Whether an instance runs here (a placement without a zone holds the whole region).
    pub fn hosts(&self, instance: &Instance) -> bool {
        self.cloud == instance.cloud
            && self.region == instance.region
            && self.instance_type == instance.instance_type
            && (self.zone.is_none() || self.zone == instance.zone)
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.cloud, self.zone.as_deref().unwrap_or(&self.region), self.instance_type)
    }
}

/// What a capacity or quota refusal rules out, scoped by what the error means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum ShortageScope {
    /// No stock of this instance type at this placement (a zone, or a whole
    /// region when the cloud picks the zone).
    Offering { placement: Placement },
    /// A quota rules out every instance type with this GPU in this region.
    Quota { cloud: Cloud, region: String, gpu: String },
}

impl ShortageScope {
    /// Whether this refusal rules out `placement`, an offering of `gpu`.
    pub fn covers(&self, placement: &Placement, gpu: &str) -> bool {
        match self {
            ShortageScope::Offering { placement: short } => {
                short.cloud == placement.cloud
                    && short.region == placement.region
                    && short.instance_type == placement.instance_type
                    && (short.zone.is_none() || short.zone == placement.zone)
            }
            ShortageScope::Quota { cloud, region, gpu: short_gpu } => {
                *cloud == placement.cloud && *region == placement.region && short_gpu == gpu
            }
        }
    }
}

impl fmt::Display for ShortageScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShortageScope::Offering { placement } => write!(f, "{placement}"),
            ShortageScope::Quota { cloud, region, gpu } => write!(f, "{cloud} {region} {gpu} quota"),
        }
    }
}

/// "Offering X refused capacity at time T, reason R", remembered until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    #[serde(flatten)]
    pub scope: ShortageScope,
    /// The cloud's error code, e.g. `InsufficientInstanceCapacity`.
    pub code: String,
    pub message: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// An `[[offerings]]` entry: adds an instance type/region to the catalog, or
/// overrides the price of one it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferingOverride {
    pub cloud: Cloud,
    pub instance_type: String,
    pub region: String,
    pub zone: Option<String>,
    /// Required when the catalog does not know the instance type.
    pub gpu: Option<String>,
    pub gpus_per_node: Option<u32>,
    /// Required when the catalog does not know the region.
    pub jurisdiction: Option<String>,
    pub price_per_hour: Option<f64>,
}

/// Why "now" could not be read.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("cannot read the clock ({source_name}): {message}")]
pub struct ClockError {
    pub source_name: String,
    pub message: String,
}

/// Where "now" comes from. The CLI builds one (the system clock, or the
/// simulator's when running against one) and hands it down: shortage expiry,
/// lock leases and rebalance rounds all read it, and tests drive it.
#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    async fn now(&self) -> Result<DateTime<Utc>, ClockError>;

    /// Lets `by` pass while a cloud finishes work (an instance starting, an
    /// operation running): a real sleep on the machine's clock; on a
    /// simulator's, its simulated time moves on instead.
    async fn sleep(&self, by: std::time::Duration) -> Result<(), ClockError>;
}

/// The machine's clock.
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    async fn now(&self) -> Result<DateTime<Utc>, ClockError> {
        Ok(Utc::now())
    }

    async fn sleep(&self, by: std::time::Duration) -> Result<(), ClockError> {
        tokio::time::sleep(by).await;
        Ok(())
    }
}

/// A clock that moves only when told to: for tests.
pub struct ManualClock {
    now: std::sync::Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock { now: std::sync::Mutex::new(start) }
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = now.checked_add_signed(by).unwrap_or(*now);
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    async fn now(&self) -> Result<DateTime<Utc>, ClockError> {
        Ok(*self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    async fn sleep(&self, by: std::time::Duration) -> Result<(), ClockError> {
        self.advance(chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX));
        Ok(())
    }
}
