//! Errors of evaluation: `dl::eval::*`. Each names the expression, the point
//! (index values in the spec's 1-based terms) and the sizes where it happened.

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

#[derive(Debug, Error, Diagnostic, Clone, PartialEq)]
pub enum EvalError {
    /// Returned when an access reads outside its tensor: `g[j-2]` at `j = 2`.
    #[error("`{access}` reads {tensor}[{index}], outside {tensor}[{extent}] ({at})")]
    #[diagnostic(
        code(dl::eval::index_out_of_range),
        help(
            "keep the access in range, or say where zero padding is meant with a case, or with an Iverson bracket anywhere in the product that reads it (a bracket that is 0 makes its whole product 0): `[{guard}] * {access}`"
        )
    )]
    IndexOutOfRange {
        access: String,
        tensor: String,
        index: String,
        extent: String,
        guard: String,
        at: String,
        #[label("reads {tensor}[{index}] at {at}")]
        span: SourceSpan,
        #[label("`{tensor}` holds {tensor}[{extent}]")]
        declaration: SourceSpan,
    },

    /// Returned when no case of a piecewise definition holds at a point.
    #[error("no case holds at {at}")]
    #[diagnostic(
        code(dl::eval::no_case),
        help("add a case for this point, or end with `| ... otherwise`")
    )]
    NoCase {
        at: String,
        #[label("no condition is true at {at}")]
        span: SourceSpan,
    },

    /// Returned when two cases hold at a point and give different values.
    #[error(
        "ambiguous definition at {at}: two cases hold and disagree ({first_value} vs {second_value})"
    )]
    #[diagnostic(
        code(dl::eval::ambiguous_cases),
        help("make the conditions disjoint, or make the cases agree where they overlap")
    )]
    AmbiguousCases {
        at: String,
        first_value: String,
        second_value: String,
        #[label("gives {first_value}")]
        first: SourceSpan,
        #[label("also holds, gives {second_value}")]
        second: SourceSpan,
    },

    /// Returned when a function is applied outside its domain: `log(x)` with `x <= 0`.
    #[error("{function} of {value} at {at}")]
    #[diagnostic(code(dl::eval::domain), help("{help}"))]
    Domain {
        function: String,
        value: String,
        at: String,
        help: String,
        #[label("{function}({value}) is undefined")]
        span: SourceSpan,
    },

    /// Returned when a divisor is 0: `1 / (x[i] - x[i])`.
    #[error("`{expression}` divides by zero at {at}")]
    #[diagnostic(code(dl::eval::division_by_zero), help("{help}"))]
    DivisionByZero {
        expression: String,
        at: String,
        help: String,
        #[label("divides by zero at {at}")]
        span: SourceSpan,
        #[label("this is 0")]
        divisor: SourceSpan,
    },

    /// Returned when a value is NaN or infinite: `1 / (x[i] - x[i])`.
    #[error("`{expression}` is {value} at {at}")]
    #[diagnostic(
        code(dl::eval::non_finite),
        help(
            "a value overflowed or was divided by zero; constrain the inputs (`param s > 0`) or rescale"
        )
    )]
    NonFinite {
        expression: String,
        value: String,
        at: String,
        #[label("{value} here")]
        span: SourceSpan,
    },

    /// Returned when `max`, `min` or `mean` runs over an empty range.
    #[error("`{op}` over an empty range at {at}")]
    #[diagnostic(
        code(dl::eval::empty_reduction),
        help("`max`, `min` and `mean` need at least one element; check the range")
    )]
    EmptyReduction {
        op: String,
        at: String,
        #[label("no elements at {at}")]
        span: SourceSpan,
    },

    /// Returned when the tensors of a spec would exceed the element limit: `dim N = 100000000`.
    #[error("{elements} tensor elements at {sizes}, above the limit of {limit}")]
    #[diagnostic(
        code(dl::eval::too_large),
        help(
            "use smaller sizes (`--dim`), or raise `--max-elements` if the machine has the memory"
        )
    )]
    TooLarge {
        elements: String,
        limit: u64,
        sizes: String,
        #[label("sizes declared here")]
        span: SourceSpan,
    },

    /// Returned when a given list does not match its tensor's length: `input v[N] = [1, 2]` at `N = 3`.
    #[error("`{tensor}` needs {expected} value{} at {sizes}, but {found} {} given", if *.expected == 1 { "" } else { "s" }, if *.found == 1 { "is" } else { "are" })]
    #[diagnostic(
        code(dl::eval::list_length),
        help("give one value per element, or a single value for all")
    )]
    ListLength {
        tensor: String,
        expected: u64,
        found: usize,
        sizes: String,
        #[label("{found} values")]
        span: SourceSpan,
    },

    /// Returned when values given in rows do not have their tensor's shape:
    /// `input w[n, m] = [[1, 2, 3], [4, 5, 6]]` at `n = 3, m = 2`.
    #[error("`{tensor}` has shape {expected} at {sizes}, but its values are given as {found}")]
    #[diagnostic(
        code(dl::eval::list_shape),
        help("give one row per element of the first axis, each as long as the next axes are")
    )]
    ListShape {
        tensor: String,
        expected: String,
        found: String,
        sizes: String,
        #[label("{found} given")]
        span: SourceSpan,
    },

    /// Returned when checking a claim takes longer than `--timeout`.
    #[error("not checked within the time limit of {limit} at {sizes}{}", slow.map_or_else(String::new, |why| format!(", where the gradient is derived by forward mode alone: {why}")))]
    #[diagnostic(
        code(dl::eval::timeout),
        help("raise `--timeout`, or check at smaller sizes (`--dim`)")
    )]
    Timeout {
        limit: String,
        sizes: String,
        /// Why the work was slower than usual, where it is known: the
        /// gradient was derived by forward mode alone, for want of memory.
        slow: Option<TooLargeToRecord>,
    },

    /// Returned when a distribution's parameter is out of its domain at an
    /// element, which is never clamped: `random q[i] ~ bernoulli(g[i] / a)`
    /// where `g[3] / a` is 1.4.
    #[error("`{element} ~ {distribution}`: {detail} ({at})")]
    #[diagnostic(
        code(dl::eval::distribution_domain),
        help(
            "parameters are used as computed, never clamped: check the formula, or constrain the values that reach it"
        )
    )]
    DistributionDomain {
        /// `q[3]`, or `q` for a scalar.
        element: String,
        /// `bernoulli(1.4)`: the distribution with the parameters at the element.
        distribution: String,
        detail: String,
        at: String,
        #[label("{detail} at {at}")]
        span: SourceSpan,
    },

    /// Returned when a recording of L for reverse mode would not fit in the
    /// memory the process can have: a cumulative sum at `N = 30000`
    /// records 4.5·10⁸ operations. The gradient is then derived by
    /// forward mode, without a recording.
    #[error(
        "the recording of L for reverse mode needs more than {operations} operations, more than the memory available carries (about {} at the peak)",
        in_bytes(*.bytes)
    )]
    #[diagnostic(
        code(dl::eval::recording_too_large),
        help(
            "forward mode derives the gradient instead, which takes a pass per eight elements: check a smaller size (`--dim`), or free memory"
        )
    )]
    RecordingTooLarge { operations: usize, bytes: u64 },

    /// Returned when the engine contradicts itself; never caused by a spec.
    #[error("internal error: {what}")]
    #[diagnostic(
        code(dl::internal),
        help("this is a bug in dlverify; please report it with the spec that caused it")
    )]
    Internal { what: String },
}

