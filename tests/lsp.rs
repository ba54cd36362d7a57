//! `dlverify lsp`, driven as an editor drives it: the binary on stdio,
//! JSON-RPC messages framed by `Content-Length`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

/// Long enough for a debug build to check a small spec on save.
const PATIENCE: Duration = Duration::from_secs(120);

struct Client {
    child: Child,
    stdin: ChildStdin,
    incoming: Receiver<Value>,
    /// Notifications read while waiting for something else.
    pending: Vec<Value>,
    next_id: i64,
}

impl Client {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dlverify"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, incoming) = channel();
        std::thread::spawn(move || {
            loop {
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                stdout.read_exact(&mut body).unwrap();
                if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                    return;
                }
            }
        });
        let mut client = Client {
            child,
            stdin,
            incoming,
            pending: vec![],
            next_id: 1,
        };
        let init = client.request(
            "initialize",
            json!({ "processId": null, "rootUri": null, "capabilities": {} }),
        );
        let caps = &init["result"]["capabilities"];
        assert_eq!(caps["hoverProvider"], json!(true), "{init}");
        assert_eq!(caps["definitionProvider"], json!(true), "{init}");
        client.notify("initialized", json!({}));
        client
    }

    fn frame(&mut self, body: &[u8]) {
        write!(self.stdin, "Content-Length: {}\r\n\r\n", body.len()).unwrap();
        self.stdin.write_all(body).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        let body = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        self.frame(body.to_string().as_bytes());
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.frame(body.to_string().as_bytes());
        self.wait(|m| m["id"] == json!(id) && m.get("method").is_none())
    }

    /// The next message `wanted` accepts; others are kept for later.
    fn wait(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(k) = self.pending.iter().position(&wanted) {
            return self.pending.remove(k);
        }
        let until = Instant::now() + PATIENCE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(m) if wanted(&m) => return m,
                Ok(m) => self.pending.push(m),
                Err(RecvTimeoutError::Timeout) => panic!("no answer; kept {:#?}", self.pending),
                Err(RecvTimeoutError::Disconnected) => panic!("the server is gone"),
            }
        }
    }

    /// The next diagnostics published for `uri` that `accept` takes
    /// (earlier ones, for older text, are skipped).
    fn diagnostics(&mut self, uri: &str, accept: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let until = Instant::now() + PATIENCE;
        loop {
            assert!(Instant::now() < until, "no such diagnostics for {uri}");
            let m = self.wait(|m| {
                m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri
            });
            let list = m["params"]["diagnostics"].as_array().cloned().unwrap();
            if accept(&list) {
                return list;
            }
        }
    }

    fn change(&mut self, uri: &str, version: i64, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": uri, "version": version },
                "contentChanges": [{ "text": text }],
            }),
        );
    }

    fn shut_down(mut self) {
        let reply = self.request("shutdown", Value::Null);
        assert!(reply.get("error").is_none(), "{reply}");
        self.notify("exit", Value::Null);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                return;
            }
            assert!(Instant::now() < until, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const URI: &str = "file:///work/layer.dl";

/// A3 with a mistake on a line of non-ASCII text: `≈` and `±` are one
/// UTF-16 unit each but three and two bytes, so a column counted in bytes
/// would land three columns too far.
const BROKEN: &str = "dim N = 6
input x[N]
param a, b
y[i] = a * (x[i] + x[i+2]) + b     for i in 1..=N-2
check taylor one_sided rate ≈ 2 ± 0.1 precision f16
";

const FIXED: &str = "dim N = 6
input x[N]
param a, b
y[i] = a * (x[i] + x[i+2]) + b     for i in 1..=N-2
check taylor one_sided rate ≈ 2 ± 0.1 precision f64
";

/// The handout's eq. (19) as printed, not marked as an erratum.
const REFUTED: &str = "dim N = 6
input x[N]
param a, b
y[i] = a * (x[i] + x[i+2]) + b     for i in 1..=N-2
grad x[j] = a * g[j]              if j <= 2
          | a * (g[j] + g[j-2])   if 2 <= j <= N-2
          | a * g[j-2]            if j >= N-2
";

#[test]
fn diagnostics_follow_edits_and_saves() {
    let mut client = Client::start();
    client.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "dl", "version": 1, "text": BROKEN } }),
    );
    let list = client.diagnostics(URI, |l| !l.is_empty());
    assert_eq!(list.len(), 1, "{list:#?}");
    let d = &list[0];
    assert_eq!(d["code"], "dl::parse::syntax");
    assert_eq!(d["severity"], 1);
    assert_eq!(d["source"], "dlverify");
    // Line 5, `f16` at character 48 (0-based, UTF-16), 51 in bytes.
    assert_eq!(
        d["range"]["start"],
        json!({ "line": 4, "character": 48 }),
        "{d}"
    );
    assert_eq!(
        d["range"]["end"],
        json!({ "line": 4, "character": 51 }),
        "{d}"
    );

    // A misspelt name: the help rides in the message.
    client.change(URI, 2, &FIXED.replace("x[i+2]", "xx[i+2]"));
    let list = client.diagnostics(URI, |l| !l.is_empty());
    assert_eq!(list[0]["code"], "dl::analysis::unknown_name", "{list:#?}");
    assert!(
        list[0]["message"]
            .as_str()
            .unwrap()
            .contains("help: did you mean `x`?"),
        "{list:#?}"
    );

    // Its help is an edit: a quick fix makes it.
    let actions = client.request(
        "textDocument/codeAction",
        json!({
            "textDocument": { "uri": URI },
            "range": list[0]["range"],
            "context": { "diagnostics": [list[0].clone()] },
        }),
    );
    let action = &actions["result"][0];
    assert_eq!(action["title"], "Replace with `x`", "{actions}");
    assert_eq!(action["kind"], "quickfix");
    let edit = &action["edit"]["changes"][URI][0];
    assert_eq!(edit["newText"], "x");
    assert_eq!(edit["range"], list[0]["range"]);

    // Fixed: the diagnostics clear.
    client.change(URI, 3, FIXED);
    client.diagnostics(URI, <[Value]>::is_empty);

    // Hover on `x` in the layer: its declaration and shape.
    let hover = client.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": URI }, "position": { "line": 3, "character": 12 } }),
    );
    let text = hover["result"]["contents"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("input x[N]"), "{text}");
    assert!(
        text.contains("1..=6") && text.contains("6 elements"),
        "{text}"
    );
    // Hover on the index `i` of `y[i]`: the range analysis inferred.
    let hover = client.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": URI }, "position": { "line": 3, "character": 2 } }),
    );
    let text = hover["result"]["contents"]["value"].as_str().unwrap();
    assert_eq!(text, "`i` runs over 1..=N-2 (1..=4 at the default sizes)");
    // Go to definition: `x` is declared on line 2.
    let def = client.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": URI }, "position": { "line": 3, "character": 12 } }),
    );
    assert_eq!(def["result"]["uri"], URI);
    assert_eq!(def["result"]["range"]["start"]["line"], 1, "{def}");
    // Document symbols: the declarations and the claim.
    let symbols = client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": URI } }),
    );
    let names: Vec<&str> = symbols["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for name in ["N", "x", "a", "b", "y"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }

    // A wrong claim: analysis has nothing to say, the check on save does.
    client.change(URI, 4, REFUTED);
    client.diagnostics(URI, <[Value]>::is_empty);
    client.notify(
        "textDocument/didSave",
        json!({ "textDocument": { "uri": URI } }),
    );
    let list = client.diagnostics(URI, |l| !l.is_empty());
    let refuted = list
        .iter()
        .find(|d| d["code"] == "dl::claim::refuted")
        .unwrap_or_else(|| panic!("{list:#?}"));
    assert_eq!(
        refuted["range"]["start"],
        json!({ "line": 4, "character": 0 })
    );
    assert!(
        refuted["message"].as_str().unwrap().contains("grad x[j]"),
        "{refuted}"
    );
    // Hover on the claim now gives its verdict.
    let hover = client.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": URI }, "position": { "line": 4, "character": 2 } }),
    );
    let text = hover["result"]["contents"]["value"].as_str().unwrap();
    assert!(text.starts_with("**fail**"), "{text}");
    assert!(text.contains("evidence: "), "{text}");
    client.shut_down();
}

