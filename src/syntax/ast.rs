//! The abstract syntax of a `.dl` spec, exactly as written: names are still
//! strings, index expressions are still expressions. The analysis stage
//! resolves and checks it.

use crate::source::{Span, Spanned};

pub type Ident = Spanned<String>;
pub type Expr = Spanned<ExprKind>;
pub type Condition = Spanned<ConditionKind>;

/// A whole spec file: its statements in the order written.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `exercise "Backprop recurrent sequence"`
    Exercise(Spanned<String>),
    /// `dim N = 8` or `dim n = 5, m = 3`: one entry per size.
    Dim(Vec<DimDecl>),
    /// `input x[N] in (-2, 2)`, `param a, b`, `param s > 0`: one entry per tensor.
    Tensor(Vec<TensorDecl>),
    /// `hyper alpha = 0.05, mu = 0.9`
    Hyper(Vec<HyperDecl>),
    /// `let norm[i] = sqrt(sum(k) w[i,k]^2)`
    Let(Definition),
    /// `y[i] = a * (x[i] + x[i+2]) + b for i in 1..=N-2`
    Layer(Definition),
    /// `loss L = log(1 + exp(-t * z))`
    Loss(Definition),
    /// `grad x[j] = ...`, optionally `expect fail "reason"`.
    Claim(Claim),
    /// `random q[i] ~ bernoulli((g[i] - b) / a)`: a random tensor, drawn per sample.
    Random(RandomDecl),
    /// `stream gt[n] ~ normal(0, 1)`: a gradient source for update rules, drawn anew each step.
    Stream(StreamDecl),
    /// `optimizer A { state v[n] = 0  v[k] = mu * v[k] + gt[k] ... }`
    Optimizer(OptimizerDecl),
}

/// `q[i] ~ bernoulli(p[i])`, with optional `for i in ...` ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomDecl {
    pub name: Ident,
    pub indices: Vec<Ident>,
    pub distribution: Distribution,
    pub ranges: Vec<RangeBinding>,
    pub span: Span,
}

/// `bernoulli(p)`, `uniform(lo, hi)`, `normal(mean, sd)`, ...: the name is
/// checked by analysis, the parameters are expressions over the spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    pub name: Ident,
    pub args: Vec<Expr>,
    pub span: Span,
}

/// `stream gt[n] ~ normal(0, 1)` or `stream gt[n] = grad theta (+ normal(0, 0.1))`.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamDecl {
    pub name: Ident,
    pub shape: Vec<Expr>,
    pub source: StreamSource,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StreamSource {
    /// A fresh draw every step.
    Draw(Distribution),
    /// The gradient of the spec's loss in a param, at each optimizer's own
    /// current value of it, plus optional noise drawn every step.
    Gradient {
        param: Ident,
        noise: Option<Distribution>,
    },
}

/// `optimizer NAME { statements }`: run once per step, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerDecl {
    pub name: Ident,
    pub statements: Vec<OptimizerStatement>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OptimizerStatement {
    /// `state v[n] = 0`: state carried between steps, with its initial value
    /// (an expression over inputs, params, hypers and the index variables
    /// `i`, `j`, ... of its shape, written as in `state v[n] = 0.5 * theta[k]`
    /// where the shape's index names are given: `state v[k in n] = ...`).
    State(StateDecl),
    /// `let mu2 = mu * (1 - alpha * lambda)`, evaluated at every step.
    Let(Definition),
    /// `v[k] = mu * v[k] + gt[k]`: an update, seeing the updates before it.
    Update(Definition),
}

/// `state v[n] = init` or `state v[k in n] = expr over k`.
#[derive(Clone, Debug, PartialEq)]
pub struct StateDecl {
    pub name: Ident,
    /// Per axis: an optional index name and the size expression.
    pub shape: Vec<(Option<Ident>, Expr)>,
    pub init: Expr,
    pub span: Span,
}

