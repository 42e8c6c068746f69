"""What a simulated account refuses of a node's network, identity, key and
boot disk, as the official Python SDKs see it.

boto3, google-cloud-compute and azure-mgmt-compute are the referees of the
`[networks]` keys of a scenario beyond default networks, and of `size_gb`
of an `[[image]]`: EC2 subnets, security groups, key pairs and instance
profiles, root volumes smaller than the AMI's snapshot; Compute Engine
subnetworks, service accounts and boot disks smaller than the image;
Azure managed identities, OS disks smaller than the image, and scale set
bodies missing what ARM requires. Each refusal in its cloud's shape.

Run: cargo build && GPUFLEET_BIN=$PWD/target/debug/gpufleet python3 -m pytest tests/python/test_sim_network.py -q
"""

import pytest
from azure.core.exceptions import HttpResponseError
from botocore.exceptions import ClientError
from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import BadRequest, NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from test_sim_account import scale_set_in
from test_sim_arm import INSTANT, SUBSCRIPTION, compute_of
from test_sim_ec2 import ec2_of
from test_sim_gce import boot_disk

AMI = "ami-0123456789abcdef0"
SUBNET = "subnet-0aaaaaaaaaaaaaaaa"
GROUP = "sg-0aaaaaaaaaaaaaaaa"
IDENTITY = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/gpu/providers/Microsoft.ManagedIdentity/userAssignedIdentities/node"
)

SCENARIO = f"""
[[image]]
cloud = "aws"
region = "us-east-1"
id = "{AMI}"
size_gb = 100

[[image]]
cloud = "gcp"
id = "projects/ml/global/images/family/trainer"
size_gb = 100

[[image]]
cloud = "azure"
region = "eastus"
id = "Canonical:ubuntu:22_04-lts-gen2:latest"
size_gb = 64

[networks]
aws_default_vpcs = []
aws_subnets = [{{ id = "{SUBNET}", zone = "us-east-1b", vpc = "vpc-0aaaaaaaaaaaaaaaa" }}]
aws_security_groups = [{{ id = "{GROUP}", region = "us-east-1", vpc = "vpc-0aaaaaaaaaaaaaaaa" }}]
aws_key_pairs = ["us-east-1/ops"]
aws_instance_profiles = ["gpu-node"]
gcp_networks = ["default", "gpu"]
gcp_subnetworks = ["us-central1/gpu-a"]
gcp_service_accounts = ["node@ml.iam.gserviceaccount.com"]
azure_resource_groups = ["gpu"]
azure_subnets = ["gpu/net/default"]
azure_identities = ["gpu/node"]
"""


@pytest.fixture
def sim(start_sim, tmp_path):
    scenario = tmp_path / "network.toml"
    scenario.write_text(INSTANT + SCENARIO)
    return start_sim(scenario)


def run(ec2, **extra):
    request = dict(
        ImageId=AMI,
        InstanceType="p5.48xlarge",
        MinCount=1,
        MaxCount=1,
        SubnetId=SUBNET,
        SecurityGroupIds=[GROUP],
        KeyName="ops",
        IamInstanceProfile={"Name": "gpu-node"},
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 200}}],
    )
    request.update(extra)
    return ec2.run_instances(**{k: v for k, v in request.items() if v is not None})


def refusal(call):
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    return error["Code"], error["Message"]


def test_run_instances_refuses_what_the_account_lacks_in_ec2s_codes(sim):
    ec2 = ec2_of(sim)
    assert refusal(lambda: run(ec2, SubnetId=None)) == ("VPCIdNotSpecified", "No default VPC for this user")
    code, message = refusal(lambda: run(ec2, SubnetId="subnet-0bbbbbbbbbbbbbbbb"))
    assert (code, message) == ("InvalidSubnetID.NotFound", "The subnet ID 'subnet-0bbbbbbbbbbbbbbbb' does not exist")
    assert refusal(lambda: run(ec2, SecurityGroupIds=["sg-0bbbbbbbbbbbbbbbb"]))[0] == "InvalidGroup.NotFound"
    assert refusal(lambda: run(ec2, KeyName="dev")) == ("InvalidKeyPair.NotFound", "The key pair 'dev' does not exist")
    code, message = refusal(lambda: run(ec2, IamInstanceProfile={"Name": "admin"}))
    assert code == "InvalidParameterValue"
    assert message == "Value (admin) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"
    small = [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 50}}]
    code, message = refusal(lambda: run(ec2, BlockDeviceMappings=small))
    assert code == "InvalidBlockDeviceMapping" and message.startswith("Volume of size 50GB is smaller than snapshot")
    assert message.endswith("expect size >= 100GB")
    # What RunInstances requires, refused as EC2 does.
    with pytest.raises(ClientError) as missing:
        ec2.run_instances(ImageId="", InstanceType="p5.48xlarge", MinCount=1, MaxCount=1)
    assert missing.value.response["Error"]["Code"] == "MissingParameter"
    assert ec2.describe_instances()["Reservations"] == [], "no refused launch started anything"

    launched = run(ec2)["Instances"][0]
    assert launched["Placement"]["AvailabilityZone"] == "us-east-1b", "the subnet decides the zone"


