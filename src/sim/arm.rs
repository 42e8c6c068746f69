//! Azure Resource Manager on the wire: JSON requests and responses under
//! `/subscriptions/...`, shaped as the REST spec of Microsoft.Compute
//! (`virtualMachineScaleSets`, `virtualMachines`, `usages`, and the reads of
//! [`account`]) and as real ARM shapes them,
//! so that unmodified SDKs (azure_mgmt_compute, Python azure-mgmt-compute)
//! work against it.
//!
//! Every change answers 200/201/202 with `Azure-AsyncOperation` and
//! `Location` headers pointing at an operation under
//! `/subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/operations/{id}`
//! (`?monitor=true` for the Location form), with `Retry-After: 0` so clients
//! never wait in real time. Any `api-version` is accepted; bearer tokens are
//! required but not checked. Semantics live in [`super::vmss`].

mod account;

use super::faults::{CredentialTrouble, Fault};
use super::paging::Cursor;
use super::vmss::{self, ArmFault, OperationStatus, ScaleSet, ScaleSetPatch, ScaleSetRef, ScaleSetSpec, Vm};
use super::world::{MAX_TAGS_PER_RESOURCE, Tags, World};
use crate::model::Cloud;
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// Items per page of the list operations unless the scenario says fewer
/// (`arm_page_size`). ARM documents no page size, only `nextLink`; 1,000 is
/// the most the simulator serves, so that paging costs what it does on the
/// real service at the sizes seen there (hundreds to a thousand).
pub const PAGE_SIZE: usize = 1000;
const SCALE_SET_TYPE: &str = "Microsoft.Compute/virtualMachineScaleSets";
const VM_TYPE: &str = "Microsoft.Compute/virtualMachines";
/// Longest resource name ARM accepts for a scale set.
const MAX_NAME_LEN: usize = 64;

/// A response ready for the socket, and whether the world changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmResponse {
    pub status: StatusCode,
    /// Lowercase names, as HTTP/1.1 peers read them case-insensitively.
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    pub mutated: bool,
}

/// One ARM request as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct ArmRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Option<&'a str>,
    /// `http://host:port` of this simulator, for links it hands out.
    pub base_url: &'a str,
    pub body: &'a [u8],
}

/// Handles one request under `/subscriptions/`.
pub fn handle(world: &mut World, request: ArmRequest<'_>) -> ArmResponse {
    let request_id = world.next_request_id();
    let mut response = match dispatch(world, &request) {
        Ok(response) => response,
        Err(fault) => error_response(&fault),
    };
    response.headers.push(("x-ms-request-id", request_id));
    response
}

/// The routes, by path shape (case-insensitive, as ARM's).
enum Route {
    ScaleSets { subscription: String, resource_group: String },
    ScaleSet(ScaleSetRef),
    DeleteInstances(ScaleSetRef),
    Vms { subscription: String, resource_group: String },
    Vm { subscription: String, resource_group: String, name: String },
    Operation { subscription: String, name: String },
    Usages { subscription: String, location: String },
}

/// A path's segments, percent-decoded.
fn segments(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty()).map(|s| percent_decode(s).unwrap_or_else(|| s.to_string())).collect()
}

fn route(path: &str) -> Option<Route> {
    let segments = segments(path);
    let is = |index: usize, literal: &str| segments.get(index).is_some_and(|s| s.eq_ignore_ascii_case(literal));
    if !is(0, "subscriptions") || segments.len() < 2 {
        return None;
    }
    let subscription = segments[1].clone();
    if is(2, "providers") && is(3, "Microsoft.Compute") && is(4, "locations") && is(6, "operations") {
        return (segments.len() == 8).then(|| Route::Operation { subscription, name: segments[7].clone() });
    }
    if is(2, "providers") && is(3, "Microsoft.Compute") && is(4, "locations") && is(6, "usages") {
        return (segments.len() == 7).then(|| Route::Usages { subscription, location: segments[5].clone() });
    }
    if !(is(2, "resourceGroups") && is(4, "providers") && is(5, "Microsoft.Compute")) {
        return None;
    }
    let resource_group = segments[3].clone();
    let scale_set = |name: &String| ScaleSetRef {
        subscription: subscription.clone(),
        resource_group: resource_group.clone(),
        name: name.clone(),
    };
    match (segments.len(), is(6, "virtualMachineScaleSets"), is(6, "virtualMachines")) {
        (7, true, _) => Some(Route::ScaleSets { subscription, resource_group }),
        (8, true, _) => Some(Route::ScaleSet(scale_set(&segments[7]))),
        (9, true, _) if is(8, "delete") => Some(Route::DeleteInstances(scale_set(&segments[7]))),
        (7, _, true) => Some(Route::Vms { subscription, resource_group }),
        (8, _, true) => Some(Route::Vm { subscription, resource_group, name: segments[7].clone() }),
        _ => None,
    }
}

