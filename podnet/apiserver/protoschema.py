"""Which protobuf field is which JSON field, for the kinds podnet serves.

kubectl's typed commands (`create namespace|deployment|service`) send
protobuf, and protobuf carries field numbers, not names. This table gives
each message's fields as `NUMBER NAME[!][:TYPE]`, in the order the Go struct
declares them (the order of the JSON kubectl would have sent). The numbers
are those of k8s.io/api and k8s.io/apimachinery's generated.proto (core/v1,
apps/v1, networking/v1, discovery/v1, meta/v1, util/intstr, api/resource).

TYPE is `s` (string, the default), `i` (any varint integer), `b` (bool), a
message name, `[T]` (repeated), `{T}` (map from string, sent as repeated
{1: key, 2: value} entries), `^M` (message M whose fields are inlined into
the parent, Go's embedded structs), `~` (dropped: managedFields, which the
server owns) or `-` (a real field podnet does not decode: refused by name,
never dropped). Time, MicroTime, IntOrString and Quantity are decoded to
their JSON forms by podnet.apiserver.protobuf.

`!` keeps a zero scalar. Go's protobuf code writes every non-pointer field,
set or not, so a zero string, int or bool on the wire usually means "unset"
and the JSON (with omitempty) leaves it out; a pointer field is only written
when set, and a field without omitempty is always in the JSON. Those are the
`!` ones: their zero value is kept (`replicas: 0`, `containerPort`).
"""

from __future__ import annotations

from dataclasses import dataclass

