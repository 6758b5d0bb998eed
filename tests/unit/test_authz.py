"""Authorization decisions (podnet/apiserver/authz.py): request attributes from
URLs, RBAC rules and bindings, the Node authorizer, kube-apiserver's 403 text,
and the bootstrap policy's identities."""

import json

import pytest

from podnet.api import ApiError, validate
from podnet.apiserver import authz, rbacpolicy
from podnet.apiserver.authz import Attrs, Policy, decide, forbidden_message, request_attrs

NODE = ("system:nodes", "system:authenticated")


def attrs(method, path, user="alice", groups=("system:authenticated",), **query):
    return request_attrs(method, path, query, user, groups)


def test_request_attrs_as_kube_apiserver_reads_urls():
    a = attrs("GET", "/api/v1/namespaces/default/pods")
    assert (a.verb, a.api_group, a.resource, a.namespace, a.name) == ("list", "", "pods", "default", "")
    assert attrs("GET", "/api/v1/pods", watch="true").verb == "watch"
    a = attrs("PATCH", "/api/v1/namespaces/default/pods/web-1/status")
    assert (a.verb, a.full_resource, a.name) == ("patch", "pods/status", "web-1")
    a = attrs("DELETE", "/apis/apps/v1/namespaces/shop/deployments")
    assert (a.verb, a.api_group, a.resource, a.namespace) == ("deletecollection", "apps", "deployments", "shop")
    a = attrs("PUT", "/api/v1/nodes/n1")
    assert (a.verb, a.resource, a.namespace, a.name) == ("update", "nodes", "", "n1")
    a = attrs("GET", "/api/v1/namespaces/shop")
    assert (a.resource, a.namespace, a.name) == ("namespaces", "shop", "shop")
    assert not attrs("GET", "/apis").resource_request and not attrs("GET", "/openapi/v2").resource_request


def _policy(rules, subjects, namespaced=False):
    role = {"metadata": {"name": "r"}, "rules": rules}
    binding = {"roleRef": {"kind": "Role" if namespaced else "ClusterRole", "name": "r"}, "subjects": subjects}
    if namespaced:
        return Policy(
            roles=lambda ns: {"r": role} if ns == "shop" else {}, bindings=lambda ns: [binding] if ns == "shop" else []
        )
    return Policy(cluster_roles={"r": role}, cluster_bindings=[binding])


def test_rbac_rules_verbs_resources_names_and_subjects():
    read_pods = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    alice = [{"kind": "User", "name": "alice"}]
    pol = _policy(read_pods, alice)
    assert decide(attrs("GET", "/api/v1/namespaces/x/pods/p"), pol).allowed
    assert not decide(attrs("DELETE", "/api/v1/namespaces/x/pods/p"), pol).allowed
    assert not decide(attrs("GET", "/api/v1/namespaces/x/pods/p/status"), pol).allowed  # a subresource is its own
    assert not decide(attrs("GET", "/apis/apps/v1/namespaces/x/deployments"), pol).allowed
    assert not decide(attrs("GET", "/api/v1/namespaces/x/pods", user="bob"), pol).allowed
    named = _policy([{"apiGroups": [""], "resources": ["services"], "resourceNames": ["web"], "verbs": ["get"]}], alice)
    assert decide(attrs("GET", "/api/v1/namespaces/x/services/web"), named).allowed
    assert not decide(attrs("GET", "/api/v1/namespaces/x/services/db"), named).allowed
    group = _policy(read_pods, [{"kind": "Group", "name": "devs"}])
    assert decide(attrs("GET", "/api/v1/pods", user="carol", groups=("devs",)), group).allowed
    sa = _policy(read_pods, [{"kind": "ServiceAccount", "name": "bot", "namespace": "ci"}])
    assert decide(attrs("GET", "/api/v1/pods", user="system:serviceaccount:ci:bot"), sa).allowed
    assert not decide(attrs("GET", "/api/v1/pods", user="system:serviceaccount:other:bot"), sa).allowed


