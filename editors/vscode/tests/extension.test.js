// Loads extension.js with stand-ins for `vscode` and `vscode-languageclient`
// and checks what it asks of them: run with `node tests/extension.test.js`.
'use strict';

const assert = require('assert');
const Module = require('module');
const path = require('path');

const calls = { clients: [], commands: {}, errors: [], settings: {} };

class FakeClient {
  constructor(id, name, serverOptions, clientOptions) {
    Object.assign(this, { id, name, serverOptions, clientOptions, started: false, stopped: false });
    calls.clients.push(this);
  }
  async start() {
    if (calls.failStart) {
      throw new Error('spawn aipc ENOENT');
    }
    this.started = true;
  }
  async stop() {
    this.stopped = true;
  }
}

const fakeVscode = {
  workspace: {
    getConfiguration: () => ({ get: (key, fallback) => (key in calls.settings ? calls.settings[key] : fallback) }),
    onDidChangeConfiguration: (listener) => { calls.onConfiguration = listener; return { dispose() {} }; },
  },
  commands: {
    registerCommand: (name, run) => { calls.commands[name] = run; return { dispose() {} }; },
    executeCommand: () => undefined,
  },
  window: { showErrorMessage: async (message) => { calls.errors.push(message); return undefined; } },
};
const fakeClientLibrary = { LanguageClient: FakeClient, TransportKind: { stdio: 0, ipc: 1 } };

const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (request === 'vscode') return fakeVscode;
  if (request === 'vscode-languageclient/node') return fakeClientLibrary;
  return load.call(this, request, parent, isMain);
};
const extension = require(path.join(__dirname, '..', 'extension.js'));

(async () => {
  const context = { subscriptions: [] };
  await extension.activate(context);
  assert.strictEqual(calls.clients.length, 1);
  const [client] = calls.clients;
  assert.deepStrictEqual(client.serverOptions, { command: 'aipc', args: ['lsp'], transport: 0 });
  assert.deepStrictEqual(client.clientOptions.documentSelector.map((s) => s.language), ['aip', 'aip']);
  assert.deepStrictEqual(client.clientOptions.initializationOptions, { debounceMs: 20 });
  assert.ok(client.started);
  assert.ok(context.subscriptions.length >= 2);

  // a configured path is used, and changing the settings restarts the server
  calls.settings['server.path'] = '/opt/venv/bin/aipc';
  calls.onConfiguration({ affectsConfiguration: (section) => section === 'aip.server' });
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(client.stopped);
  assert.strictEqual(calls.clients.length, 2);
  assert.strictEqual(calls.clients[1].serverOptions.command, '/opt/venv/bin/aipc');

  // a server that cannot start is reported, not thrown
  calls.failStart = true;
  await calls.commands['aip.restartServer']();
  assert.strictEqual(calls.errors.length, 1);
  assert.match(calls.errors[0], /could not start the language server `\/opt\/venv\/bin\/aipc lsp`/);
  await extension.deactivate();
  console.log('extension.js: ok');
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
