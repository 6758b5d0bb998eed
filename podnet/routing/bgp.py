"""BGP routing backend, as Calico does it: one BIRD 2 daemon per node.

Design note.
- Why BIRD: it is what Calico runs, it speaks real BGP (so a node can peer
  with a top-of-rack router later), it programs the kernel FIB itself (routes
  show up as `proto bird`) and it reloads a changed config without dropping
  the sessions that did not change. We only render its config and supervise
  the process; we never program the routes it owns.
- Why `direct;`: iBGP sessions default to "multihop", whose next hops are
  resolved recursively through BIRD's own table. We run no `protocol direct`
  and do not learn kernel routes, so nothing there covers the underlay subnet
  and every learned route would be unreachable. `direct;` marks the neighbour
  as on-link, which makes `gateway direct` the default and resolves a next hop
  on the shared underlay subnet (`gateway direct` alone is not enough).
- Why export filters: the pod CIDR (and `announce` prefixes) live in BIRD as
  a static blackhole purely so that BGP has something to originate; the kernel
  protocol exports only RTS_BGP routes, so that blackhole never reaches the
  FIB (cni0's connected route serves local pods), and BGP exports only
  RTS_STATIC, so a node never re-advertises what it learned (a route reflector
  also exports RTS_BGP: that is its job). Kernel routes are never learned.
IPv4 only. `Bird` stops only the PID it started (checked by its command line).
"""

import hashlib
import ipaddress
import itertools
import os
import re
import signal
import subprocess
import threading
import time

BIRD = "bird"
BIRDC = "birdc"
DEFAULT_ASN = 64512
_SYM_MAX = 64  # BIRD's SYM_MAX_LEN


class BgpError(Exception):
    pass


# ---- the config ----------------------------------------------------------------


def protocol_name(peer, taken=()):
    """A valid, unique BIRD identifier for a peer: `peer_<name>`."""
    base = "peer_" + re.sub(r"[^A-Za-z0-9_]", "_", str(peer))
    if len(base) <= _SYM_MAX and base not in taken:
        return base
    for n in itertools.count():  # too long, or two names that sanitise alike
        name = "%s_%s" % (base[: _SYM_MAX - 9], hashlib.sha1(("%s#%d" % (peer, n)).encode()).hexdigest()[:8])
        if name not in taken:
            return name


def _ipv4(text, what):
    try:
        addr = ipaddress.ip_address(str(text).strip())
    except ValueError:
        raise BgpError("%s: %r is not an IP address" % (what, text)) from None
    if addr.version != 4:
        raise BgpError("%s: %s: only IPv4 is supported" % (what, addr))
    return addr


def _net4(text, what):
    try:
        net = ipaddress.ip_network(str(text).strip())  # strict: host bits must be zero
    except ValueError as e:
        raise BgpError("%s: %s" % (what, e)) from None
    if net.version != 4:
        raise BgpError("%s: %s: only IPv4 is supported" % (what, net))
    return net


def _quote(text):
    return '"%s"' % re.sub(r'["\\\n]', "_", str(text))


# Session settings shared by nodes and the upstream router: on-link peers
# (`direct`), and short timers so a lab converges and notices a stopped node
# within seconds rather than BIRD's default minutes.
SESSION_TIMERS = [
    "  direct;",
    "  connect delay time 1;",
    "  connect retry time 1;",
    "  startup hold time 5;",
    "  hold time 9;",
    "  keepalive time 3;",
    "  error wait time 1, 5;",
]


