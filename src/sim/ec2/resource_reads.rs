//! EC2's per-resource read calls, beside the instance calls of [`super`]: the ones a tool that refreshes each
//! resource on its own makes for every instance (DescribeInstanceAttribute,
//! DescribeInstanceTypes, DescribeTags, DescribeVolumes, DescribeVpcs and,
//! for burstable types, DescribeInstanceCreditSpecifications). gpufleet
//! itself makes none of them; the fleet benchmark's per-resource baseline
//! does. Shapes and element names are botocore's (`ec2/2016-11-15`), pages
//! follow its `paginators-1.json`.
//!
//! Every instance has what EC2 gives one launched without storage or
//! network options: a root EBS volume, deleted on termination, and a place
//! in its region's default VPC. Neither is stored: the volume id is derived
//! from the instance's sequence number and the VPC id from the region, so
//! both are the same after the world file is reloaded, and a volume id
//! leads back to its instance without a search.

use super::{ApiError, OWNER_ID, Params, XmlWriter, check_instance_id, filters, instance_ids};
use crate::sim::world::{Filter, Instance, InstanceState, World, glob_matches, scramble, unscramble_hex};
use sha2::{Digest, Sha256};
use std::ops::RangeInclusive;

/// Where every simulated instance's root volume is attached.
pub const ROOT_DEVICE: &str = "/dev/sda1";
/// Size of every root volume: the simulator's images all have 100 GiB root snapshots.
const ROOT_VOLUME_GIB: u32 = 100;
/// gp3's baseline, which a volume created without options gets.
const GP3_IOPS: u32 = 3000;
const GP3_THROUGHPUT_MIBPS: u32 = 125;
/// Every default VPC has this block (EC2 User Guide, "Default VPCs").
const DEFAULT_VPC_CIDR: &str = "172.31.0.0/16";
/// Keeps volume ids from looking like the instance ids of the same sequence number.
const VOLUME_SALT: u64 = 0x0000_7b1d_e0a5_c0de;

/// How a call pages: the `MaxResults` it accepts, the most items a page
/// holds, and how many a call without `MaxResults` gets (`None`: all).
struct Paging {
    accepted: RangeInclusive<u32>,
    largest: usize,
    unasked: Option<usize>,
}

/// From the service model's `MaxResults` shapes, and the API reference
/// where the model says only `Integer` (DescribeTags: 5 to 1000;
/// DescribeVolumes: from 5, pages of at most 500 whatever is asked).
const INSTANCE_TYPES_PAGING: Paging = Paging { accepted: 5..=100, largest: 100, unasked: Some(100) };
const TAGS_PAGING: Paging = Paging { accepted: 5..=1000, largest: 1000, unasked: None };
const VPCS_PAGING: Paging = Paging { accepted: 5..=1000, largest: 1000, unasked: None };
const CREDIT_PAGING: Paging = Paging { accepted: 5..=1000, largest: 1000, unasked: None };
const VOLUMES_PAGING: Paging = Paging { accepted: 5..=u32::MAX, largest: 500, unasked: None };

const TOKEN_PREFIX: &str = "sim-offset-";

/// Answers one of the calls above, or `None` if `action` is not one of them.
pub fn handle(
    world: &World,
    region: &str,
    action: &str,
    params: &Params,
    request_id: &str,
) -> Option<Result<String, ApiError>> {
    let body = match action {
        "DescribeInstanceAttribute" => describe_instance_attribute(world, region, params),
        "DescribeInstanceTypes" => describe_instance_types(world, region, params),
        "DescribeTags" => describe_tags(world, region, params),
        "DescribeVolumes" => describe_volumes(world, region, params),
        "DescribeVpcs" => describe_vpcs(region, params),
        "DescribeInstanceCreditSpecifications" => describe_credit_specifications(world, region, params),
        _ => return None,
    };
    Some(body.map(|write| {
        let mut xml = XmlWriter::response(action, request_id);
        write(&mut xml);
        xml.finish(action)
    }))
}

/// The body of a response, written once the request is known to be good.
type Body<'w> = Box<dyn FnOnce(&mut XmlWriter) + 'w>;

