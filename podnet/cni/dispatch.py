"""One CNI call, start to finish: parse, negotiate the version, run the
plugin's handler, and turn the outcome into (exit code, stdout, stderr).

Shared by the in-process executable path and the daemon, so both answer
byte-for-byte alike. Plugin modules are imported lazily: VERSION and bad-input
errors never pay for pyroute2.
"""

import importlib
import json
import traceback

from podnet.cni.errors import INTERNAL, IO_FAILURE, CNIError
from podnet.cni.spec import LATEST, check_version, parse_config, parse_env, to_version, version_info

PLUGINS = {
    "podnet": "podnet.cni.bridge",
    "podnet-ipam": "podnet.cni.ipam_plugin",
    "podnet-portmap": "podnet.cni.portmap",
}


def _dump(doc):
    return (json.dumps(doc, indent=1) + "\n").encode()


def _version_of(raw):
    try:
        doc = json.loads(raw)
        v = doc.get("cniVersion") if isinstance(doc, dict) else None
        return v if isinstance(v, str) else LATEST
    except (ValueError, UnicodeDecodeError):
        return LATEST


def run(plugin, env, raw, host_ns=None):
    """-> (rc, stdout bytes, stderr bytes)."""
    version = LATEST
    try:
        if plugin not in PLUGINS:
            raise CNIError(INTERNAL, "unknown podnet plugin %r" % plugin, "known: " + ", ".join(sorted(PLUGINS)))
        args = parse_env(env)
        if args.command == "VERSION":
            return 0, _dump(version_info(_version_of(raw))), b""
        conf = parse_config(raw)
        check_version(conf["cniVersion"], args.command)
        version = conf["cniVersion"]
        args.conf = conf
        args.host_ns = host_ns
        module = importlib.import_module(PLUGINS[plugin])
        result = module.HANDLERS[args.command](args)
        if result is None:
            return 0, b"", b""
        return 0, _dump(to_version(result, version)), b""
    except CNIError as exc:
        return 1, _dump(exc.to_dict(version)), ("%s: %s\n" % (plugin, exc)).encode()
    except OSError as exc:
        err = CNIError(IO_FAILURE, "%s: I/O failure" % plugin, str(exc))
        return 1, _dump(err.to_dict(version)), traceback.format_exc().encode()
    except Exception as exc:  # a bug: still answer in CNI form, with the trace on stderr
        err = CNIError(INTERNAL, "%s: internal error: %s" % (plugin, exc), type(exc).__name__)
        return 1, _dump(err.to_dict(version)), traceback.format_exc().encode()
