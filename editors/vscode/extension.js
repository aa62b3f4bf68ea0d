// The aip extension: starts `aipc lsp` for .aip files. Highlighting comes from
// syntaxes/aip.tmLanguage.json; everything else (errors as you type, hover,
// completion, go to definition, references, rename, outline, formatting) comes
// from the language server.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function settings() {
  const config = vscode.workspace.getConfiguration('aip');
  return {
    command: config.get('server.path', 'aipc') || 'aipc',
    args: config.get('server.args', ['lsp']),
    debounceMs: config.get('diagnostics.debounceMs', 20),
  };
}

async function start() {
  const { command, args, debounceMs } = settings();
  // TransportKind.stdio adds `--stdio`, which `aipc lsp` accepts.
  const serverOptions = { command, args, transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [
      { scheme: 'file', language: 'aip' },
      { scheme: 'untitled', language: 'aip' },
    ],
    initializationOptions: { debounceMs },
    outputChannelName: 'aip language server',
  };
  client = new LanguageClient('aip', 'aip language server', serverOptions, clientOptions);
  try {
    await client.start();
  } catch (error) {
    client = undefined;
    const choice = await vscode.window.showErrorMessage(
      `aip: could not start the language server \`${command} ${args.join(' ')}\`: ${error.message || error}. ` +
      'Install aipc with its language server (pip install "aipc[lsp]") or set aip.server.path.',
      'Open settings');
    if (choice === 'Open settings') {
      vscode.commands.executeCommand('workbench.action.openSettings', 'aip.server.path');
    }
  }
}

async function stop() {
  if (client) {
    const running = client;
    client = undefined;
    await running.stop();
  }
}

async function restart() {
  await stop();
  await start();
}

function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('aip.restartServer', restart),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('aip.server') || event.affectsConfiguration('aip.diagnostics')) {
        restart();
      }
    }),
  );
  return start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
