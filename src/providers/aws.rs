//! AWS provider on aws-sdk-ec2.
//!
//! Create is one RunInstances per placement (MinCount/MaxCount for partial
//! fills, ClientToken for idempotency, tags atomic with creation through
//! TagSpecifications); refresh is DescribeInstances with tag filters and
//! MaxResults 1000 in every configured region in parallel; delete is
//! TerminateInstances in batches. A create returns once its instances have
//! left `pending` (DescribeInstances by id, on the connection's clock). The SDK's own retries are off: gpufleet
//! retries throttled and transient calls itself with the same ClientToken,
//! and never retries a capacity refusal in place.

mod catalog;
mod preflight;
mod quota;

use super::preflight::{OfferingFindings, PreflightRequest};
use super::{Call, CreateRequest, ErrorKind, Provider, ProviderError, RetryPolicy, WaitClock, retrying};
use crate::model::{Cloud, Placement};
use crate::model::{Instance, Scope, TAG_FLEET, TAG_PLAN, TAG_RUN};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, IamInstanceProfileSpecification, Instance as Ec2Instance,
    InstanceStateName, ResourceType, Tag, TagSpecification, VolumeType,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use std::collections::BTreeMap;
use std::time::Duration;

/// DescribeInstances page size: the largest EC2 accepts.
const DESCRIBE_PAGE_SIZE: i32 = 1000;
/// How often a create asks after its `pending` instances; EC2 moves an
/// instance to `running` within seconds to a minute or two.
const RUNNING_POLL: Duration = Duration::from_secs(5);
/// How long a create waits for its instances to leave `pending`. Those
/// still pending then are returned as they are: they exist, and the next
/// refresh sees how they ended.
const RUNNING_WAIT: Duration = Duration::from_secs(600);
/// Instances per TerminateInstances call: EC2's resource rate limit for it
/// holds 1,000 instances in its bucket, so one full call never waits on it.
const TERMINATE_BATCH: usize = 1000;
/// Instance states that still hold (or will hold) capacity.
const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// How to reach EC2.
#[derive(Debug, Clone, Default)]
pub struct AwsConnection {
    /// Endpoint override (simulator, moto); `None` lets the AWS chain decide.
    pub endpoint: Option<String>,
    /// Named profile of the shared config files.
    pub profile: Option<String>,
    /// Use fixed, non-secret credentials: only for the simulator, which does
    /// not check signatures.
    pub simulator_credentials: bool,
    pub retry: RetryPolicy,
    /// The profile that names this account in the plan, recorded in every
    /// instance's scope; `profile` above is what reaches it in this run.
    pub account: Option<String>,
    /// What the provider waits on while new instances are `pending`.
    pub clock: WaitClock,
}

pub struct AwsProvider {
    clients: Vec<(String, Client)>,
    /// Service Quotas per region, for the running On-Demand vCPU quotas.
    quotas: Vec<(String, aws_sdk_servicequotas::Client)>,
    /// vCPUs per EC2 instance type, from the built-in catalog.
    vcpus: BTreeMap<String, u32>,
    /// The plan's profile for this account, recorded in each instance's
    /// scope (whatever credentials reach it: the simulator takes any).
    account: Option<String>,
    retry: RetryPolicy,
    /// Root device name per (region, AMI), for the boot disk's mapping.
    root_devices: std::sync::Mutex<BTreeMap<(String, String), String>>,
    clock: WaitClock,
}

