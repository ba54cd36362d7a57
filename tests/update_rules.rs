//! Update-rule claims (`claim A == B over T steps`): the handout's
//! Assignment 5 and its errata, the further specs, and planted mistakes in
//! the mappings, over many seeds, with gradient streams and with a loss.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dlverify::check_source;
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{ClaimOutcome, FileOutcome, Verdict};

const SEEDS: std::ops::Range<u64> = 0..20;

fn check(name: &str, text: &str, seed: u64) -> FileOutcome {
    let outcome = check_source(
        Source::new(name, text),
        &Options {
            seed,
            ..Options::default()
        },
    );
    let diagnostics: Vec<String> = outcome
        .diagnostics
        .iter()
        .map(|d| format!("{d:?}"))
        .collect();
    assert!(diagnostics.is_empty(), "{name}: {diagnostics:#?}");
    outcome
}

fn claim<'a>(outcome: &'a FileOutcome, head: &str) -> &'a ClaimOutcome {
    outcome
        .claims
        .iter()
        .find(|c| c.head.starts_with(head))
        .unwrap_or_else(|| panic!("no claim `{head}` in {}", outcome.path))
}

/// The first step at which the trajectories part, at the largest size.
fn first_parting(c: &ClaimOutcome) -> Option<u64> {
    c.details["trajectories"]
        .as_array()
        .and_then(|runs| runs.last())
        .and_then(|run| run["first_parting_step"].as_u64())
}

/// A5 with momentum rule A, and a rule B written from `b_body`.
fn a5_with(b_body: &str, stream: &str) -> String {
    format!(
        "dim n = 4
input c[n]
param theta[n]
hyper alpha = 0.05, mu = 0.9, lambda = 0.1
loss L = sum(k) 0.5 * k * (theta[k] - c[k])^2
{stream}
optimizer A {{
  state v[n] = 0
  v[k]     = mu * v[k] + gt[k]
  theta[k] = theta[k] - alpha * (v[k] + lambda * theta[k])
}}
optimizer B {{
{b_body}
}}
claim A == B over 100 steps
"
    )
}

const DRAWN: &str = "stream gt[n] ~ normal(0, 1)";
const FROM_LOSS: &str = "stream gt[n] = grad theta + normal(0, 0.1)";

/// The corrected mapping with its exact initial state.
const B_EXACT: &str = "  let mu2     = mu * (1 - alpha * lambda)
  let lambda2 = (1 - mu) * lambda
  state v[k in n] = lambda * theta[k] / (1 - alpha * lambda)
  v[k]     = mu2 * v[k] + gt[k] + lambda2 * theta[k]
  theta[k] = theta[k] - alpha * v[k]";

fn verdicts(text: &str, seed: u64) -> (Verdict, Option<u64>) {
    let outcome = check("planted.dl", text, seed);
    let c = &outcome.claims[0];
    (c.verdict.clone(), first_parting(c))
}

#[test]
fn the_handout_spec_comes_out_as_marked_for_every_seed() {
    let text = include_str!("../specs/a5_sgd_l2_momentum.dl");
    for seed in SEEDS {
        let outcome = check("a5.dl", text, seed);
        for c in &outcome.claims {
            assert!(
                c.status().as_expected(),
                "seed {seed}: {} is {:?}",
                c.head,
                c.verdict
            );
        }
        // The literal mapping and the zero start part at the first step;
        // the corrected one never does.
        assert_eq!(
            first_parting(claim(&outcome, "claim A == B_handout")),
            Some(1)
        );
        assert_eq!(
            first_parting(claim(&outcome, "claim A == B_zero_start")),
            Some(1)
        );
        assert_eq!(claim(&outcome, "claim A == B over").verdict, Verdict::Holds);
    }
}

#[test]
fn the_corrected_mapping_holds_with_drawn_and_loss_gradients() {
    for stream in [DRAWN, FROM_LOSS] {
        for seed in SEEDS {
            assert_eq!(
                verdicts(&a5_with(B_EXACT, stream), seed),
                (Verdict::Holds, None),
                "{stream}, seed {seed}"
            );
        }
    }
}

