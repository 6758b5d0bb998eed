"""nftables through the `nft` tool: one script, one atomic transaction.

`nft -f -` applies a whole script or nothing, which is what every podnet
component relies on: a table it owns is changed in one step and never seen
half-written. Removal uses the "add, then delete" idiom (as kube-proxy does
for nft < 1.0.8, which lacks `destroy`): adding an object that exists is a
no-op and the delete that follows then always finds it, so a delete is
idempotent inside the same transaction.
"""

import json

from podnet.kernel.netns import run


class NftError(Exception):
    def __init__(self, op, stderr):
        super().__init__("nft %s: %s" % (op, stderr.strip()))
        self.stderr = stderr


def apply(script, ns=None, what="transaction"):
    res = run(["nft", "-f", "-"], ns=ns, input=script, check=False)
    if res.returncode != 0:
        raise NftError(what, res.stderr or res.stdout)


def list_table(family, table, ns=None, stateless=False):
    """The table as nft's JSON objects (`nft -j list table`; -s with
    stateless: no counter values, so a listing changes only when the rules
    do), or None when the table does not exist."""
    argv = ["nft", "-j"] + (["-s"] if stateless else []) + ["list", "table", family, table]
    res = run(argv, ns=ns, check=False)
    if res.returncode != 0:
        if "No such file" in res.stderr or "does not exist" in res.stderr:
            return None
        raise NftError("list table %s %s" % (family, table), res.stderr)
    try:
        doc = json.loads(res.stdout)
    except ValueError as exc:
        raise NftError("list table %s %s" % (family, table), "unreadable JSON: %s" % exc) from None
    return [item for item in doc.get("nftables", []) if "metainfo" not in item]


def list_table_text(family, table, ns=None):
    """`nft list table` as people read it, for display only (parse list_table's
    JSON instead), or None when the table does not exist."""
    res = run(["nft", "list", "table", family, table], ns=ns, check=False)
    if res.returncode != 0:
        if "No such file" in res.stderr or "does not exist" in res.stderr:
            return None
        raise NftError("list table %s %s" % (family, table), res.stderr)
    return res.stdout


def delete_table(family, table, ns=None):
    apply(
        "add table %s %s\ndelete table %s %s\n" % (family, table, family, table),
        ns=ns,
        what="delete table %s %s" % (family, table),
    )


def quote(text):
    """A string literal for nft scripts (comments)."""
    return '"' + text.replace('"', "'").replace("\\", "/") + '"'
