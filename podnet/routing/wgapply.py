"""The node's WireGuard interface, made to match routing/wireguard.py's plan:
the routing reconciler's part for `--encryption wireguard`.

Each pass: read the node's key (a file in its state, wireguard.key, mode
0600; made on the first run; `podnet lab rotate-keys` replaces it), make sure
podnet.wg exists (adopt the kernel link or the recorded wireguard-go, else
create one: the kernel module when it has one, else wireguard-go), up, with
its MTU and /32, then compare `wg show podnet.wg dump` with the plan and
send one `wg set` with the difference (a new private key, peers added,
changed or removed). A peer set by hand (a wrong key) is put back by the
next check; a dead wireguard-go (its pidfd wakes the loop at once) is
started again, and the routes through it come back in the same pass.

`wg show` costs a few execs, so a pass checks the interface only when the
plan or the key changed, the process or the link is gone, or RESYNC seconds
have passed (bgp passes run every second).

All kernel work goes through podnet.kernel (links, wireguard).
"""

import logging
import os
import select
import threading
import time

from podnet.kernel import links
from podnet.kernel import wireguard as kwg
from podnet.routing import wireguard as wgp

log = logging.getLogger("podnet.routing")
RESYNC = 5.0
# The guard: `unreachable <cluster CIDR> proto 45`, under the /24s (cni0's,
# podnet.wg's). When podnet.wg is gone (wireguard-go died, and took its
# routes along) a pod packet for another node hits it and fails at once,
# instead of taking the default route and leaving on the underlay in clear.
GUARD_PROTO = 45


def read_key(path):
    with open(path) as f:
        return f.read().strip()


def write_key(path, private_b64):
    """Atomically, mode 0600 from the start (never readable by others, not even briefly)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (private_b64 + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_key(path):
    """The node's private key, made (as `wg genkey` would) when there is none."""
    if not os.path.exists(path):
        write_key(path, wgp.generate_private_key())
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)
    key = read_key(path)
    wgp.public_key(key)  # validates
    return key


class WireguardPart:
    def __init__(self, node, node_dir, dirty, underlay_mtu=1500, cluster_cidr=None):
        self.node = node
        self.key_path = os.path.join(node_dir, wgp.KEY_FILE)
        self.run_root = os.path.join(node_dir, "wireguard")  # bound on /run for wg and wireguard-go
        self.pidfile = os.path.join(self.run_root, "wireguard-go.pid")
        self.log_path = os.path.join(self.run_root, "wireguard-go.log")
        self.dirty = dirty
        self.underlay_mtu = underlay_mtu
        self.cluster_cidr = cluster_cidr
        os.makedirs(self.run_root, mode=0o700, exist_ok=True)
        self.private = ensure_key(self.key_path)
        self.public = wgp.public_key(self.private)
        self.impl = None  # "kernel" / "wireguard-go", once the interface exists
        self.proc = None  # the Popen of a wireguard-go this agent started (reaped here)
        self.watched = None  # the PID a watcher thread waits on
        self.last_check = 0.0
        self.last_sig = None
        self.handshakes = ""
        self.restarts = 0

    def annotations(self):
        ann = {wgp.ANN_KEY: self.public}
        if self.impl:
            ann[wgp.ANN_IMPL] = self.impl
        if self.handshakes:
            ann[wgp.ANN_HANDSHAKES] = self.handshakes
        return ann

    # ---- the process ---------------------------------------------------------------

    def _pid(self):
        if self.proc is not None and self.proc.poll() is not None:
            self.proc = None  # reaped
        return kwg.running(self.pidfile)

    def _watch(self, pid):
        """Wake the routing loop the moment this wireguard-go exits."""
        if self.watched == pid:
            return
        self.watched = pid
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return  # gone already: the pass that follows sees it

        def wait():
            try:
                select.select([fd], [], [])
            finally:
                os.close(fd)
            if self.proc is not None and self.proc.pid == pid:
                self.proc.poll()
            log.warning("wireguard: wireguard-go (pid %d) exited", pid)
            self.dirty.set()

        threading.Thread(target=wait, daemon=True, name="wireguard-go-%d" % pid).start()

    def _ensure_link(self, ipr):
        """-> number of changes. Adopts what runs, starts what is missing."""
        kind = kwg.link_kind(ipr, wgp.DEV)
        pid = self._pid()
        if kind == "wireguard":
            self.impl = kwg.KERNEL
            return 0
        if kind == "tun" and pid:
            if self.impl is None:
                log.info("wireguard: adopted wireguard-go (pid %d) and %s", pid, wgp.DEV)
            self.impl = kwg.USERSPACE
            self._watch(pid)
            return 0
        # missing, or not ours to keep: a TUN without its recorded process, another kind
        if kind is not None:
            log.warning("wireguard: %s is a %s link without its process; replacing it", wgp.DEV, kind)
            links.delete_link(ipr, wgp.DEV)
        if pid:
            log.warning("wireguard: wireguard-go (pid %d) runs without %s; restarting it", pid, wgp.DEV)
        kwg.stop_recorded(self.pidfile)
        if self.impl != kwg.USERSPACE:
            try:
                kwg.create_kernel_link(ipr, wgp.DEV)
                self.impl = kwg.KERNEL
                log.info("wireguard: %s is the kernel's WireGuard (module present)", wgp.DEV)
                return 1
            except kwg.Unsupported as exc:
                log.info("wireguard: %s; using wireguard-go (userspace, TUN)", exc)
        self.proc = kwg.start_userspace(wgp.DEV, self.run_root, self.pidfile, self.log_path)
        self.impl = kwg.USERSPACE
        self.restarts += 1
        self.last_sig = None  # a fresh device: configure it in full
        log.info("wireguard: started wireguard-go (pid %d) for %s", self.proc.pid, wgp.DEV)
        self._watch(self.proc.pid)
        return 1

    # ---- a pass ---------------------------------------------------------------------

    def sync(self, ipr, nodes):
        """-> (changes, Node annotations to publish)."""
        private = ensure_key(self.key_path)
        if private != self.private:
            self.private, self.public = private, wgp.public_key(private)
            log.info("wireguard: new key pair (public key %s)", self.public)
        want = wgp.plan(self.node, nodes, self.underlay_mtu)
        changes = kwg.ensure_unreachable(ipr, self.cluster_cidr, GUARD_PROTO) if self.cluster_cidr else 0
        changes += self._ensure_link(ipr)
        if want.address:
            changes += kwg.ensure_up(ipr, wgp.DEV, want.mtu, want.address)
        sig = (self.private, tuple(sorted(want.peers.items())))
        if changes == 0 and sig == self.last_sig and time.monotonic() - self.last_check < RESYNC:
            return 0, self.annotations()
        state = kwg.show(self.run_root, wgp.DEV)
        if state is None:
            raise links.LinkError("wg show %s: no such interface" % wgp.DEV)
        seen = {k: wgp.SeenPeer(p.endpoint, p.allowed_ips, p.keepalive) for k, p in state.peers.items()}
        args = wgp.set_args(want, state.listen_port, seen)
        new_key = self.private if state.private_key != self.private else None
        if args or new_key:
            kwg.set_device(self.run_root, wgp.DEV, args, private_key=new_key)
            changes += 1
            log.info(
                "wireguard: %s%d peer change(s)",
                "new private key, " if new_key else "",
                sum(1 for a in args if a == "peer"),
            )
        self.handshakes = wgp.handshakes_annotation(want, {k: p.latest_handshake for k, p in state.peers.items()})
        self.last_sig, self.last_check = sig, time.monotonic()
        return changes, self.annotations()
