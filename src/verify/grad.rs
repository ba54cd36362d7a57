//! `grad T[idx] = …` claims: the closed form against the autodiff gradient,
//! element by element, guarded by finite differences and a directional check.
//!
//! Tolerances follow from the rounding each method implies, never from
//! tuning:
//! - closed form vs autodiff: both are exact formulas evaluated in f64, so
//!   they may differ by rounding only. A sum of n terms of magnitude ≤ S
//!   carries at most about n·ε·S of rounding (Higham's γₙ bound), so the
//!   tolerance is `ROUNDING_ULPS · ε · n · S`, where S is the largest
//!   magnitude in the tensor (derived or claimed) and n the number of terms
//!   the largest sum at this size can have.
//! - finite differences: the central difference with step h has truncation
//!   error O(h²), estimated by Richardson from steps h and 2h, and rounding
//!   error about ε·|L|/h; the tolerance is their sum with a safety factor.

use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::context::{SizeContext, value_at};
use super::derivation::Derivation;
use super::kinks::{KinkGradients, ValidRange, one_sided_directional};
use super::outcome::*;
use super::{ClaimCheck, ROUNDING_SURE, Shrinkage, shrinkage, tolerance_ratio};
use crate::analysis::Sizes;
use crate::analysis::program::{GradClaim, TensorId};
use crate::eval::double_double::Dd;
use crate::eval::replay::Cones;
use crate::eval::{EvalError, Everywhere, Frame, precise_directional_derivative};

mod first_round;
use first_round::probed_tensors;
pub use first_round::{FirstRound, first_round};

/// Units of rounding per term allowed between two exact formulas.
const ROUNDING_ULPS: f64 = 64.0;
/// Safety factor on the finite-difference error estimate.
const FD_SAFETY: f64 = 8.0;
/// Random directions along which a claim at a kink is held to the hull of
/// the valid gradients (besides the all-ones direction).
const HULL_DIRECTIONS: usize = 8;
/// Flagged elements recomputed in double-double per batch.
const PRECISE_BATCH: usize = 64;
/// Sampled elements of a tensor from which its finite differences replay
/// cones rather than whole runs.
const CONES_FROM: usize = 4;
/// Mismatching elements listed per claim (all are counted and grouped).
const MISMATCHES_LISTED: usize = 20;

/// A `grad` claim's findings, gathered over the sizes of the sweep.
pub struct GradCheck<'p> {
    claim: &'p GradClaim,
    outcome: ClaimOutcome,
    fd: CheckTally,
    directional: CheckTally,
    /// Reverse mode against forward mode, over the sizes checked.
    derivation: CheckTally,
    undecided: Option<String>,
}

#[derive(Debug, Default)]
struct CheckTally {
    compared: usize,
    failed: usize,
    worst_ratio: f64,
    skipped: Option<String>,
    /// Where the first disagreement was, with both values.
    first_failure: Option<String>,
}

impl<'p> GradCheck<'p> {
    pub fn new(claim: &'p GradClaim, outcome: ClaimOutcome) -> Self {
        Self {
            claim,
            outcome,
            fd: CheckTally::default(),
            directional: CheckTally::default(),
            derivation: CheckTally::default(),
            undecided: None,
        }
    }
}

impl ClaimCheck for GradCheck<'_> {
    fn check_at(&mut self, cx: &SizeContext<'_>) {
        self.check(cx);
    }

    fn undecided(&mut self, why: String) {
        self.undecided.get_or_insert(why);
    }

    /// Sets the verdict from what the sizes found.
    fn finish(mut self: Box<Self>) -> ClaimOutcome {
        // Where forward mode derived alone there was nothing to compare;
        // the routes say so.
        self.outcome.cross_checks = (self.derivation.compared > 0)
            .then(|| {
                tally_check(
                    "derivation",
                    &self.derivation,
                    "reverse-mode gradient against forward-mode dual numbers, per element or along random u",
                )
            })
            .into_iter()
            .collect();
        self.outcome.cross_checks.extend([
            tally_check(
                "finite differences",
                &self.fd,
                "autodiff against central differences of L, per element and along random u",
            ),
            tally_check(
                "directional",
                &self.directional,
                "⟨claimed gradient, u⟩ against central differences of L along random u",
            ),
        ]);
        // A difference from autodiff refutes only while finite differences
        // vouch for autodiff; a claim undefined somewhere refutes alone.
        let differs = !self.outcome.mismatches.is_empty()
            || self.outcome.unconfirmed > 0
            || !self.outcome.hull_violations.is_empty();
        let refuted = !self.outcome.problems.is_empty() || (differs && self.fd.failed == 0);
        self.outcome.verdict = if refuted {
            Verdict::Refuted
        } else if let Some(why) = self.undecided.take() {
            Verdict::Undecided(why)
        } else if self.fd.failed > 0 {
            Verdict::Undecided(
                "autodiff and finite differences disagree: the forward computation may be non-smooth at the drawn values".to_string(),
            )
        } else if let Some(why) = self.fd.skipped.take() {
            // An unguarded agreement is no verdict: the guard must run.
            Verdict::Undecided(why)
        } else if self.directional.failed > 0 {
            Verdict::Undecided(
                "the claim matches autodiff, but not finite differences along a random direction"
                    .to_string(),
            )
        } else {
            Verdict::Holds
        };
        self.outcome
    }
}