fn dispatch(world: &mut World, request: &ArmRequest<'_>) -> Result<ArmResponse, ArmFault> {
    let query = Query::parse(request.query)?;
    let Some(route) = route(request.path) else {
        let Some(read) = account::route(request.path).filter(|_| request.method == Method::GET) else {
            return Err(ArmFault::new(
                404,
                "InvalidResourceType",
                format!(
                    "The simulator does not serve {} {}: only virtualMachineScaleSets, virtualMachines, operations, usages, skus and virtual machine images of Microsoft.Compute, resource groups and subnets.",
                    request.method, request.path
                ),
            ));
        };
        admit(world, request, &query, read.action())?;
        return account::answer(world, read, &query);
    };
    let method = request.method;
    let action = match (&route, method.as_str()) {
        (Route::ScaleSets { .. }, "GET") => "VirtualMachineScaleSets_List",
        (Route::ScaleSet(_), "GET") => "VirtualMachineScaleSets_Get",
        (Route::ScaleSet(_), "PUT") => "VirtualMachineScaleSets_CreateOrUpdate",
        (Route::ScaleSet(_), "PATCH") => "VirtualMachineScaleSets_Update",
        (Route::ScaleSet(_), "DELETE") => "VirtualMachineScaleSets_Delete",
        (Route::DeleteInstances(_), "POST") => "VirtualMachineScaleSets_DeleteInstances",
        (Route::Vms { .. }, "GET") => "VirtualMachines_List",
        (Route::Vm { .. }, "GET") => "VirtualMachines_Get",
        (Route::Operation { .. }, "GET") => "Operations_Get",
        (Route::Usages { .. }, "GET") => "Usage_List",
        _ => {
            return Err(ArmFault::new(
                405,
                "MethodNotAllowed",
                format!("The method {method} is not allowed on {}.", request.path),
            ));
        }
    };
    let api_version = admit(world, request, &query, action)?;
    if let Some(resource_group) = route.resource_group() {
        account::check_resource_group(world, resource_group)?;
    }
    let links = Links { base_url: request.base_url, api_version };
    match route {
        Route::ScaleSets { subscription, resource_group } => {
            let sets = vmss::list(world, &subscription, &resource_group);
            let (page, next) = arm_page(world, query.skip_token()?, &sets);
            let page: Vec<Value> = page.into_iter().map(|s| scale_set_json(world, s)).collect();
            Ok(ok(StatusCode::OK, list_json(page, next.map(|at| links.next(request.path, None, at)))))
        }
        Route::ScaleSet(at) => match method.as_str() {
            "GET" => Ok(ok(StatusCode::OK, scale_set_json(world, vmss::get(world, &at)?))),
            "PUT" => {
                let body = parse_json(request.body)?;
                check_api_version(links.api_version, &string_at(&body, "/location")?.unwrap_or_default())?;
                let spec = scale_set_spec(&body)?;
                check_name(&at.name)?;
                account::check_scale_set(world, &body, &at.id())?;
                let change = vmss::create_or_update(world, &at, spec)?;
                let status = if change.created { StatusCode::CREATED } else { StatusCode::OK };
                Ok(changed(status, change.scale_set.map(|s| scale_set_json(world, &s)), &links, &change.operation))
            }
            "PATCH" => {
                let patch = scale_set_patch(&parse_json(request.body)?)?;
                let change = vmss::update(world, &at, patch)?;
                Ok(changed(
                    StatusCode::OK,
                    change.scale_set.map(|s| scale_set_json(world, &s)),
                    &links,
                    &change.operation,
                ))
            }
            _ => match vmss::delete(world, &at) {
                Some(operation) => Ok(changed(StatusCode::ACCEPTED, None, &links, &operation)),
                None => {
                    Ok(ArmResponse { status: StatusCode::NO_CONTENT, headers: Vec::new(), body: None, mutated: false })
                }
            },
        },
        Route::DeleteInstances(at) => {
            let body = parse_json(request.body)?;
            let names = string_list(body.get("instanceIds"), "instanceIds")?;
            let operation = vmss::delete_instances(world, &at, &names)?;
            Ok(changed(StatusCode::ACCEPTED, None, &links, &operation))
        }
        Route::Vms { subscription, resource_group } => {
            let filter = query.get("$filter");
            let scale_set_id = filter.map(scale_set_filter).transpose()?;
            let all = vmss::vms(world, &subscription, &resource_group, scale_set_id.as_deref());
            let (page, next) = arm_page(world, query.skip_token()?, &all);
            let page: Vec<Value> = page.into_iter().map(|vm| vm_json(world, vm)).collect();
            Ok(ok(StatusCode::OK, list_json(page, next.map(|at| links.next(request.path, filter, at)))))
        }
        Route::Vm { subscription, resource_group, name } => {
            Ok(ok(StatusCode::OK, vm_json(world, vmss::vm(world, &subscription, &resource_group, &name)?)))
        }
        Route::Operation { subscription, name } => {
            let Some((operation, status)) = vmss::poll(world, &subscription, &name) else {
                return Err(ArmFault::new(404, "NotFound", format!("The operation '{name}' was not found.")));
            };
            let monitor = query.get("monitor").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            Ok(operation_response(&operation, &status, monitor, &links, world.now))
        }
        Route::Usages { subscription, location } => {
            let value: Vec<Value> = vmss::usages(world, &subscription, &location)
                .into_iter()
                .map(|usage| {
                    json!({
                        "name": { "value": usage.family, "localizedValue": family_display_name(&usage.family) },
                        "currentValue": usage.current,
                        "limit": usage.limit,
                        "unit": "Count",
                    })
                })
                .collect();
            Ok(ok(StatusCode::OK, list_json(value, None)))
        }
    }
}

