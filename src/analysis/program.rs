//! The checked program: every name resolved to what it denotes, every index
//! expression reduced to an affine form, every index variable given a range.
//! The evaluator runs this, never the raw AST.

use crate::source::{Span, Spanned};
use crate::syntax::ast::{
    BinaryOp, CompareOp, Moment, Precision, RateOp, ReduceOp, Sense, TaylorScheme, TensorRole,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DimId(pub usize);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HyperId(pub usize);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorId(pub usize);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DefId(pub usize);
/// A slot in the index-variable environment of one definition or claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VarId(pub usize);

#[derive(Clone, Debug)]
pub struct Program {
    pub exercise: Option<String>,
    pub dims: Vec<Dim>,
    pub hypers: Vec<Hyper>,
    pub tensors: Vec<Tensor>,
    /// `let`s and the output, in an order where each only reads earlier
    /// ones, except within a step group.
    pub defs: Vec<Def>,
    /// The layer or loss L is built from; a spec of stochastic or update-rule
    /// claims alone has none.
    pub output: Option<Output>,
    pub claims: Vec<Claim>,
    /// Gradient sources of update rules, drawn every step.
    pub streams: Vec<Stream>,
    /// `optimizer NAME { … }` blocks.
    pub optimizers: Vec<Optimizer>,
    /// `random q[i] ~ bernoulli(p)`: tensors drawn anew for every sample a
    /// stochastic claim takes (see `verify::stochastic`).
    pub randoms: Vec<RandomTensor>,
    /// Lets that read one another's earlier steps (an LSTM's gates, cell
    /// and hidden state), computed together step by step.
    pub step_groups: Vec<StepGroup>,
}

/// Lets computed together, one step of their first axis at a time: at each
/// step every member in declaration order, so that each reads only steps
/// computed already (earlier ones of any member, this one of members above).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepGroup {
    /// In declaration order.
    pub members: Vec<DefId>,
    pub order: RecurrenceOrder,
    /// Lets declared among the members that read one without being read
    /// by one: computed after the group, in declaration order.
    pub after: Vec<DefId>,
}

impl Program {
    /// Per definition: whether it reads a random tensor, directly or through
    /// another definition. Such a definition has a value per draw only.
    pub fn stochastic_defs(&self) -> Vec<bool> {
        self.defs_reading(vec![false; self.defs.len()], |node| {
            matches!(&node.node, NodeKind::Tensor { id, .. }
                if self.tensors.get(id.0).is_some_and(|t| t.origin == Origin::Random))
        })
    }

    /// The order definitions are computed in: as declared, but a step
    /// group all at once at its last member, and the lets among its members
    /// that read one without being read by one right after it.
    pub fn computation_order(&self) -> Vec<DefId> {
        let mut deferred = vec![false; self.defs.len()];
        for group in &self.step_groups {
            for d in &group.after {
                if let Some(slot) = deferred.get_mut(d.0) {
                    *slot = true;
                }
            }
        }
        let mut order = vec![];
        for (k, def) in self.defs.iter().enumerate() {
            if !deferred[k] {
                order.push(DefId(k));
            }
            let last_of = def
                .step_group
                .and_then(|g| self.step_groups.get(g))
                .filter(|g| g.members.last() == Some(&DefId(k)));
            if let Some(group) = last_of {
                order.extend(group.after.iter().copied());
            }
        }
        order
    }

    /// Per definition: read by one of `bodies`, directly or through other
    /// definitions; a step group's members all, where one is (they are
    /// computed together).
    pub fn defs_read_by(&self, bodies: &[&Body]) -> Vec<bool> {
        let mut read = vec![false; self.defs.len()];
        let mark = |read: &mut Vec<bool>, body: &Body| {
            super::visit_body(body, &mut |n| {
                if let NodeKind::Def { id, .. } = &n.node
                    && let Some(slot) = read.get_mut(id.0)
                {
                    *slot = true;
                }
            });
        };
        for body in bodies {
            mark(&mut read, body);
        }
        loop {
            let before = read.clone();
            for (k, def) in self.defs.iter().enumerate() {
                if read[k] {
                    mark(&mut read, &def.body);
                }
            }
            for group in &self.step_groups {
                if group.members.iter().any(|m| read.get(m.0) == Some(&true)) {
                    for m in &group.members {
                        if let Some(slot) = read.get_mut(m.0) {
                            *slot = true;
                        }
                    }
                }
            }
            if read == before {
                return read;
            }
        }
    }

