"""A real 3-node Redis Cluster on loopback ports, for the Cluster tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import redis

from bullmq_proxy.redis.embedded import find_redis_server
from tests.redis_process import wait_for_redis

BUS_PORT_OFFSET = 10000  # Redis Cluster's node-to-node bus listens on port + 10000


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """Ports whose cluster bus ports are free too."""
    ports: list[int] = []
    candidate = 20000
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            candidate = sock.getsockname()[1]
        if candidate + BUS_PORT_OFFSET < 65536 and _free(candidate + BUS_PORT_OFFSET) \
                and candidate not in ports:
            ports.append(candidate)
    return ports


@contextlib.contextmanager
def running_cluster(directory: Path, nodes: int = 3) -> Iterator[list[int]]:
    """Start ``nodes`` masters sharing the 16384 slots; yields their ports."""
    ports = cluster_ports(nodes)
    processes = []
    try:
        for port in ports:
            node_dir = directory / str(port)
            node_dir.mkdir()
            processes.append(subprocess.Popen(
                [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "2000", "--dir", str(node_dir), "--save", "",
                 "--appendonly", "no", "--maxmemory-policy", "noeviction"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        clients = [redis.Redis(port=port) for port in ports]
        for client in clients:
            wait_for_redis(client.ping, "Redis Cluster: node start")
        # Slots split evenly, then every node meets the first: what `redis-cli --cluster
        # create` does, without needing redis-cli.
        share = 16384 // nodes
        for index, client in enumerate(clients):
            last = 16383 if index == nodes - 1 else (index + 1) * share - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
        for client in clients[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", ports[0])
        for client in clients:
            wait_for_redis(lambda c=client: c.cluster("info")["cluster_state"] == "ok",
                           "Redis Cluster: cluster state ok")
            wait_for_redis(lambda c=client: len(c.cluster("nodes")) == nodes,
                           "Redis Cluster: node discovery")
        for client in clients:
            client.close()
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
