//! `check taylor one_sided rate > 1`, `check taylor central rate ≈ 3`: the
//! handout's Assignment 1, checked by measuring how fast the Taylor
//! remainder of L vanishes.
//!
//! **J** is the closed-form gradient of the spec: for each input and param,
//! the last `grad` claim on it written *above* the Taylor claim (so a spec
//! can state a wrong gradient, then a Taylor claim that catches it). A
//! tensor with no such claim contributes its autodiff gradient, and the
//! report says so. Where the closed form is undefined (an access out of
//! range), the claim is undecided.
//!
//! **Directions**: [`DIRECTIONS`] random unit vectors u per size, drawn from
//! the seed and spanning every input and param at once. Along each, ε runs
//! down the ladder of [`fit::ladder`], and with Δw the step actually taken
//! (w + εu rounded in the working precision, minus w, which keeps the
//! rounding of the inputs out of the remainder):
//! - one-sided (eq. 1): r = L(w+Δw) − L(w) − ⟨J,Δw⟩;
//! - central (eq. 2): r = ½(L(w+Δw₊) − L(w−Δw₋)) − ⟨J,(Δw₊+Δw₋)/2⟩.
//!
//! **Floor**: one evaluation of L in precision p carries a rounding error of
//! about ε_p·M, where M is the larger of √n·Σ|terms of L| (Higham's
//! probabilistic bound for sums of n terms) and the error of L measured by
//! evaluating it in f32 and f64 at the same point (which catches
//! cancellation inside L that magnitudes miss). The one-sided remainder
//! subtracts two evaluations (floor 2ε_p·M), the central one halves the
//! difference of two (ε_p·M). [`fit`] raises the floor further if the
//! ladder's foot shows more, then fits the rate where truncation dominates.
//!
//! **Verdict**: the remainder of a smooth L is a power series in ε, so the
//! rates it can show are whole numbers: 1 when J is wrong, 2 (one-sided) or
//! 3 (central) when it is right. A fitted rate within [`SETTLED`] of a whole
//! number has settled on it; `rate > v` and `rate >= v` compare that whole
//! number with v, `rate ≈ v ± t` compares the fitted rate itself. Every
//! direction at every size must satisfy the claim; one that refutes it
//! refutes the claim, and one that shows no rate leaves it undecided.
//!
//! **Second order** (eq. 7): along u, ½⟨Δw,HΔw⟩/ε² = ½⟨u,Hu⟩ is computed
//! exactly with hyper-dual numbers (ε₁ = ε₂ = u) and compared with the
//! measured one-sided r/‖Δw‖² at the top and foot of the fitted window.
//!
//! **f32** (`precision f32`, or `--taylor-precision f32`): the values are
//! rounded to f32 and L is evaluated in f32 by the same generic evaluator;
//! J stays the closed form evaluated in f64, and the remainder is formed in
//! f64, because the exercise is about the limited accuracy of L's
//! evaluation: rounding J too would only add u₃₂·|J|·ε, below the floor. The
//! f64 ladder runs as well, for comparison. In f32 the floor is about 1e-7·M,
//! so the one-sided remainder of a slightly wrong gradient (error δ) shows
//! its ε¹ part only where δε > ½⟨u,Hu⟩ε² and above the floor: δ² ≫ hF, while
//! the central one needs only δ^(3/2) ≫ √t·F; a gradient error between the
//! two passes the one-sided check and fails the central one.

mod fit;

pub use fit::{Fit, Point, fit_rate, ladder};

use ndarray::ArrayD;
use num_dual::HyperDual64;

use crate::eval::double_double::Dd;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::{Value, json};

use super::ClaimCheck;
use super::context::{Lazy, Points, Replayable, SizeContext, value_at};
use super::grad::unit_direction;
use super::outcome::*;
use crate::analysis::Sizes;
use crate::analysis::program::{Body, ClaimKind, Program, TaylorClaim, TensorId};
use crate::eval::replay::Lane;
use crate::eval::{EvalError, Frame, Scalar, format_value};
use crate::report::plural;
use crate::syntax::ast::{Precision, RateOp, TaylorScheme};

/// Random directions per size: several, so that a wrong gradient cannot
/// hide in a direction that happens to be orthogonal to its error.
pub const DIRECTIONS: usize = 4;
/// A fitted rate this close to a whole number has settled on it.
pub const SETTLED: f64 = 0.25;
/// Steps of the f32-against-f64 comparison that measures L's rounding: the
/// drawn point, and ± each of 1, 0.1 and 0.01.
const ROUNDING_STEPS: [f64; 7] = [0.0, 1.0, -1.0, 1e-1, -1e-1, 1e-2, -1e-2];

/// The runs of one size for one J and set of precisions: claims that
/// differ only in scheme or bound share them.
pub struct Memo {
    key: MemoKey,
    runs: std::sync::Arc<Lazy<Vec<Run>>>,
}

/// What a Taylor claim's runs depend on: where J comes from, and the
/// precisions L is evaluated in.
type MemoKey = (Vec<JacobianSource>, Vec<Precision>);

impl Memo {
    /// The runs of the claims with `key` at this size, measured by the
    /// first claim that asks (the others wait for them).
    fn slot(cx: &SizeContext<'_>, key: &MemoKey) -> std::sync::Arc<Lazy<Vec<Run>>> {
        let mut memo = crate::eval::locked(&cx.taylor_memo);
        if let Some(known) = memo.iter().find(|m| &m.key == key) {
            return known.runs.clone();
        }
        let runs = std::sync::Arc::new(Lazy::default());
        memo.push(Memo {
            key: key.clone(),
            runs: runs.clone(),
        });
        runs
    }
}

/// Why a claim's runs were not measured.
enum Unmeasured {
    /// J could not be computed: why.
    Undefined(String),
    /// J has no element: L has no input or param.
    NothingToPerturb,
    /// Measuring along the directions failed: why.
    Failed(String),
}

/// A Taylor claim's findings over the sizes of the sweep.
pub struct TaylorCheck<'p> {
    program: &'p Program,
    claim: &'p TaylorClaim,
    /// Where the claim starts in the file: J comes from claims above it.
    position: usize,
    outcome: ClaimOutcome,
    precision: Precision,
    runs: Vec<Run>,
    jacobian: Vec<JacobianSource>,
    undecided: Option<String>,
    /// Directions that showed no rate, for the notes.
    silent: Option<String>,
}

#[derive(Default)]
struct Tally {
    holds: usize,
    refuted: usize,
    silent: usize,
    first_silent: Option<String>,
}

/// One direction at one size in one precision.
#[derive(Clone, Debug)]
struct Run {
    sizes: Sizes,
    /// 1-based, as reports count.
    direction: usize,
    precision: Precision,
    one_sided: SchemeRun,
    central: SchemeRun,
    second_order: SecondOrder,
}

#[derive(Clone, Debug)]
struct SchemeRun {
    points: Vec<Option<Point>>,
    floor: f64,
    fit: Fit,
}

#[derive(Clone, Copy, Debug)]
struct SecondOrder {
    /// ½⟨u,Hu⟩: the one-sided remainder over ε² as ε → 0, if J is right.
    predicted: f64,
    /// ⟨∇L − J, u⟩: the first-order term a wrong J leaves.
    first_order_gap: f64,
}

/// Where J's entries for one tensor come from.
#[derive(Clone, Debug, PartialEq)]
struct JacobianSource {
    tensor: String,
    /// `grad x[j]` and its line, or `None` for autodiff.
    claim: Option<(String, usize)>,
    /// That claim is marked `expect fail`: an erratum, taken as J only
    /// because it is the last `grad` claim above.
    erratum: bool,
}

/// J flattened over the differentiable tensors, in tensor order.
struct Jacobian {
    flat: Vec<f64>,
    /// (tensor, number of elements) in the order of `flat`.
    layout: Vec<(TensorId, usize)>,
}

impl<'p> TaylorCheck<'p> {
    pub fn new(
        program: &'p Program,
        claim: &'p TaylorClaim,
        position: usize,
        outcome: ClaimOutcome,
    ) -> Self {
        Self {
            program,
            claim,
            position,
            outcome,
            precision: claim.precision.unwrap_or(Precision::F64),
            runs: vec![],
            jacobian: vec![],
            undecided: None,
            silent: None,
        }
    }
}

