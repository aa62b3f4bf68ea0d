"""Running a pipeline on the local Docker engine: what ``aipc run`` and ``aipc down`` use.

- :mod:`aipc.runner.selection` — which stages a run includes (``--only``, ``--from``),
  the secrets it needs from the environment, and the names and labels of what it creates.
- :mod:`aipc.runner.scheduler` — the order: dependencies, parallelism bounded by
  ``--jobs``, retries, timeouts, failure propagation. It drives an abstract
  :class:`~aipc.runner.scheduler.Driver` and knows nothing about Docker.
- :mod:`aipc.runner.docker_driver` — the Driver on the Docker SDK (imported lazily
  by the commands: it needs the ``run`` extra).
- :mod:`aipc.runner.report` — log lines with a stage prefix, the live status view
  and the summary table.
"""
