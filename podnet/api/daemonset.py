"""Validation of DaemonSet (apps/v1), for the manifests of a real cluster.

podnet's own scheduler and kubelet role do not run DaemonSets: a lab's
nodes get their agents from `podnet lab up`. DaemonSets are served so that
`kubectl apply --dry-run=server -f deploy/kubernetes/` checks podnet's
manifests for a real cluster against a lab's API server; a real create is
refused by the registry ("nothing accepted and ignored"), a dry run is
validated here: the selector matches the template's labels, every
container has a name and an image, the update strategy is one Kubernetes
knows. The pod template is not held to podnet's own PodSpec subset (it
asks for hostNetwork, hostPath volumes and privilege, which the real
kubelet gives).
"""

from podnet.api.fields import opt_enum, opt_int, opt_map, opt_maps, opt_str, str_map
from podnet.api.meta import dns_label, fail
from podnet.api.selectors import check_selector, format_labels, format_selector, matches
from podnet.api.types import Obj

REFUSED = "podnet does not run DaemonSets (a lab's agents come from `podnet lab up`); only --dry-run=server is accepted"


def daemon_set(obj: Obj) -> Obj:
    spec = opt_map(obj, "spec", "", required=True)
    sel = opt_map(spec, "selector", "spec", required=True)
    check_selector(sel, "spec.selector", allow_empty=False)
    tmpl = opt_map(spec, "template", "spec", required=True)
    tmeta = opt_map(tmpl, "metadata", "spec.template") or {}
    labels = str_map(tmeta, "labels", "spec.template.metadata") or {}
    if not matches(sel, labels):
        fail(
            "spec.template.metadata.labels",
            "%s do not match spec.selector (%s)" % (format_labels(labels), format_selector(sel)),
        )
    pod = opt_map(tmpl, "spec", "spec.template", required=True)
    containers = opt_maps(pod, "containers", "spec.template.spec", required=True, nonempty=True)
    for c, p in containers:
        opt_str(c, "name", p, required=True, check=dns_label)
        opt_str(c, "image", p, required=True, nonempty=True)
    opt_int(spec, "minReadySeconds", "spec", lo=0, default=0)
    opt_int(spec, "revisionHistoryLimit", "spec", lo=0, default=10)
    st = opt_map(spec, "updateStrategy", "spec") or spec.setdefault("updateStrategy", {})
    opt_enum(st, "type", "spec.updateStrategy", ("RollingUpdate", "OnDelete"), default="RollingUpdate")
    return obj
