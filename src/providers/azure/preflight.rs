//! `gpufleet check` on Azure, per region: the resource SKUs the location
//! sells and their restrictions, the marketplace image in that location
//! (`VirtualMachineImages`), the plan's resource group and the subnet new
//! VMs join, and the size's vCPU family quota from `usages`.
//!
//! The resource group and the subnet are Microsoft.Resources and
//! Microsoft.Network resources, which azure_mgmt_compute does not cover:
//! they are read with one GET each through the provider's own pipeline
//! (the same credential and HTTP stack), as operations are followed.

use super::{AzureProvider, Fault, classify};
use crate::model::Cloud;
use crate::providers::preflight::{Finding, OfferingFindings, PreflightRequest, QuotaFinding, quota_fix, refused};
use crate::providers::{Call, ErrorKind, ProviderError, retrying};
use azure_mgmt_compute::package_2024_07_01::models::resource_sku_restrictions::Type as RestrictionType;
use futures::StreamExt;

/// api-version of `Microsoft.Resources/resourceGroups` reads.
const RESOURCE_GROUPS_API: &str = "2021-04-01";
/// api-version of `Microsoft.Network` subnet reads.
const NETWORK_API: &str = "2023-09-01";
/// api-version of `Microsoft.ManagedIdentity` user-assigned identity reads.
const IDENTITY_API: &str = "2023-01-31";

impl AzureProvider {
    /// GET an ARM resource by id; the error of anything but a 200, as ARM said it.
    async fn read_resource(&self, region: &str, id: &str, api_version: &str) -> Result<(), ProviderError> {
        let url =
            self.endpoint.join(&format!("{}?api-version={api_version}", id.trim_start_matches('/'))).map_err(|e| {
                ProviderError {
                    kind: ErrorKind::Invalid,
                    cloud: Cloud::Azure,
                    region: region.to_string(),
                    code: "InvalidResourceId".into(),
                    message: format!("{id}: {e}"),
                }
            })?;
        let (status, _, body) = self.get_raw(region, url.as_str()).await?;
        if status == azure_core::StatusCode::Ok {
            return Ok(());
        }
        let fault = Fault::from_body(&body);
        let (kind, code) = fault.classify(u16::from(status), None);
        Err(ProviderError { kind, cloud: Cloud::Azure, region: region.to_string(), code, message: fault.message })
    }

