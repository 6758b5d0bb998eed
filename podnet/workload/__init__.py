"""The built-in test workload: what podnet runs for agnhost and pause images.

Without an image a container is a host process in the pod's network (and
UTS) namespace. Two kinds of container run that way:

* the reserved image `podnet.io/host` (never pulled) with `command`: a host
  program, run as Kubernetes would run it (`command` + `args`);
* an agnhost or pause image: our stdlib look-alike,
  `python -m podnet.workload <args>` (see podnet.workload.agnhost).

Every other image (nginx, busybox, ...) runs as an image through podman
(podnet.agent.oci): `command_for` returns None for it.
"""

import os
import sys

__all__ = ["command_for", "image_kind", "why_not", "WORKLOAD_ARGV"]

# argv prefix that runs this package with the agent's own interpreter.
WORKLOAD_ARGV = (sys.executable, "-m", "podnet.workload")
# the cluster DNS image (podnet/dns, the kube-dns addon): podnet's DNS server
DNS_ARGV = (sys.executable, "-m", "podnet.dns")
# the ingress addon's image (podnet/ingress-nginx): the controller, which runs nginx as its child
INGRESS_ARGV = (sys.executable, "-m", "podnet.ingress.controller")


def _image_name(image):
    """'registry.k8s.io/e2e-test-images/agnhost:2.45@sha256:..' -> 'agnhost'."""
    name = (image or "").strip().split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def image_kind(image):
    """'agnhost', 'pause', 'dns', 'ingress-nginx' or None: which built-in stands in for this image."""
    name = _image_name(image)
    if (image or "").strip().split("@", 1)[0].split(":", 1)[0].endswith("podnet/dns"):
        return "dns"
    if (image or "").strip().split("@", 1)[0].split(":", 1)[0].endswith("podnet/ingress-nginx"):
        return "ingress-nginx"
    if "agnhost" in name:
        return "agnhost"
    if "pause" in name:
        return "pause"
    return None


HOST_IMAGE = "podnet.io/host"  # podnet.image.refs.HOST_IMAGE: command is a program of the machine


def command_for(container_spec):
    """The argv that runs this pod container spec, or None when podnet cannot.

    - image podnet.io/host (or none) and `command`: command + args, host
      programs (like Kubernetes, where command replaces the image's entrypoint). In an agnhost/pause image a
      command naming the image's own binary (`/agnhost`, `/pause`) maps to
      the built-in.
    - agnhost image, no command: python -m podnet.workload *args.
    - pause image, no command: python -m podnet.workload pause.
    - otherwise None.
    """
    spec = container_spec or {}
    command = list(spec.get("command") or [])
    args = [str(a) for a in (spec.get("args") or [])]
    kind = image_kind(spec.get("image"))
    host = (spec.get("image") or "").strip().split(":", 1)[0] in ("", HOST_IMAGE)
    if not host and kind is None:  # an image: podman runs it, command and all
        return None
    if command:
        binary = os.path.basename(str(command[0]))
        if kind == "agnhost" and binary == "agnhost":
            return list(WORKLOAD_ARGV) + [str(c) for c in command[1:]] + args
        if kind == "pause" and binary == "pause":
            return list(WORKLOAD_ARGV) + ["pause"]
        return [str(c) for c in command] + args
    if kind == "agnhost":
        return list(WORKLOAD_ARGV) + args
    if kind == "pause":
        return list(WORKLOAD_ARGV) + ["pause"]
    if kind == "dns":
        return list(DNS_ARGV) + (args or ["serve"])
    if kind == "ingress-nginx":
        return list(INGRESS_ARGV) + args
    return None


def why_not(container_spec):
    """The message for a container `command_for` cannot run (None if it can)."""
    if command_for(container_spec) is not None:
        return None
    spec = container_spec or {}
    return "image %r cannot run in podnet without a command: image %s runs the host program its `command` names" % (
        spec.get("image") or "",
        HOST_IMAGE,
    )
