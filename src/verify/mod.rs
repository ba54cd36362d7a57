//! Verification: checks each claim of a checked program at every size of
//! the sweep. One module per kind of claim; `outcome` holds what they find.

mod context;
mod derivation;
mod grad;
mod kinks;
mod optimum;
pub mod outcome;
mod stochastic;
pub mod taylor;
mod trajectory;

pub use grad::{group_points, spread_sample};
pub use stochastic::{DEFAULT_SAMPLES, normal_quantile};

use ndarray::ArrayD;

use crate::analysis::program::{ClaimKind, Origin, Program};
use crate::analysis::{Sizes, size_sweep};
use crate::eval::{Deadline, Instance, draw_values};
use crate::source::Source;
pub use context::SizeContext;
use grad::GradCheck;
use outcome::*;
use taylor::TaylorCheck;

/// A difference that fails its f64 rounding bound is recomputed in
/// double-double (unit roundoff 2⁻⁵³ → 2⁻¹⁰⁴): rounding shrinks about
/// 2⁵⁰-fold, a mistake does not shrink at all. What is left of it is
/// judged against the f64 bound plus a fraction of the f64 difference:
/// - within [`ROUNDING_SURE`] of it (a shrink of 2³⁶ or more), rounding: the
///   margin of 2¹⁴ covers double-double's elementary functions, and an f64
///   difference that happened to come out small (the largest fraction seen
///   over the outside corpora at 200 seeds is 2⁻⁴⁶);
/// - beyond [`ROUNDING_SHRINK`] of it (a shrink of less than 2²⁶), a real
///   difference;
/// - in between, neither can be told: the claim is left undecided (a real
///   difference 10⁸ times smaller than f64's cancellation noise, say).
///
/// Every comparison of exact values is judged so: gradient claims per
/// element, trajectories per step, deterministic conditions.
pub(crate) const ROUNDING_SHRINK: f64 = 1.0 / (1u64 << 26) as f64;
/// See [`ROUNDING_SHRINK`].
pub(crate) const ROUNDING_SURE: f64 = 1.0 / (1u64 << 36) as f64;

/// The spacing of f64 below its normal range (2⁻¹⁰⁷⁴), where rounding is
/// absolute: a bound relative to the values' scale is 0 there.
pub(crate) const SUBNORMAL_UNIT: f64 = 5e-324;

/// An error over its tolerance, as every check reports a near miss: 0 for
/// no error (a zero error against a zero tolerance is no miss at all),
/// unbounded against a zero tolerance or where the error is NaN.
pub(crate) fn tolerance_ratio(error: f64, tolerance: f64) -> f64 {
    if error <= 0.0 {
        0.0
    } else if tolerance > 0.0 {
        error / tolerance
    } else {
        f64::INFINITY
    }
    .max(if error.is_nan() { f64::INFINITY } else { 0.0 })
}

/// How a difference beyond its f64 bound `tolerance` fared in
/// double-double (see [`ROUNDING_SHRINK`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shrinkage {
    Rounding,
    Unclear,
    Persists,
}

pub(crate) fn shrinkage(f64_difference: f64, precise: f64, tolerance: f64) -> Shrinkage {
    if precise <= tolerance + ROUNDING_SURE * f64_difference {
        Shrinkage::Rounding
    } else if precise <= tolerance + ROUNDING_SHRINK * f64_difference {
        Shrinkage::Unclear
    } else {
        Shrinkage::Persists
    }
}

/// How a run checks: seed, sizes and limits.
#[derive(Clone, Debug)]
pub struct Options {
    /// Every random draw derives from this: the same seed, the same report.
    pub seed: u64,
    /// `--dim N=1000`: a size fixed at every point of the sweep.
    pub dims: Vec<(String, i64)>,
    /// Refuse sizes whose tensors hold more elements than this in all.
    pub max_elements: u64,
    /// Finite differences on at most this many elements per claim and size.
    pub fd_elements: usize,
    /// Keep the derived gradients for `--show-grad`.
    pub keep_derived: bool,
    /// Steps an update-rule claim may ask for; more is refused (not checked).
    pub max_steps: i64,
    /// Time allowed to check one claim at one size (and to the work all
    /// claims share at a size); past it the claim is reported not checked.
    pub timeout: std::time::Duration,
    /// `--taylor-precision`: the precision of Taylor claims that name none.
    pub taylor_precision: Option<crate::syntax::ast::Precision>,
    /// `--samples`: Monte Carlo samples per point of a stochastic claim.
    pub samples: u64,
    /// Stops the check from elsewhere (the language server's next edit).
    pub cancel: Option<crate::eval::Cancel>,
    /// Operations a recording of L may hold, in place of what the memory
    /// available allows ([`crate::eval::memory`]): a refusal made to order.
    pub max_operations: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seed: 0,
            dims: vec![],
            max_elements: 10_000_000,
            fd_elements: 64,
            keep_derived: false,
            max_steps: 100_000,
            timeout: std::time::Duration::from_secs(60),
            taylor_precision: None,
            samples: stochastic::DEFAULT_SAMPLES,
            cancel: None,
            max_operations: None,
        }
    }
}

