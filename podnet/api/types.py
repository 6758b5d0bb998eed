"""Type aliases for Kubernetes objects as plain dicts.

Objects stay the JSON the API speaks (`json.loads` of a manifest or a store
value), so their static type is a dict keyed by field name. A recursive JSON
type would make every nested read (`obj["spec"]["ports"][0]["port"]`) need a
cast or an isinstance check; validation (podnet.api.validate) is where the
shape is checked, at run time, with the field path in the error.
"""

from typing import Any, TypeAlias

JSON: TypeAlias = Any
"""Any JSON value: dict, list, str, int, float, bool or None."""

Obj: TypeAlias = dict[str, JSON]
"""A JSON object: a whole Kubernetes object, or any nested mapping in one."""
