//! `dlverify explain`: every code the engine emits has an explanation, and
//! every explanation's examples do what they say. A wrong spec produces its
//! code; the right one checks cleanly, every claim as expected.
//!
//! The codes are read from the source at test time (`code(dl::…)` in
//! `src/**/*.rs`), plus the claim codes of [`CLAIM_CODES`], so a new
//! diagnostic without an explanation fails here.
//!
//! An example whose first line is `# dlverify FILE --dim NAME=VALUE` is
//! checked with that option, as the command line it shows would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use dlverify::explain::{self, Explanation};
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{ClaimStatus, FileOutcome};

/// The verdicts of claims, reported with codes of their own.
const CLAIM_CODES: &[&str] = &[
    "dl::claim::held_unexpectedly",
    "dl::claim::refuted",
    "dl::claim::undecided",
];

/// Codes whose examples are not specs checked as they stand, and why.
const EXEMPT: &[(&str, &str)] = &[
    (
        "dl::derive::no_output",
        "raised by `dlverify derive`, not by a check: tests/derive.rs",
    ),
    (
        "dl::derive::unsupported",
        "raised by `dlverify derive`, not by a check: tests/derive.rs",
    ),
    ("dl::input::empty", "a file, not a spec: tested below"),
    ("dl::input::no_specs", "a directory without specs"),
    ("dl::input::not_found", "a path that does not exist"),
    ("dl::input::not_utf8", "bytes that are not UTF-8"),
    ("dl::input::unreadable", "file permissions"),
    (
        "dl::eval::recording_too_large",
        "caught by the derivation, which derives by forward mode instead: tests/derivation.rs",
    ),
    ("dl::internal", "a bug in the engine; no spec produces it"),
    (
        "dl::parse::internal",
        "a bug in the parser; no spec produces it",
    ),
    (
        "dl::eval::timeout",
        "needs a slow check and a short --timeout",
    ),
    (
        "dl::analysis::optimum_point",
        "unreachable: dl::parse::optimum_arity catches the same counts first",
    ),
    (
        "dl::parse::too_deep",
        "the example abbreviates 300 levels of nesting: tested below in full",
    ),
];

fn exempt(code: &str) -> bool {
    EXEMPT.iter().any(|(c, _)| *c == code)
}

/// Every `code(dl::…)` in `src/**/*.rs`, but for the explanations'
/// own file.
fn source_codes() -> BTreeSet<String> {
    fn visit(dir: &Path, codes: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, codes);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("src/explain.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                for (at, _) in text.match_indices("code(dl::") {
                    let rest = &text[at + "code(".len()..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                        .unwrap_or(rest.len());
                    if rest[end..].starts_with(')') {
                        codes.insert(rest[..end].to_string());
                    }
                }
            }
        }
    }
    let mut codes = BTreeSet::new();
    visit(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut codes,
    );
    codes
}

fn options_for(example: &str) -> Options {
    let mut options = Options {
        timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let first = example.lines().next().unwrap_or("");
    if first.starts_with("# dlverify ") {
        let words: Vec<&str> = first.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "--dim" {
                let (name, value) = pair[1].split_once('=').unwrap();
                options
                    .dims
                    .push((name.to_string(), value.parse().unwrap()));
            }
        }
    }
    options
}

fn check(name: &str, text: &str) -> FileOutcome {
    dlverify::check_source(Source::new(name, text), &options_for(text))
}

fn code_of(d: &miette::Report) -> String {
    d.code().map(|c| c.to_string()).unwrap_or_default()
}

fn file_codes(outcome: &FileOutcome) -> Vec<String> {
    outcome.diagnostics.iter().map(code_of).collect()
}

/// The codes of the file's diagnostics and of every claim's problems.
fn all_codes(outcome: &FileOutcome) -> Vec<String> {
    let mut codes = file_codes(outcome);
    for claim in &outcome.claims {
        codes.extend(claim.problems.iter().map(|p| code_of(&p.diagnostic)));
    }
    codes
}

fn statuses(outcome: &FileOutcome) -> Vec<(String, ClaimStatus)> {
    outcome
        .claims
        .iter()
        .map(|c| (c.head.clone(), c.status()))
        .collect()
}