impl ClaimCheck for TaylorCheck<'_> {
    fn check_at(&mut self, cx: &SizeContext<'_>) {
        self.precision = self
            .claim
            .precision
            .or(cx.options.taylor_precision)
            .unwrap_or(Precision::F64);
        if let Err(why) = self.check(cx) {
            self.undecided(why);
        }
    }

    fn undecided(&mut self, why: String) {
        self.undecided.get_or_insert(why);
    }

    fn finish(mut self: Box<Self>) -> ClaimOutcome {
        let verdict = self.verdict();
        self.outcome.verdict = verdict;
        self.outcome.notes = self.notes();
        self.outcome.details = self.details();
        self.outcome.plots = self.plot().into_iter().collect();
        self.outcome
    }
}

impl TaylorCheck<'_> {
    fn check(&mut self, cx: &SizeContext<'_>) -> Result<(), String> {
        if cx.loss.is_none() {
            return Err("the spec has no layer or loss, so no L to expand".to_string());
        }
        let mut precisions = vec![Precision::F64];
        if self.precision == Precision::F32 {
            precisions.push(Precision::F32);
        }
        // A claim with the same J and precisions measured these runs
        // already (and found J defined and something to perturb).
        let key = (self.sources(cx), precisions.clone());
        let shared = Memo::slot(cx, &key);
        let runs = match shared.get_or_try(|| self.measure(cx, &precisions)) {
            Ok(runs) => runs,
            Err(Unmeasured::Undefined(why)) => return Err(why),
            Err(Unmeasured::NothingToPerturb) => {
                self.note_sources(&key.0);
                return Err("L has no input or param to perturb".to_string());
            }
            Err(Unmeasured::Failed(why)) => {
                self.note_sources(&key.0);
                self.outcome.sizes.push(cx.instance.sizes.clone());
                return Err(why);
            }
        };
        self.note_sources(&key.0);
        self.outcome.sizes.push(cx.instance.sizes.clone());
        self.runs.extend(runs.iter().cloned());
        Ok(())
    }

    /// The runs along every direction at this size, in each precision.
    fn measure(
        &self,
        cx: &SizeContext<'_>,
        precisions: &[Precision],
    ) -> Result<Vec<Run>, Unmeasured> {
        let jacobian = self.jacobian(cx).map_err(Unmeasured::Undefined)?;
        let total: usize = jacobian.layout.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return Err(Unmeasured::NothingToPerturb);
        }
        let directions = taylor_directions(cx, &jacobian.layout, total);
        let magnitude = rounding_magnitude(cx, &jacobian.layout, &directions[0]);
        let second_orders = second_orders(cx, &jacobian, &directions)
            .map_err(|e| Unmeasured::Failed(e.to_string()))?;
        let mut ladders = vec![];
        for &precision in precisions {
            let measured = match precision {
                Precision::F64 => measure::<f64>(cx, &jacobian, &directions),
                Precision::F32 => measure::<f32>(cx, &jacobian, &directions),
            }
            .map_err(|e| Unmeasured::Failed(e.to_string()))?;
            ladders.push((precision, measured));
        }
        let mut runs = vec![];
        for (k, &second_order) in second_orders.iter().enumerate() {
            for (precision, measured) in &mut ladders {
                let Some(ladder) = measured.get_mut(k).map(std::mem::take) else {
                    continue;
                };
                let eps = machine_epsilon(*precision);
                runs.push(Run {
                    sizes: cx.instance.sizes.clone(),
                    direction: k + 1,
                    precision: *precision,
                    one_sided: scheme_run(ladder.one_sided, 2.0 * eps * magnitude, 1),
                    central: scheme_run(ladder.central, eps * magnitude, 2),
                    second_order,
                });
            }
        }
        Ok(runs)
    }

    /// Keeps where J came from, for the report.
    fn note_sources(&mut self, sources: &[JacobianSource]) {
        for source in sources {
            if !self.jacobian.contains(source) {
                self.jacobian.push(source.clone());
            }
        }
    }

    /// The last `grad` claim on tensor `id` written above the Taylor claim.
    fn grad_claim_on(
        &self,
        id: TensorId,
    ) -> Option<(
        &crate::analysis::program::Claim,
        &crate::analysis::program::GradClaim,
    )> {
        self.program
            .claims
            .iter()
            .filter(|c| c.span.start < self.position)
            .filter_map(|c| match &c.kind {
                ClaimKind::Grad(g) if g.target == id => Some((c, g)),
                _ => None,
            })
            .max_by_key(|(c, _)| c.span.start)
    }

    /// Where J comes from, tensor by tensor: what Taylor claims with the
    /// same J share, known before J is computed.
    fn sources(&self, cx: &SizeContext<'_>) -> Vec<JacobianSource> {
        self.program
            .tensors
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_differentiable())
            .map(|(k, tensor)| JacobianSource {
                tensor: tensor.name.clone(),
                erratum: self
                    .grad_claim_on(TensorId(k))
                    .is_some_and(|(c, _)| c.expect_fail.is_some()),
                claim: self.grad_claim_on(TensorId(k)).map(|(c, _)| {
                    // `grad x[j]`, as written up to its `=`.
                    let head = super::claim_head(cx.source, c);
                    let (line, _) = cx.source.line_column(c.span.start);
                    (head, line)
                }),
            })
            .collect()
    }

    /// J at this size: each tensor's last `grad` claim above this one, else
    /// autodiff; `sources` says which, as [`TaylorCheck::sources`] gives it.
    fn jacobian(&self, cx: &SizeContext<'_>) -> Result<Jacobian, String> {
        // Sized once: J of a large layer is held through every ladder, and
        // grown as it is filled it would hold up to twice its size.
        let total: usize = super::derivation::differentiable_shapes(cx.instance, cx.values)
            .into_iter()
            .flatten()
            .sum();
        let mut jacobian = Jacobian {
            flat: Vec::with_capacity(total),
            layout: vec![],
        };
        // The closed forms are computed in double-double, over one
        // evaluation of the definitions for all of them.
        let lifted: Vec<ArrayD<Dd>> = cx.values.iter().map(|a| a.mapv(Dd::from_f64)).collect();
        let mut precise = None;
        for (k, tensor) in self.program.tensors.iter().enumerate() {
            if !tensor.is_differentiable() {
                continue;
            }
            let id = TensorId(k);
            let start = jacobian.flat.len();
            match self.grad_claim_on(id) {
                Some((c, g)) => {
                    let head = super::claim_head(cx.source, c);
                    let (line, _) = cx.source.line_column(c.span.start);
                    let evaluation = match &mut precise {
                        Some(evaluation) => evaluation,
                        None => {
                            let mut evaluation = cx.instance.evaluation(&lifted);
                            let computed = self.compute_defs_of_j(&mut evaluation);
                            precise.insert(computed.map(|()| evaluation))
                        }
                    };
                    let evaluation = evaluation
                        .as_ref()
                        .map_err(|e| format!("J is undefined: `{head}` (line {line}): {e}"))?;
                    let into = &mut jacobian.flat;
                    closed_form(cx, evaluation, id, &g.body, g.slots, &g.var_names, into)
                        .map_err(|e| format!("J is undefined: `{head}` (line {line}): {e}"))?;
                }
                None => {
                    let derived = cx.derived().map_err(|e| e.to_string())?;
                    if let Some(d) = derived.get(k).and_then(Option::as_ref) {
                        jacobian.flat.extend(d.iter());
                    }
                }
            }
            jacobian.layout.push((id, jacobian.flat.len() - start));
        }
        Ok(jacobian)
    }

    /// The definitions J's closed forms read, directly or through others,
    /// computed in `evaluation`; no other is looked at.
    fn compute_defs_of_j(
        &self,
        evaluation: &mut crate::eval::Evaluation<'_, Dd>,
    ) -> Result<(), Box<EvalError>> {
        let tensors = &self.program.tensors;
        let bodies: Vec<&Body> = (0..tensors.len())
            .filter(|&k| tensors[k].is_differentiable())
            .filter_map(|k| self.grad_claim_on(TensorId(k)))
            .map(|(_, g)| &g.body)
            .collect();
        let read = self.program.defs_read_by(&bodies);
        for d in self.program.computation_order() {
            let def = &self.program.defs[d.0];
            if read.get(d.0) == Some(&true) && def.local_to.is_none() {
                evaluation.compute_local(d)?;
            }
        }
        Ok(())
    }

    /// The runs the verdict rests on: the claimed precision.
    fn claimed_runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(|r| r.precision == self.precision)
    }

    fn scheme_of<'r>(&self, run: &'r Run) -> &'r SchemeRun {
        scheme_of(run, self.claim.scheme)
    }

    /// Refuted if any direction refutes; holds if none does and most show
    /// a rate (a direction too close to a cancellation, or too short above
    /// the floor, is no evidence either way); else undecided.
    fn verdict(&mut self) -> Verdict {
        let mut tally = Tally::default();
        for run in self.claimed_runs() {
            match judge(&self.scheme_of(run).fit, self.claim) {
                Judgement::Holds => tally.holds += 1,
                Judgement::Refuted => tally.refuted += 1,
                Judgement::NoVerdict(why) => {
                    tally.silent += 1;
                    tally.first_silent.get_or_insert_with(|| {
                        format!(
                            "direction {}{}: {why}",
                            run.direction,
                            run.sizes.at_clause()
                        )
                    });
                }
            }
        }
        let decided = tally.holds + tally.refuted;
        let verdict = if tally.refuted > 0 {
            Verdict::Refuted
        } else if let Some(why) = self.undecided.take() {
            Verdict::Undecided(why)
        } else if decided == 0 || tally.silent > decided {
            Verdict::Undecided(
                tally
                    .first_silent
                    .clone()
                    .unwrap_or_else(|| "not checked".to_string()),
            )
        } else {
            Verdict::Holds
        };
        self.silent = (tally.silent > 0).then(|| {
            format!(
                "{} of {} directions showed no rate (first: {})",
                tally.silent,
                decided + tally.silent,
                tally.first_silent.unwrap_or_default()
            )
        });
        verdict
    }

    /// The fitted rates of the claimed scheme and precision.
    fn rates(&self, precision: Precision) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|r| r.precision == precision)
            .filter_map(|r| self.scheme_of(r).fit.rate)
            .collect()
    }

    /// The run shown in detail: direction 1 at the largest size checked.
    fn shown_run(&self, precision: Precision) -> Option<&Run> {
        let last = self.runs.last()?.sizes.clone();
        self.runs
            .iter()
            .find(|r| r.sizes == last && r.precision == precision && r.direction == 1)
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![self.summary()];
        notes.extend(self.silent.clone());
        if let Some(run) = self.shown_run(self.precision) {
            notes.push(self.rounding_note(run));
            if let Some(note) = second_order_note(run) {
                notes.push(note);
            }
        }
        if self.precision == Precision::F32 {
            let rates = self.rates(Precision::F64);
            if let Some(range) = rate_range(&rates) {
                notes.push(format!(
                    "in f64 the same check measures {range}: {}",
                    meaning(median(&rates))
                ));
            }
        }
        let used: Vec<String> = self
            .jacobian
            .iter()
            .filter_map(|s| {
                s.claim
                    .as_ref()
                    .map(|(head, line)| format!("`{head}` (line {line})"))
            })
            .collect();
        if !used.is_empty() {
            notes.push(format!("J from {}", used.join(", ")));
        }
        // A check of the right gradient written below an erratum takes the
        // erratum as J: where such a check (not itself an erratum) fails,
        // say so. (One that holds may mean it, as A1 b)'s f32 check does.)
        let marked = self
            .program
            .claims
            .iter()
            .any(|c| c.span.start == self.position && c.expect_fail.is_some());
        let refuted = self
            .runs
            .iter()
            .filter(|run| run.precision == self.precision)
            .any(|run| {
                matches!(
                    judge(&self.scheme_of(run).fit, self.claim),
                    Judgement::Refuted
                )
            });
        if !marked && refuted {
            for source in self.jacobian.iter().filter(|s| s.erratum) {
                if let Some((head, line)) = &source.claim {
                    notes.push(format!(
                        "`{head}` (line {line}) is marked `expect fail`: J is the last `grad` claim above this check, so a check of the right gradient goes above the erratum"
                    ));
                }
            }
        }
        for source in self.jacobian.iter().filter(|s| s.claim.is_none()) {
            notes.push(format!(
                "J for {}: no `grad {}` claim above this one, so autodiff's gradient is used",
                source.tensor, source.tensor
            ));
        }
        notes
    }

    /// The one line shown beside the verdict.
    fn summary(&self) -> String {
        let rates = self.rates(self.precision);
        let claimed = describe_bound(self.claim);
        let scheme = scheme_name(self.claim.scheme);
        let precision = precision_name(self.precision);
        let total = self.claimed_runs().count();
        let quiet = self
            .claimed_runs()
            .filter(|r| self.scheme_of(r).fit.at_floor_everywhere)
            .count();
        let collapsed = self
            .claimed_runs()
            .filter(|r| self.scheme_of(r).fit.at_floor_below.is_some())
            .count();
        let mut parts = vec![];
        if let Some(range) = rate_range(&rates) {
            parts.push(format!(
                "{range}, claimed {claimed}: {}",
                meaning(median(&rates))
            ));
        }
        if quiet > 0 {
            parts.push(format!(
                "at the rounding floor for every ε from 1 down along {quiet} of {total} directions: it vanishes faster than any power of ε one can measure (L has no Taylor term of that order there, as a quadratic L has none past ε²)"
            ));
        }
        if collapsed > 0 {
            parts.push(format!(
                "along {collapsed} of {total} directions it falls to the rounding floor below some step faster than any power of ε: L is a polynomial of that order along them near the point (the larger steps cross a breakpoint), and vanishes faster than any power one can measure there"
            ));
        }
        if parts.is_empty() {
            parts.push(format!("no rate measured, claimed {claimed}"));
        }
        format!("{scheme} remainder in {precision}: {}", parts.join("; "))
    }

    fn rounding_note(&self, run: &Run) -> String {
        let scheme = self.scheme_of(run);
        let ladder = ladder();
        let at = match scheme.fit.rounding_index.and_then(|k| ladder.get(k)) {
            _ if scheme.fit.at_floor_everywhere => "rounding dominates at every ε".to_string(),
            _ if scheme.fit.at_floor_below.is_some() => format!(
                "the remainder collapses to the rounding floor below ‖Δw‖ ≈ {} (L is a polynomial along u there)",
                short(scheme.fit.at_floor_below.unwrap_or_default())
            ),
            Some(e) => format!("rounding takes over below ε ≈ {}", short(*e)),
            None => "truncation dominates down the whole ladder".to_string(),
        };
        let smallest = scheme
            .fit
            .smallest
            .map_or_else(|| "none".to_string(), short);
        format!(
            "direction 1{}: {at}; smallest remainder {smallest}; rounding floor {}",
            run.sizes.at_clause(),
            short(scheme.floor)
        )
    }

    fn details(&self) -> serde_json::Map<String, Value> {
        let mut map = serde_json::Map::new();
        let rates = self.rates(self.precision);
        map.insert("scheme".into(), json!(scheme_key(self.claim.scheme)));
        map.insert("precision".into(), json!(precision_name(self.precision)));
        map.insert(
            "bound".into(),
            json!({
                "op": op_symbol(self.claim.rate.op),
                "value": self.claim.rate.value,
                "tolerance": self.claim.rate.tolerance,
            }),
        );
        map.insert(
            "rate".into(),
            json!((!rates.is_empty()).then(|| median(&rates))),
        );
        map.insert("ladder".into(), json!(ladder()));
        map.insert(
            "rates".into(),
            Value::Array(self.runs.iter().map(|r| self.run_json(r)).collect()),
        );
        if let Some(run) = self.shown_run(self.precision) {
            let scheme = self.scheme_of(run);
            let ladder = ladder();
            map.insert(
                "rounding_point".into(),
                json!(scheme.fit.rounding_index.and_then(|k| ladder.get(k))),
            );
            map.insert("smallest_remainder".into(), json!(scheme.fit.smallest));
            map.insert("floor".into(), json!(scheme.floor));
        }
        let last = self.runs.last().map(|r| r.sizes.clone());
        let remainders: Vec<Value> = self
            .runs
            .iter()
            .filter(|r| Some(&r.sizes) == last.as_ref())
            .flat_map(|r| {
                [TaylorScheme::OneSided, TaylorScheme::Central].map(|s| {
                    let points = &scheme_of(r, s).points;
                    json!({
                        "sizes": crate::report::json::sizes(&r.sizes),
                        "direction": r.direction,
                        "precision": precision_name(r.precision),
                        "scheme": scheme_key(s),
                        "steps": points.iter().map(|p| p.map(|p| p.step)).collect::<Vec<_>>(),
                        "remainders": points.iter().map(|p| p.map(|p| p.remainder)).collect::<Vec<_>>(),
                    })
                })
            })
            .collect();
        map.insert("remainders".into(), Value::Array(remainders));
        map.insert(
            "second_order".into(),
            Value::Array(
                self.runs
                    .iter()
                    .filter(|r| r.precision == Precision::F64)
                    .map(second_order_json)
                    .collect(),
            ),
        );
        map.insert(
            "jacobian".into(),
            Value::Array(
                self.jacobian
                    .iter()
                    .map(|s| {
                        json!({
                            "tensor": s.tensor,
                            "source": s.claim.as_ref().map_or_else(
                                || "autodiff".to_string(),
                                |(head, line)| format!("{head} (line {line})")
                            ),
                        })
                    })
                    .collect(),
            ),
        );
        map
    }

    fn run_json(&self, run: &Run) -> Value {
        let ladder = ladder();
        let scheme = self.scheme_of(run);
        let window: Vec<f64> = scheme
            .fit
            .window
            .iter()
            .filter_map(|&k| ladder.get(k).copied())
            .collect();
        json!({
            "sizes": crate::report::json::sizes(&run.sizes),
            "direction": run.direction,
            "precision": precision_name(run.precision),
            "rate": scheme.fit.rate,
            "window": [window.first(), window.last()],
            "points": window.len(),
            "rounding_point": scheme.fit.rounding_index.and_then(|k| ladder.get(k)),
            "smallest_remainder": scheme.fit.smallest,
            "floor": scheme.floor,
            "problem": scheme.fit.problem,
        })
    }

    fn plot(&self) -> Option<Plot> {
        let ladder = ladder();
        let mut series = vec![];
        let mut shown = vec![];
        for precision in [Precision::F64, Precision::F32] {
            let Some(run) = self.shown_run(precision) else {
                continue;
            };
            shown.push(run);
            for scheme in [TaylorScheme::OneSided, TaylorScheme::Central] {
                let points: Vec<(f64, f64)> = ladder
                    .iter()
                    .zip(&scheme_of(run, scheme).points)
                    .filter_map(|(&e, p)| {
                        let r = p.as_ref()?.remainder.abs();
                        (r > 0.0 && r.is_finite()).then_some((e, r))
                    })
                    .collect();
                series.push(Series {
                    label: format!("{} ({})", scheme_name(scheme), precision_name(precision)),
                    points,
                    kind: SeriesKind::Measured,
                });
            }
        }
        let main = self.shown_run(self.precision)?;
        let claimed = self.scheme_of(main);
        // The slopes pass through the top of the fitted window: the claimed
        // scheme's, or the other's where the claimed one has none.
        let window_top = |scheme: &SchemeRun| {
            let k = *scheme.fit.window.first()?;
            let p = scheme.points.get(k)?.as_ref()?;
            Some((*ladder.get(k)?, p.remainder.abs()))
        };
        let anchor = window_top(claimed)
            .or_else(|| window_top(&main.one_sided))
            .or_else(|| window_top(&main.central));
        if let Some((e0, r0)) = anchor {
            for p in [1, 2, 3] {
                series.push(Series {
                    label: format!("slope {p}"),
                    points: [1.0, 1e-16]
                        .iter()
                        .map(|&e: &f64| (e, r0 * (e / e0).powi(p)))
                        .collect(),
                    kind: SeriesKind::Guide,
                });
            }
        }
        for run in shown {
            let floor = self.scheme_of(run).floor;
            series.push(Series {
                label: format!("rounding floor ({})", precision_name(run.precision)),
                points: vec![(1.0, floor), (1e-16, floor)],
                kind: SeriesKind::Bound,
            });
        }
        Some(Plot {
            title: format!("{} (line {})", self.outcome.head, self.outcome.line),
            name: format!(
                "line{}_taylor_{}",
                self.outcome.line,
                scheme_key(self.claim.scheme)
            ),
            x_label: "ε (step length)".to_string(),
            y_label: format!("|remainder|{}", main.sizes.at_clause()),
            log_x: true,
            log_y: true,
            series,
        })
    }
}

