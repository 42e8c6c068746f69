//! Scenario files: what the simulated clouds can supply, and how that changes
//! over simulated time ("p5.48xlarge sold out in us-east-1 for 20 minutes").
//!
//! Loaded in two stages, like plan files: [`RawScenario`] is exactly what the
//! TOML says (unknown fields refused), [`Scenario`] is checked and typed. The
//! scenario only describes; [`super::world::World`] turns it into pools.

use super::SimError;
use super::faults::{CredentialTrouble, ErrorFaults, RateLimit, cloud_of_call};
use super::lifecycle::{Lifecycle, RawLifecycle};
use super::paging::Paging;
use crate::model::Cloud;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Simulated start time when a scenario does not name one.
pub const DEFAULT_START: &str = "2026-01-01T00:00:00Z";

/// The scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    start: Option<DateTime<Utc>>,
    #[serde(default, rename = "offering")]
    offerings: Vec<RawOffering>,
    #[serde(default, rename = "quota")]
    quotas: Vec<RawQuota>,
    faults: Option<RawFaults>,
    #[serde(default, rename = "rate_limit")]
    rate_limits: Vec<RawRateLimit>,
    wire_latency: Option<String>,
    arm_page_size: Option<usize>,
    #[serde(default, rename = "image")]
    images: Vec<RawImage>,
    #[serde(default)]
    networks: ScenarioNetworks,
    #[serde(default)]
    lifecycle: RawLifecycle,
    #[serde(default)]
    paging: Paging,
    #[serde(default)]
    credentials: BTreeMap<Cloud, CredentialTrouble>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    cloud: Cloud,
    region: Option<String>,
    id: String,
    size_gb: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFaults {
    seed: u64,
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    per_call: BTreeMap<String, f64>,
    #[serde(default)]
    reset_rate: f64,
    #[serde(default)]
    reset_per_call: BTreeMap<String, f64>,
    latency: Option<String>,
    #[serde(default)]
    latency_per_call: BTreeMap<String, String>,
    #[serde(default)]
    slow_rate: f64,
    slow_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    cloud: Cloud,
    call: Option<String>,
    bucket: u32,
    refill_every: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    cloud: Cloud,
    region: String,
    metric: String,
    limit: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffering {
    cloud: Cloud,
    region: String,
    zone: Option<String>,
    instance_type: String,
    capacity: Option<u32>,
    #[serde(default)]
    timeline: Vec<RawCapacityStep>,
    #[serde(default)]
    restricted: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapacityStep {
    after: String,
    capacity: Option<u32>,
}

/// A checked scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The file it came from, for messages.
    pub path: PathBuf,
    pub start: DateTime<Utc>,
    pub offerings: Vec<ScenarioOffering>,
    pub quotas: Vec<ScenarioQuota>,
    /// Transient errors to inject (`[faults]`), see [`super::faults`].
    pub faults: Option<ErrorFaults>,
    /// Call-count token buckets (`[[rate_limit]]`), see [`super::faults`].
    pub rate_limits: Vec<RateLimit>,
    /// Real (wall-clock) time every cloud response is held back: round trips
    /// for benchmarks. Unlike `[faults] latency`, it does not move the
    /// simulated clock.
    pub wire_latency: Duration,
    /// VMs or scale sets per page of ARM's list operations (`nextLink`):
    /// small values make tests exercise paging.
    pub arm_page_size: usize,
    /// Images that exist (`[[image]]`); a cloud the scenario names no image
    /// of knows every image, as the default world does.
    pub images: Vec<ScenarioImage>,
    /// Which networks and resource groups exist (`[networks]`).
    pub networks: ScenarioNetworks,
    /// How long instances take to start and to go away (`[lifecycle]`).
    pub lifecycle: Lifecycle,
    /// Whether lists give short and empty pages (`[paging]`).
    pub paging: Paging,
    /// Clouds whose credentials every call refuses (`[credentials]`, e.g.
    /// `aws = "expired"`, `gcp = "forbidden"`).
    pub credentials: BTreeMap<Cloud, CredentialTrouble>,
    /// Content hash of the file, so that a stored world can tell whether it
    /// was created from this very scenario.
    pub content_hash: String,
}

/// A machine image that exists: an AMI in one EC2 region, a Compute Engine
/// image (global, `projects/P/global/images/NAME` or `.../images/family/F`),
/// or an Azure marketplace image `publisher:offer:sku:version` in one region
/// (`latest` stands for any version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioImage {
    pub cloud: Cloud,
    /// `None` for Compute Engine, whose images are global.
    pub region: Option<String>,
    pub id: String,
    /// Size of the image's boot disk in GB: a smaller boot disk is refused.
    #[serde(default = "default_image_gb")]
    pub size_gb: u32,
}