#[test]
fn an_edit_makes_a_running_check_stale() {
    let mut client = Client::start();
    client.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "dl", "version": 1, "text": REFUTED } }),
    );
    client.diagnostics(URI, <[Value]>::is_empty);
    // Checked on request, as on save; the command names the document.
    let reply = client.request(
        "workspace/executeCommand",
        json!({ "command": "dlverify.check", "arguments": [URI] }),
    );
    assert!(reply.get("error").is_none(), "{reply}");
    let reply = client.request(
        "workspace/executeCommand",
        json!({ "command": "dlverify.check", "arguments": ["file:///not/open.dl"] }),
    );
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    // Edited before the check can finish: its finding is for old text.
    client.change(URI, 2, FIXED);
    client.diagnostics(URI, <[Value]>::is_empty);
    // Whatever comes later for version 2 is about the fixed text.
    let probe = client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": URI } }),
    );
    assert!(probe["result"].is_array());
    std::thread::sleep(Duration::from_secs(2));
    while let Ok(m) = client.incoming.try_recv() {
        client.pending.push(m);
    }
    for m in &client.pending {
        if m["method"] == "textDocument/publishDiagnostics" {
            assert_eq!(
                m["params"]["diagnostics"],
                json!([]),
                "a stale check was published: {m}"
            );
        }
    }
    client.shut_down();
}