/// Counts a call, checks its bearer token, lets the scenario's faults
/// refuse it, and returns its api-version.
fn admit<'q>(world: &mut World, request: &ArmRequest<'_>, query: &'q Query, action: &str) -> Result<&'q str, ArmFault> {
    world.record_call(Cloud::Azure, action);
    if !request.authorization.is_some_and(|h| h.starts_with("Bearer ") && h.len() > "Bearer ".len()) {
        return Err(ArmFault::new(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or is not a bearer token.",
        ));
    }
    match world.inject_fault(Cloud::Azure, "", action) {
        None => {}
        Some(Fault::Throttled) => {
            return Err(ArmFault::new(
                429,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type - Write_1Min.",
            ));
        }
        // A reset is never answered: the server drops the connection.
        Some(fault @ (Fault::Transient { .. } | Fault::Reset)) => {
            let status = if fault == (Fault::Transient { variant: 0 }) { 503 } else { 500 };
            let message = "Encountered internal server error. Please try again.";
            return Err(ArmFault::new(status, "InternalServerError", message));
        }
        Some(Fault::Credentials(CredentialTrouble::Expired)) => {
            let now = super::admin::format_time(world.now);
            return Err(ArmFault::new(
                401,
                "ExpiredAuthenticationToken",
                format!("The access token expiry UTC time '{now}' is earlier than current UTC time '{now}'."),
            ));
        }
        Some(Fault::Credentials(CredentialTrouble::Forbidden)) => {
            return Err(ArmFault::new(
                403,
                "AuthorizationFailed",
                format!(
                    "The client '00000000-0000-0000-0000-00000000c11e' with object id '00000000-0000-0000-0000-00000000c11e' does not have authorization to perform action '{action}' over scope '{}' or the scope is invalid.",
                    request.path
                ),
            ));
        }
    }
    query.api_version()
}

impl Route {
    /// The resource group a route is under, which must exist.
    fn resource_group(&self) -> Option<&str> {
        match self {
            Route::ScaleSets { resource_group, .. }
            | Route::Vms { resource_group, .. }
            | Route::Vm { resource_group, .. } => Some(resource_group),
            Route::ScaleSet(at) | Route::DeleteInstances(at) => Some(&at.resource_group),
            Route::Operation { .. } | Route::Usages { .. } => None,
        }
    }
}

/// The portal's name of a family, as ARM localizes it: `standardNDSH100v5Family`
/// → `Standard NDSH100v5 Family vCPUs`.
fn family_display_name(family: &str) -> String {
    if family.eq_ignore_ascii_case(crate::catalog::AZURE_TOTAL_REGIONAL_VCPUS) {
        return "Total Regional vCPUs".into();
    }
    let stem = family.strip_suffix("Family").unwrap_or(family);
    let stem = stem.get(..8).filter(|p| p.eq_ignore_ascii_case("standard")).map_or(stem, |_| &stem[8..]);
    format!("Standard {stem} Family vCPUs")
}

/// Links the simulator hands out: to operations, and to next pages.
struct Links<'a> {
    base_url: &'a str,
    api_version: &'a str,
}

impl Links<'_> {
    fn operation(&self, operation: &vmss::Operation, monitor: bool) -> String {
        format!(
            "{}/subscriptions/{}/providers/Microsoft.Compute/locations/{}/operations/{}?{}",
            self.base_url,
            operation.subscription,
            operation.location,
            operation.name,
            encode_query(&[("api-version", self.api_version), ("monitor", if monitor { "true" } else { "" })])
        )
    }

    fn next(&self, path: &str, filter: Option<&str>, at: Cursor) -> String {
        let skip = at.token();
        let mut pairs = vec![("api-version", self.api_version)];
        if let Some(filter) = filter {
            pairs.push(("$filter", filter));
        }
        pairs.push(("$skiptoken", skip.as_str()));
        format!("{}{path}?{}", self.base_url, encode_query(&pairs))
    }
}

/// `k=v&...`, skipping empty values.
fn encode_query(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs.iter().copied().filter(|(_, v)| !v.is_empty()).collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

/// The query string, decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Result<Query, ArmFault> {
        serde_urlencoded::from_str(query.unwrap_or(""))
            .map(Query)
            .map_err(|e| ArmFault::invalid(format!("The query string is not valid: {e}")))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    fn api_version(&self) -> Result<&str, ArmFault> {
        self.get("api-version").filter(|v| !v.is_empty()).ok_or_else(|| {
            ArmFault::new(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        })
    }

    /// Where the page starts: `$skiptoken` counts the items already served.
    fn skip_token(&self) -> Result<Cursor, ArmFault> {
        match self.get("$skiptoken") {
            None => Ok(Cursor::default()),
            Some(token) => {
                Cursor::parse(token).ok_or_else(|| ArmFault::invalid(format!("The $skiptoken '{token}' is not valid.")))
            }
        }
    }
}

/// `'virtualMachineScaleSet/id' eq '<id>'` (the property quoted or not):
/// the one filter ARM's VM list takes for flexible scale sets.
fn scale_set_filter(filter: &str) -> Result<String, ArmFault> {
    let refused = || {
        ArmFault::invalid(format!(
            "The $filter '{filter}' is not supported; use 'virtualMachineScaleSet/id' eq '<scale set id>'."
        ))
    };
    let (property, value) = filter.split_once(" eq ").ok_or_else(refused)?;
    let property = property.trim().trim_matches('\'');
    let value = value.trim();
    if !property.eq_ignore_ascii_case("virtualMachineScaleSet/id") || value.len() < 2 {
        return Err(refused());
    }
    value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).map(str::to_string).ok_or_else(refused)
}

fn parse_json(body: &[u8]) -> Result<Value, ArmFault> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ArmFault::new(
            400,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: {e}"),
        )
    })?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ArmFault::new(400, "InvalidRequestContent", "The request content must be a JSON object."))
    }
}

