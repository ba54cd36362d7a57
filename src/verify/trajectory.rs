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

use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::ClaimCheck;
use super::context::SizeContext;
use super::outcome::{ClaimOutcome, Plot, Series, SeriesKind, Verdict};
use crate::analysis::Sizes;
use crate::analysis::program::{
    DefId, EquivalenceClaim, OptimizerId, Origin, Program, Statement, StreamSource, TensorId,
};
use crate::eval::{EvalError, Frame, Instance, distribution, format_value, gradient, stream_seed};

/// Units of rounding allowed per step and unit of parameter magnitude.
const ROUNDING_ULPS: f64 = 64.0;

/// What one size showed.
struct SizeRun {
    sizes: Sizes,
    /// Per step (1-based): the largest |θ_A − θ_B| and its tolerance.
    deviations: Vec<(f64, f64)>,
}

impl SizeRun {
    fn first_parting(&self) -> Option<usize> {
        self.deviations
            .iter()
            .position(|(d, tol)| d > tol)
            .map(|k| k + 1)
    }

    fn largest(&self) -> (usize, f64) {
        self.deviations
            .iter()
            .enumerate()
            .fold(
                (0, 0.0),
                |best, (k, &(d, _))| if d > best.1 { (k + 1, d) } else { best },
            )
    }
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
            if let Some(first) = run.first_parting() {
                // The largest size speaks for the others; the JSON has them all.
                self.outcome.notes.clear();
                self.outcome.notes.push(format!(
                    "at {}: {} and {} part at step {first}; largest deviation {} (step {step}), {} at the last step",
                    run.sizes,
                    names.0,
                    names.1,
                    format_value(largest),
                    format_value(last)
                ));
            }
            self.outcome.max_abs_error = self.outcome.max_abs_error.max(largest);
            per_size.push(json!({
                "sizes": crate::report::json::sizes(&run.sizes),
                "first_parting_step": run.first_parting(),
                "largest_deviation": largest,
                "largest_deviation_step": step,
                "last_deviation": last,
                "deviations": run.deviations.iter().map(|d| d.0).collect::<Vec<_>>(),
                "tolerances": run.deviations.iter().map(|d| d.1).collect::<Vec<_>>(),
            }));
        }
        let parted = self
            .runs
            .iter()
            .filter(|r| r.first_parting().is_some())
            .count();
        if parted > 1 {
            self.outcome.notes.push(format!(
                "they part at {parted} of the {} sizes checked",
                self.runs.len()
            ));
        }
        if self.outcome.notes.is_empty() && !self.runs.is_empty() {
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

fn deviation_plot(claim: &EquivalenceClaim, head: &str, run: &SizeRun) -> Plot {
    // A log axis cannot show 0: exact agreement sits a decade below the
    // smallest positive value of the figure.
    let floor = run
        .deviations
        .iter()
        .flat_map(|&(d, t)| [d, t])
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() {
        floor / 10.0
    } else {
        1e-17
    };
    let points = |pick: fn(&(f64, f64)) -> f64| {
        run.deviations
            .iter()
            .enumerate()
            .map(|(k, d)| ((k + 1) as f64, pick(d).max(floor)))
            .collect()
    };
    Plot {
        title: format!("{head} at {}", run.sizes),
        name: format!("{}_vs_{}", claim.first_name, claim.second_name),
        x_label: "step".to_string(),
        y_label: "max |θ_A − θ_B|".to_string(),
        log_x: false,
        log_y: true,
        series: vec![
            Series {
                label: "deviation".to_string(),
                points: points(|d| d.0),
                kind: SeriesKind::Measured,
            },
            Series {
                label: "rounding tolerance".to_string(),
                points: points(|d| d.1),
                kind: SeriesKind::Bound,
            },
        ],
    }
}

/// Runs both rules side by side at one size.
fn compare(cx: &SizeContext<'_>, claim: &EquivalenceClaim) -> Result<SizeRun, Box<EvalError>> {
    let program = cx.program;
    let instance = cx.instance;
    let ids = [claim.first, claim.second];
    let mut states: Vec<Vec<ArrayD<f64>>> = Vec::with_capacity(2);
    for id in ids {
        states.push(initial_values(instance, cx.values, id)?);
    }
    let compared = compared_params(program, &ids);
    // Reserved up to a bound: `--max-steps` may allow more than memory holds,
    // and the clock stops such a run long before.
    let reserve = usize::try_from(claim.steps).unwrap_or(0).min(1 << 16);
    let mut deviations = Vec::with_capacity(reserve);
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
                if !a.is_finite() || !b.is_finite() {
                    return Err(non_finite(program, *t, step, instance));
                }
                deviation = deviation.max((a - b).abs());
                scale = scale.max(a.abs()).max(b.abs());
            }
        }
        let tolerance = ROUNDING_ULPS * f64::EPSILON * step as f64 * scale;
        deviations.push((deviation, tolerance));
    }
    Ok(SizeRun {
        sizes: instance.sizes.clone(),
        deviations,
    })
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
fn initial_values(
    instance: &Instance<'_>,
    drawn: &[ArrayD<f64>],
    id: OptimizerId,
) -> Result<Vec<ArrayD<f64>>, Box<EvalError>> {
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
fn run_step(
    instance: &Instance<'_>,
    values: &mut [ArrayD<f64>],
    id: OptimizerId,
) -> Result<(), Box<EvalError>> {
    let Some(optimizer) = instance.program.optimizers.get(id.0) else {
        return Ok(());
    };
    let mut locals: Vec<(DefId, Vec<f64>)> = vec![];
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
fn feed_streams(
    program: &Program,
    instance: &Instance<'_>,
    values: &mut [ArrayD<f64>],
    draws: &[Option<Vec<f64>>],
) -> Result<(), Box<EvalError>> {
    for (stream, draw) in program.streams.iter().zip(draws) {
        let fed = match &stream.source {
            StreamSource::Draw(_) => draw.clone().unwrap_or_default(),
            StreamSource::Gradient { param, .. } => {
                let derived = gradient(instance, values)?;
                let mut g: Vec<f64> = derived
                    .get(param.0)
                    .and_then(Option::as_ref)
                    .map(|d| d.iter().copied().collect())
                    .unwrap_or_default();
                if let Some(noise) = draw {
                    g.iter_mut().zip(noise).for_each(|(g, n)| *g += n);
                }
                g
            }
        };
        overwrite(values, stream.tensor, fed);
    }
    Ok(())
}

fn overwrite(values: &mut [ArrayD<f64>], t: TensorId, data: Vec<f64>) {
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
