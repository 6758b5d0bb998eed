"""What podnet does with each field of a pod spec, a Service and a workload:
nothing is accepted and then ignored.

A manifest that looks applied while the cluster does something else is worse
than an error. So every field of the structures below is in one of three
groups:

* SUPPORTED: podnet gives it its Kubernetes meaning. The validators in
  podspec.py and network.py check its value; tests/unit/test_accepted_fields.py
  names, for each one, the test that observes its effect.
* a value that asks for nothing: null, {}, [], "" (what `kubectl create
  --dry-run -o yaml` writes, e.g. `resources: {}`), or the value Kubernetes
  itself defaults the field to (DEFAULTS), as a manifest round-tripped through
  `kubectl get -o yaml` carries them. Kept as given: it changes nothing.
* anything else: refused with the field's path and what podnet would have to
  do for it, so the user learns it before relying on it.

Fields that are not in the Kubernetes schema at all are refused too
(`unknown field`); the API server prunes or refuses them before this runs,
following fieldValidation, so this matters for callers of validate() that do
not go through it.
"""

from collections.abc import Callable

from podnet.api.fields import join, shown
from podnet.api.meta import fail
from podnet.api.types import JSON, Obj

# Each structure: the fields podnet implements.
SUPPORTED: dict[str, frozenset[str]] = {
    k: frozenset(v.split())
    for k, v in {
        "PodSpec": "containers initContainers restartPolicy terminationGracePeriodSeconds nodeName nodeSelector"
        " hostNetwork hostname subdomain dnsPolicy dnsConfig hostAliases",
        "Container": "name image imagePullPolicy command args workingDir env ports readinessProbe livenessProbe"
        " startupProbe lifecycle",
        "ContainerPort": "containerPort protocol name hostPort hostIP",
        "EnvVar": "name value valueFrom",
        "EnvVarSource": "fieldRef",
        "ObjectFieldSelector": "fieldPath apiVersion",
        "Probe": "exec httpGet tcpSocket initialDelaySeconds timeoutSeconds periodSeconds successThreshold"
        " failureThreshold terminationGracePeriodSeconds",
        "HTTPGetAction": "path port host scheme httpHeaders",
        "Lifecycle": "preStop",
        "LifecycleHandler": "exec httpGet sleep",
        "ServiceSpec": "type selector ports clusterIP clusterIPs externalIPs externalName sessionAffinity"
        " sessionAffinityConfig externalTrafficPolicy internalTrafficPolicy healthCheckNodePort loadBalancerIP"
        " loadBalancerSourceRanges publishNotReadyAddresses ipFamilies ipFamilyPolicy",
        "ServicePort": "name protocol port targetPort nodePort appProtocol",
        "DeploymentSpec": "replicas selector template strategy minReadySeconds revisionHistoryLimit paused"
        " progressDeadlineSeconds",
        "ReplicaSetSpec": "replicas selector template minReadySeconds",
        # Ingress (networking.k8s.io/v1): what podnet's nginx data plane implements
        "IngressClassSpec": "controller",
        "IngressSpec": "ingressClassName defaultBackend rules tls",
        "IngressBackend": "service",
        "IngressServiceBackend": "name port",
        "ServiceBackendPort": "name number",
        "IngressRule": "host http",
        "HTTPIngressRuleValue": "paths",
        "HTTPIngressPath": "path pathType backend",
        "IngressTLS": "hosts secretName",
        # the Gateway API (gateway.networking.k8s.io/v1)
        "GatewayClassSpec": "controllerName description",
        "GatewaySpec": "gatewayClassName listeners",
        "Listener": "name hostname port protocol tls allowedRoutes",
        "GatewayTLSConfig": "mode certificateRefs",
        "SecretObjectReference": "group kind name namespace",
        "AllowedRoutes": "namespaces kinds",
        "RouteNamespaces": "from",
        "RouteGroupKind": "group kind",
        "HTTPRouteSpec": "parentRefs hostnames rules",
        "ParentReference": "group kind namespace name sectionName",
        "HTTPRouteRule": "matches filters backendRefs",
        "HTTPRouteMatch": "path headers queryParams method",
        "HTTPPathMatch": "type value",
        "HTTPHeaderMatch": "type name value",
        "HTTPQueryParamMatch": "type name value",
        "HTTPRouteFilter": "type requestHeaderModifier urlRewrite requestRedirect",
        "HTTPHeaderFilter": "set add remove",
        "HTTPHeader": "name value",
        "HTTPURLRewriteFilter": "hostname path",
        "HTTPPathModifier": "type replaceFullPath replacePrefixMatch",
        "HTTPRequestRedirectFilter": "scheme hostname port statusCode",
        "HTTPBackendRef": "group kind name namespace port weight",
    }.items()
}

