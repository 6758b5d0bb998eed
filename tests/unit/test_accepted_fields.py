"""Nothing accepted and ignored (issue 11): every field of a pod spec, a
container, a Service and a workload in Kubernetes' schema either has an effect
that a named test observes, or is refused with its field path. The same holds
for Ingress and the Gateway API (issue 14).

The schema is the official Python client's models (what kubectl and client
libraries send); for the Gateway API, which the client has no models for, the
schema podnet serves (podnet.apiserver.openapi_gateway, every field of the v1
standard channel). For each field podnet implements, EVIDENCE names the test
that sees what it does; the test must exist. Every other field, given a value
that asks for something, is refused by validate() at its own path.
"""

import ast
import copy
import os

import kubernetes.client as k8s
import pytest

from podnet.api import FieldError, validate
from podnet.api.support import DEFAULTS, SUPPORTED, UNSUPPORTED
from podnet.apiserver import openapi_gateway

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODELS = {
    "PodSpec": k8s.V1PodSpec,
    "Container": k8s.V1Container,
    "ContainerPort": k8s.V1ContainerPort,
    "EnvVar": k8s.V1EnvVar,
    "EnvVarSource": k8s.V1EnvVarSource,
    "ObjectFieldSelector": k8s.V1ObjectFieldSelector,
    "Probe": k8s.V1Probe,
    "HTTPGetAction": k8s.V1HTTPGetAction,
    "Lifecycle": k8s.V1Lifecycle,
    "LifecycleHandler": k8s.V1LifecycleHandler,
    "ServiceSpec": k8s.V1ServiceSpec,
    "ServicePort": k8s.V1ServicePort,
    "DeploymentSpec": k8s.V1DeploymentSpec,
    "ReplicaSetSpec": k8s.V1ReplicaSetSpec,
    "IngressClassSpec": k8s.V1IngressClassSpec,
    "IngressSpec": k8s.V1IngressSpec,
    "IngressBackend": k8s.V1IngressBackend,
    "IngressServiceBackend": k8s.V1IngressServiceBackend,
    "ServiceBackendPort": k8s.V1ServiceBackendPort,
    "IngressRule": k8s.V1IngressRule,
    "HTTPIngressRuleValue": k8s.V1HTTPIngressRuleValue,
    "HTTPIngressPath": k8s.V1HTTPIngressPath,
    "IngressTLS": k8s.V1IngressTLS,
}
# The Gateway API's structures: {field: type code} (openapi_gateway's table).
GATEWAY_TYPES = openapi_gateway.table()

