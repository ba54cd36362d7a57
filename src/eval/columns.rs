//! A body evaluated a block of points at a time: each node of the tree is
//! visited once per block and computes a column of values, rather than
//! once per point. A claim's body at a million points then costs a few
//! tight loops per node instead of a million walks of the tree.
//!
//! The block evaluation covers the common part of the language
//! ([`covers`]): numbers, sizes, indices, reads of tensors and definitions,
//! arithmetic, functions, Iverson brackets and guarded products, and cases,
//! with conditions on anything; not reductions. It only ever computes
//! values; wherever the tree walk ([`Evaluation::body`]) would do more than
//! compute one (report an error, note a kink, compare the values of
//! overlapping cases), the point is marked *unsettled* and the tree walk
//! evaluates it alone, so that the result, error and kink log are the tree
//! walk's at every point. Where a point is settled, its value is the tree
//! walk's bit for bit: the same operations on the same values in the same
//! order.

use std::cmp::Ordering::Equal;

use super::{
    Evaluation, Scalar, UNBOUND, apply, at_branch_point, is_non_positive, is_zero, reads_tensors,
};
use crate::analysis::program::{
    Affine, Body, Case, Cond, CondKind, Function, Node, NodeKind, ProductNode, Program, VarId,
};
use crate::eval::grid::Grid;
use crate::syntax::ast::BinaryOp;

/// The points of one block: index values by slot, then by point.
pub(super) struct Block {
    len: usize,
    /// `env[slot][p]`: the value of index slot `slot` at point `p`.
    env: Vec<Vec<i64>>,
}