# Every field of each structure that podnet does not implement, with why, as the
# user reads it in the error. (The lists are Kubernetes' schema; the test checks
# that SUPPORTED and these together are exactly the schema's fields.)
_NOT_RUN = "podnet's containers are host processes"
UNSUPPORTED: dict[str, dict[str, str]] = {
    "PodSpec": {
        "activeDeadlineSeconds": "podnet does not end pods after a deadline",
        "affinity": "podnet's scheduler places pods by nodeSelector and spreads replicas; it has no affinity rules",
        "automountServiceAccountToken": "podnet mounts no service account token",
        "enableServiceLinks": "podnet does not inject Service environment variables; use the cluster DNS",
        "ephemeralContainers": "podnet has no ephemeral containers; use `kubectl exec`",
        "evictionResponders": "podnet does not evict pods",
        # podnet's containers always share the host's IPC and PID namespaces:
        # true is what happens, false (the default) is tolerated as a default
        "hostIPC": "",
        "hostPID": "",
        "hostUsers": "podnet runs no user namespaces",
        "hostnameOverride": "the pod's hostname is spec.hostname or its name",
        "imagePullSecrets": "podnet pulls no images",
        "os": "podnet nodes are Linux",
        "overhead": "podnet does not account resources",
        "preemptionPolicy": "podnet's scheduler does not preempt",
        "priority": "podnet's scheduler has no priorities",
        "priorityClassName": "podnet's scheduler has no priorities",
        "readinessGates": "podnet computes readiness from the containers only",
        "resourceClaims": "podnet does not allocate devices",
        "resources": "podnet does not enforce resource requests or limits",
        "runtimeClassName": "podnet has one runtime",
        "schedulerName": "podnet has one scheduler (default-scheduler)",
        "schedulingGates": "podnet's scheduler has no gates",
        "schedulingGroup": "podnet's scheduler has no gang scheduling",
        "securityContext": _NOT_RUN + " running as the agent's user; podnet applies no security context",
        "serviceAccount": "podnet has no service accounts for pods",
        "serviceAccountName": "podnet has no service accounts for pods",
        "setHostnameAsFQDN": "the pod's hostname is its short name",
        "shareProcessNamespace": "podnet's containers share no PID namespace",
        "tolerations": "podnet nodes have no taints",
        "topologySpreadConstraints": "podnet's scheduler spreads replicas over nodes by itself; no constraints",
        "volumes": "podnet pods have no volumes",
    },
    "Container": {
        "envFrom": "podnet has no ConfigMaps or Secrets to take variables from",
        "resizePolicy": "podnet does not enforce resources",
        "resources": "podnet does not enforce resource requests or limits",
        "restartPolicy": "podnet has no sidecar containers; the pod's restartPolicy applies",
        "restartPolicyRules": "the pod's restartPolicy applies",
        "securityContext": _NOT_RUN + " running as the agent's user; podnet applies no security context",
        "stdin": "podnet's containers have no standard input; use `kubectl exec -i`",
        "stdinOnce": "podnet's containers have no standard input",
        "terminationMessagePath": "podnet writes no termination message",
        "terminationMessagePolicy": "podnet writes no termination message",
        "tty": "podnet's containers have no terminal; use `kubectl exec -t`",
        "volumeDevices": "podnet pods have no volumes",
        "volumeMounts": "podnet pods have no volumes",
    },
    "ContainerPort": {},
    "EnvVar": {},
    "EnvVarSource": {
        "configMapKeyRef": "podnet has no ConfigMaps",
        "fileKeyRef": "podnet pods have no volumes",
        "resourceFieldRef": "podnet does not enforce resources",
        "secretKeyRef": "podnet has no Secrets for pods",
    },
    "ObjectFieldSelector": {},
    "Probe": {"grpc": "use httpGet, tcpSocket or exec"},
    "HTTPGetAction": {"protocol": "probes and hooks use HTTP over TCP"},
    "Lifecycle": {
        "postStart": "podnet runs only the preStop hook",
        "stopSignal": "podnet stops containers with SIGTERM",
    },
    "LifecycleHandler": {"tcpSocket": "a tcpSocket lifecycle hook has no effect in Kubernetes either; use exec"},
    "ServiceSpec": {
        "allocateLoadBalancerNodePorts": "podnet always gives a LoadBalancer Service node ports",
        "loadBalancerClass": "podnet's LoadBalancer is the only one: it would take the Service anyway",
        "trafficDistribution": "podnet's nodes have no zones; every endpoint is equally close",
    },
    "ServicePort": {},
    "DeploymentSpec": {},
    "ReplicaSetSpec": {},
    "IngressClassSpec": {"parameters": "podnet's ingress controller takes no parameters"},
    "IngressSpec": {},
    "IngressBackend": {"resource": "podnet's ingress sends to Services only"},
    "IngressServiceBackend": {},
    "ServiceBackendPort": {},
    "IngressRule": {},
    "HTTPIngressRuleValue": {},
    "HTTPIngressPath": {},
    "IngressTLS": {},
    "GatewayClassSpec": {"parametersRef": "podnet's gateway controller takes no parameters"},
    "GatewaySpec": {
        "addresses": "podnet's gateway takes its address from the lab's load balancer pool",
        "infrastructure": "podnet labels and annotates its gateway's resources itself",
        "allowedListeners": "podnet has no ListenerSets",
        "backendTLS": "podnet's gateway speaks plain HTTP to backends",
        "tls": "podnet's gateway has no gateway-wide TLS settings",
    },
    "Listener": {},
    "GatewayTLSConfig": {"options": "podnet's gateway has no TLS options"},
    "SecretObjectReference": {},
    "AllowedRoutes": {},
    "RouteNamespaces": {"selector": "podnet's gateway admits routes from Same or All namespaces"},
    "RouteGroupKind": {},
    "HTTPRouteSpec": {},
    "ParentReference": {"port": "podnet's routes attach to a Gateway or one of its listeners by sectionName"},
    "HTTPRouteRule": {
        "name": "podnet has no policies that name a rule",
        "timeouts": "podnet's HTTPRoute has no timeouts",
        "retry": "podnet's HTTPRoute does not retry",
        "sessionPersistence": "podnet's HTTPRoute has no session persistence",
    },
    "HTTPRouteMatch": {},
    "HTTPPathMatch": {},
    "HTTPHeaderMatch": {},
    "HTTPQueryParamMatch": {},
    "HTTPRouteFilter": {
        "responseHeaderModifier": "podnet's HTTPRoute modifies request headers only",
        "requestMirror": "podnet does not mirror requests",
        "extensionRef": "podnet has no filter extensions",
        "cors": "podnet does not answer CORS requests",
        "externalAuth": "podnet has no external authorization",
    },
    "HTTPHeaderFilter": {},
    "HTTPHeader": {},
    "HTTPURLRewriteFilter": {},
    "HTTPPathModifier": {},
    "HTTPRequestRedirectFilter": {"path": "podnet's redirect keeps the request's path"},
    "HTTPBackendRef": {"filters": "podnet's HTTPRoute has filters per rule, not per backend"},
}

