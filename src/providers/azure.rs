//! Azure provider on azure_mgmt_compute (API 2024-07-01).
//!
//! One virtual machine scale set with flexible orchestration per placement
//! (plan × fleet × region × size), named deterministically so that a retried
//! create-or-update lands on the same set. Create reads the set and its VMs,
//! computes the target capacity once, then PUTs the set (first time) or
//! PATCHes `sku.capacity`, and follows the long-running operation through its
//! `Azure-AsyncOperation` (or `Location`) header. A scale-out that falls short
//! (AllocationFailed) still reports the VMs it did create. Refresh lists the
//! resource group's scale sets (ARM has no server-side tag filter there),
//! keeps the plan's, and lists each one's VMs. Delete uses delete-instances
//! per scale set; empty scale sets are kept (they cost nothing, and the next
//! scale-out reuses them with a PATCH instead of racing a DELETE).
//!
//! The SDK's own retries are off: gpufleet retries throttled and transient
//! calls itself, and every mutating call it retries is idempotent (a PUT or
//! PATCH to an absolute capacity, a delete of named VMs).
//!
//! Quota is asked before a create: `usages` of the placement's location gives
//! the size's vCPU family limit and current usage (see
//! [`crate::catalog::azure_vcpu_family`]), turned into whole nodes with the
//! catalog's vCPUs per size.
//!
//! SDK limits worked around here: the crate's `.await` on create-or-update
//! re-sends the PUT instead of polling `Azure-AsyncOperation` and never sees
//! a failed operation, so operations are polled with azure_core's pipeline;
//! its `HttpError` keeps response headers private, so `Retry-After` is read
//! from the error's rendering.

mod catalog;
mod preflight;

use super::preflight::{OfferingFindings, PreflightRequest};
use super::{Call, CreateRequest, ErrorKind, Provider, ProviderError, RetryPolicy, WaitClock, retrying};
use crate::catalog::{Catalog, azure_vcpu_family};
use crate::model::{Cloud, Instance, Placement, Scope, TAG_FLEET, TAG_PLAN, TAG_RUN};
use azure_core::auth::{AccessToken, TokenCredential};
use azure_core::headers::{AUTHORIZATION, AZURE_ASYNCOPERATION, Headers, LOCATION};
use azure_core::{ClientOptions, Context, Method, Pipeline, Request, RetryOptions, StatusCode, TransportOptions, Url};
use azure_mgmt_compute::package_2024_07_01::{Client, ClientBuilder, DEFAULT_ENDPOINT, models};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Longest scale set name gpufleet makes: flexible orchestration names VMs
/// `<scale set>_<8 hex digits>`, and VM names stop at 64 characters.
pub const MAX_SCALE_SET_NAME: usize = 55;
/// VMs a flexible scale set holds at most (its `sku.capacity` limit).
pub const MAX_SCALE_SET_VMS: u32 = 1000;
/// Scale sets one fleet fills at one placement before giving up: 100,000
/// VMs, and a bound on the calls a misbehaving endpoint can lead it into.
const MAX_SCALE_SETS_PER_PLACEMENT: u32 = 100;
/// VMs per delete-instances call.
const DELETE_BATCH: usize = 100;
/// Scale sets whose VMs are listed at once.
const LIST_CONCURRENCY: usize = 8;
/// Polls of one long-running operation before giving up on it.
const MAX_POLLS: u32 = 720;
/// Longest wait between polls, whatever Retry-After says.
const MAX_POLL_WAIT: Duration = Duration::from_secs(60);
/// The api-version azure_mgmt_compute sends, for the scale set PUT made without it.
const SCALE_SET_API_VERSION: &str = "2024-07-01";
/// Shortest wait between polls, so that `Retry-After: 0` is no busy loop.
const MIN_POLL_WAIT: Duration = Duration::from_secs(1);
/// Network API version of flexible scale sets: VMs get their own NICs.
const NETWORK_API_VERSION: &str = "2020-11-01";
/// The subnet new VMs join, by convention: virtual network
/// `gpufleet-<region>` with subnet `default` in the plan's resource group.
const SUBNET_CONVENTION: &str = "virtualNetworks/gpufleet-{region}/subnets/default";
/// The token the simulator is given. It does not check tokens; this one is
/// fixed and secret to nobody.
const SIMULATOR_TOKEN: &str = "gpufleet-simulator";

/// How to reach Azure Resource Manager.
#[derive(Debug, Clone, Default)]
pub struct AzureConnection {
    /// Endpoint override (simulator); `None` means `https://management.azure.com`.
    pub endpoint: Option<String>,
    /// Use a fixed, non-secret bearer token: only for the simulator.
    pub simulator_credentials: bool,
    pub retry: RetryPolicy,
    /// What the provider waits on between polls of an operation.
    pub clock: WaitClock,
}

/// What new VMs are given: their subnet and the key their admin logs in with.
#[derive(Debug, Clone)]
pub struct AzureVmSettings {
    /// Subnet resource id; `None` means the convention: virtual network
    /// `gpufleet-<region>` with subnet `default` in the plan's resource group.
    pub subnet: Option<String>,
    pub admin_username: String,
    /// OpenSSH public key of the admin user (password login stays disabled).
    pub ssh_public_key: String,
}

pub struct AzureProvider {
    vm: AzureVmSettings,
    retry: RetryPolicy,
    clock: WaitClock,
    client: Client,
    /// Polls operations with the same credential and HTTP stack as the client.
    pipeline: Pipeline,
    credential: Arc<dyn TokenCredential>,
    scopes: Vec<String>,
    endpoint: Url,
    subscription: String,
    resource_group: String,
    regions: Vec<String>,
    /// vCPUs per VM size (lowercase), from the built-in catalog, for quota headroom.
    vcpus: BTreeMap<String, u32>,
}

/// The simulator's credential: always the same dummy token.
#[derive(Debug)]
struct SimulatorCredential;

