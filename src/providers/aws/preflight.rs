//! `gpufleet check` on EC2, per region: the zones that sell the type
//! (`DescribeInstanceTypeOfferings` by availability zone), the AMI in that
//! region (`DescribeImages` filtered by id, empty when it is not there), a
//! default subnet in one of those zones (`DescribeSubnets`: gpufleet
//! launches into the default VPC), and the vCPU quota of the type's family.

use super::{AwsProvider, classify};
use crate::model::Cloud;
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

        let network = if zones.is_empty() {
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
        Ok(OfferingFindings { offered, image, network, quota })
    }
}