/// One claim's check, fed every size of the sweep in turn.
pub trait ClaimCheck {
    /// Checks the claim at one size, adding to what earlier sizes found.
    fn check_at(&mut self, cx: &SizeContext<'_>);
    /// The claim could not be checked at some size (time limit, a failed
    /// computation): it gets no verdict unless it was already refuted.
    fn undecided(&mut self, why: String);
    /// The verdict and evidence over all sizes.
    fn finish(self: Box<Self>) -> ClaimOutcome;
}

/// Checks every claim of `program`; never panics on what a spec contains.
pub fn verify(program: &Program, source: &Source, options: &Options) -> FileOutcome {
    let mut outcome = FileOutcome {
        path: source.name().to_string(),
        source: Some(source.clone()),
        exercise: program.exercise.clone(),
        diagnostics: vec![],
        sizes: vec![],
        claims: vec![],
        derived: vec![],
    };
    let sweep = match size_sweep(program, &options.dims) {
        Ok(sweep) => sweep,
        Err(e) => {
            outcome
                .diagnostics
                .push(miette::Report::new(*e).with_source_code(source.named()));
            return outcome;
        }
    };
    let mut checks: Vec<Box<dyn ClaimCheck + Send + '_>> = program
        .claims
        .iter()
        .map(|claim| checker(program, source, claim))
        .collect();
    let last = sweep.len().saturating_sub(1);
    for (k, sizes) in sweep.into_iter().enumerate() {
        match check_at(program, source, options, sizes.clone(), &mut checks) {
            Ok(derived) => {
                outcome.sizes.push(sizes);
                if options.keep_derived && k == last {
                    outcome.derived = derived;
                }
            }
            Err(SizeFailure::Diagnostic(diagnostic)) => {
                outcome.diagnostics.push(diagnostic);
                for check in &mut checks {
                    check.undecided(
                        "not checked at every size: the forward computation failed".to_string(),
                    );
                }
                break;
            }
            Err(SizeFailure::Timeout(why)) => {
                // Larger sizes would take longer still.
                for check in &mut checks {
                    check.undecided(why.clone());
                }
                break;
            }
        }
    }
    outcome.claims = checks.into_iter().map(|c| c.finish()).collect();
    outcome
}

/// The check for one claim, by its kind.
fn checker<'p>(
    program: &'p Program,
    source: &Source,
    claim: &'p crate::analysis::program::Claim,
) -> Box<dyn ClaimCheck + Send + 'p> {
    let outcome = blank_outcome(program, source, claim);
    match &claim.kind {
        ClaimKind::Grad(grad) => Box::new(GradCheck::new(grad, outcome)),
        ClaimKind::Taylor(taylor) => {
            Box::new(TaylorCheck::new(program, taylor, claim.span.start, outcome))
        }
        ClaimKind::Equivalent(e) => Box::new(trajectory::EquivalenceCheck::new(e, outcome)),
        ClaimKind::Holds(h) => Box::new(stochastic::HoldsCheck::new(h, claim.span, outcome)),
        ClaimKind::Optimum(o) => Box::new(optimum::OptimumCheck::new(o, claim.span, outcome)),
    }
}

/// Why a size could not be checked at all.
enum SizeFailure {
    /// The spec's own computation failed: a diagnostic for the file.
    Diagnostic(miette::Report),
    /// The time limit ran out on work every claim shares.
    Timeout(String),
}

/// Stack of a thread that checks claims: the binary's main thread's, as
/// the evaluator recurses into the spec's expressions.
const CLAIM_STACK: usize = 8 << 20;