/// Boot disk size of an image the scenario gives no size for (and of every
/// image of the default world), as Compute Engine's public images have.
pub const DEFAULT_IMAGE_GB: u32 = 10;

fn default_image_gb() -> u32 {
    DEFAULT_IMAGE_GB
}

/// The networks and resource groups of the simulated accounts. Each list
/// that is absent means "all of them exist", as in the default world; a
/// list that is given names all that exist.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioNetworks {
    /// EC2 regions that have a default VPC (with a default subnet in each zone).
    pub aws_default_vpcs: Option<Vec<String>>,
    /// Compute Engine networks of every project, by name (`default`).
    pub gcp_networks: Option<Vec<String>>,
    /// Azure resource groups of every subscription, by name (case-insensitive).
    pub azure_resource_groups: Option<Vec<String>>,
    /// Azure subnets, as `resource-group/virtual-network/subnet` (case-insensitive).
    pub azure_subnets: Option<Vec<String>>,
    /// EC2 subnets besides the default ones, each in one zone and VPC.
    pub aws_subnets: Option<Vec<ScenarioSubnet>>,
    /// EC2 security groups, each in one region (and VPC, when given).
    pub aws_security_groups: Option<Vec<ScenarioSecurityGroup>>,
    /// EC2 key pairs, as `region/name` (key pairs are regional).
    pub aws_key_pairs: Option<Vec<String>>,
    /// IAM instance profiles of the account, by name.
    pub aws_instance_profiles: Option<Vec<String>>,
    /// Compute Engine subnetworks of every project, as `region/name`.
    pub gcp_subnetworks: Option<Vec<String>>,
    /// Compute Engine service accounts, by email.
    pub gcp_service_accounts: Option<Vec<String>>,
    /// Azure user-assigned managed identities, as `resource-group/name` (case-insensitive).
    pub azure_identities: Option<Vec<String>>,
}

/// An EC2 subnet that is not a default one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSubnet {
    pub id: String,
    pub zone: String,
    pub vpc: String,
}

/// An EC2 security group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSecurityGroup {
    pub id: String,
    pub region: String,
    /// Its VPC; `None` means the region's default VPC.
    pub vpc: Option<String>,
}

/// Supply of one instance type in one zone, or in every zone of a region
/// that offers it (`zone: None`). Capacity applies to each such zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioOffering {
    pub cloud: Cloud,
    pub region: String,
    pub zone: Option<String>,
    pub instance_type: String,
    /// Instances that can be launched at the start; `None` means unlimited.
    pub capacity: Option<u32>,
    /// Later changes of the available pool, in the order they happen.
    pub timeline: Vec<CapacityStep>,
    /// Azure: the subscription may not use the size here; resource SKUs
    /// list it with a `NotAvailableForSubscription` location restriction.
    pub restricted: bool,
}

/// A regional quota, e.g. Compute Engine's `NVIDIA_H100_GPUS` (in GPUs) in
/// us-central1, or Azure's `standardNDSH100v5Family` (in vCPUs) in eastus:
/// launches that would take the region's usage above `limit` are refused
/// with the cloud's quota error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioQuota {
    pub cloud: Cloud,
    pub region: String,
    pub metric: String,
    pub limit: u32,
}

/// "After this much simulated time, the available pool becomes `capacity`."
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityStep {
    pub after: Duration,
    /// `None` means unlimited.
    pub capacity: Option<u32>,
}

