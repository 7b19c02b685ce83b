"""``livetok monitor``: a terminal dashboard of the daemons' stats documents on the bus.

:mod:`~livetok.monitor.model` turns stats documents into rows and verdicts (pure, no I/O),
:mod:`~livetok.monitor.render` draws them (rich tables, or plain text for ``--once``),
:mod:`~livetok.monitor.app` subscribes and refreshes. Only the light client and rich: never torch.
"""
