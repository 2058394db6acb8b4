"""``python -m search.worker DIRECTORY``: one keras-tuner process of a distributed search.

Its role comes from ``KERASTUNER_TUNER_ID`` (``chief`` serves the oracle, any
other id runs trials); the search settings and the data source come from
``DIRECTORY/search.json``. Started by :func:`search.distributed.run_distributed`.
"""

import sys

from zoo.environment import set_process_defaults

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m search.worker DIRECTORY")
    # The process's defaults (Keras backend, quiet TensorFlow) before Keras is imported.
    set_process_defaults()
    from search.distributed import worker_main

    sys.exit(worker_main(sys.argv[1]))