fn scheme_of(run: &Run, scheme: TaylorScheme) -> &SchemeRun {
    match scheme {
        TaylorScheme::OneSided => &run.one_sided,
        TaylorScheme::Central => &run.central,
    }
}

fn scheme_run(points: Vec<Option<Point>>, theoretical_floor: f64, gap: u32) -> SchemeRun {
    let floor = fit::floor(&points, theoretical_floor);
    let fit = fit_rate(&points, floor, gap);
    SchemeRun { points, floor, fit }
}

enum Judgement {
    Holds,
    Refuted,
    NoVerdict(String),
}

/// The claim against one fitted rate (see the module doc).
fn judge(fit: &Fit, claim: &TaylorClaim) -> Judgement {
    let bound = claim.rate;
    if (fit.at_floor_everywhere || fit.at_floor_below.is_some()) && bound.op != RateOp::Approx {
        // No term of any order rises above rounding: a lower bound on the
        // rate holds, an estimate of it has nothing to compare.
        return Judgement::Holds;
    }
    let Some(rate) = fit.rate else {
        return Judgement::NoVerdict(
            fit.problem
                .clone()
                .unwrap_or_else(|| "no rate measured".to_string()),
        );
    };
    let holds = match bound.op {
        RateOp::Approx => (rate - bound.value).abs() <= bound.tolerance.unwrap_or(SETTLED),
        RateOp::Gt | RateOp::Ge => {
            let whole = rate.round();
            if (rate - whole).abs() > SETTLED {
                return Judgement::NoVerdict(format!(
                    "the remainder has not settled on a rate: measured {rate:.2}, between ε^{} and ε^{}",
                    rate.floor(),
                    rate.ceil()
                ));
            }
            if bound.op == RateOp::Gt {
                whole > bound.value
            } else {
                whole >= bound.value
            }
        }
    };
    if holds {
        Judgement::Holds
    } else {
        Judgement::Refuted
    }
}

