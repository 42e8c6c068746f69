//! The EC2 reads a preflight makes about an account, beside the instance
//! calls of [`super`]: which zones sell an instance type
//! (`DescribeInstanceTypeOfferings`), whether an AMI exists in the region
//! (`DescribeImages`), and the default subnets of the default VPC
//! (`DescribeSubnets`). Shapes as botocore's `ec2/2016-11-15` model.

use super::{ApiError, Params, XmlWriter};
use crate::model::Cloud;
use crate::sim::account::{EC2_ROOT_DEVICE, Ec2Subnet, default_subnet_id, default_vpc_id, snapshot_of};
use crate::sim::world::{Filter, World, glob_matches};

/// Runs one of these reads, or `None` when `action` is not one of them.
pub(super) fn dispatch(
    world: &mut World,
    region: &str,
    action: &str,
    params: &Params,
    request_id: &str,
) -> Option<Result<(String, bool), ApiError>> {
    let body = match action {
        "DescribeInstanceTypeOfferings" => instance_type_offerings(world, region, params, request_id),
        "DescribeImages" => images(world, region, params, request_id),
        "DescribeSubnets" => subnets(world, region, params, request_id),
        "DescribeSecurityGroups" => security_groups(world, region, params, request_id),
        "DescribeKeyPairs" => key_pairs(world, region, params, request_id),
        _ => return None,
    };
    Some(body.map(|xml| (xml, false)))
}

/// `Filter.N.Name` / `Filter.N.Value.M`, each name one of `supported`.
fn filters(params: &Params, supported: &[&str]) -> Result<Vec<Filter>, ApiError> {
    let mut filters = Vec::new();
    for member in params.members("Filter") {
        let name = params.required(&format!("{member}.Name"))?.to_string();
        if !supported.contains(&name.as_str()) {
            return Err(ApiError::invalid_value(format!("The filter '{name}' is invalid")));
        }
        let values = params.list(&format!("{member}.Value"));
        if values.is_empty() {
            return Err(ApiError::invalid_value(format!("The filter '{name}' requires at least one value")));
        }
        filters.push(Filter { name, values });
    }
    Ok(filters)
}

/// Whether every filter that names `field` matches `value` (filters on other fields pass).
fn passes(filters: &[Filter], field: &str, value: &str) -> bool {
    filters.iter().filter(|f| f.name == field).all(|f| f.values.iter().any(|pattern| glob_matches(pattern, value)))
}

fn instance_type_offerings(world: &World, region: &str, params: &Params, request_id: &str) -> Result<String, ApiError> {
    let location_type = params.get("LocationType").unwrap_or("region");
    if !matches!(location_type, "region" | "availability-zone") {
        return Err(ApiError::invalid_value(format!(
            "The location type '{location_type}' is not supported: the simulator serves region and availability-zone"
        )));
    }
    let filters = filters(params, &["instance-type", "location"])?;
    let mut offerings: Vec<(&str, &str)> = world
        .pools()
        .iter()
        .filter(|p| p.cloud == Cloud::Aws && p.region == region)
        .map(|p| (p.instance_type.as_str(), if location_type == "region" { region } else { p.zone.as_str() }))
        .filter(|(instance_type, location)| {
            passes(&filters, "instance-type", instance_type) && passes(&filters, "location", location)
        })
        .collect();
    offerings.sort_unstable();
    offerings.dedup();
    let action = "DescribeInstanceTypeOfferings";
    let mut xml = XmlWriter::response(action, request_id);
    xml.open("instanceTypeOfferingSet");
    for (instance_type, location) in offerings {
        xml.open("item");
        xml.leaf("instanceType", instance_type);
        xml.leaf("locationType", location_type);
        xml.leaf("location", location);
        xml.close("item");
    }
    xml.close("instanceTypeOfferingSet");
    Ok(xml.finish(action))
}

