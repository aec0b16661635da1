"""docker-compose.yml: what it publishes. Flower (task arguments, revoking tasks) only on the host's
loopback and behind a password."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def test_flower_is_on_loopback_only_and_needs_a_password() -> None:
    flower = yaml.safe_load(COMPOSE.read_text())["services"]["flower"]
    assert flower["ports"] and all(str(port).startswith("127.0.0.1:") for port in flower["ports"])
    # required (`:?`): compose refuses to start without it rather than run Flower open
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")


def test_every_published_port_is_one_meant_to_be_public() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = {
        name: [str(port) for port in service.get("ports", [])]
        for name, service in services.items()
        if service.get("ports")
    }
    open_ports = {
        name for name, ports in published.items() if any(not p.startswith("127.0.0.1:") for p in ports)
    }
    assert open_ports == {"api"}
