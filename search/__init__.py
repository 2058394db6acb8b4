"""keras-tuner searches over the zoo's model families (the dense nets' space and the classic
models' spaces): the hypermodels, the oracles, the CV tuner, trial records, the time budget and
its sharing, the distributed supervisor and worker, TensorBoard trial logs.

It imports ``zoo`` only, never the application (``digits_zoo``).
"""