/// The root volume of an instance: `vol-0` and 16 hex digits, a bijection
/// of its sequence number.
pub fn volume_id(instance: &Instance) -> String {
    format!("vol-0{:016x}", scramble(instance.seq ^ VOLUME_SALT))
}

/// The running instance whose root volume has this id, in this region.
fn volume_owner<'w>(world: &'w World, region: &str, volume_id: &str) -> Option<&'w Instance> {
    let hex = volume_id.strip_prefix("vol-0").filter(|hex| hex.len() == 16)?;
    let seq = unscramble_hex(hex)? ^ VOLUME_SALT;
    world.instance_by_seq(seq).filter(|i| i.region == region && i.state == InstanceState::Running)
}

/// The default VPC of a region, the same id every time.
pub fn default_vpc_id(region: &str) -> String {
    derived_id("vpc", region)
}

/// `PREFIX-0` and 16 hex digits of a hash of `of`.
fn derived_id(prefix: &str, of: &str) -> String {
    let digest = Sha256::digest(format!("{prefix}:{of}").as_bytes());
    format!("{prefix}-0{}", &hex::encode(digest)[..16])
}

/// `blockDeviceMapping` of an instance: its root volume while it runs.
pub fn write_block_device_mapping(xml: &mut XmlWriter, instance: &Instance) {
    if instance.state != InstanceState::Running {
        xml.empty("blockDeviceMapping");
        return;
    }
    xml.open("blockDeviceMapping");
    xml.open("item");
    xml.leaf("deviceName", ROOT_DEVICE);
    xml.open("ebs");
    xml.leaf("volumeId", &volume_id(instance));
    xml.leaf("status", "attached");
    xml.leaf("attachTime", &timestamp(instance.launch_time));
    xml.leaf("deleteOnTermination", "true");
    xml.close("ebs");
    xml.close("item");
    xml.close("blockDeviceMapping");
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// DescribeInstanceAttribute: one attribute of one instance. The simulator
/// takes none of RunInstances' termination, stop or shutdown options, so
/// every instance has EC2's defaults for them.
fn describe_instance_attribute<'w>(world: &'w World, region: &str, params: &Params) -> Result<Body<'w>, ApiError> {
    let id = params.required("InstanceId")?;
    let attribute = params.required("Attribute")?.to_string();
    let instance = find_instance(world, region, id)?;
    let value = |xml: &mut XmlWriter, element: &str, value: Option<&str>| match value {
        Some(value) => {
            xml.open(element);
            xml.leaf("value", value);
            xml.close(element);
        }
        None => xml.empty(element),
    };
    let write: Body<'w> = match attribute.as_str() {
        "instanceType" => Box::new(move |xml| value(xml, "instanceType", Some(&instance.instance_type))),
        "userData" => Box::new(move |xml| value(xml, "userData", instance.user_data.as_deref())),
        "disableApiTermination" => Box::new(move |xml| value(xml, "disableApiTermination", Some("false"))),
        "disableApiStop" => Box::new(move |xml| value(xml, "disableApiStop", Some("false"))),
        "instanceInitiatedShutdownBehavior" => {
            Box::new(move |xml| value(xml, "instanceInitiatedShutdownBehavior", Some("stop")))
        }
        "rootDeviceName" => Box::new(move |xml| value(xml, "rootDeviceName", Some(ROOT_DEVICE))),
        "sourceDestCheck" => Box::new(move |xml| value(xml, "sourceDestCheck", Some("true"))),
        "kernel" => Box::new(move |xml| value(xml, "kernel", None)),
        "ramdisk" => Box::new(move |xml| value(xml, "ramdisk", None)),
        "blockDeviceMapping" => Box::new(move |xml| write_block_device_mapping(xml, instance)),
        "groupSet" => Box::new(|xml| xml.empty("groupSet")),
        "productCodes" => Box::new(|xml| xml.empty("productCodes")),
        other => {
            return Err(ApiError::invalid_value(format!(
                "Value ({other}) for parameter attribute is invalid. The simulator answers instanceType, userData, \
                 disableApiTermination, disableApiStop, instanceInitiatedShutdownBehavior, rootDeviceName, \
                 sourceDestCheck, kernel, ramdisk, blockDeviceMapping, groupSet and productCodes."
            )));
        }
    };
    Ok(Box::new(move |xml| {
        xml.leaf("instanceId", &instance.id);
        write(xml);
    }))
}

