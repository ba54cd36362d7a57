//! `claim A == B over T steps`: two update rules, started from the same
//! parameters and fed the same gradient draws, must give the same
//! trajectory at every step, to rounding.
//!
//! Tolerance: each step of an update rule does a handful of floating-point
//! operations on values of magnitude at most S (the largest parameter seen
//! so far), so two algebraically equal rules drift apart by rounding of
//! about ε·S per step; after t steps `ROUNDING_ULPS · ε · t · S` bounds it
//! with room for the operations of a step. A real difference in the rules
//! (a wrong coefficient, a swapped statement, another initial state) shows
//! at the first step or grows from a start-up transient many orders of
//! magnitude above that.
//!
//! That bound only flags: rounding can grow faster than it (cancellation
//! inside a step, growth factors above 1 over many steps). Where the f64
//! run parts, the same steps are run again in double-double arithmetic
//! (about 106 bits) by the same evaluator, on the same draws. Rounding
//! shrinks about 2⁵⁰-fold with the unit roundoff; a real difference does
//! not shrink. So the rules part only at a step where the double-double
//! deviation exceeds the f64 tolerance plus [`ROUNDING_SHRINK`] times the
//! f64 deviation; if it never does, the f64 parting was rounding.

use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::context::SizeContext;
use super::outcome::{ClaimOutcome, Plot, Series, SeriesKind, Verdict};
use super::{ClaimCheck, ROUNDING_SHRINK};
use crate::analysis::Sizes;
use crate::analysis::program::{
    DefId, EquivalenceClaim, OptimizerId, Origin, Program, Statement, StreamSource, TensorId,
};
use crate::eval::double_double::Dd;
use crate::eval::{
    EvalError, Frame, Instance, Scalar, distribution, format_value, gradient, precise_partials_at,
    stream_seed,
};

/// Units of rounding allowed per step and unit of parameter magnitude.
const ROUNDING_ULPS: f64 = 64.0;

/// What one size showed.
struct SizeRun {
    sizes: Sizes,
    /// Per step (1-based): the largest |θ_A − θ_B| in f64 and its tolerance.
    deviations: Vec<(f64, f64)>,
    /// The double-double rerun, made where the f64 run parted.
    precise: Option<PreciseRun>,
}

/// The same steps in double-double.
enum PreciseRun {
    /// Per step up to where it stopped: the largest |θ_A − θ_B| and what
    /// rounding in f64 may leave of it (the f64 tolerance plus
    /// [`ROUNDING_SHRINK`] times the f64 deviation). It stops at the first
    /// step where the deviation exceeds that: there the rules part.
    Ran { deviations: Vec<(f64, f64)> },
    /// It could not finish (out of time, an error): the f64 verdict stands,
    /// unconfirmed.
    Failed(String),
}

impl SizeRun {
    /// The largest deviation over its tolerance, as judged: in
    /// double-double where that ran, else in f64.
    fn worst_ratio(&self) -> f64 {
        let series = match &self.precise {
            Some(PreciseRun::Ran { deviations }) => deviations,
            _ => &self.deviations,
        };
        series
            .iter()
            .map(|&(d, t)| super::tolerance_ratio(d, t))
            .fold(0.0, f64::max)
    }

    /// The first step where the f64 deviation exceeds its tolerance.
    fn f64_parting(&self) -> Option<usize> {
        self.deviations
            .iter()
            .position(|(d, tol)| d > tol)
            .map(|k| k + 1)
    }

    /// The first step where the rules part, as judged: in double-double
    /// where that ran, else in f64.
    fn first_parting(&self) -> Option<usize> {
        let parted = self.f64_parting()?;
        match &self.precise {
            Some(PreciseRun::Ran { deviations }) => deviations
                .iter()
                .position(|(d, allowed)| d > allowed)
                .map(|k| k + 1),
            _ => Some(parted),
        }
    }

    /// The f64 run parted, and double-double showed that was rounding.
    fn rounding_confirmed(&self) -> bool {
        self.f64_parting().is_some()
            && matches!(self.precise, Some(PreciseRun::Ran { .. }))
            && self.first_parting().is_none()
    }

