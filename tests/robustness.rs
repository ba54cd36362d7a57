//! Robustness: whatever the input, dlverify ends with a verdict or a clear
//! diagnostic, never a panic, a hang or a silent wrong answer (issue 6).
//!
//! The edge cases each assert the code, the message and (through the binary)
//! the exit code; a grammar-aware random generator (proptest) then throws
//! plausible and mangled specs at the whole pipeline. Coverage-guided fuzzing
//! lives in `fuzz/`; every crash it found is a regression test at the end.
//!
//! A test marked `#[ignore = "bug: …"]` states what the engine should do but
//! does not yet: `cargo test --test robustness -- --ignored` lists them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{TempDir, render};

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dlverify::report::json;
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{
    ClaimOutcome, ClaimStatus, FileOutcome, FileStatus, MismatchBasis, Verdict,
};
use proptest::prelude::*;
use serde_json::Value;

// ---------------------------------------------------------------------------
// Helpers

/// A correct layer spec: both claims hold.
const GOOD: &str = "\
exercise \"good\"
dim N = 5
input x[N]
param a, b
y[i] = a * x[i] + b
grad a = sum(i) g[i] * x[i]
grad b = sum(i) g[i]
";

/// The start of most specs below: one size, one input.
const HEAD: &str = "dim N = 4\ninput x[N]\n";

/// Small limits, as an editor checking on every keystroke would use.
fn small() -> Options {
    Options {
        max_elements: 10_000,
        timeout: Duration::from_secs(2),
        fd_elements: 8,
        ..Options::default()
    }
}

/// How long one in-process check may take before it counts as a hang. Far
/// above what any case here needs (milliseconds), far below "forever".
const HANG: Duration = Duration::from_secs(60);

/// Checks `text` with `options` on a thread of its own (8 MiB of stack, as
/// the binary's main thread has) and fails the test if it does not finish
/// within `limit`. A panic inside fails the test with the panic's message.
fn check_within(text: &str, options: &Options, limit: Duration) -> FileOutcome {
    let (tx, rx) = mpsc::channel();
    let text = text.to_string();
    let options = options.clone();
    std::thread::Builder::new()
        .name("check".into())
        .stack_size(8 << 20)
        .spawn(move || {
            let outcome = dlverify::check_source(Source::new("spec.dl", text), &options);
            let _ = tx.send(outcome);
        })
        .unwrap();
    match rx.recv_timeout(limit) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("no outcome within {limit:?}: a hang"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("check_source panicked"),
    }
}

/// Checks `text` at small sizes; asserts the outcome is self-consistent.
fn check(text: &str) -> FileOutcome {
    let outcome = check_within(text, &small(), HANG);
    assert_consistent(&outcome);
    outcome
}

fn code_of(d: &miette::Report) -> String {
    d.code().map(|c| c.to_string()).unwrap_or_default()
}

fn codes(outcome: &FileOutcome) -> Vec<String> {
    outcome.diagnostics.iter().map(code_of).collect()
}

/// The file could not be checked, and its first diagnostic has `code`.
/// Returns the diagnostic's message.
fn expect_error(text: &str, code: &str) -> String {
    let outcome = check(text);
    assert_eq!(outcome.status(), FileStatus::Error, "{}", render(&outcome));
    let first = outcome.diagnostics.first().unwrap();
    assert_eq!(code_of(first), code, "{}", render(&outcome));
    first.to_string()
}

/// The file was checked and every claim came out as expected.
fn expect_pass(text: &str) -> FileOutcome {
    let outcome = check(text);
    assert_eq!(outcome.status(), FileStatus::Pass, "{}", render(&outcome));
    assert!(!outcome.claims.is_empty(), "no claims checked");
    outcome
}

fn claim<'o>(outcome: &'o FileOutcome, head: &str) -> &'o ClaimOutcome {
    outcome
        .claims
        .iter()
        .find(|c| c.head == head)
        .unwrap_or_else(|| panic!("no claim `{head}` in\n{}", render(outcome)))
}

/// What must hold of any outcome, whatever the input: the file is an error
/// exactly when it has diagnostics; every diagnostic has a `dl::` code and
/// none is an internal error (a caught panic or an engine contradiction); a
/// claim that holds has no evidence against it, a gradient claim that is
/// refuted has some; errors are finite; both reports render and agree.
fn assert_consistent(outcome: &FileOutcome) {
    let human = render(outcome);
    let context = || format!("\n{human}");
    assert_eq!(
        outcome.status() == FileStatus::Error,
        !outcome.diagnostics.is_empty(),
        "{}",
        context()
    );
    let all_diagnostics = outcome.diagnostics.iter().chain(
        outcome
            .claims
            .iter()
            .flat_map(|c| c.problems.iter().map(|p| &p.diagnostic)),
    );
    for d in all_diagnostics {
        let code = code_of(d);
        assert!(code.starts_with("dl::"), "no dl:: code: {d:?}{}", context());
        assert_ne!(code, "dl::internal", "{d:?}{}", context());
    }
    for c in &outcome.claims {
        if c.verdict == Verdict::Holds {
            assert!(
                c.mismatches.is_empty() && c.mismatch_groups.is_empty() && c.problems.is_empty(),
                "`{}` holds with evidence against it{}",
                c.head,
                context()
            );
        }
        if c.verdict == Verdict::Refuted && c.kind == "grad" {
            assert!(
                !c.mismatches.is_empty() || !c.problems.is_empty(),
                "`{}` refuted without evidence{}",
                c.head,
                context()
            );
        }
        assert!(
            c.max_abs_error >= 0.0 && c.max_rel_error >= 0.0,
            "`{}`: errors {} / {}{}",
            c.head,
            c.max_abs_error,
            c.max_rel_error,
            context()
        );
    }
    let json: Value = serde_json::from_str(&json::render(std::slice::from_ref(outcome))).unwrap();
    let file = &json["files"][0];
    let diagnostics = file["diagnostics"].as_array().unwrap();
    assert_eq!(file["status"] == "error", !diagnostics.is_empty(), "{file}");
    for d in diagnostics {
        assert!(d["code"].as_str().unwrap().starts_with("dl::"), "{d}");
    }
    for c in file["claims"].as_array().unwrap() {
        if c["status"] == "pass" {
            assert_eq!(c["mismatches"], Value::Array(vec![]), "{c}");
        }
    }
    assert_eq!(json["summary"]["claims"], outcome.claims.len(), "{json}");
}

// --- the binary ------------------------------------------------------------

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Exited with `code` and printed nothing on stderr (no panic, no backtrace).
    fn assert_exit(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{}{}", self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked"), "stderr: {}", self.stderr);
        self
    }
}

/// Runs the binary from the crate root, killing it (and failing the test)
/// if it has not ended within `limit`.
fn run_within(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlverify"))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = vec![];
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dlverify {args:?} still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn run(args: &[&str]) -> Run {
    run_within(args, &[], HANG)
}

fn run_json(args: &[&str]) -> (Run, Value) {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let run = run(&all);
    let json = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr));
    (run, json)
}

fn json_file<'v>(json: &'v Value, path: &str) -> &'v Value {
    json["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no file {path} in {json}"))
}

/// `text` repeated `n` times.
fn rep(text: &str, n: usize) -> String {
    text.repeat(n)
}

/// A layer spec whose output is `expr`, with a claim.
fn layer(expr: &str, claim: &str) -> String {
    format!("{HEAD}y[i] = {expr}\n{claim}\n")
}

// ---------------------------------------------------------------------------
// Deep nesting: a limit with a diagnostic, never a stack overflow