impl GradCheck<'_> {
    /// Checks the claim at one size.
    fn check(&mut self, cx: &SizeContext<'_>) {
        let claim = self.claim;
        let sizes = cx.instance.sizes.clone();
        let target = claim.target;
        let grid = cx.instance.tensor_grid(target).clone();
        let derivation = match cx.derivation() {
            Ok(d) => d,
            Err(e) => {
                self.undecided(e.to_string());
                return;
            }
        };
        let Some(Some(derived)) = derivation.gradient.get(target.0) else {
            return;
        };
        self.outcome.sizes.push(sizes.clone());
        self.note_derivation(derivation, &sizes);
        let derived = derived.as_slice_memory_order().unwrap_or(&[]);
        // The claimed value at every element, NaN where it is undefined
        // (a defined value is finite); failures are evidence, not aborts.
        let Everywhere {
            values: mut claimed,
            errors,
        } = cx
            .evaluation
            .body_everywhere(&claim.body, &grid, &claim.var_names, claim.slots);
        // Out of time is no evidence against the claim.
        if let Some((_, e)) = errors.iter().find(|(_, e)| e.is_timeout()) {
            self.undecided(e.to_string());
            return;
        }
        let mut failures: Vec<(Vec<i64>, EvalError)> = vec![];
        let mut frame = Frame::new(&claim.var_names, claim.slots);
        let mut errors = errors.into_iter().peekable();
        for (k, v) in claimed.iter_mut().enumerate() {
            if let Some((_, e)) = errors.next_if(|(at, _)| *at == k) {
                failures.push((grid.point(k), *e));
                *v = f64::NAN;
            } else if !v.is_finite() {
                let point = grid.point(k);
                frame.set_point(&point);
                failures.push((point, non_finite(cx, claim, *v, &frame)));
                *v = f64::NAN;
            }
        }
        // Where the true gradient is itself infinite or NaN, a claim that
        // is undefined there (`1 / (2 sqrt(t))` at t = 0) is no evidence
        // against it: that element is not checkable, below.
        let (failures, uncheckable): (Vec<_>, Vec<_>) =
            failures.into_iter().partition(|(point, _)| {
                grid.offset(point)
                    .and_then(|k| derived.get(k))
                    .is_none_or(|v| v.is_finite())
            });
        record_problems(&mut self.outcome, cx, &sizes, failures);
        // A NaN compares as equal to nothing and as unequal to nothing: no
        // claim can be judged against it, unless L has a kink there whose
        // valid derivatives are known from either side (the norm of a zero
        // vector: sqrt at 0).
        if let Some(k) = derived.iter().enumerate().position(|(k, v)| {
            !v.is_finite()
                && cx
                    .valid_range(target, k)
                    .is_none_or(|r| !(r.lo.is_finite() && r.hi.is_finite()))
        }) {
            let name = &cx.program.tensors[target.0].name;
            let block: Vec<(i64, i64)> = grid.point(k).iter().map(|&i| (i, i)).collect();
            self.undecided(format!(
                "autodiff gives {} for {} at {}: L is not differentiable there",
                crate::eval::format_value(derived[k]),
                crate::report::block_name(name, &block),
                sizes
            ));
            return;
        }
        // Not checkable is not checked: where L has a kink whose valid
        // derivatives are known, a claim undefined there gives no value (L
        // has none), so nothing there supports it either (the spread of two
        // equal values: (x[j] - mx) / sd is 0/0).
        if let Some((point, e)) = uncheckable.first() {
            let name = &cx.program.tensors[target.0].name;
            let block: Vec<(i64, i64)> = point.iter().map(|&i| (i, i)).collect();
            self.undecided(format!(
                "L is not differentiable at {} at {}, and the claim is undefined there: {e}",
                crate::report::block_name(name, &block),
                sizes
            ));
        }
        // Each element's f64 bound at its own scale: a tensor's largest
        // element says nothing of the rounding of its smallest (a factor 2
        // wrong on an element of 1e-10 beside one of 1e6 hid under the
        // largest's bound). Cancellation the bound does not allow for is
        // then told from a mistake in double-double, below.
        let tolerances: Vec<f64> = derived
            .iter()
            .zip(&claimed)
            .map(|(&ad, &cf)| {
                let ad = if ad.is_finite() { ad.abs() } else { 0.0 };
                let scale = if cf.is_nan() { ad } else { ad.max(cf.abs()) };
                // Below the normal range f64 rounds by an absolute unit,
                // 2⁻¹⁰⁷⁴, not relative to the value: a gradient that decays
                // to subnormals (a long recurrence) keeps a few of them.
                ROUNDING_ULPS * cx.terms * (f64::EPSILON * scale + super::SUBNORMAL_UNIT)
            })
            .collect();
        let kinks = cx.kink_gradients();
        // The cheap test: within the f64 rounding bound of the gradient's
        // own scale. What it flags may still be rounding in cancelling
        // terms, or a kink: judged one by one below.
        let mut flagged: Vec<usize> = vec![];
        for (k, (&ad, &cf)) in derived.iter().zip(&claimed).enumerate() {
            if cf.is_nan() {
                continue;
            }
            let tolerance = tolerances[k];
            let error = (ad - cf).abs();
            // NaN (autodiff at a kink it cannot differentiate) is flagged
            // too, and so is a claim outside the valid derivatives at a
            // kink even where it agrees with autodiff's pick.
            let outside_kink = kinks.is_some()
                && cx
                    .valid_range(target, k)
                    .is_some_and(|r| r.exact && r.distance(cf) > tolerance);
            if error.is_nan() || error > tolerance || outside_kink {
                flagged.push(k);
            } else {
                self.note_error(ad, cf);
                self.note_ratio(error, tolerance);
            }
        }
        let judged = match judge_flagged(cx, claim, derived, &claimed, &flagged, &tolerances) {
            Ok(judged) => judged,
            Err(why) => {
                self.undecided(why);
                return;
            }
        };
        let mut mismatched: Vec<Vec<i64>> = vec![];
        // What rounding may account for at each element, for the sums below.
        let mut allowance = tolerances.clone();
        for (&k, judgement) in flagged.iter().zip(judged) {
            let (ad, cf) = (derived[k], claimed[k]);
            let index = grid.point(k);
            match judgement {
                Judgement::Rounding { precise, allowed } => {
                    allowance[k] += (ad - cf).abs();
                    self.note_ratio(precise, allowed);
                    let rounding = self.outcome.rounding.get_or_insert_default();
                    rounding.elements += 1;
                    if (ad - cf).abs() > rounding.largest_difference {
                        rounding.largest_difference = (ad - cf).abs();
                        rounding.bound = tolerances[k];
                        rounding.precise_difference = precise;
                    }
                }
                Judgement::AtKink(range, rounding) => {
                    allowance[k] += rounding;
                    self.note_ratio(range.distance(cf), range.slack + allowance[k]);
                    self.outcome.kinks.push(KinkElement {
                        sizes: sizes.clone(),
                        index,
                        claimed: cf,
                        autodiff: ad,
                        lo: range.lo,
                        hi: range.hi,
                    });
                }
                Judgement::Unresolved(range) => {
                    let name = &cx.program.tensors[target.0].name;
                    let block: Vec<(i64, i64)> = index.iter().map(|&i| (i, i)).collect();
                    self.undecided(unresolved_reason(
                        &format!("at {}", crate::report::block_name(name, &block)),
                        cf,
                        (range.lo, range.hi),
                        range.outer,
                        &sizes,
                    ));
                }
                Judgement::Unclear { precise } => {
                    let name = &cx.program.tensors[target.0].name;
                    let block: Vec<(i64, i64)> = index.iter().map(|&i| (i, i)).collect();
                    self.undecided(format!(
                        "{} at {sizes}: autodiff {}, claimed {}, differ by {} in f64 and still by {} in double-double: less than rounding would leave, more than a mistake would lose; no verdict",
                        crate::report::block_name(name, &block),
                        crate::eval::format_value(ad),
                        crate::eval::format_value(cf),
                        crate::eval::format_value((ad - cf).abs()),
                        crate::eval::format_value(precise),
                    ));
                }
                Judgement::Unconfirmed => {
                    self.outcome.unconfirmed += 1;
                    mismatched.push(index);
                }
                Judgement::Mistake(judged) => {
                    self.note_error(ad, cf);
                    match &judged {
                        MismatchBasis::Persists {
                            precise_difference,
                            tolerance,
                            ..
                        } => self.note_ratio(*precise_difference, *tolerance),
                        &MismatchBasis::OutsideKink { lo, hi, slack } => {
                            self.note_ratio(ValidRange::between(lo, hi, 0.0).distance(cf), slack);
                        }
                    }
                    if self.outcome.mismatches.len() < MISMATCHES_LISTED {
                        self.outcome.mismatches.push(Mismatch {
                            sizes: sizes.clone(),
                            index: index.clone(),
                            expected: ad,
                            actual: cf,
                            difference: (ad - cf).abs(),
                            judged,
                        });
                    }
                    mismatched.push(index);
                }
            }
        }
        record_mismatches(&mut self.outcome, &sizes, &mismatched);
        let probe = cx.probe(target);
        self.fd.merge(&probe.guard);
        if claimed.iter().all(|v| !v.is_nan()) {
            if cx.forward_kinks().met == 0 {
                self.directional((&claimed, derived), (&tolerances, &allowance), &probe, cx);
            } else {
                // Across a kink a central difference measures no particular
                // valid gradient; the claim is held to their hull instead.
                self.directional.skipped = Some(
                    "L has a kink at these values: the claim was judged against its valid gradients"
                        .to_string(),
                );
                if let Some(valid) = cx.kink_gradients() {
                    self.hull_test(&claimed, &allowance, &valid, cx);
                }
            }
        } else {
            self.directional.skipped =
                Some("the claimed formula is undefined at some elements".to_string());
        }
    }

    /// Which route derived the gradient at this size, and how far its two
    /// derivations were apart.
    fn note_derivation(&mut self, derivation: &Derivation, sizes: &Sizes) {
        let a = &derivation.agreement;
        self.derivation.compared += a.compared;
        self.derivation.failed += a.failed;
        self.derivation.worst_ratio = self.derivation.worst_ratio.max(a.worst_ratio);
        self.outcome.routes.push(RouteAt {
            sizes: sizes.clone(),
            route: derivation.route,
            compared: a.compared,
        });
    }

    /// Keeps the largest absolute and relative error of an element judged
    /// by its f64 values (those found to be rounding or at a kink are
    /// reported apart).
    fn note_error(&mut self, ad: f64, cf: f64) {
        let error = (ad - cf).abs();
        self.outcome.max_abs_error = self.outcome.max_abs_error.max(error);
        let magnitude = ad.abs().max(cf.abs());
        if magnitude > 0.0 {
            self.outcome.max_rel_error = self.outcome.max_rel_error.max(error / magnitude);
        }
    }

    /// Keeps the largest error-to-tolerance ratio seen (an exact zero
    /// against a zero tolerance is no miss at all).
    fn note_ratio(&mut self, error: f64, tolerance: f64) {
        let ratio = tolerance_ratio(error, tolerance);
        self.outcome.worst_ratio = Some(self.outcome.worst_ratio.unwrap_or(0.0).max(ratio));
    }

    /// At a kink, the claim must be a combination of the valid gradients:
    /// its inner product with every direction within the range theirs
    /// take. Along the all-ones direction and random ones, then along a
    /// direction sought to separate it, this catches a claim each of whose
    /// elements is valid alone but not all at once (every tied maximum
    /// given the whole gradient).
    fn hull_test(
        &mut self,
        claimed: &[f64],
        allowance: &[f64],
        valid: &KinkGradients,
        cx: &SizeContext<'_>,
    ) {
        let target = self.claim.target;
        let mut rng = ChaCha8Rng::seed_from_u64(crate::eval::stream_seed(
            cx.options.seed,
            "hull",
            cx.instance.sizes.values(),
        ));
        let directions = std::iter::once((HullDirection::AllOnes, vec![1.0; claimed.len()])).chain(
            (0..HULL_DIRECTIONS).map(|k| {
                (
                    HullDirection::Random(k),
                    unit_direction(&mut rng, claimed.len()),
                )
            }),
        );
        for (direction, u) in directions {
            let Some(support) = valid.support(target, &u) else {
                continue;
            };
            let along = Along::new(claimed, allowance, &u);
            if along.distance(support.inner) <= along.tolerance {
                self.note_ratio(along.distance(support.inner), along.tolerance);
                continue;
            }
            match support.outer {
                Some(outer) if along.distance(outer) > along.tolerance => {
                    self.violation(direction, &along, outer, cx);
                }
                outer => self.undecided(unresolved_reason(
                    &format!("along {}", direction_name(direction)),
                    along.claimed,
                    support.inner,
                    outer,
                    &cx.instance.sizes,
                )),
            }
            return;
        }
        // The random directions can miss a claim that no combination of
        // valid gradients gives (each element valid alone, the whole not):
        // seek a separating direction outright, from the inner set, then
        // from the outer one.
        let Some(from_inner) = valid.separating_direction(target, claimed, allowance, false) else {
            return;
        };
        let unit = |r: Vec<f64>| {
            let norm = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            r.into_iter().map(|x| x / norm).collect::<Vec<f64>>()
        };
        if let Some(from_outer) = valid.separating_direction(target, claimed, allowance, true) {
            let u = unit(from_outer);
            if let Some(outer) = valid.support(target, &u).and_then(|s| s.outer) {
                self.violation(
                    HullDirection::Separating,
                    &Along::new(claimed, allowance, &u),
                    outer,
                    cx,
                );
                return;
            }
        }
        let u = unit(from_inner);
        if let Some(support) = valid.support(target, &u) {
            self.undecided(unresolved_reason(
                "along a direction separating it from the branches found",
                Along::new(claimed, allowance, &u).claimed,
                support.inner,
                support.outer,
                &cx.instance.sizes,
            ));
        }
    }

    /// Records a claim outside every valid gradient along a direction.
    fn violation(
        &mut self,
        direction: HullDirection,
        along: &Along,
        (lo, hi): (f64, f64),
        cx: &SizeContext<'_>,
    ) {
        self.note_ratio(along.distance((lo, hi)), along.tolerance);
        self.outcome.hull_violations.push(HullViolation {
            sizes: cx.instance.sizes.clone(),
            direction,
            claimed: along.claimed,
            lo,
            hi,
            tolerance: along.tolerance,
        });
    }

    /// `tolerance` is the f64 bound per element, `allowance` what rounding
    /// may account for at each element (more where double-double showed it).
    fn directional(
        &mut self,
        (claimed, derived): (&[f64], &[f64]),
        (tolerances, allowance): (&[f64], &[f64]),
        probe: &TensorProbe,
        cx: &SizeContext<'_>,
    ) {
        let Some(d) = &probe.direction else {
            self.directional.skipped = Some("L is undefined along the direction".to_string());
            return;
        };
        let inner: f64 = claimed.iter().zip(&d.u).map(|(c, u)| c * u).sum();
        let found_rounding: f64 = allowance
            .iter()
            .zip(tolerances)
            .zip(&d.u)
            .map(|((a, t), u)| (a - t) * u.abs())
            .sum();
        let tolerance = tolerances.iter().copied().fold(0.0, f64::max);
        let mut tolerance = d.tolerance + FD_SAFETY * (tolerance + found_rounding);
        // Where autodiff passed its own guard along u, the claim can differ
        // from the central difference by no more than autodiff's f64 value
        // did, plus autodiff's rounding along u, plus what the claim's
        // elements were allowed from autodiff: at a degenerate size (L
        // constant, every term rounding) that, not the central
        // difference's estimate, is the honest bound.
        if let Some(exact) = d.exact.filter(|_| d.guard_passed) {
            let autodiff_inner: f64 = derived.iter().zip(&d.u).map(|(a, u)| a * u).sum();
            let bound = (d.d1 - exact).abs()
                + (exact - autodiff_inner).abs()
                + allowance
                    .iter()
                    .zip(&d.u)
                    .map(|(a, u)| a * u.abs())
                    .sum::<f64>();
            tolerance = tolerance.max(bound);
        }
        // At a kink any value between the one-sided directional
        // derivatives is valid; the central difference measures their mean.
        let (error, tolerance) = match &d.sides {
            Some(sides) => (sides.distance(inner), tolerance + sides.slack),
            None => ((d.d1 - inner).abs(), tolerance),
        };
        self.directional.record(error, tolerance, || {
            format!("a random direction at {}", cx.instance.sizes)
        });
    }
}