    /// The first step where double-double left more than rounding surely
    /// would, though not enough to part: the rules cannot be told apart
    /// from rounding there (see [`super::ROUNDING_SHRINK`]).
    fn unclear_step(&self) -> Option<usize> {
        if !self.rounding_confirmed() {
            return None;
        }
        self.precise_deviations()
            .iter()
            .zip(&self.deviations)
            .position(|(&(precise, _), &(deviation, tolerance))| {
                precise > tolerance + super::ROUNDING_SURE * deviation
            })
            .map(|k| k + 1)
    }

    fn precise_deviations(&self) -> &[(f64, f64)] {
        match &self.precise {
            Some(PreciseRun::Ran { deviations }) => deviations,
            _ => &[],
        }
    }

    fn largest(&self) -> (usize, f64) {
        largest_deviation(&self.deviations)
    }
}

/// The largest deviation of a series and its step (1-based).
fn largest_deviation(deviations: &[(f64, f64)]) -> (usize, f64) {
    deviations.iter().enumerate().fold(
        (0, 0.0),
        |best, (k, &(d, _))| if d > best.1 { (k + 1, d) } else { best },
    )
}

pub struct EquivalenceCheck<'p> {
    claim: &'p EquivalenceClaim,
    outcome: ClaimOutcome,
    runs: Vec<SizeRun>,
    undecided: Option<String>,
}

impl<'p> EquivalenceCheck<'p> {
    pub fn new(claim: &'p EquivalenceClaim, outcome: ClaimOutcome) -> Self {
        Self {
            claim,
            outcome,
            runs: vec![],
            undecided: None,
        }
    }
}

impl ClaimCheck for EquivalenceCheck<'_> {
    fn check_at(&mut self, cx: &SizeContext<'_>) {
        if self.claim.steps > cx.options.max_steps {
            self.undecided(format!(
                "{} steps are more than the limit of {} (--max-steps)",
                self.claim.steps, cx.options.max_steps
            ));
            return;
        }
        match compare(cx, self.claim) {
            Ok(run) => {
                if let Some(step) = run.unclear_step() {
                    self.undecided(format!(
                        "at {}, step {step}: the rules differ beyond f64 rounding, and in double-double by less than rounding would leave but more than it surely would: they cannot be told apart from rounding",
                        run.sizes
                    ));
                }
                self.outcome.sizes.push(run.sizes.clone());
                self.runs.push(run);
            }
            Err(e) => self.undecided(e.to_string()),
        }
    }

    fn undecided(&mut self, why: String) {
        self.undecided.get_or_insert(why);
    }

    fn finish(mut self: Box<Self>) -> ClaimOutcome {
        let parted = self.runs.iter().any(|r| r.first_parting().is_some());
        self.outcome.verdict = if parted {
            Verdict::Refuted
        } else if let Some(why) = self.undecided.take() {
            Verdict::Undecided(why)
        } else if self.runs.is_empty() {
            Verdict::Undecided("not run at any size".to_string())
        } else {
            Verdict::Holds
        };
        self.outcome.worst_ratio = self.runs.iter().map(SizeRun::worst_ratio).reduce(f64::max);
        self.describe();
        self.outcome
    }
}

