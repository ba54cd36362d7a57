//! Randomness: `random` tensors, `claim COND` with `E[…]` and `Var[…]`, and
//! `claim minimize OBJ over VARS subject to CONSTRAINTS at (POINT)`.
//!
//! The rules checked here:
//! - a random tensor's range is given (`for i in 1..=n`) or inferred from the
//!   accesses in its distribution's parameters, as a `let`'s is from its body;
//! - a parameter may not read a random tensor (no hierarchies of draws);
//! - a random tensor, and every `let` that reads one (a *stochastic* let),
//!   may be read by other lets and inside `E[…]` and `Var[…]` of a claim:
//!   never by the layer or loss, a gradient claim, an update rule, nor bare
//!   in a claim, where its value would be one arbitrary draw;
//! - moments do not nest;
//! - the free index variables of a claim are the names used in its indices
//!   that are neither declared nor bound by a reduction: `i` in
//!   `claim E[gq[i]] == g[i]`. They are bound in order of appearance and get
//!   the ranges inferred from the accesses that use them.

use super::*;

/// One part of a claim in which free index variables may appear.
#[derive(Clone, Copy)]
enum ClaimPart<'a> {
    Expr(&'a ast::Expr),
    Cond(&'a ast::Condition),
}

impl Resolver {
    /// Enters a random tensor's name; its range and distribution are
    /// resolved in order, like a `let`.
    pub(super) fn declare_random(&mut self, random: &ast::RandomDecl) {
        self.declare_tensor(
            &random.name,
            Origin::Random,
            vec![],
            // Checks other than the stochastic ones never see a draw.
            Values::Fill(f64::NAN),
            random.span,
        );
    }

    /// Whether `random T ~ …` has been resolved: accesses above it are errors.
    pub(super) fn random_resolved(&self, t: TensorId) -> bool {
        self.program().randoms.iter().any(|r| r.tensor == t)
    }

    pub(super) fn resolve_random(&mut self, random: &ast::RandomDecl) {
        let Some(Symbol::Tensor(id)) = self.symbol(&random.name.node) else {
            return;
        };
        let mut scope = Scope::default();
        let lhs = self.bind_lhs(&random.indices, &mut scope);
        let errors_before = self.errors.len();
        let distribution = self.distribution(&random.distribution, &mut scope);
        let failed = distribution.is_none() || self.errors.len() > errors_before;
        let axes = self.lhs_axes(&random.indices, &random.ranges, &lhs, &scope, failed);
        let (Some(distribution), false) = (distribution, axes.len() != random.indices.len()) else {
            // Reported already: its reads are no second error.
            self.failed_randoms.push(id);
            return;
        };
        if let Some(p) = self.program_mut() {
            if let Some(t) = p.tensors.get_mut(id.0) {
                t.axes = axes;
            }
            p.randoms.push(RandomTensor {
                tensor: id,
                distribution,
                slots: scope.next_slot,
                var_names: scope.slot_names,
                span: random.span,
            });
        }
    }

    /// `E[body]` or `Var[body]`, where a claim allows one.
    pub(super) fn moment(
        &mut self,
        moment: &Spanned<ast::Moment>,
        body: &ast::Expr,
        scope: &mut Scope,
    ) -> Option<NodeKind> {
        if let Some(outer) = scope.in_moment {
            self.error(AnalysisError::NestedMoment {
                span: moment.span.into(),
                outer: outer.into(),
            });
            return None;
        }
        if !scope.moments {
            self.error(AnalysisError::MomentOutsideClaim {
                span: moment.span.into(),
            });
            return None;
        }
        scope.in_moment = Some(moment.span);
        let body = self.expr(body, scope, false);
        scope.in_moment = None;
        Some(NodeKind::Moment {
            moment: moment.node,
            body: Box::new(body?),
        })
    }

    pub(super) fn resolve_holds(&mut self, claim: &ast::Claim, condition: &ast::Condition) {
        let mut scope = Scope {
            moments: true,
            ..Scope::default()
        };
        let free = self.bind_free_indices(&[ClaimPart::Cond(condition)], &mut scope);
        let errors_before = self.errors.len();
        let resolved = self.cond(condition, &mut scope);
        let (Some(condition), false) = (resolved, self.errors.len() > errors_before) else {
            return;
        };
        let Some(points) = self.claim_points(&free, &scope) else {
            return;
        };
        if let Some(p) = self.program_mut() {
            p.claims.push(Claim {
                kind: ClaimKind::Holds(HoldsClaim { condition, points }),
                expect_fail: claim.expect_fail.clone(),
                span: claim.span,
                head_span: claim.span,
            });
        }
    }

    pub(super) fn resolve_optimum(&mut self, claim: &ast::Claim, optimum: &ast::OptimumClaim) {
        let errors_before = self.errors.len();
        let over = self.varied_names(&optimum.over);
        if optimum.at.len() != optimum.over.len() {
            let span = match (optimum.at.first(), optimum.at.last()) {
                (Some(first), Some(last)) => first.span.to(last.span),
                _ => claim.span,
            };
            self.error(AnalysisError::OptimumPoint {
                expected: optimum.over.len(),
                found: optimum.at.len(),
                span: span.into(),
            });
        }
        let mut parts = vec![ClaimPart::Expr(&optimum.objective)];
        parts.extend(optimum.subject_to.iter().map(ClaimPart::Cond));
        parts.extend(optimum.at.iter().map(ClaimPart::Expr));
        let mut scope = Scope {
            moments: true,
            ..Scope::default()
        };
        let free = self.bind_free_indices(&parts, &mut scope);
        let objective = self.expr(&optimum.objective, &mut scope, false);
        let subject_to: Vec<Option<Cond>> = optimum
            .subject_to
            .iter()
            .map(|c| self.cond(c, &mut scope))
            .collect();
        // The claimed point is a plain value of the spec.
        scope.moments = false;
        let at: Vec<Option<Node>> = optimum
            .at
            .iter()
            .map(|e| self.expr(e, &mut scope, false))
            .collect();
        if self.errors.len() > errors_before {
            return;
        }
        let (Some(objective), Some(subject_to), Some(at)) = (
            objective,
            subject_to.into_iter().collect::<Option<Vec<_>>>(),
            at.into_iter().collect::<Option<Vec<_>>>(),
        ) else {
            return;
        };
        let Some(points) = self.claim_points(&free, &scope) else {
            return;
        };
        let head_end = optimum
            .over
            .last()
            .map_or(optimum.objective.span, |v| v.span);
        if let Some(p) = self.program_mut() {
            p.claims.push(Claim {
                kind: ClaimKind::Optimum(OptimumClaim {
                    sense: optimum.sense.node,
                    objective,
                    over,
                    subject_to,
                    at,
                    points,
                }),
                expect_fail: claim.expect_fail.clone(),
                span: claim.span,
                head_span: Span::new(claim.span.start, head_end.end),
            });
        }
    }

    /// The names an optimum claim varies: scalar lets, hypers and scalar
    /// inputs or params, each once.
    fn varied_names(&mut self, over: &[ast::Ident]) -> Vec<Varied> {
        let mut varied: Vec<Varied> = vec![];
        for (k, name) in over.iter().enumerate() {
            if let Some(first) = over[..k].iter().find(|o| o.node == name.node) {
                self.error(AnalysisError::RepeatedVaried {
                    name: name.node.clone(),
                    span: name.span.into(),
                    first: first.span.into(),
                });
                continue;
            }
            let Some(declared) = self.lookup_global(name) else {
                continue;
            };
            let program = self.program();
            let what = match declared.symbol {
                Symbol::Def(d) => program
                    .defs
                    .get(d.0)
                    .filter(|def| {
                        def.kind == DefKind::Let && def.rank == 0 && def.local_to.is_none()
                    })
                    .map(|_| VariedKind::Def(d)),
                Symbol::Hyper(h) => Some(VariedKind::Hyper(h)),
                Symbol::Tensor(t) => program
                    .tensors
                    .get(t.0)
                    .filter(|t| t.is_differentiable() && t.axes.is_empty())
                    .map(|_| VariedKind::Tensor(t)),
                Symbol::Dim(_) | Symbol::Optimizer(_) => None,
            };
            match what {
                Some(what) => varied.push(Varied {
                    name: name.node.clone(),
                    what,
                    span: name.span,
                }),
                None => {
                    let what = what_varied(declared.symbol, program);
                    self.error(AnalysisError::OptimumVariable {
                        name: name.node.clone(),
                        what,
                        span: name.span.into(),
                        declaration: declared.span.into(),
                    });
                }
            }
        }
        varied
    }

    /// Binds the free index variables of a claim's parts, in order of
    /// appearance, and returns their names.
    fn bind_free_indices(&mut self, parts: &[ClaimPart<'_>], scope: &mut Scope) -> Vec<ast::Ident> {
        let mut free: Vec<ast::Ident> = vec![];
        let mut bound: Vec<String> = vec![];
        for part in parts {
            match part {
                ClaimPart::Expr(e) => self.collect_free_expr(e, false, &mut bound, &mut free),
                ClaimPart::Cond(c) => self.collect_free_cond(c, &mut bound, &mut free),
            }
        }
        for ident in &free {
            scope.bind(&ident.node, ident.span);
        }
        free
    }

    fn collect_free_expr(
        &self,
        e: &ast::Expr,
        in_index: bool,
        bound: &mut Vec<String>,
        free: &mut Vec<ast::Ident>,
    ) {
        match &e.node {
            ast::ExprKind::Number(_) => {}
            ast::ExprKind::Name(name) => {
                let known = self.globals.contains_key(name)
                    || bound.contains(name)
                    || free.iter().any(|f| &f.node == name);
                if in_index && !known {
                    free.push(Spanned::new(name.clone(), e.span));
                }
            }
            ast::ExprKind::Access { indices, .. } => {
                for index in indices {
                    self.collect_free_expr(index, true, bound, free);
                }
            }
            ast::ExprKind::Unary { operand, .. } => {
                self.collect_free_expr(operand, in_index, bound, free);
            }
            ast::ExprKind::Binary { lhs, rhs, .. } => {
                self.collect_free_expr(lhs, in_index, bound, free);
                self.collect_free_expr(rhs, in_index, bound, free);
            }
            ast::ExprKind::Call { args, .. } => {
                for arg in args {
                    self.collect_free_expr(arg, in_index, bound, free);
                }
            }
            ast::ExprKind::Reduce {
                index, range, body, ..
            } => {
                if let Some(range) = range {
                    self.collect_free_expr(&range.lo, true, bound, free);
                    self.collect_free_expr(&range.hi, true, bound, free);
                }
                bound.push(index.node.clone());
                self.collect_free_expr(body, in_index, bound, free);
                bound.pop();
            }
            ast::ExprKind::Iverson(c) => self.collect_free_cond(c, bound, free),
            ast::ExprKind::Moment { body, .. } => {
                self.collect_free_expr(body, in_index, bound, free);
            }
        }
    }

    fn collect_free_cond(
        &self,
        c: &ast::Condition,
        bound: &mut Vec<String>,
        free: &mut Vec<ast::Ident>,
    ) {
        match &c.node {
            ast::ConditionKind::Compare { first, rest } => {
                self.collect_free_expr(first, false, bound, free);
                for (_, e) in rest {
                    self.collect_free_expr(e, false, bound, free);
                }
            }
            ast::ConditionKind::And(a, b) | ast::ConditionKind::Or(a, b) => {
                self.collect_free_cond(a, bound, free);
                self.collect_free_cond(b, bound, free);
            }
            ast::ConditionKind::Not(a) => self.collect_free_cond(a, bound, free),
        }
    }

    /// The inferred range of each free index variable (slots `0..free.len()`).
    fn claim_points(&mut self, free: &[ast::Ident], scope: &Scope) -> Option<ClaimPoints> {
        let mut axes = vec![];
        for (k, ident) in free.iter().enumerate() {
            axes.push(self.infer_axis(&ident.node, VarId(k), ident.span, scope));
        }
        Some(ClaimPoints {
            axes: axes.into_iter().collect::<Option<Vec<_>>>()?,
            slots: scope.next_slot,
            var_names: scope.slot_names.clone(),
        })
    }

    /// Once everything is resolved: where random values may not be read.
    pub(super) fn check_randomness(&mut self) {
        let program = self.program();
        if program.randoms.is_empty() {
            return;
        }
        let stochastic = program.stochastic_defs();
        let mut found: Vec<(String, &'static str, Span)> = vec![];
        let mut check = |node: &Node, place: &'static str| {
            if let Some((name, span)) = first_random_read(node, program, &stochastic) {
                found.push((name, place, span));
            }
        };
        if let Some(output) = program.output
            && let Some(def) = program.defs.get(output.def.0)
        {
            let place = match def.kind {
                DefKind::Loss => "the loss",
                _ => "the layer",
            };
            for_each_node(&def.body, &mut |n| check(n, place));
        }
        for random in &program.randoms {
            for arg in &random.distribution.args {
                check(arg, "a distribution's parameter");
            }
        }
        for stream in &program.streams {
            match &stream.source {
                StreamSource::Draw(d) => d.args.iter().for_each(|a| check(a, "a stream")),
                StreamSource::Gradient { noise, .. } => {
                    for a in noise.iter().flat_map(|d| &d.args) {
                        check(a, "a stream");
                    }
                }
            }
        }
        for optimizer in &program.optimizers {
            for state in &optimizer.states {
                check(&state.init, "an update rule");
            }
            for statement in &optimizer.statements {
                match statement {
                    Statement::Let(d) => {
                        if let Some(def) = program.defs.get(d.0) {
                            for_each_node(&def.body, &mut |n| check(n, "an update rule"));
                        }
                    }
                    Statement::Update { body, .. } => {
                        for_each_node(body, &mut |n| check(n, "an update rule"));
                    }
                }
            }
        }
        for claim in &program.claims {
            match &claim.kind {
                ClaimKind::Grad(g) => for_each_node(&g.body, &mut |n| check(n, "a gradient claim")),
                ClaimKind::Holds(h) => for_each_cond_expr(&h.condition, &mut |n| {
                    check(n, "a claim, outside `E[…]` and `Var[…]`,")
                }),
                ClaimKind::Optimum(o) => {
                    let place = "an optimum claim, outside `E[…]` and `Var[…]`,";
                    check(&o.objective, place);
                    for c in &o.subject_to {
                        for_each_cond_expr(c, &mut |n| check(n, place));
                    }
                    for a in &o.at {
                        check(a, place);
                    }
                }
                ClaimKind::Taylor(_) | ClaimKind::Equivalent(_) => {}
            }
        }
        for (name, place, span) in found {
            self.error(AnalysisError::RandomRead {
                name,
                place,
                span: span.into(),
            });
        }
    }
}

fn what_varied(symbol: Symbol, program: &Program) -> &'static str {
    match symbol {
        Symbol::Def(d) => match program.defs.get(d.0) {
            Some(def) if def.rank > 0 => "let with indices",
            Some(def) if def.kind == DefKind::Let => "let of an update rule",
            _ => what(symbol, program),
        },
        Symbol::Tensor(t) => match program.tensors.get(t.0) {
            Some(tensor) if tensor.is_differentiable() => "tensor with indices",
            _ => what(symbol, program),
        },
        _ => what(symbol, program),
    }
}

fn for_each_node(body: &Body, f: &mut impl FnMut(&Node)) {
    match body {
        Body::Expr(e) => f(e),
        Body::Cases(cases) => {
            for case in cases {
                f(&case.value);
                if let Some(c) = &case.condition {
                    for_each_cond_expr(c, f);
                }
            }
        }
    }
}

/// The first read of a random tensor or a stochastic let outside any
/// moment, with the name read.
fn first_random_read(
    node: &Node,
    program: &Program,
    stochastic: &[bool],
) -> Option<(String, Span)> {
    let here = match &node.node {
        NodeKind::Tensor { id, .. } => program
            .tensors
            .get(id.0)
            .filter(|t| t.origin == Origin::Random)
            .map(|t| t.name.clone()),
        NodeKind::Def { id, .. } => program
            .defs
            .get(id.0)
            .filter(|_| stochastic.get(id.0).copied().unwrap_or(false))
            .map(|d| d.name.clone()),
        _ => None,
    };
    if let Some(name) = here {
        return Some((name, node.span));
    }
    let mut found = None;
    let mut look = |n: &Node| {
        if found.is_none() {
            found = first_random_read(n, program, stochastic);
        }
    };
    match &node.node {
        NodeKind::Neg(a) | NodeKind::PowInt(a, _) => look(a),
        NodeKind::Binary { lhs, rhs, .. } => {
            look(lhs);
            look(rhs);
        }
        NodeKind::Call { args, .. } => args.iter().for_each(&mut look),
        NodeKind::Reduce { body, .. } | NodeKind::Pick { body, .. } => look(body),
        NodeKind::Iverson(c) => for_each_cond_expr(c, &mut look),
        // What a moment reads is what it is about.
        NodeKind::Moment { .. } => {}
        NodeKind::Const(_)
        | NodeKind::Pi
        | NodeKind::Dim(_)
        | NodeKind::Hyper(_)
        | NodeKind::Index(_)
        | NodeKind::Tensor { .. }
        | NodeKind::Def { .. } => {}
    }
    found
}
