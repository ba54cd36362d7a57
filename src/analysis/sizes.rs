//! The sizes at which claims are checked: the smallest at which every range
//! is non-empty, a few just above, each size bumped alone, and the defaults.
//! Boundary mistakes show only at some sizes, so one size is never enough.

use std::fmt;

use super::error::AnalysisError;
use super::program::{
    Affine, AxisRange, Body, DimId, Node, NodeKind, ProductNode, Program, Values, VarId,
};
use super::resolve::{for_each_cond_expr, suggest};
use crate::source::Span;

/// One value per dim, indexed by [`DimId`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sizes {
    values: Vec<i64>,
    names: Vec<String>,
}

impl Sizes {
    pub fn values(&self) -> &[i64] {
        &self.values
    }

    pub fn get(&self, d: DimId) -> i64 {
        self.values.get(d.0).copied().unwrap_or(0)
    }

    pub fn named(&self) -> impl Iterator<Item = (&str, i64)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().copied())
    }
}

impl Sizes {
    /// ` at N = 8` for a phrase about one set of sizes, or nothing for a
    /// spec without dims (its one set of sizes needs no naming).
    pub fn at_clause(&self) -> String {
        if self.values.is_empty() {
            String::new()
        } else {
            format!(" at {self}")
        }
    }
}

impl fmt::Display for Sizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A spec without dims has one set of sizes, fixed by its tensors.
        if self.values.is_empty() {
            return write!(f, "the fixed sizes");
        }
        let parts: Vec<String> = self.named().map(|(n, v)| format!("{n} = {v}")).collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// A range that must hold at least one element for the spec to mean anything.
struct RequiredRange {
    lowers: Vec<Affine>,
    uppers: Vec<Affine>,
    what: String,
    span: Span,
}

impl RequiredRange {
    fn is_empty_at(&self, sizes: &[i64]) -> bool {
        let lo = self.lowers.iter().filter_map(|a| a.eval(sizes, &[])).max();
        let hi = self.uppers.iter().filter_map(|a| a.eval(sizes, &[])).min();
        match (lo, hi) {
            (Some(lo), Some(hi)) => lo > hi,
            _ => true,
        }
    }
}

fn required_ranges(program: &Program) -> Vec<RequiredRange> {
    let mut out = vec![];
    let push_axes =
        |out: &mut Vec<RequiredRange>, name: &str, axes: &[super::program::AxisRange]| {
            for (k, axis) in axes.iter().enumerate() {
                out.push(RequiredRange {
                    lowers: vec![axis.lo.clone()],
                    uppers: vec![axis.hi.clone()],
                    what: format!("axis {} of `{name}`", k + 1),
                    span: axis.span,
                });
            }
        };
    // `g` has the layer's axes, which the layer's own entry covers.
    for t in program
        .tensors
        .iter()
        .filter(|t| matches!(t.origin, super::program::Origin::Declared(_)))
    {
        push_axes(&mut out, &t.name, &t.axes);
        // Labels are drawn from their range: it may not be empty.
        if let super::program::Values::Indices { lo, hi } = &t.values {
            out.push(RequiredRange {
                lowers: vec![lo.clone()],
                uppers: vec![hi.clone()],
                what: format!("the range of `{}`'s values", t.name),
                span: t.span,
            });
        }
    }
    for d in &program.defs {
        push_axes(&mut out, &d.name, &d.axes);
    }
    // Reductions are not required to be non-empty: an empty sum is 0, and
    // a claim's sums must not move the sizes at which the whole file is
    // checked. (`max`/`min` over an empty range are reported when evaluated.)
    out
}

/// An access outside any guard: at the sizes checked it must stay inside its
/// tensor for every value its index variables take.
struct AccessBound {
    index: Affine,
    /// Ranges of the index variables involved, affine in the dims.
    vars: Vec<(VarId, Vec<Affine>, Vec<Affine>)>,
    axis: AxisRange,
}