def render_config(
    node,
    node_ip,
    pod_cidr,
    peers,
    asn=DEFAULT_ASN,
    route_reflector=False,
    reflector_ips=(),
    announce=(),
    upstreams=(),
    keep_out=(),
):
    """bird.conf (BIRD 2) for `node`. peers: [(name, ip)] of the other nodes.
    keep_out: CIDRs whose learned routes (and their subnets) BIRD never puts
    in the kernel (with encryption: pod routes go through podnet.wg only,
    so no plain route via eth0 takes over while the tunnel is down).

    Full mesh by default. route_reflector=True: every peer not in reflector_ips
    is an `rr client` (peers in reflector_ips are fellow reflectors). On a
    plain node a non-empty reflector_ips replaces the mesh: peer only with those.
    """
    me = _ipv4(node_ip, "node_ip")
    if not 1 <= int(asn) <= 4294967295:
        raise BgpError("asn %r out of range" % asn)
    prefixes = [_net4(pod_cidr, "pod_cidr")]
    for p in announce:
        net = _net4(p, "announce")
        if net not in prefixes:
            prefixes.append(net)
    names = {}  # ip -> peer name
    for name, ip in peers:
        names.setdefault(_ipv4(ip, "peer %s" % name), str(name))
    reflectors = []
    for ip in reflector_ips:
        addr = _ipv4(ip, "reflector")
        if addr not in reflectors:
            reflectors.append(addr)
    if route_reflector:
        sessions = [(ip, ip not in reflectors) for ip in names] + [(ip, False) for ip in reflectors if ip not in names]
    elif reflectors:
        sessions = [(ip, False) for ip in reflectors]
    else:
        sessions = [(ip, False) for ip in names]
    # routers outside the cluster (the lab's external host): plain sessions that
    # receive what this node originates (podCIDR, LoadBalancer IPs)
    for name, ip in upstreams:
        addr = _ipv4(ip, "upstream %s" % name)
        if addr not in names:
            names[addr] = str(name)
            sessions.append((addr, False))
    out = [
        "# podnet BGP for node %s: generated, do not edit." % re.sub(r"\s", "_", str(node)),
        "router id %s;" % me,
        'timeformat protocol "%FT%T";',
        "",
        "protocol device { scan time 10; }",
        "",
        "# Only routes learned by BGP go to the kernel (proto bird); nothing is learned.",
        "protocol kernel kernel4 {",
        "  ipv4 { import none; export where source = RTS_BGP%s; };"
        % "".join(" && net !~ [ %s+ ]" % _net4(c, "keep_out") for c in keep_out),
        "  merge paths on;",
        "  learn off;",
        "  scan time 5;   # re-installs within 5 s a route someone deleted by hand",
        "}",
        "",
        "# What this node originates; for export to BGP only, never to the kernel.",
        "protocol static podnet_static {",
        "  ipv4;",
    ]
    out += ["  route %s blackhole;" % net for net in prefixes]
    out += (
        [
            "}",
            "",
            "template bgp podnet_peer {",
            "  local as %d;" % int(asn),
        ]
        + SESSION_TIMERS
        + [
            "  ipv4 { import all; export where source = RTS_STATIC; next hop self; };",
            "}",
            "",
            "# A reflector passes learned routes on unchanged (next hop = the originator).",
            "template bgp podnet_reflector from podnet_peer {",
            "  ipv4 { import all; export where source ~ [ RTS_STATIC, RTS_BGP ]; next hop self off; };",
            "}",
        ]
    )
    taken = set()
    for ip, client in sessions:
        if ip == me:
            continue
        peer = names.get(ip, str(ip))
        proto = protocol_name(peer, taken)
        taken.add(proto)
        out += [
            "",
            "protocol bgp %s from %s {" % (proto, "podnet_reflector" if route_reflector else "podnet_peer"),
            "  description %s;" % _quote(peer),
            "  neighbor %s as %d;" % (ip, int(asn)),
        ]
        if client:
            out.append("  rr client;")
        out.append("}")
    return "\n".join(out) + "\n"


