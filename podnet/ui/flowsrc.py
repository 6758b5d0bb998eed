"""The flow log, into the web view's feed.

Until the agents serve their flow rings (podnet/flows, issue 15), there is
nothing to read: start() says so in the log and returns None.
"""

import logging

log = logging.getLogger("podnet.ui")


def start(lab, sink, stop):
    log.info("ui: no flow source for lab %s yet", lab)
    return None
