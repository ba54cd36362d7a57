//! The `dlverify` binary end to end: arguments, output formats, exit codes
//! and the bundled specs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::TempDir;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use serde_json::Value;

const A2: &str = "specs/a2_weight_normalization.dl";
const A3: &str = "specs/a3_recurrent_sequence.dl";

/// A correct layer spec: the claims hold.
const GOOD: &str = "\
exercise \"good\"
dim N = 5
input x[N]
param a, b
y[i] = a * x[i] + b
grad a = sum(i) g[i] * x[i]
grad b = sum(i) g[i]
";

/// `dx[j]` drops the factor `a`: wrong wherever `g[j] != 0`.
const WRONG: &str = "\
exercise \"wrong\"
dim N = 5
input x[N]
param a
y[i] = a * x[i]
grad x[j] = g[j]
";

/// A syntax error on line 3.
const MALFORMED: &str = "\
dim N = 4
input x[N]
let c = 2 * )
y[i] = c * x[i]
";

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlverify"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// Runs the binary from the crate root: (exit code, stdout, stderr).
/// The bundled spec files, in the name order a directory run checks them.
fn bundled_specs() -> Vec<String> {
    let mut specs: Vec<String> = std::fs::read_dir("specs")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dl"))
        .map(|p| format!("specs/{}", p.file_name().unwrap().to_str().unwrap()))
        .collect();
    specs.sort();
    specs
}

/// How many claims a set of files holds, from a JSON run.
fn claim_count(args: &[&str]) -> u64 {
    run_json(args).1["summary"]["claims"].as_u64().unwrap()
}

/// How many claims are marked `expect fail`, counted from the JSON claims.
fn marked_to_fail(args: &[&str]) -> u64 {
    let json = run_json(args).1;
    let marked = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["claims"].as_array().unwrap())
        .filter(|c| c["expect"] == "fail")
        .count();
    u64::try_from(marked).unwrap()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = command(args).output().unwrap();
    (
        out.status.code().expect("exited, not killed by a signal"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Runs with `--format json` and parses stdout.
fn run_json(args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let (code, stdout, stderr) = run(&all);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    (code, value)
}

fn files(json: &Value) -> &Vec<Value> {
    json["files"].as_array().expect("files is an array")
}

fn file<'v>(json: &'v Value, path: &str) -> &'v Value {
    files(json)
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no file {path} in {json}"))
}

fn claim_at(file: &Value, line: u64) -> &Value {
    file["claims"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["line"] == line)
        .unwrap_or_else(|| panic!("no claim at line {line} in {file}"))
}