impl EquivalenceCheck<'_> {
    /// Notes, JSON details and the plot, from the runs.
    fn describe(&mut self) {
        let names = (&self.claim.first_name, &self.claim.second_name);
        let mut per_size = vec![];
        for run in &self.runs {
            let (step, largest) = run.largest();
            let last = run.deviations.last().map_or(0.0, |d| d.0);
            // Where the f64 run is not the verdict's evidence, the
            // double-double run's figures are.
            self.outcome.max_abs_error =
                self.outcome.max_abs_error.max(if run.rounding_confirmed() {
                    largest_deviation(run.precise_deviations()).1
                } else {
                    largest
                });
            let precise = run.precise.as_ref().map(|p| match p {
                PreciseRun::Ran { deviations } => json!({
                    "first_parting_step": run.first_parting(),
                    "rounding_confirmed": run.rounding_confirmed(),
                    "steps_run": deviations.len(),
                    "largest_deviation": largest_deviation(deviations).1,
                    "deviations": deviations.iter().map(|d| d.0).collect::<Vec<_>>(),
                    "allowed": deviations.iter().map(|d| d.1).collect::<Vec<_>>(),
                }),
                PreciseRun::Failed(why) => json!({ "error": why }),
            });
            per_size.push(json!({
                "sizes": crate::report::json::sizes(&run.sizes),
                "first_parting_step": run.first_parting(),
                "f64_first_parting_step": run.f64_parting(),
                "largest_deviation": largest,
                "largest_deviation_step": step,
                "last_deviation": last,
                "deviations": run.deviations.iter().map(|d| d.0).collect::<Vec<_>>(),
                "tolerances": run.deviations.iter().map(|d| d.1).collect::<Vec<_>>(),
                "double_double": precise,
            }));
        }
        let parted: Vec<&SizeRun> = self
            .runs
            .iter()
            .filter(|r| r.first_parting().is_some())
            .collect();
        let confirmed: Vec<&SizeRun> = self
            .runs
            .iter()
            .filter(|r| r.rounding_confirmed())
            .collect();
        // The largest size speaks for the others; the JSON has them all.
        if let Some(run) = parted.last() {
            self.outcome.notes.push(parting_note(run, names));
            if parted.len() > 1 {
                self.outcome.notes.push(format!(
                    "they part at {} of the {} sizes checked",
                    parted.len(),
                    self.runs.len()
                ));
            }
        } else if let Some(run) = confirmed.last() {
            self.outcome.notes.push(format!(
                "{} and {} agree to rounding at every step of {}, confirmed in double-double: {}",
                names.0,
                names.1,
                self.claim.steps,
                confirmation(run, names)
            ));
            if confirmed.len() > 1 {
                self.outcome.notes.push(format!(
                    "the f64 runs part by rounding at {} of the {} sizes checked; double-double agrees at every step of each",
                    confirmed.len(),
                    self.runs.len()
                ));
            }
        } else if !self.runs.is_empty() {
            self.outcome.notes.push(format!(
                "{} and {} agree to rounding at every step of {} (largest deviation {})",
                names.0,
                names.1,
                self.claim.steps,
                format_value(self.outcome.max_abs_error)
            ));
        }
        self.outcome
            .details
            .insert("steps".to_string(), json!(self.claim.steps));
        self.outcome
            .details
            .insert("trajectories".to_string(), json!(per_size));
        if let Some(run) = self.runs.last() {
            self.outcome
                .plots
                .push(deviation_plot(self.claim, &self.outcome.head, run));
        }
    }
}

/// Where and by how much the rules part at a size, and what double-double
/// made of it.
fn parting_note(run: &SizeRun, names: (&String, &String)) -> String {
    let (step, largest) = run.largest();
    let last = run.deviations.last().map_or(0.0, |d| d.0);
    let first = run.first_parting().unwrap_or(0);
    let mut note = format!(
        "at {}: {} and {} part at step {first}; largest deviation {} (step {step}), {} at the last step",
        run.sizes,
        names.0,
        names.1,
        format_value(largest),
        format_value(last)
    );
    match &run.precise {
        Some(PreciseRun::Ran { deviations }) => {
            if let Some(&(d, allowed)) = deviations.get(first.saturating_sub(1)) {
                note.push_str(&format!(
                    "; in double-double they still differ by {} at step {first}, above the {} rounding could leave: a real difference",
                    format_value(d),
                    format_value(allowed)
                ));
            }
        }
        Some(PreciseRun::Failed(why)) => {
            note.push_str(&format!(
                "; not confirmed in double-double, which could not finish: {why}"
            ));
        }
        None => {}
    }
    note
}

/// `in f64 they part at step 12 (…), in double-double …`: the figures of a
/// parting that double-double showed to be rounding.
fn confirmation(run: &SizeRun, names: (&String, &String)) -> String {
    let first = run.f64_parting().unwrap_or(0);
    let (at_first, tolerance) = run
        .deviations
        .get(first.saturating_sub(1))
        .copied()
        .unwrap_or_default();
    let (step, largest) = run.largest();
    let (precise_step, precise) = largest_deviation(run.precise_deviations());
    format!(
        "at {} the f64 run of {} and {} parts at step {first} (deviation {} against 64·ε·t·S = {}; largest {} at step {step}), but redone in double-double they differ by at most {} (step {precise_step}): rounding, not a difference in the rules",
        run.sizes,
        names.0,
        names.1,
        format_value(at_first),
        format_value(tolerance),
        format_value(largest),
        format_value(precise)
    )
}

