//! Stage one of loading a plan: the file format as written.
//!
//! These types say which keys exist and what type each holds, keeping the span
//! of every value so that stage two (`validate`) can point at it. They check
//! nothing that needs the catalog. They are also the source of the plan file's
//! JSON schema (doc comments become descriptions), so the schema and the reader
//! cannot drift apart.

use super::diagnostic::Problems;
use super::reader::{Located, TableReader};
use schemars::JsonSchema;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::de::DeTable;

/// A gpufleet plan: how much GPU capacity each fleet needs and where it may run.
#[derive(Debug, Default, JsonSchema)]
#[schemars(title = "gpufleet plan", deny_unknown_fields)]
pub(crate) struct RawPlan {
    /// Plan id, used in the `gpufleet-plan` ownership tag and the state file name:
    /// lowercase letters, digits and `-`, at most 63 characters.
    #[schemars(required, length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))]
    pub name: Option<Located<String>>,
    /// How long a capacity or quota refusal keeps an offering out of plans, e.g. "5m", "1h 30m".
    /// Defaults to 5 minutes.
    pub shortage_ttl: Option<Located<String>>,
    /// The clouds this plan may use, with their regions.
    #[schemars(required)]
    pub providers: Option<RawProviders>,
    /// Fleets by name (lowercase letters, digits and `-`).
    #[schemars(with = "Option<BTreeMap<String, RawFleet>>")]
    pub fleets: Vec<(Located<String>, RawFleet)>,
    /// Instance types, regions or prices that add to or override the built-in catalog.
    #[schemars(with = "Option<Vec<RawOffering>>")]
    pub offerings: Vec<Located<RawOffering>>,
    /// How `gpufleet rebalance` moves nodes to better offerings.
    pub rebalance: Option<RawRebalance>,
}

/// How `gpufleet rebalance` moves nodes from fallback offerings to better ones.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "Rebalance", deny_unknown_fields)]
pub(crate) struct RawRebalance {
    /// How often `gpufleet rebalance --watch` runs a round, e.g. "5m" (the default).
    pub every: Option<Located<String>>,
    /// Nodes in motion per round per fleet: a count (2) or a share of the fleet's `nodes`
    /// ("25%", rounded up). Default "10%"; 0 stops moves.
    #[schemars(with = "Option<RawCountOrPercent>")]
    pub max_disruption: Option<Located<String>>,
    /// How long a better offering must have been free of shortages before nodes move
    /// there, e.g. "15m" (the default). Keeps capacity that flips on and off from causing churn.
    pub move_back_after: Option<Located<String>>,
    /// How much cheaper per GPU-hour an offering of the same preference rank must be
    /// for a move, e.g. "5%" (the default). A better preference rank always qualifies.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?%$"))]
    pub min_gain: Option<Located<String>>,
    /// Executable run before a node is deleted, relative to the plan file; it gets
    /// GPUFLEET_PLAN, GPUFLEET_FLEET, GPUFLEET_CLOUD, GPUFLEET_REGION, GPUFLEET_ZONE and
    /// GPUFLEET_INSTANCE_ID. A node whose drain fails or times out is kept.
    pub drain: Option<Located<String>>,
    /// How long a drain may run, e.g. "10m" (the default).
    pub drain_timeout: Option<Located<String>>,
}