fn find_instance<'w>(world: &'w World, region: &str, id: &str) -> Result<&'w Instance, ApiError> {
    check_instance_id(id)?;
    world
        .instance(region, id)
        .ok_or_else(|| ApiError::client("InvalidInstanceID.NotFound", format!("The instance ID '{id}' does not exist")))
}

/// DescribeInstanceTypes: the types the region sells, 100 a page at most.
fn describe_instance_types<'w>(world: &'w World, region: &str, params: &Params) -> Result<Body<'w>, ApiError> {
    let named = params.list("InstanceType");
    let filters = known_filters(
        params,
        &[
            "instance-type",
            "current-generation",
            "bare-metal",
            "burstable-performance-supported",
            "free-tier-eligible",
            "hypervisor",
            "processor-info.supported-architecture",
            "vcpu-info.default-vcpus",
        ],
        false,
    )?;
    let sold = |name: &str| world.offers(crate::model::Cloud::Aws, region, name);
    let unknown: Vec<&str> = named.iter().map(String::as_str).filter(|n| !sold(n)).collect();
    if !unknown.is_empty() {
        return Err(ApiError::client(
            "InvalidInstanceType",
            format!("The following supplied instance types do not exist: [{}]", unknown.join(", ")),
        ));
    }
    let types: Vec<_> = world
        .ec2_types()
        .iter()
        .filter(|(name, _)| sold(name) && (named.is_empty() || named.contains(name)))
        .filter(|(name, spec)| {
            matches_all(&filters, |filter| match filter {
                "instance-type" => vec![name.to_string()],
                "current-generation" | "bare-metal" | "burstable-performance-supported" | "free-tier-eligible" => {
                    vec![(filter == "current-generation").to_string()]
                }
                "hypervisor" => vec!["nitro".into()],
                "processor-info.supported-architecture" => vec!["x86_64".into()],
                _ => vec![spec.vcpus.to_string()],
            })
        })
        .collect();
    let (page, next) = page(types, params, INSTANCE_TYPES_PAGING)?;
    Ok(Box::new(move |xml| {
        xml.open("instanceTypeSet");
        for (name, spec) in page {
            xml.open("item");
            xml.leaf("instanceType", name);
            xml.leaf("currentGeneration", "true");
            xml.leaf("freeTierEligible", "false");
            list(xml, "supportedUsageClasses", &["on-demand", "spot"]);
            list(xml, "supportedRootDeviceTypes", &["ebs"]);
            list(xml, "supportedVirtualizationTypes", &["hvm"]);
            xml.leaf("bareMetal", "false");
            xml.leaf("hypervisor", "nitro");
            xml.open("processorInfo");
            list(xml, "supportedArchitectures", &["x86_64"]);
            xml.close("processorInfo");
            xml.open("vCpuInfo");
            xml.leaf("defaultVCpus", &spec.vcpus.to_string());
            xml.close("vCpuInfo");
            xml.open("gpuInfo");
            xml.open("gpus");
            xml.open("item");
            // EC2's name for the GPU: both A100s are "A100", told apart by memory.
            xml.leaf("name", crate::catalog::mapping::ec2_gpu_name(&spec.gpu).unwrap_or(&spec.gpu));
            xml.leaf("manufacturer", "NVIDIA");
            xml.leaf("count", &spec.gpus.to_string());
            xml.open("memoryInfo");
            xml.leaf("sizeInMiB", &(spec.gpu_memory_gib * 1024).to_string());
            xml.close("memoryInfo");
            xml.close("item");
            xml.close("gpus");
            xml.leaf("totalGpuMemoryInMiB", &(spec.gpus * spec.gpu_memory_gib * 1024).to_string());
            xml.close("gpuInfo");
            xml.leaf("burstablePerformanceSupported", "false");
            xml.leaf("autoRecoverySupported", "true");
            list(xml, "supportedBootModes", &["legacy-bios", "uefi"]);
            xml.close("item");
        }
        xml.close("instanceTypeSet");
        next_token(xml, next);
    }))
}