    /// Per definition: already `marked`, or reading a node that `reads`
    /// holds for (other than a definition), directly or through another
    /// definition that is marked.
    pub fn defs_reading(&self, mut marked: Vec<bool>, reads: impl Fn(&Node) -> bool) -> Vec<bool> {
        marked.resize(self.defs.len(), false);
        // Lets read earlier lets, so this mostly settles in one round; the
        // members of a step group read later ones too, which the rounds
        // settle.
        for _ in 0..=self.defs.len() {
            let mut changed = false;
            for (k, def) in self.defs.iter().enumerate() {
                if marked[k] {
                    continue;
                }
                let mut found = false;
                crate::analysis::visit_body(&def.body, &mut |node| {
                    found |= match &node.node {
                        NodeKind::Def { id, .. } => marked.get(id.0).copied().unwrap_or(false),
                        _ => reads(node),
                    };
                });
                if found {
                    marked[k] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        marked
    }
}

/// `random q[i] ~ bernoulli((g[i] - b) / a)`: the tensor's values are drawn
/// per sample, each element from the distribution with its parameters
/// evaluated at that element. Every other check sees NaN in it.
#[derive(Clone, Debug)]
pub struct RandomTensor {
    pub tensor: TensorId,
    pub distribution: DistributionSpec,
    /// The tensor's index variables are slots `0..rank` of the parameters.
    pub slots: usize,
    pub var_names: Vec<String>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OptimizerId(pub usize);

/// `stream gt[n] ~ normal(0, 1)` or `stream gt[n] = grad theta + normal(0, 0.1)`.
#[derive(Clone, Debug)]
pub struct Stream {
    /// The tensor the stream's values are read through.
    pub tensor: TensorId,
    pub source: StreamSource,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum StreamSource {
    /// A fresh draw of every element each step.
    Draw(DistributionSpec),
    /// dL/dparam at each optimizer's own current parameters, plus noise.
    Gradient {
        param: TensorId,
        noise: Option<DistributionSpec>,
    },
}

/// An update rule: its state, then its statements, run in order every step.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub name: String,
    pub states: Vec<StateVar>,
    pub statements: Vec<Statement>,
    pub span: Span,
}

/// A state tensor with its initial value, an expression over the inputs,
/// params and hypers and the state's own index variables.
#[derive(Clone, Debug)]
pub struct StateVar {
    pub tensor: TensorId,
    pub init: Node,
    pub slots: usize,
    pub var_names: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum Statement {
    /// A `let` local to the rule, recomputed at its place in every step.
    Let(DefId),
    /// `theta[k] = …`: overwrites a param or state, element by element; the
    /// statements after it see the new values.
    Update {
        target: TensorId,
        body: Body,
        slots: usize,
        var_names: Vec<String>,
        span: Span,
    },
}

#[derive(Clone, Debug)]
pub struct Dim {
    pub name: String,
    pub default: i64,
    /// The smallest size checked (`dim n >= 2 = 5`); 1 unless declared.
    pub minimum: i64,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Hyper {
    pub name: String,
    /// An expression over dims, numbers and earlier hypers.
    pub value: Node,
    pub span: Span,
}

/// Where a tensor's values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Declared(TensorRole),
    /// `g`, the gradient of the loss in a layer's output, drawn by the engine.
    Incoming,
    /// `state v[n] = 0` of an update rule: carried from step to step.
    State(OptimizerId),
    /// `stream gt[n] ~ normal(0, 1)`: drawn anew each step.
    Stream,
    /// `random q[i] ~ bernoulli(p)`: drawn anew for each sample of a
    /// stochastic claim.
    Random,
}

#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub origin: Origin,
    /// Each axis runs over an inclusive range whose ends are affine in the dims.
    pub axes: Vec<AxisRange>,
    pub values: Values,
    pub span: Span,
}

impl Tensor {
    /// Inputs and params: the tensors L is differentiated in.
    pub fn is_differentiable(&self) -> bool {
        matches!(self.origin, Origin::Declared(_)) && !self.is_data()
    }

    /// Declared, but drawn as data (`~ …` or `in lo..=hi`): not differentiated.
    pub fn is_data(&self) -> bool {
        matches!(self.values, Values::Drawn(_) | Values::Indices { .. })
    }
}

/// How a tensor's values are chosen.
#[derive(Clone, Debug)]
pub enum Values {
    /// Uniform draws from `lo + (hi - lo) * u`, u in a margin-trimmed (0, 1).
    Random { lo: f64, hi: f64 },
    /// The same given value at every element.
    Fill(f64),
    /// Given values of a 1-d tensor, in order.
    List(Vec<f64>),
    /// Given values in nested rows: row-major, with the extent of each
    /// level of nesting, which must be the tensor's shape.
    Grid(Vec<f64>, Vec<usize>),
    /// Drawn from a distribution with constant parameters, once per check:
    /// data (a dropout mask, a target), not differentiated.
    Drawn(DistributionSpec),
    /// Whole numbers drawn uniformly from `lo..=hi` (affine in the dims):
    /// labels or positions, which may index other tensors. Not
    /// differentiated.
    Indices { lo: Affine, hi: Affine },
}

/// `lo..=hi` of one axis of a tensor or definition, affine in the dims.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisRange {
    pub lo: Affine,
    pub hi: Affine,
    /// Where the range comes from: a declaration's shape, a `for` clause, or
    /// the accesses it was inferred from.
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Def {
    pub name: String,
    pub kind: DefKind,
    pub axes: Vec<AxisRange>,
    /// The index variables of the left-hand side are slots `0..axes.len()`.
    pub body: Body,
    pub slots: usize,
    /// Indices on the left-hand side as written (axes may be missing if
    /// their ranges failed to resolve).
    pub rank: usize,
    pub var_names: Vec<String>,
    /// Reads the incoming gradient, directly or through another definition.
    pub reads_incoming: bool,
    /// A `let` inside an update rule: computed at its place in each step,
    /// never with the spec's other definitions.
    pub local_to: Option<OptimizerId>,
    /// Reads its own elements: `h[t] = tanh(a * h[t-1] + x[t])` reads
    /// earlier ones, a backward pass's `d[t] = d[t+1] * …` later ones; its
    /// elements are computed in that order, each after those it reads.
    pub recurrence: Option<RecurrenceOrder>,
    /// Member of [`Program::step_groups`]`[k]`: it reads a let below it, or
    /// is read by one above, at earlier steps.
    pub step_group: Option<usize>,
    pub span: Span,
    pub name_span: Span,
}

/// The order a recurrent definition's elements are computed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecurrenceOrder {
    /// Row-major: it reads only earlier elements (`h[t-1]`).
    Ascending,
    /// Reverse row-major: it reads only later elements (`d[t+1]`).
    Descending,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefKind {
    Let,
    Layer,
    Loss,
}

#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub def: DefId,
    /// For a layer: the incoming gradient `g` with the output's shape.
    pub incoming: Option<TensorId>,
}

#[derive(Clone, Debug)]
pub enum Body {
    Expr(Node),
    Cases(Vec<Case>),
}

#[derive(Clone, Debug)]
pub struct Case {
    pub value: Node,
    /// `None` for `otherwise`: holds where no other case does.
    pub condition: Option<Cond>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Claim {
    pub kind: ClaimKind,
    pub expect_fail: Option<Spanned<String>>,
    pub span: Span,
    /// The span to point at in a report: the claim's head (`grad x[j]`).
    pub head_span: Span,
}

#[derive(Clone, Debug)]
pub enum ClaimKind {
    Grad(GradClaim),
    /// `check taylor one_sided rate > 1`: the remainder's convergence rate.
    Taylor(TaylorClaim),
    /// `claim A == B over 100 steps`: two update rules, one trajectory.
    Equivalent(EquivalenceClaim),
    /// `claim COND`: a condition at every point of its free indices, with
    /// `E[…]` and `Var[…]` over the random tensors.
    Holds(HoldsClaim),
    /// `claim minimize OBJ over a, b subject to … at (…)`.
    Optimum(OptimumClaim),
}

impl ClaimKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            ClaimKind::Grad(_) => "grad",
            ClaimKind::Taylor(_) => "taylor",
            ClaimKind::Equivalent(_) => "equivalence",
            ClaimKind::Holds(_) => "condition",
            ClaimKind::Optimum(_) => "optimum",
        }
    }
}

#[derive(Clone, Debug)]
pub struct GradClaim {
    pub target: TensorId,
    /// Index variables of the left-hand side are slots `0..rank`, ranging over the target's axes.
    pub body: Body,
    pub slots: usize,
    pub var_names: Vec<String>,
}

/// `check taylor SCHEME rate OP VALUE [± TOL] [precision P]`. J is the
/// closed form of the `grad` claims above it in the file (see `verify::taylor`).
#[derive(Clone, Debug)]
pub struct TaylorClaim {
    pub scheme: TaylorScheme,
    pub rate: RateBound,
    /// `None`: as the command line says (f64 unless told otherwise).
    pub precision: Option<Precision>,
}

/// A bound on the measured rate; `tolerance` is set for `≈` only (the
/// written one, or the engine's default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateBound {
    pub op: RateOp,
    pub value: f64,
    pub tolerance: Option<f64>,
}