/// A node count, or a percentage of the fleet.
#[allow(dead_code)] // Only its JSON schema is used: the reader keeps the value as written.
#[derive(JsonSchema)]
#[serde(untagged)]
pub(crate) enum RawCountOrPercent {
    Count(#[schemars(range(max = 10000))] u32),
    Percent(#[schemars(regex(pattern = r"^[0-9]+%$"))] String),
}

/// The configured clouds: at least one of `aws`, `gcp`, `azure`.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "Providers", deny_unknown_fields)]
pub(crate) struct RawProviders {
    /// Amazon EC2.
    pub aws: Option<Located<RawAws>>,
    /// Google Compute Engine.
    pub gcp: Option<Located<RawGcp>>,
    /// Azure (virtual machine scale sets).
    pub azure: Option<Located<RawAzure>>,
    /// Where the `providers` key was written, for problems about the table as a whole.
    #[schemars(skip)]
    pub span: Range<usize>,
}

/// Where and how to reach Amazon EC2.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "AwsProvider", deny_unknown_fields)]
pub(crate) struct RawAws {
    /// Regions the plan may place instances in, e.g. ["us-east-1", "us-west-2"].
    #[schemars(required, length(min = 1))]
    pub regions: Option<Located<Vec<Located<String>>>>,
    /// Endpoint override (moto, the gpufleet simulator, a private endpoint): an http(s) URL.
    pub endpoint: Option<Located<String>>,
    /// Named profile of the shared AWS configuration.
    pub profile: Option<Located<String>>,
    /// Subnet id per zone, e.g. { "us-east-1a" = "subnet-0123456789abcdef0" }; a zone not
    /// named launches into its region's default VPC.
    #[schemars(with = "Option<BTreeMap<String, RawSubnetId>>")]
    pub subnets: Option<Located<Labels>>,
    /// Security group ids per region, e.g. { "us-east-1" = ["sg-0123456789abcdef0"] }, in the
    /// VPC of the region's subnets; a region not named gets its VPC's default group.
    #[schemars(with = "Option<BTreeMap<String, Vec<RawSecurityGroupId>>>")]
    pub security_groups: Option<Located<StringLists>>,
}

/// An EC2 subnet id.
#[allow(dead_code)] // Only its JSON schema is used.
#[derive(JsonSchema)]
#[schemars(rename = "SubnetId")]
pub(crate) struct RawSubnetId(#[schemars(regex(pattern = r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$"))] String);

/// An EC2 security group id.
#[allow(dead_code)] // Only its JSON schema is used.
#[derive(JsonSchema)]
#[schemars(rename = "SecurityGroupId")]
pub(crate) struct RawSecurityGroupId(#[schemars(regex(pattern = r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$"))] String);

/// Where and how to reach Google Compute Engine.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "GcpProvider", deny_unknown_fields)]
pub(crate) struct RawGcp {
    /// Project id, e.g. "ml-training-prod".
    #[schemars(required, regex(pattern = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"))]
    pub project: Option<Located<String>>,
    /// Zones the plan may place instances in, e.g. ["us-central1-a", "europe-west4-b"].
    #[schemars(required, length(min = 1))]
    pub zones: Option<Located<Vec<Located<String>>>>,
    /// Endpoint override (the gpufleet simulator, a private endpoint): an http(s) URL.
    pub endpoint: Option<Located<String>>,
    /// VPC network the instances join: a name or "projects/PROJECT/global/networks/NAME"
    /// (a Shared VPC host project's). Default "default".
    pub network: Option<Located<String>>,
    /// Subnetwork per region, e.g. { "us-central1" = "gpu-us-central1" }: a name or
    /// "projects/PROJECT/regions/REGION/subnetworks/NAME"; a region not named uses the
    /// network's auto-mode subnetwork.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub subnetworks: Option<Located<Labels>>,
}

/// Where and how to reach Azure Resource Manager.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "AzureProvider", deny_unknown_fields)]
pub(crate) struct RawAzure {
    /// Subscription id (a GUID).
    #[schemars(required)]
    pub subscription: Option<Located<String>>,
    /// Resource group that holds the plan's scale sets; it must exist.
    #[schemars(required)]
    pub resource_group: Option<Located<String>>,
    /// Regions the plan may place instances in, e.g. ["eastus", "westeurope"].
    #[schemars(required, length(min = 1))]
    pub regions: Option<Located<Vec<Located<String>>>>,
    /// Endpoint override (the gpufleet simulator, a private endpoint): an http(s) URL.
    pub endpoint: Option<Located<String>>,
    /// Subnet resource id the VMs join; default: virtual network `gpufleet-<region>`,
    /// subnet `default`, in the resource group.
    pub subnet: Option<Located<String>>,
    /// OpenSSH public key ("ssh-ed25519 AAAA... comment") of the VMs' admin user `gpufleet`.
    #[schemars(required)]
    pub ssh_public_key: Option<Located<String>>,
}

/// One fleet: identical nodes of one GPU model.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "Fleet", deny_unknown_fields)]
pub(crate) struct RawFleet {
    /// GPU model, as the catalog names it: "H100", "H200", "B200", "A100-40GB", "A100-80GB", "L4", ...
    #[schemars(required)]
    pub gpu: Option<Located<String>>,
    /// GPUs per node (instance); must be a node shape the catalog offers for the GPU model.
    #[schemars(required, with = "u32", range(min = 1))]
    pub gpus_per_node: Option<Located<i128>>,
    /// Number of nodes the fleet should have.
    #[schemars(required, with = "u32", range(min = 1, max = 10000))]
    pub nodes: Option<Located<i128>>,
    /// Lowest node count accepted when capacity is short; defaults to `nodes`.
    #[schemars(with = "Option<u32>", range(max = 10000))]
    pub min_nodes: Option<Located<i128>>,
    /// "fill": fill offerings in preference order (the default); "spread": balance nodes
    /// across zones, regions or clouds (see `spread_by`, `max_skew`); "pack": all nodes in one region.
    #[schemars(with = "Option<RawPlacement>")]
    pub placement: Option<Located<String>>,
    /// What a "spread" fleet balances over: "zone" (the default), "region" or "cloud".
    #[schemars(with = "Option<RawSpreadBy>")]
    pub spread_by: Option<Located<String>>,
    /// Most nodes a "spread" domain may hold above the emptiest one that can take nodes; default 1.
    #[schemars(with = "Option<u32>", range(min = 1, max = 10000))]
    pub max_skew: Option<Located<i128>>,
    /// Preferred places, most wanted first: "cloud", "cloud:region" or "cloud:zone".
    pub prefer: Option<Located<Vec<Located<String>>>>,
    /// Allowed jurisdictions of the regions the fleet may use (e.g. ["US"], ["EU", "UK"]);
    /// absent means anywhere.
    pub residency: Option<Located<Vec<Located<String>>>>,
    /// Most the fleet may cost per GPU-hour (USD, on-demand list price).
    #[schemars(with = "Option<f64>", extend("exclusiveMinimum" = 0))]
    pub max_price_per_gpu_hour: Option<Located<f64>>,
    /// Machine image per cloud.
    #[schemars(required)]
    pub image: Option<RawImages>,
    /// Startup script, a path relative to the plan file; read when the plan loads.
    pub startup: Option<Located<String>>,
    /// Extra tags/labels put on every instance of the fleet.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub labels: Option<Located<Labels>>,
    /// Boot disk size in GB (GiB on EC2 and Azure), at least the image's size. Default 200;
    /// at most 16384 on EC2 (gp3), 4095 on Azure (OS disk), 65536 on Compute Engine.
    #[schemars(with = "Option<u32>", range(min = 10, max = 65536))]
    pub disk_gb: Option<Located<i128>>,
    /// Identity of the nodes per cloud.
    pub identity: Option<RawIdentity>,
    /// SSH key of the nodes' admin user per cloud.
    pub ssh_key: Option<RawSshKeys>,
}

/// Identity of a fleet's nodes, per cloud; a cloud left out runs its nodes without one.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "Identity", deny_unknown_fields)]
pub(crate) struct RawIdentity {
    /// EC2 instance profile: its name, or "arn:aws:iam::ACCOUNT:instance-profile/NAME".
    pub aws: Option<Located<String>>,
    /// Compute Engine service account email, e.g. "gpu-node@PROJECT.iam.gserviceaccount.com".
    pub gcp: Option<Located<String>>,
    /// OAuth scopes of the Compute Engine service account; default
    /// ["https://www.googleapis.com/auth/cloud-platform"] (IAM roles decide access).
    pub gcp_scopes: Option<Located<Vec<Located<String>>>>,
    /// Azure user-assigned managed identity resource id
    /// "/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/NAME".
    pub azure: Option<Located<String>>,
}

/// SSH key of a fleet's nodes, per cloud.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "SshKeys", deny_unknown_fields)]
pub(crate) struct RawSshKeys {
    /// EC2 key pair name (the key pair must exist in each region).
    pub aws: Option<Located<String>>,
    /// OpenSSH public key ("ssh-ed25519 AAAA... you@host") for the user `gpufleet`.
    pub gcp: Option<Located<String>>,
    /// OpenSSH public key of the admin user `gpufleet`; default: [providers.azure] ssh_public_key.
    pub azure: Option<Located<String>>,
}

/// Label key and value pairs, in file order (also any other table of strings).
pub(crate) type Labels = Vec<(Located<String>, Located<String>)>;

/// Keys with lists of strings, in file order.
pub(crate) type StringLists = Vec<(Located<String>, Located<Vec<Located<String>>>)>;

/// The placement policies a fleet may use.
#[allow(dead_code)] // Only its JSON schema is used: the reader keeps the string and its span.
#[derive(JsonSchema)]
#[schemars(rename = "Placement")]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawPlacement {
    Fill,
    Spread,
    Pack,
}

/// The failure domains a "spread" fleet balances over.
#[allow(dead_code)] // Only its JSON schema is used, as for `RawPlacement`.
#[derive(JsonSchema)]
#[schemars(rename = "SpreadBy")]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawSpreadBy {
    Zone,
    Region,
    Cloud,
}

/// Machine image per cloud.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "Images", deny_unknown_fields)]
pub(crate) struct RawImages {
    /// AMI id, e.g. "ami-0123456789abcdef0".
    #[schemars(regex(pattern = r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$"))]
    pub aws: Option<Located<String>>,
    /// Compute Engine image: "projects/PROJECT/global/images/NAME" or ".../images/family/FAMILY".
    #[schemars(regex(pattern = r"^projects/[^/]+/global/images/"))]
    pub gcp: Option<Located<String>>,
    /// Azure image: a marketplace URN "publisher:offer:sku:version" or an image resource id "/subscriptions/...".
    pub azure: Option<Located<String>>,
}

/// An offering that adds to or overrides the built-in catalog.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "Offering", deny_unknown_fields)]
pub(crate) struct RawOffering {
    /// "aws", "gcp" or "azure".
    #[schemars(required)]
    pub cloud: Option<Located<String>>,
    /// Instance type (machine type, VM size) name.
    #[schemars(required)]
    pub instance_type: Option<Located<String>>,
    /// Region the offering is sold in.
    #[schemars(required)]
    pub region: Option<Located<String>>,
    /// Zone within the region (Google Cloud only).
    pub zone: Option<Located<String>>,
    /// GPU model; required when the catalog does not know the instance type.
    pub gpu: Option<Located<String>>,
    /// GPUs per node; required when the catalog does not know the instance type.
    #[schemars(with = "Option<u32>", range(min = 1, max = 64))]
    pub gpus_per_node: Option<Located<i128>>,
    /// Jurisdiction of the region (e.g. "US", "EU"); required when the catalog does not know the region.
    pub jurisdiction: Option<Located<String>>,
    /// On-demand price per instance-hour in USD.
    #[schemars(with = "Option<f64>", extend("exclusiveMinimum" = 0))]
    pub price_per_hour: Option<Located<f64>>,
}

impl RawPlan {
    /// Reads the document table into the raw plan, recording shape problems
    /// (unknown keys, wrong types, missing required keys).
    pub(crate) fn read(document: &DeTable<'_>, problems: &mut Problems) -> RawPlan {
        let mut top = TableReader::new(document, "the plan", 0..0);
        let name = top.required_string("name", "\"my-plan\"", problems);
        let shortage_ttl = top.string("shortage_ttl", problems);
        let providers = top
            .required_table("providers", "{ aws = { regions = [\"us-east-1\"] } }", problems)
            .map(|(span, table)| RawProviders::read(table, span, problems));
        let fleets = top.table("fleets", problems).map(|(_, table)| read_fleets(table, problems)).unwrap_or_default();
        let offerings = top
            .table_array("offerings", problems)
            .into_iter()
            .enumerate()
            .map(|(i, (span, table))| Located::new(RawOffering::read(table, i, span.clone(), problems), span))
            .collect();
        let rebalance = top.table("rebalance", problems).map(|(span, table)| RawRebalance::read(table, span, problems));
        top.finish(problems);
        RawPlan { name, shortage_ttl, providers, fleets, offerings, rebalance }
    }
}

impl RawRebalance {
    fn read(table: &DeTable<'_>, span: Range<usize>, problems: &mut Problems) -> RawRebalance {
        let mut reader = TableReader::new(table, "[rebalance]", span);
        let every = reader.string("every", problems);
        let max_disruption = reader.count_or_percent("max_disruption", problems);
        let move_back_after = reader.string("move_back_after", problems);
        let min_gain = reader.string("min_gain", problems);
        let drain = reader.string("drain", problems);
        let drain_timeout = reader.string("drain_timeout", problems);
        reader.finish(problems);
        RawRebalance { every, max_disruption, move_back_after, min_gain, drain, drain_timeout }
    }
}

impl RawProviders {
    fn read(table: &DeTable<'_>, span: Range<usize>, problems: &mut Problems) -> RawProviders {
        let mut reader = TableReader::new(table, "[providers]", span.clone());
        let aws =
            reader.table("aws", problems).map(|(span, t)| Located::new(RawAws::read(t, span.clone(), problems), span));
        let gcp =
            reader.table("gcp", problems).map(|(span, t)| Located::new(RawGcp::read(t, span.clone(), problems), span));
        let azure = reader
            .table("azure", problems)
            .map(|(span, t)| Located::new(RawAzure::read(t, span.clone(), problems), span));
        reader.finish(problems);
        RawProviders { aws, gcp, azure, span }
    }
}

impl RawGcp {
    fn read(table: &DeTable<'_>, anchor: Range<usize>, problems: &mut Problems) -> RawGcp {
        let mut reader = TableReader::new(table, "[providers.gcp]", anchor);
        let project = reader.required_string("project", "\"my-project\"", problems);
        let zones = reader.required_string_array("zones", "[\"us-central1-a\"]", problems);
        let endpoint = reader.string("endpoint", problems);
        let network = reader.string("network", problems);
        let subnetworks = reader.table("subnetworks", problems).map(|(span, t)| {
            Located::new(read_strings(t, "subnetwork of region", "[providers.gcp] subnetworks", problems), span)
        });
        reader.finish(problems);
        RawGcp { project, zones, endpoint, network, subnetworks }
    }
}

impl RawAzure {
    fn read(table: &DeTable<'_>, anchor: Range<usize>, problems: &mut Problems) -> RawAzure {
        let mut reader = TableReader::new(table, "[providers.azure]", anchor);
        let subscription = reader.required_string("subscription", "\"00000000-0000-0000-0000-000000000000\"", problems);
        let resource_group = reader.required_string("resource_group", "\"gpu-fleets\"", problems);
        let regions = reader.required_string_array("regions", "[\"eastus\"]", problems);
        let endpoint = reader.string("endpoint", problems);
        let subnet = reader.string("subnet", problems);
        let ssh_public_key = reader.required_string("ssh_public_key", "\"ssh-ed25519 AAAA... you@host\"", problems);
        reader.finish(problems);
        RawAzure { subscription, resource_group, regions, endpoint, subnet, ssh_public_key }
    }
}

impl RawAws {
    fn read(table: &DeTable<'_>, anchor: Range<usize>, problems: &mut Problems) -> RawAws {
        let mut reader = TableReader::new(table, "[providers.aws]", anchor);
        let found_regions = table.iter().any(|(k, _)| k.get_ref() == "regions");
        let regions = reader.string_array("regions", problems);
        if !found_regions {
            problems
                .error(reader.anchor(), "[providers.aws] has no `regions`")
                .help("add `regions = [\"us-east-1\"]` with the regions this plan may use");
        }
        let endpoint = reader.string("endpoint", problems);
        let profile = reader.string("profile", problems);
        let subnets = reader.table("subnets", problems).map(|(span, t)| {
            Located::new(read_strings(t, "subnet of zone", "[providers.aws] subnets", problems), span)
        });
        let security_groups = reader
            .table("security_groups", problems)
            .map(|(span, t)| Located::new(read_string_lists(t, "[providers.aws] security_groups", problems), span));
        reader.finish(problems);
        RawAws { regions, endpoint, profile, subnets, security_groups }
    }
}

fn read_fleets(table: &DeTable<'_>, problems: &mut Problems) -> Vec<(Located<String>, RawFleet)> {
    let mut fleets = Vec::new();
    for (key, value) in table.iter() {
        let name = Located::new(key.get_ref().to_string(), key.span());
        match value.get_ref() {
            toml::de::DeValue::Table(t) => {
                let fleet = RawFleet::read(t, &name, problems);
                fleets.push((name, fleet));
            }
            other => {
                problems
                    .error(
                        value.span(),
                        format!("fleet `{}` must be a table, found {}", name.value, super::reader::type_name(other)),
                    )
                    .help(format!("write it as a [fleets.{}] section", name.value));
            }
        }
    }
    fleets
}

impl RawFleet {
    fn read(table: &DeTable<'_>, name: &Located<String>, problems: &mut Problems) -> RawFleet {
        let mut reader = TableReader::new(table, format!("fleet `{}`", name.value), name.span.clone());
        let gpu = reader.required_string("gpu", "\"H100\"", problems);
        let gpus_per_node = reader.required_integer("gpus_per_node", "8", problems);
        let nodes = reader.required_integer("nodes", "4", problems);
        let min_nodes = reader.integer("min_nodes", problems);
        let placement = reader.string("placement", problems);
        let spread_by = reader.string("spread_by", problems);
        let max_skew = reader.integer("max_skew", problems);
        let prefer = reader.string_array("prefer", problems);
        let residency = reader.string_array("residency", problems);
        let max_price_per_gpu_hour = reader.number("max_price_per_gpu_hour", problems);
        let image = reader.table("image", problems).map(|(span, t)| RawImages::read(t, &reader, span, problems));
        let startup = reader.string("startup", problems);
        let labels = reader
            .table("labels", problems)
            .map(|(span, t)| Located::new(read_strings(t, "label", reader.context(), problems), span));
        let disk_gb = reader.integer("disk_gb", problems);
        let identity = reader.table("identity", problems).map(|(span, t)| {
            let mut identity = TableReader::new(t, format!("the identity of {}", reader.context()), span);
            let read = RawIdentity {
                aws: identity.string("aws", problems),
                gcp: identity.string("gcp", problems),
                gcp_scopes: identity.string_array("gcp_scopes", problems),
                azure: identity.string("azure", problems),
            };
            identity.finish(problems);
            read
        });
        let ssh_key = reader.table("ssh_key", problems).map(|(span, t)| {
            let (aws, gcp, azure) = read_per_cloud(t, format!("the ssh_key of {}", reader.context()), span, problems);
            RawSshKeys { aws, gcp, azure }
        });
        reader.finish(problems);
        RawFleet {
            gpu,
            gpus_per_node,
            nodes,
            min_nodes,
            placement,
            spread_by,
            max_skew,
            prefer,
            residency,
            max_price_per_gpu_hour,
            image,
            startup,
            labels,
            disk_gb,
            identity,
            ssh_key,
        }
    }
}

impl RawImages {
    fn read(
        table: &DeTable<'_>,
        fleet: &TableReader<'_, '_>,
        span: Range<usize>,
        problems: &mut Problems,
    ) -> RawImages {
        let (aws, gcp, azure) = read_per_cloud(table, format!("the image of {}", fleet.context()), span, problems);
        RawImages { aws, gcp, azure }
    }
}

/// A table of one string per cloud (`aws`, `gcp`, `azure`, each optional).
type PerCloud = (Option<Located<String>>, Option<Located<String>>, Option<Located<String>>);

fn read_per_cloud(table: &DeTable<'_>, context: String, span: Range<usize>, problems: &mut Problems) -> PerCloud {
    let mut reader = TableReader::new(table, context, span);
    let aws = reader.string("aws", problems);
    let gcp = reader.string("gcp", problems);
    let azure = reader.string("azure", problems);
    reader.finish(problems);
    (aws, gcp, azure)
}

/// A table of strings (`what` names one value, `of` the table, for messages).
fn read_strings(table: &DeTable<'_>, what: &str, of: &str, problems: &mut Problems) -> Labels {
    let mut labels = Vec::new();
    for (key, value) in table.iter() {
        match value.get_ref() {
            toml::de::DeValue::String(s) => labels
                .push((Located::new(key.get_ref().to_string(), key.span()), Located::new(s.to_string(), value.span()))),
            other => {
                problems
                    .error(
                        value.span(),
                        format!(
                            "{what} `{}` of {of} must be a string, found {}",
                            key.get_ref(),
                            super::reader::type_name(other)
                        ),
                    )
                    .help(if what == "label" {
                        "quote the value: tags and labels are strings"
                    } else {
                        "quote the value"
                    });
            }
        }
    }
    labels
}

impl RawOffering {
    fn read(table: &DeTable<'_>, index: usize, span: Range<usize>, problems: &mut Problems) -> RawOffering {
        let mut reader = TableReader::new(table, format!("[[offerings]] entry {}", index + 1), span);
        let offering = RawOffering {
            cloud: reader.required_string("cloud", "\"aws\"", problems),
            instance_type: reader.required_string("instance_type", "\"p5.48xlarge\"", problems),
            region: reader.required_string("region", "\"us-east-1\"", problems),
            zone: reader.string("zone", problems),
            gpu: reader.string("gpu", problems),
            gpus_per_node: reader.integer("gpus_per_node", problems),
            jurisdiction: reader.string("jurisdiction", problems),
            price_per_hour: reader.number("price_per_hour", problems),
        };
        reader.finish(problems);
        offering
    }
}

/// A table of string lists, e.g. security groups per region.
fn read_string_lists(table: &DeTable<'_>, of: &str, problems: &mut Problems) -> StringLists {
    let mut lists = Vec::new();
    for (key, value) in table.iter() {
        let name = Located::new(key.get_ref().to_string(), key.span());
        let toml::de::DeValue::Array(items) = value.get_ref() else {
            problems
                .error(
                    value.span(),
                    format!(
                        "`{}` in {of} must be an array of strings, found {}",
                        name.value,
                        super::reader::type_name(value.get_ref())
                    ),
                )
                .help(format!("write it like `\"{}\" = [\"sg-0123456789abcdef0\"]`", name.value));
            continue;
        };
        let mut strings = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                toml::de::DeValue::String(s) => strings.push(Located::new(s.to_string(), item.span())),
                other => {
                    problems.error(
                        item.span(),
                        format!(
                            "`{}` in {of} must hold strings, found {}",
                            name.value,
                            super::reader::type_name(other)
                        ),
                    );
                }
            }
        }
        lists.push((name, Located::new(strings, value.span())));
    }
    lists
}
