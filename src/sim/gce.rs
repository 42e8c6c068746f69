//! The Compute Engine REST API on the wire (`/compute/v1/...`): JSON in,
//! JSON out, shaped as the discovery document `compute.v1.json` shapes it,
//! so that unmodified SDKs (google-cloud-compute-v1, the Python
//! google-cloud-compute) work against it.
//!
//! Served: `instances.{insert, bulkInsert, get, list, aggregatedList,
//! delete}`, `zoneOperations.{get, wait}`, `regions.get`, and the reads of
//! [`account`] (machine types, images, networks). Shapes that
//! strict clients check: `kind` on every resource, uint64 ids as JSON
//! strings, RFC 3339 timestamps from the simulated clock, full `selfLink`
//! and `zone` URLs, and HTTP errors as `{"error": {code, message,
//! errors[{domain, reason, message}]}}`. Semantics live in
//! [`super::gce_world`]; this module only translates.

pub(super) mod account;

use super::faults::{CredentialTrouble, Fault};
use super::gce_world::{CreateInstances, GceError, GceInstance, GceOperation, InstanceSpec, Naming, QuotaUsage};
use super::scenario::DEFAULT_IMAGE_GB;
use super::world::{Tags, World};
use crate::model::Cloud;
use account::{NetworkSpec, ServiceAccountSpec};
use axum::http::{Method, StatusCode};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Where real resources live; selfLinks point there, as on GCE.
pub(super) const BASE_URL: &str = "https://www.googleapis.com/compute/v1";
/// GCE's limit of labels per resource.
const MAX_LABELS: usize = 64;

/// A response ready for the socket, and whether the world changed.
#[derive(Debug, Clone, PartialEq)]
pub struct GceResponse {
    pub status: StatusCode,
    pub body: Value,
    pub mutated: bool,
}

/// An HTTP-level refusal: status, GCE `reason`, message.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl HttpError {
    fn invalid(message: impl Into<String>) -> HttpError {
        HttpError { status: StatusCode::BAD_REQUEST, reason: "invalid", message: message.into() }
    }

    /// A field the request must have: 400 with reason `required`.
    fn required(field: &str) -> HttpError {
        HttpError {
            status: StatusCode::BAD_REQUEST,
            reason: "required",
            message: format!("Required field '{field}' not specified"),
        }
    }

    fn not_found(what: &str) -> HttpError {
        HttpError {
            status: StatusCode::NOT_FOUND,
            reason: "notFound",
            message: format!("The resource '{what}' was not found"),
        }
    }

    /// Limits are reported in the `usageLimits` domain, everything else in `global`.
    fn domain(&self) -> &'static str {
        match self.reason {
            "rateLimitExceeded" | "userRateLimitExceeded" | "quotaExceeded" => "usageLimits",
            _ => "global",
        }
    }

    /// The body GCE sends with an HTTP error.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "code": self.status.as_u16(),
                "message": self.message,
                "errors": [{ "message": self.message, "domain": self.domain(), "reason": self.reason }],
            }
        })
    }
}

impl From<GceError> for HttpError {
    fn from(error: GceError) -> HttpError {
        let message = error.to_string();
        match error {
            GceError::NotFound(_) => HttpError { status: StatusCode::NOT_FOUND, reason: "notFound", message },
            GceError::AlreadyExists(_) => HttpError { status: StatusCode::CONFLICT, reason: "alreadyExists", message },
            GceError::Invalid(_) => HttpError::invalid(message),
        }
    }
}

/// Handles one request; `path` is what follows `/compute/v1/`.
pub fn handle(world: &mut World, method: &Method, path: &str, query: &str, body: &[u8]) -> GceResponse {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let query: BTreeMap<String, String> = serde_urlencoded::from_str(query).unwrap_or_default();
    let outcome = route(world, method, path, &segments, &query, body);
    match outcome {
        Ok((body, mutated)) => GceResponse { status: StatusCode::OK, body, mutated },
        Err(error) => GceResponse { status: error.status, body: error.body(), mutated: false },
    }
}