def render_upstream_config(router_ip, peers, asn=DEFAULT_ASN):
    """bird.conf for a router outside the cluster (the lab's `external` host):
    it peers with every node, learns podCIDRs and LoadBalancer /32s, installs
    them in its kernel (several nodes announcing one IP: an ECMP route), and
    announces nothing back."""
    me = _ipv4(router_ip, "router_ip")
    out = (
        [
            "# podnet upstream router: generated, do not edit.",
            "router id %s;" % me,
            'timeformat protocol "%FT%T";',
            "protocol device { scan time 10; }",
            "protocol kernel kernel4 {",
            "  ipv4 { import none; export where source = RTS_BGP; };",
            "  merge paths on;",
            "  learn off;",
            "}",
            "template bgp podnet_node {",
            "  local as %d;" % int(asn),
        ]
        + SESSION_TIMERS
        + [
            "  ipv4 { import all; export none; };",
            "}",
        ]
    )
    taken = set()
    for name, ip in peers:
        addr = _ipv4(ip, "peer %s" % name)
        proto = protocol_name(str(name), taken)
        taken.add(proto)
        out += [
            "protocol bgp %s from podnet_node {" % proto,
            "  description %s;" % _quote(name),
            "  neighbor %s as %d;" % (addr, int(asn)),
            "}",
        ]
    return "\n".join(out) + "\n"


