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
    ec2 = ec2_of(start_sim())
    reservation = launch(ec2, 2, {"gpufleet-plan": "training", "note": "a&b <c>"}, UserData="echo hi")
    instances = reservation["Instances"]
    assert len(instances) == 2
    assert reservation["ReservationId"].startswith("r-")
    for instance in instances:
        assert instance["InstanceId"].startswith("i-") and len(instance["InstanceId"]) == 19
        assert instance["State"] == {"Code": 16, "Name": "running"}
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
    per_page = [sum(len(r["Instances"]) for r in page["Reservations"]) for page in pages]
    assert per_page == [5, 5, 2]
    ids = [i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]]
    assert len(set(ids)) == 12

    wildcard = ec2.describe_instances(Filters=[{"Name": "tag:gpufleet-plan", "Values": ["train*", "oth?r"]}])
    assert sum(len(r["Instances"]) for r in wildcard["Reservations"]) == 14

    with pytest.raises(ClientError) as refused:
        ec2.describe_instances(InstanceIds=[ids[0]], MaxResults=5)
    assert refused.value.response["Error"]["Code"] == "InvalidParameterCombination"


def test_terminate(start_sim):
    ec2 = ec2_of(start_sim())
    ids = [i["InstanceId"] for i in launch(ec2, 3)["Instances"]]
    result = ec2.terminate_instances(InstanceIds=ids[:2])
    changes = {c["InstanceId"]: c for c in result["TerminatingInstances"]}
    assert set(changes) == set(ids[:2])
    assert all(c["PreviousState"]["Name"] == "running" for c in changes.values())
    assert all(c["CurrentState"] == {"Code": 48, "Name": "terminated"} for c in changes.values())

    described = ec2.describe_instances(InstanceIds=ids)
    states = {i["InstanceId"]: i["State"]["Name"] for r in described["Reservations"] for i in r["Instances"]}
    assert states == {ids[0]: "terminated", ids[1]: "terminated", ids[2]: "running"}

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
    assert state == "running"


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
