"""The API server tests start (see podnet.apiserver.local)."""

from podnet.apiserver.local import ApiServer, free_port

__all__ = ["ApiServer", "free_port"]