impl AccessBound {
    fn violated_at(&self, sizes: &[i64]) -> bool {
        // An affine index takes its extremes at the corners of the box.
        let fixed = Affine {
            vars: vec![],
            ..self.index.clone()
        };
        let (mut lo, mut hi) = match fixed.eval(sizes, &[]) {
            Some(c) => (c, c),
            None => return false,
        };
        for &(v, c) in &self.index.vars {
            let Some((_, lowers, uppers)) = self.vars.iter().find(|(w, _, _)| *w == v) else {
                return false;
            };
            let vlo = lowers.iter().filter_map(|a| a.eval(sizes, &[])).max();
            let vhi = uppers.iter().filter_map(|a| a.eval(sizes, &[])).min();
            let (Some(vlo), Some(vhi)) = (vlo, vhi) else {
                return false;
            };
            if vlo > vhi {
                return false; // no element reads it at these sizes
            }
            let (a, b) = (c.saturating_mul(vlo), c.saturating_mul(vhi));
            lo = lo.saturating_add(a.min(b));
            hi = hi.saturating_add(a.max(b));
        }
        match (self.axis.lo.eval(sizes, &[]), self.axis.hi.eval(sizes, &[])) {
            (Some(alo), Some(ahi)) => lo < alo || hi > ahi,
            _ => false,
        }
    }

    /// How far the access reaches past its axis at these sizes (at least 1).
    fn overshoot(&self, sizes: &[i64]) -> i64 {
        let fixed = Affine {
            vars: vec![],
            ..self.index.clone()
        };
        let (Some(mut lo), Some(alo), Some(ahi)) = (
            fixed.eval(sizes, &[]),
            self.axis.lo.eval(sizes, &[]),
            self.axis.hi.eval(sizes, &[]),
        ) else {
            return 1;
        };
        let mut hi = lo;
        for &(v, c) in &self.index.vars {
            let Some((_, lowers, uppers)) = self.vars.iter().find(|(w, _, _)| *w == v) else {
                return 1;
            };
            let vlo = lowers
                .iter()
                .filter_map(|a| a.eval(sizes, &[]))
                .max()
                .unwrap_or(0);
            let vhi = uppers
                .iter()
                .filter_map(|a| a.eval(sizes, &[]))
                .min()
                .unwrap_or(0);
            let (a, b) = (c.saturating_mul(vlo), c.saturating_mul(vhi));
            lo = lo.saturating_add(a.min(b));
            hi = hi.saturating_add(a.max(b));
        }
        alo.saturating_sub(lo).max(hi.saturating_sub(ahi)).max(1)
    }

    fn dims(&self) -> Vec<usize> {
        let mut dims: Vec<usize> = [&self.axis.lo, &self.axis.hi]
            .into_iter()
            .chain(self.vars.iter().flat_map(|(_, l, u)| l.iter().chain(u)))
            .flat_map(|a| a.dims.iter().map(|(d, _)| d.0))
            .collect();
        dims.sort_unstable();
        dims.dedup();
        dims
    }
}

/// Every unguarded access of the definitions whose index variables have
/// ranges in the dims alone.
fn access_bounds(program: &Program) -> Vec<AccessBound> {
    let mut out = vec![];
    for def in &program.defs {
        let mut ranges: Vec<Option<(Vec<Affine>, Vec<Affine>)>> = vec![None; def.slots];
        for (k, axis) in def.axes.iter().enumerate() {
            if let Some(slot) = ranges.get_mut(k) {
                *slot = Some((vec![axis.lo.clone()], vec![axis.hi.clone()]));
            }
        }
        match &def.body {
            Body::Expr(e) => collect_bounds(program, e, false, &mut ranges, &mut out),
            Body::Cases(cases) => {
                let guarded = cases.len() > 1 || cases.iter().any(|c| c.condition.is_some());
                for c in cases {
                    collect_bounds(program, &c.value, guarded, &mut ranges, &mut out);
                }
            }
        }
    }
    out
}

type SlotRanges = Vec<Option<(Vec<Affine>, Vec<Affine>)>>;

