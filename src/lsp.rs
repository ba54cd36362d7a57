//! `dlverify lsp`: a Language Server Protocol server over standard input
//! and output, for editors.
//!
//! - On open and on every change, the document is parsed and analysed at
//!   once and its diagnostics published: the same findings, codes and help
//!   as the command line's (`report::findings`), placed in the protocol's
//!   UTF-16 positions.
//! - On save, every claim is checked on a background thread; an edit made
//!   meanwhile makes its result stale, and it is dropped. Refuted claims,
//!   claims that held though marked to fail, and undefined formulas are
//!   then underlined at the claim.
//! - Hover on a declared name gives its declaration, shape and sizes; on a
//!   claim after a check, its verdict. Go-to-definition jumps to where a
//!   name is declared; document symbols list declarations and claims.
//!
//! The transport is written here rather than taken from `lsp-server`'s
//! stdio threads: a message whose JSON does not parse gets a parse error
//! in reply, and the server reads on, where `lsp-server`'s reader stops.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Sender;
use lsp_server::{Connection, Message, Notification, Request, Response};
use lsp_types as lsp;
use serde_json::{Value, json};

use crate::analysis::Program;
use crate::report::findings::{Finding, findings};
use crate::source::{Source, Span};
use crate::verify::Options;
use crate::verify::outcome::{ClaimOutcome, FileOutcome};

/// Serves the protocol on standard input and output until `exit`.
pub fn serve_stdio() -> Result<(), String> {
    let (to_server, from_client) = crossbeam_channel::unbounded::<Message>();
    let (to_client, from_server) = crossbeam_channel::unbounded::<Message>();
    // Replies the reader makes itself, to what is not a message: already
    // serialised, as a JSON-RPC error may have a null id.
    let (to_client_raw, from_reader) = crossbeam_channel::unbounded::<String>();
    let writer = std::thread::spawn(move || {
        let mut stdout = std::io::stdout().lock();
        // Once the reader is gone, its channel is never ready again.
        let mut from_reader = from_reader;
        loop {
            let written = crossbeam_channel::select! {
                recv(from_server) -> message => match message {
                    Ok(message) => message.write(&mut stdout),
                    Err(_) => break,
                },
                recv(from_reader) -> raw => match raw {
                    Ok(raw) => write!(stdout, "Content-Length: {}\r\n\r\n{raw}", raw.len())
                        .and_then(|()| stdout.flush()),
                    Err(_) => {
                        from_reader = crossbeam_channel::never();
                        Ok(())
                    }
                },
            };
            if written.is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        read_messages(&mut std::io::stdin().lock(), &to_server, &to_client_raw);
    });
    let result = serve(Connection {
        sender: to_client,
        receiver: from_client,
    });
    let _ = writer.join();
    result
}

/// Reads framed messages until the input ends. A frame whose body is not
/// a message gets a parse error in reply, and reading goes on; a header
/// without a usable length is skipped up to the next blank line.
fn read_messages(input: &mut impl BufRead, to_server: &Sender<Message>, replies: &Sender<String>) {
    let exit = || Message::Notification(Notification::new("exit".to_string(), Value::Null));
    let error = |id: Value, code: i32, message: String| {
        json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
            .to_string()
    };
    loop {
        let mut length: Option<usize> = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            // A line is read up to a bound: garbage without a newline is
            // taken in pieces, never all at once.
            let read = std::io::BufRead::read_until(
                &mut std::io::Read::take(&mut *input, MAX_HEADER as u64),
                b'\n',
                &mut line,
            );
            match read {
                // The client is gone: as if it had said `exit`.
                Ok(0) | Err(_) => {
                    let _ = to_server.send(exit());
                    return;
                }
                Ok(_) => {}
            }
            // A header is ASCII; a stray byte in one is no reason to stop.
            let header = String::from_utf8_lossy(&line).to_ascii_lowercase();
            let header = header.trim_end();
            if header.is_empty() && length.is_some() {
                break;
            }
            // Anywhere in the line: after a frame that could not be read
            // (no length, or a length short of its body), the rest of it
            // runs into the next frame's header, which is found again so.
            if let Some(at) = header.rfind("content-length:") {
                length = header
                    .get(at + "content-length:".len()..)
                    .and_then(|v| v.trim().parse().ok());
            }
        }
        let Some(length) = length else {
            continue;
        };
        if length > MAX_MESSAGE {
            if length > 4 * MAX_MESSAGE {
                // Not a length to read past: the next header is looked
                // for instead.
                let _ = replies.send(error(
                    Value::Null,
                    -32600,
                    format!("a message length of {length} bytes cannot be right"),
                ));
                continue;
            }
            // Read past it, so that the next message's header is read as one.
            let mut body = std::io::Read::take(&mut *input, length as u64);
            let skipped = std::io::copy(&mut body, &mut std::io::sink());
            if skipped.map_or(true, |n| n < length as u64) {
                let _ = to_server.send(exit());
                return;
            }
            let _ = replies.send(error(
                Value::Null,
                -32600,
                format!("a message of {length} bytes is over the {MAX_MESSAGE} this server reads"),
            ));
            continue;
        }
        let mut body = vec![0u8; length];
        if std::io::Read::read_exact(input, &mut body).is_err() {
            let _ = to_server.send(exit());
            return;
        }
        match serde_json::from_slice::<Message>(&body) {
            Ok(message) => {
                if to_server.send(message).is_err() {
                    return;
                }
            }
            Err(e) => {
                let id = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("id").cloned())
                    .unwrap_or(Value::Null);
                let _ = replies.send(error(id, -32700, format!("not a message: {e}")));
            }
        }
    }
}