impl Block {
    /// The `len` points of `grid` from row-major position `start`, their
    /// first `slots` coordinates bound to the index slots.
    pub(super) fn of_grid(grid: &Grid, start: usize, len: usize, slots: usize) -> Self {
        let mut env = vec![Vec::with_capacity(len); slots];
        let mut points = grid.points_from(start);
        let mut count = 0;
        while count < len
            && let Some(point) = points.next_point()
        {
            // As `Frame::set_point`: slots past the point's axes stay unbound.
            for (slot, column) in env.iter_mut().enumerate() {
                column.push(point.get(slot).copied().unwrap_or(UNBOUND));
            }
            count += 1;
        }
        Self { len: count, env }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

/// Whether every node of `body` is one the block evaluation covers, and
/// every index it reads is one of the first `slots` (bound at each point).
pub(super) fn covers(body: &Body, slots: usize, program: &Program) -> bool {
    all_covered(slots, program, |mut f| {
        crate::analysis::visit_body(body, &mut f)
    })
}

/// [`covers`] for one expression: a sum's term, say.
pub(super) fn covers_node(node: &Node, slots: usize, program: &Program) -> bool {
    all_covered(slots, program, |mut f| crate::analysis::visit(node, &mut f))
}

/// Whether every node `walk` visits is covered.
fn all_covered(slots: usize, program: &Program, walk: impl FnOnce(&mut dyn FnMut(&Node))) -> bool {
    let mut covered = true;
    walk(&mut |node| covered &= node_covered(node, slots, program));
    covered
}

fn node_covered(node: &Node, slots: usize, program: &Program) -> bool {
    let bound = |indices: &[Affine]| {
        indices
            .iter()
            .all(|a| a.vars.iter().all(|(v, _)| v.0 < slots))
    };
    match &node.node {
        NodeKind::Const(_)
        | NodeKind::Pi
        | NodeKind::Dim(_)
        | NodeKind::Hyper(_)
        | NodeKind::Neg(_)
        | NodeKind::Binary { .. }
        | NodeKind::PowInt(..)
        | NodeKind::Call { .. }
        | NodeKind::Iverson(_) => true,
        NodeKind::Index(v) => v.0 < slots,
        NodeKind::Tensor { indices, .. } => bound(indices),
        NodeKind::Def { id, indices } => {
            bound(indices)
                && program
                    .defs
                    .get(id.0)
                    .is_some_and(|d| d.recurrence.is_none())
        }
        NodeKind::Reduce { .. } | NodeKind::Pick { .. } | NodeKind::Moment { .. } => false,
    }
}

/// What a block evaluation leaves to the tree walk: `unsettled[p]` where
/// point `p` needs it.
type Unsettled = [bool];

/// Marks point `p` unsettled if it is active.
fn mark(unsettled: &mut Unsettled, active: &[bool], p: usize) {
    if active[p] {
        unsettled[p] = true;
    }
}

/// `out[p] = f(out[p], b[p])` at every point.
fn combine<T: Copy>(out: &mut [T], b: &[T], f: impl Fn(T, T) -> T) {
    for (a, &b) in out.iter_mut().zip(b) {
        *a = f(*a, b);
    }
}

/// A block evaluation's values, each unless the tree walk must take it.
pub(super) struct Settled<T> {
    values: Vec<T>,
    unsettled: Vec<bool>,
}

impl<T: Copy> Settled<T> {
    /// Point `p`'s value, or `None` where the tree walk must take it.
    pub(super) fn get(&self, p: usize) -> Option<T> {
        match (self.values.get(p), self.unsettled.get(p)) {
            (Some(&v), Some(false)) => Some(v),
            _ => None,
        }
    }
}

/// One block's evaluation: the evaluation whose values are read, and the
/// points.
struct Columns<'e, 'a, T> {
    eval: &'e Evaluation<'a, T>,
    block: &'e Block,
}

impl<T: Scalar> Evaluation<'_, T> {
    /// `body` at the block's points, into `out`; see the module's comment.
    pub(super) fn body_block(
        &self,
        body: &Body,
        block: &Block,
        out: &mut [T],
        unsettled: &mut Unsettled,
    ) {
        Columns { eval: self, block }.body(body, out, unsettled);
    }

    /// [`Evaluation::body_block`] into values of its own.
    pub(super) fn body_settled(&self, body: &Body, block: &Block) -> Settled<T> {
        let mut values = vec![T::zero(); block.len()];
        let mut unsettled = vec![false; block.len()];
        self.body_block(body, block, &mut values, &mut unsettled);
        Settled { values, unsettled }
    }

    /// `len` terms of a sum: `term` at `var` = `from`, `from + 1`, …, every
    /// other index as `env` binds it (an unbound one as the tree walk
    /// reads it), a column per node rather than a walk of the tree per
    /// term, each unless the tree walk must take it (as for a claim's
    /// points). The block evaluation must cover `term` with `env.len()`
    /// slots ([`covers_node`]).
    pub(super) fn terms_block(
        &self,
        term: &Node,
        var: VarId,
        from: i64,
        len: usize,
        env: &[i64],
    ) -> Settled<T> {
        // A walk of the term per block, in debug builds only.
        debug_assert!(covers_node(term, env.len(), self.instance.program));
        let column = |slot: usize, bound: i64| -> Vec<i64> {
            if slot == var.0 {
                (0..len).map(|j| from.saturating_add(j as i64)).collect()
            } else {
                vec![bound; len]
            }
        };
        let block = Block {
            len,
            env: env.iter().enumerate().map(|(s, &v)| column(s, v)).collect(),
        };
        let mut values = vec![T::zero(); len];
        let mut unsettled = vec![false; len];
        Columns {
            eval: self,
            block: &block,
        }
        .node(term, &vec![true; len], &mut values, &mut unsettled);
        Settled { values, unsettled }
    }
}

impl<T: Scalar> Columns<'_, '_, T> {
    fn body(&self, body: &Body, out: &mut [T], unsettled: &mut Unsettled) {
        let active = vec![true; self.block.len];
        match body {
            Body::Expr(e) => self.node(e, &active, out, unsettled),
            Body::Cases(cases) => self.cases(cases, &active, out, unsettled),
        }
    }

    /// As [`Evaluation::cases`]: where exactly one case holds, its value;
    /// where none or several do, the tree walk decides (an error, or a
    /// comparison of the values).
    fn cases(&self, cases: &[Case], active: &[bool], out: &mut [T], unsettled: &mut Unsettled) {
        let n = self.block.len;
        let mut holding = vec![0u8; n];
        let mut holds = vec![false; n];
        let mut value = vec![T::zero(); n];
        for case in cases {
            match &case.condition {
                Some(c) => self.cond(c, active, &mut holds, unsettled),
                None => {
                    for p in 0..n {
                        holds[p] = active[p] && holding[p] == 0;
                    }
                }
            }
            if !holds.iter().any(|&h| h) {
                continue;
            }
            self.node(&case.value, &holds, &mut value, unsettled);
            for p in 0..n {
                if holds[p] {
                    if holding[p] == 0 {
                        out[p] = value[p];
                    }
                    holding[p] = holding[p].saturating_add(1);
                }
            }
        }
        for (p, &h) in holding.iter().enumerate() {
            if h != 1 {
                mark(unsettled, active, p);
            }
        }
    }

