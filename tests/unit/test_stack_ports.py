"""The local stack's free ports: six services, six different ports, every time."""

from __future__ import annotations

from dataclasses import astuple

from localstack.stack import Ports


def test_free_ports_are_six_different_ports() -> None:
    for _ in range(200):
        ports = astuple(Ports.free())
        assert len(ports) == 6
        assert len(set(ports)) == 6, ports
