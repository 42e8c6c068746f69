//! The EC2 Query API on the wire: form-encoded requests in, XML responses and
//! XML errors out, shaped as botocore's service model (`ec2/2016-11-15`) and
//! real EC2 shape them, so that unmodified SDKs (aws-sdk-ec2, boto3) work.
//!
//! Member names follow the EC2 protocol's serialization: lists are flattened
//! with 1-based indices (`InstanceId.1`, `TagSpecification.1.Tag.1.Key`,
//! `Filter.1.Value.1`); response elements use the model's `locationName`s
//! (`reservationSet/item/instancesSet/item`, `tagSet/item/{key,value}`).
//! Semantics live in [`super::world`]; this module only translates.

mod account_reads;
mod resource_reads;

use super::account::{Ec2Attachments, Ec2BlockDevice};
use super::faults::{CredentialTrouble, Fault};
use super::world::{
    DescribeQuery, Filter, Instance, InstanceState, LaunchRequest, MAX_LAUNCH_COUNT, MAX_TAGS_PER_RESOURCE,
    StateChange, Tags, World, WorldError,
};
use crate::model::Cloud;
use axum::http::StatusCode;
use base64::Engine as _;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Region of requests whose `Authorization` header names none.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The (fake) account every simulated resource belongs to.
pub(super) const OWNER_ID: &str = "123456789012";
const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
const MAX_CLIENT_TOKEN_LEN: usize = 64;
const MAX_TAG_KEY_LEN: usize = 128;
const MAX_TAG_VALUE_LEN: usize = 256;

/// A response ready for the socket, and whether the world changed (so the
/// server knows to persist it).
#[derive(Debug, Clone, PartialEq)]
pub struct Ec2Response {
    pub status: StatusCode,
    pub body: String,
    pub mutated: bool,
}

/// An EC2 error: its code, HTTP status and message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub(super) fn client(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, code, message: message.into() }
    }

    pub(super) fn invalid_value(message: impl Into<String>) -> ApiError {
        ApiError::client("InvalidParameterValue", message)
    }

    pub(super) fn missing(parameter: &str) -> ApiError {
        ApiError::client("MissingParameter", format!("The request must contain the parameter {parameter}"))
    }
}