#[test]
fn the_zero_start_gap_decays_but_never_closes() {
    // With both velocities at 0, the gap follows the homogeneous recurrence
    // (roots mu and 1 - alpha lambda): it shrinks, yet stays far above
    // rounding, and the plot series shows both.
    let b = B_EXACT.replace(
        "state v[k in n] = lambda * theta[k] / (1 - alpha * lambda)",
        "state v[n] = 0",
    );
    let outcome = check("zero_start.dl", &a5_with(&b, DRAWN), 3);
    let c = &outcome.claims[0];
    assert_eq!(c.verdict, Verdict::Refuted);
    let run = c.details["trajectories"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let deviations: Vec<f64> = run["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    let tolerances: Vec<f64> = run["tolerances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    assert_eq!(deviations.len(), 100);
    assert!(deviations.iter().zip(&tolerances).all(|(d, t)| d > t));
    let plot = &c.plots[0];
    assert!(plot.log_y);
    assert_eq!(plot.series[0].points.len(), 100);
}

#[test]
fn planted_mistakes_in_the_mapping_are_caught() {
    let planted = [
        // A sign flipped in the parameter step.
        (
            "sign",
            B_EXACT.replace("theta[k] - alpha * v[k]", "theta[k] + alpha * v[k]"),
        ),
        // The factor (1 - alpha lambda) dropped from the momentum.
        (
            "missing factor",
            B_EXACT.replace("mu * (1 - alpha * lambda)", "mu"),
        ),
        // The handout's lambda' = (1 + mu) lambda.
        (
            "handout lambda",
            B_EXACT.replace("(1 - mu) * lambda", "(1 + mu) * lambda"),
        ),
        // The initial state without its 1 / (1 - alpha lambda).
        (
            "initial state",
            B_EXACT.replace(
                "lambda * theta[k] / (1 - alpha * lambda)",
                "lambda * theta[k]",
            ),
        ),
        // The two updates in the wrong order: theta moves with last step's v.
        (
            "swapped order",
            B_EXACT.replace(
                "  v[k]     = mu2 * v[k] + gt[k] + lambda2 * theta[k]
  theta[k] = theta[k] - alpha * v[k]",
                "  theta[k] = theta[k] - alpha * v[k]
  v[k]     = mu2 * v[k] + gt[k] + lambda2 * theta[k]",
            ),
        ),
    ];
    for (mistake, b) in &planted {
        assert_ne!(b, B_EXACT, "{mistake}: the replacement did not apply");
        for stream in [DRAWN, FROM_LOSS] {
            for seed in SEEDS {
                let (verdict, first) = verdicts(&a5_with(b, stream), seed);
                assert_eq!(
                    verdict,
                    Verdict::Refuted,
                    "{mistake}, {stream}, seed {seed}"
                );
                assert_eq!(first, Some(1), "{mistake}, {stream}, seed {seed}");
            }
        }
    }
}

#[test]
fn the_further_specs_come_out_as_marked() {
    for (name, text) in [
        (
            "sgd_weight_decay.dl",
            include_str!("../specs/sgd_weight_decay.dl"),
        ),
        (
            "adam_weight_decay.dl",
            include_str!("../specs/adam_weight_decay.dl"),
        ),
    ] {
        for seed in 0..5 {
            let outcome = check(name, text, seed);
            assert!(!outcome.claims.is_empty());
            for c in &outcome.claims {
                assert!(
                    c.status().as_expected(),
                    "{name}, seed {seed}: {} is {:?}",
                    c.head,
                    c.verdict
                );
            }
        }
    }
}

#[test]
fn a_claim_past_the_step_limit_is_not_checked() {
    let outcome = check_source(
        Source::new("limit.dl", a5_with(B_EXACT, DRAWN)),
        &Options {
            max_steps: 50,
            ..Options::default()
        },
    );
    let c = &outcome.claims[0];
    match &c.verdict {
        Verdict::Undecided(why) => assert!(why.contains("--max-steps"), "{why}"),
        other => panic!("expected not checked, got {other:?}"),
    }
}

#[test]
fn same_seed_same_trajectories() {
    let text = a5_with(B_EXACT, FROM_LOSS);
    let run = |seed| {
        let outcome = check("seeded.dl", &text, seed);
        outcome.claims[0].details["trajectories"].to_string()
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

/// Rule A adds `alpha * big` to its step and takes it away again: the same
/// rule as `plain SGD` in exact arithmetic, but in f64 the 1e7-sized terms
/// round by about 1e-9 per step, five orders of magnitude above 64·ε·t·S
/// for parameters of order 1.
fn cancelling_pair(second_body: &str, stream: &str) -> String {
    format!(
        "dim n = 4
input c[n]
param theta[n]
hyper alpha = 0.1, big = 1e8
loss L = sum(k) 0.5 * k * (theta[k] - c[k])^2
{stream}
optimizer A {{
  theta[k] = theta[k] - alpha * (gt[k] + big) + alpha * big
}}
optimizer B {{
  {second_body}
}}
claim A == B over 60 steps
"
    )
}

const PLAIN_SGD: &str = "theta[k] = theta[k] - alpha * gt[k]";

fn runs(c: &ClaimOutcome) -> Vec<serde_json::Value> {
    c.details["trajectories"].as_array().unwrap().clone()
}

#[test]
fn rounding_beyond_the_f64_bound_is_confirmed_in_double_double() {
    for stream in [DRAWN, FROM_LOSS] {
        for seed in 0..5 {
            let outcome = check("cancelling.dl", &cancelling_pair(PLAIN_SGD, stream), seed);
            let c = &outcome.claims[0];
            assert_eq!(
                c.verdict,
                Verdict::Holds,
                "{stream}, seed {seed}: {:?}",
                c.notes
            );
            assert!(
                c.notes[0].contains("confirmed in double-double"),
                "{:?}",
                c.notes
            );
            for run in runs(c) {
                // The f64 run does part: the old fixed bound would refute.
                assert_eq!(run["f64_first_parting_step"].as_u64(), Some(1), "{run}");
                assert!(run["first_parting_step"].is_null(), "{run}");
                let precise = &run["double_double"];
                assert_eq!(precise["rounding_confirmed"], true, "{run}");
                assert_eq!(precise["steps_run"].as_u64(), Some(60));
                let largest = precise["largest_deviation"].as_f64().unwrap();
                let f64_largest = run["largest_deviation"].as_f64().unwrap();
                assert!(f64_largest > 1e-11, "{f64_largest}");
                assert!(largest < 1e-20, "{largest}");
            }
            // The plot shows both runs.
            let labels: Vec<&str> = c.plots[0].series.iter().map(|s| s.label.as_str()).collect();
            assert!(labels.contains(&"deviation in double-double"), "{labels:?}");
        }
    }
}

#[test]
fn a_coefficient_off_by_one_part_in_a_billion_is_still_refuted() {
    let off = "theta[k] = theta[k] - alpha * (1 + 1e-9) * gt[k]";
    for stream in [DRAWN, FROM_LOSS] {
        for seed in 0..5 {
            // Against the cancelling rule, whose f64 rounding (~1e-9) is
            // larger than the difference (~1e-10): double-double sees it.
            let outcome = check("off.dl", &cancelling_pair(off, stream), seed);
            let c = &outcome.claims[0];
            assert_eq!(c.verdict, Verdict::Refuted, "{stream}, seed {seed}");
            assert_eq!(first_parting(c), Some(1));
            let run = runs(c).pop().unwrap();
            assert_eq!(run["double_double"]["rounding_confirmed"], false);
            // It stops where the rules part.
            assert_eq!(run["double_double"]["steps_run"].as_u64(), Some(1));
            assert!(
                c.notes[0].contains("in double-double they still differ"),
                "{:?}",
                c.notes
            );
            // Against plain SGD it is refuted too.
            let plain = cancelling_pair(off, stream).replace(
                "theta[k] - alpha * (gt[k] + big) + alpha * big",
                "theta[k] - alpha * gt[k]",
            );
            let (verdict, first) = verdicts(&plain, seed);
            assert_eq!((verdict, first), (Verdict::Refuted, Some(1)));
        }
    }
}