    /// As [`Evaluation::cond`], where `active`: whether the condition holds.
    fn cond(&self, c: &Cond, active: &[bool], out: &mut [bool], unsettled: &mut Unsettled) {
        let n = self.block.len;
        match &c.node {
            CondKind::Compare { first, rest } => {
                let mut lhs = vec![T::zero(); n];
                let mut rhs = vec![T::zero(); n];
                self.node(first, active, &mut lhs, unsettled);
                // Later comparisons of a chain are evaluated only where the
                // earlier ones hold.
                let mut alive = active.to_vec();
                out.copy_from_slice(active);
                let mut lhs_node = first;
                for (op, e) in rest {
                    self.node(e, &alive, &mut rhs, unsettled);
                    let kinks = self.eval.reads_values(lhs_node) || self.eval.reads_values(e);
                    for p in 0..n {
                        if !alive[p] {
                            continue;
                        }
                        let order = lhs[p].order(&rhs[p]);
                        // The tree walk notes a kink here.
                        if kinks && order == Some(Equal) {
                            mark(unsettled, active, p);
                        }
                        if !op.holds_for(order) {
                            out[p] = false;
                            alive[p] = false;
                        }
                    }
                    std::mem::swap(&mut lhs, &mut rhs);
                    lhs_node = e;
                }
            }
            CondKind::And(a, b) => {
                self.cond(a, active, out, unsettled);
                let mut second = vec![false; n];
                self.cond(b, out, &mut second, unsettled);
                for (o, s) in out.iter_mut().zip(&second) {
                    *o = *o && *s;
                }
            }
            CondKind::Or(a, b) => {
                self.cond(a, active, out, unsettled);
                let rest: Vec<bool> = active
                    .iter()
                    .zip(out.iter())
                    .map(|(&a, &o)| a && !o)
                    .collect();
                let mut second = vec![false; n];
                self.cond(b, &rest, &mut second, unsettled);
                for (o, s) in out.iter_mut().zip(&second) {
                    *o = *o || *s;
                }
            }
            CondKind::Not(a) => {
                self.cond(a, active, out, unsettled);
                for (o, &a) in out.iter_mut().zip(active) {
                    *o = a && !*o;
                }
            }
        }
    }

    /// As [`Evaluation::node`], where `active`: the node's values, into
    /// `out` (elsewhere `out` holds values of no meaning).
    fn node(&self, node: &Node, active: &[bool], out: &mut [T], unsettled: &mut Unsettled) {
        let n = self.block.len;
        match &node.node {
            NodeKind::Const(v) => out.fill(T::constant(*v)),
            NodeKind::Pi => out.fill(T::pi()),
            NodeKind::Dim(d) => out.fill(T::constant(self.eval.instance.sizes.get(*d) as f64)),
            NodeKind::Hyper(h) => out.fill(T::constant(
                self.eval.hypers.get(h.0).copied().unwrap_or(f64::NAN),
            )),
            // `covers` admits only the block's slots; any other index is
            // the tree walk's.
            NodeKind::Index(v) => match self.block.env.get(v.0) {
                Some(column) => {
                    for (o, &i) in out.iter_mut().zip(column) {
                        *o = T::constant(i as f64);
                    }
                }
                None => (0..n).for_each(|p| mark(unsettled, active, p)),
            },
            NodeKind::Tensor { id, indices } => {
                let values = self.eval.tensors.get(id.0).copied().unwrap_or(&[]);
                let grid = &self.eval.instance.tensor_grids[id.0];
                self.read(values, grid, indices, active, out, unsettled);
            }
            NodeKind::Def { id, indices } => {
                // A definition that failed fails every read of it.
                let values = self.eval.def_values(*id).unwrap_or(&[]);
                let grid = &self.eval.instance.def_grids[id.0];
                self.read(values, grid, indices, active, out, unsettled);
            }
            NodeKind::Neg(a) => {
                self.node(a, active, out, unsettled);
                for o in out.iter_mut() {
                    *o = -*o;
                }
            }
            NodeKind::Binary {
                op,
                lhs,
                rhs,
                guarded,
            } => {
                if *guarded {
                    self.guarded(node, active, out, unsettled);
                    return;
                }
                self.node(lhs, active, out, unsettled);
                let mut b = vec![T::zero(); n];
                self.node(rhs, active, &mut b, unsettled);
                self.binary(*op, rhs, active, out, &b, unsettled);
            }
            NodeKind::PowInt(base, k) => {
                self.node(base, active, out, unsettled);
                for (p, o) in out.iter_mut().enumerate() {
                    if *k < 0 && is_zero(o) {
                        mark(unsettled, active, p);
                    }
                    *o = o.powi(*k);
                }
            }
            NodeKind::Iverson(c) => {
                let mut holds = vec![false; n];
                self.cond(c, active, &mut holds, unsettled);
                for (o, h) in out.iter_mut().zip(holds) {
                    *o = if h { T::one() } else { T::zero() };
                }
            }
            NodeKind::Call { function, args } => {
                self.call(*function, args, active, out, unsettled);
            }
            // Not covered ([`covers`]): the tree walk takes every point.
            NodeKind::Reduce { .. } | NodeKind::Pick { .. } | NodeKind::Moment { .. } => {
                for p in 0..n {
                    mark(unsettled, active, p);
                }
            }
        }
    }