/// The region a SigV4-signed request is for: the third field of the
/// credential scope (`Credential=AKID/20260101/us-west-2/ec2/aws4_request`).
/// Signatures themselves are not checked.
pub fn region_from_authorization(authorization: Option<&str>) -> String {
    authorization
        .and_then(|header| header.split("Credential=").nth(1))
        .and_then(|credential| credential.split([',', ' ']).next())
        .and_then(|scope| scope.split('/').nth(2))
        .filter(|region| !region.is_empty() && region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(DEFAULT_REGION)
        .to_string()
}

/// Handles one EC2 Query API request against the world.
pub fn handle(world: &mut World, region: &str, body: &[u8]) -> Ec2Response {
    let request_id = world.next_request_id();
    let outcome = match Params::parse(body) {
        Err(error) => Err(error),
        Ok(params) => match params.get("Action") {
            None => Err(ApiError::client("MissingAction", "The request must contain the parameter Action")),
            Some(action) => {
                let action = action.to_string();
                world.record_call(Cloud::Aws, &action);
                match world.inject_fault(Cloud::Aws, region, &action) {
                    Some(fault) => Err(fault_error(fault)),
                    // The caller may do everything (the simulator has no IAM):
                    // a dry run says so, and does nothing.
                    None if params.get("DryRun") == Some("true") => Err(ApiError {
                        status: StatusCode::PRECONDITION_FAILED,
                        code: "DryRunOperation",
                        message: "Request would have succeeded, but DryRun flag is set.".into(),
                    }),
                    None => dispatch(world, region, &action, &params, &request_id),
                }
            }
        },
    };
    match outcome {
        Ok((body, mutated)) => Ec2Response { status: StatusCode::OK, body, mutated },
        Err(error) => Ec2Response { status: error.status, body: error_xml(&error, &request_id), mutated: false },
    }
}

/// Runs one action; returns the XML body and whether the world changed.
fn dispatch(
    world: &mut World,
    region: &str,
    action: &str,
    params: &Params,
    request_id: &str,
) -> Result<(String, bool), ApiError> {
    match action {
        "RunInstances" => {
            let request = launch_request(region, params)?;
            let reservation = world.launch(request).map_err(api_error)?;
            let mut xml = XmlWriter::response(action, request_id);
            write_reservation_fields(&mut xml, world, &reservation.reservation_id, reservation.instances.iter());
            Ok((xml.finish(action), true))
        }
        "DescribeInstances" => {
            let query = describe_query(region, params)?;
            let page = world.describe(&query).map_err(api_error)?;
            let mut xml = XmlWriter::response(action, request_id);
            xml.open("reservationSet");
            for (reservation_id, instances) in &page.reservations {
                xml.open("item");
                write_reservation_fields(&mut xml, world, reservation_id, instances.iter().copied());
                xml.close("item");
            }
            xml.close("reservationSet");
            if let Some(token) = &page.next_token {
                xml.leaf("nextToken", token);
            }
            Ok((xml.finish(action), false))
        }
        "TerminateInstances" => {
            let ids = instance_ids(params, true)?;
            let changes = world.terminate(region, &ids).map_err(api_error)?;
            let mut xml = XmlWriter::response(action, request_id);
            write_state_changes(&mut xml, &changes);
            Ok((xml.finish(action), true))
        }
        "CreateTags" => {
            let ids = params.list("ResourceId");
            if ids.is_empty() {
                return Err(ApiError::missing("ResourceId.1"));
            }
            if let Some(other) = ids.iter().find(|id| !id.starts_with("i-")) {
                return Err(ApiError::client(
                    "InvalidID",
                    format!("The ID '{other}' is not valid: the simulator only tags instances"),
                ));
            }
            for id in &ids {
                check_instance_id(id)?;
            }
            let tags = tags(params, "Tag")?;
            if tags.is_empty() {
                return Err(ApiError::missing("Tag.1.Key"));
            }
            world.tag(region, &ids, &tags).map_err(api_error)?;
            let mut xml = XmlWriter::response(action, request_id);
            xml.leaf("return", "true");
            Ok((xml.finish(action), true))
        }
        // The account's reads (offerings, images, subnets), then the
        // per-resource reads of instances, volumes, tags and VPCs.
        _ => match account_reads::dispatch(world, region, action, params, request_id) {
            Some(answer) => answer,
            None => match resource_reads::handle(world, region, action, params, request_id) {
                Some(read) => read.map(|xml| (xml, false)),
                None => Err(ApiError::client(
                    "InvalidAction",
                    format!("The action {action} is not valid for this web service."),
                )),
            },
        },
    }
}

fn launch_request(region: &str, params: &Params) -> Result<LaunchRequest, ApiError> {
    let image_id = params.required("ImageId")?.to_string();
    let instance_type = params.required("InstanceType")?.to_string();
    let min_count = params.required_u32("MinCount")?;
    let max_count = params.required_u32("MaxCount")?;
    let client_token = params.get("ClientToken").map(str::to_string);
    if let Some(token) = &client_token
        && (token.len() > MAX_CLIENT_TOKEN_LEN || !token.is_ascii())
    {
        return Err(ApiError::invalid_value(format!(
            "Value for parameter clientToken is invalid: at most {MAX_CLIENT_TOKEN_LEN} ASCII characters"
        )));
    }
    let user_data = params.get("UserData").map(str::to_string);
    if let Some(data) = &user_data
        && base64::engine::general_purpose::STANDARD.decode(data).is_err()
    {
        return Err(ApiError::invalid_value("Invalid BASE64 encoding of user data."));
    }
    let mut instance_tags = Tags::new();
    for spec in params.members("TagSpecification") {
        let resource_type = params.required(&format!("{spec}.ResourceType"))?;
        if resource_type != "instance" {
            return Err(ApiError::invalid_value(format!(
                "'{resource_type}' is not a valid taggable resource type for this operation: the simulator tags instances only"
            )));
        }
        for (key, value) in tags(params, &format!("{spec}.Tag"))? {
            if instance_tags.insert(key.clone(), value).is_some() {
                return Err(ApiError::invalid_value(format!("Duplicate tag key '{key}' specified.")));
            }
        }
    }
    if instance_tags.len() > MAX_TAGS_PER_RESOURCE {
        return Err(ApiError::client(
            "TagLimitExceeded",
            format!("The maximum number of tags per resource is {MAX_TAGS_PER_RESOURCE}."),
        ));
    }
    Ok(LaunchRequest {
        region: region.to_string(),
        image_id,
        instance_type,
        min_count,
        max_count,
        client_token,
        zone: params.get("Placement.AvailabilityZone").map(str::to_string),
        tags: instance_tags,
        user_data,
        attach: attachments(params)?,
    })
}

/// `SubnetId`, `SecurityGroupId.N`, `KeyName`, `IamInstanceProfile` and
/// `BlockDeviceMapping.N` of a RunInstances request.
fn attachments(params: &Params) -> Result<Ec2Attachments, ApiError> {
    let mut block_devices = Vec::new();
    for member in params.members("BlockDeviceMapping") {
        let device_name = params.required(&format!("{member}.DeviceName"))?.to_string();
        let volume_size_gb = params.optional_u32(&format!("{member}.Ebs.VolumeSize"))?;
        block_devices.push(Ec2BlockDevice { device_name, volume_size_gb });
    }
    let name = params.get("IamInstanceProfile.Name").map(str::to_string);
    let arn = params.get("IamInstanceProfile.Arn").map(str::to_string);
    if name.is_some() && arn.is_some() {
        return Err(ApiError::invalid_value(
            "The parameter 'iamInstanceProfile.name' may not be used in combination with 'iamInstanceProfile.arn'",
        ));
    }
    Ok(Ec2Attachments {
        subnet_id: params.get("SubnetId").map(str::to_string),
        security_group_ids: params.list("SecurityGroupId"),
        key_name: params.get("KeyName").map(str::to_string),
        instance_profile_name: name,
        instance_profile_arn: arn,
        block_devices,
    })
}

fn describe_query(region: &str, params: &Params) -> Result<DescribeQuery, ApiError> {
    Ok(DescribeQuery {
        region: region.to_string(),
        instance_ids: instance_ids(params, false)?,
        filters: filters(params)?,
        max_results: params.optional_u32("MaxResults")?,
        next_token: params.get("NextToken").map(str::to_string),
    })
}

/// `Filter.N.Name` with its `Filter.N.Value.M`.
pub(super) fn filters(params: &Params) -> Result<Vec<Filter>, ApiError> {
    let mut filters = Vec::new();
    for member in params.members("Filter") {
        let name = params.required(&format!("{member}.Name"))?.to_string();
        let values = params.list(&format!("{member}.Value"));
        filters.push(Filter { name, values });
    }
    Ok(filters)
}

/// `InstanceId.N`, each checked for EC2's id format.
pub(super) fn instance_ids(params: &Params, required: bool) -> Result<Vec<String>, ApiError> {
    let ids = params.list("InstanceId");
    if required && ids.is_empty() {
        return Err(ApiError::missing("InstanceId.1"));
    }
    for id in &ids {
        check_instance_id(id)?;
    }
    Ok(ids)
}

/// EC2 instance ids: `i-` and 8 (old style) or 17 lowercase hex digits.
pub(super) fn check_instance_id(id: &str) -> Result<(), ApiError> {
    let well_formed = id.strip_prefix("i-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    });
    if well_formed {
        Ok(())
    } else {
        Err(ApiError::client("InvalidInstanceID.Malformed", format!("Invalid id: \"{id}\"")))
    }
}

/// `PREFIX.N.Key` / `PREFIX.N.Value` pairs, checked against EC2's tag rules.
fn tags(params: &Params, prefix: &str) -> Result<Tags, ApiError> {
    let mut tags = Tags::new();
    for member in params.members(prefix) {
        let key = params.required(&format!("{member}.Key"))?;
        let value = params.get(&format!("{member}.Value")).unwrap_or("");
        if key.is_empty() || key.chars().count() > MAX_TAG_KEY_LEN {
            return Err(ApiError::invalid_value(format!(
                "Tag key must be 1 to {MAX_TAG_KEY_LEN} characters long: '{key}'"
            )));
        }
        if value.chars().count() > MAX_TAG_VALUE_LEN {
            return Err(ApiError::invalid_value(format!(
                "Tag value for key '{key}' exceeds {MAX_TAG_VALUE_LEN} characters"
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::invalid_value(format!("Tag keys starting with 'aws:' are reserved: '{key}'")));
        }
        if key.chars().chain(value.chars()).any(char::is_control) {
            return Err(ApiError::invalid_value(format!("Tag '{key}' contains control characters")));
        }
        tags.insert(key.to_string(), value.to_string());
    }
    Ok(tags)
}

/// The world's refusals as EC2 reports them. Capacity errors are server
/// errors on EC2 (HTTP 500, `InsufficientInstanceCapacity`), everything the
/// caller got wrong is a 400.
fn api_error(error: WorldError) -> ApiError {
    match error {
        WorldError::InsufficientCapacity { instance_type, zone, requested_zone, available, min_count } => {
            let place = if requested_zone {
                format!("the Availability Zone you requested ({zone})")
            } else {
                format!("any Availability Zone of this region (the best, {zone}, has {available})")
            };
            ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "InsufficientInstanceCapacity",
                message: format!(
                    "We currently do not have sufficient {instance_type} capacity in {place} to launch the minimum of {min_count}. Our system will be working on provisioning additional capacity."
                ),
            }
        }
        WorldError::Unsupported { instance_type, place } => ApiError::client(
            "Unsupported",
            format!("Your requested instance type ({instance_type}) is not supported in {place}."),
        ),
        WorldError::UnknownInstanceType(instance_type) => {
            ApiError::invalid_value(format!("Invalid value '{instance_type}' for InstanceType."))
        }
        WorldError::UnknownZone { zone, .. } => ApiError::invalid_value(format!("Invalid availability zone: [{zone}]")),
        WorldError::InvalidCount { min_count, max_count } => ApiError::invalid_value(format!(
            "MinCount ({min_count}) and MaxCount ({max_count}) must be between 1 and {MAX_LAUNCH_COUNT}, and MinCount cannot exceed MaxCount."
        )),
        WorldError::ClientTokenReused { token } => ApiError::client(
            "IdempotentParameterMismatch",
            format!("The client token '{token}' was already used with different request parameters."),
        ),
        WorldError::InstancesNotFound { ids } => {
            let message = match ids.as_slice() {
                [one] => format!("The instance ID '{one}' does not exist"),
                many => format!("The instance IDs '{}' do not exist", many.join(", ")),
            };
            ApiError::client("InvalidInstanceID.NotFound", message)
        }
        WorldError::MaxResultsWithInstanceIds => ApiError::client(
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ),
        WorldError::MaxResultsOutOfRange(value) => ApiError::invalid_value(format!(
            "Value ( {value} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000."
        )),
        WorldError::InvalidNextToken(_) => {
            ApiError::client("InvalidPaginationToken", "The specified pagination token is not valid or is expired.")
        }
        WorldError::UnknownFilter(name) => ApiError::invalid_value(format!("The filter '{name}' is invalid")),
        WorldError::FilterWithoutValues(name) => {
            ApiError::invalid_value(format!("The filter '{name}' requires at least one value"))
        }
        WorldError::TooManyTags { id } => ApiError::client(
            "TagLimitExceeded",
            format!("The maximum number of tags per resource ({MAX_TAGS_PER_RESOURCE}) would be exceeded on {id}."),
        ),
        WorldError::ImageNotFound { id } => {
            ApiError::client("InvalidAMIID.NotFound", format!("The image id '[{id}]' does not exist"))
        }
        WorldError::NoDefaultVpc { .. } => ApiError::client("VPCIdNotSpecified", "No default VPC for this user"),
        WorldError::Refused { code, message } => ApiError::client(code, message),
        WorldError::VcpuLimitExceeded { limit } => ApiError::client(
            "VcpuLimitExceeded",
            format!(
                "You have requested more vCPU capacity than your current vCPU limit of {limit} allows for the instance bucket that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit."
            ),
        ),
        WorldError::ClockOverflow(_) => {
            ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "InternalError", message: error.to_string() }
        }
    }
}

/// The answers EC2 gives when it throttles (`RequestLimitExceeded`, a 503)
/// or fails transiently, for faults the scenario injects.
fn fault_error(fault: Fault) -> ApiError {
    match fault {
        Fault::Throttled => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "RequestLimitExceeded",
            message: "Request limit exceeded.".into(),
        },
        Fault::Transient { variant: 0 } => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "Unavailable",
            message: "The server is overloaded and can't handle the request.".into(),
        },
        // A reset is never answered: the server drops the connection.
        Fault::Transient { .. } | Fault::Reset => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalError",
            message: "An internal error has occurred.".into(),
        },
        Fault::Credentials(CredentialTrouble::Expired) => ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "ExpiredToken",
            message: "The security token included in the request is expired".into(),
        },
        Fault::Credentials(CredentialTrouble::Forbidden) => ApiError {
            status: StatusCode::FORBIDDEN,
            code: "UnauthorizedOperation",
            message: "You are not authorized to perform this operation.".into(),
        },
    }
}

