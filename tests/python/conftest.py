"""Shared by the referee tests: the gpufleet binary and `gpufleet sim serve`
processes on ephemeral loopback ports."""

import json
import os
import select
import subprocess
import urllib.request

import pytest

STARTUP_TIMEOUT_S = 60


def gpufleet_bin() -> str:
    path = os.environ.get("GPUFLEET_BIN")
    if not path:
        pytest.fail("GPUFLEET_BIN is not set: point it at the built gpufleet binary (target/debug/gpufleet)")
    if not os.access(path, os.X_OK):
        pytest.fail(f"GPUFLEET_BIN={path} is not an executable file")
    return path


class Sim:
    """One `gpufleet sim serve` process on an ephemeral loopback port."""

    def __init__(self, scenario=None, world=None):
        args = [gpufleet_bin(), "sim", "serve", "--listen", "127.0.0.1:0"]
        if scenario is not None:
            args += ["--scenario", str(scenario)]
        if world is not None:
            args += ["--world", str(world)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.process.stdout], [], [], STARTUP_TIMEOUT_S)
        first_line = self.process.stdout.readline().strip() if ready else ""
        if not first_line.startswith("listening on http://"):
            self.process.kill()
            _, stderr = self.process.communicate()
            pytest.fail(f"sim serve did not announce its address; first line {first_line!r}, stderr {stderr!r}")
        self.url = first_line.removeprefix("listening on ")

    def admin(self, path, body=None):
        """The `/_sim/` admin API: GET, or POST with a JSON body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def stop(self):
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail("sim serve did not stop on SIGTERM")
        assert code == 0, f"sim serve exited {code} on SIGTERM: {self.process.stderr.read()}"


@pytest.fixture
def start_sim():
    """Starts simulators on demand; each is stopped (and must exit 0) after the test."""
    started = []

    def start(scenario=None, world=None):
        sim = Sim(scenario, world)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()
