"""keras-tuner searches over the zoo's dense-net space: the hypermodel, the CV tuner, trial
records, the time budget, the distributed supervisor and worker, TensorBoard trial logs.

It imports ``zoo`` only, never the application (``digits_zoo``).
"""
