//! The Compute Engine reads a preflight makes about a project, beside the
//! instance calls of [`super`]: `machineTypes.get` (is the type sold in the
//! zone), `images.get` and `images.getFromFamily`, `networks.get`; the
//! catalog reads of `gpufleet catalog refresh` (`machineTypes.aggregatedList`,
//! `acceleratorTypes.aggregatedList`); and the
//! same checks on a create, which GCE answers with a 404 before any
//! operation starts when the image or the network does not exist.

use super::{BASE_URL, HttpError, admit, scoped_items, zone_url};
use crate::catalog::Catalog;
use crate::catalog::mapping::gce_accelerator_type;
use crate::model::Cloud;
use crate::sim::gce_world::MAX_RESULTS;
use crate::sim::gce_world::{InstanceSpec, region_of_zone};
use crate::sim::paging::Cursor;
use crate::sim::world::World;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// A stable uint64 id (sent as a string, as GCE does) for a named resource.
fn id_of(name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    hash.to_string()
}

/// Serves the reads; `None` when the path is none of them.
pub(super) fn route(
    world: &mut World,
    segments: &[&str],
    query: &BTreeMap<String, String>,
) -> Option<Result<(Value, bool), HttpError>> {
    let answer = match segments {
        ["projects", project, "zones", zone, "machineTypes", name] => {
            admit(world, "machineTypes.get").and_then(|()| machine_type(world, project, zone, name))
        }
        ["projects", project, "aggregated", "machineTypes"] => admit(world, "machineTypes.aggregatedList")
            .and_then(|()| aggregated(world, project, query, Listed::MachineTypes)),
        ["projects", project, "aggregated", "acceleratorTypes"] => admit(world, "acceleratorTypes.aggregatedList")
            .and_then(|()| aggregated(world, project, query, Listed::AcceleratorTypes)),
        ["projects", project, "global", "images", "family", family] => {
            admit(world, "images.getFromFamily").and_then(|()| image(world, project, family, true))
        }
        ["projects", project, "global", "images", name] => {
            admit(world, "images.get").and_then(|()| image(world, project, name, false))
        }
        ["projects", project, "global", "networks", name] => {
            admit(world, "networks.get").and_then(|()| network(world, project, name))
        }
        ["projects", project, "regions", region, "subnetworks", name] => {
            admit(world, "subnetworks.get").and_then(|()| subnetwork(world, project, region, name))
        }
        _ => return None,
    };
    Some(answer.map(|body| (body, false)))
}

fn machine_type(world: &World, project: &str, zone: &str, name: &str) -> Result<Value, HttpError> {
    let sold = world.pools().iter().any(|p| p.cloud == Cloud::Gcp && p.zone == *zone && p.instance_type == *name);
    if !sold {
        return Err(HttpError::not_found(&format!("projects/{project}/zones/{zone}/machineTypes/{name}")));
    }
    Ok(machine_type_json(project, zone, name))
}

/// A machine type as the discovery document's `MachineType`, with the
/// GPUs the built-in catalog gives it (`accelerators`) and its vCPUs.
fn machine_type_json(project: &str, zone: &str, name: &str) -> Value {
    let mut body = json!({
        "kind": "compute#machineType",
        "id": id_of(&format!("{zone}/{name}")),
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
        "name": name,
        "description": name,
        "zone": zone,
        "isSharedCpu": false,
        "selfLink": format!("{}/machineTypes/{name}", zone_url(project, zone)),
    });
    if let Some(shape) = Catalog::builtin_ref().instance_type(Cloud::Gcp, name) {
        body["guestCpus"] = json!(shape.vcpus);
        if let Some(accelerator) = gce_accelerator_type(name, &shape.gpu) {
            body["accelerators"] =
                json!([{ "guestAcceleratorType": accelerator, "guestAcceleratorCount": shape.gpus }]);
        }
    }
    body
}

