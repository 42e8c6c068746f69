"""The simulator's EC2 API as boto3 sees it.

boto3 is the independent referee: it is not the SDK gpufleet uses, so if it
can launch, page, terminate and read capacity errors against
`gpufleet sim serve`, the simulator speaks EC2 and not just "what our Rust
client happens to accept".

Run: cargo build && GPUFLEET_BIN=$PWD/target/debug/gpufleet python3 -m pytest tests/python/test_sim_ec2.py -q
"""

from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
SOLD_OUT = REPO / "plans" / "scenarios" / "us-east-1-h100-soldout.toml"
SIM_START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def aws_client(sim, service, region="us-east-1"):
    # Retries off: EC2 sends capacity errors as HTTP 500, which botocore
    # would otherwise retry with real-time backoff.
    return boto3.client(
        service,
        endpoint_url=sim.url,
        region_name=region,
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


def ec2_of(sim, region="us-east-1"):
    return aws_client(sim, "ec2", region)


def tags_of(instance):
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def launch(ec2, count, tags=None, **extra):
    kwargs = dict(ImageId="ami-12345678", InstanceType="p5.48xlarge", MinCount=count, MaxCount=count, **extra)
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    return ec2.run_instances(**kwargs)


def test_launch_with_tags(start_sim):
    sim = start_sim()
    ec2 = ec2_of(sim)
    reservation = launch(ec2, 2, {"gpufleet-plan": "training", "note": "a&b <c>"}, UserData="echo hi")
    instances = reservation["Instances"]
    assert len(instances) == 2
    assert reservation["ReservationId"].startswith("r-")
    # Pending for the default lifecycle's 15 s of simulated time, then running.
    sim.admin("/_sim/advance", {"by": "14s"})
    described = ec2.describe_instances(InstanceIds=[i["InstanceId"] for i in instances])["Reservations"][0]
    assert {i["State"]["Name"] for i in described["Instances"]} == {"pending"}
    sim.admin("/_sim/advance", {"by": "1s"})
    waiter = ec2.get_waiter("instance_running")
    waiter.wait(InstanceIds=[i["InstanceId"] for i in instances], WaiterConfig={"Delay": 0})
    for instance in instances:
        assert instance["InstanceId"].startswith("i-") and len(instance["InstanceId"]) == 19
        assert instance["State"] == {"Code": 0, "Name": "pending"}
        assert instance["InstanceType"] == "p5.48xlarge"
        assert instance["Placement"]["AvailabilityZone"].startswith("us-east-1")
        assert instance["LaunchTime"] == SIM_START
        assert tags_of(instance) == {"gpufleet-plan": "training", "note": "a&b <c>"}
    assert len({i["Placement"]["AvailabilityZone"] for i in instances}) == 1, "one launch, one zone"


def test_paged_describe_with_tag_filters(start_sim):
    ec2 = ec2_of(start_sim())
    for _ in range(4):
        launch(ec2, 3, {"gpufleet-plan": "training", "gpufleet-fleet": "a"})
    launch(ec2, 2, {"gpufleet-plan": "other"})

    pages = list(
        ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": "tag:gpufleet-plan", "Values": ["training"]},
                {"Name": "tag-key", "Values": ["gpufleet-fleet"]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ],
            PaginationConfig={"PageSize": 5},
        )
    )
    # The default world's pages may be short or empty and still carry a
    # NextToken; the paginator follows it to the end.
    per_page = [sum(len(r["Instances"]) for r in page["Reservations"]) for page in pages]
    assert all(n <= 5 for n in per_page) and (0 in per_page or len(per_page) > 3), per_page
    ids = [i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]]
    assert len(ids) == len(set(ids)) == 12

    wildcard = ec2.describe_instances(Filters=[{"Name": "tag:gpufleet-plan", "Values": ["train*", "oth?r"]}])
    assert sum(len(r["Instances"]) for r in wildcard["Reservations"]) == 14

    with pytest.raises(ClientError) as refused:
        ec2.describe_instances(InstanceIds=[ids[0]], MaxResults=5)
    assert refused.value.response["Error"]["Code"] == "InvalidParameterCombination"