U = "tests/unit/"
K = "tests/kernel/"
A = "tests/api/"
# Type.field -> the test that observes the field's effect (or, for a field whose
# only allowed values are what podnet does, the test of that refusal).
EVIDENCE = {
    "PodSpec.containers": K + "test_lab.py::test_a_pod_reaches_another_on_the_same_node_by_its_ip",
    "PodSpec.initContainers": K + "test_pod_lifecycle.py::test_init_containers_run_in_order_before_the_app",
    "PodSpec.restartPolicy": K + "test_lab.py::test_restart_policies_and_the_restart_count",
    "PodSpec.terminationGracePeriodSeconds": K + "test_pod_lifecycle.py::test_prestop_runs_before_sigterm",
    "PodSpec.nodeName": K + "test_lab.py::test_nodes_and_pod_ips_come_from_their_node_podcidr",
    "PodSpec.nodeSelector": U + "test_planners.py::test_placement_selector_readiness_and_least_loaded",
    "PodSpec.hostNetwork": K + "test_lab.py::test_a_host_network_pod_shares_the_node_stack",
    "PodSpec.hostname": K
    + "test_service_semantics.py::test_a_hostname_is_a_dns_name_only_in_the_headless_service_its_subdomain_names",
    "PodSpec.subdomain": K
    + "test_service_semantics.py::test_a_hostname_is_a_dns_name_only_in_the_headless_service_its_subdomain_names",
    "PodSpec.dnsPolicy": K
    + "test_service_semantics.py::test_a_host_network_pod_with_cluster_first_with_host_net_asks_the_cluster_dns",
    "PodSpec.dnsConfig": K + "test_dns.py::test_every_pod_gets_a_resolv_conf_by_its_dns_policy",
    "PodSpec.hostAliases": K + "test_pod_lifecycle.py::test_host_aliases_are_in_the_pods_etc_hosts",
    "Container.name": A + "test_kubectl_lab.py::test_exec_runs_in_the_container_environment",
    "Container.image": K + "test_lab.py::test_an_image_podnet_cannot_run_says_so_on_the_pod",
    "Container.imagePullPolicy": K + "test_images.py::test_image_errors_are_kubernetes_and_a_local_image_fixes_them",
    "Container.command": K + "test_pod_fields.py::test_working_dir_command_args_and_env_as_kubernetes_runs_them",
    "Container.args": K + "test_pod_fields.py::test_working_dir_command_args_and_env_as_kubernetes_runs_them",
    "Container.workingDir": K + "test_pod_fields.py::test_working_dir_command_args_and_env_as_kubernetes_runs_them",
    "Container.env": K + "test_pod_fields.py::test_working_dir_command_args_and_env_as_kubernetes_runs_them",
    "Container.ports": U + "test_planners.py::test_endpointslices_conditions_named_ports_and_nodes",
    "Container.readinessProbe": K + "test_lab.py::test_a_failing_readiness_probe_keeps_the_pod_out_of_ready_endpoints",
    "Container.livenessProbe": K + "test_pod_lifecycle.py::test_a_failing_liveness_probe_restarts_the_container",
    "Container.startupProbe": K + "test_pod_lifecycle.py::test_a_startup_probe_holds_readiness_until_it_passes",
    "Container.lifecycle": K + "test_pod_lifecycle.py::test_prestop_runs_before_sigterm",
    "ContainerPort.containerPort": U + "test_planners.py::test_endpointslices_conditions_named_ports_and_nodes",
    "ContainerPort.name": U + "test_planners.py::test_endpointslices_conditions_named_ports_and_nodes",
    "ContainerPort.protocol": U + "test_planners.py::test_endpointslices_conditions_named_ports_and_nodes",
    "ContainerPort.hostPort": K
    + "test_pod_node_duties.py::test_a_host_port_is_published_at_the_node_ip_and_guarded_on_the_node",
    "ContainerPort.hostIP": K
    + "test_portmap_hostip.py::test_one_port_on_two_host_ips_reaches_two_pods_and_any_address_conflicts",
    "EnvVar.name": K + "test_pod_fields.py::test_working_dir_command_args_and_env_as_kubernetes_runs_them",
    "EnvVar.value": K + "test_pod_fields.py::test_working_dir_command_args_and_env_as_kubernetes_runs_them",
    "EnvVar.valueFrom": K + "test_pod_fields.py::test_working_dir_command_args_and_env_as_kubernetes_runs_them",
    "EnvVarSource.fieldRef": K + "test_pod_fields.py::test_working_dir_command_args_and_env_as_kubernetes_runs_them",
    "ObjectFieldSelector.fieldPath": K
    + "test_pod_fields.py::test_working_dir_command_args_and_env_as_kubernetes_runs_them",
    "ObjectFieldSelector.apiVersion": U + "test_accepted_fields.py::test_env_field_refs_are_checked",
    "Probe.exec": K + "test_containers.py::test_tcp_and_exec_probes",
    "Probe.httpGet": K + "test_containers.py::test_http_probes",
    "Probe.tcpSocket": K + "test_containers.py::test_tcp_and_exec_probes",
    "Probe.initialDelaySeconds": K + "test_containers.py::test_readiness_flips_after_failure_threshold",
    "Probe.timeoutSeconds": K + "test_containers.py::test_http_probe_timeout",
    "Probe.periodSeconds": K + "test_containers.py::test_readiness_flips_after_failure_threshold",
    "Probe.successThreshold": U + "test_workload.py::test_probe_state_defaults_and_thresholds",
    "Probe.failureThreshold": K + "test_containers.py::test_readiness_flips_after_failure_threshold",
    "Probe.terminationGracePeriodSeconds": K
    + "test_pod_lifecycle.py::test_a_failing_liveness_probe_restarts_the_container",
    "HTTPGetAction.path": K + "test_containers.py::test_http_probes",
    "HTTPGetAction.port": K + "test_containers.py::test_http_probes",
    "HTTPGetAction.host": K + "test_pod_fields.py::test_https_probe_with_host",
    "HTTPGetAction.scheme": K + "test_pod_fields.py::test_https_probe_with_host",
    "HTTPGetAction.httpHeaders": K + "test_containers.py::test_http_probes",
    "Lifecycle.preStop": K + "test_pod_lifecycle.py::test_prestop_runs_before_sigterm",
    "LifecycleHandler.exec": K + "test_pod_lifecycle.py::test_prestop_runs_before_sigterm",
    "LifecycleHandler.httpGet": K + "test_pod_lifecycle.py::test_prestop_runs_before_sigterm",
    "LifecycleHandler.sleep": K + "test_pod_lifecycle.py::test_prestop_runs_before_sigterm",
    "ServiceSpec.type": K + "test_services.py::test_nodeport_from_external_and_pods",
    "ServiceSpec.selector": A + "test_kubectl_lab.py::test_label_a_pod_into_and_out_of_a_service",
    "ServiceSpec.ports": A + "test_kubectl_lab.py::test_label_a_pod_into_and_out_of_a_service",
    "ServiceSpec.clusterIP": U
    + "../fake/test_registry.py::test_cluster_ips_and_node_ports_are_unique_and_run_out_clearly",
    "ServiceSpec.clusterIPs": U + "test_accepted_fields.py::test_cluster_ips_and_ip_families_are_single_stack_ipv4",
    "ServiceSpec.externalIPs": K + "test_services.py::test_external_ip_from_a_pod",
    "ServiceSpec.externalName": K + "test_dns.py::test_every_record_kind_from_a_pod",
    "ServiceSpec.sessionAffinity": K + "test_services.py::test_client_ip_affinity_sticks_to_one_endpoint",
    "ServiceSpec.sessionAffinityConfig": K + "test_services.py::test_client_ip_affinity_sticks_to_one_endpoint",
    "ServiceSpec.externalTrafficPolicy": K + "test_services.py::test_loadbalancer_local_keeps_the_client_address",
    "ServiceSpec.internalTrafficPolicy": K
    + "test_services.py::test_internal_traffic_policy_local_uses_the_nodes_own_endpoint",
    "ServiceSpec.healthCheckNodePort": K
    + "test_services.py::test_health_check_node_port_says_which_nodes_have_endpoints",
    "ServiceSpec.loadBalancerIP": U + "test_service_fields.py::test_load_balancer_ip_asked_for_is_given",
    "ServiceSpec.loadBalancerSourceRanges": K
    + "test_service_policies.py::test_source_ranges_drop_unlisted_clients_at_the_load_balancer_ip_only",
    "ServiceSpec.publishNotReadyAddresses": K
    + "test_service_semantics.py::test_a_not_ready_pod_answers_through_a_service_that_publishes_not_ready_addresses",
    "ServiceSpec.ipFamilies": U + "test_accepted_fields.py::test_cluster_ips_and_ip_families_are_single_stack_ipv4",
    "ServiceSpec.ipFamilyPolicy": U + "test_accepted_fields.py::test_cluster_ips_and_ip_families_are_single_stack_ipv4",
    "ServicePort.name": U + "test_planners.py::test_endpointslices_conditions_named_ports_and_nodes",
    "ServicePort.protocol": U + "test_proxy_planner.py::test_named_target_port_and_protocol",
    "ServicePort.port": A + "test_kubectl_lab.py::test_label_a_pod_into_and_out_of_a_service",
    "ServicePort.targetPort": A + "test_kubectl_lab.py::test_label_a_pod_into_and_out_of_a_service",
    "ServicePort.nodePort": U + "../fake/test_registry.py::test_node_ports",
    "ServicePort.appProtocol": U + "test_service_fields.py::test_app_protocol_is_copied_to_the_endpoint_slice",
    "DeploymentSpec.replicas": A + "test_rollout.py::test_rolling_update_keeps_every_replica_ready",
    "DeploymentSpec.selector": A + "test_rollout.py::test_rolling_update_keeps_every_replica_ready",
    "DeploymentSpec.template": A + "test_rollout.py::test_rolling_update_keeps_every_replica_ready",
    "DeploymentSpec.strategy": A + "test_rollout.py::test_recreate_never_overlaps",
    "DeploymentSpec.minReadySeconds": U + "test_rollout.py::test_min_ready_seconds",
    "DeploymentSpec.revisionHistoryLimit": U + "test_rollout.py::test_revision_history_limit",
    "DeploymentSpec.paused": U + "test_rollout.py::test_paused",
    "DeploymentSpec.progressDeadlineSeconds": U + "test_rollout.py::test_progress_deadline",
    "ReplicaSetSpec.replicas": A + "test_rollout.py::test_a_standalone_replica_set_runs_its_pods",
    "ReplicaSetSpec.selector": A + "test_rollout.py::test_a_standalone_replica_set_runs_its_pods",
    "ReplicaSetSpec.template": A + "test_rollout.py::test_a_standalone_replica_set_runs_its_pods",
    "ReplicaSetSpec.minReadySeconds": U + "test_rollout.py::test_min_ready_seconds",
}