MESSAGES: dict[str, str] = {
    # ---- meta/v1 -------------------------------------------------------------
    "ObjectMeta": "1 name, 2 generateName, 3 namespace, 4 selfLink, 5 uid, 6 resourceVersion, 7 generation:i, "
    "8 creationTimestamp:Time, 9 deletionTimestamp:Time, 10 deletionGracePeriodSeconds!:i, 11 labels:{s}, "
    "12 annotations:{s}, 13 ownerReferences:[OwnerReference], 14 finalizers:[s], 17 managedFields:~",
    "OwnerReference": "5 apiVersion!, 1 kind!, 3 name!, 4 uid!, 6 controller!:b, 7 blockOwnerDeletion!:b",
    "LabelSelector": "1 matchLabels:{s}, 2 matchExpressions:[LabelSelectorRequirement]",
    "LabelSelectorRequirement": "1 key!, 2 operator!, 3 values:[s]",
    "Condition": "1 type!, 2 status!, 3 observedGeneration:i, 4 lastTransitionTime:Time, 5 reason!, 6 message!",
    # ---- core/v1: the kinds ---------------------------------------------------
    "Namespace": "1 metadata:ObjectMeta, 2 spec:NamespaceSpec, 3 status:NamespaceStatus",
    "NamespaceSpec": "1 finalizers:[s]",
    "NamespaceStatus": "1 phase, 2 conditions:-",
    "Pod": "1 metadata:ObjectMeta, 2 spec:PodSpec, 3 status:PodStatus",
    "Service": "1 metadata:ObjectMeta, 2 spec:ServiceSpec, 3 status:ServiceStatus",
    "Node": "1 metadata:ObjectMeta, 2 spec:NodeSpec, 3 status:NodeStatus",
    "Endpoints": "1 metadata:ObjectMeta, 2 subsets:[EndpointSubset]",
    "Event": "1 metadata:ObjectMeta, 2 involvedObject:ObjectReference, 3 reason, 4 message, 5 source:EventSource, "
    "6 firstTimestamp:Time, 7 lastTimestamp:Time, 8 count:i, 9 type, 10 eventTime:MicroTime, 11 series:EventSeries, "
    "12 action, 13 related:ObjectReference, 14 reportingComponent!, 15 reportingInstance!",
    "Secret": "1 metadata:ObjectMeta, 5 immutable!:b, 2 data:{Bytes}, 4 stringData:{s}, 3 type",
    # ---- core/v1: pods ----------------------------------------------------------
    "PodTemplateSpec": "1 metadata:ObjectMeta, 2 spec:PodSpec",
    "PodSpec": "1 volumes:[Volume], 20 initContainers:[Container], 2 containers:[Container], "
    "34 ephemeralContainers:-, 3 restartPolicy, 4 terminationGracePeriodSeconds!:i, 5 activeDeadlineSeconds!:i, "
    "6 dnsPolicy, 7 nodeSelector:{s}, 8 serviceAccountName, 9 serviceAccount, 21 automountServiceAccountToken!:b, "
    "10 nodeName, 11 hostNetwork:b, 12 hostPID:b, 13 hostIPC:b, 27 shareProcessNamespace!:b, "
    "14 securityContext:PodSecurityContext, 15 imagePullSecrets:[LocalObjectReference], 16 hostname, 17 subdomain, "
    "18 affinity:-, 19 schedulerName, 22 tolerations:[Toleration], 23 hostAliases:[HostAlias], "
    "24 priorityClassName, 25 priority!:i, 26 dnsConfig:PodDNSConfig, 28 readinessGates:[PodReadinessGate], "
    "29 runtimeClassName!, 30 enableServiceLinks!:b, 31 preemptionPolicy!, 32 overhead:{Quantity}, "
    "33 topologySpreadConstraints:-, 35 setHostnameAsFQDN!:b, 36 os:PodOS, 37 hostUsers!:b, "
    "38 schedulingGates:[PodSchedulingGate], 39 resourceClaims:-, 40 resources:ResourceRequirements, "
    "41 hostnameOverride!, 43 schedulingGroup:-, 44 evictionResponders:-",
    "Container": "1 name!, 2 image, 3 command:[s], 4 args:[s], 5 workingDir, 6 ports:[ContainerPort], "
    "19 envFrom:[EnvFromSource], 7 env:[EnvVar], 8 resources:ResourceRequirements, "
    "23 resizePolicy:[ContainerResizePolicy], 24 restartPolicy!, 25 restartPolicyRules:-, "
    "9 volumeMounts:[VolumeMount], 21 volumeDevices:[VolumeDevice], 10 livenessProbe:Probe, "
    "11 readinessProbe:Probe, 22 startupProbe:Probe, "
    "12 lifecycle:Lifecycle, 13 terminationMessagePath, 20 terminationMessagePolicy, 14 imagePullPolicy, "
    "15 securityContext:SecurityContext, 16 stdin:b, 17 stdinOnce:b, 18 tty:b",
    "ContainerPort": "1 name, 2 hostPort:i, 3 containerPort!:i, 4 protocol, 5 hostIP",
    "EnvVar": "1 name!, 2 value, 3 valueFrom:EnvVarSource",
    "EnvVarSource": "1 fieldRef:ObjectFieldSelector, 2 resourceFieldRef:ResourceFieldSelector, "
    "3 configMapKeyRef:KeySelector, 4 secretKeyRef:KeySelector, 5 fileKeyRef:-",
    # ConfigMapKeySelector and SecretKeySelector have the same fields.
    "KeySelector": "1 ref:^LocalObjectReference, 2 key!, 3 optional!:b",
    "ObjectFieldSelector": "1 apiVersion, 2 fieldPath!",
    "ResourceFieldSelector": "1 containerName, 2 resource!, 3 divisor:Quantity",
    "LocalObjectReference": "1 name",
    # ConfigMapEnvSource and SecretEnvSource, likewise.
    "EnvSource": "1 ref:^LocalObjectReference, 2 optional!:b",
    "EnvFromSource": "1 prefix, 2 configMapRef:EnvSource, 3 secretRef:EnvSource",
    "ResourceRequirements": "1 limits:{Quantity}, 2 requests:{Quantity}, 3 claims:-",
    "ContainerResizePolicy": "1 resourceName!, 2 restartPolicy!",
    "VolumeMount": "1 name!, 2 readOnly:b, 7 recursiveReadOnly!, 3 mountPath!, 4 subPath, 5 mountPropagation!, "
    "6 subPathExpr, 8 bindMountOptions:[s]",
    "VolumeDevice": "1 name!, 2 devicePath!",
    "Probe": "1 handler:^ProbeHandler, 2 initialDelaySeconds:i, 3 timeoutSeconds:i, 4 periodSeconds:i, "
    "5 successThreshold:i, 6 failureThreshold:i, 7 terminationGracePeriodSeconds!:i",
    "ProbeHandler": "1 exec:ExecAction, 2 httpGet:HTTPGetAction, 3 tcpSocket:TCPSocketAction, 4 grpc:GRPCAction",
    "ExecAction": "1 command:[s]",
    "HTTPGetAction": "1 path, 2 port:IntOrString, 3 host, 4 scheme, 5 httpHeaders:[HTTPHeader], 6 protocol!",
    "HTTPHeader": "1 name!, 2 value!",
    "TCPSocketAction": "1 port:IntOrString, 2 host",
    "GRPCAction": "1 port!:i, 2 service!, 3 mode!",
    "Lifecycle": "1 postStart:LifecycleHandler, 2 preStop:LifecycleHandler, 3 stopSignal!",
    "LifecycleHandler": "1 exec:ExecAction, 2 httpGet:HTTPGetAction, 3 tcpSocket:TCPSocketAction, 4 sleep:SleepAction",
    "SleepAction": "1 seconds!:i",
    "SecurityContext": "1 capabilities:Capabilities, 2 privileged!:b, 3 seLinuxOptions:SELinuxOptions, "
    "10 windowsOptions:-, 4 runAsUser!:i, 8 runAsGroup!:i, 5 runAsNonRoot!:b, 6 readOnlyRootFilesystem!:b, "
    "7 allowPrivilegeEscalation!:b, 9 procMount!, 11 seccompProfile:SeccompProfile, 12 appArmorProfile:SeccompProfile",
    "PodSecurityContext": "1 seLinuxOptions:SELinuxOptions, 8 windowsOptions:-, 2 runAsUser!:i, 6 runAsGroup!:i, "
    "3 runAsNonRoot!:b, 4 supplementalGroups:[i], 12 supplementalGroupsPolicy!, 5 fsGroup!:i, 7 sysctls:[Sysctl], "
    "9 fsGroupChangePolicy!, 10 seccompProfile:SeccompProfile, 11 appArmorProfile:SeccompProfile, "
    "13 seLinuxChangePolicy!",
    "Capabilities": "1 add:[s], 2 drop:[s]",
    "SELinuxOptions": "1 user, 2 role, 3 type, 4 level",
    # SeccompProfile and AppArmorProfile have the same fields.
    "SeccompProfile": "1 type!, 2 localhostProfile!",
    "Sysctl": "1 name!, 2 value!",
    "Toleration": "1 key, 2 operator, 3 value, 4 effect, 5 tolerationSeconds!:i",
    "HostAlias": "1 ip!, 2 hostnames:[s]",
    "PodDNSConfig": "1 nameservers:[s], 2 searches:[s], 3 options:[PodDNSConfigOption]",
    "PodDNSConfigOption": "1 name, 2 value!",
    "PodReadinessGate": "1 conditionType!",
    "PodOS": "1 name!",
    "PodSchedulingGate": "1 name!",
    "Volume": "1 name!, 2 source:^VolumeSource",
    "VolumeSource": "1 hostPath:HostPathVolumeSource, 2 emptyDir:EmptyDirVolumeSource, 3 gcePersistentDisk:-, "
    "4 awsElasticBlockStore:-, 5 gitRepo:-, 6 secret:SecretVolumeSource, 7 nfs:-, 8 iscsi:-, 9 glusterfs:-, "
    "10 persistentVolumeClaim:PersistentVolumeClaimVolumeSource, 11 rbd:-, 12 flexVolume:-, 13 cinder:-, "
    "14 cephfs:-, 15 flocker:-, 16 downwardAPI:DownwardAPIVolumeSource, 17 fc:-, 18 azureFile:-, "
    "19 configMap:ConfigMapVolumeSource, 20 vsphereVolume:-, 21 quobyte:-, 22 azureDisk:-, 23 photonPersistentDisk:-, "
    "26 projected:-, 24 portworxVolume:-, 25 scaleIO:-, 27 storageos:-, 28 csi:-, 29 ephemeral:-, 30 image:-",
    "HostPathVolumeSource": "1 path!, 2 type!",
    "EmptyDirVolumeSource": "1 medium, 2 sizeLimit:Quantity, 3 mode!:i",
    "SecretVolumeSource": "1 secretName, 2 items:[KeyToPath], 3 defaultMode!:i, 4 optional!:b, 5 defaultUser!:i",
    "ConfigMapVolumeSource": "1 ref:^LocalObjectReference, 2 items:[KeyToPath], 3 defaultMode!:i, 4 optional!:b, "
    "5 defaultUser!:i",
    "KeyToPath": "1 key!, 2 path!, 3 mode!:i, 4 user!:i",
    "PersistentVolumeClaimVolumeSource": "1 claimName!, 2 readOnly:b",
    "DownwardAPIVolumeSource": "1 items:[DownwardAPIVolumeFile], 2 defaultMode!:i, 3 defaultUser!:i",
    "DownwardAPIVolumeFile": "1 path!, 2 fieldRef:ObjectFieldSelector, 3 resourceFieldRef:ResourceFieldSelector, "
    "4 mode!:i, 5 user!:i",
    "PodStatus": "17 observedGeneration:i, 1 phase, 2 conditions:[PodCondition], 3 message, 4 reason, "
    "11 nominatedNodeName, 5 hostIP, 16 hostIPs:[PodIP], 6 podIP, 12 podIPs:[PodIP], 7 startTime:Time, "
    "10 initContainerStatuses:-, 8 containerStatuses:-, 9 qosClass, 13 ephemeralContainerStatuses:-, 14 resize, "
    "15 resourceClaimStatuses:-, "
    "18 extendedResourceClaimStatus:-, 19 allocatedResources:{Quantity}, 20 resources:ResourceRequirements, "
    "21 nodeAllocatableResourceClaimStatuses:-, 22 volumeHealth:-",
    "PodCondition": "1 type!, 7 observedGeneration:i, 2 status!, 3 lastProbeTime:Time, 4 lastTransitionTime:Time, "
    "5 reason, 6 message",
    # HostIP and PodIP have the same single field.
    "PodIP": "1 ip!",
    # ---- core/v1: services, endpoints, nodes, events ------------------------------------
    "ServiceSpec": "1 ports:[ServicePort], 2 selector:{s}, 3 clusterIP, 18 clusterIPs:[s], 4 type, "
    "5 externalIPs:[s], 7 sessionAffinity, 8 loadBalancerIP, 9 loadBalancerSourceRanges:[s], 10 externalName, "
    "11 externalTrafficPolicy, 12 healthCheckNodePort:i, 13 publishNotReadyAddresses:b, "
    "14 sessionAffinityConfig:SessionAffinityConfig, 19 ipFamilies:[s], 17 ipFamilyPolicy!, "
    "20 allocateLoadBalancerNodePorts!:b, 21 loadBalancerClass!, 22 internalTrafficPolicy!, 23 trafficDistribution!",
    "ServicePort": "1 name, 2 protocol, 6 appProtocol!, 3 port!:i, 4 targetPort:IntOrString, 5 nodePort:i",
    "SessionAffinityConfig": "1 clientIP:ClientIPConfig",
    "ClientIPConfig": "1 timeoutSeconds!:i",
    "ServiceStatus": "1 loadBalancer:LoadBalancerStatus, 2 conditions:[Condition]",
    "LoadBalancerStatus": "1 ingress:[LoadBalancerIngress]",
    "LoadBalancerIngress": "1 ip, 2 hostname, 3 ipMode!, 4 ports:-",
    "EndpointSubset": "1 addresses:[EndpointAddress], 2 notReadyAddresses:[EndpointAddress], 3 ports:[EndpointPort]",
    "EndpointAddress": "1 ip!, 3 hostname, 4 nodeName!, 2 targetRef:ObjectReference",
    "EndpointPort": "1 name, 2 port!:i, 3 protocol, 4 appProtocol!",
    "ObjectReference": "1 kind, 2 namespace, 3 name, 4 uid, 5 apiVersion, 6 resourceVersion, 7 fieldPath",
    "EventSource": "1 component, 2 host",
    "EventSeries": "1 count:i, 2 lastObservedTime:MicroTime",
    "NodeSpec": "1 podCIDR, 7 podCIDRs:[s], 3 providerID, 4 unschedulable:b, 5 taints:[Taint], 6 configSource:-, "
    "2 externalID, 8 podPreemptionPolicy!",
    "Taint": "1 key!, 2 value, 3 effect!, 4 timeAdded:Time",
    "NodeStatus": "1 capacity:{Quantity}, 2 allocatable:{Quantity}, 3 phase, 4 conditions:[NodeCondition], "
    "5 addresses:[NodeAddress], 6 daemonEndpoints:NodeDaemonEndpoints, 7 nodeInfo:NodeSystemInfo, "
    "8 images:[ContainerImage], 9 volumesInUse:[s], 10 volumesAttached:-, 11 config:-, 12 runtimeHandlers:-, "
    "13 features:-, 14 declaredFeatures:[s]",
    "NodeCondition": "1 type!, 2 status!, 3 lastHeartbeatTime:Time, 4 lastTransitionTime:Time, 5 reason, 6 message",
    "NodeAddress": "1 type!, 2 address!",
    "NodeDaemonEndpoints": "1 kubeletEndpoint:DaemonEndpoint",
    "DaemonEndpoint": "1 Port!:i",
    "NodeSystemInfo": "1 machineID!, 2 systemUUID!, 3 bootID!, 4 kernelVersion!, 5 osImage!, "
    "6 containerRuntimeVersion!, 7 kubeletVersion!, 8 kubeProxyVersion!, 9 operatingSystem!, 10 architecture!, "
    "11 swap:-",
    "ContainerImage": "1 names:[s], 2 sizeBytes:i",
    # ---- apps/v1 --------------------------------------------------------------------------
    "Deployment": "1 metadata:ObjectMeta, 2 spec:DeploymentSpec, 3 status:DeploymentStatus",
    "DeploymentSpec": "1 replicas!:i, 2 selector:LabelSelector, 3 template:PodTemplateSpec, "
    "4 strategy:DeploymentStrategy, 5 minReadySeconds:i, 6 revisionHistoryLimit!:i, 7 paused:b, "
    "9 progressDeadlineSeconds!:i",
    "DeploymentStrategy": "1 type, 2 rollingUpdate:RollingUpdateDeployment",
    "RollingUpdateDeployment": "1 maxUnavailable:IntOrString, 2 maxSurge:IntOrString",
    "DeploymentStatus": "1 observedGeneration:i, 2 replicas:i, 3 updatedReplicas:i, 7 readyReplicas:i, "
    "4 availableReplicas:i, 5 unavailableReplicas:i, 9 terminatingReplicas!:i, 6 conditions:[DeploymentCondition], "
    "8 collisionCount!:i",
    "DeploymentCondition": "1 type!, 2 status!, 6 lastUpdateTime:Time, 7 lastTransitionTime:Time, 4 reason, 5 message",
    "ReplicaSet": "1 metadata:ObjectMeta, 2 spec:ReplicaSetSpec, 3 status:ReplicaSetStatus",
    "ReplicaSetSpec": "1 replicas!:i, 4 minReadySeconds:i, 2 selector:LabelSelector, 3 template:PodTemplateSpec",
    "ReplicaSetStatus": "1 replicas!:i, 2 fullyLabeledReplicas:i, 4 readyReplicas:i, 5 availableReplicas:i, "
    "7 terminatingReplicas!:i, 3 observedGeneration:i, 6 conditions:[ReplicaSetCondition]",
    "ReplicaSetCondition": "1 type!, 2 status!, 3 lastTransitionTime:Time, 4 reason, 5 message",
    # ---- networking/v1 ----------------------------------------------------------------
    "NetworkPolicy": "1 metadata:ObjectMeta, 2 spec:NetworkPolicySpec",
    "NetworkPolicySpec": "1 podSelector:LabelSelector, 2 ingress:[NetworkPolicyIngressRule], "
    "3 egress:[NetworkPolicyEgressRule], 4 policyTypes:[s]",
    "NetworkPolicyIngressRule": "1 ports:[NetworkPolicyPort], 2 from:[NetworkPolicyPeer]",
    "NetworkPolicyEgressRule": "1 ports:[NetworkPolicyPort], 2 to:[NetworkPolicyPeer]",
    "NetworkPolicyPort": "1 protocol!, 2 port:IntOrString, 3 endPort!:i",
    "NetworkPolicyPeer": "1 podSelector:LabelSelector, 2 namespaceSelector:LabelSelector, 3 ipBlock:IPBlock",
    "IPBlock": "1 cidr!, 2 except:[s]",
    "Ingress": "1 metadata:ObjectMeta, 2 spec:IngressSpec, 3 status:IngressStatus",
    "IngressSpec": "4 ingressClassName!, 1 defaultBackend:IngressBackend, 2 tls:[IngressTLS], 3 rules:[IngressRule]",
    "IngressBackend": "4 service:IngressServiceBackend, 3 resource:-",
    "IngressServiceBackend": "1 name!, 2 port:ServiceBackendPort",
    "ServiceBackendPort": "1 name, 2 number:i",
    "IngressTLS": "1 hosts:[s], 2 secretName",
    "IngressRule": "1 host, 2 ingressRuleValue:^IngressRuleValue",
    "IngressRuleValue": "1 http:HTTPIngressRuleValue",
    "HTTPIngressRuleValue": "1 paths:[HTTPIngressPath]",
    "HTTPIngressPath": "1 path, 3 pathType!, 2 backend:IngressBackend",
    "IngressStatus": "1 loadBalancer:IngressLoadBalancerStatus",
    "IngressLoadBalancerStatus": "1 ingress:[IngressLoadBalancerIngress]",
    "IngressLoadBalancerIngress": "1 ip, 2 hostname, 4 ports:[IngressPortStatus]",
    "IngressPortStatus": "1 port!:i, 2 protocol!, 3 error!",
    "IngressClass": "1 metadata:ObjectMeta, 2 spec:IngressClassSpec",
    "IngressClassSpec": "1 controller, 2 parameters:-",
    # ---- rbac.authorization.k8s.io/v1 (kubectl create role/clusterrole/rolebinding/...) ----------------
    "Role": "1 metadata:ObjectMeta, 2 rules:[PolicyRule]",
    "ClusterRole": "1 metadata:ObjectMeta, 2 rules:[PolicyRule], 3 aggregationRule:-",
    "PolicyRule": "1 verbs:[s], 2 apiGroups:[s], 3 resources:[s], 4 resourceNames:[s], 5 nonResourceURLs:[s]",
    "RoleBinding": "1 metadata:ObjectMeta, 2 subjects:[Subject], 3 roleRef:RoleRef",
    "Subject": "1 kind, 2 apiGroup, 3 name, 4 namespace",
    "RoleRef": "1 apiGroup, 2 kind, 3 name",
    "ServiceAccount": "1 metadata:ObjectMeta, 2 secrets:-, 3 imagePullSecrets:-, 4 automountServiceAccountToken!:b",
    # ---- discovery/v1 ---------------------------------------------------------------------
    "EndpointSlice": "1 metadata:ObjectMeta, 4 addressType!, 2 endpoints:[Endpoint], 3 ports:[SlicePort]",
    "Endpoint": "1 addresses:[s], 2 conditions:EndpointConditions, 3 hostname!, 4 targetRef:ObjectReference, "
    "5 deprecatedTopology:{s}, 6 nodeName!, 7 zone!, 8 hints:EndpointHints",
    "EndpointConditions": "1 ready!:b, 2 serving!:b, 3 terminating!:b",
    "EndpointHints": "1 forZones:[ForZone], 2 forNodes:[ForZone]",
    # ForZone and ForNode have the same single field.
    "ForZone": "1 name!",
    # discovery/v1's EndpointPort: every field a pointer.
    "SlicePort": "1 name!, 2 protocol!, 3 port!:i, 4 appProtocol!",
}