def test_terminate(start_sim):
    sim = start_sim()
    ec2 = ec2_of(sim)
    ids = [i["InstanceId"] for i in launch(ec2, 3)["Instances"]]
    sim.admin("/_sim/advance", {"by": "15s"})
    result = ec2.terminate_instances(InstanceIds=ids[:2])
    changes = {c["InstanceId"]: c for c in result["TerminatingInstances"]}
    assert set(changes) == set(ids[:2])
    assert all(c["PreviousState"]["Name"] == "running" for c in changes.values())
    assert all(c["CurrentState"] == {"Code": 32, "Name": "shutting-down"} for c in changes.values())

    def states():
        described = ec2.describe_instances(InstanceIds=ids)
        return {i["InstanceId"]: i["State"]["Name"] for r in described["Reservations"] for i in r["Instances"]}

    assert states() == {ids[0]: "shutting-down", ids[1]: "shutting-down", ids[2]: "running"}
    # Shutting down for the default lifecycle's 30 s, with time alone.
    sim.admin("/_sim/advance", {"by": "30s"})
    assert states() == {ids[0]: "terminated", ids[1]: "terminated", ids[2]: "running"}
    ec2.get_waiter("instance_terminated").wait(InstanceIds=ids[:2], WaiterConfig={"Delay": 0})

    with pytest.raises(ClientError) as unknown:
        ec2.terminate_instances(InstanceIds=[ids[2], "i-0123456789abcdef0"])
    assert unknown.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_capacity_error_until_stock_comes_back(start_sim):
    sim = start_sim(SOLD_OUT)
    ec2 = ec2_of(sim)
    with pytest.raises(ClientError) as refused:
        launch(ec2, 1)
    assert refused.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500

    assert sim.admin("/_sim/advance", {"by": "20m"}) == {"now": "2026-01-01T00:20:00Z"}
    # Every zone now has 8: MinCount 1, MaxCount 20 launches 8, in one zone.
    reservation = ec2.run_instances(ImageId="ami-1", InstanceType="p5.48xlarge", MinCount=1, MaxCount=20)
    assert len(reservation["Instances"]) == 8
    assert len({i["Placement"]["AvailabilityZone"] for i in reservation["Instances"]}) == 1
    # The other zones still hold 8 each, but no one zone holds 9.
    with pytest.raises(ClientError) as too_many:
        ec2.run_instances(ImageId="ami-1", InstanceType="p5.48xlarge", MinCount=9, MaxCount=9)
    assert too_many.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert sim.admin("/_sim/counters")["aws"]["RunInstances"] == 3


@pytest.mark.parametrize(
    "region",
    [
        "eu-west-1",  # in the catalog, which sells p5.48xlarge elsewhere but not there
        "ap-south-2",  # not in the catalog at all
    ],
)
def test_type_not_offered_in_region_is_unsupported(start_sim, region):
    ec2 = ec2_of(start_sim(), region=region)
    with pytest.raises(ClientError) as refused:
        launch(ec2, 1)
    assert refused.value.response["Error"]["Code"] == "Unsupported"
    assert region in refused.value.response["Error"]["Message"]


def test_a_type_sold_nowhere_is_an_invalid_parameter_not_a_shortage(start_sim):
    ec2 = ec2_of(start_sim())
    with pytest.raises(ClientError) as refused:
        ec2.run_instances(ImageId="ami-12345678", InstanceType="p9.imaginary", MinCount=1, MaxCount=1)
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert refused.value.response["Error"]["Message"] == "Invalid value 'p9.imaginary' for InstanceType."


