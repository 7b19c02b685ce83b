"""The process around the pipeline: what makes ``livetok run`` a service.

* ``main``: the checks before anything starts, the sinks opened, the tokenizers loaded, uvloop;
* ``runner``: :class:`~livetok.daemon.runner.Daemon`: the pipeline in one task group, one snapshot
  per interval rendered three ways, READY, the watchdog, SIGHUP;
* ``preflight``: everything ``run`` (and ``check-config``) checks before capture starts;
* ``supervise`` and ``notify``: READY, STATUS and the watchdog for systemd; ``livetok reload``'s answers;
* ``prometheus`` and ``statsdoc``: the exposition and the stats document, renderings of the snapshot.
"""