/// Counts the call, lets the scenario's faults refuse it, then runs it.
fn route(
    world: &mut World,
    method: &Method,
    path: &str,
    segments: &[&str],
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<(Value, bool), HttpError> {
    match (method, segments) {
        (&Method::GET, ["projects", project, "zones", zone, "instances"]) => {
            admit(world, "instances.list")?;
            list(world, project, Some(zone), query)
        }
        (&Method::GET, ["projects", project, "aggregated", "instances"]) => {
            admit(world, "instances.aggregatedList")?;
            list(world, project, None, query)
        }
        (&Method::POST, ["projects", project, "zones", zone, "instances"]) => {
            admit(world, "instances.insert")?;
            insert(world, project, zone, query, body)
        }
        (&Method::POST, ["projects", project, "zones", zone, "instances", "bulkInsert"]) => {
            admit(world, "instances.bulkInsert")?;
            bulk_insert(world, project, zone, query, body)
        }
        (&Method::GET, ["projects", project, "zones", zone, "instances", name]) => {
            admit(world, "instances.get")?;
            world.gce_instance(project, zone, name).map(|i| (instance_json(world, i), false)).map_err(HttpError::from)
        }
        (&Method::DELETE, ["projects", project, "zones", zone, "instances", name]) => {
            admit(world, "instances.delete")?;
            let request_id = request_id(query)?;
            let now = world.now;
            world
                .gce_delete(project, zone, name, request_id)
                .map(|op| (operation_json(op, now), true))
                .map_err(HttpError::from)
        }
        (&Method::GET, ["projects", project, "zones", zone, "operations", name]) => {
            admit(world, "zoneOperations.get")?;
            let now = world.now;
            world
                .gce_find_operation(project, zone, name)
                .map(|op| (operation_json(op, now), false))
                .map_err(HttpError::from)
        }
        (&Method::POST, ["projects", project, "zones", zone, "operations", name, "wait"]) => {
            admit(world, "zoneOperations.wait")?;
            let op = world.gce_wait_operation(project, zone, name).map_err(HttpError::from)?.clone();
            Ok((operation_json(&op, world.now), false))
        }
        (&Method::GET, ["projects", project]) => {
            admit(world, "projects.get")?;
            Ok((project_json(project, &world.gce_project_quotas(project)), false))
        }
        (&Method::GET, ["projects", project, "regions", region]) => {
            admit(world, "regions.get")?;
            world
                .gce_region(project, region)
                .map(|(zones, quotas)| (region_json(project, region, &zones, &quotas), false))
                .ok_or_else(|| HttpError::not_found(&format!("projects/{project}/regions/{region}")))
        }
        (&Method::GET, _) => account::route(world, segments, query).unwrap_or_else(|| Err(unserved(method, path))),
        _ => Err(unserved(method, path)),
    }
}

fn unserved(method: &Method, path: &str) -> HttpError {
    HttpError {
        status: StatusCode::NOT_FOUND,
        reason: "notFound",
        message: format!("{method} /compute/v1/{path} is not a method the simulator serves"),
    }
}

/// Counts one call and answers it with an injected fault if the scenario
/// says so: Compute Engine throttles with a 403 `rateLimitExceeded` and
/// fails transiently with a 503 `backendError`.
fn admit(world: &mut World, call: &str) -> Result<(), HttpError> {
    world.record_call(Cloud::Gcp, call);
    match world.inject_fault(Cloud::Gcp, "", call) {
        None => Ok(()),
        Some(Fault::Throttled) => Err(HttpError {
            status: StatusCode::FORBIDDEN,
            reason: "rateLimitExceeded",
            message: "Rate Limit Exceeded".into(),
        }),
        // A reset is never answered: the server drops the connection.
        Some(Fault::Transient { .. } | Fault::Reset) => Err(HttpError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "backendError",
            message: "Internal error. Please try again or contact Google Support.".into(),
        }),
        Some(Fault::Credentials(CredentialTrouble::Expired)) => Err(HttpError {
            status: StatusCode::UNAUTHORIZED,
            reason: "authError",
            message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.".into(),
        }),
        Some(Fault::Credentials(CredentialTrouble::Forbidden)) => Err(HttpError {
            status: StatusCode::FORBIDDEN,
            reason: "forbidden",
            message: format!("Required 'compute.{call}' permission for the project"),
        }),
    }
}

fn list(
    world: &World,
    project: &str,
    zone: Option<&str>,
    query: &BTreeMap<String, String>,
) -> Result<(Value, bool), HttpError> {
    let max_results = match query.get("maxResults") {
        None => None,
        Some(n) => Some(
            n.parse::<u32>()
                .map_err(|_| HttpError::invalid(format!("Invalid value for field 'maxResults': '{n}'.")))?,
        ),
    };
    let page = world.gce_list(
        project,
        zone,
        query.get("filter").map(String::as_str).filter(|f| !f.trim().is_empty()),
        max_results,
        query.get("pageToken").map(String::as_str),
    )?;
    let mut body = match zone {
        Some(zone) => json!({
            "kind": "compute#instanceList",
            "id": format!("projects/{project}/zones/{zone}/instances"),
            "selfLink": format!("{}/instances", zone_url(project, zone)),
            "items": page.instances.iter().map(|i| instance_json(world, i)).collect::<Vec<_>>(),
        }),
        None => {
            // Every zone is a scope of the answer; one without instances on
            // this page says so with a warning, as Compute Engine does.
            let mut by_zone: BTreeMap<String, Vec<Value>> =
                world.gce_zones().into_iter().map(|zone| (format!("zones/{zone}"), Vec::new())).collect();
            for instance in &page.instances {
                by_zone.entry(format!("zones/{}", instance.zone)).or_default().push(instance_json(world, instance));
            }
            json!({
                "kind": "compute#instanceAggregatedList",
                "id": format!("projects/{project}/aggregated/instances"),
                "selfLink": format!("{BASE_URL}/projects/{project}/aggregated/instances"),
                "items": scoped_items(by_zone, "instances"),
            })
        }
    };
    if let Some(token) = page.next_page_token {
        body["nextPageToken"] = Value::String(token);
    }
    Ok((body, false))
}