/// The error body EC2 sends, with the request id it was given.
pub fn error_xml(error: &ApiError, request_id: &str) -> String {
    let mut xml = XmlWriter { out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n") };
    xml.open("Response");
    xml.open("Errors");
    xml.open("Error");
    xml.leaf("Code", error.code);
    xml.leaf("Message", &error.message);
    xml.close("Error");
    xml.close("Errors");
    xml.leaf("RequestID", request_id);
    xml.close("Response");
    xml.out
}

/// `reservationId`, `ownerId`, `groupSet`, `instancesSet`: the body of a
/// `Reservation`, both at the root of RunInstances and in `reservationSet`.
fn write_reservation_fields<'a>(
    xml: &mut XmlWriter,
    world: &World,
    reservation_id: &str,
    instances: impl Iterator<Item = &'a Instance>,
) {
    xml.leaf("reservationId", reservation_id);
    xml.leaf("ownerId", OWNER_ID);
    xml.empty("groupSet");
    xml.open("instancesSet");
    for instance in instances {
        write_instance(xml, world, instance);
    }
    xml.close("instancesSet");
}

fn write_instance(xml: &mut XmlWriter, world: &World, instance: &Instance) {
    xml.open("item");
    xml.leaf("instanceId", &instance.id);
    xml.leaf("imageId", &instance.image_id);
    write_state(xml, "instanceState", world.ec2_phase(instance));
    xml.leaf("privateDnsName", "");
    xml.leaf("dnsName", "");
    match instance.terminated_at {
        Some(at) => xml.leaf("reason", &format!("User initiated ({})", at.format("%Y-%m-%d %H:%M:%S GMT"))),
        None => xml.leaf("reason", ""),
    }
    xml.leaf("amiLaunchIndex", &instance.launch_index.to_string());
    xml.empty("productCodes");
    xml.leaf("instanceType", &instance.instance_type);
    xml.leaf("launchTime", &instance.launch_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    xml.open("placement");
    xml.leaf("availabilityZone", &instance.zone);
    xml.leaf("groupName", "");
    xml.leaf("tenancy", "default");
    xml.close("placement");
    xml.open("monitoring");
    xml.leaf("state", "disabled");
    xml.close("monitoring");
    if let Some(token) = &instance.client_token {
        xml.leaf("clientToken", token);
    }
    xml.leaf("architecture", "x86_64");
    xml.leaf("rootDeviceType", "ebs");
    xml.leaf("rootDeviceName", resource_reads::ROOT_DEVICE);
    resource_reads::write_block_device_mapping(xml, instance);
    xml.leaf("vpcId", &resource_reads::default_vpc_id(&instance.region));
    xml.leaf("virtualizationType", "hvm");
    xml.leaf("hypervisor", "xen");
    xml.empty("groupSet");
    // EC2 leaves `tagSet` out when an instance has no tags.
    if !instance.tags.is_empty() {
        xml.open("tagSet");
        for (key, value) in &instance.tags {
            xml.open("item");
            xml.leaf("key", key);
            xml.leaf("value", value);
            xml.close("item");
        }
        xml.close("tagSet");
    }
    xml.close("item");
}

fn write_state(xml: &mut XmlWriter, element: &str, state: InstanceState) {
    xml.open(element);
    xml.leaf("code", &state.code().to_string());
    xml.leaf("name", state.name());
    xml.close(element);
}

fn write_state_changes(xml: &mut XmlWriter, changes: &[StateChange]) {
    xml.open("instancesSet");
    for change in changes {
        xml.open("item");
        xml.leaf("instanceId", &change.instance_id);
        write_state(xml, "currentState", change.current);
        write_state(xml, "previousState", change.previous);
        xml.close("item");
    }
    xml.close("instancesSet");
}

/// The form parameters of one request. A repeated name keeps its first value.
pub(super) struct Params(BTreeMap<String, String>);

impl Params {
    fn parse(body: &[u8]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|e| {
            ApiError::client("MalformedQueryString", format!("The request body is not a valid form: {e}"))
        })?;
        let mut params = BTreeMap::new();
        for (name, value) in pairs {
            params.entry(name).or_insert(value);
        }
        Ok(Params(params))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(super) fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| ApiError::missing(name))
    }

    pub(super) fn optional_u32(&self, name: &str) -> Result<Option<u32>, ApiError> {
        self.get(name)
            .map(|raw| {
                raw.parse::<u32>().map_err(|_| {
                    ApiError::invalid_value(format!(
                        "Value ({raw}) for parameter {name} is invalid. Expecting a non-negative integer."
                    ))
                })
            })
            .transpose()
    }

    fn required_u32(&self, name: &str) -> Result<u32, ApiError> {
        self.optional_u32(name)?.ok_or_else(|| ApiError::missing(name))
    }

    /// The members of a flattened list, `PREFIX.1`, `PREFIX.2`, … in index
    /// order (gaps tolerated), as prefixes for their own fields.
    pub(super) fn members(&self, prefix: &str) -> Vec<String> {
        let dotted = format!("{prefix}.");
        let mut indices: Vec<u32> = self
            .0
            .range(dotted.clone()..)
            .take_while(|(name, _)| name.starts_with(&dotted))
            .filter_map(|(name, _)| name[dotted.len()..].split('.').next()?.parse().ok())
            .collect();
        indices.sort_unstable();
        indices.dedup();
        indices.into_iter().map(|i| format!("{prefix}.{i}")).collect()
    }

    /// The values of a flattened list of strings, `PREFIX.N`, in index order.
    pub(super) fn list(&self, prefix: &str) -> Vec<String> {
        self.members(prefix).iter().filter_map(|member| self.get(member)).map(str::to_string).collect()
    }
}

