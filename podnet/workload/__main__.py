"""python -m podnet.workload <subcommand>: see podnet.workload.agnhost."""

import sys

from podnet.workload.agnhost import main

if __name__ == "__main__":
    sys.exit(main())