/// The free index variables of a `claim`: bound implicitly, slots
/// `0..axes.len()`, each over the range inferred from the accesses using it.
#[derive(Clone, Debug, Default)]
pub struct ClaimPoints {
    pub axes: Vec<AxisRange>,
    /// Slots of the whole claim: the free indices, then reductions.
    pub slots: usize,
    pub var_names: Vec<String>,
}

impl ClaimPoints {
    /// The names of the free index variables, in slot order.
    pub fn free_names(&self) -> Vec<String> {
        self.var_names
            .iter()
            .take(self.axes.len())
            .cloned()
            .collect()
    }
}

/// `claim E[gq[i]] == g[i]`, `claim 0 <= (g[i] - b) / a <= 1`.
#[derive(Clone, Debug)]
pub struct HoldsClaim {
    pub condition: Cond,
    pub points: ClaimPoints,
}

/// `claim minimize Var[gq[i]] over a, b subject to b <= lo, a + b >= hi at (hi - lo, lo)`:
/// at every point of the free indices, no feasible choice of the varied
/// names does better than the claimed one.
#[derive(Clone, Debug)]
pub struct OptimumClaim {
    pub sense: Sense,
    pub objective: Node,
    pub over: Vec<Varied>,
    pub subject_to: Vec<Cond>,
    /// The claimed optimum, one value per varied name.
    pub at: Vec<Node>,
    pub points: ClaimPoints,
}

