//! `claim minimize OBJ over VARS subject to CONSTRAINTS at (POINT)` (and
//! `maximize`): at every point of the claim's free indices, the claimed
//! choice of the varied names is feasible and no feasible alternative does
//! better.
//!
//! An alternative replaces what the spec computes (a `let`), draws (an
//! input or param) or fixes (a hyper) for each varied name; everything that
//! depends on them, random laws included, is computed anew. The
//! alternatives, drawn from a generator seeded by the seed, the claim and
//! the size, around the claimed point c at the scale s = max(1, |c|∞):
//! - **perturbations**: c ± ε·s along every axis and along random unit
//!   directions, ε from 10⁻¹ down to 10⁻⁵;
//! - **random points**: c + s·r·u, u uniform in the unit cube, r
//!   log-uniform in [10⁻², 10];
//! - **boundary points**: from c (and from feasible random points) along
//!   random directions to where the first constraint stops holding,
//!   located by bisection: a point on that constraint's boundary. An
//!   infeasible perturbation or random point is pulled back to the boundary
//!   the same way.
//!
//! Objectives and constraints are compared as `verify::stochastic` compares
//! values: exact objectives up to rounding; sampled ones only where their
//! intervals part, at a level that accounts for every comparison the claim
//! makes. A candidate whose feasibility cannot be settled is skipped; a
//! claimed point whose feasibility cannot be settled leaves the claim
//! undecided.

use ndarray::ArrayD;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::ClaimCheck;
use super::context::SizeContext;
use super::grad::{record_mismatches, record_problems, unit_direction};
use super::outcome::*;
use super::stochastic::{
    Judge, Judgement, MethodTally, MomentEngine, Operand, claim_grid, compare,
    cond_contains_moment, critical_z, describe_point, failed_points, points_over_sweep,
};
use crate::analysis::program::*;
use crate::analysis::{Sizes, for_each_cond_expr};
use crate::eval::random::Laws;
use crate::eval::{EvalError, Evaluation, Frame, format_value, stream_seed};
use crate::report::plural;
use crate::source::Span;
use crate::syntax::ast::{CompareOp, Sense};

/// Step sizes of the perturbations, relative to the scale of the point.
const PERTURBATIONS: [f64; 5] = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5];
/// Random directions per step size.
const DIRECTIONS: usize = 6;
/// Random points in the box around the claimed point.
const RANDOM_POINTS: usize = 48;
/// Walks to the boundary along random directions.
const BOUNDARY_WALKS: usize = 24;
/// Bisection steps to locate a boundary.
const BISECTIONS: usize = 30;
/// An upper bound on the alternatives compared per point, for the level.
const ALTERNATIVES: usize = 2 * 8 * PERTURBATIONS.len()
    + DIRECTIONS * PERTURBATIONS.len() * 2
    + RANDOM_POINTS * 2
    + BOUNDARY_WALKS;

/// The best alternative found against the claimed point.
#[derive(Clone, Debug)]
struct Counterexample {
    sizes: Sizes,
    point: Vec<i64>,
    at: Vec<f64>,
    objective: f64,
    claimed_at: Vec<f64>,
    claimed_objective: f64,
    improvement: f64,
}

pub struct OptimumCheck<'p> {
    claim: &'p OptimumClaim,
    claim_start: usize,
    outcome: ClaimOutcome,
    budget: Option<(usize, f64)>,
    tally: MethodTally,
    points_checked: usize,
    alternatives: usize,
    boundary_points: usize,
    best: Option<Counterexample>,
    infeasible: Vec<String>,
    claimed: Vec<Value>,
    unsettled: Option<String>,
}

impl<'p> OptimumCheck<'p> {
    pub fn new(claim: &'p OptimumClaim, span: Span, outcome: ClaimOutcome) -> Self {
        Self {
            claim,
            claim_start: span.start,
            outcome,
            budget: None,
            tally: MethodTally::default(),
            points_checked: 0,
            alternatives: 0,
            boundary_points: 0,
            best: None,
            infeasible: vec![],
            claimed: vec![],
            unsettled: None,
        }
    }
}

/// The values of one candidate: an evaluation with the varied names replaced.
struct Candidate<'c> {
    evaluation: Evaluation<'c, f64>,
    laws: Laws,
}

