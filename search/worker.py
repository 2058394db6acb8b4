"""``python -m search.worker RUN_DIR``: one keras-tuner process of a distributed search.

Its role comes from ``KERASTUNER_TUNER_ID`` (``chief`` serves the oracle, any
other id runs trials); the search settings come from ``RUN_DIR/search.json``.
Started by :func:`search.distributed.run_distributed`, or by hand on other
hosts that share the run directory (see the README).
"""

import sys

from search.distributed import worker_main

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m search.worker RUN_DIR")
    sys.exit(worker_main(sys.argv[1]))
