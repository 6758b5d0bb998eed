"""The CNI 1.1 contract, as data: parameters from the environment, the
network configuration from stdin, version negotiation and result conversion.

Standard library only: the in-process path and the daemon share it, and
nothing here touches the kernel.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from podnet.cni.errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV, CNIError

# typing costs an import at every plugin start; the checker needs it only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    Conf = dict[str, Any]
    """A JSON object: the network configuration, a result, a prevResult."""

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
VALID_ATTACHMENTS = "cni.dev/valid-attachments"

# Spec: a container ID starts with an alphanumeric and continues with
# alphanumerics, '_', '.' or '-'; so no '/' can ever make it a path.
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# Kernel: IFNAMSIZ is 16 with the NUL; '/' ':' and whitespace are refused,
# and "." / ".." would be path components under /sys/class/net.
_IFNAME_BAD = re.compile(r"[/:\s]")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def check_version(version: str, command: str | None = None) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI version %r" % version,
            "podnet supports %s" % ", ".join(SUPPORTED_VERSIONS),
        )
    needs = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}.get(command or "")
    if needs and version_tuple(version) < version_tuple(needs):
        raise CNIError(
            INCOMPATIBLE_VERSION, "%s needs cniVersion %s or later, config has %s" % (command, needs, version)
        )


def parse_config(raw: bytes | str) -> Conf:
    """stdin bytes -> dict, with error 6 for bad JSON and 7 for a bad shape."""
    try:
        conf = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CNIError(DECODE_FAILURE, "failed to decode network configuration", str(exc)) from exc
    if not isinstance(conf, dict):
        raise CNIError(DECODE_FAILURE, "network configuration must be a JSON object")
    version = conf.get("cniVersion")
    if not isinstance(version, str):
        raise CNIError(INVALID_CONFIG, "cniVersion: missing or not a string")
    return conf


def validate_ifname(name: str, what: str = "CNI_IFNAME") -> None:
    if not name or len(name) > 15 or _IFNAME_BAD.search(name) or name in (".", ".."):
        raise CNIError(
            INVALID_ENV, "%s: invalid interface name %r" % (what, name), "1-15 characters, no '/', ':' or whitespace"
        )


@dataclass
class Args:
    """One CNI call: the CNI_* parameters plus the parsed config."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)
    conf: Conf = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # the CNI_* variables as given
    host_ns: object = None  # the runtime's namespace (a Netns) when a daemon serves it

    @property
    def version(self) -> str:
        v: str = self.conf.get("cniVersion", LATEST)  # a string: parse_config checked it
        return v

    @property
    def runtime_config(self) -> Conf:
        rc = self.conf.get("runtimeConfig")
        return rc if isinstance(rc, dict) else {}


def parse_cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS 'K=V;K2=V2' -> dict (error 4 when a pair has no '=')."""
    out: dict[str, str] = {}
    if not text:
        return out
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CNIError(INVALID_ENV, "CNI_ARGS: invalid pair %r" % pair, "expected KEY=VALUE")
        out[key] = value
    return out


def parse_env(env: Mapping[str, str]) -> Args:
    """Validate the CNI_* parameters for the command; error 4 when one is bad."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CNIError(INVALID_ENV, "CNI_COMMAND is not set")
    if command not in COMMANDS:
        raise CNIError(INVALID_ENV, "CNI_COMMAND: unknown command %r" % command, "one of " + ", ".join(COMMANDS))
    a = Args(command=command, env={k: v for k, v in env.items() if k.startswith("CNI_")})
    required: tuple[str, ...] = {
        "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
        "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
        "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
        "GC": ("CNI_PATH",),
    }.get(command, ())
    missing = [k for k in required if not env.get(k)]
    if missing:
        raise CNIError(
            INVALID_ENV,
            "%s: missing required environment variable%s %s"
            % (command, "s" if len(missing) > 1 else "", ", ".join(missing)),
        )
    a.container_id = env.get("CNI_CONTAINERID", "")
    if a.container_id and not _CONTAINER_ID.match(a.container_id):
        raise CNIError(
            INVALID_ENV,
            "CNI_CONTAINERID: invalid container ID %r" % a.container_id,
            "must start with a letter or digit and contain only letters, digits, '_', '.', '-'",
        )
    a.netns = env.get("CNI_NETNS", "")
    a.ifname = env.get("CNI_IFNAME", "")
    if a.ifname:
        validate_ifname(a.ifname)
    a.args = parse_cni_args(env.get("CNI_ARGS", ""))
    a.path = [p for p in env.get("CNI_PATH", "").split(os.pathsep) if p]
    return a