#[test]
fn garbage_and_thousands_of_edits_do_not_stop_it() {
    let mut client = Client::start();
    // Not JSON, then JSON that is no message: each gets a parse error.
    client.frame(b"{ this is not json");
    let reply = client.wait(|m| m["error"]["code"] == -32700);
    assert!(reply["id"].is_null(), "{reply}");
    client.frame(br#"{"jsonrpc":"2.0","id":77,"params":{}}"#);
    client.wait(|m| m["error"]["code"] == -32700 && m["id"] == 77);
    // A header without a length is skipped.
    client
        .stdin
        .write_all(b"Content-Type: nothing\r\n\r\n")
        .unwrap();
    // A length that is not a number: its body runs into the next frame's
    // header, which is found again.
    client
        .stdin
        .write_all(b"Content-Length: abc\r\n\r\n{\"jsonrpc\":\"2.0\",\"method\":\"x\"}")
        .unwrap();
    // A method it does not serve.
    let reply = client.request("textDocument/rename", json!({}));
    assert_eq!(reply["error"]["code"], -32601, "{reply}");

    // Empty, garbage, a long paste, and random edits of a real spec.
    let spec = std::fs::read_to_string("specs/a3_recurrent_sequence.dl").unwrap();
    client.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "dl", "version": 1, "text": "" } }),
    );
    let mut version = 1;
    let mut texts: Vec<String> = vec![
        "\u{0}\u{1}garbage ((( [[[ ≈≈≈ 🙂".to_string(),
        "dim N = 99999999999999999999999\n".to_string(),
    ];
    // A 10 MB paste: the spec 5000 times, each copy a duplicate of the
    // first. Its diagnostics come, and hover is answered meanwhile.
    version += 1;
    client.change(URI, version, &spec.repeat(5_000));
    let hover = client.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": URI }, "position": { "line": 0, "character": 0 } }),
    );
    assert!(hover.get("error").is_none(), "{hover}");
    let pasted = client.wait(|m| {
        m["method"] == "textDocument/publishDiagnostics" && m["params"]["version"] == version
    });
    let n = pasted["params"]["diagnostics"].as_array().unwrap().len();
    assert!(n > 1000, "{n} diagnostics for 5000 copies");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let pieces = [
        "[", "]", "(", ")", "sum(i)", "≈", "±", "\n", "i+2", "..=", "grad ", "#", "\"", "1e999",
        "0", " if ", "|", "=", "N-2", "🙂",
    ];
    let mut text = spec.clone();
    for _ in 0..2000 {
        let chars: Vec<char> = text.chars().collect();
        let at = rng.random_range(0..=chars.len());
        let mut next: String = chars[..at].iter().collect();
        if rng.random_bool(0.5) || chars.is_empty() {
            next.push_str(pieces[rng.random_range(0..pieces.len())]);
            next.extend(&chars[at..]);
        } else {
            let cut = (at + rng.random_range(1..8)).min(chars.len());
            next.extend(&chars[cut..]);
        }
        text = next;
        texts.push(text.clone());
    }
    for t in &texts {
        version += 1;
        client.change(URI, version, t);
    }
    // Still answering, about the last text.
    let hover = client.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": URI }, "position": { "line": 0, "character": 0 } }),
    );
    assert!(hover.get("error").is_none(), "{hover}");
    let last = client.wait(|m| {
        m["method"] == "textDocument/publishDiagnostics" && m["params"]["version"] == version
    });
    assert!(last["params"]["diagnostics"].is_array());
    client.shut_down();
}