/// `right` checks cleanly: no diagnostics, every claim as expected.
fn check_right(e: &Explanation) -> Result<(), String> {
    let outcome = check("right.dl", e.right);
    let codes = all_codes(&outcome);
    if !outcome.diagnostics.is_empty() {
        return Err(format!(
            "{}: the right example has diagnostics {codes:?}",
            e.code
        ));
    }
    if codes.contains(&e.code.to_string()) {
        return Err(format!("{}: the right example still produces it", e.code));
    }
    if !outcome.claims.iter().all(|c| c.status().as_expected()) {
        return Err(format!(
            "{}: the right example has claims not as expected: {:?}",
            e.code,
            statuses(&outcome)
        ));
    }
    Ok(())
}

/// `wrong` produces the code: first among the file's diagnostics for
/// `dl::parse::*` and `dl::analysis::*`, anywhere for `dl::eval::*`, and as
/// the status of a claim for `dl::claim::*`.
fn check_wrong(e: &Explanation) -> Result<(), String> {
    let outcome = check("wrong.dl", e.wrong);
    let category = e.code.split("::").nth(1).unwrap_or("");
    match category {
        "parse" | "analysis" => {
            let codes = file_codes(&outcome);
            if codes.first().map(String::as_str) != Some(e.code) {
                return Err(format!(
                    "{}: the wrong example gives {codes:?} first",
                    e.code
                ));
            }
        }
        "eval" => {
            let codes = all_codes(&outcome);
            if !codes.iter().any(|c| c == e.code) {
                return Err(format!("{}: the wrong example gives {codes:?}", e.code));
            }
        }
        "claim" => {
            let want = match e.code {
                "dl::claim::refuted" => ClaimStatus::Fail,
                "dl::claim::held_unexpectedly" => ClaimStatus::UnexpectedPass,
                "dl::claim::undecided" => ClaimStatus::Error,
                other => return Err(format!("{other}: an unknown claim code")),
            };
            if !outcome.diagnostics.is_empty() {
                return Err(format!(
                    "{}: the wrong example has diagnostics {:?}",
                    e.code,
                    file_codes(&outcome)
                ));
            }
            if !outcome.claims.iter().any(|c| c.status() == want) {
                return Err(format!(
                    "{}: no claim of the wrong example is {want:?}: {:?}",
                    e.code,
                    statuses(&outcome)
                ));
            }
        }
        other => return Err(format!("{}: no rule for `{other}` codes", e.code)),
    }
    Ok(())
}