/// The largest message read: a 10 MB paste fits, a runaway header does not.
const MAX_MESSAGE: usize = 64 << 20;
/// The longest header line read at once.
const MAX_HEADER: usize = 1 << 16;

/// Open documents by URI (as text: `lsp::Uri` hashes by a cached value).
type Documents = HashMap<String, Document>;

/// A document as the editor last sent it, and what was found in it.
struct Document {
    text: String,
    version: i32,
    /// Bumped by every edit: a check started before it is stale.
    generation: Arc<AtomicU64>,
    /// The claims' outcomes of the last check of this very text.
    checked: Vec<ClaimOutcome>,
    /// Stops the check running on this document, if one is.
    running: Option<crate::eval::Cancel>,
    /// The text (its ticket) whose check was published last.
    checked_at: Option<u64>,
}

/// Text to parse and analyse, and the edit it came with.
struct Job {
    uri: lsp::Uri,
    version: i32,
    text: String,
    generation: Arc<AtomicU64>,
    at: u64,
}

/// Parses and analyses documents on their own thread, so that a large
/// paste never holds up hover or the next message. Jobs that queued up
/// while one ran are taken newest first per document; a job whose
/// document was edited since is skipped, and its result, if the edit came
/// while it ran, is not published.
fn analyst(jobs: crossbeam_channel::Receiver<Job>, results: Sender<Analysed>) {
    while let Ok(first) = jobs.recv() {
        let mut latest: Vec<Job> = vec![first];
        for job in jobs.try_iter() {
            latest.retain(|j| j.uri != job.uri);
            latest.push(job);
        }
        for job in latest {
            let current = || job.generation.load(Ordering::SeqCst) == job.at;
            if !current() {
                continue;
            }
            let source = Source::new(name_of(&job.uri), job.text);
            // One text the analysis cannot take must not end analysis for
            // every document.
            let analysed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::analyze_source(source.clone())
            }));
            let Ok(outcome) = analysed else {
                continue;
            };
            if current() {
                let diagnostics = findings(&outcome)
                    .iter()
                    .map(|f| diagnostic(&job.uri, &source, f))
                    .collect();
                let _ = results.send(Analysed {
                    uri: job.uri,
                    version: job.version,
                    generation: job.at,
                    diagnostics,
                });
            }
        }
    }
}

/// A finished analysis, to publish where its text is still current and no
/// check of that text (which includes it) was published already.
struct Analysed {
    uri: lsp::Uri,
    version: i32,
    generation: u64,
    diagnostics: Vec<lsp::Diagnostic>,
}

/// Tickets for document texts, unique over the server's life: a document
/// reopened under the same URI never shares one with its former self, so
/// no result for the old text passes for the new.
static TICKETS: AtomicU64 = AtomicU64::new(1);