#[test]
fn parentheses_within_the_limit_are_checked() {
    let expr = format!("{}x[i]{}", rep("(", 200), rep(")", 200));
    expect_pass(&layer(&expr, "grad x[j] = g[j]"));
}

#[test]
fn parentheses_past_the_limit_are_too_deep() {
    for depth in [300, 100_000] {
        let expr = format!("{}x[i]{}", rep("(", depth), rep(")", depth));
        let message = expect_error(&layer(&expr, ""), "dl::parse::too_deep");
        assert!(message.contains("deeper than 256"), "{message}");
    }
}

#[test]
fn nested_index_brackets_past_the_limit_are_too_deep() {
    let expr = format!("x[{}i{}]", rep("x[", 300), rep("]", 300));
    expect_error(&layer(&expr, ""), "dl::parse::too_deep");
    let unclosed = format!("x[{}", rep("[", 100_000));
    expect_error(&layer(&unclosed, ""), "dl::parse::too_deep");
}

#[test]
fn unary_minus_chains() {
    // An even number of minus signs: the layer is x itself.
    expect_pass(&layer(
        &format!("{}x[i]", rep("- ", 200)),
        "grad x[j] = g[j]",
    ));
    expect_pass(&layer(
        &format!("{}x[i]", rep("-", 200)),
        "grad x[j] = g[j]",
    ));
    // Rendered, the diagnostic of a 200 000-character line hits a known bug
    // (`a_diagnostic_far_right_on_a_long_line_renders`): not rendered here.
    expect_error_unrendered(
        &layer(&format!("{}x[i]", rep("- ", 100_000)), ""),
        "dl::parse::too_deep",
    );
}

#[test]
fn long_operator_chains() {
    let sum = vec!["x[i]"; 100].join(" + ");
    expect_pass(&layer(&sum, "grad x[j] = 100 * g[j]"));
    let product = ["x[i]"; 3].join(" * ");
    expect_pass(&layer(&product, "grad x[j] = 3 * g[j] * x[j]^2"));
    // A chain nests in the AST as deeply as it is long.
    let sum = vec!["x[i]"; 1_000].join(" + ");
    let message = expect_error(&layer(&sum, ""), "dl::parse::too_deep");
    assert!(message.contains("deeper than 256"), "{message}");
    // Not rendered: see `a_diagnostic_far_right_on_a_long_line_renders`.
    let sum = vec!["x[i]"; 20_000].join(" + ");
    let message = expect_error_unrendered(&layer(&sum, ""), "dl::parse::too_deep");
    assert!(message.contains("deeper than 256"), "{message}");
}

#[test]
fn chains_of_reductions_and_negations_are_too_deep() {
    expect_error(
        &layer(&format!("{}x[i]", rep("sum(k) ", 300)), ""),
        "dl::parse::too_deep",
    );
    let condition = format!("[{}j == i]", rep("not ", 10_000));
    expect_error(
        &layer("x[i]", &format!("grad x[j] = sum(i) {condition} * g[i]")),
        "dl::parse::too_deep",
    );
}