impl AwsProvider {
    /// One EC2 client per region, sharing one loaded AWS configuration.
    pub async fn connect(regions: &[String], connection: &AwsConnection) -> AwsProvider {
        // The call timeout is gpufleet's own (see `retrying`); the connect
        // timeout is the SDK's, per connection it opens.
        let timeouts = TimeoutConfig::builder().connect_timeout(connection.retry.connect_timeout).build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(endpoint) = &connection.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(profile) = &connection.profile {
            loader = loader.profile_name(profile);
        }
        if connection.simulator_credentials {
            loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "gpufleet-simulator",
                "gpufleet-simulator",
                None,
                None,
                "gpufleet-simulator",
            ));
        }
        let shared = loader.load().await;
        let clients = regions
            .iter()
            .map(|region| {
                let config = aws_sdk_ec2::config::Builder::from(&shared)
                    .region(aws_sdk_ec2::config::Region::new(region.clone()))
                    .build();
                (region.clone(), Client::from_conf(config))
            })
            .collect();
        let quotas = regions
            .iter()
            .map(|region| {
                let config = aws_sdk_servicequotas::config::Builder::from(&shared)
                    .region(aws_sdk_servicequotas::config::Region::new(region.clone()))
                    .build();
                (region.clone(), aws_sdk_servicequotas::Client::from_conf(config))
            })
            .collect();
        let vcpus = crate::catalog::Catalog::builtin()
            .instance_types
            .into_iter()
            .filter(|t| t.cloud == Cloud::Aws)
            .map(|t| (t.name, t.vcpus))
            .collect();
        AwsProvider {
            clients,
            quotas,
            vcpus,
            account: connection.account.clone(),
            retry: connection.retry,
            root_devices: Default::default(),
            clock: connection.clock.clone(),
        }
    }

    /// The root device name of an AMI (`/dev/sda1`, `/dev/xvda`), which a
    /// boot disk size must be given for; `None` when the region has no such
    /// image. Asked once per image and region, then remembered.
    async fn root_device(&self, region: &str, client: &Client, image: &str) -> Result<Option<String>, ProviderError> {
        let key = (region.to_string(), image.to_string());
        if let Some(known) = self.root_devices.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Some(known.clone()));
        }
        let found = retrying(self.retry, Call::new(Cloud::Aws, region, "DescribeImages"), || async {
            let output = client.describe_images().image_ids(image).send().await.map_err(|e| classify(region, e));
            match output {
                Ok(output) => Ok(output.images().iter().find_map(|i| i.root_device_name().map(str::to_string))),
                // The image does not exist (or is malformed): RunInstances says so in its own words.
                Err(e) if e.kind == ErrorKind::Invalid || e.kind == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?;
        if let Some(device) = &found {
            self.root_devices.lock().unwrap_or_else(|e| e.into_inner()).insert(key, device.clone());
        }
        Ok(found)
    }

    fn scope(&self, region: &str) -> Scope {
        Scope::AwsRegion { region: region.to_string(), profile: self.account.clone() }
    }

    fn client(&self, region: &str) -> Result<&Client, ProviderError> {
        of_region(&self.clients, region)
    }

    async fn list_region(&self, region: &str, client: &Client, plan: &str) -> Result<Vec<Instance>, ProviderError> {
        retrying(self.retry, Call::new(Cloud::Aws, region, "DescribeInstances"), || async {
            let mut pages = client
                .describe_instances()
                .filters(Filter::builder().name(format!("tag:{TAG_PLAN}")).values(plan).build())
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
                        .build(),
                )
                .max_results(DESCRIBE_PAGE_SIZE)
                .into_paginator()
                .send();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify(region, e))?;
                for reservation in page.reservations() {
                    out.extend(
                        reservation.instances().iter().filter_map(|i| to_instance(region, self.scope(region), i)),
                    );
                }
            }
            Ok(out)
        })
        .await
    }

    /// Asks after just-launched instances until none is `pending`, for at
    /// most [`RUNNING_WAIT`]. They exist whatever this finds out, so a
    /// failed poll ends the wait with what is known instead of failing the
    /// create; an id EC2 does not know yet (its reads are eventually
    /// consistent) is asked after again.
    async fn wait_running(&self, region: &str, client: &Client, mut instances: Vec<Ec2Instance>) -> Vec<Ec2Instance> {
        let call = Call::new(Cloud::Aws, region, "DescribeInstances");
        let pending = |i: &Ec2Instance| i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Pending);
        let ids: Vec<String> = instances.iter().filter_map(|i| i.instance_id().map(str::to_string)).collect();
        let mut waited = Duration::ZERO;
        while instances.iter().any(pending) && waited < RUNNING_WAIT {
            if let Err(e) = self.clock.sleep(call, RUNNING_POLL).await {
                tracing::warn!("{e}");
                break;
            }
            waited += RUNNING_POLL;
            let described = retrying(self.retry, call, || async {
                client
                    .describe_instances()
                    .set_instance_ids(Some(ids.clone()))
                    .send()
                    .await
                    .map_err(|e| classify(region, e))
            })
            .await;
            match described {
                // An instance EC2 leaves out of this answer is kept as it was.
                Ok(output) => {
                    for seen in output.reservations().iter().flat_map(|r| r.instances()) {
                        if let Some(known) = instances.iter_mut().find(|i| i.instance_id() == seen.instance_id()) {
                            *known = seen.clone();
                        }
                    }
                }
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!("instances launched in {region} may still be pending: {e}");
                    break;
                }
            }
        }
        instances
    }
}