def test_dry_run_says_it_would_succeed_and_does_nothing(start_sim):
    sim = start_sim()
    ec2 = ec2_of(sim)
    with pytest.raises(ClientError) as dry:
        launch(ec2, 2, DryRun=True)
    assert dry.value.response["Error"]["Code"] == "DryRunOperation"
    assert dry.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert ec2.describe_instances()["Reservations"] == []

    launched = launch(ec2, 1)["Instances"][0]["InstanceId"]
    with pytest.raises(ClientError) as dry:
        ec2.terminate_instances(InstanceIds=[launched], DryRun=True)
    assert dry.value.response["Error"]["Code"] == "DryRunOperation"
    state = ec2.describe_instances(InstanceIds=[launched])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "pending"


def test_idempotent_client_token(start_sim):
    sim = start_sim()
    ec2 = ec2_of(sim)
    first = launch(ec2, 2, ClientToken="gpufleet-run-1-fleet-a")
    again = launch(ec2, 2, ClientToken="gpufleet-run-1-fleet-a")
    assert again["ReservationId"] == first["ReservationId"]
    assert [i["InstanceId"] for i in again["Instances"]] == [i["InstanceId"] for i in first["Instances"]]

    with pytest.raises(ClientError) as mismatch:
        launch(ec2, 3, ClientToken="gpufleet-run-1-fleet-a")
    assert mismatch.value.response["Error"]["Code"] == "IdempotentParameterMismatch"
    assert len(sim.admin("/_sim/world")["instances"]) == 2


def test_world_file_survives_sigkill(start_sim, tmp_path):
    world = tmp_path / "world.json"
    first = start_sim(SOLD_OUT, world)
    first.admin("/_sim/advance", {"by": "20m"})
    ids = [i["InstanceId"] for i in launch(ec2_of(first), 2, {"gpufleet-plan": "training"})["Instances"]]
    first.process.kill()
    first.process.wait(timeout=10)
    assert oct(world.stat().st_mode & 0o777) == "0o600"

    second = start_sim(SOLD_OUT, world)
    described = ec2_of(second).describe_instances(Filters=[{"Name": "tag:gpufleet-plan", "Values": ["training"]}])
    assert [i["InstanceId"] for r in described["Reservations"] for i in r["Instances"]] == ids
    assert second.admin("/_sim/time") == {"now": "2026-01-01T00:20:00Z"}


# The per-resource reads: what a tool that refreshes each instance on its own
# asks for every instance (the fleet benchmark's baseline).


def test_instance_attributes_the_terraform_provider_reads(start_sim):
    ec2 = ec2_of(start_sim())
    with_data = launch(ec2, 1, UserData="echo hi")["Instances"][0]["InstanceId"]
    without = launch(ec2, 1)["Instances"][0]["InstanceId"]
    attribute = lambda instance_id, name: ec2.describe_instance_attribute(InstanceId=instance_id, Attribute=name)

    shutdown = attribute(with_data, "instanceInitiatedShutdownBehavior")
    assert shutdown["InstanceId"] == with_data
    assert shutdown["InstanceInitiatedShutdownBehavior"] == {"Value": "stop"}
    assert attribute(with_data, "disableApiTermination")["DisableApiTermination"] == {"Value": False}
    assert attribute(with_data, "disableApiStop")["DisableApiStop"] == {"Value": False}
    # boto3 base64-encodes user data on the way in; the attribute gives it back encoded.
    assert attribute(with_data, "userData")["UserData"] == {"Value": "ZWNobyBoaQ=="}
    assert attribute(without, "userData")["UserData"] == {}
    assert attribute(with_data, "instanceType")["InstanceType"] == {"Value": "p5.48xlarge"}
    mapping = attribute(with_data, "blockDeviceMapping")["BlockDeviceMappings"]
    assert [(m["DeviceName"], m["Ebs"]["Status"], m["Ebs"]["DeleteOnTermination"]) for m in mapping] == [
        ("/dev/sda1", "attached", True)
    ]

    for instance_id, name, code in [
        ("i-0123456789abcdef0", "userData", "InvalidInstanceID.NotFound"),
        ("i-zz", "userData", "InvalidInstanceID.Malformed"),
        (with_data, "enaSupport", "InvalidParameterValue"),
    ]:
        with pytest.raises(ClientError) as refused:
            attribute(instance_id, name)
        assert refused.value.response["Error"]["Code"] == code, (instance_id, name)


