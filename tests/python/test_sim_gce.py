"""The simulator's Compute Engine API as the official Python SDK sees it.

google-cloud-compute (REST transport, anonymous credentials) is the
independent referee: it is not the crate gpufleet uses, so if it can insert,
bulk-insert, list by label, wait on operations, delete, and read a stock-out
code from a finished operation against `gpufleet sim serve`, the simulator
speaks Compute Engine and not just "what our Rust client happens to accept".

Run: cargo build && GPUFLEET_BIN=$PWD/target/debug/gpufleet python3 -m pytest tests/python/test_sim_gce.py -q
"""

import pytest
from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import BadRequest, Conflict, NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

# The process fixture is the EC2 referee's: one `gpufleet sim serve` per test.

PROJECT = "referee"
ZONE = "us-central1-a"
SCENARIO = """
[[offering]]
cloud = "gcp"
region = "us-central1"
zone = "us-central1-a"
instance_type = "a3-highgpu-8g"
capacity = 4

[[quota]]
cloud = "gcp"
region = "us-central1"
metric = "NVIDIA_H100_GPUS"
limit = 64
"""


@pytest.fixture
def gce(start_sim, tmp_path):
    scenario = tmp_path / "gce.toml"
    scenario.write_text(SCENARIO)
    sim = start_sim(scenario)
    options = dict(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=sim.url)
    )
    return (
        sim,
        compute_v1.InstancesClient(**options),
        compute_v1.ZoneOperationsClient(**options),
        compute_v1.RegionsClient(**options),
    )


def boot_disk(image="projects/debian-cloud/global/images/family/debian-12", size_gb=None):
    """The boot disk every create needs: one made from an image."""
    params = compute_v1.AttachedDiskInitializeParams(source_image=image)
    if size_gb is not None:
        params.disk_size_gb = size_gb
    return compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=params)


def properties(labels):
    return compute_v1.InstanceProperties(
        machine_type="a3-highgpu-8g",
        labels=labels,
        scheduling=compute_v1.Scheduling(on_host_maintenance="TERMINATE"),
        metadata=compute_v1.Metadata(items=[compute_v1.Items(key="startup-script", value="echo hi")]),
        disks=[boot_disk()],
        network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default")],
    )


def bulk_insert(instances, operations, count, min_count, pattern, labels):
    resource = compute_v1.BulkInsertInstanceResource(
        count=count, min_count=min_count, name_pattern=pattern, instance_properties=properties(labels)
    )
    extended = instances.bulk_insert(project=PROJECT, zone=ZONE, bulk_insert_instance_resource_resource=resource)
    assert extended.status == compute_v1.Operation.Status.RUNNING
    return operations.wait(project=PROJECT, zone=ZONE, operation=extended.name)


def instance_named(name, labels):
    return compute_v1.Instance(
        name=name,
        machine_type=f"zones/{ZONE}/machineTypes/a3-highgpu-8g",
        labels=labels,
        disks=[boot_disk()],
        network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default")],
    )


def test_create_list_by_label_and_delete(gce):
    sim, instances, operations, _ = gce
    instance = instance_named("referee-1", {"gpufleet-plan": "demo", "team": "ml"})
    request = compute_v1.InsertInstanceRequest(
        project=PROJECT, zone=ZONE, instance_resource=instance, request_id="4a7e1e4e-0000-4000-8000-000000000001"
    )
    extended = instances.insert(request=request)
    # Waited explicitly: ExtendedOperation.result() polls through a
    # ZoneOperationsClient of its own that ignores client_options, so it
    # would ask compute.googleapis.com instead of the simulator.
    assert extended.status == compute_v1.Operation.Status.RUNNING
    assert instances.get(project=PROJECT, zone=ZONE, instance="referee-1").status == "PROVISIONING"
    # The wait holds its answer until the operation is done: simulated time moves on.
    done = operations.wait(project=PROJECT, zone=ZONE, operation=extended.name)
    assert done.status == compute_v1.Operation.Status.DONE and not done.error.errors
    assert done.target_id > 0 and done.client_operation_id == request.request_id

    got = instances.get(project=PROJECT, zone=ZONE, instance="referee-1")
    assert got.status == "RUNNING"
    assert got.id == done.target_id
    assert got.labels["team"] == "ml"
    assert got.zone.endswith(f"/zones/{ZONE}")
    assert got.creation_timestamp.startswith("2026-01-01T00:00:00")
    # The same requestId returns the same operation and creates nothing.
    assert instances.insert(request=request).name == extended.name

    done = bulk_insert(instances, operations, 2, 2, "web-####", {"gpufleet-plan": "demo", "team": "web"})
    assert done.status == compute_v1.Operation.Status.DONE
    assert not done.error.errors

    ml = list(instances.list(request=compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, filter="labels.team = ml")))
    assert [i.name for i in ml] == ["referee-1"]
    # Paging: the pager follows nextPageToken with one item per page.
    pager = instances.list(request=compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, max_results=1))
    assert sorted(i.name for i in pager) == ["referee-1", "web-0001", "web-0002"]
    scopes = dict(
        instances.aggregated_list(
            request=compute_v1.AggregatedListInstancesRequest(project=PROJECT, filter='labels.gpufleet-plan = "demo"')
        )
    )
    aggregated = {scope: [i.name for i in scoped.instances] for scope, scoped in scopes.items() if scoped.instances}
    assert aggregated == {f"zones/{ZONE}": ["referee-1", "web-0001", "web-0002"]}
    # Every other zone is there too, empty, with Compute Engine's warning.
    empty = [scoped for scope, scoped in scopes.items() if not scoped.instances]
    assert len(empty) >= 2 and "zones/us-central1-b" in scopes
    for scoped in empty:
        assert scoped.warning.code == compute_v1.Warning.Code.NO_RESULTS_ON_PAGE.name
        assert scoped.warning.data[0].key == "scope"

    deleted = instances.delete(project=PROJECT, zone=ZONE, instance="web-0001")
    polled = operations.get(project=PROJECT, zone=ZONE, operation=deleted.name)
    assert polled.status == compute_v1.Operation.Status.RUNNING and polled.operation_type == "delete"
    # Until the delete is done, the instance is STOPPING and its name is taken.
    assert instances.get(project=PROJECT, zone=ZONE, instance="web-0001").status == "STOPPING"
    with pytest.raises(Conflict):
        instances.insert(project=PROJECT, zone=ZONE, instance_resource=instance_named("web-0001", {"team": "web"}))
    done = operations.wait(project=PROJECT, zone=ZONE, operation=deleted.name)
    assert done.status == compute_v1.Operation.Status.DONE
    with pytest.raises(NotFound):
        instances.get(project=PROJECT, zone=ZONE, instance="web-0001")

    counters = sim.admin("/_sim/counters")["gcp"]
    assert (counters["instances.insert"], counters["instances.delete"], counters["zoneOperations.wait"]) == (3, 1, 3)


