"""Cluster DNS: the Kubernetes DNS specification served to every pod.

records.py   Services + EndpointSlices -> records (pure)
answers.py   records -> lookup rules and precomputed wire answers (dnspython)
forward.py   other names -> upstream resolvers, with a cache
server.py    UDP + TCP server, workers, following the store
resolvconf.py  a pod's /etc/resolv.conf by dnsPolicy (pure; used by the agent)
"""
