"""``inpaint serve``: a local web page and HTTP API over the completion methods.

- :mod:`inpaint.serve.settings`: what the server was started with (methods, weights, LoRAs,
  limits) and how a request's fields become a method's options;
- :mod:`inpaint.serve.models`: the loaded methods, kept warm between requests;
- :mod:`inpaint.serve.jobs`: the queue: one worker thread per device runs one job at a time;
- :mod:`inpaint.serve.uploads`: a request's body (multipart or JSON), read and size-limited;
- :mod:`inpaint.serve.app`: the ASGI application (FastAPI): the page and ``/api/v1``;
- ``static/``: the page (plain HTML, JavaScript and CSS, no build step).

Only :mod:`inpaint.serve.app` and :mod:`inpaint.serve.uploads` import FastAPI; the rest is usable
(and tested) without it.
"""