/// Checks every claim at one size. The claims share the size's context
/// and nothing else, and what they share is made once, whichever claim
/// asks first, the same whatever the order: so with cores to spare they
/// are checked side by side and the report is the same. Each takes its
/// claims on a thread of its own, not a rayon task: a claim waiting for
/// what another is making must not be handed, in the middle of making it,
/// a claim that waits for it in turn.
fn check_claims(cx: &SizeContext<'_>, checks: &mut [Box<dyn ClaimCheck + Send + '_>]) {
    // On a rayon thread (a caller checking files as rayon tasks) the
    // claims go in turn: threads of their own would wait there for work
    // that only the pool's threads, all perhaps waiting likewise, can do.
    let workers = match rayon::current_thread_index() {
        Some(_) => 1,
        None => rayon::current_num_threads().min(checks.len()),
    };
    if workers <= 1 {
        for check in checks.iter_mut() {
            check_claim(cx, check.as_mut());
        }
        return;
    }
    let reads_gradient = cx
        .program
        .claims
        .iter()
        .any(|c| matches!(c.kind, ClaimKind::Grad(_) | ClaimKind::Taylor(_)));
    let elements: Vec<usize> = cx.values.iter().map(|v| v.len()).collect();
    let queue = std::sync::Mutex::new(claim_order(cx.program, &elements, checks).into_iter());
    // The lock is held for taking a claim, not for checking it.
    let next = || crate::eval::locked(&queue).next();
    let work = || {
        while let Some(check) = next() {
            check_claim(cx, check.as_mut());
        }
    };
    std::thread::scope(|scope| {
        // The gradient the gradient and Taylor claims read, made first on
        // every core rather than waited for by all but one claim (under a
        // time limit of its own, not the first asker's). The replay of L
        // that probes and Taylor ladders run is compiled from a copy of its
        // recording, made on a thread of its own beside the reverse sweep
        // (which reads the same recording), and compiled there beside it and
        // then beside the claims' first work (a closed form, J), which
        // needs no replay; a claim that asks for it before that thread
        // starts compiles it from the copy, and any other waits for it.
        let compile = || {
            let _ = <f64 as context::Replayable>::replay(cx);
        };
        let mut compiling = false;
        if reads_gradient && cx.loss.is_some() {
            cx.instance
                .extend_deadline(Deadline::after(cx.options.timeout));
            // No thread to be had: the first claim to replay compiles.
            let start = || {
                let _ = std::thread::Builder::new().spawn_scoped(scope, compile);
            };
            compiling = cx.derivation_compiled_beside(start);
        }
        // A large recording is not copied: its replay is compiled now,
        // while the recording is about all that is held (compiled beside
        // the claims' first work, the recording, its schedule and the
        // program were held at once with theirs, which made the peak
        // memory of a large layer). A smaller one the derivation did not
        // hand on (made before) is compiled beside the claims' first work.
        match cx.swept_operations() {
            Some(n) if n > crate::eval::LARGE_RECORDING => compile(),
            Some(_) if !compiling => {
                let _ = std::thread::Builder::new().spawn_scoped(scope, compile);
            }
            _ => {}
        }
        let spawned = (0..workers)
            .filter(|_| {
                std::thread::Builder::new()
                    .stack_size(CLAIM_STACK)
                    .spawn_scoped(scope, work)
                    .is_ok()
            })
            .count();
        // No thread to be had: the claims are checked here.
        if spawned == 0 {
            work();
        }
    });
}

/// The order claims are taken in on several threads: the first Taylor
/// claim first, as its ladders take longest, and the other Taylor claims
/// last, as they mostly reuse those ladders (a claim taken beside the
/// first would only wait for them). Between them the other claims: those
/// of other kinds first (sampling, trajectories: they may take long), then
/// the gradient claims on the largest tensors first (`elements` by
/// tensor): a gradient claim costs about its tensor's size, and one of the
/// largest taken last kept one core busy while the other had nothing left
/// (A2 at 512²).
/// `checks` are the program's claims'.
fn claim_order<'c, 'p>(
    program: &Program,
    elements: &[usize],
    checks: &'c mut [Box<dyn ClaimCheck + Send + 'p>],
) -> Vec<&'c mut Box<dyn ClaimCheck + Send + 'p>> {
    debug_assert_eq!(program.claims.len(), checks.len());
    let mut first_taylor = true;
    let rank = |claim: &crate::analysis::program::Claim| match &claim.kind {
        ClaimKind::Taylor(_) if std::mem::replace(&mut first_taylor, false) => (0, 0),
        ClaimKind::Taylor(_) => (2, 0),
        ClaimKind::Grad(g) => (1, elements.get(g.target.0).copied().unwrap_or(0)),
        _ => (1, usize::MAX),
    };
    let ranks: Vec<(u8, usize)> = program.claims.iter().map(rank).collect();
    let mut ranked: Vec<_> = ranks.into_iter().zip(checks.iter_mut()).collect();
    ranked.sort_by_key(|&((rank, size), _)| (rank, std::cmp::Reverse(size)));
    ranked.into_iter().map(|(_, check)| check).collect()
}