fn ticket() -> u64 {
    TICKETS.fetch_add(1, Ordering::SeqCst)
}

/// A finished background check.
struct Checked {
    uri: lsp::Uri,
    generation: u64,
    /// Cancelled when a later check or an edit replaced this one: its
    /// claims were stopped, not decided, and it is not published.
    cancel: crate::eval::Cancel,
    outcome: FileOutcome,
}

/// Runs the protocol on `connection` until `exit`.
pub fn serve(connection: Connection) -> Result<(), String> {
    let capabilities = lsp::ServerCapabilities {
        text_document_sync: Some(lsp::TextDocumentSyncCapability::Options(
            lsp::TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(lsp::TextDocumentSyncKind::FULL),
                save: Some(lsp::TextDocumentSyncSaveOptions::Supported(true)),
                ..Default::default()
            },
        )),
        hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
        definition_provider: Some(lsp::OneOf::Left(true)),
        document_symbol_provider: Some(lsp::OneOf::Left(true)),
        code_action_provider: Some(lsp::CodeActionProviderCapability::Simple(true)),
        execute_command_provider: Some(lsp::ExecuteCommandOptions {
            commands: vec![CHECK_COMMAND.to_string()],
            ..Default::default()
        }),
        position_encoding: Some(lsp::PositionEncodingKind::UTF16),
        ..Default::default()
    };
    let capabilities = serde_json::to_value(capabilities).map_err(|e| e.to_string())?;
    connection
        .initialize(capabilities)
        .map_err(|e| e.to_string())?;
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Checked>();
    let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
    let (analysed_tx, mut analysed_rx) = crossbeam_channel::unbounded::<Analysed>();
    std::thread::spawn(move || analyst(queue, analysed_tx));
    let mut documents: Documents = HashMap::new();
    loop {
        crossbeam_channel::select! {
            recv(connection.receiver) -> message => {
                let Ok(message) = message else { return Ok(()) };
                match message {
                    Message::Request(request) => {
                        if request.method == "shutdown" {
                            let _ = connection.sender.send(Response::new_ok(request.id, ()).into());
                            continue;
                        }
                        if request.method == "workspace/executeCommand" {
                            let response = command(&mut documents, request, &done_tx);
                            let _ = connection.sender.send(response.into());
                            continue;
                        }
                        let response = respond(&documents, request);
                        let _ = connection.sender.send(response.into());
                    }
                    Message::Notification(n) if n.method == "exit" => return Ok(()),
                    Message::Notification(n) => {
                        notified(&connection.sender, &mut documents, n, &jobs, &done_tx);
                    }
                    Message::Response(_) => {}
                }
            }
            recv(analysed_rx) -> analysed => {
                let Ok(analysed) = analysed else {
                    // The analysis thread is gone: no spinning on it.
                    analysed_rx = crossbeam_channel::never();
                    continue;
                };
                let Some(document) = documents.get(analysed.uri.as_str()) else { continue };
                if document.generation.load(Ordering::SeqCst) == analysed.generation
                    && document.checked_at != Some(analysed.generation)
                {
                    publish_raw(&connection.sender, &analysed.uri, Some(analysed.version), analysed.diagnostics);
                }
            }
            recv(done_rx) -> checked => {
                let Ok(checked) = checked else { continue };
                let Some(document) = documents.get_mut(checked.uri.as_str()) else { continue };
                // An edit came in while it ran: its findings are for text
                // that no longer exists.
                if document.generation.load(Ordering::SeqCst) != checked.generation
                    || checked.cancel.is_cancelled()
                {
                    continue;
                }
                let source = Source::new(checked.uri.as_str(), document.text.clone());
                publish(&connection.sender, &checked.uri, document.version, &source, &findings(&checked.outcome));
                document.checked = checked.outcome.claims;
                document.checked_at = Some(checked.generation);
            }
        }
    }
}

/// The command that checks a document's claims on request, as a save does:
/// its argument is the document's URI.
pub const CHECK_COMMAND: &str = "dlverify.check";