/// A scalar an optimum claim varies: what the spec computes or draws for it
/// is replaced by each candidate value.
#[derive(Clone, Debug)]
pub struct Varied {
    pub name: String,
    pub what: VariedKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VariedKind {
    Def(DefId),
    Hyper(HyperId),
    Tensor(TensorId),
}

/// Functions written as floors, `ceil(x) = -floor(-x)` and
/// `mod(a, b) = a - b * floor(a / b)`, with their arities: names a spec
/// may call besides [`Function::ALL`].
pub const FLOOR_FORMS: [(&str, usize); 2] = [("ceil", 1), ("mod", 2)];

/// A whole-number index that is not affine: `floor((i+1)/2)`,
/// `ceil(i*N/M)`, `mod(i-1, 3)`, built from affine parts (nearest
/// upsampling, adaptive pooling). Computed exactly, in integers, at each
/// point: such an index is data, never differentiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexExpr {
    Affine(Affine),
    Add(Box<IndexExpr>, Box<IndexExpr>),
    Sub(Box<IndexExpr>, Box<IndexExpr>),
    Mul(Box<IndexExpr>, Box<IndexExpr>),
    /// `floor(a / b)`
    FloorDiv(Box<IndexExpr>, Box<IndexExpr>),
    /// `ceil(a / b)`
    CeilDiv(Box<IndexExpr>, Box<IndexExpr>),
    /// `mod(a, b)`: `a - b * floor(a / b)`, which has the sign of `b`.
    Mod(Box<IndexExpr>, Box<IndexExpr>),
}

/// Why a whole-number index has no value at a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexFault {
    DivisionByZero,
    Overflow,
}

impl IndexExpr {
    /// The value at concrete sizes and variable values.
    pub fn eval(&self, sizes: &[i64], env: &[i64]) -> Result<i64, IndexFault> {
        let both = |a: &IndexExpr, b: &IndexExpr| Ok((a.eval(sizes, env)?, b.eval(sizes, env)?));
        let divisor = |b: i64| {
            if b == 0 {
                Err(IndexFault::DivisionByZero)
            } else {
                Ok(b)
            }
        };
        let overflow = |v: Option<i64>| v.ok_or(IndexFault::Overflow);
        match self {
            IndexExpr::Affine(a) => overflow(a.eval(sizes, env)),
            IndexExpr::Add(a, b) => both(a, b).and_then(|(a, b)| overflow(a.checked_add(b))),
            IndexExpr::Sub(a, b) => both(a, b).and_then(|(a, b)| overflow(a.checked_sub(b))),
            IndexExpr::Mul(a, b) => both(a, b).and_then(|(a, b)| overflow(a.checked_mul(b))),
            IndexExpr::FloorDiv(a, b) => {
                let (a, b) = both(a, b)?;
                floor_div(a, divisor(b)?)
            }
            IndexExpr::CeilDiv(a, b) => {
                let (a, b) = both(a, b)?;
                let b = divisor(b)?;
                overflow(floor_div(overflow(a.checked_neg())?, b)?.checked_neg())
            }
            IndexExpr::Mod(a, b) => {
                let (a, b) = both(a, b)?;
                let q = floor_div(a, divisor(b)?)?;
                overflow(q.checked_mul(b).and_then(|qb| a.checked_sub(qb)))
            }
        }
    }

    /// Every variable the index reads.
    pub fn vars(&self) -> Vec<VarId> {
        let mut out = vec![];
        self.for_each_affine(&mut |a| out.extend(a.vars.iter().map(|(v, _)| *v)));
        out
    }

