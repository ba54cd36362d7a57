//! The diagnostics corpus: every `tests/diagnostics/*.dl` is a malformed spec
//! whose first line names the code it must produce, either for the file
//!
//! ```text
//! # expect: dl::analysis::rebound_index
//! ```
//!
//! or, for a problem inside a claim's formula (the file itself is fine, the
//! claim is undefined at some elements),
//!
//! ```text
//! # expect-in-claim: dl::eval::no_case
//! ```
//!
//! A file whose whole text is white space has no room for a header and must
//! come out as `dl::input::empty`. Each file's rendered diagnostics are kept as
//! an insta snapshot named after the file, so a change in wording, labels or
//! spans shows up in review.
//!
//! A file may also carry `# known-bug: …`: it states what the engine should
//! say but does not yet. Such files are checked only by the ignored test
//! `known_bugs` (`cargo test --test diagnostics -- --ignored`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write;
use std::path::{Path, PathBuf};

use dlverify::report::{block_name, human::render_diagnostic, json};
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{ClaimStatus, FileOutcome, FileStatus};

const CORPUS: &str = "tests/diagnostics";

/// Where the expected code must appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// `outcome.diagnostics[0]`: the file could not be checked.
    File,
    /// `claims[0].problems[0]`: the first claim is undefined somewhere.
    Claim,
}

struct Case {
    /// The file name without `.dl`: also the snapshot name.
    name: String,
    /// `tests/diagnostics/<name>.dl`, as reports show it.
    path: String,
    text: String,
    place: Place,
    code: String,
    /// `# expect-help: …`: a phrase the first diagnostic's help must contain.
    help: Option<String>,
    known_bug: Option<String>,
}

fn corpus() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dl"))
        .collect();
    files.sort();
    files.iter().map(|p| case(p)).collect()
}

fn case(file: &Path) -> Case {
    let name = file.file_stem().unwrap().to_str().unwrap().to_string();
    let text = std::fs::read_to_string(file).unwrap();
    let path = format!("{CORPUS}/{name}.dl");
    let header = |key: &str| {
        text.lines()
            .take_while(|l| l.starts_with('#'))
            .find_map(|l| l.strip_prefix(key).map(|rest| rest.trim().to_string()))
    };
    let known_bug = header("# known-bug:");
    let help = header("# expect-help:");
    let (place, code) = if text.trim().is_empty() {
        (Place::File, "dl::input::empty".to_string())
    } else if let Some(code) = header("# expect:") {
        (Place::File, code)
    } else if let Some(code) = header("# expect-in-claim:") {
        (Place::Claim, code)
    } else {
        panic!("{path}: the first line must be `# expect: <code>` or `# expect-in-claim: <code>`");
    };
    Case {
        name,
        path,
        text,
        place,
        code,
        help,
        known_bug,
    }
}

fn check(case: &Case) -> FileOutcome {
    dlverify::check_source(
        Source::new(case.path.clone(), case.text.clone()),
        &Options::default(),
    )
}

fn code_of(d: &miette::Report) -> String {
    d.code().map(|c| c.to_string()).unwrap_or_default()
}

/// Asserts the expected code is where the header says; returns a message
/// instead of panicking, so that one run lists every broken file.
fn verify_code(case: &Case, outcome: &FileOutcome) -> Result<(), String> {
    let file_codes: Vec<String> = outcome.diagnostics.iter().map(code_of).collect();
    let first = match case.place {
        Place::File => {
            if outcome.status() != FileStatus::Error {
                return Err(format!(
                    "{}: expected {}, but the file was checked (status {:?})",
                    case.path,
                    case.code,
                    outcome.status()
                ));
            }
            if file_codes.first() != Some(&case.code) {
                return Err(format!(
                    "{}: expected {} first, got {file_codes:?}",
                    case.path, case.code
                ));
            }
            &outcome.diagnostics[0]
        }
        Place::Claim => {
            if !file_codes.is_empty() {
                return Err(format!(
                    "{}: expected only a claim problem {}, got file diagnostics {file_codes:?}",
                    case.path, case.code
                ));
            }
            let Some(claim) = outcome.claims.first() else {
                return Err(format!("{}: no claim was checked", case.path));
            };
            let Some(problem) = claim.problems.first() else {
                return Err(format!(
                    "{}: expected claim problem {}, got none",
                    case.path, case.code
                ));
            };
            let code = code_of(&problem.diagnostic);
            if code != case.code {
                return Err(format!(
                    "{}: expected claim problem {}, got {code}",
                    case.path, case.code
                ));
            }
            // An undefined claim is not a passing one.
            if claim.status() != ClaimStatus::Fail {
                return Err(format!(
                    "{}: a claim undefined at some elements should fail, got {:?}",
                    case.path,
                    claim.status()
                ));
            }
            &problem.diagnostic
        }
    };
    if let Some(phrase) = &case.help {
        let help = first.help().map(|h| h.to_string()).unwrap_or_default();
        if !help.contains(phrase.as_str()) {
            return Err(format!(
                "{}: expected help containing {phrase:?}, got {help:?}",
                case.path
            ));
        }
    }
    Ok(())
}

