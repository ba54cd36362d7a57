//! Errors of the analysis stage: `dl::analysis::*`. They carry spans only; the
//! caller attaches the source text when rendering.

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

#[derive(Debug, Error, Diagnostic, Clone, PartialEq)]
pub enum AnalysisError {
    /// Returned when a name is used that is declared nowhere: `grad q = 1`.
    #[error("unknown name `{name}`")]
    #[diagnostic(code(dl::analysis::unknown_name), help("{help}"))]
    UnknownName {
        name: String,
        #[label("not declared")]
        span: SourceSpan,
        help: String,
    },

    /// Returned when a name is declared twice: `param a` then `input a`.
    #[error("`{name}` is declared twice")]
    #[diagnostic(
        code(dl::analysis::duplicate_name),
        help("rename one of them; dims, hypers, tensors and lets share one namespace")
    )]
    DuplicateName {
        name: String,
        #[label("declared again here")]
        span: SourceSpan,
        #[label("first declared here")]
        previous: SourceSpan,
    },

    /// Returned when a tensor is used with the wrong number of indices: `x[i, j]` for `input x[N]`.
    #[error("`{name}` has {expected} ind{}, but is used with {found}", if *.expected == 1 { "ex" } else { "ices" })]
    #[diagnostic(code(dl::analysis::wrong_index_count), help("write `{usage}`"))]
    WrongIndexCount {
        name: String,
        expected: usize,
        found: usize,
        usage: String,
        #[label("{found} ind{} here", if *.found == 1 { "ex" } else { "ices" })]
        span: SourceSpan,
        #[label("declared with {expected} here")]
        declaration: SourceSpan,
    },

    /// Returned when an index variable is bound again inside its own scope:
    /// `grad w[i,j] = sum(i) g[i]`.
    #[error("index `{name}` is bound again inside its own scope")]
    #[diagnostic(
        code(dl::analysis::rebound_index),
        help("use a fresh name for the inner index, e.g. `{fresh}`")
    )]
    ReboundIndex {
        name: String,
        fresh: String,
        #[label("bound again here")]
        span: SourceSpan,
        #[label("first bound here")]
        outer: SourceSpan,
    },

    /// Returned when an index variable has the name of a dim, hyper or tensor: `sum(N) x[N]`.
    #[error("index `{name}` has the name of a {what}")]
    #[diagnostic(
        code(dl::analysis::index_shadows_name),
        help("pick another index name")
    )]
    IndexShadowsName {
        name: String,
        what: &'static str,
        #[label("index bound here")]
        span: SourceSpan,
        #[label("the {what} is declared here")]
        declaration: SourceSpan,
    },

    /// Returned when a `grad` claim names something that is not an input or a param: `grad alpha = 0`.
    #[error("`grad {name}`: `{name}` is a {what}, not an input or a param")]
    #[diagnostic(
        code(dl::analysis::grad_target),
        help(
            "gradients are claimed in inputs and params; a drawn input (`~ …`, or labels `in 1..=C`) is data, with no gradient"
        )
    )]
    GradTarget {
        name: String,
        what: &'static str,
        #[label("not differentiable")]
        span: SourceSpan,
        #[label("declared as a {what} here")]
        declaration: SourceSpan,
    },

    /// Returned when an index is not an integer affine expression of indices and dims: `x[i*j]`.
    #[error("an index must be an integer affine expression of index variables and dims")]
    #[diagnostic(
        code(dl::analysis::non_affine_index),
        help(
            "write indices such as `i`, `i+2`, `N-j`, `2*k-1`, or whole numbers such as `floor((i+1)/2)` and `mod(i-1, N)+1`; {reason}"
        )
    )]
    NonAffineIndex {
        reason: String,
        #[label("not affine")]
        span: SourceSpan,
    },

    /// Returned when a size or a range end is not affine in the dims: `for i in 1..=S*N`.
    #[error("a range end or size must be an integer affine expression of dims")]
    #[diagnostic(
        code(dl::analysis::non_affine_range),
        help("write ends such as `N`, `N-K+1`, `2*N`; {reason}")
    )]
    NonAffineRange {
        reason: String,
        #[label("not affine")]
        span: SourceSpan,
    },

    /// Returned when a reduction or output index has no access that bounds it: `sum(k) 1`.
    #[error("cannot infer the range of index `{name}`")]
    #[diagnostic(code(dl::analysis::uninferable_range), help("{help}"))]
    UninferableRange {
        name: String,
        help: String,
        #[label("no access bounds `{name}` on its own")]
        span: SourceSpan,
    },

    /// Returned when one index variable indexes axes of different sizes: `sum(k) w[i,k] * x[k]`
    /// with `w[m, n]` and `x[N]`.
    #[error("index `{name}` runs over axes of different sizes: {first} and {second}")]
    #[diagnostic(
        code(dl::analysis::shape_mismatch),
        help(
            "an index used plainly must range over axes of one size; check the declarations, or offset the index explicitly"
        )
    )]
    ShapeMismatch {
        name: String,
        first: String,
        second: String,
        #[label("{first}")]
        first_span: SourceSpan,
        #[label("{second}")]
        second_span: SourceSpan,
    },

    /// Returned when a spec has neither a layer output nor a loss, but needs
    /// one: it has no claims at all, or claims about L such as `grad`.
    #[error("the spec defines no computation to differentiate")]
    #[diagnostic(
        code(dl::analysis::no_output),
        help("add a layer output such as `y[i] = a * x[i] + b` or a scalar `loss L = ...`")
    )]
    NoOutput {
        #[label("this needs a layer or a loss")]
        span: SourceSpan,
    },

    /// Returned when a spec defines two outputs: `y[i] = x[i]` and `loss L = a`.
    #[error("a spec has one output, but `{name}` is a second")]
    #[diagnostic(
        code(dl::analysis::multiple_outputs),
        help("keep one layer or loss; turn the other into a `let`")
    )]
    MultipleOutputs {
        name: String,
        #[label("second output")]
        span: SourceSpan,
        #[label("first output")]
        first: SourceSpan,
    },

    /// Returned when the forward computation reads the incoming gradient `g`.
    #[error("the forward computation reads the incoming gradient `g`")]
    #[diagnostic(
        code(dl::analysis::incoming_in_forward),
        help(
            "`g` is dL/dy, drawn by the engine; it may appear in claims and the lets they use, not in the layer"
        )
    )]
    IncomingInForward {
        #[label("read here")]
        span: SourceSpan,
    },

    /// Returned when a layer spec declares its own `g`: `param g[N]` beside `y[i] = ...`.
    #[error("`g` is reserved for the incoming gradient of the layer")]
    #[diagnostic(
        code(dl::analysis::reserved_name),
        help("rename this declaration; with a layer output, `g[i]` is dL/dy[i]")
    )]
    ReservedIncoming {
        #[label("declared here")]
        span: SourceSpan,
    },

    /// Returned when a let or output is read before it is defined.
    #[error("`{name}` is used before its definition")]
    #[diagnostic(
        code(dl::analysis::used_before_definition),
        help("move the definition of `{name}` above this line{also}")
    )]
    UsedBeforeDefinition {
        name: String,
        /// Another way out, where there is one: `; or, …`.
        also: String,
        #[label("used here")]
        span: SourceSpan,
        #[label("defined here")]
        definition: SourceSpan,
    },

    /// Returned when a let reads its own elements but states no range for
    /// every index: `let c[i] = c[i-1] + x[i]` without `for`.
    #[error("`{name}` reads its own elements, so it needs its range")]
    #[diagnostic(code(dl::analysis::recurrence_needs_range), help("{help}"))]
    RecurrenceNeedsRange {
        name: String,
        #[label("read here")]
        span: SourceSpan,
        #[label("defined here without a range for every index")]
        definition: SourceSpan,
        help: String,
    },

    /// Returned when a let reads its own elements where no order computes
    /// them first: at its own point, `c[i] = c[i] + x[i]`, at a computed
    /// index, `c[2*i]`, or both before and after, `c[i-1] + c[i+1]`.
    #[error("`{name}` reads {read}: {problem}")]
    #[diagnostic(code(dl::analysis::recurrence_order), help("{help}"))]
    RecurrenceOrder {
        name: String,
        read: String,
        /// Why no order of computation serves the read.
        problem: String,
        #[label("read here")]
        span: SourceSpan,
        help: String,
    },

    /// Returned when labels used as an index may fall outside the axis they
    /// index: `lp[i, y[i]]` with `y in 1..=C+1` and `lp`'s axis `1..=C`.
    #[error("`{index}` takes values {values}, but axis {axis} of `{target}` runs over {runs}")]
    #[diagnostic(code(dl::analysis::index_data_range), help("{help}"))]
    IndexDataRange {
        index: String,
        values: String,
        target: String,
        axis: usize,
        runs: String,
        #[label("may fall outside {runs}")]
        span: SourceSpan,
        #[label("its values declared here")]
        declaration: SourceSpan,
        help: String,
    },

    /// Returned when an unknown function is called: `expp(x)`.
    #[error("unknown function `{name}`")]
    #[diagnostic(code(dl::analysis::unknown_function), help("{help}"))]
    UnknownFunction {
        name: String,
        help: String,
        #[label("no such function")]
        span: SourceSpan,
    },

    /// Returned when a function gets the wrong number of arguments: `exp(x, 2)`.
    #[error("`{name}` takes {expected} argument{}, but {found} given", if *.expected == 1 { "" } else { "s" })]
    #[diagnostic(code(dl::analysis::wrong_arity), help("call it as `{usage}`"))]
    WrongArity {
        name: String,
        expected: usize,
        found: usize,
        usage: String,
        #[label("{found} given")]
        span: SourceSpan,
    },

    /// Returned when a size is zero: `dim N = 0`.
    #[error("size `{name}` must be at least 1")]
    #[diagnostic(
        code(dl::analysis::dim_zero),
        help("sizes count elements from 1, as in `x[1] … x[N]`")
    )]
    DimZero {
        name: String,
        #[label("0 elements")]
        span: SourceSpan,
    },

    /// Returned when a size is below the smallest the spec declares:
    /// `dim n >= 2 = 1`, or `--dim n=1` for it.
    #[error("size `{name}` = {value} is below its smallest size {minimum}")]
    #[diagnostic(code(dl::analysis::dim_below_minimum), help("{help}"))]
    DimBelowMinimum {
        name: String,
        value: i64,
        minimum: i64,
        /// What the label says of the value: `2`, or `--dim n=2`.
        given: String,
        #[label("{given}")]
        span: SourceSpan,
        /// The declared smallest size, where the value is the default.
        #[label("at least {minimum}")]
        minimum_span: Option<SourceSpan>,
        help: String,
    },

    /// Returned when a scalar layer output reads as a slip: `L = …` (the
    /// loss without `loss`) or `alpha = 0.1` (a hyper without `hyper`).
    #[error("`{name} = …` defines a layer output, but `{name}` {what}")]
    #[diagnostic(code(dl::analysis::scalar_output_slip), help("{help}"))]
    ScalarOutputSlip {
        name: String,
        what: &'static str,
        help: String,
        #[label("a layer output with one element")]
        span: SourceSpan,
    },

    /// Returned when values given in rows nest deeper or shallower than
    /// their tensor has axes: `input x[3] = [[1, 2, 3]]`.
    #[error("`{name}` has {axes} ax{}, but its values are nested {depth} deep", if *.axes == 1 { "is" } else { "es" })]
    #[diagnostic(
        code(dl::analysis::list_depth),
        help(
            "nest the values one level per axis: `[1, 2, 3]` for one axis, `[[1, 2], [3, 4]]` for two"
        )
    )]
    ListDepth {
        name: String,
        axes: usize,
        depth: usize,
        #[label("{depth} levels")]
        span: SourceSpan,
    },

    /// Returned when a param is declared as data: `param w[n] ~ normal(0, 1)`
    /// or `param y[n] in 1..=C`.
    #[error("`{name}` is a param, but is drawn as data")]
    #[diagnostic(
        code(dl::analysis::drawn_param),
        help(
            "a param is what L is differentiated in and an update rule trains; data drawn once, a mask or labels, is an `input`: `input {name}{shape} {init}`"
        )
    )]
    DrawnParam {
        name: String,
        shape: String,
        init: String,
        #[label("drawn here")]
        span: SourceSpan,
        #[label("declared a param")]
        role: SourceSpan,
    },

    /// Returned when a value that must be a constant depends on data: `hyper c = x[1]`.
    #[error("{what} must be a constant expression")]
    #[diagnostic(code(dl::analysis::not_constant), help("{help}"))]
    NotConstant {
        what: &'static str,
        #[label("depends on {depends}")]
        span: SourceSpan,
        depends: String,
        help: &'static str,
    },

    /// Returned when a value constraint admits no value: `input x in (2, 1)`.
    #[error("the constraint on `{name}` admits no value: {detail}")]
    #[diagnostic(
        code(dl::analysis::empty_domain),
        help("write the interval as (lo, hi) with lo < hi")
    )]
    EmptyDomain {
        name: String,
        detail: String,
        #[label("empty")]
        span: SourceSpan,
    },

    /// Returned when a loss has indices: `loss L[i] = x[i]`.
    #[error("a loss is a scalar, but `{name}` has indices")]
    #[diagnostic(
        code(dl::analysis::indexed_loss),
        help("sum it: `loss {name} = sum(i) ...`, or make it a layer output without `loss`")
    )]
    IndexedLoss {
        name: String,
        #[label("indices here")]
        span: SourceSpan,
    },

    /// Returned when the same index variable appears twice on a left-hand side: `y[i, i]`.
    #[error("index `{name}` appears twice on the left-hand side")]
    #[diagnostic(
        code(dl::analysis::repeated_index),
        help("each axis needs its own index variable")
    )]
    RepeatedIndex {
        name: String,
        #[label("again here")]
        span: SourceSpan,
        #[label("first here")]
        first: SourceSpan,
    },

    /// Returned when a `for` clause names an index the left-hand side does not bind: `y[i] = x[i] for j in 1..=N`.
    #[error("`for {name}` ranges over an index the left-hand side does not bind")]
    #[diagnostic(
        code(dl::analysis::stray_range),
        help("the left-hand side binds: {bound}")
    )]
    StrayRange {
        name: String,
        bound: String,
        #[label("not on the left-hand side")]
        span: SourceSpan,
    },

    /// Returned when a spec has two `exercise` titles.
    #[error("a spec has one `exercise` title")]
    #[diagnostic(
        code(dl::analysis::duplicate_exercise),
        help("keep one title per file")
    )]
    DuplicateExercise {
        #[label("second title")]
        span: SourceSpan,
        #[label("first title")]
        first: SourceSpan,
    },

    /// Returned when no sizes up to the defaults make every range non-empty:
    /// `dim N = 2` with `y[i] = x[i+2] for i in 1..=N-2`.
    #[error("{detail}")]
    #[diagnostic(code(dl::analysis::empty_range), help("{help}"))]
    EmptyRange {
        detail: String,
        help: String,
        #[label("empty at {sizes}")]
        span: SourceSpan,
        sizes: String,
    },

    /// Returned when a `--dim` option names a size the spec does not declare.
    #[error("`--dim {name}=…`: the spec declares no size `{name}`")]
    #[diagnostic(code(dl::analysis::unknown_dim_override), help("{help}"))]
    UnknownDimOverride {
        name: String,
        help: String,
        #[label("sizes are declared here")]
        span: SourceSpan,
    },

    /// Returned when a moment is taken inside another: `claim E[Var[q[i]]] == 0`.
    #[error("moments do not nest")]
    #[diagnostic(
        code(dl::analysis::nested_moment),
        help(
            "take one moment of an expression; `E[x^2]` and `Var[x]` are both allowed, `E[Var[x]]` is not"
        )
    )]
    NestedMoment {
        #[label("inside another moment")]
        span: SourceSpan,
        #[label("the outer moment")]
        outer: SourceSpan,
    },

    /// Returned when a random tensor, or a `let` that reads one, is read
    /// where a value per draw makes no sense: `claim q[i] <= 1` for
    /// `random q[i] ~ bernoulli(p)`, or `y[i] = q[i] * x[i]` in the layer.
    #[error("{place} reads `{name}`, which is random")]
    #[diagnostic(
        code(dl::analysis::random_read),
        help(
            "random tensors, and the lets that read them, may be read by other lets and inside `E[…]` and `Var[…]` of a claim: `claim E[{name}…] == …`"
        )
    )]
    RandomRead {
        name: String,
        place: &'static str,
        #[label("`{name}` has a value per draw only")]
        span: SourceSpan,
    },

    /// Returned when an optimum claim varies something other than a scalar
    /// `let`, hyper, input or param: `claim minimize f over n at (1)` for `dim n`.
    #[error("`over {name}`: `{name}` is a {what}, which an optimum claim cannot vary")]
    #[diagnostic(
        code(dl::analysis::optimum_variable),
        help("an optimum claim varies scalar lets, hypers, inputs and params")
    )]
    OptimumVariable {
        name: String,
        what: &'static str,
        #[label("varied here")]
        span: SourceSpan,
        #[label("declared here")]
        declaration: SourceSpan,
    },

    /// Returned when an optimum claim names a varied name twice: `over a, a`.
    #[error("`{name}` is varied twice")]
    #[diagnostic(
        code(dl::analysis::repeated_varied),
        help("name each varied value once")
    )]
    RepeatedVaried {
        name: String,
        #[label("again here")]
        span: SourceSpan,
        #[label("first here")]
        first: SourceSpan,
    },

    /// Returned when the claimed optimum has not one value per varied name:
    /// `over a, b … at (1)`.
    #[error("the claimed optimum has {found} value{} for {expected} varied name{}", if *.found == 1 { "" } else { "s" }, if *.expected == 1 { "" } else { "s" })]
    #[diagnostic(
        code(dl::analysis::optimum_point),
        help("give one value per name after `over`, in the same order: `at (value_a, value_b)`")
    )]
    OptimumPoint {
        expected: usize,
        found: usize,
        #[label("{found} given")]
        span: SourceSpan,
    },

    /// Returned when `E[...]` or `Var[...]` appears outside a claim: `let m = E[q[1]]`.
    #[error("`E[…]` and `Var[…]` belong in claims")]
    #[diagnostic(
        code(dl::analysis::moment_outside_claim),
        help("state expectations and variances as claims: `claim E[q[i]] == p[i]`")
    )]
    MomentOutsideClaim {
        #[label("a moment outside a claim")]
        span: SourceSpan,
    },

    /// Returned when a Taylor claim's rate or tolerance is not a usable
    /// number: `check taylor central rate > 0`, `rate ≈ 2 ± 0`.
    #[error("{detail}")]
    #[diagnostic(code(dl::analysis::taylor_rate), help("{help}"))]
    TaylorRate {
        detail: String,
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },

    /// Returned when a name that is not a value is used in an expression:
    /// `let z = A` for `optimizer A { … }`.
    #[error("`{name}` is {what}, not a value")]
    #[diagnostic(
        code(dl::analysis::not_a_value),
        help(
            "only dims, hypers, tensors and lets have values; two update rules are compared with `claim A == B over 10 steps`"
        )
    )]
    NotAValue {
        name: String,
        what: &'static str,
        #[label("used as a value")]
        span: SourceSpan,
        #[label("declared here")]
        declaration: SourceSpan,
    },

    /// Returned when an unknown distribution is named: `random q ~ bernouli(0.5)`.
    #[error("unknown distribution `{name}`")]
    #[diagnostic(code(dl::analysis::unknown_distribution), help("{help}"))]
    UnknownDistribution {
        name: String,
        help: String,
        #[label("no such distribution")]
        span: SourceSpan,
    },

    /// Returned when an update rule writes to something other than a param
    /// or its own state: `x[k] = 0` for `input x[n]`.
    #[error("an update rule cannot change `{name}`, a {what}")]
    #[diagnostic(
        code(dl::analysis::update_target),
        help(
            "update rules change params and their own `state`; declare it with `param` or `state`"
        )
    )]
    UpdateTarget {
        name: String,
        what: &'static str,
        #[label("updated here")]
        span: SourceSpan,
        #[label("declared as a {what} here")]
        declaration: SourceSpan,
    },

    /// Returned when `claim A == B` names something that is not an update rule.
    #[error("`{name}` is not an update rule")]
    #[diagnostic(code(dl::analysis::not_an_optimizer), help("{help}"))]
    NotAnOptimizer {
        name: String,
        help: String,
        #[label("not an `optimizer`")]
        span: SourceSpan,
    },

    /// Returned when a gradient stream's shape differs from its param's:
    /// `stream gt[m] = grad theta` with `param theta[n]`.
    #[error("stream `{name}` has the shape {stream_shape}, but `{param}` has {param_shape}")]
    #[diagnostic(
        code(dl::analysis::stream_shape),
        help("declare the stream with the param's shape")
    )]
    StreamShape {
        name: String,
        param: String,
        stream_shape: String,
        param_shape: String,
        #[label("this stream")]
        span: SourceSpan,
        #[label("this param")]
        param_span: SourceSpan,
    },

    /// Returned when a distribution's parameter depends on data where a
    /// constant is needed, or the distribution gets the wrong number of them.
    #[error("`{name}` takes {expected} parameter{}, but {found} given", if *.expected == 1 { "" } else { "s" })]
    #[diagnostic(code(dl::analysis::distribution_arity), help("write `{usage}`"))]
    DistributionArity {
        name: String,
        expected: usize,
        found: usize,
        usage: String,
        #[label("{found} given")]
        span: SourceSpan,
    },
}