/// `workspace/executeCommand`: [`CHECK_COMMAND`].
fn command(documents: &mut Documents, request: Request, done: &Sender<Checked>) -> Response {
    let id = request.id.clone();
    let Ok(p) = serde_json::from_value::<lsp::ExecuteCommandParams>(request.params) else {
        return Response::new_err(
            id,
            lsp_server::ErrorCode::InvalidParams as i32,
            "expected a command and its arguments".to_string(),
        );
    };
    let uri = p
        .arguments
        .first()
        .and_then(Value::as_str)
        .and_then(|u| u.parse::<lsp::Uri>().ok());
    match uri {
        Some(uri) if p.command == CHECK_COMMAND && documents.contains_key(uri.as_str()) => {
            check_in_background(documents, &uri, done);
            Response::new_ok(id, Value::Null)
        }
        _ => Response::new_err(
            id,
            lsp_server::ErrorCode::InvalidParams as i32,
            format!("`{CHECK_COMMAND}` takes the URI of an open document"),
        ),
    }
}

/// Open, change, save and close.
fn notified(
    sender: &Sender<Message>,
    documents: &mut Documents,
    n: Notification,
    jobs: &Sender<Job>,
    done: &Sender<Checked>,
) {
    match n.method.as_str() {
        "textDocument/didOpen" => {
            let Ok(p) = serde_json::from_value::<lsp::DidOpenTextDocumentParams>(n.params) else {
                return;
            };
            let uri = p.text_document.uri;
            // Opened again without a close: the old text's work is stale.
            if let Some(old) = documents.get_mut(uri.as_str()) {
                old.generation.store(ticket(), Ordering::SeqCst);
                if let Some(running) = old.running.take() {
                    running.cancel();
                }
            }
            documents.insert(
                uri.as_str().to_string(),
                Document {
                    text: p.text_document.text,
                    version: p.text_document.version,
                    generation: Arc::new(AtomicU64::new(ticket())),
                    checked: vec![],
                    running: None,
                    checked_at: None,
                },
            );
            analyse(jobs, documents, &uri);
        }
        "textDocument/didChange" => {
            let Ok(p) = serde_json::from_value::<lsp::DidChangeTextDocumentParams>(n.params) else {
                return;
            };
            let uri = p.text_document.uri;
            let Some(document) = documents.get_mut(uri.as_str()) else {
                return;
            };
            // Full sync: the last change holds the whole text.
            if let Some(change) = p.content_changes.into_iter().last() {
                document.text = change.text;
            }
            document.version = p.text_document.version;
            document.generation.store(ticket(), Ordering::SeqCst);
            document.checked.clear();
            // A check of the old text is stale: it stops at its next look
            // at the clock.
            if let Some(running) = document.running.take() {
                running.cancel();
            }
            analyse(jobs, documents, &uri);
        }
        "textDocument/didSave" => {
            let Ok(p) = serde_json::from_value::<lsp::DidSaveTextDocumentParams>(n.params) else {
                return;
            };
            check_in_background(documents, &p.text_document.uri, done);
        }
        "textDocument/didClose" => {
            if let Ok(p) = serde_json::from_value::<lsp::DidCloseTextDocumentParams>(n.params) {
                if let Some(document) = documents.remove(p.text_document.uri.as_str()) {
                    // Queued analyses and a running check are for a
                    // document no longer open.
                    document.generation.store(ticket(), Ordering::SeqCst);
                    if let Some(running) = document.running {
                        running.cancel();
                    }
                }
                publish_raw(sender, &p.text_document.uri, None, vec![]);
            }
        }
        _ => {}
    }
}

/// Checks every claim of a document on a thread of its own; the result
/// comes back on `done`. A check already running on it is stopped.
fn check_in_background(documents: &mut Documents, uri: &lsp::Uri, done: &Sender<Checked>) {
    let Some(document) = documents.get_mut(uri.as_str()) else {
        return;
    };
    if let Some(running) = document.running.take() {
        running.cancel();
    }
    let cancel = crate::eval::Cancel::default();
    document.running = Some(cancel.clone());
    let generation = document.generation.load(Ordering::SeqCst);
    let source = Source::new(name_of(uri), document.text.clone());
    let (uri, done) = (uri.clone(), done.clone());
    std::thread::spawn(move || {
        let options = Options {
            timeout: std::time::Duration::from_secs(20),
            cancel: Some(cancel.clone()),
            ..Options::default()
        };
        let outcome = crate::check_source(source, &options);
        let _ = done.send(Checked {
            uri,
            generation,
            cancel,
            outcome,
        });
    });
}

