"""The embedded simulated fleet: N asyncssh servers on 127.0.0.1, one per host.

Every demo, drill and integration test goes through real SSH to these hosts, so a
rollout against them exercises the same path as production. See
:mod:`console.simfleet.fleet` for the API, :mod:`console.simfleet.scenario` for the
scenario format and :mod:`console.simfleet.commands` for what a host answers.
"""

from console.simfleet.fleet import SimFleet
from console.simfleet.host import HostState
from console.simfleet.process import FleetProcess, start_fleet_process
from console.simfleet.scenario import Scenario, builtin_names, load_scenario, parse_scenario

__all__ = [
    "FleetProcess",
    "HostState",
    "Scenario",
    "SimFleet",
    "builtin_names",
    "load_scenario",
    "parse_scenario",
    "start_fleet_process",
]