/// A pointer into a JSON body, `None` for absent and `null` alike (the
/// SDKs send `null` for unset optional fields).
fn at<'v>(value: &'v Value, pointer: &str) -> Option<&'v Value> {
    value.pointer(pointer).filter(|v| !v.is_null())
}

fn string_at(value: &Value, pointer: &str) -> Result<Option<String>, ArmFault> {
    match at(value, pointer) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ArmFault::invalid(format!("{pointer} must be a string, not {other}"))),
    }
}

fn capacity_at(value: &Value) -> Result<Option<u32>, ArmFault> {
    match at(value, "/sku/capacity") {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ArmFault::invalid(format!("sku.capacity must be a non-negative integer, not {v}"))),
    }
}

fn tags_at(value: &Value) -> Result<Option<Tags>, ArmFault> {
    let Some(tags) = at(value, "/tags") else {
        return Ok(None);
    };
    let object = tags.as_object().ok_or_else(|| ArmFault::invalid("tags must be an object of strings"))?;
    if object.len() > MAX_TAGS_PER_RESOURCE {
        return Err(ArmFault::new(
            400,
            "InvalidTag",
            format!("A resource can have at most {MAX_TAGS_PER_RESOURCE} tags; {} were given.", object.len()),
        ));
    }
    let mut out = Tags::new();
    for (key, value) in object {
        let value = value.as_str().ok_or_else(|| ArmFault::invalid(format!("tag '{key}' must have a string value")))?;
        out.insert(key.clone(), value.to_string());
    }
    Ok(Some(out))
}

fn string_list(value: Option<&Value>, name: &str) -> Result<Vec<String>, ArmFault> {
    let refused = || ArmFault::invalid(format!("{name} must be a list of virtual machine names"));
    let items = value.and_then(Value::as_array).ok_or_else(refused)?;
    items.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(refused)).collect()
}

/// Resource names ARM accepts for scale sets: 1 to 64 letters, digits, `-`,
/// `_` and `.`, starting with a letter or digit, not ending in `.` or `-`.
fn check_name(name: &str) -> Result<(), ArmFault> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !name.ends_with(['.', '-']);
    if valid {
        Ok(())
    } else {
        Err(ArmFault::new(400, "InvalidResourceName", format!("The resource name '{name}' is invalid.")))
    }
}

/// A PUT body as the world needs it, checked the way ARM checks flexible
/// scale sets.
fn scale_set_spec(body: &Value) -> Result<ScaleSetSpec, ArmFault> {
    let location = string_at(body, "/location")?.ok_or_else(|| {
        ArmFault::new(400, "LocationRequired", "The location property is required for this definition.")
    })?;
    let sku_name = string_at(body, "/sku/name")?.ok_or_else(|| ArmFault::invalid("sku.name is required."))?;
    let mode = string_at(body, "/properties/orchestrationMode")?;
    if !mode.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("Flexible")) {
        return Err(ArmFault::invalid(format!(
            "properties.orchestrationMode is {}: the simulator serves scale sets with Flexible orchestration only.",
            mode.as_deref().unwrap_or("not set")
        )));
    }
    // Flexible orchestration requires it (ARM's spec: 1 spreads VMs as widely as possible).
    let platform_fault_domain_count = match at(body, "/properties/platformFaultDomainCount") {
        None => return Err(missing("platformFaultDomainCount")),
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ArmFault::invalid("platformFaultDomainCount must be an integer").at("platformFaultDomainCount")
        })?),
    };
    let capacity = capacity_at(body)?.unwrap_or(0);
    let (vm_profile, image_reference) = match at(body, "/properties/virtualMachineProfile") {
        // A flexible scale set without a profile holds only VMs made elsewhere.
        None if capacity > 0 => return Err(missing("virtualMachineProfile")),
        None => (None, None),
        Some(profile) => {
            let image = check_vm_profile(profile)?;
            (Some(without_secrets(profile)), Some(image))
        }
    };
    Ok(ScaleSetSpec {
        location: location.to_ascii_lowercase().replace(' ', ""),
        sku_name,
        capacity,
        tags: tags_at(body)?.unwrap_or_default(),
        platform_fault_domain_count,
        vm_profile,
        image_reference,
    })
}

/// The first api-version of `Microsoft.Compute/virtualMachineScaleSets`
/// that takes flexible orchestration; every later one does too (the SDKs
/// move to new ones faster than a list here would).
const FIRST_FLEXIBLE_API_VERSION: &str = "2021-03-01";

/// A scale set PUT in an api-version ARM does not serve: a malformed one is
/// `InvalidApiVersionParameter`, a well-formed one from before flexible
/// orchestration `NoRegisteredProviderFound`, both 400.
fn check_api_version(version: &str, location: &str) -> Result<(), ArmFault> {
    let date = version.strip_suffix("-preview").unwrap_or(version);
    let well_formed = date.len() == 10 && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok();
    if !well_formed {
        return Err(ArmFault::new(
            400,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{version}' is invalid. The supported versions are '{FIRST_FLEXIBLE_API_VERSION}' and later."
            ),
        ));
    }
    if date < FIRST_FLEXIBLE_API_VERSION {
        return Err(ArmFault::new(
            400,
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location '{location}' and API version '{version}' for type 'virtualMachineScaleSets'. The supported api-versions are '{FIRST_FLEXIBLE_API_VERSION}' and later."
            ),
        ));
    }
    Ok(())
}