/// A claim seen along a direction u: ⟨claim, u⟩, and what rounding may move
/// it by (each element's allowance, twice: the valid gradients are f64
/// computations too).
struct Along {
    claimed: f64,
    tolerance: f64,
}

impl Along {
    fn new(claimed: &[f64], allowance: &[f64], u: &[f64]) -> Self {
        Self {
            claimed: claimed.iter().zip(u).map(|(c, u)| c * u).sum(),
            tolerance: 2.0
                * allowance
                    .iter()
                    .zip(u)
                    .map(|(a, u)| a * u.abs())
                    .sum::<f64>(),
        }
    }

    /// How far the claim lies outside `lo..=hi` along u.
    fn distance(&self, (lo, hi): (f64, f64)) -> f64 {
        ValidRange::between(lo, hi, 0.0).distance(self.claimed)
    }
}

/// Why a claim at coupled kinks is left undecided: outside what was found
/// valid, not outside what could be.
fn unresolved_reason(
    place: &str,
    claimed: f64,
    found: (f64, f64),
    outer: Option<(f64, f64)>,
    sizes: &Sizes,
) -> String {
    let f = crate::eval::format_value;
    let bound = match outer {
        Some((lo, hi)) => format!(
            "inside [{}, {}], what any combination of their branches gives",
            f(lo),
            f(hi)
        ),
        None => "and their branches are too many to combine".to_string(),
    };
    format!(
        "L has coupled kinks at {sizes}: {place} the claim gives {}, outside [{}, {}], what the branches found at points near them give, {bound}",
        f(claimed),
        f(found.0),
        f(found.1),
    )
}

