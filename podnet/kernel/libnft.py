"""nft scripts applied in-process through libnftables, on a kept context.

Why: a small change (the NetworkPolicy agent's partial syncs) through `nft -f`
costs far more than its transaction. Measured at 1,000 policies on kernel
6.18 with nft 1.0.6: the fork and exec of nft and its start cost ~5 ms, and,
worse, when the nf_tables socket of a transaction that deleted anything
(a rule, a chain, a set, an element) is closed, the close waits ~12-15 ms
for the kernel to destroy what was deleted (the same wait nftelem.KEPT
avoids). `nft -f` closes its socket when it exits, so every such change pays
it. Here one libnftables context, and with it its netlink socket, is kept per
network namespace: the kernel frees deleted objects in the background, and
the transaction itself costs what nft's parser and cache reading cost.

The script language and its all-or-nothing transaction are nft's own (the
same library the `nft` tool is), so `apply` is a drop-in for nft.apply; when
libnftables cannot be loaded it falls back to that.

A context is bound to the namespace it was created in (its socket is), so
contexts are keyed by the namespace's inode; at most KEEP are kept (the
oldest is freed first), and forget(ns) frees one, for callers that delete
the namespace (a kept socket keeps its namespace alive).
"""

import ctypes
import os
import threading
from collections import OrderedDict

from podnet.kernel import nft
from podnet.kernel.netns import entered

KEEP = 8  # contexts kept: an agent needs one (its node), the bench and tests a few


class _Lib:
    def __init__(self):
        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib


_lock = threading.Lock()
_lib: _Lib | None = None
_loaded = False
_ctxs: "OrderedDict[tuple[int, int], tuple[int, threading.Lock]]" = OrderedDict()


def _library():
    global _lib, _loaded
    with _lock:
        if not _loaded:
            _loaded = True
            try:
                _lib = _Lib()
            except (OSError, AttributeError):
                _lib = None  # no libnftables here: nft.apply does the work
        return _lib


def _ns_key(ns):
    """The namespace `ns` (a Netns, or None: the thread's own) as (dev, inode)."""
    st = os.fstat(ns.fd) if ns is not None else os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


def _context(lib, ns):
    key = _ns_key(ns)
    with _lock:
        got = _ctxs.get(key)
        if got is not None:
            _ctxs.move_to_end(key)
            return key, got
        with entered(ns):  # the context's socket is opened in the namespace it is created in
            ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise nft.NftError("libnftables context", "nft_ctx_new failed")
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        got = _ctxs[key] = (ctx, threading.Lock())
        while len(_ctxs) > KEEP:
            _, (old, old_lock) = _ctxs.popitem(last=False)
            with old_lock:
                lib.nft_ctx_free(old)
        return key, got


def apply(script, ns=None, what="transaction"):
    """Apply an nft script as one transaction in `ns` (a Netns, None: the
    thread's own); raises nft.NftError naming `what` with nft's message."""
    lib = _library()
    if lib is None:
        return nft.apply(script, ns=ns, what=what)
    while True:
        key, got = _context(lib.lib, ns)
        ctx, ctx_lock = got
        with ctx_lock:
            with _lock:
                if _ctxs.get(key) is not got:
                    continue  # freed (evicted) meanwhile: take a new one
            with entered(ns):  # ctypes lets go of the GIL while nft works
                rc = lib.lib.nft_run_cmd_from_buffer(ctx, script.encode())
                err = (lib.lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        break
    if rc != 0:
        _free(key)  # a failed run leaves nothing to keep; the next one starts afresh
        raise nft.NftError(what, err or "libnftables: error %d" % rc)
    return None


def _free(key):
    lib = _library()
    with _lock:
        got = _ctxs.pop(key, None)
    if got is not None and lib is not None:
        with got[1]:
            lib.lib.nft_ctx_free(got[0])


def forget(ns=None):
    """Free the context kept for `ns` (call before deleting the namespace)."""
    _free(_ns_key(ns))
