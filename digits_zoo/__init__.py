"""digits-zoo's application: the run directory, leaderboard, shipping, report and command line.

It sits on top of two layers and is the only one that may import both:
``zoo`` (data, search space, networks, baselines, the evaluation protocol)
and ``search`` (the keras-tuner search over the zoo's space).
"""