#[async_trait::async_trait]
impl TokenCredential for SimulatorCredential {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let expires_on = azure_core::date::parse_rfc3339("9999-12-31T23:59:59Z")?;
        Ok(AccessToken::new(SIMULATOR_TOKEN, expires_on))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

impl AzureProvider {
    /// A client for one subscription and resource group. Real credentials
    /// come from azure_identity's default chain (environment, managed
    /// identity, Azure CLI); nothing is fetched until the first call.
    pub async fn connect(
        subscription: &str,
        resource_group: &str,
        regions: &[String],
        connection: &AzureConnection,
        vm: &AzureVmSettings,
    ) -> Result<AzureProvider, ProviderError> {
        let failed = |kind: ErrorKind, code: &str, message: String| ProviderError {
            kind,
            cloud: Cloud::Azure,
            region: String::new(),
            code: code.into(),
            message,
        };
        // The endpoint becomes the OAuth scope sent to the token service and
        // shows in messages: one carrying credentials is refused unrepeated.
        let endpoint = match &connection.endpoint {
            Some(endpoint) => Url::parse(endpoint)
                .ok()
                .filter(|url| url.username().is_empty() && url.password().is_none())
                .ok_or_else(|| {
                    let why = "the endpoint is not a URL without a user name and password".to_string();
                    failed(ErrorKind::Invalid, "InvalidEndpoint", why)
                })?,
            None => DEFAULT_ENDPOINT.to_owned(),
        };
        let credential: Arc<dyn TokenCredential> = if connection.simulator_credentials {
            Arc::new(SimulatorCredential)
        } else {
            azure_identity::create_default_credential()
                .map_err(|e| failed(ErrorKind::Auth, "CredentialUnavailable", e.to_string()))?
        };
        let scope = endpoint
            .join(azure_core::auth::DEFAULT_SCOPE_SUFFIX)
            .map_err(|e| failed(ErrorKind::Invalid, "InvalidEndpoint", e.to_string()))?
            .to_string();
        // azure_core's own reqwest client (no idle pool: see its
        // `new_reqwest_client`), with a connect timeout; the call timeout is
        // gpufleet's own (see `retrying`).
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .connect_timeout(connection.retry.connect_timeout)
            .build()
            .map_err(|e| failed(ErrorKind::Invalid, "HttpClient", e.to_string()))?;
        let transport = TransportOptions::new(Arc::new(http));
        let client = ClientBuilder::new(credential.clone())
            .endpoint(endpoint.clone())
            .scopes(&[scope.as_str()])
            .retry(RetryOptions::none())
            .transport(transport.clone())
            .build()
            .map_err(|e| failed(ErrorKind::Invalid, "InvalidEndpoint", e.to_string()))?;
        let pipeline = Pipeline::new(
            Some("gpufleet"),
            Some(env!("CARGO_PKG_VERSION")),
            ClientOptions::new(transport).retry(RetryOptions::none()),
            Vec::new(),
            Vec::new(),
        );
        Ok(AzureProvider {
            vm: vm.clone(),
            retry: connection.retry,
            clock: connection.clock.clone(),
            client,
            pipeline,
            credential,
            scopes: vec![scope],
            endpoint,
            subscription: subscription.to_string(),
            resource_group: resource_group.to_string(),
            regions: regions.to_vec(),
            vcpus: Catalog::builtin()
                .instance_types
                .iter()
                .filter(|t| t.cloud == Cloud::Azure)
                .map(|t| (t.name.to_ascii_lowercase(), t.vcpus))
                .collect(),
        })
    }

    /// The resource group this provider lists and creates in.
    fn scope(&self) -> Scope {
        Scope::AzureResourceGroup {
            subscription: self.subscription.clone(),
            resource_group: self.resource_group.clone(),
        }
    }

    /// The subnet new VMs in `region` join: the plan's, else the convention's.
    fn subnet_id(&self, region: &str) -> String {
        self.vm.subnet.clone().unwrap_or_else(|| {
            format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/{}",
                self.subscription,
                self.resource_group,
                SUBNET_CONVENTION.replace("{region}", region)
            )
        })
    }