/// Queues a document's current text for parsing and analysis.
fn analyse(jobs: &Sender<Job>, documents: &Documents, uri: &lsp::Uri) {
    let Some(document) = documents.get(uri.as_str()) else {
        return;
    };
    let _ = jobs.send(Job {
        uri: uri.clone(),
        version: document.version,
        text: document.text.clone(),
        generation: Arc::clone(&document.generation),
        at: document.generation.load(Ordering::SeqCst),
    });
}

/// A document's name as reports show it: its path where it is a file.
fn name_of(uri: &lsp::Uri) -> String {
    let path = uri.path().as_str();
    if path.is_empty() {
        uri.as_str().to_string()
    } else {
        path.to_string()
    }
}

fn publish(
    sender: &Sender<Message>,
    uri: &lsp::Uri,
    version: i32,
    source: &Source,
    findings: &[Finding],
) {
    let diagnostics = findings
        .iter()
        .map(|f| diagnostic(uri, source, f))
        .collect();
    publish_raw(sender, uri, Some(version), diagnostics);
}

fn publish_raw(
    sender: &Sender<Message>,
    uri: &lsp::Uri,
    version: Option<i32>,
    diagnostics: Vec<lsp::Diagnostic>,
) {
    let params = lsp::PublishDiagnosticsParams {
        uri: uri.clone(),
        diagnostics,
        version,
    };
    let _ = sender.send(Message::Notification(Notification::new(
        "textDocument/publishDiagnostics".to_string(),
        params,
    )));
}

/// A finding as the protocol has it; the help goes in the message, as
/// editors show no other field of it.
fn diagnostic(uri: &lsp::Uri, source: &Source, f: &Finding) -> lsp::Diagnostic {
    let place = f
        .span
        .map_or_else(lsp::Range::default, |s| range(source, s));
    let message = match &f.help {
        Some(help) => format!("{}\nhelp: {help}", f.message),
        None => f.message.clone(),
    };
    let related: Vec<lsp::DiagnosticRelatedInformation> = f
        .labels
        .iter()
        .skip(1)
        .map(|(span, label)| lsp::DiagnosticRelatedInformation {
            location: lsp::Location {
                uri: uri.clone(),
                range: range(source, *span),
            },
            message: label.clone().unwrap_or_else(|| "here".to_string()),
        })
        .collect();
    lsp::Diagnostic {
        range: place,
        severity: Some(lsp::DiagnosticSeverity::ERROR),
        code: Some(lsp::NumberOrString::String(f.code.clone())),
        source: Some("dlverify".to_string()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        ..Default::default()
    }
}

/// A span in the protocol's positions: 0-based lines, UTF-16 columns of
/// the text as the editor has it (a byte-order mark, which [`Source`]
/// drops, still counts on the first line).
fn range(source: &Source, span: Span) -> lsp::Range {
    let at = |offset: usize| {
        let p = source.position(offset);
        let bom = usize::from(source.had_bom() && p.line == 1);
        lsp::Position {
            line: u32::try_from(p.line.saturating_sub(1)).unwrap_or(u32::MAX),
            character: u32::try_from(p.column_utf16 - 1 + bom).unwrap_or(u32::MAX),
        }
    };
    lsp::Range {
        start: at(span.start),
        end: at(span.end),
    }
}

/// The byte offset in `source`'s text of a protocol position in the
/// editor's text (clamped to the text); the inverse of [`range`].
fn offset_of(source: &Source, position: lsp::Position) -> usize {
    let text = source.text();
    let mut character = position.character as usize;
    if source.had_bom() && position.line == 0 {
        character = character.saturating_sub(1);
    }
    let mut offset = 0;
    // Lines as the editor counts them: `Source` has made a lone CR a LF.
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if n == position.line as usize {
            let mut units = 0;
            for (k, c) in line.char_indices() {
                if units >= character || c == '\n' || c == '\r' {
                    return offset + k;
                }
                units += c.len_utf16();
            }
            return offset + line.len();
        }
        offset += line.len();
    }
    text.len()
}