/// L along one direction: both schemes' remainders at every rung.
#[derive(Default)]
struct Ladders {
    one_sided: Vec<Option<Point>>,
    central: Vec<Option<Point>>,
}

/// Walks the ladder along each direction of `directions` in precision `T`.
/// A rung where L cannot be evaluated (a domain error at a large step) is
/// `None`; running out of time stops the walk. Every rung of every
/// direction is evaluated in one batch ([`SizeContext::losses_in_rows`]).
fn measure<T: Replayable>(
    cx: &SizeContext<'_>,
    jacobian: &Jacobian,
    directions: &[Vec<f64>],
) -> Result<Vec<Ladders>, Box<EvalError>> {
    let offsets = offsets_in_u(cx, &jacobian.layout);
    let at = |r: &Result<f64, Box<EvalError>>| match r {
        Ok(l) if l.is_finite() => Ok(Some(*l)),
        Ok(_) => Ok(None),
        Err(e) if e.is_timeout() => Err(e.clone()),
        Err(_) => Ok(None),
    };
    // Each rung's steps, reduced at once to what the remainders need, so
    // that no step vector is held: |Δw₊|, ⟨J,Δw₊⟩, and for the central
    // scheme (Δw₋ = w − (w − εu)) the mean step's |·| and ⟨J,·⟩.
    struct Rung {
        eps: f64,
        up: (f64, f64),
        mean: (f64, f64),
    }
    // A direction's rungs are reduced in one pass over w, u and J (a pass
    // per rung would read them once per rung); directions share the
    // cores. A direction's ladder ends at the first rung whose step no
    // longer changes w (every rung below it is the same).
    let eps_ladder = ladder();
    let rungs_along = |u: &Vec<f64>| -> Vec<Rung> {
        steps_along::<T>(cx.values, jacobian, u, eps_ladder)
            .into_iter()
            .zip(eps_ladder)
            .map_while(|(steps, &eps)| {
                steps.moves.then_some(Rung {
                    eps,
                    up: (steps.up_squared.sqrt(), steps.up_dot_j),
                    mean: (steps.mean_squared.sqrt(), steps.mean_dot_j),
                })
            })
            .collect()
    };
    let work = (directions.iter().map(Vec::len).sum::<usize>()).saturating_mul(eps_ladder.len());
    let rungs: Vec<Vec<Rung>> = if work >= crate::eval::HAND_OVER {
        directions.par_iter().map(rungs_along).collect()
    } else {
        directions.iter().map(rungs_along).collect()
    };
    // Each rung gives two points, w + εu and w − εu, each rounded in T
    // exactly as `perturb` rounds it; past every direction's rungs comes
    // w itself, L's value the remainders are taken from. All of them go in
    // one call, whose runs share the cores.
    // (direction, ε) of each point; the drawn point has no direction.
    let drawn = directions.len();
    let points: Vec<(usize, f64)> = rungs
        .iter()
        .enumerate()
        .flat_map(|(d, rungs)| rungs.iter().flat_map(move |r| [(d, r.eps), (d, -r.eps)]))
        .chain(std::iter::once((drawn, 0.0)))
        .collect();
    let flat = cx.flat_values();
    // The points' ε, and the runs of consecutive points along one direction
    // (start, end, direction): a row is filled a run at a time, its entry
    // of u looked up once.
    let eps_of: Vec<f64> = points.iter().map(|&(_, eps)| eps).collect();
    let mut runs: Vec<(usize, usize, usize)> = vec![];
    for (i, &(d, _)) in points.iter().enumerate() {
        match runs.last_mut() {
            Some((_, end, current)) if *current == d => *end = i + 1,
            _ => runs.push((i, i + 1, d)),
        }
    }
    let mut losses = cx.losses_in_rows::<T>(points.len(), |range, (k, p), row| {
        let w = T::constant(value_at(flat, k, p));
        let Some(o) = offsets[k] else {
            row.fill(w);
            return;
        };
        for &(start, end, d) in &runs {
            let (from, to) = (start.max(range.start), end.min(range.end));
            let (Some(slots), Some(eps)) = (
                row.get_mut(from.saturating_sub(range.start)..to.saturating_sub(range.start)),
                eps_of.get(from..to),
            ) else {
                continue;
            };
            if d == drawn {
                slots.fill(w);
                continue;
            }
            let along = directions[d].get(o + p).copied().unwrap_or(0.0);
            for (slot, &eps) in slots.iter_mut().zip(eps) {
                *slot = w + T::constant(eps * along);
            }
        }
    });
    let l0 = match losses.pop() {
        Some(l0) => l0?,
        None => {
            return Err(Box::new(EvalError::Internal {
                what: "the Taylor ladder lost its drawn point".to_string(),
            }));
        }
    };
    let mut losses = losses.chunks(2);
    let mut ladders = vec![];
    for rungs in &rungs {
        let mut ladder = Ladders {
            one_sided: vec![],
            central: vec![],
        };
        for (rung, pair) in rungs.iter().zip(losses.by_ref()) {
            let (lp, lm) = (at(&pair[0])?, at(&pair[1])?);
            ladder.one_sided.push(lp.map(|lp| Point {
                step: rung.up.0,
                remainder: (lp - l0) - rung.up.1,
            }));
            ladder.central.push(lp.zip(lm).map(|(lp, lm)| Point {
                step: rung.mean.0,
                remainder: 0.5 * (lp - lm) - rung.mean.1,
            }));
        }
        ladders.push(ladder);
    }
    Ok(ladders)
}