def test_role_binding_grants_only_in_its_namespace():
    pol = _policy(
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}], [{"kind": "User", "name": "alice"}], True
    )
    assert decide(attrs("POST", "/api/v1/namespaces/shop/pods"), pol).allowed
    assert not decide(attrs("POST", "/api/v1/namespaces/other/pods"), pol).allowed
    assert not decide(attrs("GET", "/api/v1/pods"), pol).allowed  # cluster-wide list: no namespace


def test_masters_may_do_anything_and_nobody_else_by_default():
    assert decide(attrs("DELETE", "/api/v1/nodes/n1", groups=("system:masters",)), Policy()).allowed
    assert not decide(attrs("GET", "/api/v1/pods"), Policy()).allowed


def test_node_authorizer_own_node_lease_and_bound_pods():
    def pod_node(ns, name):
        return {"web-1": "n1", "web-2": "n2", "pending": ""}.get(name)

    def node(method, path, who="n1", body_name=""):
        a = request_attrs(method, path, {}, "system:node:" + who, NODE)
        return decide(a, Policy(), pod_node, body_name)

    assert node("PATCH", "/api/v1/nodes/n1/status").allowed
    refused = node("PATCH", "/api/v1/nodes/n2/status")
    assert not refused.allowed and refused.reason == "node 'n1' cannot modify node 'n2'"
    assert not node("DELETE", "/api/v1/nodes/n2").allowed
    assert node("POST", "/api/v1/nodes", body_name="n1").allowed
    assert not node("POST", "/api/v1/nodes", body_name="n2").allowed
    assert node("GET", "/api/v1/nodes").allowed
    assert node("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1").allowed
    assert not node("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2").allowed
    assert node("PATCH", "/api/v1/namespaces/default/pods/web-1/status").allowed
    assert not node("PATCH", "/api/v1/namespaces/default/pods/web-2/status").allowed
    assert not node("PATCH", "/api/v1/namespaces/default/pods/web-1").allowed  # the spec is not the node's
    assert not node("PATCH", "/api/v1/namespaces/default/pods/pending/status").allowed  # bound to no node
    assert node("DELETE", "/api/v1/namespaces/default/pods/gone").allowed  # no such pod: the 404 answers
    assert node("GET", "/apis/networking.k8s.io/v1/networkpolicies").allowed
    assert not node("POST", "/api/v1/namespaces/default/services").allowed
    assert not node("GET", "/api/v1/namespaces/default/secrets").allowed
    # a user named like a node but not in system:nodes is not a node
    a = request_attrs("PATCH", "/api/v1/nodes/n1/status", {}, "system:node:n1", ("system:authenticated",))
    assert not decide(a, Policy()).allowed


def test_forbidden_message_is_kube_apiservers():
    a = attrs("DELETE", "/api/v1/namespaces/default/pods/web-1")
    assert forbidden_message(a) == (
        'pods "web-1" is forbidden: User "alice" cannot delete resource "pods" in API group "" '
        'in the namespace "default"'
    )
    a = attrs("GET", "/apis/apps/v1/deployments")
    assert forbidden_message(a) == (
        'deployments.apps is forbidden: User "alice" cannot list resource "deployments" in API group "apps" '
        "at the cluster scope"
    )
    a = request_attrs("PATCH", "/api/v1/nodes/n2/status", {}, "system:node:n1", NODE)
    assert forbidden_message(a, "node 'n1' cannot modify node 'n2'").endswith(
        'cannot patch resource "nodes/status" in API group "" at the cluster scope: '
        "node 'n1' cannot modify node 'n2'"
    )
    assert forbidden_message(attrs("GET", "/metrics")) == 'forbidden: User "alice" cannot get path "/metrics"'


def _bootstrap_policy():
    objs = rbacpolicy.bootstrap_objects()
    roles = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ClusterRole"}
    return Policy(cluster_roles=roles, cluster_bindings=[o for o in objs if o["kind"] == "ClusterRoleBinding"])