/// ARM's refusal of a required property left out: 400 `InvalidParameter`
/// naming it, with the property as the error's `target`.
fn missing(target: &str) -> ArmFault {
    ArmFault::invalid(format!("Required parameter '{target}' is missing (null).")).at(target)
}

/// What ARM insists on in a flexible scale set's VM profile: an OS profile
/// with an admin user, a storage profile with an image, a network profile
/// with `networkApiVersion` and at least one network interface
/// configuration, base64 custom data. Returns the image reference.
fn check_vm_profile(profile: &Value) -> Result<Value, ArmFault> {
    for (pointer, target) in [
        ("/osProfile", "osProfile"),
        ("/osProfile/adminUsername", "osProfile.adminUsername"),
        ("/storageProfile", "storageProfile"),
        ("/networkProfile", "networkProfile"),
    ] {
        if at(profile, pointer).is_none_or(Value::is_null) {
            return Err(missing(target));
        }
    }
    let nics = at(profile, "/networkProfile/networkInterfaceConfigurations").and_then(Value::as_array);
    if nics.is_none_or(Vec::is_empty) {
        return Err(missing("networkProfile.networkInterfaceConfigurations"));
    }
    let image = at(profile, "/storageProfile/imageReference")
        .ok_or_else(|| ArmFault::invalid("virtualMachineProfile.storageProfile.imageReference is required."))?;
    let by_id = string_at(image, "/id")?.is_some();
    let by_urn = ["/publisher", "/offer", "/sku", "/version"].iter().all(|p| at(image, p).is_some());
    if !by_id && !by_urn {
        return Err(ArmFault::invalid("imageReference needs either id, or publisher, offer, sku and version."));
    }
    if string_at(profile, "/networkProfile/networkApiVersion")?.is_none() {
        return Err(ArmFault::invalid(
            "Parameter 'networkProfile.networkApiVersion' is required for scale sets with Flexible orchestration mode.",
        )
        .at("networkProfile.networkApiVersion"));
    }
    if let Some(data) = string_at(profile, "/osProfile/customData")?
        && base64::engine::general_purpose::STANDARD.decode(&data).is_err()
    {
        return Err(ArmFault::invalid("osProfile.customData must be base64-encoded."));
    }
    Ok(image.clone())
}

/// ARM never returns custom data or passwords it was given.
fn without_secrets(profile: &Value) -> Value {
    let mut profile = profile.clone();
    if let Some(os) = profile.get_mut("osProfile").and_then(Value::as_object_mut) {
        os.remove("customData");
        os.remove("adminPassword");
    }
    strip_nulls(profile)
}

fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

fn scale_set_patch(body: &Value) -> Result<ScaleSetPatch, ArmFault> {
    Ok(ScaleSetPatch { sku_name: string_at(body, "/sku/name")?, capacity: capacity_at(body)?, tags: tags_at(body)? })
}

fn scale_set_json(world: &World, set: &ScaleSet) -> Value {
    let mut properties = Map::new();
    properties.insert("orchestrationMode".into(), json!("Flexible"));
    properties.insert("provisioningState".into(), json!(world.arm.provisioning_state(set, world.now)));
    properties.insert("uniqueId".into(), json!(set.unique_id));
    properties.insert("timeCreated".into(), json!(super::admin::format_time(set.time_created)));
    properties.insert("singlePlacementGroup".into(), json!(false));
    if let Some(count) = set.platform_fault_domain_count {
        properties.insert("platformFaultDomainCount".into(), json!(count));
    }
    if let Some(profile) = &set.vm_profile {
        properties.insert("virtualMachineProfile".into(), profile.clone());
    }
    json!({
        "id": set.id,
        "name": set.name,
        "type": SCALE_SET_TYPE,
        "location": set.location,
        "tags": set.tags,
        "sku": { "name": set.sku_name, "tier": "Standard", "capacity": set.capacity },
        "properties": properties,
    })
}

fn vm_json(world: &World, vm: &Vm) -> Value {
    let created = super::lifecycle::after(vm.time_created, world.lifecycle.azure_operation);
    let provisioning_state = if world.now < created { "Creating" } else { "Succeeded" };
    let mut storage = Map::new();
    if let Some(image) = &vm.image_reference {
        storage.insert("imageReference".into(), image.clone());
    }
    json!({
        "id": vm.id,
        "name": vm.name,
        "type": VM_TYPE,
        "location": vm.location,
        "tags": vm.tags,
        "properties": {
            "vmId": vm.vm_id,
            "hardwareProfile": { "vmSize": vm.vm_size },
            "storageProfile": storage,
            "osProfile": { "computerName": vm.name.replace('_', "") },
            "virtualMachineScaleSet": { "id": vm.scale_set_id },
            "provisioningState": provisioning_state,
            "timeCreated": super::admin::format_time(vm.time_created),
        },
    })
}

/// One page of a list (at most the scenario's `arm_page_size`), and where
/// the next starts.
fn arm_page<'a, T>(world: &World, at: Cursor, all: &'a [T]) -> (Vec<&'a T>, Option<Cursor>) {
    let skip = usize::try_from(at.after).unwrap_or(usize::MAX);
    let positioned = all.iter().enumerate().skip(skip).map(|(index, item)| (index as u64 + 1, item));
    world.paging.page(at, world.arm.page_size.get(), positioned)
}

fn list_json(value: Vec<Value>, next_link: Option<String>) -> Value {
    match next_link {
        Some(next) => json!({ "value": value, "nextLink": next }),
        None => json!({ "value": value }),
    }
}

