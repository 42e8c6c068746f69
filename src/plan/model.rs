//! The validated plan: what the rest of gpufleet works with. Every value here
//! has been checked against the catalog and has its defaults filled in.

use crate::model::OfferingOverride;
use crate::model::{Cloud, Launch, Placement, Scope};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Default time a remembered shortage keeps an offering out of plans.
pub const DEFAULT_SHORTAGE_TTL: Duration = Duration::from_secs(5 * 60);

/// The longest duration a plan or a command line may give (`shortage_ttl`,
/// `[rebalance]` times, `--lock-timeout`, `--deadline`, `--every`,
/// `sim advance`): a year. Every one of them is added to a clock, and
/// centuries overflowed it; none is useful at more than a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Plan id; used in the `gpufleet-plan` ownership tag and the state file name.
    pub name: String,
    /// Path the plan was loaded from.
    pub path: PathBuf,
    pub providers: Providers,
    /// Fleets by name, sorted.
    pub fleets: BTreeMap<String, Fleet>,
    /// How long a capacity or quota refusal keeps an offering out of plans.
    pub shortage_ttl: Duration,
    /// Offerings the plan adds to, or overrides in, the built-in catalog.
    pub offerings: Vec<OfferingOverride>,
    /// How `gpufleet rebalance` moves nodes to better offerings.
    pub rebalance: Rebalance,
}

/// How `gpufleet rebalance` moves nodes from fallback offerings to better
/// ones: a budget per round, and hysteresis so that capacity flipping on and
/// off causes no churn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rebalance {
    /// How often `rebalance --watch` runs a round.
    pub every: Duration,
    /// Nodes in motion per round per fleet.
    pub max_disruption: Disruption,
    /// A better offering must have been free of shortages this long.
    pub move_back_after: Duration,
    /// Share by which a move must lower the price per GPU-hour, when it does
    /// not improve the preference rank (0.05 for "5%").
    pub min_gain: f64,
    /// Run before a node is deleted (resolved against the plan file's directory).
    pub drain: Option<PathBuf>,
    /// How long a drain may take before its node is kept.
    pub drain_timeout: Duration,
}

impl Default for Rebalance {
    fn default() -> Rebalance {
        Rebalance {
            every: Duration::from_secs(5 * 60),
            max_disruption: Disruption::Percent(10),
            move_back_after: Duration::from_secs(15 * 60),
            min_gain: 0.05,
            drain: None,
            drain_timeout: Duration::from_secs(10 * 60),
        }
    }
}

/// A disruption budget: a node count or a share of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disruption {
    Nodes(u32),
    Percent(u32),
}

