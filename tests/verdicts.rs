//! Verdicts on formulas the engine was not written alongside (issue 9):
//! rounding in cancelling terms and exact zeros are told from mistakes by
//! recomputing in double-double; kinks and ties are judged against the
//! derivatives valid there; and the evidence says what was compared with
//! what. Each right claim must hold, each wrong twin be refuted, at several
//! seeds, and the typed evidence must say why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::render;
use dlverify::check_source;
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{
    ClaimOutcome, ClaimStatus, FileOutcome, HullDirection, MismatchBasis,
};

const SEEDS: [u64; 5] = [0, 1, 2, 7, 42];

fn check(spec: &str, seed: u64) -> FileOutcome {
    let options = Options {
        seed,
        ..Default::default()
    };
    let outcome = check_source(Source::new("verdict.dl", spec), &options);
    assert!(
        outcome.diagnostics.is_empty(),
        "{:?}\n{spec}",
        outcome.diagnostics
    );
    outcome
}

/// The claim on `line`, after asserting it came out as marked.
fn claim_at(outcome: &FileOutcome, line: usize, seed: u64) -> &ClaimOutcome {
    let claim = outcome
        .claims
        .iter()
        .find(|c| c.line == line)
        .unwrap_or_else(|| panic!("no claim on line {line}"));
    assert!(
        claim.status().as_expected(),
        "seed {seed}, line {line}: {:?}\n{}",
        claim.status(),
        render(outcome)
    );
    claim
}

/// Layer norm over two elements with eps = 1e-5: the gradient (about 5e-5)
/// is a difference of terms of size 1/σ, which the f64 bound, scaled to the
/// gradient, cannot allow for. Double-double shows it is rounding; the
/// forgotten mean term is still refuted, with evidence.
#[test]
fn cancellation_in_layer_norm_is_rounding_and_a_forgotten_term_is_not() {
    let spec = "dim n = 2
input x[n]
hyper eps = 1e-5
let mu = sum(k) x[k] / n
let var = sum(k) (x[k] - mu)^2 / n
let s = sqrt(var + eps)
let xh[i] = (x[i] - mu) / s
y[i] = xh[i]
grad x[j] = (g[j] - sum(i) g[i] / n - xh[j] * sum(i) g[i] * xh[i] / n) / s
grad x[j] = (g[j] - xh[j] * sum(i) g[i] * xh[i] / n) / s
  expect fail \"the mean term forgotten\"
";
    let mut rounding_seen = false;
    for seed in SEEDS {
        let outcome = check(spec, seed);
        let right = claim_at(&outcome, 9, seed);
        assert_eq!(right.status(), ClaimStatus::Pass);
        assert!(
            right.worst_ratio.is_some_and(|r| r <= 1.0),
            "seed {seed}: {}",
            right.worst_ratio.unwrap_or(f64::NAN)
        );
        if let Some(r) = &right.rounding {
            rounding_seen = true;
            assert!(r.largest_difference > r.bound, "seed {seed}: {r:?}");
            assert!(
                r.precise_difference < r.largest_difference * 1e-8,
                "seed {seed}: the difference must shrink in double-double: {r:?}"
            );
        }
        let wrong = claim_at(&outcome, 10, seed);
        assert_eq!(wrong.status(), ClaimStatus::ExpectedFail);
        assert!(wrong.worst_ratio.is_some_and(|r| r > 1.0));
        let m = wrong.mismatches.first().expect("a wrong element is listed");
        assert_eq!(m.difference, (m.expected - m.actual).abs());
        match &m.judged {
            MismatchBasis::Persists {
                tolerance,
                precise_difference,
                ..
            } => {
                assert!(m.difference > *tolerance);
                // A mistake does not shrink with precision.
                assert!(
                    (precise_difference - m.difference).abs() <= 1e-9 * m.difference,
                    "seed {seed}: {m:?}"
                );
            }
            other => panic!("seed {seed}: judged {other:?}"),
        }
    }
    assert!(
        rounding_seen,
        "at some seed the cancellation exceeds the f64 bound (it does at nearly all)"
    );
}

/// Exact zeros and saturation: log-softmax over one element (true gradient
/// 0), `x / sqrt(x^2)` (a sign, gradient 0), tanh's `1 - y^2` at x = 3.
#[test]
fn exact_zeros_and_saturation_hold_and_their_mutants_do_not() {
    let specs = [
        "dim n = 1
input x[n]
let lse = log(sum(k) exp(x[k]))
y[i] = x[i] - lse
grad x[j] = g[j] - exp(x[j] - lse) * sum(i) g[i]
grad x[j] = g[j] - exp(x[j] - lse) * g[j] * 2
  expect fail \"doubled\"
",
        "input x
loss L = x / sqrt(x^2)
grad x = 0
grad x = 1 / sqrt(x^2)
  expect fail \"the quotient rule's second term forgotten\"
",
        "input x[2] = [3, -3]
let t[i] = tanh(x[i])
y[i] = t[i]
grad x[j] = g[j] * (1 - t[j]^2)
grad x[j] = g[j] * (1 - t[j])
  expect fail \"1 - y for 1 - y^2\"
",
    ];
    for spec in specs {
        for seed in SEEDS {
            let outcome = check(spec, seed);
            for claim in &outcome.claims {
                assert!(
                    claim.status().as_expected(),
                    "seed {seed}: {spec}\n{}",
                    render(&outcome)
                );
            }
        }
    }
}