/// Where each tensor's elements start in u (`None` for a tensor u does not
/// move), by tensor.
fn offsets_in_u(cx: &SizeContext<'_>, layout: &[(TensorId, usize)]) -> Vec<Option<usize>> {
    let mut offsets: Vec<Option<usize>> = vec![None; cx.values.len()];
    let mut offset = 0;
    for &(id, n) in layout {
        if let Some(o) = offsets.get_mut(id.0) {
            *o = Some(offset);
        }
        offset += n;
    }
    offsets
}

/// What a rung needs of its steps Δw₊ = (w + εu) − w and
/// Δw₋ = w − (w − εu), each rounded in the working precision and taken in
/// f64 (which keeps the rounding of the inputs out of the remainder):
/// |Δw₊|², ⟨J,Δw₊⟩ and, for the mean step ½(Δw₊ + Δw₋), the same; reduced
/// element by element, so no step vector is held.
struct Steps {
    /// Whether either step changes w at all.
    moves: bool,
    up_squared: f64,
    up_dot_j: f64,
    mean_squared: f64,
    mean_dot_j: f64,
}

fn steps_along<T: Scalar>(
    values: &[ArrayD<f64>],
    jacobian: &Jacobian,
    u: &[f64],
    ladder: &[f64],
) -> Vec<Steps> {
    // Each rung's sums run over the elements in order, as a pass of its own
    // would, starting at −0 as `Iterator::sum` does. The rungs are taken
    // [`RUNG_GROUP`] at a time over every element, so that their sums can
    // stay in vector registers (sums in memory are read and written back at
    // every element); an element's update of the group is one loop the
    // compiler vectorizes. A last partial group is padded with ε = 0, and
    // the padding's sums dropped.
    let (groups, tail) = ladder.as_chunks::<RUNG_GROUP>();
    let mut steps = Vec::with_capacity(ladder.len());
    for eps in groups {
        steps.extend(rung_group::<T>(values, jacobian, u, eps));
    }
    if !tail.is_empty() {
        let mut eps = [0.0; RUNG_GROUP];
        eps[..tail.len()].copy_from_slice(tail);
        let group = rung_group::<T>(values, jacobian, u, &eps);
        steps.extend(group.into_iter().take(tail.len()));
    }
    steps
}

/// Rungs [`steps_along`] takes at once, five sums each: 16 took the least
/// CPU (A3 at N = 10⁵ on the 2-core machine, AVX-512, alternating runs: 8
/// and 32 took more, and so did five groups of 13, the 65 rungs with no
/// padding). 16 rungs' 80 sums take 10 of its 32 vector registers; a
/// machine with 16 spills some.
const RUNG_GROUP: usize = 16;

/// [`Steps`] of the rungs `eps` over every element.
fn rung_group<T: Scalar>(
    values: &[ArrayD<f64>],
    jacobian: &Jacobian,
    u: &[f64],
    eps: &[f64; RUNG_GROUP],
) -> [Steps; RUNG_GROUP] {
    // Σ|Δw₊| + |Δw₋|: not 0 where either step changes w at all (NaN too).
    let mut moves = [0.0; RUNG_GROUP];
    let mut up_squared = [-0.0; RUNG_GROUP];
    let mut up_dot_j = [-0.0; RUNG_GROUP];
    let mut mean_squared = [-0.0; RUNG_GROUP];
    let mut mean_dot_j = [-0.0; RUNG_GROUP];
    let mut offset = 0;
    for &(id, n) in &jacobian.layout {
        let Some(from) = values.get(id.0).and_then(|a| a.as_slice_memory_order()) else {
            offset += n;
            continue;
        };
        let (u, j) = (
            u.get(offset..).unwrap_or_default(),
            jacobian.flat.get(offset..).unwrap_or_default(),
        );
        // An element past u or J (none: both are as long as the tensors)
        // counts as not moved, with J = 0, as in a pass of its own.
        let zeros = std::iter::repeat(&0.0);
        let (u, j) = (u.iter().chain(zeros.clone()), j.iter().chain(zeros));
        for ((&w, &d), &j) in from.iter().zip(u).zip(j) {
            // w in the working precision, rounded here rather than held
            // as a copy of every tensor.
            let w = T::constant(w);
            let at = w.real();
            for r in 0..RUNG_GROUP {
                let up = (w + T::constant(eps[r] * d)).real() - at;
                let down = (w + T::constant(-eps[r] * d)).real() - at;
                let mean = 0.5 * (up - down);
                moves[r] += up.abs() + down.abs();
                up_squared[r] += up * up;
                up_dot_j[r] += j * up;
                mean_squared[r] += mean * mean;
                mean_dot_j[r] += j * mean;
            }
        }
        offset += n;
    }
    std::array::from_fn(|r| Steps {
        moves: moves[r] != 0.0,
        up_squared: up_squared[r],
        up_dot_j: up_dot_j[r],
        mean_squared: mean_squared[r],
        mean_dot_j: mean_dot_j[r],
    })
}

