"""aipc, the AI pipeline compiler: one .aip file to docker-compose, Kubernetes or Argo Workflows.

The public entry point for programs is :func:`aipc.compiler.check_source`; the
command line is :mod:`aipc.cli`.
"""

__version__ = "0.1.0"
