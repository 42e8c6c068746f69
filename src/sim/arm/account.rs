//! The ARM reads a preflight makes about a subscription, beside the
//! Microsoft.Compute scale sets of [`super`]: `ResourceGroups_Get`,
//! `Subnets_Get` (Microsoft.Network), `ResourceSkus_List` (which sizes a
//! location sells, with restrictions) and `VirtualMachineImages_{Get,List}`
//! (marketplace images per location); and the checks ARM makes on a scale
//! set's PUT: its resource group, image and subnet exist.

use super::{Query, at, list_json, ok, segments, string_at};
use crate::catalog::Catalog;
use crate::model::Cloud;
use crate::sim::account::AzureImage;
use crate::sim::vmss::ArmFault;
use crate::sim::world::World;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// One of the reads, from its path.
pub(super) enum Read {
    ResourceGroup { subscription: String, name: String },
    Subnet { subscription: String, resource_group: String, network: String, subnet: String },
    Identity { subscription: String, resource_group: String, name: String },
    Skus,
    ImageVersions { subscription: String, location: String, publisher: String, offer: String, sku: String },
    Image { subscription: String, location: String, publisher: String, offer: String, sku: String, version: String },
}

impl Read {
    /// The operation id ARM's spec gives the read, as counters count it.
    pub(super) fn action(&self) -> &'static str {
        match self {
            Read::ResourceGroup { .. } => "ResourceGroups_Get",
            Read::Subnet { .. } => "Subnets_Get",
            Read::Identity { .. } => "UserAssignedIdentities_Get",
            Read::Skus => "ResourceSkus_List",
            Read::ImageVersions { .. } => "VirtualMachineImages_List",
            Read::Image { .. } => "VirtualMachineImages_Get",
        }
    }
}

/// The read a path names, if it is one of these (compared case-insensitively, as ARM does).
pub(super) fn route(path: &str) -> Option<Read> {
    let s = segments(path);
    let is = |index: usize, literal: &str| s.get(index).is_some_and(|v| v.eq_ignore_ascii_case(literal));
    if !is(0, "subscriptions") || s.len() < 4 {
        return None;
    }
    let subscription = s[1].clone();
    if is(2, "resourceGroups") && s.len() == 4 {
        return Some(Read::ResourceGroup { subscription, name: s[3].clone() });
    }
    if is(2, "resourceGroups")
        && is(4, "providers")
        && is(5, "Microsoft.Network")
        && is(6, "virtualNetworks")
        && is(8, "subnets")
        && s.len() == 10
    {
        return Some(Read::Subnet {
            subscription,
            resource_group: s[3].clone(),
            network: s[7].clone(),
            subnet: s[9].clone(),
        });
    }
    if is(2, "resourceGroups")
        && is(4, "providers")
        && is(5, "Microsoft.ManagedIdentity")
        && is(6, "userAssignedIdentities")
        && s.len() == 8
    {
        return Some(Read::Identity { subscription, resource_group: s[3].clone(), name: s[7].clone() });
    }
    if !(is(2, "providers") && is(3, "Microsoft.Compute")) {
        return None;
    }
    if is(4, "skus") && s.len() == 5 {
        return Some(Read::Skus);
    }
    let image_path = is(4, "locations")
        && is(6, "publishers")
        && is(8, "artifacttypes")
        && is(9, "vmimage")
        && is(10, "offers")
        && is(12, "skus")
        && is(14, "versions");
    let (location, publisher, offer, sku) =
        (s.get(5)?.clone(), s.get(7)?.clone(), s.get(11)?.clone(), s.get(13)?.clone());
    match s.len() {
        15 if image_path => Some(Read::ImageVersions { subscription, location, publisher, offer, sku }),
        16 if image_path => Some(Read::Image { subscription, location, publisher, offer, sku, version: s[15].clone() }),
        _ => None,
    }
}

fn resource_group_not_found(name: &str) -> ArmFault {
    ArmFault::new(404, "ResourceGroupNotFound", format!("Resource group '{name}' could not be found."))
}