/// What a candidate came to at the points searched together.
enum Assessed {
    /// Feasible: the objective at each point.
    Feasible(Vec<Operand>),
    /// Some constraint is false at it (or its laws are out of their domain).
    Infeasible,
    /// Feasibility or the objective could not be settled.
    Unsettled(String),
    /// The objective is undefined at a point: the evaluator's error.
    Undefined(Vec<i64>, Box<EvalError>),
}

/// What a search needs at one size.
struct Search<'s, 'c> {
    claim: &'s OptimumClaim,
    cx: &'s SizeContext<'c>,
    stochastic: Vec<bool>,
    /// Definitions recomputed for a candidate: the varied lets and all that
    /// read a varied name.
    stale: Vec<bool>,
    /// What the claim reads, through definitions: the definitions and the
    /// random tensors a candidate needs (the rest is never looked at).
    needed: Needed,
    /// The definitions in the order they are computed.
    order: Vec<DefId>,
    z: f64,
    log_term: f64,
    stream: u64,
}

impl<'c> Search<'_, 'c> {
    fn candidate<'v>(
        &self,
        x: &[f64],
        values: &'v mut Vec<ArrayD<f64>>,
        hypers: &'v mut Vec<f64>,
        with_laws: bool,
    ) -> Result<Candidate<'v>, String>
    where
        'c: 'v,
    {
        // The tensors are copied only where the search varies one: a search
        // runs thousands of candidates, most over lets and hypers alone.
        let varies_tensor = self
            .claim
            .over
            .iter()
            .any(|v| matches!(v.what, VariedKind::Tensor(_)));
        if varies_tensor {
            *values = self.cx.values.to_vec();
        }
        hypers.clear();
        hypers.extend_from_slice(self.cx.instance.hypers());
        for (v, &xj) in self.claim.over.iter().zip(x) {
            match v.what {
                VariedKind::Tensor(t) => {
                    if let Some(slot) = values.get_mut(t.0).and_then(|a| a.iter_mut().next()) {
                        *slot = xj;
                    }
                }
                VariedKind::Hyper(h) => {
                    if let Some(slot) = hypers.get_mut(h.0) {
                        *slot = xj;
                    }
                }
                VariedKind::Def(_) => {}
            }
        }
        let tensors: &'v [ArrayD<f64>] = if varies_tensor {
            values
        } else {
            self.cx.values
        };
        let mut evaluation = self.cx.evaluation.rebase(tensors, hypers, &self.stale);
        let mut given = vec![false; self.stale.len()];
        for (v, &xj) in self.claim.over.iter().zip(x) {
            if let VariedKind::Def(d) = v.what {
                evaluation.provide(d, vec![xj]);
                if let Some(g) = given.get_mut(d.0) {
                    *g = true;
                }
            }
        }
        // Only what the claim reads, in order; stochastic lets are inlined
        // into tapes, never computed whole.
        for &DefId(k) in &self.order {
            let stale = self.stale.get(k).copied().unwrap_or(false);
            let wanted = self.needed.defs.get(k).copied().unwrap_or(false);
            let stochastic = self.stochastic.get(k).copied().unwrap_or(false);
            if stale && wanted && !stochastic && !given[k] {
                evaluation
                    .compute_local(DefId(k))
                    .map_err(|e| e.to_string())?;
            }
        }
        // Deterministic constraints need no laws: feasibility checks skip them.
        let laws = if with_laws {
            Laws::of_tensors(&evaluation, |t| {
                self.needed.tensors.get(t.0).copied().unwrap_or(false)
            })
            .map_err(|e| e.to_string())?
        } else {
            Laws::default()
        };
        Ok(Candidate { evaluation, laws })
    }

    fn judge<'j>(&'j self, candidate: &'j Candidate<'j>) -> Judge<'j, 'j> {
        Judge {
            engine: MomentEngine {
                evaluation: &candidate.evaluation,
                laws: &candidate.laws,
                stochastic: &self.stochastic,
                samples: self.cx.options.samples,
                deadline: self.cx.instance.deadline(),
                cancel: self.cx.instance.cancel_token(),
                log_term: self.log_term,
            },
            z: self.z,
            stream: self.stream,
            decided: vec![],
            precise: None,
        }
    }

    /// Feasibility at the first point, then the objective at every point.
    fn assess(&self, x: &[f64], points: &[Vec<i64>], tally: &mut MethodTally) -> Assessed {
        let (mut values, mut hypers) = (vec![], vec![]);
        let candidate = match self.candidate(x, &mut values, &mut hypers, true) {
            Ok(c) => c,
            // Out of the laws' domains or undefined: not an alternative.
            Err(_) => return Assessed::Infeasible,
        };
        let mut judge = self.judge(&candidate);
        let var_names = &self.claim.points.var_names;
        let mut frame = Frame::new(var_names, self.claim.points.slots);
        if let Some(first) = points.first() {
            frame.set_point(first);
        }
        for constraint in &self.claim.subject_to {
            match judge.condition(constraint, &mut frame) {
                Judgement::Holds => {}
                Judgement::Refuted | Judgement::Undefined(_) => return Assessed::Infeasible,
                Judgement::Unsettled(why) => return Assessed::Unsettled(why),
            }
        }
        let mut objectives = vec![];
        for point in points {
            frame.set_point(point);
            match judge.operand(&self.claim.objective, &mut frame) {
                Ok(o) => {
                    if let Some((_, m)) = o.moment {
                        tally.add(m.method);
                    }
                    objectives.push(o);
                }
                Err(Judgement::Undefined(e)) => return Assessed::Undefined(point.clone(), e),
                Err(Judgement::Unsettled(why)) => return Assessed::Unsettled(why),
                Err(_) => return Assessed::Unsettled("the objective has no value".to_string()),
            }
        }
        Assessed::Feasible(objectives)
    }

    /// Whether a candidate satisfies every constraint (unsettled counts as not).
    fn feasible(&self, x: &[f64], point: &[i64]) -> bool {
        let (mut values, mut hypers) = (vec![], vec![]);
        let with_laws = self.claim.subject_to.iter().any(cond_contains_moment);
        let Ok(candidate) = self.candidate(x, &mut values, &mut hypers, with_laws) else {
            return false;
        };
        let mut judge = self.judge(&candidate);
        let mut frame = Frame::new(&self.claim.points.var_names, self.claim.points.slots);
        frame.set_point(point);
        self.claim
            .subject_to
            .iter()
            .all(|c| matches!(judge.condition(c, &mut frame), Judgement::Holds))
    }

    /// The claimed point, evaluated with the spec's own values.
    fn claimed(&self, point: &[i64]) -> Result<Vec<f64>, Box<EvalError>> {
        let mut frame = Frame::new(&self.claim.points.var_names, self.claim.points.slots);
        frame.set_point(point);
        self.claim
            .at
            .iter()
            .map(|e| self.cx.evaluation.node(e, &mut frame))
            .collect()
    }

    /// The farthest feasible point on the segment from feasible `from` towards `to`.
    fn boundary(&self, from: &[f64], to: &[f64], point: &[i64]) -> Vec<f64> {
        let at =
            |t: f64| -> Vec<f64> { from.iter().zip(to).map(|(a, b)| a + t * (b - a)).collect() };
        let (mut lo, mut hi) = (0.0, 1.0);
        for _ in 0..BISECTIONS {
            let mid = 0.5 * (lo + hi);
            if self.feasible(&at(mid), point) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        at(lo)
    }

    /// The alternatives to compare with the claimed point `c`.
    fn alternatives(
        &self,
        c: &[f64],
        point: &[i64],
        rng: &mut ChaCha8Rng,
    ) -> Vec<(Vec<f64>, bool)> {
        let d = c.len();
        let scale = c.iter().fold(1.0_f64, |m, v| m.max(v.abs()));
        let mut out: Vec<(Vec<f64>, bool)> = vec![];
        let push_pulled = |search: &Self, x: Vec<f64>, out: &mut Vec<(Vec<f64>, bool)>| {
            if search.feasible(&x, point) {
                out.push((x, false));
            } else {
                out.push((search.boundary(c, &x, point), true));
            }
        };
        for eps in PERTURBATIONS {
            for j in 0..d {
                for sign in [1.0, -1.0] {
                    let mut x = c.to_vec();
                    x[j] += sign * eps * scale;
                    push_pulled(self, x, &mut out);
                }
            }
            for _ in 0..DIRECTIONS {
                let u = unit_direction(rng, d);
                let x: Vec<f64> = c.iter().zip(&u).map(|(a, b)| a + eps * scale * b).collect();
                push_pulled(self, x, &mut out);
            }
        }
        let mut feasible_random = vec![];
        for _ in 0..RANDOM_POINTS {
            let r = scale * 10f64.powf(rng.random_range(-2.0..1.0));
            let x: Vec<f64> = c
                .iter()
                .map(|a| a + r * rng.random_range(-1.0..1.0))
                .collect();
            if self.feasible(&x, point) {
                feasible_random.push(x.clone());
                out.push((x, false));
            } else {
                out.push((self.boundary(c, &x, point), true));
            }
        }
        for k in 0..BOUNDARY_WALKS {
            let from = feasible_random
                .get(k % 2 * (k / 2))
                .cloned()
                .unwrap_or_else(|| c.to_vec());
            let u = unit_direction(rng, d);
            // Walk out until infeasible, then bisect back to the boundary.
            let mut step = 1e-3 * scale;
            let mut far = None;
            for _ in 0..24 {
                let x: Vec<f64> = from.iter().zip(&u).map(|(a, b)| a + step * b).collect();
                if !self.feasible(&x, point) {
                    far = Some(x);
                    break;
                }
                step *= 2.0;
            }
            if let Some(far) = far {
                out.push((self.boundary(&from, &far, point), true));
            }
        }
        out
    }
}

