"""One plan with fleets on AWS, Google Cloud and Azure, applied by gpufleet
through `gpufleet sim serve`, checked by the three official Python SDKs.

What boto3, google-cloud-compute and azure-mgmt-compute see must be exactly
what `gpufleet state list --json` says, after apply and after destroy.
"""

import json
import os
import subprocess

import boto3
import pytest
from azure.core.credentials import AccessToken
from azure.mgmt.compute import ComputeManagementClient
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from conftest import gpufleet_bin

PLAN = "three-clouds"
PROJECT = "ml-training-prod"
SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
GROUP = "gpu-fleets"

PLAN_TEXT = f"""
name = "{PLAN}"

[providers.aws]
regions = ["us-east-1"]

[providers.gcp]
project = "{PROJECT}"
zones = ["us-central1-a"]

[providers.azure]
subscription = "{SUBSCRIPTION}"
resource_group = "{GROUP}"
regions = ["eastus"]
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpufleetReferee referee@test"

[fleets.trainers]
gpu = "H100"
gpus_per_node = 8
nodes = 3
prefer = ["aws"]
image = {{ aws = "ami-0123456789abcdef0" }}

[fleets.finetune]
gpu = "H100"
gpus_per_node = 8
nodes = 2
prefer = ["gcp"]
image = {{ gcp = "projects/ml-images/global/images/family/trainer" }}

[fleets.serving]
gpu = "H100"
gpus_per_node = 8
nodes = 2
prefer = ["azure"]
image = {{ azure = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest" }}
"""

class DummyCredential:
    """What azure-core asks of a credential; the simulator checks no token."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("dummy", 32503680000)


@pytest.fixture
def sim(start_sim):
    return start_sim().url


def gpufleet(args, expect):
    env = dict(os.environ, NO_COLOR="1")
    env.pop("GPUFLEET_SIM_URL", None)
    proc = subprocess.run(
        [gpufleet_bin(), *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300
    )
    assert proc.returncode == expect, f"gpufleet {args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def seen_by_boto3(url):
    ec2 = boto3.client(
        "ec2", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag:gpufleet-plan", "Values": [PLAN]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return {(i["InstanceId"], i["Placement"]["AvailabilityZone"]) for p in pages for r in p["Reservations"] for i in r["Instances"]}


def seen_by_google_cloud_compute(url):
    instances = compute_v1.InstancesClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=url)
    )
    request = compute_v1.AggregatedListInstancesRequest(project=PROJECT, filter=f'labels.gpufleet-plan = "{PLAN}"')
    return {
        (i.name, scope.removeprefix("zones/"))
        for scope, scoped in instances.aggregated_list(request=request)
        for i in scoped.instances
    }


def seen_by_azure_mgmt_compute(url):
    compute = ComputeManagementClient(
        credential=DummyCredential(),
        subscription_id=SUBSCRIPTION,
        base_url=url,
        credential_scopes=[url + "/.default"],
        polling_interval=0,
    )
    seen = set()
    for scale_set in compute.virtual_machine_scale_sets.list(GROUP, enforce_https=False):
        if (scale_set.tags or {}).get("gpufleet-plan") != PLAN:
            continue
        vms = compute.virtual_machines.list(
            GROUP, filter=f"'virtualMachineScaleSet/id' eq '{scale_set.id}'", enforce_https=False
        )
        seen |= {(vm.name, vm.location) for vm in vms}
    return seen


def listed_by_gpufleet(state):
    listed = json.loads(gpufleet(["state", "list", "--json", "--state-dir", state], 0).stdout)
    by_cloud = {"aws": set(), "gcp": set(), "azure": set()}
    for i in listed:
        by_cloud[i["cloud"]].add((i["id"], i["zone"] or i["region"]))
    return by_cloud, listed


def test_three_cloud_plan_applies_replans_and_destroys(sim, tmp_path):
    plan = tmp_path / "three.toml"
    plan.write_text(PLAN_TEXT)
    state = str(tmp_path / "state")
    common = [str(plan), "--sim-url", sim, "--state-dir", state]

    gpufleet(["apply", *common, "--auto-approve"], 0)
    gpufleet(["plan", *common, "--detailed-exitcode"], 0)

    by_cloud, listed = listed_by_gpufleet(state)
    fleets = {(i["fleet"], i["cloud"]) for i in listed}
    assert fleets == {("trainers", "aws"), ("finetune", "gcp"), ("serving", "azure")}, listed
    assert len(by_cloud["aws"]) == 3 and len(by_cloud["gcp"]) == 2 and len(by_cloud["azure"]) == 2
    assert seen_by_boto3(sim) == by_cloud["aws"]
    assert seen_by_google_cloud_compute(sim) == by_cloud["gcp"]
    assert seen_by_azure_mgmt_compute(sim) == by_cloud["azure"]

    gpufleet(["destroy", *common, "--auto-approve"], 0)
    by_cloud, listed = listed_by_gpufleet(state)
    assert listed == []
    assert seen_by_boto3(sim) == set()
    assert seen_by_google_cloud_compute(sim) == set()
    assert seen_by_azure_mgmt_compute(sim) == set()
