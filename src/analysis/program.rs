//! The checked program: every name resolved to what it denotes, every index
//! expression reduced to an affine form, every index variable given a range.
//! The evaluator runs this, never the raw AST.

use crate::source::{Span, Spanned};
use crate::syntax::ast::{BinaryOp, CompareOp, ReduceOp, TensorRole};

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
    /// `let`s and the output, in an order where each only reads earlier ones.
    pub defs: Vec<Def>,
    /// The layer or loss L is built from; a spec of stochastic or update-rule
    /// claims alone has none.
    pub output: Option<Output>,
    pub claims: Vec<Claim>,
}

#[derive(Clone, Debug)]
pub struct Dim {
    pub name: String,
    pub default: i64,
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
        matches!(self.origin, Origin::Declared(_))
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
    pub span: Span,
    pub name_span: Span,
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
}

impl ClaimKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            ClaimKind::Grad(_) => "grad",
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
    },
    Iverson(Box<Cond>),
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
}

impl Function {
    pub const ALL: [Function; 13] = [
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
