"""The runtime side of CNI, as libcni does it: find a network's config list,
exec each plugin in order with the right parameters, feed each one the
previous result, cache the final result, and run DEL in reverse.

Used by `podnet cni add|check|del|gc|status` (the cnitool workflow) and by
the node agent. Only standard library and real execs: what a plugin sees
from here is exactly what it would see from containerd or CRI-O.
"""

import base64
import json
import os
import subprocess
from dataclasses import dataclass, field

DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CACHE_DIR = "/var/lib/cni"


class ConfigError(Exception):
    pass


class PluginError(Exception):
    """A plugin answered with a CNI error."""

    def __init__(self, plugin, command, doc, stderr=""):
        self.plugin, self.command, self.doc, self.stderr = plugin, command, doc, stderr
        self.code = doc.get("code", 999) if isinstance(doc, dict) else 999
        msg = doc.get("msg", "") if isinstance(doc, dict) else str(doc)
        details = doc.get("details", "") if isinstance(doc, dict) else ""
        super().__init__(
            "%s %s failed: %s (CNI error %s)%s" % (plugin, command, msg, self.code, ": " + details if details else "")
        )


@dataclass
class NetworkList:
    name: str
    version: str
    plugins: list
    raw: bytes
    path: str = ""
    disable_check: bool = False


