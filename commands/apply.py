"""aipc apply: run a pipeline on a Kubernetes cluster."""

from __future__ import annotations

import sys

from aipc.commands import UsageError
from aipc.commands.common import add_param_option

HELP = "apply a pipeline to a Kubernetes cluster, Jobs in dependency order"
DESCRIPTION = """\
Compile a .aip file for Kubernetes (the objects `aipc compile -t k8s` writes)
and apply them with server-side apply (field manager `aipc`):

  - NetworkPolicies, PersistentVolumeClaims and Services at once;
  - each Job once the Jobs it depends on have completed (aipc watches them);
  - each Deployment once its dependencies have completed, or, after another
    serve stage, once that one is available.

aipc stays until the last stage has been applied; with --wait, until every
Job has completed and every Deployment is available. A failed Job stops the
run: its dependants are never applied, and the error names the stage and the
Job's conditions. --dry-run sends every object with dryRun=All: the API server
validates them and stores nothing.

The cluster comes from --kubeconfig, else KUBECONFIG, else ~/.kube/config
(inside a pod: its service account). Objects go to --namespace, else the
pipeline header's namespace, else the context's namespace.

exit status: 0 applied, 1 errors in the input, a refused object, a failed
stage, a timeout or no cluster, 2 usage"""


def configure(parser) -> None:
    from aipc.backends import get_backend

    parser.add_argument("file", metavar="FILE", help="the .aip file (`-` reads stdin)")
    add_param_option(parser)
    parser.add_argument("--kubeconfig", metavar="PATH", help="the kubeconfig file (default: KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", metavar="NAME", help="the kubeconfig context (default: its current context)")
    parser.add_argument("-n", "--namespace", metavar="NS",
                        help="apply into this namespace (default: the pipeline's, else the context's)")
    parser.add_argument("--dry-run", action="store_true",
                        help="have the API server validate every object without storing any (dryRun=All)")
    parser.add_argument("--wait", action="store_true",
                        help="wait until every Job has completed and every Deployment is available")
    parser.add_argument("--timeout", metavar="DURATION",
                        help="give up waiting after this long (`30m`, `2h`, `1h30m`; default: no limit)")
    backend = get_backend("k8s")
    backend.add_arguments(parser.add_argument_group("k8s options"))


def parse_timeout(text: str | None) -> int | None:
    from aipc.compiler.units import UnitError, parse_duration

    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except UnitError as error:
        raise UsageError(f"--timeout {text}: {error.message}" + (f" ({error.help})" if error.help else "")) from None
    if seconds <= 0:
        raise UsageError(f"--timeout {text}: the timeout must be longer than 0s")
    return seconds


def run(args) -> int:
    import logging

    from aipc.backends import get_backend
    from aipc.commands.common import print_diagnostics
    from aipc.commands.common import load_pipeline
    from aipc.diagnostics import Diagnostic

    timeout = parse_timeout(args.timeout)
    if args.dry_run and args.wait:
        raise UsageError("--wait has nothing to wait for with --dry-run (the server stores nothing)")
    pipeline = load_pipeline(args.file, args.params)
    if pipeline is None:
        return 1
    backend = get_backend("k8s")
    emitted = backend.emit(pipeline, backend.options_from(args))
    if emitted.diagnostics:
        print_diagnostics(sorted(emitted.diagnostics, key=Diagnostic.sort_key), {}, "human", "auto", sys.stderr)
    if emitted.has_errors:
        return 1
    try:
        import kubernetes  # noqa: F401 - only to say clearly when it is missing
    except ImportError:
        print("aipc apply: error: the `kubernetes` package is not installed; install it with "
              "`pip install 'aipc[k8s]'`", file=sys.stderr)
        return 1
    from aipc.cluster.apply import Applier, ApplyRun, Report, sort_objects
    from aipc.cluster.connect import ClusterError, connect

    logging.getLogger("urllib3").setLevel(logging.ERROR)  # retries are reported once, by us
    report = Report(_write_stdout)
    try:
        connection = connect(args.kubeconfig, args.context)
        objects = sort_objects(emitted.documents, args.namespace, connection.namespace)
        namespaces = sorted({ref.namespace for ref, _ in objects.immediate if ref.namespace}
                            | {w.ref.namespace for w in objects.workloads if w.ref.namespace})
        where = f"namespace {', '.join(namespaces)}" if namespaces else "the cluster"
        context = f" (context {connection.context})" if connection.context else ""
        action = "validating (dry run)" if args.dry_run else "applying"
        report.line(f"{action} {pipeline.name}: {objects.count} objects to {where} at {connection.host}{context}")
        run = ApplyRun(objects, Applier(connection, args.dry_run), report, wait=args.wait, timeout=timeout)
        run.execute()
    except ClusterError as error:
        print(f"aipc apply: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("aipc apply: interrupted: what was applied stays in the cluster, and its Jobs keep running",
              file=sys.stderr)
        raise
    report.line(run.summary())
    return 0


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
