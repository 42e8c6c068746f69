//! `gpufleet check` on Compute Engine, per zone: `machineTypes.get` (the
//! type is sold in the zone), `images.get` or `images.getFromFamily` (the
//! fleet's image), `networks.get` (the network VMs join) and the region's
//! GPU quota from `regions.get`.

use super::{GcpProvider, classify, network_path, subnetwork_path};
use crate::model::Cloud;
use crate::providers::preflight::{Finding, OfferingFindings, PreflightRequest, QuotaFinding, quota_fix, refused};
use crate::providers::{Call, ProviderError, retrying};

/// A Compute Engine image as the fleet names it: a family or an image, in a project.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ImageName<'a> {
    Family { project: &'a str, family: &'a str },
    Image { project: &'a str, image: &'a str },
}

/// `[https://…/compute/v1/]projects/P/global/images/(family/F|NAME)`, or
/// `global/images/...` in the plan's own project.
fn image_name<'a>(image: &'a str, own_project: &'a str) -> Option<ImageName<'a>> {
    let path = image.find("projects/").map_or(image, |start| &image[start..]);
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["projects", project, "global", "images", "family", family] => Some(ImageName::Family { project, family }),
        ["projects", project, "global", "images", image] => Some(ImageName::Image { project, image }),
        ["global", "images", "family", family] => Some(ImageName::Family { project: own_project, family }),
        ["global", "images", image] => Some(ImageName::Image { project: own_project, image }),
        _ => None,
    }
}

/// The project (the plan's own unless the path names another: a Shared VPC
/// host) and the last segment of a network or subnetwork path.
fn project_and_name<'a>(path: &'a str, own_project: &'a str) -> (&'a str, &'a str) {
    let project = path.strip_prefix("projects/").and_then(|rest| rest.split('/').next()).unwrap_or(own_project);
    (project, path.rsplit('/').next().unwrap_or(path))
}

impl GcpProvider {
    pub(super) async fn preflight_offering(
        &self,
        request: &PreflightRequest,
    ) -> Result<OfferingFindings, ProviderError> {
        let placement = &request.placement;
        let region = placement.region.as_str();
        let zone = placement.zone.as_deref().unwrap_or(region);
        let machine_type = placement.instance_type.as_str();
        let project = self.project.as_str();
        let call = |name| Call::new(Cloud::Gcp, region, name);

        let sold = retrying(self.retry, call("machineTypes.get"), || async {
            self.machine_types
                .get()
                .set_project(project)
                .set_zone(zone)
                .set_machine_type(machine_type)
                .send()
                .await
                .map_err(|e| classify(region, &e))
        })
        .await;
        let offered = match sold {
            Ok(_) => Finding::pass(format!("sold in {zone}")),
            Err(e) => refused(
                e,
                format!("choose another zone for {machine_type}, or remove {zone} from [providers.gcp] zones"),
            )?,
        };

        let image = match image_name(&request.image, project) {
            None => Finding::unchecked(format!(
                "{} is not projects/P/global/images/NAME or .../images/family/F",
                request.image
            )),
            Some(name) => {
                let found = retrying(self.retry, call("images.get"), || async {
                    let image = match name {
                        ImageName::Family { project, family } => {
                            self.images.get_from_family().set_project(project).set_family(family).send().await
                        }
                        ImageName::Image { project, image } => {
                            self.images.get().set_project(project).set_image(image).send().await
                        }
                    };
                    image.map_err(|e| classify(region, &e))
                })
                .await;
                match found {
                    Ok(image) => Finding::pass(image.name.unwrap_or_else(|| request.image.clone())),
                    Err(e) => refused(
                        e,
                        "create the image, or name one the project can read (gcloud compute images list --project PROJECT)",
                    )?,
                }
            }
        };

        let launch = &request.launch;
        let network_path = network_path(launch.network.as_deref());
        let (network_project, network_name) = project_and_name(&network_path, project);
        let network = retrying(self.retry, call("networks.get"), || async {
            self.networks
                .get()
                .set_project(network_project)
                .set_network(network_name)
                .send()
                .await
                .map_err(|e| classify(region, &e))
        })
        .await;
        let network = match network {
            Ok(_) => Finding::pass(format!("network {network_name}")),
            Err(e) => refused(
                e,
                format!(
                    "create it: gcloud compute networks create {network_name} --subnet-mode=auto --project {network_project}, or fix [providers.gcp] network"
                ),
            )?,
        };
        let network = match (network, &launch.subnet) {
            (Finding::Pass { detail }, Some(subnetwork)) => {
                let path = subnetwork_path(region, subnetwork);
                let (subnet_project, subnet_name) = project_and_name(&path, project);
                let found = retrying(self.retry, call("subnetworks.get"), || async {
                    self.subnetworks
                        .get()
                        .set_project(subnet_project)
                        .set_region(region)
                        .set_subnetwork(subnet_name)
                        .send()
                        .await
                        .map_err(|e| classify(region, &e))
                })
                .await;
                match found {
                    Ok(_) => Finding::pass(format!("{detail}, subnetwork {subnet_name}")),
                    Err(e) => refused(
                        e,
                        format!(
                            "create it: gcloud compute networks subnets create {subnet_name} --network {network_name} --region {region} --range CIDR --project {subnet_project}, or fix [providers.gcp] subnetworks"
                        ),
                    )?,
                }
            }
            (network, _) => network,
        };
        let access = match &launch.identity {
            Some(account) => Finding::unchecked(format!(
                "service account {account} is not checked: it lives in IAM, and the create refuses an unknown one"
            )),
            None => Finding::pass("no service account asked for"),
        };

        let quota = match self.gpu_quota(placement, &request.gpu).await {
            Ok(None) => QuotaFinding {
                finding: Finding::unchecked("the region lists no quota for this GPU"),
                headroom_nodes: None,
                key: None,
            },
            Ok(Some(quota)) => {
                let nodes = quota.nodes(request.gpus_per_node);
                let finding = if nodes >= request.nodes {
                    Finding::pass(format!("room for {nodes} node(s): {} of {} GPUs free", quota.free(), quota.limit))
                } else {
                    let need = u64::from(request.nodes) * u64::from(request.gpus_per_node);
                    Finding::fail(
                        "QUOTA_EXCEEDED",
                        format!(
                            "{} in {}: limit {} GPUs, {} in use",
                            quota.metric, quota.scope, quota.limit, quota.usage
                        ),
                        quota_fix(&quota.metric, &quota.scope, need, quota.free() as u64, "GPUs"),
                    )
                };
                let key = format!("gcp {project} {} {}", quota.scope, quota.metric);
                QuotaFinding { finding, headroom_nodes: Some(nodes), key: Some(key) }
            }
            Err(e) => {
                let finding = refused(e, "allow compute.regions.get and compute.projects.get")?;
                QuotaFinding { finding, headroom_nodes: None, key: None }
            }
        };
        Ok(OfferingFindings { offered, image, network, access, quota })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_are_read_from_every_form_a_plan_uses() {
        let family = ImageName::Family { project: "ml", family: "trainer" };
        assert_eq!(image_name("projects/ml/global/images/family/trainer", "own"), Some(family.clone()));
        assert_eq!(
            image_name("https://www.googleapis.com/compute/v1/projects/ml/global/images/family/trainer", "own"),
            Some(family)
        );
        assert_eq!(
            image_name("global/images/base-v3", "own"),
            Some(ImageName::Image { project: "own", image: "base-v3" })
        );
        assert_eq!(image_name("ubuntu-2204", "own"), None);
    }
}
