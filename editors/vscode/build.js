// Bundles the client: extension.js and the libraries it requires become one file,
// dist/extension.js (`vscode` is provided by the editor), and the licences of the
// bundled packages go to dist/THIRD-PARTY-NOTICES.txt, which the .vsix carries
// next to it. Run by `vsce package` (the vscode:prepublish script) or `npm run bundle`.
'use strict';

const esbuild = require('esbuild');
const fs = require('fs');
const path = require('path');

// The package a bundled file comes from: the innermost node_modules/NAME (or @SCOPE/NAME).
function packageOf(file) {
  const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(file);
  return match ? match[1] : null;
}

function notice(directory) {
  const manifest = JSON.parse(fs.readFileSync(path.join(directory, 'package.json'), 'utf8'));
  const licence = fs.readdirSync(directory).find((name) => /^licen[cs]e(\.(md|txt))?$/i.test(name));
  if (!licence) {
    throw new Error(`${manifest.name}@${manifest.version} is bundled but has no licence file`);
  }
  const text = fs.readFileSync(path.join(directory, licence), 'utf8').trim();
  return `${manifest.name}@${manifest.version} (${manifest.license})\n\n${text}\n`;
}

async function main() {
  const result = await esbuild.build({
    entryPoints: ['extension.js'],
    outfile: 'dist/extension.js',
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node18', // VS Code 1.82, the oldest the manifest accepts, runs extensions on Node 18
    external: ['vscode'],
    minify: true,
    metafile: true,
    logLevel: 'warning',
  });
  const packages = [...new Set(Object.keys(result.metafile.inputs).map(packageOf).filter(Boolean))].sort();
  const notices = packages.map(notice).sort();
  fs.writeFileSync('dist/THIRD-PARTY-NOTICES.txt',
    'dist/extension.js bundles these packages, under these licences:\n\n' +
    notices.join('\n' + '-'.repeat(78) + '\n\n'));
}

main().catch((error) => {
  console.error(error.message || error);
  process.exit(1);
});