fn deviation_plot(claim: &EquivalenceClaim, head: &str, run: &SizeRun) -> Plot {
    // A log axis cannot show 0: exact agreement sits a decade below the
    // smallest positive value of the figure.
    let floor = run
        .deviations
        .iter()
        .chain(run.precise_deviations())
        .flat_map(|&(d, t)| [d, t])
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() {
        floor / 10.0
    } else {
        1e-17
    };
    let points = |series: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        series
            .iter()
            .enumerate()
            .map(|(k, d)| ((k + 1) as f64, pick(d).max(floor)))
            .collect()
    };
    let mut series = vec![
        Series {
            label: "deviation".to_string(),
            points: points(&run.deviations, |d| d.0),
            kind: SeriesKind::Measured,
        },
        Series {
            label: "rounding tolerance".to_string(),
            points: points(&run.deviations, |d| d.1),
            kind: SeriesKind::Bound,
        },
    ];
    let precise = run.precise_deviations();
    if !precise.is_empty() {
        series.push(Series {
            label: "deviation in double-double".to_string(),
            points: points(precise, |d| d.0),
            kind: SeriesKind::Measured,
        });
        series.push(Series {
            label: "double-double allowance".to_string(),
            points: points(precise, |d| d.1),
            kind: SeriesKind::Bound,
        });
    }
    Plot {
        title: format!("{head} at {}", run.sizes),
        name: format!("{}_vs_{}", claim.first_name, claim.second_name),
        x_label: "step".to_string(),
        y_label: "max |θ_A − θ_B|".to_string(),
        log_x: false,
        log_y: true,
        series,
    }
}

/// The scalar a trajectory is computed in, and the gradient of L in it.
trait Precision: Scalar {
    /// dL/d(param), row-major, at the given values (empty where the
    /// param is not differentiated).
    fn gradient_of(
        instance: &Instance<'_>,
        values: &[ArrayD<Self>],
        param: TensorId,
    ) -> Result<Vec<Self>, Box<EvalError>>;
}

impl Precision for f64 {
    fn gradient_of(
        instance: &Instance<'_>,
        values: &[ArrayD<f64>],
        param: TensorId,
    ) -> Result<Vec<f64>, Box<EvalError>> {
        let derived = gradient(instance, values)?;
        Ok(derived
            .get(param.0)
            .and_then(Option::as_ref)
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default())
    }
}

impl Precision for Dd {
    fn gradient_of(
        instance: &Instance<'_>,
        values: &[ArrayD<Dd>],
        param: TensorId,
    ) -> Result<Vec<Dd>, Box<EvalError>> {
        let differentiable = instance
            .program
            .tensors
            .get(param.0)
            .is_some_and(|t| t.is_differentiable());
        if !differentiable {
            return Ok(vec![]);
        }
        let n = values.get(param.0).map_or(0, ArrayD::len);
        let elements: Vec<(usize, usize)> = (0..n).map(|p| (param.0, p)).collect();
        precise_partials_at(instance, values, &elements)
    }
}

/// Runs both rules side by side at one size: in f64, and again in
/// double-double where the f64 run parts.
fn compare(cx: &SizeContext<'_>, claim: &EquivalenceClaim) -> Result<SizeRun, Box<EvalError>> {
    let deviations: Vec<(f64, f64)> = trajectories::<f64>(cx, claim, |_, _| false)?
        .into_iter()
        .enumerate()
        .map(|(k, (deviation, scale))| {
            let step = (k + 1) as f64;
            (deviation, ROUNDING_ULPS * f64::EPSILON * step * scale)
        })
        .collect();
    let mut run = SizeRun {
        sizes: cx.instance.sizes.clone(),
        deviations,
        precise: None,
    };
    if run.f64_parting().is_some() {
        let allowed: Vec<f64> = run
            .deviations
            .iter()
            .map(|&(d, tolerance)| tolerance + ROUNDING_SHRINK * d)
            .collect();
        let mut precise = Vec::with_capacity(allowed.len());
        let result = trajectories::<Dd>(cx, claim, |k, d| {
            let allowed = allowed.get(k).copied().unwrap_or(f64::INFINITY);
            precise.push((d, allowed));
            d > allowed
        });
        run.precise = Some(match result {
            Ok(_) => PreciseRun::Ran {
                deviations: precise,
            },
            Err(e) => PreciseRun::Failed(e.to_string()),
        });
    }
    Ok(run)
}

