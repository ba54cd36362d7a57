//! Update rules: `stream` gradient sources, `optimizer` blocks with their
//! state, local lets and updates, and `claim A == B over T steps`.
//!
//! A rule's state and lets are local: two rules may both call their
//! velocity `v`. Their names are entered while the block is resolved and
//! removed after it.

use super::*;

impl Resolver {
    /// Enters a stream's name; its shape and source are resolved later.
    pub(super) fn declare_stream(&mut self, stream: &ast::StreamDecl) {
        self.declare_tensor(
            &stream.name,
            Origin::Stream,
            vec![],
            Values::Fill(0.0),
            stream.span,
        );
    }

    /// Enters a rule's name, so that claims and duplicates can find it.
    pub(super) fn declare_optimizer(&mut self, optimizer: &ast::OptimizerDecl) {
        let id = OptimizerId(self.program().optimizers.len());
        if !self.declare(&optimizer.name, Symbol::Optimizer(id)) {
            return;
        }
        if let Some(p) = self.program_mut() {
            p.optimizers.push(Optimizer {
                name: optimizer.name.node.clone(),
                states: vec![],
                statements: vec![],
                span: optimizer.span,
            });
        }
    }

    /// Streams and rule bodies, once every global name is resolved.
    pub(super) fn resolve_update_rules(&mut self, spec: &ast::Spec) {
        for item in &spec.items {
            if let ast::Item::Stream(stream) = item {
                self.resolve_stream(stream);
            }
        }
        for item in &spec.items {
            if let ast::Item::Optimizer(optimizer) = item {
                self.resolve_optimizer(optimizer);
            }
        }
    }

    fn resolve_stream(&mut self, stream: &ast::StreamDecl) {
        let Some(Symbol::Tensor(id)) = self.symbol(&stream.name.node) else {
            return;
        };
        let axes = self.shape_axes(&stream.shape, "a stream's size");
        let source = match &stream.source {
            ast::StreamSource::Draw(d) => {
                let mut scope = Scope {
                    constant: true,
                    ..Scope::default()
                };
                self.distribution(d, &mut scope).map(StreamSource::Draw)
            }
            ast::StreamSource::Gradient { param, noise } => {
                self.gradient_source(stream, &axes, param, noise.as_ref())
            }
        };
        if let Some(p) = self.program_mut() {
            if let Some(t) = p.tensors.get_mut(id.0) {
                t.axes = axes;
            }
            if let Some(source) = source {
                p.streams.push(Stream {
                    tensor: id,
                    source,
                    span: stream.span,
                });
            }
        }
    }

    /// `= grad theta + normal(0, 0.1)`: the loss's gradient in a param of
    /// the stream's shape, plus optional noise.
    fn gradient_source(
        &mut self,
        stream: &ast::StreamDecl,
        axes: &[AxisRange],
        param: &ast::Ident,
        noise: Option<&ast::Distribution>,
    ) -> Option<StreamSource> {
        if self.program().output.is_none() {
            self.error(AnalysisError::NoOutput {
                span: stream.span.into(),
            });
            return None;
        }
        let declared = self.lookup_global(param)?;
        let target = match declared.symbol {
            Symbol::Tensor(t)
                if self.program().tensors.get(t.0).map(|t| t.origin)
                    == Some(Origin::Declared(TensorRole::Param)) =>
            {
                t
            }
            other => {
                let what = what(other, self.program());
                self.error(AnalysisError::GradTarget {
                    name: param.node.clone(),
                    what,
                    span: param.span.into(),
                    declaration: declared.span.into(),
                });
                return None;
            }
        };
        let param_axes = self.program().tensors.get(target.0)?.axes.clone();
        let same_shape = param_axes.len() == axes.len()
            && param_axes
                .iter()
                .zip(axes)
                .all(|(a, b)| a.lo == b.lo && a.hi == b.hi);
        if !same_shape {
            let shape = |axes: &[AxisRange]| {
                let sizes: Vec<String> = axes.iter().map(|a| self.show_affine(&a.hi)).collect();
                format!("[{}]", sizes.join(", "))
            };
            self.error(AnalysisError::StreamShape {
                name: stream.name.node.clone(),
                param: param.node.clone(),
                stream_shape: shape(axes),
                param_shape: shape(&param_axes),
                span: stream.name.span.into(),
                param_span: declared.span.into(),
            });
            return None;
        }
        let noise = match noise {
            Some(d) => {
                let mut scope = Scope {
                    constant: true,
                    ..Scope::default()
                };
                Some(self.distribution(d, &mut scope)?)
            }
            None => None,
        };
        Some(StreamSource::Gradient {
            param: target,
            noise,
        })
    }

