"""FileStore rewrites last_reserved_ip.N in place (no truncate-to-zero, which
costs an ext4 flush per ADD): the file must still hold exactly the last
address, also when it is shorter than the one before."""

import ipaddress

from podnet.ipam.store import FileStore


def test_last_reserved_shrinks_and_grows_exactly(tmp_path):
    store = FileStore("net", str(tmp_path))
    path = tmp_path / "net" / "last_reserved_ip.0"
    for text in ("10.0.0.100", "10.0.0.9", "10.0.0.10", "fd00::1"):
        ip = ipaddress.ip_address(text)
        with store.lock():
            assert store.reserve("cid-" + text, "eth0", ip, 0)
        assert path.read_bytes() == text.encode()
        assert store.last_reserved(0) == ip
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    import os

    old = os.umask(0)
    os.umask(old)
    return old