KI = "tests/kernel/test_ingress.py::"
KG = "tests/kernel/test_gateway.py::"
IA = A + "test_ingress_api.py::"
GA = A + "test_gateway_api.py::"
# issue 14: fields whose effect is seen at the API (defaults, refusals) or by the data plane
EVIDENCE.update(
    {
        "IngressClassSpec.controller": U
        + "test_ingress_render.py::test_other_class_is_ignored_and_no_class_is_the_default_class",
        "IngressSpec.ingressClassName": U
        + "test_ingress_render.py::test_other_class_is_ignored_and_no_class_is_the_default_class",
        "IngressSpec.defaultBackend": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "IngressSpec.rules": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "IngressBackend.service": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "IngressServiceBackend.name": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "IngressServiceBackend.port": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "IngressRule.host": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "IngressRule.http": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "HTTPIngressRuleValue.paths": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "HTTPIngressPath.path": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "HTTPIngressPath.pathType": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "HTTPIngressPath.backend": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "IngressSpec.tls": KI + "test_tls_with_sni_and_the_redirect",
        "IngressTLS.hosts": KI + "test_tls_with_sni_and_the_redirect",
        "IngressTLS.secretName": KI + "test_tls_with_sni_and_the_redirect",
        "ServiceBackendPort.number": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "ServiceBackendPort.name": KI + "test_host_and_path_routing_with_precedence_and_wildcards",
        "GatewayClassSpec.controllerName": KG + "test_gateway_status_gives_the_address",
        "GatewaySpec.gatewayClassName": KG + "test_gateway_status_gives_the_address",
        "GatewaySpec.listeners": KG + "test_gateway_status_gives_the_address",
        "Listener.name": KG + "test_gateway_status_gives_the_address",
        "Listener.port": KG + "test_gateway_status_gives_the_address",
        "Listener.protocol": KG + "test_gateway_status_gives_the_address",
        "HTTPRouteSpec.parentRefs": KG + "test_split_80_20_within_binomial_bounds",
        "HTTPRouteSpec.hostnames": KG + "test_split_80_20_within_binomial_bounds",
        "HTTPRouteSpec.rules": KG + "test_split_80_20_within_binomial_bounds",
        "ParentReference.name": KG + "test_split_80_20_within_binomial_bounds",
        "HTTPRouteRule.backendRefs": KG + "test_split_80_20_within_binomial_bounds",
        "HTTPBackendRef.name": KG + "test_split_80_20_within_binomial_bounds",
        "HTTPBackendRef.port": KG + "test_split_80_20_within_binomial_bounds",
        "HTTPBackendRef.weight": KG + "test_split_80_20_within_binomial_bounds",
        "HTTPRouteRule.matches": KG + "test_header_match_rewrite_and_redirect",
        "HTTPRouteMatch.path": KG + "test_header_match_rewrite_and_redirect",
        "HTTPPathMatch.type": KG + "test_header_match_rewrite_and_redirect",
        "HTTPPathMatch.value": KG + "test_header_match_rewrite_and_redirect",
        "HTTPRouteMatch.headers": KG + "test_header_match_rewrite_and_redirect",
        "HTTPHeaderMatch.name": KG + "test_header_match_rewrite_and_redirect",
        "HTTPHeaderMatch.value": KG + "test_header_match_rewrite_and_redirect",
        "HTTPRouteRule.filters": KG + "test_header_match_rewrite_and_redirect",
        "HTTPRouteFilter.type": KG + "test_header_match_rewrite_and_redirect",
        "HTTPRouteFilter.requestHeaderModifier": KG + "test_header_match_rewrite_and_redirect",
        "HTTPRouteFilter.urlRewrite": KG + "test_header_match_rewrite_and_redirect",
        "HTTPRouteFilter.requestRedirect": KG + "test_header_match_rewrite_and_redirect",
        "HTTPHeaderFilter.set": KG + "test_header_match_rewrite_and_redirect",
        "HTTPHeader.name": KG + "test_header_match_rewrite_and_redirect",
        "HTTPHeader.value": KG + "test_header_match_rewrite_and_redirect",
        "HTTPURLRewriteFilter.path": KG + "test_header_match_rewrite_and_redirect",
        "HTTPPathModifier.type": KG + "test_header_match_rewrite_and_redirect",
        "HTTPPathModifier.replacePrefixMatch": KG + "test_header_match_rewrite_and_redirect",
        "HTTPRequestRedirectFilter.hostname": KG + "test_header_match_rewrite_and_redirect",
        "HTTPRequestRedirectFilter.statusCode": KG + "test_header_match_rewrite_and_redirect",
        "HTTPHeaderFilter.remove": U + "test_ingress_render.py::test_httproute_weights_headers_and_filters",
        "HTTPRequestRedirectFilter.scheme": U + "test_ingress_render.py::test_httproute_weights_headers_and_filters",
        "GatewayClassSpec.description": GA + "test_gateway_api_kinds_create_get_watch_update_delete",
        "AllowedRoutes.kinds": GA + "test_gateway_refusals_name_the_field",
        "RouteGroupKind.group": GA + "test_gateway_refusals_name_the_field",
        "RouteGroupKind.kind": GA + "test_gateway_refusals_name_the_field",
        "ParentReference.group": GA + "test_http_route_defaults_as_the_spec_defines_them",
        "ParentReference.kind": GA + "test_http_route_defaults_as_the_spec_defines_them",
        "HTTPHeaderMatch.type": GA + "test_http_route_defaults_as_the_spec_defines_them",
        "HTTPQueryParamMatch.type": GA + "test_http_route_defaults_as_the_spec_defines_them",
        "HTTPBackendRef.group": GA + "test_http_route_defaults_as_the_spec_defines_them",
        "HTTPBackendRef.kind": GA + "test_http_route_defaults_as_the_spec_defines_them",
        "HTTPBackendRef.namespace": GA + "test_http_route_refusals_name_the_field",
    }
)
# issue 14's data plane: listeners, TLS, attachment and the rest of the matches
EVIDENCE.update(
    {
        "Listener.hostname": KG + "test_a_route_attaches_to_a_listener_by_section_name",
        "Listener.tls": KG + "test_https_listener_terminates_tls",
        "Listener.allowedRoutes": KG + "test_allowed_routes_from_same_or_all_namespaces",
        "GatewayTLSConfig.mode": KG + "test_https_listener_terminates_tls",
        "GatewayTLSConfig.certificateRefs": KG + "test_https_listener_terminates_tls",
        "SecretObjectReference.group": KG + "test_https_listener_terminates_tls",
        "SecretObjectReference.kind": KG + "test_https_listener_terminates_tls",
        "SecretObjectReference.name": KG + "test_https_listener_terminates_tls",
        "SecretObjectReference.namespace": KG + "test_https_listener_terminates_tls",
        "AllowedRoutes.namespaces": KG + "test_allowed_routes_from_same_or_all_namespaces",
        "RouteNamespaces.from": KG + "test_allowed_routes_from_same_or_all_namespaces",
        "ParentReference.namespace": KG + "test_allowed_routes_from_same_or_all_namespaces",
        "ParentReference.sectionName": KG + "test_a_route_attaches_to_a_listener_by_section_name",
        "HTTPRouteMatch.queryParams": KG + "test_header_and_query_parameter_matches",
        "HTTPRouteMatch.method": KG + "test_header_and_query_parameter_matches",
        "HTTPQueryParamMatch.name": KG + "test_header_and_query_parameter_matches",
        "HTTPQueryParamMatch.value": KG + "test_header_and_query_parameter_matches",
        "HTTPHeaderFilter.add": KG + "test_header_modifier_rewrite_and_redirect_filters",
        "HTTPURLRewriteFilter.hostname": KG + "test_header_modifier_rewrite_and_redirect_filters",
        "HTTPPathModifier.replaceFullPath": KG + "test_header_modifier_rewrite_and_redirect_filters",
        "HTTPRequestRedirectFilter.port": KG + "test_header_modifier_rewrite_and_redirect_filters",
    }
)