/// An accelerator type of a zone, as the discovery document's `AcceleratorType`.
fn accelerator_type_json(project: &str, zone: &str, name: &str, gpu: &str, most: u32) -> Value {
    json!({
        "kind": "compute#acceleratorType",
        "id": id_of(&format!("{zone}/{name}")),
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
        "name": name,
        "description": format!("NVIDIA {gpu}"),
        "zone": zone_url(project, zone),
        "selfLink": format!("{}/acceleratorTypes/{name}", zone_url(project, zone)),
        "maximumCardsPerInstance": most,
    })
}

/// What an aggregatedList lists.
#[derive(Clone, Copy)]
enum Listed {
    MachineTypes,
    AcceleratorTypes,
}

/// Page tokens of the type lists: a [`Cursor`] over the items' positions.
const OFFSET_TOKEN: &str = "sim-gce-offset-";

/// `machineTypes.aggregatedList` / `acceleratorTypes.aggregatedList`: what
/// every zone of the world sells (the machine types of its pools, the
/// accelerators they carry), at most `maxResults` (at most 500) items a
/// page, short and empty pages as the world's paging says, every
/// zone a scope of each page (with `NO_RESULTS_ON_PAGE` when it has none there).
fn aggregated(
    world: &World,
    project: &str,
    query: &BTreeMap<String, String>,
    listed: Listed,
) -> Result<Value, HttpError> {
    let max_results = match query.get("maxResults").map(|n| n.parse::<u32>()) {
        None => MAX_RESULTS,
        Some(Ok(n)) if n <= MAX_RESULTS => n.max(1),
        Some(_) => {
            return Err(HttpError::invalid(format!(
                "Invalid value for field 'maxResults': '{}'. Must be less than or equal to {MAX_RESULTS}",
                query["maxResults"]
            )));
        }
    } as usize;
    let cursor = match query.get("pageToken").map(String::as_str) {
        None | Some("") => Cursor::default(),
        Some(token) => token
            .strip_prefix(OFFSET_TOKEN)
            .and_then(Cursor::parse)
            .ok_or_else(|| HttpError::invalid(format!("Invalid value for field 'pageToken': '{token}'.")))?,
    };
    let mut all: BTreeSet<(&str, String)> = BTreeSet::new();
    let mut accelerators: BTreeMap<(&str, String), (String, u32)> = BTreeMap::new();
    for pool in world.pools().iter().filter(|p| p.cloud == Cloud::Gcp) {
        match listed {
            Listed::MachineTypes => {
                all.insert((pool.zone.as_str(), pool.instance_type.clone()));
            }
            Listed::AcceleratorTypes => {
                let Some(shape) = Catalog::builtin_ref().instance_type(Cloud::Gcp, &pool.instance_type) else {
                    continue;
                };
                let Some(name) = gce_accelerator_type(&pool.instance_type, &shape.gpu) else { continue };
                let most = accelerators.entry((pool.zone.as_str(), name.to_string())).or_insert((shape.gpu.clone(), 0));
                most.1 = most.1.max(shape.gpus);
                all.insert((pool.zone.as_str(), name.to_string()));
            }
        }
    }
    let mut by_zone: BTreeMap<String, Vec<Value>> =
        world.gce_zones().into_iter().map(|zone| (format!("zones/{zone}"), Vec::new())).collect();
    // Items by position from 1, paged as the world pages (short and empty pages included).
    let positioned = (1u64..).zip(&all).filter(|(position, _)| *position > cursor.after);
    let (page, next) = world.paging.page(cursor, max_results, positioned);
    for (zone, name) in page {
        let item = match listed {
            Listed::MachineTypes => machine_type_json(project, zone, name),
            Listed::AcceleratorTypes => {
                let (gpu, most) = &accelerators[&(*zone, name.clone())];
                accelerator_type_json(project, zone, name, gpu, *most)
            }
        };
        by_zone.entry(format!("zones/{zone}")).or_default().push(item);
    }
    let (kind, field, path) = match listed {
        Listed::MachineTypes => ("compute#machineTypeAggregatedList", "machineTypes", "machineTypes"),
        Listed::AcceleratorTypes => ("compute#acceleratorTypeAggregatedList", "acceleratorTypes", "acceleratorTypes"),
    };
    let mut body = json!({
        "kind": kind,
        "id": format!("projects/{project}/aggregated/{path}"),
        "selfLink": format!("{BASE_URL}/projects/{project}/aggregated/{path}"),
        "items": scoped_items(by_zone, field),
    });
    if let Some(next) = next {
        body["nextPageToken"] = json!(format!("{OFFSET_TOKEN}{}", next.token()));
    }
    Ok(body)
}

