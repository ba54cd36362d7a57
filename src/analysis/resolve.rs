//! Name resolution and index analysis: AST → [`Program`].
//!
//! Errors are collected rather than returned at the first, so that an author
//! sees every problem of a file at once.

use std::collections::HashMap;

use super::error::AnalysisError;
use super::program::*;

mod optimizer;
mod steps;
mod stochastic;
use crate::source::{Span, Spanned};
use crate::syntax::ast::{self, BinaryOp, TensorRole};

/// What a global name denotes.
#[derive(Clone, Copy, Debug)]
enum Symbol {
    Dim(DimId),
    Hyper(HyperId),
    Tensor(TensorId),
    Def(DefId),
    Optimizer(OptimizerId),
}

#[derive(Clone, Copy)]
struct Declared {
    symbol: Symbol,
    span: Span,
}

fn what(symbol: Symbol, program: &Program) -> &'static str {
    match symbol {
        Symbol::Dim(_) => "dim",
        Symbol::Hyper(_) => "hyper",
        Symbol::Tensor(t) => match program.tensors.get(t.0).map(|t| (t.origin, &t.values)) {
            Some((Origin::Declared(_), Values::Drawn(_) | Values::Indices { .. })) => "drawn input",
            Some((o, _)) => match o {
                Origin::Declared(TensorRole::Input) => "input",
                Origin::Declared(TensorRole::Param) => "param",
                Origin::State(_) => "state",
                Origin::Stream => "stream",
                Origin::Random => "random tensor",
                Origin::Incoming => "incoming gradient",
            },
            None => "incoming gradient",
        },
        Symbol::Optimizer(_) => "update rule",
        Symbol::Def(d) => match program.defs.get(d.0).map(|d| d.kind) {
            Some(DefKind::Layer) => "layer output",
            Some(DefKind::Loss) => "loss",
            _ => "let",
        },
    }
}

/// One access `T[e1, …]` seen while resolving a body, kept for range inference.
#[derive(Clone, Debug)]
struct Access {
    name: String,
    axis: usize,
    range: AxisRange,
    index: Affine,
    /// Under an Iverson bracket or a case condition: the guard, not the access,
    /// is what the author meant to bound the index.
    guarded: bool,
    span: Span,
}

/// The index variables visible at a point, innermost last.
#[derive(Default)]
struct Scope {
    vars: Vec<(String, VarId, Span)>,
    next_slot: usize,
    /// The name of every slot, for messages about a point (`j = 2`).
    slot_names: Vec<String>,
    accesses: Vec<Access>,
    /// What this body may read: hypers and dims only (for hyper values).
    constant: bool,
    /// What a constant body is, where it is not a hyper's value: errors
    /// name it and say what it may be built from.
    constant_role: Option<(&'static str, &'static str)>,
    /// In a claim, outside any moment: `E[…]` and `Var[…]` may appear here.
    moments: bool,
    /// Each reduction's index resolved so far with the bounds on it that
    /// depend on dims alone: the full range it takes, which an outer index
    /// reading `x[i+a-1]` must stay clear of for every `a`.
    inner_ranges: Vec<(VarId, Affine, Affine)>,
    /// Inside `E[…]` or `Var[…]`: the moment's span, for a nested one.
    in_moment: Option<Span>,
}

impl Scope {
    fn lookup(&self, name: &str) -> Option<(VarId, Span)> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, s)| (*v, *s))
    }

    fn bind(&mut self, name: &str, span: Span) -> VarId {
        let var = VarId(self.next_slot);
        self.next_slot += 1;
        self.slot_names.push(name.to_string());
        self.vars.push((name.to_string(), var, span));
        var
    }
}

pub fn analyze(spec: &ast::Spec) -> Result<Program, Vec<AnalysisError>> {
    let mut resolver = Resolver::default();
    resolver.run(spec);
    if resolver.errors.is_empty() {
        match resolver.program {
            Some(program) => Ok(program),
            None => Err(vec![]),
        }
    } else {
        Err(resolver.errors)
    }
}

#[derive(Default)]
struct Resolver {
    globals: HashMap<String, Declared>,
    program: Option<Program>,
    errors: Vec<AnalysisError>,
    /// The errors so far, to say each once: a set, as a spec pasted many
    /// times over can have tens of thousands.
    said: std::collections::HashSet<String>,
    /// Random tensors whose declaration failed to resolve.
    failed_randoms: Vec<TensorId>,
    /// Names declared twice (reported): a use that fits the second
    /// declaration but not the first is no second error.
    declared_twice: Vec<String>,
    /// The spec declared a `g` of its own, reported as reserved: what it
    /// meant by `g` is not the incoming gradient, and its uses are no
    /// further errors.
    g_declared: bool,
    /// Definitions resolved so far; a def may read only these.
    defined: Vec<bool>,
    layer_seen: bool,
    /// Resolving the layer or loss itself, which may not read `g`.
    in_output: bool,
    /// The let being resolved, which may read its own earlier elements.
    recurrence: Option<Recurrence>,
    /// The axes of every let whose indices all have `for` ranges, known
    /// before any body: a let above may read its earlier steps.
    early_axes: HashMap<usize, Vec<AxisRange>>,
    /// Every read of a let by a let, for the step groups.
    def_reads: Vec<DefRead>,
    /// Index variables read in a whole-number index of the definition or
    /// claim being resolved: such an index bounds no range.
    picked_vars: Vec<VarId>,
}

/// A let's read of a let (itself included): what orders their computation.
struct DefRead {
    reader: DefId,
    /// The reader's first left-hand-side index: its step.
    reader_step: Option<VarId>,
    /// All its left-hand-side indices.
    reader_lhs: Vec<VarId>,
    target: DefId,
    /// The index read on the target's first axis.
    first: Option<Affine>,
    /// The read as written, `h[t-1, j]`, for messages.
    shown: String,
    /// The reader's step and the first index read, as written: `t`, `t-1`.
    step_shown: String,
    first_shown: String,
    span: Span,
}

/// A let being resolved, and how it reads itself.
struct Recurrence {
    def: DefId,
    /// Its axes, known before its body where every index has a `for`
    /// range; a recurrence needs them.
    axes: Option<Vec<AxisRange>>,
    /// The left-hand side's index variables.
    lhs: Vec<VarId>,
    /// Each read of itself: the indices and the access's span.
    reads: Vec<(Vec<Affine>, Span)>,
    /// Every index has a `for` range, even where one failed to resolve
    /// (reported already: reading the let is then no second error).
    ranged: bool,
    /// A read was refused: the let's other reads are no further errors.
    refused: bool,
}

impl Resolver {
    fn program(&self) -> &Program {
        // `run` sets the program before anything reads it.
        self.program.as_ref().unwrap_or(&EMPTY_PROGRAM)
    }

    fn program_mut(&mut self) -> Option<&mut Program> {
        self.program.as_mut()
    }

    fn error(&mut self, e: AnalysisError) {
        if self.said.insert(format!("{e:?}")) {
            self.errors.push(e);
        }
    }

    fn run(&mut self, spec: &ast::Spec) {
        self.program = Some(EMPTY_PROGRAM.clone());
        self.declare_all(spec);
        self.resolve_hypers(spec);
        self.resolve_tensors(spec);
        self.early_axes = self.ranged_lets(spec);
        let mut output: Option<(DefId, Span)> = None;
        let mut claims = vec![];
        for item in spec.items.iter() {
            match item {
                ast::Item::Let(def) => self.resolve_def(def, DefKind::Let),
                ast::Item::Random(random) => self.resolve_random(random),
                ast::Item::Layer(def) | ast::Item::Loss(def) => {
                    let kind = if matches!(item, ast::Item::Layer(_)) {
                        DefKind::Layer
                    } else {
                        DefKind::Loss
                    };
                    let Some(id) = self.def_id(&def.name.node) else {
                        continue;
                    };
                    // `name = …` at the top level is a scalar layer output;
                    // two slips read the same: a loss without `loss`, and
                    // a hyper without `hyper`.
                    if kind == DefKind::Layer && def.indices.is_empty() {
                        let constant = match &def.body {
                            ast::Body::Expr(e) => const_number(e).is_ok(),
                            ast::Body::Cases(_) => false,
                        };
                        if def.name.node == "L" || constant {
                            self.error(AnalysisError::ScalarOutputSlip {
                                name: def.name.node.clone(),
                                what: if constant {
                                    "is a number, not computed from an input or param"
                                } else {
                                    "is named as the loss"
                                },
                                help: if constant {
                                    format!("a fixed value is a hyper: `hyper {} = …`", def.name.node)
                                } else {
                                    "the loss is `loss L = …`; a layer output with one element takes another name".to_string()
                                },
                                span: def.name.span.into(),
                            });
                            continue;
                        }
                    }
                    if let Some((_, first)) = output {
                        self.error(AnalysisError::MultipleOutputs {
                            name: def.name.node.clone(),
                            span: def.name.span.into(),
                            first: first.into(),
                        });
                    } else {
                        output = Some((id, def.name.span));
                    }
                    self.in_output = true;
                    self.resolve_def(def, kind);
                    self.in_output = false;
                    if kind == DefKind::Layer {
                        self.layer_seen = true;
                    }
                }
                ast::Item::Claim(claim) => claims.push(claim),
                _ => {}
            }
        }
        self.form_step_groups();
        if let Some((def, _)) = output {
            let incoming = self.incoming_tensor();
            if let Some(p) = self.program_mut() {
                p.output = Some(Output { def, incoming });
            }
        } else if let Some(claim) = claims.iter().find(|c| needs_output(&c.kind)) {
            // Gradients and Taylor remainders are of L: there must be an L.
            self.error(AnalysisError::NoOutput {
                span: claim.span.into(),
            });
        } else if claims.is_empty() {
            self.error(AnalysisError::NoOutput {
                span: Span::new(0, 0).into(),
            });
        }
        self.resolve_update_rules(spec);
        for claim in claims {
            self.resolve_claim(claim);
        }
        self.check_randomness();
    }

    /// What a global name denotes, if it is declared.
    fn symbol(&self, name: &str) -> Option<Symbol> {
        self.globals.get(name).map(|d| d.symbol)
    }

    fn def_id(&self, name: &str) -> Option<DefId> {
        match self.symbol(name)? {
            Symbol::Def(d) => Some(d),
            _ => None,
        }
    }

    fn incoming_tensor(&self) -> Option<TensorId> {
        self.program()
            .tensors
            .iter()
            .position(|t| t.origin == Origin::Incoming)
            .map(TensorId)
    }

    fn declare(&mut self, name: &ast::Ident, symbol: Symbol) -> bool {
        if let Some(previous) = self.globals.get(&name.node) {
            self.error(AnalysisError::DuplicateName {
                name: name.node.clone(),
                span: name.span.into(),
                previous: previous.span.into(),
            });
            self.declared_twice.push(name.node.clone());
            return false;
        }
        self.globals.insert(
            name.node.clone(),
            Declared {
                symbol,
                span: name.span,
            },
        );
        true
    }

    /// Enters every global name first, so that declarations may come in any order.
    fn declare_all(&mut self, spec: &ast::Spec) {
        let mut exercise: Option<Span> = None;
        let has_layer = spec.items.iter().any(|i| matches!(i, ast::Item::Layer(_)));
        for item in &spec.items {
            match item {
                ast::Item::Exercise(title) => match exercise {
                    Some(first) => self.error(AnalysisError::DuplicateExercise {
                        span: title.span.into(),
                        first: first.into(),
                    }),
                    None => {
                        exercise = Some(title.span);
                        if let Some(p) = self.program_mut() {
                            p.exercise = Some(title.node.clone());
                        }
                    }
                },
                ast::Item::Dim(dims) => {
                    for d in dims {
                        let id = DimId(self.program().dims.len());
                        if !self.declare(&d.name, Symbol::Dim(id)) {
                            continue;
                        }
                        if d.default.node < 1 {
                            self.error(AnalysisError::DimZero {
                                name: d.name.node.clone(),
                                span: d.default.span.into(),
                            });
                        }
                        let minimum = d.minimum.as_ref().map_or(1, |m| m.node);
                        if let Some(m) = &d.minimum {
                            if m.node < 1 {
                                self.error(AnalysisError::DimZero {
                                    name: d.name.node.clone(),
                                    span: m.span.into(),
                                });
                            } else if d.default.node >= 1 && d.default.node < m.node {
                                self.error(AnalysisError::DimBelowMinimum {
                                    name: d.name.node.clone(),
                                    value: d.default.node,
                                    minimum: m.node,
                                    given: d.default.node.to_string(),
                                    span: d.default.span.into(),
                                    minimum_span: Some(m.span.into()),
                                    help: format!(
                                        "make the default at least the smallest size: `dim {} >= {} = {}`",
                                        d.name.node, m.node, m.node
                                    ),
                                });
                            }
                        }
                        if let Some(p) = self.program_mut() {
                            p.dims.push(Dim {
                                name: d.name.node.clone(),
                                default: d.default.node,
                                minimum,
                                span: d.span,
                            });
                        }
                    }
                }
                ast::Item::Hyper(hypers) => {
                    for h in hypers {
                        let id = HyperId(self.program().hypers.len());
                        if !self.declare(&h.name, Symbol::Hyper(id)) {
                            continue;
                        }
                        if let Some(p) = self.program_mut() {
                            p.hypers.push(Hyper {
                                name: h.name.node.clone(),
                                value: Spanned::new(NodeKind::Const(f64::NAN), h.value.span),
                                span: h.span,
                            });
                        }
                    }
                }
                ast::Item::Tensor(tensors) => {
                    for t in tensors {
                        if has_layer && t.name.node == "g" {
                            self.error(AnalysisError::ReservedIncoming {
                                span: t.name.span.into(),
                            });
                            self.g_declared = true;
                            continue;
                        }
                        self.declare_tensor(
                            &t.name,
                            Origin::Declared(t.role.node),
                            vec![],
                            Values::Random { lo: -1.0, hi: 1.0 },
                            t.span,
                        );
                    }
                }
                ast::Item::Let(def) | ast::Item::Layer(def) | ast::Item::Loss(def) => {
                    let kind = match item {
                        ast::Item::Let(_) => DefKind::Let,
                        ast::Item::Layer(_) => DefKind::Layer,
                        _ => DefKind::Loss,
                    };
                    self.declare_def(def, kind, None);
                }
                ast::Item::Stream(stream) => self.declare_stream(stream),
                ast::Item::Optimizer(optimizer) => self.declare_optimizer(optimizer),
                ast::Item::Random(random) => self.declare_random(random),
                ast::Item::Claim(_) => {}
            }
        }
        if has_layer && !self.globals.contains_key("g") {
            let layer_span = spec
                .items
                .iter()
                .find_map(|i| match i {
                    ast::Item::Layer(d) => Some(d.name.span),
                    _ => None,
                })
                .unwrap_or_default();
            self.declare_tensor(
                &Spanned::new("g".to_string(), layer_span),
                Origin::Incoming,
                vec![],
                Values::Random { lo: -1.0, hi: 1.0 },
                layer_span,
            );
        }
    }