fn insert(
    world: &mut World,
    project: &str,
    zone: &str,
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<(Value, bool), HttpError> {
    let instance: InstanceBody = parse_body(body)?;
    let name = instance.name.clone().ok_or_else(|| HttpError::required("resource.name"))?;
    let (machine_type, spec) = instance.into_parts("resource")?;
    account::admit_create(world, project, zone, &spec, "resource")?;
    create(
        world,
        CreateInstances {
            project: project.into(),
            zone: zone.into(),
            machine_type,
            naming: Naming::Name(name),
            count: 1,
            min_count: 1,
            spec,
            request_id: request_id(query)?,
            operation_type: "insert",
        },
    )
}

fn bulk_insert(
    world: &mut World,
    project: &str,
    zone: &str,
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<(Value, bool), HttpError> {
    let bulk: BulkBody = parse_body(body)?;
    if bulk.per_instance_properties.as_ref().is_some_and(|p| !p.is_empty()) || bulk.source_instance_template.is_some() {
        return Err(HttpError::invalid(
            "The simulator's bulkInsert takes namePattern and instanceProperties (perInstanceProperties and sourceInstanceTemplate are not simulated)",
        ));
    }
    let pattern = bulk.name_pattern.ok_or_else(|| HttpError::required("resource.namePattern"))?;
    let count = bulk.count.ok_or_else(|| HttpError::required("resource.count"))?;
    let min_count = bulk.min_count.unwrap_or(count);
    let count_u32 = |n: i64, field: &str| {
        u32::try_from(n).map_err(|_| HttpError::invalid(format!("Invalid value for field 'resource.{field}': '{n}'.")))
    };
    let properties = bulk.instance_properties.ok_or_else(|| HttpError::required("resource.instanceProperties"))?;
    let (machine_type, spec) = properties.into_parts("resource.instanceProperties")?;
    account::admit_create(world, project, zone, &spec, "resource.instanceProperties")?;
    create(
        world,
        CreateInstances {
            project: project.into(),
            zone: zone.into(),
            machine_type,
            naming: Naming::Pattern(pattern),
            count: count_u32(count, "count")?,
            min_count: count_u32(min_count, "minCount")?,
            spec,
            request_id: request_id(query)?,
            operation_type: "bulkInsert",
        },
    )
}

fn create(world: &mut World, request: CreateInstances) -> Result<(Value, bool), HttpError> {
    let now = world.now;
    let operation = world.gce_create(request)?;
    Ok((operation_json(operation, now), true))
}

/// The `requestId` query parameter, which Compute Engine takes only as a
/// UUID, and not the zero one.
fn request_id(query: &BTreeMap<String, String>) -> Result<Option<String>, HttpError> {
    let Some(id) = query.get("requestId") else { return Ok(None) };
    match uuid::Uuid::try_parse(id) {
        Ok(parsed) if !parsed.is_nil() => Ok(Some(id.clone())),
        _ => Err(HttpError::invalid(format!(
            "Invalid value for field 'requestId': '{id}'. The request ID must be a valid UUID with the exception that zero UUID is not supported (00000000-0000-0000-0000-000000000000)."
        ))),
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| HttpError::invalid(format!("Invalid JSON payload received. {e}")))
}

/// What the simulator reads of an `Instance` or `InstanceProperties`;
/// everything else a client sends is accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstanceBody {
    name: Option<String>,
    machine_type: Option<String>,
    #[serde(default)]
    labels: Tags,
    metadata: Option<MetadataBody>,
    #[serde(default)]
    disks: Vec<DiskBody>,
    scheduling: Option<SchedulingBody>,
    network_interfaces: Option<Vec<NetworkInterfaceBody>>,
    #[serde(default)]
    service_accounts: Vec<ServiceAccountSpec>,
}

#[derive(Debug, Default, Deserialize)]
struct NetworkInterfaceBody {
    network: Option<String>,
    subnetwork: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct MetadataBody {
    #[serde(default)]
    items: Vec<MetadataItem>,
}

#[derive(Debug, Default, Deserialize)]
struct MetadataItem {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiskBody {
    boot: Option<bool>,
    initialize_params: Option<InitializeParams>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitializeParams {
    source_image: Option<String>,
    #[serde(default, deserialize_with = "int64")]
    disk_size_gb: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchedulingBody {
    on_host_maintenance: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkBody {
    #[serde(default, deserialize_with = "int64")]
    count: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    min_count: Option<i64>,
    name_pattern: Option<String>,
    instance_properties: Option<InstanceBody>,
    per_instance_properties: Option<serde_json::Map<String, Value>>,
    source_instance_template: Option<String>,
}

/// int64 fields travel as JSON strings; accept numbers too.
fn int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Number(i64),
        Text(String),
    }
    match Option::<Int64>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Int64::Number(n)) => Ok(Some(n)),
        Some(Int64::Text(text)) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

impl InstanceBody {
    /// The machine type's short name and the rest of what the world keeps.
    fn into_parts(self, field: &str) -> Result<(String, InstanceSpec), HttpError> {
        let machine_type = self
            .machine_type
            .as_deref()
            .map(|m| m.rsplit('/').next().unwrap_or(m).to_string())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| HttpError::invalid(format!("Required field '{field}.machineType' not specified")))?;
        check_labels(&self.labels, field)?;
        let mut metadata = BTreeMap::new();
        for item in self.metadata.map(|m| m.items).unwrap_or_default() {
            let key = item.key.ok_or_else(|| {
                HttpError::invalid(format!("Required field '{field}.metadata.items.key' not specified"))
            })?;
            if metadata.insert(key.clone(), item.value.unwrap_or_default()).is_some() {
                return Err(HttpError::invalid(format!(
                    "Invalid value for field '{field}.metadata': duplicate key '{key}'."
                )));
            }
        }
        // A boot disk made from an image, and a network interface, as the
        // Instance schema of the discovery document requires.
        if self.disks.is_empty() {
            return Err(HttpError::required(&format!("{field}.disks")));
        }
        let boot = self.disks.iter().position(|d| d.boot == Some(true)).unwrap_or(0);
        let params = self.disks[boot].initialize_params.as_ref();
        let source_image = params.and_then(|p| p.source_image.clone());
        if source_image.is_none() {
            return Err(HttpError::required(&format!("{field}.disks[{boot}].initializeParams.sourceImage")));
        }
        let disk_size_gb = params.and_then(|p| p.disk_size_gb);
        if let Some(size) = disk_size_gb.filter(|size| *size < 1) {
            return Err(HttpError::invalid(format!(
                "Invalid value for field '{field}.disks[{boot}].initializeParams.diskSizeGb': '{size}'."
            )));
        }
        let interfaces = self
            .network_interfaces
            .filter(|n| !n.is_empty())
            .ok_or_else(|| HttpError::required(&format!("{field}.networkInterfaces")))?;
        let networks = interfaces
            .iter()
            .map(|n| NetworkSpec {
                network: n.network.clone().unwrap_or_else(|| "global/networks/default".to_string()),
                subnetwork: n.subnetwork.clone(),
            })
            .collect();
        let on_host_maintenance = self.scheduling.and_then(|s| s.on_host_maintenance);
        if let Some(value) = &on_host_maintenance
            && value != "MIGRATE"
            && value != "TERMINATE"
        {
            return Err(HttpError::invalid(format!(
                "Invalid value for field '{field}.scheduling.onHostMaintenance': '{value}'."
            )));
        }
        Ok((
            machine_type,
            InstanceSpec {
                labels: self.labels,
                metadata,
                source_image,
                on_host_maintenance,
                networks,
                service_accounts: self.service_accounts,
                disk_size_gb,
            },
        ))
    }
}

/// GCE's label rules: at most 64; keys start with a lowercase letter; keys
/// and values use lowercase letters, digits, `_` and `-`, at most 63 each.
fn check_labels(labels: &Tags, field: &str) -> Result<(), HttpError> {
    if labels.len() > MAX_LABELS {
        return Err(HttpError::invalid(format!(
            "Invalid value for field '{field}.labels': at most {MAX_LABELS} labels."
        )));
    }
    let allowed = |s: &str| {
        s.len() <= 63 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    for (key, value) in labels {
        if !key.starts_with(|c: char| c.is_ascii_lowercase()) || !allowed(key) || !allowed(value) {
            return Err(HttpError::invalid(format!(
                "Invalid value for field '{field}.labels': '{key}={value}'. Label keys and values may use lowercase letters, digits, '_' and '-', at most 63 characters; keys start with a letter."
            )));
        }
    }
    Ok(())
}

/// The `items` of an aggregatedList page: each scope's list under `field`,
/// or, for a scope without results on this page, Compute Engine's warning.
fn scoped_items(by_scope: BTreeMap<String, Vec<Value>>, field: &str) -> serde_json::Map<String, Value> {
    by_scope
        .into_iter()
        .map(|(scope, values)| {
            let scoped = if values.is_empty() {
                json!({ "warning": {
                    "code": "NO_RESULTS_ON_PAGE",
                    "message": format!("There are no results for scope '{scope}' on this page."),
                    "data": [{ "key": "scope", "value": scope }],
                }})
            } else {
                json!({ field: values })
            };
            (scope, scoped)
        })
        .collect()
}

fn zone_url(project: &str, zone: &str) -> String {
    format!("{BASE_URL}/projects/{project}/zones/{zone}")
}

/// GCE's timestamp form: RFC 3339 with milliseconds and an offset.
fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, false)
}

fn instance_json(world: &World, instance: &GceInstance) -> Value {
    let zone = zone_url(&instance.project, &instance.zone);
    let mut body = json!({
        "kind": "compute#instance",
        "id": instance.id.to_string(),
        "creationTimestamp": timestamp(instance.created),
        "name": instance.name,
        "zone": zone,
        "machineType": format!("{zone}/machineTypes/{}", instance.machine_type),
        "status": world.gce_status(instance),
        "selfLink": format!("{zone}/instances/{}", instance.name),
        "labels": instance.spec.labels,
        "metadata": {
            "kind": "compute#metadata",
            "items": instance.spec.metadata.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect::<Vec<_>>(),
        },
        "scheduling": {
            "onHostMaintenance": instance.spec.on_host_maintenance.as_deref().unwrap_or("MIGRATE"),
            "automaticRestart": true,
            "preemptible": false,
            "provisioningModel": "STANDARD",
        },
        "lastStartTimestamp": timestamp(instance.created),
    });
    if let Some(image) = &instance.spec.source_image {
        body["disks"] = json!([{
            "kind": "compute#attachedDisk",
            "type": "PERSISTENT",
            "mode": "READ_WRITE",
            "source": format!("{zone}/disks/{}", instance.name),
            "deviceName": "persistent-disk-0",
            "index": 0,
            "boot": true,
            "autoDelete": true,
            "licenses": [],
            "interface": "SCSI",
            "diskSizeGb": instance.spec.disk_size_gb.unwrap_or(i64::from(DEFAULT_IMAGE_GB)).to_string(),
            "initializeParams": { "sourceImage": image },
        }]);
    }
    body
}

fn operation_json(op: &GceOperation, now: DateTime<Utc>) -> Value {
    let zone = zone_url(&op.project, &op.zone);
    let target = match &op.target {
        Some(name) => format!("{zone}/instances/{name}"),
        None => zone.clone(),
    };
    let mut body = json!({
        "kind": "compute#operation",
        "id": op.id.to_string(),
        "name": op.name,
        "zone": zone,
        "operationType": op.operation_type,
        "targetLink": target,
        "status": if op.done(now) { "DONE" } else { "RUNNING" },
        "progress": if op.done(now) { 100 } else { 0 },
        "user": "gpufleet-simulator@example.iam.gserviceaccount.com",
        "insertTime": timestamp(op.inserted),
        "startTime": timestamp(op.inserted),
        "selfLink": format!("{zone}/operations/{}", op.name),
    });
    if let Some(id) = op.target_id {
        body["targetId"] = Value::String(id.to_string());
    }
    if let Some(request_id) = &op.request_id {
        body["clientOperationId"] = Value::String(request_id.clone());
    }
    if !op.done(now) {
        return body;
    }
    body["endTime"] = Value::String(timestamp(op.done_at.max(op.inserted)));
    if let Some((target, created)) = op.bulk {
        body["instancesBulkInsertOperationMetadata"] = json!({
            "perLocationStatus": {
                format!("zones/{}", op.zone): {
                    "status": "DONE",
                    "targetVmCount": target,
                    "createdVmCount": created,
                    "failedToCreateVmCount": target - created.min(target),
                    "deletedVmCount": 0,
                }
            }
        });
    }
    if !op.errors.is_empty() {
        let errors: Vec<Value> = op
            .errors
            .iter()
            .map(|e| {
                let mut error = json!({ "code": e.code, "message": e.message });
                if let Some(quota) = &e.quota {
                    error["errorDetails"] = json!([{
                        "quotaInfo": {
                            "metricName": format!("compute.googleapis.com/{}", quota.metric.to_ascii_lowercase()),
                            "limitName": if quota.region == super::gce_world::GLOBAL {
                                format!("{}-per-project", quota.metric.replace('_', "-"))
                            } else {
                                format!("{}-per-project-region", quota.metric.replace('_', "-"))
                            },
                            "dimensions": if quota.region == super::gce_world::GLOBAL { json!({}) } else { json!({ "region": quota.region }) },
                            "limit": quota.limit,
                        }
                    }]);
                }
                error
            })
            .collect();
        body["error"] = json!({ "errors": errors });
    }
    if let Some(status) = op.http_error_status {
        body["httpErrorStatusCode"] = json!(status);
        let message = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("ERROR");
        body["httpErrorMessage"] = Value::String(message.to_ascii_uppercase());
    }
    body
}

fn quotas_json(quotas: &[QuotaUsage]) -> Vec<Value> {
    quotas
        .iter()
        .map(|q| json!({ "metric": q.metric, "limit": f64::from(q.limit), "usage": f64::from(q.usage) }))
        .collect()
}

/// A project as `projects.get` shows it: gpufleet reads its quotas.
fn project_json(project: &str, quotas: &[QuotaUsage]) -> Value {
    json!({
        "kind": "compute#project",
        "id": super::world::scramble(project.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))).to_string(),
        "creationTimestamp": "2020-01-01T00:00:00.000-08:00",
        "name": project,
        "selfLink": format!("{BASE_URL}/projects/{project}"),
        "quotas": quotas_json(quotas),
        "defaultNetworkTier": "PREMIUM",
        "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
    })
}