    fn resolve_optimizer(&mut self, decl: &ast::OptimizerDecl) {
        let Some(Symbol::Optimizer(id)) = self.symbol(&decl.name.node) else {
            return;
        };
        let mut locals: Vec<String> = vec![];
        let mut states = vec![];
        let mut statements = vec![];
        for statement in &decl.statements {
            match statement {
                ast::OptimizerStatement::State(state) => {
                    if let Some(s) = self.resolve_state(state, id) {
                        locals.push(state.name.node.clone());
                        states.push(s);
                    }
                }
                ast::OptimizerStatement::Let(def) => {
                    if let Some(d) = self.declare_def(def, DefKind::Let, Some(id)) {
                        locals.push(def.name.node.clone());
                        self.resolve_def(def, DefKind::Let);
                        statements.push(Statement::Let(d));
                    }
                }
                ast::OptimizerStatement::Update(def) => {
                    if let Some(s) = self.resolve_update(def, id) {
                        statements.push(s);
                    }
                }
            }
        }
        // The block's names end with it: another rule may reuse them.
        for name in locals {
            self.globals.remove(&name);
        }
        if let Some(o) = self.program_mut().and_then(|p| p.optimizers.get_mut(id.0)) {
            o.states = states;
            o.statements = statements;
        }
    }

    /// `state v[k in n] = 0.5 * theta[k]`: a tensor of the rule, with its
    /// initial value over its own index names.
    fn resolve_state(&mut self, state: &ast::StateDecl, id: OptimizerId) -> Option<StateVar> {
        let axes = self.shape_axes(state.shape.iter().map(|(_, e)| e), "a state's size");
        if axes.len() != state.shape.len() {
            return None;
        }
        let tensor = self.declare_tensor(
            &state.name,
            Origin::State(id),
            axes,
            Values::Fill(0.0),
            state.span,
        )?;
        let mut scope = Scope::default();
        for (k, (index, _)) in state.shape.iter().enumerate() {
            match index {
                Some(ident) => {
                    self.check_index_name(ident);
                    scope.bind(&ident.node, ident.span);
                }
                // An axis without an index name still takes a slot; `#k`
                // cannot be written in a spec, so nothing can read it.
                None => {
                    scope.bind(&format!("#{}", k + 1), state.span);
                }
            }
        }
        let init = self.expr(&state.init, &mut scope, false)?;
        Some(StateVar {
            tensor,
            init,
            slots: scope.next_slot,
            var_names: scope.slot_names,
        })
    }

    /// `theta[k] = theta[k] - alpha * v[k]`: overwrites a param or one of
    /// the rule's own states.
    fn resolve_update(&mut self, def: &ast::Definition, id: OptimizerId) -> Option<Statement> {
        let declared = self.lookup_global(&def.name)?;
        let target = match declared.symbol {
            Symbol::Tensor(t)
                if matches!(
                    self.program().tensors.get(t.0).map(|t| t.origin),
                    Some(Origin::Declared(TensorRole::Param))
                ) || self.program().tensors.get(t.0).map(|t| t.origin)
                    == Some(Origin::State(id)) =>
            {
                t
            }
            other => {
                let what = what(other, self.program());
                self.error(AnalysisError::UpdateTarget {
                    name: def.name.node.clone(),
                    what,
                    span: def.name.span.into(),
                    declaration: declared.span.into(),
                });
                return None;
            }
        };
        let rank = self.program().tensors.get(target.0)?.axes.len();
        if def.indices.len() != rank {
            let span = def
                .indices
                .last()
                .map_or(def.name.span, |i| def.name.span.to(i.span));
            self.error(self.wrong_index_count(
                &def.name.node,
                rank,
                def.indices.len(),
                span,
                declared.span,
            ));
            return None;
        }
        for binding in &def.ranges {
            self.error(AnalysisError::StrayRange {
                name: binding.index.node.clone(),
                bound: "an update runs over its target's axes; drop the `for`".to_string(),
                span: binding.span.into(),
            });
        }
        let mut scope = Scope::default();
        self.bind_lhs(&def.indices, &mut scope);
        let body = self.body(&def.body, &mut scope)?;
        Some(Statement::Update {
            target,
            body,
            slots: scope.next_slot,
            var_names: scope.slot_names,
            span: def.span,
        })
    }

    /// `claim A == B over 100 steps`
    pub(super) fn resolve_equivalence(&mut self, claim: &ast::Claim, e: &ast::EquivalenceClaim) {
        let first = self.optimizer_named(&e.first);
        let second = self.optimizer_named(&e.second);
        let (Some(first), Some(second)) = (first, second) else {
            return;
        };
        let head_span = e.first.span.to(e.second.span);
        if let Some(p) = self.program_mut() {
            p.claims.push(Claim {
                kind: ClaimKind::Equivalent(EquivalenceClaim {
                    first,
                    second,
                    first_name: e.first.node.clone(),
                    second_name: e.second.node.clone(),
                    steps: e.steps.node,
                }),
                expect_fail: claim.expect_fail.clone(),
                span: claim.span,
                head_span,
            });
        }
    }

    fn optimizer_named(&mut self, name: &ast::Ident) -> Option<OptimizerId> {
        let rules: Vec<String> = self
            .program()
            .optimizers
            .iter()
            .map(|o| o.name.clone())
            .collect();
        match self.symbol(&name.node) {
            Some(Symbol::Optimizer(id)) => Some(id),
            _ => {
                let help = match suggest(&name.node, rules.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if rules.is_empty() => {
                        "declare update rules with `optimizer NAME { … }`".to_string()
                    }
                    None => format!("the update rules are: {}", rules.join(", ")),
                };
                self.error(AnalysisError::NotAnOptimizer {
                    name: name.node.clone(),
                    help,
                    span: name.span.into(),
                });
                None
            }
        }
    }
}