/// Whether the claim's constraints and claimed point use its free indices:
/// if not, one search serves every point.
fn depends_on_points(claim: &OptimumClaim) -> bool {
    let free = claim.points.axes.len();
    let mut uses = false;
    let mut look = |n: &Node| {
        crate::analysis::visit(n, &mut |node| match &node.node {
            NodeKind::Index(v) => uses |= v.0 < free,
            NodeKind::Tensor { indices, .. } | NodeKind::Def { indices, .. } => {
                uses |= indices
                    .iter()
                    .any(|a| a.vars.iter().any(|(v, _)| v.0 < free));
            }
            // `x[floor((i+1)/2)]`: the free index is in the pick's index.
            NodeKind::Pick { index, .. } => uses |= index.vars().iter().any(|v| v.0 < free),
            _ => {}
        });
    };
    for e in &claim.at {
        look(e);
    }
    for c in &claim.subject_to {
        for_each_cond_expr(c, &mut look);
    }
    uses
}

/// What a claim reads, directly or through definitions.
struct Needed {
    defs: Vec<bool>,
    tensors: Vec<bool>,
}

fn needed_by(program: &Program, claim: &OptimumClaim) -> Needed {
    let mut needed = Needed {
        defs: vec![false; program.defs.len()],
        tensors: vec![false; program.tensors.len()],
    };
    mark_reads(&claim.objective, &mut needed);
    for e in &claim.at {
        mark_reads(e, &mut needed);
    }
    for c in &claim.subject_to {
        for_each_cond_expr(c, &mut |n| mark_reads(n, &mut needed));
    }
    // Through the bodies of the definitions read and the parameters of the
    // random tensors read, until nothing more is marked.
    loop {
        let before = (needed.defs.clone(), needed.tensors.clone());
        for k in (0..program.defs.len()).rev() {
            if needed.defs[k] {
                crate::analysis::visit_body(&program.defs[k].body, &mut |n| {
                    mark_read(n, &mut needed);
                });
            }
        }
        for random in &program.randoms {
            if needed
                .tensors
                .get(random.tensor.0)
                .copied()
                .unwrap_or(false)
            {
                for arg in &random.distribution.args {
                    mark_reads(arg, &mut needed);
                }
            }
        }
        if (needed.defs.clone(), needed.tensors.clone()) == before {
            return needed;
        }
    }
}

