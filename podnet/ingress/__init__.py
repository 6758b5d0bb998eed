"""HTTP from outside: Ingress and the Gateway API's HTTPRoute served by a real nginx.

* model.py     (pure) objects -> the routing model: servers, locations, candidate routes
* backends.py  (pure) Services + EndpointSlices -> upstreams of ready endpoint IPs
* gateway.py   (pure) Gateways + HTTPRoutes -> routes, and what status says about them
* nginxconf.py (pure) the model -> nginx.conf text, deterministic
* render.py    (pure) the entry point: inputs -> Rendered (text, certificate files, problems)
* status.py    (pure) status of Ingresses, Gateways and HTTPRoutes
* nginx.py     the nginx child process: test, start, graceful reload, stop, by PID
* controller.py the process in the ingress-nginx pod: API informers -> render -> reload
* addon.py     what `podnet lab up` adds: namespace, classes, Deployment, LoadBalancer Service
"""
