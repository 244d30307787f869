"""Executors: how a launch is started, queried and stopped (see :mod:`.base`).

``local`` runs launches on this machine (:mod:`.local`), ``http`` sends them to
an outside system (:mod:`.http`). Nothing is imported here: the supervisor of
every local run starts from this package, and a launch should not pay for an
HTTP client it does not use.
"""