/// Runs both rules side by side at one size in the scalar type `T`: per
/// step, the largest |θ_A − θ_B| and the largest parameter magnitude seen
/// so far. `stop(k, deviation)` is told each step's deviation (k from 0)
/// and ends the run after it by returning true.
fn trajectories<T: Precision>(
    cx: &SizeContext<'_>,
    claim: &EquivalenceClaim,
    mut stop: impl FnMut(usize, f64) -> bool,
) -> Result<Vec<(f64, f64)>, Box<EvalError>> {
    let program = cx.program;
    let instance = cx.instance;
    let ids = [claim.first, claim.second];
    let drawn: Vec<ArrayD<T>> = cx.values.iter().map(|a| a.mapv(T::constant)).collect();
    let mut states: Vec<Vec<ArrayD<T>>> = Vec::with_capacity(2);
    for id in ids {
        states.push(initial_values(instance, &drawn, id)?);
    }
    let compared = compared_params(program, &ids);
    // Reserved up to a bound: `--max-steps` may allow more than memory holds,
    // and the clock stops such a run long before.
    let reserve = usize::try_from(claim.steps).unwrap_or(0).min(1 << 16);
    let mut out = Vec::with_capacity(reserve);
    let mut scale: f64 = compared
        .iter()
        .flat_map(|t| cx.values[t.0].iter())
        .fold(0.0, |m, x| m.max(x.abs()));
    for step in 1..=claim.steps {
        instance.check_clock()?;
        let draws = draw_streams(program, instance, cx.options.seed, step);
        for (values, id) in states.iter_mut().zip(ids) {
            feed_streams(program, instance, values, &draws)?;
            run_step(instance, values, id)?;
        }
        let mut deviation: f64 = 0.0;
        for t in &compared {
            for (a, b) in states[0][t.0].iter().zip(states[1][t.0].iter()) {
                let (ra, rb) = (a.real(), b.real());
                if !ra.is_finite() || !rb.is_finite() {
                    return Err(non_finite(program, *t, step, instance));
                }
                deviation = deviation.max((*a - *b).real().abs());
                scale = scale.max(ra.abs()).max(rb.abs());
            }
        }
        out.push((deviation, scale));
        if stop(out.len() - 1, deviation) {
            break;
        }
    }
    Ok(out)
}

/// The params either rule updates: the trajectories compared.
fn compared_params(program: &Program, ids: &[OptimizerId]) -> Vec<TensorId> {
    let mut out: Vec<TensorId> = ids
        .iter()
        .filter_map(|id| program.optimizers.get(id.0))
        .flat_map(|o| &o.statements)
        .filter_map(|s| match s {
            Statement::Update { target, .. } => Some(*target),
            Statement::Let(_) => None,
        })
        .filter(|t| {
            program
                .tensors
                .get(t.0)
                .is_some_and(|t| matches!(t.origin, Origin::Declared(_)))
        })
        .collect();
    out.sort_by_key(|t| t.0);
    out.dedup();
    out
}

/// The drawn values and the rule's initial state.
fn initial_values<T: Scalar>(
    instance: &Instance<'_>,
    drawn: &[ArrayD<T>],
    id: OptimizerId,
) -> Result<Vec<ArrayD<T>>, Box<EvalError>> {
    let mut values = drawn.to_vec();
    let Some(optimizer) = instance.program.optimizers.get(id.0) else {
        return Ok(values);
    };
    for state in &optimizer.states {
        let init = {
            let evaluation = instance.evaluation(&values);
            let grid = instance.tensor_grid(state.tensor);
            let mut frame = Frame::new(&state.var_names, state.slots);
            let mut init = Vec::new();
            for point in grid.points() {
                frame.set_point(&point);
                init.push(evaluation.node(&state.init, &mut frame)?);
            }
            init
        };
        overwrite(&mut values, state.tensor, init);
    }
    Ok(values)
}

