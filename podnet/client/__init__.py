"""The Kubernetes API client every podnet component uses: kubeconfig and
in-cluster config (config.py), requests and watches (rest.py), informers
(informer.py), the per-process set of informers with reads from them and
writes to the server (cluster.py), and the level-triggered loop (loop.py)."""

import threading

from podnet.client.cluster import Cluster
from podnet.client.config import Config, ConfigError, in_cluster, load_kubeconfig
from podnet.client.rest import AlreadyExists, Client, Conflict, Gone, NotFound, StatusError


def connect(kubeconfig: str, user_agent: str = "podnet", stop: threading.Event | None = None) -> Cluster:
    """A Cluster for the server a kubeconfig names; its informers end with `stop`."""
    return Cluster(Client(load_kubeconfig(kubeconfig), user_agent=user_agent), stop)


__all__ = [
    "AlreadyExists",
    "Client",
    "Cluster",
    "Config",
    "ConfigError",
    "Conflict",
    "Gone",
    "NotFound",
    "StatusError",
    "connect",
    "in_cluster",
    "load_kubeconfig",
]