def test_bulk_insert_min_count_capacity_error_and_quota(gce):
    _, instances, operations, regions = gce
    # 4 in stock: count 6, minCount 3 creates 4.
    done = bulk_insert(instances, operations, 6, 3, "train-##", {"team": "ml"})
    status = done.instances_bulk_insert_operation_metadata.per_location_status[f"zones/{ZONE}"]
    assert (status.target_vm_count, status.created_vm_count) == (6, 4)

    # Sold out: the error is inside the finished operation, with GCE's code.
    refused = bulk_insert(instances, operations, 1, 1, "more-##", {"team": "ml"})
    assert refused.status == compute_v1.Operation.Status.DONE
    assert [e.code for e in refused.error.errors] == ["ZONE_RESOURCE_POOL_EXHAUSTED"]
    assert refused.http_error_status_code == 503
    assert len(list(instances.list(project=PROJECT, zone=ZONE))) == 4

    region = regions.get(project=PROJECT, region="us-central1")
    h100 = [q for q in region.quotas if q.metric == "NVIDIA_H100_GPUS"]
    assert [(q.limit, q.usage) for q in h100] == [(64.0, 32.0)]
    assert len(region.zones) == 4


@pytest.mark.parametrize("request_id", ["r1", "00000000-0000-0000-0000-000000000000"])
def test_request_id_must_be_a_uuid_and_not_the_zero_one(gce, request_id):
    sim, instances, _, _ = gce
    resource = compute_v1.BulkInsertInstanceResource(
        count=1, min_count=1, name_pattern="bad-####", instance_properties=properties({"team": "ml"})
    )
    request = compute_v1.BulkInsertInstanceRequest(
        project=PROJECT, zone=ZONE, bulk_insert_instance_resource_resource=resource, request_id=request_id
    )
    with pytest.raises(BadRequest) as refused:
        instances.bulk_insert(request=request)
    assert "The request ID must be a valid UUID" in refused.value.message
    assert list(instances.list(project=PROJECT, zone=ZONE)) == []


def test_machine_and_accelerator_types_aggregated_lists(gce):
    """What `gpufleet catalog refresh` reads: every zone's machine types with
    the accelerators they carry, and every zone's accelerator types, paged."""
    sim = gce[0]
    options = dict(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=sim.url)
    )
    machine_types = compute_v1.MachineTypesClient(**options)
    accelerator_types = compute_v1.AcceleratorTypesClient(**options)

    scopes = dict(machine_types.aggregated_list(request=compute_v1.AggregatedListMachineTypesRequest(project=PROJECT)))
    a3 = {m.name: m for m in scopes[f"zones/{ZONE}"].machine_types}["a3-highgpu-8g"]
    assert a3.guest_cpus == 208
    assert [(a.guest_accelerator_type, a.guest_accelerator_count) for a in a3.accelerators] == [("nvidia-h100-80gb", 8)]

    # One item a page: the pager follows nextPageToken; zones without an
    # item on a page carry Compute Engine's warning.
    pager = accelerator_types.aggregated_list(
        request=compute_v1.AggregatedListAcceleratorTypesRequest(project=PROJECT, max_results=1)
    )
    sold = []
    for scope, scoped in pager:
        if scoped.accelerator_types:
            sold.extend((scope, a.name, a.maximum_cards_per_instance) for a in scoped.accelerator_types)
        else:
            assert scoped.warning.code == compute_v1.Warning.Code.NO_RESULTS_ON_PAGE.name
    assert (f"zones/{ZONE}", "nvidia-h100-80gb", 8) in sold
    assert len(sold) == len(set(sold))
    whole = dict(
        accelerator_types.aggregated_list(request=compute_v1.AggregatedListAcceleratorTypesRequest(project=PROJECT))
    )
    assert sorted(sold) == sorted(
        (scope, a.name, a.maximum_cards_per_instance) for scope, scoped in whole.items() for a in scoped.accelerator_types
    )
    # Pages of one may be empty (the simulator pages short, as Compute Engine may): at least one a type.
    counters = sim.admin("/_sim/counters")["gcp"]
    assert counters["acceleratorTypes.aggregatedList"] >= len(sold) + 1