/// One step of a rule: its statements in order, each seeing the ones before.
fn run_step<T: Scalar>(
    instance: &Instance<'_>,
    values: &mut [ArrayD<T>],
    id: OptimizerId,
) -> Result<(), Box<EvalError>> {
    let Some(optimizer) = instance.program.optimizers.get(id.0) else {
        return Ok(());
    };
    let mut locals: Vec<(DefId, Vec<T>)> = vec![];
    for statement in &optimizer.statements {
        let mut evaluation = instance.evaluation(values);
        for (d, v) in &locals {
            evaluation.provide(*d, v.clone());
        }
        evaluation.compute_defs(false)?;
        match statement {
            Statement::Let(d) => {
                evaluation.compute_local(*d)?;
                let computed = evaluation.def_values(*d)?.to_vec();
                locals.retain(|(e, _)| e != d);
                locals.push((*d, computed));
            }
            Statement::Update {
                target,
                body,
                slots,
                var_names,
                ..
            } => {
                // Every element from the values before this statement.
                let grid = instance.tensor_grid(*target);
                let mut frame = Frame::new(var_names, *slots);
                let mut updated = Vec::new();
                for point in grid.points() {
                    frame.set_point(&point);
                    updated.push(evaluation.body(body, &mut frame)?);
                }
                drop(evaluation);
                overwrite(values, *target, updated);
            }
        }
    }
    Ok(())
}

/// The step's draws, shared by both rules: one array per stream (`None` for
/// a gradient stream without noise).
fn draw_streams(
    program: &Program,
    instance: &Instance<'_>,
    seed: u64,
    step: i64,
) -> Vec<Option<Vec<f64>>> {
    program
        .streams
        .iter()
        .map(|stream| {
            let spec = match &stream.source {
                StreamSource::Draw(d) => d,
                StreamSource::Gradient { noise: Some(d), .. } => d,
                StreamSource::Gradient { noise: None, .. } => return None,
            };
            let name = &program.tensors[stream.tensor.0].name;
            let mut sizes_and_step = instance.sizes.values().to_vec();
            sizes_and_step.push(step);
            let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(seed, name, &sizes_and_step));
            let n = instance.tensor_grid(stream.tensor).points().count();
            // Parameters are constants over hypers and dims (checked by analysis).
            let evaluation = instance.evaluation::<f64>(&[]);
            let mut frame = Frame::new(&[], 0);
            let params: Vec<f64> = spec
                .args
                .iter()
                .map(|a| evaluation.node(a, &mut frame).unwrap_or(f64::NAN))
                .collect();
            Some(
                (0..n)
                    .map(|_| distribution::sample(spec.kind, &params, &mut rng))
                    .collect(),
            )
        })
        .collect()
}

/// Writes this step's stream values into a rule's tensors: draws as they
/// are, gradients at the rule's own current parameters plus the draws.
fn feed_streams<T: Precision>(
    program: &Program,
    instance: &Instance<'_>,
    values: &mut [ArrayD<T>],
    draws: &[Option<Vec<f64>>],
) -> Result<(), Box<EvalError>> {
    for (stream, draw) in program.streams.iter().zip(draws) {
        let fed: Vec<T> = match &stream.source {
            StreamSource::Draw(_) => draw
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|&x| T::constant(x))
                .collect(),
            StreamSource::Gradient { param, .. } => {
                let mut g = T::gradient_of(instance, values, *param)?;
                if let Some(noise) = draw {
                    g.iter_mut()
                        .zip(noise)
                        .for_each(|(g, &n)| *g += T::constant(n));
                }
                g
            }
        };
        overwrite(values, stream.tensor, fed);
    }
    Ok(())
}

fn overwrite<T>(values: &mut [ArrayD<T>], t: TensorId, data: Vec<T>) {
    if let Some(slot) = values.get_mut(t.0)
        && let Ok(array) = ArrayD::from_shape_vec(slot.raw_dim(), data)
    {
        *slot = array;
    }
}

fn non_finite(
    program: &Program,
    t: TensorId,
    step: i64,
    instance: &Instance<'_>,
) -> Box<EvalError> {
    let tensor = &program.tensors[t.0];
    Box::new(EvalError::NonFinite {
        expression: tensor.name.clone(),
        value: "not finite".to_string(),
        at: format!("step {step}, {}", instance.sizes),
        span: tensor.span.into(),
    })
}
