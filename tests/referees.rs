//! The independent referees: official Python SDKs and moto, driven by pytest.

mod common;

/// boto3 drives `gpufleet sim serve`: launch, paged describe with tag
/// filters, terminate, capacity errors as `InsufficientInstanceCapacity`.
#[test]
fn boto3_accepts_the_ec2_simulator() {
    common::pytest("test_sim_ec2.py");
}

/// google-cloud-compute (Python, REST) drives `gpufleet sim serve`: insert,
/// bulk insert with minCount, label-filtered and paged lists, deletes,
/// operations waited, `ZONE_RESOURCE_POOL_EXHAUSTED` inside an operation.
#[test]
fn google_cloud_compute_accepts_the_gce_simulator() {
    common::pytest("test_sim_gce.py");
}

/// gpufleet's AWS provider applies and destroys a plan against moto's
/// server; boto3 checks what gpufleet says.
#[test]
fn aws_provider_applies_and_destroys_against_moto() {
    common::pytest("test_moto_apply.py");
}

/// azure-mgmt-compute drives `gpufleet sim serve`: a flexible scale set
/// created, scaled, its VMs paged, instances deleted, AllocationFailed and
/// SkuNotAvailable read from long-running operations and errors.
#[test]
fn azure_mgmt_compute_accepts_the_arm_simulator() {
    common::pytest("test_sim_arm.py");
}

/// One plan on all three clouds through `gpufleet sim serve`: boto3,
/// google-cloud-compute and azure-mgmt-compute see exactly what
/// `gpufleet state list --json` says, after apply and after destroy.
#[test]
fn three_official_sdks_agree_with_gpufleet_on_a_three_cloud_plan() {
    common::pytest("test_three_clouds.py");
}

/// boto3, google-cloud-compute and azure-mgmt-compute against a simulated
/// new account: Service Quotas and VcpuLimitExceeded, AMIs per region,
/// default VPCs, Compute Engine images and networks, Azure SKUs, images,
/// resource groups and subnets, each refusal in its cloud's shape.
#[test]
fn official_sdks_meet_the_refusals_of_a_new_account() {
    common::pytest("test_sim_account.py");
}

/// boto3, google-cloud-compute and azure-mgmt-compute against an account
/// with its own subnets, security groups, key pairs, instance profiles,
/// subnetworks, service accounts and managed identities, and images larger
/// than some boot disks: each refusal in its cloud's shape, and create
/// bodies missing what the specs require refused as the clouds do.
#[test]
fn official_sdks_meet_the_refusals_of_a_nodes_network_identity_and_disk() {
    common::pytest("test_sim_network.py");
}