def valid_attachments(conf: Conf) -> set[tuple[str, str]]:
    """GC: the set of (containerID, ifname) the runtime still uses."""
    items = conf.get(VALID_ATTACHMENTS, [])
    if not isinstance(items, list):
        raise CNIError(INVALID_CONFIG, "%s: must be a list" % VALID_ATTACHMENTS)
    out: set[tuple[str, str]] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("containerID"), str):
            raise CNIError(INVALID_CONFIG, "%s[%d]: needs containerID and ifname" % (VALID_ATTACHMENTS, i))
        out.add((item["containerID"], item.get("ifname", "")))
    return out


# ---- routes --------------------------------------------------------------

# CNI 1.1's optional route fields and their ranges. A pod's route carries the
# tunnel's MTU this way while its link keeps the bridge's (podnet's agent
# writes `{"dst": "0.0.0.0/0", "mtu": 1450}` in a vxlan cluster).
ROUTE_ATTRS = {
    "mtu": (68, 65535),
    "advmss": (1, 65535),
    "priority": (0, 2**32 - 1),
    "table": (1, 2**32 - 1),
    "scope": (0, 255),
}


def route_attrs(route: Conf, where: str, strict: bool) -> Conf:
    """The optional fields of one route, checked: {"mtu": 1450, ...}.

    strict (a config the user wrote): an unknown field is refused with its
    path rather than ignored; a result from a delegated plugin may carry
    fields of a later spec, which are left alone."""
    out: Conf = {}
    for key, value in route.items():
        if key in ("dst", "gw"):
            continue
        lim = ROUTE_ATTRS.get(key)
        if lim is None:
            if strict:
                raise CNIError(
                    INVALID_CONFIG,
                    "%s.%s: unknown route field (a route has dst, gw, %s)" % (where, key, ", ".join(ROUTE_ATTRS)),
                )
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not lim[0] <= value <= lim[1]:
            raise CNIError(INVALID_CONFIG, "%s.%s: must be an integer %d-%d" % (where, key, lim[0], lim[1]))
        out[key] = value
    return out


# ---- results -------------------------------------------------------------


def to_version(result: Conf, version: str) -> Conf:
    """Convert a result held in 1.x form to the version the config asked for.

    0.3.x/0.4.0 differ from 1.x in one visible way: each ip carries
    "version": "4"|"6"; 1.1.0 added optional fields, routes' among them,
    which an older result does not carry."""
    out: Conf = json.loads(json.dumps(result))
    out["cniVersion"] = version
    if version_tuple(version) < (1, 1, 0):
        for route in out.get("routes") or []:
            for key in ROUTE_ATTRS:
                route.pop(key, None)
    if version_tuple(version) < (1, 0, 0):
        for ip in out.get("ips", []):
            ip["version"] = "6" if ":" in ip["address"] else "4"
    else:
        for ip in out.get("ips", []):
            ip.pop("version", None)
    return out


def from_any_version(result: object) -> Conf:
    """A prevResult of any supported version -> 1.x form (drops ips[].version)."""
    if not isinstance(result, dict):
        raise CNIError(INVALID_CONFIG, "prevResult: must be an object")
    out: Conf = json.loads(json.dumps(result))
    for i, ip in enumerate(out.get("ips", []) or []):
        if not isinstance(ip, dict) or not isinstance(ip.get("address"), str):
            raise CNIError(INVALID_CONFIG, "prevResult.ips[%d].address: missing" % i)
        ip.pop("version", None)
    return out


def version_info(conf_version: object) -> Conf:
    return {
        "cniVersion": conf_version if conf_version in SUPPORTED_VERSIONS else LATEST,
        "supportedVersions": list(SUPPORTED_VERSIONS),
    }