    /// `out = out op b`, as [`Evaluation::binary`] computes it unguarded.
    fn binary(
        &self,
        op: BinaryOp,
        rhs: &Node,
        active: &[bool],
        out: &mut [T],
        b: &[T],
        unsettled: &mut Unsettled,
    ) {
        let n = self.block.len;
        match op {
            BinaryOp::Add => combine(out, b, |a, b| a + b),
            BinaryOp::Sub => combine(out, b, |a, b| a - b),
            BinaryOp::Mul => combine(out, b, |a, b| a * b),
            BinaryOp::Div => {
                for p in 0..n {
                    if is_zero(&b[p]) {
                        mark(unsettled, active, p);
                    }
                    out[p] = out[p] / b[p];
                }
            }
            BinaryOp::Pow => {
                let index_exponent = !reads_tensors(rhs);
                for p in 0..n {
                    let (a, e) = (out[p], b[p]);
                    if index_exponent
                        && e.real().fract() == 0.0
                        && e.real().abs() < f64::from(i32::MAX)
                    {
                        #[allow(clippy::cast_possible_truncation)]
                        let k = e.real() as i32;
                        if k < 0 && is_zero(&a) {
                            mark(unsettled, active, p);
                        }
                        out[p] = a.powi(k);
                    } else {
                        if is_non_positive(&a) {
                            mark(unsettled, active, p);
                        }
                        out[p] = (e * a.ln()).exp();
                    }
                }
            }
        }
    }

    /// As [`Evaluation::call`] away from kinks, jumps and branch points
    /// (which it notes) and inside the function's domain (else an error).
    fn call(
        &self,
        function: Function,
        args: &[Node],
        active: &[bool],
        out: &mut [T],
        unsettled: &mut Unsettled,
    ) {
        let n = self.block.len;
        match args.first() {
            Some(a) => self.node(a, active, out, unsettled),
            None => out.fill(T::zero()),
        }
        let y = match args.get(1) {
            Some(a) => {
                let mut y = vec![T::zero(); n];
                self.node(a, active, &mut y, unsettled);
                y
            }
            None if function == Function::Pow => vec![T::one(); n],
            None => out.to_vec(),
        };
        for (p, (x, y)) in out.iter_mut().zip(&y).enumerate() {
            if at_branch_point(function, args.len(), x, y) {
                mark(unsettled, active, p);
            }
            match apply(function, *x, *y) {
                Some(v) => *x = v,
                None => mark(unsettled, active, p),
            }
        }
    }

    /// As [`Evaluation::guarded_product`]: 0 where a guard is 0, the
    /// factors where every guard holds.
    fn guarded(&self, node: &Node, active: &[bool], out: &mut [T], unsettled: &mut Unsettled) {
        let n = self.block.len;
        let mut holds = active.to_vec();
        let mut this = vec![false; n];
        node.for_each_guard(&mut |guard| {
            if let NodeKind::Iverson(c) = &guard.node {
                self.cond(c, &holds, &mut this, unsettled);
                for (h, t) in holds.iter_mut().zip(&this) {
                    *h = *h && *t;
                }
            }
        });
        if !self.factors(node, &holds, out, unsettled) {
            out.fill(T::one());
        }
        for (o, h) in out.iter_mut().zip(&holds) {
            if !h {
                *o = T::zero();
            }
        }
    }

    /// As [`Evaluation::factors`]: whether the product has a factor other
    /// than brackets (which is structural, the same at every point), and
    /// if so their product into `out`.
    fn factors(
        &self,
        node: &Node,
        active: &[bool],
        out: &mut [T],
        unsettled: &mut Unsettled,
    ) -> bool {
        let n = self.block.len;
        match &node.node {
            NodeKind::Iverson(_) => false,
            NodeKind::Neg(a) => {
                if !self.factors(a, active, out, unsettled) {
                    out.fill(T::one());
                }
                for o in out.iter_mut() {
                    *o = -*o;
                }
                true
            }
            NodeKind::Binary {
                op: BinaryOp::Mul,
                lhs,
                rhs,
                ..
            } => {
                let a = self.factors(lhs, active, out, unsettled);
                let mut b = vec![T::zero(); n];
                let has_b = self.factors(rhs, active, &mut b, unsettled);
                match (a, has_b) {
                    (true, true) => combine(out, &b, |a, b| a * b),
                    (false, true) => out.copy_from_slice(&b),
                    (_, false) => {}
                }
                a || has_b
            }
            NodeKind::Binary {
                op: BinaryOp::Div,
                lhs,
                rhs,
                ..
            } => {
                if !self.factors(lhs, active, out, unsettled) {
                    out.fill(T::one());
                }
                let mut b = vec![T::zero(); n];
                self.node(rhs, active, &mut b, unsettled);
                self.binary(BinaryOp::Div, rhs, active, out, &b, unsettled);
                true
            }
            _ => {
                self.node(node, active, out, unsettled);
                true
            }
        }
    }

