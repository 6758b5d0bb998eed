"""Where allocations live: a host-local compatible file store, and a fake.

FileStore keeps the on-disk format of the Go host-local plugin, so the two
can share a dataDir (and a node can switch plugins without losing track of
addresses): `<dataDir>/<network>/<ip>` holds `<containerID>\\r\\n<ifname>`,
`last_reserved_ip.<set index>` remembers where round-robin stopped, and one
flock on `<dataDir>/<network>/lock` serialises every writer. That is the file
host-local (go-filemutex) locks, so the two plugins exclude each other.

One difference on purpose: a reservation is written to a temporary file and
then hard-linked to its final name. link() fails with EEXIST like O_EXCL does,
but the file appears with its content already in it, so a plugin killed in the
middle of an ADD never leaves an empty, unattributable reservation behind;
whatever it leaves names its container and GC removes it.
"""

import fcntl
import ipaddress
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from podnet.ipam.ranges import Address

LAST_PREFIX = "last_reserved_ip."
DEFAULT_DATA_DIR = "/var/lib/cni/networks"


Owner = tuple[str, str]
"""(containerID, ifname) of a reservation; ifname is "" in files written by
old host-local versions."""


class Store(Protocol):
    def lock(self) -> AbstractContextManager[object]: ...  # exclusive
    def reserve(self, cid: str, ifname: str, ip: Address, set_index: int) -> bool: ...
    def last_reserved(self, set_index: int) -> Address | None: ...
    def release(self, cid: str, ifname: str) -> list[Address]: ...
    def release_ip(self, ip: Address) -> None: ...
    def owner(self, ip: Address) -> Owner | None: ...
    def by_id(self, cid: str, ifname: str) -> list[Address]: ...
    def allocations(self) -> dict[Address, Owner]: ...
    def clean_temporaries(self) -> None: ...


def _owner(data: bytes) -> Owner:
    # Bytes, not text: text mode would fold the "\r\n" host-local writes.
    cid, _, ifname = data.decode(errors="replace").strip().partition("\r\n")
    return cid.strip(), ifname.strip()


def _rewrite(path: str, data: bytes) -> None:
    """Replace a small file's content in place: write over it, then cut it to
    the new length. Not open(path, "w"): ext4 (auto_da_alloc) forces a file
    truncated to zero out to disk when it is closed, measured 1-2 ms here on
    every ADD; overwriting and cutting to a non-zero length does not. The file
    is only a round-robin hint, read under the same lock."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], done)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class FileStore:
    def __init__(self, network: str, data_dir: str | None = None):
        self.dir = os.path.join(data_dir or DEFAULT_DATA_DIR, network)
        os.makedirs(self.dir, mode=0o755, exist_ok=True)

    @contextmanager
    def lock(self) -> Iterator["FileStore"]:
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self
        finally:
            os.close(fd)  # closing drops the flock

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def reserve(self, cid: str, ifname: str, ip: Address, set_index: int) -> bool:
        final = self._path(str(ip))
        tmp = self._path(".tmp-%d-%s" % (os.getpid(), ip))
        with open(tmp, "wb") as f:
            f.write((cid.strip() + "\r\n" + ifname).encode())
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        _rewrite(self._path(LAST_PREFIX + str(set_index)), str(ip).encode())
        return True

    def last_reserved(self, set_index: int) -> Address | None:
        try:
            with open(self._path(LAST_PREFIX + str(set_index))) as f:
                return ipaddress.ip_address(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def allocations(self) -> dict[Address, Owner]:
        out: dict[Address, Owner] = {}
        for name in os.listdir(self.dir):
            try:
                ip = ipaddress.ip_address(name)
            except ValueError:
                continue  # lock, last_reserved_ip.*, temporaries
            try:
                with open(self._path(name), "rb") as f:
                    out[ip] = _owner(f.read())
            except FileNotFoundError:
                continue
        return out

    def owner(self, ip: Address) -> Owner | None:
        try:
            with open(self._path(str(ip)), "rb") as f:
                return _owner(f.read())
        except FileNotFoundError:
            return None

    def by_id(self, cid: str, ifname: str) -> list[Address]:
        # Files written by old host-local versions carry only the ID.
        return sorted(
            (ip for ip, (c, i) in self.allocations().items() if c == cid and (i == ifname or i == "")), key=str
        )

    def release(self, cid: str, ifname: str) -> list[Address]:
        ips = self.by_id(cid, ifname)
        for ip in ips:
            self.release_ip(ip)
        return ips

    def release_ip(self, ip: Address) -> None:
        try:
            os.unlink(self._path(str(ip)))
        except FileNotFoundError:
            pass

    def clean_temporaries(self) -> None:
        """Temporaries of plugins killed between write and link."""
        for name in os.listdir(self.dir):
            if name.startswith(".tmp-"):
                try:
                    os.unlink(self._path(name))
                except FileNotFoundError:
                    pass


class MemoryStore:
    """In-memory Store for the pure tier; same contract as FileStore."""

    def __init__(self) -> None:
        self.ips: dict[Address, Owner] = {}
        self.last: dict[int, Address] = {}

    @contextmanager
    def lock(self) -> Iterator["MemoryStore"]:
        yield self

    def reserve(self, cid: str, ifname: str, ip: Address, set_index: int) -> bool:
        if ip in self.ips:
            return False
        self.ips[ip] = (cid, ifname)
        self.last[set_index] = ip
        return True

    def last_reserved(self, set_index: int) -> Address | None:
        return self.last.get(set_index)

    def allocations(self) -> dict[Address, Owner]:
        return dict(self.ips)

    def owner(self, ip: Address) -> Owner | None:
        return self.ips.get(ip)

    def by_id(self, cid: str, ifname: str) -> list[Address]:
        return sorted((ip for ip, (c, i) in self.ips.items() if c == cid and i in (ifname, "")), key=str)

    def release(self, cid: str, ifname: str) -> list[Address]:
        ips = self.by_id(cid, ifname)
        for ip in ips:
            del self.ips[ip]
        return ips

    def release_ip(self, ip: Address) -> None:
        self.ips.pop(ip, None)

    def clean_temporaries(self) -> None:
        pass