    fn scale_set_id(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}",
            self.subscription, self.resource_group
        )
    }

    /// The scale set, or `None` if it does not exist.
    async fn get_scale_set(
        &self,
        region: &str,
        name: &str,
    ) -> Result<Option<models::VirtualMachineScaleSet>, ProviderError> {
        let result = retrying(self.retry, Call::new(Cloud::Azure, region, "virtualMachineScaleSets.get"), || async {
            let response = self
                .client
                .virtual_machine_scale_sets_client()
                .get(&self.resource_group, name, &self.subscription)
                .send()
                .await
                .map_err(|e| classify(region, e))?;
            response.into_body().await.map_err(|e| classify(region, e))
        })
        .await;
        match result {
            Ok(set) => Ok(Some(set)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The VMs of one flexible scale set, all pages, without those being deleted.
    async fn list_vms(&self, region: &str, scale_set_id: &str) -> Result<Vec<models::VirtualMachine>, ProviderError> {
        retrying(self.retry, Call::new(Cloud::Azure, region, "virtualMachines.list"), || async {
            let mut pages = self
                .client
                .virtual_machines_client()
                .list(&self.resource_group, &self.subscription)
                .filter(format!("'virtualMachineScaleSet/id' eq '{scale_set_id}'"))
                .into_stream();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify(region, e))?;
                out.extend(page.value.into_iter().filter(|vm| {
                    let state = vm.properties.as_ref().and_then(|p| p.provisioning_state.as_deref());
                    !state.is_some_and(|s| s.eq_ignore_ascii_case("Deleting"))
                }));
            }
            Ok(out)
        })
        .await
    }

    /// Every scale set of the resource group, all pages.
    async fn list_scale_sets(&self) -> Result<Vec<models::VirtualMachineScaleSet>, ProviderError> {
        retrying(self.retry, Call::new(Cloud::Azure, "*", "virtualMachineScaleSets.list"), || async {
            let mut pages = self
                .client
                .virtual_machine_scale_sets_client()
                .list(&self.resource_group, &self.subscription)
                .into_stream();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                out.extend(page.map_err(|e| classify("*", e))?.value);
            }
            Ok(out)
        })
        .await
    }

    /// Follows a long-running operation to its end: through
    /// `Azure-AsyncOperation` (status resource) if given, else `Location`
    /// (202 until done); neither means the change was synchronous.
    async fn follow(&self, region: &str, headers: &Headers) -> Result<(), ProviderError> {
        let async_operation = headers.get_optional_string(&AZURE_ASYNCOPERATION);
        let location = headers.get_optional_string(&LOCATION);
        let (url, by_status) = match (async_operation, location) {
            (Some(url), _) => (url, true),
            (None, Some(url)) => (url, false),
            (None, None) => return Ok(()),
        };
        for _ in 0..MAX_POLLS {
            let (status, headers, body) =
                retrying(self.retry, Call::new(Cloud::Azure, region, "GET operation status"), || {
                    self.get_raw(region, &url)
                })
                .await?;
            let done = if by_status {
                match operation_status(&body) {
                    Some("Succeeded") => true,
                    Some("Failed" | "Canceled" | "Cancelled") => {
                        return Err(operation_error(region, &body));
                    }
                    _ => false,
                }
            } else {
                status != StatusCode::Accepted
            };
            if done {
                return Ok(());
            }
            let wait = azure_core::lro::get_retry_after(&headers).clamp(MIN_POLL_WAIT, MAX_POLL_WAIT);
            self.clock.sleep(Call::new(Cloud::Azure, region, "GET operation status"), wait).await?;
        }
        Err(ProviderError {
            kind: ErrorKind::Transient,
            cloud: Cloud::Azure,
            region: region.to_string(),
            code: "OperationTimedOut".into(),
            message: format!("the operation at {url} was still running after {MAX_POLLS} polls"),
        })
    }

    /// GET an operation URL the service handed out. The token only goes to
    /// the endpoint the provider was configured with.
    async fn get_raw(&self, region: &str, url: &str) -> Result<(StatusCode, Headers, Vec<u8>), ProviderError> {
        self.send_raw(region, url, Method::Get, None).await
    }

    /// One request through the client's own pipeline (credential, HTTP
    /// stack), for what azure_mgmt_compute's models cannot say.
    async fn send_raw(
        &self,
        region: &str,
        url: &str,
        method: Method,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Headers, Vec<u8>), ProviderError> {
        let invalid = |message: String| ProviderError {
            kind: ErrorKind::Invalid,
            cloud: Cloud::Azure,
            region: region.to_string(),
            code: "InvalidOperationUrl".into(),
            message,
        };
        let url = Url::parse(url).map_err(|e| invalid(format!("{url}: {e}")))?;
        if url.origin() != self.endpoint.origin() {
            return Err(invalid(format!("the operation {url} is not on the endpoint {}", self.endpoint)));
        }
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let token = self.credential.get_token(&scopes).await.map_err(|e| classify(region, e))?;
        let mut request = Request::new(url, method);
        request.insert_header(AUTHORIZATION, format!("Bearer {}", token.token.secret()));
        if let Some(body) = body {
            request.insert_header(azure_core::headers::CONTENT_TYPE, "application/json");
            request.set_body(serde_json::to_vec(body).unwrap_or_default());
        }
        let response = self.pipeline.send(&Context::new(), &mut request).await.map_err(|e| classify(region, e))?;
        let (status, headers, body) = response.deconstruct();
        let body = body.collect().await.map_err(|e| classify(region, e))?;
        Ok((status, headers, body.to_vec()))
    }

    /// Deletes named VMs of one scale set. VMs already gone count as deleted:
    /// on NotFound the set's live VMs are read and the rest deleted once more.
    async fn delete_from_scale_set(
        &self,
        region: &str,
        scale_set: &str,
        names: &[String],
    ) -> Result<(), ProviderError> {
        match self.delete_instances(region, scale_set, names).await {
            Err(e) if e.kind == ErrorKind::NotFound => {
                if self.get_scale_set(region, scale_set).await?.is_none() {
                    return Ok(());
                }
                let live: BTreeSet<String> = self
                    .list_vms(region, &self.scale_set_id(scale_set))
                    .await?
                    .into_iter()
                    .filter_map(|vm| vm.resource.name)
                    .collect();
                let rest: Vec<String> = names.iter().filter(|n| live.contains(*n)).cloned().collect();
                if rest.is_empty() {
                    return Ok(());
                }
                self.delete_instances(region, scale_set, &rest).await
            }
            other => other,
        }
    }

    /// Grow scale set `name` (made when it does not `exist`) by `count` VMs
    /// beyond the ones `before`; returns the VMs it gained.
    async fn grow(
        &self,
        request: &CreateRequest,
        name: &str,
        exists: bool,
        before: &BTreeSet<String>,
        count: u32,
    ) -> Result<Vec<Instance>, ProviderError> {
        let region = request.placement.region.as_str();
        let invalid = |code: &str, message: String| ProviderError {
            kind: ErrorKind::Invalid,
            cloud: Cloud::Azure,
            region: region.to_string(),
            code: code.into(),
            message,
        };
        let id = self.scale_set_id(name);
        // Computed once: every retry asks for the same absolute capacity.
        let target = before.len() as u64 + u64::from(count);
        let tags = request.tags();
        let headers = if exists {
            let body = json!({
                "sku": { "name": request.placement.instance_type, "capacity": target },
                "tags": tags,
            });
            let model: models::VirtualMachineScaleSetUpdate =
                serde_json::from_value(body).map_err(|e| invalid("InvalidRequest", e.to_string()))?;
            retrying(self.retry, Call::new(Cloud::Azure, region, "virtualMachineScaleSets.update"), || async {
                let response = self
                    .client
                    .virtual_machine_scale_sets_client()
                    .update(&self.resource_group, name, model.clone(), &self.subscription)
                    .send()
                    .await
                    .map_err(|e| classify(region, e))?;
                Ok(response.as_raw_response().headers().clone())
            })
            .await?
        } else {
            let subnet = self.subnet_id(region);
            let body = scale_set_body(request, target, &subnet, &self.vm).map_err(|m| invalid("InvalidImage", m))?;
            let call = Call::new(Cloud::Azure, region, "virtualMachineScaleSets.createOrUpdate");
            if request.launch.identity.is_some() {
                // The crate's model of `userAssignedIdentities` is an empty
                // struct, which drops the identity ids: this PUT goes as JSON.
                return self.finish_grow(request, &id, before, self.put_scale_set(region, name, &body).await?).await;
            }
            let model: models::VirtualMachineScaleSet =
                serde_json::from_value(body).map_err(|e| invalid("InvalidRequest", e.to_string()))?;
            retrying(self.retry, call, || async {
                let response = self
                    .client
                    .virtual_machine_scale_sets_client()
                    .create_or_update(&self.resource_group, name, model.clone(), &self.subscription)
                    .send()
                    .await
                    .map_err(|e| classify(region, e))?;
                Ok(response.as_raw_response().headers().clone())
            })
            .await?
        };
        self.finish_grow(request, &id, before, headers).await
    }

    /// After a scale set's PUT or PATCH: follow its operation, and return the
    /// VMs it gained (an error only when it gained none).
    async fn finish_grow(
        &self,
        request: &CreateRequest,
        id: &str,
        before: &BTreeSet<String>,
        headers: Headers,
    ) -> Result<Vec<Instance>, ProviderError> {
        let region = request.placement.region.as_str();
        let outcome = self.follow(region, &headers).await;
        let set_tags = serde_json::to_value(request.tags()).ok();
        let after = self.list_vms(region, id).await?;
        let created: Vec<Instance> = after
            .iter()
            .filter(|vm| vm.resource.name.as_ref().is_some_and(|n| !before.contains(n)))
            .filter_map(|vm| to_instance(vm, set_tags.as_ref(), &self.scope()))
            .collect();
        match outcome {
            Err(e) if created.is_empty() => Err(e),
            _ => Ok(created),
        }
    }

    /// `VirtualMachineScaleSets_CreateOrUpdate` with `body` as it is, retried
    /// like every call; the answer's headers lead to its operation.
    async fn put_scale_set(&self, region: &str, name: &str, body: &Value) -> Result<Headers, ProviderError> {
        let url = format!(
            "{}?api-version={SCALE_SET_API_VERSION}",
            self.endpoint.join(self.scale_set_id(name).trim_start_matches('/')).map_err(|e| ProviderError {
                kind: ErrorKind::Invalid,
                cloud: Cloud::Azure,
                region: region.to_string(),
                code: "InvalidResourceId".into(),
                message: e.to_string(),
            })?
        );
        let call = Call::new(Cloud::Azure, region, "virtualMachineScaleSets.createOrUpdate");
        retrying(self.retry, call, || async {
            let (status, headers, answer) = self.send_raw(region, &url, Method::Put, Some(body)).await?;
            if matches!(u16::from(status), 200 | 201) {
                return Ok(headers);
            }
            let fault = Fault::from_body(&answer);
            let retry_after = azure_core::lro::get_retry_after(&headers).as_millis();
            let (kind, code) = fault.classify(u16::from(status), u64::try_from(retry_after).ok());
            Err(ProviderError { kind, cloud: Cloud::Azure, region: region.to_string(), code, message: fault.message })
        })
        .await
    }

    async fn delete_instances(&self, region: &str, scale_set: &str, names: &[String]) -> Result<(), ProviderError> {
        let call = Call::new(Cloud::Azure, region, "virtualMachineScaleSets.deleteInstances");
        let headers = retrying(self.retry, call, || async {
            let ids = models::VirtualMachineScaleSetVmInstanceRequiredIDs::new(names.to_vec());
            let response = self
                .client
                .virtual_machine_scale_sets_client()
                .delete_instances(&self.resource_group, scale_set, ids, &self.subscription)
                .send()
                .await
                .map_err(|e| classify(region, e))?;
            Ok(response.as_raw_response().headers().clone())
        })
        .await?;
        match self.follow(region, &headers).await {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

#[async_trait::async_trait]
impl Provider for AzureProvider {
    fn cloud(&self) -> Cloud {
        Cloud::Azure
    }

    fn scopes(&self) -> Vec<Scope> {
        vec![self.scope()]
    }

    async fn list_owned(&self, plan: &str) -> Result<Vec<Instance>, ProviderError> {
        let owned: Vec<models::VirtualMachineScaleSet> = self
            .list_scale_sets()
            .await?
            .into_iter()
            .filter(|set| tag(set.resource.tags.as_ref(), TAG_PLAN) == Some(plan))
            .collect();
        let per_set: Vec<Vec<Instance>> = futures::stream::iter(owned)
            .map(|set| async move {
                let region = set.resource.location.clone();
                let id = set.resource.id.clone().unwrap_or_default();
                let vms = self.list_vms(&region, &id).await?;
                Ok::<_, ProviderError>(
                    vms.iter().filter_map(|vm| to_instance(vm, set.resource.tags.as_ref(), &self.scope())).collect(),
                )
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        let mut all: Vec<Instance> = per_set.into_iter().flatten().collect();
        all.sort();
        Ok(all)
    }

    async fn create(&self, request: &CreateRequest) -> Result<Vec<Instance>, ProviderError> {
        let region = request.placement.region.as_str();
        let invalid = |code: &str, message: String| ProviderError {
            kind: ErrorKind::Invalid,
            cloud: Cloud::Azure,
            region: region.to_string(),
            code: code.into(),
            message,
        };
        if !self.regions.iter().any(|r| r == region) {
            return Err(invalid("RegionNotConfigured", format!("region {region} is not in [providers.azure] regions")));
        }
        // A flexible scale set holds at most MAX_SCALE_SET_VMS: the fleet
        // fills its scale sets at this placement in order, making the next
        // one when all are full.
        let mut created = Vec::new();
        let mut wanted = request.count;
        for n in 1..=MAX_SCALE_SETS_PER_PLACEMENT {
            let name = scale_set_name(&request.plan, &request.fleet, region, &request.placement.instance_type, n);
            let existing = self.get_scale_set(region, &name).await?;
            let before: BTreeSet<String> = match existing {
                Some(_) => self
                    .list_vms(region, &self.scale_set_id(&name))
                    .await?
                    .into_iter()
                    .filter_map(|vm| vm.resource.name)
                    .collect(),
                None => BTreeSet::new(),
            };
            let room = MAX_SCALE_SET_VMS.saturating_sub(u32::try_from(before.len()).unwrap_or(u32::MAX));
            if room == 0 {
                continue;
            }
            let asked = wanted.min(room);
            let grown = self.grow(request, &name, existing.is_some(), &before, asked).await;
            let got = match grown {
                Ok(vms) => vms,
                Err(e) if created.is_empty() => return Err(e),
                // A partial fill is reported as the VMs that exist, not as an error.
                Err(_) => break,
            };
            wanted -= u32::try_from(got.len()).unwrap_or(asked).min(asked);
            let short = got.len() < asked as usize;
            created.extend(got);
            if wanted == 0 || short {
                break;
            }
        }
        if created.is_empty() && wanted > 0 {
            let message = format!(
                "the fleet's {MAX_SCALE_SETS_PER_PLACEMENT} scale sets of {MAX_SCALE_SET_VMS} VMs here are all full"
            );
            return Err(ProviderError { kind: ErrorKind::Capacity, ..invalid("ScaleSetsFull", message) });
        }
        created.sort();
        Ok(created)
    }

    async fn delete(&self, instances: &[Instance]) -> Result<(), ProviderError> {
        let mut by_set: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for instance in instances {
            let Some((scale_set, _)) = instance.id.rsplit_once('_') else {
                return Err(ProviderError {
                    kind: ErrorKind::Invalid,
                    cloud: Cloud::Azure,
                    region: instance.region.clone(),
                    code: "NotAScaleSetVm".into(),
                    message: format!(
                        "{} is not named like a VM of a flexible scale set (<scale set>_<suffix>)",
                        instance.id
                    ),
                });
            };
            by_set.entry((instance.region.clone(), scale_set.to_string())).or_default().push(instance.id.clone());
        }
        for ((region, scale_set), names) in by_set {
            for batch in names.chunks(DELETE_BATCH) {
                self.delete_from_scale_set(&region, &scale_set, batch).await?;
            }
        }
        Ok(())
    }

    /// `usages` of the placement's location: the size's vCPU family limit
    /// less its usage, in whole VMs. `None` for sizes without a known family
    /// or vCPU count, and for families the location does not list.
    async fn quota_headroom(
        &self,
        placement: &Placement,
        _gpu: &str,
        _gpus_per_node: u32,
    ) -> Result<Option<u32>, ProviderError> {
        Ok(self.family_quota(placement).await?.map(|quota| quota.nodes()))
    }

    async fn preflight(&self, request: &PreflightRequest) -> Result<OfferingFindings, ProviderError> {
        self.preflight_offering(request).await
    }

    async fn read_catalog(&self) -> Result<crate::catalog::CloudRead, ProviderError> {
        self.read_offerings().await
    }
}

/// A vCPU family quota of one location, for one VM size.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FamilyQuota {
    family: &'static str,
    limit: i64,
    current: i64,
    vcpus_per_vm: u32,
}

impl FamilyQuota {
    fn free(&self) -> i64 {
        // Saturating: the numbers come from the endpoint, whatever it is.
        self.limit.saturating_sub(self.current).max(0)
    }

    /// Whole VMs that fit.
    fn nodes(&self) -> u32 {
        u32::try_from(self.free() / i64::from(self.vcpus_per_vm.max(1))).unwrap_or(u32::MAX)
    }
}

impl AzureProvider {
    /// The quota that binds the size in the placement's location: its vCPU
    /// family's, or the location's total regional vCPUs, whichever has fewer
    /// free; `None` for sizes without a known family or vCPU count, and when
    /// the location lists neither.
    async fn family_quota(&self, placement: &Placement) -> Result<Option<FamilyQuota>, ProviderError> {
        let size = placement.instance_type.as_str();
        let (Some(family), Some(&vcpus)) = (azure_vcpu_family(size), self.vcpus.get(&size.to_ascii_lowercase())) else {
            return Ok(None);
        };
        let region = placement.region.as_str();
        let usages = retrying(self.retry, Call::new(Cloud::Azure, region, "usage.list"), || async {
            let mut pages = self.client.usage_client().list(region, &self.subscription).into_stream();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                out.extend(page.map_err(|e| classify(region, e))?.value);
            }
            Ok(out)
        })
        .await?;
        let binding = [family, crate::catalog::AZURE_TOTAL_REGIONAL_VCPUS]
            .into_iter()
            .filter_map(|name| family_quota(&usages, name, vcpus))
            .min_by_key(FamilyQuota::free);
        Ok(binding)
    }
}

/// The family's entry of a location's `usages`; `None` when it is not listed.
fn family_quota(usages: &[models::Usage], family: &'static str, vcpus_per_vm: u32) -> Option<FamilyQuota> {
    let usage = usages.iter().find(|u| u.name.value.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(family)))?;
    Some(FamilyQuota { family, limit: usage.limit, current: i64::from(usage.current_value), vcpus_per_vm })
}

/// `gf-<plan>-<fleet>-<region>-<size without Standard_>` for a fleet's
/// first scale set at a placement, with `-<n>` after it for the `n`th
/// (a scale set holds [`MAX_SCALE_SET_VMS`]); lowercase, in the characters
/// ARM allows. Names longer than [`MAX_SCALE_SET_NAME`] keep a prefix and a
/// hash of the whole, so they stay distinct and deterministic.
pub fn scale_set_name(plan: &str, fleet: &str, region: &str, instance_type: &str, n: u32) -> String {
    let size = instance_type.strip_prefix("Standard_").unwrap_or(instance_type);
    let numbered = if n > 1 { format!("-{n}") } else { String::new() };
    let full: String = format!("gf-{plan}-{fleet}-{region}-{size}{numbered}")
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' })
        .collect();
    // `_` separates a VM's suffix from its scale set, so names use `-` only.
    let full = full.replace('_', "-");
    if full.len() <= MAX_SCALE_SET_NAME {
        return full.trim_end_matches('-').to_string();
    }
    let hash = fnv1a(full.as_bytes());
    let keep = MAX_SCALE_SET_NAME - 9;
    format!("{}-{:08x}", full[..keep].trim_end_matches('-'), hash as u32)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `publisher:offer:sku:version` (marketplace URN) or an image resource id.
fn image_reference(image: &str) -> Result<Value, String> {
    if image.starts_with('/') {
        return Ok(json!({ "id": image }));
    }
    match image.split(':').collect::<Vec<_>>().as_slice() {
        [publisher, offer, sku, version] if [publisher, offer, sku, version].iter().all(|p| !p.is_empty()) => {
            Ok(json!({ "publisher": publisher, "offer": offer, "sku": sku, "version": version }))
        }
        _ => Err(format!(
            "image {image:?} is neither publisher:offer:sku:version nor an image resource id (/subscriptions/...)"
        )),
    }
}

/// The PUT body of a new flexible scale set for this request.
fn scale_set_body(request: &CreateRequest, capacity: u64, subnet: &str, vm: &AzureVmSettings) -> Result<Value, String> {
    let launch = &request.launch;
    let mut os_profile = json!({
        "computerNamePrefix": "gpufleet",
        "adminUsername": vm.admin_username,
        "linuxConfiguration": {
            "disablePasswordAuthentication": true,
            "ssh": { "publicKeys": [{
                "path": format!("/home/{}/.ssh/authorized_keys", vm.admin_username),
                "keyData": launch.ssh_key.as_deref().unwrap_or(&vm.ssh_public_key),
            }] },
        },
    });
    if let Some(script) = &request.user_data {
        os_profile["customData"] = json!(base64::engine::general_purpose::STANDARD.encode(script));
    }
    let mut body = json!({
        "location": request.placement.region,
        "tags": request.tags(),
        "sku": { "name": request.placement.instance_type, "tier": "Standard", "capacity": capacity },
        "properties": {
            "orchestrationMode": "Flexible",
            "platformFaultDomainCount": 1,
            "singlePlacementGroup": false,
            "virtualMachineProfile": {
                "storageProfile": {
                    "imageReference": image_reference(&request.image)?,
                    "osDisk": {
                        "createOption": "FromImage",
                        "deleteOption": "Delete",
                        "diskSizeGB": launch.disk_gb,
                    },
                },
                "osProfile": os_profile,
                "networkProfile": {
                    "networkApiVersion": NETWORK_API_VERSION,
                    "networkInterfaceConfigurations": [{
                        "name": "gpufleet-nic",
                        "properties": {
                            "primary": true,
                            "enableAcceleratedNetworking": true,
                            "deleteOption": "Delete",
                            "ipConfigurations": [{
                                "name": "gpufleet-ip",
                                "properties": { "primary": true, "subnet": { "id": subnet } },
                            }],
                        },
                    }],
                },
            },
        },
    });
    if let Some(identity) = &launch.identity {
        body["identity"] = json!({ "type": "UserAssigned", "userAssignedIdentities": { identity.as_str(): {} } });
    }
    Ok(body)
}

fn tag<'t>(tags: Option<&'t Value>, key: &str) -> Option<&'t str> {
    tags?.get(key)?.as_str()
}