#[async_trait::async_trait]
impl Provider for AwsProvider {
    fn cloud(&self) -> Cloud {
        Cloud::Aws
    }

    fn scopes(&self) -> Vec<Scope> {
        self.clients.iter().map(|(region, _)| self.scope(region)).collect()
    }

    async fn list_owned(&self, plan: &str) -> Result<Vec<Instance>, ProviderError> {
        let per_region =
            try_join_all(self.clients.iter().map(|(region, client)| self.list_region(region, client, plan))).await?;
        let mut all: Vec<Instance> = per_region.into_iter().flatten().collect();
        all.sort();
        Ok(all)
    }

    async fn create(&self, request: &CreateRequest) -> Result<Vec<Instance>, ProviderError> {
        let region = &request.placement.region;
        let client = self.client(region)?;
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .set_tags(Some(request.tags().into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
            .build();
        let user_data =
            request.user_data.as_ref().map(|script| base64::engine::general_purpose::STANDARD.encode(script));
        let placement = request
            .placement
            .zone
            .as_ref()
            .map(|z| aws_sdk_ec2::types::Placement::builder().availability_zone(z).build());
        let count = i32::try_from(request.count).unwrap_or(i32::MAX);
        let min_count = i32::try_from(request.min_count).unwrap_or(i32::MAX);
        let launch = &request.launch;
        // Without the image, no mapping: RunInstances says why the image cannot be used.
        let root_disk = self.root_device(region, client, &request.image).await?.map(|device| {
            BlockDeviceMapping::builder()
                .device_name(device)
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(i32::try_from(launch.disk_gb).unwrap_or(i32::MAX))
                        .volume_type(VolumeType::Gp3)
                        .delete_on_termination(true)
                        .build(),
                )
                .build()
        });
        let profile = launch.identity.as_ref().map(|profile| match profile.starts_with("arn:") {
            true => IamInstanceProfileSpecification::builder().arn(profile).build(),
            false => IamInstanceProfileSpecification::builder().name(profile).build(),
        });
        let groups = (!launch.security_groups.is_empty()).then(|| launch.security_groups.clone());
        let output = retrying(self.retry, Call::new(Cloud::Aws, region, "RunInstances"), || async {
            client
                .run_instances()
                .image_id(&request.image)
                .set_subnet_id(launch.subnet.clone())
                .set_security_group_ids(groups.clone())
                .set_iam_instance_profile(profile.clone())
                .set_key_name(launch.ssh_key.clone())
                .set_block_device_mappings(root_disk.clone().map(|m| vec![m]))
                .instance_type(request.placement.instance_type.as_str().into())
                .min_count(min_count)
                .max_count(count)
                .client_token(&request.idempotency_token)
                .tag_specifications(tags.clone())
                .set_user_data(user_data.clone())
                .set_placement(placement.clone())
                .send()
                .await
                .map_err(|e| classify(region, e))
        })
        .await?;
        let launched = self.wait_running(region, client, output.instances().to_vec()).await;
        Ok(launched.iter().filter_map(|i| to_instance(region, self.scope(region), i)).collect())
    }

    /// Service Quotas' running On-Demand vCPU quota of the type's family in
    /// the region, less the vCPUs running there, in whole nodes; `None`
    /// when the family's quota is unknown or has no applied value.
    async fn quota_headroom(
        &self,
        placement: &Placement,
        _gpu: &str,
        _gpus_per_node: u32,
    ) -> Result<Option<u32>, ProviderError> {
        Ok(self.vcpu_room(&placement.region, &placement.instance_type).await?.map(|room| room.nodes()))
    }

    async fn preflight(&self, request: &PreflightRequest) -> Result<OfferingFindings, ProviderError> {
        self.preflight_offering(request).await
    }

    async fn read_catalog(&self) -> Result<crate::catalog::CloudRead, ProviderError> {
        self.read_offerings().await
    }

    async fn delete(&self, instances: &[Instance]) -> Result<(), ProviderError> {
        let mut by_region: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for instance in instances {
            by_region.entry(&instance.region).or_default().push(instance.id.clone());
        }
        for (region, ids) in by_region {
            let client = self.client(region)?;
            for batch in ids.chunks(TERMINATE_BATCH) {
                terminate_batch(self.retry, client, region, batch).await?;
            }
        }
        Ok(())
    }
}

/// The client of a configured region.
fn of_region<'c, C>(clients: &'c [(String, C)], region: &str) -> Result<&'c C, ProviderError> {
    clients.iter().find(|(r, _)| r == region).map(|(_, c)| c).ok_or_else(|| ProviderError {
        kind: ErrorKind::Invalid,
        cloud: Cloud::Aws,
        region: region.to_string(),
        code: "RegionNotConfigured".into(),
        message: format!("region {region} is not in [providers.aws] regions"),
    })
}