/// Writes XML element by element; every text goes through [`escape_text`].
pub(super) struct XmlWriter {
    out: String,
}

impl XmlWriter {
    /// Starts `<{Action}Response xmlns=…>` with its `requestId`.
    pub(super) fn response(action: &str, request_id: &str) -> XmlWriter {
        let mut xml = XmlWriter { out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n") };
        let _ = write!(xml.out, "<{action}Response xmlns=\"{XMLNS}\">");
        xml.leaf("requestId", request_id);
        xml
    }

    pub(super) fn finish(mut self, action: &str) -> String {
        let _ = write!(self.out, "</{action}Response>");
        self.out
    }

    pub(super) fn open(&mut self, tag: &str) {
        let _ = write!(self.out, "<{tag}>");
    }

    pub(super) fn close(&mut self, tag: &str) {
        let _ = write!(self.out, "</{tag}>");
    }

    pub(super) fn empty(&mut self, tag: &str) {
        let _ = write!(self.out, "<{tag}/>");
    }

    pub(super) fn leaf(&mut self, tag: &str, text: &str) {
        self.open(tag);
        // Ids, names and numbers need no escaping: a list of thousands of
        // instances is mostly those.
        let plain =
            text.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'&' | b'"' | b'\'') || b == b' ');
        if plain {
            self.out.push_str(text);
        } else {
            self.out.push_str(&escape_text(text));
        }
        self.close(tag);
    }
}