    /// Reads of `values` (row-major over `grid`) at `indices`; a read
    /// outside the grid, or past the values, is the tree walk's to report.
    fn read(
        &self,
        values: &[T],
        grid: &Grid,
        indices: &[Affine],
        active: &[bool],
        out: &mut [T],
        unsettled: &mut Unsettled,
    ) {
        let sizes = self.eval.instance.sizes.values();
        // Each index a column at once: a point's index values are then a
        // read each, not an evaluation of every affine form per point.
        let columns: Vec<Vec<i64>> = indices
            .iter()
            .map(|a| affine_column(a, sizes, &self.block.env, self.block.len))
            .collect();
        let offsets = grid.offsets(&columns, self.block.len);
        for (p, offset) in offsets.into_iter().enumerate() {
            if !active[p] {
                out[p] = T::zero();
                continue;
            }
            match offset.and_then(|k| values.get(k)) {
                Some(v) => out[p] = *v,
                None => {
                    out[p] = T::zero();
                    mark(unsettled, active, p);
                }
            }
        }
    }
}

/// An index's value at each of `len` points, whose index variables
/// `env` gives a column each, as [`Affine::eval`] gives it there (the
/// same checked operations in the same order), read as the smallest
/// integer where it overflows.
fn affine_column(a: &Affine, sizes: &[i64], env: &[Vec<i64>], len: usize) -> Vec<i64> {
    let base = a.dims.iter().try_fold(a.constant, |total, &(d, c)| {
        total.checked_add(c.checked_mul(*sizes.get(d.0)?)?)
    });
    let Some(base) = base else {
        return vec![i64::MIN; len];
    };
    let mut column = vec![base; len];
    // Once a point's sum overflows it stays overflowed, as a checked
    // sum stops there.
    let mut overflowed = vec![false; len];
    for &(v, c) in &a.vars {
        let Some(values) = env.get(v.0) else {
            return vec![i64::MIN; len];
        };
        for ((total, over), &value) in column.iter_mut().zip(&mut overflowed).zip(values) {
            let (product, o1) = c.overflowing_mul(value);
            let (sum, o2) = total.overflowing_add(product);
            *total = sum;
            *over |= o1 | o2;
        }
    }
    for (total, over) in column.iter_mut().zip(overflowed) {
        if over {
            *total = i64::MIN;
        }
    }
    column
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use crate::analysis::program::ClaimKind;
    use crate::analysis::{analyze, size_sweep};
    use crate::eval::double_double::Dd;
    use crate::eval::{Everywhere, Frame, Instance, Scalar, draw_values};
    use crate::source::Source;

    /// Values (to the bit, by their exact `Debug` form) and failures (by
    /// point and message) of an evaluation everywhere.
    fn written<T: Scalar + std::fmt::Debug>(e: Everywhere<T>) -> (Vec<String>, Vec<String>) {
        (
            e.values.iter().map(|v| format!("{v:?}")).collect(),
            e.errors.iter().map(|(k, e)| format!("{k}: {e}")).collect(),
        )
    }

    /// Every spec of `specs`, `tests/corpus` and `tests/library`: (path,
    /// text), sorted by path.
    fn bundled_specs() -> Vec<(String, String)> {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut files: Vec<_> = ["specs", "tests/corpus", "tests/library"]
            .iter()
            .flat_map(|d| std::fs::read_dir(format!("{root}/{d}")).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "dl"))
            .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()))
            .collect();
        files.sort();
        files
    }

    /// What [`for_each_drawn`] calls at each drawn point.
    type Check<'c> = dyn FnMut(&str, u64, &Instance<'_>, &[ndarray::ArrayD<f64>]) + 'c;

    /// `check(path, seed, instance, values)` for each spec that analyzes,
    /// at each size of its sweep of at most `max_elements`, at seeds 0 and 3.
    fn for_each_drawn(files: Vec<(String, String)>, max_elements: u64, check: &mut Check<'_>) {
        for (path, text) in files {
            let source = Source::new("t.dl", &text);
            let Ok(ast) = crate::syntax::parse(&source) else {
                continue;
            };
            let Ok(program) = analyze(&ast) else {
                continue;
            };
            let Ok(sweep) = size_sweep(&program, &[]) else {
                continue;
            };
            for sizes in sweep {
                let Ok(instance) = Instance::new(&program, &source, sizes, max_elements) else {
                    continue;
                };
                for seed in [0, 3] {
                    if let Ok(values) = draw_values(&instance, seed) {
                        check(&path, seed, &instance, &values);
                    }
                }
            }
        }
    }

    /// Every `grad` claim of every bundled spec and test corpus, at every
    /// size of its sweep and two seeds, in f64 and double-double: the block
    /// evaluation gives the tree walk's values bit for bit, its failures
    /// point for point, and its count of kinks. Some bodies must take the
    /// block path, and some of those must leave points to the tree walk
    /// (overlapping cases, reads out of range, kinks), or the comparison
    /// would prove little.
    #[test]
    fn blocks_give_the_values_and_failures_of_the_tree_walk() {
        let (mut blockwise, mut with_failures, mut with_kinks) = (0, 0, 0);
        for_each_drawn(
            bundled_specs(),
            1 << 16,
            &mut |path, _, instance, values| {
                let program = instance.program;
                let precise: Vec<ndarray::ArrayD<Dd>> =
                    values.iter().map(|a| a.mapv(Dd::from_f64)).collect();
                for claim in &program.claims {
                    let ClaimKind::Grad(claim) = &claim.kind else {
                        continue;
                    };
                    if !super::covers(&claim.body, claim.slots, program) {
                        continue;
                    }
                    blockwise += 1;
                    let grid = instance.tensor_grid(claim.target);
                    let (body, names, slots) = (&claim.body, &claim.var_names, claim.slots);
                    // Fresh evaluations, so that their kink logs are this body's.
                    let (blocks, walk) = (instance.evaluation(values), instance.evaluation(values));
                    let before = walk.kinks().met;
                    let by_blocks = written(blocks.body_everywhere(body, grid, names, slots));
                    let by_points =
                        written(walk.everywhere(body, grid, Frame::new(names, slots), false));
                    assert_eq!(by_blocks, by_points, "{path} in f64");
                    assert_eq!(blocks.kinks(), walk.kinks(), "{path} in f64");
                    with_failures += usize::from(!by_blocks.1.is_empty());
                    with_kinks += usize::from(walk.kinks().met > before);
                    let (blocks, walk) =
                        (instance.evaluation(&precise), instance.evaluation(&precise));
                    let by_blocks = written(blocks.body_everywhere(body, grid, names, slots));
                    let by_points =
                        written(walk.everywhere(body, grid, Frame::new(names, slots), false));
                    assert_eq!(by_blocks, by_points, "{path} in double-double");
                    assert_eq!(blocks.kinks(), walk.kinks(), "{path} in double-double");
                }
            },
        );
        assert!(blockwise > 500, "{blockwise} bodies took the block path");
        assert!(
            with_failures > 10,
            "{with_failures} of them failed somewhere"
        );
        assert!(with_kinks > 10, "{with_kinks} of them met a kink");
    }

    /// Every definition of every bundled spec and test corpus, and of a
    /// spec whose definitions fail and meet kinks, at every size of its
    /// sweep and two seeds, in f64, double-double and dual numbers: as the
    /// evaluation computes them (a block at a time where the block
    /// evaluation covers the body) they are the tree walk's alone, bit for
    /// bit, with its failures and its count of kinks.
    #[test]
    fn definitions_by_blocks_are_the_tree_walks() {
        let mut files = bundled_specs();
        // Claim-only definitions (so that their failures are kept) that
        // fail partway, meet ties and guard reads out of range; the second
        // spec's in the third block of 2^14 elements, on several threads.
        let failing = |n: i64| {
            format!(
                "dim N = {n}\ninput x[N]\nparam a\ny[i] = a * x[i]\n\
                 let l[i] = log({n}.5 - 4 - i) * x[i]\n\
                 let t[i] = max(x[i], x[N + 1 - i]) + abs(i - {n} + 3)\n\
                 let p[i] = [i >= 2] * x[i - 1] + a\n\
                 grad a = sum(i) x[i] * (l[i] + t[i] + p[i])\n"
            )
        };
        let synthetic = ["failing", "failing late"];
        files.push((synthetic[0].to_string(), failing(7)));
        files.push((synthetic[1].to_string(), failing(40001)));
        let (mut blockwise, mut failed, mut kinked) = (0, 0, 0);
        // (failed, kinked) of the synthetic specs at their largest size.
        let mut largest = vec![];
        for_each_drawn(files, 1 << 18, &mut |path, seed, instance, values| {
            let at = format!("{path} at {} seed {seed}", instance.sizes);
            let counts = compare_defs(instance, values, &at);
            let largest_n = match path {
                p if p == synthetic[0] => 7,
                p if p == synthetic[1] => 40001,
                _ => 0,
            };
            if largest_n > 0 && instance.sizes.values().contains(&largest_n) {
                largest.push((counts.1, counts.2));
            }
            let precise: Vec<ndarray::ArrayD<Dd>> =
                values.iter().map(|a| a.mapv(Dd::from_f64)).collect();
            compare_defs(instance, &precise, &at);
            let dual: Vec<ndarray::ArrayD<num_dual::Dual64>> = values
                .iter()
                .map(|a| a.mapv(|v| num_dual::Dual64::new(v, v.sin())))
                .collect();
            compare_defs(instance, &dual, &at);
            blockwise += counts.0;
            failed += counts.1;
            kinked += counts.2;
        });
        assert!(
            blockwise > 1000,
            "{blockwise} definitions took the block path"
        );
        assert!(failed > 20, "{failed} evaluations had a definition fail");
        assert!(kinked > 20, "{kinked} evaluations met a kink");
        assert_eq!(largest, [(1, 1); 4]);
    }

    /// The definitions of one evaluation against the tree walk's (an
    /// evaluation that shares no work, the branches taken as by default):
    /// how many were covered by blocks, and whether one failed and whether
    /// a kink was met.
    fn compare_defs<T: Scalar + std::fmt::Debug + Send + Sync>(
        instance: &Instance<'_>,
        values: &[ndarray::ArrayD<T>],
        at: &str,
    ) -> (usize, usize, usize) {
        let program = instance.program;
        let mut blocks = instance.evaluation(values);
        let mut walk = instance
            .evaluation(values)
            .with_branches(crate::eval::BranchPolicy::Flips(std::sync::Arc::from([])));
        let (a, b) = (blocks.compute_defs(false), walk.compute_defs(false));
        assert_eq!(
            a.map_err(|e| e.to_string()),
            b.map_err(|e| e.to_string()),
            "{at}"
        );
        assert_eq!(blocks.kinks(), walk.kinks(), "{at}");
        let mut failed = false;
        let written = |e: &crate::eval::Evaluation<'_, T>, d| match e.def_values(d) {
            Ok(v) => Ok(v.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>()),
            Err(e) => Err(e.to_string()),
        };
        // An update rule's lets are computed by its steps, not here.
        for (k, def) in program.defs.iter().enumerate() {
            if def.local_to.is_some() {
                continue;
            }
            let d = crate::analysis::program::DefId(k);
            let by_blocks = written(&blocks, d);
            failed |= by_blocks.is_err();
            assert_eq!(by_blocks, written(&walk, d), "{} of {at}", def.name);
        }
        let covered = program
            .defs
            .iter()
            .filter(|d| d.recurrence.is_none() && d.local_to.is_none())
            .filter(|d| super::covers(&d.body, d.slots, program))
            .count();
        (
            covered,
            usize::from(failed),
            usize::from(walk.kinks().met > 0),
        )
    }

    /// A sum long enough to be taken in blocks on several threads has its
    /// blocks' terms computed a column per node: it is the cascade of its
    /// terms walked one by one, bit for bit, in f64 and double-double, with
    /// the same kinks and the same first failure. The bodies cover plain
    /// terms, a tie `max` meets at one term (left to the tree walk), and
    /// a log that fails at the 50001st.
    #[test]
    fn long_sums_are_their_terms_walked_one_by_one() {
        /// Four blocks of 2^14 terms and a part of one: summed in blocks.
        const TERMS: usize = 70001;
        let text = format!(
            "dim N = {TERMS}\ninput x[N]\nparam a\ny[i] = a * x[i]\n\
            grad a = sum(i) x[i] * exp(a * x[i])\n\
            grad a = sum(i) max(x[i], x[N + 1 - i]) * x[i]\n\
            grad a = sum(i) log(50000.5 - i) * x[i]\n"
        );
        let source = Source::new("t.dl", &text);
        let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let sizes = size_sweep(&program, &[]).unwrap().pop().unwrap();
        let instance = Instance::new(&program, &source, sizes, 1 << 20).unwrap();
        let values = draw_values(&instance, 0).unwrap();
        let precise: Vec<ndarray::ArrayD<Dd>> =
            values.iter().map(|a| a.mapv(Dd::from_f64)).collect();
        // Terms left to the tree walk, per claim and precision.
        let mut unsettled_terms = vec![];
        for claim in &program.claims {
            let ClaimKind::Grad(claim) = &claim.kind else {
                panic!("a grad claim");
            };
            let crate::analysis::program::Body::Expr(sum) = &claim.body else {
                panic!("a sum");
            };
            let crate::analysis::program::NodeKind::Reduce {
                var, body: term, ..
            } = &sum.node
            else {
                panic!("a sum");
            };
            let (names, slots) = (&claim.var_names, claim.slots);
            let grid = instance.tensor_grid(claim.target);
            fn compare<T: Scalar + std::fmt::Debug + Send + Sync>(
                instance: &Instance<'_>,
                values: &[ndarray::ArrayD<T>],
                (body, term, var): (
                    &crate::analysis::program::Body,
                    &crate::analysis::program::Node,
                    crate::analysis::program::VarId,
                ),
                (grid, names, slots): (&crate::eval::grid::Grid, &[String], usize),
            ) -> usize {
                let (summed, walked) = (instance.evaluation(values), instance.evaluation(values));
                let by_sum = written(summed.body_everywhere(body, grid, names, slots));
                let mut frame = Frame::new(names, slots);
                let mut cascade = crate::eval::Cascade::default();
                let mut failure = None;
                for k in 1..=TERMS as i64 {
                    frame.env[var.0] = k;
                    match walked.node(term, &mut frame) {
                        Ok(v) => cascade.push(v, |a, b| Ok::<T, ()>(a + b)).unwrap(),
                        Err(e) => {
                            failure = Some(format!("0: {e}"));
                            break;
                        }
                    }
                }
                let by_terms = match failure {
                    Some(e) => (vec![format!("{:?}", T::constant(f64::NAN))], vec![e]),
                    None => (
                        vec![format!(
                            "{:?}",
                            cascade.finish(|a, b| Ok::<T, ()>(a + b)).unwrap().unwrap()
                        )],
                        vec![],
                    ),
                };
                assert_eq!(by_sum, by_terms);
                assert_eq!(summed.kinks(), walked.kinks());
                let env = vec![super::UNBOUND; slots];
                assert!(super::covers_node(term, slots, instance.program));
                let terms = summed.terms_block(term, var, 1, TERMS, &env);
                terms.unsettled.iter().filter(|&&u| u).count()
            }
            let parts = (&claim.body, term.as_ref(), *var);
            unsettled_terms.push([
                compare(&instance, &values, parts, (grid, names, slots)),
                compare(&instance, &precise, parts, (grid, names, slots)),
            ]);
        }
        // The tie, and every term from the failing one on.
        assert_eq!(unsettled_terms, [[0, 0], [1, 1], [20001, 20001]]);
    }

    /// An index column is `Affine::eval` point by point, overflow read as
    /// the smallest integer, an unbound variable and an overflowing size
    /// term included.
    #[test]
    fn an_index_column_is_the_affine_form_point_by_point() {
        use super::affine_column;
        use crate::analysis::program::{Affine, DimId, VarId};
        let big = i64::MAX / 2;
        let env = vec![
            vec![1, -3, 0, big, i64::MIN, i64::MAX, 7],
            vec![2, 2, -5, 3, 0, -1, big],
        ];
        let sizes = [4, big];
        let forms = [
            Affine {
                constant: 3,
                dims: vec![(DimId(0), 2)],
                vars: vec![(VarId(0), 1), (VarId(1), -2)],
            },
            Affine {
                constant: -1,
                dims: vec![],
                vars: vec![(VarId(0), 3)],
            },
            Affine {
                constant: big,
                dims: vec![(DimId(1), 1)],
                vars: vec![(VarId(1), 1)],
            },
            Affine {
                constant: 0,
                dims: vec![(DimId(1), 3)],
                vars: vec![],
            },
            Affine {
                constant: 0,
                dims: vec![],
                vars: vec![(VarId(2), 1)],
            },
            Affine {
                constant: 5,
                dims: vec![],
                vars: vec![(VarId(1), 2), (VarId(0), -1)],
            },
        ];
        for a in &forms {
            let column = affine_column(a, &sizes, &env, 7);
            for (p, &got) in column.iter().enumerate() {
                let point = [env[0][p], env[1][p]];
                let expected = a.eval(&sizes, &point).unwrap_or(i64::MIN);
                assert_eq!(got, expected, "{a:?} at {point:?}");
            }
        }
    }
}
