"""Shipping a leaderboard model.

Modules: ``layout`` (the export format's file names and version folders),
``rows`` (which leaderboard row ships, and its fitted model), ``export``
(writing a verified version), ``own_format`` (a network's SavedModel, a
scikit-learn model's skops file), ``keras_formats`` (a network's ONNX
and LiteRT files, by Keras on TensorFlow in a child process that dies with its
parent, ``child_process``), ``sklearn_onnx``
(a scikit-learn model's ONNX file), ``runtimes`` (running ONNX and LiteRT
files), ``load`` (loading one), ``inputs`` (reading pictures, arrays and CSV
rows), ``evaluate`` (scoring on labelled data) and ``commands`` (the
``export``, ``predict`` and ``evaluate`` subcommands).
"""
