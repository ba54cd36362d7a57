//! Differential testing of `dlverify derive`: random well-formed layers and
//! losses (`common::random_layer`) are derived, and the engine checks every
//! derived claim against autodiff at every size of the sweep, as it checks
//! a hand-written one. A derived claim that does not hold is a bug of
//! `derive`; a spec that does not analyse is a bug of the generator; a
//! construct `derive` does not cover is refused, which is counted apart
//! and reported by its reason, never as a pass.
//!
//! Each layer has its own seed, which makes both its text and its values,
//! so a failure is reproduced from the seed alone: the message prints the
//! spec and the `dlverify derive --seed` command that checks it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::random_layer::random_spec;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use rayon::prelude::*;

use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::ClaimStatus;
use dlverify::{Derivation, derive_source};

/// Layers in `cargo test`: about 1 s in a release build on 2 cores.
const IN_SUITE: u64 = 500;

/// The ignored run's count unless `DERIVE_RANDOM_LAYERS` says otherwise.
const LARGE_RUN: u64 = 100_000;

/// The ignored run starts past the in-suite seeds, so it adds layers
/// rather than repeating them (`DERIVE_RANDOM_FIRST` moves it).
const LARGE_RUN_FIRST_SEED: u64 = 1_000_000;

/// At least this share of the layers must be derived: a generator that
/// mostly makes what `derive` refuses tests nothing.
const LEAST_DERIVED_SHARE: f64 = 0.7;

/// Failures shown in a panic message, in full, unless `DERIVE_RANDOM_SHOW`
/// says otherwise.
const SHOWN: u64 = 5;

/// What came of one random layer.
enum Verdict {
    /// Derived, and every derived claim holds.
    Derived { claims: usize },
    /// Refused, with the first line of the diagnostic.
    Refused(String),
    /// The generated spec does not analyse: the generator's bug.
    Invalid(String),
    /// A derived claim does not hold, or the check reports a diagnostic,
    /// or derive panics: derive's bug. Its kind (a diagnostic's code, a
    /// claim's status) and the evidence.
    Failed(String, String),
}

fn spec_name(seed: u64) -> String {
    format!("random_{seed}.dl")
}

/// The layer of `seed`, derived and checked with `seed`'s values.
fn judge(seed: u64) -> Verdict {
    let text = random_spec(seed);
    let options = Options {
        seed,
        ..Options::default()
    };
    let source = Source::new(spec_name(seed), text.clone());
    let derivation = match catch_unwind(AssertUnwindSafe(|| derive_source(source, &options))) {
        Ok(d) => d,
        Err(_) => return Verdict::Failed("panic".into(), "derive or its check panicked".into()),
    };
    if derivation.holds() {
        return Verdict::Derived {
            claims: derivation.derived_claims().len(),
        };
    }
    let ours = derivation.derived_claims();
    match &derivation {
        Derivation::Invalid(outcome) => Verdict::Invalid(common::render(outcome)),
        Derivation::Refused(_, e) => {
            let code = miette::Diagnostic::code(e)
                .map(|c| c.to_string())
                .unwrap_or_default();
            Verdict::Refused(format!("{code}: {e}"))
        }
        Derivation::Derived { derived, check, .. } => {
            let failed: Vec<String> = ours
                .iter()
                .filter(|c| c.status() != ClaimStatus::Pass)
                .map(|c| format!("line {}: {:?}", c.line, c.verdict))
                .collect();
            let derived: Vec<&str> = derived.lines.iter().map(|l| l.text.as_str()).collect();
            let kind = match (
                check.diagnostics.first(),
                ours.iter().find(|c| c.status() != ClaimStatus::Pass),
            ) {
                (Some(d), _) => d.code().map_or_else(|| d.to_string(), |c| c.to_string()),
                (None, Some(c)) => format!("a derived claim: {}", c.status().as_str()),
                (None, None) => "no derived claim".into(),
            };
            Verdict::Failed(
                kind,
                format!(
                    "{} derived claims, not passing: {failed:#?}\ndiagnostics: {:?}\n--- derived ---\n{}\n--- report ---\n{}",
                    ours.len(),
                    check.diagnostics,
                    derived.join("\n"),
                    common::render(check)
                ),
            )
        }
    }
}

/// The verdicts of a run, counted.
#[derive(Default)]
struct Tally {
    layers: u64,
    derived: u64,
    claims: usize,
    refused: BTreeMap<String, u64>,
    failed_by_kind: BTreeMap<String, u64>,
    /// (seed, what went wrong), in seed order.
    invalid: Vec<(u64, String)>,
    failed: Vec<(u64, String)>,
}

impl Tally {
    fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    fn summary(&self, seconds: f64) -> String {
        let mut out = format!(
            "derive_random: {} layers: {} derived ({} claims, all pass), {} refused, {} failed, {} invalid, in {seconds:.1} s",
            self.layers,
            self.derived,
            self.claims,
            self.refused_total(),
            self.failed.len(),
            self.invalid.len()
        );
        for (reason, n) in &self.refused {
            out += &format!("\n  refused {n:>6}: {reason}");
        }
        for (kind, n) in &self.failed_by_kind {
            out += &format!("\n  FAILED  {n:>6}: {kind}");
        }
        out
    }