def _fields(type_name):
    if type_name in GATEWAY_TYPES:
        return set(GATEWAY_TYPES[type_name])
    return set(MODELS[type_name].attribute_map.values())


@pytest.mark.parametrize("type_name", sorted(set(MODELS) | (set(SUPPORTED) & set(GATEWAY_TYPES))))
def test_every_schema_field_is_either_supported_or_refused(type_name):
    schema = _fields(type_name)
    supported, unsupported = SUPPORTED[type_name], set(UNSUPPORTED[type_name])
    assert not supported & unsupported
    assert supported | unsupported == schema, (
        "fields of %s podnet neither implements nor refuses: %s; listed but not in the schema: %s"
        % (type_name, sorted(schema - supported - unsupported), sorted((supported | unsupported) - schema))
    )


def _test_names(path):
    with open(os.path.normpath(os.path.join(ROOT, path))) as f:
        tree = ast.parse(f.read())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_supported_field_names_a_test_that_exists():
    wanted = {"%s.%s" % (t, f) for t, fields in SUPPORTED.items() for f in fields}
    named = set(EVIDENCE)
    assert named == wanted, (sorted(wanted - named), sorted(named - wanted))
    missing = []
    names = {}
    for field, ref in sorted(EVIDENCE.items()):
        path, test = ref.split("::")
        if path not in names:
            names[path] = _test_names(path) if os.path.exists(os.path.join(ROOT, path)) else set()
        if test not in names[path]:
            missing.append("%s -> %s" % (field, ref))
    assert not missing, "evidence tests that do not exist:\n" + "\n".join(missing)