impl Disruption {
    /// Nodes a fleet of `nodes` may have in motion; a share rounds up, so
    /// any share above 0% allows at least one node.
    pub fn nodes_of(self, nodes: u32) -> u32 {
        match self {
            Disruption::Nodes(n) => n,
            Disruption::Percent(p) => (u64::from(nodes) * u64::from(p)).div_ceil(100).min(u64::from(nodes)) as u32,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Providers {
    pub aws: Option<AwsConfig>,
    pub gcp: Option<GcpConfig>,
    pub azure: Option<AzureConfig>,
}

impl Providers {
    /// Regions (or, for Google Cloud, zones) a cloud may be used in; `None`
    /// when the cloud is not configured.
    pub fn locations(&self, cloud: Cloud) -> Option<&[String]> {
        match cloud {
            Cloud::Aws => self.aws.as_ref().map(|a| a.regions.as_slice()),
            Cloud::Gcp => self.gcp.as_ref().map(|g| g.zones.as_slice()),
            Cloud::Azure => self.azure.as_ref().map(|a| a.regions.as_slice()),
        }
    }

    /// The clouds this plan may use.
    pub fn clouds(&self) -> Vec<Cloud> {
        Cloud::ALL.into_iter().filter(|c| self.locations(*c).is_some()).collect()
    }

    /// The scope an instance of `cloud` in `region` has under this plan's
    /// configuration; `None` when the plan does not configure the cloud (an
    /// EC2 region is a scope of its own, so AWS always has one).
    pub fn scope_of(&self, cloud: Cloud, region: &str) -> Option<Scope> {
        match cloud {
            Cloud::Aws => Some(Scope::AwsRegion {
                region: region.to_string(),
                profile: self.aws.as_ref().and_then(|a| a.profile.clone()),
            }),
            Cloud::Gcp => self.gcp.as_ref().map(|g| Scope::GcpProject { project: g.project.clone() }),
            Cloud::Azure => self.azure.as_ref().map(|a| Scope::AzureResourceGroup {
                subscription: a.subscription.clone(),
                resource_group: a.resource_group.clone(),
            }),
        }
    }

    /// Why instances in `scope` are outside what this plan manages, or `None`
    /// when the plan still covers it. Those instances are surplus, to be
    /// deleted like an instance of a fleet that left the plan. (An AWS
    /// region that left `regions` is an offering no longer allowed; the
    /// planner says so on its own.)
    pub fn left_scope(&self, scope: &Scope) -> Option<String> {
        match scope {
            Scope::AwsRegion { profile, .. } => match &self.aws {
                None => Some("[providers.aws] left the plan".to_string()),
                Some(a) if a.profile != *profile => Some(format!(
                    "profile changed: instances reached with {}, the plan now uses {}",
                    profile.as_deref().unwrap_or("the default credentials"),
                    a.profile.as_deref().unwrap_or("the default credentials")
                )),
                Some(_) => None,
            },
            Scope::GcpProject { project } => match &self.gcp {
                None => Some("[providers.gcp] left the plan".to_string()),
                Some(g) if g.project != *project => {
                    Some(format!("project changed: instances in {project}, the plan now uses {}", g.project))
                }
                Some(_) => None,
            },
            Scope::AzureResourceGroup { subscription, resource_group } => match &self.azure {
                None => Some("[providers.azure] left the plan".to_string()),
                Some(a) if a.subscription != *subscription => Some(format!(
                    "subscription changed: instances in {subscription}, the plan now uses {}",
                    a.subscription
                )),
                Some(a) if a.resource_group != *resource_group => Some(format!(
                    "resource group changed: instances in {resource_group}, the plan now uses {}",
                    a.resource_group
                )),
                Some(_) => None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcpConfig {
    /// Project id the instances live in.
    pub project: String,
    /// Zones the plan may place instances in (Compute Engine places by zone).
    pub zones: Vec<String>,
    /// Endpoint override; otherwise `https://compute.googleapis.com`.
    pub endpoint: Option<String>,
    /// Network the instances join, a name or `projects/P/global/networks/N`;
    /// otherwise `default`.
    #[serde(default)]
    pub network: Option<String>,
    /// Subnetwork per region, a name or `projects/P/regions/R/subnetworks/S`;
    /// a region not named uses the network's auto-mode subnetwork.
    #[serde(default)]
    pub subnetworks: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AzureConfig {
    /// Subscription id (a GUID).
    pub subscription: String,
    /// Resource group that holds the plan's scale sets.
    pub resource_group: String,
    pub regions: Vec<String>,
    /// Endpoint override; otherwise `https://management.azure.com`.
    pub endpoint: Option<String>,
    /// Subnet resource id new VMs join; otherwise virtual network
    /// `gpufleet-<region>`, subnet `default`, in the resource group.
    pub subnet: Option<String>,
    /// OpenSSH public key of the VMs' admin user `gpufleet` (password login is off).
    pub ssh_public_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwsConfig {
    pub regions: Vec<String>,
    /// Endpoint override (e.g. moto or a private endpoint); otherwise the
    /// standard AWS configuration chain decides.
    pub endpoint: Option<String>,
    /// Named profile of the shared AWS config; otherwise the default chain.
    pub profile: Option<String>,
    /// Subnet id per zone; a zone not named launches into the region's default VPC.
    #[serde(default)]
    pub subnets: BTreeMap<String, String>,
    /// Security group ids per region; a region not named gets its VPC's default group.
    #[serde(default)]
    pub security_groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlacementPolicy {
    /// Fill offerings in preference order, taking what each can give.
    Fill,
    /// Balance nodes across zones, regions or clouds, so that losing one
    /// takes only its share of the fleet.
    Spread(Spread),
    /// All of a fleet's nodes in one region.
    Pack,
}

/// How a `spread` fleet balances, as Kubernetes topology spread does: no
/// domain may hold more than `max_skew` nodes above the emptiest one that
/// can take nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spread {
    pub by: SpreadBy,
    pub max_skew: u32,
}

/// The failure domain a `spread` fleet balances over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpreadBy {
    Zone,
    Region,
    Cloud,
}

/// One entry of `prefer`: a cloud, optionally narrowed to a region or zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preference {
    pub cloud: Cloud,
    /// Region or zone name; `None` means the whole cloud.
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    pub name: String,
    pub gpu: String,
    pub gpus_per_node: u32,
    pub nodes: u32,
    /// Lowest node count the fleet accepts as a partial fill (defaults to `nodes`).
    pub min_nodes: u32,
    pub placement: PlacementPolicy,
    pub prefer: Vec<Preference>,
    /// Allowed jurisdictions; `None` means anywhere.
    pub residency: Option<Vec<String>>,
    pub max_price_per_gpu_hour: Option<f64>,
    /// Machine image per cloud.
    pub image: BTreeMap<Cloud, String>,
    pub startup: Option<StartupScript>,
    pub labels: BTreeMap<String, String>,
    /// Boot disk, identity and SSH key of every node.
    #[serde(default)]
    pub node: NodeSettings,
}

/// Default boot disk of a node: room for a GPU image (Deep Learning AMIs and
/// VM images need 100 GB or more) and its container images.
pub const DEFAULT_DISK_GB: u32 = 200;

/// What each node of a fleet gets besides its image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSettings {
    /// Boot disk size in GB.
    pub disk_gb: u32,
    /// Identity per cloud: EC2 instance profile (name or ARN), Compute
    /// Engine service account email, Azure user-assigned identity id.
    pub identity: BTreeMap<Cloud, String>,
    /// OAuth scopes of the Compute Engine service account.
    pub gcp_scopes: Vec<String>,
    /// SSH key per cloud: EC2 key pair name; an OpenSSH public key on
    /// Compute Engine and Azure (Azure's defaults to `ssh_public_key`).
    pub ssh_key: BTreeMap<Cloud, String>,
}

/// The scope a Compute Engine service account gets when the plan names none,
/// as Google recommends: access is then decided by the account's IAM roles.
pub const DEFAULT_GCP_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

impl Default for NodeSettings {
    fn default() -> NodeSettings {
        NodeSettings {
            disk_gb: DEFAULT_DISK_GB,
            identity: BTreeMap::new(),
            gcp_scopes: vec![DEFAULT_GCP_SCOPE.to_string()],
            ssh_key: BTreeMap::new(),
        }
    }
}

impl Plan {
    /// What a node of `fleet` at `placement` is launched with: the plan's
    /// network of that zone or region, and the fleet's node settings for
    /// that cloud.
    pub fn launch(&self, fleet: &Fleet, placement: &Placement) -> Launch {
        let node = &fleet.node;
        let region = placement.region.as_str();
        let mut launch = Launch {
            identity: node.identity.get(&placement.cloud).cloned(),
            ssh_key: node.ssh_key.get(&placement.cloud).cloned(),
            disk_gb: node.disk_gb,
            ..Launch::default()
        };
        match placement.cloud {
            Cloud::Aws => {
                let aws = self.providers.aws.as_ref();
                let zone = placement.zone.as_deref().unwrap_or_default();
                launch.subnet = aws.and_then(|a| a.subnets.get(zone).cloned());
                launch.security_groups = aws.and_then(|a| a.security_groups.get(region).cloned()).unwrap_or_default();
            }
            Cloud::Gcp => {
                let gcp = self.providers.gcp.as_ref();
                launch.network = gcp.and_then(|g| g.network.clone());
                launch.subnet = gcp.and_then(|g| g.subnetworks.get(region).cloned());
                if launch.identity.is_some() {
                    launch.scopes = node.gcp_scopes.clone();
                }
            }
            Cloud::Azure => {}
        }
        launch
    }
}

/// A startup script, read when the plan loads so a missing file is a plan error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartupScript {
    /// As written in the plan (relative to the plan file).
    pub path: String,
    pub content: String,
}
