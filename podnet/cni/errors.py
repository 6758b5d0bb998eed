"""CNI error codes and the one exception type every plugin raises.

Codes 1-99 are the spec's (CNI SPEC.md, "Error codes"); 100+ are free for
plugins, and podnet uses a few so that a runtime (or a person reading the
JSON) can tell "range exhausted" from "interface exists" without parsing text.
"""

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
NOT_AVAILABLE_DAMAGED = 51

# podnet's own codes (documented in the README).
RANGE_EXHAUSTED = 100
ADDRESS_IN_USE = 101
INTERFACE_EXISTS = 102
PORT_IN_USE = 103
INTERNAL = 999


class CNIError(Exception):
    """An error a plugin reports to its runtime: code, msg and details."""

    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, version: str) -> dict[str, str | int]:
        doc: dict[str, str | int] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return doc

    def __str__(self) -> str:
        return "%s (CNI error %d)%s" % (self.msg, self.code, ": " + self.details if self.details else "")