/// A VM as gpufleet sees it. Fleet and run come from the VM's own tags if it
/// has them, else from its scale set's (the set carries the ownership tags).
fn to_instance(vm: &models::VirtualMachine, set_tags: Option<&Value>, scope: &Scope) -> Option<Instance> {
    let own = vm.resource.tags.as_ref();
    let tag_of = |key: &str| tag(own, key).or_else(|| tag(set_tags, key)).map(str::to_string);
    let properties = vm.properties.as_ref();
    let vm_size = properties
        .and_then(|p| p.hardware_profile.as_ref())
        .and_then(|h| h.vm_size.as_ref())
        .and_then(|size| serde_json::to_value(size).ok())
        .and_then(|v| v.as_str().map(str::to_string))?;
    let launched_at = properties
        .and_then(|p| p.time_created.as_ref())
        .and_then(|t| DateTime::parse_from_rfc3339(&azure_core::date::to_rfc3339(t)).ok())
        .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.with_timezone(&Utc));
    Some(Instance {
        id: vm.resource.name.clone()?,
        cloud: Cloud::Azure,
        region: vm.resource.location.clone(),
        zone: vm.zones.first().cloned(),
        instance_type: vm_size,
        fleet: tag_of(TAG_FLEET)?,
        run: tag_of(TAG_RUN).unwrap_or_default(),
        launched_at,
        scope: Some(scope.clone()),
    })
}