/// `the all-ones direction`, `random direction 3`.
fn direction_name(direction: HullDirection) -> String {
    match direction {
        HullDirection::AllOnes => "the all-ones direction".to_string(),
        HullDirection::Random(k) => format!("random direction {}", k + 1),
        HullDirection::Separating => "a separating direction".to_string(),
    }
}

/// How one element that the f64 test flagged is judged.
enum Judgement {
    /// The difference shrank with the unit roundoff: rounding.
    Rounding {
        precise: f64,
        allowed: f64,
    },
    /// L has a kink there, and the claim lies between its one-sided derivatives.
    /// With the rounding measured on both sides (f64 against double-double).
    AtKink(ValidRange, f64),
    Mistake(MismatchBasis),
    /// At coupled kinks: outside the gradients found valid, inside those
    /// every combination of branches gives: not decidable.
    Unresolved(ValidRange),
    /// The difference shrank in double-double, but not as far as rounding
    /// would: neither rounding nor a mistake for certain.
    Unclear {
        precise: f64,
    },
    /// Beyond the f64 bound, and not recomputed: another element of the
    /// claim at this size was already confirmed as a mistake.
    Unconfirmed,
}

/// Judges the elements the f64 test flagged: both sides are recomputed in
/// double-double arithmetic. Rounding shrinks about 2⁵⁰-fold with it, a
/// mistake not at all; what persists is compared with the one-sided
/// derivatives where L has a kink. `Err` where the recomputation fails.
fn judge_flagged(
    cx: &SizeContext<'_>,
    claim: &GradClaim,
    derived: &[f64],
    claimed: &[f64],
    flagged: &[usize],
    tolerances: &[f64],
) -> Result<Vec<Judgement>, String> {
    if flagged.is_empty() {
        return Ok(vec![]);
    }
    let target = claim.target;
    let grid = cx.instance.tensor_grid(target);
    let lifted: Vec<ArrayD<Dd>> = cx.values.iter().map(|a| a.mapv(Dd::from_f64)).collect();
    let mut evaluation = cx.instance.evaluation(&lifted);
    evaluation
        .compute_defs(false)
        .map_err(|e| format!("double-double evaluation failed: {e}"))?;
    let mut frame = Frame::new(&claim.var_names, claim.slots);
    let mut judged: Vec<Option<Judgement>> = flagged.iter().map(|_| None).collect();
    // Spread over the tensor first, ends included: one confirmed mistake
    // settles the verdict, so a claim wrong everywhere costs one batch.
    let mut order = spread_sample(flagged.len(), PRECISE_BATCH);
    let sampled: std::collections::HashSet<usize> = order.iter().copied().collect();
    order.extend((0..flagged.len()).filter(|i| !sampled.contains(i)));
    for batch in order.chunks(PRECISE_BATCH) {
        if judged
            .iter()
            .any(|j| matches!(j, Some(Judgement::Mistake(_))))
        {
            break;
        }
        let elements: Vec<(usize, usize)> = batch.iter().map(|&i| (target.0, flagged[i])).collect();
        let precise_autodiff = cx
            .precise_partials(&elements)
            .map_err(|e| format!("double-double autodiff failed: {e}"))?;
        for (&i, ad_precise) in batch.iter().zip(precise_autodiff) {
            let k = flagged[i];
            frame.set_point(&grid.point(k));
            let cf_precise = evaluation
                .body(&claim.body, &mut frame)
                .map_err(|e| format!("double-double evaluation of the claim failed: {e}"))?;
            judged[i] = Some(judge_element(
                cx,
                target,
                k,
                (derived[k], claimed[k]),
                (ad_precise, cf_precise),
                tolerances[k],
            ));
        }
    }
    Ok(judged
        .into_iter()
        .map(|j| j.unwrap_or(Judgement::Unconfirmed))
        .collect())
}

/// One flagged element, from its values `(autodiff, claimed)` in f64 and
/// in double-double.
fn judge_element(
    cx: &SizeContext<'_>,
    target: TensorId,
    k: usize,
    (ad, cf): (f64, f64),
    (ad_precise, cf_precise): (Dd, Dd),
    tolerance: f64,
) -> Judgement {
    let difference = (ad - cf).abs();
    let precise = (ad_precise - cf_precise).to_f64().abs();
    let allowed = tolerance + ROUNDING_SURE * difference;
    let range = cx.valid_range(target, k);
    // Where the valid set is known exactly, it alone decides: autodiff's
    // own pick may be a combination of branches no nearby point takes. The
    // claim is placed by its double-double value, the range allowed the
    // f64 rounding autodiff shows (the range is made of f64 gradients).
    if let Some(range) = range.filter(|r| r.exact) {
        let rounding = (ad - ad_precise.to_f64()).abs() + (cf - cf_precise.to_f64()).abs();
        let cf = cf_precise.to_f64();
        let tolerance = tolerance + (ad - ad_precise.to_f64()).abs();
        return if range.distance(cf) <= tolerance {
            Judgement::AtKink(range, rounding)
        } else if let Some((lo, hi)) = range.outer
            && ValidRange::between(lo, hi, 0.0).distance(cf) > tolerance
        {
            Judgement::Mistake(MismatchBasis::OutsideKink {
                lo,
                hi,
                slack: tolerance,
            })
        } else {
            Judgement::Unresolved(range)
        };
    }
    match shrinkage(difference, precise, tolerance) {
        Shrinkage::Rounding => return Judgement::Rounding { precise, allowed },
        Shrinkage::Unclear => return Judgement::Unclear { precise },
        Shrinkage::Persists => {}
    }
    match range {
        Some(range)
            if range.is_kink(tolerance) && range.distance(cf) <= range.slack + tolerance =>
        {
            Judgement::AtKink(range, 0.0)
        }
        Some(range) if range.is_kink(tolerance) => Judgement::Mistake(MismatchBasis::OutsideKink {
            lo: range.lo,
            hi: range.hi,
            slack: range.slack + tolerance,
        }),
        _ => Judgement::Mistake(MismatchBasis::Persists {
            tolerance,
            ulps: ROUNDING_ULPS,
            terms: cx.terms,
            scale: tolerance / (ROUNDING_ULPS * f64::EPSILON * cx.terms),
            precise_difference: precise,
        }),
    }
}

/// What the engine learns about one tensor at one size, whatever the claims:
/// whether autodiff agrees with finite differences, and the central
/// difference of L along one random direction, which every claim on the
/// tensor is then compared with.
#[derive(Debug)]
pub struct TensorProbe {
    guard: CheckTally,
    direction: Option<Direction>,
}

#[derive(Debug)]
struct Direction {
    u: Vec<f64>,
    /// Central difference of L along u with step h.
    d1: f64,
    /// Its error bound: truncation (Richardson) plus rounding.
    tolerance: f64,
    /// Where L has a kink along u: its one-sided derivatives along u.
    sides: Option<ValidRange>,
    /// Autodiff's derivative along u, and whether the central difference
    /// agreed with it (or with its double-double value) when the guard ran.
    exact: Option<f64>,
    guard_passed: bool,
}

