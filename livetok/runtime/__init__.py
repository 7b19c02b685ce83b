"""The process's runtime kit, below everything that runs on the event loop.

* ``log``: one line per event, with its journald priority; the ``NOTICE`` level;
* ``lane``: blocking calls off the event loop in daemon threads (never the default executor);
* ``stopping``: SIGINT/SIGTERM as a clean stop, SIGHUP as a reload request, the shutdown deadline;
* ``backoff``: capped, jittered retry delays.
"""