# The structures that are not Kubernetes' own (for the error of an unknown field).
_SCHEMA = {
    t: "the Gateway API"
    for t in SUPPORTED
    if t.startswith(("Gateway", "HTTPRoute", "HTTPHeader", "HTTPPath", "HTTPQuery", "HTTPURL", "HTTPRequest"))
    or t in ("Listener", "SecretObjectReference", "AllowedRoutes", "RouteNamespaces", "RouteGroupKind")
    or t in ("ParentReference", "HTTPBackendRef")
}

# Kubernetes' own defaults for fields podnet does not implement: a manifest
# that spells the default asks for nothing podnet does not do. A callable gets
# (value, the structure) for defaults that depend on another field.
DEFAULTS: dict[tuple[str, str], Callable[[JSON, Obj], bool]] = {
    ("PodSpec", "schedulerName"): lambda v, _: v == "default-scheduler",
    ("PodSpec", "priority"): lambda v, _: v == 0,
    ("PodSpec", "preemptionPolicy"): lambda v, _: v == "PreemptLowerPriority",
    ("PodSpec", "serviceAccountName"): lambda v, _: v == "default",
    ("PodSpec", "serviceAccount"): lambda v, _: v == "default",
    ("PodSpec", "hostIPC"): lambda v, _: isinstance(v, bool),
    ("PodSpec", "hostPID"): lambda v, _: isinstance(v, bool),
    ("PodSpec", "hostUsers"): lambda v, _: v is True,
    ("PodSpec", "shareProcessNamespace"): lambda v, _: v is False,
    ("PodSpec", "setHostnameAsFQDN"): lambda v, _: v is False,
    # podnet does what `false` asks: no token, no Service variables
    ("PodSpec", "automountServiceAccountToken"): lambda v, _: v is False,
    ("PodSpec", "enableServiceLinks"): lambda v, _: v is False,
    ("Container", "terminationMessagePath"): lambda v, _: v == "/dev/termination-log",
    ("Container", "terminationMessagePolicy"): lambda v, _: v == "File",
    ("ServiceSpec", "allocateLoadBalancerNodePorts"): lambda v, _: v is True,
    ("Container", "stdin"): lambda v, _: v is False,
    ("Container", "stdinOnce"): lambda v, _: v is False,
    ("Container", "tty"): lambda v, _: v is False,
}


