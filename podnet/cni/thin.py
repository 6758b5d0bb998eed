"""The Python thin CNI executable: forward one CNI call to the warm podnet daemon.

What a runtime execs first is the compiled forwarder (native/podnet-cni.c, see
install.py): it does this module's fast path itself (the daemonSocket byte
scan, the wire format below, the relay of the answer) in about a C program's
start-up time. For everything else (no daemonSocket, a value with escapes,
nobody listening, anything unexpected before the request goes out) it execs
the generated script that runs `main` here, with the same stdin bytes, so the
fallbacks below have one implementation. Without a C compiler at install time
the generated script is itself the plugin, and all of this runs here.

A CNI runtime execs a plugin for every ADD/DEL/CHECK, so the executable's
start-up is on every pod's critical path. On this kind of machine Python itself
starts in ~13 ms, and `import json, socket` alone would add ~20 ms (json pulls
in `re`, socket pulls in `enum` and `selectors`). This module therefore imports
nothing beyond what the interpreter has already loaded plus the C module
`_socket`, and does not parse JSON: it finds the one top-level string field it
needs (`daemonSocket`) with a byte scan and hands the raw bytes to the daemon,
which does the real parsing, validation and netlink work.

Without `daemonSocket`, or when the daemon is not listening, the same handler
runs in this process (`podnet.cni.dispatch`): correct, but it pays the import
of pyroute2 (~270 ms). STATUS is the exception: a configured daemon that is
down means ADD cannot be served fast, so STATUS answers error 50.

Wire format (both directions are one stream, the client half-closes after the
request):
  request:  b"PNCNI1\\0" plugin b"\\0" (KEY=VALUE b"\\0")* b"\\0" stdin-bytes
  response: b"<rc>\\0<len(stdout)>\\0" stdout-bytes stderr-bytes
"""

MAGIC = b"PNCNI1\0"
# Only these reach the daemon: the CNI contract plus what a runtime may set for us.
FORWARDED_ENV = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH", "PODNET_LOG")


def encode_request(plugin, env, stdin):
    parts = [MAGIC, plugin.encode(), b"\0"]
    for key in FORWARDED_ENV:
        value = env.get(key)
        if value is not None:
            parts.append(("%s=%s" % (key, value)).encode() + b"\0")
    parts.append(b"\0")
    parts.append(stdin)
    return b"".join(parts)


def decode_request(data):
    """-> (plugin, env, stdin); raises ValueError on a malformed frame."""
    if not data.startswith(MAGIC):
        raise ValueError("not a podnet CNI request")
    pos = len(MAGIC)
    end = data.index(b"\0", pos)
    plugin = data[pos:end].decode()
    pos = end + 1
    env = {}
    while True:
        end = data.index(b"\0", pos)
        if end == pos:
            pos += 1
            break
        key, _, value = data[pos:end].decode().partition("=")
        env[key] = value
        pos = end + 1
    return plugin, env, data[pos:]


def encode_response(rc, out, err):
    return b"%d\0%d\0" % (rc, len(out)) + out + err


def decode_response(data):
    first = data.index(b"\0")
    second = data.index(b"\0", first + 1)
    rc = int(data[:first])
    size = int(data[first + 1 : second])
    body = data[second + 1 :]
    return rc, body[:size], body[size:]


def find_string_field(raw, name):
    """Value of the JSON string field `name`, or None; no json import.

    Returns None too when the value has escapes: the caller then parses the
    document properly (a socket path with backslashes is rare enough)."""
    key = b'"' + name.encode() + b'"'
    at = raw.find(key)
    if at < 0 or raw.find(key, at + 1) >= 0:
        return None
    pos = at + len(key)
    n = len(raw)
    while pos < n and raw[pos] in b" \t\r\n":
        pos += 1
    if pos >= n or raw[pos] != 58:  # ':'
        return None
    pos += 1
    while pos < n and raw[pos] in b" \t\r\n":
        pos += 1
    if pos >= n or raw[pos] != 34:  # '"'
        return None
    end = raw.find(b'"', pos + 1)
    if end < 0:
        return None
    value = raw[pos + 1 : end]
    if b"\\" in value:
        import json  # rare path: let the real parser decide

        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        found = doc.get(name) if isinstance(doc, dict) else None
        return found if isinstance(found, str) else None
    return value.decode("utf-8", "replace")


def call_daemon(path, request, timeout=120.0):
    """Send one request; returns the raw response, or None when nobody listens."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        for attempt in range(200):
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                return None
            except BlockingIOError:  # backlog full under a burst: wait our turn
                import time

                time.sleep(0.01 * min(attempt + 1, 10))
        else:
            raise TimeoutError("podnet daemon at %s: backlog stayed full" % path)
        sock.sendall(request)
        sock.shutdown(_socket.SHUT_WR)
        return read_all(sock)
    finally:
        sock.close()


def read_all(sock):
    """Everything until the peer half-closes (both ends frame this way)."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _json_str(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def status_down_error(raw, path):
    version = find_string_field(raw, "cniVersion") or "1.1.0"
    msg = "podnet daemon is not running"
    details = "nothing listens on daemonSocket %s; start it with 'podnet cni serve'" % path
    return (
        '{"cniVersion": %s, "code": 50, "msg": %s, "details": %s}\n'
        % (_json_str(version), _json_str(msg), _json_str(details))
    ).encode()


def run_in_process(plugin, env, raw):
    # The generated executable put this checkout and the venv's site-packages
    # on sys.path, so the full handler (and pyroute2) import from there.
    from podnet.cni.dispatch import run

    return run(plugin, env, raw)


def environ():
    """The process environment as str without importing os (~2 ms here):
    `posix` is built in and already loaded by the interpreter."""
    import posix

    return {
        k.decode(errors="surrogateescape"): v.decode(errors="surrogateescape")
        for k, v in posix.environ.items()
        if k.startswith(b"CNI_") or k == b"PODNET_LOG"
    }


def main(plugin, env, stdin, stdout, stderr):
    """The executable's whole job; returns the exit code."""
    raw = stdin.read()
    path = find_string_field(raw, "daemonSocket")
    if path:
        reply = call_daemon(path, encode_request(plugin, env, raw))
        if reply is not None:
            rc, out, err = decode_response(reply)
            stdout.write(out)
            stderr.write(err)
            return rc
        if env.get("CNI_COMMAND") == "STATUS":
            stdout.write(status_down_error(raw, path))
            return 1
        stderr.write(b"podnet: daemon at %s not reachable, running in-process\n" % path.encode())
    rc, out, err = run_in_process(plugin, env, raw)
    stdout.write(out)
    stderr.write(err)
    return rc