    /// Enters a tensor's name and adds the tensor; `None` (reported) if the
    /// name is taken.
    fn declare_tensor(
        &mut self,
        name: &ast::Ident,
        origin: Origin,
        axes: Vec<AxisRange>,
        values: Values,
        span: Span,
    ) -> Option<TensorId> {
        let id = TensorId(self.program().tensors.len());
        if !self.declare(name, Symbol::Tensor(id)) {
            return None;
        }
        if let Some(p) = self.program_mut() {
            p.tensors.push(Tensor {
                name: name.node.clone(),
                origin,
                axes,
                values,
                span,
            });
        }
        Some(id)
    }

    /// The axes `1..=size` of a declared shape; a size that is not a
    /// constant of the dims is reported and left out.
    fn shape_axes<'e>(
        &mut self,
        shape: impl IntoIterator<Item = &'e ast::Expr>,
        what: &'static str,
    ) -> Vec<AxisRange> {
        shape
            .into_iter()
            .filter_map(|e| {
                Some(AxisRange {
                    lo: Affine::constant(1),
                    hi: self.dims_affine(e, what)?,
                    span: e.span,
                })
            })
            .collect()
    }

    /// Enters a definition's name; its body is resolved later, in order.
    fn declare_def(
        &mut self,
        def: &ast::Definition,
        kind: DefKind,
        local_to: Option<OptimizerId>,
    ) -> Option<DefId> {
        let id = DefId(self.program().defs.len());
        if !self.declare(&def.name, Symbol::Def(id)) {
            return None;
        }
        self.defined.push(false);
        if let Some(p) = self.program_mut() {
            p.defs.push(Def {
                name: def.name.node.clone(),
                kind,
                axes: vec![],
                body: Body::Expr(Spanned::new(NodeKind::Const(0.0), def.span)),
                slots: 0,
                rank: def.indices.len(),
                var_names: vec![],
                reads_incoming: false,
                local_to,
                recurrence: None,
                step_group: None,
                span: def.span,
                name_span: def.name.span,
            });
        }
        Some(id)
    }

    /// `normal(0, sd)`: a known distribution with the right number of
    /// parameters, each resolved in `scope`.
    fn distribution(
        &mut self,
        d: &ast::Distribution,
        scope: &mut Scope,
    ) -> Option<DistributionSpec> {
        let Some(kind) = DistributionKind::by_name(&d.name.node) else {
            let help = suggest(&d.name.node, DistributionKind::ALL.iter().map(|k| k.name()))
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    format!(
                        "the distributions are: {}",
                        DistributionKind::ALL.map(|k| k.name()).join(", ")
                    )
                });
            self.error(AnalysisError::UnknownDistribution {
                name: d.name.node.clone(),
                help,
                span: d.name.span.into(),
            });
            return None;
        };
        if d.args.len() != kind.parameters().len() {
            self.error(AnalysisError::DistributionArity {
                name: kind.name().to_string(),
                expected: kind.parameters().len(),
                found: d.args.len(),
                usage: format!("{}({})", kind.name(), kind.parameters().join(", ")),
                span: d.span.into(),
            });
            return None;
        }
        let args: Vec<Option<Node>> = d.args.iter().map(|a| self.expr(a, scope, false)).collect();
        Some(DistributionSpec {
            kind,
            args: args.into_iter().collect::<Option<Vec<_>>>()?,
            span: d.span,
        })
    }

    fn resolve_hypers(&mut self, spec: &ast::Spec) {
        for item in &spec.items {
            let ast::Item::Hyper(hypers) = item else {
                continue;
            };
            for h in hypers {
                let Some(Symbol::Hyper(id)) = self.symbol(&h.name.node) else {
                    continue;
                };
                // A hyper may read only hypers declared before it.
                let mut scope = Scope {
                    constant: true,
                    ..Scope::default()
                };
                if let Some(value) = self.expr(&h.value, &mut scope, false) {
                    if let Some(later) = first_hyper_at_or_after(&value, id) {
                        self.error(AnalysisError::UsedBeforeDefinition {
                            also: String::new(),
                            name: self
                                .program()
                                .hypers
                                .get(later.0)
                                .map(|h| h.name.clone())
                                .unwrap_or_default(),
                            span: h.value.span.into(),
                            definition: self
                                .program()
                                .hypers
                                .get(later.0)
                                .map(|h| h.span)
                                .unwrap_or_default()
                                .into(),
                        });
                    }
                    if let Some(p) = self.program_mut()
                        && let Some(slot) = p.hypers.get_mut(id.0)
                    {
                        slot.value = value;
                    }
                }
            }
        }
    }

    fn resolve_tensors(&mut self, spec: &ast::Spec) {
        for item in &spec.items {
            let ast::Item::Tensor(tensors) = item else {
                continue;
            };
            for t in tensors {
                let Some(Symbol::Tensor(id)) = self.symbol(&t.name.node) else {
                    continue;
                };
                let axes = self.shape_axes(&t.shape, "a tensor's size");
                let values = self.values(t);
                if let Some(p) = self.program_mut()
                    && let Some(slot) = p.tensors.get_mut(id.0)
                {
                    slot.axes = axes;
                    if let Some(values) = values {
                        slot.values = values;
                    }
                }
            }
        }
    }

    /// The draw or the given values of a declared tensor.
    fn values(&mut self, t: &ast::TensorDecl) -> Option<Values> {
        const WIDTH: f64 = 2.0;
        let name = t.name.node.clone();
        if t.role.node == ast::TensorRole::Param
            && let Some(init @ (ast::Init::Drawn(_) | ast::Init::Indices(_))) = &t.init
        {
            let (span, init) = match init {
                ast::Init::Drawn(d) => (d.span, format!("~ {}(…)", d.name.node)),
                ast::Init::Indices(r) => (r.span, "in …".to_string()),
                _ => (t.span, String::new()),
            };
            self.error(AnalysisError::DrawnParam {
                name,
                shape: if t.shape.is_empty() {
                    String::new()
                } else {
                    "[…]".to_string()
                },
                init,
                span: span.into(),
                role: t.role.span.into(),
            });
            return None;
        }
        match t.init.as_ref()? {
            ast::Init::Value(e) => Some(Values::Fill(self.number(e, "a given value")?)),
            ast::Init::List(items) => {
                let values: Option<Vec<f64>> = items
                    .node
                    .iter()
                    .map(|e| self.number(e, "a given value"))
                    .collect();
                Some(Values::List(values?))
            }
            ast::Init::Grid(items, shape) => {
                if shape.len() != t.shape.len() {
                    self.error(AnalysisError::ListDepth {
                        name,
                        axes: t.shape.len(),
                        depth: shape.len(),
                        span: items.span.into(),
                    });
                    return None;
                }
                let values: Option<Vec<f64>> = items
                    .node
                    .iter()
                    .map(|e| self.number(e, "a given value"))
                    .collect();
                Some(Values::Grid(values?, shape.clone()))
            }
            ast::Init::Indices(range) => {
                let lo = self.dims_affine(&range.lo, "a range end")?;
                let hi = self.dims_affine(&range.hi, "a range end")?;
                Some(Values::Indices { lo, hi })
            }
            ast::Init::Drawn(d) => {
                let mut scope = Scope {
                    constant: true,
                    constant_role: Some(("a drawn value's parameter", DRAW_PARTS)),
                    ..Scope::default()
                };
                self.distribution(d, &mut scope).map(Values::Drawn)
            }
            ast::Init::Domain(domain) => {
                let (lo, hi) = match &domain.node {
                    ast::Domain::Interval { lo, hi, .. } => {
                        (self.number(lo, "a bound")?, self.number(hi, "a bound")?)
                    }
                    ast::Domain::Bound { op, value } => {
                        let c = self.number(value, "a bound")?;
                        match op {
                            ast::CompareOp::Gt | ast::CompareOp::Ge => (c, c + WIDTH),
                            ast::CompareOp::Lt | ast::CompareOp::Le => (c - WIDTH, c),
                            ast::CompareOp::Eq | ast::CompareOp::Ne => {
                                self.error(AnalysisError::EmptyDomain {
                                    name,
                                    detail: format!(
                                        "`{}` is not a bound; use `= value` to give a value",
                                        op.symbol()
                                    ),
                                    span: domain.span.into(),
                                });
                                return None;
                            }
                        }
                    }
                };
                if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
                    self.error(AnalysisError::EmptyDomain {
                        name,
                        detail: format!("the lower end {lo} is not below the upper end {hi}"),
                        span: domain.span.into(),
                    });
                    return None;
                }
                Some(Values::Random { lo, hi })
            }
        }
    }

    /// A finite numeric constant, with a diagnostic where it is not one.
    fn number(&mut self, e: &ast::Expr, what: &'static str) -> Option<f64> {
        match const_number(e) {
            Ok(v) if v.is_finite() => Some(v),
            Ok(_) => {
                self.error(AnalysisError::NotConstant {
                    what,
                    span: e.span.into(),
                    depends: "a value that is not finite".to_string(),
                    help: NUMBER_ONLY,
                });
                None
            }
            Err(depends) => {
                self.error(AnalysisError::NotConstant {
                    what,
                    span: depends.span.into(),
                    depends: depends.node,
                    help: NUMBER_ONLY,
                });
                None
            }
        }
    }

    /// An affine expression over dims alone: a size or a range end.
    fn dims_affine(&mut self, e: &ast::Expr, what: &'static str) -> Option<Affine> {
        let scope = Scope::default();
        let affine = match affine_of(e, &scope, &self.globals) {
            Ok(a) => a,
            Err(AffineError::Unknown(ident)) => {
                self.lookup_global(&ident);
                return None;
            }
            Err(AffineError::NotAffine { span, reason }) => {
                self.error(AnalysisError::NonAffineRange {
                    reason,
                    span: span.into(),
                });
                return None;
            }
            Err(AffineError::Product { span }) => {
                self.error(AnalysisError::NonAffineRange {
                    reason: PRODUCT_IN_RANGE.to_string(),
                    span: span.into(),
                });
                return None;
            }
        };
        if !affine.is_dims_only() {
            self.error(AnalysisError::NotConstant {
                what,
                span: e.span.into(),
                depends: "an index variable".to_string(),
                help: DIMS_ONLY,
            });
            return None;
        }
        Some(affine)
    }

    fn resolve_def(&mut self, def: &ast::Definition, kind: DefKind) {
        let Some(id) = self.def_id(&def.name.node) else {
            return;
        };
        self.picked_vars.clear();
        if kind == DefKind::Loss && !def.indices.is_empty() {
            let span = def
                .indices
                .iter()
                .fold(def.indices[0].span, |s, i| s.to(i.span));
            self.error(AnalysisError::IndexedLoss {
                name: def.name.node.clone(),
                span: span.into(),
            });
        }
        let mut scope = Scope::default();
        let lhs = self.bind_lhs(&def.indices, &mut scope);
        // A let whose every index has its range may read its own earlier
        // elements: its axes are known before its body.
        let ranged = !def.indices.is_empty()
            && def
                .indices
                .iter()
                .all(|i| def.ranges.iter().any(|r| r.index.node == i.node));
        let early_axes = (kind == DefKind::Let && ranged)
            .then(|| self.lhs_axes(&def.indices, &def.ranges, &lhs, &scope, false));
        self.recurrence = (kind == DefKind::Let).then(|| Recurrence {
            def: id,
            axes: early_axes
                .clone()
                .filter(|axes| axes.len() == def.indices.len()),
            lhs: lhs.clone(),
            reads: vec![],
            ranged,
            refused: false,
        });
        let errors_before = self.errors.len();
        let body = self.body(&def.body, &mut scope);
        let recurrence = self
            .recurrence
            .take()
            .and_then(|r| self.check_recurrence(&def.name.node, &r, &scope.slot_names));
        // Accesses that failed to resolve bound nothing: no second error.
        let body_failed = body.is_none() || self.errors.len() > errors_before;
        let axes = match early_axes {
            Some(axes) => axes,
            None => self.lhs_axes(&def.indices, &def.ranges, &lhs, &scope, body_failed),
        };
        let incoming_read = body.as_ref().and_then(|b| self.first_incoming_read(b));
        let reads_incoming = incoming_read.is_some();
        if kind != DefKind::Let
            && !self.g_declared
            && let Some(span) = incoming_read
        {
            self.error(AnalysisError::IncomingInForward { span: span.into() });
        }
        let incoming = self.incoming_tensor();
        let slots = scope.next_slot;
        if let Some(p) = self.program_mut() {
            if kind == DefKind::Layer
                && let Some(t) = incoming.and_then(|t| p.tensors.get_mut(t.0))
            {
                t.axes = axes.clone();
            }
            if let Some(slot) = p.defs.get_mut(id.0) {
                slot.axes = axes;
                slot.recurrence = recurrence;
                slot.slots = slots;
                slot.var_names = scope.slot_names.clone();
                slot.reads_incoming = reads_incoming;
                if let Some(body) = body {
                    slot.body = body;
                }
            }
        }
        if let Some(done) = self.defined.get_mut(id.0) {
            *done = true;
        }
    }

    /// The range of each left-hand-side index (`lhs`, bound in `scope`):
    /// its `for` clause, else inferred from the accesses in `scope`, unless
    /// the body failed to resolve (reported already). Ranges that are not
    /// found are left out; a `for` that binds no index on the left is an error.
    fn lhs_axes(
        &mut self,
        indices: &[ast::Ident],
        ranges: &[ast::RangeBinding],
        lhs: &[VarId],
        scope: &Scope,
        body_failed: bool,
    ) -> Vec<AxisRange> {
        let mut axes = vec![];
        for (var, ident) in lhs.iter().zip(indices) {
            let explicit = ranges.iter().find(|r| r.index.node == ident.node);
            // An index named twice was reported (`repeated_index`): no
            // access can bound the one shadowed, which is no second error.
            let repeated = indices.iter().filter(|i| i.node == ident.node).count() > 1;
            let axis = match explicit {
                Some(binding) => {
                    let lo = self.dims_affine(&binding.range.lo, "a range end");
                    let hi = self.dims_affine(&binding.range.hi, "a range end");
                    lo.zip(hi).map(|(lo, hi)| AxisRange {
                        lo,
                        hi,
                        span: binding.range.span,
                    })
                }
                None if body_failed || repeated => None,
                None => self.infer_axis(&ident.node, *var, ident.span, scope),
            };
            axes.extend(axis);
        }
        for binding in ranges {
            if !indices.iter().any(|i| i.node == binding.index.node) {
                self.error(AnalysisError::StrayRange {
                    name: binding.index.node.clone(),
                    bound: bound_list(indices),
                    span: binding.index.span.into(),
                });
            }
        }
        axes
    }

    /// The order in which a let that reads itself is computed: each read
    /// gives its axes the let's own indices (`c[i, j-1]`) up to one with a
    /// constant added, whose sign says whether it reads an earlier element
    /// (computed in row-major order) or a later one (in reverse); the axes
    /// after it may read anything (`h[t-1, l]`). Every read must go the same
    /// way. `None` for a let that does
    /// not read itself, or whose reads are refused.
    fn check_recurrence(
        &mut self,
        name: &str,
        recurrence: &Recurrence,
        names: &[String],
    ) -> Option<RecurrenceOrder> {
        let index_names: Vec<String> = recurrence
            .lhs
            .iter()
            .enumerate()
            .map(|(k, v)| names.get(v.0).cloned().unwrap_or_else(|| format!("i{k}")))
            .collect();
        let example: Vec<String> = index_names
            .iter()
            .enumerate()
            .map(|(k, n)| {
                if k + 1 == index_names.len() {
                    format!("{n}-1")
                } else {
                    n.clone()
                }
            })
            .collect();
        let mut order = None;
        for (indices, span) in &recurrence.reads {
            // The first axis whose index is not the let's own decides; the
            // axes after it may read anything (`h[t-1, l]`).
            let mut this = None;
            for (a, v) in indices.iter().zip(&recurrence.lhs) {
                if !(a.dims.is_empty() && a.vars == [(*v, 1)]) {
                    break;
                }
                if a.constant != 0 {
                    this = Some(if a.constant < 0 {
                        RecurrenceOrder::Ascending
                    } else {
                        RecurrenceOrder::Descending
                    });
                    break;
                }
            }
            let point = format!("{name}[{}]", index_names.join(", "));
            let problem = match (this, order) {
                (None, _) => Some((
                    format!("a recurrence reads its own index plus a constant, not this, at {point}"),
                    format!(
                        "a let may read its own elements at earlier (or later) indices: its own index plus a constant on the first axis that differs, `{name}[{}]`",
                        example.join(", ")
                    ),
                )),
                (Some(a), Some(b)) if a != b => Some((
                    format!("it reads earlier elements as well, so no order computes both before {point}"),
                    "a let reads either only earlier elements of its own (computed first to last) or only later ones (computed last to first), not both"
                        .to_string(),
                )),
                _ => None,
            };
            if let Some((problem, help)) = problem {
                let shown: Vec<String> = indices
                    .iter()
                    .map(|a| crate::analysis::show_affine(a, self.program(), names))
                    .collect();
                self.error(AnalysisError::RecurrenceOrder {
                    name: name.to_string(),
                    read: format!("`{name}[{}]`", shown.join(", ")),
                    problem,
                    span: (*span).into(),
                    help,
                });
                return None;
            }
            order = this;
        }
        order
    }

    /// The axes of each let whose every index has a `for` range, from those
    /// ranges (errors in them are reported with the let itself).
    fn ranged_lets(&self, spec: &ast::Spec) -> HashMap<usize, Vec<AxisRange>> {
        let scope = Scope::default();
        let dims_only = |e: &ast::Expr| {
            affine_of(e, &scope, &self.globals)
                .ok()
                .filter(Affine::is_dims_only)
        };
        let mut out = HashMap::new();
        for item in &spec.items {
            let ast::Item::Let(def) = item else { continue };
            let Some(id) = self.def_id(&def.name.node) else {
                continue;
            };
            let axes: Option<Vec<AxisRange>> = def
                .indices
                .iter()
                .map(|i| {
                    let binding = def.ranges.iter().find(|r| r.index.node == i.node)?;
                    Some(AxisRange {
                        lo: dims_only(&binding.range.lo)?,
                        hi: dims_only(&binding.range.hi)?,
                        span: binding.range.span,
                    })
                })
                .collect();
            if let Some(axes) = axes.filter(|a| !a.is_empty()) {
                out.insert(id.0, axes);
            }
        }
        out
    }

    /// Groups the lets that read a let below them (at earlier steps) with
    /// it and every let between that reads one of them, and checks that
    /// one order of steps serves every read among them.
    fn form_step_groups(&mut self) {
        let reads = std::mem::take(&mut self.def_reads);
        let pairs: Vec<(usize, usize)> = reads.iter().map(|r| (r.reader.0, r.target.0)).collect();
        for (a, b) in steps::forward_spans(&pairs) {
            let inside = |k: &usize| (a..=b).contains(k);
            let edges: Vec<(usize, usize)> = pairs
                .iter()
                .copied()
                .filter(|(r, t)| inside(r) && inside(t))
                .collect();
            let groups = steps::span_groups(&edges, (a, b), self.defined.len());
            // What reads a group without being read by one is computed
            // after the span's last group.
            let last = groups
                .chains
                .iter()
                .enumerate()
                .max_by_key(|(_, chain)| chain.last().map_or(0, |d| d.0))
                .map(|(k, _)| k);
            let mut after = Some(groups.after);
            for (k, members) in groups.chains.into_iter().enumerate() {
                let within: Vec<&DefRead> = reads
                    .iter()
                    .filter(|r| members.contains(&r.reader) && members.contains(&r.target))
                    .collect();
                let Some(order) = self.step_order(&members, &within) else {
                    continue;
                };
                let after = if Some(k) == last {
                    after.take().unwrap_or_default()
                } else {
                    vec![]
                };
                self.record_group(StepGroup {
                    members,
                    order,
                    after,
                });
            }
        }
    }

    /// How a let may read `target`, defined below it, at earlier steps:
    /// `; or, …` after "move it above", or nothing where no range would do.
    fn forward_read_hint(&self, target: DefId, name: &str, scope: &Scope) -> String {
        let Some(r) = &self.recurrence else {
            return String::new();
        };
        let def = &self.program().defs[target.0];
        let target_is_let = def.kind == DefKind::Let && def.local_to.is_none();
        let Some(axes) = self.early_axes.get(&target.0) else {
            return if r.ranged && target_is_let {
                format!(
                    "; or, to read its earlier steps from here, give `{name}` a `for` range for every index"
                )
            } else {
                String::new()
            };
        };
        if r.lhs.is_empty() {
            return String::new();
        }
        let reader = &self.program().defs[r.def.0].name;
        let names: Vec<String> = r
            .lhs
            .iter()
            .map(|v| scope.slot_names.get(v.0).cloned().unwrap_or_default())
            .collect();
        // The ranges of the let read, axis for axis.
        let upper = self.first_dim_name();
        let program = self.program();
        let ranges: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(k, n)| match axes.get(k) {
                Some(a) => format!(
                    "{n} in {}..={}",
                    show_affine(&a.lo, program, &[]),
                    show_affine(&a.hi, program, &[])
                ),
                None => format!("{n} in 1..={upper}"),
            })
            .collect();
        format!(
            "; or, to read its earlier steps, give `{reader}` a range for every index: `let {reader}[{}] = … for {}`",
            names.join(", "),
            ranges.join(", ")
        )
    }

    /// A step group in the program, its members marked with it.
    fn record_group(&mut self, group: StepGroup) {
        let Some(p) = self.program_mut() else {
            return;
        };
        let k = p.step_groups.len();
        for m in &group.members {
            if let Some(def) = p.defs.get_mut(m.0) {
                def.recurrence = Some(group.order);
                def.step_group = Some(k);
            }
        }
        p.step_groups.push(group);
    }

    /// The one order of steps that computes every read among a group's
    /// members before it is made, or `None` (reported).
    fn step_order(&mut self, members: &[DefId], reads: &[&DefRead]) -> Option<RecurrenceOrder> {
        let name =
            |d: DefId, p: &Program| p.defs.get(d.0).map(|d| d.name.clone()).unwrap_or_default();
        let mut order: Option<(RecurrenceOrder, &DefRead)> = None;
        let mut failed = false;
        for m in members {
            let def = &self.program().defs[m.0];
            if def.rank == 0 || (def.axes.len() != def.rank && !self.early_axes.contains_key(&m.0))
            {
                // A scalar has no steps; a failed let was reported.
                if def.rank == 0 {
                    let reader = reads.iter().find(|r| r.reader == *m || r.target == *m);
                    if let Some(r) = reader {
                        self.error(AnalysisError::RecurrenceOrder {
                            name: def.name.clone(),
                            read: format!("`{}`", r.shown),
                            problem: "a let without indices has no steps to compute it by".to_string(),
                            span: r.span.into(),
                            help: "the lets that read one another's earlier steps all run over the steps first, `let c[t, k] = … for t in 1..=T, k in 1..=H`".to_string(),
                        });
                    }
                }
                return None;
            }
        }
        for r in reads {
            let program = self.program();
            let (reader, target) = (name(r.reader, program), name(r.target, program));
            // The step read: the reader's own step plus a constant.
            let step = match (&r.first, r.reader_step) {
                (Some(a), Some(v)) if a.dims.is_empty() && a.vars == [(v, 1)] => Some(a.constant),
                _ => None,
            };
            let wanted = match step {
                None if r.reader == r.target => continue,
                None => Err((
                    format!(
                        "`{target}` is computed step by step with `{reader}`, the step being each let's first index, so its first index is `{reader}`'s step `{}` plus a constant, not `{}`",
                        r.step_shown, r.first_shown
                    ),
                    if r.first.as_ref().is_some_and(|a| a.vars.is_empty()) {
                        format!(
                            "read a step relative to its own: `{target}[{}-1, …]`; a fixed step such as the last is read once the steps are done, from a let below them",
                            r.step_shown
                        )
                    } else if r
                        .first
                        .as_ref()
                        .is_some_and(|a| a.vars.iter().any(|(v, _)| !r.reader_lhs.contains(v)))
                    {
                        format!(
                            "read one step at a time, `{target}[{}-1, …]`: a sum over earlier steps is a recurrence of its own, `let c[t] = c[t-1] + {target}[t-1, …]`",
                            r.step_shown
                        )
                    } else {
                        format!(
                            "put the step first in every let computed together, `{reader}[t, …]` reading `{target}[t-1, …]`"
                        )
                    },
                )),
                Some(0) if r.target.0 > r.reader.0 => Err((
                    format!(
                        "`{target}` is defined below `{reader}`, and a step of it is computed after the same step of `{reader}`"
                    ),
                    format!(
                        "read an earlier step, `{target}[{}-1, …]`, or move `{target}` above `{reader}`",
                        r.step_shown
                    ),
                )),
                Some(0) => continue,
                Some(c) if c < 0 => Ok(RecurrenceOrder::Ascending),
                Some(_) => Ok(RecurrenceOrder::Descending),
            };
            let problem = match (wanted, order) {
                (Err(problem), _) => Some(problem),
                (Ok(w), Some((o, first))) if w != o => Some((
                    format!(
                        "{} step, but `{}` reads `{}`, {} step, and no order of steps computes both first",
                        if w == RecurrenceOrder::Ascending { "an earlier" } else { "a later" },
                        name(first.reader, self.program()),
                        first.shown,
                        if o == RecurrenceOrder::Ascending { "an earlier" } else { "a later" }
                    ),
                    "lets computed together step by step read either only earlier steps of one another (computed first to last) or only later ones (last to first)".to_string(),
                )),
                (Ok(w), None) => {
                    order = Some((w, r));
                    None
                }
                (Ok(_), Some(_)) => None,
            };
            if let Some((problem, help)) = problem {
                self.error(AnalysisError::RecurrenceOrder {
                    name: reader,
                    read: format!("`{}`", r.shown),
                    problem,
                    span: r.span.into(),
                    help,
                });
                failed = true;
            }
        }
        // A member's reads of its own elements go its group's way.
        for m in members {
            let own = self.program().defs[m.0].recurrence;
            if let (Some(own), Some((o, first))) = (own, order)
                && own != o
                && !failed
            {
                let r = reads.iter().find(|r| r.reader == *m && r.target == *m);
                if let Some(r) = r {
                    self.error(AnalysisError::RecurrenceOrder {
                        name: self.program().defs[m.0].name.clone(),
                        read: format!("`{}`", r.shown),
                        problem: format!("its group's steps run the other way, as {} reads", first.shown),
                        help: "lets computed together step by step read either only earlier steps of one another (computed first to last) or only later ones (last to first)".to_string(),
                        span: r.span.into(),
                    });
                }
                failed = true;
            }
        }
        if failed {
            return None;
        }
        order.map(|(o, _)| o)
    }

    fn bind_lhs(&mut self, indices: &[ast::Ident], scope: &mut Scope) -> Vec<VarId> {
        let mut vars = vec![];
        for (k, ident) in indices.iter().enumerate() {
            if let Some(first) = indices[..k].iter().find(|i| i.node == ident.node) {
                self.error(AnalysisError::RepeatedIndex {
                    name: ident.node.clone(),
                    span: ident.span.into(),
                    first: first.span.into(),
                });
            }
            self.check_index_name(ident);
            vars.push(scope.bind(&ident.node, ident.span));
        }
        vars
    }

    fn check_index_name(&mut self, ident: &ast::Ident) {
        if let Some(declared) = self.globals.get(&ident.node).copied() {
            let what = what(declared.symbol, self.program());
            self.error(AnalysisError::IndexShadowsName {
                name: ident.node.clone(),
                what,
                span: ident.span.into(),
                declaration: declared.span.into(),
            });
        }
    }

    fn resolve_claim(&mut self, claim: &ast::Claim) {
        self.picked_vars.clear();
        match &claim.kind {
            ast::ClaimKind::Grad(grad) => self.resolve_grad(claim, grad),
            ast::ClaimKind::Taylor(taylor) => self.resolve_taylor(claim, taylor),
            ast::ClaimKind::Equivalent(e) => self.resolve_equivalence(claim, e),
            ast::ClaimKind::Holds(condition) => self.resolve_holds(claim, condition),
            ast::ClaimKind::Optimum(optimum) => self.resolve_optimum(claim, optimum),
        }
    }

    fn resolve_taylor(&mut self, claim: &ast::Claim, taylor: &ast::TaylorClaim) {
        match super::taylor::resolve_taylor(taylor) {
            Ok(resolved) => {
                if let Some(p) = self.program_mut() {
                    p.claims.push(Claim {
                        kind: ClaimKind::Taylor(resolved),
                        expect_fail: claim.expect_fail.clone(),
                        span: claim.span,
                        head_span: Span::new(claim.span.start, taylor.rate.span.end),
                    });
                }
            }
            Err(errors) => errors.into_iter().for_each(|e| self.error(e)),
        }
    }

    fn resolve_grad(&mut self, claim: &ast::Claim, grad: &ast::GradClaim) {
        let Some(declared) = self.lookup_global(&grad.target) else {
            return;
        };
        let target = match declared.symbol {
            Symbol::Tensor(t)
                if self
                    .program()
                    .tensors
                    .get(t.0)
                    .is_some_and(Tensor::is_differentiable) =>
            {
                t
            }
            // `grad g` where the spec's own `g` was refused as reserved.
            Symbol::Tensor(_) if self.g_declared && grad.target.node == "g" => return,
            other => {
                let what = what(other, self.program());
                self.error(AnalysisError::GradTarget {
                    name: grad.target.node.clone(),
                    what,
                    span: grad.target.span.into(),
                    declaration: declared.span.into(),
                });
                return;
            }
        };
        let rank = self
            .program()
            .tensors
            .get(target.0)
            .map_or(0, |t| t.axes.len());
        let head_span = grad
            .indices
            .last()
            .map_or(grad.target.span, |i| grad.target.span.to(i.span));
        if grad.indices.len() != rank {
            self.index_count_error(self.wrong_index_count(
                &grad.target.node,
                rank,
                grad.indices.len(),
                head_span,
                declared.span,
            ));
            return;
        }
        let mut scope = Scope::default();
        self.bind_lhs(&grad.indices, &mut scope);
        let Some(body) = self.body(&grad.body, &mut scope) else {
            return;
        };
        let mut body = body;
        mark_hoists_in_body(&mut body);
        let slots = scope.next_slot;
        if let Some(p) = self.program_mut() {
            p.claims.push(Claim {
                kind: ClaimKind::Grad(GradClaim {
                    target,
                    body,
                    slots,
                    var_names: scope.slot_names,
                }),
                expect_fail: claim.expect_fail.clone(),
                span: claim.span,
                head_span: Span::new(claim.span.start, head_span.end),
            });
        }
    }

    /// The spec's first dim, for a suggested range (`3` where it has none).
    /// `for t in 1..=T` with the let's own index names (`names`, by slot)
    /// and the file's first dim, for a recurrence without its range.
    fn recurrence_range_help(&self, d: DefId, names: &[String]) -> String {
        let upper = self.first_dim_name();
        let name = &self.program().defs[d.0].name;
        let indices: Vec<String> = self
            .recurrence
            .as_ref()
            .map(|r| {
                r.lhs
                    .iter()
                    .map(|v| names.get(v.0).cloned().unwrap_or_else(|| "t".into()))
                    .collect()
            })
            .unwrap_or_default();
        if indices.is_empty() {
            return format!(
                "a let without indices has one element, which cannot be computed from itself: give the new value another name, `let {name}2 = …`"
            );
        }
        let ranges: Vec<String> = indices
            .iter()
            .map(|index| format!("{index} in 1..={upper}"))
            .collect();
        format!(
            "its elements are computed in order, over a range stated for every index: `let {name}[{}] = … for {}`",
            indices.join(", "),
            ranges.join(", ")
        )
    }

    /// The file's first dim, for a help's example range: `3` without one.
    fn first_dim_name(&self) -> String {
        self.program()
            .dims
            .first()
            .map_or_else(|| "3".to_string(), |d| d.name.clone())
    }

    /// A wrong index count, unless the name was declared twice: which
    /// declaration the use meant is not known.
    fn index_count_error(&mut self, e: AnalysisError) {
        if let AnalysisError::WrongIndexCount { name, .. } = &e
            && self.declared_twice.contains(name)
        {
            return;
        }
        self.error(e);
    }

    fn wrong_index_count(
        &self,
        name: &str,
        expected: usize,
        found: usize,
        span: Span,
        declaration: Span,
    ) -> AnalysisError {
        const LETTERS: [&str; 6] = ["i", "j", "k", "l", "m", "n"];
        let usage = if expected == 0 {
            name.to_string()
        } else {
            let letters: Vec<&str> = LETTERS.iter().copied().cycle().take(expected).collect();
            format!("{name}[{}]", letters.join(", "))
        };
        AnalysisError::WrongIndexCount {
            name: name.to_string(),
            expected,
            found,
            usage,
            span: span.into(),
            declaration: declaration.into(),
        }
    }

    fn lookup_global(&mut self, ident: &ast::Ident) -> Option<Declared> {
        if let Some(d) = self.globals.get(&ident.node) {
            return Some(*d);
        }
        // In a fixed order: a tie between two names must not fall to the
        // map's order, which changes from run to run.
        let mut known: Vec<&str> = self.globals.keys().map(String::as_str).collect();
        known.sort_unstable();
        let help = suggest(&ident.node, known.into_iter())
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| {
                "declare it with `dim`, `input`, `param`, `hyper` or `let`".to_string()
            });
        self.error(AnalysisError::UnknownName {
            name: ident.node.clone(),
            span: ident.span.into(),
            help,
        });
        None
    }

    fn body(&mut self, body: &ast::Body, scope: &mut Scope) -> Option<Body> {
        match body {
            ast::Body::Expr(e) => self.expr(e, scope, false).map(Body::Expr),
            ast::Body::Cases(cases) => {
                let mut out = vec![];
                let mut ok = true;
                for case in cases {
                    let condition = match &case.condition {
                        Some(c) => match self.cond(c, scope) {
                            Some(c) => Some(c),
                            None => {
                                ok = false;
                                continue;
                            }
                        },
                        None => None,
                    };
                    let guarded = cases.len() > 1 || condition.is_some();
                    match self.expr(&case.value, scope, guarded) {
                        Some(value) => out.push(Case {
                            value,
                            condition,
                            span: case.span,
                        }),
                        None => ok = false,
                    }
                }
                ok.then_some(Body::Cases(out))
            }
        }
    }

    fn cond(&mut self, c: &ast::Condition, scope: &mut Scope) -> Option<Cond> {
        let kind = match &c.node {
            ast::ConditionKind::Compare { first, rest } => {
                let first = self.expr(first, scope, true);
                let rest: Vec<_> = rest
                    .iter()
                    .map(|(op, e)| self.expr(e, scope, true).map(|e| (op.node, e)))
                    .collect();
                let rest: Option<Vec<_>> = rest.into_iter().collect();
                CondKind::Compare {
                    first: first?,
                    rest: rest?,
                }
            }
            ast::ConditionKind::And(a, b) => {
                let a = self.cond(a, scope);
                let b = self.cond(b, scope);
                CondKind::And(Box::new(a?), Box::new(b?))
            }
            ast::ConditionKind::Or(a, b) => {
                let a = self.cond(a, scope);
                let b = self.cond(b, scope);
                CondKind::Or(Box::new(a?), Box::new(b?))
            }
            ast::ConditionKind::Not(a) => CondKind::Not(Box::new(self.cond(a, scope)?)),
        };
        Some(Spanned::new(kind, c.span))
    }

    fn expr(&mut self, e: &ast::Expr, scope: &mut Scope, guarded: bool) -> Option<Node> {
        let kind = match &e.node {
            ast::ExprKind::Number(v) => NodeKind::Const(*v),
            ast::ExprKind::Name(name) => self.name(name, e.span, scope)?,
            ast::ExprKind::Access { tensor, indices } => {
                self.access(tensor, indices, e.span, scope, guarded)?
            }
            ast::ExprKind::Unary { operand, .. } => {
                NodeKind::Neg(Box::new(self.expr(operand, scope, guarded)?))
            }
            ast::ExprKind::Binary { op, lhs, rhs } => {
                if *op == BinaryOp::Pow
                    && let Some(k) = integer_exponent(rhs)
                {
                    let base = self.expr(lhs, scope, guarded)?;
                    return Some(Spanned::new(NodeKind::PowInt(Box::new(base), k), e.span));
                }
                // A bracket among a product's factors guards all of it, in
                // any order or grouping: nothing in it is read where the
                // bracket is 0 (see `ProductNode`).
                let guard = e.is_guarded_product();
                let l = self.expr(lhs, scope, guarded || guard);
                let r = self.expr(rhs, scope, guarded || guard);
                NodeKind::Binary {
                    op: *op,
                    lhs: Box::new(l?),
                    rhs: Box::new(r?),
                    guarded: guard,
                }
            }
            ast::ExprKind::Call { function, args } => {
                // `mean(x)` meant the reduction: its argument, read as a
                // value, would add a second error.
                if function.node == "mean" {
                    self.error(AnalysisError::UnknownFunction {
                        name: function.node.clone(),
                        help: "`mean` is a reduction over an index, as `sum` is: `mean(k) x[k]`"
                            .to_string(),
                        span: function.span.into(),
                    });
                    return None;
                }
                let resolved: Vec<Option<Node>> =
                    args.iter().map(|a| self.expr(a, scope, guarded)).collect();
                if let Some(kind) = self.floor_form(&function.node, &resolved, e.span) {
                    return kind.map(|k| Spanned::new(k, e.span));
                }
                let Some(f) = Function::by_name(&function.node) else {
                    let names = || {
                        Function::ALL
                            .iter()
                            .map(|f| f.name())
                            .chain(FLOOR_FORMS.iter().map(|(name, _)| *name))
                    };
                    let help = suggest(&function.node, names())
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| {
                            format!(
                                "the functions are: {}",
                                names().collect::<Vec<_>>().join(", ")
                            )
                        });
                    self.error(AnalysisError::UnknownFunction {
                        name: function.node.clone(),
                        help,
                        span: function.span.into(),
                    });
                    return None;
                };
                if args.len() != f.arity() {
                    let usage = match f.arity() {
                        1 => format!("{}(x)", f.name()),
                        _ => format!("{}(x, y)", f.name()),
                    };
                    self.error(AnalysisError::WrongArity {
                        name: f.name().to_string(),
                        expected: f.arity(),
                        found: args.len(),
                        usage,
                        span: e.span.into(),
                    });
                    return None;
                }
                let args: Option<Vec<Node>> = resolved.into_iter().collect();
                NodeKind::Call {
                    function: f,
                    args: args?,
                }
            }
            ast::ExprKind::Reduce {
                op,
                index,
                range,
                body,
            } => self.reduce(
                op.node,
                index,
                range.as_deref(),
                body,
                e.span,
                scope,
                guarded,
            )?,
            ast::ExprKind::Iverson(c) => NodeKind::Iverson(Box::new(self.cond(c, scope)?)),
            ast::ExprKind::Moment { moment, body } => self.moment(moment, body, scope)?,
        };
        Some(Spanned::new(kind, e.span))
    }

    /// `ceil(x)` and `mod(a, b)` as the floors they are, `-floor(-x)` and
    /// `a - b * floor(a / b)`, so that their values, slopes and jumps are
    /// floor's: `None` for any other name; `Some(None)` where an argument
    /// failed to resolve or their number is wrong (reported).
    fn floor_form(
        &mut self,
        name: &str,
        args: &[Option<Node>],
        span: Span,
    ) -> Option<Option<NodeKind>> {
        let (_, arity) = *FLOOR_FORMS.iter().find(|(form, _)| *form == name)?;
        if args.len() != arity {
            let usage = if arity == 1 { "ceil(x)" } else { "mod(a, b)" };
            self.error(AnalysisError::WrongArity {
                name: name.to_string(),
                expected: arity,
                found: args.len(),
                usage: usage.to_string(),
                span: span.into(),
            });
            return Some(None);
        }
        let args: Option<Vec<Node>> = args.iter().cloned().collect();
        let args = match args {
            Some(args) => args,
            None => return Some(None),
        };
        let node = |kind: NodeKind| Box::new(Spanned::new(kind, span));
        let floor = |x: Box<Node>| NodeKind::Call {
            function: Function::Floor,
            args: vec![*x],
        };
        let binary = |op: BinaryOp, lhs: Box<Node>, rhs: Box<Node>| NodeKind::Binary {
            op,
            lhs,
            rhs,
            guarded: false,
        };
        Some(Some(match args.as_slice() {
            [x] => NodeKind::Neg(node(floor(node(NodeKind::Neg(Box::new(x.clone())))))),
            [a, b] => {
                let (a, b) = (Box::new(a.clone()), Box::new(b.clone()));
                let quotient = node(binary(BinaryOp::Div, a.clone(), b.clone()));
                binary(
                    BinaryOp::Sub,
                    a,
                    node(binary(BinaryOp::Mul, b, node(floor(quotient)))),
                )
            }
            _ => return Some(None),
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn reduce(
        &mut self,
        op: ast::ReduceOp,
        index: &ast::Ident,
        range: Option<&ast::IndexRangeExpr>,
        body: &ast::Expr,
        span: Span,
        scope: &mut Scope,
        guarded: bool,
    ) -> Option<NodeKind> {
        if scope.constant {
            let (what, help) = scope.constant_role.unwrap_or(("a hyper", HYPER_PARTS));
            self.error(AnalysisError::NotConstant {
                what,
                span: span.into(),
                depends: "a reduction over an index".to_string(),
                help,
            });
            return None;
        }
        if let Some((_, outer)) = scope.lookup(&index.node) {
            self.error(AnalysisError::ReboundIndex {
                name: index.node.clone(),
                fresh: fresh_name(&index.node, scope),
                span: index.span.into(),
                outer: outer.into(),
            });
            return None;
        }
        self.check_index_name(index);
        // Explicit range ends are resolved outside the reduction's own scope.
        let explicit = match range {
            Some(r) => {
                let lo = self.affine(&r.lo, scope);
                let hi = self.affine(&r.hi, scope);
                Some(VarRange {
                    lowers: vec![lo?],
                    uppers: vec![hi?],
                    span: r.span,
                })
            }
            None => None,
        };
        let var = scope.bind(&index.node, index.span);
        let accesses_before = scope.accesses.len();
        let errors_before = self.errors.len();
        let body = self.expr(body, scope, guarded);
        scope.vars.pop();
        if body.is_none() || self.errors.len() > errors_before {
            return None;
        }
        let range = match explicit {
            Some(r) => r,
            None => {
                let accesses = scope.accesses.get(accesses_before..).unwrap_or(&[]);
                self.infer_var_range(
                    &index.node,
                    var,
                    index.span,
                    (accesses, &scope.inner_ranges),
                    true,
                )?
            }
        };
        let dims_only = |bounds: &[Affine], tighter| {
            let only: Vec<Affine> = bounds
                .iter()
                .filter(|b| b.is_dims_only())
                .cloned()
                .collect();
            tightest_dims_only(&only, tighter)
        };
        if let (Some(lo), Some(hi)) = (
            dims_only(&range.lowers, std::cmp::Ordering::Greater),
            dims_only(&range.uppers, std::cmp::Ordering::Less),
        ) {
            scope.inner_ranges.push((var, lo, hi));
        }
        Some(NodeKind::Reduce {
            op,
            var,
            range,
            body: Box::new(body?),
            hoist: Hoist::None,
        })
    }

    fn name(&mut self, name: &str, span: Span, scope: &mut Scope) -> Option<NodeKind> {
        if let Some((var, _)) = scope.lookup(name) {
            return Some(NodeKind::Index(var));
        }
        // `pi`, unless the spec declares a name of its own so.
        if name == "pi" && self.symbol(name).is_none() {
            return Some(NodeKind::Pi);
        }
        let ident = Spanned::new(name.to_string(), span);
        let declared = self.lookup_global(&ident)?;
        match declared.symbol {
            Symbol::Dim(d) => Some(NodeKind::Dim(d)),
            Symbol::Hyper(h) => Some(NodeKind::Hyper(h)),
            Symbol::Tensor(_) | Symbol::Def(_) => self.access(&ident, &[], span, scope, false),
            Symbol::Optimizer(_) => {
                self.error(AnalysisError::NotAValue {
                    name: name.to_string(),
                    what: "an update rule",
                    span: span.into(),
                    declaration: declared.span.into(),
                });
                None
            }
        }
    }

    fn access(
        &mut self,
        tensor: &ast::Ident,
        indices: &[ast::Expr],
        span: Span,
        scope: &mut Scope,
        guarded: bool,
    ) -> Option<NodeKind> {
        if scope.constant {
            let (what, help) = scope.constant_role.unwrap_or(("a hyper", HYPER_PARTS));
            self.error(AnalysisError::NotConstant {
                what,
                span: span.into(),
                depends: format!("`{}`", tensor.node),
                help,
            });
            return None;
        }
        let declared = self.lookup_global(tensor)?;
        let axes = match declared.symbol {
            Symbol::Tensor(t) => {
                let t_ = self.program().tensors.get(t.0)?;
                if t_.origin == Origin::Incoming && self.in_output {
                    if !self.g_declared {
                        self.error(AnalysisError::IncomingInForward { span: span.into() });
                    }
                    return None;
                }
                if t_.origin == Origin::Random && self.failed_randoms.contains(&t) {
                    return None;
                }
                if t_.origin == Origin::Random && !self.random_resolved(t) {
                    let definition = t_.span;
                    self.error(AnalysisError::UsedBeforeDefinition {
                        also: String::new(),
                        name: tensor.node.clone(),
                        span: span.into(),
                        definition: definition.into(),
                    });
                    return None;
                }
                if t_.origin == Origin::Incoming && !self.layer_seen {
                    let definition = t_.span;
                    self.error(AnalysisError::UsedBeforeDefinition {
                        also: String::new(),
                        name: "g".to_string(),
                        span: span.into(),
                        definition: definition.into(),
                    });
                    return None;
                }
                // `g` takes the layer's shape; a layer that failed to
                // resolve has been reported, and reading `g` is no second
                // error.
                if t_.origin == Origin::Incoming
                    && self
                        .program()
                        .defs
                        .iter()
                        .any(|d| d.kind == DefKind::Layer && d.axes.len() != d.rank)
                {
                    return None;
                }
                t_.axes.clone()
            }
            Symbol::Def(d) => {
                let def = self.program().defs.get(d.0)?;
                let own = self.recurrence.as_ref().filter(|r| r.def == d);
                if let Some(r) = own {
                    match &r.axes {
                        Some(axes) => axes.clone(),
                        None if r.refused || r.ranged => return None,
                        None => {
                            let help = self.recurrence_range_help(d, &scope.slot_names);
                            let definition = def.name_span;
                            self.error(AnalysisError::RecurrenceNeedsRange {
                                name: tensor.node.clone(),
                                span: span.into(),
                                definition: definition.into(),
                                help,
                            });
                            if let Some(r) = self.recurrence.as_mut() {
                                r.refused = true;
                            }
                            return None;
                        }
                    }
                } else if !self.defined.get(d.0).copied().unwrap_or(false)
                    && let Some(axes) = self
                        .early_axes
                        .get(&d.0)
                        .filter(|_| self.recurrence.as_ref().is_some_and(|r| r.ranged))
                {
                    // A let below, read at earlier steps (checked with the
                    // step groups, once every let is resolved).
                    axes.clone()
                } else if !self.defined.get(d.0).copied().unwrap_or(false) {
                    let definition = def.name_span;
                    let also = self.forward_read_hint(d, &tensor.node, scope);
                    self.error(AnalysisError::UsedBeforeDefinition {
                        also,
                        name: tensor.node.clone(),
                        span: span.into(),
                        definition: definition.into(),
                    });
                    return None;
                } else {
                    // A definition that failed to resolve has already been
                    // reported; reading it is no second error.
                    if def.axes.len() != def.rank && indices.len() == def.rank {
                        return None;
                    }
                    def.axes.clone()
                }
            }
            Symbol::Optimizer(_) => {
                self.error(AnalysisError::NotAValue {
                    name: tensor.node.clone(),
                    what: "an update rule",
                    span: span.into(),
                    declaration: declared.span.into(),
                });
                return None;
            }
            Symbol::Dim(_) | Symbol::Hyper(_) => {
                self.index_count_error(self.wrong_index_count(
                    &tensor.node,
                    0,
                    indices.len(),
                    span,
                    declared.span,
                ));
                return None;
            }
        };
        if axes.len() != indices.len() {
            self.index_count_error(self.wrong_index_count(
                &tensor.node,
                axes.len(),
                indices.len(),
                span,
                declared.span,
            ));
            return None;
        }
        // `lp[i, y[i]]`, `y` holding labels: a gather, written out as the
        // sum it is, `sum(c) [c == y[i]] * lp[i, c]`.
        let gathered = indices
            .iter()
            .enumerate()
            .find_map(|(k, e)| self.data_index(e).map(|d| (k, d)));
        if let Some((k, (data, offset))) = gathered {
            return self.gather(
                tensor,
                indices,
                k,
                (data, offset),
                &axes[k],
                span,
                scope,
                guarded,
            );
        }
        let mut affines = vec![];
        let mut picks = vec![];
        for (axis, (index, range)) in indices.iter().zip(&axes).enumerate() {
            // `x[floor((i+1)/2)]`: the access reads at a fresh variable,
            // which a `Pick` sets to the whole-number index.
            if is_whole_number_index(index) {
                let whole = self.whole_number_index(index, scope)?;
                self.picked_vars.extend(whole.vars());
                let mut fresh = show_index(index);
                while scope.lookup(&fresh).is_some() {
                    fresh.push('\'');
                }
                let var = scope.bind(&fresh, index.span);
                scope.vars.pop();
                picks.push((var, whole, index.span, range.clone()));
                affines.push(Affine::var(var));
                continue;
            }
            let affine = self.affine(index, scope)?;
            scope.accesses.push(Access {
                name: tensor.node.clone(),
                axis,
                range: range.clone(),
                index: affine.clone(),
                guarded,
                span: index.span,
            });
            affines.push(affine);
        }
        if let (Symbol::Def(d), Some(r)) = (declared.symbol, self.recurrence.as_mut()) {
            if r.def == d {
                r.reads.push((affines.clone(), span));
            }
            let (reader, reader_step, reader_lhs) = (r.def, r.lhs.first().copied(), r.lhs.clone());
            let shown: Vec<String> = affines
                .iter()
                .map(|a| show_affine(a, self.program(), &scope.slot_names))
                .collect();
            let step_shown = reader_step
                .and_then(|v| scope.slot_names.get(v.0).cloned())
                .unwrap_or_else(|| "t".to_string());
            self.def_reads.push(DefRead {
                reader,
                reader_step,
                reader_lhs,
                target: d,
                first: affines.first().cloned(),
                shown: format!("{}[{}]", tensor.node, shown.join(", ")),
                step_shown,
                first_shown: shown.first().cloned().unwrap_or_default(),
                span,
            });
        }
        let read = match declared.symbol {
            Symbol::Tensor(id) => NodeKind::Tensor {
                id,
                indices: affines,
            },
            Symbol::Def(id) => NodeKind::Def {
                id,
                indices: affines,
            },
            _ => return None,
        };
        Some(
            picks
                .into_iter()
                .rev()
                .fold(read, |body, (var, index, at, axis)| NodeKind::Pick {
                    var,
                    index: Box::new(index),
                    at,
                    range: Box::new(VarRange {
                        lowers: vec![axis.lo],
                        uppers: vec![axis.hi],
                        span: axis.span,
                    }),
                    body: Box::new(Spanned::new(body, span)),
                }),
        )
    }

    /// A whole-number index (`floor((i+1)/2)`, `mod(i-1, 3)`), or an error.
    fn whole_number_index(&mut self, e: &ast::Expr, scope: &Scope) -> Option<IndexExpr> {
        whole_number_of(e, scope, &self.globals)
            .map_err(|e| self.index_error(e))
            .ok()
    }

    /// Reports why an index is none: an unknown name, or not affine.
    fn index_error(&mut self, e: AffineError) {
        let (span, reason) = match e {
            AffineError::Unknown(ident) => {
                self.lookup_global(&ident);
                return;
            }
            AffineError::NotAffine { span, reason } => (span, reason),
            AffineError::Product { span } => (span, PRODUCT_IN_INDEX.to_string()),
        };
        self.error(AnalysisError::NonAffineIndex {
            reason,
            span: span.into(),
        });
    }

    /// `y[i]` or `y[i] + c` used as an index, where `y` holds whole numbers
    /// drawn from a range (`input y[B] in 1..=C`): `y` and `c`.
    fn data_index(&self, e: &ast::Expr) -> Option<(TensorId, i64)> {
        match &e.node {
            ast::ExprKind::Access { tensor, .. } => match self.symbol(&tensor.node)? {
                Symbol::Tensor(t)
                    if matches!(
                        self.program().tensors.get(t.0)?.values,
                        Values::Indices { .. }
                    ) =>
                {
                    Some((t, 0))
                }
                _ => None,
            },
            ast::ExprKind::Binary {
                op: op @ (ast::BinaryOp::Add | ast::BinaryOp::Sub),
                lhs,
                rhs,
            } => {
                #[allow(clippy::cast_possible_truncation)]
                let whole = |e: &ast::Expr| match e.node {
                    ast::ExprKind::Number(k) if k.fract() == 0.0 && k.abs() < 1e15 => {
                        Some(k as i64)
                    }
                    _ => None,
                };
                // `y[b] ± k`, or `k + y[b]`.
                if let (Some((t, c)), Some(k)) = (self.data_index(lhs), whole(rhs)) {
                    return Some((
                        t,
                        if *op == ast::BinaryOp::Add {
                            c + k
                        } else {
                            c - k
                        },
                    ));
                }
                match (whole(lhs), self.data_index(rhs)) {
                    (Some(k), Some((t, c))) if *op == ast::BinaryOp::Add => Some((t, k + c)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The access `tensor[…]` whose index `k` is a label, `y[i] + c`, as the
    /// sum `sum(v) [v == y[i] + c] * tensor[…, v, …]`, resolved in `scope`:
    /// exactly the element read, and a gradient into that element only. The
    /// labels' range must lie inside the axis they index, at every size.
    #[allow(clippy::too_many_arguments)]
    fn gather(
        &mut self,
        tensor: &ast::Ident,
        indices: &[ast::Expr],
        k: usize,
        (data, offset): (TensorId, i64),
        axis: &AxisRange,
        span: Span,
        scope: &mut Scope,
        guarded: bool,
    ) -> Option<NodeKind> {
        let label = &indices[k];
        let data_tensor = self.program().tensors.get(data.0)?;
        let Values::Indices { lo, hi } = &data_tensor.values else {
            return None;
        };
        let shifted = |a: &Affine| a.add_scaled(&Affine::constant(offset), 1);
        let below = shifted(lo).and_then(|lo| lo.add_scaled(&axis.lo, -1));
        let above = shifted(hi).and_then(|hi| axis.hi.add_scaled(&hi, -1));
        // A gap is never negative where its dims all count up from their
        // smallest sizes: `2*C - C` is `C >= 1`.
        let dims = &self.program().dims;
        let inside = |gap: Option<Affine>| {
            gap.is_some_and(|g| {
                g.vars.is_empty()
                    && g.dims.iter().all(|&(_, c)| c >= 0)
                    && g.dims.iter().try_fold(g.constant, |sum, &(d, c)| {
                        sum.checked_add(c.checked_mul(dims.get(d.0).map_or(1, |d| d.minimum))?)
                    }) >= Some(0)
            })
        };
        if !(inside(below) && inside(above)) {
            let program = self.program();
            let values = format!(
                "{}..={}",
                show_affine(&shifted(lo).unwrap_or_default(), program, &[]),
                show_affine(&shifted(hi).unwrap_or_default(), program, &[])
            );
            let runs = format!(
                "{}..={}",
                show_affine(&axis.lo, program, &[]),
                show_affine(&axis.hi, program, &[])
            );
            let name = data_tensor.name.clone();
            let declaration = data_tensor.span;
            self.error(AnalysisError::IndexDataRange {
                index: show_index(label),
                values,
                target: tensor.node.clone(),
                axis: k + 1,
                runs: runs.clone(),
                span: label.span.into(),
                declaration: declaration.into(),
                help: format!(
                    "declare the labels over the axis they index: `{name}[…] in {runs}`, shifted by the index's constant"
                ),
            });
            return None;
        }
        // A name no spec can write, which reads in reports as the label:
        // `at y[i] = 3`.
        let mut fresh = show_index(label);
        while scope.lookup(&fresh).is_some() {
            fresh.push('\'');
        }
        let name = |at: Span| ast::Expr::new(ast::ExprKind::Name(fresh.clone()), at);
        let mut read = indices.to_vec();
        read[k] = name(label.span);
        let bracket = ast::Expr::new(
            ast::ExprKind::Iverson(Box::new(ast::Condition::new(
                ast::ConditionKind::Compare {
                    first: name(label.span),
                    rest: vec![(Spanned::new(ast::CompareOp::Eq, label.span), label.clone())],
                },
                label.span,
            ))),
            label.span,
        );
        let access = ast::Expr::new(
            ast::ExprKind::Access {
                tensor: tensor.clone(),
                indices: read,
            },
            span,
        );
        let sum = ast::Expr::new(
            ast::ExprKind::Reduce {
                op: Spanned::new(ast::ReduceOp::Sum, span),
                index: Spanned::new(fresh.clone(), label.span),
                range: None,
                body: Box::new(ast::Expr::new(
                    ast::ExprKind::Binary {
                        op: ast::BinaryOp::Mul,
                        lhs: Box::new(bracket),
                        rhs: Box::new(access),
                    },
                    span,
                )),
            },
            span,
        );
        let before = scope.accesses.len();
        let node = self.expr(&sum, scope, guarded).map(|n| n.node);
        // The bracket guards the label's axis only: every other axis, and
        // the label's own read, are read wherever the access is, and bound
        // their indices as a plain access would (`z[b+1, y[b]]` keeps `b`
        // below B).
        if let Some(fresh_var) = scope.slot_names.iter().rposition(|n| *n == fresh) {
            for a in scope.accesses.iter_mut().skip(before) {
                if !a.index.vars.iter().any(|(v, _)| v.0 == fresh_var) {
                    a.guarded = guarded;
                }
            }
        }
        node
    }

    /// An index expression as an affine form over index variables and dims.
    fn affine(&mut self, e: &ast::Expr, scope: &Scope) -> Option<Affine> {
        affine_of(e, scope, &self.globals)
            .map_err(|e| self.index_error(e))
            .ok()
    }

    /// The range of a left-hand-side index without a `for` clause, from the
    /// accesses that use it, with ends that depend on dims alone.
    fn infer_axis(
        &mut self,
        name: &str,
        var: VarId,
        span: Span,
        scope: &Scope,
    ) -> Option<AxisRange> {
        let range = self.infer_var_range(
            name,
            var,
            span,
            (&scope.accesses, &scope.inner_ranges),
            false,
        )?;
        let lo = max_dims_only(&range.lowers);
        let hi = min_dims_only(&range.uppers);
        match (lo, hi) {
            (Some(lo), Some(hi)) => Some(AxisRange { lo, hi, span }),
            _ => {
                let upper = self.first_dim_name();
                self.error(AnalysisError::UninferableRange {
                    name: name.to_string(),
                    help: format!(
                        "the accesses that use `{name}` give several different bounds; state the range: `for {name} in 1..={upper}`"
                    ),
                    span: span.into(),
                });
                None
            }
        }
    }

    /// Tensor Comprehensions' rule: the largest range that keeps every access
    /// using `var` (and no variable bound inside it) within its tensor, where
    /// the accesses that count are:
    ///
    /// - the *unguarded* ones, if there are any: those read wherever the
    ///   body is. An access under a guard (a bracket among the factors of
    ///   its product, or a case condition) is then left to its guard, which
    ///   is what the author wrote to keep it in range: in
    ///   `sum(i) g[i] * (x[i] + [i >= 2] * x[i-1])`, `i` runs as far as
    ///   `g[i]` and `x[i]` allow, and the bracket keeps `x[i-1]` from
    ///   reading `x[0]`;
    /// - else every access, each with its own bounds: the range is their
    ///   intersection, so that no access reads out of its tensor wherever
    ///   its guard holds (`sum(k) [i+k <= N] * w[k] * x[i+k]` runs over
    ///   `k` in range of both `w` and `x`).
    ///
    /// Whether an access is guarded depends on its whole product (see
    /// [`ProductNode`]), never on the order or grouping of the factors, and
    /// the bounds are a set, so the range does not depend on them either.
    ///
    /// Where no such access bounds `var`, accesses that also use indices of
    /// reductions inside it count, `x[i+a-1]` under `sum(a)`: over the full
    /// range `a` takes where dims alone bound it (`1..=K` from `w[a, b]`),
    /// so that `i` stays where every `a` reads inside `x` (a valid
    /// convolution, `1..=H-K+1`).
    fn infer_var_range(
        &mut self,
        name: &str,
        var: VarId,
        span: Span,
        (accesses, inner_ranges): (&[Access], &[(VarId, Affine, Affine)]),
        allow_outer: bool,
    ) -> Option<VarRange> {
        let inner_range = |v: VarId| {
            inner_ranges
                .iter()
                .find(|(w, _, _)| *w == v)
                .map(|(_, lo, hi)| (lo, hi))
        };
        let using = |with_inner: bool| -> Vec<&Access> {
            accesses
                .iter()
                .filter(|a| {
                    let c = a.index.coefficient_of(var);
                    (c == 1 || c == -1)
                        && a.index.vars.iter().all(|(v, _)| {
                            *v == var
                                || (allow_outer && v.0 < var.0)
                                || (with_inner && v.0 > var.0 && inner_range(*v).is_some())
                        })
                })
                .collect()
        };
        // Accesses through inner indices count only where nothing else
        // bounds `var`, so that no range inferred before changes.
        let usable = match using(false) {
            found if found.is_empty() => using(true),
            found => found,
        };
        let unguarded: Vec<&Access> = usable.iter().copied().filter(|a| !a.guarded).collect();
        let chosen = if unguarded.is_empty() {
            usable
        } else {
            unguarded
        };
        if chosen.is_empty() {
            // A fix in the file's own names: its first dim and tensor.
            let upper = self.first_dim_name();
            let example = self
                .program()
                .tensors
                .iter()
                .find(|t| t.axes.len() == 1)
                .map_or_else(String::new, |t| format!(" (as in `{}[{name}]`)", t.name));
            let help = if self.picked_vars.contains(&var) {
                format!(
                    "an index inside `floor`, `ceil` or `mod` bounds no range: give `{name}`'s, `for {name} in 1..={upper}` after a definition, `sum({name} in 1..={upper})` in a reduction"
                )
            } else {
                format!(
                    "index a tensor with `{name}`{example}, or give the range: `sum({name} in 1..={upper})` in a reduction, `for {name} in 1..={upper}` after a definition"
                )
            };
            self.error(AnalysisError::UninferableRange {
                name: name.to_string(),
                help,
                span: span.into(),
            });
            return None;
        }
        self.check_plain_shapes(name, var, &chosen);
        let mut lowers: Vec<Affine> = vec![];
        let mut uppers: Vec<Affine> = vec![];
        for a in chosen {
            let c = a.index.coefficient_of(var);
            // index = c*var + rest, and lo <= index <= hi for every value of
            // the inner indices in rest: at rest's least and greatest.
            let rest = a.index.add_scaled(&Affine::var(var), -c)?;
            let (least, greatest) = rest_extremes(&rest, var, &inner_range)?;
            let (lo, hi) = if c == 1 {
                (
                    a.range.lo.add_scaled(&least, -1)?,
                    a.range.hi.add_scaled(&greatest, -1)?,
                )
            } else {
                (
                    greatest.add_scaled(&a.range.hi, -1)?,
                    least.add_scaled(&a.range.lo, -1)?,
                )
            };
            if !lowers.contains(&lo) {
                lowers.push(lo);
            }
            if !uppers.contains(&hi) {
                uppers.push(hi);
            }
        }
        Some(VarRange {
            lowers,
            uppers,
            span,
        })
    }

    /// TACO's rule: an index used plainly (`x[k]`) must index axes of one size.
    fn check_plain_shapes(&mut self, name: &str, var: VarId, accesses: &[&Access]) {
        let plain: Vec<&&Access> = accesses
            .iter()
            .filter(|a| a.index == Affine::var(var))
            .collect();
        let Some(first) = plain.first() else {
            return;
        };
        // Ranges that differ by a constant (`g[1..=N-2]` and `x[1..=N]`) meet in
        // their intersection, as the handout's sums do; ranges over different
        // sizes (`n` and `N`) are a mistake in the declarations.
        let differ_in_size = |a: &AxisRange, b: &AxisRange| {
            let lo = a.lo.add_scaled(&b.lo, -1);
            let hi = a.hi.add_scaled(&b.hi, -1);
            !(lo.is_some_and(|d| d.dims.is_empty()) && hi.is_some_and(|d| d.dims.is_empty()))
        };
        for other in plain.iter().skip(1) {
            if differ_in_size(&other.range, &first.range) {
                let describe = |a: &Access| {
                    format!(
                        "`{}` axis {} ({}..={})",
                        a.name,
                        a.axis + 1,
                        self.show_affine(&a.range.lo),
                        self.show_affine(&a.range.hi)
                    )
                };
                self.error(AnalysisError::ShapeMismatch {
                    name: name.to_string(),
                    first: describe(first),
                    second: describe(other),
                    first_span: first.span.into(),
                    second_span: other.span.into(),
                });
                return;
            }
        }
    }

    fn show_affine(&self, a: &Affine) -> String {
        show_affine(a, self.program(), &[])
    }

    fn first_incoming_read(&self, body: &Body) -> Option<Span> {
        let program = self.program();
        let mut found = None;
        visit_body(body, &mut |node| {
            if found.is_some() {
                return;
            }
            match &node.node {
                NodeKind::Tensor { id, .. }
                    if program.tensors.get(id.0).map(|t| t.origin) == Some(Origin::Incoming) =>
                {
                    found = Some(node.span)
                }
                NodeKind::Def { id, .. }
                    if program.defs.get(id.0).is_some_and(|d| d.reads_incoming) =>
                {
                    found = Some(node.span)
                }
                _ => {}
            }
        });
        found
    }
}

/// Helps of `not_constant`, by what must be constant.
const NUMBER_ONLY: &str = "a given value or a bound is a number, such as `0.5` or `-1e-3`: dims and hypers are not allowed here";
const DIMS_ONLY: &str = "a size or a range end is built from numbers and dims only";
const HYPER_PARTS: &str = "a hyper is built from numbers, dims and earlier hypers only";
const DRAW_PARTS: &str = "a drawn input's distribution takes numbers, dims and hypers: it is drawn before anything is computed";

static EMPTY_PROGRAM: Program = Program {
    exercise: None,
    dims: vec![],
    hypers: vec![],
    tensors: vec![],
    defs: vec![],
    output: None,
    claims: vec![],
    streams: vec![],
    optimizers: vec![],
    randoms: vec![],
    step_groups: vec![],
};

/// Claims about L, which only a layer or a loss defines.
fn needs_output(kind: &ast::ClaimKind) -> bool {
    matches!(kind, ast::ClaimKind::Grad(_) | ast::ClaimKind::Taylor(_))
}

fn bound_list(indices: &[ast::Ident]) -> String {
    if indices.is_empty() {
        "no index".to_string()
    } else {
        indices
            .iter()
            .map(|i| format!("`{}`", i.node))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn fresh_name(name: &str, scope: &Scope) -> String {
    let candidates = ["k", "l", "p", "q", "r", "s", "u", "v"];
    candidates
        .iter()
        .map(|c| c.to_string())
        .chain((2..).map(|n| format!("{name}{n}")))
        .find(|c| c != name && scope.lookup(c).is_none())
        .unwrap_or_else(|| format!("{name}2"))
}

/// The closest known name, if one is close enough to be a likely typo.
pub(crate) fn suggest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<String> {
    let known: Vec<&str> = known.collect();
    // The same name in another case (`--dim n=6` for `dim N`) first:
    // similarity scores see nothing alike in one-letter names.
    if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        return Some((*k).to_string());
    }
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_string())
}

enum AffineError {
    Unknown(ast::Ident),
    NotAffine {
        span: Span,
        reason: String,
    },
    /// `i*j`, `S*N`: a product of two indices or sizes.
    Product {
        span: Span,
    },
}

/// Why a product is no affine index, for an index and for a range end.
const PRODUCT_IN_INDEX: &str = "a product of two indices or sizes is not affine";
const PRODUCT_IN_RANGE: &str =
    "a product of two sizes is not affine: declare the product as a dim of its own (`dim SN = 6`)";

fn affine_of(
    e: &ast::Expr,
    scope: &Scope,
    globals: &HashMap<String, Declared>,
) -> Result<Affine, AffineError> {
    let not_affine = |reason: &str| AffineError::NotAffine {
        span: e.span,
        reason: reason.to_string(),
    };
    let overflow = || not_affine("the constant is too large");
    match &e.node {
        ast::ExprKind::Number(v) => {
            if v.fract() != 0.0 || !v.is_finite() || v.abs() > 1e15 {
                Err(not_affine("an index is a whole number"))
            } else {
                #[allow(clippy::cast_possible_truncation)]
                Ok(Affine::constant(*v as i64))
            }
        }
        ast::ExprKind::Name(name) => {
            if let Some((v, _)) = scope.lookup(name) {
                return Ok(Affine::var(v));
            }
            match globals.get(name).map(|d| d.symbol) {
                Some(Symbol::Dim(d)) => Ok(Affine::dim(d)),
                Some(_) => Err(not_affine(&format!(
                    "`{name}` is a value, not an index or a size"
                ))),
                None => Err(AffineError::Unknown(Spanned::new(name.clone(), e.span))),
            }
        }
        ast::ExprKind::Unary { operand, .. } => affine_of(operand, scope, globals)?
            .scaled(-1)
            .ok_or_else(overflow),
        ast::ExprKind::Binary { op, lhs, rhs } => {
            let l = affine_of(lhs, scope, globals)?;
            let r = affine_of(rhs, scope, globals)?;
            match op {
                BinaryOp::Add => l.add_scaled(&r, 1).ok_or_else(overflow),
                BinaryOp::Sub => l.add_scaled(&r, -1).ok_or_else(overflow),
                BinaryOp::Mul => {
                    if l.vars.is_empty() && l.dims.is_empty() {
                        r.scaled(l.constant).ok_or_else(overflow)
                    } else if r.vars.is_empty() && r.dims.is_empty() {
                        l.scaled(r.constant).ok_or_else(overflow)
                    } else {
                        Err(AffineError::Product { span: e.span })
                    }
                }
                BinaryOp::Div => Err(not_affine(
                    "an index is a whole number: divide inside `floor(a/b)` or `ceil(a/b)`",
                )),
                BinaryOp::Pow => Err(not_affine("powers are not allowed in indices")),
            }
        }
        ast::ExprKind::Access { .. } => Err(not_affine(
            "a tensor's values index only as labels plus a constant, `lp[b, y[b]]` or `z[b, y[b] + 1]`, with `input y[B] in 1..=C`",
        )),
        _ => Err(not_affine(
            "only `+`, `-` and `*` by a constant are allowed",
        )),
    }
}

/// Whether an index calls `floor`, `ceil` or `mod` (a whole-number index),
/// rather than being affine or a label.
fn is_whole_number_index(e: &ast::Expr) -> bool {
    match &e.node {
        // `floor`, and the functions written as floors: `ceil`, `mod`.
        ast::ExprKind::Call { function, .. } => {
            function.node == "floor" || FLOOR_FORMS.iter().any(|(name, _)| function.node == *name)
        }
        ast::ExprKind::Binary { lhs, rhs, .. } => {
            is_whole_number_index(lhs) || is_whole_number_index(rhs)
        }
        ast::ExprKind::Unary { operand, .. } => is_whole_number_index(operand),
        _ => false,
    }
}

/// A whole-number index: integer arithmetic on indices, sizes and whole
/// constants, with division only as `floor(a/b)` or `ceil(a/b)`.
fn whole_number_of(
    e: &ast::Expr,
    scope: &Scope,
    globals: &HashMap<String, Declared>,
) -> Result<IndexExpr, AffineError> {
    let not_whole = |reason: &str| AffineError::NotAffine {
        span: e.span,
        reason: reason.to_string(),
    };
    let whole = |e: &ast::Expr| whole_number_of(e, scope, globals).map(Box::new);
    match &e.node {
        ast::ExprKind::Call { function, args } => {
            let name = function.node.as_str();
            match (name, args.as_slice()) {
                ("floor" | "ceil", [arg]) => {
                    let (num, den) = match &arg.node {
                        ast::ExprKind::Binary {
                            op: BinaryOp::Div,
                            lhs,
                            rhs,
                        } => (whole(lhs)?, whole(rhs)?),
                        // `floor` of a whole number is itself.
                        _ => return whole_number_of(arg, scope, globals),
                    };
                    Ok(if name == "floor" {
                        IndexExpr::FloorDiv(num, den)
                    } else {
                        IndexExpr::CeilDiv(num, den)
                    })
                }
                ("mod", [a, b]) => Ok(IndexExpr::Mod(whole(a)?, whole(b)?)),
                ("floor" | "ceil", _) => Err(not_whole(&format!(
                    "`{name}` takes one argument, `{name}(i/2)`"
                ))),
                ("mod", _) => Err(not_whole("`mod` takes two arguments, `mod(i, 2)`")),
                _ => Err(not_whole(
                    "an index may call only `floor(a/b)`, `ceil(a/b)` and `mod(a, b)`",
                )),
            }
        }
        ast::ExprKind::Binary { op, lhs, rhs } => match op {
            BinaryOp::Add => Ok(IndexExpr::Add(whole(lhs)?, whole(rhs)?)),
            BinaryOp::Sub => Ok(IndexExpr::Sub(whole(lhs)?, whole(rhs)?)),
            BinaryOp::Mul => Ok(IndexExpr::Mul(whole(lhs)?, whole(rhs)?)),
            BinaryOp::Div => Err(not_whole(
                "an index is a whole number: divide inside `floor(a/b)` or `ceil(a/b)`",
            )),
            BinaryOp::Pow => Err(not_whole("powers are not allowed in indices")),
        },
        ast::ExprKind::Unary { operand, .. } => Ok(IndexExpr::Sub(
            Box::new(IndexExpr::Affine(Affine::constant(0))),
            whole(operand)?,
        )),
        _ => affine_of(e, scope, globals).map(IndexExpr::Affine),
    }
}

/// A numeric constant (numbers, arithmetic, functions); else what it depends on.
fn const_number(e: &ast::Expr) -> Result<f64, Spanned<String>> {
    let depends = |what: String| Spanned::new(what, e.span);
    match &e.node {
        ast::ExprKind::Number(v) => Ok(*v),
        ast::ExprKind::Unary { operand, .. } => Ok(-const_number(operand)?),
        ast::ExprKind::Binary { op, lhs, rhs } => {
            let (l, r) = (const_number(lhs)?, const_number(rhs)?);
            Ok(match op {
                BinaryOp::Add => l + r,
                BinaryOp::Sub => l - r,
                BinaryOp::Mul => l * r,
                BinaryOp::Div => l / r,
                BinaryOp::Pow => l.powf(r),
            })
        }
        ast::ExprKind::Call { function, args } if args.len() == 1 => {
            let x = const_number(&args[0])?;
            match function.node.as_str() {
                "exp" => Ok(x.exp()),
                "log" => Ok(x.ln()),
                "sqrt" => Ok(x.sqrt()),
                _ => Err(depends(format!("`{}`", function.node))),
            }
        }
        ast::ExprKind::Name(n) => Err(depends(format!("`{n}`"))),
        ast::ExprKind::Access { tensor, .. } => Err(depends(format!("`{}`", tensor.node))),
        _ => Err(depends("an expression that is not a number".to_string())),
    }
}

/// `x^2`, `x^-1`: an exponent that is a small whole number.
fn integer_exponent(e: &ast::Expr) -> Option<i32> {
    let v = match &e.node {
        ast::ExprKind::Number(v) => *v,
        ast::ExprKind::Unary { operand, .. } => match operand.node {
            ast::ExprKind::Number(v) => -v,
            _ => return None,
        },
        _ => return None,
    };
    #[allow(clippy::cast_possible_truncation)]
    (v.fract() == 0.0 && v.abs() <= 64.0).then_some(v as i32)
}

fn first_hyper_at_or_after(node: &Node, id: HyperId) -> Option<HyperId> {
    let mut found = None;
    visit(node, &mut |n| {
        if let NodeKind::Hyper(h) = n.node
            && h.0 >= id.0
            && found.is_none()
        {
            found = Some(h);
        }
    });
    found
}

/// The tightest of several lower bounds on an output axis.
/// The least and greatest of `rest` over the full ranges of the inner
/// indices in it (those bound after `var`), the others kept as they are.
fn rest_extremes<'r>(
    rest: &Affine,
    var: VarId,
    inner_range: &impl Fn(VarId) -> Option<(&'r Affine, &'r Affine)>,
) -> Option<(Affine, Affine)> {
    let (mut least, mut greatest) = (rest.clone(), rest.clone());
    for &(v, c) in &rest.vars {
        if v.0 <= var.0 {
            continue;
        }
        let (lo, hi) = inner_range(v)?;
        let (at_least, at_most) = if c > 0 { (lo, hi) } else { (hi, lo) };
        least = least
            .add_scaled(&Affine::var(v), -c)?
            .add_scaled(at_least, c)?;
        greatest = greatest
            .add_scaled(&Affine::var(v), -c)?
            .add_scaled(at_most, c)?;
    }
    Some((least, greatest))
}

fn max_dims_only(bounds: &[Affine]) -> Option<Affine> {
    tightest_dims_only(bounds, std::cmp::Ordering::Greater)
}

/// The tightest of several upper bounds on an output axis.
fn min_dims_only(bounds: &[Affine]) -> Option<Affine> {
    tightest_dims_only(bounds, std::cmp::Ordering::Less)
}

/// Several bounds on an output axis are fine when they differ only by a
/// constant (`x[i]` and `x[i+2]` give `N` and `N-2`): the tightest is the
/// range, the one whose constant compares as `tighter` against the others.
/// Bounds over different dims have no tightest at every size: `None`.
fn tightest_dims_only(bounds: &[Affine], tighter: std::cmp::Ordering) -> Option<Affine> {
    let mut best: Option<&Affine> = None;
    for b in bounds {
        if !b.is_dims_only() {
            return None;
        }
        best = Some(match best {
            None => b,
            Some(a) => {
                let diff = b.add_scaled(a, -1)?;
                if !diff.dims.is_empty() {
                    return None;
                }
                if diff.constant.cmp(&0) == tighter {
                    b
                } else {
                    a
                }
            }
        });
    }
    best.cloned()
}

/// Marks the factors reductions may compute once ([`Hoist`]), in a body.
fn mark_hoists_in_body(body: &mut Body) {
    match body {
        Body::Expr(e) => mark_hoists(e),
        Body::Cases(cases) => cases.iter_mut().for_each(|c| mark_hoists(&mut c.value)),
    }
}

/// Marks the factors reductions may compute once ([`Hoist`]), in a node.
fn mark_hoists(node: &mut Node) {
    match &mut node.node {
        NodeKind::Reduce {
            op,
            var,
            body,
            hoist,
            ..
        } => {
            if matches!(
                op,
                ast::ReduceOp::Sum | ast::ReduceOp::Mean | ast::ReduceOp::Prod
            ) && let NodeKind::Binary {
                op: BinaryOp::Mul,
                lhs,
                rhs,
                guarded: false,
            } = &body.node
            {
                let reusable = |n: &Node| is_smooth(n) && !mentions_var(n, *var);
                *hoist = if reusable(lhs) {
                    Hoist::Lhs
                } else if reusable(rhs) {
                    Hoist::Rhs
                } else {
                    Hoist::None
                };
            }
            mark_hoists(body);
        }
        NodeKind::Neg(a) | NodeKind::PowInt(a, _) => mark_hoists(a),
        NodeKind::Binary { lhs, rhs, .. } => {
            mark_hoists(lhs);
            mark_hoists(rhs);
        }
        NodeKind::Call { args, .. } => args.iter_mut().for_each(mark_hoists),
        NodeKind::Pick { body, .. } => mark_hoists(body),
        _ => {}
    }
}

/// Whether evaluating a node can meet no kink (no branch, tie, jump or
/// comparison of values): evaluating it once or many times then leaves the
/// same record of kinks.
fn is_smooth(node: &Node) -> bool {
    let mut smooth = true;
    visit(node, &mut |n| {
        smooth &= match &n.node {
            NodeKind::Const(_)
            | NodeKind::Pi
            | NodeKind::Dim(_)
            | NodeKind::Hyper(_)
            | NodeKind::Index(_)
            | NodeKind::Tensor { .. }
            | NodeKind::Def { .. }
            | NodeKind::Neg(_)
            | NodeKind::PowInt(..)
            | NodeKind::Pick { .. } => true,
            NodeKind::Binary { guarded, .. } => !guarded,
            NodeKind::Reduce { op, .. } => {
                matches!(
                    op,
                    ast::ReduceOp::Sum | ast::ReduceOp::Mean | ast::ReduceOp::Prod
                )
            }
            NodeKind::Call { function, .. } => matches!(
                function,
                Function::Exp
                    | Function::Log
                    | Function::Tanh
                    | Function::Sigmoid
                    | Function::Softplus
                    | Function::Sin
                    | Function::Cos
                    | Function::Atan
                    | Function::Sinh
                    | Function::Cosh
                    | Function::Log1p
                    | Function::Expm1
                    | Function::Erf
            ),
            NodeKind::Iverson(_) | NodeKind::Moment { .. } => false,
        };
    });
    smooth
}

/// Whether a node reads the index variable `var` anywhere.
fn mentions_var(node: &Node, var: VarId) -> bool {
    let mut found = false;
    let uses = |a: &Affine| a.vars.iter().any(|(v, _)| *v == var);
    let range_uses = |r: &VarRange| r.lowers.iter().chain(&r.uppers).any(uses);
    visit(node, &mut |n| {
        found |= match &n.node {
            NodeKind::Index(v) => *v == var,
            NodeKind::Tensor { indices, .. } | NodeKind::Def { indices, .. } => {
                indices.iter().any(uses)
            }
            NodeKind::Reduce { range, .. } => range_uses(range),
            NodeKind::Pick { range, .. } => range_uses(range),
            _ => false,
        };
        if let NodeKind::Pick { index, .. } = &n.node {
            found |= index.vars().contains(&var);
        }
    });
    found
}

/// Calls `f` on every node of a body, conditions included.
pub fn visit_body(body: &Body, f: &mut impl FnMut(&Node)) {
    match body {
        Body::Expr(e) => visit(e, f),
        Body::Cases(cases) => {
            for c in cases {
                visit(&c.value, f);
                if let Some(cond) = &c.condition {
                    visit_cond(cond, f);
                }
            }
        }
    }
}

pub fn visit(node: &Node, f: &mut impl FnMut(&Node)) {
    f(node);
    match &node.node {
        NodeKind::Neg(a) | NodeKind::PowInt(a, _) => visit(a, f),
        NodeKind::Binary { lhs, rhs, .. } => {
            visit(lhs, f);
            visit(rhs, f);
        }
        NodeKind::Call { args, .. } => args.iter().for_each(|a| visit(a, f)),
        NodeKind::Reduce { body, .. } | NodeKind::Pick { body, .. } => visit(body, f),
        NodeKind::Iverson(c) => visit_cond(c, f),
        NodeKind::Moment { body, .. } => visit(body, f),
        _ => {}
    }
}

/// Calls `f` on every node of a condition.
pub fn visit_cond(c: &Cond, f: &mut impl FnMut(&Node)) {
    for_each_cond_expr(c, &mut |e| visit(e, f));
}

/// Calls `f` on the expressions a condition compares, in order (not on
/// their subexpressions).
pub fn for_each_cond_expr(c: &Cond, f: &mut impl FnMut(&Node)) {
    match &c.node {
        CondKind::Compare { first, rest } => {
            f(first);
            rest.iter().for_each(|(_, e)| f(e));
        }
        CondKind::And(a, b) | CondKind::Or(a, b) => {
            for_each_cond_expr(a, f);
            for_each_cond_expr(b, f);
        }
        CondKind::Not(a) => for_each_cond_expr(a, f),
    }
}

/// `N-2`, `i+1`: an affine form as the author would write it.
/// An index expression as the spec writes it, for a gathered label's name
/// (`y[i]+1`) and messages.
fn show_index(e: &ast::Expr) -> String {
    match &e.node {
        ast::ExprKind::Number(v) => format!("{v}"),
        ast::ExprKind::Name(n) => n.clone(),
        ast::ExprKind::Access { tensor, indices } => format!(
            "{}[{}]",
            tensor.node,
            indices
                .iter()
                .map(show_index)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ast::ExprKind::Binary { op, lhs, rhs } => {
            let symbol = match op {
                ast::BinaryOp::Add => "+",
                ast::BinaryOp::Sub => "-",
                ast::BinaryOp::Mul => "*",
                ast::BinaryOp::Div => "/",
                ast::BinaryOp::Pow => "^",
            };
            // Parentheses where the text had them (as precedence needs).
            let rank = |op: &ast::BinaryOp| match op {
                ast::BinaryOp::Add | ast::BinaryOp::Sub => 0,
                ast::BinaryOp::Mul | ast::BinaryOp::Div => 1,
                ast::BinaryOp::Pow => 2,
            };
            let side = |e: &ast::Expr, right: bool| match &e.node {
                ast::ExprKind::Binary { op: inner, .. }
                    if rank(inner) < rank(op)
                        || (right && rank(inner) == rank(op) && rank(op) < 2) =>
                {
                    format!("({})", show_index(e))
                }
                _ => show_index(e),
            };
            format!("{}{symbol}{}", side(lhs, false), side(rhs, true))
        }
        ast::ExprKind::Unary { operand, .. } => match &operand.node {
            ast::ExprKind::Binary { .. } => format!("-({})", show_index(operand)),
            _ => format!("-{}", show_index(operand)),
        },
        ast::ExprKind::Call { function, args } => format!(
            "{}({})",
            function.node,
            args.iter().map(show_index).collect::<Vec<_>>().join(", ")
        ),
        _ => "…".to_string(),
    }
}

pub fn show_affine(a: &Affine, program: &Program, var_names: &[String]) -> String {
    let mut terms: Vec<(i64, String)> = vec![];
    for &(d, c) in &a.dims {
        let name = program.dims.get(d.0).map_or("?", |d| d.name.as_str());
        terms.push((c, name.to_string()));
    }
    for &(v, c) in &a.vars {
        let name = var_names.get(v.0).map_or("?", String::as_str);
        terms.push((c, name.to_string()));
    }
    let mut out = String::new();
    for (c, name) in terms {
        let sign = if c < 0 { "-" } else { "+" };
        let mag = c.unsigned_abs();
        let term = if mag == 1 {
            name
        } else {
            format!("{mag}*{name}")
        };
        if out.is_empty() {
            if c < 0 {
                out.push('-');
            }
            out.push_str(&term);
        } else {
            out.push_str(sign);
            out.push_str(&term);
        }
    }
    if out.is_empty() {
        return a.constant.to_string();
    }
    if a.constant != 0 {
        out.push(if a.constant < 0 { '-' } else { '+' });
        out.push_str(&a.constant.unsigned_abs().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    /// The hoists marked in each grad claim's first reduction.
    fn hoists(text: &str) -> Vec<Hoist> {
        let source = crate::source::Source::new("hoists.dl", text);
        let spec = crate::syntax::parse(&source).expect("the spec parses");
        let program = analyze(&spec).expect("the spec is valid");
        program
            .claims
            .iter()
            .filter_map(|c| match &c.kind {
                ClaimKind::Grad(grad) => {
                    let mut first = None;
                    visit_body(&grad.body, &mut |n| {
                        if let (None, NodeKind::Reduce { hoist, .. }) = (first, &n.node) {
                            first = Some(*hoist);
                        }
                    });
                    first
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_a_smooth_factor_without_the_index_is_shared() {
        let found = hoists(
            "dim n = 3
input x[n]
param a
y[i] = a * x[i]
grad a = sum(k) g[k] * (x[1] * a)
grad a = sum(k) (x[1] * a) * g[k]
grad a = sum(k) g[k] * abs(x[1])
grad a = sum(k) g[k] * x[k]
grad a = sum(k) [k >= 1] * g[k] * x[1]
grad a = sum(k) g[k] * sum(l) x[l] * k
grad a = max(k) g[k] * x[1]
",
        );
        assert_eq!(
            found,
            [
                Hoist::Rhs,
                Hoist::Lhs,
                Hoist::None,
                Hoist::None,
                Hoist::None,
                Hoist::None,
                Hoist::None
            ]
        );
    }
}
