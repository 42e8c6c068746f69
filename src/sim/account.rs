//! What a simulated account holds besides capacity, so that the simulator
//! refuses what a fresh account refuses: which machine images exist where,
//! which networks and resource groups exist, and EC2's running On-Demand
//! vCPU quotas (Service Quotas codes, counted over a region's live instances).
//!
//! The default world has every image, network and resource group, and no EC2
//! quota (Service Quotas then has no applied value, and launches are not
//! limited); a scenario narrows each with `[[image]]`, `[networks]` and
//! `[[quota]]` entries of cloud "aws".

use super::scenario::{DEFAULT_IMAGE_GB, Scenario, ScenarioImage, ScenarioNetworks, ScenarioQuota, ScenarioSubnet};
use super::world::{InstanceState, LaunchRequest, World, WorldError};
use crate::catalog::{Catalog, Ec2VcpuQuota, ec2_vcpu_quota};
use crate::model::Cloud;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version an Azure image list reports for an image the scenario names
/// with version `latest` (or that the default world has).
pub const AZURE_IMAGE_VERSION: &str = "1.0.0";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    images: Vec<ScenarioImage>,
    networks: ScenarioNetworks,
    /// EC2 vCPU quotas (`metric` is the Service Quotas code, `limit` in vCPUs).
    ec2_quotas: Vec<ScenarioQuota>,
    /// vCPUs of each EC2 instance type, from the catalog.
    ec2_vcpus: BTreeMap<String, u32>,
}

/// An Azure marketplace image reference, `publisher:offer:sku:version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureImage<'a> {
    pub publisher: &'a str,
    pub offer: &'a str,
    pub sku: &'a str,
    pub version: &'a str,
}

impl<'a> AzureImage<'a> {
    pub fn parse(urn: &'a str) -> Option<AzureImage<'a>> {
        match urn.split(':').collect::<Vec<_>>().as_slice() {
            [publisher, offer, sku, version] => Some(AzureImage { publisher, offer, sku, version }),
            _ => None,
        }
    }

    /// The version a scenario's image has: `latest` stands for [`AZURE_IMAGE_VERSION`].
    fn concrete_version(&self) -> &'a str {
        if self.version.eq_ignore_ascii_case("latest") { AZURE_IMAGE_VERSION } else { self.version }
    }

    /// Whether `self`, an image that exists, is the `wanted` one (whose
    /// version `latest` asks for any).
    fn is(&self, wanted: &AzureImage<'_>) -> bool {
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        same(self.publisher, wanted.publisher)
            && same(self.offer, wanted.offer)
            && same(self.sku, wanted.sku)
            && (wanted.version.eq_ignore_ascii_case("latest") || same(self.concrete_version(), wanted.version))
    }
}

/// An EC2 subnet: where instances launched into it run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Subnet {
    pub id: String,
    pub zone: String,
    pub vpc: String,
}

/// The id of a zone's default subnet.
pub fn default_subnet_id(zone: &str) -> String {
    fnv_id("subnet", zone)
}

/// The id of a region's default VPC.
pub fn default_vpc_id(region: &str) -> String {
    fnv_id("vpc", region)
}

/// A stable EC2-shaped id for a named resource.
fn fnv_id(prefix: &str, name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{prefix}-0{hash:016x}")
}

/// `projects/P/global/images/...` of a Compute Engine image, whatever URL prefix it was sent with.
fn gce_image_path(image: &str) -> &str {
    image.find("projects/").map_or(image, |start| &image[start..])
}

fn contains_ignoring_case(list: &[String], name: &str) -> bool {
    list.iter().any(|item| item.eq_ignore_ascii_case(name))
}

impl Account {
    pub fn new(scenario: Option<&Scenario>, catalog: &Catalog) -> Account {
        Account {
            images: scenario.map(|s| s.images.clone()).unwrap_or_default(),
            networks: scenario.map(|s| s.networks.clone()).unwrap_or_default(),
            ec2_quotas: scenario
                .map(|s| s.quotas.iter().filter(|q| q.cloud == Cloud::Aws).cloned().collect())
                .unwrap_or_default(),
            ec2_vcpus: catalog
                .instance_types
                .iter()
                .filter(|t| t.cloud == Cloud::Aws)
                .map(|t| (t.name.clone(), t.vcpus))
                .collect(),
        }
    }