def load_file(path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ConfigError("%s: invalid JSON: %s" % (path, exc)) from None
    if not isinstance(doc, dict):
        raise ConfigError("%s: must be a JSON object" % path)
    if "plugins" not in doc:  # a single-plugin .conf
        if "type" not in doc:
            raise ConfigError("%s: neither 'plugins' nor 'type'" % path)
        doc = {"cniVersion": doc.get("cniVersion", "0.2.0"), "name": doc.get("name"), "plugins": [doc]}
        raw = json.dumps(doc).encode()
    name, plugins = doc.get("name"), doc.get("plugins")
    if not isinstance(name, str) or not name:
        raise ConfigError("%s: name: missing" % path)
    if not isinstance(plugins, list) or not plugins or not all(isinstance(p, dict) and p.get("type") for p in plugins):
        raise ConfigError("%s: plugins: must be a non-empty list of objects with a type" % path)
    return NetworkList(name, doc.get("cniVersion", "1.0.0"), plugins, raw, path, bool(doc.get("disableCheck", False)))


def find_network(name, conf_dir=DEFAULT_CONF_DIR):
    try:
        names = sorted(os.listdir(conf_dir))
    except FileNotFoundError:
        raise ConfigError("config dir %s does not exist" % conf_dir) from None
    seen = []
    for fname in names:
        if not fname.endswith((".conf", ".conflist", ".json")):
            continue
        net = load_file(os.path.join(conf_dir, fname))
        if net.name == name:
            return net
        seen.append(net.name)
    raise ConfigError("no network named %r in %s (found: %s)" % (name, conf_dir, ", ".join(seen) or "none"))


@dataclass
class Runtime:
    bin_dirs: list = field(default_factory=lambda: [DEFAULT_BIN_DIR])
    cache_dir: str = DEFAULT_CACHE_DIR

    def _find(self, plugin_type):
        for d in self.bin_dirs:
            path = os.path.join(d, plugin_type)
            if os.access(path, os.X_OK):
                return path
        raise ConfigError("plugin %r not found in %s" % (plugin_type, ":".join(self.bin_dirs)))

    def _plugin_conf(self, net, plugin, prev, capability_args):
        conf = dict(plugin)
        conf["name"] = net.name
        conf["cniVersion"] = net.version
        caps = plugin.get("capabilities") or {}
        rc = {k: v for k, v in (capability_args or {}).items() if caps.get(k)}
        if rc:
            conf["runtimeConfig"] = rc
        if prev is not None:
            conf["prevResult"] = prev
        return conf

    def exec_plugin(self, command, plugin_type, conf, cid="", netns="", ifname="", args=""):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env.update({"CNI_COMMAND": command, "CNI_PATH": os.pathsep.join(self.bin_dirs)})
        for key, value in (("CNI_CONTAINERID", cid), ("CNI_NETNS", netns), ("CNI_IFNAME", ifname), ("CNI_ARGS", args)):
            if value:
                env[key] = value
        res = subprocess.run(
            [self._find(plugin_type)], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=120
        )
        out = res.stdout.strip()
        if res.returncode != 0:
            try:
                doc = json.loads(out)
            except ValueError:
                doc = {"code": 999, "msg": out.decode(errors="replace") or "exit %d" % res.returncode}
            raise PluginError(plugin_type, command, doc, res.stderr.decode(errors="replace"))
        return json.loads(out) if out else None

    # ---- the cache (libcni's layout: <cache>/results/<net>-<cid>-<ifname>) ----

    def _cache_path(self, net, cid, ifname):
        return os.path.join(self.cache_dir, "results", "%s-%s-%s" % (net, cid, ifname))

    def cached(self, net, cid, ifname):
        try:
            with open(self._cache_path(net, cid, ifname)) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def _write_cache(self, net, cid, ifname, netns, args, caps, result):
        path = self._cache_path(net.name, cid, ifname)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        doc = {
            "kind": "cniCacheV1",
            "containerId": cid,
            "config": base64.b64encode(net.raw).decode(),
            "ifName": ifname,
            "networkName": net.name,
            "netns": netns,
            "cniArgs": args,
            "capabilityArgs": caps or {},
            "result": result,
        }
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)

    def attachments(self):
        """Every cached attachment: [(network, containerID, ifname)]."""
        out = []
        try:
            names = os.listdir(os.path.join(self.cache_dir, "results"))
        except FileNotFoundError:
            return out
        for n in names:
            try:
                with open(os.path.join(self.cache_dir, "results", n)) as f:
                    doc = json.load(f)
                out.append((doc["networkName"], doc["containerId"], doc["ifName"]))
            except (OSError, ValueError, KeyError):
                continue
        return out

    # ---- operations --------------------------------------------------------

    def add(self, net, cid, netns, ifname="eth0", args="", caps=None):
        prev = None
        done = []
        try:
            for plugin in net.plugins:
                conf = self._plugin_conf(net, plugin, prev, caps)
                prev = self.exec_plugin("ADD", plugin["type"], conf, cid, netns, ifname, args)
                done.append(plugin)
        except Exception:
            # As libcni: a failed chain is torn down so nothing stays half-attached.
            for plugin in reversed(done):
                try:
                    conf = self._plugin_conf(net, plugin, prev, caps)
                    self.exec_plugin("DEL", plugin["type"], conf, cid, netns, ifname, args)
                except Exception:
                    pass
            raise
        self._write_cache(net, cid, ifname, netns, args, caps, prev)
        return prev

    def check(self, net, cid, netns, ifname="eth0", args="", caps=None):
        cached = self.cached(net.name, cid, ifname)
        if cached is None:
            raise ConfigError("no cached result for %s/%s/%s: was it added?" % (net.name, cid, ifname))
        for plugin in net.plugins:
            conf = self._plugin_conf(net, plugin, cached["result"], caps or cached.get("capabilityArgs"))
            self.exec_plugin("CHECK", plugin["type"], conf, cid, netns, ifname, args)

    def delete(self, net, cid, netns="", ifname="eth0", args="", caps=None):
        cached = self.cached(net.name, cid, ifname)
        prev = cached["result"] if cached else None
        caps = caps if caps is not None else (cached or {}).get("capabilityArgs")
        errors = []
        for plugin in reversed(net.plugins):
            conf = self._plugin_conf(net, plugin, prev, caps)
            try:
                self.exec_plugin("DEL", plugin["type"], conf, cid, netns, ifname, args)
            except PluginError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        try:
            os.unlink(self._cache_path(net.name, cid, ifname))
        except FileNotFoundError:
            pass

    def gc(self, net, valid):
        """valid: [(containerID, ifname)] still in use on this network.

        As libcni: plugins are only asked when the config's version knows GC
        (1.1.0); the cache is pruned either way."""
        asks = _at_least(net.version, "1.1.0")
        conf_extra = {"cni.dev/valid-attachments": [{"containerID": c, "ifname": i} for c, i in valid]}
        errors = []
        for plugin in net.plugins if asks else []:
            conf = self._plugin_conf(net, plugin, None, None)
            conf.update(conf_extra)
            try:
                self.exec_plugin("GC", plugin["type"], conf)
            except PluginError as exc:
                errors.append(exc)  # keep going: GC is best-effort across the chain
        keep = set(valid)
        for name, cid, ifname in self.attachments():
            if name == net.name and (cid, ifname) not in keep:
                try:
                    os.unlink(self._cache_path(name, cid, ifname))
                except FileNotFoundError:
                    pass
        if errors:
            raise errors[0]

    def status(self, net):
        """False when the config predates STATUS (plugins are not asked)."""
        if not _at_least(net.version, "1.1.0"):
            return False
        for plugin in net.plugins:
            self.exec_plugin("STATUS", plugin["type"], self._plugin_conf(net, plugin, None, None))
        return True


def _at_least(version, floor):
    try:
        return tuple(int(p) for p in version.split(".")) >= tuple(int(p) for p in floor.split("."))
    except ValueError:
        return False