/// Longest wire latency: a benchmark knob, not a way to hang clients.
pub const MAX_WIRE_LATENCY: Duration = Duration::from_secs(10);

/// The hash a world records when it was created without a scenario.
pub const NO_SCENARIO_HASH: &str = "none";

impl Scenario {
    /// Read and check a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SimError::ReadScenario { path: path.to_path_buf(), source })?;
        Scenario::parse(&text, path)
    }

    /// Check scenario text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, SimError> {
        let invalid = |message: String| SimError::InvalidScenario { path: path.to_path_buf(), message };
        let raw: RawScenario = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let start = match raw.start {
            Some(start) => start,
            None => default_start(),
        };
        if !(super::world::earliest_time()..=super::world::latest_time()).contains(&start) {
            return Err(invalid(format!(
                "start = {} is outside the years 1970 to 9999 the simulated clock keeps to",
                start.to_rfc3339()
            )));
        }
        let mut offerings = Vec::with_capacity(raw.offerings.len());
        for (index, offering) in raw.offerings.into_iter().enumerate() {
            let at = format!("offering #{} ({} {})", index + 1, offering.region, offering.instance_type);
            if offering.cloud == Cloud::Azure && offering.zone.is_some() {
                return Err(invalid(format!("{at}: Azure places by region; remove `zone`")));
            }
            if offering.restricted && offering.cloud != Cloud::Azure {
                return Err(invalid(format!(
                    "{at}: `restricted` is Azure's subscription restriction of a size; remove it"
                )));
            }
            if let Some(zone) = &offering.zone
                && !zone.starts_with(offering.region.as_str())
            {
                return Err(invalid(format!("{at}: zone {zone} is not in region {}", offering.region)));
            }
            let mut timeline = Vec::with_capacity(offering.timeline.len());
            for step in offering.timeline {
                let after = humantime::parse_duration(&step.after).map_err(|e| {
                    invalid(format!("{at}: timeline `after = \"{}\"` is not a duration like \"20m\": {e}", step.after))
                })?;
                timeline.push(CapacityStep { after, capacity: step.capacity });
            }
            if timeline.windows(2).any(|pair| pair[0].after > pair[1].after) {
                return Err(invalid(format!("{at}: timeline steps must be in increasing `after` order")));
            }
            offerings.push(ScenarioOffering {
                cloud: offering.cloud,
                region: offering.region,
                zone: offering.zone,
                instance_type: offering.instance_type,
                capacity: offering.capacity,
                timeline,
                restricted: offering.restricted,
            });
        }
        let mut quotas = Vec::with_capacity(raw.quotas.len());
        for (index, quota) in raw.quotas.into_iter().enumerate() {
            if quota.cloud == Cloud::Aws && crate::catalog::ec2_vcpu_quota_by_code(&quota.metric).is_none() {
                let codes: Vec<String> =
                    crate::catalog::EC2_VCPU_QUOTAS.iter().map(|q| format!("{} ({})", q.code, q.name)).collect();
                return Err(invalid(format!(
                    "quota #{} ({} {}): EC2 quotas are Service Quotas codes of vCPU quotas: {}",
                    index + 1,
                    quota.region,
                    quota.metric,
                    codes.join(", ")
                )));
            }
            quotas.push(ScenarioQuota {
                cloud: quota.cloud,
                region: quota.region,
                metric: quota.metric,
                limit: quota.limit,
            });
        }
        let faults = raw.faults.map(|faults| check_faults(faults).map_err(invalid)).transpose()?;
        let mut rate_limits = Vec::with_capacity(raw.rate_limits.len());
        for (index, limit) in raw.rate_limits.into_iter().enumerate() {
            let limit = check_rate_limit(limit).map_err(|m| invalid(format!("rate_limit #{}: {m}", index + 1)))?;
            rate_limits.push(limit);
        }
        let wire_latency = raw
            .wire_latency
            .map(|text| check_duration("wire_latency", &text).map_err(&invalid))
            .transpose()?
            .unwrap_or(Duration::ZERO);
        if wire_latency > MAX_WIRE_LATENCY {
            return Err(invalid(format!("wire_latency is at most {}", humantime::format_duration(MAX_WIRE_LATENCY))));
        }
        let arm_page_size = raw.arm_page_size.unwrap_or(super::arm::PAGE_SIZE);
        if !(1..=super::arm::PAGE_SIZE).contains(&arm_page_size) {
            return Err(invalid(format!(
                "arm_page_size = {arm_page_size} is not between 1 and {}",
                super::arm::PAGE_SIZE
            )));
        }
        let mut images = Vec::with_capacity(raw.images.len());
        for (index, image) in raw.images.into_iter().enumerate() {
            let at = format!("image #{} ({})", index + 1, image.id);
            match (image.cloud, &image.region) {
                (Cloud::Gcp, Some(_)) => {
                    return Err(invalid(format!("{at}: Compute Engine images are global; remove `region`")));
                }
                (Cloud::Aws | Cloud::Azure, None) => {
                    return Err(invalid(format!("{at}: {} images are regional; add `region`", image.cloud)));
                }
                _ => {}
            }
            let size_gb = image.size_gb.unwrap_or(DEFAULT_IMAGE_GB);
            if !(1..=65_536).contains(&size_gb) {
                return Err(invalid(format!("{at}: size_gb = {size_gb} is not between 1 and 65536")));
            }
            images.push(ScenarioImage { cloud: image.cloud, region: image.region, id: image.id, size_gb });
        }
        Ok(Scenario {
            path: path.to_path_buf(),
            start,
            offerings,
            quotas,
            faults,
            rate_limits,
            wire_latency,
            arm_page_size,
            images,
            networks: raw.networks,
            lifecycle: raw.lifecycle.check().map_err(invalid)?,
            paging: raw.paging,
            credentials: raw.credentials,
            content_hash: content_hash(text.as_bytes()),
        })
    }
}