/// DescribeTags: the tags of the region's instances (the only resources the
/// simulator tags), one item per tag, by instance then key.
fn describe_tags<'w>(world: &'w World, region: &str, params: &Params) -> Result<Body<'w>, ApiError> {
    let filters = known_filters(params, &["key", "value", "resource-id", "resource-type"], true)?;
    let tags: Vec<(&Instance, &String, &String)> = candidates(world, region, &filters, "resource-id")
        .into_iter()
        .flat_map(|instance| instance.tags.iter().map(move |(key, value)| (instance, key, value)))
        .filter(|(instance, key, value)| {
            matches_all(&filters, |filter| match filter {
                "key" => vec![key.to_string()],
                "value" => vec![value.to_string()],
                "resource-id" => vec![instance.id.clone()],
                "resource-type" => vec!["instance".into()],
                tag => tag_values(instance, tag),
            })
        })
        .collect();
    let (page, next) = page(tags, params, TAGS_PAGING)?;
    Ok(Box::new(move |xml| {
        xml.open("tagSet");
        for (instance, key, value) in page {
            xml.open("item");
            xml.leaf("resourceId", &instance.id);
            xml.leaf("resourceType", "instance");
            xml.leaf("key", key);
            xml.leaf("value", value);
            xml.close("item");
        }
        xml.close("tagSet");
        next_token(xml, next);
    }))
}

/// DescribeVolumes: the root volumes of the region's running instances.
fn describe_volumes<'w>(world: &'w World, region: &str, params: &Params) -> Result<Body<'w>, ApiError> {
    let named = params.list("VolumeId");
    if !named.is_empty() && params.get("MaxResults").is_some() {
        return Err(ApiError::client(
            "InvalidParameterCombination",
            "The parameter volumeSet cannot be used with the parameter maxResults",
        ));
    }
    let filters = known_filters(
        params,
        &[
            "attachment.instance-id",
            "attachment.device",
            "attachment.status",
            "attachment.delete-on-termination",
            "availability-zone",
            "volume-id",
            "volume-type",
            "status",
            "size",
            "encrypted",
            "multi-attach-enabled",
        ],
        true,
    )?;
    let mut owners = Vec::new();
    for id in &named {
        let owner = volume_owner(world, region, id)
            .ok_or_else(|| ApiError::client("InvalidVolume.NotFound", format!("The volume '{id}' does not exist.")))?;
        owners.push(owner);
    }
    if named.is_empty() {
        owners = candidates(world, region, &filters, "attachment.instance-id");
    }
    owners.sort_by_key(|i| i.seq);
    owners.dedup_by_key(|i| i.seq);
    let volumes: Vec<(&Instance, String)> = owners
        .into_iter()
        .filter(|i| i.state == InstanceState::Running)
        .map(|i| (i, volume_id(i)))
        .filter(|(instance, volume)| {
            matches_all(&filters, |filter| match filter {
                "attachment.instance-id" => vec![instance.id.clone()],
                "attachment.device" => vec![ROOT_DEVICE.into()],
                "attachment.status" => vec!["attached".into()],
                "attachment.delete-on-termination" => vec!["true".into()],
                "availability-zone" => vec![instance.zone.clone()],
                "volume-id" => vec![volume.clone()],
                "volume-type" => vec!["gp3".into()],
                "status" => vec!["in-use".into()],
                "size" => vec![ROOT_VOLUME_GIB.to_string()],
                "encrypted" | "multi-attach-enabled" => vec!["false".into()],
                // The simulator tags no volume.
                _ => Vec::new(),
            })
        })
        .collect();
    let (page, next) = page(volumes, params, VOLUMES_PAGING)?;
    Ok(Box::new(move |xml| {
        xml.open("volumeSet");
        for (instance, volume) in page {
            let created = timestamp(instance.launch_time);
            xml.open("item");
            xml.leaf("volumeId", &volume);
            xml.leaf("size", &ROOT_VOLUME_GIB.to_string());
            xml.leaf("snapshotId", &derived_id("snap", &instance.image_id));
            xml.leaf("availabilityZone", &instance.zone);
            xml.leaf("status", "in-use");
            xml.leaf("createTime", &created);
            xml.open("attachmentSet");
            xml.open("item");
            xml.leaf("volumeId", &volume);
            xml.leaf("instanceId", &instance.id);
            xml.leaf("device", ROOT_DEVICE);
            xml.leaf("status", "attached");
            xml.leaf("attachTime", &created);
            xml.leaf("deleteOnTermination", "true");
            xml.close("item");
            xml.close("attachmentSet");
            xml.leaf("volumeType", "gp3");
            xml.leaf("iops", &GP3_IOPS.to_string());
            xml.leaf("throughput", &GP3_THROUGHPUT_MIBPS.to_string());
            xml.leaf("encrypted", "false");
            xml.leaf("multiAttachEnabled", "false");
            xml.close("item");
        }
        xml.close("volumeSet");
        next_token(xml, next);
    }))
}

