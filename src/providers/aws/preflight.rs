//! `gpufleet check` on EC2, per region: the zones that sell the type
//! (`DescribeInstanceTypeOfferings` by availability zone), the AMI in that
//! region (`DescribeImages` filtered by id, empty when it is not there), a
//! default subnet in one of those zones (`DescribeSubnets`: gpufleet
//! launches into the default VPC), and the vCPU quota of the type's family.

use super::{AwsProvider, classify};
use crate::model::{Cloud, Launch};
use crate::providers::preflight::{Finding, OfferingFindings, PreflightRequest, QuotaFinding, quota_fix, refused};
use crate::providers::{Call, ProviderError, retrying};
use aws_sdk_ec2::types::{Filter, LocationType};

fn filter(name: &str, values: &[String]) -> Filter {
    Filter::builder().name(name).set_values(Some(values.to_vec())).build()
}

impl AwsProvider {
    pub(super) async fn preflight_offering(
        &self,
        request: &PreflightRequest,
    ) -> Result<OfferingFindings, ProviderError> {
        let region = request.placement.region.as_str();
        let instance_type = request.placement.instance_type.as_str();
        let client = self.client(region)?;
        let call = |name| Call::new(Cloud::Aws, region, name);

        // The offering's zone when it has one, else every zone of the region.
        let place = request.placement.zone.as_deref().unwrap_or(region);
        let locations: Vec<String> = request.placement.zone.iter().cloned().collect();
        let zones = retrying(self.retry, call("DescribeInstanceTypeOfferings"), || async {
            let mut ask = client
                .describe_instance_type_offerings()
                .location_type(LocationType::AvailabilityZone)
                .filters(filter("instance-type", &[instance_type.to_string()]));
            if !locations.is_empty() {
                ask = ask.filters(filter("location", &locations));
            }
            let output = ask.send().await.map_err(|e| classify(region, e))?;
            let mut zones: Vec<String> =
                output.instance_type_offerings().iter().filter_map(|o| o.location().map(str::to_string)).collect();
            zones.sort();
            Ok(zones)
        })
        .await;
        let (offered, zones) = match zones {
            Ok(zones) if zones.is_empty() => (
                Finding::fail(
                    "Unsupported",
                    format!("{instance_type} is not offered in {place}"),
                    format!(
                        "choose another region for {instance_type}, or remove {region} from [providers.aws] regions"
                    ),
                ),
                zones,
            ),
            Ok(zones) => (Finding::pass(format!("in {}", zones.join(", "))), zones),
            Err(e) => (refused(e, "check the instance type's name")?, Vec::new()),
        };

        let images = retrying(self.retry, call("DescribeImages"), || async {
            let output = client
                .describe_images()
                .filters(filter("image-id", std::slice::from_ref(&request.image)))
                .send()
                .await
                .map_err(|e| classify(region, e))?;
            Ok(output.images().iter().filter_map(|i| i.image_id().map(str::to_string)).collect::<Vec<_>>())
        })
        .await;
        let image = match images {
            Ok(found) if found.contains(&request.image) => Finding::pass(format!("{} available", request.image)),
            Ok(_) => Finding::fail(
                "InvalidAMIID.NotFound",
                format!("image {} does not exist in {region}", request.image),
                format!(
                    "AMIs are regional: copy it to {region} (aws ec2 copy-image --region {region} --source-image-id {} --source-region REGION --name NAME), or remove {region} from [providers.aws] regions",
                    request.image
                ),
            ),
            Err(e) => refused(e, "check the fleet's image for aws")?,
        };

        let launch = &request.launch;
        let network = if let Some(subnet) = &launch.subnet {
            self.named_subnet(region, subnet, request.placement.zone.as_deref()).await?
        } else if zones.is_empty() {
            Finding::unchecked(format!("{place} does not sell the type"))
        } else {
            let subnets = retrying(self.retry, call("DescribeSubnets"), || async {
                let output = client
                    .describe_subnets()
                    .filters(filter("default-for-az", &["true".to_string()]))
                    .filters(filter("availability-zone", &zones))
                    .send()
                    .await
                    .map_err(|e| classify(region, e))?;
                Ok(output.subnets().len())
            })
            .await;
            match subnets {
                Ok(0) => Finding::fail(
                    "VPCIdNotSpecified",
                    format!("no default subnet in {place} for {instance_type}: the region has no default VPC"),
                    format!("create one: aws ec2 create-default-vpc --region {region}"),
                ),
                Ok(count) => Finding::pass(format!("default subnet in {count} of {} zone(s)", zones.len())),
                Err(e) => refused(e, "check that the credentials may describe subnets")?,
            }
        };
        let network = match network {
            Finding::Pass { detail } if !launch.security_groups.is_empty() => {
                self.security_groups(region, &launch.security_groups, detail).await?
            }
            other => other,
        };
        let access = self.access(region, launch).await?;

        let quota = match self.vcpu_room(region, instance_type).await {
            Ok(None) => QuotaFinding {
                finding: Finding::unchecked("Service Quotas has no applied vCPU quota for this family here"),
                headroom_nodes: None,
                key: None,
            },
            Ok(Some(room)) => {
                let need = room.per_node * u64::from(request.nodes);
                let finding = if room.nodes() >= request.nodes {
                    Finding::pass(format!(
                        "room for {} node(s): {} of {} vCPUs free",
                        room.nodes(),
                        room.free(),
                        room.limit
                    ))
                } else {
                    Finding::fail(
                        "VcpuLimitExceeded",
                        format!(
                            "{} ({}) in {region}: limit {} vCPUs, {} in use",
                            room.quota.name, room.quota.code, room.limit, room.used
                        ),
                        quota_fix(room.quota.code, region, need, room.free(), "vCPUs"),
                    )
                };
                let key = format!("aws {} {region} {}", self.account.as_deref().unwrap_or("default"), room.quota.code);
                QuotaFinding { finding, headroom_nodes: Some(room.nodes()), key: Some(key) }
            }
            Err(e) => QuotaFinding {
                finding: refused(e, "allow servicequotas:GetServiceQuota and ec2:DescribeInstances")?,
                headroom_nodes: None,
                key: None,
            },
        };
        Ok(OfferingFindings { offered, image, network, access, quota })
    }