fn statuses(json: &Value) -> Vec<(String, Vec<String>)> {
    files(json)
        .iter()
        .map(|f| {
            let claims = f["claims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| format!("{}:{}", c["line"], c["status"]))
                .collect();
            (f["status"].to_string(), claims)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The bundled specs

#[test]
fn bundled_specs_pass_in_human_form() {
    let (code, stdout, stderr) = run(&["specs/"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let last = stdout.trim_end().lines().last().unwrap();
    let files = bundled_specs().len();
    let claims = claim_count(&["specs/"]);
    assert!(files >= 2 && claims >= 10, "{files} files, {claims} claims");
    let marked = marked_to_fail(&["specs/"]);
    assert!(
        marked > 0,
        "the handout's errata are kept as expect-fail claims"
    );
    assert_eq!(
        last,
        format!(
            "summary: {files} files, {claims} claims as expected: {} hold, {marked} refuted as marked",
            claims - marked
        ),
        "{stdout}"
    );
    assert!(stdout.contains("specs/a3_recurrent_sequence.dl: Backprop recurrent sequence [ok]"));
    assert!(stdout.contains("pass (expected fail)"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn bundled_specs_in_json() {
    let (code, json) = run_json(&["specs/"]);
    assert_eq!(code, 0);
    let summary = &json["summary"];
    assert_eq!(summary["files"], bundled_specs().len(), "{summary}");
    assert_eq!(summary["passed"], summary["claims"], "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");

    let paths: Vec<&str> = files(&json)
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, bundled_specs());

    for f in files(&json) {
        assert_eq!(f["status"], "pass", "{}", f["path"]);
        assert!(f["exercise"].is_string());
        assert_eq!(f["diagnostics"], Value::Array(vec![]));
        for c in f["claims"].as_array().unwrap() {
            for key in [
                "kind",
                "target",
                "line",
                "expect",
                "status",
                "sizes",
                "max_abs_error",
                "max_rel_error",
                "mismatches",
            ] {
                assert!(c.get(key).is_some(), "claim lacks `{key}`: {c}");
            }
            assert!(c["max_abs_error"].as_f64().unwrap() >= 0.0);
            assert!(!c["sizes"].as_array().unwrap().is_empty());
        }
    }

    let a3 = file(&json, A3);
    assert_eq!(a3["exercise"], "Backprop recurrent sequence");
    let sizes: Vec<i64> = a3["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["N"].as_i64().unwrap())
        .collect();
    assert_eq!(
        sizes.first(),
        Some(&3),
        "the smallest N with a non-empty layer"
    );
    assert_eq!(sizes.last(), Some(&8), "the default N");
    // (17) and (18) hold exactly.
    for line in [12, 15] {
        let c = claim_at(a3, line);
        assert_eq!(
            (c["expect"].as_str(), c["status"].as_str()),
            (Some("pass"), Some("pass"))
        );
    }
    // The literal eq. (19) is an erratum kept on record.
    let literal = claim_at(a3, 21);
    assert_eq!(literal["target"], "x");
    assert_eq!(literal["expect"], "fail");
    assert_eq!(literal["status"], "expected-fail");
    assert!(
        !literal["problems"].as_array().unwrap().is_empty(),
        "{literal}"
    );
    // The corrected forms pass.
    for line in [35, 41] {
        let c = claim_at(a3, line);
        assert_eq!(c["expect"], "pass");
        assert_eq!(c["status"], "pass", "{c}");
        assert!(c["max_rel_error"].as_f64().unwrap() < 1e-12, "{c}");
        assert_eq!(c["mismatches"], Value::Array(vec![]));
    }

    // A2's literal eq. (15) differs element by element: 1-based indices.
    let a2 = file(&json, A2);
    let literal = claim_at(a2, 24);
    assert_eq!(literal["status"], "expected-fail");
    let m = &literal["mismatches"][0];
    let index: Vec<i64> = m["index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect();
    assert_eq!(index.len(), 2, "{m}");
    assert!(index.iter().all(|&i| i >= 1), "{m}");
    assert_ne!(m["expected"].as_f64(), m["actual"].as_f64());
    assert_eq!(claim_at(a2, 28)["status"], "pass");
}

#[test]
fn files_one_by_one_equal_the_directory() {
    let (code_dir, dir, _) = run(&["specs/", "--format", "json"]);
    let specs = bundled_specs();
    let mut args: Vec<&str> = specs.iter().map(String::as_str).collect();
    let human = args.clone();
    args.extend(["--format", "json"]);
    let (code_files, each, _) = run(&args);
    assert_eq!((code_dir, code_files), (0, 0));
    assert_eq!(dir, each);
    let (_, dir, _) = run(&["specs/"]);
    let (_, each, _) = run(&human);
    assert_eq!(dir, each);
}

/// Files are checked in parallel; the report keeps the order they were
/// named in, and progress goes to a terminal only: none here.
#[test]
fn parallel_files_keep_their_order_and_show_no_progress_off_a_terminal() {
    let specs = bundled_specs();
    let mut args: Vec<&str> = specs.iter().rev().map(String::as_str).collect();
    args.extend(["--format", "json"]);
    let (code, out, err) = run(&args);
    assert_eq!(code, 0);
    assert_eq!(err, "");
    let json: Value = serde_json::from_str(&out).unwrap();
    let order: Vec<&str> = files(&json)
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let named: Vec<&str> = specs.iter().rev().map(String::as_str).collect();
    assert_eq!(order, named);
    let (_, _, err) = run(&["specs/"]);
    assert_eq!(err, "");
}

// ---------------------------------------------------------------------------
// Seeds

#[test]
fn the_same_seed_gives_byte_identical_output() {
    for format in ["human", "json"] {
        let first = run(&["specs/", "--seed", "7", "--format", format]);
        let second = run(&["specs/", "--seed", "7", "--format", format]);
        assert_eq!(first, second, "{format}");
    }
    // The default seed is a seed like any other.
    assert_eq!(run(&["specs/"]), run(&["specs/", "--seed", "0"]));
}

#[test]
fn another_seed_draws_other_values_but_reaches_the_same_verdicts() {
    let (code1, one) = run_json(&["specs/", "--seed", "1"]);
    let (code2, two) = run_json(&["specs/", "--seed", "2"]);
    assert_eq!((code1, code2), (0, 0));
    assert_ne!(one, two, "different seeds should draw different values");
    assert_eq!(statuses(&one), statuses(&two));
    assert_eq!(one["summary"], two["summary"]);
    // The evidence is drawn values: A2's first mismatch differs.
    let value = |j: &Value| file(j, A2)["claims"][2]["mismatches"][0]["actual"].clone();
    assert_ne!(value(&one), value(&two));
}

// ---------------------------------------------------------------------------
// Failing claims and malformed specs

#[test]
fn a_wrong_claim_fails_with_evidence() {
    let dir = TempDir::new("wrong");
    let path = dir.write("wrong.dl", WRONG);
    let (code, json) = run_json(&[&path]);
    assert_eq!(code, 1, "{json}");
    let f = file(&json, &path);
    assert_eq!(f["status"], "fail");
    let c = &f["claims"][0];
    assert_eq!(c["status"], "fail");
    assert_eq!(c["expect"], "pass");
    assert!(c["max_abs_error"].as_f64().unwrap() > 1e-6, "{c}");
    let mismatches = c["mismatches"].as_array().unwrap();
    assert!(!mismatches.is_empty(), "{c}");
    for m in mismatches {
        let index = m["index"].as_array().unwrap();
        assert_eq!(index.len(), 1, "{m}");
        let i = index[0].as_i64().unwrap();
        let n = m["sizes"]["N"].as_i64().unwrap();
        assert!(
            (1..=n).contains(&i),
            "index {i} is not 1-based within N = {n}: {m}"
        );
        let (expected, actual) = (
            m["expected"].as_f64().unwrap(),
            m["actual"].as_f64().unwrap(),
        );
        // autodiff says a * g[j], the claim says g[j].
        assert!((expected - actual).abs() > 1e-9, "{m}");
    }
    assert_eq!(json["summary"]["failed"], 1);

    let (code, stdout, _) = run(&[&path]);
    assert_eq!(code, 1);
    assert!(stdout.contains("[FAILED]"), "{stdout}");
    assert!(stdout.contains("FAIL: differs from autodiff"), "{stdout}");
    assert!(stdout.contains("autodiff"), "{stdout}");
}

#[test]
fn an_unexpected_pass_fails_the_run() {
    let dir = TempDir::new("unexpected");
    let text = format!("{GOOD}grad x[j] = a * g[j]\n  expect fail \"it is right, in fact\"\n");
    let path = dir.write("unexpected.dl", text);
    let (code, json) = run_json(&[&path]);
    assert_eq!(code, 1);
    let c = claim_at(file(&json, &path), 8);
    assert_eq!(c["expect"], "fail");
    assert_eq!(c["status"], "unexpected-pass");
}

#[test]
fn a_malformed_spec_is_an_error_with_a_located_diagnostic() {
    let dir = TempDir::new("malformed");
    let path = dir.write("bad.dl", MALFORMED);
    let (code, json) = run_json(&[&path]);
    assert_eq!(code, 2);
    let f = file(&json, &path);
    assert_eq!(f["status"], "error");
    let d = &f["diagnostics"][0];
    assert_eq!(d["code"], "dl::parse::syntax");
    assert_eq!(d["message"], "expected an expression, found `)`");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(3), Some(13))
    );
    assert!(d.get("help").is_some(), "{d}");
    assert_eq!(json["summary"]["errors"], 1);

    let (code, stdout, _) = run(&[&path]);
    assert_eq!(code, 2);
    assert!(stdout.contains("[NOT CHECKED]"), "{stdout}");
    assert!(stdout.contains("dl::parse::syntax"), "{stdout}");
}

#[test]
fn an_analysis_error_carries_code_message_position_and_help() {
    let dir = TempDir::new("analysis");
    let path = dir.write(
        "rebound.dl",
        "dim N = 3\ninput x[N]\nparam w[N, N]\ny[i] = sum(k) w[i,k] * x[k]\n\
         grad w[i,j] = sum(i) g[i] * x[j]\n",
    );
    let (code, json) = run_json(&[&path]);
    assert_eq!(code, 2);
    let d = &file(&json, &path)["diagnostics"][0];
    assert_eq!(d["code"], "dl::analysis::rebound_index");
    assert!(d["message"].as_str().unwrap().contains("`i`"), "{d}");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(5), Some(19))
    );
    assert!(d["help"].as_str().unwrap().contains("fresh name"), "{d}");
    assert_eq!(d["labels"].as_array().unwrap().len(), 2, "{d}");
}

#[test]
fn one_bad_file_does_not_stop_the_others() {
    let dir = TempDir::new("mixed");
    let bad = dir.write("bad.dl", MALFORMED);
    let good = dir.write("good.dl", GOOD);
    let (code, json) = run_json(&[A3, &bad, &good]);
    assert_eq!(code, 2, "an error outranks the passes");
    assert_eq!(file(&json, &bad)["status"], "error");
    let good = file(&json, &good);
    assert_eq!(good["status"], "pass");
    assert_eq!(good["claims"].as_array().unwrap().len(), 2);
    let a3 = file(&json, A3);
    assert_eq!(a3["status"], "pass");
    let a3_claims = claim_count(&[A3]);
    assert_eq!(a3["claims"].as_array().unwrap().len() as u64, a3_claims);
    assert_eq!(json["summary"]["files"], 3);
    assert_eq!(json["summary"]["claims"], a3_claims + 2);
    assert_eq!(json["summary"]["errors"], 1);

    // Directory order is name order: bad.dl before good.dl.
    let (code, json) = run_json(&[dir.arg()]);
    assert_eq!(code, 2);
    let names: Vec<&str> = files(&json)
        .iter()
        .map(|f| f["path"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(names, ["bad.dl", "good.dl"]);
}

#[test]
fn unreadable_inputs_are_errors_and_the_rest_is_checked() {
    let dir = TempDir::new("inputs");
    let missing = dir.path().join("missing.dl");
    let missing = missing.to_str().unwrap();
    let empty = dir.write("empty.dl", "  \n\n");
    let binary = dir.write("binary.dl", [0xff, 0xfe, 0x00]);
    let no_specs = dir.path().join("no-specs");
    std::fs::create_dir(&no_specs).unwrap();
    std::fs::write(no_specs.join("notes.txt"), "not a spec").unwrap();
    let no_specs = no_specs.to_str().unwrap();

    let expected = [
        (missing, "dl::input::not_found", "no such file or directory"),
        (empty.as_str(), "dl::input::empty", "the file is empty"),
        (binary.as_str(), "dl::input::not_utf8", "not UTF-8"),
        (no_specs, "dl::input::no_specs", "no `.dl` spec files"),
    ];
    for (path, code_name, words) in expected {
        // Alone: exit 2 with the diagnostic.
        let (code, json) = run_json(&[path]);
        assert_eq!(code, 2, "{path}");
        let d = &file(&json, path)["diagnostics"][0];
        assert_eq!(d["code"], code_name, "{d}");
        let message = d["message"].as_str().unwrap();
        assert!(message.contains(words), "{message}");
        assert!(
            message.contains(path),
            "the message names the path: {message}"
        );
        assert!(d["help"].is_string(), "{d}");

        // Among good files: still exit 2, and the good files are checked.
        let (code, stdout, stderr) = run(&[A3, path, A2]);
        assert_eq!(code, 2, "{path}");
        assert!(stdout.contains(code_name), "{stdout}");
        assert!(
            stdout.contains("Backprop recurrent sequence [ok]"),
            "{stdout}"
        );
        assert!(stdout.contains("weight normalization) [ok]"), "{stdout}");
        let claims = claim_count(&[A3, A2]);
        let marked = marked_to_fail(&[A3, A2]);
        assert!(
            stdout.contains(&format!(
                "summary: 3 files, {claims} claims: 1 error, {claims} as expected ({} hold, {marked} refuted as marked)",
                claims - marked
            )),
            "{stdout}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

// ---------------------------------------------------------------------------
// Options

#[test]
fn dim_sets_the_largest_size_and_keeps_the_small_ones() {
    let (code, json) = run_json(&[A3, "--dim", "N=20"]);
    assert_eq!(code, 0, "{json}");
    let a3 = file(&json, A3);
    let n = |sizes: &Value| -> Vec<i64> {
        sizes
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["N"].as_i64().unwrap())
            .collect()
    };
    let file_sizes = n(&a3["sizes"]);
    assert_eq!(file_sizes.last(), Some(&20), "{file_sizes:?}");
    assert!(
        !file_sizes.contains(&8),
        "the default is replaced: {file_sizes:?}"
    );
    // The small sizes, where boundary mistakes show, stay in the sweep ...
    assert_eq!(file_sizes.first(), Some(&3), "{file_sizes:?}");
    for c in a3["claims"].as_array().unwrap() {
        assert_eq!(n(&c["sizes"]), file_sizes, "{c}");
    }
    // ... so the erratum that shows only at N = 3 is still caught.
    assert_eq!(claim_at(a3, 28)["status"], "expected-fail");
    // The literal (19) is wrong at N = 20 too: it reads g[0] there.
    let literal = claim_at(a3, 21);
    assert_eq!(literal["status"], "expected-fail");
    assert!(
        literal["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["elements"]["sizes"]["N"] == 20),
        "{literal}"
    );

    let (code, json) = run_json(&[A3, "--dim", "N = 6"]);
    assert_eq!(code, 0, "`N = 6` with spaces is accepted: {json}");
    assert_eq!(n(&file(&json, A3)["sizes"]).last(), Some(&6));
}

#[test]
fn an_unknown_dim_is_an_error_that_lists_the_sizes() {
    let (code, json) = run_json(&[A3, "--dim", "Q=3"]);
    assert_eq!(code, 2);
    let d = &file(&json, A3)["diagnostics"][0];
    assert_eq!(d["code"], "dl::analysis::unknown_dim_override");
    assert!(d["message"].as_str().unwrap().contains("`Q`"), "{d}");
    assert!(d["help"].as_str().unwrap().contains('N'), "{d}");
}

/// `dim C >= 3 = 5`: the sweep starts at 3, and `--dim C=2` is refused
/// with the smallest size in the help.
#[test]
fn a_declared_smallest_size_starts_the_sweep_and_bounds_the_overrides() {
    const SPEC: &str = "specs/softmax_cross_entropy.dl";
    let (code, json) = run_json(&[SPEC]);
    assert_eq!(code, 0, "{json}");
    let classes: Vec<i64> = file(&json, SPEC)["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["C"].as_i64().unwrap())
        .collect();
    assert_eq!(classes.first(), Some(&3), "{classes:?}");
    let (code, json) = run_json(&[SPEC, "--dim", "C=2"]);
    assert_eq!(code, 2);
    let d = &file(&json, SPEC)["diagnostics"][0];
    assert_eq!(d["code"], "dl::analysis::dim_below_minimum");
    assert!(d["help"].as_str().unwrap().contains("`--dim C=3`"), "{d}");
    let (code, json) = run_json(&[SPEC, "--dim", "C=3"]);
    assert_eq!(code, 0, "{json}");
}

#[test]
fn bad_dim_values_are_rejected_by_the_command_line() {
    for (value, words) in [
        ("N=0", "a size is at least 1"),
        ("N=-3", "a size is at least 1"),
        ("N=x", "not a whole number"),
        ("N", "expected NAME=VALUE"),
    ] {
        let (code, stdout, stderr) = run(&[A3, "--dim", value]);
        assert_eq!(code, 2, "--dim {value}");
        assert!(stdout.is_empty(), "nothing is checked: {stdout}");
        assert!(stderr.contains("--dim"), "{stderr}");
        assert!(stderr.contains(words), "--dim {value}: {stderr}");
    }
}

#[test]
fn command_line_mistakes_exit_2() {
    let (code, _, stderr) = run(&[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("PATH"), "{stderr}");
    let (code, _, stderr) = run(&[A3, "--format", "xml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("human") && stderr.contains("json"),
        "{stderr}"
    );
    let (code, _, _) = run(&[A3, "--seed", "-1"]);
    assert_eq!(code, 2);
}

#[test]
fn help_names_the_options_and_shows_examples() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for word in [
        "--seed",
        "--dim",
        "--format",
        "--show-grad",
        "Examples:",
        "dlverify specs/",
    ] {
        assert!(stdout.contains(word), "--help lacks {word}:\n{stdout}");
    }
    assert!(stdout.contains("Exit codes"), "{stdout}");
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("dlverify "), "{stdout}");
}

#[test]
fn show_grad_prints_the_derived_gradients() {
    let (code, stdout, _) = run(&[A3, "--show-grad"]);
    assert_eq!(code, 0);
    // At the largest size of the sweep, N = 8: one row of 8 for x.
    assert!(stdout.contains("dL/dx at N = 8:"), "{stdout}");
    assert!(stdout.contains("dL/da at N = 8:"), "{stdout}");
    assert!(stdout.contains("dL/db at N = 8:"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("dx[1..=8] ="))
        .unwrap_or_else(|| panic!("no dx row:\n{stdout}"));
    let values: Vec<f64> = row
        .split('=')
        .nth(2)
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(values.len(), 8, "{row}");

    // Without the flag, no tables.
    let (_, stdout, _) = run(&[A3]);
    assert!(!stdout.contains("dL/dx"), "{stdout}");

    // A matrix gets one row per i.
    let (_, stdout, _) = run(&[A2, "--show-grad"]);
    assert!(stdout.contains("dL/dw at n = 5, m = 3:"), "{stdout}");
    for i in 1..=3 {
        assert!(stdout.contains(&format!("dw[{i}, 1..=5] =")), "{stdout}");
    }

    // JSON carries the same numbers.
    let (_, json) = run_json(&[A3, "--show-grad"]);
    let derived = file(&json, A3)["derived"].as_array().unwrap();
    let x = derived.iter().find(|d| d["tensor"] == "x").unwrap();
    assert_eq!(x["values"].as_array().unwrap().len(), 8);
}

#[test]
fn verbose_shows_the_cross_checks() {
    let (code, stdout, _) = run(&[A3, "--verbose"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("finite differences"), "{stdout}");
    let (_, quiet, _) = run(&[A3]);
    assert!(!quiet.contains("finite differences"), "{quiet}");
}

#[test]
fn a_closed_pipe_is_not_a_panic() {
    // Enough output (about 1 MB of JSON) to fill the pipe long before the end.
    let mut args: Vec<&str> = vec![A3; 60];
    args.extend(["--format", "json"]);
    let mut child = command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert_eq!(first.trim_end(), "{");
    // The reader (and with it the pipe) is dropped here.
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    // Every file was checked; the exit code is still the run's.
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// Every claim judged against a tolerance carries its largest
/// difference-to-tolerance ratio in the JSON: at most 1 where it holds,
/// above 1 (or unbounded, null) where it is refuted; Taylor rates and
/// optima are judged otherwise and carry none.
#[test]
fn the_json_gives_each_claims_worst_ratio() {
    let (_, json) = run_json(&["specs/"]);
    let mut seen = std::collections::BTreeSet::new();
    for file in json["files"].as_array().unwrap() {
        for claim in file["claims"].as_array().unwrap() {
            let kind = claim["kind"].as_str().unwrap();
            let ratio = &claim["worst_ratio"];
            match (kind, claim["status"].as_str().unwrap()) {
                ("taylor" | "optimum", _) => assert!(ratio.is_null(), "{claim}"),
                (_, "pass") => {
                    let r = ratio.as_f64().unwrap_or(f64::NAN);
                    assert!((0.0..=1.0).contains(&r), "{claim}");
                    seen.insert(kind.to_string());
                }
                (_, "expected-fail") if claim["problems"].as_array().unwrap().is_empty() => {
                    assert!(ratio.is_null() || ratio.as_f64().unwrap() > 1.0, "{claim}");
                }
                _ => {}
            }
        }
    }
    let kinds: Vec<&str> = seen.iter().map(String::as_str).collect();
    assert_eq!(kinds, ["condition", "equivalence", "grad"]);
}

#[test]
fn short_format_gives_one_line_per_problem() {
    let dir = TempDir::new("short");
    let wrong = dir.write("wrong.dl", WRONG);
    let bad = dir.write("bad.dl", MALFORMED);
    let good = dir.write("good.dl", GOOD);
    let (code, stdout, _) = run(&[&good, &wrong, &bad, "--format", "short"]);
    assert_eq!(code, 2, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with(&format!(
            "{wrong}:6:1: error[dl::claim::refuted]: `grad x[j]` is refuted"
        )),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!("{bad}:3:13: error[dl::parse::syntax]: ")),
        "{stdout}"
    );
    // Nothing to say: nothing printed, exit 0.
    let (code, stdout, _) = run(&[&good, "--format", "short"]);
    assert_eq!((code, stdout.as_str()), (0, ""));
}

#[test]
fn check_parses_and_analyses_without_checking_claims() {
    let dir = TempDir::new("check");
    let wrong = dir.write("wrong.dl", WRONG);
    let bad = dir.write("bad.dl", MALFORMED);
    // A wrong claim is no problem for `check`: it checks no claim.
    let (code, stdout, _) = run(&["check", &wrong]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains(&format!("{wrong}: ok")), "{stdout}");
    assert!(stdout.ends_with("check: 1 file, no problems\n"), "{stdout}");
    let (code, stdout, _) = run(&["check", &wrong, &bad]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("dl::parse::syntax"), "{stdout}");
    assert!(
        stdout.ends_with("check: 2 files, 1 with problems\n"),
        "{stdout}"
    );
    let (_, stdout, _) = run(&["check", &bad, "--format", "short"]);
    assert!(
        stdout.starts_with(&format!("{bad}:3:13: error[dl::parse::syntax]")),
        "{stdout}"
    );
    let (code, json) = run_json(&["check", &bad]);
    assert_eq!(code, 2);
    let found = &json["files"][0]["findings"][0];
    assert_eq!(found["code"], "dl::parse::syntax");
    assert_eq!(found["range"]["start"]["line"], 3);
    assert_eq!(found["range"]["start"]["column"], 13);
    assert_eq!(json["files"][0]["claims"], serde_json::json!([]));
}

#[test]
fn a_dash_reads_the_spec_from_standard_input() {
    for (args, text, expected) in [
        (vec!["-", "--format", "short"], WRONG, 1),
        (vec!["check", "-", "--format", "short"], MALFORMED, 2),
        (vec!["-"], GOOD, 0),
        (vec!["-"], "", 2),
    ] {
        let mut child = command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(expected), "{args:?}: {stdout}");
        if expected != 0 {
            assert!(stdout.contains("<stdin>"), "{args:?}: {stdout}");
        }
    }
}

#[test]
fn explain_teaches_every_code_and_suggests_for_a_typo() {
    let (code, stdout, _) = run(&["explain", "dl::analysis::unknown_name"]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("dl::analysis::unknown_name: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("Wrong:") && stdout.contains("Right:"),
        "{stdout}"
    );
    // Without the prefix too.
    let (code, short, _) = run(&["explain", "analysis::unknown_name"]);
    assert_eq!((code, short), (0, stdout));
    let (code, _, stderr) = run(&["explain", "dl::analysis::unknown_nam"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("did you mean `dl::analysis::unknown_name`?"),
        "{stderr}"
    );
    // The list names every code once.
    let (code, list, _) = run(&["explain"]);
    assert_eq!(code, 0);
    assert_eq!(list.lines().count(), dlverify::explain::all().len());
    for e in dlverify::explain::all() {
        assert!(list.contains(e.code), "{} missing", e.code);
    }
}

#[test]
fn colour_follows_no_color_and_clicolor_force() {
    let colours = |env: &[(&str, &str)]| {
        let mut cmd = command(&[A3]);
        cmd.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        String::from_utf8(out.stdout).unwrap().contains("\x1b[")
    };
    // Piped: plain, unless forced; NO_COLOR wins over the force.
    assert!(!colours(&[]));
    assert!(colours(&[("CLICOLOR_FORCE", "1")]));
    assert!(!colours(&[("CLICOLOR_FORCE", "0")]));
    assert!(!colours(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]));
}

#[test]
fn a_dim_in_the_wrong_case_is_suggested_in_the_right_one() {
    let (code, stdout, _) = run(&[A3, "--dim", "n=6", "--format", "short"]);
    assert_eq!(code, 2, "{stdout}");
    let (_, json) = run_json(&[A3, "--dim", "n=6"]);
    let help = json["files"][0]["diagnostics"][0]["help"].as_str().unwrap();
    assert_eq!(help, "did you mean `--dim N=6`?");
}