/// DescribeVpcs: the region's default VPC, the only one the simulator has.
fn describe_vpcs<'w>(region: &str, params: &Params) -> Result<Body<'w>, ApiError> {
    let vpc = default_vpc_id(region);
    if let Some(unknown) = params.list("VpcId").into_iter().find(|id| *id != vpc) {
        return Err(ApiError::client("InvalidVpcID.NotFound", format!("The vpc ID '{unknown}' does not exist")));
    }
    let filters = known_filters(
        params,
        &["vpc-id", "is-default", "state", "owner-id", "cidr", "cidr-block-association.cidr-block", "dhcp-options-id"],
        true,
    )?;
    let dhcp_options = derived_id("dopt", region);
    let listed = matches_all(&filters, |filter| match filter {
        "vpc-id" => vec![vpc.clone()],
        "is-default" => vec!["true".into()],
        "state" => vec!["available".into()],
        "owner-id" => vec![OWNER_ID.into()],
        "cidr" | "cidr-block-association.cidr-block" => vec![DEFAULT_VPC_CIDR.into()],
        "dhcp-options-id" => vec![dhcp_options.clone()],
        // The default VPC has no tags.
        _ => Vec::new(),
    });
    let vpcs: Vec<String> = if listed { vec![vpc] } else { Vec::new() };
    let (page, next) = page(vpcs, params, VPCS_PAGING)?;
    let association = derived_id("vpc-cidr-assoc", region);
    Ok(Box::new(move |xml| {
        xml.open("vpcSet");
        for vpc in page {
            xml.open("item");
            xml.leaf("vpcId", &vpc);
            xml.leaf("ownerId", OWNER_ID);
            xml.leaf("state", "available");
            xml.leaf("cidrBlock", DEFAULT_VPC_CIDR);
            xml.open("cidrBlockAssociationSet");
            xml.open("item");
            xml.leaf("cidrBlock", DEFAULT_VPC_CIDR);
            xml.leaf("associationId", &association);
            xml.open("cidrBlockState");
            xml.leaf("state", "associated");
            xml.close("cidrBlockState");
            xml.close("item");
            xml.close("cidrBlockAssociationSet");
            xml.leaf("dhcpOptionsId", &dhcp_options);
            xml.leaf("instanceTenancy", "default");
            xml.leaf("isDefault", "true");
            xml.close("item");
        }
        xml.close("vpcSet");
        next_token(xml, next);
    }))
}

