//! Google Cloud provider on google-cloud-compute-v1 (Compute Engine).
//!
//! Create is one `instances.bulkInsert` per placement (a zone): `count` and
//! `minCount` give partial fills, `namePattern` names the nodes
//! `gf-<fleet>-<8 hex of the token>-####`, labels carry the ownership tags
//! and `requestId` (the idempotency token) makes a retried call return the
//! same operation. The call returns a zonal operation: gpufleet waits for it
//! with `zoneOperations.wait` (server-side long poll, so no client sleeps),
//! reads the errors of the work from `operation.error.errors[].code`, then
//! lists the zone by run label and keeps the names this call generated.
//! Refresh is `instances.aggregatedList` with a label filter, 500 per page.
//! Delete is `instances.delete` per instance, 16 at a time, each waited.
//!
//! The SDK's own retries are off; gpufleet retries throttled and transient
//! calls itself ([`retrying`]) with the same requestId.

mod catalog;
mod preflight;

use super::preflight::{OfferingFindings, PreflightRequest};
use super::{Call, CreateRequest, ErrorKind, Provider, ProviderError, RetryPolicy, retrying};
use crate::model::{Cloud, Instance, Placement, Scope, TAG_FLEET, TAG_PLAN, TAG_RUN};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use google_cloud_compute_v1::client::{
    AcceleratorTypes, Images, Instances, MachineTypes, Networks, Projects, Regions, Subnetworks, ZoneOperations,
};
use google_cloud_compute_v1::model::{
    AttachedDisk, AttachedDiskInitializeParams, BulkInsertInstanceResource, InstanceProperties, Metadata,
    NetworkInterface, Operation, Scheduling, ServiceAccount, metadata, operation, scheduling,
};
use google_cloud_gax::error::rpc::StatusDetails;
use google_cloud_gax::retry_policy::NeverRetry;
use sha2::Digest;

/// aggregatedList / list page size: the largest Compute Engine accepts.
const PAGE_SIZE: u32 = 500;
/// Deletes in flight at once.
const DELETE_CONCURRENCY: usize = 16;
/// `zoneOperations.wait` calls per operation. Each returns when the
/// operation is done or after about two minutes, so this bounds a create or
/// delete at about an hour.
const MAX_WAITS: u32 = 30;
/// How long `zoneOperations.wait` may hold its answer by design.
const WAIT_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);
/// GCE's limit on resource names.
const MAX_NAME_LEN: usize = 63;
/// Digits of the instance number in generated names (`-0001`).
const NAME_DIGITS: usize = 4;
/// Instance states that do not count as owned: the instance is going away.
const GONE_STATES: [&str; 1] = ["DEPROVISIONING"];
/// Networks a VM is attached to when created.
const DEFAULT_NETWORK: &str = "global/networks/default";
/// The user an `ssh-keys` metadata entry logs in as, as on Azure.
const SSH_USER: &str = "gpufleet";

/// The network a plan names (a name or a `projects/...` path) as a URL path.
fn network_path(network: Option<&str>) -> String {
    match network {
        None => DEFAULT_NETWORK.to_string(),
        Some(path) if path.starts_with("projects/") => path.to_string(),
        Some(name) => format!("global/networks/{name}"),
    }
}

/// The subnetwork a plan names for a region, as a URL path.
fn subnetwork_path(region: &str, subnetwork: &str) -> String {
    match subnetwork.starts_with("projects/") {
        true => subnetwork.to_string(),
        false => format!("regions/{region}/subnetworks/{subnetwork}"),
    }
}

/// How to reach Compute Engine.
#[derive(Debug, Clone, Default)]
pub struct GcpConnection {
    /// Endpoint override (the simulator); `None` is `https://compute.googleapis.com`.
    pub endpoint: Option<String>,
    /// Send no credentials at all: only for the simulator, which checks none.
    /// Otherwise Application Default Credentials are used.
    pub anonymous: bool,
    pub retry: RetryPolicy,
}

pub struct GcpProvider {
    project: String,
    retry: RetryPolicy,
    zones: Vec<String>,
    instances: Instances,
    operations: ZoneOperations,
    regions: Regions,
    machine_types: MachineTypes,
    images: Images,
    networks: Networks,
    projects: Projects,
    accelerator_types: AcceleratorTypes,
    subnetworks: Subnetworks,
}