fn collect_bounds(
    program: &Program,
    node: &Node,
    guarded: bool,
    ranges: &mut SlotRanges,
    out: &mut Vec<AccessBound>,
) {
    let mut recurse = |n: &Node, g: bool, ranges: &mut SlotRanges| {
        collect_bounds(program, n, g, ranges, out);
    };
    match &node.node {
        NodeKind::Tensor { id, indices } => {
            if let Some(t) = program.tensors.get(id.0) {
                push_bounds(&t.axes, indices, guarded, ranges, out);
            }
        }
        NodeKind::Def { id, indices } => {
            if let Some(d) = program.defs.get(id.0) {
                push_bounds(&d.axes, indices, guarded, ranges, out);
            }
        }
        NodeKind::Neg(a) | NodeKind::PowInt(a, _) => recurse(a, guarded, ranges),
        NodeKind::Binary { lhs, rhs, .. } => {
            // As the evaluator: a bracket among the factors guards them all.
            let guard = node.is_guarded_product();
            recurse(lhs, guarded || guard, ranges);
            recurse(rhs, guarded || guard, ranges);
        }
        NodeKind::Call { args, .. } => {
            for a in args {
                recurse(a, guarded, ranges);
            }
        }
        NodeKind::Pick {
            var, range, body, ..
        } => collect_ranged(program, (*var, range), body, guarded, ranges, out),
        NodeKind::Reduce {
            var, range, body, ..
        } => collect_ranged(program, (*var, range), body, guarded, ranges, out),
        NodeKind::Iverson(c) => for_each_cond_expr(c, &mut |n| recurse(n, true, ranges)),
        _ => {}
    }
}

/// The bounds under a reduction (or a pick) of `var` over `range`.
fn collect_ranged(
    program: &Program,
    (var, range): (VarId, &crate::analysis::program::VarRange),
    body: &Node,
    guarded: bool,
    ranges: &mut SlotRanges,
    out: &mut Vec<AccessBound>,
) {
    let dims_only = range
        .lowers
        .iter()
        .chain(&range.uppers)
        .all(Affine::is_dims_only);
    if let Some(slot) = ranges.get_mut(var.0) {
        *slot = dims_only.then(|| (range.lowers.clone(), range.uppers.clone()));
    }
    collect_bounds(program, body, guarded, ranges, out);
}

fn push_bounds(
    axes: &[AxisRange],
    indices: &[Affine],
    guarded: bool,
    ranges: &SlotRanges,
    out: &mut Vec<AccessBound>,
) {
    if guarded {
        return;
    }
    for (axis, index) in axes.iter().zip(indices) {
        let vars: Option<Vec<_>> = index
            .vars
            .iter()
            .map(|(v, _)| {
                let (l, u) = ranges.get(v.0)?.as_ref()?;
                Some((*v, l.clone(), u.clone()))
            })
            .collect();
        if let Some(vars) = vars {
            out.push(AccessBound {
                index: index.clone(),
                vars,
                axis: axis.clone(),
            });
        }
    }
}

/// Given values fix a tensor's length: only sizes that match can be checked.
struct GivenLength {
    axes: Vec<AxisRange>,
    len: usize,
    /// Values given in rows fix each axis, not only the product.
    shape: Option<Vec<usize>>,
}

impl GivenLength {
    /// How many elements the tensor lacks at these sizes (at least 1).
    fn shortfall(&self, sizes: &[i64]) -> i64 {
        let len = self.axes.iter().try_fold(1i64, |acc, a| {
            let n = a.hi.eval(sizes, &[])? - a.lo.eval(sizes, &[])? + 1;
            acc.checked_mul(n.max(0))
        });
        let wanted = i64::try_from(self.len).unwrap_or(i64::MAX);
        len.map_or(1, |len| wanted.saturating_sub(len).max(1))
    }

    fn violated_at(&self, sizes: &[i64]) -> bool {
        let extent = |a: &AxisRange| Some(a.hi.eval(sizes, &[])? - a.lo.eval(sizes, &[])? + 1);
        if let Some(shape) = &self.shape {
            return self
                .axes
                .iter()
                .zip(shape)
                .any(|(a, &s)| extent(a) != i64::try_from(s).ok());
        }
        let len = self
            .axes
            .iter()
            .try_fold(1i64, |acc, a| acc.checked_mul(extent(a)?.max(0)));
        len != i64::try_from(self.len).ok()
    }
}