/// Hover, go-to-definition and document symbols.
fn respond(documents: &Documents, request: Request) -> Response {
    let id = request.id.clone();
    let result = match request.method.as_str() {
        "textDocument/hover" => {
            serde_json::from_value::<lsp::HoverParams>(request.params).map(|p| {
                let at = p.text_document_position_params;
                json!(hover(
                    documents.get(at.text_document.uri.as_str()),
                    at.position
                ))
            })
        }
        "textDocument/definition" => {
            serde_json::from_value::<lsp::GotoDefinitionParams>(request.params).map(|p| {
                let at = p.text_document_position_params;
                let uri = at.text_document.uri;
                json!(
                    definition(documents.get(uri.as_str()), at.position).map(|r| {
                        lsp::Location {
                            uri: uri.clone(),
                            range: r,
                        }
                    })
                )
            })
        }
        "textDocument/codeAction" => {
            serde_json::from_value::<lsp::CodeActionParams>(request.params)
                .map(|p| json!(code_actions(&p)))
        }
        "textDocument/documentSymbol" => {
            serde_json::from_value::<lsp::DocumentSymbolParams>(request.params)
                .map(|p| json!(symbols(documents.get(p.text_document.uri.as_str()))))
        }
        _ => {
            return Response::new_err(
                id,
                lsp_server::ErrorCode::MethodNotFound as i32,
                format!("dlverify does not serve `{}`", request.method),
            );
        }
    };
    match result {
        Ok(value) => Response::new_ok(id, value),
        Err(e) => Response::new_err(
            id,
            lsp_server::ErrorCode::InvalidParams as i32,
            e.to_string(),
        ),
    }
}

/// A name the program declares: what it is, where, and what to say of it.
struct Declaration {
    name: String,
    kind: lsp::SymbolKind,
    span: Span,
    detail: String,
}

/// Above this size, hover, go-to-definition and symbols give nothing:
/// they analyse the text on the message loop, and a spec is far smaller.
const LARGEST_NAVIGATED: usize = 1 << 20;

/// The document's checked program, where it analyses.
fn program_of(document: &Document) -> Option<(Program, Source)> {
    if document.text.len() > LARGEST_NAVIGATED {
        return None;
    }
    let source = Source::new("document.dl", document.text.clone());
    let spec = crate::syntax::parse(&source).ok()?;
    let program = crate::analysis::analyze(&spec).ok()?;
    Some((program, source))
}

/// Every declared name: dims, hypers, tensors and definitions.
fn declarations(program: &Program, source: &Source) -> Vec<Declaration> {
    let sizes: Vec<i64> = program.dims.iter().map(|d| d.default).collect();
    let line_of = |span: Span| {
        let text = source.text();
        let start = text
            .get(..span.start)
            .and_then(|t| t.rfind('\n'))
            .map_or(0, |i| i + 1);
        let end = text
            .get(span.start..)
            .and_then(|t| t.find('\n'))
            .map_or(text.len(), |i| span.start + i);
        text.get(start..end).unwrap_or("").trim().to_string()
    };
    let shape = |axes: &[crate::analysis::program::AxisRange]| -> String {
        if axes.is_empty() {
            return "a scalar".to_string();
        }
        let ranges: Vec<String> = axes
            .iter()
            .map(|a| match (a.lo.eval(&sizes, &[]), a.hi.eval(&sizes, &[])) {
                (Some(lo), Some(hi)) => format!("{lo}..={hi}"),
                _ => "?".to_string(),
            })
            .collect();
        let count: Option<i64> = axes.iter().try_fold(1i64, |n, a| {
            let (lo, hi) = (a.lo.eval(&sizes, &[])?, a.hi.eval(&sizes, &[])?);
            n.checked_mul((hi - lo + 1).max(0))
        });
        let dims: Vec<String> = program
            .dims
            .iter()
            .map(|d| format!("{} = {}", d.name, d.default))
            .collect();
        format!(
            "{} axis{}, [{}] at the default sizes ({}){}",
            axes.len(),
            if axes.len() == 1 { "" } else { "es" },
            ranges.join(", "),
            dims.join(", "),
            count.map_or(String::new(), |n| format!(": {n} elements"))
        )
    };
    let mut out = vec![];
    for d in &program.dims {
        out.push(Declaration {
            name: d.name.clone(),
            kind: lsp::SymbolKind::CONSTANT,
            span: d.span,
            detail: format!("`{}`: a size, {} by default", line_of(d.span), d.default),
        });
    }
    for h in &program.hypers {
        out.push(Declaration {
            name: h.name.clone(),
            kind: lsp::SymbolKind::CONSTANT,
            span: h.span,
            detail: format!("`{}`: a hyperparameter", line_of(h.span)),
        });
    }
    for t in &program.tensors {
        let what = match t.origin {
            crate::analysis::program::Origin::Declared(_) => "differentiated",
            crate::analysis::program::Origin::Incoming => "the incoming gradient dL/dy",
            _ => "not differentiated",
        };
        out.push(Declaration {
            name: t.name.clone(),
            kind: lsp::SymbolKind::VARIABLE,
            span: t.span,
            detail: format!("`{}`: {what}; {}", line_of(t.span), shape(&t.axes)),
        });
    }
    for d in &program.defs {
        out.push(Declaration {
            name: d.name.clone(),
            kind: lsp::SymbolKind::FUNCTION,
            span: d.name_span,
            detail: format!("`{}`: {}", line_of(d.name_span), shape(&d.axes)),
        });
    }
    out
}