/// Central differences of L for several displacements at once: request
/// `r` moves the values by `t` as `at(r, t, tensor, offset)` says, with
/// step `h = step(r)`; d1 takes steps ±h and d2 ±2h, and their gap
/// estimates d1's truncation error (error ∝ h², so d2 − d1 ≈ 3·error).
///
/// L is evaluated in f64 and f32 at each displaced point, all of them
/// [`SizeContext::losses`] at a time. The rounding of L in f64 is not known
/// in advance (it follows the magnitudes of every intermediate term, not of
/// L), so it is measured: rounding scales with the unit roundoff, and
/// |L₃₂ − L₆₄|·(ε₆₄/ε₃₂) estimates L's error in f64. A request where L is
/// undefined at one of its points gives the first such error, in the order
/// +h, −h, +2h, −2h.
fn central_differences(
    cx: &SizeContext<'_>,
    requests: usize,
    step: impl Fn(usize) -> f64,
    at: impl Fn(usize, f64, usize, usize) -> f64 + Sync,
) -> Vec<Result<Differences, String>> {
    let displacements: Vec<[f64; 4]> = (0..requests).map(|r| displacements(step(r))).collect();
    let input =
        |point: usize, k: usize, p: usize| at(point / 4, displacements[point / 4][point % 4], k, p);
    // Single precision may overflow where double does not: then the noise
    // is unmeasured and the ε·|terms| estimate stands alone.
    let [l64, l32] = cx.losses_in_both(4 * requests, input);
    (0..requests)
        .map(|r| differences(&l64[4 * r..4 * r + 4], &l32[4 * r..4 * r + 4], step(r)))
        .collect()
}

/// The displacements of a central difference with step h, in the order
/// its values of L are given: +h, −h, +2h, −2h.
fn displacements(h: f64) -> [f64; 4] {
    [h, -h, 2.0 * h, -2.0 * h]
}

/// d1, d2 and the measured rounding from L in f64 and f32 at the four
/// displacements of step `h`; the first error, in their order, where L is
/// undefined at one.
fn differences(
    l64: &[Result<f64, Box<EvalError>>],
    l32: &[Result<f64, Box<EvalError>>],
    h: f64,
) -> Result<Differences, String> {
    let mut noise: f64 = 0.0;
    let mut l = [0.0; 4];
    for (j, slot) in l.iter_mut().enumerate() {
        let l64 = l64[j].as_ref().map_err(|e| e.to_string())?;
        let l32 = match &l32[j] {
            Ok(v) if v.is_finite() => *v,
            _ => *l64,
        };
        noise = noise.max((l32 - l64).abs() * (f64::EPSILON / f64::from(f32::EPSILON)));
        *slot = *l64;
    }
    Ok(Differences {
        d1: (l[0] - l[1]) / (2.0 * h),
        d2: (l[2] - l[3]) / (4.0 * h),
        noise,
    })
}

/// Central differences of L with steps h and 2h, and the rounding of L.
struct Differences {
    d1: f64,
    d2: f64,
    /// Estimated absolute rounding error of L in f64 near the point.
    noise: f64,
}

/// Truncation error of d1 (Richardson: error ∝ h², so d2 − d1 ≈ 3·error)
/// plus its rounding (two values of L, each off by up to the larger of the
/// measured noise and ε·|terms of L|, over 2h), with a safety factor.
fn fd_tolerance(d: &Differences, h: f64, cx: &SizeContext<'_>) -> f64 {
    // Measured noise sees nothing where L is flat in both precisions (1 + u²
    // rounds to 1 in f32 and f64 alike): the first-order bound from the
    // magnitudes of L's intermediate values does.
    let propagated = cx
        .derivation()
        .ok()
        .and_then(|d| d.loss_rounding)
        .unwrap_or(0.0);
    let rounding = d
        .noise
        .max(f64::EPSILON * cx.loss_magnitude * cx.terms.sqrt())
        .max(f64::EPSILON * propagated);
    FD_SAFETY * ((d.d2 - d.d1).abs() / 3.0 + rounding / h)
}

pub fn probe_tensor(target: TensorId, cx: &SizeContext<'_>) -> TensorProbe {
    probe_tensor_with(target, cx, cx.first_probe_round())
}

