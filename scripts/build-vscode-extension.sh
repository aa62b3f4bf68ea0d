#!/usr/bin/env bash
# Build the VS Code extension: editors/vscode -> aip-VERSION.vsix, with the client
# bundled by esbuild into dist/extension.js (vscode-languageclient inside it, no
# node_modules in the package). Needs Node.js 22 or later and npm on the PATH
# (@vscode/vsce 4 requires Node 22). Usage:
#
#   bash scripts/build-vscode-extension.sh [OUT_DIR]   # default OUT_DIR: editors/vscode
#   bash scripts/build-vscode-extension.sh --deps      # only install the build tools
#
# It prints the path of the .vsix. The build tools are the extension's
# devDependencies, at the versions of editors/vscode/package-lock.json; they are
# installed into editors/vscode/node_modules, again only when the lock file changes.
set -euo pipefail
EXTENSION="$(cd "$(dirname "$0")/../editors/vscode" && pwd)"
DEPS_ONLY=false
[ "${1:-}" = --deps ] && DEPS_ONLY=true && shift
OUT="$(mkdir -p "${1:-$EXTENSION}" && cd "${1:-$EXTENSION}" && pwd)"
cd "$EXTENSION"

if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 22 ? 0 : 1)' 2>/dev/null; then
  echo "build-vscode-extension.sh: needs Node.js 22 or later on the PATH, found $(node --version 2>/dev/null || echo none)" >&2
  exit 1
fi

if ! cmp -s package-lock.json node_modules/.installed-package-lock.json; then
  npm ci --no-audit --no-fund --loglevel=error >&2
  cp package-lock.json node_modules/.installed-package-lock.json
fi
$DEPS_ONLY && exit 0

VERSION="$(node -p 'require("./package.json").version')"
VSIX="$OUT/aip-$VERSION.vsix"
# The manifest's `package` script: `vsce package` runs its vscode:prepublish script
# (the esbuild bundle, build.js) first, and leaves node_modules out.
npm run --silent package -- --out "$VSIX" >&2
echo "$VSIX"
