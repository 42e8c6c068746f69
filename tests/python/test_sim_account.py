"""What a simulated new account refuses, as the official Python SDKs see it.

boto3, google-cloud-compute and azure-mgmt-compute are the independent
referees of plans/scenarios/new-account.toml and the scenario keys behind
it: Service Quotas (awsJson1_1) serving EC2's vCPU quotas and RunInstances
refusing beyond them with VcpuLimitExceeded; AMIs per region
(InvalidAMIID.NotFound); default VPCs and subnets; Compute Engine images,
machine types and networks (404s); Azure resource SKUs, marketplace images,
resource groups (ResourceGroupNotFound) and subnets (InvalidResourceReference).

Run: cargo build && GPUFLEET_BIN=$PWD/target/debug/gpufleet python3 -m pytest tests/python/test_sim_account.py -q
"""

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from botocore.exceptions import ClientError
from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from test_sim_arm import SUBSCRIPTION, compute_of, scale_set
from test_sim_ec2 import aws_client
from test_sim_gce import boot_disk

SCENARIO = """
[[quota]]
cloud = "aws"
region = "us-east-1"
metric = "L-417A185B"
limit = 384

[[quota]]
cloud = "aws"
region = "us-east-1"
metric = "L-DB2E81BA"
limit = 0

[[image]]
cloud = "aws"
region = "us-east-1"
id = "ami-0123456789abcdef0"

[[image]]
cloud = "gcp"
id = "projects/ml/global/images/family/trainer"

[[image]]
cloud = "azure"
region = "eastus"
id = "Canonical:ubuntu:22_04-lts-gen2:latest"

[[offering]]
cloud = "azure"
region = "northeurope"
instance_type = "Standard_ND96isr_H100_v5"
restricted = true

[networks]
aws_default_vpcs = ["us-east-1"]
gcp_networks = ["default"]
azure_resource_groups = ["gpu"]
azure_subnets = ["gpu/net/default"]

# Azure's operations end at once: azure-core's poller sleeps Retry-After in
# real time, and nothing moves this simulator's clock.
[lifecycle]
azure_operation = "0s"
"""
AMI = "ami-0123456789abcdef0"


@pytest.fixture
def sim(start_sim, tmp_path):
    scenario = tmp_path / "account.toml"
    scenario.write_text(SCENARIO)
    return start_sim(scenario)


def test_service_quotas_serve_the_scenarios_vcpu_quotas(sim):
    quotas = aws_client(sim, "service-quotas")
    p = quotas.get_service_quota(ServiceCode="ec2", QuotaCode="L-417A185B")["Quota"]
    assert (p["QuotaName"], p["Value"], p["Adjustable"]) == ("Running On-Demand P instances", 384.0, True)
    assert p["QuotaArn"].endswith(":ec2/L-417A185B")
    with pytest.raises(ClientError) as unset:
        quotas.get_service_quota(ServiceCode="ec2", QuotaCode="L-1216C47A")
    assert unset.value.response["Error"]["Code"] == "NoSuchResourceException"
    pages = quotas.get_paginator("list_service_quotas").paginate(ServiceCode="ec2", PaginationConfig={"PageSize": 1})
    codes = [q["QuotaCode"] for page in pages for q in page["Quotas"]]
    assert codes == ["L-417A185B", "L-DB2E81BA"]
    assert aws_client(sim, "service-quotas", "us-west-2").list_service_quotas(ServiceCode="ec2")["Quotas"] == []