/// Refuses a request under a resource group the subscription does not have.
pub(super) fn check_resource_group(world: &World, name: &str) -> Result<(), ArmFault> {
    match world.account.has_resource_group(name) {
        true => Ok(()),
        false => Err(resource_group_not_found(name)),
    }
}

/// Answers a read.
pub(super) fn answer(world: &World, read: Read, query: &Query) -> Result<super::ArmResponse, ArmFault> {
    let body = match read {
        Read::ResourceGroup { subscription, name } => {
            check_resource_group(world, &name)?;
            json!({
                "id": format!("/subscriptions/{subscription}/resourceGroups/{name}"),
                "name": name,
                "type": "Microsoft.Resources/resourceGroups",
                "location": "eastus",
                "properties": { "provisioningState": "Succeeded" },
            })
        }
        Read::Subnet { subscription, resource_group, network, subnet } => {
            check_resource_group(world, &resource_group)?;
            if !world.account.has_subnet(&resource_group, &network, &subnet) {
                return Err(ArmFault::new(
                    404,
                    "NotFound",
                    format!(
                        "Resource /subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Network/virtualNetworks/{network}/subnets/{subnet} not found."
                    ),
                ));
            }
            json!({
                "id": format!("/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Network/virtualNetworks/{network}/subnets/{subnet}"),
                "name": subnet,
                "type": "Microsoft.Network/virtualNetworks/subnets",
                "properties": { "addressPrefix": "10.0.0.0/16", "provisioningState": "Succeeded" },
            })
        }
        Read::Identity { subscription, resource_group, name } => {
            check_resource_group(world, &resource_group)?;
            let id = format!(
                "/subscriptions/{subscription}/resourcegroups/{resource_group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
            );
            if !world.account.has_identity(&resource_group, &name) {
                return Err(ArmFault::new(
                    404,
                    "ResourceNotFound",
                    format!(
                        "The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/{name}' under resource group '{resource_group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
                    ),
                ));
            }
            let hash = |salt: u64| {
                id.to_ascii_lowercase().bytes().fold(salt, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
            };
            let principal = uuid::Uuid::from_u64_pair(hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
            json!({
                "id": id,
                "name": name,
                "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
                "location": "eastus",
                "properties": {
                    "tenantId": "00000000-0000-0000-0000-000000000000",
                    "principalId": principal.to_string(),
                    "clientId": principal.to_string(),
                },
            })
        }
        Read::Skus => skus(world, query.get("$filter"))?,
        Read::ImageVersions { subscription, location, publisher, offer, sku } => {
            let wanted = AzureImage { publisher: &publisher, offer: &offer, sku: &sku, version: "latest" };
            let versions = world.account.azure_image_versions(&location, &wanted);
            let path = image_path(&subscription, &location, &publisher, &offer, &sku);
            Value::Array(
                versions
                    .iter()
                    .map(|v| json!({ "id": format!("{path}/Versions/{v}"), "name": v, "location": location }))
                    .collect(),
            )
        }
        Read::Image { subscription, location, publisher, offer, sku, version } => {
            let wanted = AzureImage { publisher: &publisher, offer: &offer, sku: &sku, version: &version };
            if version.eq_ignore_ascii_case("latest")
                || world.account.azure_image_versions(&location, &wanted).is_empty()
            {
                return Err(ArmFault::new(404, "NotFound", "Artifact: VMImage was not found."));
            }
            let path = image_path(&subscription, &location, &publisher, &offer, &sku);
            json!({
                "id": format!("{path}/Versions/{version}"),
                "name": version,
                "location": location,
                "properties": { "osImage": { "operatingSystem": "Linux" }, "hyperVGeneration": "V2", "architecture": "x64" },
            })
        }
    };
    Ok(ok(StatusCode::OK, body))
}

fn image_path(subscription: &str, location: &str, publisher: &str, offer: &str, sku: &str) -> String {
    format!(
        "/Subscriptions/{subscription}/Providers/Microsoft.Compute/Locations/{location}/Publishers/{publisher}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}"
    )
}

/// `location eq 'eastus'`, the one filter ResourceSkus_List takes.
fn location_filter(filter: &str) -> Result<String, ArmFault> {
    filter
        .trim()
        .strip_prefix("location eq ")
        .and_then(|v| v.trim().strip_prefix('\'')?.strip_suffix('\''))
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| {
            ArmFault::invalid(format!("The $filter '{filter}' is not supported; use location eq '<location>'."))
        })
}

/// Every VM size each location sells, as ARM lists resource SKUs; a size
/// the world does not sell in a location is not listed for it, and one the
/// scenario marks `restricted` is listed with the subscription's location
/// restriction (`NotAvailableForSubscription`), as Azure does.
fn skus(world: &World, filter: Option<&str>) -> Result<Value, ArmFault> {
    let location = filter.map(location_filter).transpose()?;
    let value: Vec<Value> = world
        .pools()
        .iter()
        .filter(|p| p.cloud == Cloud::Azure && location.as_deref().is_none_or(|l| l == p.region))
        .map(|p| {
            let size = p.instance_type.strip_prefix("Standard_").unwrap_or(&p.instance_type);
            let capabilities = match Catalog::builtin_ref().instance_type(Cloud::Azure, &p.instance_type) {
                Some(shape) => json!([
                    { "name": "vCPUs", "value": shape.vcpus.to_string() },
                    { "name": "GPUs", "value": shape.gpus.to_string() },
                ]),
                None => json!([]),
            };
            let restrictions = match p.restricted {
                true => json!([{
                    "type": "Location",
                    "values": [p.region],
                    "restrictionInfo": { "locations": [p.region] },
                    "reasonCode": "NotAvailableForSubscription",
                }]),
                false => json!([]),
            };
            json!({
                "resourceType": "virtualMachines",
                "name": p.instance_type,
                "tier": "Standard",
                "size": size,
                "family": crate::catalog::azure_vcpu_family(&p.instance_type),
                "locations": [p.region],
                "locationInfo": [{ "location": p.region, "zones": [] }],
                "capabilities": capabilities,
                "restrictions": restrictions,
            })
        })
        .collect();
    Ok(list_json(value, None))
}

/// What ARM checks of a scale set's PUT before it accepts it: a marketplace
/// image that exists in the location (`InvalidParameter` on the image
/// reference), and subnets that exist (`InvalidResourceReference`).
pub(super) fn check_scale_set(world: &World, body: &Value, scale_set_id: &str) -> Result<(), ArmFault> {
    let location = string_at(body, "/location")?.unwrap_or_default().to_ascii_lowercase().replace(' ', "");
    let profile = "/properties/virtualMachineProfile";
    if let Some(image) = at(body, &format!("{profile}/storageProfile/imageReference"))
        && string_at(image, "/id")?.is_none()
    {
        let part = |name: &str| string_at(image, &format!("/{name}")).map(Option::unwrap_or_default);
        let (publisher, offer, sku, version) = (part("publisher")?, part("offer")?, part("sku")?, part("version")?);
        let wanted = AzureImage { publisher: &publisher, offer: &offer, sku: &sku, version: &version };
        let disk_gb = at(body, &format!("{profile}/storageProfile/osDisk/diskSizeGB")).and_then(Value::as_i64);
        let image_gb = world.account.azure_image_gb(&location, &wanted);
        if let Some(size) = disk_gb.filter(|size| *size < i64::from(image_gb)) {
            return Err(ArmFault::new(
                409,
                "OperationNotAllowed",
                format!(
                    "The specified disk size {size} GB is smaller than the size of the corresponding disk in the VM image: {image_gb} GB. This is not allowed. Please choose equal or greater size or do not specify an explicit size."
                ),
            )
            .at("osDisk.diskSizeGB"));
        }
        if world.account.azure_image_versions(&location, &wanted).is_empty() {
            let mut fault = ArmFault::invalid(format!(
                "The following list of images referenced from the deployment template are not found: Publisher: {publisher}, Offer: {offer}, Sku: {sku}, Version: {version}. Please refer to https://docs.microsoft.com/en-us/azure/virtual-machines/windows/cli-ps-findimage for more information on finding available images."
            ));
            fault.details.push(("InvalidParameter".into(), "imageReference".into()));
            return Err(fault);
        }
    }
    check_identities(world, body, scale_set_id)?;
    let nics = at(body, &format!("{profile}/networkProfile/networkInterfaceConfigurations"));
    for nic in nics.and_then(Value::as_array).into_iter().flatten() {
        let configs = at(nic, "/properties/ipConfigurations").and_then(Value::as_array);
        for config in configs.into_iter().flatten() {
            let Some(subnet) = string_at(config, "/properties/subnet/id")? else { continue };
            if !subnet_exists(world, &subnet) {
                return Err(ArmFault::new(
                    400,
                    "InvalidResourceReference",
                    format!(
                        "Resource {subnet} referenced by resource {scale_set_id} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The user-assigned identities a PUT names must exist; ARM reports one
/// that does not as a failed identity operation.
fn check_identities(world: &World, body: &Value, resource_id: &str) -> Result<(), ArmFault> {
    let Some(identities) = at(body, "/identity/userAssignedIdentities").and_then(Value::as_object) else {
        return Ok(());
    };
    for id in identities.keys() {
        let exists = match route(id) {
            Some(Read::Identity { resource_group, name, .. }) => world.account.has_identity(&resource_group, &name),
            _ => false,
        };
        if !exists {
            let inner = format!(r#"{{"error":{{"code":"NotFound","message":"Resource '{id}' was not found."}}}}"#);
            return Err(ArmFault::new(
                400,
                "FailedIdentityOperation",
                format!(
                    "Identity operation for resource '{resource_id}' failed with error 'Failed to perform resource identity operation. Status: 'NotFound'. Response: '{inner}'.'."
                ),
            ));
        }
    }
    Ok(())
}

/// A subnet id: `/subscriptions/S/resourceGroups/RG/providers/Microsoft.Network/virtualNetworks/VNET/subnets/NAME`.
fn subnet_exists(world: &World, id: &str) -> bool {
    match route(id) {
        Some(Read::Subnet { resource_group, network, subnet, .. }) => {
            world.account.has_subnet(&resource_group, &network, &subnet)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;
    use crate::sim::arm::{ArmRequest, handle};
    use crate::sim::scenario::Scenario;
    use crate::sim::world::World;
    use axum::http::{Method, StatusCode};

    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000000";

    fn world() -> World {
        let text = "[[image]]\ncloud = \"azure\"\nregion = \"eastus\"\nid = \"Canonical:ubuntu:22_04-lts-gen2:latest\"\n\
                    [networks]\nazure_resource_groups = [\"ml\"]\nazure_subnets = [\"ml/net/default\"]\n";
        let scenario = Scenario::parse(text, std::path::Path::new("s.toml")).unwrap();
        World::new(Some(&scenario), &Catalog::builtin()).unwrap()
    }

    fn call(world: &mut World, method: Method, path: &str, query: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let request = ArmRequest {
            method: &method,
            path,
            query: Some(query),
            authorization: Some("Bearer t"),
            base_url: "http://127.0.0.1:1",
            body: body.as_bytes(),
        };
        let response = handle(world, request);
        (response.status, response.body.unwrap_or_default())
    }

    fn get(world: &mut World, path: &str, query: &str) -> (StatusCode, serde_json::Value) {
        call(world, Method::GET, &format!("{SUB}{path}"), query, "")
    }

    #[test]
    fn sim_arm_reads_find_resource_groups_subnets_skus_and_images() {
        let mut world = world();
        let v = "api-version=2024-07-01";
        assert_eq!(get(&mut world, "/resourcegroups/ML", v).0, StatusCode::OK);
        let (status, body) = get(&mut world, "/resourcegroups/other", v);
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("ResourceGroupNotFound")));
        let subnet = "/resourceGroups/ml/providers/Microsoft.Network/virtualNetworks/net/subnets/";
        assert_eq!(get(&mut world, &format!("{subnet}default"), v).0, StatusCode::OK);
        assert_eq!(get(&mut world, &format!("{subnet}gpu"), v).0, StatusCode::NOT_FOUND);
        let (status, skus) =
            get(&mut world, "/providers/Microsoft.Compute/skus", &format!("{v}&$filter=location eq 'eastus'"));
        assert_eq!(status, StatusCode::OK);
        let names: Vec<&str> = skus["value"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
        assert!(names.contains(&"Standard_ND96isr_H100_v5"), "{names:?}");
        let image = "/providers/Microsoft.Compute/locations/eastus/publishers/Canonical/artifacttypes/vmimage/offers/ubuntu/skus/22_04-lts-gen2/versions";
        let (status, versions) = get(&mut world, image, v);
        assert_eq!((status, versions[0]["name"].as_str()), (StatusCode::OK, Some("1.0.0")));
        assert_eq!(get(&mut world, &format!("{image}/1.0.0"), v).0, StatusCode::OK);
        let (_, elsewhere) = get(&mut world, &image.replace("eastus", "westus3"), v);
        assert_eq!(elsewhere, serde_json::json!([]));
        // A scale set list in a resource group that does not exist.
        let (status, body) =
            get(&mut world, "/resourceGroups/other/providers/Microsoft.Compute/virtualMachineScaleSets", v);
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("ResourceGroupNotFound")));
        assert_eq!(world.counters()["azure"]["ResourceGroups_Get"], 2);
    }

    #[test]
    fn sim_arm_skus_give_gpus_and_vcpus_and_the_subscriptions_restrictions() {
        let text = "[[offering]]\ncloud = \"azure\"\nregion = \"westeurope\"\ninstance_type = \"Standard_ND96isr_H100_v5\"\n\
                    [[offering]]\ncloud = \"azure\"\nregion = \"northeurope\"\ninstance_type = \"Standard_ND96isr_H100_v5\"\nrestricted = true\n";
        let scenario = Scenario::parse(text, std::path::Path::new("s.toml")).unwrap();
        let mut world = World::new(Some(&scenario), &Catalog::builtin()).unwrap();
        let (status, skus) = get(&mut world, "/providers/Microsoft.Compute/skus", "api-version=2024-07-01");
        assert_eq!(status, StatusCode::OK);
        let sku = |location: &str| {
            skus["value"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == "Standard_ND96isr_H100_v5" && s["locations"][0] == location)
                .unwrap_or_else(|| panic!("no H100 SKU in {location}: {skus}"))
                .clone()
        };
        let west = sku("westeurope");
        assert_eq!(west["restrictions"], serde_json::json!([]));
        assert_eq!(west["family"], "standardNDSH100v5Family");
        assert_eq!(
            west["capabilities"],
            serde_json::json!([{ "name": "vCPUs", "value": "96" }, { "name": "GPUs", "value": "8" }])
        );
        let north = sku("northeurope");
        assert_eq!(north["restrictions"][0]["reasonCode"], "NotAvailableForSubscription");
        assert_eq!(north["restrictions"][0]["type"], "Location");
        assert_eq!(north["restrictions"][0]["values"], serde_json::json!(["northeurope"]));
        // A scale set of a restricted size is refused up front.
        let put = serde_json::json!({
            "location": "northeurope",
            "sku": { "name": "Standard_ND96isr_H100_v5", "capacity": 0 },
            "properties": { "orchestrationMode": "Flexible", "platformFaultDomainCount": 1 },
        });
        let set = "/resourceGroups/gpufleet/providers/Microsoft.Compute/virtualMachineScaleSets/s";
        let (status, body) =
            call(&mut world, Method::PUT, &format!("{SUB}{set}"), "api-version=2024-07-01", &put.to_string());
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("SkuNotAvailable")), "{body}");
        let refused = Scenario::parse(
            "[[offering]]\ncloud = \"aws\"\nregion = \"us-east-1\"\ninstance_type = \"p5.48xlarge\"\nrestricted = true\n",
            std::path::Path::new("s.toml"),
        );
        assert!(refused.unwrap_err().to_string().contains("`restricted` is Azure's"));
    }

    #[test]
    fn sim_arm_scale_set_put_refuses_missing_fields_identities_small_disks_and_unknown_api_versions() {
        let text = "[[image]]\ncloud = \"azure\"\nregion = \"eastus\"\nid = \"Canonical:ubuntu:22_04-lts-gen2:latest\"\nsize_gb = 64\n\
                    [networks]\nazure_resource_groups = [\"ml\"]\nazure_subnets = [\"ml/net/default\"]\nazure_identities = [\"ml/gpu-node\"]\n";
        let scenario = Scenario::parse(text, std::path::Path::new("s.toml")).unwrap();
        let mut world = World::new(Some(&scenario), &Catalog::builtin()).unwrap();
        let identity = |name: &str| {
            format!("{SUB}/resourceGroups/ml/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}")
        };
        let body = |identity: &str, disk: u32| {
            serde_json::json!({
                "location": "eastus",
                "sku": { "name": "Standard_ND96isr_H100_v5", "capacity": 1 },
                "identity": { "type": "UserAssigned", "userAssignedIdentities": { identity: {} } },
                "properties": {
                    "orchestrationMode": "Flexible",
                    "platformFaultDomainCount": 1,
                    "virtualMachineProfile": {
                        "osProfile": { "computerNamePrefix": "gf", "adminUsername": "gpufleet" },
                        "storageProfile": {
                            "imageReference": { "publisher": "Canonical", "offer": "ubuntu", "sku": "22_04-lts-gen2", "version": "latest" },
                            "osDisk": { "createOption": "FromImage", "diskSizeGB": disk },
                        },
                        "networkProfile": {
                            "networkApiVersion": "2020-11-01",
                            "networkInterfaceConfigurations": [{ "name": "nic", "properties": { "primary": true, "ipConfigurations": [{
                                "name": "ip", "properties": { "subnet": { "id": format!("{SUB}/resourceGroups/ml/providers/Microsoft.Network/virtualNetworks/net/subnets/default") } },
                            }] } }],
                        },
                    },
                },
            })
        };
        let set = format!("{SUB}/resourceGroups/ml/providers/Microsoft.Compute/virtualMachineScaleSets/gf");
        let v = "api-version=2024-07-01";
        let mut without = |pointer: &str| {
            let mut b = body(&identity("gpu-node"), 100);
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            b.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key);
            call(&mut world, Method::PUT, &set, v, &b.to_string())
        };
        for (pointer, target) in [
            ("/properties/platformFaultDomainCount", "platformFaultDomainCount"),
            ("/properties/virtualMachineProfile/osProfile", "osProfile"),
            (
                "/properties/virtualMachineProfile/networkProfile/networkInterfaceConfigurations",
                "networkProfile.networkInterfaceConfigurations",
            ),
            ("/properties/virtualMachineProfile", "virtualMachineProfile"),
        ] {
            let (status, error) = without(pointer);
            assert_eq!(
                (status, error["error"]["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("InvalidParameter")),
                "{error}"
            );
            assert_eq!(error["error"]["target"], target, "{error}");
        }
        let (status, error) = call(&mut world, Method::PUT, &set, v, &body(&identity("other"), 100).to_string());
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("FailedIdentityOperation")),
            "{error}"
        );
        let (status, error) = call(&mut world, Method::PUT, &set, v, &body(&identity("gpu-node"), 30).to_string());
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("OperationNotAllowed")),
            "{error}"
        );
        assert_eq!(error["error"]["target"], "osDisk.diskSizeGB");
        for (version, code) in
            [("api-version=1", "InvalidApiVersionParameter"), ("api-version=2019-01-01", "NoRegisteredProviderFound")]
        {
            let (status, error) =
                call(&mut world, Method::PUT, &set, version, &body(&identity("gpu-node"), 100).to_string());
            assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{error}");
        }
        assert_eq!(get(&mut world, &identity("gpu-node").replace(SUB, ""), v).0, StatusCode::OK);
        assert_eq!(get(&mut world, &identity("other").replace(SUB, ""), v).0, StatusCode::NOT_FOUND);
        let (status, _) = call(&mut world, Method::PUT, &set, v, &body(&identity("gpu-node"), 100).to_string());
        assert_eq!(status, StatusCode::CREATED);
    }
}
