// VS Code client for dlverify's language server: starts `dlverify lsp` on
// standard input and output for every `.dl` file, and restarts it when the
// `dlverify.path` setting changes or on "dlverify: Restart the language
// server". Highlighting comes from syntaxes/dl.tmLanguage.json, without the
// server.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function executable() {
  const configured = vscode.workspace.getConfiguration('dlverify').get('path');
  return typeof configured === 'string' && configured.trim() !== '' ? configured.trim() : 'dlverify';
}

async function start() {
  const command = executable();
  const serverOptions = { command, args: ['lsp'], transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [
      { scheme: 'file', language: 'dl' },
      { scheme: 'untitled', language: 'dl' },
    ],
  };
  client = new LanguageClient('dlverify', 'dlverify', serverOptions, clientOptions);
  try {
    await client.start();
  } catch (e) {
    client = undefined;
    vscode.window.showErrorMessage(
      `dlverify: could not start \`${command} lsp\` (${e && e.message ? e.message : e}). ` +
        'Install dlverify (`cargo install --path .` in its repository) or set `dlverify.path`.'
    );
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

async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('dlverify.restartServer', restart),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('dlverify.path')) {
        restart();
      }
    })
  );
  await start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