/// [`probe_tensor`], reading the first step of its whole-run walks and of
/// its random direction from `first` where it holds them.
fn probe_tensor_with(target: TensorId, cx: &SizeContext<'_>, first: &FirstRound) -> TensorProbe {
    let mut guard = CheckTally::default();
    let Some(Some(derived)) = cx.derived().ok().and_then(|d| d.get(target.0)) else {
        return TensorProbe {
            guard,
            direction: None,
        };
    };
    let derived = derived.as_slice_memory_order().unwrap_or(&[]);
    let w: Vec<f64> = cx.values[target.0].iter().copied().collect();
    /// One element's walk down its ladder of steps.
    struct Walk {
        k: usize,
        w0: f64,
        ad: f64,
        steps: Vec<f64>,
        next: usize,
        best: Option<(f64, f64, f64)>,
        undefined: Option<(String, f64)>,
        done: bool,
    }
    let mut walks: Vec<Walk> = walked_elements(derived, &w, cx.options.fd_elements)
        .map(|(k, w0, ad)| Walk {
            k,
            w0,
            ad,
            steps: fd_steps(w0.abs(), w0.abs()),
            next: 0,
            best: None,
            undefined: None,
            done: false,
        })
        .collect();
    // The walks' elements, and their cones in each precision: found for
    // every probe at once (found here where those are not this probe's).
    let own: Vec<(usize, usize)> = walks.iter().map(|w| (target.0, w.k)).collect();
    let own_cones;
    let shared = cx.probe_cones();
    let (elements, start, (cones64, cones32)) = match shared.of(&own) {
        Some(start) => (
            shared.elements.as_slice(),
            start,
            (shared.cones64.as_ref(), shared.cones32.as_ref()),
        ),
        None => {
            own_cones = match own.len() > CONES_FROM {
                true => cx.cones_in_both(&own),
                false => (None, None),
            };
            (
                own.as_slice(),
                0,
                (own_cones.0.as_ref(), own_cones.1.as_ref()),
            )
        }
    };
    // L where one element alone moved, by (element, value moved to), in
    // f64 and f32: along a random direction a tensor of one element moves
    // to the same points, whose values are then taken from here.
    let mut walked: std::collections::HashMap<(usize, u64), [Loss; 2]> = Default::default();
    // Every element still walking takes its next step, round by round.
    loop {
        let active: Vec<usize> = (0..walks.len())
            .filter(|&i| !walks[i].done && walks[i].next < walks[i].steps.len())
            .collect();
        if active.is_empty() {
            break;
        }
        // Each element alone moves: its cone is replayed, 4 points a run
        // (a whole-run walk's first step is read from the first round).
        let mut estimates: Vec<Result<Differences, String>> = Vec::with_capacity(active.len());
        for &i in &active {
            let walk = &walks[i];
            let h = walk.steps[walk.next];
            let moved = displacements(h).map(|t| walk.w0 + t);
            let [l64, l32] = match first.walk((target.0, walk.k), h) {
                Some(losses) => losses,
                None => cx.moved_losses_in_both((cones64, cones32), elements, start + i, &moved),
            };
            estimates.push(differences(&l64, &l32, h));
            // Only a tensor of one element moves there again (walked_along).
            if w.len() == 1 {
                for ((v, a), b) in moved.iter().zip(l64).zip(l32) {
                    walked.insert((walk.k, v.to_bits()), [a, b]);
                }
            }
        }
        for (&i, estimate) in active.iter().zip(estimates) {
            let walk = &mut walks[i];
            let h = walk.steps[walk.next];
            walk.next += 1;
            match estimate {
                Ok(d) => {
                    let (error, tolerance) = element_guard(cx, target, walk.k, walk.ad, &d, h);
                    let ratio = error / tolerance;
                    if walk.best.is_none_or(|(e, t, _)| ratio < e / t) {
                        walk.best = Some((error, tolerance, d.d1));
                    }
                    if error <= tolerance {
                        walk.done = true;
                    }
                }
                Err(why) => {
                    walk.undefined.get_or_insert((why, h));
                }
            }
        }
    }
    for walk in walks {
        let Walk {
            k,
            ad,
            best,
            undefined,
            ..
        } = walk;
        let name = &cx.program.tensors[target.0].name;
        let index = cx.instance.tensor_grid(target).point(k);
        let block: Vec<(i64, i64)> = index.iter().map(|&i| (i, i)).collect();
        match (best, undefined) {
            (Some((error, tolerance, d1)), _) => guard.record(error, tolerance, || {
                format!(
                    "{} at {} (autodiff {}, finite differences {})",
                    crate::report::block_name(name, &block),
                    cx.instance.sizes,
                    crate::eval::format_value(ad),
                    crate::eval::format_value(d1)
                )
            }),
            (None, Some((why, h))) => {
                guard.skipped.get_or_insert(format!(
                    "finite differences cannot check {}: L is undefined within {} of it ({why})",
                    crate::report::block_name(name, &block).trim_start_matches('d'),
                    crate::eval::format_value(2.0 * h),
                ));
            }
            (None, None) => {}
        }
    }
    let direction = cx.probe_direction(target);
    let u = entries_along(&direction, target);
    let (largest, smallest) = magnitudes(&w);
    let exact = cx.probe_derivative(target);
    let mut chosen: Option<(Direction, Option<(f64, f64)>)> = None;
    for h in fd_steps(largest, smallest) {
        let flat = cx.flat_values();
        let along = |_: usize, t: f64, k: usize, p: usize| {
            if k == target.0 {
                moved_along(&w, &u, t, p)
            } else {
                value_at(flat, k, p)
            }
        };
        let differences = match walked_along(&walked, &w, &u, h) {
            Some(walked) => Some(walked),
            None => match first.along(target, h) {
                Some([l64, l32]) => Some(differences(&l64, &l32, h)),
                None => central_differences(cx, 1, |_| h, along).pop(),
            },
        };
        let Some(Ok(differences)) = differences else {
            continue;
        };
        let tolerance = fd_tolerance(&differences, h, cx);
        let d1 = differences.d1;
        // Where the valid gradients at kinks are known, the central
        // difference must lie among their values along u (autodiff's own
        // pick may be a combination of branches no nearby point takes).
        let sides = match cx.kink_gradients() {
            Some(valid) => valid.support(target, &u).map(|s| {
                let (lo, hi) = s.outer.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
                ValidRange {
                    exact: true,
                    ..ValidRange::between(lo, hi, 0.0)
                }
            }),
            None => one_sided_directional(cx, &direction, h).filter(|s| s.is_kink(tolerance)),
        };
        // The exact directional derivative keeps autodiff honest along u too.
        let compared = exact
            .as_ref()
            .ok()
            .map(|&exact| direction_guard(cx, &direction, (d1, tolerance), exact, sides.as_ref()));
        let agrees = compared.is_none_or(|(e, t)| e <= t);
        let better = chosen.as_ref().is_none_or(|(_, c)| match (c, compared) {
            (Some((e0, t0)), Some((e, t))) => e / t < e0 / t0,
            _ => false,
        });
        if better || agrees {
            chosen = Some((
                Direction {
                    u: u.clone(),
                    d1,
                    tolerance,
                    sides,
                    exact: exact.as_ref().ok().copied(),
                    guard_passed: agrees,
                },
                compared,
            ));
        }
        if agrees {
            break;
        }
    }
    let Some((direction, compared)) = chosen else {
        guard
            .skipped
            .get_or_insert("L is undefined along a random direction".to_string());
        return TensorProbe {
            guard,
            direction: None,
        };
    };
    if let Some((error, tolerance)) = compared {
        guard.record(error, tolerance, || {
            format!("a random direction at {}", cx.instance.sizes)
        });
    }
    TensorProbe {
        guard,
        direction: Some(direction),
    }
}

/// The cones, in each precision, of the elements the probes walk, for
/// every probed tensor with more than [`CONES_FROM`] of them (for a few
/// elements, a scalar every output reads, whole runs are cheaper): found
/// in one scan per precision rather than one per probe, as a scan costs
/// about a run however many elements share a word of its masks (64).
/// Held while the size is checked, as the probes of later claims read
/// them.
pub struct ProbeCones {
    elements: Vec<(usize, usize)>,
    cones64: Option<Cones<f64>>,
    cones32: Option<Cones<f32>>,
}

impl ProbeCones {
    /// The cones of every probe's walked elements at this size.
    pub fn of_probes(cx: &SizeContext<'_>) -> Self {
        let mut elements = vec![];
        if let Ok(derived) = cx.derived() {
            for t in probed_tensors(cx) {
                let walked = walked_of(cx, derived, t);
                if walked.len() > CONES_FROM {
                    elements.extend(walked);
                }
            }
        }
        let (cones64, cones32) = match elements.is_empty() {
            true => (None, None),
            false => cx.cones_in_both(&elements),
        };
        Self {
            elements,
            cones64,
            cones32,
        }
    }

    /// Where a probe's elements start among these, if they are here.
    fn of(&self, own: &[(usize, usize)]) -> Option<usize> {
        let &(tensor, _) = own.first()?;
        let start = self.elements.iter().position(|&(t, _)| t == tensor)?;
        (self.elements.get(start..start + own.len())? == own).then_some(start)
    }
}

/// The elements (tensor, offset) the probe of tensor `t` walks, as it
/// reads them from autodiff's gradient `derived` and the drawn values.
fn walked_of(
    cx: &SizeContext<'_>,
    derived: &[Option<ArrayD<f64>>],
    t: usize,
) -> Vec<(usize, usize)> {
    let (Some(Some(gradient)), Some(values)) = (derived.get(t), cx.values.get(t)) else {
        return vec![];
    };
    let gradient = gradient.as_slice_memory_order().unwrap_or(&[]);
    let w: Vec<f64> = values.iter().copied().collect();
    walked_elements(gradient, &w, cx.options.fd_elements)
        .map(|(k, _, _)| (t, k))
        .collect()
}

/// L at a point, or why it could not be evaluated there.
type Loss = Result<f64, Box<EvalError>>;

/// The elements a tensor's probe walks, spread over it: (offset, value,
/// autodiff's partial), row-major.
fn walked_elements<'a>(
    derived: &'a [f64],
    w: &'a [f64],
    limit: usize,
) -> impl Iterator<Item = (usize, f64, f64)> + 'a {
    spread_sample(derived.len(), limit)
        .into_iter()
        .filter_map(|k| Some((k, *w.get(k)?, *derived.get(k)?)))
}

/// A tensor's entries of a probe direction, row-major (none where the
/// direction does not move it).
fn entries_along(direction: &[Option<ArrayD<f64>>], target: TensorId) -> Vec<f64> {
    direction
        .get(target.0)
        .and_then(Option::as_ref)
        .map(|u| u.iter().copied().collect())
        .unwrap_or_default()
}

