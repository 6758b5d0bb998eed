"""Kubernetes-shaped objects as plain dicts: kinds, store keys, parsing,
defaults and validation, label selectors, metadata helpers.

Imports nothing else of podnet. Errors are ApiError (user-facing message);
FieldError ('<path>: <reason>') from validate, ManifestError
('<source>: document N (Kind/name): <path>: <reason>') from parse_manifests.
"""

from podnet.api.kinds import (DEPLOYMENT, ENDPOINTS, ENDPOINTSLICE, KINDS, NAMESPACE,
                              NETWORKPOLICY, NODE, POD, REPLICASET, SERVICE, Kind,
                              resolve_kind, stored_kind)
from podnet.api.keys import key_for, key_of, parse_key, prefix_for
from podnet.api.meta import (ApiError, FieldError, ManifestError, age, controller_of,
                             dns1035_label, dns_label, dns_subdomain, human_duration,
                             iana_svc_name, label_key, label_value, new_meta, owner_reference,
                             parse_time, ref, rfc3339, stamp)
from podnet.api.selectors import (check_selector, format_labels, format_selector, matches,
                                  matches_map, parse_selector, selector_from_map)
from podnet.api.validate import load_yaml, parse_manifests, validate

__all__ = [
    "KINDS", "Kind", "resolve_kind", "stored_kind",
    "NAMESPACE", "NODE", "POD", "DEPLOYMENT", "REPLICASET", "SERVICE", "ENDPOINTSLICE",
    "NETWORKPOLICY", "ENDPOINTS",
    "key_for", "prefix_for", "key_of", "parse_key",
    "ApiError", "FieldError", "ManifestError",
    "parse_manifests", "load_yaml", "validate",
    "new_meta", "stamp", "age", "human_duration", "rfc3339", "parse_time", "ref",
    "owner_reference", "controller_of",
    "dns_label", "dns_subdomain", "dns1035_label", "label_key", "label_value", "iana_svc_name",
    "matches", "matches_map", "parse_selector", "format_selector", "format_labels",
    "selector_from_map", "check_selector",
]
