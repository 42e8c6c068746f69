"""The simulator's Azure Resource Manager API as the Python SDK sees it.

azure-mgmt-compute is the independent referee: it is not the SDK gpufleet
uses, so if it can create a flexible scale set, follow its long-running
operations, scale it, page through its VMs, delete instances and read
AllocationFailed against `gpufleet sim serve`, the simulator speaks ARM.

The SDK is used unchanged: a credential class with `get_token`, `base_url`
at the simulator, and azure-core's own `enforce_https=False` switch, since
the simulator listens on plain http.

Run: cargo build && GPUFLEET_BIN=$PWD/target/debug/gpufleet python3 -m pytest tests/python/test_sim_arm.py -q
"""

import json

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import ComputeManagementClient

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
GROUP = "gpu"
H100 = "Standard_ND96isr_H100_v5"
# Every call: plain http to the loopback simulator.
CALL = {"enforce_https": False}
# Operations that end at once: azure-core's poller sleeps Retry-After in
# real time, and nothing moves these simulators' clocks.
INSTANT = '[lifecycle]\nazure_operation = "0s"\n'



class DummyCredential:
    """What azure-core asks of a credential; the simulator does not check tokens."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("dummy", 32503680000)  # year 3000


def compute_of(sim):
    return ComputeManagementClient(
        credential=DummyCredential(),
        subscription_id=SUBSCRIPTION,
        base_url=sim.url,
        credential_scopes=[sim.url + "/.default"],
        # A finished operation's answer has no Retry-After, which azure-core
        # replaces by this interval (30 s by default).
        polling_interval=0,
    )


def scale_set(size, capacity):
    return {
        "location": "eastus",
        "tags": {"gpufleet-plan": "training", "note": "a&b <c>"},
        "sku": {"name": size, "capacity": capacity},
        "properties": {
            "orchestrationMode": "Flexible",
            "platformFaultDomainCount": 1,
            "virtualMachineProfile": {
                "storageProfile": {
                    "imageReference": {
                        "publisher": "microsoft-dsvm",
                        "offer": "ubuntu-hpc",
                        "sku": "2204",
                        "version": "latest",
                    }
                },
                "osProfile": {"computerNamePrefix": "gf", "adminUsername": "gf", "customData": "ZWNobyBoaQ=="},
                "networkProfile": {
                    "networkApiVersion": "2020-11-01",
                    "networkInterfaceConfigurations": [
                        {"name": "nic", "properties": {"primary": True, "ipConfigurations": [{"name": "ip"}]}}
                    ],
                },
            },
        },
    }


def vms_of(compute, scale_set_id):
    return list(
        compute.virtual_machines.list(GROUP, filter=f"'virtualMachineScaleSet/id' eq '{scale_set_id}'", **CALL)
    )


def test_flexible_scale_set_lifecycle(start_sim, tmp_path):
    # Pages of 20, so that the SDK follows nextLink.
    paged = tmp_path / "paged.toml"
    paged.write_text("arm_page_size = 20\n" + INSTANT)
    sim = start_sim(paged)
    compute = compute_of(sim)
    sets = compute.virtual_machine_scale_sets

    created = sets.begin_create_or_update(GROUP, "gf-a", scale_set(H100, 2), **CALL).result()
    assert created.name == "gf-a"
    assert created.sku.capacity == 2
    assert created.properties.orchestration_mode == "Flexible"
    assert created.properties.provisioning_state == "Succeeded"
    assert created.tags == {"gpufleet-plan": "training", "note": "a&b <c>"}
    assert "customData" not in json.dumps(created.as_dict())

    scaled = sets.begin_update(GROUP, "gf-a", {"sku": {"capacity": 23}}, **CALL).result()
    assert scaled.sku.capacity == 23

    vms = vms_of(compute, created.id)
    assert len(vms) == 23, "listed across pages"
    assert all(vm.name.startswith("gf-a_") for vm in vms)
    assert all(vm.properties.virtual_machine_scale_set.id == created.id for vm in vms)
    assert {vm.properties.hardware_profile.vm_size for vm in vms} == {H100}
    one = compute.virtual_machines.get(GROUP, vms[0].name, **CALL)
    assert one.id == vms[0].id

    assert [s.name for s in sets.list(GROUP, **CALL)] == ["gf-a"]

    doomed = [vm.name for vm in vms[:20]]
    sets.begin_delete_instances(GROUP, "gf-a", {"instanceIds": doomed}, **CALL).result()
    left = vms_of(compute, created.id)
    assert [vm.name for vm in left] == [vm.name for vm in vms[20:]]
    assert sets.get(GROUP, "gf-a", **CALL).sku.capacity == 3

    sets.begin_delete(GROUP, "gf-a", **CALL).result()
    assert vms_of(compute, created.id) == []
    counters = sim.admin("/_sim/counters")["azure"]
    assert counters["VirtualMachineScaleSets_DeleteInstances"] == 1
    assert counters["Operations_Get"] >= 4, "every change (create, update, delete instances, delete) was followed"


def test_allocation_failed_and_sku_not_available(start_sim, tmp_path):
    scenario = tmp_path / "three-h100.toml"
    scenario.write_text(
        INSTANT
        + '[[offering]]\ncloud = "azure"\nregion = "eastus"\ninstance_type = "Standard_ND96isr_H100_v5"\ncapacity = 3\n'
    )
    sim = start_sim(scenario)
    compute = compute_of(sim)
    sets = compute.virtual_machine_scale_sets

    poller = sets.begin_create_or_update(GROUP, "gf-short", scale_set(H100, 5), **CALL)
    with pytest.raises(HttpResponseError) as failure:
        poller.result()
    assert failure.value.error.code == "AllocationFailed"
    assert "sufficient capacity" in failure.value.error.message
    assert sets.get(GROUP, "gf-short", **CALL).properties.provisioning_state == "Failed"
    assert len(vms_of(compute, sets.get(GROUP, "gf-short", **CALL).id)) == 3, "what there was got allocated"

    with pytest.raises(HttpResponseError) as refused:
        sets.begin_create_or_update(GROUP, "gf-h200", scale_set("Standard_ND96isr_H200_v5", 1), **CALL)
    assert refused.value.status_code == 409
    assert refused.value.error.code == "SkuNotAvailable"

    with pytest.raises(HttpResponseError) as unknown:
        sets.begin_create_or_update(GROUP, "gf-nosuch", scale_set("Standard_ND96isr_X999_v9", 1), **CALL)
    assert unknown.value.status_code == 400
    assert unknown.value.error.code == "InvalidParameter"
    assert "Standard_ND96isr_X999_v9" in unknown.value.error.message

    with pytest.raises(HttpResponseError) as missing:
        sets.get(GROUP, "gf-nope", **CALL)
    assert missing.value.status_code == 404
    assert missing.value.error.code == "ResourceNotFound"


def test_changes_take_simulated_time_whether_or_not_anyone_polls(start_sim):
    sim = start_sim()
    compute = compute_of(sim)
    sets = compute.virtual_machine_scale_sets
    created = sets.begin_create_or_update(GROUP, "gf-slow", scale_set(H100, 2), polling=False, **CALL).result()
    assert created.properties.provisioning_state == "Creating"
    vms = vms_of(compute, created.id)
    assert [vm.properties.provisioning_state for vm in vms] == ["Creating", "Creating"]

    sim.admin("/_sim/advance", {"by": "29s"})
    assert sets.get(GROUP, "gf-slow", **CALL).properties.provisioning_state == "Creating"
    sim.admin("/_sim/advance", {"by": "1s"})
    assert sets.get(GROUP, "gf-slow", **CALL).properties.provisioning_state == "Succeeded"
    assert {vm.properties.provisioning_state for vm in vms_of(compute, created.id)} == {"Succeeded"}
    assert sim.admin("/_sim/counters")["azure"].get("Operations_Get", 0) == 0, "nobody polled"


def test_usages_list_the_total_regional_vcpus_that_bind_every_family(start_sim, tmp_path):
    scenario = tmp_path / "cores.toml"
    scenario.write_text(INSTANT + '[[quota]]\ncloud = "azure"\nregion = "eastus"\nmetric = "cores"\nlimit = 100\n')
    sim = start_sim(scenario)
    compute = compute_of(sim)
    usages = {u.name.value: u for u in compute.usage.list("eastus", **CALL)}
    assert usages["cores"].name.localized_value == "Total Regional vCPUs"
    assert (usages["cores"].limit, usages["cores"].current_value) == (100, 0)
    compute.virtual_machine_scale_sets.begin_create_or_update(GROUP, "gf-a", scale_set(H100, 1), **CALL).result()
    assert {u.name.value: u for u in compute.usage.list("eastus", **CALL)}["cores"].current_value == 96
    with pytest.raises(HttpResponseError) as refused:
        compute.virtual_machine_scale_sets.begin_create_or_update(GROUP, "gf-b", scale_set(H100, 1), **CALL)
    assert refused.value.error.code == "OperationNotAllowed"
    assert "Total Regional Cores quota" in refused.value.error.message