/// [`second_order`] along each direction: the hyper-dual passes of all of
/// them in replays of L's recording, a direction per lane (spread over the
/// cores), and by the evaluator where a replay declines.
fn second_orders(
    cx: &SizeContext<'_>,
    jacobian: &Jacobian,
    directions: &[Vec<f64>],
) -> Result<Vec<SecondOrder>, Box<EvalError>> {
    let replay = f64::replay(cx).filter(|r| r.lanes_match_evaluator());
    let replayed: Vec<Option<Lane<HyperDual64>>> = match replay {
        Some(replay) => {
            let offsets = offsets_in_u(cx, &jacobian.layout);
            let flat = cx.flat_values();
            let width = directions
                .len()
                .div_ceil(rayon::current_num_threads())
                .max(1);
            let run = |chunk: &[Vec<f64>]| {
                replay.run_lanes(
                    chunk.len(),
                    |c| Lane(HyperDual64::from(c)),
                    |(k, p), row| {
                        let w = value_at(flat, k, p);
                        for (slot, u) in row.iter_mut().zip(chunk) {
                            let d = offsets[k]
                                .and_then(|o| u.get(o + p))
                                .copied()
                                .unwrap_or(0.0);
                            *slot = Lane(HyperDual64::new(w, d, d, 0.0));
                        }
                    },
                )
            };
            if replay.len().saturating_mul(directions.len()) >= crate::eval::HAND_OVER {
                directions.par_chunks(width).flat_map_iter(run).collect()
            } else {
                directions.chunks(width).flat_map(run).collect()
            }
        }
        None => vec![None; directions.len()],
    };
    replayed
        .into_iter()
        .zip(directions)
        .map(|(l, u)| match l {
            Some(Lane(l)) => Ok(SecondOrder {
                predicted: 0.5 * l.eps1eps2,
                first_order_gap: l.eps1 - dot(&jacobian.flat, u),
            }),
            None => second_order(cx, jacobian, u),
        })
        .collect()
}

/// ½⟨u,Hu⟩ and ⟨∇L − J, u⟩ in one hyper-dual pass (ε₁ = ε₂ = u).
fn second_order(
    cx: &SizeContext<'_>,
    jacobian: &Jacobian,
    u: &[f64],
) -> Result<SecondOrder, Box<EvalError>> {
    let mut lifted: Vec<ArrayD<HyperDual64>> = cx
        .values
        .iter()
        .map(|a| a.mapv(|v| HyperDual64::new(v, 0.0, 0.0, 0.0)))
        .collect();
    let mut offset = 0;
    for &(id, n) in &jacobian.layout {
        if let Some(slice) = lifted
            .get_mut(id.0)
            .and_then(|a| a.as_slice_memory_order_mut())
        {
            for (i, x) in slice.iter_mut().enumerate() {
                let d = u.get(offset + i).copied().unwrap_or(0.0);
                *x = HyperDual64::new(x.re, d, d, 0.0);
            }
        }
        offset += n;
    }
    let l = cx.instance.evaluation(&lifted).loss_alone()?;
    Ok(SecondOrder {
        predicted: 0.5 * l.eps1eps2,
        first_order_gap: l.eps1 - dot(&jacobian.flat, u),
    })
}

/// The first `count` of the random unit directions a size's Taylor runs
/// take, over the `total` elements of J's layout: the same whoever draws
/// them, and the first the same however many are drawn.
pub(crate) fn directions(cx: &SizeContext<'_>, total: usize, count: usize) -> Vec<Vec<f64>> {
    directions_from(cx, total, 0..count)
}

/// Directions `which` of [`directions`]: each is drawn from the point of
/// the stream where drawing the ones before it leaves the generator, so
/// a direction drawn elsewhere need not be drawn again.
fn directions_from(
    cx: &SizeContext<'_>,
    total: usize,
    which: std::ops::Range<usize>,
) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(crate::eval::stream_seed(
        cx.options.seed,
        "taylor directions",
        cx.instance.sizes.values(),
    ));
    crate::eval::distribution::skip_standard_normals(&mut rng, which.start.saturating_mul(total));
    which.map(|_| unit_direction(&mut rng, total)).collect()
}

/// The Taylor directions over J's `layout`: the first from the probes'
/// first round where it drew it for the same layout (about 30 ms at
/// A3, N = 10⁶), the others drawn here first, while the first round may
/// still be under way on another thread.
fn taylor_directions(
    cx: &SizeContext<'_>,
    layout: &[(TensorId, usize)],
    total: usize,
) -> Vec<Vec<f64>> {
    let others = directions_from(cx, total, 1..DIRECTIONS);
    let first = match cx.first_probe_round().take_rounding_direction(layout) {
        Some(first) => vec![first],
        None => directions_from(cx, total, 0..1),
    };
    first.into_iter().chain(others).collect()
}

/// J's layout where J is defined: every differentiable tensor with its
/// elements, in order.
pub(crate) fn layout_of(cx: &SizeContext<'_>) -> Vec<(TensorId, usize)> {
    super::derivation::differentiable_shapes(cx.instance, cx.values)
        .into_iter()
        .enumerate()
        .filter_map(|(k, n)| Some((TensorId(k), n?)))
        .collect()
}

/// The points L's rounding is measured at: w + εu for ε in
/// [`RoundingPoints::STEPS`], rounded to f32, so that L takes the same
/// point in both precisions.
pub(crate) struct RoundingPoints<'s> {
    flat: &'s [&'s [f64]],
    /// Where each tensor's elements start in u (see [`offsets_in_u`]).
    offsets: Vec<Option<usize>>,
    u: &'s [f64],
}

impl<'s> RoundingPoints<'s> {
    /// One point per ε of [`ROUNDING_STEPS`].
    pub(crate) const STEPS: usize = ROUNDING_STEPS.len();

    pub(crate) fn new(cx: &'s SizeContext<'_>, layout: &[(TensorId, usize)], u: &'s [f64]) -> Self {
        Self {
            flat: cx.flat_values(),
            offsets: offsets_in_u(cx, layout),
            u,
        }
    }

    /// Points over `flat` along `u`, each tensor's elements starting at
    /// `offsets` in u.
    #[cfg(test)]
    pub(crate) fn over(flat: &'s [&'s [f64]], offsets: Vec<Option<usize>>, u: &'s [f64]) -> Self {
        Self { flat, offsets, u }
    }

    /// Element `p` of tensor `k` at every point, given its drawn value.
    pub(crate) fn row_from(&self, drawn: f64, k: usize, p: usize) -> [f64; ROUNDING_STEPS.len()] {
        let w = f32::constant(drawn);
        let along = (self.offsets.get(k).copied().flatten())
            .map(|o| self.u.get(o + p).copied().unwrap_or(0.0));
        ROUNDING_STEPS.map(|eps| match along {
            Some(along) => f64::from(w + f32::constant(eps * along)),
            None => f64::from(w),
        })
    }
}