/// The identifier at a byte offset, and its span.
fn word_at(text: &str, offset: usize) -> Option<(&str, Span)> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let before = text.get(..offset)?;
    let start = before
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_word(c))
        .last()
        .map_or(offset, |(k, _)| k);
    let after = text.get(offset..)?;
    let end = offset
        + after
            .char_indices()
            .find(|&(_, c)| !is_word(c))
            .map_or(after.len(), |(k, _)| k);
    (end > start).then(|| (&text[start..end], Span::new(start, end)))
}

fn hover(document: Option<&Document>, position: lsp::Position) -> Option<lsp::Hover> {
    let document = document.filter(|d| d.text.len() <= LARGEST_NAVIGATED)?;
    let source = Source::new("document.dl", document.text.clone());
    let offset = offset_of(&source, position);
    // A claim checked on save: its verdict.
    if let Some(claim) = document
        .checked
        .iter()
        .find(|c| c.span.start <= offset && offset < c.span.end)
    {
        let evidence = crate::report::human::first_evidence(claim)
            .map(|e| format!("\n\nevidence: {e}"))
            .unwrap_or_default();
        let text = format!(
            "**{}**: {}{evidence}\n\n{}",
            claim.status().as_str(),
            crate::report::human::verdict_text(claim),
            claim.notes.join("\n\n")
        );
        return Some(markdown(text));
    }
    let (program, source) = program_of(document)?;
    let (word, _) = word_at(source.text(), offset)?;
    if let Some(range) = index_range(&program, word, offset) {
        return Some(markdown(range));
    }
    let found = declarations(&program, &source)
        .into_iter()
        .find(|d| d.name == word)?;
    Some(markdown(found.detail))
}

/// The fixes a diagnostic's help spells out: `did you mean `norm`?` on a
/// misspelt name replaces it.
fn code_actions(params: &lsp::CodeActionParams) -> Vec<lsp::CodeAction> {
    params
        .context
        .diagnostics
        .iter()
        .filter(|d| d.source.as_deref() == Some("dlverify"))
        .filter_map(|d| {
            let (_, rest) = d.message.split_once("help: did you mean `")?;
            let (name, _) = rest.split_once("`?")?;
            let edit = lsp::TextEdit {
                range: d.range,
                new_text: name.to_string(),
            };
            Some(lsp::CodeAction {
                title: format!("Replace with `{name}`"),
                kind: Some(lsp::CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![d.clone()]),
                edit: Some(lsp::WorkspaceEdit {
                    changes: Some(
                        [(params.text_document.uri.clone(), vec![edit])]
                            .into_iter()
                            .collect(),
                    ),
                    ..Default::default()
                }),
                is_preferred: Some(true),
                ..Default::default()
            })
        })
        .collect()
}

