//! The outside corpus: backward formulas transcribed from sources outside
//! this project (PyTorch's `derivatives.yaml`, `FunctionsManual.cpp` and
//! ATen kernels, JAX's `lax.py` JVP rules, textbooks and papers), in
//! `tests/corpus/*.dl`, one file per operation or small family. Every file
//! names its sources; `tests/corpus/README.md` lists them.
//!
//! Each claim is either a correct formula, which must hold, or a planted
//! mistake next to its correct twin, marked `expect fail "mutant: …"`, which
//! must be refuted (refuted, not merely "not checked": a mutant the engine
//! cannot decide has not been caught).
//!
//! - `every_corpus_claim_comes_out_as_marked` (fast, in `cargo test`): every
//!   file at 3 seeds.
//! - `corpus_verdicts_over_200_seeds` (heavy, ignored): every file at seeds
//!   0..200, a table of the claims that did not come out as marked and the
//!   totals. Run it with
//!   `cargo test --release --test corpus -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use dlverify::analysis::Sizes;
use dlverify::check_source;
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{ClaimOutcome, FileOutcome, Verdict};

/// The fast test's seeds: the default seed and two unrelated ones. Given-value
/// files vary only in the incoming gradient `g`; drawn files in everything.
const FAST_SEEDS: [u64; 3] = [0, 7, 1234];
/// The heavy test's seeds.
const HEAVY_SEEDS: std::ops::Range<u64> = 0..200;

/// What the corpus promises (README.md): enough to be an outside check.
const MIN_FILES: usize = 40;
const MIN_CORRECT: usize = 60;
const MIN_MUTANTS: usize = 30;

// ---------------------------------------------------------------------------
// The files.

struct CorpusFile {
    /// `tests/corpus/tanh.dl`, as reported.
    name: String,
    text: String,
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every `*.dl` file of the corpus, sorted by name.
fn corpus() -> Vec<CorpusFile> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dl"))
        .collect();
    paths.sort();
    let files: Vec<CorpusFile> = paths
        .into_iter()
        .map(|p| CorpusFile {
            name: format!("tests/corpus/{}", p.file_name().unwrap().to_str().unwrap()),
            text: std::fs::read_to_string(&p).unwrap(),
        })
        .collect();
    assert!(
        files.len() >= MIN_FILES,
        "the corpus has {} files, fewer than {MIN_FILES}: is {} the right directory?",
        files.len(),
        corpus_dir().display()
    );
    files
}

fn check(file: &CorpusFile, seed: u64) -> FileOutcome {
    let options = Options {
        seed,
        ..Default::default()
    };
    check_source(Source::new(file.name.clone(), file.text.clone()), &options)
}

/// The claim heads a file writes: 1-based line of every `grad …`,
/// `check taylor …` and `claim …`, and whether an `expect fail` follows it
/// (before the next claim).
fn written_claims(text: &str) -> Vec<(usize, bool)> {
    let mut claims: Vec<(usize, bool)> = vec![];
    for (i, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("").trim_start();
        if ["grad ", "check ", "claim "]
            .iter()
            .any(|h| code.starts_with(h))
        {
            claims.push((i + 1, false));
        } else if code.starts_with("expect fail") {
            let last = claims
                .last_mut()
                .unwrap_or_else(|| panic!("line {}: `expect fail` before any claim", i + 1));
            last.1 = true;
        }
    }
    claims
}

// ---------------------------------------------------------------------------
// Verdicts.

/// A claim that did not come out as marked, at one seed.
#[derive(Debug)]
struct Miss {
    file: String,
    line: usize,
    head: String,
    mutant: bool,
    seed: u64,
    /// `refuted`, `error`, `holds`, `not checked`.
    got: &'static str,
    detail: String,
}

fn sizes_string(sizes: &Sizes) -> String {
    let s = sizes
        .named()
        .map(|(name, value)| format!("{name} = {value}"))
        .collect::<Vec<_>>()
        .join(", ");
    if s.is_empty() { "no sizes".into() } else { s }
}