impl Points for RoundingPoints<'_> {
    fn value(&self, point: usize, k: usize, p: usize) -> f64 {
        let row = self.row_from(value_at(self.flat, k, p), k, p);
        row.get(point).copied().unwrap_or(f64::NAN)
    }

    /// An element's points are made at once.
    fn fill<T: Replayable>(
        &self,
        points: std::ops::Range<usize>,
        (k, p): (usize, usize),
        row: &mut [T],
    ) {
        let values = self.row_from(value_at(self.flat, k, p), k, p);
        for (slot, v) in row.iter_mut().zip(values.get(points).unwrap_or_default()) {
            *slot = T::of(*v);
        }
    }
}

/// M of the floor ε_p·M (see the module doc): the larger of √n·Σ|terms of L|
/// and L's rounding error measured in f32 against f64, in units of ε₃₂.
/// The measurement's points are made with the probes' first round where it
/// made them (see [`super::grad::FirstRound`]), else here.
fn rounding_magnitude(cx: &SizeContext<'_>, layout: &[(TensorId, usize)], u: &[f64]) -> f64 {
    let theoretical = cx.terms.sqrt() * cx.loss_magnitude;
    let [l64, l32] = cx.first_probe_round().rounding(layout).unwrap_or_else(|| {
        cx.losses_in_both(RoundingPoints::STEPS, RoundingPoints::new(cx, layout, u))
    });
    let mut measured: f64 = 0.0;
    for (a, b) in l32.into_iter().zip(l64) {
        if let (Ok(a), Ok(b)) = (a, b)
            && (a - b).is_finite()
        {
            measured = measured.max((a - b).abs() / f64::from(f32::EPSILON));
        }
    }
    theoretical.max(measured)
}

/// The claimed gradient of one tensor at every element, row-major, added
/// to `into`: the closed form of J over the tensor's elements, computed in
/// double-double and rounded to f64: J's own rounding (a true 0 computed as
/// 1e-14 from cancelling terms) would otherwise read as a first-order
/// remainder, |δJ·Δw| ∝ ε, and pass for a wrong gradient.
fn closed_form(
    cx: &SizeContext<'_>,
    evaluation: &crate::eval::Evaluation<'_, Dd>,
    target: TensorId,
    body: &Body,
    slots: usize,
    var_names: &[String],
    into: &mut Vec<f64>,
) -> Result<(), String> {
    let grid = cx.instance.tensor_grid(target);
    let mut frame = Frame::new(var_names, slots);
    let claimed = evaluation.body_everywhere(body, grid, var_names, slots);
    let mut errors = claimed.errors.into_iter().peekable();
    for (k, value) in claimed.values.into_iter().enumerate() {
        if let Some((_, e)) = errors.next_if(|(at, _)| *at == k) {
            return Err(e.to_string());
        }
        let v = value.to_f64();
        if !v.is_finite() {
            frame.set_point(&grid.point(k));
            return Err(format!(
                "it is {} at {}",
                format_value(v),
                frame.describe(&cx.instance.sizes)
            ));
        }
        into.push(v);
    }
    Ok(())
}

fn machine_epsilon(precision: Precision) -> f64 {
    match precision {
        Precision::F64 => f64::EPSILON,
        Precision::F32 => f64::from(f32::EPSILON),
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]),
    }
}

/// `rate 2.00` or `rates 1.98–2.01 over 24 directions`.
fn rate_range(rates: &[f64]) -> Option<String> {
    let lo = rates.iter().copied().min_by(f64::total_cmp)?;
    let hi = rates.iter().copied().max_by(f64::total_cmp)?;
    Some(
        if rates.len() == 1 || format!("{lo:.2}") == format!("{hi:.2}") {
            format!(
                "rate {lo:.2} over {} direction{}",
                rates.len(),
                plural(rates.len())
            )
        } else {
            format!("rates {lo:.2} to {hi:.2} over {} directions", rates.len())
        },
    )
}

/// What a rate says about the gradient, in a student's words.
fn meaning(rate: f64) -> String {
    let whole = rate.round();
    if (rate - whole).abs() > SETTLED {
        return format!("the remainder shrinks like ε^{rate:.1}, no whole power yet");
    }
    match whole as i64 {
        i64::MIN..=0 => "the remainder does not shrink: L or J is broken".to_string(),
        1 => "remainder shrinks like ε¹: the gradient is wrong".to_string(),
        2 => "remainder shrinks like ε²: the gradient is right to first order".to_string(),
        3 => {
            "remainder shrinks like ε³: the gradient is right, and the ε² terms cancel".to_string()
        }
        p => format!("remainder shrinks like ε^{p}: the gradient is right"),
    }
}

fn second_order_note(run: &Run) -> Option<String> {
    let ladder = ladder();
    let fit = &run.one_sided.fit;
    let measured_at = |k: usize| -> Option<(f64, f64)> {
        let p = run.one_sided.points.get(k)?.as_ref()?;
        Some((*ladder.get(k)?, p.remainder / (p.step * p.step)))
    };
    let top = fit.window.first().and_then(|&k| measured_at(k))?;
    let foot = fit.window.last().and_then(|&k| measured_at(k))?;
    let predicted = run.second_order.predicted;
    let gap = run.second_order.first_order_gap;
    let tail = if fit.rate.is_some_and(|r| r.round() <= 1.0) {
        format!(
            ": it grows as ε shrinks, because ⟨∇L − J, u⟩ = {} leaves a first-order term",
            format_value(gap)
        )
    } else {
        String::new()
    };
    Some(format!(
        "second order (eq. 7): ½⟨Δw,HΔw⟩/ε² = {} predicted; one-sided remainder/ε² = {} at ε = {}, {} at ε = {}{tail}",
        format_value(predicted),
        format_value(top.1),
        short(top.0),
        format_value(foot.1),
        short(foot.0)
    ))
}

fn second_order_json(run: &Run) -> Value {
    let ladder = ladder();
    let measured: Vec<Value> = run
        .one_sided
        .fit
        .window
        .iter()
        .filter_map(|&k| {
            let p = run.one_sided.points.get(k)?.as_ref()?;
            Some(json!([ladder.get(k)?, p.remainder / (p.step * p.step)]))
        })
        .collect();
    json!({
        "sizes": crate::report::json::sizes(&run.sizes),
        "direction": run.direction,
        "predicted": run.second_order.predicted,
        "measured": measured,
        "first_order_gap": run.second_order.first_order_gap,
    })
}

fn describe_bound(claim: &TaylorClaim) -> String {
    let b = claim.rate;
    match (b.op, b.tolerance) {
        (RateOp::Approx, Some(t)) => format!("≈ {} ± {}", b.value, t),
        (op, _) => format!("{} {}", op_symbol(op), b.value),
    }
}

fn op_symbol(op: RateOp) -> &'static str {
    match op {
        RateOp::Gt => ">",
        RateOp::Ge => ">=",
        RateOp::Approx => "≈",
    }
}

pub fn scheme_key(scheme: TaylorScheme) -> &'static str {
    match scheme {
        TaylorScheme::OneSided => "one_sided",
        TaylorScheme::Central => "central",
    }
}

fn scheme_name(scheme: TaylorScheme) -> &'static str {
    match scheme {
        TaylorScheme::OneSided => "one-sided",
        TaylorScheme::Central => "central",
    }
}

pub fn precision_name(precision: Precision) -> &'static str {
    match precision {
        Precision::F64 => "f64",
        Precision::F32 => "f32",
    }
}

/// The head of a Taylor claim as reports show it: `taylor central rate > 2`.
pub fn head(claim: &TaylorClaim) -> String {
    let precision = match claim.precision {
        Some(p) => format!(" precision {}", precision_name(p)),
        None => String::new(),
    };
    format!(
        "taylor {} rate {}{precision}",
        scheme_key(claim.scheme),
        describe_bound(claim)
    )
}