/// Element `p` of a tensor drawn at `w`, moved by `t` along `u`.
fn moved_along(w: &[f64], u: &[f64], t: f64, p: usize) -> f64 {
    w.get(p).copied().unwrap_or(f64::NAN) + t * u.get(p).copied().unwrap_or(0.0)
}

/// The largest magnitude of a tensor's values and the smallest nonzero
/// one (infinite where every value is 0): what its steps scale with.
fn magnitudes(w: &[f64]) -> (f64, f64) {
    let largest = w.iter().fold(0.0, |m: f64, x| m.max(x.abs()));
    let smallest = w
        .iter()
        .map(|x| x.abs())
        .filter(|&x| x > 0.0)
        .fold(f64::INFINITY, f64::min);
    (largest, smallest)
}

/// The central differences along `u` at step `h` of a tensor of one
/// element at `w`, from the values its walk took at the same points
/// (`walked`, see [`probe_tensor`]); `None` where the walk did not take
/// all four. They are L at the same points, so the values are those a
/// new evaluation would give.
fn walked_along(
    walked: &std::collections::HashMap<(usize, u64), [Loss; 2]>,
    w: &[f64],
    u: &[f64],
    h: f64,
) -> Option<Result<Differences, String>> {
    let ([w0], [u0]) = (w, u) else {
        return None;
    };
    let points = displacements(h).map(|t| walked.get(&(0, (w0 + t * u0).to_bits())));
    let [Some(a), Some(b), Some(c), Some(d)] = points else {
        return None;
    };
    let l64 = [&a[0], &b[0], &c[0], &d[0]].map(Clone::clone);
    let l32 = [&a[1], &b[1], &c[1], &d[1]].map(Clone::clone);
    Some(differences(&l64, &l32, h))
}

/// The random direction a tensor's probe checks autodiff along: a unit
/// vector over its elements, drawn from the seed and the sizes (every
/// other tensor's entry `None`).
pub fn probe_direction(cx: &SizeContext<'_>, target: TensorId) -> Vec<Option<ArrayD<f64>>> {
    let mut rng = ChaCha8Rng::seed_from_u64(crate::eval::stream_seed(
        cx.options.seed,
        "direction",
        cx.instance.sizes.values(),
    ));
    let mut direction: Vec<Option<ArrayD<f64>>> = vec![None; cx.values.len()];
    if let Some(values) = cx.values.get(target.0) {
        let u = unit_direction(&mut rng, values.len());
        direction[target.0] = ArrayD::from_shape_vec(values.raw_dim(), u).ok();
    }
    direction
}

/// Finite-difference steps to try, largest first: the usual ε^(1/3) of the
/// magnitude (at least 1), then 16, 256, ... 16⁸ times smaller (2⁻³² of
/// the first), then ε^(1/3) of the smallest nonzero magnitude if smaller. A central difference needs L
/// smooth and defined within 2h of the value; near log's 0, a pole, or a
/// kink a little away, only a smaller step sees the derivative. Each step's
/// comparison carries its own truncation and rounding estimate.
fn fd_steps(magnitude: f64, smallest: f64) -> Vec<f64> {
    let h0 = f64::EPSILON.cbrt() * magnitude.max(1.0);
    let mut steps: Vec<f64> = (0..=8).map(|k| h0 / 16f64.powi(k)).collect();
    let relative = f64::EPSILON.cbrt() * smallest;
    if relative.is_finite() && relative > 0.0 && steps.last().is_some_and(|&h| relative < h / 16.0)
    {
        steps.push(relative);
    }
    steps
}

/// How far the central difference `d` lies from autodiff's `ad` at element
/// `k`, and the tolerance: truncation plus rounding. Where autodiff's own
/// rounding is in doubt the exact derivative, in double-double, counts;
/// across a kink, the range of valid derivatives.
fn element_guard(
    cx: &SizeContext<'_>,
    target: TensorId,
    k: usize,
    ad: f64,
    d: &Differences,
    h: f64,
) -> (f64, f64) {
    let magnitude = if ad.is_finite() { ad.abs() } else { 0.0 };
    let mut tolerance = fd_tolerance(d, h, cx) + FD_SAFETY * f64::EPSILON * magnitude;
    let mut error = (d.d1 - ad).abs();
    if error.is_nan() {
        error = f64::INFINITY;
    }
    if error > tolerance
        && let Ok(precise) = cx.precise_partials(&[(target.0, k)])
        && let Some(exact) = precise.first()
    {
        error = error.min((d.d1 - exact.to_f64()).abs());
    }
    // Across a kink the central difference measures the mean of the two
    // sides, and autodiff gives one of them: both must lie in the range.
    if error > tolerance
        && let Some(range) = cx.valid_range(target, k).filter(|s| s.applies(tolerance))
    {
        error = range.distance(d.d1);
        tolerance += range.slack;
    }
    (error, tolerance)
}

/// The same along a random direction: the central difference `d1` (with
/// its tolerance) against the exact directional derivative.
fn direction_guard(
    cx: &SizeContext<'_>,
    direction: &[Option<ArrayD<f64>>],
    (d1, tolerance): (f64, f64),
    exact: f64,
    sides: Option<&ValidRange>,
) -> (f64, f64) {
    let tolerance = tolerance + FD_SAFETY * f64::EPSILON * exact.abs();
    let (mut error, tolerance) = match sides {
        Some(s) => (s.distance(d1), tolerance + s.slack),
        None => ((d1 - exact).abs(), tolerance),
    };
    if error.is_nan() {
        error = f64::INFINITY;
    }
    if error > tolerance
        && sides.is_none()
        && let Ok(precise) = precise_directional_derivative(cx.instance, cx.values, direction)
    {
        error = error.min((d1 - precise.to_f64()).abs());
    }
    (error, tolerance)
}

impl CheckTally {
    fn merge(&mut self, other: &CheckTally) {
        self.compared += other.compared;
        self.failed += other.failed;
        self.worst_ratio = self.worst_ratio.max(other.worst_ratio);
        // The first reason found (at the smallest size) is the one to tell.
        if self.skipped.is_none() {
            self.skipped.clone_from(&other.skipped);
        }
        if self.first_failure.is_none() {
            self.first_failure.clone_from(&other.first_failure);
        }
    }

    /// Records one comparison; `place` describes it, read only on failure.
    fn record(&mut self, error: f64, tolerance: f64, place: impl FnOnce() -> String) {
        self.compared += 1;
        // A NaN (from a non-finite difference) counts as a failure.
        let ratio = tolerance_ratio(error, tolerance);
        if ratio > 1.0 {
            self.failed += 1;
            if self.first_failure.is_none() {
                self.first_failure = Some(format!(
                    "{}: off by {} against a tolerance of {}",
                    place(),
                    crate::eval::format_value(error),
                    crate::eval::format_value(tolerance)
                ));
            }
        }
        self.worst_ratio = self.worst_ratio.max(ratio);
    }
}

fn tally_check(name: &'static str, tally: &CheckTally, what: &str) -> CrossCheck {
    let detail = match (&tally.skipped, tally.compared) {
        (Some(why), 0) => format!("not run: {why}"),
        (_, 0) => "not run".to_string(),
        (_, n) => {
            let first = tally
                .first_failure
                .as_ref()
                .map(|f| format!("; first at {f}"))
                .unwrap_or_default();
            format!(
                "{what}: {} of {n} within tolerance (worst {}× the tolerance){first}",
                n - tally.failed,
                crate::eval::format_value((tally.worst_ratio * 100.0).round() / 100.0)
            )
        }
    };
    CrossCheck {
        name,
        passed: tally.failed == 0,
        compared: tally.compared,
        worst_ratio: tally.worst_ratio,
        detail,
    }
}

