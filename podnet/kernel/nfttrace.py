"""nftables packet tracing for `podnet trace`: a small table that sets
nf_trace on the probe's packets, and `nft monitor` processes that collect
the kernel's trace events.

nf_trace is a per-packet flag that the kernel clears when a packet crosses
into another network namespace (veth, VXLAN decapsulation), so the trace
table goes into every namespace on the path, not only the first one. Its
chains hook prerouting and output at priority -400, before conntrack (-200)
and every podnet table, so all later chains report what they did.

A monitor is ready only once it has subscribed to netlink; `nft monitor`
prints nothing until then and gives no sign, so we start the monitors
before the trace table exists and wait until each one has printed the
table's own "add table" event: from then on it also sees trace events.
`nft -j monitor trace` is not JSON on nft 1.0.6, so the monitors print text
that podnet/diag/tracewords.py parses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from podnet.kernel.netns import Netns, entered, run
from podnet.kernel.nft import NftError, apply

FAMILY, PREFIX = "inet", "podnet-trace"


def table_name(sport, pid=None):
    """One table per trace, named by the tracing process and the probe's
    source port: two traces at once in one lab do not remove each other's,
    and the table of a trace that was killed is known by its dead PID."""
    return "%s-%d-%d" % (PREFIX, os.getpid() if pid is None else pid, sport)


def stale_tables(names):
    """The trace tables among `names` whose tracing process is gone (pure
    but for the PID check)."""
    out = []
    for name in names:
        parts = name.split("-")
        if name.startswith(PREFIX + "-") and len(parts) == 4 and parts[2].isdigit():
            if not os.path.exists("/proc/%s" % parts[2]):
                out.append(name)
    return out


def trace_script(sport, proto, endpoints=()):
    """The trace table as an nft script (pure): mark packets from or to the
    probe's source port (for ICMP: its echo identifier). Re-creating the
    table replaces an old one left by a trace that was killed.

    A node that masquerades (a NodePort or LoadBalancer reached from
    outside) rewrites the source port, so with `endpoints` (a Service's
    endpoint IPs) the first packets to and answers from those are marked
    too; the explainer keeps the probe's own by its IP id."""
    if proto == "icmp":
        match = ["icmp id %d" % sport]
    elif proto == "tcp":
        # only the SYN and its answer (SYN-ACK or RST): the rest of the
        # handshake and the close would bury the story in repeats
        match = [
            "tcp sport %d tcp flags & (syn | ack) == syn" % sport,
            "tcp dport %d tcp flags & (syn | rst) != 0" % sport,
        ]
    else:
        match = ["udp sport %d" % sport, "udp dport %d" % sport]
    if endpoints and proto != "icmp":
        eps = ", ".join(sorted(endpoints))
        first = "tcp flags & (syn | ack) == syn" if proto == "tcp" else "meta l4proto udp"
        answer = "tcp flags & (syn | rst) != 0" if proto == "tcp" else "meta l4proto udp"
        match += ["ip daddr { %s } %s" % (eps, first), "ip saddr { %s } %s" % (eps, answer)]
    table = table_name(sport)
    lines = ["add table %s %s" % (FAMILY, table), "delete table %s %s" % (FAMILY, table)]
    lines.append("table %s %s {" % (FAMILY, table))
    for chain, hook in (("pre", "prerouting"), ("out", "output")):
        lines.append("  chain %s {" % chain)
        lines.append("    type filter hook %s priority -400; policy accept;" % hook)
        for m in match:
            lines.append("    %s meta nftrace set 1" % m)
        # ICMP errors about the probe (port unreachable, frag needed) carry
        # its header inside, which no match above sees; mark them too: in
        # a lab namespace during one trace there are next to no others.
        lines.append("    icmp type { destination-unreachable, time-exceeded } meta nftrace set 1")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def install(ns_name, sport, proto, endpoints=()):
    with Netns(ns_name) as h:
        what = "add table %s %s in %s" % (FAMILY, table_name(sport), ns_name)
        apply(trace_script(sport, proto, endpoints), ns=h, what=what)


def remove(ns_name, sport):
    """Delete the trace table, and those that killed traces left (their
    process is gone); a namespace that is gone has none."""
    table = table_name(sport)
    try:
        h = Netns(ns_name)
    except OSError:
        return
    with h:
        res = run(["nft", "list", "tables", FAMILY], ns=h, check=False)
        names = [ln.split()[-1] for ln in res.stdout.splitlines() if ln.startswith("table ")]
        script = "".join(
            "add table %s %s\ndelete table %s %s\n" % (FAMILY, t, FAMILY, t) for t in [table] + stale_tables(names)
        )
        apply(script, ns=h, what="delete table %s %s in %s" % (FAMILY, table, ns_name))


def _die_with_parent():
    """In the monitor's child, before exec: SIGTERM when the process that
    started it dies (a trace killed with SIGKILL leaves no monitor behind).
    PR_SET_PDEATHSIG fires when the forking *thread* ends, so monitors are
    started from the thread that runs the whole trace."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class Monitor:
    """`nft monitor` inside one namespace, its lines collected by a thread."""

    def __init__(self, ns_name, table):
        self.ns, self.table = ns_name, table
        self.lines: list[str] = []
        self.ready = threading.Event()
        with Netns(ns_name) as h, entered(h):
            self.proc = subprocess.Popen(
                ["nft", "monitor"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                preexec_fn=_die_with_parent,
            )
        self._reader = threading.Thread(target=self._read, name="nft-monitor " + ns_name, daemon=True)
        self._reader.start()

    def _read(self):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("trace id "):
                self.lines.append(line)
            elif line.split()[:4] == ["add", "table", FAMILY, self.table]:
                self.ready.set()

    def stop(self):
        """End the monitor by the PID we started (never by name) and reap it."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._reader.join(timeout=1)


def start_monitors(ns_names, sport):
    return [Monitor(n, table_name(sport)) for n in ns_names]


def wait_ready(monitors, reinstall, timeout=3.0):
    """Wait until every monitor has seen the trace table appear; NftError
    naming the namespaces whose monitor did not. Popen returns before nft
    has subscribed, so a monitor may miss the first "add table": its
    namespace's table is then installed again (`reinstall(ns)`, which
    deletes and re-adds it) until the monitor reports it."""
    deadline = time.monotonic() + timeout
    while True:
        for m in monitors:
            m.ready.wait(max(0.0, min(0.2, deadline - time.monotonic())))
        late = [m for m in monitors if not m.ready.is_set()]
        if not late:
            return
        if time.monotonic() >= deadline:
            names = ", ".join(m.ns for m in late)
            raise NftError("monitor trace", "no event from nft monitor in %s after %.1f s" % (names, timeout))
        for m in late:
            reinstall(m.ns)


def collect(monitors, settle=0.15):
    """{netns: [trace lines]} after giving the monitors `settle` seconds to
    print the last events (the kernel delivers them asynchronously)."""
    time.sleep(settle)
    return {m.ns: list(m.lines) for m in monitors}
