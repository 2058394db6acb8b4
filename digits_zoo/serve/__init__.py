"""Serving exports over HTTP: TensorFlow Serving's REST API and a page to draw digits on.

Modules: ``errors`` (the request errors and their HTTP status), ``tfserving``
(TensorFlow Serving's JSON: requests, responses, status and metadata),
``batching`` (concurrent predictions as one model call), ``collect``
(appending drawn digits to a CSV in the optdigits layout),
``models`` (finding and loading the exports a server holds), ``reload`` (new
versions served while running), ``adapting`` (``digits-zoo adapt`` started from
the page), ``app`` (the ASGI application) and ``commands`` (the ``serve``
subcommand). The page itself is in
``static/``.
"""