/// DescribeInstanceCreditSpecifications. Named instances report their
/// credit option, `standard` for types that do not burst (all the
/// simulator sells); unnamed, EC2 lists the instances running `unlimited`,
/// of which the simulator has none.
fn describe_credit_specifications<'w>(world: &'w World, region: &str, params: &Params) -> Result<Body<'w>, ApiError> {
    let ids = instance_ids(params, false)?;
    if !ids.is_empty() && params.get("MaxResults").is_some() {
        return Err(ApiError::client(
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    let filters = known_filters(params, &["instance-id"], false)?;
    let mut named = Vec::with_capacity(ids.len());
    for id in &ids {
        named.push(find_instance(world, region, id)?);
    }
    let listed: Vec<&Instance> = named.into_iter().filter(|i| matches_all(&filters, |_| vec![i.id.clone()])).collect();
    let (page, next) = page(listed, params, CREDIT_PAGING)?;
    Ok(Box::new(move |xml| {
        xml.open("instanceCreditSpecificationSet");
        for instance in page {
            xml.open("item");
            xml.leaf("instanceId", &instance.id);
            xml.leaf("cpuCredits", "standard");
            xml.close("item");
        }
        xml.close("instanceCreditSpecificationSet");
        next_token(xml, next);
    }))
}

/// The call's filters, each checked to be one this call knows (and
/// `tag:KEY`, `tag-key`, `tag-value` where the resource has tags).
fn known_filters(params: &Params, known: &[&str], tags: bool) -> Result<Vec<Filter>, ApiError> {
    let filters = filters(params)?;
    for filter in &filters {
        let tag_filter = filter.name.strip_prefix("tag:").is_some_and(|key| !key.is_empty())
            || filter.name == "tag-key"
            || filter.name == "tag-value";
        if !(known.contains(&filter.name.as_str()) || (tags && tag_filter)) {
            return Err(ApiError::invalid_value(format!("The filter '{}' is invalid", filter.name)));
        }
        if filter.values.is_empty() {
            return Err(ApiError::invalid_value(format!("The filter '{}' requires at least one value", filter.name)));
        }
    }
    Ok(filters)
}

/// Whether every filter has a pattern matching one of the values the
/// resource offers it.
fn matches_all(filters: &[Filter], values: impl Fn(&str) -> Vec<String>) -> bool {
    filters.iter().all(|filter| {
        values(&filter.name).iter().any(|value| filter.values.iter().any(|pattern| glob_matches(pattern, value)))
    })
}

/// An instance's values for `tag:KEY`, `tag-key` and `tag-value`.
fn tag_values(instance: &Instance, filter: &str) -> Vec<String> {
    match filter {
        "tag-key" => instance.tags.keys().cloned().collect(),
        "tag-value" => instance.tags.values().cloned().collect(),
        _ => filter.strip_prefix("tag:").and_then(|key| instance.tags.get(key)).into_iter().cloned().collect(),
    }
}

/// The region's instances a call may answer with, in launch order: those
/// an exact `id_filter` names, looked up one by one, or else all of them.
fn candidates<'w>(world: &'w World, region: &str, filters: &[Filter], id_filter: &str) -> Vec<&'w Instance> {
    let exact = |pattern: &String| !pattern.contains(['*', '?']);
    match filters.iter().find(|f| f.name == id_filter && f.values.iter().all(exact)) {
        Some(ids) => {
            let mut found: Vec<&Instance> = ids.values.iter().filter_map(|id| world.instance(region, id)).collect();
            found.sort_by_key(|i| i.seq);
            found.dedup_by_key(|i| i.seq);
            found
        }
        None => world.instances().filter(|i| i.region == region).collect(),
    }
}

/// One page of `items` after `NextToken`, as `paging` says.
fn page<T>(items: Vec<T>, params: &Params, paging: Paging) -> Result<(Vec<T>, Option<String>), ApiError> {
    let size = match params.optional_u32("MaxResults")? {
        Some(max) if !paging.accepted.contains(&max) => {
            return Err(ApiError::invalid_value(format!(
                "Value ( {max} ) for parameter maxResults is invalid. Expecting a value between {} and {}.",
                paging.accepted.start(),
                paging.largest
            )));
        }
        Some(max) => (max as usize).min(paging.largest),
        None => paging.unasked.unwrap_or(usize::MAX),
    };
    let start = match params.get("NextToken") {
        None => 0,
        Some(token) => token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|offset| offset.parse::<usize>().ok())
            .filter(|offset| *offset <= items.len())
            .ok_or_else(|| {
                ApiError::client("InvalidPaginationToken", "The specified pagination token is not valid or is expired.")
            })?,
    };
    let end = start.saturating_add(size).min(items.len());
    let next = (end < items.len()).then(|| format!("{TOKEN_PREFIX}{end}"));
    Ok((items.into_iter().skip(start).take(end - start).collect(), next))
}