def test_run_instances_stays_within_the_vcpu_quota_the_ami_and_the_default_vpc(sim):
    ec2 = aws_client(sim, "ec2")
    # 384 vCPUs hold two p5.48xlarge (192 each): EC2 launches as many as fit between MinCount and MaxCount.
    launched = ec2.run_instances(ImageId=AMI, InstanceType="p5.48xlarge", MinCount=1, MaxCount=4)
    assert len(launched["Instances"]) == 2
    with pytest.raises(ClientError) as over:
        ec2.run_instances(ImageId=AMI, InstanceType="p5.48xlarge", MinCount=1, MaxCount=1)
    assert over.value.response["Error"]["Code"] == "VcpuLimitExceeded"
    assert "vCPU limit of 384" in over.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as g_family:
        ec2.run_instances(ImageId=AMI, InstanceType="g6.48xlarge", MinCount=1, MaxCount=1)
    assert g_family.value.response["Error"]["Code"] == "VcpuLimitExceeded"
    with pytest.raises(ClientError) as unknown_ami:
        ec2.run_instances(ImageId="ami-0fffffffffffffff0", InstanceType="p5.48xlarge", MinCount=1, MaxCount=1)
    assert unknown_ami.value.response["Error"]["Code"] == "InvalidAMIID.NotFound"
    west = aws_client(sim, "ec2", "us-west-2")
    with pytest.raises(ClientError) as regional:
        west.run_instances(ImageId=AMI, InstanceType="p5.48xlarge", MinCount=1, MaxCount=1)
    assert regional.value.response["Error"]["Code"] == "InvalidAMIID.NotFound", "AMIs are regional"


def test_ec2_reads_answer_what_a_preflight_asks(sim):
    ec2 = aws_client(sim, "ec2")
    offerings = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["p5.48xlarge"]}]
    )["InstanceTypeOfferings"]
    assert {o["Location"] for o in offerings} == {"us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f"}
    by_filter = ec2.describe_images(Filters=[{"Name": "image-id", "Values": [AMI]}])["Images"]
    assert [(i["ImageId"], i["State"]) for i in by_filter] == [(AMI, "available")]
    west = aws_client(sim, "ec2", "us-west-2")
    assert west.describe_images(Filters=[{"Name": "image-id", "Values": [AMI]}])["Images"] == []
    with pytest.raises(ClientError) as by_id:
        west.describe_images(ImageIds=[AMI])
    assert by_id.value.response["Error"]["Code"] == "InvalidAMIID.NotFound"
    defaults = [{"Name": "default-for-az", "Values": ["true"]}]
    subnets = ec2.describe_subnets(Filters=defaults)["Subnets"]
    assert len(subnets) == 5 and all(s["DefaultForAz"] and s["State"] == "available" for s in subnets)
    assert west.describe_subnets(Filters=defaults)["Subnets"] == []


def test_an_ec2_region_without_a_default_vpc_refuses_launches(start_sim, tmp_path):
    scenario = tmp_path / "no-vpc.toml"
    scenario.write_text('[networks]\naws_default_vpcs = []\n')
    ec2 = aws_client(start_sim(scenario), "ec2")
    with pytest.raises(ClientError) as refused:
        ec2.run_instances(ImageId=AMI, InstanceType="p5.48xlarge", MinCount=1, MaxCount=1)
    assert refused.value.response["Error"]["Code"] == "VPCIdNotSpecified"


def test_compute_engine_has_its_images_machine_types_and_networks_only(sim):
    options = dict(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=sim.url)
    )
    images = compute_v1.ImagesClient(**options)
    assert images.get_from_family(project="ml", family="trainer").family == "trainer"
    with pytest.raises(NotFound):
        images.get_from_family(project="ml", family="other")
    with pytest.raises(NotFound):
        images.get(project="ml", image="trainer-v9")
    machine_types = compute_v1.MachineTypesClient(**options)
    assert machine_types.get(project="p", zone="us-central1-a", machine_type="a3-highgpu-8g").name == "a3-highgpu-8g"
    with pytest.raises(NotFound):
        machine_types.get(project="p", zone="us-central1-a", machine_type="n9-nope")
    networks = compute_v1.NetworksClient(**options)
    assert networks.get(project="p", network="default").auto_create_subnetworks
    with pytest.raises(NotFound):
        networks.get(project="p", network="ml")
    instances = compute_v1.InstancesClient(**options)
    body = compute_v1.Instance(
        name="trainer-1",
        machine_type="zones/us-central1-a/machineTypes/a3-highgpu-8g",
        disks=[boot_disk("projects/ml/global/images/family/missing")],
        network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default")],
    )
    with pytest.raises(NotFound):
        instances.insert(project="p", zone="us-central1-a", instance_resource=body)