/// The range an index of a definition or a `grad` claim runs over, where
/// `word` at `offset` is one of its left-hand side's indices.
fn index_range(program: &Program, word: &str, offset: usize) -> Option<String> {
    let within = |span: Span| span.start <= offset && offset < span.end;
    let axes = program
        .defs
        .iter()
        .filter(|d| within(d.span))
        .find_map(|d| {
            let k = d.var_names.iter().take(d.slots).position(|v| v == word)?;
            d.axes.get(k)
        })
        .or_else(|| {
            program
                .claims
                .iter()
                .filter(|c| within(c.span))
                .find_map(|c| {
                    let crate::analysis::program::ClaimKind::Grad(g) = &c.kind else {
                        return None;
                    };
                    let k = g.var_names.iter().take(g.slots).position(|v| v == word)?;
                    program.tensors.get(g.target.0)?.axes.get(k)
                })
        })?;
    let names: Vec<&str> = program.dims.iter().map(|d| d.name.as_str()).collect();
    let sizes: Vec<i64> = program.dims.iter().map(|d| d.default).collect();
    let at = match (axes.lo.eval(&sizes, &[]), axes.hi.eval(&sizes, &[])) {
        (Some(lo), Some(hi)) => format!(" ({lo}..={hi} at the default sizes)"),
        _ => String::new(),
    };
    Some(format!(
        "`{word}` runs over {}..={}{at}",
        affine_text(&axes.lo, &names),
        affine_text(&axes.hi, &names)
    ))
}

/// An affine bound as the spec would write it: `N-2`, `2*N+1`, `1`.
fn affine_text(a: &crate::analysis::program::Affine, dims: &[&str]) -> String {
    let mut text = String::new();
    for &(d, c) in &a.dims {
        let name = dims.get(d.0).copied().unwrap_or("?");
        let term = match c {
            1 => name.to_string(),
            -1 => format!("-{name}"),
            c => format!("{c}*{name}"),
        };
        if !text.is_empty() && !term.starts_with('-') {
            text.push('+');
        }
        text.push_str(&term);
    }
    if text.is_empty() {
        return a.constant.to_string();
    }
    match a.constant {
        0 => {}
        c if c > 0 => text.push_str(&format!("+{c}")),
        c => text.push_str(&c.to_string()),
    }
    text
}

fn markdown(value: String) -> lsp::Hover {
    lsp::Hover {
        contents: lsp::HoverContents::Markup(lsp::MarkupContent {
            kind: lsp::MarkupKind::Markdown,
            value,
        }),
        range: None,
    }
}

fn definition(document: Option<&Document>, position: lsp::Position) -> Option<lsp::Range> {
    let document = document?;
    let (program, source) = program_of(document)?;
    let (word, _) = word_at(source.text(), offset_of(&source, position))?;
    let found = declarations(&program, &source)
        .into_iter()
        .find(|d| d.name == word)?;
    Some(range(&source, found.span))
}

#[allow(deprecated)] // `DocumentSymbol::deprecated` must still be given.
fn symbols(document: Option<&Document>) -> Vec<lsp::DocumentSymbol> {
    let Some((program, source)) = document.and_then(program_of) else {
        return vec![];
    };
    let mut out: Vec<lsp::DocumentSymbol> = declarations(&program, &source)
        .into_iter()
        .map(|d| lsp::DocumentSymbol {
            name: d.name,
            detail: Some(d.detail),
            kind: d.kind,
            tags: None,
            deprecated: None,
            range: range(&source, d.span),
            selection_range: range(&source, d.span),
            children: None,
        })
        .collect();
    for claim in &program.claims {
        let head = source
            .text()
            .get(claim.head_span.start..claim.head_span.end)
            .unwrap_or("claim")
            .to_string();
        out.push(lsp::DocumentSymbol {
            name: head,
            detail: None,
            kind: lsp::SymbolKind::EVENT,
            tags: None,
            deprecated: None,
            range: range(&source, claim.span),
            selection_range: range(&source, claim.head_span),
            children: None,
        });
    }
    out.sort_by_key(|s| (s.range.start.line, s.range.start.character));
    out
}