fn error_json(fault: &ArmFault) -> Value {
    let details: Vec<Value> =
        fault.details.iter().map(|(code, message)| json!({ "code": code, "message": message })).collect();
    let mut error = json!({ "code": fault.code, "message": fault.message });
    if let Some(target) = &fault.target {
        error["target"] = json!(target);
    }
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    error
}

fn ok(status: StatusCode, body: Value) -> ArmResponse {
    ArmResponse { status, headers: Vec::new(), body: Some(body), mutated: false }
}

/// A change's response: its body, and the headers that lead to its operation.
fn changed(status: StatusCode, body: Option<Value>, links: &Links<'_>, operation: &vmss::Operation) -> ArmResponse {
    ArmResponse {
        status,
        headers: vec![
            ("azure-asyncoperation", links.operation(operation, false)),
            ("location", links.operation(operation, true)),
            ("retry-after", retry_after(operation, operation.start)),
        ],
        body,
        mutated: true,
    }
}

/// An operation's status resource, or (`monitor=true`) its Location form:
/// 202 while in progress, then 200 (or the error) when done.
fn operation_response(
    operation: &vmss::Operation,
    status: &OperationStatus,
    monitor: bool,
    links: &Links<'_>,
    now: DateTime<Utc>,
) -> ArmResponse {
    let in_progress_headers =
        || vec![("location", links.operation(operation, true)), ("retry-after", retry_after(operation, now))];
    if monitor {
        return match status {
            OperationStatus::InProgress => {
                ArmResponse { status: StatusCode::ACCEPTED, headers: in_progress_headers(), body: None, mutated: false }
            }
            OperationStatus::Succeeded => {
                ArmResponse { status: StatusCode::NO_CONTENT, headers: Vec::new(), body: None, mutated: false }
            }
            OperationStatus::Failed(fault) => error_response(&ArmFault { status: 409, ..fault.clone() }),
        };
    }
    let mut body = json!({
        "name": operation.name,
        "status": status.name(),
        "startTime": super::admin::format_time(operation.start),
    });
    if !matches!(status, OperationStatus::InProgress) {
        body["endTime"] = json!(super::admin::format_time(operation.done_at.max(operation.start)));
    }
    if let OperationStatus::Failed(fault) = status {
        body["error"] = error_json(fault);
    }
    let headers = if matches!(status, OperationStatus::InProgress) {
        vec![("retry-after", retry_after(operation, now))]
    } else {
        Vec::new()
    };
    ArmResponse { status: StatusCode::OK, headers, body: Some(body), mutated: false }
}

/// `Retry-After` of an operation in progress: whole seconds until its
/// outcome, so that a client sleeping that long (in simulated time) finds it.
fn retry_after(operation: &vmss::Operation, now: DateTime<Utc>) -> String {
    let millis = u64::try_from((operation.done_at - now).num_milliseconds()).unwrap_or(0);
    millis.div_ceil(1000).to_string()
}

/// An error as ARM sends it: `{"error": {code, message, details}}`, with
/// `x-ms-error-code`.
pub fn error_response(fault: &ArmFault) -> ArmResponse {
    let mut headers = vec![("x-ms-error-code", fault.code.clone())];
    if fault.status == 429 {
        // ARM names its wait; the simulator's buckets refill by calls, not
        // time, so the client may retry at once.
        headers.push(("retry-after", "0".to_string()));
    }
    ArmResponse {
        status: StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_REQUEST),
        headers,
        body: Some(json!({ "error": error_json(fault) })),
        mutated: false,
    }
}