def test_instance_types_the_region_sells_in_pages(start_sim):
    ec2 = ec2_of(start_sim())
    (p5,) = ec2.describe_instance_types(InstanceTypes=["p5.48xlarge"])["InstanceTypes"]
    assert p5["InstanceType"] == "p5.48xlarge"
    assert p5["VCpuInfo"]["DefaultVCpus"] == 192
    assert p5["GpuInfo"]["Gpus"] == [{"Name": "H100", "Manufacturer": "NVIDIA", "Count": 8, "MemoryInfo": {"SizeInMiB": 81920}}]
    assert p5["GpuInfo"]["TotalGpuMemoryInMiB"] == 8 * 81920
    assert p5["BurstablePerformanceSupported"] is False
    assert p5["ProcessorInfo"]["SupportedArchitectures"] == ["x86_64"]

    pages = list(ec2.get_paginator("describe_instance_types").paginate(PaginationConfig={"PageSize": 5}))
    names = [t["InstanceType"] for page in pages for t in page["InstanceTypes"]]
    assert len(names) == len(set(names)) > 5 and "p5.48xlarge" in names
    assert [len(page["InstanceTypes"]) for page in pages][:-1] == [5] * (len(pages) - 1)
    filtered = ec2.describe_instance_types(Filters=[{"Name": "instance-type", "Values": ["g*"]}])["InstanceTypes"]
    assert {t["InstanceType"] for t in filtered} == {n for n in names if n.startswith("g")}

    with pytest.raises(ClientError) as not_here:
        ec2_of(start_sim(), region="eu-west-1").describe_instance_types(InstanceTypes=["p5.48xlarge"])
    assert not_here.value.response["Error"]["Code"] == "InvalidInstanceType"
    with pytest.raises(ClientError) as too_big:
        ec2.describe_instance_types(MaxResults=101)
    assert too_big.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_tags_by_resource_id_in_pages(start_sim):
    ec2 = ec2_of(start_sim())
    first, second = (
        i["InstanceId"] for i in launch(ec2, 2, {"gpufleet-plan": "training", "gpufleet-fleet": "a", "team": "ml"})["Instances"]
    )
    mine = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [first]}])["Tags"]
    assert mine == [
        {"ResourceId": first, "ResourceType": "instance", "Key": k, "Value": v}
        for k, v in [("gpufleet-fleet", "a"), ("gpufleet-plan", "training"), ("team", "ml")]
    ]
    pages = list(ec2.get_paginator("describe_tags").paginate(PaginationConfig={"PageSize": 5}))
    assert [len(page["Tags"]) for page in pages] == [5, 1]
    assert {t["ResourceId"] for page in pages for t in page["Tags"]} == {first, second}
    by_key = ec2.describe_tags(Filters=[{"Name": "key", "Values": ["team"]}, {"Name": "resource-type", "Values": ["instance"]}])
    assert sorted(t["ResourceId"] for t in by_key["Tags"]) == sorted([first, second])
    with pytest.raises(ClientError) as unknown:
        ec2.describe_tags(Filters=[{"Name": "colour", "Values": ["red"]}])
    assert unknown.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_root_volumes_are_attached_and_stable_across_restarts(start_sim, tmp_path):
    world = tmp_path / "world.json"
    first = start_sim(None, world)
    ec2 = ec2_of(first)
    ids = [i["InstanceId"] for i in launch(ec2, 3)["Instances"]]
    described = ec2.describe_instances(InstanceIds=[ids[0]])["Reservations"][0]["Instances"][0]
    (root,) = described["BlockDeviceMappings"]
    volume_id = root["Ebs"]["VolumeId"]

    (volume,) = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [ids[0]]}])["Volumes"]
    assert volume["VolumeId"] == volume_id and volume_id.startswith("vol-0") and len(volume_id) == 21
    assert volume["Attachments"] == [
        {
            "VolumeId": volume_id,
            "InstanceId": ids[0],
            "Device": "/dev/sda1",
            "State": "attached",
            "AttachTime": SIM_START,
            "DeleteOnTermination": True,
        }
    ]
    assert (volume["State"], volume["VolumeType"], volume["Size"]) == ("in-use", "gp3", 100)
    assert volume["AvailabilityZone"] == described["Placement"]["AvailabilityZone"]
    assert volume["CreateTime"] == SIM_START
    assert ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"] == [volume]
    pages = list(ec2.get_paginator("describe_volumes").paginate(PaginationConfig={"PageSize": 5}))
    assert sum(len(p["Volumes"]) for p in pages) == 3

    ec2.terminate_instances(InstanceIds=[ids[0]])
    with pytest.raises(ClientError) as deleted:
        ec2.describe_volumes(VolumeIds=[volume_id])
    assert deleted.value.response["Error"]["Code"] == "InvalidVolume.NotFound"
    first.stop()

    again = ec2_of(start_sim(None, world))
    volumes = again.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": ids[1:]}])["Volumes"]
    instances = again.describe_instances(InstanceIds=ids[1:])["Reservations"][0]["Instances"]
    assert sorted(v["VolumeId"] for v in volumes) == sorted(i["BlockDeviceMappings"][0]["Ebs"]["VolumeId"] for i in instances)