fn given_lengths(program: &Program) -> Vec<GivenLength> {
    program
        .tensors
        .iter()
        .filter_map(|t| match &t.values {
            Values::List(list) => Some(GivenLength {
                axes: t.axes.clone(),
                len: list.len(),
                shape: None,
            }),
            Values::Grid(values, shape) => Some(GivenLength {
                axes: t.axes.clone(),
                len: values.len(),
                shape: (shape.len() == t.axes.len()).then(|| shape.clone()),
            }),
            _ => None,
        })
        .collect()
}

/// What the smallest sizes must satisfy, with the dims that may fix each.
struct Constraints {
    ranges: Vec<RequiredRange>,
    accesses: Vec<AccessBound>,
    lengths: Vec<GivenLength>,
    /// Each dim's smallest size, as declared (`dim n >= 2 = 5`) or 1.
    minimums: Vec<i64>,
}

impl Constraints {
    /// The dims to grow for the first constraint violated, or `None` if all hold.
    fn first_violation(&self, sizes: &[i64]) -> Option<(Vec<usize>, i64)> {
        if let Some(r) = self.ranges.iter().find(|r| r.is_empty_at(sizes)) {
            let lo = r.lowers.iter().filter_map(|a| a.eval(sizes, &[])).max();
            let hi = r.uppers.iter().filter_map(|a| a.eval(sizes, &[])).min();
            let gap = lo.zip(hi).map_or(1, |(lo, hi)| lo.saturating_sub(hi));
            let growing = r
                .uppers
                .iter()
                .flat_map(|a| a.dims.iter().filter(|(_, c)| *c > 0))
                .chain(
                    r.lowers
                        .iter()
                        .flat_map(|a| a.dims.iter().filter(|(_, c)| *c < 0)),
                );
            let mut dims: Vec<usize> = growing.map(|&(d, _)| d.0).collect();
            dims.sort_unstable();
            dims.dedup();
            return Some((dims, gap));
        }
        if let Some(a) = self.accesses.iter().find(|a| a.violated_at(sizes)) {
            return Some((a.dims(), a.overshoot(sizes)));
        }
        if let Some(l) = self.lengths.iter().find(|l| l.violated_at(sizes)) {
            let mut dims: Vec<usize> = l
                .axes
                .iter()
                .flat_map(|a| a.hi.dims.iter().map(|(d, _)| d.0))
                .collect();
            dims.sort_unstable();
            dims.dedup();
            return Some((dims, l.shortfall(sizes)));
        }
        None
    }

    /// Sizes worth checking: ranges non-empty and given lists of the right length.
    fn admits(&self, sizes: &[i64]) -> bool {
        sizes.iter().zip(&self.minimums).all(|(s, m)| s >= m)
            && self.ranges.iter().all(|r| !r.is_empty_at(sizes))
            && self.lengths.iter().all(|l| !l.violated_at(sizes))
    }
}