    /// The first few failures in full: seed, command, spec, evidence.
    fn failures(&self) -> String {
        let shown = usize::try_from(env_u64("DERIVE_RANDOM_SHOW", SHOWN)).unwrap_or(usize::MAX);
        let show = |kind: &str, list: &[(u64, String)]| -> String {
            list.iter()
                .take(shown)
                .map(|(seed, why)| {
                    format!(
                        "==== {kind}: seed {seed}; reproduce with the spec below saved as {} and\n     dlverify derive --seed {seed} {}\n--- spec ---\n{}--- why ---\n{why}\n",
                        spec_name(*seed),
                        spec_name(*seed),
                        random_spec(*seed)
                    )
                })
                .collect()
        };
        let seeds = |list: &[(u64, String)]| -> Vec<u64> { list.iter().map(|(s, _)| *s).collect() };
        format!(
            "failed seeds {:?}\ninvalid seeds {:?}\n{}{}",
            seeds(&self.failed),
            seeds(&self.invalid),
            show("FAILED (a bug of derive)", &self.failed),
            show("INVALID (a bug of the generator)", &self.invalid)
        )
    }
}

/// Derives and checks the layers of seeds `first..first + count`, spread
/// over the cores; the tally is in seed order whatever the threads do.
fn run(first: u64, count: u64) -> Tally {
    let verdicts: Vec<(u64, Verdict)> = (first..first + count)
        .into_par_iter()
        .map(|seed| (seed, judge(seed)))
        .collect();
    let mut tally = Tally {
        layers: count,
        ..Tally::default()
    };
    for (seed, verdict) in verdicts {
        match verdict {
            Verdict::Derived { claims } => {
                tally.derived += 1;
                tally.claims += claims;
            }
            Verdict::Refused(reason) => *tally.refused.entry(reason).or_default() += 1,
            Verdict::Invalid(why) => tally.invalid.push((seed, why)),
            Verdict::Failed(kind, why) => {
                *tally.failed_by_kind.entry(kind).or_default() += 1;
                tally.failed.push((seed, why));
            }
        }
    }
    tally
}

/// Runs, prints the summary, and holds the run to zero failures, zero
/// invalid specs and a derived share of at least [`LEAST_DERIVED_SHARE`].
fn run_and_check(first: u64, count: u64) {
    let start = std::time::Instant::now();
    let tally = run(first, count);
    let summary = tally.summary(start.elapsed().as_secs_f64());
    eprintln!("{summary}");
    dump_failures(&tally);
    assert!(
        tally.failed.is_empty() && tally.invalid.is_empty(),
        "{summary}\n{}",
        tally.failures()
    );
    #[allow(clippy::cast_precision_loss)]
    let share = tally.derived as f64 / tally.layers as f64;
    assert!(
        share >= LEAST_DERIVED_SHARE,
        "only {:.0} % of the layers were derived\n{summary}",
        share * 100.0
    );
}

/// With `DERIVE_RANDOM_DUMP=dir`, every failed or invalid spec is written
/// there as `random_<seed>.dl`, to run `dlverify derive --seed <seed>` on.
fn dump_failures(tally: &Tally) {
    let Ok(dir) = std::env::var("DERIVE_RANDOM_DUMP") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    for (seed, _) in tally.failed.iter().chain(&tally.invalid) {
        let path = std::path::Path::new(&dir).join(spec_name(*seed));
        std::fs::write(path, random_spec(*seed)).unwrap();
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a count"))
    })
}

#[test]
fn random_layers_derive_to_claims_that_hold() {
    run_and_check(0, IN_SUITE);
}

/// `cargo test --release --test derive_random -- --ignored --nocapture`;
/// `DERIVE_RANDOM_LAYERS=5000` for a shorter run.
#[test]
#[ignore = "100 000 layers: minutes on a few cores"]
fn a_hundred_thousand_random_layers_derive_to_claims_that_hold() {
    let count = env_u64("DERIVE_RANDOM_LAYERS", LARGE_RUN);
    let first = env_u64("DERIVE_RANDOM_FIRST", LARGE_RUN_FIRST_SEED);
    run_and_check(first, count);
}

/// A seed makes one spec, the same every time: what a failure message
/// prints is what failed.
#[test]
fn a_seed_makes_the_same_spec() {
    for seed in [0, 1, 77, 123_456] {
        assert_eq!(random_spec(seed), random_spec(seed));
    }
    assert_ne!(random_spec(1), random_spec(2));
}

/// `DERIVE_RANDOM_SEED=s cargo test --test derive_random -- --ignored
/// print_one --nocapture` prints the spec of seed s, to save and run.
#[test]
#[ignore = "a tool: prints the spec of DERIVE_RANDOM_SEED"]
fn print_one() {
    let seed = env_u64("DERIVE_RANDOM_SEED", 0);
    println!("{}", random_spec(seed));
}