/// Every diagnostic of the outcome, rendered without colour at a fixed width;
/// a claim's problems are headed by the claim and the elements they affect.
fn rendered(outcome: &FileOutcome) -> String {
    let mut out = String::new();
    for d in &outcome.diagnostics {
        out.push_str(&render_diagnostic(d));
    }
    for claim in &outcome.claims {
        for problem in &claim.problems {
            let elements: Vec<String> = problem
                .elements
                .blocks
                .iter()
                .map(|b| block_name(&claim.target, b))
                .collect();
            let _ = writeln!(
                out,
                "-- `{}` (line {}) is undefined at {}: {}",
                claim.head,
                claim.line,
                problem.elements.sizes,
                elements.join(", ")
            );
            out.push_str(&render_diagnostic(&problem.diagnostic));
        }
    }
    out
}

fn snapshot(case: &Case, outcome: &FileOutcome) {
    let text = rendered(outcome);
    insta::with_settings!({
        snapshot_path => "snapshots/diagnostics",
        prepend_module_to_snapshot => false,
        description => case.path.clone(),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(case.name.clone(), text);
    });
}

#[test]
fn corpus_gives_the_expected_codes() {
    let cases = corpus();
    let mut failures = vec![];
    let mut codes = std::collections::BTreeSet::new();
    for case in cases.iter().filter(|c| c.known_bug.is_none()) {
        let outcome = check(case);
        match verify_code(case, &outcome) {
            Ok(()) => {
                codes.insert(case.code.clone());
                snapshot(case, &outcome);
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 20, "only {} corpus files", cases.len());
    assert!(
        codes.len() >= 15,
        "only {} distinct codes: {codes:?}",
        codes.len()
    );
}

/// Specs on which the engine is known to say the wrong thing. Run with
/// `--ignored`; when one passes, drop its `# known-bug` line.
#[test]
#[ignore = "documents engine bugs not yet fixed"]
fn known_bugs() {
    let mut failures = vec![];
    for case in corpus().iter().filter(|c| c.known_bug.is_some()) {
        let outcome = check(case);
        if let Err(e) = verify_code(case, &outcome) {
            failures.push(format!(
                "{e}\n  ({})",
                case.known_bug.as_deref().unwrap_or("")
            ));
        } else {
            snapshot(case, &outcome);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_diagnostic_has_a_code_a_label_and_help() {
    for case in corpus().iter().filter(|c| c.known_bug.is_none()) {
        let outcome = check(case);
        let all = outcome.diagnostics.iter().chain(
            outcome
                .claims
                .iter()
                .flat_map(|c| c.problems.iter().map(|p| &p.diagnostic)),
        );
        for d in all {
            let value = json::diagnostic(d, outcome.source.as_ref());
            assert!(
                value["code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("dl::")),
                "{}: {value}",
                case.path
            );
            // A syntax error has help only for the common slips.
            if value["code"] != "dl::parse::syntax" {
                assert!(value["help"].is_string(), "{}: no help: {value}", case.path);
            }
            // Only an empty file has nothing to point at.
            if case.code != "dl::input::empty" {
                assert!(
                    value["line"].is_u64() && value["column"].is_u64(),
                    "{}: no position: {value}",
                    case.path
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Positions: the primary label's 1-based line and column, as editors get them.

/// The first diagnostic (of the file, else of the first claim) as JSON.
fn first_json(name: &str, text: &str) -> serde_json::Value {
    let outcome = dlverify::check_source(Source::new(name, text), &Options::default());
    let d = outcome
        .diagnostics
        .first()
        .or_else(|| {
            outcome
                .claims
                .first()
                .and_then(|c| c.problems.first())
                .map(|p| &p.diagnostic)
        })
        .expect("a diagnostic");
    json::diagnostic(d, outcome.source.as_ref())
}

fn assert_at(value: &serde_json::Value, code: &str, line: u64, column: u64) {
    assert_eq!(value["code"], code, "{value}");
    assert_eq!(
        (value["line"].as_u64(), value["column"].as_u64()),
        (Some(line), Some(column)),
        "{value}"
    );
}

#[test]
fn position_of_a_syntax_error() {
    let v = first_json("p.dl", "dim N = 4\ninput x[N]\nlet c = 2 * )\n");
    assert_at(&v, "dl::parse::syntax", 3, 13);
}

#[test]
fn position_counts_characters_not_bytes() {
    // `é` is two bytes; the column is in characters.
    let v = first_json(
        "p.dl",
        "exercise \"é\"\ndim N = 4\ninput x[N]\ny[i] = x[i] + é[i]\n",
    );
    assert_eq!(v["code"], "dl::analysis::unknown_name", "{v}");
    assert_eq!(v["line"], 4, "{v}");
    assert_eq!(v["column"], 15, "{v}");
}

#[test]
fn position_of_a_rebound_index_and_both_labels() {
    let text = "dim n = 2, m = 2\ninput x[n]\nparam w[m, n]\ny[i] = sum(k) w[i,k] * x[k]\n\
                grad w[i,j] = sum(i) g[i] * x[j]\n";
    let v = first_json("p.dl", text);
    // `sum(i)`: the inner `i` is at line 5, column 19.
    assert_at(&v, "dl::analysis::rebound_index", 5, 19);
    let labels = v["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 2, "{v}");
    let outer = labels
        .iter()
        .find(|l| l["message"] == "first bound here")
        .expect("an outer label");
    assert_eq!((&outer["line"], &outer["column"]), (&5.into(), &8.into()));
}

#[test]
fn position_of_an_out_of_range_access_in_the_layer() {
    let text = "dim N = 4\ninput x[N]\nparam a\ny[i] = a * x[i+1]  for i in 1..=N\n";
    let v = first_json("p.dl", text);
    assert_at(&v, "dl::eval::index_out_of_range", 4, 12);
    assert_eq!(v["labels"][0]["end_column"], 18, "{v}");
}

#[test]
fn position_of_a_problem_inside_a_claim() {
    let text = "dim N = 4\ninput x[N]\nparam a\ny[i] = a * x[i]\ngrad x[j] = a * g[j-1]\n";
    let v = first_json("p.dl", text);
    assert_at(&v, "dl::eval::index_out_of_range", 5, 17);
}

#[test]
fn position_at_the_end_of_the_file() {
    // Missing operand at the end: the label sits right after the last token,
    // not past trailing comments and blank lines.
    let v = first_json(
        "p.dl",
        "dim N = 4\ninput x[N]\ny[i] = x[i] +\n\n# trailing\n\n",
    );
    assert_at(&v, "dl::parse::syntax", 3, 14);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("found the end of the file"),
        "{v}"
    );
}

// ---------------------------------------------------------------------------
// Correct specs the engine cannot check yet (see `known_bugs`).

fn assert_checks_cleanly(text: &str) {
    let outcome = dlverify::check_source(Source::new("ok.dl", text), &Options::default());
    let rendered = rendered(&outcome);
    assert!(outcome.diagnostics.is_empty(), "{rendered}");
    assert!(
        outcome
            .claims
            .iter()
            .all(|c| c.status() == ClaimStatus::Pass),
        "{rendered}"
    );
}

/// A list as long as the default size is right, but the sweep also tries
/// smaller sizes, where it is not.
#[test]
fn a_given_list_fixes_its_size() {
    assert_checks_cleanly(
        "dim N = 2\ninput v[N] = [1, 2]\nparam a\ny[i] = a * v[i]\ngrad a = sum(i) g[i] * v[i]\n",
    );
}

/// An explicit reduction range needs N >= 2, but the sweep starts at N = 1.
#[test]
fn an_explicit_range_bounds_the_sweep() {
    assert_checks_cleanly(
        "dim N = 3\ninput x[N]\nparam a\ny[i] = a * x[i] + sum(k in 1..=2) x[k]\n\
         grad a = sum(i) g[i] * x[i]\n",
    );
}