/// Escapes markup characters, and replaces characters XML 1.0 cannot carry
/// at all (most control characters) so that no input yields a document the
/// SDKs fail to parse.
fn escape_text(text: &str) -> String {
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r') || !(c.is_control() || c == '\u{fffe}' || c == '\u{ffff}');
    let cleaned: String = text.chars().map(|c| if allowed(c) { c } else { '\u{fffd}' }).collect();
    quick_xml::escape::escape(cleaned.as_str()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn world() -> World {
        World::new(None, &Catalog::builtin()).unwrap()
    }

    fn call(world: &mut World, body: &str) -> Ec2Response {
        handle(world, DEFAULT_REGION, body.as_bytes())
    }

    fn code_of(response: &Ec2Response) -> &str {
        let start = response.body.find("<Code>").map(|i| i + 6).unwrap_or(0);
        let end = response.body.find("</Code>").unwrap_or(0);
        &response.body[start..end]
    }

    #[test]
    fn sim_region_comes_from_the_credential_scope() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-west-2/ec2/aws4_request, SignedHeaders=host, Signature=abc";
        assert_eq!(region_from_authorization(Some(header)), "us-west-2");
        assert_eq!(region_from_authorization(None), "us-east-1");
        assert_eq!(region_from_authorization(Some("Bearer x")), "us-east-1");
        assert_eq!(region_from_authorization(Some("Credential=A/2026/<x>/ec2")), "us-east-1");
    }

    #[test]
    fn sim_run_instances_parses_flattened_lists_and_escapes_tags() {
        let mut world = world();
        let response = call(
            &mut world,
            "Action=RunInstances&Version=2016-11-15&ImageId=ami-1&InstanceType=p5.48xlarge&MinCount=1&MaxCount=2\
             &TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=a%26b&TagSpecification.1.Tag.1.Value=%3Cx%3E\
             &TagSpecification.1.Tag.2.Key=team&TagSpecification.1.Tag.2.Value=ml&UserData=aGVsbG8%3D",
        );
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert!(response.mutated);
        assert!(response.body.contains("<RunInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"));
        assert!(response.body.contains("<tagSet><item><key>a&amp;b</key><value>&lt;x&gt;</value></item>"));
        assert!(response.body.contains("<instanceState><code>0</code><name>pending</name></instanceState>"));
        assert!(response.body.contains("<launchTime>2026-01-01T00:00:00.000Z</launchTime>"));
        assert_eq!(response.body.matches("<instanceId>").count(), 2);
        let instance = world.instances().next().unwrap();
        assert_eq!(instance.user_data.as_deref(), Some("aGVsbG8="));
        assert_eq!(instance.tags.get("team").map(String::as_str), Some("ml"));
    }

    #[test]
    fn sim_errors_use_ec2_codes_and_statuses() {
        let mut world = world();
        let cases = [
            ("Action=Nope", StatusCode::BAD_REQUEST, "InvalidAction"),
            ("Version=2016-11-15", StatusCode::BAD_REQUEST, "MissingAction"),
            (
                "Action=RunInstances&InstanceType=p5.48xlarge&MinCount=1&MaxCount=1",
                StatusCode::BAD_REQUEST,
                "MissingParameter",
            ),
            (
                "Action=RunInstances&ImageId=a&InstanceType=p5.48xlarge&MinCount=x&MaxCount=1",
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
            ),
            (
                "Action=RunInstances&ImageId=a&InstanceType=p9.nope&MinCount=1&MaxCount=1",
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
            ),
            (
                "Action=RunInstances&ImageId=a&InstanceType=p5.48xlarge&MinCount=1&MaxCount=1&DryRun=true",
                StatusCode::PRECONDITION_FAILED,
                "DryRunOperation",
            ),
            (
                "Action=RunInstances&ImageId=a&InstanceType=p5.48xlarge&MinCount=1&MaxCount=1&UserData=%%%",
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
            ),
            ("Action=TerminateInstances", StatusCode::BAD_REQUEST, "MissingParameter"),
            ("Action=TerminateInstances&InstanceId.1=i-zz", StatusCode::BAD_REQUEST, "InvalidInstanceID.Malformed"),
            (
                "Action=TerminateInstances&InstanceId.1=i-0123456789abcdef0",
                StatusCode::BAD_REQUEST,
                "InvalidInstanceID.NotFound",
            ),
            (
                "Action=DescribeInstances&MaxResults=5&InstanceId.1=i-0123456789abcdef0",
                StatusCode::BAD_REQUEST,
                "InvalidParameterCombination",
            ),
            ("Action=DescribeInstances&NextToken=bogus", StatusCode::BAD_REQUEST, "InvalidPaginationToken"),
            ("Action=CreateTags&ResourceId.1=vol-0123&Tag.1.Key=k", StatusCode::BAD_REQUEST, "InvalidID"),
        ];
        for (body, status, code) in cases {
            let response = call(&mut world, body);
            assert_eq!((response.status, code_of(&response)), (status, code), "{body}: {}", response.body);
            assert!(
                response
                    .body
                    .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>")
            );
            assert!(response.body.contains("</Errors><RequestID>"));
        }
    }

    #[test]
    fn sim_capacity_error_is_a_server_error_like_ec2() {
        let scenario = super::super::scenario::Scenario::parse(
            "[[offering]]\ncloud = \"aws\"\nregion = \"us-east-1\"\ninstance_type = \"p5.48xlarge\"\ncapacity = 0\n",
            std::path::Path::new("s.toml"),
        )
        .unwrap();
        let mut world = World::new(Some(&scenario), &Catalog::builtin()).unwrap();
        let response = call(&mut world, "Action=RunInstances&ImageId=a&InstanceType=p5.48xlarge&MinCount=1&MaxCount=1");
        assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code_of(&response), "InsufficientInstanceCapacity");
        assert!(!response.mutated);
    }

    #[test]
    fn sim_error_messages_echoing_input_stay_well_formed() {
        let mut world = world();
        let response = call(&mut world, "Action=%3C%2FCode%3E%00%26");
        assert_eq!(code_of(&response), "InvalidAction");
        assert!(response.body.contains("The action &lt;/Code&gt;\u{fffd}&amp; is not valid"), "{}", response.body);
        let control_tag = call(
            &mut world,
            "Action=RunInstances&ImageId=a&InstanceType=p5.48xlarge&MinCount=1&MaxCount=1&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=k&TagSpecification.1.Tag.1.Value=%01",
        );
        assert_eq!(code_of(&control_tag), "InvalidParameterValue");
    }

    #[test]
    fn sim_calls_are_counted_per_action() {
        let mut world = world();
        call(&mut world, "Action=DescribeInstances");
        call(&mut world, "Action=DescribeInstances&MaxResults=1");
        call(&mut world, "Action=CreateTags");
        assert_eq!(world.counters()["aws"]["DescribeInstances"], 2);
        assert_eq!(world.counters()["aws"]["CreateTags"], 1);
    }

    #[test]
    fn sim_a_reset_call_applies_nothing_but_takes_its_latency() {
        let scenario = super::super::scenario::Scenario::parse(
            "[faults]\nseed = 5\nreset_rate = 1.0\nlatency = \"2s\"\n",
            std::path::Path::new("s.toml"),
        )
        .unwrap();
        let mut world = World::new(Some(&scenario), &Catalog::builtin()).unwrap();
        let start = world.now;
        let run = "Action=RunInstances&ImageId=a&InstanceType=p5.48xlarge&MinCount=1&MaxCount=1&ClientToken=t1";
        let response = call(&mut world, run);
        assert!(!response.mutated);
        assert!(world.take_reset(), "the server is told to drop the connection");
        assert!(!world.take_reset(), "once");
        assert_eq!(world.instances().count(), 0, "nothing launched");
        assert_eq!(world.now - start, chrono::Duration::seconds(2));
        assert_eq!(world.counters()["aws"]["RunInstances"], 1);
    }
}