    /// The images the scenario names for a cloud; `None` when it names none,
    /// and so every image exists.
    fn images_of(&self, cloud: Cloud) -> Option<impl Iterator<Item = &ScenarioImage>> {
        let mut named = self.images.iter().filter(move |i| i.cloud == cloud).peekable();
        named.peek().is_some().then_some(named)
    }

    /// Whether an EC2 AMI exists in a region.
    pub fn has_ami(&self, region: &str, id: &str) -> bool {
        self.images_of(Cloud::Aws)
            .is_none_or(|mut named| named.any(|i| i.region.as_deref() == Some(region) && i.id == id))
    }

    /// Whether a Compute Engine image (`projects/P/global/images/NAME`) or
    /// image family (`projects/P/global/images/family/F`) exists.
    pub fn has_gce_image(&self, path: &str) -> bool {
        let path = gce_image_path(path);
        self.images_of(Cloud::Gcp).is_none_or(|mut named| named.any(|i| gce_image_path(&i.id) == path))
    }

    /// The versions of an Azure marketplace image in a location (empty when
    /// it has none there).
    pub fn azure_image_versions(&self, location: &str, wanted: &AzureImage<'_>) -> Vec<String> {
        let Some(named) = self.images_of(Cloud::Azure) else {
            return vec![AZURE_IMAGE_VERSION.to_string()];
        };
        let mut versions: Vec<String> = named
            .filter(|i| i.region.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(location)))
            .filter_map(|i| AzureImage::parse(&i.id))
            .filter(|image| image.is(wanted))
            .map(|image| image.concrete_version().to_string())
            .collect();
        versions.sort();
        versions.dedup();
        versions
    }

    /// The boot disk size of the image that `matches`, in GB; the default
    /// world's images (and an image the scenario does not name) have
    /// [`DEFAULT_IMAGE_GB`].
    fn image_gb(&self, cloud: Cloud, matches: impl Fn(&ScenarioImage) -> bool) -> u32 {
        self.images.iter().filter(|i| i.cloud == cloud).find(|i| matches(i)).map_or(DEFAULT_IMAGE_GB, |i| i.size_gb)
    }

    /// The size of an AMI's root snapshot, in GB.
    pub fn ec2_image_gb(&self, region: &str, id: &str) -> u32 {
        self.image_gb(Cloud::Aws, |i| i.region.as_deref() == Some(region) && i.id == id)
    }

    /// The size of a Compute Engine image (or the image of a family), in GB.
    pub fn gce_image_gb(&self, path: &str) -> u32 {
        let path = gce_image_path(path);
        self.image_gb(Cloud::Gcp, |i| gce_image_path(&i.id) == path)
    }

    /// The OS disk size of an Azure marketplace image in a location, in GB.
    pub fn azure_image_gb(&self, location: &str, wanted: &AzureImage<'_>) -> u32 {
        self.image_gb(Cloud::Azure, |i| {
            i.region.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(location))
                && AzureImage::parse(&i.id).is_some_and(|image| image.is(wanted))
        })
    }

    /// An EC2 subnet of a region, with its zone and VPC: the default subnet
    /// of a zone where the region has a default VPC, or one the scenario
    /// names (any id is one when it names none, in the zone asked for).
    pub fn ec2_subnet(&self, region: &str, zones: &[String], id: &str, zone: Option<&str>) -> Option<Ec2Subnet> {
        if self.has_default_vpc(region)
            && let Some(zone) = zones.iter().find(|z| default_subnet_id(z) == id)
        {
            return Some(Ec2Subnet { id: id.to_string(), zone: zone.clone(), vpc: default_vpc_id(region) });
        }
        match &self.networks.aws_subnets {
            None => {
                let zone = zone.map(str::to_string).or_else(|| zones.first().cloned())?;
                Some(Ec2Subnet { id: id.to_string(), zone, vpc: format!("vpc-of-{id}") })
            }
            Some(named) => named.iter().find(|s| s.id == id && zones.contains(&s.zone)).map(|s| Ec2Subnet {
                id: s.id.clone(),
                zone: s.zone.clone(),
                vpc: s.vpc.clone(),
            }),
        }
    }

    /// The subnets the scenario names in a region's zones.
    pub fn ec2_named_subnets<'a>(&'a self, zones: &'a [String]) -> impl Iterator<Item = &'a ScenarioSubnet> + 'a {
        self.networks.aws_subnets.iter().flatten().filter(move |s| zones.contains(&s.zone))
    }

    /// The VPC of an EC2 security group in a region, `Some(None)` when any
    /// VPC will do (the default world); `None` when it does not exist.
    pub fn ec2_security_group_vpc(&self, region: &str, id: &str) -> Option<Option<String>> {
        match &self.networks.aws_security_groups {
            None => Some(None),
            Some(groups) => groups
                .iter()
                .find(|g| g.region == region && g.id == id)
                .map(|g| Some(g.vpc.clone().unwrap_or_else(|| default_vpc_id(region)))),
        }
    }

    pub fn has_ec2_key_pair(&self, region: &str, name: &str) -> bool {
        let key = format!("{region}/{name}");
        self.networks.aws_key_pairs.as_ref().is_none_or(|pairs| pairs.contains(&key))
    }

    /// Whether an IAM instance profile exists, by name (an ARN's last segment).
    pub fn has_instance_profile(&self, name: &str) -> bool {
        self.networks.aws_instance_profiles.as_ref().is_none_or(|names| names.iter().any(|n| n == name))
    }

    /// Whether a Compute Engine subnetwork exists in a region.
    pub fn has_gce_subnetwork(&self, region: &str, name: &str) -> bool {
        let key = format!("{region}/{name}");
        self.networks.gcp_subnetworks.as_ref().is_none_or(|names| names.contains(&key))
    }

    pub fn has_service_account(&self, email: &str) -> bool {
        self.networks.gcp_service_accounts.as_ref().is_none_or(|emails| emails.iter().any(|e| e == email))
    }

    /// Whether an Azure user-assigned managed identity exists: its resource group too.
    pub fn has_identity(&self, resource_group: &str, name: &str) -> bool {
        let key = format!("{resource_group}/{name}");
        self.has_resource_group(resource_group)
            && self.networks.azure_identities.as_ref().is_none_or(|names| contains_ignoring_case(names, &key))
    }

    pub fn has_default_vpc(&self, region: &str) -> bool {
        self.networks.aws_default_vpcs.as_ref().is_none_or(|regions| regions.iter().any(|r| r == region))
    }

    pub fn has_gce_network(&self, name: &str) -> bool {
        self.networks.gcp_networks.as_ref().is_none_or(|names| names.iter().any(|n| n == name))
    }

    pub fn has_resource_group(&self, name: &str) -> bool {
        self.networks.azure_resource_groups.as_ref().is_none_or(|names| contains_ignoring_case(names, name))
    }

    /// Whether a subnet exists: its resource group too.
    pub fn has_subnet(&self, resource_group: &str, network: &str, subnet: &str) -> bool {
        let key = format!("{resource_group}/{network}/{subnet}");
        self.has_resource_group(resource_group)
            && self.networks.azure_subnets.as_ref().is_none_or(|names| contains_ignoring_case(names, &key))
    }

    /// The scenario's limit of an EC2 vCPU quota in a region, in vCPUs;
    /// `None` when it sets none (no applied value, no limit).
    pub fn ec2_vcpu_limit(&self, region: &str, code: &str) -> Option<u32> {
        self.ec2_quotas.iter().find(|q| q.region == region && q.metric == code).map(|q| q.limit)
    }

    /// The EC2 vCPU quotas the scenario sets in a region.
    pub fn ec2_quotas_in<'a>(&'a self, region: &'a str) -> impl Iterator<Item = &'a ScenarioQuota> + 'a {
        self.ec2_quotas.iter().filter(move |q| q.region == region)
    }

    pub fn ec2_vcpus(&self, instance_type: &str) -> Option<u32> {
        self.ec2_vcpus.get(instance_type).copied()
    }
}

