//! Resolution of `check taylor …` claims: the rate bound must be a usable
//! number. Which gradient J the claim checks is decided at verification
//! (the `grad` claims above it in the file), not here.

use super::error::AnalysisError;
use super::program::{RateBound, TaylorClaim};
use crate::syntax::ast::{self, RateOp};

/// The tolerance of `rate ≈ v` when none is written. The rates a smooth L
/// can show are whole numbers (1 for a wrong gradient, 2 or 3 for a right
/// one), so a quarter keeps the intervals around neighbouring rates a half
/// apart, while staying far above the fit's own error (a few hundredths).
pub const DEFAULT_TOLERANCE: f64 = 0.25;

/// The checked claim, or every problem with its numbers.
pub fn resolve_taylor(claim: &ast::TaylorClaim) -> Result<TaylorClaim, Vec<AnalysisError>> {
    let bound = &claim.rate;
    let mut errors = vec![];
    let value = bound.value.node;
    if !(value.is_finite() && value > 0.0) {
        errors.push(AnalysisError::TaylorRate {
            detail: format!("a convergence rate is a positive power of ε, not {value}"),
            help: "a right gradient shows `one_sided rate > 1` and `central rate > 2`".to_string(),
            label: "not a positive rate".to_string(),
            span: bound.value.span.into(),
        });
    }
    let tolerance = match (bound.op.node, &bound.tolerance) {
        (RateOp::Approx, None) => Some(DEFAULT_TOLERANCE),
        (RateOp::Approx, Some(t)) if t.node.is_finite() && t.node > 0.0 => Some(t.node),
        (RateOp::Approx, Some(t)) => {
            errors.push(AnalysisError::TaylorRate {
                detail: format!("the tolerance of `≈` must be above 0, not {}", t.node),
                help: format!(
                    "write e.g. `rate ≈ {value} ± 0.2`, or leave it out for ± {DEFAULT_TOLERANCE}"
                ),
                label: "not a positive tolerance".to_string(),
                span: t.span.into(),
            });
            None
        }
        (RateOp::Gt | RateOp::Ge, Some(t)) => {
            errors.push(AnalysisError::TaylorRate {
                detail: "a tolerance goes with `≈` only".to_string(),
                help: format!("write `rate ≈ {value} ± {}` or drop the tolerance", t.node),
                label: "tolerance of a one-sided bound".to_string(),
                span: t.span.into(),
            });
            None
        }
        (RateOp::Gt | RateOp::Ge, None) => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(TaylorClaim {
        scheme: claim.scheme.node,
        rate: RateBound {
            op: bound.op.node,
            value,
            tolerance,
        },
        precision: claim.precision.as_ref().map(|p| p.node),
    })
}