fn operation_status(body: &[u8]) -> Option<&'static str> {
    let value: Value = serde_json::from_slice(body).ok()?;
    ["InProgress", "Succeeded", "Failed", "Canceled", "Cancelled"]
        .into_iter()
        .find(|s| value.get("status").and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case(s)))
}

/// The error of a failed operation's status resource, classified.
fn operation_error(region: &str, body: &[u8]) -> ProviderError {
    let fault = Fault::from_body(body);
    let (kind, code) = fault.classify(200, None);
    ProviderError { kind, cloud: Cloud::Azure, region: region.to_string(), code, message: fault.message }
}

/// An ARM `error` object: code, message, and the codes of its details.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fault {
    code: String,
    message: String,
    detail_codes: Vec<String>,
}

impl Fault {
    /// Reads `{"error": {...}}` (responses, operation status) or a bare error object.
    fn from_body(body: &[u8]) -> Fault {
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let error = value.get("error").unwrap_or(&value);
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        Fault {
            code: text(error, "code"),
            message: text(error, "message"),
            detail_codes: error
                .get("details")
                .and_then(Value::as_array)
                .map(|details| details.iter().map(|d| text(d, "code")).filter(|c| !c.is_empty()).collect())
                .unwrap_or_default(),
        }
    }

    /// The kind and the code to report: a capacity or quota code among the
    /// details wins over a generic outer code.
    fn classify(&self, status: u16, retry_after_ms: Option<u64>) -> (ErrorKind, String) {
        let outer = kind_of(status, &self.code, &self.message, retry_after_ms);
        if outer.is_shortage() {
            return (outer, self.code.clone());
        }
        for code in &self.detail_codes {
            let kind = kind_of(status, code, &self.message, retry_after_ms);
            if kind.is_shortage() {
                return (kind, code.clone());
            }
        }
        (outer, if self.code.is_empty() { format!("HTTP{status}") } else { self.code.clone() })
    }
}