# ---- refusals ---------------------------------------------------------------------

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p"},
    "spec": {
        "containers": [
            {
                "name": "c",
                "image": "agnhost",
                "args": ["pause"],
                "ports": [{"containerPort": 80}],
                "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "livenessProbe": {"httpGet": {"port": 80}},
                "lifecycle": {"preStop": {"exec": {"command": ["true"]}}},
            }
        ]
    },
}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
INGRESS_CLASS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "IngressClass",
    "metadata": {"name": "podnet"},
    "spec": {"controller": "podnet.io/ingress-nginx"},
}
INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"name": "i"},
    "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
}
GW = "gateway.networking.k8s.io/v1"
GATEWAY_CLASS = {
    "apiVersion": GW,
    "kind": "GatewayClass",
    "metadata": {"name": "c"},
    "spec": {"controllerName": "a.b/c"},
}
GATEWAY = {
    "apiVersion": GW,
    "kind": "Gateway",
    "metadata": {"name": "g"},
    "spec": {
        "gatewayClassName": "c",
        "listeners": [
            {
                "name": "https",
                "port": 443,
                "protocol": "HTTPS",
                "tls": {"certificateRefs": [{"name": "cert"}]},
                "allowedRoutes": {"namespaces": {"from": "All"}},
            }
        ],
    },
}
ROUTE = {
    "apiVersion": GW,
    "kind": "HTTPRoute",
    "metadata": {"name": "r"},
    "spec": {
        "parentRefs": [{"name": "g"}],
        "rules": [
            {
                "filters": [
                    {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}}
                ],
                "backendRefs": [{"name": "web", "port": 80}],
            },
            {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]},
        ],
    },
}
C = ("spec", "containers", 0)
# Where each structure sits in a sample object.
WHERE = {
    "PodSpec": (POD, ("spec",)),
    "Container": (POD, C),
    "ContainerPort": (POD, C + ("ports", 0)),
    "EnvVar": (POD, C + ("env", 0)),
    "EnvVarSource": (POD, C + ("env", 0, "valueFrom")),
    "ObjectFieldSelector": (POD, C + ("env", 0, "valueFrom", "fieldRef")),
    "Probe": (POD, C + ("livenessProbe",)),
    "HTTPGetAction": (POD, C + ("livenessProbe", "httpGet")),
    "Lifecycle": (POD, C + ("lifecycle",)),
    "LifecycleHandler": (POD, C + ("lifecycle", "preStop")),
    "ServiceSpec": (SERVICE, ("spec",)),
    "ServicePort": (SERVICE, ("spec", "ports", 0)),
    "IngressClassSpec": (INGRESS_CLASS, ("spec",)),
    "IngressBackend": (INGRESS, ("spec", "defaultBackend")),
    "GatewayClassSpec": (GATEWAY_CLASS, ("spec",)),
    "GatewaySpec": (GATEWAY, ("spec",)),
    "GatewayTLSConfig": (GATEWAY, ("spec", "listeners", 0, "tls")),
    "RouteNamespaces": (GATEWAY, ("spec", "listeners", 0, "allowedRoutes", "namespaces")),
    "ParentReference": (ROUTE, ("spec", "parentRefs", 0)),
    "HTTPRouteRule": (ROUTE, ("spec", "rules", 0)),
    "HTTPRouteFilter": (ROUTE, ("spec", "rules", 0, "filters", 0)),
    "HTTPRequestRedirectFilter": (ROUTE, ("spec", "rules", 1, "filters", 0, "requestRedirect")),
    "HTTPBackendRef": (ROUTE, ("spec", "rules", 0, "backendRefs", 0)),
}