fn image(world: &World, project: &str, name: &str, family: bool) -> Result<Value, HttpError> {
    let path = match family {
        true => format!("projects/{project}/global/images/family/{name}"),
        false => format!("projects/{project}/global/images/{name}"),
    };
    if !world.account.has_gce_image(&path) {
        return Err(HttpError::not_found(&path));
    }
    // The image a family resolves to is its newest; the simulator names it after the family.
    let image_name = if family { format!("{name}-v1") } else { name.to_string() };
    let mut body = json!({
        "kind": "compute#image",
        "id": id_of(&path),
        "creationTimestamp": "2026-01-01T00:00:00.000-08:00",
        "name": image_name,
        "selfLink": format!("{BASE_URL}/projects/{project}/global/images/{image_name}"),
        "status": "READY",
        "sourceType": "RAW",
        "diskSizeGb": world.account.gce_image_gb(&path).to_string(),
    });
    if family {
        body["family"] = json!(name);
    }
    Ok(body)
}

fn network(world: &World, project: &str, name: &str) -> Result<Value, HttpError> {
    if !world.account.has_gce_network(name) {
        return Err(HttpError::not_found(&format!("projects/{project}/global/networks/{name}")));
    }
    Ok(json!({
        "kind": "compute#network",
        "id": id_of(&format!("{project}/{name}")),
        "creationTimestamp": "2026-01-01T00:00:00.000-08:00",
        "name": name,
        "selfLink": format!("{BASE_URL}/projects/{project}/global/networks/{name}"),
        "autoCreateSubnetworks": true,
        "routingConfig": { "routingMode": "REGIONAL" },
    }))
}

fn subnetwork(world: &World, project: &str, region: &str, name: &str) -> Result<Value, HttpError> {
    if !world.account.has_gce_subnetwork(region, name) {
        return Err(HttpError::not_found(&format!("projects/{project}/regions/{region}/subnetworks/{name}")));
    }
    Ok(json!({
        "kind": "compute#subnetwork",
        "id": id_of(&format!("{project}/{region}/{name}")),
        "creationTimestamp": "2026-01-01T00:00:00.000-08:00",
        "name": name,
        "region": format!("{BASE_URL}/projects/{project}/regions/{region}"),
        "ipCidrRange": "10.128.0.0/20",
        "selfLink": format!("{BASE_URL}/projects/{project}/regions/{region}/subnetworks/{name}"),
    }))
}

/// One network interface of a create: its network and subnetwork paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub network: String,
    pub subnetwork: Option<String>,
}

/// A service account the instances run as, with its OAuth scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceAccountSpec {
    pub email: Option<String>,
    pub scopes: Vec<String>,
}

