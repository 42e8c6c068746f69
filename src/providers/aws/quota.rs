//! EC2's running On-Demand vCPU quotas: the applied value of the family's
//! quota from Service Quotas, less the vCPUs of the instances of that family
//! running (or pending) in the region. EC2 counts vCPUs, so the headroom of
//! a node is the free vCPUs over the node's vCPUs.

use super::{AwsProvider, DESCRIBE_PAGE_SIZE, classify, of_region};
use crate::catalog::{Ec2VcpuQuota, ec2_vcpu_quota};
use crate::model::Cloud;
use crate::providers::{Call, ErrorKind, ProviderError, retrying};
use aws_sdk_ec2::types::Filter;

/// The vCPU quota of one instance type's family in one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VcpuRoom {
    pub quota: &'static Ec2VcpuQuota,
    /// Applied value, in vCPUs.
    pub limit: u64,
    /// vCPUs of the family running or pending in the region.
    pub used: u64,
    /// vCPUs of one node of the type.
    pub per_node: u64,
}

impl VcpuRoom {
    pub fn free(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// Whole nodes that fit.
    pub fn nodes(&self) -> u32 {
        u32::try_from(self.free() / self.per_node.max(1)).unwrap_or(u32::MAX)
    }
}

impl AwsProvider {
    /// The room the type's family quota leaves in the region; `None` when
    /// gpufleet does not know the family's quota or the type's vCPUs, or
    /// when Service Quotas has no applied value for it.
    pub(super) async fn vcpu_room(&self, region: &str, instance_type: &str) -> Result<Option<VcpuRoom>, ProviderError> {
        let (Some(quota), Some(&per_node)) = (ec2_vcpu_quota(instance_type), self.vcpus.get(instance_type)) else {
            return Ok(None);
        };
        let Some(limit) = self.applied_vcpu_limit(region, quota).await? else {
            return Ok(None);
        };
        let used = self.vcpus_running(region, quota).await?;
        Ok(Some(VcpuRoom { quota, limit, used, per_node: u64::from(per_node) }))
    }

    /// `GetServiceQuota`: the applied value, or `None` when there is none.
    async fn applied_vcpu_limit(&self, region: &str, quota: &Ec2VcpuQuota) -> Result<Option<u64>, ProviderError> {
        let client = of_region(&self.quotas, region)?;
        let answer = retrying(self.retry, Call::new(Cloud::Aws, region, "GetServiceQuota"), || async {
            client
                .get_service_quota()
                .service_code("ec2")
                .quota_code(quota.code)
                .send()
                .await
                .map_err(|e| classify(region, e))
        })
        .await;
        match answer {
            Ok(output) => {
                let value = output.quota().and_then(|q| q.value()).unwrap_or(0.0);
                // Saturating: the value comes from the endpoint, whatever it is.
                Ok(Some(if value.is_finite() && value > 0.0 { value.floor() as u64 } else { 0 }))
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// vCPUs of the quota's families that run (or are starting) in the
    /// region, by the catalog's vCPU counts; types the catalog does not
    /// know count for nothing.
    async fn vcpus_running(&self, region: &str, quota: &Ec2VcpuQuota) -> Result<u64, ProviderError> {
        let client = self.client(region)?;
        // EC2 filters know `*` and `?` only: `p*` narrows the listing, the
        // family test below drops the other families it lets through.
        let families: Vec<String> = quota.families.iter().map(|f| format!("{f}*")).collect();
        retrying(self.retry, Call::new(Cloud::Aws, region, "DescribeInstances"), || async {
            let mut pages = client
                .describe_instances()
                .filters(Filter::builder().name("instance-state-name").values("pending").values("running").build())
                .filters(Filter::builder().name("instance-type").set_values(Some(families.clone())).build())
                .max_results(DESCRIBE_PAGE_SIZE)
                .into_paginator()
                .send();
            let mut used = 0u64;
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify(region, e))?;
                for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                    let Some(instance_type) = instance.instance_type().map(|t| t.as_str()) else { continue };
                    if ec2_vcpu_quota(instance_type).is_some_and(|q| q.code == quota.code) {
                        let vcpus = self.vcpus.get(instance_type).copied().unwrap_or(0);
                        used = used.saturating_add(u64::from(vcpus));
                    }
                }
            }
            Ok(used)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_whole_nodes_of_the_free_vcpus() {
        let quota = ec2_vcpu_quota("p5.48xlarge").unwrap();
        let room = VcpuRoom { quota, limit: 400, used: 0, per_node: 192 };
        assert_eq!((room.free(), room.nodes()), (400, 2));
        let over = VcpuRoom { used: 500, ..room };
        assert_eq!((over.free(), over.nodes()), (0, 0), "usage above the limit leaves no room");
    }
}
