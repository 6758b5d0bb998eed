"""Validation of Lease (coordination.k8s.io/v1), the node heartbeat.

Each agent renews the Lease named after its node in kube-node-lease, as
kubelet does; the node lifecycle controller reads renewTime to decide that
a node is gone. A Lease has a spec and no status.
"""

import time

from podnet.api.fields import opt_int, opt_map, opt_str
from podnet.api.meta import fail
from podnet.api.types import Obj

NODE_LEASE_NAMESPACE = "kube-node-lease"
MICRO_TIME = "%Y-%m-%dT%H:%M:%S"


def micro_time(t: float) -> str:
    """A MicroTime as Kubernetes writes it: 2006-01-02T15:04:05.000000Z."""
    return time.strftime(MICRO_TIME, time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


def parse_micro_time(value: str) -> float:
    """MicroTime or plain RFC 3339 time -> seconds since the epoch; ValueError."""
    import calendar

    base, _, frac = value.rstrip("Z").partition(".")
    t = calendar.timegm(time.strptime(base, MICRO_TIME))
    return t + (float("0." + frac) if frac.isdigit() else 0.0)


def _time_error(value: str) -> str | None:
    try:
        parse_micro_time(value)
    except ValueError:
        return "must be a time like 2006-01-02T15:04:05.000000Z, got %r" % (value,)
    return None


def lease(obj: Obj) -> Obj:
    for key in obj:
        if key not in ("apiVersion", "kind", "metadata", "spec"):
            fail(key, "unknown field (a Lease has a spec only)")
    spec = opt_map(obj, "spec", "")
    if spec is None:
        obj["spec"] = spec = {}
    for key in spec:
        if key not in (
            "holderIdentity",
            "leaseDurationSeconds",
            "acquireTime",
            "renewTime",
            "leaseTransitions",
            "strategy",
            "preferredHolder",
        ):
            fail("spec." + key, "unknown field")
    opt_str(spec, "holderIdentity", "spec")
    opt_int(spec, "leaseDurationSeconds", "spec", 1, None)
    opt_int(spec, "leaseTransitions", "spec", 0, None)
    for key in ("acquireTime", "renewTime"):
        opt_str(spec, key, "spec", check=_time_error)
    return obj