/// What GCE checks before it starts a create's operation: the boot image,
/// every network and subnetwork (404 naming the resource), the service
/// account (400 `invalid` on its field) exist, and the boot disk is no
/// smaller than its image (400 `invalid` on `diskSizeGb`).
pub(super) fn admit_create(
    world: &World,
    project: &str,
    zone: &str,
    spec: &InstanceSpec,
    field: &str,
) -> Result<(), HttpError> {
    if let Some(image) = spec.source_image.as_deref()
        && !world.account.has_gce_image(image)
    {
        return Err(HttpError::not_found(image.find("projects/").map_or(image, |start| &image[start..])));
    }
    let region = region_of_zone(zone);
    for interface in &spec.networks {
        let network = &interface.network;
        let name = network.rsplit('/').next().unwrap_or(network);
        if !world.account.has_gce_network(name) {
            return Err(HttpError::not_found(&format!("projects/{project}/global/networks/{name}")));
        }
        if let Some(subnetwork) = &interface.subnetwork {
            let name = subnetwork.rsplit('/').next().unwrap_or(subnetwork);
            let in_region = subnetwork.split('/').skip_while(|s| *s != "regions").nth(1).unwrap_or(region);
            if in_region != region || !world.account.has_gce_subnetwork(region, name) {
                return Err(HttpError::not_found(&format!(
                    "projects/{project}/regions/{in_region}/subnetworks/{name}"
                )));
            }
        }
    }
    for (index, account) in spec.service_accounts.iter().enumerate() {
        let email = account.email.as_deref().unwrap_or("default");
        if email != "default" && !world.account.has_service_account(email) {
            return Err(HttpError::invalid(format!(
                "Invalid value for field '{field}.serviceAccounts[{index}].email': '{email}'. The service account '{email}' does not exist."
            )));
        }
    }
    if let (Some(size), Some(image)) = (spec.disk_size_gb, spec.source_image.as_deref()) {
        let image_gb = world.account.gce_image_gb(image);
        if size < i64::from(image_gb) {
            return Err(HttpError::invalid(format!(
                "Invalid value for field '{field}.disks[0].initializeParams.diskSizeGb': '{size}'. Requested disk size cannot be smaller than the image size ({image_gb} GB)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;
    use crate::sim::scenario::Scenario;
    use crate::sim::world::World;
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    fn world() -> World {
        let text = "[[image]]\ncloud = \"gcp\"\nid = \"projects/ml/global/images/family/trainer\"\n\
                    [networks]\ngcp_networks = [\"default\"]\n";
        let scenario = Scenario::parse(text, std::path::Path::new("s.toml")).unwrap();
        World::new(Some(&scenario), &Catalog::builtin()).unwrap()
    }

    fn get(world: &mut World, path: &str) -> (StatusCode, serde_json::Value) {
        let response = super::super::handle(world, &Method::GET, path, "", b"");
        (response.status, response.body)
    }

    #[test]
    fn sim_gce_reads_find_what_the_project_has_and_404_the_rest() {
        let mut world = world();
        let (status, body) = get(&mut world, "projects/p/zones/us-central1-a/machineTypes/a3-highgpu-8g");
        assert_eq!((status, body["name"].as_str()), (StatusCode::OK, Some("a3-highgpu-8g")), "{body}");
        let (status, _) = get(&mut world, "projects/p/zones/us-central1-a/machineTypes/n9-nope");
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = get(&mut world, "projects/ml/global/images/family/trainer");
        assert_eq!((status, body["family"].as_str()), (StatusCode::OK, Some("trainer")));
        let (status, body) = get(&mut world, "projects/ml/global/images/trainer-v7");
        assert_eq!((status, body["error"]["errors"][0]["reason"].as_str()), (StatusCode::NOT_FOUND, Some("notFound")));
        assert_eq!(get(&mut world, "projects/p/global/networks/default").0, StatusCode::OK);
        assert_eq!(get(&mut world, "projects/p/global/networks/ml").0, StatusCode::NOT_FOUND);
        assert_eq!(world.counters()["gcp"]["images.getFromFamily"], 1);
    }

    #[test]
    fn sim_gce_create_with_a_missing_image_or_network_is_a_404_and_starts_nothing() {
        let mut world = world();
        let bulk = |image: &str, network: &str| {
            json!({
                "count": "1", "namePattern": "gf-####",
                "instanceProperties": {
                    "machineType": "a3-highgpu-8g",
                    "disks": [{"boot": true, "initializeParams": {"sourceImage": image}}],
                    "networkInterfaces": [{"network": network}],
                },
            })
            .to_string()
        };
        let path = "projects/p/zones/us-central1-a/instances/bulkInsert";
        for (image, network) in [
            ("projects/ml/global/images/family/other", "global/networks/default"),
            ("projects/ml/global/images/family/trainer", "global/networks/ml"),
        ] {
            let response = super::super::handle(&mut world, &Method::POST, path, "", bulk(image, network).as_bytes());
            assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
        }
        assert_eq!(world.gce.instances().count(), 0);
        let ok = bulk(
            "https://www.googleapis.com/compute/v1/projects/ml/global/images/family/trainer",
            "global/networks/default",
        );
        let response = super::super::handle(&mut world, &Method::POST, path, "", ok.as_bytes());
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }

    fn list(world: &mut World, path: &str, query: &str) -> (StatusCode, serde_json::Value) {
        let response = super::super::handle(world, &Method::GET, path, query, b"");
        (response.status, response.body)
    }

    #[test]
    fn sim_gce_machine_and_accelerator_types_aggregate_by_zone_and_page() {
        let scenario = Scenario::parse("[paging]\nshort_pages = false\n", std::path::Path::new("s.toml")).unwrap();
        let mut full = World::new(Some(&scenario), &Catalog::builtin()).unwrap();
        let (status, body) = list(&mut full, "projects/p/aggregated/machineTypes", "");
        assert_eq!((status, body["kind"].as_str()), (StatusCode::OK, Some("compute#machineTypeAggregatedList")));
        let a3 = body["items"]["zones/us-central1-a"]["machineTypes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "a3-highgpu-8g")
            .unwrap()
            .clone();
        assert_eq!(
            a3["accelerators"],
            json!([{ "guestAcceleratorType": "nvidia-h100-80gb", "guestAcceleratorCount": 8 }])
        );
        assert_eq!((a3["guestCpus"].as_u64(), a3["id"].is_string()), (Some(208), true), "{a3}");
        let (_, body) = list(&mut full, "projects/p/aggregated/acceleratorTypes", "");
        let accelerators = &body["items"]["zones/us-central1-a"]["acceleratorTypes"];
        let h100 = accelerators.as_array().unwrap().iter().find(|a| a["name"] == "nvidia-h100-80gb").unwrap();
        assert_eq!(h100["maximumCardsPerInstance"], 8);
        assert!(h100["zone"].as_str().unwrap().ends_with("/projects/p/zones/us-central1-a"), "{h100}");

        // Pages of at most two, some short or empty (the default world's
        // paging): every zone is a scope of every page, a zone without items
        // on it says so, and the pages together list each item once.
        let mut world = world();
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let (status, page) =
                list(&mut world, "projects/p/aggregated/acceleratorTypes", &format!("maxResults=2&pageToken={token}"));
            assert_eq!(status, StatusCode::OK, "{page}");
            let items = page["items"].as_object().unwrap();
            assert_eq!(items.len(), world.gce_zones().len());
            for (scope, scoped) in items {
                match scoped["acceleratorTypes"].as_array() {
                    Some(list) => seen.extend(list.iter().map(|a| format!("{scope}/{}", a["name"]))),
                    None => assert_eq!(scoped["warning"]["code"], "NO_RESULTS_ON_PAGE", "{scoped}"),
                }
            }
            match page["nextPageToken"].as_str() {
                Some(next) => token = next.to_string(),
                None => break,
            }
        }
        let total: usize = body["items"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|s| s["acceleratorTypes"].as_array())
            .map(Vec::len)
            .sum();
        let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
        assert_eq!((seen.len(), unique.len()), (total, total));
        let (status, _) = list(&mut world, "projects/p/aggregated/machineTypes", "maxResults=501");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = list(&mut world, "projects/p/aggregated/machineTypes", "pageToken=bogus");
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn sim_gce_create_refuses_a_missing_subnetwork_or_service_account_and_a_disk_smaller_than_its_image() {
        let text = "[[image]]\ncloud = \"gcp\"\nid = \"projects/ml/global/images/family/trainer\"\nsize_gb = 100\n\
                    [networks]\ngcp_networks = [\"default\", \"gpu\"]\ngcp_subnetworks = [\"us-central1/gpu-a\"]\n\
                    gcp_service_accounts = [\"node@ml.iam.gserviceaccount.com\"]\n";
        let scenario = Scenario::parse(text, std::path::Path::new("s.toml")).unwrap();
        let mut world = World::new(Some(&scenario), &Catalog::builtin()).unwrap();
        let bulk = |subnetwork: &str, account: &str, disk: u32| {
            json!({
                "count": "1", "namePattern": "gf-####",
                "instanceProperties": {
                    "machineType": "a3-highgpu-8g",
                    "disks": [{"boot": true, "initializeParams": {
                        "sourceImage": "projects/ml/global/images/family/trainer", "diskSizeGb": disk.to_string(),
                    }}],
                    "networkInterfaces": [{"network": "global/networks/gpu", "subnetwork": subnetwork}],
                    "serviceAccounts": [{"email": account, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}],
                },
            })
            .to_string()
        };
        let path = "projects/ml/zones/us-central1-a/instances/bulkInsert";
        let sa = "node@ml.iam.gserviceaccount.com";
        let cases = [
            (
                bulk("regions/us-central1/subnetworks/gpu-b", sa, 200),
                StatusCode::NOT_FOUND,
                "notFound",
                "The resource 'projects/ml/regions/us-central1/subnetworks/gpu-b' was not found",
            ),
            (
                bulk("regions/us-central1/subnetworks/gpu-a", "x@ml.iam.gserviceaccount.com", 200),
                StatusCode::BAD_REQUEST,
                "invalid",
                "Invalid value for field 'resource.instanceProperties.serviceAccounts[0].email'",
            ),
            (
                bulk("regions/us-central1/subnetworks/gpu-a", sa, 50),
                StatusCode::BAD_REQUEST,
                "invalid",
                "Requested disk size cannot be smaller than the image size (100 GB)",
            ),
        ];
        for (body, status, reason, message) in cases {
            let response = super::super::handle(&mut world, &Method::POST, path, "", body.as_bytes());
            assert_eq!(response.status, status, "{}", response.body);
            assert_eq!(response.body["error"]["errors"][0]["reason"], reason);
            assert!(response.body["error"]["message"].as_str().unwrap().contains(message), "{}", response.body);
        }
        assert_eq!(world.gce.instances().count(), 0);
        let ok = bulk("regions/us-central1/subnetworks/gpu-a", sa, 100);
        let response = super::super::handle(&mut world, &Method::POST, path, "", ok.as_bytes());
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        let spec = &world.gce.instances().next().unwrap().spec;
        assert_eq!((spec.disk_size_gb, spec.service_accounts[0].email.as_deref()), (Some(100), Some(sa)));
        assert_eq!(get(&mut world, "projects/ml/regions/us-central1/subnetworks/gpu-a").0, StatusCode::OK);
        assert_eq!(get(&mut world, "projects/ml/regions/us-central1/subnetworks/gpu-b").0, StatusCode::NOT_FOUND);
        // Every create needs a boot disk made from an image and a network interface.
        let bare =
            json!({ "count": "1", "namePattern": "gf-####", "instanceProperties": { "machineType": "a3-highgpu-8g" } });
        let response = super::super::handle(&mut world, &Method::POST, path, "", bare.to_string().as_bytes());
        assert_eq!(response.body["error"]["errors"][0]["reason"], "required", "{}", response.body);
        assert!(response.body["error"]["message"].as_str().unwrap().contains("'resource.instanceProperties.disks'"));
    }
}
