"""The Kubernetes REST API over podnet's store (see server.py)."""
