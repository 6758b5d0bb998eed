"""Services in the node agent. Placeholder until wired."""


class ProxyReconciler:
    def __init__(self, node, objects, cluster_cidr, state_dir):
        self.node, self.objects, self.cluster_cidr, self.state_dir = node, objects, cluster_cidr, state_dir

    def run(self, stop):
        stop.wait()