def test_ec2_reads_find_the_accounts_subnets_groups_and_key_pairs(sim):
    ec2 = ec2_of(sim)
    subnets = ec2.describe_subnets(SubnetIds=[SUBNET])["Subnets"]
    assert [(s["SubnetId"], s["AvailabilityZone"], s["VpcId"], s["DefaultForAz"]) for s in subnets] == [
        (SUBNET, "us-east-1b", "vpc-0aaaaaaaaaaaaaaaa", False)
    ]
    assert refusal(lambda: ec2.describe_subnets(SubnetIds=["subnet-0bbbbbbbbbbbbbbbb"]))[0] == "InvalidSubnetID.NotFound"
    groups = ec2.describe_security_groups(GroupIds=[GROUP])["SecurityGroups"]
    assert [(g["GroupId"], g["VpcId"]) for g in groups] == [(GROUP, "vpc-0aaaaaaaaaaaaaaaa")]
    assert refusal(lambda: ec2.describe_security_groups(GroupIds=["sg-0bbbbbbbbbbbbbbbb"]))[0] == "InvalidGroup.NotFound"
    assert [k["KeyName"] for k in ec2.describe_key_pairs(KeyNames=["ops"])["KeyPairs"]] == ["ops"]
    assert refusal(lambda: ec2.describe_key_pairs(KeyNames=["dev"]))[0] == "InvalidKeyPair.NotFound"
    image = ec2.describe_images(ImageIds=[AMI])["Images"][0]
    root = image["BlockDeviceMappings"][0]
    assert (root["DeviceName"], root["Ebs"]["VolumeSize"]) == (image["RootDeviceName"], 100)


def gce_clients(sim):
    options = dict(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=sim.url)
    )
    return compute_v1.InstancesClient(**options), compute_v1.SubnetworksClient(**options)


def bulk(subnetwork="regions/us-central1/subnetworks/gpu-a", account="node@ml.iam.gserviceaccount.com", disk=200):
    properties = compute_v1.InstanceProperties(
        machine_type="a3-highgpu-8g",
        disks=[boot_disk("projects/ml/global/images/family/trainer", disk)],
        network_interfaces=[compute_v1.NetworkInterface(network="global/networks/gpu", subnetwork=subnetwork)],
        service_accounts=[
            compute_v1.ServiceAccount(email=account, scopes=["https://www.googleapis.com/auth/cloud-platform"])
        ],
    )
    return compute_v1.BulkInsertInstanceResource(count=1, name_pattern="gf-####", instance_properties=properties)


def test_compute_engine_refuses_missing_subnetworks_service_accounts_and_small_disks(sim):
    instances, subnetworks = gce_clients(sim)
    insert = dict(project="ml", zone="us-central1-a")
    with pytest.raises(NotFound) as no_subnetwork:
        instances.bulk_insert(**insert, bulk_insert_instance_resource_resource=bulk(
            subnetwork="regions/us-central1/subnetworks/gpu-b"))
    assert "projects/ml/regions/us-central1/subnetworks/gpu-b" in no_subnetwork.value.message
    with pytest.raises(BadRequest) as no_account:
        instances.bulk_insert(**insert, bulk_insert_instance_resource_resource=bulk(account="x@ml.iam.gserviceaccount.com"))
    assert no_account.value.errors[0]["reason"] == "invalid"
    with pytest.raises(BadRequest) as small:
        instances.bulk_insert(**insert, bulk_insert_instance_resource_resource=bulk(disk=50))
    assert "Requested disk size cannot be smaller than the image size (100 GB)" in small.value.message
    bare = compute_v1.BulkInsertInstanceResource(
        count=1, name_pattern="gf-####", instance_properties=compute_v1.InstanceProperties(machine_type="a3-highgpu-8g")
    )
    with pytest.raises(BadRequest) as required:
        instances.bulk_insert(**insert, bulk_insert_instance_resource_resource=bare)
    assert required.value.errors[0]["reason"] == "required"
    assert "resource.instanceProperties.disks" in required.value.message

    assert subnetworks.get(project="ml", region="us-central1", subnetwork="gpu-a").name == "gpu-a"
    with pytest.raises(NotFound):
        subnetworks.get(project="ml", region="us-central1", subnetwork="gpu-b")
    operation = instances.bulk_insert(**insert, bulk_insert_instance_resource_resource=bulk())
    assert operation.error_code in (None, 0) and not operation.error_message


def test_azure_refuses_missing_identities_small_disks_and_incomplete_bodies(sim):
    compute = compute_of(sim)
    call = {"enforce_https": False}
    subnet = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/gpu/providers/Microsoft.Network/virtualNetworks/net/subnets/default"

    def body(identity=IDENTITY, disk=100):
        scale_set = scale_set_in(subnet)
        scale_set["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}}
        scale_set["properties"]["virtualMachineProfile"]["storageProfile"]["osDisk"] = {
            "createOption": "FromImage",
            "diskSizeGB": disk,
        }
        return scale_set

    def refused(scale_set):
        with pytest.raises(HttpResponseError) as error:
            compute.virtual_machine_scale_sets.begin_create_or_update("gpu", "gf", scale_set, **call).result()
        return error.value

    no_identity = refused(body(identity=IDENTITY.replace("/node", "/other")))
    assert (no_identity.status_code, no_identity.error.code) == (400, "FailedIdentityOperation")
    small = refused(body(disk=30))
    assert (small.status_code, small.error.code, small.error.target) == (409, "OperationNotAllowed", "osDisk.diskSizeGB")
    assert "is smaller than the size of the corresponding disk in the VM image: 64 GB" in small.error.message
    no_domains = body()
    del no_domains["properties"]["platformFaultDomainCount"]
    missing = refused(no_domains)
    assert (missing.status_code, missing.error.code, missing.error.target) == (
        400,
        "InvalidParameter",
        "platformFaultDomainCount",
    )
    no_nics = body()
    del no_nics["properties"]["virtualMachineProfile"]["networkProfile"]["networkInterfaceConfigurations"]
    assert refused(no_nics).error.target == "networkProfile.networkInterfaceConfigurations"

    created = compute.virtual_machine_scale_sets.begin_create_or_update("gpu", "gf", body(), **call).result()
    assert created.virtual_machine_profile.storage_profile.os_disk.disk_size_gb == 100