def test_bootstrap_identities_have_only_their_verbs():
    pol = _bootstrap_policy()
    auth = ("system:authenticated",)
    cm = "system:kube-controller-manager"
    assert decide(attrs("POST", "/apis/discovery.k8s.io/v1/namespaces/d/endpointslices", cm, auth), pol).allowed
    assert decide(attrs("POST", "/api/v1/namespaces/d/pods/web/binding", cm, auth), pol).allowed
    assert not decide(attrs("GET", "/api/v1/namespaces/d/secrets", cm, auth), pol).allowed
    assert not decide(attrs("POST", "/apis/networking.k8s.io/v1/namespaces/d/networkpolicies", cm, auth), pol).allowed
    dns = "system:serviceaccount:kube-system:coredns"
    assert decide(attrs("GET", "/api/v1/services", dns, auth, watch="1"), pol).allowed
    assert not decide(attrs("PATCH", "/api/v1/namespaces/d/services/web", dns, auth), pol).allowed
    assert decide(attrs("GET", "/apis", "anyone", auth), pol).allowed  # discovery, for every authenticated user
    assert not decide(attrs("GET", "/api/v1/pods", "anyone", auth), pol).allowed
    for o in rbacpolicy.bootstrap_objects():  # the default policy passes the API's own validation
        validate(o)


def test_rbac_objects_refuse_what_would_not_be_enforced():
    base = {"apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "system:x"}}
    with pytest.raises(ApiError, match="aggregationRule"):
        validate(dict(base, kind="ClusterRole", aggregationRule={"clusterRoleSelectors": []}))
    with pytest.raises(ApiError, match=r"rules\[0\].apiGroups"):
        validate(dict(base, kind="ClusterRole", rules=[{"resources": ["pods"], "verbs": ["get"]}]))
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}
    with pytest.raises(ApiError, match="roleRef.kind"):
        validate(dict(base, kind="ClusterRoleBinding", roleRef=ref, subjects=[]))
    bad_subject = [{"kind": "Robot", "name": "r2"}]
    with pytest.raises(ApiError, match=r"subjects\[0\].kind"):
        validate(
            dict(base, kind="RoleBinding", roleRef=ref, subjects=bad_subject, metadata={"name": "b", "namespace": "x"})
        )
    assert authz.node_name(Attrs("system:node:n1", ("system:nodes",), "get")) == "n1"


class _Registry:
    """Just what ensure_bootstrap uses: get, create, update by (kind, name)."""

    def __init__(self):
        self.objs = {}

    def get(self, res, ns, name):
        from podnet.apiserver.errors import StatusError

        try:
            return json.loads(json.dumps(self.objs[(res.kind.kind, name)]))
        except KeyError:
            raise StatusError(404, "NotFound", "not found") from None

    def create(self, res, ns, obj):
        self.objs[(res.kind.kind, obj["metadata"]["name"])] = json.loads(json.dumps(obj))

    def update(self, res, ns, name, obj):
        self.objs[(res.kind.kind, name)] = json.loads(json.dumps(obj))


def test_bootstrap_policy_written_restored_and_an_opted_out_edit_kept():
    reg = _Registry()
    n = rbacpolicy.ensure_bootstrap(reg)
    assert n == len(rbacpolicy.bootstrap_objects()) and rbacpolicy.ensure_bootstrap(reg) == 0
    view = reg.objs[("ClusterRole", "view")]
    view["rules"] = []  # someone emptied it: the next start brings the rules back
    dns = reg.objs[("ClusterRole", "system:coredns")]
    dns["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    dns["metadata"]["annotations"][rbacpolicy.AUTOUPDATE] = "false"  # an operator's own: kept
    assert rbacpolicy.ensure_bootstrap(reg) == 1
    assert reg.objs[("ClusterRole", "view")]["rules"] == rbacpolicy.VIEW_RULES
    assert reg.objs[("ClusterRole", "system:coredns")]["rules"][0]["resources"] == ["pods"]