/// The sizes to check at. `overrides` (`--dim N=1000`) replace the defaults,
/// the largest sizes checked; the small sizes where boundary mistakes show
/// are checked as well, so a verdict never depends on the override.
pub fn size_sweep(
    program: &Program,
    overrides: &[(String, i64)],
) -> Result<Vec<Sizes>, Box<AnalysisError>> {
    let names: Vec<String> = program.dims.iter().map(|d| d.name.clone()).collect();
    let mut overridden: Vec<Option<i64>> = vec![None; names.len()];
    for (name, value) in overrides {
        match names.iter().position(|n| n == name) {
            Some(k) => overridden[k] = Some(*value),
            None => {
                let help = match suggest(name, names.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `--dim {s}={value}`?"),
                    None if names.is_empty() => "this spec declares no sizes".to_string(),
                    None => format!("the spec's sizes are: {}", names.join(", ")),
                };
                return Err(Box::new(AnalysisError::UnknownDimOverride {
                    name: name.clone(),
                    help,
                    span: program
                        .dims
                        .first()
                        .map_or(Span::default(), |d| d.span)
                        .into(),
                }));
            }
        }
    }
    for (d, o) in program.dims.iter().zip(&overridden) {
        if let Some(value) = *o
            && value < d.minimum
        {
            return Err(Box::new(AnalysisError::DimBelowMinimum {
                name: d.name.clone(),
                value,
                minimum: d.minimum,
                given: format!("`--dim {}={value}`", d.name),
                span: d.span.into(),
                minimum_span: None,
                help: format!(
                    "the spec is meant for {} >= {}: give `--dim {}={}` or more",
                    d.name, d.minimum, d.name, d.minimum
                ),
            }));
        }
    }
    let defaults: Vec<i64> = program
        .dims
        .iter()
        .zip(&overridden)
        .map(|(d, o)| o.unwrap_or(d.default))
        .collect();
    let minimums: Vec<i64> = program.dims.iter().map(|d| d.minimum).collect();
    let ranges = required_ranges(program);
    let make = |values: Vec<i64>| Sizes {
        values,
        names: names.clone(),
    };
    if let Some(empty) = ranges.iter().find(|r| r.is_empty_at(&defaults)) {
        let sizes = make(defaults.clone());
        return Err(Box::new(AnalysisError::EmptyRange {
            detail: format!("{} is empty at the default sizes", empty.what),
            help: "raise the default size in the `dim` declaration (or the `--dim` value)"
                .to_string(),
            span: empty.span.into(),
            sizes: sizes.to_string(),
        }));
    }
    let constraints = Constraints {
        ranges,
        accesses: access_bounds(program),
        lengths: given_lengths(program),
        minimums,
    };
    let smallest = smallest_sizes(&constraints, &defaults);
    let mut sweep = vec![smallest.clone()];
    let free: Vec<usize> = (0..names.len()).collect();
    for step in 1..=3 {
        let mut bumped = smallest.clone();
        for &k in &free {
            bumped[k] = bumped[k].saturating_add(step);
        }
        sweep.push(bumped);
    }
    if free.len() > 1 {
        for &k in &free {
            let mut bumped = smallest.clone();
            bumped[k] = bumped[k].saturating_add(1);
            sweep.push(bumped);
        }
    }
    // The defaults are always checked: what fails there is an error to report.
    sweep.retain(|s| constraints.admits(s));
    sweep.push(defaults);
    // Summed wide: sizes near i64::MAX must not overflow.
    sweep.sort_by_key(|s| (s.iter().map(|&v| i128::from(v)).sum::<i128>(), s.clone()));
    sweep.dedup();
    Ok(sweep.into_iter().map(make).collect())
}

/// Steps the search for the smallest sizes may take before it settles for
/// the defaults: each step closes a whole gap, so few are ever needed.
const MAX_GROWTH_STEPS: i64 = 10_000;

/// Grows the dims from 1 until every constraint holds, never past the
/// defaults (where the spec must hold anyway: what fails there is reported).
fn smallest_sizes(constraints: &Constraints, defaults: &[i64]) -> Vec<i64> {
    // From each dim's declared smallest size (1 unless declared), never
    // above its default.
    let mut sizes: Vec<i64> = constraints
        .minimums
        .iter()
        .zip(defaults)
        .map(|(&m, &d)| m.min(d).max(1))
        .collect();
    let limit: i64 = defaults.iter().fold(1, |sum, &d| sum.saturating_add(d));
    for _ in 0..limit.min(MAX_GROWTH_STEPS) {
        let Some((dims, gap)) = constraints.first_violation(&sizes) else {
            return sizes;
        };
        // Each dim grows by the gap at once (`for i in 10000000000..=N` is
        // solved in one step, not searched), however many bounds name it.
        let mut grew = false;
        for k in dims {
            if sizes[k] < defaults[k] {
                sizes[k] = sizes[k].saturating_add(gap.max(1)).min(defaults[k]);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    defaults.to_vec()
}
