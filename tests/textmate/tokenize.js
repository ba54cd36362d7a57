#!/usr/bin/env node
// Tokenizes files with a TextMate grammar in vscode-textmate, the engine VS
// Code runs, on the Oniguruma regex library VS Code uses (vscode-oniguruma's
// WebAssembly build). Driven by tests/textmate.rs; usable by hand:
//
//   npm ci --prefix tests/textmate
//   node tests/textmate/tokenize.js editors/textmate/dl.tmLanguage.json specs/*.dl
//
// Prints JSON on standard output:
//
//   { "scopeName": "source.dl",
//     "files": [ { "path": "specs/a.dl",
//                  "lines": [ { "text": "dim N = 8",
//                               "stoppedEarly": false,
//                               "tokens": [ { "text": "dim", "scopes": ["source.dl", "storage.type.dl"] },
//                                           ... ] } ] } ] }
//
// A line's tokens cover it exactly, in order. Before tokenizing, the grammar
// itself is checked: every `include` must name a rule that exists and every
// regular expression must compile in Oniguruma (vscode-textmate compiles a
// rule only when a line reaches it, so a broken rule could otherwise go
// unnoticed). Any problem is reported on standard error with exit code 1.
'use strict';

const fs = require('fs');
const path = require('path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

function fail(message) {
  process.stderr.write(`tokenize.js: ${message}\n`);
  process.exit(1);
}

// Every `include` names a rule of the repository, `$self` or `$base`, and
// every regex compiles. Returns the list of problems.
function lintGrammar(raw) {
  const problems = [];
  const repository = raw.repository || {};
  const visit = (rule, where) => {
    if (rule === null || typeof rule !== 'object') {
      problems.push(`${where}: not an object`);
      return;
    }
    if (typeof rule.include === 'string') {
      const inc = rule.include;
      if (inc.startsWith('#')) {
        if (!Object.prototype.hasOwnProperty.call(repository, inc.slice(1))) {
          problems.push(`${where}: include ${inc} names no rule of the repository`);
        }
      } else if (inc !== '$self' && inc !== '$base') {
        problems.push(`${where}: include ${inc} names another grammar`);
      }
    }
    for (const key of ['match', 'begin', 'end', 'while']) {
      if (rule[key] === undefined) continue;
      const source = rule[key];
      if (typeof source !== 'string') {
        problems.push(`${where}.${key}: not a string`);
        continue;
      }
      // An end or while pattern may refer back to the begin's captures
      // (\1), which only exist once substituted at run time.
      if ((key === 'end' || key === 'while') && /\\[1-9]/.test(source)) continue;
      try {
        new oniguruma.OnigScanner([source]).dispose();
      } catch (e) {
        problems.push(`${where}.${key}: ${source}: ${e.message || e}`);
      }
    }
    if (rule.begin !== undefined && rule.end === undefined && rule.while === undefined) {
      problems.push(`${where}: begin without end`);
    }
    if (rule.match === undefined && rule.begin === undefined && rule.include === undefined
        && rule.patterns === undefined) {
      problems.push(`${where}: matches nothing`);
    }
    (rule.patterns || []).forEach((p, i) => visit(p, `${where}.patterns[${i}]`));
    for (const key of ['captures', 'beginCaptures', 'endCaptures', 'whileCaptures']) {
      for (const [n, capture] of Object.entries(rule[key] || {})) {
        if (capture.patterns) {
          capture.patterns.forEach((p, i) => visit(p, `${where}.${key}[${n}].patterns[${i}]`));
        }
      }
    }
    for (const [name, sub] of Object.entries(rule.repository || {})) {
      visit(sub, `${where}.repository.${name}`);
    }
  };
  (raw.patterns || []).forEach((p, i) => visit(p, `patterns[${i}]`));
  for (const [name, rule] of Object.entries(repository)) visit(rule, `repository.${name}`);
  if (typeof raw.scopeName !== 'string') problems.push('no scopeName');
  return problems;
}

async function main() {
  const [grammarPath, ...files] = process.argv.slice(2);
  if (!grammarPath) {
    fail('usage: node tokenize.js GRAMMAR.tmLanguage.json FILE...');
  }
  const grammarText = fs.readFileSync(grammarPath, 'utf8');
  let raw;
  try {
    raw = JSON.parse(grammarText);
  } catch (e) {
    fail(`${grammarPath}: not JSON: ${e.message}`);
  }

  const wasm = fs.readFileSync(path.join(path.dirname(require.resolve('vscode-oniguruma')), 'onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));

  const problems = lintGrammar(raw);
  if (problems.length > 0) {
    fail(`${grammarPath}:\n  ${problems.join('\n  ')}`);
  }

  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) =>
      scopeName === raw.scopeName ? vsctm.parseRawGrammar(grammarText, grammarPath) : null,
  });
  const grammar = await registry.loadGrammar(raw.scopeName);
  if (!grammar) fail(`${grammarPath}: vscode-textmate loaded no grammar for ${raw.scopeName}`);

  const out = { scopeName: raw.scopeName, files: [] };
  for (const file of files) {
    let text = fs.readFileSync(file, 'utf8');
    if (text.startsWith('\uFEFF')) text = text.slice(1);
    // As VS Code splits a document: \r\n, \r and \n all end a line.
    const lines = text.split(/\r\n|\r|\n/);
    if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
    let ruleStack = vsctm.INITIAL;
    const outLines = [];
    for (const line of lines) {
      const result = grammar.tokenizeLine(line, ruleStack);
      const tokens = result.tokens.map((t) => ({
        text: line.substring(t.startIndex, t.endIndex),
        scopes: t.scopes,
      }));
      // Tokens of zero length carry no text; they have no scope to check.
      outLines.push({
        text: line,
        stoppedEarly: result.stoppedEarly,
        tokens: tokens.filter((t) => t.text.length > 0),
      });
      ruleStack = result.ruleStack;
    }
    out.files.push({ path: file, lines: outLines });
  }
  process.stdout.write(JSON.stringify(out));
  process.stdout.write('\n');
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