/// Runs `test` on every explanation whose code starts with one of
/// `prefixes`, and is not exempt; reports every failure at once.
fn check_examples(prefixes: &[&str]) {
    let mut failures = vec![];
    let mut checked = 0;
    for e in explain::all() {
        if exempt(e.code) || !prefixes.iter().any(|p| e.code.starts_with(p)) {
            continue;
        }
        checked += 1;
        for result in [check_wrong(e), check_right(e)] {
            if let Err(message) = result {
                failures.push(message);
            }
        }
    }
    assert!(checked > 0, "no example for {prefixes:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_emitted_code_is_explained_and_nothing_else() {
    let mut emitted = source_codes();
    assert!(emitted.len() >= 60, "found only {emitted:?}");
    emitted.extend(CLAIM_CODES.iter().map(|c| c.to_string()));
    let explained: BTreeSet<String> = explain::all().iter().map(|e| e.code.to_string()).collect();
    let missing: Vec<&String> = emitted.difference(&explained).collect();
    let stale: Vec<&String> = explained.difference(&emitted).collect();
    assert!(
        missing.is_empty(),
        "codes without an explanation: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "explanations of codes nothing emits: {stale:?}"
    );
    for (code, _) in EXEMPT {
        assert!(
            explained.contains(*code),
            "exempt code {code} is not explained"
        );
    }
}

#[test]
fn explanations_are_sorted_and_well_formed() {
    let codes: Vec<&str> = explain::all().iter().map(|e| e.code).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(codes, sorted, "not sorted, or a code twice");
    for e in explain::all() {
        assert!(!e.title.is_empty() && !e.title.contains('\n'), "{}", e.code);
        assert!(
            !e.title.ends_with('.'),
            "{}: a title is not a sentence",
            e.code
        );
        assert!(!e.text.is_empty(), "{}", e.code);
        for field in [e.text, e.wrong, e.right] {
            assert!(!field.trim().is_empty(), "{}", e.code);
            assert!(
                field.lines().all(|l| l.trim_end() == l),
                "{}: trailing white space",
                e.code
            );
        }
        assert_ne!(e.wrong, e.right, "{}", e.code);
    }
}

#[test]
fn parse_and_analysis_examples_give_their_codes() {
    check_examples(&["dl::parse::", "dl::analysis::"]);
}

#[test]
fn eval_examples_give_their_codes() {
    check_examples(&["dl::eval::"]);
}

#[test]
fn claim_examples_give_their_verdicts() {
    check_examples(&["dl::claim::"]);
}

/// The example of `dl::parse::too_deep` shows 300 levels of nesting
/// abbreviated; here they are written out.
#[test]
fn too_deep_in_full() {
    let e = explain::explanation("dl::parse::too_deep").unwrap();
    let text = format!(
        "dim N = 4\ninput x[N]\nparam a\ny[i] = {}x[i]{}\ngrad a = sum(i) g[i] * 300 * a^299 * x[i]\n",
        "a * (".repeat(300),
        ")".repeat(300)
    );
    let outcome = check("wrong.dl", &text);
    assert_eq!(file_codes(&outcome), ["dl::parse::too_deep"]);
    check_right(e).unwrap();
}

/// `dl::input::empty` comes from text, not a file, too.
#[test]
fn empty_text_is_input_empty() {
    let outcome = check("empty.dl", " \n\t\n");
    assert_eq!(file_codes(&outcome), ["dl::input::empty"]);
}

#[test]
fn render_shows_code_title_text_and_both_examples() {
    for e in explain::all() {
        let text = explain::render(e);
        assert!(text.starts_with(e.code), "{}", e.code);
        assert!(text.contains(e.title), "{}", e.code);
        for example in [e.wrong, e.right] {
            for line in example.lines().filter(|l| !l.is_empty()) {
                assert!(
                    text.contains(&format!("    {line}\n")),
                    "{}: `{line}` is not shown indented",
                    e.code
                );
            }
        }
        let wrong = text.find("\nWrong:\n").expect("a Wrong: heading");
        let right = text.find("\nRight:\n").expect("a Right: heading");
        assert!(wrong < right, "{}", e.code);
        // The text is wrapped; no line of it is longer than 80 columns.
        for line in text[..wrong].lines() {
            assert!(
                line.chars().count() <= 80 || line.starts_with(e.code),
                "{}: `{line}` is longer than 80 columns",
                e.code
            );
        }
    }
}

#[test]
fn lookup_by_code_with_or_without_the_prefix() {
    let full = explain::explanation("dl::analysis::unknown_name").unwrap();
    let short = explain::explanation("analysis::unknown_name").unwrap();
    assert!(std::ptr::eq(full, short));
    assert_eq!(full.code, "dl::analysis::unknown_name");
    assert!(explain::explanation("dl::analysis::unknown_nam").is_none());
    assert!(explain::explanation("unknown_name").is_none());
    for e in explain::all() {
        assert!(std::ptr::eq(explain::explanation(e.code).unwrap(), e));
    }
}

#[test]
fn similar_codes_for_a_typo() {
    let typo = explain::similar("dl::analysis::unknown_nam");
    assert!(typo.contains(&"dl::analysis::unknown_name"), "{typo:?}");
    assert!(typo.len() <= 3, "{typo:?}");
    assert_eq!(
        typo.first(),
        Some(&"dl::analysis::unknown_name"),
        "{typo:?}"
    );
    let short = explain::similar("eval::divison_by_zero");
    assert_eq!(
        short.first(),
        Some(&"dl::eval::division_by_zero"),
        "{short:?}"
    );
    let last = explain::similar("unknown_fucntion");
    assert_eq!(
        last.first(),
        Some(&"dl::analysis::unknown_function"),
        "{last:?}"
    );
    let part = explain::similar("unknown");
    assert!(
        part.iter().all(|c| c.contains("unknown")) && !part.is_empty(),
        "{part:?}"
    );
    assert!(explain::similar("completely_unrelated_words").is_empty());
    assert!(explain::similar("").is_empty());
}