def test_compute_engine_projects_report_gpus_all_regions(start_sim, tmp_path):
    scenario = tmp_path / "new-project.toml"
    scenario.write_text('[[quota]]\ncloud = "gcp"\nregion = "global"\nmetric = "GPUS_ALL_REGIONS"\nlimit = 0\n')
    sim = start_sim(scenario)
    options = dict(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=sim.url)
    )
    project = compute_v1.ProjectsClient(**options).get(project="p")
    assert [(q.metric, q.limit, q.usage) for q in project.quotas] == [("GPUS_ALL_REGIONS", 0.0, 0.0)]


def scale_set_in(subnet, image_sku="22_04-lts-gen2"):
    """A flexible scale set of the Ubuntu image the scenario has, joining `subnet`."""
    body = scale_set("Standard_ND96isr_H100_v5", 1)
    profile = body["properties"]["virtualMachineProfile"]
    profile["storageProfile"]["imageReference"] = {
        "publisher": "Canonical",
        "offer": "ubuntu",
        "sku": image_sku,
        "version": "latest",
    }
    profile["networkProfile"]["networkInterfaceConfigurations"] = [
        {
            "name": "nic",
            "properties": {
                "primary": True,
                "ipConfigurations": [{"name": "ip", "properties": {"subnet": {"id": subnet}}}],
            },
        }
    ]
    return body


def test_azure_has_its_skus_images_resource_groups_and_subnets_only(sim):
    compute = compute_of(sim)
    call = {"enforce_https": False}
    skus = list(compute.resource_skus.list(filter="location eq 'eastus'", **call))
    assert "Standard_ND96isr_H100_v5" in {s.name for s in skus}
    assert all(s.locations == ["eastus"] and not s.restrictions for s in skus)
    h100 = {s.name: s for s in skus}["Standard_ND96isr_H100_v5"]
    assert {c.name: c.value for c in h100.capabilities} == {"vCPUs": "96", "GPUs": "8"}
    # What `gpufleet catalog refresh` reads: the subscription's restriction of a size in a location.
    north = [s for s in compute.resource_skus.list(**call) if s.locations == ["northeurope"]]
    assert [(s.name, s.restrictions[0].type, s.restrictions[0].reason_code) for s in north] == [
        ("Standard_ND96isr_H100_v5", "Location", "NotAvailableForSubscription")
    ]
    assert north[0].restrictions[0].restriction_info.locations == ["northeurope"]
    versions = compute.virtual_machine_images.list("eastus", "Canonical", "ubuntu", "22_04-lts-gen2", **call)
    assert [v.name for v in versions] == ["1.0.0"]
    assert compute.virtual_machine_images.list("westus2", "Canonical", "ubuntu", "22_04-lts-gen2", **call) == []
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machine_images.get("eastus", "Canonical", "ubuntu", "22_04-lts-gen2", "9.9.9", **call)

    with pytest.raises(ResourceNotFoundError) as no_group:
        list(compute.virtual_machine_scale_sets.list("other", **call))
    assert no_group.value.error.code == "ResourceGroupNotFound"

    subnets = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/gpu/providers/Microsoft.Network/virtualNetworks/net/subnets/"
    sets = compute.virtual_machine_scale_sets
    with pytest.raises(HttpResponseError) as bad_subnet:
        sets.begin_create_or_update("gpu", "gf-a", scale_set_in(subnets + "gpu"), **call).result()
    assert bad_subnet.value.error.code == "InvalidResourceReference"
    with pytest.raises(HttpResponseError) as bad_image:
        sets.begin_create_or_update("gpu", "gf-b", scale_set_in(subnets + "default", "18_04-lts"), **call).result()
    assert bad_image.value.error.code == "InvalidParameter"
    assert "Sku: 18_04-lts" in bad_image.value.error.message
    created = sets.begin_create_or_update("gpu", "gf-c", scale_set_in(subnets + "default"), **call).result()
    assert created.sku.capacity == 1