def test_the_default_vpc_of_each_region(start_sim):
    sim = start_sim()
    east, west = ec2_of(sim), ec2_of(sim, region="us-west-2")
    instance = launch(east, 1)["Instances"][0]
    vpc_id = instance["VpcId"]
    (vpc,) = east.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
    assert vpc["VpcId"] == vpc_id and vpc["IsDefault"] is True and vpc["State"] == "available"
    assert vpc["CidrBlock"] == "172.31.0.0/16"
    assert vpc["CidrBlockAssociationSet"][0]["CidrBlockState"] == {"State": "associated"}
    assert vpc["OwnerId"] == "123456789012"
    assert east.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Vpcs"] == [vpc]
    assert east.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["false"]}])["Vpcs"] == []
    (other,) = west.describe_vpcs()["Vpcs"]
    assert other["VpcId"] != vpc_id
    with pytest.raises(ClientError) as unknown:
        west.describe_vpcs(VpcIds=[vpc_id])
    assert unknown.value.response["Error"]["Code"] == "InvalidVpcID.NotFound"


def test_credit_specifications_of_gpu_instances_are_standard(start_sim):
    ec2 = ec2_of(start_sim())
    ids = [i["InstanceId"] for i in launch(ec2, 2)["Instances"]]
    named = ec2.describe_instance_credit_specifications(InstanceIds=ids)["InstanceCreditSpecifications"]
    assert named == [{"InstanceId": i, "CpuCredits": "standard"} for i in ids]
    # Unnamed, EC2 lists the instances running "unlimited": GPU types never burst.
    assert ec2.describe_instance_credit_specifications()["InstanceCreditSpecifications"] == []
    with pytest.raises(ClientError) as unknown:
        ec2.describe_instance_credit_specifications(InstanceIds=["i-0123456789abcdef0"])
    assert unknown.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"


def test_unknown_actions_are_still_refused(start_sim):
    sim = start_sim()
    with pytest.raises(ClientError) as refused:
        ec2_of(sim).describe_addresses()
    assert refused.value.response["Error"]["Code"] == "InvalidAction"