/// `N = 8` inside a `dim` statement.
#[derive(Clone, Debug, PartialEq)]
pub struct DimDecl {
    pub name: Ident,
    pub default: Spanned<i64>,
    /// `dim n >= 2 = 5`: the smallest size the spec is meant for.
    pub minimum: Option<Spanned<i64>>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorRole {
    /// Data: no claim about its gradient is required, but one may be made.
    Input,
    /// A trainable parameter.
    Param,
}

/// `x[N] in (-2, 2)` inside an `input` or `param` statement.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDecl {
    pub role: Spanned<TensorRole>,
    pub name: Ident,
    /// Sizes of the axes; empty for a scalar. Each is an expression over dims.
    pub shape: Vec<Expr>,
    /// How the values are chosen; `None` draws from the default range.
    pub init: Option<Init>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// A constraint on the random draw: `in (lo, hi)`, `> 0`, ...
    Domain(Spanned<Domain>),
    /// A given value for every element: `= 0.5`.
    Value(Expr),
    /// Given values of a 1-d tensor: `= [1, -2, 3]`.
    List(Spanned<Vec<Expr>>),
    /// Given values in nested rows, `= [[1, 2, 3], [4, 5, 6]]`: the values
    /// row-major, and the extent of each level of nesting.
    Grid(Spanned<Vec<Expr>>, Vec<usize>),
    /// Drawn from a distribution, and not differentiated: `~ bernoulli(0.9)`.
    Drawn(Distribution),
    /// Whole numbers drawn from a range, which may index other tensors:
    /// `in 1..=C`. Not differentiated.
    Indices(IndexRangeExpr),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Domain {
    /// `in (lo, hi)` open, `in [lo, hi]` closed; mixed brackets allowed.
    Interval {
        lo: Expr,
        hi: Expr,
        lo_closed: bool,
        hi_closed: bool,
    },
    /// `> c`, `>= c`, `< c`, `<= c`.
    Bound { op: CompareOp, value: Expr },
}

/// `alpha = 0.05` inside a `hyper` statement.
#[derive(Clone, Debug, PartialEq)]
pub struct HyperDecl {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

/// A named tensor defined in index notation: `let`, a layer output or a loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub name: Ident,
    /// The index variables of the left-hand side: `y[i]` has `[i]`.
    pub indices: Vec<Ident>,
    pub body: Body,
    /// Explicit ranges: `for i in 1..=N-2, j in 1..=n`. Ranges not given are inferred.
    pub ranges: Vec<RangeBinding>,
    pub span: Span,
}

/// `i in 1..=N-2`
#[derive(Clone, Debug, PartialEq)]
pub struct RangeBinding {
    pub index: Ident,
    pub range: IndexRangeExpr,
    pub span: Span,
}

/// `lo..=hi`, inclusive at both ends, as the handout writes ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexRangeExpr {
    pub lo: Expr,
    pub hi: Expr,
    pub span: Span,
}

/// The right-hand side of a definition or a claim.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Expr(Expr),
    /// One case per line, `|`-separated. Where two conditions hold, their values must agree.
    Cases(Vec<Case>),
}

impl Body {
    pub fn span(&self) -> Span {
        match self {
            Body::Expr(e) => e.span,
            Body::Cases(cases) => match (cases.first(), cases.last()) {
                (Some(first), Some(last)) => first.span.to(last.span),
                _ => Span::default(),
            },
        }
    }
}

/// `a * g[j] if j <= 2`, or `a * g[j-2] otherwise`.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub value: Expr,
    /// `None` for `otherwise`.
    pub condition: Option<Condition>,
    pub span: Span,
}

