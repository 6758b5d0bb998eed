"""NetworkPolicy enforcement in the node agent (issue 6). Placeholder: the
agent starts it; it does nothing until the planner lands."""


class PolicyReconciler:
    def __init__(self, node, objects, cluster_cidr):
        self.node, self.objects, self.cluster_cidr = node, objects, cluster_cidr

    def run(self, stop):
        stop.wait()