    /// Whether a divisor reads an index variable (not sizes alone).
    pub fn divisor_reads_indices(&self) -> bool {
        match self {
            IndexExpr::Affine(_) => false,
            IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) | IndexExpr::Mul(a, b) => {
                a.divisor_reads_indices() || b.divisor_reads_indices()
            }
            IndexExpr::FloorDiv(a, b) | IndexExpr::CeilDiv(a, b) | IndexExpr::Mod(a, b) => {
                a.divisor_reads_indices() || !b.vars().is_empty()
            }
        }
    }

    /// Every size its divisors read.
    pub fn divisor_dims(&self) -> Vec<DimId> {
        let mut out = vec![];
        match self {
            IndexExpr::Affine(_) => {}
            IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) | IndexExpr::Mul(a, b) => {
                out.extend(a.divisor_dims());
                out.extend(b.divisor_dims());
            }
            IndexExpr::FloorDiv(a, b) | IndexExpr::CeilDiv(a, b) | IndexExpr::Mod(a, b) => {
                out.extend(a.divisor_dims());
                b.for_each_affine(&mut |a| out.extend(a.dims.iter().map(|(d, _)| *d)));
            }
        }
        out
    }

    fn for_each_affine(&self, f: &mut impl FnMut(&Affine)) {
        match self {
            IndexExpr::Affine(a) => f(a),
            IndexExpr::Add(a, b)
            | IndexExpr::Sub(a, b)
            | IndexExpr::Mul(a, b)
            | IndexExpr::FloorDiv(a, b)
            | IndexExpr::CeilDiv(a, b)
            | IndexExpr::Mod(a, b) => {
                a.for_each_affine(f);
                b.for_each_affine(f);
            }
        }
    }
}

/// `floor(a / b)` in integers, `b != 0`.
fn floor_div(a: i64, b: i64) -> Result<i64, IndexFault> {
    let q = a.checked_div(b).ok_or(IndexFault::Overflow)?;
    // Rust's division truncates toward 0: one less where the exact
    // quotient is negative and not whole.
    Ok(if a % b != 0 && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    })
}

/// An affine integer expression over dims and index variables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affine {
    pub constant: i64,
    pub dims: Vec<(DimId, i64)>,
    pub vars: Vec<(VarId, i64)>,
}

impl Affine {
    pub fn constant(c: i64) -> Self {
        Self {
            constant: c,
            ..Self::default()
        }
    }

    pub fn dim(d: DimId) -> Self {
        Self {
            dims: vec![(d, 1)],
            ..Self::default()
        }
    }

    pub fn var(v: VarId) -> Self {
        Self {
            vars: vec![(v, 1)],
            ..Self::default()
        }
    }

    pub fn is_dims_only(&self) -> bool {
        self.vars.is_empty()
    }

    pub fn coefficient_of(&self, v: VarId) -> i64 {
        self.vars
            .iter()
            .filter(|(w, _)| *w == v)
            .map(|(_, c)| c)
            .sum()
    }

    /// `self + k * other`, with overflow reported as `None`.
    pub fn add_scaled(&self, other: &Affine, k: i64) -> Option<Affine> {
        let mut out = self.clone();
        out.constant = out.constant.checked_add(other.constant.checked_mul(k)?)?;
        for &(d, c) in &other.dims {
            let c = c.checked_mul(k)?;
            match out.dims.iter_mut().find(|(e, _)| *e == d) {
                Some(entry) => entry.1 = entry.1.checked_add(c)?,
                None => out.dims.push((d, c)),
            }
        }
        for &(v, c) in &other.vars {
            let c = c.checked_mul(k)?;
            match out.vars.iter_mut().find(|(w, _)| *w == v) {
                Some(entry) => entry.1 = entry.1.checked_add(c)?,
                None => out.vars.push((v, c)),
            }
        }
        out.dims.retain(|(_, c)| *c != 0);
        out.vars.retain(|(_, c)| *c != 0);
        out.dims.sort();
        out.vars.sort_by_key(|(v, _)| v.0);
        Some(out)
    }

    pub fn scaled(&self, k: i64) -> Option<Affine> {
        Affine::default().add_scaled(self, k)
    }

    /// Value at concrete sizes and variable values; `None` on overflow.
    pub fn eval(&self, sizes: &[i64], env: &[i64]) -> Option<i64> {
        let mut total = self.constant;
        for &(d, c) in &self.dims {
            total = total.checked_add(c.checked_mul(*sizes.get(d.0)?)?)?;
        }
        for &(v, c) in &self.vars {
            total = total.checked_add(c.checked_mul(*env.get(v.0)?)?)?;
        }
        Some(total)
    }
}

/// The range of a reduction variable: the largest of its lower bounds to the
/// smallest of its upper bounds (several when inferred from several accesses).
#[derive(Clone, Debug)]
pub struct VarRange {
    pub lowers: Vec<Affine>,
    pub uppers: Vec<Affine>,
    pub span: Span,
}

pub type Node = Spanned<NodeKind>;

