"""Allocate, release and garbage-collect addresses over a Store.

Every decision happens under the store's lock and is re-read from the store
each time (no in-memory copy survives between calls), so concurrent plugin
processes, a daemon's threads and the Go host-local can share one dataDir.
"""

from collections.abc import Collection, Sequence

from podnet.ipam.ranges import Address, Range, candidates, range_for, set_contains
from podnet.ipam.store import Owner, Store


class AllocationError(Exception):
    pass


class Exhausted(AllocationError):
    pass


class AddressInUse(AllocationError):
    pass


class NotInRange(AllocationError):
    pass


class Allocator:
    def __init__(self, range_sets: Sequence[Sequence[Range]], store: Store):
        self.sets = range_sets
        self.store = store

    def allocate(self, cid: str, ifname: str, requested: Sequence[Address] = ()) -> list[tuple[Address, Range]]:
        """One address per range set -> [(ip, Range)], all or nothing.

        No scan for addresses the attachment may already hold: that would
        read every reservation on every ADD. A retried ADD after a crash
        takes a second address, and the DEL the runtime sends for the failed
        attempt (or GC) releases everything the attachment holds."""
        for ip in requested:
            if not any(set_contains(s, ip) for s in self.sets):
                raise NotInRange("requested address %s is in none of the configured ranges" % ip)
        with self.store.lock():
            taken: list[tuple[Address, Range]] = []
            try:
                for index, rset in enumerate(self.sets):
                    taken.append(self._one(cid, ifname, index, rset, requested))
            except AllocationError:
                for ip, _ in taken:
                    self.store.release_ip(ip)
                raise
            return taken

    def _one(
        self, cid: str, ifname: str, index: int, rset: Sequence[Range], requested: Sequence[Address]
    ) -> tuple[Address, Range]:
        wanted = [(ip, rng) for ip in requested if (rng := range_for(rset, ip)) is not None]
        if wanted:
            ip, rng = wanted[0]
            if ip == rng.gateway:
                raise AddressInUse("requested address %s is the gateway of %s" % (ip, rng.subnet))
            if not self.store.reserve(cid, ifname, ip, index):
                owner = self.store.allocations().get(ip, ("?", "?"))
                raise AddressInUse("requested address %s is already allocated to container %s" % (ip, owner[0]))
            return ip, rng
        for ip, rng in candidates(rset, self.store.last_reserved(index)):
            if self.store.reserve(cid, ifname, ip, index):
                return ip, rng
        raise Exhausted("no free address left in %s" % ", ".join("%s-%s" % (r.start, r.end) for r in rset))

    def release(self, cid: str, ifname: str, hint: Sequence[Address] = ()) -> list[Address]:
        """Release everything the attachment holds. `hint` (the addresses in
        prevResult) lets the common case check just those files instead of
        reading every reservation; the full scan still runs when a hinted
        address turns out not to be the attachment's."""
        with self.store.lock():
            if hint:
                owned = [ip for ip in hint if self.store.owner(ip) in ((cid, ifname), (cid, ""))]
                if len(owned) == len(hint):
                    for ip in owned:
                        self.store.release_ip(ip)
                    return owned
            return self.store.release(cid, ifname)

    def held(self, cid: str, ifname: str) -> list[Address]:
        with self.store.lock():
            return self.store.by_id(cid, ifname)

    def gc(self, valid: Collection[Owner]) -> list[Address]:
        """Release every allocation whose (containerID, ifname) is not in
        `valid`; returns the released addresses."""
        released: list[Address] = []
        with self.store.lock():
            self.store.clean_temporaries()
            for ip, (cid, ifname) in self.store.allocations().items():
                if not cid:
                    continue  # an empty file: another writer mid-reservation; not ours to judge
                if (cid, ifname) in valid or (ifname == "" and any(c == cid for c, _ in valid)):
                    continue
                self.store.release_ip(ip)
                released.append(ip)
        return sorted(released, key=str)

    def free_counts(self) -> list[int]:
        """Free addresses per range set (for STATUS)."""
        with self.store.lock():
            used = self.store.allocations()
        counts = []
        for rset in self.sets:
            size = sum(r.size - (1 if r.gateway in r else 0) for r in rset)
            counts.append(size - sum(1 for ip in used if set_contains(rset, ip)))
        return counts
