"""Only podnet/kernel changes the kernel (the design's layer rule), checked on
the source: outside podnet/kernel no module imports pyroute2, builds an
IPRoute or NetNS, calls pyroute2's request methods (`ipr.link("add", ...)`,
`ipr.route(...)`, `link_lookup`, ...), or runs `ip`, `nft`, `sysctl`,
`bridge`, `wg` or `wireguard-go` (directly, or after `nsenter ... --`). Reads go through
podnet/kernel too (nft.list_table, links.show_json, routes.get_route).

A finding names the file and line. An exception is allowed only here, in
ALLOWED, with the reason next to it.
"""

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "podnet")
TOOLS = {"ip", "nft", "sysctl", "bridge", "wg", "wireguard-go"}
# pyroute2's IPRoute request methods; with a command string first ("add",
# "del", "dump", ...) or one of the lookups
PYROUTE2_REQUESTS = {"link", "addr", "route", "neigh", "fdb", "rule", "tc"}
PYROUTE2_COMMANDS = {"add", "del", "delete", "set", "get", "dump", "replace", "append", "change", "show"}
PYROUTE2_LOOKUPS = {"link_lookup", "get_links", "get_addr", "get_routes", "get_neighbours"}

# (path under podnet/, kind) -> why it may stay
ALLOWED = {
    ("cni/server.py", "pyroute2 import"): "a warm-up import only (no kernel call): the daemon pays the ~250 ms once",
}


def _str(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _argv_tool(elts):
    """The tool a list literal runs: its first string, or the one after
    nsenter's `--`."""
    words = [_str(e) for e in elts]
    if not words or words[0] is None:
        return None
    if words[0] == "nsenter" and "--" in words:
        i = words.index("--")
        return words[i + 1] if i + 1 < len(words) else None
    return words[0]


def findings(path, rel, allowed=ALLOWED):
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(n == "pyroute2" or n.startswith("pyroute2.") for n in names):
                out.append((node.lineno, "pyroute2 import"))
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("IPRoute", "NetNS", "IPDB", "NDB"):
                out.append((node.lineno, "builds a pyroute2 %s" % name))
            elif isinstance(f, ast.Attribute) and (
                name in PYROUTE2_LOOKUPS
                or (name in PYROUTE2_REQUESTS and node.args and _str(node.args[0]) in PYROUTE2_COMMANDS)
            ):
                out.append((node.lineno, "pyroute2 request"))
            for arg in node.args:
                if isinstance(arg, ast.List | ast.Tuple) and len(arg.elts) > 1 and _argv_tool(arg.elts) in TOOLS:
                    out.append((node.lineno, "runs %s" % _argv_tool(arg.elts)))
                elif isinstance(arg, ast.BinOp) and isinstance(arg.left, ast.List):
                    if _argv_tool(arg.left.elts) in TOOLS:
                        out.append((node.lineno, "runs %s" % _argv_tool(arg.left.elts)))
                elif _str(arg) and _str(arg).split(" ", 1)[0] in TOOLS and " " in _str(arg):
                    if name in ("run", "Popen", "system", "check_output", "check_call", "call", "getoutput"):
                        out.append((node.lineno, "runs %s" % _str(arg).split()[0]))
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            # argv = ["ip", ...] built first, run later (a list: a tuple of words is data)
            if len(node.value.elts) > 1 and _argv_tool(node.value.elts) in TOOLS:
                out.append((node.lineno, "runs %s" % _argv_tool(node.value.elts)))
        elif isinstance(node, ast.For) and isinstance(node.iter, ast.List | ast.Tuple):
            # for argv in (["ip", ...], [...]): run(argv)
            for argv in node.iter.elts:
                if isinstance(argv, ast.List) and len(argv.elts) > 1 and _argv_tool(argv.elts) in TOOLS:
                    out.append((node.lineno, "runs %s" % _argv_tool(argv.elts)))
    return [(rel, line, kind) for line, kind in sorted(out) if (rel, kind) not in allowed]


def scan():
    out = []
    for dirpath, dirnames, files in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel_dir = os.path.relpath(dirpath, ROOT)
        if rel_dir == "kernel" or rel_dir.startswith("kernel" + os.sep):
            continue
        for fn in sorted(files):
            if fn.endswith(".py"):
                rel = os.path.normpath(os.path.join(rel_dir, fn))
                out += findings(os.path.join(dirpath, fn), rel)
    return sorted(out)


def test_only_podnet_kernel_touches_the_kernel():
    found = scan()
    assert not found, "kernel calls outside podnet/kernel (move them there, or allow one in ALLOWED with why):\n" + (
        "\n".join("  podnet/%s:%d: %s" % f for f in found)
    )


def test_the_scan_sees_what_it_forbids(tmp_path):
    """The checker itself: each forbidden shape is found, with its line."""
    src = tmp_path / "bad.py"
    src.write_text(
        "import subprocess\n"
        "from pyroute2 import IPRoute\n"
        "ipr = IPRoute()\n"
        'ipr.link("add", ifname="x", kind="dummy")\n'
        'idx = ipr.link_lookup(ifname="x")\n'
        'subprocess.run(["ip", "link", "del", "x"])\n'
        'subprocess.run(["nsenter", "--net=/run/netns/a", "--", "nft", "list", "ruleset"])\n'
        'argv = ["sysctl", "-w", "net.ipv4.ip_forward=1"]\n'
        'subprocess.run("bridge fdb show", shell=True)\n'
        'run(["bridge", "link"] + extra)\n'
        'print(["ip"])\n'  # a one-word list that is no command line: a family name
        'for argv in (["ip", "netns", "add", "a"], ["ip", "-n", "a", "link"]):\n'
        "    subprocess.run(argv)\n"
        'subprocess.Popen(["nsenter", "--net=/run/netns/a", "--", "wireguard-go", "-f", "wg0"])\n'
        'subprocess.run(["wg", "set", "wg0", "peer", key, "remove"])\n'
    )
    kinds = [(line, kind) for _, line, kind in findings(str(src), "bad.py")]
    assert kinds == [
        (2, "pyroute2 import"),
        (3, "builds a pyroute2 IPRoute"),
        (4, "pyroute2 request"),
        (5, "pyroute2 request"),
        (6, "runs ip"),
        (7, "runs nft"),
        (8, "runs sysctl"),
        (9, "runs bridge"),
        (10, "runs bridge"),
        (12, "runs ip"),
        (12, "runs ip"),
        (14, "runs wireguard-go"),
        (15, "runs wg"),
    ]


def test_every_exception_is_still_needed():
    """An ALLOWED entry whose file no longer does that thing goes."""
    stale = [
        (rel, kind)
        for rel, kind in ALLOWED
        if not os.path.exists(os.path.join(ROOT, rel))
        or not any(k == kind for _, _, k in findings(os.path.join(ROOT, rel), rel, allowed={}))
    ]
    assert not stale, "ALLOWED entries no longer needed: %s" % stale