fn next_token(xml: &mut XmlWriter, next: Option<String>) {
    if let Some(token) = next {
        xml.leaf("nextToken", &token);
    }
}

/// `<NAME><item>VALUE</item>…</NAME>`.
fn list(xml: &mut XmlWriter, name: &str, values: &[&str]) {
    xml.open(name);
    for value in values {
        xml.leaf("item", value);
    }
    xml.close(name);
}

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;
    use crate::sim::ec2::{DEFAULT_REGION, handle as ec2};
    use crate::sim::world::World;

    fn call(world: &mut World, body: &str) -> String {
        ec2(world, DEFAULT_REGION, body.as_bytes()).body
    }

    fn code(body: &str) -> &str {
        body.split("<Code>").nth(1).and_then(|rest| rest.split("</Code>").next()).unwrap_or("")
    }

    #[test]
    fn sim_reads_page_by_offset_and_refuse_what_ec2_refuses() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        call(&mut world, "Action=RunInstances&ImageId=a&InstanceType=p5.48xlarge&MinCount=7&MaxCount=7");
        let first = call(&mut world, "Action=DescribeVolumes&MaxResults=5");
        assert_eq!(first.matches("<volumeId>").count(), 10, "5 volumes, each named twice: {first}");
        assert!(first.contains("<nextToken>sim-offset-5</nextToken>"));
        let rest = call(&mut world, "Action=DescribeVolumes&MaxResults=5&NextToken=sim-offset-5");
        assert_eq!(rest.matches("<attachmentSet>").count(), 2);
        assert!(!rest.contains("<nextToken>"));
        let cases = [
            ("Action=DescribeVolumes&NextToken=sim-offset-99", "InvalidPaginationToken"),
            ("Action=DescribeVolumes&MaxResults=4", "InvalidParameterValue"),
            ("Action=DescribeVolumes&MaxResults=5&VolumeId.1=vol-00000000000000001", "InvalidParameterCombination"),
            ("Action=DescribeVolumes&VolumeId.1=vol-0zzzz", "InvalidVolume.NotFound"),
            ("Action=DescribeTags&Filter.1.Name=key", "InvalidParameterValue"),
            ("Action=DescribeInstanceTypes&MaxResults=101", "InvalidParameterValue"),
            ("Action=DescribeInstanceAttribute&Attribute=userData", "MissingParameter"),
            ("Action=DescribeInstanceAttribute&InstanceId=i-0123456789abcdef0", "MissingParameter"),
            ("Action=DescribeVpcs&VpcId.1=vpc-1", "InvalidVpcID.NotFound"),
        ];
        for (body, expected) in cases {
            assert_eq!(code(&call(&mut world, body)), expected, "{body}");
        }
        // Served pages of at most 500 volumes, whatever is asked.
        call(&mut world, "Action=RunInstances&ImageId=a&InstanceType=p5.48xlarge&MinCount=600&MaxCount=600");
        let big = call(&mut world, "Action=DescribeVolumes&MaxResults=1000");
        assert_eq!(big.matches("<attachmentSet>").count(), 500);
        assert_eq!(world.counters()["aws"]["DescribeVolumes"], 7);
    }

    /// EC2 names both A100s "A100" and tells them apart by memory; the
    /// simulator answered with the catalog's "A100-80GB".
    #[test]
    fn sim_instance_types_give_the_gpu_as_ec2_names_it() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let body = call(&mut world, "Action=DescribeInstanceTypes&InstanceType.1=p4de.24xlarge");
        assert!(body.contains("<name>A100</name>") && body.contains("<sizeInMiB>81920</sizeInMiB>"), "{body}");
        assert!(body.contains("<count>8</count>") && body.contains("<defaultVCpus>96</defaultVCpus>"), "{body}");
    }
}