/// A share of calls must be a probability.
fn check_share(what: &str, share: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("{what} = {share} is not a share of calls between 0 and 1"))
    }
}

/// Call kinds are spelled as `/_sim/counters` counts them; a typo would
/// silently inject nothing, so unknown names are refused.
fn check_call(call: &str) -> Result<Cloud, String> {
    cloud_of_call(call).ok_or_else(|| {
        format!(
            "`{call}` is not a call the simulator serves (use the names of /_sim/counters, \
             e.g. RunInstances, instances.bulkInsert, VirtualMachineScaleSets_CreateOrUpdate)"
        )
    })
}

/// A simulated duration such as "2s" or "500ms".
fn check_duration(what: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{what} = \"{text}\" is not a duration like \"2s\": {e}"))
}

fn check_faults(raw: RawFaults) -> Result<ErrorFaults, String> {
    check_share("faults: error_rate", raw.error_rate)?;
    check_share("faults: reset_rate", raw.reset_rate)?;
    check_share("faults: slow_rate", raw.slow_rate)?;
    for (table, shares) in [("per_call", &raw.per_call), ("reset_per_call", &raw.reset_per_call)] {
        for (call, share) in shares {
            check_call(call).map_err(|m| format!("faults.{table}: {m}"))?;
            check_share(&format!("faults.{table}: {call}"), *share)?;
        }
    }
    // Errors, resets and slow calls are bands of one roll: their shares, at
    // the highest any call can have, must fit in all calls.
    let highest = |default: f64, shares: &BTreeMap<String, f64>| shares.values().copied().fold(default, f64::max);
    let sum = highest(raw.error_rate, &raw.per_call) + highest(raw.reset_rate, &raw.reset_per_call) + raw.slow_rate;
    if sum > 1.0 {
        return Err(format!("faults: error, reset and slow shares add up to {sum}, more than all calls (1)"));
    }
    let latency = raw.latency.as_deref().map(|l| check_duration("faults: latency", l)).transpose()?;
    let mut latency_per_call = BTreeMap::new();
    for (call, text) in &raw.latency_per_call {
        check_call(call).map_err(|m| format!("faults.latency_per_call: {m}"))?;
        latency_per_call.insert(call.clone(), check_duration(&format!("faults.latency_per_call: {call}"), text)?);
    }
    let slow_by = match raw.slow_by.as_deref() {
        Some(text) => check_duration("faults: slow_by", text)?,
        None if raw.slow_rate > 0.0 => return Err("faults: slow_rate needs `slow_by`, e.g. \"30s\"".into()),
        None => Duration::ZERO,
    };
    Ok(ErrorFaults {
        seed: raw.seed,
        error_rate: raw.error_rate,
        per_call: raw.per_call,
        reset_rate: raw.reset_rate,
        reset_per_call: raw.reset_per_call,
        latency: latency.unwrap_or_default(),
        latency_per_call,
        slow_rate: raw.slow_rate,
        slow_by,
    })
}