    /// The subnet the plan names for a zone: it exists (`DescribeSubnets`
    /// by id) and lies in that zone.
    async fn named_subnet(&self, region: &str, subnet: &str, zone: Option<&str>) -> Result<Finding, ProviderError> {
        let client = self.client(region)?;
        let found = retrying(self.retry, Call::new(Cloud::Aws, region, "DescribeSubnets"), || async {
            let output = client.describe_subnets().subnet_ids(subnet).send().await.map_err(|e| classify(region, e))?;
            Ok(output.subnets().iter().find_map(|s| s.availability_zone().map(str::to_string)))
        })
        .await;
        let fix = format!(
            "create it, or name a subnet of that zone in [providers.aws] subnets (aws ec2 describe-subnets --region {region})"
        );
        Ok(match found {
            Ok(Some(in_zone)) if zone.is_none_or(|z| z == in_zone) => {
                Finding::pass(format!("subnet {subnet} in {in_zone}"))
            }
            Ok(Some(in_zone)) => Finding::fail(
                "InvalidParameterValue",
                format!("subnet {subnet} is in {in_zone}, not in {}", zone.unwrap_or_default()),
                "[providers.aws] subnets names a subnet per zone: give each zone one of its own subnets",
            ),
            Ok(None) => {
                Finding::fail("InvalidSubnetID.NotFound", format!("The subnet ID '{subnet}' does not exist"), fix)
            }
            Err(e) => refused(e, fix)?,
        })
    }

    /// The security groups the plan names for a region (`DescribeSecurityGroups`).
    async fn security_groups(&self, region: &str, groups: &[String], subnet: String) -> Result<Finding, ProviderError> {
        let client = self.client(region)?;
        let found = retrying(self.retry, Call::new(Cloud::Aws, region, "DescribeSecurityGroups"), || async {
            let ask = client.describe_security_groups().set_group_ids(Some(groups.to_vec()));
            Ok(ask.send().await.map_err(|e| classify(region, e))?.security_groups().len())
        })
        .await;
        let fix = format!(
            "create it in the subnet's VPC (aws ec2 create-security-group --region {region} ...), or fix [providers.aws] security_groups"
        );
        Ok(match found {
            Ok(_) => Finding::pass(format!("{subnet}, security groups {}", groups.join(", "))),
            Err(e) => refused(e, fix)?,
        })
    }

    /// The key pair (`DescribeKeyPairs`) the fleet names; its instance
    /// profile lives in IAM, which gpufleet does not ask: RunInstances
    /// refuses an unknown one.
    async fn access(&self, region: &str, launch: &Launch) -> Result<Finding, ProviderError> {
        if let Some(key) = &launch.ssh_key {
            let client = self.client(region)?;
            let found = retrying(self.retry, Call::new(Cloud::Aws, region, "DescribeKeyPairs"), || async {
                let output =
                    client.describe_key_pairs().key_names(key).send().await.map_err(|e| classify(region, e))?;
                Ok(output.key_pairs().len())
            })
            .await;
            let fix = format!(
                "key pairs are regional: import it (aws ec2 import-key-pair --region {region} --key-name {key} --public-key-material fileb://KEY.pub)"
            );
            match found {
                Ok(0) => {
                    return Ok(Finding::fail(
                        "InvalidKeyPair.NotFound",
                        format!("The key pair '{key}' does not exist"),
                        fix,
                    ));
                }
                Ok(_) => {}
                Err(e) => return refused(e, fix),
            }
        }
        Ok(match (&launch.identity, &launch.ssh_key) {
            (Some(profile), _) => Finding::unchecked(format!(
                "instance profile {profile} is not checked: it lives in IAM, and RunInstances refuses an unknown one"
            )),
            (None, Some(key)) => Finding::pass(format!("key pair {key}")),
            (None, None) => Finding::pass("no instance profile or key pair asked for"),
        })
    }
}