/// One line of the engine's evidence for a verdict.
fn evidence(claim: &ClaimOutcome) -> String {
    match &claim.verdict {
        Verdict::Undecided(reason) => reason.clone(),
        Verdict::Holds => format!(
            "agrees with autodiff (max rel. error {:.1e})",
            claim.max_rel_error
        ),
        Verdict::Refuted => {
            if let Some(m) = claim.mismatches.first() {
                format!(
                    "{} wrong element(s), first d{}{:?} at {}: autodiff {:e}, claimed {:e} (max rel. error {:.1e})",
                    claim.mismatches.len(),
                    claim.target,
                    m.index,
                    sizes_string(&m.sizes),
                    m.expected,
                    m.actual,
                    claim.max_rel_error
                )
            } else if let Some(p) = claim.problems.first() {
                format!(
                    "undefined at {} element(s) at {}: {}",
                    p.elements.count,
                    sizes_string(&p.elements.sizes),
                    p.diagnostic
                )
            } else {
                "refuted".into()
            }
        }
    }
}

/// The claims of `file` at `seed` that did not come out as marked, and the
/// number of claims checked. A file the engine could not check (a
/// diagnostic) misses every claim it writes.
fn misses(file: &CorpusFile, seed: u64) -> (Vec<Miss>, usize) {
    let outcome = check(file, seed);
    let written = written_claims(&file.text);
    let mut out = vec![];
    if !outcome.diagnostics.is_empty() && outcome.claims.is_empty() {
        let detail = outcome
            .diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        for &(line, mutant) in &written {
            out.push(Miss {
                file: file.name.clone(),
                line,
                head: "(file not checked)".into(),
                mutant,
                seed,
                got: "not checked",
                detail: detail.clone(),
            });
        }
        return (out, written.len());
    }
    let lines: Vec<(usize, bool)> = outcome
        .claims
        .iter()
        .map(|c| (c.line, c.expect_fail.is_some()))
        .collect();
    assert_eq!(
        lines, written,
        "{}: the engine's claims (line, expect fail) differ from the claim heads the file writes",
        file.name
    );
    for claim in &outcome.claims {
        let mutant = claim.expect_fail.is_some();
        let got = match (&claim.verdict, mutant) {
            (Verdict::Holds, false) | (Verdict::Refuted, true) => continue,
            (Verdict::Holds, true) => "holds",
            (Verdict::Refuted, false) => "refuted",
            (Verdict::Undecided(_), _) => "error",
        };
        let mut detail = evidence(claim);
        if !outcome.diagnostics.is_empty() {
            detail.push_str(&format!(
                " [file diagnostics: {}]",
                outcome
                    .diagnostics
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        out.push(Miss {
            file: file.name.clone(),
            line: claim.line,
            head: claim.head.clone(),
            mutant,
            seed,
            got,
            detail,
        });
    }
    (out, outcome.claims.len())
}

/// One claim's line in the heavy test's table.
struct Row {
    head: String,
    mutant: bool,
    /// Failures by kind (`refuted`, `error`, `holds`, `not checked`).
    kinds: BTreeMap<&'static str, usize>,
    /// The first failure, described.
    first: String,
}

fn describe(m: &Miss) -> String {
    let kind = if m.mutant {
        "mutant not refuted"
    } else {
        "correct formula not passed"
    };
    format!(
        "{}:{} `{}` seed {}: {kind}: {}: {}",
        m.file, m.line, m.head, m.seed, m.got, m.detail
    )
}

// ---------------------------------------------------------------------------
// The tests.

/// The corpus is what README.md says it is: every file names its sources in
/// a leading comment, and there are enough correct formulas and mutants.
#[test]
fn the_corpus_is_sourced_and_large_enough() {
    let files = corpus();
    let (mut correct, mut mutants) = (0, 0);
    for file in &files {
        assert!(
            file.text.starts_with('#'),
            "{}: a corpus file starts with a `#` comment naming its sources",
            file.name
        );
        assert!(
            file.text.to_lowercase().contains("source"),
            "{}: the leading comment names no source",
            file.name
        );
        let claims = written_claims(&file.text);
        assert!(!claims.is_empty(), "{}: no claim", file.name);
        for (line, mutant) in claims {
            if mutant {
                mutants += 1;
                let reason = file
                    .text
                    .lines()
                    .skip(line)
                    .find(|l| l.contains("expect fail"));
                // A planted mistake says `mutant: …`; a statement the
                // sources show false (two optimizer forms that differ) says
                // why. Either must be refuted.
                assert!(
                    reason.is_some_and(
                        |r| r.contains("expect fail \"") && !r.contains("expect fail \"\"")
                    ),
                    "{}:{line}: an `expect fail` says what is wrong",
                    file.name
                );
            } else {
                correct += 1;
            }
        }
    }
    assert!(
        correct >= MIN_CORRECT,
        "{correct} correct formulas, fewer than {MIN_CORRECT}"
    );
    assert!(
        mutants >= MIN_MUTANTS,
        "{mutants} mutants, fewer than {MIN_MUTANTS}"
    );
}

/// Every claim of every corpus file, at 3 seeds, comes out as marked: correct
/// formulas hold, mutants are refuted. All misses are listed, not just the first.
#[test]
fn every_corpus_claim_comes_out_as_marked() {
    let files = corpus();
    let start = Instant::now();
    let mut all = vec![];
    let mut checked = 0;
    for file in &files {
        for seed in FAST_SEEDS {
            let (misses, claims) = misses(file, seed);
            checked += claims;
            all.extend(misses);
        }
    }
    eprintln!(
        "corpus: {} files x {} seeds, {checked} claim checks in {:.1?}",
        files.len(),
        FAST_SEEDS.len(),
        start.elapsed()
    );
    assert!(checked > 0, "no claim was checked");
    assert!(
        all.is_empty(),
        "{} of {checked} corpus claim checks did not come out as marked:\n{}",
        all.len(),
        all.iter().map(describe).collect::<Vec<_>>().join("\n")
    );
}

/// Every corpus file at seeds 0..200: for correct formulas, the (claim, seed)
/// checks not passed (refuted, error or not checked); for mutants, those not
/// refuted. Prints a table per claim and the totals; both must be 0.
#[test]
#[ignore = "heavy: every corpus file at 200 seeds; run with --release --ignored"]
fn corpus_verdicts_over_200_seeds() {
    use rayon::prelude::*;

    let files = corpus();
    let start = Instant::now();
    let jobs: Vec<(usize, u64)> = (0..files.len())
        .flat_map(|f| HEAVY_SEEDS.map(move |s| (f, s)))
        .collect();
    let results: Vec<(Vec<Miss>, usize)> = jobs
        .par_iter()
        .map(|&(f, seed)| misses(&files[f], seed))
        .collect();

    // Per claim (file, line): its row of the table.
    let mut table: BTreeMap<(String, usize), Row> = BTreeMap::new();
    let mut checks = 0;
    let (mut correct_checks, mut mutant_checks) = (0usize, 0usize);
    for file in &files {
        for (_, mutant) in written_claims(&file.text) {
            let n = HEAVY_SEEDS.count();
            if mutant {
                mutant_checks += n;
            } else {
                correct_checks += n;
            }
        }
    }
    for (misses, claims) in results {
        checks += claims;
        for m in misses {
            let row = table
                .entry((m.file.clone(), m.line))
                .or_insert_with(|| Row {
                    head: m.head.clone(),
                    mutant: m.mutant,
                    kinds: BTreeMap::new(),
                    first: describe(&m),
                });
            *row.kinds.entry(m.got).or_default() += 1;
        }
    }

    let (mut correct_failures, mut mutant_failures) = (0usize, 0usize);
    println!(
        "\n{:<38} {:>5}  {:<14} {:<8} {:>8}  kinds",
        "file", "line", "claim", "kind", "failures"
    );
    for ((file, line), row) in &table {
        let total: usize = row.kinds.values().sum();
        if row.mutant {
            mutant_failures += total;
        } else {
            correct_failures += total;
        }
        let kinds = row
            .kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{:<38} {:>5}  {:<14} {:<8} {:>8}  {kinds}",
            file,
            line,
            row.head,
            if row.mutant { "mutant" } else { "correct" },
            total
        );
    }
    println!(
        "\n{} files x {} seeds: {checks} claim checks in {:.1?}",
        files.len(),
        HEAVY_SEEDS.count(),
        start.elapsed()
    );
    println!(
        "correct formulas: {correct_failures} of {correct_checks} (claim, seed) checks not passed"
    );
    println!(
        "mutants:          {mutant_failures} of {mutant_checks} (claim, seed) checks not refuted"
    );
    if !table.is_empty() {
        println!("\nfirst evidence per claim:");
        for row in table.values() {
            println!("  {}", row.first);
        }
    }
    assert_eq!(
        correct_failures, 0,
        "correct formulas not passed at some seeds (table above)"
    );
    assert_eq!(
        mutant_failures, 0,
        "mutants not refuted at some seeds (table above)"
    );
}