fn non_finite(cx: &SizeContext<'_>, claim: &GradClaim, v: f64, frame: &Frame<'_>) -> EvalError {
    let span = match &claim.body {
        crate::analysis::program::Body::Expr(e) => e.span,
        crate::analysis::program::Body::Cases(c) => c
            .first()
            .zip(c.last())
            .map_or_else(Default::default, |(a, b)| a.span.to(b.span)),
    };
    EvalError::NonFinite {
        expression: cx.instance.text_of(span).to_string(),
        value: crate::eval::format_value(v),
        at: frame.describe(&cx.instance.sizes),
        span: span.into(),
    }
}

/// Records the elements (or points) found wrong at one size, if any.
pub(super) fn record_mismatches(outcome: &mut ClaimOutcome, sizes: &Sizes, points: &[Vec<i64>]) {
    if !points.is_empty() {
        outcome
            .mismatch_groups
            .push(ElementGroup::new(sizes, points));
    }
}

/// Records the elements (or points) where a claim is undefined at one
/// size: one problem per cause, the same error kind at the same place.
pub(super) fn record_problems(
    outcome: &mut ClaimOutcome,
    cx: &SizeContext<'_>,
    sizes: &Sizes,
    failures: Vec<(Vec<i64>, EvalError)>,
) {
    let mut groups: Vec<(EvalError, Vec<Vec<i64>>)> = vec![];
    for (point, error) in failures {
        match groups.iter_mut().find(|(e, _)| same_cause(e, &error)) {
            Some((_, points)) => points.push(point),
            None => groups.push((error, vec![point])),
        }
    }
    for (error, points) in groups {
        outcome.problems.push(ClaimProblem {
            elements: ElementGroup::new(sizes, &points),
            diagnostic: miette::Report::new(error).with_source_code(cx.named_source()),
        });
    }
}

fn same_cause(a: &EvalError, b: &EvalError) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b) && a.primary_span() == b.primary_span()
}

/// Up to `limit` positions out of `n`, spread over the whole range and
/// always including both ends, where boundary mistakes live.
pub fn spread_sample(n: usize, limit: usize) -> Vec<usize> {
    if n <= limit {
        return (0..n).collect();
    }
    let mut chosen: Vec<usize> = (0..limit)
        .map(|k| k * (n - 1) / (limit.max(2) - 1))
        .collect();
    chosen.dedup();
    chosen
}

/// A random unit vector (normal draws, normalised).
pub(crate) fn unit_direction(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let mut u = crate::eval::distribution::standard_normals(rng, n);
    let norm = u.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        u.iter_mut().for_each(|x| *x /= norm);
    }
    u
}

/// Groups points into blocks of consecutive indices: along the last axis
/// first, then stacking runs that repeat over the axis before.
pub fn group_points(points: &[Vec<i64>]) -> Vec<Vec<(i64, i64)>> {
    let mut sorted = points.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut blocks: Vec<Vec<(i64, i64)>> = vec![];
    for p in sorted {
        let Some((&last, prefix)) = p.split_last() else {
            if blocks.is_empty() {
                blocks.push(vec![]);
            }
            continue;
        };
        if let Some(block) = blocks.last_mut() {
            let split = block.len() - 1;
            let (block_prefix, block_last) = block.split_at_mut(split);
            let same_prefix = block_prefix
                .iter()
                .zip(prefix)
                .all(|(&(lo, hi), &q)| lo == q && hi == q);
            if same_prefix && block_last[0].1 + 1 == last {
                block_last[0].1 = last;
                continue;
            }
        }
        let mut block: Vec<(i64, i64)> = prefix.iter().map(|&q| (q, q)).collect();
        block.push((last, last));
        blocks.push(block);
    }
    stack_blocks(blocks)
}

/// Merges blocks that differ only in the first axis, consecutively:
/// `[1, 2..=4]`, `[2, 2..=4]` become `[1..=2, 2..=4]`.
fn stack_blocks(blocks: Vec<Vec<(i64, i64)>>) -> Vec<Vec<(i64, i64)>> {
    let mut out: Vec<Vec<(i64, i64)>> = vec![];
    for b in blocks {
        if let Some(prev) = out.last_mut()
            && prev.len() == b.len()
            && b.len() > 1
            && prev[1..] == b[1..]
            && prev[0].1 + 1 == b[0].0
        {
            prev[0].1 = b[0].1;
            continue;
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The probes' cones, found for all of them at once, move each walked
    /// element as the probe's own cones do: the same losses bit for bit in
    /// f64 and f32; a tensor of few walked elements has none there.
    #[test]
    fn cones_found_for_every_probe_move_each_element_as_its_own_do() {
        let mut compared = 0;
        crate::verify::context::tests::for_each_context(|path, cx| {
            let Ok(derived) = cx.derived() else { return };
            let shared = cx.probe_cones();
            for t in probed_tensors(cx) {
                let Some(w) = cx.values[t].as_slice_memory_order() else {
                    continue;
                };
                let own = walked_of(cx, derived, t);
                let start = shared.of(&own);
                assert_eq!(
                    start.is_some(),
                    own.len() > CONES_FROM,
                    "{path:?} tensor {t}"
                );
                let Some(start) = start else { continue };
                let (c64, c32) = cx.cones_in_both(&own);
                let bits = |losses: [Vec<Loss>; 2]| -> Vec<String> {
                    losses
                        .iter()
                        .flatten()
                        .map(|l| match l {
                            Ok(v) => format!("{:x}", v.to_bits()),
                            Err(e) => e.to_string(),
                        })
                        .collect()
                };
                for (i, &(_, k)) in own.iter().enumerate() {
                    let moved = [w[k] + 0.25, w[k] - 1e-3, w[k] * 3.0];
                    let by_shared = cx.moved_losses_in_both(
                        (shared.cones64.as_ref(), shared.cones32.as_ref()),
                        &shared.elements,
                        start + i,
                        &moved,
                    );
                    let by_own =
                        cx.moved_losses_in_both((c64.as_ref(), c32.as_ref()), &own, i, &moved);
                    assert_eq!(
                        bits(by_shared),
                        bits(by_own),
                        "{path:?} tensor {t}, element {k}"
                    );
                    compared += 1;
                }
            }
        });
        assert!(compared > 100, "{compared} compared");
    }

    /// Along u = ±1 a tensor of one element moves to the points its walk
    /// took: the central differences are read from them, in u's order,
    /// and not at all where a point is missing or the tensor is larger.
    #[test]
    fn a_one_element_direction_reads_the_points_its_walk_took() {
        let (w0, h) = (0.75, 1e-5);
        let l = |x: f64| x * x * x;
        let mut walked: std::collections::HashMap<(usize, u64), [Loss; 2]> = Default::default();
        for t in displacements(h) {
            let x = w0 + t;
            walked.insert((0, x.to_bits()), [Ok(l(x)), Ok(l(x))]);
        }
        let up = walked_along(&walked, &[w0], &[1.0], h).unwrap().unwrap();
        let down = walked_along(&walked, &[w0], &[-1.0], h).unwrap().unwrap();
        assert_eq!(up.d1, (l(w0 + h) - l(w0 - h)) / (2.0 * h));
        assert_eq!(down.d1, -up.d1);
        assert_eq!(down.d2, -up.d2);
        // Another step, another element count, or a u off ±1: not walked.
        assert!(walked_along(&walked, &[w0], &[1.0], 2.0 * h).is_none());
        assert!(walked_along(&walked, &[w0, w0], &[0.6, 0.8], h).is_none());
        assert!(walked_along(&walked, &[w0], &[0.5], h).is_none());
    }
}