    pub(super) async fn preflight_offering(
        &self,
        request: &PreflightRequest,
    ) -> Result<OfferingFindings, ProviderError> {
        let region = request.placement.region.as_str();
        let size = request.placement.instance_type.as_str();
        let call = |name| Call::new(Cloud::Azure, region, name);

        let skus = retrying(self.retry, call("resourceSkus.list"), || async {
            let mut pages = self
                .client
                .resource_skus_client()
                .list(&self.subscription)
                .filter(format!("location eq '{region}'"))
                .into_stream();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                out.extend(page.map_err(|e| classify(region, e))?.value);
            }
            Ok(out)
        })
        .await;
        let offered = match skus {
            Err(e) => refused(e, "allow Microsoft.Compute/skus/read")?,
            Ok(skus) => {
                let here = |names: &[String]| names.iter().any(|n| n.eq_ignore_ascii_case(region));
                let sku = skus.iter().find(|s| {
                    s.resource_type.as_deref() == Some("virtualMachines")
                        && s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(size))
                        && here(&s.locations)
                });
                let restriction = sku.and_then(|s| {
                    s.restrictions.iter().find(|r| r.type_ == Some(RestrictionType::Location) && here(&r.values))
                });
                match (sku, restriction) {
                    (None, _) => Finding::fail(
                        "SkuNotAvailable",
                        format!("{size} is not offered in {region}"),
                        format!("choose another region for {size}, or remove {region} from [providers.azure] regions"),
                    ),
                    (Some(_), Some(restriction)) => Finding::fail(
                        "SkuNotAvailable",
                        format!(
                            "{size} is restricted in {region} for this subscription ({})",
                            restriction
                                .reason_code
                                .as_ref()
                                .map_or("no reason given".to_string(), |r| format!("{r:?}"))
                        ),
                        format!(
                            "ask Azure support to enable {size} in {region} for the subscription, or choose another region"
                        ),
                    ),
                    (Some(_), None) => Finding::pass(format!("sold in {region}")),
                }
            }
        };

        let image = match request.image.split(':').collect::<Vec<_>>().as_slice() {
            [publisher, offer, sku, version] => {
                let versions = retrying(self.retry, call("virtualMachineImages.list"), || async {
                    let list = self.client.virtual_machine_images_client().list(
                        region,
                        *publisher,
                        *offer,
                        *sku,
                        &self.subscription,
                    );
                    let response = list.send().await.map_err(|e| classify(region, e))?;
                    let versions = response.into_body().await.map_err(|e| classify(region, e))?;
                    Ok(versions.into_iter().map(|v| v.name).collect::<Vec<_>>())
                })
                .await;
                let find_fix = format!(
                    "check the image: az vm image list --location {region} --publisher {publisher} --offer {offer} --sku {sku} --all"
                );
                match versions {
                    Ok(found) if found.iter().any(|v| *version == "latest" || v.eq_ignore_ascii_case(version)) => {
                        Finding::pass(format!("{} version(s) in {region}", found.len()))
                    }
                    Ok(_) => Finding::fail(
                        "InvalidParameter",
                        format!("no version {version} of {publisher}:{offer}:{sku} in {region}"),
                        find_fix,
                    ),
                    Err(e) => refused(e, find_fix)?,
                }
            }
            _ => Finding::unchecked("images given by resource id are not checked"),
        };

        let group_id = format!("/subscriptions/{}/resourceGroups/{}", self.subscription, self.resource_group);
        let network = match self.read_resource(region, &group_id, RESOURCE_GROUPS_API).await {
            Err(e) => {
                refused(e, format!("create it: az group create --name {} --location {region}", self.resource_group))?
            }
            Ok(()) => {
                let subnet = self.subnet_id(region);
                match self.read_resource(region, &subnet, NETWORK_API).await {
                    Ok(()) => Finding::pass(format!(
                        "subnet {}",
                        subnet.rsplit("/virtualNetworks/").next().unwrap_or(&subnet)
                    )),
                    Err(e) => refused(
                        e,
                        format!(
                            "create the virtual network gpufleet-{region} with a subnet default in {} (az network vnet create --resource-group {} --name gpufleet-{region} --location {region} --subnet-name default), or set [providers.azure] subnet",
                            self.resource_group, self.resource_group
                        ),
                    )?,
                }
            }
        };

        let access = match &request.launch.identity {
            None => Finding::pass("no managed identity asked for"),
            Some(identity) => match self.read_resource(region, identity, IDENTITY_API).await {
                Ok(()) => {
                    Finding::pass(format!("managed identity {}", identity.rsplit('/').next().unwrap_or(identity)))
                }
                Err(e) => refused(
                    e,
                    "create it (az identity create --resource-group RG --name NAME), or fix the fleet's identity.azure",
                )?,
            },
        };

        let quota = match self.family_quota(&request.placement).await {
            Ok(None) => QuotaFinding {
                finding: Finding::unchecked("no vCPU family quota known for this size here"),
                headroom_nodes: None,
                key: None,
            },
            Ok(Some(quota)) => {
                let nodes = quota.nodes();
                let finding = if nodes >= request.nodes {
                    Finding::pass(format!("room for {nodes} VM(s): {} of {} vCPUs free", quota.free(), quota.limit))
                } else {
                    let need = u64::from(request.nodes) * u64::from(quota.vcpus_per_vm);
                    Finding::fail(
                        "OperationNotAllowed",
                        format!("{} in {region}: limit {} vCPUs, {} in use", quota.family, quota.limit, quota.current),
                        quota_fix(quota.family, region, need, quota.free().unsigned_abs(), "vCPUs"),
                    )
                };
                let key = format!("azure {} {region} {}", self.subscription, quota.family);
                QuotaFinding { finding, headroom_nodes: Some(nodes), key: Some(key) }
            }
            Err(e) => QuotaFinding {
                finding: refused(e, "allow Microsoft.Compute/locations/usages/read")?,
                headroom_nodes: None,
                key: None,
            },
        };
        Ok(OfferingFindings { offered, image, network, access, quota })
    }
}