impl World {
    /// vCPUs the running EC2 instances of a quota's families use in a region.
    pub fn ec2_vcpus_in_use(&self, region: &str, quota: &Ec2VcpuQuota) -> u32 {
        self.instances()
            .filter(|i| i.region == region && i.state == InstanceState::Running)
            .filter(|i| ec2_vcpu_quota(&i.instance_type).is_some_and(|q| q.code == quota.code))
            .map(|i| self.account.ec2_vcpus(&i.instance_type).unwrap_or(0))
            .fold(0u32, u32::saturating_add)
    }

    /// What a fresh account checks before a launch: the AMI exists in the
    /// region; the subnet asked for exists (in the zone asked for), or the
    /// region has a default VPC to launch into; the security groups exist
    /// in that VPC; the key pair and the instance profile exist; the root
    /// volume is no smaller than the AMI's snapshot; and the vCPU quota of
    /// the type's family has room. Returns how many instances the quota
    /// admits (at least `min_count`), and the zone and attachments.
    pub(super) fn admit_ec2_launch(&self, request: &LaunchRequest) -> Result<(u32, AdmittedLaunch), WorldError> {
        if !self.account.has_ami(&request.region, &request.image_id) {
            return Err(WorldError::ImageNotFound { id: request.image_id.clone() });
        }
        let admitted = self.admit_ec2_attachments(request)?;
        let max_count = self.admit_ec2_vcpus(request)?;
        Ok((max_count, admitted))
    }