fn mark_reads(node: &Node, needed: &mut Needed) {
    crate::analysis::visit(node, &mut |n| mark_read(n, needed));
}

/// Marks what one node reads (not its children).
fn mark_read(node: &Node, needed: &mut Needed) {
    let slot = match &node.node {
        NodeKind::Def { id, .. } => needed.defs.get_mut(id.0),
        NodeKind::Tensor { id, .. } => needed.tensors.get_mut(id.0),
        _ => None,
    };
    if let Some(slot) = slot {
        *slot = true;
    }
}

/// Definitions that must be computed anew when the varied names change.
fn stale_defs(program: &Program, over: &[Varied]) -> Vec<bool> {
    let mut varied = vec![false; program.defs.len()];
    for v in over {
        if let VariedKind::Def(d) = v.what
            && let Some(s) = varied.get_mut(d.0)
        {
            *s = true;
        }
    }
    // A varied let is given, not computed: the evaluation must not recompute it.
    program.defs_reading(varied, |node| match &node.node {
        NodeKind::Hyper(h) => over.iter().any(|v| v.what == VariedKind::Hyper(*h)),
        NodeKind::Tensor { id, .. } => over.iter().any(|v| v.what == VariedKind::Tensor(*id)),
        _ => false,
    })
}

impl OptimumCheck<'_> {
    fn names(&self) -> Vec<String> {
        self.claim.over.iter().map(|v| v.name.clone()).collect()
    }

    fn show_point(&self, x: &[f64]) -> String {
        show(&self.names(), x)
    }

    /// Searches for a better alternative at `points` together.
    fn search(
        &mut self,
        search: &Search<'_, '_>,
        points: &[Vec<i64>],
        refuted: &mut Vec<Vec<i64>>,
        undefined: &mut Vec<(Vec<i64>, EvalError)>,
    ) {
        let Some(first) = points.first() else {
            return;
        };
        let sizes = search.cx.instance.sizes.clone();
        let names = self.claim.points.free_names();
        let c = match search.claimed(first) {
            Ok(c) => c,
            Err(e) => {
                undefined.extend(points.iter().map(|p| (p.clone(), (*e).clone())));
                return;
            }
        };
        let mut tally = MethodTally::default();
        let claimed = match search.assess(&c, points, &mut tally) {
            Assessed::Feasible(objectives) => objectives,
            Assessed::Infeasible => {
                if self.infeasible.len() < 4 {
                    self.infeasible.push(format!(
                        "at {}: the claimed {} is not feasible",
                        describe_point(&names, first, &sizes),
                        self.show_point(&c)
                    ));
                }
                refuted.extend(points.iter().cloned());
                return;
            }
            Assessed::Unsettled(why) => {
                self.unsettled.get_or_insert(why);
                return;
            }
            Assessed::Undefined(p, e) => {
                undefined.push((p, *e));
                return;
            }
        };
        self.tally = merge_tally(self.tally, tally);
        if self.claimed.len() < 100 {
            self.claimed.push(json!({
                "sizes": crate::report::json::sizes(&sizes),
                "index": first,
                "at": c,
            }));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(
            search.stream,
            &format!("alternatives:{first:?}"),
            &[],
        ));
        let alternatives = search.alternatives(&c, first, &mut rng);
        let mut beaten = vec![false; points.len()];
        for (x, on_boundary) in alternatives {
            if search.cx.instance.check_clock().is_err() {
                self.unsettled
                    .get_or_insert("not checked within the time limit".to_string());
                return;
            }
            let mut tally = MethodTally::default();
            let objectives = match search.assess(&x, points, &mut tally) {
                Assessed::Feasible(o) => o,
                _ => continue,
            };
            self.alternatives += 1;
            self.boundary_points += usize::from(on_boundary);
            for (k, (alt, mine)) in objectives.iter().zip(&claimed).enumerate() {
                let op = match self.claim.sense {
                    Sense::Minimize => CompareOp::Le,
                    Sense::Maximize => CompareOp::Ge,
                };
                let Ok(decided) = compare(mine, op, alt, search.z) else {
                    continue;
                };
                if decided.holds {
                    continue;
                }
                beaten[k] = true;
                let improvement =
                    (mine.value - alt.value).abs() / decided.margin.max(f64::MIN_POSITIVE);
                if self
                    .best
                    .as_ref()
                    .is_none_or(|b| improvement > b.improvement)
                {
                    self.best = Some(Counterexample {
                        sizes: sizes.clone(),
                        point: points[k].clone(),
                        at: x.clone(),
                        objective: alt.value,
                        claimed_at: c.clone(),
                        claimed_objective: mine.value,
                        improvement,
                    });
                }
            }
        }
        refuted.extend(
            points
                .iter()
                .zip(&beaten)
                .filter(|(_, b)| **b)
                .map(|(p, _)| p.clone()),
        );
    }
}