fn check_rate_limit(raw: RawRateLimit) -> Result<RateLimit, String> {
    if let Some(call) = &raw.call
        && check_call(call)? != raw.cloud
    {
        return Err(format!("`{call}` is not a call of cloud \"{}\"", raw.cloud.as_str()));
    }
    if raw.bucket == 0 || raw.refill_every == 0 {
        return Err(
            "`bucket` and `refill_every` must be at least 1 (a bucket that never admits a call locks the client out)"
                .into(),
        );
    }
    Ok(RateLimit { cloud: raw.cloud, call: raw.call, bucket: raw.bucket, refill_every: raw.refill_every })
}

/// The start time of a world created without a scenario.
pub fn default_start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(DEFAULT_START).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms (unlike
/// `DefaultHasher`), which matters because the hash is stored in world files.
fn content_hash(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, SimError> {
        Scenario::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn sim_scenario_parses_offerings_and_timeline() {
        let scenario = parse(
            r#"
            start = "2026-03-01T12:00:00Z"
            [[offering]]
            cloud = "aws"
            region = "us-east-1"
            instance_type = "p5.48xlarge"
            capacity = 0
            [[offering.timeline]]
            after = "20m"
            capacity = 64
            "#,
        )
        .unwrap();
        assert_eq!(scenario.start.to_rfc3339(), "2026-03-01T12:00:00+00:00");
        assert_eq!(scenario.offerings[0].capacity, Some(0));
        assert_eq!(
            scenario.offerings[0].timeline,
            vec![CapacityStep { after: Duration::from_secs(1200), capacity: Some(64) }]
        );
    }

    #[test]
    fn sim_scenario_defaults_start_and_hashes_content() {
        let a = parse("").unwrap();
        let b = parse("# a comment\n").unwrap();
        assert_eq!(a.start, default_start());
        assert_ne!(a.content_hash, b.content_hash);
        assert_eq!(a.content_hash, parse("").unwrap().content_hash);
    }

    #[test]
    fn sim_scenario_errors_name_the_file_and_the_problem() {
        let unknown_field =
            parse("[[offering]]\ncloud = \"aws\"\nregion = \"r\"\ninstance_type = \"t\"\ncapcity = 1\n");
        let message = unknown_field.unwrap_err().to_string();
        assert!(message.contains("test.toml") && message.contains("capcity"), "{message}");

        let azure_zone =
            parse("[[offering]]\ncloud = \"azure\"\nregion = \"eastus\"\nzone = \"eastus-1\"\ninstance_type = \"t\"\n");
        assert!(azure_zone.unwrap_err().to_string().contains("Azure places by region"));

        let aws_quota = parse("[[quota]]\ncloud = \"aws\"\nregion = \"us-east-1\"\nmetric = \"m\"\nlimit = 1\n");
        assert!(aws_quota.unwrap_err().to_string().contains("L-417A185B"));
        let regional_gce_image = parse("[[image]]\ncloud = \"gcp\"\nregion = \"us-central1\"\nid = \"i\"\n");
        assert!(regional_gce_image.unwrap_err().to_string().contains("global"));
        let global_ami = parse("[[image]]\ncloud = \"aws\"\nid = \"ami-1\"\n");
        assert!(global_ami.unwrap_err().to_string().contains("add `region`"));
        let unknown_network = parse("[networks]\naws_default_vpc = []\n");
        assert!(unknown_network.unwrap_err().to_string().contains("aws_default_vpc"));

        let bad_duration = parse(
            "[[offering]]\ncloud = \"aws\"\nregion = \"us-east-1\"\ninstance_type = \"t\"\n[[offering.timeline]]\nafter = \"soon\"\ncapacity = 1\n",
        );
        assert!(bad_duration.unwrap_err().to_string().contains("soon"));

        let foreign_zone = parse(
            "[[offering]]\ncloud = \"aws\"\nregion = \"us-east-1\"\nzone = \"us-west-2a\"\ninstance_type = \"t\"\n",
        );
        assert!(foreign_zone.unwrap_err().to_string().contains("not in region"));
    }

    #[test]
    fn sim_scenario_parses_faults_and_rate_limits() {
        let scenario = parse(
            r#"
            [faults]
            seed = 42
            error_rate = 0.1
            reset_rate = 0.05
            latency = "2s"
            slow_rate = 0.01
            slow_by = "30s"
            [faults.per_call]
            RunInstances = 0.2
            [faults.latency_per_call]
            "instances.bulkInsert" = "500ms"
            [faults.reset_per_call]
            Operations_Get = 0.5
            [[rate_limit]]
            cloud = "aws"
            call = "RunInstances"
            bucket = 5
            refill_every = 2
            [[rate_limit]]
            cloud = "azure"
            bucket = 10
            refill_every = 3
            "#,
        )
        .unwrap();
        let faults = scenario.faults.unwrap();
        assert_eq!((faults.seed, faults.error_rate, faults.per_call["RunInstances"]), (42, 0.1, 0.2));
        assert_eq!((faults.reset_rate, faults.slow_rate), (0.05, 0.01));
        assert_eq!((faults.latency, faults.slow_by), (Duration::from_secs(2), Duration::from_secs(30)));
        assert_eq!(faults.latency_per_call["instances.bulkInsert"], Duration::from_millis(500));
        assert_eq!(faults.reset_per_call["Operations_Get"], 0.5);
        assert_eq!(
            scenario.rate_limits[0],
            RateLimit { cloud: Cloud::Aws, call: Some("RunInstances".into()), bucket: 5, refill_every: 2 }
        );
        assert_eq!(scenario.rate_limits[1].call, None);
        assert_eq!(parse("").unwrap().faults, None);
    }

    #[test]
    fn sim_scenario_fault_errors_say_what_is_wrong() {
        let error = |text: &str| parse(text).unwrap_err().to_string();
        assert!(error("[faults]\nseed = 1\nerror_rate = 1.5\n").contains("between 0 and 1"));
        assert!(error("[faults]\nerror_rate = 0.1\n").contains("seed"));
        assert!(error("[faults]\nseed = 1\nlatency = 3\n").contains("latency"));
        assert!(error("[faults]\nseed = 1\nlatency = \"soon\"\n").contains("not a duration"));
        assert!(error("[faults]\nseed = 1\nslow_rate = 0.1\n").contains("slow_by"));
        assert!(error("[faults]\nseed = 1\nerror_rate = 0.6\nreset_rate = 0.5\n").contains("more than all calls"));
        let per_call =
            "[faults]\nseed = 1\n[faults.per_call]\nRunInstances = 0.6\n[faults.reset_per_call]\nCreateTags = 0.5\n";
        assert!(error(per_call).contains("more than all calls"));
        assert!(error("[faults]\nseed = 1\n[faults.latency_per_call]\nRunInstance = \"1s\"\n").contains("RunInstance"));
        assert!(error("[faults]\nseed = 1\n[faults.per_call]\nRunInstance = 0.1\n").contains("RunInstance"));
        let wrong_cloud =
            error("[[rate_limit]]\ncloud = \"gcp\"\ncall = \"RunInstances\"\nbucket = 1\nrefill_every = 1\n");
        assert!(wrong_cloud.contains("rate_limit #1") && wrong_cloud.contains("not a call of cloud"), "{wrong_cloud}");
        assert!(error("[[rate_limit]]\ncloud = \"aws\"\nbucket = 0\nrefill_every = 1\n").contains("at least 1"));
    }
}