#[test]
fn nesting_up_to_the_limit_fits_an_ordinary_thread_stack() {
    // An editor may call the library from any thread: 2 MiB of stack, the
    // default of a spawned thread, must do for everything the limit admits.
    let cases = [
        layer(
            &format!("{}x[i]{}", rep("(", 255), rep(")", 255)),
            "grad x[j] = g[j]",
        ),
        layer(&vec!["x[i]"; 250].join(" + "), "grad x[j] = 250 * g[j]"),
        layer(&format!("{}x[i]", rep("- ", 250)), "grad x[j] = g[j]"),
        layer(
            "x[i]",
            &format!("grad x[j] = {}g[j]{}", rep("(", 250), rep(")", 250)),
        ),
        layer(
            "x[i]",
            &format!("grad x[j] = {} g[j]", rep("[j == j] * ", 120)),
        ),
    ];
    for text in cases {
        let outcome = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || dlverify::check_source(Source::new("spec.dl", text), &small()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(outcome.status(), FileStatus::Pass, "{}", render(&outcome));
    }
}

#[test]
fn deep_nesting_through_the_binary_is_a_diagnostic() {
    let dir = TempDir::new("deep");
    let path = dir.write(
        "deep.dl",
        layer(&format!("{}x[i]{}", rep("(", 5_000), rep(")", 5_000)), ""),
    );
    let (run, json) = run_json(&[&path]);
    run.assert_exit(2);
    assert_eq!(
        json_file(&json, &path)["diagnostics"][0]["code"],
        "dl::parse::too_deep"
    );
}

// ---------------------------------------------------------------------------
// Very long lines

const MB: usize = 1 << 20;

#[test]
fn a_one_megabyte_comment_line() {
    let text = layer(&format!("x[i]  # {}", rep("a", MB)), "grad x[j] = g[j]");
    expect_pass(&text);
}

#[test]
fn a_one_megabyte_line_of_blanks_and_a_long_name() {
    expect_pass(&layer(&format!("x[i]{}", rep(" ", MB)), "grad x[j] = g[j]"));
    // A 1 MB name, declared and used once (every use is a megabyte to parse).
    let name = rep("a", MB);
    let text = format!("{HEAD}param {name}\ny[i] = x[i] + {name}\ngrad x[j] = g[j]\n");
    expect_pass(&text);
}

#[test]
fn a_one_megabyte_number() {
    let message = expect_error(
        &layer(&format!("{} * x[i]", rep("1", MB)), ""),
        "dl::parse::number",
    );
    assert!(
        message.contains("out of range"),
        "{}",
        &message[message.len() - 40..]
    );
    // A long fraction is an ordinary number.
    expect_pass(&layer(
        &format!("0.{} * x[i]", rep("5", MB)),
        "grad x[j] = 0.5555555555555556 * g[j]",
    ));
}

#[test]
fn a_one_megabyte_line_with_a_syntax_error_in_the_library() {
    // In the library the error is found; rendering it is another matter,
    // see `a_diagnostic_far_right_on_a_long_line_renders` below.
    let text = layer(&format!("x[i]{})", rep(" ", MB)), "");
    let message = expect_error_unrendered(&text, "dl::parse::syntax");
    assert!(message.contains("found `)`"), "{message}");
}

/// Like [`expect_error`], without rendering the outcome (for the cases where
/// the human report itself is what fails).
fn expect_error_unrendered(text: &str, code: &str) -> String {
    let outcome = check_within(text, &small(), HANG);
    assert_eq!(codes(&outcome), [code]);
    outcome.diagnostics[0].to_string()
}

#[test]
fn a_diagnostic_far_right_on_a_long_line_renders() {
    // The error is on line 3 at column 70 012: the human report must say so,
    // not panic with exit code 101.
    let dir = TempDir::new("wide");
    let path = dir.write("wide.dl", layer(&format!("x[i]{})", rep(" ", 70_000)), ""));
    let run = run(&[&path]);
    run.assert_exit(2);
    assert!(run.stdout.contains("dl::parse::syntax"), "{}", run.stdout);
    // The same with a chain 20 000 terms (140 000 columns) long: too deep.
    let path = dir.write("chain.dl", layer(&vec!["x[i]"; 20_000].join(" + "), ""));
    run_within(&[&path], &[], HANG).assert_exit(2);
}

// ---------------------------------------------------------------------------
// Huge numbers and sizes

#[test]
fn an_overflowing_hyper_is_a_non_finite_diagnostic() {
    let text = format!("{HEAD}hyper h = 1e308 * 1e308\ny[i] = h * x[i]\n");
    let message = expect_error(&text, "dl::eval::non_finite");
    assert!(message.contains("inf"), "{message}");
}

#[test]
fn an_overflowing_hyper_is_reported_at_its_definition() {
    let text = format!("{HEAD}hyper h = 1e308 * 1e308\ny[i] = h * x[i]\n");
    let message = expect_error(&text, "dl::eval::non_finite");
    assert!(message.contains("1e308 * 1e308"), "{message}");
}

#[test]
fn an_overflowing_literal_and_exponential() {
    expect_error(&layer("1e999 * x[i]", ""), "dl::parse::number");
    let message = expect_error(
        "dim N = 4\ninput x[N] in (1, 2)\ny[i] = exp(1000 * x[i])\n",
        "dl::eval::non_finite",
    );
    assert!(message.contains("inf at i = 1, N = 1"), "{message}");
}

#[test]
fn a_huge_size_is_refused_before_any_allocation() {
    let message = expect_error(
        "dim N = 99999999999\ninput x[N]\ny[i] = x[i]\n",
        "dl::eval::too_large",
    );
    assert!(message.contains("above the limit of 10000"), "{message}");
    assert!(message.contains("N = 99999999999"), "{message}");
    // Element counts that overflow 64 bits.
    let message = expect_error(
        "dim N = 4294967296\ninput w[N, N]\ny[i, j] = w[i, j]\n",
        "dl::eval::too_large",
    );
    assert!(message.contains("more than 2^64"), "{message}");
}

#[test]
fn a_size_past_64_bits_is_a_parse_error() {
    let message = expect_error(
        "dim N = 99999999999999999999999\ninput x[N]\ny[i] = x[i]\n",
        "dl::parse::dim_value",
    );
    assert!(message.contains("not a valid size"), "{message}");
}

#[test]
fn a_huge_size_through_the_binary_exits_2_without_running_out_of_memory() {
    let dir = TempDir::new("huge");
    let path = dir.write("huge.dl", "dim N = 99999999999\ninput x[N]\ny[i] = x[i]\n");
    let (run, json) = run_json(&[&path]);
    run.assert_exit(2);
    assert_eq!(
        json_file(&json, &path)["diagnostics"][0]["code"],
        "dl::eval::too_large"
    );
    // `--max-elements` is the limit the message names.
    let (run, json) = run_json(&[&path, "--max-elements", "1000"]);
    run.assert_exit(2);
    let message = json_file(&json, &path)["diagnostics"][0]["message"].to_string();
    assert!(message.contains("above the limit of 1000"), "{message}");
}

/// A forward pass quadratic by definition records quadratically many
/// operations: a cumulative sum at n = 6000 records 1.8·10⁷, and reserves
/// 2.0 GB of address space at the peak of checking it. Under a limit of
/// 800 MB (`ulimit -v`) the process aborted ("memory allocation of …
/// bytes failed", signal 6) where it had the time to get that far, every
/// report lost. Its recording now stops at what the limit carries, long
/// before the clock runs out, and forward mode derives alone (out of time
/// here): the claim is not checked and the report says why, the others
/// are checked, and the exit code is a verdict's.
#[test]
fn a_recording_past_the_memory_available_is_reported_not_fatal() {
    let exe = env!("CARGO_BIN_EXE_dlverify");
    let script = format!(
        "ulimit -v 800000 && exec '{exe}' tests/corpus/cumsum.dl --dim n=6000 --timeout 10"
    );
    let output = Command::new("sh").args(["-c", &script]).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stderr.contains("memory allocation"), "{stderr}");
    assert!(
        stdout.contains("line 11   ERROR: not checked within the time limit of 10 s at n = 6000, where the gradient is derived by forward mode alone: a recording of L for reverse mode would hold more than"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 error, 2 as expected (0 hold, 2 refuted as marked)"),
        "{stdout}"
    );
}

#[test]
fn the_largest_i64_size_is_a_diagnostic() {
    expect_error(
        "dim N = 9223372036854775807\ninput x[N]\ny[i] = x[i]\n",
        "dl::eval::too_large",
    );
    // The same size from the command line: exit 2, not a panic (101).
    let run = run(&[
        "specs/a3_recurrent_sequence.dl",
        "--dim",
        "N=9223372036854775807",
    ]);
    run.assert_exit(2);
    assert!(run.stdout.contains("dl::eval::too_large"), "{}", run.stdout);
}

#[test]
fn a_range_that_starts_far_out_is_solved_not_searched() {
    let text = "dim N = 99999999999\ninput x[N]\ny[i] = x[i] for i in 10000000000..=N\n";
    let start = Instant::now();
    let outcome = check_within(text, &small(), Duration::from_secs(10));
    assert_eq!(codes(&outcome), ["dl::eval::too_large"]);
    assert!(start.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// Zero sizes and empty ranges

#[test]
fn a_zero_size_is_an_analysis_error() {
    let message = expect_error(
        "dim N = 0\ninput x[N]\ny[i] = x[i]\n",
        "dl::analysis::dim_zero",
    );
    assert!(message.contains('N'), "{message}");
    // A tensor with no elements at the default size.
    expect_error(
        "dim N = 4\ninput x[N-4]\ny[i] = x[i]\n",
        "dl::analysis::empty_range",
    );
}

#[test]
fn a_zero_size_on_the_command_line_is_refused() {
    let run = run(&["specs/a3_recurrent_sequence.dl", "--dim", "N=0"]);
    run.assert_exit(2);
    assert!(
        run.stderr.contains("a size is at least 1"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_empty_for_range_is_an_error() {
    let message = expect_error(
        &format!("{HEAD}y[i] = x[i] for i in 3..=1\n"),
        "dl::analysis::empty_range",
    );
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn an_empty_sum_is_zero_and_an_empty_max_an_error() {
    let text = format!(
        "{HEAD}param a\ny[i] = x[i] + a * sum(k in 5..=1) x[k]\ngrad a = 0\ngrad x[j] = g[j]\n"
    );
    expect_pass(&text);
    let message = expect_error(
        &format!("{HEAD}y[i] = x[i] + max(k in 5..=1) x[k]\n"),
        "dl::eval::empty_reduction",
    );
    assert!(message.contains("at i = 1, N = 1"), "{message}");
}

// ---------------------------------------------------------------------------
// Unicode, line endings, byte-order marks, binary files

#[test]
fn unicode_identifiers_are_names() {
    let text = format!(
        "{HEAD}param θ, αβ\ny[i] = θ * x[i] + αβ\ngrad θ = sum(i) g[i] * x[i]\ngrad αβ = sum(i) g[i]\n"
    );
    let outcome = expect_pass(&text);
    assert_eq!(claim(&outcome, "grad θ").target, "θ");
    // Unicode in strings and comments is text like any other.
    expect_pass(&format!("exercise \"Übung ½ → ∇\"  # ∂L/∂θ\n{text}"));
}

#[test]
fn symbols_that_are_not_letters_are_a_located_syntax_error() {
    for (name, column) in [("🙂", 7), ("θ₁", 8)] {
        let text = format!("{HEAD}param {name}\ny[i] = x[i]\n");
        let outcome = check(&text);
        assert_eq!(codes(&outcome), ["dl::parse::syntax"], "{name}");
        let json: Value =
            serde_json::from_str(&json::render(std::slice::from_ref(&outcome))).unwrap();
        let d = &json["files"][0]["diagnostics"][0];
        assert_eq!(
            (d["line"].clone(), d["column"].clone()),
            (3.into(), column.into()),
            "{d}"
        );
    }
}

#[test]
fn crlf_line_endings_read_like_lf() {
    let outcome = expect_pass(&GOOD.replace('\n', "\r\n"));
    let lines: Vec<usize> = outcome.claims.iter().map(|c| c.line).collect();
    assert_eq!(lines, [6, 7]);
    // A syntax error is located as in the LF file.
    let text = "dim N = 4\r\ninput x[N]\r\nlet c = 2 * )\r\ny[i] = c * x[i]\r\n";
    let outcome = check(text);
    assert_eq!(codes(&outcome), ["dl::parse::syntax"]);
    let json: Value = serde_json::from_str(&json::render(std::slice::from_ref(&outcome))).unwrap();
    let d = &json["files"][0]["diagnostics"][0];
    assert_eq!(
        (d["line"].clone(), d["column"].clone()),
        (3.into(), 13.into()),
        "{d}"
    );
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let outcome = expect_pass(&format!("\u{FEFF}{GOOD}"));
    assert_eq!(outcome.claims[0].line, 6);
    // Anywhere else it is a stray character.
    let outcome = check(&format!("{GOOD}\u{FEFF}"));
    assert_eq!(codes(&outcome), ["dl::parse::syntax"]);
}

#[test]
fn a_byte_order_mark_in_a_file_is_dropped_on_reading() {
    let dir = TempDir::new("bom");
    let good = dir.write("good.dl", format!("\u{FEFF}{GOOD}"));
    let only = dir.write("only.dl", "\u{FEFF}");
    let bad = dir.write("bad.dl", "\u{FEFF}dim N = 2.5\ninput x[N]\ny[i] = x[i]\n");
    let (run, json) = run_json(&[&good, &only, &bad]);
    run.assert_exit(2);
    assert_eq!(json_file(&json, &good)["status"], "pass");
    assert_eq!(
        json_file(&json, &only)["diagnostics"][0]["code"],
        "dl::input::empty"
    );
    let d = &json_file(&json, &bad)["diagnostics"][0];
    assert_eq!(d["code"], "dl::parse::dim_value");
    // Column 9 as in the file without the mark, not 10.
    assert_eq!(
        (d["line"].clone(), d["column"].clone()),
        (1.into(), 9.into()),
        "{d}"
    );
}

#[test]
fn a_byte_order_mark_does_not_shift_columns_in_the_library() {
    let outcome = check("\u{FEFF}dim N = 2.5\ninput x[N]\ny[i] = x[i]\n");
    let json: Value = serde_json::from_str(&json::render(std::slice::from_ref(&outcome))).unwrap();
    let d = &json["files"][0]["diagnostics"][0];
    assert_eq!(d["code"], "dl::parse::dim_value");
    assert_eq!(
        (d["line"].clone(), d["column"].clone()),
        (1.into(), 9.into()),
        "{d}"
    );
}

#[test]
fn control_characters_are_a_syntax_error() {
    for text in ["\0\0\0", "dim N = 4\u{7}\n", "\u{1b}[31m"] {
        let outcome = check(text);
        assert_eq!(codes(&outcome), ["dl::parse::syntax"], "{text:?}");
    }
}

#[test]
fn binary_files_are_not_utf8_and_the_others_are_checked() {
    let dir = TempDir::new("binary");
    // Random-looking bytes, a UTF-16 file and the dlverify executable itself.
    let noise: Vec<u8> = (0u32..4096)
        .map(|k| (k.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let noise = dir.write("noise.dl", noise);
    let utf16: Vec<u8> = "\u{FEFF}dim N = 4\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let utf16 = dir.write("utf16.dl", utf16);
    let exe = env!("CARGO_BIN_EXE_dlverify");
    let good = dir.write("good.dl", GOOD);
    let (run, json) = run_json(&[&noise, &utf16, exe, &good]);
    run.assert_exit(2);
    for path in [noise.as_str(), utf16.as_str(), exe] {
        let d = &json_file(&json, path)["diagnostics"][0];
        assert_eq!(d["code"], "dl::input::not_utf8", "{path}: {d}");
        assert!(
            d["message"]
                .as_str()
                .unwrap()
                .contains("invalid byte at offset"),
            "{d}"
        );
    }
    assert_eq!(json_file(&json, &good)["status"], "pass");
    assert_eq!(json["summary"]["files"], 4);
    assert_eq!(json["summary"]["errors"], 3);
}

// ---------------------------------------------------------------------------
// Files: empty, no specs, unreadable

#[test]
fn empty_and_comment_only_files() {
    for text in ["", "\n\n  \t\r\n"] {
        let outcome = check(text);
        assert_eq!(codes(&outcome), ["dl::input::empty"], "{text:?}");
    }
    // Only comments: a spec with nothing to check is an error, not a pass.
    let outcome = check("# nothing here yet\n");
    assert_eq!(outcome.status(), FileStatus::Error, "{}", render(&outcome));
}

#[test]
fn a_directory_without_specs_and_one_named_like_a_spec() {
    let dir = TempDir::new("nospecs");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let named = dir.path().join("x.dl");
    std::fs::create_dir(&named).unwrap();
    std::fs::write(named.join("notes.txt"), "not a spec").unwrap();
    let good = dir.write("good.dl", GOOD);
    for path in [&empty, &named] {
        let path = path.to_str().unwrap();
        let (run, json) = run_json(&[path, &good]);
        run.assert_exit(2);
        assert_eq!(
            json_file(&json, path)["diagnostics"][0]["code"],
            "dl::input::no_specs"
        );
        assert_eq!(json_file(&json, &good)["status"], "pass");
        assert_eq!(json["summary"]["errors"], 1);
    }
    // Searched as part of its parent, the directory `x.dl` is not a spec file.
    let (run, json) = run_json(&[dir.arg()]);
    run.assert_exit(0);
    assert_eq!(json["summary"]["files"], 1, "{json}");
}

/// Makes `path` unreadable, if this process's permissions allow that: as
/// root, `chmod 000` still leaves a file readable.
fn make_unreadable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::read(path).is_err()
}

#[test]
fn unreadable_files_are_errors_and_the_rest_is_checked() {
    let dir = TempDir::new("unreadable");
    let good = dir.write("good.dl", GOOD);
    // Reading /proc/self/mem from its start fails (EIO) even for root; a
    // symbolic link that points at itself fails too (ELOOP).
    let mem = dir.path().join("mem.dl");
    std::os::unix::fs::symlink("/proc/self/mem", &mem).unwrap();
    let looping = dir.path().join("loop.dl");
    std::os::unix::fs::symlink(&looping, &looping).unwrap();
    let mut unreadable = vec![
        mem.to_str().unwrap().to_string(),
        looping.to_str().unwrap().to_string(),
    ];
    let locked = dir.write("locked.dl", GOOD);
    if make_unreadable(Path::new(&locked)) {
        unreadable.push(locked);
    } else {
        eprintln!(
            "note: chmod 000 leaves files readable here (running as root); skipped that case"
        );
        std::fs::remove_file(&locked).unwrap();
    }
    let mut args: Vec<&str> = unreadable.iter().map(String::as_str).collect();
    args.push(&good);
    let (all, json) = run_json(&args);
    all.assert_exit(2);
    for path in &unreadable {
        let d = &json_file(&json, path)["diagnostics"][0];
        assert_eq!(d["code"], "dl::input::unreadable", "{path}: {d}");
        let message = d["message"].as_str().unwrap();
        assert!(
            message.starts_with(path.as_str()) && message.contains("cannot be read"),
            "{message}"
        );
    }
    assert_eq!(json_file(&json, &good)["status"], "pass");
    assert_eq!(json["summary"]["errors"], unreadable.len());
    // Found by searching the directory: the same diagnostics, in name order.
    let searched = run(&[dir.arg()]);
    searched.assert_exit(2);
    let stdout = &searched.stdout;
    assert!(stdout.contains("mem.dl: cannot be read"), "{stdout}");
    assert!(stdout.contains("loop.dl: cannot be read"), "{stdout}");
    assert!(stdout.contains("good.dl: good [ok]"), "{stdout}");
}

// ---------------------------------------------------------------------------
// Non-finite values: found where they first appear, never passed

#[test]
fn a_domain_error_in_the_forward_names_expression_element_and_size() {
    // Only x[2] at N = 8 leaves the domain: the report must find that one.
    let text = "\
dim N = 8
input x[N] in (1, 2)
y[i] = log(x[i] - 3 * [i == 2] * [N == 8])
grad x[j] = g[j] / (x[j] - 3 * [j == 2] * [N == 8])
";
    let outcome = check(text);
    assert_eq!(
        codes(&outcome),
        ["dl::eval::domain"],
        "{}",
        render(&outcome)
    );
    let message = outcome.diagnostics[0].to_string();
    assert!(message.starts_with("log of -1."), "{message}");
    assert!(message.ends_with("at i = 2, N = 8"), "{message}");
    let human = render(&outcome);
    assert!(human.contains("log(-1."), "{human}");
    // The claim is not passed: it could not be checked at every size.
    assert_eq!(claim(&outcome, "grad x[j]").status(), ClaimStatus::Error);
}

#[test]
fn values_drawn_outside_a_domain_are_a_diagnostic_with_a_help() {
    let text = format!("{HEAD}y[i] = log(x[i])\ngrad x[j] = g[j] / x[j]\n");
    let outcome = check(&text);
    assert_eq!(codes(&outcome), ["dl::eval::domain"]);
    let d = &outcome.diagnostics[0];
    assert!(d.to_string().contains("at i = "), "{d}");
    assert!(d.help().unwrap().to_string().contains("> 0"), "{d:?}");
    assert_eq!(outcome.claims[0].status(), ClaimStatus::Error);
}

#[test]
fn a_constraint_keeps_draws_in_the_domain() {
    let with = |decl: &str| {
        format!(
            "{HEAD}param {decl}\ny[i] = log(s) * x[i] + sqrt(s)\ngrad s = sum(i) g[i] * (x[i] / s + 0.5 / sqrt(s))\n"
        )
    };
    expect_pass(&with("s > 0"));
    expect_pass(&with("s in (0.5, 3]"));
    // Without the constraint, some seed draws s <= 0: a diagnostic, not a verdict.
    let outcome = check(&with("s"));
    assert_eq!(
        codes(&outcome),
        ["dl::eval::domain"],
        "{}",
        render(&outcome)
    );
}

#[test]
fn the_domain_help_names_the_constraint_to_add() {
    let outcome = check(&format!("{HEAD}param t\ny[i] = log(t) * x[i]\n"));
    let help = outcome.diagnostics[0].help().unwrap().to_string();
    assert!(help.contains("`param t > 0`"), "{help}");
}

#[test]
fn an_infinite_gradient_is_not_a_pass() {
    // d sqrt(t)/dt is infinite at t = 0, and so is the claimed formula: no
    // verdict of "agrees" (`grad a` beside it: see
    // `an_infinite_partial_in_one_input_leaves_the_others_differentiable`).
    let text = "\
dim N = 4
input x[N]
input t = 0
param a
y[i] = a * x[i] + sqrt(t)
grad t = sum(i) g[i] / (2 * sqrt(t))
grad a = sum(i) g[i] * x[i]
";
    let outcome = check(text);
    let t = claim(&outcome, "grad t");
    // Not checkable, rather than refuted: the claimed formula is undefined
    // exactly where the true gradient is infinite.
    assert_eq!(t.status(), ClaimStatus::Error, "{}", render(&outcome));
    let Verdict::Undecided(why) = &t.verdict else {
        unreachable!()
    };
    assert!(
        why.contains("dt") && (why.contains("inf") || why.contains("NaN")),
        "{why}"
    );
    assert!(t.problems.is_empty());
    assert_eq!(claim(&outcome, "grad a").status(), ClaimStatus::Pass);
}

#[test]
fn a_nan_gradient_is_reported_not_passed() {
    // d/dx (sqrt(x) * 0) at x = 0 is 0 * inf = NaN in dual numbers; the
    // claim `5` is wrong and must not pass.
    let text = "dim N = 4\ninput x[N] = 0\ny[i] = sqrt(x[i]) * 0\ngrad x[j] = 5\n";
    let outcome = check(text);
    let c = &outcome.claims[0];
    assert_eq!(c.status(), ClaimStatus::Error, "{}", render(&outcome));
    let Verdict::Undecided(why) = &c.verdict else {
        unreachable!()
    };
    assert!(why.contains("NaN") && why.contains("dx[1]"), "{why}");
}

#[test]
fn a_non_finite_finite_difference_is_reported_not_passed() {
    // log's argument is 1e-15 at t = 1e-9: every step the finite
    // differences try, down to ε^(1/3)·t ≈ 6e-15, leaves its domain.
    let text = "\
dim N = 4
input x[N]
input t = 1e-9
param a
y[i] = a * x[i] + log(t - 0.999999e-9)
grad t = sum(i) g[i] / (t - 0.999999e-9)
";
    let outcome = check(text);
    let c = &outcome.claims[0];
    assert_eq!(c.status(), ClaimStatus::Error, "{}", render(&outcome));
    let Verdict::Undecided(why) = &c.verdict else {
        unreachable!()
    };
    assert!(why.contains("log") && why.contains("N = 1"), "{why}");
}

/// Near log's 0 the usual step (6e-6) leaves the domain; a smaller one,
/// relative to the value, still sees the derivative.
#[test]
fn finite_differences_step_down_where_the_usual_step_leaves_the_domain() {
    let text = "\
dim N = 4
input x[N]
input t = 1e-9
param a
y[i] = a * x[i] + log(t)
grad t = sum(i) g[i] / t
";
    let outcome = check(text);
    let c = &outcome.claims[0];
    assert_eq!(c.status(), ClaimStatus::Pass, "{}", render(&outcome));
    assert!(c.cross_checks[0].passed && c.cross_checks[0].compared > 0);
}

// ---------------------------------------------------------------------------
// Time limits

/// Cubic work per size: at N = 60 far more than a fraction of a second.
const HEAVY: &str = "\
dim N = 60
input x[N]
param w[N, N]
y[i] = sum(j) sum(k) w[i, j] * w[j, k] * x[k]
grad x[k] = sum(i) sum(j) g[i] * w[i, j] * w[j, k]
";

#[test]
fn a_claim_past_the_time_limit_is_not_checked_and_the_run_goes_on() {
    let dir = TempDir::new("timeout");
    let heavy = dir.write("heavy.dl", HEAVY);
    let good = dir.write("good.dl", GOOD);
    let (run, json) = run_json(&[&heavy, &good, "--timeout", "0.2"]);
    run.assert_exit(1);
    let c = &json_file(&json, &heavy)["claims"][0];
    assert_eq!(c["status"], "error", "{c}");
    let reason = c["undecided_reason"].as_str().unwrap();
    assert!(reason.contains("time limit of 0.2 s at N = 60"), "{reason}");
    assert_eq!(json_file(&json, &good)["status"], "pass");
}

/// Three nested sums of 150 terms: no one sum reaches the terms between
/// looks at the clock, but each element of the claim costs 3.4 million.
const NESTED: &str = "\
dim N = 150
input x[N]
param w[N, N]
y[i] = sum(j) w[i, j] * x[j]
grad x[k] = sum(i) g[i] * w[i, k] + 0 * sum(a) sum(b) sum(c) w[a, b] * w[b, c] * x[c]
";

/// `spec` checked under a time limit of 0.3 s, its first claim left
/// without a verdict (not within the test's own limit: a hang fails it).
fn stopped_at_300_ms(spec: &str) -> FileOutcome {
    let options = Options {
        timeout: Duration::from_millis(300),
        ..Options::default()
    };
    let outcome = check_within(spec, &options, HANG);
    assert_eq!(
        outcome.claims[0].status(),
        ClaimStatus::Error,
        "{}",
        render(&outcome)
    );
    outcome
}

#[test]
fn nested_short_sums_stop_at_the_time_limit() {
    let outcome = stopped_at_300_ms(NESTED);
    let Verdict::Undecided(why) = &outcome.claims[0].verdict else {
        unreachable!()
    };
    assert!(why.contains("time limit of 0.3 s at N = 150"), "{why}");
}

/// A sum whose range holds 10^15 terms (literal ends are allowed) is
/// taken in blocks on every core, a few at a time: it stops at the time
/// limit like any other, rather than asking for memory per block up front
/// (which aborted the process) or outrunning the clock block by block.
#[test]
fn a_sum_of_a_quadrillion_terms_stops_at_the_time_limit() {
    let spec = "dim N = 3
input x[N]
loss L = sum(k in 1..=1000000000000000) x[1] * k + x[2] * x[3]
grad x[j] = [j == 2] * x[3] + [j == 3] * x[2]
";
    let outcome = stopped_at_300_ms(spec);
    assert!(
        render(&outcome).contains("time limit of 0.3 s"),
        "{}",
        render(&outcome)
    );
}

#[test]
fn a_claim_asking_for_more_steps_than_allowed_is_not_checked() {
    let spec = |steps: &str| {
        format!(
            "dim n = 3\nparam theta[n]\nhyper alpha = 0.05\nstream gt[n] ~ normal(0, 1)
optimizer A {{ theta[k] = theta[k] - alpha * gt[k] }}
optimizer B {{ theta[k] = theta[k] - alpha * gt[k] }}
claim A == B over {steps} steps\n"
        )
    };
    let options = Options {
        max_steps: 10,
        ..small()
    };
    let outcome = check_within(&spec("99999999999"), &options, HANG);
    assert_consistent(&outcome);
    let c = &outcome.claims[0];
    assert_eq!(c.status(), ClaimStatus::Error, "{}", render(&outcome));
    let Verdict::Undecided(why) = &c.verdict else {
        unreachable!()
    };
    assert!(
        why.contains("more than the limit of 10 (--max-steps)"),
        "{why}"
    );
    // Within the limit the same claim holds.
    let outcome = check_within(&spec("10"), &options, HANG);
    assert_eq!(
        outcome.claims[0].status(),
        ClaimStatus::Pass,
        "{}",
        render(&outcome)
    );
    // Past 64 bits it is a parse error.
    let outcome = check(&spec("999999999999999999999999"));
    assert_eq!(codes(&outcome), ["dl::parse::steps"]);
}

// ---------------------------------------------------------------------------
// Closed pipes

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // About 1 MB of JSON, far more than a pipe holds: the writes after
    // `head` has gone fail with EPIPE.
    let binary = env!("CARGO_BIN_EXE_dlverify");
    let a3 = "specs/a3_recurrent_sequence.dl";
    let script = format!(
        "'{binary}' {a3} {a3} {a3} {a3} --format json | head -1; echo \"status ${{PIPESTATUS[0]}}\" >&2"
    );
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > HANG {
            let _ = child.kill();
            panic!("`dlverify specs/ | head -1` still running after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "{\n");
    // Nothing on stderr but the exit status: 0, the run's own, as the spec
    // passes (Rust ignores SIGPIPE, so the write fails and is let go).
    assert_eq!(stderr.trim(), "status 0");
}

// ---------------------------------------------------------------------------
// Random specs: grammar-aware generation plus token-level mutations

/// One token of a generated spec; joined with spaces (newlines are tokens).
type Tokens = Vec<String>;

fn toks(text: &str) -> Tokens {
    text.split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn cat(parts: Vec<Tokens>) -> Tokens {
    parts.into_iter().flatten().collect()
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = Tokens> {
    prop::sample::select(options).prop_map(toks)
}

/// An index expression: affine in `i`, `j`, `k` and the dims.
fn index() -> impl Strategy<Value = Tokens> {
    pick(&[
        "i",
        "j",
        "k",
        "i + 1",
        "i - 1",
        "k + 2",
        "N - i + 1",
        "2 * k - 1",
        "j - 2",
        "1",
        "N",
        "M",
        "0",
        "i * i",
    ])
}

/// A leaf of an expression: numbers, scalars and accesses.
fn leaf() -> impl Strategy<Value = Tokens> {
    prop_oneof![
        pick(&[
            "0", "1", "2.5", "0.001", "1e308", "1e-300", "3", "N", "M", "h", "mu"
        ]),
        pick(&["a", "b", "s", "t", "L", "y"]),
        (pick(&["x[", "g[", "z[", "v["]), index()).prop_map(|(t, i)| cat(vec![t, i, toks("]")])),
        (index(), index()).prop_map(|(i, k)| cat(vec![toks("w["), i, toks(","), k, toks("]")])),
    ]
}

fn comparison() -> impl Strategy<Value = Tokens> {
    (index(), pick(&["==", "!=", "<", "<=", ">", ">="]), index())
        .prop_map(|(a, op, b)| cat(vec![a, op, b]))
}

fn condition() -> impl Strategy<Value = Tokens> {
    prop_oneof![
        comparison(),
        (comparison(), pick(&["and", "or"]), comparison())
            .prop_map(|(a, op, b)| cat(vec![a, op, b])),
        comparison().prop_map(|c| cat(vec![toks("not"), c])),
        (index(), index(), index()).prop_map(|(a, b, c)| cat(vec![
            a,
            toks("<="),
            b,
            toks("<="),
            c
        ])),
    ]
}

fn expr() -> impl Strategy<Value = Tokens> {
    leaf().prop_recursive(6, 48, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                pick(&["+", "-", "*", "/", "^"]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| cat(vec![a, op, b])),
            inner.clone().prop_map(|e| cat(vec![toks("-"), e])),
            inner
                .clone()
                .prop_map(|e| cat(vec![toks("("), e, toks(")")])),
            (
                pick(&[
                    "exp(",
                    "log(",
                    "sqrt(",
                    "abs(",
                    "tanh(",
                    "sigmoid(",
                    "relu(",
                    "softplus(",
                    "sin(",
                    "cos(",
                    "atan(",
                    "asin(",
                    "acos(",
                    "sinh(",
                    "cosh(",
                    "log1p(",
                    "expm1(",
                    "erf(",
                    "sign(",
                    "lgamma(",
                    "digamma(",
                    "floor(",
                    "ceil(",
                    "round(",
                ]),
                inner.clone()
            )
                .prop_map(|(f, e)| cat(vec![f, e, toks(")")])),
            (
                pick(&["min(", "max(", "pow(", "mod("]),
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(f, a, b)| cat(vec![f, a, toks(","), b, toks(")")])),
            (
                pick(&[
                    "sum(k)",
                    "prod(k)",
                    "max(k)",
                    "min(k)",
                    "sum(k in 1..=N)",
                    "sum(k in 5..=1)",
                    "mean(k)",
                    "mean(k in 3..=2)",
                    "sum(i, k)",
                    "prod(k, i in 1..=2)",
                ]),
                inner.clone()
            )
                .prop_map(|(r, e)| cat(vec![r, e])),
            (condition(), inner.clone()).prop_map(|(c, e)| cat(vec![toks("["), c, toks("] *"), e])),
            inner.prop_map(|e| cat(vec![e, toks("^ 2")])),
        ]
    })
}

/// `e`, or cases `e if c | e if c | e otherwise`.
fn body() -> impl Strategy<Value = Tokens> {
    prop_oneof![
        3 => expr(),
        1 => (expr(), condition(), expr(), prop::bool::ANY).prop_map(|(a, c, b, otherwise)| {
            let last = if otherwise { toks("otherwise") } else { toks("if j > 2") };
            cat(vec![a, toks("if"), c, toks("|"), b, last])
        }),
    ]
}

fn statement() -> impl Strategy<Value = Tokens> {
    prop_oneof![
        pick(&[
            "exercise \"random\"",
            "dim N = 4",
            "dim M = 2",
            "dim N = 0",
            "dim N = 99999999999",
            "dim N = 3 , M = 1",
            "input x[ N ]",
            "input x[ N ] in ( -1 , 1 )",
            "input x[ N ] > 0",
            "input x[ N ] = [ 1 , -2 , 3.5 ]",
            "input t = 1",
            "param a , b",
            "param s > 0",
            "param w[ M , N ]",
            "param v[ N ] in [ 0 , 1 ]",
            "hyper h = 0.5 , mu = 0.9",
            "stream gt[ N ] ~ normal( 0 , 1 )",
            "optimizer A { state v[ N ] = 0 v[ k ] = mu * v[ k ] + gt[ k ] x[ k ] = x[ k ] - h * v[ k ] }",
            "optimizer B { v[ k ] = gt[ k ] x[ k ] = x[ k ] - h * v[ k ] }",
            "claim A == B over 3 steps",
            "check taylor central rate ≈ 3 ± 0.3",
            "random q[ i ] ~ bernoulli( 0.5 ) for i in 1..=N",
        ]),
        expr().prop_map(|e| cat(vec![toks("hyper h ="), e])),
        (
            body(),
            pick(&["", "for i in 1..=N", "for i in 1..=N - 2", "for i in 3..=1"])
        )
            .prop_map(|(b, f)| cat(vec![toks("y[ i ] ="), b, f])),
        body().prop_map(|b| cat(vec![toks("let z[ i ] ="), b])),
        expr().prop_map(|e| cat(vec![toks("loss L ="), e])),
        (
            pick(&["grad x[ j ] =", "grad a =", "grad w[ i , k ] =", "grad s ="]),
            body(),
            prop::bool::weighted(0.2)
        )
            .prop_map(|(head, b, fail)| {
                let tail = if fail {
                    toks("expect fail \"why\"")
                } else {
                    vec![]
                };
                cat(vec![head, b, tail])
            }),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(prop::sample::Index),
    Duplicate(prop::sample::Index),
    Swap(prop::sample::Index, prop::sample::Index),
    Insert(prop::sample::Index, &'static str),
}

/// Tokens that do not belong: stray punctuation, keywords, odd characters.
const GARBAGE: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    "=",
    "==",
    "..=",
    "|",
    "#",
    "\"",
    "if",
    "otherwise",
    "sum(k)",
    "grad",
    "dim",
    "expect fail",
    "\u{FEFF}",
    "\0",
    "θ",
    "1e999",
    "-",
    "\r",
    "~",
    "99999999999",
    "for i in",
    "x[",
    "claim",
    "over",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    use prop::sample::Index;
    prop_oneof![
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Duplicate),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<Index>(), prop::sample::select(GARBAGE)).prop_map(|(a, g)| Mutation::Insert(a, g)),
    ]
}

fn mutate(tokens: &mut Tokens, m: &Mutation) {
    if tokens.is_empty() {
        return;
    }
    match m {
        Mutation::Delete(at) => {
            tokens.remove(at.index(tokens.len()));
        }
        Mutation::Duplicate(at) => {
            let k = at.index(tokens.len());
            tokens.insert(k, tokens[k].clone());
        }
        Mutation::Swap(a, b) => {
            let (a, b) = (a.index(tokens.len()), b.index(tokens.len()));
            tokens.swap(a, b);
        }
        Mutation::Insert(at, garbage) => {
            tokens.insert(at.index(tokens.len() + 1), garbage.to_string())
        }
    }
}

/// An expression over the index `v` only (and `g[v]` if `incoming`): the
/// kind that gets through analysis, so that evaluation and verification
/// see random formulas too.
fn expr_in(v: &'static str, incoming: bool) -> impl Strategy<Value = Tokens> {
    let mut accesses = vec![
        format!("x[ {v} ]"),
        format!("x[ {v} ]"),
        "sum(k) x[ k ]".to_string(),
        format!("[ {v} == 1 ] * x[ 1 ]"),
        format!("[ {v} >= 2 ] * x[ {v} - 1 ]"),
    ];
    if incoming {
        accesses.push(format!("g[ {v} ]"));
    }
    let leaf = prop_oneof![
        pick(&["0", "1", "2.5", "0.001", "1e308", "a", "s", "h", "N"]),
        prop::sample::select(accesses).prop_map(|t| toks(&t)),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), pick(&["+", "-", "*", "/"]), inner.clone())
                .prop_map(|(a, op, b)| cat(vec![toks("("), a, op, b, toks(")")])),
            inner.clone().prop_map(|e| cat(vec![toks("-"), e])),
            (
                pick(&[
                    "exp(", "log(", "sqrt(", "tanh(", "sigmoid(", "relu(", "abs("
                ]),
                inner.clone()
            )
                .prop_map(|(f, e)| cat(vec![f, e, toks(")")])),
            inner.prop_map(|e| cat(vec![e, toks("^ 2")])),
        ]
    })
}

/// A spec that analysis accepts most of the time: a layer or a loss over
/// `x[N]`, and random claims on `a`, `s` and `x`.
fn well_formed_spec() -> impl Strategy<Value = Tokens> {
    (
        pick(&[
            "input x[ N ]",
            "input x[ N ] in ( -1 , 1 )",
            "input x[ N ] > 0",
        ]),
        prop::bool::ANY,
        expr_in("i", false),
        expr_in("i", true),
        expr_in("j", true),
        expr_in("i", true),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(input, is_layer, output, on_a, on_x, on_s, fail)| {
            // Every index is used plainly somewhere, so its range is inferred.
            let mut t = cat(vec![
                toks("dim N = 4 \n"),
                input,
                toks("\n param a , s > 0 \n hyper h = 0.5 \n"),
            ]);
            if is_layer {
                t.extend(cat(vec![toks("y[ i ] = x[ i ] * ("), output, toks(")")]));
            } else {
                t.extend(cat(vec![
                    toks("loss L = sum(i) x[ i ] * ("),
                    output,
                    toks(")"),
                ]));
            }
            t.extend(cat(vec![
                toks("\n grad a = sum(i) x[ i ] * ("),
                on_a,
                toks(")"),
            ]));
            t.extend(cat(vec![toks("\n grad x[ j ] ="), on_x]));
            t.extend(cat(vec![
                toks("\n grad s = sum(i) x[ i ] * ("),
                on_s,
                toks(")"),
            ]));
            if fail {
                t.extend(toks("expect fail \"why\""));
            }
            if !is_layer {
                // A loss has no incoming gradient `g`.
                for token in &mut t {
                    if token == "g[" {
                        *token = "x[".to_string();
                    }
                }
            }
            t
        })
}

/// A spec with random statements in random order, mostly after a usual preamble.
fn wild_spec() -> impl Strategy<Value = Tokens> {
    (prop::bool::weighted(0.8), prop::collection::vec(statement(), 1..8)).prop_map(
        |(preamble, statements)| {
            let mut tokens: Tokens = vec![];
            if preamble {
                tokens.extend(toks("dim N = 4 , M = 2 \n input x[ N ] \n param a , s > 0 , w[ M , N ] \n hyper h = 0.5 , mu = 0.9 \n"));
            }
            for s in statements {
                tokens.extend(s);
                tokens.push("\n".to_string());
            }
            tokens
        },
    )
}

/// A well-formed or a wild spec, then (half of the time) a few mutations.
fn random_spec() -> impl Strategy<Value = String> {
    (
        prop_oneof![well_formed_spec(), wild_spec()],
        prop_oneof![Just(vec![]), prop::collection::vec(mutation(), 1..4)],
    )
        .prop_map(|(mut tokens, mutations)| {
            for m in &mutations {
                mutate(&mut tokens, m);
            }
            tokens.join(" ")
        })
}

proptest! {
    // 64 cases keep `cargo test` quick; `PROPTEST_CASES=5000` for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_specs_end_with_a_verdict_or_a_diagnostic(text in random_spec()) {
        let start = Instant::now();
        let outcome = check_within(&text, &small(), HANG);
        assert_consistent(&outcome);
        if start.elapsed() > Duration::from_secs(1) && std::env::var("SHOW_GENERATED").is_ok() {
            eprintln!("slow ({:?}):\n{text}\n", start.elapsed());
        }
        // Each claim gets at most the time limit per size; nothing here is large.
        prop_assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
    }
}

/// The generator makes specs that get through to a verdict, not only errors.
#[test]
fn the_generator_reaches_verification() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = random_spec();
    let mut checked = 0;
    for _ in 0..64 {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        let outcome = check_within(&text, &small(), HANG);
        if std::env::var("SHOW_GENERATED").is_ok() {
            eprintln!("----\n{text}\n=> {:?}", codes(&outcome));
        }
        if !outcome.claims.is_empty() {
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "only {checked} of 64 random specs had claims checked"
    );
}

// ---------------------------------------------------------------------------
// Found by fuzzing (`fuzz/`): minimal reproducers go here. The first 45
// minutes (parse, analyze and pipeline targets, 2.0 million inputs) found no
// crash, hang or inconsistent outcome; the bugs above came from the edge cases.

// ---------------------------------------------------------------------------
// Found by the verdict-stability run

/// Found by the verdict-stability run (`tests/stability.rs`): the corrected
/// eq. (15) of `specs/a2_weight_normalization.dl`, alone, at seed 75.
#[test]
fn weight_normalization_holds_at_seed_75() {
    let spec = "\
dim n = 1, m = 1
input x[n]
param w[m, n], b[m]
let s[i] = sum(k) w[i,k] * x[k]
let norm[i] = sqrt(sum(k) w[i,k]^2)
y[i] = (s[i] + b[i]) / norm[i]
grad w[i,j] = g[i] * (x[j] / norm[i] - (s[i] + b[i]) * w[i,j] / norm[i]^3)
";
    for seed in [0, 75] {
        let options = Options {
            seed,
            ..Options::default()
        };
        let outcome = dlverify::check_source(Source::new("a2.dl", spec), &options);
        let claim = &outcome.claims[0];
        assert_eq!(
            claim.status().as_str(),
            "pass",
            "seed {seed}: {:?} {:?}",
            claim.verdict,
            claim.cross_checks
        );
    }
}

/// Found while checking the fixes for non-finite gradients: forward-mode
/// duals carry sqrt'(0) = inf into every derivative direction, and
/// inf × 0 = NaN in the directions that do not touch `t`.
#[test]
fn an_infinite_partial_in_one_input_leaves_the_others_differentiable() {
    let text = "\
dim N = 4
input x[N]
input t = 0
param a
y[i] = a * x[i] + sqrt(t)
grad a = sum(i) g[i] * x[i]
";
    let outcome = check(text);
    assert_eq!(
        outcome.claims[0].status(),
        ClaimStatus::Pass,
        "{}",
        render(&outcome)
    );
}

/// A kink at a given value (relu at 0): a claim is judged against the
/// derivatives valid there, relu'(0) anywhere in [0, 1], and the report
/// names the elements; a claim outside that range is refuted.
#[test]
fn a_kink_at_a_given_value_is_judged_against_its_valid_derivatives() {
    let spec = |claim: &str| {
        format!(
            "dim N = 4
input x[N] = 0
param a
y[i] = relu(x[i]) + a * x[i]
{claim}
"
        )
    };
    // relu'(0) = 0 is autodiff's own pick; 1 and 1/2 are as valid.
    for (claim, differs_from_autodiff) in [
        ("grad x[j] = g[j] * (a + [x[j] > 0])", false),
        ("grad x[j] = g[j] * (a + [x[j] >= 0])", true),
        ("grad x[j] = g[j] * (a + 0.5)", true),
    ] {
        let outcome = check(&spec(claim));
        let c = &outcome.claims[0];
        assert_eq!(
            c.status(),
            ClaimStatus::Pass,
            "{claim}\n{}",
            render(&outcome)
        );
        assert_eq!(
            c.kinks.len(),
            if differs_from_autodiff { 10 } else { 0 },
            "{claim}: the elements at a kink where the claim is not autodiff's pick are named"
        );
        for k in &c.kinks {
            // dL/dx = g·(a + s) with s in [0, 1]; autodiff takes s = 0.
            assert!(k.lo < k.hi, "{claim}: {k:?}");
            // To the rounding of the f64 gradients the range is made of.
            let slack = 1e-12 * (k.hi - k.lo);
            assert!(
                (k.autodiff - k.lo).abs() <= slack || (k.autodiff - k.hi).abs() <= slack,
                "{claim}: {k:?}"
            );
            assert!(
                k.lo - slack <= k.claimed && k.claimed <= k.hi + slack,
                "{claim}: {k:?}"
            );
        }
    }
    for claim in [
        "grad x[j] = g[j] * (a + 2 * [x[j] >= 0])",
        "grad x[j] = g[j] * (a - 1)",
    ] {
        let outcome = check(&spec(claim));
        let c = &outcome.claims[0];
        assert_eq!(
            c.status(),
            ClaimStatus::Fail,
            "{claim}\n{}",
            render(&outcome)
        );
        assert!(
            c.mismatches
                .iter()
                .all(|m| matches!(m.judged, MismatchBasis::OutsideKink { .. })),
            "{claim}: refuted for lying outside the valid range"
        );
    }
}

/// Lone carriage returns (old Mac line endings) are line breaks: a
/// diagnostic on the third line says line 3.
#[test]
fn lone_carriage_returns_end_lines() {
    let outcome = check("dim N = 4\rinput x[N]\ry[i] = x[i] + q\r");
    let json: Value = serde_json::from_str(&json::render(std::slice::from_ref(&outcome))).unwrap();
    let d = &json["files"][0]["diagnostics"][0];
    assert_eq!(d["code"], "dl::analysis::unknown_name", "{d}");
    assert_eq!(d["line"], 3, "{d}");
}