def _path(keys):
    out = ""
    for k in keys:
        out += "[%d]" % k if isinstance(k, int) else ("." + k if out else k)
    return out


def _asking_values(type_name, field):
    """Values that ask for something: a non-empty one of the field's type, and
    for a boolean both values (one of them may be Kubernetes' default)."""
    if type_name in GATEWAY_TYPES:
        code = GATEWAY_TYPES[type_name][field]
        t = {"s": "str", "i": "int", "b": "bool"}.get(code, "list[x]" if code.startswith("[") else "object")
        if t == "list[x]" and code == "[s]":
            return [["something"]]
        if t == "list[x]":
            return [[{"name": "something"}]]
    else:
        t = MODELS[type_name].openapi_types[next(k for k, v in MODELS[type_name].attribute_map.items() if v == field)]
    if t == "bool":
        return [True, False]
    if t == "int":
        return [7]
    if t == "str":
        return ["something"]
    if t.startswith("list["):
        return [["something"], [{"name": "something"}]]
    return [{"something": "x"}]


UNSUPPORTED_FIELDS = sorted((t, f) for t, fields in UNSUPPORTED.items() for f in fields)


@pytest.mark.parametrize("type_name,field", UNSUPPORTED_FIELDS, ids=["%s.%s" % tf for tf in UNSUPPORTED_FIELDS])
def test_an_unsupported_field_is_refused_with_its_path(type_name, field):
    sample, where = WHERE[type_name]
    refused = 0
    for value in _asking_values(type_name, field):
        obj = copy.deepcopy(sample)
        node = obj
        for k in where:
            node = node[k]
        node[field] = value
        default = DEFAULTS.get((type_name, field))
        if default is not None and default(value, node):
            validate(obj)  # the default asks for nothing: kept, no error
            continue
        with pytest.raises(FieldError) as e:
            validate(obj)
        assert e.value.path == _path(where + (field,)), str(e.value)
        assert "not supported by podnet" in str(e.value)
        refused += 1
    # hostIPC/hostPID: podnet's containers always share the host's; both values are what happens
    if (type_name, field) not in {("PodSpec", "hostIPC"), ("PodSpec", "hostPID")}:
        assert refused, "no value of %s.%s is refused" % (type_name, field)