/// One claim at one size, held to the time limit from its start.
fn check_claim(cx: &SizeContext<'_>, check: &mut (dyn ClaimCheck + Send + '_)) {
    let deadline = Deadline::after(cx.options.timeout);
    cx.instance.extend_deadline(deadline);
    check.check_at(cx);
    // Work cut short by the clock is no verdict, whatever it found.
    if let Err(e) = cx.instance.past(Some(deadline)) {
        check.undecided(e.to_string());
    }
}

fn check_at(
    program: &Program,
    source: &Source,
    options: &Options,
    sizes: Sizes,
    checks: &mut [Box<dyn ClaimCheck + Send + '_>],
) -> Result<Vec<DerivedGradient>, SizeFailure> {
    let fail = |e: Box<crate::eval::EvalError>| {
        if e.is_timeout() {
            SizeFailure::Timeout(e.to_string())
        } else {
            SizeFailure::Diagnostic(miette::Report::new(*e).with_source_code(source.named()))
        }
    };
    let mut instance = Instance::new(program, source, sizes, options.max_elements)
        .map_err(fail)?
        .with_cancel(options.cancel.clone());
    if let Some(operations) = options.max_operations {
        instance.limit_operations(operations);
    }
    instance.set_deadline(Some(Deadline::after(options.timeout)));
    let values = draw_values(&instance, options.seed).map_err(fail)?;
    let mut evaluation = instance.evaluation::<f64>(&values);
    let loss = match program.output {
        Some(_) => Some(evaluation.loss().map_err(fail)?),
        None => None,
    };
    // The kinks L's computation meets, before claim-only definitions add
    // theirs.
    let forward_kinks = evaluation.kinks();
    evaluation.compute_defs(false).map_err(fail)?;
    // Random tensors are part of the spec's setup, as the forward computation
    // is: a parameter out of its domain stops the file, once, with the element.
    crate::eval::random::Laws::of(&evaluation).map_err(fail)?;
    let loss_magnitude = loss.map_or(0.0, |l| loss_magnitude(program, &evaluation, &values, l));
    let terms = (largest_grid(&instance, program) as f64).max(1.0);
    let cx = SizeContext::new(
        program,
        source,
        options,
        &instance,
        &values,
        &evaluation,
        loss,
        loss_magnitude,
        terms,
    );
    if loss.is_some() {
        cx.met_kinks(forward_kinks);
    }
    check_claims(&cx, checks);
    instance.set_deadline(None);
    let derived = if options.keep_derived && program.output.is_some() {
        cx.derived()
            .map_err(|e| fail(Box::new(e.as_ref().clone())))?
            .to_vec()
    } else {
        vec![]
    };
    Ok(derived_gradients(program, &instance, derived))
}

/// The magnitude of the terms L sums: for a layer Σ|g·y|, else |L|. Rounding
/// in L is relative to this, not to L itself, which may cancel to near zero.
fn loss_magnitude(
    program: &Program,
    evaluation: &crate::eval::Evaluation<'_, f64>,
    values: &[ArrayD<f64>],
    loss: f64,
) -> f64 {
    let Some(output) = program.output else {
        return loss.abs();
    };
    let Some(g) = output.incoming.and_then(|g| values.get(g.0)) else {
        return loss.abs();
    };
    let Ok(y) = evaluation.def_values(output.def) else {
        return loss.abs();
    };
    g.iter()
        .zip(y.iter())
        .map(|(g, y)| (g * y).abs())
        .sum::<f64>()
        .max(loss.abs())
}

fn largest_grid(instance: &Instance<'_>, program: &Program) -> u64 {
    let tensors = (0..program.tensors.len()).map(|k| {
        instance
            .tensor_grid(crate::analysis::program::TensorId(k))
            .len()
            .unwrap_or(0)
    });
    let defs = (0..program.defs.len()).map(|k| {
        instance
            .def_grid(crate::analysis::program::DefId(k))
            .len()
            .unwrap_or(0)
    });
    tensors.chain(defs).max().unwrap_or(1)
}

fn derived_gradients(
    program: &Program,
    instance: &Instance<'_>,
    derived: Vec<Option<ArrayD<f64>>>,
) -> Vec<DerivedGradient> {
    program
        .tensors
        .iter()
        .zip(derived)
        .enumerate()
        .filter(|(_, (t, _))| matches!(t.origin, Origin::Declared(_)))
        .filter_map(|(k, (t, d))| {
            let d = d?;
            Some(DerivedGradient {
                tensor: t.name.clone(),
                sizes: instance.sizes.clone(),
                axes: instance
                    .tensor_grid(crate::analysis::program::TensorId(k))
                    .axes()
                    .to_vec(),
                values: d.iter().copied().collect(),
            })
        })
        .collect()
}

fn blank_outcome(
    program: &Program,
    source: &Source,
    claim: &crate::analysis::program::Claim,
) -> ClaimOutcome {
    let (line, column) = source.line_column(claim.span.start);
    let target = match &claim.kind {
        ClaimKind::Grad(g) => program
            .tensors
            .get(g.target.0)
            .map(|t| t.name.clone())
            .unwrap_or_default(),
        ClaimKind::Equivalent(e) => format!("{} == {}", e.first_name, e.second_name),
        // A remainder of L itself, not of one tensor's gradient.
        ClaimKind::Taylor(_) => "L".to_string(),
        // Elements of a claim are points of its free index variables.
        ClaimKind::Holds(h) => h.points.free_names().join(", "),
        ClaimKind::Optimum(o) => o.points.free_names().join(", "),
    };
    ClaimOutcome {
        kind: claim.kind.kind_name(),
        target,
        head: claim_head(source, claim),
        span: claim.span,
        line,
        column,
        expect_fail: claim.expect_fail.as_ref().map(|r| r.node.clone()),
        verdict: Verdict::Undecided("not checked".to_string()),
        sizes: vec![],
        max_abs_error: 0.0,
        max_rel_error: 0.0,
        worst_ratio: None,
        rounding: None,
        kinks: vec![],
        hull_violations: vec![],
        unconfirmed: 0,
        mismatches: vec![],
        routes: vec![],
        mismatch_groups: vec![],
        problems: vec![],
        cross_checks: vec![],
        notes: vec![],
        details: serde_json::Map::new(),
        plots: vec![],
    }
}

/// How a report names a claim, as the author wrote it: a gradient claim up
/// to its `=` (`grad x[j]`), any other up to its `expect fail`.
fn claim_head(source: &Source, claim: &crate::analysis::program::Claim) -> String {
    let text = source
        .text()
        .get(claim.span.start..claim.span.end)
        .unwrap_or("");
    let head = match &claim.kind {
        ClaimKind::Grad(_) => text.split('=').next(),
        _ => text.split("expect fail").next(),
    };
    head.unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The first Taylor claim comes first and the others last; between
    /// them the gradient claims on the largest tensors first, in the
    /// spec's order where their tensors are as large.
    #[test]
    fn claims_are_taken_largest_tensor_first_between_the_taylor_claims() {
        let text = "dim n = 3, m = 2
input x[n]
param w[m, n], b[m]
y[i] = sum(k) w[i,k] * x[k] + b[i]
grad b[i] = g[i]
check taylor one_sided rate > 1
grad x[j] = sum(i) g[i] * w[i,j]
grad w[i,j] = g[i] * x[j]
check taylor central rate > 2
grad b[i] = g[i] + 0
";
        let source = Source::new("order.dl".to_string(), text);
        let program = crate::analysis::analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let mut checks: Vec<Box<dyn ClaimCheck + Send + '_>> = program
            .claims
            .iter()
            .map(|claim| checker(&program, &source, claim))
            .collect();
        let addresses: Vec<*const u8> = checks
            .iter()
            .map(|c| (&**c as *const (dyn ClaimCheck + Send)).cast::<u8>())
            .collect();
        // x, w, b, and the data g, by tensor id.
        let mut elements = vec![0; program.tensors.len()];
        for (k, t) in program.tensors.iter().enumerate() {
            elements[k] = match t.name.as_str() {
                "x" => 3,
                "w" => 6,
                _ => 2,
            };
        }
        let order: Vec<usize> = claim_order(&program, &elements, &mut checks)
            .into_iter()
            .map(|c| {
                let at = (&**c as *const (dyn ClaimCheck + Send)).cast::<u8>();
                addresses.iter().position(|&a| a == at).unwrap()
            })
            .collect();
        // Claims in spec order: 0 grad b, 1 taylor, 2 grad x, 3 grad w,
        // 4 taylor, 5 grad b.
        assert_eq!(order, vec![1, 3, 2, 0, 5, 4]);
    }
}