/// `%XX` decoding of one path segment; `None` if malformed or not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::sim::scenario::Scenario;

    const BASE: &str = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute";

    fn call(world: &mut World, method: Method, path: &str, query: &str, body: Value) -> ArmResponse {
        let body = body.to_string();
        handle(
            world,
            ArmRequest {
                method: &method,
                path,
                query: Some(query),
                authorization: Some("Bearer t"),
                base_url: "http://sim",
                body: body.as_bytes(),
            },
        )
    }

    fn put_body(capacity: u32) -> Value {
        json!({
            "location": "eastus",
            "sku": { "name": "Standard_NC24ads_A100_v4", "capacity": capacity },
            "properties": {
                "orchestrationMode": "Flexible",
                "platformFaultDomainCount": 1,
                "timeCreated": null,
                "virtualMachineProfile": {
                    "storageProfile": { "imageReference": { "publisher": "p", "offer": "o", "sku": "s", "version": "latest" } },
                    "osProfile": { "computerNamePrefix": "gf", "adminUsername": "gf", "customData": "ZWNobyBoaQ==", "adminPassword": "x" },
                    "networkProfile": {
                        "networkApiVersion": "2020-11-01",
                        "networkInterfaceConfigurations": [{ "name": "nic", "properties": { "primary": true } }],
                    },
                },
            },
        })
    }

    fn code(response: &ArmResponse) -> &str {
        response.body.as_ref().and_then(|b| b["error"]["code"].as_str()).unwrap_or("")
    }

    #[test]
    fn sim_arm_put_answers_with_async_operation_headers_and_hides_secrets() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let path = format!("{BASE}/virtualMachineScaleSets/gf-a");
        let response = call(&mut world, Method::PUT, &path, "api-version=2024-07-01", put_body(2));
        assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
        assert!(response.mutated);
        let header = |name: &str| response.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap();
        let operation = header("azure-asyncoperation");
        assert!(
            operation
                .starts_with("http://sim/subscriptions/sub/providers/Microsoft.Compute/locations/eastus/operations/")
        );
        assert!(header("location").ends_with("&monitor=true"));
        assert_eq!(header("retry-after"), "30", "seconds until the default lifecycle's outcome");
        let body = response.body.unwrap();
        assert_eq!(body["properties"]["provisioningState"], "Creating");
        assert_eq!(body["sku"]["capacity"], 2);
        assert!(body["properties"]["virtualMachineProfile"]["osProfile"].get("customData").is_none());
        assert!(body["properties"]["virtualMachineProfile"]["osProfile"].get("adminPassword").is_none());

        let op_path = operation.trim_start_matches("http://sim").split('?').next().unwrap().to_string();
        let first = call(&mut world, Method::GET, &op_path, "api-version=2024-07-01", Value::Null);
        assert_eq!(first.body.unwrap()["status"], "InProgress");
        world.advance(std::time::Duration::from_secs(20)).unwrap();
        let later = call(&mut world, Method::GET, &op_path, "api-version=2024-07-01", Value::Null);
        assert!(later.headers.contains(&("retry-after", "10".to_string())), "{:?}", later.headers);
        assert_eq!(later.body.unwrap()["status"], "InProgress");
        world.advance(std::time::Duration::from_secs(10)).unwrap();
        let second = call(&mut world, Method::GET, &op_path, "api-version=2024-07-01", Value::Null);
        assert_eq!(second.body.unwrap()["status"], "Succeeded");
        let again = call(&mut world, Method::PUT, &path, "api-version=2024-07-01", put_body(2));
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(world.counters()["azure"]["VirtualMachineScaleSets_CreateOrUpdate"], 2);
        assert_eq!(world.counters()["azure"]["Operations_Get"], 3);
    }

    #[test]
    fn sim_arm_lists_vms_of_a_scale_set_in_pages() {
        let scenario =
            Scenario::parse("arm_page_size = 20\n[paging]\nshort_pages = false\n", std::path::Path::new("s.toml"))
                .unwrap();
        let mut world = World::new(Some(&scenario), &Catalog::builtin()).unwrap();
        let path = format!("{BASE}/virtualMachineScaleSets/gf-a");
        call(&mut world, Method::PUT, &path, "api-version=2024-07-01", put_body(23));
        call(
            &mut world,
            Method::PUT,
            &format!("{BASE}/virtualMachineScaleSets/other"),
            "api-version=2024-07-01",
            put_body(2),
        );
        let filter = format!("'virtualMachineScaleSet/id' eq '{}'", path.to_ascii_uppercase());
        let query = encode_query(&[("api-version", "1"), ("$filter", &filter)]);
        let first =
            call(&mut world, Method::GET, &format!("{BASE}/virtualMachines"), &query, Value::Null).body.unwrap();
        assert_eq!(first["value"].as_array().unwrap().len(), 20);
        let next = first["nextLink"].as_str().unwrap();
        let (next_path, next_query) = next.trim_start_matches("http://sim").split_once('?').unwrap();
        let second = call(&mut world, Method::GET, next_path, next_query, Value::Null).body.unwrap();
        assert_eq!(second["value"].as_array().unwrap().len(), 3);
        assert!(second.get("nextLink").is_none());
        assert_eq!(second["value"][0]["properties"]["virtualMachineScaleSet"]["id"], path);
        let vm = &second["value"][0];
        let name = vm["name"].as_str().unwrap();
        let got =
            call(&mut world, Method::GET, &format!("{BASE}/virtualMachines/{name}"), "api-version=1", Value::Null);
        assert_eq!(got.body.unwrap()["properties"]["hardwareProfile"]["vmSize"], "Standard_NC24ads_A100_v4");
    }

    #[test]
    fn sim_arm_errors_use_arm_codes_and_statuses() {
        let mut world = World::new(None, &Catalog::builtin()).unwrap();
        let set = format!("{BASE}/virtualMachineScaleSets/gf-a");
        let mut uniform = put_body(1);
        uniform["properties"]["orchestrationMode"] = json!("Uniform");
        let mut no_network = put_body(1);
        no_network["properties"]["virtualMachineProfile"]["networkProfile"] = json!({});
        let mut bad_data = put_body(1);
        bad_data["properties"]["virtualMachineProfile"]["osProfile"]["customData"] = json!("%%%");
        let mut h200 = put_body(1);
        h200["sku"]["name"] = json!("Standard_ND96isr_H200_v5");
        let cases = [
            (Method::PUT, set.clone(), "", put_body(1), 400, "MissingApiVersionParameter"),
            (Method::PUT, set.clone(), "api-version=2024-07-01", uniform, 400, "InvalidParameter"),
            (Method::PUT, set.clone(), "api-version=2024-07-01", no_network, 400, "InvalidParameter"),
            (Method::PUT, set.clone(), "api-version=2024-07-01", bad_data, 400, "InvalidParameter"),
            (Method::PUT, set.clone(), "api-version=2024-07-01", h200, 409, "SkuNotAvailable"),
            (
                Method::PUT,
                format!("{BASE}/virtualMachineScaleSets/-bad"),
                "api-version=2024-07-01",
                put_body(1),
                400,
                "InvalidResourceName",
            ),
            (Method::GET, set.clone(), "api-version=2024-07-01", Value::Null, 404, "ResourceNotFound"),
            (
                Method::PATCH,
                set.clone(),
                "api-version=2024-07-01",
                json!({"sku": {"capacity": 1}}),
                404,
                "ResourceNotFound",
            ),
            (
                Method::POST,
                format!("{set}/delete"),
                "api-version=2024-07-01",
                json!({"instanceIds": ["x"]}),
                404,
                "ResourceNotFound",
            ),
            (
                Method::GET,
                format!("{BASE}/virtualMachines"),
                "api-version=1&%24filter=location%20eq%20%27x%27",
                Value::Null,
                400,
                "InvalidParameter",
            ),
            (Method::GET, format!("{BASE}/disks"), "api-version=2024-07-01", Value::Null, 404, "InvalidResourceType"),
            (Method::POST, set.clone(), "api-version=2024-07-01", Value::Null, 405, "MethodNotAllowed"),
        ];
        for (method, path, query, body, status, expected) in cases {
            let response = call(&mut world, method.clone(), &path, query, body);
            assert_eq!((response.status.as_u16(), code(&response)), (status, expected), "{method} {path}?{query}");
            assert!(!response.mutated);
        }
        let anonymous = handle(
            &mut world,
            ArmRequest {
                method: &Method::GET,
                path: &set,
                query: Some("api-version=2024-07-01"),
                authorization: None,
                base_url: "",
                body: b"",
            },
        );
        assert_eq!((anonymous.status.as_u16(), code(&anonymous)), (401, "AuthenticationFailed"));
        let garbage = call(&mut world, Method::PUT, &set, "api-version=2024-07-01", json!([1]));
        assert_eq!(code(&garbage), "InvalidRequestContent");
    }

    #[test]
    fn sim_arm_filter_parses_quoted_and_unquoted_properties() {
        assert_eq!(scale_set_filter("'virtualMachineScaleSet/id' eq '/a/b'").unwrap(), "/a/b");
        assert_eq!(scale_set_filter("virtualMachineScaleSet/id eq '/a/b'").unwrap(), "/a/b");
        assert!(scale_set_filter("virtualMachineScaleSet/id eq /a/b").is_err());
        assert!(scale_set_filter("name eq 'x'").is_err());
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("a%2"), None);
    }

    #[test]
    fn sim_arm_usages_report_family_quotas_and_scale_out_beyond_them_is_refused() {
        let scenario = crate::sim::Scenario::parse(
            "[[quota]]\ncloud = \"azure\"\nregion = \"eastus\"\nmetric = \"standardNDSH100v5Family\"\nlimit = 192\n",
            std::path::Path::new("quota.toml"),
        )
        .unwrap();
        let mut world = World::new(Some(&scenario), &Catalog::builtin()).unwrap();
        let usages = "/subscriptions/sub/providers/Microsoft.Compute/locations/eastus/usages";
        let h100 = |capacity: u32| {
            let mut body = put_body(capacity);
            body["sku"]["name"] = json!("Standard_ND96isr_H100_v5");
            body
        };
        let path = format!("{BASE}/virtualMachineScaleSets/gf-h100");
        assert_eq!(call(&mut world, Method::PUT, &path, "api-version=2024-07-01", h100(1)).status, StatusCode::CREATED);
        let listed = call(&mut world, Method::GET, usages, "api-version=2024-07-01", Value::Null);
        assert_eq!(listed.status, StatusCode::OK);
        assert_eq!(
            listed.body.unwrap(),
            json!({ "value": [{
                "name": { "value": "standardNDSH100v5Family", "localizedValue": "Standard NDSH100v5 Family vCPUs" },
                "currentValue": 96,
                "limit": 192,
                "unit": "Count",
            }] })
        );
        let west =
            call(&mut world, Method::GET, &usages.replace("eastus", "westus"), "api-version=2024-07-01", Value::Null);
        assert_eq!(west.body.unwrap(), json!({ "value": [] }));

        let refused =
            call(&mut world, Method::PATCH, &path, "api-version=2024-07-01", json!({ "sku": { "capacity": 3 } }));
        assert_eq!((refused.status, code(&refused)), (StatusCode::CONFLICT, "OperationNotAllowed"));
        let message = refused.body.unwrap()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.starts_with(
                "Operation could not be completed as it results in exceeding approved standardNDSH100v5Family Cores quota."
            ),
            "{message}"
        );
        // That gpufleet's Azure client sorts this refusal as a quota (not as an
        // invalid request) is checked from the client's side, in tests/sim_arm.rs.
        assert!(message.contains("Current Limit: 192, Current Usage: 96, Additional Required: 192"), "{message}");
        let other = format!("{BASE}/virtualMachineScaleSets/gf-other");
        let refused = call(&mut world, Method::PUT, &other, "api-version=2024-07-01", h100(2));
        assert_eq!(code(&refused), "OperationNotAllowed", "the quota spans scale sets");
        assert_eq!(vmss::vms(&world, "sub", "rg", None).len(), 1, "refused requests change nothing");
        let other_ref =
            ScaleSetRef { subscription: "sub".into(), resource_group: "rg".into(), name: "gf-other".into() };
        assert!(vmss::get(&world, &other_ref).is_err());
        let fits =
            call(&mut world, Method::PATCH, &path, "api-version=2024-07-01", json!({ "sku": { "capacity": 2 } }));
        assert_eq!(fits.status, StatusCode::OK);
        let a100 = call(&mut world, Method::PUT, &other, "api-version=2024-07-01", put_body(4));
        assert_eq!(a100.status, StatusCode::CREATED, "other families have no quota here");
        assert_eq!(world.counters()["azure"]["Usage_List"], 2);
    }
}
