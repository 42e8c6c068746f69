"""gpufleet's AWS provider against moto's EC2 server, checked through boto3.

moto is an independent implementation of the EC2 API: if gpufleet's
requests and its reading of responses are right, moto and boto3 agree with
what gpufleet reports.

moto launches exactly MinCount instances where EC2 launches up to MaxCount,
so the fleet here is `pack` with min_nodes = nodes: gpufleet then asks for
MinCount = MaxCount = 3, which both implementations fill the same way.
"""

import json
import os
import subprocess

import boto3
import pytest
from moto.server import ThreadedMotoServer

BIN = os.environ.get("GPUFLEET_BIN")
PLAN_NAME = "moto-demo"


@pytest.fixture
def moto_url():
    assert BIN, "GPUFLEET_BIN must point at the gpufleet binary"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def env():
    env = dict(os.environ)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2"):
        env.pop(key, None)
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        NO_COLOR="1",
    )
    return env


def gpufleet(args, env, expect):
    proc = subprocess.run(
        [BIN, *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300
    )
    assert proc.returncode == expect, f"gpufleet {args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def live_instances(moto_url, region):
    ec2 = boto3.client(
        "ec2",
        endpoint_url=moto_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag:gpufleet-plan", "Values": [PLAN_NAME]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return {i["InstanceId"]: i for page in pages for r in page["Reservations"] for i in r["Instances"]}


def test_plan_apply_replan_destroy_against_moto(moto_url, env, tmp_path):
    plan = tmp_path / "moto.toml"
    plan.write_text(
        f"""
name = "{PLAN_NAME}"

[providers.aws]
regions = ["us-east-1", "us-west-2"]
endpoint = "{moto_url}"

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 3
placement = "pack"
prefer = ["aws:us-west-2"]
image = {{ aws = "ami-0123456789abcdef0" }}
labels = {{ team = "research" }}
"""
    )
    state = str(tmp_path / "state")
    common = [str(plan), "--state-dir", state]

    planned = json.loads(gpufleet(["plan", *common, "--json"], env, 0).stdout)
    assert planned["summary"] == {"create": 3, "delete": 0}
    assert planned["actions"][0]["region"] == "us-west-2"
    assert planned["actions"][0]["min_count"] == 3

    gpufleet(["apply", *common, "--auto-approve"], env, 0)
    gpufleet(["plan", *common, "--detailed-exitcode"], env, 0)

    listed = json.loads(gpufleet(["state", "list", "--json", "--state-dir", state], env, 0).stdout)
    seen = live_instances(moto_url, "us-west-2")
    assert set(seen) == {i["id"] for i in listed}
    assert len(seen) == 3
    assert live_instances(moto_url, "us-east-1") == {}
    for instance in seen.values():
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["gpufleet-plan"] == PLAN_NAME
        assert tags["gpufleet-fleet"] == "trainers"
        assert tags["team"] == "research"
        assert tags["gpufleet-run"]
        assert instance["InstanceType"] == "p5.48xlarge"
        assert instance["ImageId"] == "ami-0123456789abcdef0"

    gpufleet(["destroy", *common, "--auto-approve"], env, 0)
    assert live_instances(moto_url, "us-west-2") == {}
    assert json.loads(gpufleet(["state", "list", "--json", "--state-dir", state], env, 0).stdout) == []