/// A tie: `max(k) x[k]` at x = [1, 3, 3, 2]. The evenly split gradient
/// holds, each element named as a kink with its range [0, 1]; the whole
/// gradient to every maximizer is refuted as no valid gradient (its sum is
/// 2 where every valid one sums to 1); a wrong element is refuted as
/// outside its range ([0, 0]: x[1] is no maximum).
#[test]
fn ties_are_judged_against_the_hull_of_their_candidates() {
    let spec = "input x[4] = [1, 3, 3, 2]
let M = max(k) x[k]
loss L = max(k) x[k]
grad x[j] = [x[j] == M] / sum(k) [x[k] == M]
grad x[j] = [x[j] == M] * [j == 3]
grad x[j] = [x[j] == M]
  expect fail \"every maximizer given the whole gradient\"
grad x[j] = [j == 1]
  expect fail \"the gradient to an element that is not a maximum\"
";
    for seed in SEEDS {
        let outcome = check(spec, seed);
        let split = claim_at(&outcome, 4, seed);
        assert_eq!(split.status(), ClaimStatus::Pass);
        let named: Vec<Vec<i64>> = split.kinks.iter().map(|k| k.index.clone()).collect();
        assert_eq!(named, vec![vec![2], vec![3]], "seed {seed}");
        for k in &split.kinks {
            assert_eq!((k.lo, k.hi, k.claimed), (0.0, 1.0, 0.5), "seed {seed}");
        }
        // The other maximizer alone is as valid as autodiff's pick.
        assert_eq!(claim_at(&outcome, 5, seed).status(), ClaimStatus::Pass);
        let all = claim_at(&outcome, 6, seed);
        let v = all.hull_violations.first().expect("a hull violation");
        assert_eq!(v.direction, HullDirection::AllOnes);
        assert_eq!((v.claimed, v.lo, v.hi), (2.0, 1.0, 1.0));
        let off = claim_at(&outcome, 8, seed);
        assert!(
            off.mismatches
                .iter()
                .any(|m| m.index == vec![1]
                    && matches!(m.judged, MismatchBasis::OutsideKink { lo, hi, .. } if lo == 0.0 && hi == 0.0)),
            "seed {seed}: {}",
            render(&outcome)
        );
    }
}

/// Clamp at its bounds: inclusive and strict masks are both valid at the
/// kinks; forgetting the upper bound is refuted where x is above it.
#[test]
fn clamp_at_its_bounds_accepts_either_mask() {
    let spec = "input x[5] = [-1, -0.5, 0, 0.5, 1]
y[i] = min(max(x[i], -0.5), 0.5)
grad x[j] = g[j] * [x[j] >= -0.5 and x[j] <= 0.5]
grad x[j] = g[j] * [x[j] > -0.5 and x[j] < 0.5]
grad x[j] = g[j] * [x[j] > -0.5]
  expect fail \"the upper bound forgotten\"
";
    for seed in SEEDS {
        let outcome = check(spec, seed);
        for line in [3, 4, 5] {
            claim_at(&outcome, line, seed);
        }
        let wrong = claim_at(&outcome, 5, seed);
        let wrong_elements: Vec<Vec<i64>> =
            wrong.mismatches.iter().map(|m| m.index.clone()).collect();
        assert_eq!(wrong_elements, vec![vec![5]], "seed {seed}");
    }
}

/// The report a person reads: the kink and rounding notes, and a refuted
/// element with both values, the difference and what it was judged against.
#[test]
fn the_evidence_reads_as_it_should() {
    let spec = "input x[4] = [1, 3, 3, 2]
let M = max(k) x[k]
loss L = max(k) x[k]
grad x[j] = [x[j] == M] / sum(k) [x[k] == M]
grad x[j] = [x[j] == M]
  expect fail \"every maximizer given the whole gradient\"
grad x[j] = [j == 1]
  expect fail \"the gradient to an element that is not a maximum\"
";
    let outcome = check(spec, 0);
    insta::assert_snapshot!("tie_evidence", render(&outcome));
}