/// A recording of L for reverse mode stopped at `operations`, past what
/// the memory available carries: forward mode derives the gradient alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLargeToRecord {
    pub operations: usize,
}

impl std::fmt::Display for TooLargeToRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a recording of L for reverse mode would hold more than {} operations, more than the memory available carries",
            self.operations
        )
    }
}

/// A size in memory as one reads it: `350 MB`, `1.2 GB`, `30 GB`.
fn in_bytes(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    match b {
        b if b >= 10e9 => format!("{:.0} GB", b / 1e9),
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.0} MB", b / 1e6),
        b => format!("{:.0} kB", b / 1e3),
    }
}

impl EvalError {
    /// A time limit ran out: the claim is not checked, rather than wrong.
    pub fn is_timeout(&self) -> bool {
        matches!(self, EvalError::Timeout { .. })
    }

    /// The span the error is about, for grouping errors of one cause.
    pub fn primary_span(&self) -> SourceSpan {
        match self {
            EvalError::IndexOutOfRange { span, .. }
            | EvalError::NoCase { span, .. }
            | EvalError::Domain { span, .. }
            | EvalError::NonFinite { span, .. }
            | EvalError::EmptyReduction { span, .. }
            | EvalError::TooLarge { span, .. }
            | EvalError::ListLength { span, .. }
            | EvalError::ListShape { span, .. }
            | EvalError::DivisionByZero { span, .. }
            | EvalError::DistributionDomain { span, .. } => *span,
            EvalError::Timeout { .. }
            | EvalError::RecordingTooLarge { .. }
            | EvalError::Internal { .. } => SourceSpan::from(0..0),
            EvalError::AmbiguousCases { first, .. } => *first,
        }
    }
}
