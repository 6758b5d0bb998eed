"""Calling a delegated plugin (IPAM) the way the CNI spec says: exec it from
CNI_PATH with the same parameters and the network config on stdin.

podnet-ipam is the exception: when the main plugin and podnet-ipam live in the
same process (the daemon, or an in-process run) we call its handler directly,
which saves a whole interpreter start per ADD. Behaviour is identical: the
handler sees the same Args it would have parsed from its own environment.
"""

import json
import os
import subprocess
from dataclasses import replace

from podnet.cni.errors import DECODE_FAILURE, INVALID_CONFIG, CNIError
from podnet.cni.spec import from_any_version

IN_PROCESS = {"podnet-ipam"}


def find_plugin(name, path):
    if not name or "/" in name:
        raise CNIError(INVALID_CONFIG, "ipam.type: invalid plugin name %r" % name)
    for d in path:
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise CNIError(
        INVALID_CONFIG,
        "ipam.type: plugin %r not found in CNI_PATH" % name,
        "searched: %s" % (":".join(path) or "(CNI_PATH is empty)"),
    )


def exec_plugin(binary, command, args, conf):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(args.env)
    env["CNI_COMMAND"] = command
    res = subprocess.run([binary], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=120)
    if res.stderr:
        os.write(2, res.stderr)
    out = res.stdout.strip()
    if res.returncode != 0:
        try:
            err = json.loads(out)
            raise CNIError(int(err.get("code", 999)), err.get("msg", "delegate failed"), err.get("details", ""))
        except (ValueError, AttributeError):
            raise CNIError(
                999,
                "%s %s failed (exit %d)" % (os.path.basename(binary), command, res.returncode),
                out.decode(errors="replace"),
            ) from None
    if not out:
        return None
    try:
        return json.loads(out)
    except ValueError as exc:
        raise CNIError(DECODE_FAILURE, "%s returned invalid JSON" % binary, str(exc)) from None


def ipam(command, args):
    """Run the IPAM plugin named by conf.ipam.type; returns its result (1.x form) or None."""
    section = args.conf.get("ipam")
    if not isinstance(section, dict) or not isinstance(section.get("type"), str):
        raise CNIError(INVALID_CONFIG, "ipam.type: missing")
    name = section["type"]
    if name in IN_PROCESS:
        from podnet.cni import ipam_plugin

        sub = replace(args, command=command)
        result = ipam_plugin.HANDLERS[command](sub)
    else:
        result = exec_plugin(find_plugin(name, args.path), command, args, args.conf)
    return from_any_version(result) if result else None