/// A claim about the spec, with its expectation.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub kind: ClaimKind,
    /// `expect fail "reason"`: the claim is an erratum kept on record.
    pub expect_fail: Option<Spanned<String>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ClaimKind {
    /// `grad x[j] = ...`: the closed-form gradient of L in an input or param.
    Grad(GradClaim),
    /// `check taylor one_sided rate > 1`, `check taylor central rate ≈ 3 ± 0.3 precision f32`
    Taylor(TaylorClaim),
    /// `claim COND`: a condition that must hold at every point of its free
    /// indices, e.g. `claim E[gq[i]] == g[i]` or `claim 0 <= (g[i] - b) / a <= 1`.
    Holds(Condition),
    /// `claim minimize OBJ over a, b subject to b <= lo, a + b >= hi at (hi - lo, lo)`
    Optimum(OptimumClaim),
    /// `claim A == B over 100 steps`: two update rules give the same trajectory.
    Equivalent(EquivalenceClaim),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaylorClaim {
    pub scheme: Spanned<TaylorScheme>,
    pub rate: RateBound,
    /// `precision f32`: run the check in single precision.
    pub precision: Option<Spanned<Precision>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaylorScheme {
    /// |L(w+Δw) − L(w) − ⟨J,Δw⟩|
    OneSided,
    /// |½(L(w+Δw) − L(w−Δw)) − ⟨J,Δw⟩|
    Central,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    F64,
}

/// `rate > 1`, `rate >= 2`, or `rate ≈ 3 ± 0.3` (ASCII: `rate ~= 3 +- 0.3`).
#[derive(Clone, Debug, PartialEq)]
pub struct RateBound {
    pub op: Spanned<RateOp>,
    pub value: Spanned<f64>,
    /// For `≈`: the allowed distance; `None` takes the engine's default.
    pub tolerance: Option<Spanned<f64>>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateOp {
    Gt,
    Ge,
    Approx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sense {
    Minimize,
    Maximize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OptimumClaim {
    pub sense: Spanned<Sense>,
    pub objective: Expr,
    /// The names varied: scalar `let`s, hypers or params.
    pub over: Vec<Ident>,
    pub subject_to: Vec<Condition>,
    /// The claimed optimum, one expression per name in `over`.
    pub at: Vec<Expr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EquivalenceClaim {
    pub first: Ident,
    pub second: Ident,
    pub steps: Spanned<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GradClaim {
    pub target: Ident,
    pub indices: Vec<Ident>,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Number(f64),
    /// A scalar name: a dim, hyper, scalar tensor, scalar `let` or index variable.
    Name(String),
    /// `x[i+2]`, `w[i, k]`
    Access {
        tensor: Ident,
        indices: Vec<Expr>,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `exp(x)`, `max(a, b)`, `pow(x, 3)`
    Call {
        function: Ident,
        args: Vec<Expr>,
    },
    /// `sum(k) w[i,k] * x[k]` or `sum(k in 1..=n) ...`
    Reduce {
        op: Spanned<ReduceOp>,
        index: Ident,
        range: Option<Box<IndexRangeExpr>>,
        body: Box<Expr>,
    },
    /// `[j == i]`: 1 where the condition holds, 0 elsewhere. A product with a
    /// bracket that is 0 is 0 without evaluating its other factors, wherever
    /// the bracket stands among them (Knuth's "strong zero", see
    /// `analysis::program::ProductNode`), so `[j >= 3] * g[j-2]` and
    /// `a * g[j-2] * [j >= 3]` never read `g[0]`.
    Iverson(Box<Condition>),
    /// `E[expr]` or `Var[expr]` over the spec's random tensors.
    Moment {
        moment: Spanned<Moment>,
        body: Box<Expr>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    Expectation,
    Variance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Prod,
    /// The sum divided by the number of terms; an error over an empty range.
    Mean,
    Max,
    Min,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConditionKind {
    /// `j <= 2`, `3 <= j <= N-2`: a chain of comparisons, all of which must hold.
    Compare {
        first: Expr,
        rest: Vec<(Spanned<CompareOp>, Expr)>,
    },
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub fn holds(self, lhs: f64, rhs: f64) -> bool {
        match self {
            CompareOp::Eq => lhs == rhs,
            CompareOp::Ne => lhs != rhs,
            CompareOp::Lt => lhs < rhs,
            CompareOp::Le => lhs <= rhs,
            CompareOp::Gt => lhs > rhs,
            CompareOp::Ge => lhs >= rhs,
        }
    }

    /// Whether the comparison holds of two values that order as given
    /// (`None`: one is NaN, and only `!=` holds), as [`CompareOp::holds`].
    pub fn holds_for(self, order: Option<std::cmp::Ordering>) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            CompareOp::Eq => order == Some(Equal),
            CompareOp::Ne => order != Some(Equal),
            CompareOp::Lt => order == Some(Less),
            CompareOp::Le => matches!(order, Some(Less | Equal)),
            CompareOp::Gt => order == Some(Greater),
            CompareOp::Ge => matches!(order, Some(Greater | Equal)),
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}