# (apiVersion, kind) -> the message of the object's own bytes.
KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "Pod"): "Pod",
    ("v1", "Service"): "Service",
    ("v1", "Node"): "Node",
    ("v1", "Endpoints"): "Endpoints",
    ("v1", "Event"): "Event",
    ("apps/v1", "Deployment"): "Deployment",
    ("apps/v1", "ReplicaSet"): "ReplicaSet",
    ("networking.k8s.io/v1", "NetworkPolicy"): "NetworkPolicy",
    ("v1", "Secret"): "Secret",
    ("networking.k8s.io/v1", "Ingress"): "Ingress",
    ("networking.k8s.io/v1", "IngressClass"): "IngressClass",
    ("discovery.k8s.io/v1", "EndpointSlice"): "EndpointSlice",
    ("rbac.authorization.k8s.io/v1", "Role"): "Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "RoleBinding",
    ("v1", "ServiceAccount"): "ServiceAccount",
}

# The messages podnet.apiserver.protobuf turns into a JSON scalar itself.
SPECIAL = ("Time", "MicroTime", "IntOrString", "Quantity", "Bytes")
SCALARS = ("s", "i", "b")
DROP, REFUSE = "~", "-"


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # a scalar, a message, SPECIAL, DROP or REFUSE: the type of one element
    repeated: bool = False
    map: bool = False
    inline: bool = False
    keep_zero: bool = False


def _field(spec: str) -> tuple[int, Field]:
    num, rest = spec.split(" ", 1)
    name, _, t = rest.partition(":")
    keep = name.endswith("!")
    name = name.rstrip("!")
    t = t or "s"
    rep = t.startswith("[")
    is_map = t.startswith("{")
    inline = t.startswith("^")
    if rep or is_map:
        t = t[1:-1]
    elif inline:
        t = t[1:]
    return int(num), Field(name, t, rep, is_map, inline, keep)


def _parse(table: dict[str, str]) -> dict[str, dict[int, Field]]:
    """The table as message -> {number: Field}, in declaration order; a
    reference to a message that is not defined is a bug found at import."""
    out = {name: dict(_field(s.strip()) for s in text.split(",")) for name, text in table.items()}
    known = set(out) | set(SPECIAL) | set(SCALARS) | {DROP, REFUSE}
    for name, fields in out.items():
        for f in fields.values():
            if f.type not in known:
                raise AssertionError("protoschema: %s.%s names unknown message %s" % (name, f.name, f.type))
    return out


SCHEMA: dict[str, dict[int, Field]] = _parse(MESSAGES)