#[derive(Clone, Debug)]
pub enum NodeKind {
    Const(f64),
    /// `pi`: π to the precision of the number type that computes with it
    /// (double-double keeps 106 bits), so that a formula with π cancels
    /// against a function's own π (erf's 2/√π) in every precision.
    Pi,
    Dim(DimId),
    Hyper(HyperId),
    /// An index variable's value, used as a number.
    Index(VarId),
    Tensor {
        id: TensorId,
        indices: Vec<Affine>,
    },
    Def {
        id: DefId,
        indices: Vec<Affine>,
    },
    Neg(Box<Node>),
    Binary {
        op: BinaryOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
        /// A product or quotient with an Iverson bracket among its factors
        /// ([`ProductNode::is_guarded_product`]), found once by analysis
        /// rather than at every evaluation.
        guarded: bool,
    },
    /// `x ^ k` with a constant integer exponent: exact for negative bases.
    PowInt(Box<Node>, i32),
    Call {
        function: Function,
        args: Vec<Node>,
    },
    Reduce {
        op: ReduceOp,
        var: VarId,
        range: VarRange,
        body: Box<Node>,
        /// A factor of the body that is the same for every term.
        hoist: Hoist,
    },
    /// `x[floor((i+1)/2)]`: `body` (the access) with `var` set to the
    /// whole-number `index`, which `range` (the axis read) must hold; read
    /// once, as a reduction with a single term.
    Pick {
        var: VarId,
        index: Box<IndexExpr>,
        /// The index as written, for errors of its arithmetic.
        at: Span,
        range: Box<VarRange>,
        body: Box<Node>,
    },
    Iverson(Box<Cond>),
    /// `E[x]` or `Var[x]` in a claim: only the stochastic checks evaluate it.
    Moment {
        moment: Moment,
        body: Box<Node>,
    },
}

/// Which factor of a reduction's body `a * b` is the same for every term
/// (reads no index of the reduction) and smooth (meets no kink): computed
/// at the first term and reused, with the same operations on the same
/// values as at every term, so the sum is the same bit for bit. Marked in
/// claims, where `sum(k) g[k] * (…)` would otherwise cost a whole formula
/// per term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hoist {
    #[default]
    None,
    Lhs,
    Rhs,
}

pub type Cond = Spanned<CondKind>;

#[derive(Clone, Debug)]
pub enum CondKind {
    Compare {
        first: Node,
        rest: Vec<(CompareOp, Node)>,
    },
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

/// The functions a spec may call, with their arity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Exp,
    Log,
    Sqrt,
    Abs,
    Tanh,
    Sigmoid,
    Relu,
    Softplus,
    Sin,
    Cos,
    Min,
    Max,
    Pow,
    Atan,
    Asin,
    Acos,
    Sinh,
    Cosh,
    Log1p,
    Expm1,
    Erf,
    Sign,
    Floor,
    Round,
    Lgamma,
    Digamma,
}

impl Function {
    pub const ALL: [Function; 26] = [
        Function::Exp,
        Function::Log,
        Function::Sqrt,
        Function::Abs,
        Function::Tanh,
        Function::Sigmoid,
        Function::Relu,
        Function::Softplus,
        Function::Sin,
        Function::Cos,
        Function::Min,
        Function::Max,
        Function::Pow,
        Function::Atan,
        Function::Asin,
        Function::Acos,
        Function::Sinh,
        Function::Cosh,
        Function::Log1p,
        Function::Expm1,
        Function::Erf,
        Function::Sign,
        Function::Floor,
        Function::Round,
        Function::Lgamma,
        Function::Digamma,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Function::Exp => "exp",
            Function::Log => "log",
            Function::Sqrt => "sqrt",
            Function::Abs => "abs",
            Function::Tanh => "tanh",
            Function::Sigmoid => "sigmoid",
            Function::Relu => "relu",
            Function::Softplus => "softplus",
            Function::Sin => "sin",
            Function::Cos => "cos",
            Function::Min => "min",
            Function::Max => "max",
            Function::Pow => "pow",
            Function::Atan => "atan",
            Function::Asin => "asin",
            Function::Acos => "acos",
            Function::Sinh => "sinh",
            Function::Cosh => "cosh",
            Function::Log1p => "log1p",
            Function::Expm1 => "expm1",
            Function::Erf => "erf",
            Function::Sign => "sign",
            Function::Floor => "floor",
            Function::Round => "round",
            Function::Lgamma => "lgamma",
            Function::Digamma => "digamma",
        }
    }

    pub fn arity(self) -> usize {
        match self {
            Function::Min | Function::Max | Function::Pow => 2,
            _ => 1,
        }
    }

    pub fn by_name(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A distribution whose parameters are expressions over the spec, evaluated
/// per element: `bernoulli((g[i] - b) / a)`, `normal(0, 1)`.
#[derive(Clone, Debug)]
pub struct DistributionSpec {
    pub kind: DistributionKind,
    pub args: Vec<Node>,
    pub span: Span,
}

/// The distributions a spec may draw from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistributionKind {
    /// `bernoulli(p)`: 1 with probability p, else 0.
    Bernoulli,
    /// `rademacher()`: ±1 with probability ½ each.
    Rademacher,
    /// `uniform(lo, hi)`: uniform on [lo, hi).
    Uniform,
    /// `normal(mean, sd)`: Gaussian.
    Normal,
}

