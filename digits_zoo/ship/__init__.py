"""Shipping a leaderboard model.

Modules: ``layout`` (the export format's file names and version folders),
``export`` (writing a verified version), ``keras_formats`` (a network's ONNX
and LiteRT files, by Keras on TensorFlow in a child process), ``sklearn_onnx``
(a scikit-learn model's ONNX file), ``runtimes`` (running ONNX and LiteRT
files), ``load`` (loading one), ``inputs`` (reading pictures, arrays and CSV
rows), ``evaluate`` (scoring on labelled data) and ``commands`` (the
``export``, ``predict`` and ``evaluate`` subcommands).
"""
