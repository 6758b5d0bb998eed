"""A prebuilt copy of the API server's schema (podnet.apiserver.schema).

Building it costs ~0.35 s of CPU (importing the Python client's models) at
every API server start, each lab up and each test's server, and the first
create waits for it. `./setup.sh` writes the result next to this module
(`python -m podnet.apiserver.schemacache --write`; git-ignored, like the CNI
executables in build/). A copy made from another client version, another
version of schema.py or another set of served kinds is not used: the
schema is then built as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

from podnet.apiserver import openapi_gateway, resources, schema

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi-schema.json")


def fingerprint() -> str:
    try:
        from importlib.metadata import version

        client = version("kubernetes")
    except Exception:  # no client: nothing to build from either way
        client = "?"
    digest = hashlib.sha256()
    for source in (schema.__file__, openapi_gateway.__file__):  # both build the schema
        with open(source, "rb") as f:
            digest.update(f.read())
    mine = digest.hexdigest()[:16]
    kinds = ",".join(sorted("%s/%s/%s" % (r.group, r.version, r.kind.kind) for r in resources.RESOURCES))
    return "%s/%s/%s" % (client, mine, hashlib.sha256(kinds.encode()).hexdigest()[:16])


def read(path: str = CACHE) -> schema.Schema | None:
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if doc.get("fingerprint") != fingerprint():
        return None
    return schema.Schema(doc["defs"], {(g, v, k): name for g, v, k, name in doc["kinds"]})


def write(path: str = CACHE) -> str:
    built = schema._build()
    doc = {
        "fingerprint": fingerprint(),
        "defs": built.defs,
        "kinds": [[g, v, k, name] for (g, v, k), name in built.kinds.items()],
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python -m podnet.apiserver.schemacache --write")
    print(write())