#[test]
fn a_cancelled_check_decides_nothing() {
    // A layer's gradient, and sampled moments (A4).
    for path in [
        "specs/a3_recurrent_sequence.dl",
        "specs/a4_gradient_quantization.dl",
    ] {
        let spec = std::fs::read_to_string(path).unwrap();
        let cancel = dlverify::eval::Cancel::default();
        cancel.cancel();
        let options = dlverify::verify::Options {
            cancel: Some(cancel),
            ..Default::default()
        };
        let outcome = dlverify::check_source(dlverify::source::Source::new(path, spec), &options);
        assert!(!outcome.claims.is_empty());
        for claim in &outcome.claims {
            assert_eq!(
                claim.status(),
                dlverify::verify::outcome::ClaimStatus::Error,
                "{path}: {}",
                claim.head
            );
        }
    }
}

#[test]
fn a_second_check_or_a_reopened_document_shows_no_stale_findings() {
    let mut client = Client::start();
    // Slow enough in a debug build that the second save comes mid-check.
    let slow = REFUTED.replace("dim N = 6", "dim N = 3000");
    client.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "dl", "version": 1, "text": slow } }),
    );
    client.diagnostics(URI, <[Value]>::is_empty);
    for _ in 0..2 {
        client.notify(
            "textDocument/didSave",
            json!({ "textDocument": { "uri": URI } }),
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let list = client.diagnostics(URI, |l| !l.is_empty());
    assert!(
        list.iter().all(|d| d["code"] != "dl::claim::undecided"),
        "a cancelled check was published: {list:#?}"
    );
    assert!(
        list.iter().any(|d| d["code"] == "dl::claim::refuted"),
        "{list:#?}"
    );
    // Saved, closed and reopened with other text: nothing of the old
    // text's check may come for the new one.
    client.notify(
        "textDocument/didSave",
        json!({ "textDocument": { "uri": URI } }),
    );
    client.notify(
        "textDocument/didClose",
        json!({ "textDocument": { "uri": URI } }),
    );
    client.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "dl", "version": 1, "text": FIXED } }),
    );
    std::thread::sleep(Duration::from_secs(3));
    while let Ok(m) = client.incoming.try_recv() {
        client.pending.push(m);
    }
    let last = client
        .pending
        .iter()
        .rev()
        .find(|m| m["method"] == "textDocument/publishDiagnostics")
        .cloned()
        .unwrap();
    assert_eq!(last["params"]["diagnostics"], json!([]), "{last}");
    client.shut_down();
}

#[test]
fn positions_count_a_byte_order_mark_and_lone_carriage_returns() {
    let mut client = Client::start();
    // A BOM is one UTF-16 unit of the editor's first line.
    let text = "\u{feff}exercise \"t\" oops\n";
    client.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "dl", "version": 1, "text": text } }),
    );
    let list = client.diagnostics(URI, |l| !l.is_empty());
    assert_eq!(
        list[0]["range"]["start"],
        json!({ "line": 0, "character": 14 }),
        "{list:#?}"
    );
    // Lines ended by a lone CR: hover and definition still find names.
    client.change(URI, 2, &FIXED.replace('\n', "\r"));
    client.diagnostics(URI, <[Value]>::is_empty);
    let def = client.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": URI }, "position": { "line": 3, "character": 12 } }),
    );
    assert_eq!(def["result"]["range"]["start"]["line"], 1, "{def}");
    client.shut_down();
}

#[test]
fn an_oversized_message_is_refused_and_the_next_one_read() {
    let mut client = Client::start();
    let size = 65 << 20;
    write!(client.stdin, "Content-Length: {size}\r\n\r\n").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..65 {
        client.stdin.write_all(&chunk).unwrap();
    }
    client.stdin.flush().unwrap();
    let refused = client.wait(|m| m["error"]["code"] == -32600);
    assert!(refused["id"].is_null(), "{refused}");
    let reply = client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": URI } }),
    );
    assert!(reply["result"].is_array(), "{reply}");
    client.shut_down();
}