impl GcpProvider {
    /// Builds the Compute Engine clients for `project`. `zones` are the
    /// configured zones (kept for errors; listing covers the whole project,
    /// so instances left in a zone no longer configured are still seen).
    pub async fn connect(
        project: &str,
        zones: &[String],
        connection: &GcpConnection,
    ) -> Result<GcpProvider, ProviderError> {
        let failed = |code: &str, kind: ErrorKind, message: String| ProviderError {
            kind,
            cloud: Cloud::Gcp,
            region: zones.first().map(|z| region_of_zone(z).to_string()).unwrap_or_default(),
            code: code.into(),
            message,
        };
        let credentials = if connection.anonymous {
            google_cloud_auth::credentials::anonymous::Builder::new().build()
        } else {
            google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|e| failed("CredentialsNotFound", ErrorKind::Auth, e.to_string()))?
        };
        let mut instances = Instances::builder().with_credentials(credentials.clone()).with_retry_policy(NeverRetry);
        let mut operations =
            ZoneOperations::builder().with_credentials(credentials.clone()).with_retry_policy(NeverRetry);
        let mut regions = Regions::builder().with_credentials(credentials.clone()).with_retry_policy(NeverRetry);
        let mut machine_types =
            MachineTypes::builder().with_credentials(credentials.clone()).with_retry_policy(NeverRetry);
        let mut images = Images::builder().with_credentials(credentials.clone()).with_retry_policy(NeverRetry);
        let mut networks = Networks::builder().with_credentials(credentials.clone()).with_retry_policy(NeverRetry);
        let mut projects = Projects::builder().with_credentials(credentials.clone()).with_retry_policy(NeverRetry);
        let mut accelerator_types =
            AcceleratorTypes::builder().with_credentials(credentials.clone()).with_retry_policy(NeverRetry);
        let mut subnetworks = Subnetworks::builder().with_credentials(credentials).with_retry_policy(NeverRetry);
        if let Some(endpoint) = &connection.endpoint {
            instances = instances.with_endpoint(endpoint);
            operations = operations.with_endpoint(endpoint);
            regions = regions.with_endpoint(endpoint);
            machine_types = machine_types.with_endpoint(endpoint);
            images = images.with_endpoint(endpoint);
            networks = networks.with_endpoint(endpoint);
            projects = projects.with_endpoint(endpoint);
            accelerator_types = accelerator_types.with_endpoint(endpoint);
            subnetworks = subnetworks.with_endpoint(endpoint);
        }
        let client_failed =
            |e: google_cloud_gax::client_builder::Error| failed("ClientBuild", ErrorKind::Invalid, e.to_string());
        Ok(GcpProvider {
            project: project.to_string(),
            retry: connection.retry,
            zones: zones.to_vec(),
            instances: instances.build().await.map_err(client_failed)?,
            operations: operations.build().await.map_err(client_failed)?,
            regions: regions.build().await.map_err(client_failed)?,
            machine_types: machine_types.build().await.map_err(client_failed)?,
            images: images.build().await.map_err(client_failed)?,
            networks: networks.build().await.map_err(client_failed)?,
            projects: projects.build().await.map_err(client_failed)?,
            accelerator_types: accelerator_types.build().await.map_err(client_failed)?,
            subnetworks: subnetworks.build().await.map_err(client_failed)?,
        })
    }

    /// Waits until the operation is DONE, then turns the errors of its work
    /// into a [`ProviderError`].
    async fn finish(&self, zone: &str, mut op: Operation) -> Result<Operation, ProviderError> {
        let region = region_of_zone(zone);
        let mut waits = 0;
        while op.status != Some(operation::Status::Done) {
            waits += 1;
            let Some(name) = op.name.clone() else {
                return Err(unexpected(region, "the operation has no name to wait on"));
            };
            if waits > MAX_WAITS {
                return Err(ProviderError {
                    kind: ErrorKind::Transient,
                    cloud: Cloud::Gcp,
                    region: region.into(),
                    code: "OperationTimeout".into(),
                    message: format!("operation {name} in {zone} is still not done"),
                });
            }
            // The wait is a long poll: it may take the server's whole poll
            // window before answering, and that is no hang.
            let policy = RetryPolicy { call_timeout: self.retry.call_timeout + WAIT_WINDOW, ..self.retry };
            op = retrying(policy, Call::new(Cloud::Gcp, region, "zoneOperations.wait"), || async {
                self.operations
                    .wait()
                    .set_project(&self.project)
                    .set_zone(zone)
                    .set_operation(&name)
                    .send()
                    .await
                    .map_err(|e| classify(region, &e))
            })
            .await?;
        }
        match operation_error(region, &op) {
            Some(error) => Err(error),
            None => Ok(op),
        }
    }

    /// Instances of one zone whose labels say they belong to `run`, one page of 500 at a time.
    async fn list_zone(&self, zone: &str, filter: &str) -> Result<Vec<Instance>, ProviderError> {
        let region = region_of_zone(zone);
        let pages = self
            .every_page(
                region,
                "instances.list",
                |token| {
                    self.instances
                        .list()
                        .set_project(&self.project)
                        .set_zone(zone)
                        .set_filter(filter)
                        .set_max_results(PAGE_SIZE)
                        .set_page_token(token)
                        .send()
                },
                |page| page.next_page_token.as_ref(),
            )
            .await?;
        Ok(pages.iter().flat_map(|page| &page.items).filter_map(|i| to_instance(i, &self.project)).collect())
    }

    /// Every page of a list, from the first to the one without a next page
    /// token: `send` asks for the page at a token ("" for the first), `next`
    /// reads a page's next token. Each page is retried on its own.
    async fn every_page<T, F, Fut>(
        &self,
        region: &str,
        name: &str,
        mut send: F,
        next: impl Fn(&T) -> Option<&String>,
    ) -> Result<Vec<T>, ProviderError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, google_cloud_compute_v1::Error>>,
    {
        let mut pages = Vec::new();
        let mut token = String::new();
        loop {
            let page = retrying(self.retry, Call::new(Cloud::Gcp, region, name), || {
                let sent = send(token.clone());
                async move { sent.await.map_err(|e| classify(region, &e)) }
            })
            .await?;
            let following = next(&page).filter(|t| !t.is_empty()).cloned();
            pages.push(page);
            match following {
                Some(following) => token = following,
                None => return Ok(pages),
            }
        }
    }

    async fn delete_one(&self, instance: &Instance) -> Result<(), ProviderError> {
        let region = instance.region.as_str();
        let Some(zone) = instance.zone.as_deref() else {
            return Err(ProviderError {
                kind: ErrorKind::Invalid,
                cloud: Cloud::Gcp,
                region: region.into(),
                code: "NoZone".into(),
                message: format!("instance {} has no zone", instance.id),
            });
        };
        // One requestId for every attempt of this delete, so a retry after a
        // lost response does not start a second operation.
        let request_id = uuid::Uuid::new_v4().to_string();
        let sent = retrying(self.retry, Call::new(Cloud::Gcp, region, "instances.delete"), || async {
            self.instances
                .delete()
                .set_project(&self.project)
                .set_zone(zone)
                .set_instance(&instance.id)
                .set_request_id(&request_id)
                .send()
                .await
                .map_err(|e| classify(region, &e))
        })
        .await;
        let result = match sent {
            Ok(op) => self.finish(zone, op).await.map(drop),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

#[async_trait::async_trait]
impl Provider for GcpProvider {
    fn cloud(&self) -> Cloud {
        Cloud::Gcp
    }

    fn scopes(&self) -> Vec<Scope> {
        vec![Scope::GcpProject { project: self.project.clone() }]
    }

    async fn list_owned(&self, plan: &str) -> Result<Vec<Instance>, ProviderError> {
        let region = self.zones.first().map(|z| region_of_zone(z)).unwrap_or_default();
        let filter = label_filter(TAG_PLAN, plan);
        let pages = self
            .every_page(
                region,
                "instances.aggregatedList",
                |token| {
                    self.instances
                        .aggregated_list()
                        .set_project(&self.project)
                        .set_filter(&filter)
                        .set_max_results(PAGE_SIZE)
                        .set_page_token(token)
                        .send()
                },
                |page| page.next_page_token.as_ref(),
            )
            .await?;
        let mut all: Vec<Instance> = pages
            .iter()
            .flat_map(|page| page.items.values())
            .flat_map(|scoped| scoped.instances.iter().filter_map(|i| to_instance(i, &self.project)))
            .collect();
        all.sort();
        Ok(all)
    }

    async fn create(&self, request: &CreateRequest) -> Result<Vec<Instance>, ProviderError> {
        let region = request.placement.region.as_str();
        let Some(zone) = request.placement.zone.as_deref() else {
            return Err(ProviderError {
                kind: ErrorKind::Invalid,
                cloud: Cloud::Gcp,
                region: region.into(),
                code: "NoZone".into(),
                message: "Compute Engine places instances in a zone; the placement names none".into(),
            });
        };
        let prefix = name_prefix(&request.fleet, &request.idempotency_token);
        let launch = &request.launch;
        let mut interface = NetworkInterface::new().set_network(network_path(launch.network.as_deref()));
        if let Some(subnetwork) = &launch.subnet {
            interface = interface.set_subnetwork(subnetwork_path(region, subnetwork));
        }
        let mut properties = InstanceProperties::new()
            .set_machine_type(request.placement.instance_type.as_str())
            .set_labels(request.tags())
            .set_disks([AttachedDisk::new().set_boot(true).set_auto_delete(true).set_initialize_params(
                AttachedDiskInitializeParams::new()
                    .set_source_image(request.image.as_str())
                    .set_disk_size_gb(i64::from(launch.disk_gb)),
            )])
            .set_network_interfaces([interface])
            // GPU VMs cannot live-migrate.
            .set_scheduling(Scheduling::new().set_on_host_maintenance(scheduling::OnHostMaintenance::Terminate));
        if let Some(email) = &launch.identity {
            properties = properties.set_service_accounts([ServiceAccount::new()
                .set_email(email.as_str())
                .set_scopes(launch.scopes.iter().map(String::as_str))]);
        }
        let mut items = Vec::new();
        if let Some(script) = &request.user_data {
            items.push(metadata::Items::new().set_key("startup-script").set_value(script.as_str()));
        }
        if let Some(key) = &launch.ssh_key {
            items.push(metadata::Items::new().set_key("ssh-keys").set_value(format!("{SSH_USER}:{key}")));
        }
        if !items.is_empty() {
            properties = properties.set_metadata(Metadata::new().set_items(items));
        }
        let body = BulkInsertInstanceResource::new()
            .set_count(i64::from(request.count))
            .set_min_count(i64::from(request.min_count))
            .set_name_pattern(format!("{prefix}{}", "#".repeat(NAME_DIGITS)))
            .set_instance_properties(properties);
        let op = retrying(self.retry, Call::new(Cloud::Gcp, region, "instances.bulkInsert"), || async {
            self.instances
                .bulk_insert()
                .set_project(&self.project)
                .set_zone(zone)
                .set_request_id(&request.idempotency_token)
                .set_body(body.clone())
                .send()
                .await
                .map_err(|e| classify(region, &e))
        })
        .await?;
        self.finish(zone, op).await?;
        // The names this call generated start with its prefix; the run label
        // narrows the listing to this run's instances first.
        let mut created = self.list_zone(zone, &label_filter(TAG_RUN, &request.run)).await?;
        created.retain(|i| i.id.starts_with(&prefix));
        created.sort();
        Ok(created)
    }

    async fn delete(&self, instances: &[Instance]) -> Result<(), ProviderError> {
        // Futures built up front: a closure inside the stream trips the
        // higher-ranked lifetime check of the async-trait future.
        let deletes: Vec<_> = instances.iter().map(|instance| self.delete_one(instance)).collect();
        futures::stream::iter(deletes).buffer_unordered(DELETE_CONCURRENCY).try_collect::<Vec<()>>().await.map(drop)
    }

    /// `regions.get`: the region's quota for the machine type's GPU metric,
    /// less its usage, in whole nodes.
    async fn quota_headroom(
        &self,
        placement: &Placement,
        gpu: &str,
        gpus_per_node: u32,
    ) -> Result<Option<u32>, ProviderError> {
        Ok(self.gpu_quota(placement, gpu).await?.map(|quota| quota.nodes(gpus_per_node)))
    }

    async fn preflight(&self, request: &PreflightRequest) -> Result<OfferingFindings, ProviderError> {
        self.preflight_offering(request).await
    }

    async fn read_catalog(&self) -> Result<crate::catalog::CloudRead, ProviderError> {
        self.read_offerings().await
    }
}

/// A GPU quota as `regions.get` (the model's, per region) or `projects.get`
/// (`GPUS_ALL_REGIONS`) reports it.
#[derive(Debug, Clone, PartialEq)]
struct GpuQuota {
    metric: String,
    /// The region it counts in, or `global` for the project's.
    scope: String,
    limit: f64,
    usage: f64,
}

impl GpuQuota {
    fn free(&self) -> f64 {
        (self.limit - self.usage).max(0.0)
    }

    /// Whole nodes of `gpus_per_node` that fit.
    fn nodes(&self, gpus_per_node: u32) -> u32 {
        (self.free() / f64::from(gpus_per_node.max(1))).floor() as u32
    }
}

impl GcpProvider {
    /// The quota that binds a GPU create at the placement: the region's
    /// quota of the machine type's GPU metric, or the project's
    /// `GPUS_ALL_REGIONS`, whichever has fewer GPUs free; `None` when
    /// neither is listed.
    async fn gpu_quota(&self, placement: &Placement, gpu: &str) -> Result<Option<GpuQuota>, ProviderError> {
        let region_name = placement.region.as_str();
        let region = retrying(self.retry, Call::new(Cloud::Gcp, region_name, "regions.get"), || async {
            self.regions
                .get()
                .set_project(&self.project)
                .set_region(region_name)
                .send()
                .await
                .map_err(|e| classify(region_name, &e))
        })
        .await?;
        let project = retrying(self.retry, Call::new(Cloud::Gcp, "global", "projects.get"), || async {
            self.projects.get().set_project(&self.project).send().await.map_err(|e| classify("global", &e))
        })
        .await?;
        let metric = crate::catalog::gce_gpu_quota_metric(&placement.instance_type, gpu);
        let find = |quotas: &[google_cloud_compute_v1::model::Quota], metric: &str, scope: &str| {
            quotas.iter().find(|q| q.metric.as_ref().and_then(|m| m.name()) == Some(metric)).map(|q| GpuQuota {
                metric: metric.to_string(),
                scope: scope.to_string(),
                limit: q.limit.unwrap_or(0.0),
                usage: q.usage.unwrap_or(0.0),
            })
        };
        let regional = find(&region.quotas, &metric, region_name);
        let global = find(&project.quotas, crate::catalog::GCE_GPUS_ALL_REGIONS, "global");
        Ok([regional, global].into_iter().flatten().min_by(|a, b| a.free().total_cmp(&b.free())))
    }
}

/// `labels.KEY = "VALUE"`, the filter syntax of list and aggregatedList.
fn label_filter(key: &str, value: &str) -> String {
    format!("labels.{key} = \"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `gf-<fleet>-<8 hex>-`: lowercase, at most 63 characters with the digits,
/// and unique per create call (the hex comes from the idempotency token, so a
/// retried call generates the same names).
pub fn name_prefix(fleet: &str, token: &str) -> String {
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    let mut fleet: String =
        fleet.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    while fleet.contains("--") {
        fleet = fleet.replace("--", "-");
    }
    let room = MAX_NAME_LEN - "gf-".len() - "-".len() - 8 - "-".len() - NAME_DIGITS;
    let fleet: String = fleet.trim_matches('-').chars().take(room).collect();
    let fleet = fleet.trim_end_matches('-');
    if fleet.is_empty() { format!("gf-{}-", &hash[..8]) } else { format!("gf-{fleet}-{}-", &hash[..8]) }
}

/// `us-central1-a` → `us-central1`.
fn region_of_zone(zone: &str) -> &str {
    zone.rsplit_once('-').map_or(zone, |(region, _)| region)
}

/// The last path segment of a resource URL (`.../zones/us-central1-a` → `us-central1-a`).
fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

fn to_instance(i: &google_cloud_compute_v1::model::Instance, project: &str) -> Option<Instance> {
    if i.status.as_ref().and_then(|s| s.name()).is_some_and(|s| GONE_STATES.contains(&s)) {
        return None;
    }
    let zone = last_segment(i.zone.as_deref()?).to_string();
    let launched_at = i
        .creation_timestamp
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.with_timezone(&Utc));
    Some(Instance {
        id: i.name.clone()?,
        cloud: Cloud::Gcp,
        region: region_of_zone(&zone).to_string(),
        instance_type: last_segment(i.machine_type.as_deref()?).to_string(),
        fleet: i.labels.get(TAG_FLEET)?.clone(),
        run: i.labels.get(TAG_RUN).cloned().unwrap_or_default(),
        zone: Some(zone),
        launched_at,
        scope: Some(Scope::GcpProject { project: project.to_string() }),
    })
}

fn unexpected(region: &str, message: &str) -> ProviderError {
    ProviderError {
        kind: ErrorKind::Transient,
        cloud: Cloud::Gcp,
        region: region.into(),
        code: "UnexpectedResponse".into(),
        message: message.into(),
    }
}

/// The error of a finished operation's work, if any: its first error code
/// decides, the HTTP status GCE attaches only breaks ties for unknown codes.
pub fn operation_error(region: &str, op: &Operation) -> Option<ProviderError> {
    let first = op.error.as_ref().and_then(|e| e.errors.first());
    let status = op.http_error_status_code.and_then(|s| u16::try_from(s).ok());
    if first.is_none() && status.is_none_or(|s| s < 400) {
        return None;
    }
    let code = first.and_then(|e| e.code.clone()).unwrap_or_else(|| format!("HTTP {}", status.unwrap_or(0)));
    let message = first.and_then(|e| e.message.clone()).or_else(|| op.http_error_message.clone()).unwrap_or_default();
    Some(ProviderError { kind: kind_of_code(&code, status), cloud: Cloud::Gcp, region: region.into(), code, message })
}

/// What an authentication failure means, in words a person can act on.
/// Application Default Credentials look at GOOGLE_APPLICATION_CREDENTIALS,
/// then gcloud's application-default file, then a Google Cloud VM's metadata
/// server: with neither of the first two, failing means no credentials were
/// found at all, though the library calls it "transient".
fn unauthenticated(detail: &str) -> (String, String) {
    let from_env = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|v| !v.is_empty());
    let gcloud_file = std::env::var_os("CLOUDSDK_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".config/gcloud")))
        .map(|dir| dir.join("application_default_credentials.json"));
    let has_gcloud_file = gcloud_file.as_ref().is_some_and(|file| file.is_file());
    if from_env.is_none() && !has_gcloud_file {
        let looked = gcloud_file.map_or_else(|| "gcloud's configuration".to_string(), |f| f.display().to_string());
        return (
            "NoCredentials".into(),
            format!(
                "no Google Cloud credentials found: GOOGLE_APPLICATION_CREDENTIALS is not set, there is no {looked}, \
                 and no Google Cloud metadata server answered. Run `gcloud auth application-default login`, or \
                 set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
            ),
        );
    }
    let source =
        if from_env.is_some() { "GOOGLE_APPLICATION_CREDENTIALS" } else { "gcloud's application-default file" };
    (
        "Unauthenticated".into(),
        format!(
            "the credentials from {source} were not accepted ({detail}); if they expired, run \
             `gcloud auth application-default login` again"
        ),
    )
}

/// Sort an SDK error (an HTTP error, or a failure to reach the API) into a kind.
fn classify(region: &str, err: &google_cloud_compute_v1::Error) -> ProviderError {
    let (kind, code, message) = if err.is_authentication() {
        let (code, message) = unauthenticated(&err.to_string());
        (ErrorKind::Auth, code, message)
    } else if let Some(status) = err.status() {
        let reason = status.details.iter().find_map(|d| match d {
            StatusDetails::ErrorInfo(info) if !info.reason.is_empty() => Some(info.reason.clone()),
            _ => None,
        });
        let http = err.http_status_code();
        let code = reason.unwrap_or_else(|| match http {
            Some(http) => format!("HTTP {http}"),
            None => format!("{:?}", status.code),
        });
        let mut kind = kind_of_code(&code, http);
        if let ErrorKind::Throttled { retry_after_ms } = &mut kind {
            *retry_after_ms = retry_after(err);
        }
        (kind, code, status.message.clone())
    } else if let Some(http) = err.http_status_code() {
        let code = format!("HTTP {http}");
        let mut kind = kind_of_code(&code, Some(http));
        if let ErrorKind::Throttled { retry_after_ms } = &mut kind {
            *retry_after_ms = retry_after(err);
        }
        (kind, code, err.to_string())
    } else if err.is_binding() || err.is_serialization() {
        (ErrorKind::Invalid, "InvalidRequest".to_string(), err.to_string())
    } else {
        // Timeouts, connection failures, unreadable responses.
        (ErrorKind::Transient, "Unavailable".to_string(), err.to_string())
    };
    ProviderError { kind, cloud: Cloud::Gcp, region: region.into(), code, message }
}

/// `Retry-After: SECONDS` of a throttled response.
fn retry_after(err: &google_cloud_compute_v1::Error) -> Option<u64> {
    let value = err.http_headers()?.get("retry-after")?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(|s| s.saturating_mul(1000))
}

/// Compute Engine error codes (operation `errors[].code`) and reasons (HTTP
/// `errors[].reason`) by what they mean for gpufleet; the HTTP status
/// decides only for codes this table does not know.
pub fn kind_of_code(code: &str, http_status: Option<u16>) -> ErrorKind {
    match code {
        "ZONE_RESOURCE_POOL_EXHAUSTED" | "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS" | "RESOURCE_POOL_EXHAUSTED" => {
            ErrorKind::Capacity
        }
        "QUOTA_EXCEEDED" | "quotaExceeded" => ErrorKind::Quota,
        "rateLimitExceeded" | "userRateLimitExceeded" | "RATE_LIMIT_EXCEEDED" => {
            ErrorKind::Throttled { retry_after_ms: None }
        }
        "RESOURCE_NOT_FOUND" | "notFound" => ErrorKind::NotFound,
        "backendError" | "internalError" | "INTERNAL_ERROR" | "SERVICE_UNAVAILABLE" => ErrorKind::Transient,
        "authError"
        | "forbidden"
        | "insufficientPermissions"
        | "accessNotConfigured"
        | "unauthorized"
        | "PERMISSION_DENIED" => ErrorKind::Auth,
        _ => match http_status {
            Some(429) => ErrorKind::Throttled { retry_after_ms: None },
            Some(500..=599) => ErrorKind::Transient,
            Some(401 | 403) => ErrorKind::Auth,
            Some(404) => ErrorKind::NotFound,
            _ => ErrorKind::Invalid,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Operations as Compute Engine returns them when the work failed.
    fn operation(json: &str) -> Operation {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn operation_errors_sort_into_kinds_by_code_before_http_status() {
        let stock_out = operation(
            r#"{"kind": "compute#operation", "id": "7321145632209871234", "name": "operation-1", "status": "DONE",
                "operationType": "bulkInsert", "httpErrorStatusCode": 503, "httpErrorMessage": "SERVICE UNAVAILABLE",
                "error": {"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED",
                  "message": "The zone 'projects/p/zones/us-central1-a' does not have enough resources available to fulfill the request.  Try a different zone, or try again later."}]}}"#,
        );
        let error = operation_error("us-central1", &stock_out).unwrap();
        assert_eq!((error.kind, error.code.as_str()), (ErrorKind::Capacity, "ZONE_RESOURCE_POOL_EXHAUSTED"));
        assert!(error.message.contains("does not have enough resources"));

        let with_details = operation(
            r#"{"status": "DONE", "httpErrorStatusCode": 503, "error": {"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                "message": "The zone does not have enough resources available to fulfill the request. '(resource type:compute)'.",
                "errorDetails": [{"errorInfo": {"reason": "resource_availability", "domain": "compute.googleapis.com"}}]}]}}"#,
        );
        assert_eq!(operation_error("r", &with_details).unwrap().kind, ErrorKind::Capacity);

        let quota = operation(
            r#"{"status": "DONE", "httpErrorStatusCode": 403, "httpErrorMessage": "FORBIDDEN",
                "error": {"errors": [{"code": "QUOTA_EXCEEDED", "message": "Quota 'NVIDIA_H100_GPUS' exceeded.  Limit: 64.0 in region us-central1.",
                  "errorDetails": [{"quotaInfo": {"metricName": "compute.googleapis.com/nvidia_h100_gpus",
                    "limitName": "NVIDIA-H100-GPUS-per-project-region", "dimensions": {"region": "us-central1"}, "limit": 64}}]}]}}"#,
        );
        assert_eq!(operation_error("r", &quota).unwrap().kind, ErrorKind::Quota, "code wins over the 403");

        let cases = [
            (
                r#"{"status": "DONE", "error": {"errors": [{"code": "RESOURCE_POOL_EXHAUSTED", "message": "m"}]}}"#,
                ErrorKind::Capacity,
            ),
            (
                r#"{"status": "DONE", "httpErrorStatusCode": 404, "error": {"errors": [{"code": "RESOURCE_NOT_FOUND", "message": "m"}]}}"#,
                ErrorKind::NotFound,
            ),
            (
                r#"{"status": "DONE", "httpErrorStatusCode": 400, "error": {"errors": [{"code": "INVALID_FIELD_VALUE", "message": "m"}]}}"#,
                ErrorKind::Invalid,
            ),
            (
                r#"{"status": "DONE", "httpErrorStatusCode": 500, "error": {"errors": [{"code": "SOMETHING_NEW", "message": "m"}]}}"#,
                ErrorKind::Transient,
            ),
            (r#"{"status": "DONE", "httpErrorStatusCode": 503}"#, ErrorKind::Transient),
        ];
        for (json, kind) in cases {
            assert_eq!(operation_error("r", &operation(json)).unwrap().kind, kind, "{json}");
        }
        assert!(operation_error("r", &operation(r#"{"status": "DONE", "progress": 100}"#)).is_none());
    }

    #[test]
    fn http_error_reasons_and_statuses_sort_into_kinds() {
        assert!(matches!(kind_of_code("rateLimitExceeded", Some(403)), ErrorKind::Throttled { .. }));
        assert!(matches!(kind_of_code("HTTP 429", Some(429)), ErrorKind::Throttled { .. }));
        assert_eq!(kind_of_code("quotaExceeded", Some(403)), ErrorKind::Quota);
        assert_eq!(kind_of_code("forbidden", Some(403)), ErrorKind::Auth);
        assert_eq!(kind_of_code("HTTP 401", Some(401)), ErrorKind::Auth);
        assert_eq!(kind_of_code("notFound", Some(404)), ErrorKind::NotFound);
        assert_eq!(kind_of_code("backendError", Some(503)), ErrorKind::Transient);
        assert_eq!(kind_of_code("HTTP 502", Some(502)), ErrorKind::Transient);
        assert_eq!(kind_of_code("invalid", Some(400)), ErrorKind::Invalid);
        assert_eq!(kind_of_code("alreadyExists", Some(409)), ErrorKind::Invalid);
    }

    /// The HTTP error bodies Compute Engine sends, through the SDK's own parser.
    #[test]
    fn http_error_bodies_classify_through_the_sdk_error() {
        let error = |status: u16, body: &str| {
            let status_body = google_cloud_gax::error::rpc::Status::try_from(&bytes(body)).unwrap();
            google_cloud_gax::error::Error::service_with_http_metadata(status_body, Some(status), None)
        };
        let throttled = error(
            403,
            r#"{"error": {"code": 403, "message": "Rate Limit Exceeded", "errors": [{"message": "Rate Limit Exceeded", "domain": "usageLimits", "reason": "rateLimitExceeded"}]}}"#,
        );
        let e = classify("us-central1", &throttled);
        assert_eq!(e.code, "rateLimitExceeded");
        assert!(matches!(e.kind, ErrorKind::Throttled { .. }));
        let gpus_all_regions = error(
            403,
            r#"{"error": {"code": 403, "message": "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 0.0 globally.", "errors": [{"message": "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 0.0 globally.", "domain": "usageLimits", "reason": "quotaExceeded"}]}}"#,
        );
        assert_eq!(classify("r", &gpus_all_regions).kind, ErrorKind::Quota);
        let denied = error(
            403,
            r#"{"error": {"code": 403, "message": "Required 'compute.instances.create' permission for 'projects/p'", "errors": [{"message": "Required 'compute.instances.create' permission", "domain": "global", "reason": "forbidden"}]}}"#,
        );
        assert_eq!(classify("r", &denied).kind, ErrorKind::Auth);
        let missing = error(
            404,
            r#"{"error": {"code": 404, "message": "The resource 'projects/p/zones/us-central1-a/instances/x' was not found", "errors": [{"message": "The resource 'projects/p/zones/us-central1-a/instances/x' was not found", "domain": "global", "reason": "notFound"}]}}"#,
        );
        assert_eq!(classify("r", &missing).kind, ErrorKind::NotFound);
        let backend = error(
            503,
            r#"{"error": {"code": 503, "message": "Internal error.", "errors": [{"message": "Internal error.", "domain": "global", "reason": "backendError"}]}}"#,
        );
        assert_eq!(classify("r", &backend).kind, ErrorKind::Transient);
        let unauthenticated = error(
            401,
            r#"{"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}"#,
        );
        assert_eq!(classify("r", &unauthenticated).kind, ErrorKind::Auth);
        let plain = google_cloud_gax::error::Error::http(502, Default::default(), bytes("<html>Bad Gateway</html>"));
        assert_eq!(classify("r", &plain).kind, ErrorKind::Transient);
    }

    fn bytes(text: &str) -> ::bytes::Bytes {
        ::bytes::Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn name_prefixes_are_valid_unique_per_token_and_bounded() {
        let token = "5f0c3b7e-2f4a-4e1b-9c6d-0a1b2c3d4e5f";
        let prefix = name_prefix("Train_H100 fleet", token);
        assert!(prefix.starts_with("gf-train-h100-fleet-"), "{prefix}");
        assert_eq!(prefix, name_prefix("Train_H100 fleet", token), "a retry generates the same names");
        assert_ne!(prefix, name_prefix("Train_H100 fleet", "another-token"));
        let long = name_prefix(&"x".repeat(200), token);
        assert_eq!(long.len() + NAME_DIGITS, MAX_NAME_LEN);
        assert_eq!(name_prefix("__", token).len(), "gf-".len() + 9);
        for p in [prefix, long] {
            assert!(p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{p}");
        }
        assert_eq!(label_filter("gpufleet-plan", "demo"), "labels.gpufleet-plan = \"demo\"");
    }
}