impl DistributionKind {
    pub const ALL: [DistributionKind; 4] = [
        DistributionKind::Bernoulli,
        DistributionKind::Rademacher,
        DistributionKind::Uniform,
        DistributionKind::Normal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DistributionKind::Bernoulli => "bernoulli",
            DistributionKind::Rademacher => "rademacher",
            DistributionKind::Uniform => "uniform",
            DistributionKind::Normal => "normal",
        }
    }

    /// The parameters, named as a usage line shows them.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            DistributionKind::Bernoulli => &["p"],
            DistributionKind::Rademacher => &[],
            DistributionKind::Uniform => &["lo", "hi"],
            DistributionKind::Normal => &["mean", "sd"],
        }
    }

    pub fn by_name(name: &str) -> Option<DistributionKind> {
        DistributionKind::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// `claim A == B over T steps`.
#[derive(Clone, Debug)]
pub struct EquivalenceClaim {
    pub first: OptimizerId,
    pub second: OptimizerId,
    pub first_name: String,
    pub second_name: String,
    pub steps: i64,
}

/// Knuth's strong zero, in one place: the *factors* of an expression and
/// the Iverson brackets among them (its *guards*).
///
/// The factors of `a * b` are those of `a` and those of `b`; of `a / b`,
/// those of the numerator `a` (the divisor `b` is not a factor); of `-a`,
/// those of `a`; any other expression is its own only factor. Parentheses
/// leave no trace in the tree, so `g[i] * ([c] * w[k])`, `[c] * g[i] * w[k]`
/// and `g[i] * w[k] * [c]` have the same factors, in source order.
///
/// A product whose guards include a bracket that is 0 is 0, and nothing else
/// in it is evaluated: not its other factors, not its divisors. The
/// evaluator (`Evaluation::binary`), the tapes, the range inference of
/// name resolution and the size analysis all ask this of both the syntax
/// tree and the program through [`ProductNode`], so they agree on which
/// accesses a bracket guards.
pub trait ProductNode: Sized {
    /// `(op, lhs, rhs)` of a product `lhs * rhs` or quotient `lhs / rhs`.
    fn product_operands(&self) -> Option<(BinaryOp, &Self, &Self)>;
    /// The operand of a unary minus.
    fn negated(&self) -> Option<&Self>;
    /// Whether this is an Iverson bracket.
    fn is_bracket(&self) -> bool;

    /// Calls `f` on each factor of `self`, left to right.
    fn for_each_factor<'a>(&'a self, f: &mut impl FnMut(&'a Self)) {
        if let Some((op, lhs, rhs)) = self.product_operands() {
            lhs.for_each_factor(f);
            if op == BinaryOp::Mul {
                rhs.for_each_factor(f);
            }
        } else if let Some(operand) = self.negated() {
            operand.for_each_factor(f);
        } else {
            f(self);
        }
    }

    /// Calls `f` on each guard (a factor that is a bracket), left to right.
    fn for_each_guard<'a>(&'a self, f: &mut impl FnMut(&'a Self)) {
        self.for_each_factor(&mut |factor| {
            if factor.is_bracket() {
                f(factor);
            }
        });
    }

    /// Whether `self` is a product or quotient with a guard: a bracket
    /// among its factors that, where 0, makes all of `self` 0 unevaluated.
    /// (A lone bracket or `-[c]` is no product: it guards nothing.)
    fn is_guarded_product(&self) -> bool {
        if self.product_operands().is_none() {
            return false;
        }
        let mut found = false;
        self.for_each_guard(&mut |_| found = true);
        found
    }
}

impl ProductNode for Node {
    fn product_operands(&self) -> Option<(BinaryOp, &Self, &Self)> {
        match &self.node {
            NodeKind::Binary { op, lhs, rhs, .. }
                if matches!(op, BinaryOp::Mul | BinaryOp::Div) =>
            {
                Some((*op, lhs, rhs))
            }
            _ => None,
        }
    }

    fn negated(&self) -> Option<&Self> {
        match &self.node {
            NodeKind::Neg(a) => Some(a),
            _ => None,
        }
    }

    fn is_bracket(&self) -> bool {
        matches!(self.node, NodeKind::Iverson(_))
    }
}

impl ProductNode for crate::syntax::ast::Expr {
    fn product_operands(&self) -> Option<(BinaryOp, &Self, &Self)> {
        use crate::syntax::ast::ExprKind;
        match &self.node {
            ExprKind::Binary { op, lhs, rhs } if matches!(op, BinaryOp::Mul | BinaryOp::Div) => {
                Some((*op, lhs, rhs))
            }
            _ => None,
        }
    }

    fn negated(&self) -> Option<&Self> {
        use crate::syntax::ast::{ExprKind, UnaryOp};
        match &self.node {
            ExprKind::Unary {
                op: UnaryOp::Neg,
                operand,
            } => Some(operand),
            _ => None,
        }
    }

    fn is_bracket(&self) -> bool {
        matches!(self.node, crate::syntax::ast::ExprKind::Iverson(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A claim reads the definitions it names and those they read, not the
    /// rest; a step group's members come together.
    #[test]
    fn the_definitions_a_body_reads_are_followed_through_definitions() {
        #![allow(clippy::unwrap_used, clippy::panic)]
        let text = "
            dim n = 4, T = 3
            input x[n]
            param w[n]
            let norm = sqrt(sum(k) w[k]^2)
            let scaled[i] = w[i] / norm
            let unused[i] = exp(x[i])
            let h[t] = [t > 1] * c[t-1] + 1          for t in 1..=T
            let c[t] = 0.5 * h[t]                     for t in 1..=T
            y[i] = scaled[i] * x[i] + h[T] + unused[i]
            grad w[j] = g[j] * x[j] / norm
            grad x[j] = g[j] * scaled[j] + c[1] * 0
        ";
        let source = crate::source::Source::new("t.dl", text);
        let program = crate::analysis::analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let bodies: Vec<&Body> = program
            .claims
            .iter()
            .map(|c| match &c.kind {
                ClaimKind::Grad(g) => &g.body,
                _ => panic!("grad claims only"),
            })
            .collect();
        let read = program.defs_read_by(&bodies);
        let named: Vec<&str> = program
            .defs
            .iter()
            .zip(&read)
            .filter(|(_, r)| **r)
            .map(|(d, _)| d.name.as_str())
            .collect();
        assert_eq!(named, ["norm", "scaled", "h", "c"]);
        assert_eq!(
            program
                .defs_read_by(&bodies[..1])
                .iter()
                .filter(|r| **r)
                .count(),
            1
        );
    }

    fn constant(c: i64) -> Box<IndexExpr> {
        Box::new(IndexExpr::Affine(Affine::constant(c)))
    }

    fn eval(e: IndexExpr) -> Result<i64, IndexFault> {
        e.eval(&[], &[])
    }

    #[test]
    fn whole_number_division_rounds_down_and_up_on_both_sides_of_zero() {
        let cases = [(7, 2, 3, 4, 1), (-7, 2, -4, -3, 1), (7, -2, -4, -3, -1)];
        for (a, b, floor, ceil, modulo) in cases {
            assert_eq!(
                eval(IndexExpr::FloorDiv(constant(a), constant(b))),
                Ok(floor)
            );
            assert_eq!(eval(IndexExpr::CeilDiv(constant(a), constant(b))), Ok(ceil));
            assert_eq!(eval(IndexExpr::Mod(constant(a), constant(b))), Ok(modulo));
        }
        assert_eq!(eval(IndexExpr::FloorDiv(constant(6), constant(3))), Ok(2));
        assert_eq!(eval(IndexExpr::CeilDiv(constant(6), constant(3))), Ok(2));
        assert_eq!(eval(IndexExpr::Mod(constant(-6), constant(3))), Ok(0));
    }

    #[test]
    fn whole_number_faults_are_reported_not_raised() {
        assert_eq!(
            eval(IndexExpr::Mod(constant(3), constant(0))),
            Err(IndexFault::DivisionByZero)
        );
        assert_eq!(
            eval(IndexExpr::FloorDiv(constant(i64::MIN), constant(-1))),
            Err(IndexFault::Overflow)
        );
        assert_eq!(
            eval(IndexExpr::CeilDiv(constant(i64::MIN), constant(2))),
            Err(IndexFault::Overflow)
        );
        assert_eq!(
            eval(IndexExpr::Mul(constant(i64::MAX), constant(2))),
            Err(IndexFault::Overflow)
        );
    }

    #[test]
    fn whole_number_index_reads_sizes_and_variables() {
        // floor((i - 1) * N / M) + 1 at i = 3, N = 7, M = 3: floor(14/3) + 1 = 5.
        let i_minus_1 = Affine::var(VarId(0)).add_scaled(&Affine::constant(-1), 1);
        let e = IndexExpr::Add(
            Box::new(IndexExpr::FloorDiv(
                Box::new(IndexExpr::Mul(
                    Box::new(IndexExpr::Affine(i_minus_1.unwrap_or_default())),
                    Box::new(IndexExpr::Affine(Affine::dim(DimId(0)))),
                )),
                Box::new(IndexExpr::Affine(Affine::dim(DimId(1)))),
            )),
            constant(1),
        );
        assert_eq!(e.eval(&[7, 3], &[3]), Ok(5));
        assert_eq!(e.divisor_dims(), vec![DimId(1)]);
    }
}