/// ARM errors by what they mean for gpufleet: codes first (a capacity code
/// arrives with 200 inside an operation, or with 409), then the HTTP status.
pub fn kind_of(status: u16, code: &str, message: &str, retry_after_ms: Option<u64>) -> ErrorKind {
    match code {
        "AllocationFailed"
        | "ZonalAllocationFailed"
        | "OverconstrainedAllocationRequest"
        | "OverconstrainedZonalAllocationRequest"
        | "SkuNotAvailable" => return ErrorKind::Capacity,
        "QuotaExceeded" => return ErrorKind::Quota,
        "OperationNotAllowed" if message.to_ascii_lowercase().contains("quota") => {
            return ErrorKind::Quota;
        }
        "TooManyRequests" | "SubscriptionRequestsThrottled" | "ResourceRequestsThrottled" => {
            return ErrorKind::Throttled { retry_after_ms };
        }
        "AuthenticationFailed"
        | "InvalidAuthenticationToken"
        | "InvalidAuthenticationTokenTenant"
        | "ExpiredAuthenticationToken"
        | "AuthorizationFailed"
        | "LinkedAuthorizationFailed" => return ErrorKind::Auth,
        // The plan names a resource group or subscription that is not there:
        // a configuration error, not a missing instance.
        "ResourceGroupNotFound" | "SubscriptionNotFound" => return ErrorKind::Invalid,
        "InternalServerError" | "InternalExecutionError" | "ServiceUnavailable" | "GatewayTimeout" => {
            return ErrorKind::Transient;
        }
        "ResourceNotFound" | "NotFound" => return ErrorKind::NotFound,
        _ => {}
    }
    match status {
        429 => ErrorKind::Throttled { retry_after_ms },
        401 | 403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Invalid,
    }
}