/// Terminate one batch. EC2 fails the whole call if one id is unknown, so an
/// instance already gone is dropped from the batch and the rest retried.
async fn terminate_batch(
    retry: RetryPolicy,
    client: &Client,
    region: &str,
    batch: &[String],
) -> Result<(), ProviderError> {
    let mut ids = batch.to_vec();
    while !ids.is_empty() {
        let result = retrying(retry, Call::new(Cloud::Aws, region, "TerminateInstances"), || async {
            client
                .terminate_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .map_err(|e| classify(region, e))
        })
        .await;
        match result {
            Ok(_) => return Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => {
                let before = ids.len();
                ids.retain(|id| !e.message.contains(id.as_str()));
                if ids.len() == before {
                    // Cannot tell which id is gone: the rest are gone too, or the error is ours.
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn to_instance(region: &str, scope: Scope, i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    let state = i.state().and_then(|s| s.name());
    if matches!(state, Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)) {
        return None;
    }
    let tag = |key: &str| i.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string);
    let launched_at = i
        .launch_time()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    Some(Instance {
        id: i.instance_id()?.to_string(),
        cloud: Cloud::Aws,
        region: region.to_string(),
        zone: i.placement().and_then(|p| p.availability_zone()).map(str::to_string),
        instance_type: i.instance_type()?.as_str().to_string(),
        fleet: tag(TAG_FLEET)?,
        run: tag(TAG_RUN).unwrap_or_default(),
        launched_at,
        scope: Some(scope),
    })
}

/// Sort an EC2 error into a kind, keeping its code for the user.
fn classify<E>(region: &str, err: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, code, message) = match &err {
        SdkError::ServiceError(service) => {
            let message = service.err().message().unwrap_or_default().to_string();
            match service.err().code() {
                Some(code) => (kind_of_code(code), code.to_string(), message),
                // No EC2 error document (a proxy's or load balancer's answer): the status says it.
                None => {
                    let status = service.raw().status().as_u16();
                    (kind_of_status(status), format!("HTTP {status}"), message)
                }
            }
        }
        SdkError::TimeoutError(_) => (ErrorKind::Transient, "Timeout".into(), "the request timed out".into()),
        // Credentials are loaded when the request is dispatched: a chain that
        // finds none fails here, and no retry will find one.
        SdkError::DispatchFailure(_) => {
            let text = causes(&err);
            if text.contains("no credentials found in chain") {
                (ErrorKind::Auth, "NoCredentials".into(), no_credentials(&text))
            } else if text.to_ascii_lowercase().contains("credentials") {
                (ErrorKind::Auth, "NoCredentials".into(), text)
            } else {
                (ErrorKind::Transient, "DispatchFailure".into(), text)
            }
        }
        SdkError::ResponseError(_) => {
            (ErrorKind::Transient, "ResponseError".into(), "the response could not be read".into())
        }
        SdkError::ConstructionFailure(_) => {
            let text = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
            let kind = if text.contains("credentials") { ErrorKind::Auth } else { ErrorKind::Invalid };
            (kind, "ConstructionFailure".into(), text)
        }
        _ => (
            ErrorKind::Transient,
            "Unknown".into(),
            aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
        ),
    };
    ProviderError { kind, cloud: Cloud::Aws, region: region.to_string(), code, message }
}

/// A credential chain that found nothing, in a line: the providers it tried
/// (the SDK lists them one a line after "Attempted:") and how to set some.
fn no_credentials(text: &str) -> String {
    let tried: Vec<&str> = text
        .split("Attempted:")
        .nth(1)
        .map(|rest| rest.lines().filter_map(|line| line.trim().split(':').next()).filter(|n| !n.is_empty()).collect())
        .unwrap_or_default();
    format!(
        "no AWS credentials found (the default chain tried: {}). Run `aws sso login` with AWS_PROFILE set, or \
         `aws configure`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        if tried.is_empty() { "every source".to_string() } else { tried.join(", ") }
    )
}

/// An error and its causes in one line, each said once (the SDK's own
/// rendering ends with a debug dump of the whole error).
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        cause = inner.source();
    }
    text
}