def test_values_that_ask_for_nothing_are_kept():
    pod = copy.deepcopy(POD)
    spec, c = pod["spec"], pod["spec"]["containers"][0]
    spec.update(schedulerName="default-scheduler", securityContext={}, tolerations=[], enableServiceLinks=False)
    c.update(resources={"limits": {}, "requests": {}}, terminationMessagePath="/dev/termination-log")
    c.update(terminationMessagePolicy="File", imagePullPolicy="Always", stdin=False, tty=False)
    out = validate(pod)
    assert out["spec"]["containers"][0]["resources"] == {"limits": {}, "requests": {}}
    # podnet pulls images (issue 20): any of Kubernetes' three policies
    c["image"] = "nginx:1.25"
    validate(pod)
    c["imagePullPolicy"] = "Sometimes"
    with pytest.raises(FieldError) as e:
        validate(pod)
    assert e.value.path == "spec.containers[0].imagePullPolicy"


def test_a_field_not_in_the_schema_is_refused_as_unknown():
    pod = copy.deepcopy(POD)
    pod["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(FieldError) as e:
        validate(pod)
    assert e.value.path == "spec.containers[0].imagePullPolcy" and "unknown field" in str(e.value)


def test_env_field_refs_are_checked():
    pod = copy.deepcopy(POD)
    ref = pod["spec"]["containers"][0]["env"][0]["valueFrom"]["fieldRef"]
    assert validate(pod)["spec"]["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    for bad, path in (
        ({"fieldPath": "status.phase"}, "fieldPath"),
        ({"fieldPath": "metadata.name", "apiVersion": "v2"}, "apiVersion"),
    ):
        ref.clear()
        ref.update(bad)
        with pytest.raises(FieldError) as e:
            validate(pod)
        assert e.value.path == "spec.containers[0].env[0].valueFrom.fieldRef." + path
    ref.clear()
    ref["fieldPath"] = "metadata.labels['app']"
    validate(pod)


def test_cluster_ips_and_ip_families_are_single_stack_ipv4():
    svc = copy.deepcopy(SERVICE)
    svc["spec"].update(
        clusterIP="10.96.0.50", clusterIPs=["10.96.0.50"], ipFamilies=["IPv4"], ipFamilyPolicy="PreferDualStack"
    )
    validate(svc)
    for change, path in (
        ({"ipFamilies": ["IPv6"]}, "spec.ipFamilies[0]"),
        ({"ipFamilies": ["IPv4", "IPv6"]}, "spec.ipFamilies[1]"),
        ({"ipFamilyPolicy": "RequireDualStack"}, "spec.ipFamilyPolicy"),
        ({"clusterIPs": ["10.96.0.51"]}, "spec.clusterIPs[0]"),
    ):
        bad = copy.deepcopy(svc)
        bad["spec"].update(change)
        with pytest.raises(FieldError) as e:
            validate(bad)
        assert e.value.path == path, str(e.value)