/// Sorts an azure_core error into a kind, keeping ARM's code for the user.
fn classify(region: &str, err: azure_core::Error) -> ProviderError {
    use azure_core::error::ErrorKind as Sdk;
    let (kind, code, message) = match err.kind() {
        Sdk::HttpResponse { status, error_code } => {
            let status = u16::from(*status);
            let http = err.as_http_error();
            let rendered = http.map(|h| h.to_string()).unwrap_or_default();
            let fault = Fault {
                code: http.and_then(|h| h.error_code()).or(error_code.as_deref()).unwrap_or_default().to_string(),
                message: http.and_then(|h| h.error_message()).unwrap_or_default().to_string(),
                detail_codes: Vec::new(),
            };
            let (kind, code) = fault.classify(status, retry_after_ms(&rendered));
            let message = if fault.message.is_empty() { format!("HTTP {status}") } else { fault.message };
            (kind, code, message)
        }
        Sdk::Io => (ErrorKind::Transient, "Io".to_string(), err.to_string()),
        Sdk::Credential => (ErrorKind::Auth, "CredentialUnavailable".to_string(), err.to_string()),
        Sdk::DataConversion => (ErrorKind::Invalid, "UnreadableResponse".to_string(), err.to_string()),
        _ => (ErrorKind::Invalid, "Unknown".to_string(), err.to_string()),
    };
    ProviderError { kind, cloud: Cloud::Azure, region: region.to_string(), code, message }
}