/// An HTTP status without an EC2 error code, by what it means for gpufleet.
fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        429 => ErrorKind::Throttled { retry_after_ms: None },
        500..=599 => ErrorKind::Transient,
        401 | 403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        _ => ErrorKind::Invalid,
    }
}

/// EC2 error codes by what they mean for gpufleet.
pub fn kind_of_code(code: &str) -> ErrorKind {
    match code {
        "InsufficientInstanceCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientReservedInstanceCapacity"
        | "InsufficientCapacityOnHost"
        | "Unsupported"
        | "InsufficientFreeAddressesInSubnet"
        | "ReservationCapacityExceeded"
        | "UnfulfillableCapacity"
        | "MaxSpotInstanceCountExceeded" => ErrorKind::Capacity,
        "InstanceLimitExceeded" | "VcpuLimitExceeded" | "MaxFleetCountExceeded" => ErrorKind::Quota,
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "TooManyRequestsException" => {
            ErrorKind::Throttled { retry_after_ms: None }
        }
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" | "RequestTimeout"
        | "ServiceException" => ErrorKind::Transient,
        "AuthFailure"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "OptInRequired"
        | "Blocked"
        | "ExpiredToken"
        | "AccessDeniedException" => ErrorKind::Auth,
        c if c.starts_with("InvalidInstanceID.NotFound") || c == "NoSuchResourceException" => ErrorKind::NotFound,
        _ => ErrorKind::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_without_an_error_code_sort_into_kinds() {
        assert_eq!(kind_of_status(503), ErrorKind::Transient);
        assert_eq!(kind_of_status(502), ErrorKind::Transient);
        assert!(matches!(kind_of_status(429), ErrorKind::Throttled { .. }));
        assert_eq!(kind_of_status(403), ErrorKind::Auth);
        assert_eq!(kind_of_status(400), ErrorKind::Invalid);
    }

    #[test]
    fn causes_say_each_cause_once_in_one_line() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dispatch failure")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let refused = Outer(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "tcp connect error"));
        assert_eq!(causes(&refused), "dispatch failure: tcp connect error");
        assert_eq!(kind_of_code("NoSuchResourceException"), ErrorKind::NotFound, "no applied quota value");
        assert!(matches!(kind_of_code("TooManyRequestsException"), ErrorKind::Throttled { .. }));
    }

    #[test]
    fn error_codes_sort_into_kinds() {
        assert_eq!(kind_of_code("InsufficientInstanceCapacity"), ErrorKind::Capacity);
        assert_eq!(kind_of_code("Unsupported"), ErrorKind::Capacity);
        assert_eq!(kind_of_code("VcpuLimitExceeded"), ErrorKind::Quota);
        assert_eq!(kind_of_code("InstanceLimitExceeded"), ErrorKind::Quota);
        assert!(matches!(kind_of_code("RequestLimitExceeded"), ErrorKind::Throttled { .. }));
        assert_eq!(kind_of_code("InternalError"), ErrorKind::Transient);
        assert_eq!(kind_of_code("AuthFailure"), ErrorKind::Auth);
        assert_eq!(kind_of_code("InvalidInstanceID.NotFound"), ErrorKind::NotFound);
        assert_eq!(kind_of_code("InvalidAMIID.Malformed"), ErrorKind::Invalid);
        assert_eq!(kind_of_code("IdempotentParameterMismatch"), ErrorKind::Invalid);
    }
}