fn region_json(project: &str, region: &str, zones: &[String], quotas: &[QuotaUsage]) -> Value {
    json!({
        "kind": "compute#region",
        "id": super::world::scramble(region.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))).to_string(),
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
        "name": region,
        "description": region,
        "status": "UP",
        "selfLink": format!("{BASE_URL}/projects/{project}/regions/{region}"),
        "zones": zones.iter().map(|z| zone_url(project, z)).collect::<Vec<_>>(),
        "quotas": quotas_json(quotas),
        "supportsPzs": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::sim::Scenario;
    use crate::sim::gce_world::is_valid_name as valid;
    use std::path::Path;

    fn world(scenario: &str) -> World {
        let scenario = Scenario::parse(scenario, Path::new("test.toml")).unwrap();
        World::new(Some(&scenario), &Catalog::builtin()).unwrap()
    }

    fn call(world: &mut World, method: Method, path: &str, query: &str, body: Value) -> GceResponse {
        handle(world, &method, path, query, body.to_string().as_bytes())
    }

    const SCENARIO: &str = r#"
        [[offering]]
        cloud = "gcp"
        region = "us-central1"
        zone = "us-central1-a"
        instance_type = "a3-highgpu-8g"
        capacity = 3
        [[quota]]
        cloud = "gcp"
        region = "us-central1"
        metric = "NVIDIA_L4_GPUS"
        limit = 16
    "#;

    fn bulk(machine_type: &str, count: u32, min_count: u32) -> Value {
        json!({
            "count": count.to_string(),
            "minCount": min_count.to_string(),
            "namePattern": "gf-train-####",
            "instanceProperties": { "machineType": machine_type, "disks": disks(), "networkInterfaces": nics(), "labels": { "team": "ml" } },
        })
    }

    /// A boot disk from a public image, as every create needs.
    fn disks() -> Value {
        json!([{ "boot": true, "initializeParams": { "sourceImage": "projects/debian-cloud/global/images/family/debian-12" } }])
    }

    fn nics() -> Value {
        json!([{ "network": "global/networks/default" }])
    }

    const BULK: &str = "projects/p/zones/us-central1-a/instances/bulkInsert";
    const REQUEST_ID: &str = "requestId=4a7e1e4e-0000-4000-8000-000000000001";

    #[test]
    fn sim_gce_request_ids_are_uuids_as_compute_engine_wants() {
        let mut world = world(SCENARIO);
        for bad in ["requestId=r1", "requestId=00000000-0000-0000-0000-000000000000"] {
            let refused = call(&mut world, Method::POST, BULK, bad, bulk("a3-highgpu-8g", 1, 1));
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
            let message = refused.body["error"]["message"].as_str().unwrap();
            assert!(message.contains("The request ID must be a valid UUID"), "{message}");
        }
        assert_eq!(world.gce.instances().count(), 0);
    }

    #[test]
    fn sim_gce_bulk_insert_fills_partially_then_reports_the_stock_out_inside_the_operation() {
        let mut world = world(SCENARIO);
        let first = call(&mut world, Method::POST, BULK, REQUEST_ID, bulk("a3-highgpu-8g", 5, 2));
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        assert_eq!(first.body["status"], "RUNNING");
        assert!(first.body["id"].is_string());
        let name = first.body["name"].as_str().unwrap().to_string();
        let done = call(
            &mut world,
            Method::POST,
            &format!("projects/p/zones/us-central1-a/operations/{name}/wait"),
            "",
            Value::Null,
        );
        assert_eq!(done.body["status"], "DONE");
        assert_eq!(
            done.body["instancesBulkInsertOperationMetadata"]["perLocationStatus"]["zones/us-central1-a"]["createdVmCount"],
            3
        );
        assert!(done.body.get("error").is_none());
        let names: Vec<&str> = world.gce.instances().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["gf-train-0001", "gf-train-0002", "gf-train-0003"]);

        // The same requestId replays the operation and creates nothing.
        let replay = call(&mut world, Method::POST, BULK, REQUEST_ID, bulk("a3-highgpu-8g", 5, 2));
        assert_eq!(replay.body["name"], name.as_str());
        assert_eq!(world.gce.instances().count(), 3);

        let refused = call(&mut world, Method::POST, BULK, "", bulk("a3-highgpu-8g", 1, 1));
        let name = refused.body["name"].as_str().unwrap().to_string();
        let done = call(
            &mut world,
            Method::POST,
            &format!("projects/p/zones/us-central1-a/operations/{name}/wait"),
            "",
            Value::Null,
        );
        assert_eq!(done.body["error"]["errors"][0]["code"], "ZONE_RESOURCE_POOL_EXHAUSTED");
        assert_eq!(done.body["httpErrorStatusCode"], 503);
        assert_eq!(world.gce.instances().count(), 3);

        let deleted =
            call(&mut world, Method::DELETE, "projects/p/zones/us-central1-a/instances/gf-train-0002", "", Value::Null);
        assert_eq!(deleted.body["operationType"], "delete");
        let again = call(&mut world, Method::POST, BULK, "", bulk("a3-highgpu-8g", 1, 1));
        assert_eq!(again.status, StatusCode::OK);
        let names: Vec<&str> = world.gce.instances().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            ["gf-train-0001", "gf-train-0002", "gf-train-0003", "gf-train-0004"],
            "numbering continues after the largest"
        );
        let stopping = world.gce_instance("p", "us-central1-a", "gf-train-0002").unwrap();
        assert_eq!(world.gce_status(stopping), "STOPPING", "a deleted instance lingers, its name taken");
        world.advance(std::time::Duration::from_secs(30)).unwrap();
        let names: Vec<&str> = world.gce.instances().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["gf-train-0001", "gf-train-0003", "gf-train-0004"]);
    }

    #[test]
    fn sim_gce_gpus_all_regions_caps_every_region_and_projects_get_reports_it() {
        let mut world =
            world("[[quota]]\ncloud = \"gcp\"\nregion = \"global\"\nmetric = \"GPUS_ALL_REGIONS\"\nlimit = 12\n");
        // a3-highgpu-8g carries 8 H100: 12 GPUs across all regions admit one.
        let over = call(&mut world, Method::POST, BULK, "", bulk("a3-highgpu-8g", 2, 2));
        let name = over.body["name"].as_str().unwrap().to_string();
        let wait = format!("projects/p/zones/us-central1-a/operations/{name}/wait");
        let done = call(&mut world, Method::POST, &wait, "", Value::Null);
        let error = &done.body["error"]["errors"][0];
        assert_eq!(error["code"], "QUOTA_EXCEEDED");
        assert_eq!(error["message"], "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 12.0 globally.");
        assert_eq!(error["errorDetails"][0]["quotaInfo"]["limitName"], "GPUS-ALL-REGIONS-per-project");

        let one = call(&mut world, Method::POST, BULK, "", bulk("a3-highgpu-8g", 1, 1));
        let name = one.body["name"].as_str().unwrap().to_string();
        let wait = format!("projects/p/zones/us-central1-a/operations/{name}/wait");
        assert!(call(&mut world, Method::POST, &wait, "", Value::Null).body.get("error").is_none());
        let project = call(&mut world, Method::GET, "projects/p", "", Value::Null);
        assert_eq!(project.body["kind"], "compute#project");
        assert_eq!(project.body["quotas"], json!([{ "metric": "GPUS_ALL_REGIONS", "limit": 12.0, "usage": 8.0 }]));
    }

    #[test]
    fn sim_gce_quota_is_per_region_and_gpu_metric() {
        let mut world = world(SCENARIO);
        // g2-standard-96 carries 8 L4: a limit of 16 admits two.
        let over = call(&mut world, Method::POST, BULK, "", bulk("g2-standard-96", 3, 3));
        let name = over.body["name"].as_str().unwrap().to_string();
        let done = call(
            &mut world,
            Method::POST,
            &format!("projects/p/zones/us-central1-a/operations/{name}/wait"),
            "",
            Value::Null,
        );
        let error = &done.body["error"]["errors"][0];
        assert_eq!(error["code"], "QUOTA_EXCEEDED");
        assert!(error["message"].as_str().unwrap().contains("NVIDIA_L4_GPUS"));
        assert_eq!(error["errorDetails"][0]["quotaInfo"]["limit"], 16);
        let partial = call(&mut world, Method::POST, BULK, "", bulk("g2-standard-96", 3, 1));
        assert_eq!(partial.status, StatusCode::OK);
        assert_eq!(world.gce.instances().count(), 2);
        let region = call(&mut world, Method::GET, "projects/p/regions/us-central1", "", Value::Null);
        assert_eq!(region.body["quotas"], json!([{ "metric": "NVIDIA_L4_GPUS", "limit": 16.0, "usage": 16.0 }]));
        assert_eq!(region.body["zones"].as_array().unwrap().len(), 4);
        let other = call(&mut world, Method::GET, "projects/other/regions/us-central1", "", Value::Null);
        assert_eq!(other.body["quotas"][0]["usage"], 0.0, "quota usage is per project");
    }

    #[test]
    fn sim_gce_lists_filter_on_labels_and_page() {
        let mut world = world("");
        for (zone, team) in [("us-central1-a", "ml"), ("us-central1-b", "ml"), ("us-central1-a", "web")] {
            let body = json!({
                "count": "2",
                "namePattern": format!("{team}-##"),
                "instanceProperties": { "machineType": "a3-highgpu-8g", "disks": disks(), "networkInterfaces": nics(), "labels": { "team": team } },
            });
            let response =
                call(&mut world, Method::POST, &format!("projects/p/zones/{zone}/instances/bulkInsert"), "", body);
            assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        }
        let zone_list = call(
            &mut world,
            Method::GET,
            "projects/p/zones/us-central1-a/instances",
            "filter=labels.team+%3D+ml",
            Value::Null,
        );
        assert_eq!(zone_list.body["items"].as_array().unwrap().len(), 2);
        let mut token = String::new();
        let mut pages = Vec::new();
        loop {
            let query = format!("filter=labels.team%3D%22ml%22&maxResults=3&pageToken={token}");
            let page = call(&mut world, Method::GET, "projects/p/aggregated/instances", &query, Value::Null);
            let items = page.body["items"].as_object().unwrap();
            assert_eq!(items.len(), world.gce_zones().len(), "every zone is a scope of every page");
            for (zone, scoped) in items.iter().filter(|(_, scoped)| scoped.get("instances").is_none()) {
                assert_eq!(scoped["warning"]["code"], "NO_RESULTS_ON_PAGE", "{zone}");
                assert_eq!(scoped["warning"]["data"][0]["value"], zone.as_str());
            }
            pages.push(
                items
                    .iter()
                    .filter_map(|(zone, scoped)| Some((zone.clone(), scoped.get("instances")?.as_array()?.len())))
                    .collect::<Vec<_>>(),
            );
            match page.body["nextPageToken"].as_str() {
                Some(next) => token = next.to_string(),
                None => break,
            }
        }
        let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
        for (zone, count) in pages.iter().flatten() {
            *per_zone.entry(zone.clone()).or_default() += count;
        }
        let expected = [("zones/us-central1-a".to_string(), 2), ("zones/us-central1-b".to_string(), 2)];
        assert_eq!(per_zone, BTreeMap::from(expected), "pages: {pages:?}");
        assert!(pages.iter().any(|page| page.iter().map(|(_, n)| n).sum::<usize>() < 3), "short pages: {pages:?}");
        let regex = call(
            &mut world,
            Method::GET,
            "projects/p/aggregated/instances",
            "filter=name+eq+%27web-.*%27",
            Value::Null,
        );
        assert_eq!(regex.body["items"]["zones/us-central1-a"]["instances"].as_array().unwrap().len(), 2);
        for bad in [
            "filter=color+%3D+red",
            "filter=labels.team+%3D+ml+OR+labels.team+%3D+web",
            "maxResults=501",
            "pageToken=nope",
        ] {
            let response = call(&mut world, Method::GET, "projects/p/aggregated/instances", bad, Value::Null);
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(response.body["error"]["errors"][0]["reason"], "invalid");
        }
    }

    #[test]
    fn sim_gce_refuses_bad_requests_with_http_errors() {
        let mut world = world("");
        let insert = |name: &str| json!({ "name": name, "machineType": "zones/us-central1-a/machineTypes/a3-highgpu-8g", "disks": disks(), "networkInterfaces": nics() });
        let ok = call(&mut world, Method::POST, "projects/p/zones/us-central1-a/instances", "", insert("vm-1"));
        assert_eq!(ok.status, StatusCode::OK);
        assert!(ok.body["targetId"].is_string());
        let cases = [
            ("projects/p/zones/us-central1-a/instances", insert("vm-1"), StatusCode::CONFLICT),
            ("projects/p/zones/us-central1-a/instances", insert("VM_2"), StatusCode::BAD_REQUEST),
            ("projects/p/zones/us-central1-z/instances", insert("vm-2"), StatusCode::NOT_FOUND),
            ("projects/p/zones/us-central1-f/instances", insert("vm-2"), StatusCode::BAD_REQUEST),
            (
                BULK,
                json!({ "count": "2", "minCount": "3", "namePattern": "x-#", "instanceProperties": { "machineType": "a3-highgpu-8g", "disks": disks(), "networkInterfaces": nics() } }),
                StatusCode::BAD_REQUEST,
            ),
            (
                BULK,
                json!({ "count": "20", "namePattern": "x-#", "instanceProperties": { "machineType": "a3-highgpu-8g", "disks": disks(), "networkInterfaces": nics() } }),
                StatusCode::BAD_REQUEST,
            ),
            (
                BULK,
                json!({ "count": "1", "namePattern": "x-#", "instanceProperties": { "machineType": "a3-highgpu-8g", "disks": disks(), "networkInterfaces": nics(), "labels": { "Team": "x" } } }),
                StatusCode::BAD_REQUEST,
            ),
            (BULK, json!("not an object"), StatusCode::BAD_REQUEST),
        ];
        for (path, body, status) in cases {
            let response = call(&mut world, Method::POST, path, "", body.clone());
            assert_eq!(response.status, status, "{path} {body}: {}", response.body);
            assert_eq!(response.body["error"]["code"], status.as_u16());
        }
        let missing =
            call(&mut world, Method::DELETE, "projects/p/zones/us-central1-a/instances/vm-9", "", Value::Null);
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(world.gce.instances().count(), 1);
        assert!(valid("vm-1") && !valid("1vm") && !valid("vm-") && !valid(&"a".repeat(64)));
        assert_eq!(world.counters()["gcp"]["instances.insert"], 5);
    }
}