fn short(v: f64) -> String {
    format!("{v:.1e}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::analysis::program::RateBound;

    /// The Taylor directions a claim takes, its first from the probes'
    /// first round where that drew it, are those it would draw all
    /// itself, bit for bit; the first round gives its direction once, and
    /// only for its own layout.
    #[test]
    fn directions_taken_partly_from_the_first_round_are_the_ones_drawn() {
        let bits = |d: &[Vec<f64>]| -> Vec<Vec<u64>> {
            d.iter()
                .map(|u| u.iter().map(|x| x.to_bits()).collect())
                .collect()
        };
        let mut shared = 0;
        crate::verify::context::tests::for_each_context(|path, cx| {
            let layout = layout_of(cx);
            let total: usize = layout.iter().map(|(_, n)| n).sum();
            if total == 0 {
                return;
            }
            let drawn = directions(cx, total, DIRECTIONS);
            let mut other = layout.clone();
            other.pop();
            assert!(
                cx.first_probe_round()
                    .take_rounding_direction(&other)
                    .is_none(),
                "{path:?}: given for another layout"
            );
            let offered = cx.first_probe_round().rounding(&layout).is_some();
            assert_eq!(
                bits(&taylor_directions(cx, &layout, total)),
                bits(&drawn),
                "{path:?}"
            );
            assert!(
                cx.first_probe_round()
                    .take_rounding_direction(&layout)
                    .is_none(),
                "{path:?}: given twice"
            );
            shared += usize::from(offered);
            assert_eq!(
                bits(&directions_from(cx, total, 1..DIRECTIONS)),
                bits(&drawn[1..]),
                "{path:?}"
            );
        });
        assert!(shared > 50, "{shared}");
    }

    fn claim(op: RateOp, value: f64, tolerance: Option<f64>) -> TaylorClaim {
        TaylorClaim {
            scheme: TaylorScheme::OneSided,
            rate: RateBound {
                op,
                value,
                tolerance,
            },
            precision: None,
        }
    }

    fn fitted(rate: f64) -> Fit {
        Fit {
            rate: Some(rate),
            ..Fit::default()
        }
    }

    /// Each rung's steps as a pass of its own over the elements gives them.
    fn steps_of_one_rung<T: Scalar>(
        values: &[ArrayD<f64>],
        jacobian: &Jacobian,
        u: &[f64],
        eps: f64,
    ) -> [f64; 5] {
        let mut sums = [0.0, -0.0, -0.0, -0.0, -0.0];
        let mut offset = 0;
        for &(id, n) in &jacobian.layout {
            for (i, &w) in values[id.0].iter().enumerate() {
                let (d, j) = (u[offset + i], jacobian.flat[offset + i]);
                let w = T::constant(w);
                let up = (w + T::constant(eps * d)).real() - w.real();
                let down = (w + T::constant(-eps * d)).real() - w.real();
                let mean = 0.5 * (up - down);
                for (sum, term) in sums.iter_mut().zip([
                    up.abs() + down.abs(),
                    up * up,
                    j * up,
                    mean * mean,
                    j * mean,
                ]) {
                    *sum += term;
                }
            }
            offset += n;
        }
        sums
    }

    /// The rounding points are w + εu for ε = 0, ±1, ±0.1, ±0.01 in that
    /// order, each term rounded to f32 and the sum taken in f32; a tensor
    /// outside u is only rounded.
    #[test]
    fn rounding_points_are_the_drawn_point_moved_in_f32() {
        let (w, u) = ([0.3, -1.7], [0.6, -0.8]);
        let flat: [&[f64]; 2] = [&w, &[2.1]];
        let points = RoundingPoints {
            flat: &flat,
            offsets: vec![Some(0), None],
            u: &u,
        };
        let steps = [0.0, 1.0, -1.0, 0.1, -0.1, 0.01, -0.01];
        assert_eq!(RoundingPoints::STEPS, steps.len());
        for (point, eps) in steps.into_iter().enumerate() {
            for p in 0..2 {
                let expected = f64::from(w[p] as f32 + (eps * u[p]) as f32);
                assert_eq!(points.value(point, 0, p).to_bits(), expected.to_bits());
            }
            assert_eq!(points.value(point, 1, 0), f64::from(2.1f32));
        }
    }

    #[test]
    fn rungs_taken_in_groups_sum_as_a_pass_per_rung_would() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // Two tensors, the second not a multiple of anything; w spans
        // magnitudes, so that the small rungs move some elements only.
        let sizes = [37, 5];
        let values: Vec<ArrayD<f64>> = sizes
            .iter()
            .map(|&n| {
                ArrayD::from_shape_fn(ndarray::IxDyn(&[n]), |_| {
                    rng.random_range(-1.0..1.0) * 10f64.powi(rng.random_range(-8..3))
                })
            })
            .collect();
        let total: usize = sizes.iter().sum();
        let jacobian = Jacobian {
            flat: (0..total).map(|_| rng.random_range(-2.0..2.0)).collect(),
            layout: vec![(TensorId(0), sizes[0]), (TensorId(1), sizes[1])],
        };
        let u: Vec<f64> = (0..total).map(|_| rng.random_range(-0.5..0.5)).collect();
        let bits =
            |s: &Steps| [s.up_squared, s.up_dot_j, s.mean_squared, s.mean_dot_j].map(f64::to_bits);
        // The ladder, ending in a partial group, and cut to whole groups.
        let whole = ladder();
        assert_ne!(whole.len() % RUNG_GROUP, 0);
        let cut = &whole[..whole.len() / RUNG_GROUP * RUNG_GROUP];
        for ladder in [whole, cut] {
            let grouped = (
                steps_along::<f64>(&values, &jacobian, &u, ladder),
                steps_along::<f32>(&values, &jacobian, &u, ladder),
            );
            assert_eq!(grouped.0.len(), ladder.len());
            assert_eq!(grouped.1.len(), ladder.len());
            let mut still = 0;
            for (r, &eps) in ladder.iter().enumerate() {
                let one_rung = [
                    steps_of_one_rung::<f64>(&values, &jacobian, &u, eps),
                    steps_of_one_rung::<f32>(&values, &jacobian, &u, eps),
                ];
                for (steps, alone) in [&grouped.0[r], &grouped.1[r]].into_iter().zip(one_rung) {
                    assert_eq!(steps.moves, alone[0] != 0.0, "rung {r}");
                    let expected = [1, 2, 3, 4].map(|k| alone[k].to_bits());
                    assert_eq!(bits(steps), expected, "rung {r}");
                    still += usize::from(!steps.moves);
                }
            }
            // The ladder's foot stands still in f32 at least: both
            // branches of `moves` are compared.
            assert!(still > 0);
        }
        // No elements: every sum is −0, where `Iterator::sum` starts.
        let empty = Jacobian {
            flat: vec![],
            layout: vec![],
        };
        for steps in steps_along::<f64>(&values, &empty, &[], whole) {
            assert!(!steps.moves);
            assert_eq!(bits(&steps), [(-0.0f64).to_bits(); 4]);
        }
    }

    #[test]
    fn a_lower_bound_compares_the_whole_number_the_rate_settled_on() {
        let gt1 = claim(RateOp::Gt, 1.0, None);
        assert!(matches!(judge(&fitted(1.97), &gt1), Judgement::Holds));
        assert!(matches!(judge(&fitted(1.04), &gt1), Judgement::Refuted));
        // Halfway between ε¹ and ε²: no verdict either way.
        assert!(matches!(judge(&fitted(1.5), &gt1), Judgement::NoVerdict(_)));
        let ge3 = claim(RateOp::Ge, 3.0, None);
        assert!(matches!(judge(&fitted(2.9), &ge3), Judgement::Holds));
        assert!(matches!(judge(&fitted(2.1), &ge3), Judgement::Refuted));
    }

    #[test]
    fn an_estimate_compares_the_fitted_rate_within_its_tolerance() {
        let approx = claim(RateOp::Approx, 2.0, Some(0.1));
        assert!(matches!(judge(&fitted(2.08), &approx), Judgement::Holds));
        assert!(matches!(judge(&fitted(2.15), &approx), Judgement::Refuted));
    }

    #[test]
    fn a_remainder_at_the_floor_everywhere_satisfies_lower_bounds_only() {
        let quiet = Fit {
            at_floor_everywhere: true,
            problem: Some("rounding dominates everywhere".to_string()),
            ..Fit::default()
        };
        assert!(matches!(
            judge(&quiet, &claim(RateOp::Gt, 2.0, None)),
            Judgement::Holds
        ));
        assert!(matches!(
            judge(&quiet, &claim(RateOp::Approx, 3.0, Some(0.25))),
            Judgement::NoVerdict(_)
        ));
    }
}
