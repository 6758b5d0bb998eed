"""Docker-style single containers on a lab node: run, ps, inspect, stop, rm,
network (issue 8). Placeholder until the verbs land."""


def add_parsers(sub, lab_arg):
    """Add this module's verbs (main.DOCKER_CMDS) to the `podnet` parser."""


def run(args):
    raise SystemExit("podnet %s: not implemented yet" % args.cmd)