/// `Retry-After` (seconds) or `retry-after-ms` / `x-ms-retry-after-ms` from
/// an `HttpError` as azure_core renders it (`name:value` per header), since
/// the error keeps its headers private.
fn retry_after_ms(rendered: &str) -> Option<u64> {
    let number = |text: &str| -> Option<u64> {
        let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    rendered.split_whitespace().find_map(|token| {
        let token = token.to_ascii_lowercase();
        if let Some(ms) = token.strip_prefix("retry-after-ms:").or_else(|| token.strip_prefix("x-ms-retry-after-ms:")) {
            number(ms)
        } else {
            token.strip_prefix("retry-after:").and_then(number).map(|s| s.saturating_mul(1000))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (HTTP status, body as ARM sends it) → kind and reported code.
    fn classified(status: u16, body: &str) -> (ErrorKind, String) {
        Fault::from_body(body.as_bytes()).classify(status, None)
    }

    /// The endpoint's password was printed in the error and would have gone
    /// to the token service as part of the OAuth scope.
    #[tokio::test]
    async fn an_endpoint_with_credentials_is_refused_without_repeating_them() {
        let connection = AzureConnection {
            endpoint: Some("https://user:s3cret@management.example".into()),
            simulator_credentials: true,
            ..Default::default()
        };
        let vm = AzureVmSettings { subnet: None, admin_username: "gpufleet".into(), ssh_public_key: "k".into() };
        let sub = "00000000-0000-0000-0000-000000000000";
        let Err(err) = AzureProvider::connect(sub, "rg", &["eastus".into()], &connection, &vm).await else {
            panic!("an endpoint with credentials was accepted");
        };
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(!format!("{err} {err:?}").contains("s3cret"), "{err}");
    }

    #[test]
    fn arm_error_payloads_sort_into_kinds() {
        let allocation_failed = r#"{"startTime":"2024-11-05T10:01:02.1234567+00:00","endTime":"2024-11-05T10:03:44.7654321+00:00","status":"Failed","error":{"code":"AllocationFailed","message":"Allocation failed. We do not have sufficient capacity for the requested VM size in this region. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance"},"name":"6b1f4f52-6c0e-4d0e-9d3f-0d9c2c1b7e11"}"#;
        assert_eq!(classified(200, allocation_failed), (ErrorKind::Capacity, "AllocationFailed".into()));
        let zonal = r#"{"error":{"code":"ZonalAllocationFailed","message":"Allocation failed. We do not have sufficient capacity for the requested VM size in this zone. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance"}}"#;
        assert_eq!(classified(409, zonal).0, ErrorKind::Capacity);
        let overconstrained = r#"{"error":{"code":"OverconstrainedAllocationRequest","message":"Allocation failed. VM(s) with the following constraints cannot be allocated, because the condition is too restrictive. Please remove some constraints and try again. Constraints applied are:\n- Networking Constraints (such as Accelerated Networking or IPv6)\n- VM Size\n"}}"#;
        assert_eq!(classified(409, overconstrained).0, ErrorKind::Capacity);
        let sku = r#"{"error":{"code":"SkuNotAvailable","message":"The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: Standard_ND96isr_H100_v5' is currently not available in location 'westus3'. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details."}}"#;
        assert_eq!(classified(409, sku).0, ErrorKind::Capacity);
        let quota = r#"{"error":{"code":"OperationNotAllowed","message":"Operation could not be completed as it results in exceeding approved standardNDSH100v5Family Cores quota. Additional details - Deployment Model: Resource Manager, Location: eastus, Current Limit: 0, Current Usage: 0, Additional Required: 96, (Minimum) New Limit Required: 96. Submit a request for Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView/Parameters/... by specifying parameters listed in the ‘Details’ section for deployment to succeed."}}"#;
        assert_eq!(classified(409, quota), (ErrorKind::Quota, "OperationNotAllowed".into()));
        let not_quota = r#"{"error":{"code":"OperationNotAllowed","message":"Operation 'start' is not allowed since the VM 'gf_1' is marked for deletion. You can only retry the Delete operation (or wait for an ongoing one to complete)."}}"#;
        assert_eq!(classified(409, not_quota).0, ErrorKind::Invalid);
        let wrapped = r#"{"error":{"code":"VMScaleSetScaleOutFailed","message":"The scale-out failed.","details":[{"code":"AllocationFailed","message":"Allocation failed."}]}}"#;
        assert_eq!(classified(200, wrapped), (ErrorKind::Capacity, "AllocationFailed".into()));
        let throttled = r#"{"error":{"code":"TooManyRequests","message":"The request is being throttled as the limit has been reached for operation type - Write_1Min."}}"#;
        assert_eq!(
            Fault::from_body(throttled.as_bytes()).classify(429, Some(17_000)).0,
            ErrorKind::Throttled { retry_after_ms: Some(17_000) }
        );
        let expired = r#"{"error":{"code":"ExpiredAuthenticationToken","message":"The access token expiry UTC time '11/5/2024 10:00:00 AM' is earlier than current UTC time '11/5/2024 11:00:00 AM'."}}"#;
        assert_eq!(classified(401, expired).0, ErrorKind::Auth);
        let forbidden = r#"{"error":{"code":"AuthorizationFailed","message":"The client 'x' with object id 'y' does not have authorization to perform action 'Microsoft.Compute/virtualMachineScaleSets/write' over scope '/subscriptions/s/resourceGroups/rg' or the scope is invalid."}}"#;
        assert_eq!(classified(403, forbidden).0, ErrorKind::Auth);
        let internal = r#"{"error":{"code":"InternalExecutionError","message":"An internal execution error occurred. Please retry later."}}"#;
        assert_eq!(classified(500, internal).0, ErrorKind::Transient);
        assert_eq!(classified(503, "<html>Service Unavailable</html>"), (ErrorKind::Transient, "HTTP503".into()));
        let missing = r#"{"error":{"code":"ResourceNotFound","message":"The Resource 'Microsoft.Compute/virtualMachineScaleSets/gf-x' under resource group 'rg' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"}}"#;
        assert_eq!(classified(404, missing).0, ErrorKind::NotFound);
        let no_group =
            r#"{"error":{"code":"ResourceGroupNotFound","message":"Resource group 'rg' could not be found."}}"#;
        assert_eq!(classified(404, no_group).0, ErrorKind::Invalid);
        let bad_image = r#"{"error":{"code":"InvalidParameter","message":"The value of parameter imageReference.publisher is invalid.","target":"imageReference.publisher"}}"#;
        assert_eq!(classified(400, bad_image).0, ErrorKind::Invalid);
    }

    #[test]
    fn family_headroom_counts_whole_vms_of_the_family() {
        let usages: Vec<models::Usage> = serde_json::from_value(json!([
            { "name": { "value": "cores", "localizedValue": "Total Regional vCPUs" }, "currentValue": 8, "limit": 350, "unit": "Count" },
            { "name": { "value": "standardNDSH100v5Family", "localizedValue": "Standard NDSH100v5 Family vCPUs" }, "currentValue": 96, "limit": 400, "unit": "Count" },
            { "name": { "value": "StandardNCADSA100v4Family", "localizedValue": "Standard NCADS_A100_v4 Family vCPUs" }, "currentValue": 48, "limit": 24, "unit": "Count" },
            { "name": { "value": "hostileFamily" }, "currentValue": 1, "limit": i64::MIN, "unit": "Count" },
        ]))
        .unwrap();
        let nodes = |family: &'static str, vcpus| family_quota(&usages, family, vcpus).map(|q| q.nodes());
        assert_eq!(nodes("standardndsh100v5family", 96), Some(3));
        assert_eq!(nodes("StandardNCADSA100v4Family", 24), Some(0), "over the limit is no room");
        assert_eq!(nodes("standardNDSH200v5Family", 96), None);
        assert_eq!(nodes("hostileFamily", 96), Some(0), "a limit of i64::MIN overflowed");
    }

    #[test]
    fn retry_after_is_read_from_the_rendered_http_error() {
        let rendered = "HttpError { Status: 429, Error Code: TooManyRequests, Body: \"...\", Headers: [ content-type:application/json  retry-after:17  x-ms-request-id:abc ], }";
        assert_eq!(retry_after_ms(rendered), Some(17_000));
        assert_eq!(retry_after_ms("Headers: [ x-ms-retry-after-ms:250 ]"), Some(250));
        assert_eq!(retry_after_ms("Headers: [ retry-after:Wed, 21 Oct 2026 07:28:00 GMT ]"), None);
        assert_eq!(retry_after_ms("Headers: [ ]"), None);
    }

    #[test]
    fn scale_set_names_are_deterministic_valid_and_short() {
        let name = scale_set_name("training", "llm", "eastus", "Standard_ND96isr_H100_v5", 1);
        assert_eq!(name, "gf-training-llm-eastus-nd96isr-h100-v5");
        let long = scale_set_name(&"p".repeat(80), "Fleet.One", "swedencentral", "Standard_NC24ads_A100_v4", 1);
        let other = scale_set_name(&"p".repeat(81), "Fleet.One", "swedencentral", "Standard_NC24ads_A100_v4", 1);
        for n in [&name, &long, &other] {
            assert!(n.len() <= MAX_SCALE_SET_NAME, "{n}");
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{n}");
            assert!(!n.ends_with('-'), "{n}");
        }
        assert_ne!(long, other);
        assert_eq!(long, scale_set_name(&"p".repeat(80), "Fleet.One", "swedencentral", "Standard_NC24ads_A100_v4", 1));
        let second = scale_set_name("training", "llm", "eastus", "Standard_ND96isr_H100_v5", 2);
        assert_eq!(second, "gf-training-llm-eastus-nd96isr-h100-v5-2");
        let long_second = scale_set_name(&"p".repeat(80), "Fleet.One", "swedencentral", "Standard_NC24ads_A100_v4", 2);
        assert!(long_second.len() <= MAX_SCALE_SET_NAME && long_second != long, "{long_second}");
    }

    #[test]
    fn images_are_urns_or_resource_ids() {
        assert_eq!(
            image_reference("microsoft-dsvm:ubuntu-hpc:2204:latest").unwrap(),
            json!({"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest"})
        );
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/i/versions/1.0.0";
        assert_eq!(image_reference(id).unwrap(), json!({ "id": id }));
        assert!(image_reference("ami-12345678").is_err());
        assert!(image_reference("a::b:c").is_err());
    }
}