fn merge_tally(mut a: MethodTally, b: MethodTally) -> MethodTally {
    a.deterministic += b.deterministic;
    a.exact += b.exact;
    a.sampled += b.sampled;
    a.max_outcomes = a.max_outcomes.max(b.max_outcomes);
    a.samples = a.samples.max(b.samples);
    a
}

impl ClaimCheck for OptimumCheck<'_> {
    fn check_at(&mut self, cx: &SizeContext<'_>) {
        let claim = self.claim;
        let (tests, z) = *self.budget.get_or_insert_with(|| {
            let tests = points_over_sweep(&claim.points, cx) * ALTERNATIVES;
            (tests, critical_z(tests))
        });
        if let Err(e) = Laws::of(cx.evaluation) {
            self.undecided(e.to_string());
            return;
        }
        let sizes = cx.instance.sizes.clone();
        let search = Search {
            claim,
            cx,
            stochastic: cx.program.stochastic_defs(),
            stale: stale_defs(cx.program, &claim.over),
            needed: needed_by(cx.program, claim),
            order: cx.program.computation_order(),
            z,
            log_term: super::stochastic::log_term(tests),
            stream: stream_seed(
                cx.options.seed,
                &format!("optimum@{}", self.claim_start),
                sizes.values(),
            ),
        };
        let points: Vec<Vec<i64>> = claim_grid(&claim.points, &sizes).points().collect();
        self.points_checked += points.len();
        let mut refuted = vec![];
        let mut undefined = vec![];
        if depends_on_points(claim) {
            for p in &points {
                self.search(
                    &search,
                    std::slice::from_ref(p),
                    &mut refuted,
                    &mut undefined,
                );
            }
        } else {
            self.search(&search, &points, &mut refuted, &mut undefined);
        }
        self.outcome.sizes.push(sizes.clone());
        record_mismatches(&mut self.outcome, &sizes, &refuted);
        record_problems(&mut self.outcome, cx, &sizes, undefined);
    }

    fn undecided(&mut self, why: String) {
        self.unsettled.get_or_insert(why);
    }

    fn finish(mut self: Box<Self>) -> ClaimOutcome {
        let (tests, z) = self.budget.unwrap_or((1, critical_z(1)));
        let (refuted_points, undefined_points) = failed_points(&self.outcome);
        let refuted = refuted_points + undefined_points > 0;
        let sense = match self.claim.sense {
            Sense::Minimize => "minimum",
            Sense::Maximize => "maximum",
        };
        let summary = if refuted {
            format!(
                "not the {sense} at {refuted_points} of {} point{}",
                self.points_checked,
                plural(self.points_checked)
            )
        } else {
            format!(
                "the {sense} at {} point{}: no better feasible alternative among {}",
                self.points_checked,
                plural(self.points_checked),
                self.alternatives
            )
        };
        self.outcome.verdict = if refuted {
            Verdict::Refuted
        } else if let Some(why) = self.unsettled.take() {
            Verdict::Undecided(why)
        } else {
            Verdict::Holds
        };
        self.outcome.notes.push(format!(
            "{} feasible alternatives compared ({} on the boundary of the constraints); the objective: {}",
            self.alternatives,
            self.boundary_points,
            self.tally.describe(z, tests)
        ));
        self.outcome.notes.append(&mut self.infeasible);
        let names = self.names();
        let details = &mut self.outcome.details;
        details.insert("summary".to_string(), json!(summary));
        details.insert("method".to_string(), json!(self.tally.name()));
        details.insert("varied".to_string(), json!(names));
        details.insert("alternatives".to_string(), json!(self.alternatives));
        details.insert(
            "boundary_alternatives".to_string(),
            json!(self.boundary_points),
        );
        details.insert(
            "claimed".to_string(),
            Value::Array(std::mem::take(&mut self.claimed)),
        );
        if self.tally.sampled > 0 {
            details.insert("samples".to_string(), json!(self.tally.samples));
            details.insert(
                "level".to_string(),
                json!(1.0 - super::stochastic::FALSE_ALARM),
            );
            details.insert("z".to_string(), json!(z));
        }
        if let Some(best) = self.best.take() {
            let free = self.claim.points.free_names();
            self.outcome.notes.push(format!(
                "best counterexample at {}: {} gives {}, {} {} at the claimed {}",
                describe_point(&free, &best.point, &best.sizes),
                show(&names, &best.at),
                format_value(best.objective),
                match self.claim.sense {
                    Sense::Minimize => "below",
                    Sense::Maximize => "above",
                },
                format_value(best.claimed_objective),
                show(&names, &best.claimed_at),
            ));
            details.insert(
                "counterexample".to_string(),
                json!({
                    "sizes": crate::report::json::sizes(&best.sizes),
                    "index": best.point,
                    "at": best.at,
                    "objective": best.objective,
                    "claimed_at": best.claimed_at,
                    "claimed_objective": best.claimed_objective,
                }),
            );
        }
        self.outcome
    }
}

fn show(names: &[String], x: &[f64]) -> String {
    let values: Vec<String> = x.iter().map(|&v| format_value(v)).collect();
    if names.len() == 1 {
        format!("{} = {}", names.join(""), values.join(""))
    } else {
        format!("({}) = ({})", names.join(", "), values.join(", "))
    }
}