def default_pull_policy(image: object) -> str:
    """Kubernetes' default imagePullPolicy: Always for a `:latest` or untagged
    image (no digest), else IfNotPresent."""
    if not isinstance(image, str) or "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def empty(v: JSON) -> bool:
    """null, "", [] or a mapping of empty values: a field that asks for nothing."""
    if v is None or v == "" or v == []:
        return True
    if isinstance(v, dict):
        return all(empty(x) for x in v.values())
    return False


def check(struct: Obj, path: str, type_name: str) -> None:
    """Refuse, with its path, every field of `struct` (a Kubernetes `type_name`)
    that podnet would accept and then ignore."""
    supported = SUPPORTED[type_name]
    unsupported = UNSUPPORTED[type_name]
    for key, value in struct.items():
        if key in supported:
            continue
        if key not in unsupported:
            fail(join(path, key), "unknown field (not in %s's %s)" % (_SCHEMA.get(type_name, "Kubernetes"), type_name))
        default = DEFAULTS.get((type_name, key))
        if empty(value) or (default is not None and default(value, struct)):
            continue
        fail(join(path, key), "not supported by podnet: %s (got %s)" % (unsupported[key], _brief(value)))


def _brief(v: JSON) -> str:
    text = shown(v)
    return text if len(text) <= 60 else text[:57] + "..."