/// `ami-` and 8 or 17 lowercase hex digits.
fn is_ami_id(id: &str) -> bool {
    id.strip_prefix("ami-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

/// Images by id: `ImageId.N` must all exist (`InvalidAMIID.NotFound`
/// otherwise, as on EC2), while an `image-id` filter only narrows, so an
/// unknown AMI gives an empty set.
fn images(world: &World, region: &str, params: &Params, request_id: &str) -> Result<String, ApiError> {
    let ids = params.list("ImageId");
    let filters = filters(params, &["image-id", "state"])?;
    let mut wanted: Vec<String> = ids.clone();
    for filter in filters.iter().filter(|f| f.name == "image-id") {
        wanted.extend(filter.values.iter().filter(|v| !v.contains(['*', '?'])).cloned());
    }
    for id in &ids {
        if !is_ami_id(id) {
            return Err(ApiError::client(
                "InvalidAMIID.Malformed",
                format!("Invalid id: \"{id}\" (expecting \"ami-...\")"),
            ));
        }
        if !world.account.has_ami(region, id) {
            return Err(ApiError::client("InvalidAMIID.NotFound", format!("The image id '[{id}]' does not exist")));
        }
    }
    wanted.sort();
    wanted.dedup();
    let action = "DescribeImages";
    let mut xml = XmlWriter::response(action, request_id);
    xml.open("imagesSet");
    for id in wanted.iter().filter(|id| is_ami_id(id) && world.account.has_ami(region, id)) {
        if !(passes(&filters, "image-id", id) && passes(&filters, "state", "available")) {
            continue;
        }
        xml.open("item");
        xml.leaf("imageId", id);
        xml.leaf("imageLocation", &format!("gpufleet-simulator/{id}"));
        xml.leaf("imageState", "available");
        xml.leaf("imageOwnerId", super::OWNER_ID);
        xml.leaf("isPublic", "false");
        xml.leaf("architecture", "x86_64");
        xml.leaf("imageType", "machine");
        xml.leaf("name", id);
        xml.leaf("rootDeviceType", "ebs");
        xml.leaf("rootDeviceName", EC2_ROOT_DEVICE);
        xml.open("blockDeviceMapping");
        xml.open("item");
        xml.leaf("deviceName", EC2_ROOT_DEVICE);
        xml.open("ebs");
        xml.leaf("snapshotId", &snapshot_of(id));
        xml.leaf("volumeSize", &world.account.ec2_image_gb(region, id).to_string());
        xml.leaf("deleteOnTermination", "true");
        xml.leaf("volumeType", "gp3");
        xml.close("ebs");
        xml.close("item");
        xml.close("blockDeviceMapping");
        xml.leaf("virtualizationType", "hvm");
        xml.leaf("hypervisor", "xen");
        xml.close("item");
    }
    xml.close("imagesSet");
    Ok(xml.finish(action))
}

/// The subnets of a region: the default subnet of each zone where the
/// region has a default VPC, and those the scenario names. `SubnetId.N`
/// must all exist (`InvalidSubnetID.NotFound`), filters only narrow.
fn subnets(world: &World, region: &str, params: &Params, request_id: &str) -> Result<String, ApiError> {
    let filters = filters(params, &["default-for-az", "availability-zone", "vpc-id", "subnet-id"])?;
    let zones = world.known_zones(region).unwrap_or_default();
    let mut all: Vec<(Ec2Subnet, bool)> = Vec::new();
    if world.account.has_default_vpc(region) {
        for zone in zones {
            let id = default_subnet_id(zone);
            all.push((Ec2Subnet { id, zone: zone.clone(), vpc: default_vpc_id(region) }, true));
        }
    }
    for named in world.account.ec2_named_subnets(zones) {
        all.push((Ec2Subnet { id: named.id.clone(), zone: named.zone.clone(), vpc: named.vpc.clone() }, false));
    }
    let ids = params.list("SubnetId");
    for id in &ids {
        let known = all.iter().any(|(s, _)| s.id == *id) || world.account.ec2_subnet(region, zones, id, None).is_some();
        if !known {
            return Err(ApiError::client("InvalidSubnetID.NotFound", format!("The subnet ID '{id}' does not exist")));
        }
        // A subnet the default world has without naming it.
        if !all.iter().any(|(s, _)| s.id == *id)
            && let Some(subnet) = world.account.ec2_subnet(region, zones, id, None)
        {
            all.push((subnet, false));
        }
    }
    let action = "DescribeSubnets";
    let mut xml = XmlWriter::response(action, request_id);
    xml.open("subnetSet");
    for (index, (subnet, default)) in all.iter().enumerate() {
        let shown = (ids.is_empty() || ids.contains(&subnet.id))
            && passes(&filters, "default-for-az", if *default { "true" } else { "false" })
            && passes(&filters, "availability-zone", &subnet.zone)
            && passes(&filters, "vpc-id", &subnet.vpc)
            && passes(&filters, "subnet-id", &subnet.id);
        if !shown {
            continue;
        }
        xml.open("item");
        xml.leaf("subnetId", &subnet.id);
        xml.leaf("state", "available");
        xml.leaf("vpcId", &subnet.vpc);
        xml.leaf("cidrBlock", &format!("172.31.{}.0/20", (index % 16) * 16));
        xml.leaf("availableIpAddressCount", "4091");
        xml.leaf("availabilityZone", &subnet.zone);
        xml.leaf("defaultForAz", if *default { "true" } else { "false" });
        xml.leaf("mapPublicIpOnLaunch", if *default { "true" } else { "false" });
        xml.leaf("ownerId", super::OWNER_ID);
        xml.close("item");
    }
    xml.close("subnetSet");
    Ok(xml.finish(action))
}

/// Security groups by `GroupId.N`, each of which must exist
/// (`InvalidGroup.NotFound`); the default world has any that is asked for.
fn security_groups(world: &World, region: &str, params: &Params, request_id: &str) -> Result<String, ApiError> {
    let ids = params.list("GroupId");
    let mut found = Vec::with_capacity(ids.len());
    for id in &ids {
        match world.account.ec2_security_group_vpc(region, id) {
            Some(vpc) => found.push((id, vpc.unwrap_or_else(|| default_vpc_id(region)))),
            None => {
                return Err(ApiError::client(
                    "InvalidGroup.NotFound",
                    format!("The security group '{id}' does not exist"),
                ));
            }
        }
    }
    let action = "DescribeSecurityGroups";
    let mut xml = XmlWriter::response(action, request_id);
    xml.open("securityGroupInfo");
    for (id, vpc) in found {
        xml.open("item");
        xml.leaf("ownerId", super::OWNER_ID);
        xml.leaf("groupId", id);
        xml.leaf("groupName", id);
        xml.leaf("groupDescription", "simulated");
        xml.leaf("vpcId", &vpc);
        xml.close("item");
    }
    xml.close("securityGroupInfo");
    Ok(xml.finish(action))
}

/// Key pairs by `KeyName.N`, each of which must exist in the region
/// (`InvalidKeyPair.NotFound`).
fn key_pairs(world: &World, region: &str, params: &Params, request_id: &str) -> Result<String, ApiError> {
    let names = params.list("KeyName");
    if let Some(missing) = names.iter().find(|name| !world.account.has_ec2_key_pair(region, name)) {
        return Err(ApiError::client("InvalidKeyPair.NotFound", format!("The key pair '{missing}' does not exist")));
    }
    let action = "DescribeKeyPairs";
    let mut xml = XmlWriter::response(action, request_id);
    xml.open("keySet");
    for name in &names {
        xml.open("item");
        xml.leaf("keyPairId", &default_subnet_id(name).replace("subnet-", "key-"));
        xml.leaf("keyName", name);
        xml.leaf("keyType", "ed25519");
        xml.close("item");
    }
    xml.close("keySet");
    Ok(xml.finish(action))
}

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;
    use crate::sim::scenario::Scenario;
    use crate::sim::world::World;

    fn world(scenario: &str) -> World {
        let scenario = Scenario::parse(scenario, std::path::Path::new("s.toml")).unwrap();
        World::new(Some(&scenario), &Catalog::builtin()).unwrap()
    }

    fn call(world: &mut World, region: &str, body: &str) -> String {
        super::super::handle(world, region, body.as_bytes()).body
    }

    const FRESH: &str = "[[image]]\ncloud = \"aws\"\nregion = \"us-east-1\"\nid = \"ami-0123456789abcdef0\"\n\
                         [networks]\naws_default_vpcs = [\"us-east-1\"]\n";

    #[test]
    fn sim_instance_type_offerings_list_the_zones_that_sell_a_type() {
        let mut world = world("");
        let by_zone = "Action=DescribeInstanceTypeOfferings&LocationType=availability-zone\
                       &Filter.1.Name=instance-type&Filter.1.Value.1=p5.48xlarge";
        let body = call(&mut world, "us-east-1", by_zone);
        assert_eq!(body.matches("<locationType>availability-zone</locationType>").count(), 5, "{body}");
        assert!(body.contains("<location>us-east-1c</location>"), "{body}");
        let by_region = call(&mut world, "us-east-1", &by_zone.replace("availability-zone", "region"));
        assert!(by_region.contains("<location>us-east-1</location>"), "{by_region}");
        let nowhere = call(&mut world, "us-east-1", &by_zone.replace("p5.48xlarge", "p9.nope"));
        assert!(nowhere.contains("<instanceTypeOfferingSet></instanceTypeOfferingSet>"), "{nowhere}");
    }

    #[test]
    fn sim_images_exist_per_region_and_a_filter_on_an_unknown_one_is_empty() {
        let mut world = world(FRESH);
        let by_filter = "Action=DescribeImages&Filter.1.Name=image-id&Filter.1.Value.1=ami-0123456789abcdef0";
        assert!(call(&mut world, "us-east-1", by_filter).contains("<imageState>available</imageState>"));
        assert!(call(&mut world, "us-west-2", by_filter).contains("<imagesSet></imagesSet>"));
        let by_id = call(&mut world, "us-west-2", "Action=DescribeImages&ImageId.1=ami-0123456789abcdef0");
        assert!(by_id.contains("<Code>InvalidAMIID.NotFound</Code>"), "{by_id}");
        let malformed = call(&mut world, "us-east-1", "Action=DescribeImages&ImageId.1=nope");
        assert!(malformed.contains("<Code>InvalidAMIID.Malformed</Code>"), "{malformed}");
    }

    #[test]
    fn sim_default_subnets_exist_only_where_the_default_vpc_does() {
        let mut world = world(FRESH);
        let ask = "Action=DescribeSubnets&Filter.1.Name=default-for-az&Filter.1.Value.1=true\
                   &Filter.2.Name=availability-zone&Filter.2.Value.1=us-east-1a";
        let east = call(&mut world, "us-east-1", ask);
        assert_eq!(east.matches("<defaultForAz>true</defaultForAz>").count(), 1, "{east}");
        let west = call(&mut world, "us-west-2", &ask.replace("us-east-1a", "us-west-2a"));
        assert!(west.contains("<subnetSet></subnetSet>"), "{west}");
        let refused = call(
            &mut world,
            "us-east-1",
            "Action=RunInstances&ImageId=ami-0123456789abcdef0&InstanceType=p5.48xlarge&MinCount=1&MaxCount=1",
        );
        assert!(refused.contains("<instanceId>"), "the default VPC takes the launch: {refused}");
        let no_vpc = call(
            &mut world,
            "us-west-2",
            "Action=RunInstances&ImageId=ami-0123456789abcdef0&InstanceType=p5.48xlarge&MinCount=1&MaxCount=1",
        );
        assert!(no_vpc.contains("<Code>InvalidAMIID.NotFound</Code>"), "AMIs are regional: {no_vpc}");
        let unknown_filter =
            call(&mut world, "us-east-1", "Action=DescribeSubnets&Filter.1.Name=color&Filter.1.Value.1=red");
        assert!(unknown_filter.contains("<Code>InvalidParameterValue</Code>"));
    }
}