    fn admit_ec2_attachments(&self, request: &LaunchRequest) -> Result<AdmittedLaunch, WorldError> {
        let attach = &request.attach;
        let region = request.region.as_str();
        let refused = |code: &'static str, message: String| WorldError::Refused { code, message };
        let zones = self.known_zones(region).unwrap_or_default();
        let (zone, vpc) = match &attach.subnet_id {
            Some(id) => {
                let subnet = self.account.ec2_subnet(region, zones, id, request.zone.as_deref()).ok_or_else(|| {
                    refused("InvalidSubnetID.NotFound", format!("The subnet ID '{id}' does not exist"))
                })?;
                if let Some(asked) = request.zone.as_deref().filter(|z| *z != subnet.zone) {
                    return Err(refused(
                        "InvalidParameterValue",
                        format!(
                            "Value ({asked}) for parameter availabilityZone is invalid. Subnet '{id}' is in the availability zone {}",
                            subnet.zone
                        ),
                    ));
                }
                (Some(subnet.zone), subnet.vpc)
            }
            None if self.account.has_default_vpc(region) => (None, default_vpc_id(region)),
            None => return Err(WorldError::NoDefaultVpc { region: region.to_string() }),
        };
        for group in &attach.security_group_ids {
            match self.account.ec2_security_group_vpc(region, group) {
                None => {
                    return Err(refused(
                        "InvalidGroup.NotFound",
                        format!("The security group '{group}' does not exist"),
                    ));
                }
                Some(Some(group_vpc)) if group_vpc != vpc => {
                    return Err(refused(
                        "InvalidParameter",
                        format!(
                            "Security group {group} and subnet {} belong to different networks.",
                            attach.subnet_id.as_deref().unwrap_or("(default)")
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(name) = &attach.key_name
            && !self.account.has_ec2_key_pair(region, name)
        {
            return Err(refused("InvalidKeyPair.NotFound", format!("The key pair '{name}' does not exist")));
        }
        if let Some(name) = &attach.instance_profile_name
            && !self.account.has_instance_profile(name)
        {
            return Err(refused(
                "InvalidParameterValue",
                format!(
                    "Value ({name}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"
                ),
            ));
        }
        if let Some(arn) = &attach.instance_profile_arn
            && !self.account.has_instance_profile(arn.rsplit('/').next().unwrap_or(arn))
        {
            return Err(refused(
                "InvalidParameterValue",
                format!(
                    "Value ({arn}) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN"
                ),
            ));
        }
        let image_gb = self.account.ec2_image_gb(region, &request.image_id);
        for mapping in attach.block_devices.iter().filter(|m| m.device_name == EC2_ROOT_DEVICE) {
            if let Some(size) = mapping.volume_size_gb.filter(|size| *size < image_gb) {
                return Err(refused(
                    "InvalidBlockDeviceMapping",
                    format!(
                        "Volume of size {size}GB is smaller than snapshot '{}', expect size >= {image_gb}GB",
                        snapshot_of(&request.image_id)
                    ),
                ));
            }
        }
        Ok(AdmittedLaunch { zone, attachments: attach.clone() })
    }

    /// How many instances the vCPU quota of the type's family admits.
    fn admit_ec2_vcpus(&self, request: &LaunchRequest) -> Result<u32, WorldError> {
        let quota = ec2_vcpu_quota(&request.instance_type);
        let limit = quota.and_then(|q| self.account.ec2_vcpu_limit(&request.region, q.code).map(|limit| (q, limit)));
        let (Some((quota, limit)), Some(vcpus)) = (limit, self.account.ec2_vcpus(&request.instance_type)) else {
            return Ok(request.max_count);
        };
        let free = limit.saturating_sub(self.ec2_vcpus_in_use(&request.region, quota));
        let room = free.checked_div(vcpus).unwrap_or(u32::MAX);
        if room < request.min_count {
            return Err(WorldError::VcpuLimitExceeded { limit });
        }
        Ok(room.min(request.max_count))
    }
}

/// The root device of every AMI the simulator has, as `DescribeImages` reports it.
pub const EC2_ROOT_DEVICE: &str = "/dev/sda1";

/// The snapshot behind an AMI's root device.
pub fn snapshot_of(image_id: &str) -> String {
    fnv_id("snap", image_id)
}

/// What an EC2 launch names besides its image and type, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ec2Attachments {
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub key_name: Option<String>,
    pub instance_profile_name: Option<String>,
    pub instance_profile_arn: Option<String>,
    pub block_devices: Vec<Ec2BlockDevice>,
}

impl Ec2Attachments {
    pub fn is_empty(&self) -> bool {
        *self == Ec2Attachments::default()
    }
}

/// One `BlockDeviceMapping` entry of a launch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ec2BlockDevice {
    pub device_name: String,
    pub volume_size_gb: Option<u32>,
}

/// A launch the account admits: the zone its subnet decides, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmittedLaunch {
    pub zone: Option<String>,
    pub attachments: Ec2Attachments,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn world(scenario: &str) -> World {
        let scenario = Scenario::parse(scenario, Path::new("t.toml")).unwrap();
        World::new(Some(&scenario), &Catalog::builtin()).unwrap()
    }

    fn launch(image: &str, region: &str, min: u32, max: u32) -> LaunchRequest {
        LaunchRequest {
            region: region.into(),
            image_id: image.into(),
            instance_type: "p5.48xlarge".into(),
            min_count: min,
            max_count: max,
            client_token: None,
            zone: None,
            tags: Default::default(),
            user_data: None,
            attach: Default::default(),
        }
    }

    const FRESH: &str = r#"
        [[quota]]
        cloud = "aws"
        region = "us-east-1"
        metric = "L-417A185B"
        limit = 400
        [[image]]
        cloud = "aws"
        region = "us-east-1"
        id = "ami-0123456789abcdef0"
        [[image]]
        cloud = "azure"
        region = "eastus"
        id = "Canonical:ubuntu:22_04-lts-gen2:latest"
        [networks]
        aws_default_vpcs = ["us-east-1"]
        gcp_networks = ["default"]
        azure_resource_groups = ["ML"]
        azure_subnets = ["ml/vnet/default"]
        "#;

    #[test]
    fn sim_account_launches_only_named_images_into_default_vpcs_within_the_vcpu_quota() {
        let mut world = world(FRESH);
        let ami = "ami-0123456789abcdef0";
        assert_eq!(
            world.launch(launch("ami-00000000000000000", "us-east-1", 1, 1)).unwrap_err(),
            WorldError::ImageNotFound { id: "ami-00000000000000000".into() }
        );
        // AMIs are regional: us-west-2 has none of the named ones.
        assert!(matches!(world.launch(launch(ami, "us-west-2", 1, 1)), Err(WorldError::ImageNotFound { .. })));
        // 400 vCPUs hold two p5.48xlarge (192 each): MaxCount 5 gets 2.
        assert_eq!(world.launch(launch(ami, "us-east-1", 1, 5)).unwrap().instances.len(), 2);
        assert_eq!(
            world.launch(launch(ami, "us-east-1", 1, 1)).unwrap_err(),
            WorldError::VcpuLimitExceeded { limit: 400 }
        );
        let p = crate::catalog::ec2_vcpu_quota_by_code("L-417A185B").unwrap();
        assert_eq!(world.ec2_vcpus_in_use("us-east-1", p), 384);
        let ids: Vec<String> = world.instances().map(|i| i.id.clone()).collect();
        world.terminate("us-east-1", &ids).unwrap();
        assert_eq!(world.ec2_vcpus_in_use("us-east-1", p), 0, "terminated instances free their vCPUs");
    }

    #[test]
    fn sim_account_without_a_default_vpc_refuses_launches() {
        let mut world = world(
            "[[image]]\ncloud = \"aws\"\nregion = \"us-west-2\"\nid = \"ami-1\"\n[networks]\naws_default_vpcs = []\n",
        );
        assert_eq!(
            world.launch(launch("ami-1", "us-west-2", 1, 1)).unwrap_err(),
            WorldError::NoDefaultVpc { region: "us-west-2".into() }
        );
    }

    #[test]
    fn sim_account_lists_narrow_and_absent_lists_allow_everything() {
        let fresh = world(FRESH).account;
        let image = |urn| AzureImage::parse(urn).unwrap();
        assert_eq!(fresh.azure_image_versions("EastUS", &image("canonical:ubuntu:22_04-lts-gen2:latest")), ["1.0.0"]);
        assert!(fresh.azure_image_versions("westus", &image("Canonical:ubuntu:22_04-lts-gen2:latest")).is_empty());
        assert_eq!(fresh.azure_image_versions("eastus", &image("Canonical:ubuntu:22_04-lts-gen2:1.0.0")), ["1.0.0"]);
        assert!(fresh.azure_image_versions("eastus", &image("Canonical:ubuntu:22_04-lts-gen2:9.9.9")).is_empty());
        assert!(fresh.has_gce_image("https://www.googleapis.com/compute/v1/projects/x/global/images/any"));
        assert!(fresh.has_gce_network("default") && !fresh.has_gce_network("ml"));
        assert!(fresh.has_resource_group("ml") && !fresh.has_resource_group("other"));
        assert!(fresh.has_subnet("ML", "vnet", "default") && !fresh.has_subnet("ml", "vnet", "gpu"));
        assert_eq!(fresh.ec2_vcpu_limit("us-east-1", "L-417A185B"), Some(400));
        assert_eq!(fresh.ec2_vcpu_limit("us-east-1", "L-DB2E81BA"), None);

        let open = World::new(None, &Catalog::builtin()).unwrap().account;
        assert!(open.has_ami("eu-west-1", "ami-anything") && open.has_default_vpc("eu-west-1"));
        assert!(open.has_subnet("any", "vnet", "subnet") && open.has_gce_network("ml"));
        assert_eq!(open.ec2_vcpu_limit("us-east-1", "L-417A185B"), None);
    }

    const NETWORKED: &str = r#"
        [[image]]
        cloud = "aws"
        region = "us-east-1"
        id = "ami-0123456789abcdef0"
        size_gb = 100
        [networks]
        aws_default_vpcs = []
        aws_subnets = [{ id = "subnet-0aaaaaaaaaaaaaaaa", zone = "us-east-1b", vpc = "vpc-0aaaaaaaaaaaaaaaa" }]
        aws_security_groups = [
            { id = "sg-0aaaaaaaaaaaaaaaa", region = "us-east-1", vpc = "vpc-0aaaaaaaaaaaaaaaa" },
            { id = "sg-0bbbbbbbbbbbbbbbb", region = "us-east-1" },
        ]
        aws_key_pairs = ["us-east-1/ops"]
        aws_instance_profiles = ["gpu-node"]
        "#;

    #[test]
    fn sim_account_refuses_launches_naming_what_the_account_lacks_with_ec2_codes() {
        let mut world = world(NETWORKED);
        let ami = "ami-0123456789abcdef0";
        let with = |attach: Ec2Attachments| LaunchRequest { attach, ..launch(ami, "us-east-1", 1, 1) };
        let good = Ec2Attachments {
            subnet_id: Some("subnet-0aaaaaaaaaaaaaaaa".into()),
            security_group_ids: vec!["sg-0aaaaaaaaaaaaaaaa".into()],
            key_name: Some("ops".into()),
            instance_profile_name: Some("gpu-node".into()),
            block_devices: vec![Ec2BlockDevice { device_name: EC2_ROOT_DEVICE.into(), volume_size_gb: Some(200) }],
            ..Ec2Attachments::default()
        };
        let code = |world: &mut World, attach: Ec2Attachments| match world.launch(with(attach)) {
            Err(WorldError::Refused { code, message }) => format!("{code}: {message}"),
            other => format!("{other:?}"),
        };
        let cases = [
            (Ec2Attachments { subnet_id: None, ..good.clone() }, "VPCIdNotSpecified"),
            (
                Ec2Attachments { subnet_id: Some("subnet-0cccccccccccccccc".into()), ..good.clone() },
                "InvalidSubnetID.NotFound: The subnet ID 'subnet-0cccccccccccccccc' does not exist",
            ),
            (
                Ec2Attachments { security_group_ids: vec!["sg-0cccccccccccccccc".into()], ..good.clone() },
                "InvalidGroup.NotFound: The security group 'sg-0cccccccccccccccc' does not exist",
            ),
            (
                Ec2Attachments { security_group_ids: vec!["sg-0bbbbbbbbbbbbbbbb".into()], ..good.clone() },
                "InvalidParameter: Security group sg-0bbbbbbbbbbbbbbbb and subnet subnet-0aaaaaaaaaaaaaaaa belong to different networks.",
            ),
            (
                Ec2Attachments { key_name: Some("dev".into()), ..good.clone() },
                "InvalidKeyPair.NotFound: The key pair 'dev' does not exist",
            ),
            (
                Ec2Attachments { instance_profile_name: Some("admin".into()), ..good.clone() },
                "InvalidParameterValue: Value (admin) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
            ),
            (
                Ec2Attachments {
                    block_devices: vec![Ec2BlockDevice {
                        device_name: EC2_ROOT_DEVICE.into(),
                        volume_size_gb: Some(50),
                    }],
                    ..good.clone()
                },
                "InvalidBlockDeviceMapping: Volume of size 50GB is smaller than snapshot",
            ),
        ];
        for (attach, expected) in cases {
            let got = code(&mut world, attach);
            if expected == "VPCIdNotSpecified" {
                assert!(got.contains("NoDefaultVpc"), "{got}");
            } else {
                assert!(got.starts_with(expected), "{got}");
            }
        }
        assert_eq!(world.instances().count(), 0, "a refused launch starts nothing");
        let launched = world.launch(with(good.clone())).unwrap();
        assert_eq!(launched.instances[0].zone, "us-east-1b", "the subnet decides the zone");
        assert_eq!(launched.instances[0].attach, good, "the instance keeps what it was launched with");
        let elsewhere = LaunchRequest { zone: Some("us-east-1a".into()), ..with(good) };
        assert!(matches!(world.launch(elsewhere), Err(WorldError::Refused { code: "InvalidParameterValue", .. })));
    }
}