/// The norm of a zero vector: sqrt at 0, where autodiff is undefined. Each
/// element is judged against the range between its one-sided derivatives,
/// [-1, 1]: PyTorch's 0 holds, 2 is refuted with that range as evidence.
/// (sqrt at 0 is no branch point, so each element is judged alone: the
/// whole claim is not held to the unit ball.)
#[test]
fn the_norm_of_a_zero_vector_is_judged_from_either_side() {
    let spec = "input x[3] = [0, 0, 0]
loss L = sqrt(sum(k) x[k]^2)
grad x[j] = 0
grad x[j] = 2 * [j == 1]
  expect fail \"outside every valid derivative\"
";
    for seed in SEEDS {
        let outcome = check(spec, seed);
        let right = claim_at(&outcome, 3, seed);
        assert_eq!(right.status(), ClaimStatus::Pass);
        assert_eq!(right.kinks.len(), 3, "seed {seed}");
        for k in &right.kinks {
            assert!(k.autodiff.is_nan(), "seed {seed}: {k:?}");
            assert!(
                (k.lo + 1.0).abs() < 1e-6 && (k.hi - 1.0).abs() < 1e-6,
                "{k:?}"
            );
        }
        let wrong = claim_at(&outcome, 4, seed);
        let m = wrong.mismatches.first().expect("dx[1] is refuted");
        assert_eq!(m.index, vec![1]);
        assert!(
            matches!(m.judged, MismatchBasis::OutsideKink { .. }),
            "{m:?}"
        );
    }
}

/// The textbook gradient of the norm, x[j] / L, is 0/0 at the zero
/// vector, where L has no derivative. Nothing there can be checked, so the
/// claim is undecided, with the element and the reason, and never passed
/// on the elements that were left (none).
#[test]
fn a_claim_undefined_where_l_has_a_kink_is_not_passed() {
    let spec = "input x[3] = [0, 0, 0]
loss L = sqrt(sum(k) x[k]^2)
grad x[j] = x[j] / L
";
    for seed in SEEDS {
        let outcome = check(spec, seed);
        let claim = outcome.claims.first().expect("one claim");
        assert_eq!(claim.status(), ClaimStatus::Error, "seed {seed}");
        let dlverify::verify::outcome::Verdict::Undecided(why) = &claim.verdict else {
            panic!("seed {seed}: {:?}", claim.verdict);
        };
        assert!(
            why.contains("not differentiable at dx[1]") && why.contains("divides by zero"),
            "{why}"
        );
    }
}

/// L = log(1 + u²) with u = w·z³ near 1e-9: 1 + u² rounds to 1 in f32
/// and f64 alike, so L is exactly 0 at every finite-difference step and
/// the measured noise |L₃₂ − L₆₄| is 0 too. The rounding bound from the
/// magnitudes of L's intermediate values (the 1 inside the log) keeps the
/// guard from calling autodiff wrong: the right claims hold, the wrong one
/// is refuted, none is left undecided (found by the random layers).
#[test]
fn a_loss_flat_in_both_precisions_does_not_leave_the_guard_in_doubt() {
    let spec = "input z = 0.001
input w = 1.5
loss L = log(1 + (w * z^3)^2)
grad z = 2 * (w * z^3) * w * 3 * z^2 / (1 + (w * z^3)^2)
grad z = 2 * (w * z^3) * w * 2 * z^2
  expect fail \"a factor 2 for 3\"
";
    for seed in SEEDS {
        let outcome = check(spec, seed);
        assert_eq!(claim_at(&outcome, 4, seed).status(), ClaimStatus::Pass);
        let wrong = claim_at(&outcome, 5, seed);
        assert!(!wrong.mismatches.is_empty(), "seed {seed}");
    }
}

/// A real difference a hundred million times smaller than the rounding
/// noise of f64 cancellation: double-double keeps it, but by less than a
/// mistake of that size could be told from what rounding leaves. It is left
/// undecided, never passed; a residue 10⁶ times larger is refuted.
#[test]
fn a_difference_hidden_under_cancellation_noise_is_not_passed() {
    let spec = |residue: &str| {
        format!(
            "input a = 1e8
input bb in (-1, 1)
let sq = (a + bb)^2 - a^2 - 2 * a * bb - bb^2
claim sq == 0
claim sq == {residue}
  expect fail \"a residue that is not there\"
"
        )
    };
    for seed in SEEDS {
        let hidden = check(&spec("1e-9"), seed);
        assert_eq!(hidden.claims[0].status(), ClaimStatus::Pass, "seed {seed}");
        assert_ne!(
            hidden.claims[1].status(),
            ClaimStatus::UnexpectedPass,
            "seed {seed}: {}",
            render(&hidden)
        );
        let visible = check(&spec("1e-3"), seed);
        assert_eq!(
            visible.claims[1].status(),
            ClaimStatus::ExpectedFail,
            "seed {seed}"
        );
    }
}
