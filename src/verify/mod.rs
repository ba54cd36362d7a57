//! Verification: checks each claim of a checked program at every size of
//! the sweep. One module per kind of claim; `outcome` holds what they find.

mod grad;
pub mod outcome;

pub use grad::{group_points, spread_sample};

use ndarray::ArrayD;

use crate::analysis::program::{ClaimKind, Origin, Program};
use crate::analysis::{Sizes, size_sweep};
use crate::eval::{Instance, draw_values, gradient};
use crate::source::Source;
use grad::{GradAccumulator, SizeContext, TensorProbe, probe_tensor};
use outcome::*;

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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seed: 0,
            dims: vec![],
            max_elements: 10_000_000,
            fd_elements: 64,
            keep_derived: false,
        }
    }
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
                .push(miette::Report::new(e).with_source_code(source.named()));
            return outcome;
        }
    };
    let mut accumulators: Vec<GradAccumulator> = program
        .claims
        .iter()
        .map(|claim| GradAccumulator::new(blank_outcome(program, source, claim)))
        .collect();
    let last = sweep.len().saturating_sub(1);
    for (k, sizes) in sweep.into_iter().enumerate() {
        match check_at(program, source, options, sizes.clone(), &mut accumulators) {
            Ok(derived) => {
                outcome.sizes.push(sizes);
                if options.keep_derived && k == last {
                    outcome.derived = derived;
                }
            }
            Err(diagnostic) => {
                outcome.diagnostics.push(diagnostic);
                break;
            }
        }
    }
    outcome.claims = accumulators
        .into_iter()
        .map(GradAccumulator::finish)
        .collect();
    if !outcome.diagnostics.is_empty() {
        for claim in &mut outcome.claims {
            if claim.verdict == Verdict::Holds {
                claim.verdict = Verdict::Undecided(
                    "not checked at every size: the forward computation failed".to_string(),
                );
            }
        }
    }
    outcome
}

fn check_at(
    program: &Program,
    source: &Source,
    options: &Options,
    sizes: Sizes,
    accumulators: &mut [GradAccumulator],
) -> Result<Vec<DerivedGradient>, miette::Report> {
    let report =
        |e: Box<crate::eval::EvalError>| miette::Report::new(*e).with_source_code(source.named());
    let instance = Instance::new(program, source, sizes, options.max_elements).map_err(report)?;
    let values = draw_values(&instance, options.seed).map_err(report)?;
    let mut evaluation = instance.evaluation::<f64>(&values);
    let loss = evaluation.loss().map_err(report)?;
    evaluation.compute_defs(false).map_err(report)?;
    let derived = gradient(&instance, &values).map_err(report)?;
    let loss_magnitude = loss_magnitude(program, &evaluation, &values, loss);
    let terms = largest_grid(&instance, program) as f64;
    let cx = SizeContext {
        instance: &instance,
        values: &values,
        derived: &derived,
        evaluation: &evaluation,
        loss_magnitude,
        terms: terms.max(1.0),
        seed: options.seed,
        fd_elements: options.fd_elements,
    };
    // Probing a tensor costs forward passes; do it once for all its claims.
    let mut probes: Vec<Option<TensorProbe>> = (0..program.tensors.len()).map(|_| None).collect();
    for (claim, acc) in program.claims.iter().zip(accumulators.iter_mut()) {
        match &claim.kind {
            ClaimKind::Grad(grad) => {
                let probe =
                    probes[grad.target.0].get_or_insert_with(|| probe_tensor(grad.target, &cx));
                acc.check(grad, &cx, probe);
            }
        }
    }
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
    let output = program.output;
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
    };
    // The claim up to its `=`: `grad x[j]`, as the author wrote it.
    let text = source
        .text()
        .get(claim.span.start..claim.span.end)
        .unwrap_or("");
    let head = text
        .split('=')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    ClaimOutcome {
        kind: claim.kind.kind_name(),
        target,
        head,
        span: claim.span,
        line,
        column,
        expect_fail: claim.expect_fail.as_ref().map(|r| r.node.clone()),
        verdict: Verdict::Undecided("not checked".to_string()),
        sizes: vec![],
        max_abs_error: 0.0,
        max_rel_error: 0.0,
        mismatches: vec![],
        mismatch_groups: vec![],
        problems: vec![],
        cross_checks: vec![],
    }
}
