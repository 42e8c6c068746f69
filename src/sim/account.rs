//! What a simulated account holds besides capacity, so that the simulator
//! refuses what a fresh account refuses: which machine images exist where,
//! which networks and resource groups exist, and EC2's running On-Demand
//! vCPU quotas (Service Quotas codes, counted over a region's live instances).
//!
//! The default world has every image, network and resource group, and no EC2
//! quota (Service Quotas then has no applied value, and launches are not
//! limited); a scenario narrows each with `[[image]]`, `[networks]` and
//! `[[quota]]` entries of cloud "aws".

use super::scenario::{Scenario, ScenarioImage, ScenarioNetworks, ScenarioQuota};
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
    /// region, the region has a default VPC to launch into, and the vCPU
    /// quota of the type's family has room. Returns how many instances the
    /// quota admits (at least `min_count`).
    pub(super) fn admit_ec2_launch(&self, request: &LaunchRequest) -> Result<u32, WorldError> {
        if !self.account.has_ami(&request.region, &request.image_id) {
            return Err(WorldError::ImageNotFound { id: request.image_id.clone() });
        }
        if !self.account.has_default_vpc(&request.region) {
            return Err(WorldError::NoDefaultVpc { region: request.region.clone() });
        }
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
}