def check_config(path):
    """BIRD's own parse-only check; raises BgpError with its message."""
    res = subprocess.run([BIRD, "-p", "-c", path], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise BgpError("bird rejected the config: %s" % (res.stderr or res.stdout).strip())


# ---- the daemon ----------------------------------------------------------------


def _proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return None


class Bird:
    """One BIRD daemon for one node, running inside `netns_path` (None: ours).

    Files in state_dir: bird.conf, bird.ctl (control socket), bird.pid, and
    bird.log, which `ensure` adds a `log` line for unless the config has one.
    """

    def __init__(self, netns_path, state_dir):
        self.netns_path = netns_path
        self.state_dir = os.path.abspath(state_dir)
        self.conf = os.path.join(self.state_dir, "bird.conf")
        self.ctl = os.path.join(self.state_dir, "bird.ctl")
        self.pidfile = os.path.join(self.state_dir, "bird.pid")
        self.log = os.path.join(self.state_dir, "bird.log")
        self._lock = threading.RLock()

    def _in_netns(self, argv):
        return (["nsenter", "--net=" + self.netns_path, "--"] if self.netns_path else []) + argv

    def _pid(self):
        """The PID of *our* live BIRD, or None. Ours = its command line names our
        control socket; a zombie (exited, PID 1 reaps slowly here) is dead."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            return None
        if self.ctl.encode() not in argv or _proc_state(pid) in (None, "Z", "X"):
            return None
        return pid

    @property
    def running(self):
        return self._pid() is not None

    def _birdc(self, *args, timeout=10):
        res = subprocess.run([BIRDC, "-s", self.ctl, *args], capture_output=True, text=True, timeout=timeout)
        out = "\n".join(
            line for line in res.stdout.splitlines() if not line.startswith("BIRD ") or " ready." not in line
        )
        if res.returncode != 0:
            raise BgpError("birdc %s: %s" % (" ".join(args), (out + res.stderr).strip()))
        return out

    def _effective(self, config_text):
        if re.search(r"^\s*log\s", config_text, re.M):
            return config_text
        return 'log "%s" 4000000 "%s.1" { info, remote, warning, error, auth, fatal, bug };\n%s' % (
            self.log,
            self.log,
            config_text,
        )

    def ensure(self, config_text):
        """Make BIRD run with this config: "started" | "reloaded" | "unchanged".
        A config BIRD rejects raises BgpError; the running daemon is untouched."""
        with self._lock:
            os.makedirs(self.state_dir, exist_ok=True)
            text = self._effective(config_text)
            try:
                with open(self.conf) as f:
                    current = f.read()
            except FileNotFoundError:
                current = None
            running = self.running
            if running and current == text:
                return "unchanged"
            tmp = self.conf + ".new"
            with open(tmp, "w") as f:
                f.write(text)
            try:
                check_config(tmp)
            except BgpError:
                os.unlink(tmp)
                raise
            os.replace(tmp, self.conf)
            if not running:
                self._start()
                return "started"
            try:
                out = self._birdc("configure")
            except BgpError:
                if current is not None:  # put back what the daemon runs
                    with open(tmp, "w") as f:
                        f.write(current)
                    os.replace(tmp, self.conf)
                raise
            if "Reconfigur" not in out:
                raise BgpError("birdc configure: %s" % out.strip())
            return "reloaded"

    def _start(self, timeout=10.0):
        for stale in (self.ctl, self.pidfile):  # left by a killed daemon of ours
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        # BIRD parses, then daemonizes (new session, stdio on /dev/null), then
        # writes the pidfile: so we wait for the pidfile and the socket.
        res = subprocess.run(
            self._in_netns([BIRD, "-c", self.conf, "-s", self.ctl, "-P", self.pidfile]),
            capture_output=True,
            text=True,
            timeout=30,
        )
        if res.returncode != 0:
            raise BgpError("bird did not start: %s" % (res.stderr or res.stdout).strip())
        deadline = time.time() + timeout
        while True:
            if self.running:
                try:
                    self._birdc("show", "status", timeout=5)
                    return
                except BgpError:
                    pass
            if time.time() > deadline:
                self.stop()
                raise BgpError("bird did not come up within %.0f s; see %s" % (timeout, self.log))
            time.sleep(0.05)

    def stop(self, timeout=5.0):
        """SIGTERM our BIRD by its PID (it withdraws its routes and sends BGP
        Cease), SIGKILL after `timeout`. Idempotent."""
        left = None
        with self._lock:
            pid = self._pid()
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                deadline = time.time() + timeout
                while self._pid() == pid and time.time() < deadline:
                    time.sleep(0.02)
                if self._pid() == pid:
                    os.kill(pid, signal.SIGKILL)
                    deadline = time.time() + timeout
                    while self._pid() == pid:
                        if time.time() > deadline:
                            raise BgpError("bird (PID %d) survived SIGKILL" % pid)
                        time.sleep(0.02)
                    # a killed BIRD leaves its routes behind; only BIRD makes
                    # proto bird routes in a node namespace, and only ours runs there
                    from podnet.kernel import routes

                    try:
                        routes.flush_routes(self.netns_path or None, routes.PROTO_BIRD)
                    except OSError:  # the namespace is gone, and its routes with it
                        pass
                    except routes.LinkError as exc:  # finish stopping first, then say what stays
                        left = BgpError("bird (PID %d) killed, but its routes stay: %s" % (pid, exc))
            for path in (self.ctl, self.pidfile):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        if left is not None:
            raise left

    def sessions(self):
        """The BGP sessions: [{name, peer, address, state, since, info}]."""
        out = self._birdc("show", "protocols", "all")
        result, cur = [], None
        for line in out.splitlines():
            if line and not line[0].isspace():
                cols = line.split()
                cur = None
                if len(cols) >= 5 and cols[1] == "BGP":
                    cur = {
                        "name": cols[0],
                        "peer": cols[0],
                        "address": None,
                        "state": cols[3],
                        "since": None,
                        "info": " ".join(cols[4:]),
                    }
                    cur["_cols"] = cols[4:]
                    result.append(cur)
                continue
            if cur is None or ":" not in line:
                continue
            key, _, value = line.strip().partition(":")
            value = value.strip()
            if key == "Description":
                cur["peer"] = value
            elif key == "Neighbor address":
                cur["address"] = value
            elif key == "BGP state":
                cur["state"] = value
        for s in result:
            cols = s.pop("_cols")
            # Since is everything before the Info column, which starts with the BGP state
            cut = cols.index(s["state"]) if s["state"] in cols else 1
            s["since"] = " ".join(cols[:cut])
            s["info"] = " ".join(cols[cut:])
        return result

    def routes(self):
        """Prefixes in BIRD's table (for debugging)."""
        seen = []
        for line in self._birdc("show", "route").splitlines():
            if line and not line[0].isspace() and "/" in line.split()[0]:
                if line.split()[0] not in seen:
                    seen.append(line.split()[0])
        return seen
