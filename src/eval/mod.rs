//! Evaluation of a checked program at one set of sizes, generic over the
//! scalar type: `f64` for values, num-dual's dual numbers for derivatives.
//! Errors: `dl::eval::*`.

mod autodiff;
mod columns;
mod dd_special;
pub mod distribution;
pub mod double_double;
mod error;
mod gamma;
mod grid;
pub mod memory;
pub mod random;
pub mod replay;
mod reverse;
pub(crate) mod scalar;
pub mod tape;
mod values;

pub use autodiff::{
    CHUNK as PARTIALS_PER_PASS, branches_along, directional_derivative, directional_derivative_at,
    directional_derivatives, gradient, gradient_on_branches, partial_at,
    precise_directional_derivative, precise_partials, precise_partials_at,
};

pub use error::{EvalError, TooLargeToRecord};
pub use grid::Grid;
pub use reverse::{
    Adjoints, LARGE_RECORDING, Recorded, ReverseGradient, TapeReal, adjoints_of, gradient_of,
    record, reverse_adjoints, reverse_gradient,
};
pub use scalar::{Scalar, Smooth};
pub use values::{draw_values, stream_seed};

use std::cmp::Ordering::{Equal, Greater, Less};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use ndarray::ArrayD;

use crate::analysis::Sizes;
use crate::analysis::program::*;
use crate::source::{Source, Span};
use crate::syntax::ast::{BinaryOp, ReduceOp};

/// Cases that hold at once must agree to rounding: this many units of
/// rounding relative to the larger value.
const CASE_AGREEMENT_ULPS: f64 = 1024.0;

/// Whether the values of two cases that hold at once disagree beyond rounding.
#[inline]
fn cases_disagree(a: f64, b: f64) -> bool {
    let scale = a.abs().max(b.abs());
    (a - b).abs() > CASE_AGREEMENT_ULPS * f64::EPSILON * scale
}

/// A program at concrete sizes: every range resolved to numbers.
pub struct Instance<'p> {
    pub program: &'p Program,
    pub sizes: Sizes,
    source: &'p Source,
    tensor_grids: Vec<Grid>,
    def_grids: Vec<Grid>,
    hypers: Vec<f64>,
    /// Definitions the output depends on; the rest serve claims only.
    feeds_output: Vec<bool>,
    /// Per definition: reads a tensor that is not data (drawn or labels),
    /// directly or through another definition, so that a comparison of it
    /// at equality can flip under a small change.
    reads_values: Vec<bool>,
    /// Work past this instant stops with [`EvalError::Timeout`].
    deadline: std::sync::Mutex<Option<Deadline>>,
    /// Work stops as at a deadline once this is cancelled.
    cancel: Option<Cancel>,
    /// Operations a recording of L may hold (see [`memory`]).
    operation_limit: usize,
}

/// A way to stop a check from another thread (an editor's next edit
/// makes a running check stale): evaluation stops at its next look at the
/// clock, as if the time limit had run out.
#[derive(Clone, Debug, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A time limit on evaluation: `--timeout` per claim.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: std::time::Instant,
    pub limit: std::time::Duration,
}

impl Deadline {
    pub fn after(limit: std::time::Duration) -> Self {
        Self {
            at: std::time::Instant::now() + limit,
            limit,
        }
    }
}

/// `mutex` locked. A lock a panicking thread held still holds whole data
/// here (every writer leaves it consistent): the panic is reported where
/// it happened, not again by each later reader.
pub(crate) fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Operations below which work stays on the calling thread. Handed to
/// rayon's pool from a thread outside it (a claim's), work costs a wake-up
/// of the pool and a wait for it, tens of microseconds, more than a small
/// run takes; and the pool's threads then spin beside the claims' for the
/// same cores. Work the pool could not share out (a single chunk) stays
/// too, whatever its size: the pool would run it on one thread while the
/// caller waits.
pub(crate) const HAND_OVER: usize = 1 << 14;

/// `rayon::join(a, b)` where the work is `worth` handing over (see
/// [`HAND_OVER`]), else `a` then `b` on this thread: the same results.
pub(crate) fn join_if<A, B, RA, RB>(worth: bool, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    if worth { rayon::join(a, b) } else { (a(), b()) }
}

/// The value of an index variable outside its reduction: never shown.
const UNBOUND: i64 = i64::MIN;

/// How many elements or terms to evaluate between looks at the clock.
const CLOCK_STRIDE: usize = 256;
/// How many terms of sums to evaluate between looks at the clock.
const CLOCK_TERMS: u32 = 4096;

/// Elements of a definition per chunk computed on a thread of its own
/// (see [`Evaluation::compute_def_in_chunks`]): past one chunk, a
/// definition is shared out.
const PARALLEL_ELEMENTS: usize = 1 << 14;

/// A sum is split in blocks of 2^`BLOCK_LEVEL` terms, one partial sum of
/// its cascade each (see [`Evaluation::sum_in_blocks`]), once it has
/// [`PARALLEL_BLOCKS`] of them.
const BLOCK_LEVEL: u32 = 14;
/// Blocks a sum must have to be split: below, the terms go one by one.
const PARALLEL_BLOCKS: i64 = 4;
/// Terms a sum must have for its terms to be computed a column at a time
/// ([`Evaluation::sum_by_columns`]): below, setting up the columns costs
/// more than walking the tree per term.
const COLUMN_TERMS: i128 = 32;

impl<'p> Instance<'p> {
    /// Resolves the ranges at `sizes`; refuses sizes whose tensors would hold
    /// more than `max_elements` elements in all.
    pub fn new(
        program: &'p Program,
        source: &'p Source,
        sizes: Sizes,
        max_elements: u64,
    ) -> Result<Self, Box<EvalError>> {
        let grid_of = |axes: &[AxisRange]| Grid::of_axes(axes, &sizes);
        let tensor_grids: Vec<Grid> = program.tensors.iter().map(|t| grid_of(&t.axes)).collect();
        let def_grids: Vec<Grid> = program.defs.iter().map(|d| grid_of(&d.axes)).collect();
        let total = tensor_grids
            .iter()
            .chain(&def_grids)
            .try_fold(0u64, |acc, g| acc.checked_add(g.len()?));
        if total.is_none_or(|t| t > max_elements) {
            return Err(Box::new(EvalError::TooLarge {
                elements: total.map_or_else(|| "more than 2^64".to_string(), |t| t.to_string()),
                limit: max_elements,
                sizes: sizes.to_string(),
                span: program
                    .dims
                    .first()
                    .map_or(Span::default(), |d| d.span)
                    .into(),
            }));
        }
        let mut instance = Self {
            program,
            sizes,
            source,
            tensor_grids,
            def_grids,
            hypers: vec![],
            feeds_output: feeds_output(program),
            reads_values: program.defs_reading(vec![], |n| match &n.node {
                NodeKind::Tensor { id, .. } => {
                    program.tensors.get(id.0).is_some_and(|t| !t.is_data())
                }
                _ => false,
            }),
            deadline: std::sync::Mutex::new(None),
            cancel: None,
            operation_limit: reverse::operation_limit(),
        };
        instance.hypers = instance.evaluate_hypers()?;
        Ok(instance)
    }

    /// Lets a recording of L hold at most `operations` operations, rather
    /// than what the memory available allows: a smaller size's refusal,
    /// made to order.
    pub fn limit_operations(&mut self, operations: usize) {
        self.operation_limit = operations;
    }

    /// Operations a recording of L may hold.
    pub fn operation_limit(&self) -> usize {
        self.operation_limit
    }

    /// The values of the hypers, by [`HyperId`].
    pub fn hypers(&self) -> &[f64] {
        &self.hypers
    }

    /// The time limit in force, for work done away from the instance.
    pub fn deadline(&self) -> Option<Deadline> {
        *locked(&self.deadline)
    }

    /// Sets (or clears) the time limit for the evaluations that follow.
    pub fn set_deadline(&self, deadline: Option<Deadline>) {
        *locked(&self.deadline) = deadline;
    }

    /// Moves the time limit to `deadline` unless it is later already: with
    /// claims checked side by side, work stops at the latest of their
    /// limits, and each claim is held to its own when it ends
    /// ([`Instance::past`]).
    pub fn extend_deadline(&self, deadline: Deadline) {
        let mut current = locked(&self.deadline);
        if current.is_none_or(|c| c.at < deadline.at) {
            *current = Some(deadline);
        }
    }

    /// What stops this instance's work from elsewhere, for work done away
    /// from it (sampling on other threads).
    pub fn cancel_token(&self) -> Option<Cancel> {
        self.cancel.clone()
    }

    /// Stops its work when `cancel` is cancelled.
    pub fn with_cancel(mut self, cancel: Option<Cancel>) -> Self {
        self.cancel = cancel;
        self
    }

    /// `Err(Timeout)` once the deadline has passed, or the work was cancelled.
    pub fn check_clock(&self) -> Result<(), Box<EvalError>> {
        self.past(self.deadline())
    }

    /// `Err(Timeout)` once `deadline` has passed, or the work was cancelled.
    pub fn past(&self, deadline: Option<Deadline>) -> Result<(), Box<EvalError>> {
        if self.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
            return Err(Box::new(EvalError::Timeout {
                limit: "cancelled".to_string(),
                sizes: self.sizes.to_string(),
                slow: None,
            }));
        }
        match deadline {
            Some(d) if std::time::Instant::now() >= d.at => Err(Box::new(EvalError::Timeout {
                limit: format!("{} s", format_value(d.limit.as_secs_f64())),
                sizes: self.sizes.to_string(),
                slow: None,
            })),
            _ => Ok(()),
        }
    }

    pub fn tensor_grid(&self, t: TensorId) -> &Grid {
        &self.tensor_grids[t.0]
    }

    pub fn def_grid(&self, d: DefId) -> &Grid {
        &self.def_grids[d.0]
    }

    pub fn text_of(&self, span: Span) -> &str {
        self.source.text().get(span.start..span.end).unwrap_or("?")
    }

    /// The spec's text, for attaching to diagnostics.
    pub fn program_source(&self) -> miette::NamedSource<crate::source::SpecText> {
        self.source.named()
    }

    fn evaluate_hypers(&self) -> Result<Vec<f64>, Box<EvalError>> {
        let mut values = Vec::with_capacity(self.program.hypers.len());
        for hyper in &self.program.hypers {
            let evaluation = Evaluation::<f64> {
                instance: self,
                tensors: vec![],
                defs: vec![],
                hypers: &values,
                kinks: KinkLog::default(),
                partial: std::sync::Mutex::new(vec![]),
            };
            let v = evaluation.node(&hyper.value, &mut Frame::new(&[], 0))?;
            // Reported where it arises, not where the hyper is later read.
            if !v.is_finite() {
                return Err(Box::new(EvalError::NonFinite {
                    expression: self.text_of(hyper.value.span).to_string(),
                    value: format_value(v),
                    at: self.sizes.to_string(),
                    span: hyper.value.span.into(),
                }));
            }
            values.push(v);
        }
        Ok(values)
    }

    /// A constant expression's value at this instance's sizes and hypers: a
    /// drawn input's distribution parameter.
    pub fn constant_value(&self, node: &Node) -> Result<f64, Box<EvalError>> {
        self.evaluation::<f64>(&[])
            .node(node, &mut Frame::new(&[], 0))
    }

    /// A fresh evaluation over the given tensor values (indexed by [`TensorId`]).
    pub fn evaluation<'a, T: Scalar>(&'a self, tensors: &'a [ArrayD<T>]) -> Evaluation<'a, T> {
        Evaluation {
            instance: self,
            tensors: row_major(tensors),
            defs: self
                .program
                .defs
                .iter()
                .map(|_| DefState::Pending)
                .collect(),
            hypers: &self.hypers,
            kinks: KinkLog::default(),
            partial: std::sync::Mutex::new(vec![]),
        }
    }
}

/// Each tensor's values as a row-major slice (empty for one not laid out so).
fn row_major<T>(tensors: &[ArrayD<T>]) -> Vec<&[T]> {
    tensors
        .iter()
        .map(|t| t.as_slice_memory_order().unwrap_or(&[]))
        .collect()
}

fn feeds_output(program: &Program) -> Vec<bool> {
    let mut feeds = vec![false; program.defs.len()];
    if let Some(f) = program.output.and_then(|o| feeds.get_mut(o.def.0)) {
        *f = true;
    }
    // Definitions read earlier ones, so one backward sweep settles it, but
    // for a step group's members, which read one another: sweeps until
    // nothing changes.
    loop {
        let before = feeds.clone();
        for k in (0..program.defs.len()).rev() {
            if !feeds[k] {
                continue;
            }
            crate::analysis::visit_body(&program.defs[k].body, &mut |node| {
                if let NodeKind::Def { id, .. } = &node.node
                    && let Some(f) = feeds.get_mut(id.0)
                {
                    *f = true;
                }
            });
        }
        if feeds == before {
            return feeds;
        }
    }
}

#[derive(Clone)]
enum DefState<T> {
    Pending,
    /// Row-major values over the definition's grid.
    Ready(Vec<T>),
    Failed(Box<EvalError>),
}

/// A body's value at every point of a grid ([`Evaluation::body_everywhere`]),
/// row-major: one value per point, NaN where the body failed, and the
/// failures apart, by point in order. A layer's million values are then
/// held once, not once as results and again as the values they held.
#[derive(Debug)]
pub struct Everywhere<T> {
    pub values: Vec<T>,
    /// (point, why), in the order of the points.
    pub errors: Vec<(usize, Box<EvalError>)>,
}

impl<T: Copy> Everywhere<T> {
    /// Each point's value or failure, in order.
    #[cfg(test)]
    pub fn into_results(self) -> Vec<Result<T, Box<EvalError>>> {
        let mut results: Vec<Result<T, Box<EvalError>>> = self.values.into_iter().map(Ok).collect();
        for (k, e) in self.errors {
            if let Some(slot) = results.get_mut(k) {
                *slot = Err(e);
            }
        }
        results
    }
}

/// Index-variable values at the point being evaluated, with their names.
#[derive(Clone)]
pub struct Frame<'n> {
    names: &'n [String],
    env: Vec<i64>,
    /// Terms of sums evaluated in this frame, nested ones included, for
    /// looking at the clock ([`Frame::count_term`]).
    terms: u32,
}

impl<'n> Frame<'n> {
    pub fn new(names: &'n [String], slots: usize) -> Self {
        Self {
            names,
            env: vec![UNBOUND; slots],
            terms: 0,
        }
    }

    /// Counts one term of a sum: true once in [`CLOCK_TERMS`] terms of all
    /// the sums evaluated in this frame. Nested sums of a few terms each
    /// (three of 150: 3.4 million terms an element) look at the clock as
    /// often as one long sum does.
    fn count_term(&mut self) -> bool {
        self.count_terms(1)
    }

    /// Counts `n` terms at once: true where one of them is a term
    /// [`Frame::count_term`] would have looked at the clock on (the count
    /// reaches a multiple of [`CLOCK_TERMS`], which 2³² is one of).
    fn count_terms(&mut self, n: u32) -> bool {
        let before = self.terms;
        self.terms = before.wrapping_add(n);
        before / CLOCK_TERMS != self.terms / CLOCK_TERMS
    }

    /// `j = 2, N = 8`: the point and the sizes, in the spec's terms.
    pub fn describe(&self, sizes: &Sizes) -> String {
        let mut parts: Vec<String> = self
            .names
            .iter()
            .zip(&self.env)
            .filter(|(_, v)| **v != UNBOUND)
            .map(|(n, v)| format!("{n} = {v}"))
            .collect();
        parts.extend(sizes.named().map(|(n, v)| format!("{n} = {v}")));
        if parts.is_empty() {
            "the only point".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// The value of every slot (unbound ones are `i64::MIN`).
    pub fn env(&self) -> &[i64] {
        &self.env
    }

    pub fn set_point(&mut self, point: &[i64]) {
        for (slot, &p) in self.env.iter_mut().zip(point) {
            *slot = p;
        }
    }
}

/// One evaluation of a program's definitions over given tensor values.
pub struct Evaluation<'a, T> {
    instance: &'a Instance<'a>,
    /// Tensor values as row-major slices: read on every access, so the
    /// layout is resolved once here rather than per element.
    tensors: Vec<&'a [T]>,
    defs: Vec<DefState<T>>,
    hypers: &'a [f64],
    /// Points of non-differentiability met so far (see [`Evaluation::kinks`]).
    kinks: KinkLog,
    /// The recurrent definitions being computed (a step group's members,
    /// or one let that reads itself) and their elements so far, which
    /// their bodies read (behind a lock only so that an evaluation stays
    /// shareable between threads; it is never contended).
    partial: std::sync::Mutex<Vec<(DefId, Vec<T>)>>,
}

/// The kinks an evaluation meets, and which branch to take at each.
#[derive(Default)]
struct KinkLog {
    met: AtomicU32,
    branches: AtomicU32,
    policy: BranchPolicy,
    /// Under [`BranchPolicy::FollowTangents`]: what happened at each branch point.
    record: std::sync::Mutex<Vec<BranchRecord>>,
}

/// Adds one to a count that stops at its largest value; the count before.
/// Atomic, so that claims may be evaluated on several threads at once.
fn saturating_increment(count: &AtomicU32) -> u32 {
    count
        .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(1)))
        .unwrap_or_else(|n| n)
}

/// Which branch an evaluation takes at a branch point (a kink with two
/// branches of equal value: relu and abs at 0, a tie in `max` or `min`).
#[derive(Clone, Debug, Default)]
pub enum BranchPolicy {
    /// The scalar type's own choice, as plain evaluation makes it.
    #[default]
    Default,
    /// The other branch at the branch points marked `true`, by their
    /// number in evaluation order.
    Flips(std::sync::Arc<[bool]>),
    /// The branch L takes a small step along the first tangent direction
    /// (ties broken by the second): the branch of a point near the kink.
    /// The choices are recorded.
    FollowTangents,
}

/// At one branch point under [`BranchPolicy::FollowTangents`]: whether the
/// other branch was taken, and how much faster it grows than the first
/// along the first tangent direction, for a maximum (slower, for a
/// minimum): positive where the step takes the other branch, negative
/// where it keeps the first, 0 where the direction does not move the kink.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BranchRecord {
    pub other: bool,
    pub lean: f64,
}

/// How many kinks an evaluation met.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KinkCount {
    /// Every point of non-differentiability.
    pub met: u32,
    /// Those with two branches of equal value that an evaluation can be
    /// told to swap (relu and abs at 0, ties in `max` and `min`): numbered
    /// in evaluation order, which the values fix.
    pub branches: u32,
}

impl<'a, T: Scalar> Evaluation<'a, T> {
    /// `Err(Timeout)` once the time limit has passed; over a recording
    /// type, `Err(RecordingTooLarge)` once its recording is void: the rest
    /// of the evaluation, however long, would record nothing.
    fn check_clock(&self) -> Result<(), Box<EvalError>> {
        self.instance.check_clock()?;
        if T::recording_overflowed() {
            return Err(reverse::recording_too_large(
                self.instance.operation_limit(),
            ));
        }
        Ok(())
    }

    /// How many times this evaluation met a point where the computation is
    /// not differentiable: relu or abs at 0, sqrt at 0, a tie in `max`/`min`,
    /// or a value-dependent comparison at equality. There the derivative
    /// autodiff gives is one of several valid ones: the one-sided
    /// derivatives from each side bound the set a claim may choose from.
    pub fn kinks(&self) -> KinkCount {
        KinkCount {
            met: self.kinks.met.load(Relaxed),
            branches: self.kinks.branches.load(Relaxed),
        }
    }

    /// This evaluation, choosing branches at branch points by `policy`.
    pub fn with_branches(mut self, policy: BranchPolicy) -> Self {
        self.kinks.policy = policy;
        self
    }

    /// What [`BranchPolicy::FollowTangents`] chose, branch point by branch point.
    pub fn branch_records(&self) -> Vec<BranchRecord> {
        locked(&self.kinks.record).clone()
    }

    fn kink(&self) {
        saturating_increment(&self.kinks.met);
    }

    /// Meets a branch point whose branches `first` (the default) and
    /// `other` have the same value: whether to take `other`. `max_like`:
    /// the point is a maximum of its branches (relu, abs, max), so a step
    /// along a direction takes the branch that grows faster along it.
    fn branch(&self, first: [f64; 2], other: [f64; 2], max_like: bool) -> bool {
        self.kink();
        let i = saturating_increment(&self.kinks.branches);
        match &self.kinks.policy {
            BranchPolicy::Default => false,
            BranchPolicy::Flips(flips) => usize::try_from(i)
                .ok()
                .and_then(|i| flips.get(i).copied())
                .unwrap_or(false),
            BranchPolicy::FollowTangents => {
                let order = other
                    .partial_cmp(&first)
                    .unwrap_or(std::cmp::Ordering::Equal);
                let take = if max_like {
                    order.is_gt()
                } else {
                    order.is_lt()
                };
                let lean = other[0] - first[0];
                locked(&self.kinks.record).push(BranchRecord {
                    other: take,
                    lean: if max_like { lean } else { -lean },
                });
                take
            }
        }
    }

    /// The scalar L: the loss, or `sum(i) g[i] * y[i]` for a layer.
    pub fn loss(&mut self) -> Result<T, Box<EvalError>> {
        self.compute_defs(true)?;
        let Some(output) = self.instance.program.output else {
            return Err(Box::new(EvalError::Internal {
                what: "L was asked of a spec with no layer or loss".to_string(),
            }));
        };
        let y = self.def_values(output.def)?;
        match output.incoming {
            None => Ok(y.iter().next().copied().unwrap_or_else(T::zero)),
            Some(g) => {
                let g = self.tensors.get(g.0).copied().unwrap_or(&[]);
                let mut total = Cascade::default();
                for (gi, yi) in g.iter().zip(y) {
                    total.push(*gi * *yi, |a, b| Ok::<T, ()>(a + b)).ok();
                }
                Ok(total
                    .finish(|a, b| Ok::<T, ()>(a + b))
                    .ok()
                    .flatten()
                    .unwrap_or_else(T::zero))
            }
        }
    }

    /// L as [`Evaluation::loss`] gives it, bit for bit, without keeping the
    /// layer's output: each element is multiplied by its `g` and summed as
    /// it is computed, a block at a time, in the same order. A recording or
    /// a dual-number pass of a large layer would otherwise hold the output
    /// beside everything else it holds. The output stays uncomputed here
    /// (a later read computes it). A spec with a loss, or whose output reads
    /// itself, takes [`Evaluation::loss`].
    pub fn loss_alone(&mut self) -> Result<T, Box<EvalError>> {
        let program = self.instance.program;
        let streamed = program.output.and_then(|output| {
            let g = output.incoming?;
            let def = program.defs.get(output.def.0)?;
            (def.recurrence.is_none() && def.step_group.is_none()).then_some((output.def, def, g))
        });
        let Some((out, def, g)) =
            streamed.filter(|(out, ..)| matches!(self.defs.get(out.0), Some(DefState::Pending)))
        else {
            return self.loss();
        };
        self.compute_defs_but(true, Some(out))?;
        let grid = &self.instance.def_grids[out.0];
        let len = usize::try_from(grid.len().unwrap_or(0)).unwrap_or(0);
        let g = self.tensors.get(g.0).copied().unwrap_or(&[]);
        let add = |a: T, b: T| Ok::<T, ()>(a + b);
        let mut total = Cascade::default();
        let mut push = |start: usize, y: Vec<T>| {
            let g = g.get(start..).unwrap_or(&[]);
            for (gi, yi) in g.iter().zip(y) {
                total.push(*gi * yi, add).ok();
            }
        };
        // The blocks `compute_def_in_chunks` computes, a wave of them on
        // the cores at a time; else one by one.
        let wave = if self.shares_work() && len >= PARALLEL_ELEMENTS {
            rayon::current_num_threads().saturating_mul(2).max(1)
        } else {
            1
        };
        let mut start = 0;
        while start < len {
            use rayon::prelude::*;
            let starts: Vec<usize> = (0..wave)
                .map(|b| start + b * PARALLEL_ELEMENTS)
                .take_while(|&s| s < len)
                .collect();
            let block = |s: usize| {
                let end = (s + PARALLEL_ELEMENTS).min(len);
                self.def_elements(def, grid, s, Some(end))
            };
            let blocks: Vec<Result<Vec<T>, Box<EvalError>>> = if starts.len() > 1 {
                starts.par_iter().map(|&s| block(s)).collect()
            } else {
                starts.iter().map(|&s| block(s)).collect()
            };
            for (&s, y) in starts.iter().zip(blocks) {
                push(s, y?);
            }
            start = starts.last().map_or(len, |&s| s + PARALLEL_ELEMENTS);
        }
        Ok(total.finish(add).ok().flatten().unwrap_or_else(T::zero))
    }

    /// Computes the definitions in order: only those the output needs when
    /// `output_only`, else all (failures of claim-only ones are kept, not raised).
    pub fn compute_defs(&mut self, output_only: bool) -> Result<(), Box<EvalError>> {
        self.compute_defs_but(output_only, None)
    }

    /// [`Evaluation::compute_defs`], leaving `skipped` uncomputed.
    fn compute_defs_but(
        &mut self,
        output_only: bool,
        skipped: Option<DefId>,
    ) -> Result<(), Box<EvalError>> {
        let program = self.instance.program;
        for DefId(k) in program.computation_order() {
            let def = &program.defs[k];
            if !matches!(self.defs[k], DefState::Pending) || skipped == Some(DefId(k)) {
                continue;
            }
            if let Some(group) = def.step_group.and_then(|g| program.step_groups.get(g)) {
                if group.members.last() == Some(&DefId(k)) {
                    self.compute_group(group, output_only)?;
                }
                continue;
            }
            let feeds = self.instance.feeds_output[k];
            if (output_only && !feeds) || def.local_to.is_some() {
                continue;
            }
            let result = self.compute_def(DefId(k), def, &self.instance.def_grids[k]);
            match result {
                Ok(values) => self.defs[k] = DefState::Ready(values),
                Err(e) if feeds => return Err(e),
                Err(e) => self.defs[k] = DefState::Failed(e),
            }
        }
        Ok(())
    }

    /// A step group's members: those the output reads first, their error
    /// raised; then, unless only the output is wanted, the others, whose
    /// failures are kept for the claims that read them (as any let's).
    fn compute_group(
        &mut self,
        group: &StepGroup,
        output_only: bool,
    ) -> Result<(), Box<EvalError>> {
        let feeds = |m: &DefId| {
            self.instance
                .feeds_output
                .get(m.0)
                .copied()
                .unwrap_or(false)
        };
        // Closed under reads, as what the output reads is: a group of its own.
        let feeding: Vec<DefId> = group.members.iter().copied().filter(feeds).collect();
        if !feeding.is_empty() {
            let values = self.compute_steps(&feeding, group.order)?;
            for (m, v) in feeding.iter().zip(values) {
                self.defs[m.0] = DefState::Ready(v);
            }
        }
        if output_only || feeding.len() == group.members.len() {
            return Ok(());
        }
        match self.compute_steps(&group.members, group.order) {
            Ok(values) => {
                for (m, v) in group.members.iter().zip(values) {
                    if !feeding.contains(m) {
                        self.defs[m.0] = DefState::Ready(v);
                    }
                }
            }
            // Each member with what it reads, so that one failing member
            // fails only those that read it.
            Err(_) => {
                for m in group.members.iter().filter(|m| !feeding.contains(m)) {
                    let closure = self.read_closure(*m, &group.members);
                    let state = match self.compute_steps(&closure, group.order) {
                        Ok(values) => closure
                            .iter()
                            .zip(values)
                            .find(|(d, _)| *d == m)
                            .map_or(DefState::Pending, |(_, v)| DefState::Ready(v)),
                        Err(e) => DefState::Failed(e),
                    };
                    self.defs[m.0] = state;
                }
            }
        }
        Ok(())
    }

    /// `member` and the members of its group it reads, directly or not, in
    /// the group's order.
    fn read_closure(&self, member: DefId, members: &[DefId]) -> Vec<DefId> {
        let defs = &self.instance.program.defs;
        let mut inside = vec![member];
        let mut k = 0;
        while let Some(&d) = inside.get(k) {
            crate::analysis::visit_body(&defs[d.0].body, &mut |n| {
                if let NodeKind::Def { id, .. } = &n.node
                    && members.contains(id)
                    && !inside.contains(id)
                {
                    inside.push(*id);
                }
            });
            k += 1;
        }
        members
            .iter()
            .copied()
            .filter(|m| inside.contains(m))
            .collect()
    }

    /// An element computed already of the recurrent definition `id` being
    /// computed: analysis lets it read only elements before its own.
    fn own_element(&self, id: DefId, offset: usize) -> Option<T> {
        let partial = self.partial.lock().ok()?;
        partial
            .iter()
            .find(|(d, _)| *d == id)
            .and_then(|(_, values)| values.get(offset).copied())
    }

    fn compute_def(&self, id: DefId, def: &Def, grid: &Grid) -> Result<Vec<T>, Box<EvalError>> {
        if let Some(order) = def.recurrence {
            let mut values = self.compute_steps(&[id], order)?;
            return values.pop().ok_or_else(|| {
                Box::new(EvalError::Internal {
                    what: "a recurrence computed nothing".to_string(),
                })
            });
        }
        let len = usize::try_from(grid.len().unwrap_or(0)).unwrap_or(0);
        if self.shares_work() && len >= PARALLEL_ELEMENTS {
            return self.compute_def_in_chunks(def, grid, len);
        }
        self.def_elements(def, grid, 0, None)
    }

    /// The elements of a definition that does not read itself, row-major
    /// from `start` up to `end` (else to the grid's end).
    fn def_elements(
        &self,
        def: &Def,
        grid: &Grid,
        start: usize,
        end: Option<usize>,
    ) -> Result<Vec<T>, Box<EvalError>> {
        let mut frame = Frame::new(&def.var_names, def.slots);
        let len = usize::try_from(grid.len().unwrap_or(0)).unwrap_or(0);
        let end = end.unwrap_or(len).min(len);
        let mut values = Vec::with_capacity(end.saturating_sub(start));
        // The elements a column per node where the block evaluation covers
        // the body, as for a claim's points; an element it leaves unsettled
        // is walked. Not for a recording, whose tape is made in the order
        // the tree walk takes, nor under a branch policy that numbers the
        // branch points in that order ([`Evaluation::shares_work`]).
        let blockwise =
            self.shares_work() && columns::covers(&def.body, def.slots, self.instance.program);
        let mut block: Option<columns::Settled<T>> = None;
        let mut points = grid.points_from(start);
        let mut k = start;
        while let Some(point) = points.next_point() {
            if k >= end {
                break;
            }
            if k.is_multiple_of(CLOCK_STRIDE) {
                self.check_clock()?;
            }
            let i = (k - start) % PARALLEL_ELEMENTS;
            if blockwise && i == 0 {
                let n = (end - k).min(PARALLEL_ELEMENTS);
                let points = columns::Block::of_grid(grid, k, n, def.slots);
                block = Some(self.body_settled(&def.body, &points));
            }
            k += 1;
            frame.set_point(point);
            let v = match block.as_ref().and_then(|b| b.get(i)) {
                Some(v) => v,
                None => self.body(&def.body, &mut frame)?,
            };
            if !v.is_finite_value() {
                return Err(self.non_finite(def.body_span(), v.real(), &frame));
            }
            values.push(v);
        }
        Ok(values)
    }

    /// Whether this evaluation may share its work between threads: over a
    /// number type that allows it ([`Scalar::IN_PARALLEL`]), and where no
    /// branch taken at a kink is recorded in order.
    fn shares_work(&self) -> bool {
        T::IN_PARALLEL && matches!(self.kinks.policy, BranchPolicy::Default)
    }

    /// [`Evaluation::compute_def`] of a definition that does not read
    /// itself, its elements in chunks on several threads: each element is
    /// computed as alone, so the values are the same; the error is the
    /// first element's in row-major order that fails, as one by one.
    fn compute_def_in_chunks(
        &self,
        def: &Def,
        grid: &Grid,
        len: usize,
    ) -> Result<Vec<T>, Box<EvalError>> {
        use rayon::prelude::*;
        // Each chunk is written in place: the definition is held once.
        let mut values = vec![T::zero(); len];
        let failed: Vec<Box<EvalError>> = values
            .par_chunks_mut(PARALLEL_ELEMENTS)
            .enumerate()
            .filter_map(|(c, out)| {
                let start = c * PARALLEL_ELEMENTS;
                match self.def_elements(def, grid, start, Some(start + out.len())) {
                    Ok(chunk) => {
                        for (slot, v) in out.iter_mut().zip(chunk) {
                            *slot = v;
                        }
                        None
                    }
                    Err(e) => Some(e),
                }
            })
            .collect();
        match failed.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(values),
        }
    }

    /// Recurrent definitions, computed one step of their first axis at a
    /// time (first to last, or last to first): at each step every member in
    /// order, its elements of that step in row-major order (or reversed),
    /// each stored in `partial` before the next is computed (analysis lets
    /// them read only those). One let that reads itself is a group of one.
    fn compute_steps(
        &self,
        members: &[DefId],
        order: RecurrenceOrder,
    ) -> Result<Vec<Vec<T>>, Box<EvalError>> {
        let internal = |what: &str| {
            Box::new(EvalError::Internal {
                what: what.to_string(),
            })
        };
        let lock = || {
            self.partial
                .lock()
                .map_err(|_| internal("a recurrence's elements were poisoned"))
        };
        let program = self.instance.program;
        // Each member's grid, and its elements per step of the first axis.
        let mut layouts = vec![];
        for m in members {
            let grid = &self.instance.def_grids[m.0];
            let len = usize::try_from(grid.len().unwrap_or(0)).unwrap_or(0);
            let &(lo, hi) = grid
                .axes()
                .first()
                .ok_or_else(|| internal("a recurrence without axes"))?;
            let steps = usize::try_from(hi - lo + 1).unwrap_or(0);
            let per_step = len.checked_div(steps).unwrap_or(0);
            layouts.push((grid, lo, hi, per_step));
        }
        let first = layouts.iter().map(|l| l.1).min().unwrap_or(1);
        let last = layouts.iter().map(|l| l.2).max().unwrap_or(0);
        {
            let mut partial = lock()?;
            for (m, (grid, ..)) in members.iter().zip(&layouts) {
                let len = usize::try_from(grid.len().unwrap_or(0)).unwrap_or(0);
                partial.push((*m, vec![T::zero(); len]));
            }
        }
        let mut frames: Vec<Frame<'_>> = members
            .iter()
            .map(|m| {
                let def = &program.defs[m.0];
                Frame::new(&def.var_names, def.slots)
            })
            .collect();
        let run = |m: DefId, frame: &mut Frame<'_>, grid: &Grid, k: usize| {
            if k.is_multiple_of(CLOCK_STRIDE) {
                self.check_clock()?;
            }
            let def = &program.defs[m.0];
            frame.set_point(&grid.point(k));
            let v = self.body(&def.body, frame)?;
            if !v.is_finite_value() {
                return Err(self.non_finite(def.body_span(), v.real(), frame));
            }
            let mut partial = lock()?;
            let slot = partial
                .iter_mut()
                .find(|(d, _)| *d == m)
                .and_then(|(_, values)| values.get_mut(k))
                .ok_or_else(|| internal("a recurrence's element outside its grid"))?;
            *slot = v;
            Ok::<(), Box<EvalError>>(())
        };
        let ascending = order == RecurrenceOrder::Ascending;
        let mut result = Ok(());
        'steps: for step in 0..=(last - first).max(-1) {
            let t = if ascending { first + step } else { last - step };
            for ((m, frame), &(grid, lo, hi, per_step)) in
                members.iter().zip(&mut frames).zip(&layouts)
            {
                if t < lo || t > hi {
                    continue;
                }
                let start = usize::try_from(t - lo).unwrap_or(0) * per_step;
                let block = start..start + per_step;
                let outcome = if ascending {
                    block.into_iter().try_for_each(|k| run(*m, frame, grid, k))
                } else {
                    block.rev().try_for_each(|k| run(*m, frame, grid, k))
                };
                if outcome.is_err() {
                    result = outcome;
                    break 'steps;
                }
            }
        }
        // This computation's entries only, in the members' order.
        let mut partial = lock()?;
        let mut values = vec![];
        for m in members {
            let at = partial.iter().position(|(d, _)| d == m);
            values.push(at.map(|k| partial.swap_remove(k).1).unwrap_or_default());
        }
        drop(partial);
        result.map(|()| values)
    }

    /// Computes one definition now, replacing any earlier values: an update
    /// rule's local `let`, at its place in a step.
    pub fn compute_local(&mut self, d: DefId) -> Result<(), Box<EvalError>> {
        let program = self.instance.program;
        let def = &program.defs[d.0];
        // A step group is computed whole, at its last member (the order of
        // `Program::computation_order`).
        if let Some(group) = def.step_group.and_then(|g| program.step_groups.get(g)) {
            if group.members.last() == Some(&d) {
                for m in &group.members {
                    self.defs[m.0] = DefState::Pending;
                }
                self.compute_group(group, false)?;
            }
            return Ok(());
        }
        let values = self.compute_def(d, def, &self.instance.def_grids[d.0])?;
        self.defs[d.0] = DefState::Ready(values);
        Ok(())
    }

    /// Takes a definition's values computed by an earlier evaluation.
    pub fn provide(&mut self, d: DefId, values: Vec<T>) {
        if let Some(slot) = self.defs.get_mut(d.0) {
            *slot = DefState::Ready(values);
        }
    }

    /// The sizes this evaluation is at.
    pub fn sizes(&self) -> &Sizes {
        &self.instance.sizes
    }

    /// A copy over other tensor values and hypers (which must have the same
    /// shapes), keeping the definitions computed so far except those
    /// `stale` marks: they are computed anew by [`Evaluation::compute_defs`].
    pub fn rebase<'b>(
        &self,
        tensors: &'b [ArrayD<T>],
        hypers: &'b [f64],
        stale: &[bool],
    ) -> Evaluation<'b, T>
    where
        'a: 'b,
    {
        let defs = self
            .defs
            .iter()
            .enumerate()
            .map(|(k, state)| {
                if stale.get(k).copied().unwrap_or(true) {
                    DefState::Pending
                } else {
                    state.clone()
                }
            })
            .collect();
        Evaluation {
            instance: self.instance,
            tensors: row_major(tensors),
            defs,
            hypers,
            kinks: KinkLog::default(),
            partial: std::sync::Mutex::new(vec![]),
        }
    }

    /// A definition's values, row-major over its grid.
    pub fn def_values(&self, d: DefId) -> Result<&[T], Box<EvalError>> {
        match self.defs.get(d.0) {
            Some(DefState::Ready(v)) => Ok(v),
            Some(DefState::Failed(e)) => Err(e.clone()),
            _ => Err(Box::new(EvalError::NonFinite {
                expression: "a definition".to_string(),
                value: "not computed".to_string(),
                at: self.instance.sizes.to_string(),
                span: Span::default().into(),
            })),
        }
    }

    /// `body` at every point of `grid`, row-major, its index variables
    /// named `names` (the first `slots` ranging over the grid's axes).
    /// Points are independent, so they are evaluated on every core, in
    /// chunks that each keep a frame and write their values in place.
    ///
    /// Only for plain number types under the default branch policy: a
    /// recording type (`Rev`) keeps its tape per thread, and a policy that
    /// numbers branch points (`Flips`, `FollowTangents`) needs them met in
    /// evaluation order.
    pub fn body_everywhere(
        &self,
        body: &Body,
        grid: &Grid,
        names: &[String],
        slots: usize,
    ) -> Everywhere<T>
    where
        T: Send + Sync,
    {
        let blockwise = columns::covers(body, slots, self.instance.program);
        self.everywhere(body, grid, Frame::new(names, slots), blockwise)
    }

    /// [`Evaluation::body_everywhere`], its points taken a block at a
    /// time or (`blockwise` false: the tree walk alone, what the blocks
    /// must agree with) one by one.
    fn everywhere(
        &self,
        body: &Body,
        grid: &Grid,
        frame: Frame<'_>,
        blockwise: bool,
    ) -> Everywhere<T>
    where
        T: Send + Sync,
    {
        use rayon::prelude::*;
        debug_assert!(matches!(self.kinks.policy, BranchPolicy::Default));
        const CHUNK: usize = 1024;
        let n = usize::try_from(grid.len().unwrap_or(0)).unwrap_or(0);
        let mut values = vec![T::constant(f64::NAN); n];
        let slots = frame.env.len();
        let chunk_at = |(c, chunk): (usize, &mut [T])| {
            let start = c * CHUNK;
            let mut frame = frame.clone();
            let mut unsettled = vec![!blockwise; chunk.len()];
            if blockwise {
                let block = columns::Block::of_grid(grid, start, chunk.len(), slots);
                let n = block.len();
                self.body_block(body, &block, &mut chunk[..n], &mut unsettled[..n]);
            }
            self.walk_where(body, grid, start, chunk, &unsettled, &mut frame)
        };
        // One chunk: nothing to share out, the pool would run it on one
        // thread while this one waits (see `crate::eval::HAND_OVER`).
        let errors: Vec<Vec<(usize, Box<EvalError>)>> = if n > CHUNK {
            values
                .par_chunks_mut(CHUNK)
                .enumerate()
                .map(chunk_at)
                .collect()
        } else {
            values.chunks_mut(CHUNK).enumerate().map(chunk_at).collect()
        };
        Everywhere {
            values,
            errors: errors.into_iter().flatten().collect(),
        }
    }

    /// The tree walk at the points of a chunk of [`Evaluation::everywhere`]
    /// (its points from `start` on) marked in `unsettled`: their values
    /// into `chunk`, and their failures.
    fn walk_where(
        &self,
        body: &Body,
        grid: &Grid,
        start: usize,
        chunk: &mut [T],
        unsettled: &[bool],
        frame: &mut Frame<'_>,
    ) -> Vec<(usize, Box<EvalError>)> {
        let mut points = grid.points_from(start);
        let mut errors = vec![];
        for (i, (slot, &walk)) in chunk.iter_mut().zip(unsettled).enumerate() {
            let Some(point) = points.next_point() else {
                break;
            };
            if !walk {
                continue;
            }
            frame.set_point(point);
            match self.body(body, frame) {
                Ok(v) => *slot = v,
                Err(e) => {
                    *slot = T::constant(f64::NAN);
                    errors.push((start + i, e));
                }
            }
        }
        errors
    }

    /// The value of a body (expression or cases) at the frame's point.
    pub fn body(&self, body: &Body, frame: &mut Frame<'_>) -> Result<T, Box<EvalError>> {
        match body {
            Body::Expr(e) => self.node(e, frame),
            Body::Cases(cases) => self.cases(cases, frame),
        }
    }

    fn cases(&self, cases: &[Case], frame: &mut Frame<'_>) -> Result<T, Box<EvalError>> {
        let mut chosen: Option<(&Case, T)> = None;
        for case in cases {
            let holds = match &case.condition {
                Some(c) => self.cond(c, frame)?,
                None => chosen.is_none(),
            };
            if !holds {
                continue;
            }
            let value = self.node(&case.value, frame)?;
            match &chosen {
                None => chosen = Some((case, value)),
                Some((first, first_value)) => {
                    let (a, b) = (first_value.real(), value.real());
                    if cases_disagree(a, b) {
                        return Err(Box::new(EvalError::AmbiguousCases {
                            at: self.at(frame),
                            first_value: format_value(a),
                            second_value: format_value(b),
                            first: first.span.into(),
                            second: case.span.into(),
                        }));
                    }
                }
            }
        }
        match chosen {
            Some((_, v)) => Ok(v),
            None => Err(Box::new(EvalError::NoCase {
                at: self.at(frame),
                span: cases
                    .first()
                    .zip(cases.last())
                    .map_or(Span::default(), |(a, b)| a.span.to(b.span))
                    .into(),
            })),
        }
    }

    fn cond(&self, c: &Cond, frame: &mut Frame<'_>) -> Result<bool, Box<EvalError>> {
        Ok(match &c.node {
            CondKind::Compare { first, rest } => {
                let mut lhs = self.node(first, frame)?;
                let mut lhs_node = first;
                for (op, e) in rest {
                    let rhs = self.node(e, frame)?;
                    let order = lhs.order(&rhs);
                    // A comparison of values (not of indices) at equality
                    // flips under an arbitrarily small change of them.
                    if order == Some(Equal) && (self.reads_values(lhs_node) || self.reads_values(e))
                    {
                        self.kink();
                    }
                    lhs_node = e;
                    if !op.holds_for(order) {
                        return Ok(false);
                    }
                    lhs = rhs;
                }
                true
            }
            CondKind::And(a, b) => self.cond(a, frame)? && self.cond(b, frame)?,
            CondKind::Or(a, b) => self.cond(a, frame)? || self.cond(b, frame)?,
            CondKind::Not(a) => !self.cond(a, frame)?,
        })
    }

    pub fn node(&self, node: &Node, frame: &mut Frame<'_>) -> Result<T, Box<EvalError>> {
        match &node.node {
            NodeKind::Const(v) => Ok(T::constant(*v)),
            NodeKind::Pi => Ok(T::pi()),
            NodeKind::Dim(d) => Ok(T::constant(self.instance.sizes.get(*d) as f64)),
            NodeKind::Hyper(h) => Ok(T::constant(
                self.hypers.get(h.0).copied().unwrap_or(f64::NAN),
            )),
            NodeKind::Index(v) => Ok(T::constant(frame.env.get(v.0).copied().unwrap_or(0) as f64)),
            NodeKind::Tensor { id, indices } => {
                let offset = self.tensor_offset(node, *id, indices, frame)?;
                self.tensors
                    .get(id.0)
                    .and_then(|t| t.get(offset).copied())
                    .ok_or_else(|| self.missing(node, frame))
            }
            NodeKind::Def { id, indices } => {
                let offset = self.def_offset(node, *id, indices, frame)?;
                if self.instance.program.defs[id.0].recurrence.is_some()
                    && let Some(v) = self.own_element(*id, offset)
                {
                    return Ok(v);
                }
                let values = self.def_values(*id)?;
                values
                    .get(offset)
                    .copied()
                    .ok_or_else(|| self.missing(node, frame))
            }
            NodeKind::Neg(a) => Ok(-self.node(a, frame)?),
            NodeKind::Binary {
                op,
                lhs,
                rhs,
                guarded,
            } => self.binary(node, (*op, *guarded), lhs, rhs, frame),
            NodeKind::PowInt(base, k) => {
                let b = self.node(base, frame)?;
                if *k < 0 && is_zero(&b) {
                    return Err(self.domain(
                        node,
                        "power",
                        b.real(),
                        frame,
                        "a negative power of 0 is undefined",
                    ));
                }
                Ok(b.powi(*k))
            }
            NodeKind::Call { function, args } => self.call(node, *function, args, frame),
            NodeKind::Reduce {
                op,
                var,
                range,
                body,
                hoist,
            } => self.reduce(node, (*op, *hoist), *var, range, body, frame),
            NodeKind::Pick {
                var,
                index,
                at,
                body,
                ..
            } => {
                let k = self.pick_index(index, *at, frame)?;
                if let Some(slot) = frame.env.get_mut(var.0) {
                    *slot = k;
                }
                let v = self.node(body, frame);
                // Unbound again, so that a later error's point does not
                // name a pick it is not about.
                if let Some(slot) = frame.env.get_mut(var.0) {
                    *slot = UNBOUND;
                }
                v
            }
            NodeKind::Iverson(c) => Ok(if self.cond(c, frame)? {
                T::one()
            } else {
                T::zero()
            }),
            // Moments are taken by `verify::stochastic`, over tapes.
            NodeKind::Moment { .. } => Err(Box::new(EvalError::Internal {
                what: "a moment was evaluated as a plain value".to_string(),
            })),
        }
    }

    fn binary(
        &self,
        node: &Node,
        (op, guarded): (BinaryOp, bool),
        lhs: &Node,
        rhs: &Node,
        frame: &mut Frame<'_>,
    ) -> Result<T, Box<EvalError>> {
        if guarded {
            // Knuth's strong zero: a bracket that is 0 makes its whole product
            // 0, wherever it stands among the factors, so guarded accesses
            // never go out of range. The whole chain of factors is computed
            // here.
            return self.guarded_product(node, frame);
        }
        let a = self.node(lhs, frame)?;
        let b = self.node(rhs, frame)?;
        Ok(match op {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => self.quotient(node, rhs, a, b, frame)?,
            // An exponent computed from indices and sizes alone is a whole
            // number wherever it is one: a^(t-s) for a negative a, as x^k.
            BinaryOp::Pow
                if !reads_tensors(rhs)
                    && b.real().fract() == 0.0
                    && b.real().abs() < f64::from(i32::MAX) =>
            {
                #[allow(clippy::cast_possible_truncation)]
                let k = b.real() as i32;
                if k < 0 && is_zero(&a) {
                    return Err(self.domain(
                        node,
                        "power",
                        a.real(),
                        frame,
                        "a negative power of 0 is undefined",
                    ));
                }
                a.powi(k)
            }
            BinaryOp::Pow => {
                if is_non_positive(&a) {
                    return Err(self.domain(node, "power", a.real(), frame, "a real power needs a positive base; use an integer exponent for negative bases"));
                }
                (b * a.ln()).exp()
            }
        })
    }

    /// A product with guards (see [`ProductNode`]): the brackets first, left
    /// to right; where one is 0 the product is 0 and nothing else in it is
    /// evaluated, not its other factors, not its divisors.
    fn guarded_product(&self, node: &Node, frame: &mut Frame<'_>) -> Result<T, Box<EvalError>> {
        let mut holds = Ok(true);
        node.for_each_guard(&mut |guard| {
            if let (Ok(true), NodeKind::Iverson(c)) = (&holds, &guard.node) {
                holds = self.cond(c, frame);
            }
        });
        if !holds? {
            return Ok(T::zero());
        }
        Ok(self.factors(node, frame)?.unwrap_or_else(T::one))
    }

    /// A product (its chain of factors and divisors) whose guards all hold,
    /// grouped as written, each bracket left out (exactly as `[c] * x` is
    /// `x`); `None` for brackets alone.
    fn factors(&self, node: &Node, frame: &mut Frame<'_>) -> Result<Option<T>, Box<EvalError>> {
        Ok(match &node.node {
            NodeKind::Iverson(_) => None,
            NodeKind::Neg(a) => Some(-self.factors(a, frame)?.unwrap_or_else(T::one)),
            NodeKind::Binary {
                op: BinaryOp::Mul,
                lhs,
                rhs,
                ..
            } => {
                let a = self.factors(lhs, frame)?;
                let b = self.factors(rhs, frame)?;
                match (a, b) {
                    (Some(a), Some(b)) => Some(a * b),
                    (a, None) => a,
                    (None, b) => b,
                }
            }
            NodeKind::Binary {
                op: BinaryOp::Div,
                lhs,
                rhs,
                ..
            } => {
                let a = self.factors(lhs, frame)?.unwrap_or_else(T::one);
                let b = self.node(rhs, frame)?;
                Some(self.quotient(node, rhs, a, b, frame)?)
            }
            _ => Some(self.node(node, frame)?),
        })
    }

    /// `a / b` of the quotient `node` with divisor `rhs`: an error where `b` is 0.
    fn quotient(
        &self,
        node: &Node,
        rhs: &Node,
        a: T,
        b: T,
        frame: &Frame<'_>,
    ) -> Result<T, Box<EvalError>> {
        if is_zero(&b) {
            return Err(Box::new(EvalError::DivisionByZero {
                expression: self.instance.text_of(node.span).to_string(),
                at: self.at(frame),
                help: VALUE_DIVISOR_HELP.to_string(),
                span: node.span.into(),
                divisor: rhs.span.into(),
            }));
        }
        Ok(a / b)
    }

    /// Where a function's argument is a drawn input or param, the
    /// declaration that keeps it in the domain: `declare it as `param t > 0``.
    fn constraint_to_add(&self, arg: &Node, function: Function) -> Option<String> {
        let constraint = domain_constraint(function);
        let NodeKind::Tensor { id, .. } = &arg.node else {
            return None;
        };
        let tensor = self.instance.program.tensors.get(id.0)?;
        let role = match tensor.origin {
            Origin::Declared(crate::syntax::ast::TensorRole::Input) => "input",
            Origin::Declared(crate::syntax::ast::TensorRole::Param) => "param",
            _ => return None,
        };
        if !matches!(tensor.values, Values::Random { .. }) {
            return None;
        }
        let shape: Vec<String> = tensor
            .axes
            .iter()
            .map(|a| crate::analysis::show_affine(&a.hi, self.instance.program, &[]))
            .collect();
        let shape = if shape.is_empty() {
            String::new()
        } else {
            format!("[{}]", shape.join(", "))
        };
        Some(format!(
            "declare it as `{role} {}{shape}{constraint}` so that its draws stay in the domain",
            tensor.name
        ))
    }

    fn call(
        &self,
        node: &Node,
        function: Function,
        args: &[Node],
        frame: &mut Frame<'_>,
    ) -> Result<T, Box<EvalError>> {
        let x = match args.first() {
            Some(a) => self.node(a, frame)?,
            None => T::zero(),
        };
        let y = match args.get(1) {
            Some(a) => self.node(a, frame)?,
            // `min`/`max` of one argument compare it with itself; `pow` of
            // one raises it to 1.
            None if function == Function::Pow => T::one(),
            None => x,
        };
        // At a kink both branches have the same value and different slopes;
        // `at_branch_point` says where (the block evaluation asks it too).
        if at_branch_point(function, args.len(), &x, &y) {
            match function {
                // relu: 0 or x; abs: whichever sign the scalar type picks at
                // 0, or the other.
                Function::Relu if self.branch([0.0; 2], x.tangents(), true) => return Ok(x),
                Function::Abs if self.branch(x.abs().tangents(), (-x.abs()).tangents(), true) => {
                    return Ok(-x.abs());
                }
                Function::Max => {
                    return Ok(if self.branch(y.tangents(), x.tangents(), true) {
                        x
                    } else {
                        y
                    });
                }
                Function::Min => {
                    return Ok(if self.branch(x.tangents(), y.tangents(), false) {
                        y
                    } else {
                        x
                    });
                }
                // Infinite slopes (sqrt at 0, asin and acos at ±1), as at a
                // kink: the derivative is not a number. A jump (sign, floor,
                // round): no derivative there at all.
                Function::Sqrt
                | Function::Asin
                | Function::Acos
                | Function::Sign
                | Function::Floor
                | Function::Round => self.kink(),
                _ => {}
            }
        }
        apply(function, x, y).ok_or_else(|| self.outside_domain(node, function, args, x, frame))
    }

    /// The error of `function` called at `x` outside its domain.
    fn outside_domain(
        &self,
        node: &Node,
        function: Function,
        args: &[Node],
        x: T,
        frame: &Frame<'_>,
    ) -> Box<EvalError> {
        let what = domain_help(function).unwrap_or("outside its domain");
        let fix = args
            .first()
            .and_then(|a| self.constraint_to_add(a, function))
            .unwrap_or_else(|| {
                format!(
                    "constrain the values that reach it (e.g. `param s{}`)",
                    domain_constraint(function)
                )
            });
        self.domain(
            node,
            function.name(),
            x.real(),
            frame,
            &format!("{what}; {fix}"),
        )
    }

    fn reduce(
        &self,
        node: &Node,
        (op, hoist): (ReduceOp, Hoist),
        var: VarId,
        range: &VarRange,
        body: &Node,
        frame: &mut Frame<'_>,
    ) -> Result<T, Box<EvalError>> {
        let (lo, hi) = self.reduce_range(range, frame);
        let mut acc: Option<T> = None;
        // The factor every term shares, once computed (see `Hoist`).
        let mut shared: Option<T> = None;
        // A mean is its sum, divided once at the end.
        let summing = matches!(op, ReduceOp::Sum | ReduceOp::Mean);
        let mut sum: Cascade<T> = Cascade::default();
        let strided = if summing {
            self.strided_read(hoist, var, (lo, hi), body, frame)
        } else {
            None
        };
        // A strided sum takes its terms at once; else term by term.
        let by_term = match strided {
            Some(read) => {
                self.strided_sum(read, (lo, hi), &mut sum, frame)?;
                None
            }
            None => Some(lo..=hi),
        };
        // A long sum of plain terms: whole blocks on several threads.
        let by_term = match by_term {
            Some(_) if summing && hoist == Hoist::None && self.shares_work() => {
                let rest = self.sum_in_blocks(body, var, (lo, hi), &mut sum, frame)?;
                Some(rest..=hi)
            }
            terms => terms,
        };
        // A shorter one: its terms a column per node, in order.
        let by_term = match by_term {
            Some(range) if summing && hoist == Hoist::None && self.shares_work() => {
                let summed = self.sum_by_columns(body, var, &range, &mut sum, frame)?;
                (!summed).then_some(range)
            }
            terms => terms,
        };
        for k in by_term.into_iter().flatten() {
            if frame.count_term() {
                self.check_clock()?;
            }
            if let Some(slot) = frame.env.get_mut(var.0) {
                *slot = k;
            }
            let v = self.term(body, hoist, &mut shared, frame)?;
            if summing {
                sum.push(v, |a, b| Ok::<T, ()>(a + b)).ok();
                continue;
            }
            acc = Some(match (acc, op) {
                (None, _) => v,
                // Sums take the cascade above; this arm is for completeness.
                (Some(a), ReduceOp::Sum | ReduceOp::Mean) => a + v,
                (Some(a), ReduceOp::Prod) => a * v,
                (Some(a), ReduceOp::Max | ReduceOp::Min) if v.order(&a) == Some(Equal) => {
                    if self.branch(a.tangents(), v.tangents(), op == ReduceOp::Max) {
                        v
                    } else {
                        a
                    }
                }
                (Some(a), ReduceOp::Max) => {
                    if v.order(&a) == Some(Greater) {
                        v
                    } else {
                        a
                    }
                }
                (Some(a), ReduceOp::Min) => {
                    if v.order(&a) == Some(Less) {
                        v
                    } else {
                        a
                    }
                }
            });
        }
        if let Some(slot) = frame.env.get_mut(var.0) {
            *slot = UNBOUND;
        }
        if summing {
            acc = sum.finish(|a, b| Ok::<T, ()>(a + b)).ok().flatten();
        }
        match (acc, op) {
            #[allow(clippy::cast_precision_loss)]
            (Some(v), ReduceOp::Mean) => Ok(v / T::constant((hi - lo + 1) as f64)),
            (Some(v), _) => Ok(v),
            (None, ReduceOp::Sum) => Ok(T::zero()),
            (None, ReduceOp::Prod) => Ok(T::one()),
            (None, ReduceOp::Max | ReduceOp::Min | ReduceOp::Mean) => {
                Err(Box::new(EvalError::EmptyReduction {
                    op: reduce_name(op).to_string(),
                    at: self.at(frame),
                    span: node.span.into(),
                }))
            }
        }
    }

    /// The terms of a sum from `lo` in whole blocks of 2^[`BLOCK_LEVEL`],
    /// each summed on a thread of its own in a cascade and pushed into
    /// `sum` (empty so far) as its partial sum of that level: what pushing
    /// the terms one by one gives, bit for bit ([`Cascade::push_partial`]).
    /// Only a sum of several blocks is split, a few blocks per thread at a
    /// time, so that what is held, and what is computed past a failing
    /// term or the time limit, stays bounded whatever the range; the error
    /// is the first failing term's, as one by one. Returns the first term
    /// left for the caller.
    fn sum_in_blocks(
        &self,
        body: &Node,
        var: VarId,
        (lo, hi): (i64, i64),
        sum: &mut Cascade<T>,
        frame: &Frame<'_>,
    ) -> Result<i64, Box<EvalError>> {
        use rayon::prelude::*;
        let block = 1i64 << BLOCK_LEVEL;
        // In i128: a range's ends are affine in the sizes, and may be as
        // far apart as an i64 allows.
        let terms = (i128::from(hi) - i128::from(lo) + 1).max(0);
        let blocks = i64::try_from(terms / i128::from(block)).unwrap_or(i64::MAX);
        if blocks < PARALLEL_BLOCKS {
            return Ok(lo);
        }
        // The first term of block b, in i128 as the length: lo may lie far
        // below zero, and b · block past i64::MAX.
        let first_of = |b: i64| {
            i64::try_from(i128::from(lo) + i128::from(b) * i128::from(block)).unwrap_or(i64::MAX)
        };
        // Whether the block evaluation covers the terms, decided once.
        let covered = columns::covers_node(body, frame.env.len(), self.instance.program);
        let wave = i64::try_from(rayon::current_num_threads().saturating_mul(4))
            .unwrap_or(4)
            .max(1);
        let mut done = 0;
        while done < blocks {
            let upto = done.saturating_add(wave).min(blocks);
            let partials: Vec<Result<T, Box<EvalError>>> = (done..upto)
                .into_par_iter()
                .map(|b| self.block_sum(body, covered, var, first_of(b), frame))
                .collect();
            for partial in partials {
                sum.push_partial(partial?, BLOCK_LEVEL, |a, b| Ok::<T, ()>(a + b))
                    .ok();
            }
            done = upto;
        }
        Ok(first_of(blocks))
    }

    /// The terms of a sum of at least [`COLUMN_TERMS`] terms pushed onto
    /// `sum` one by one, computed a column per node
    /// ([`Evaluation::terms_block`]) a block at a time where the block
    /// evaluation covers them: the values the tree walk gives, in the same
    /// order, at a few tight loops per node instead of a walk of the tree
    /// per term (what a definition like `sum(k) w[i,k] * x[k]` cost).
    /// Where a term is unsettled the tree walk takes it, and errs as one by
    /// one. Returns whether it took the terms: not for fewer, or terms the
    /// block evaluation does not cover.
    fn sum_by_columns(
        &self,
        body: &Node,
        var: VarId,
        range: &std::ops::RangeInclusive<i64>,
        sum: &mut Cascade<T>,
        frame: &mut Frame<'_>,
    ) -> Result<bool, Box<EvalError>> {
        let (lo, hi) = (*range.start(), *range.end());
        let terms = (i128::from(hi) - i128::from(lo) + 1).max(0);
        if terms < COLUMN_TERMS
            || !columns::covers_node(body, frame.env.len(), self.instance.program)
        {
            return Ok(false);
        }
        let block = 1i64 << BLOCK_LEVEL;
        let mut from = lo;
        while from <= hi {
            let len = (hi - from).min(block - 1) + 1;
            let settled = self.terms_block(
                body,
                var,
                from,
                usize::try_from(len).unwrap_or(0),
                &frame.env,
            );
            self.push_terms(
                body,
                var,
                from..=from + (len - 1),
                Some(&settled),
                sum,
                frame,
            )?;
            match from.checked_add(len) {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(true)
    }

    /// The cascade sum of the 2^[`BLOCK_LEVEL`] terms from `from`, in a
    /// frame of its own; the clock is looked at as it starts, and as often
    /// as one by one after. `covered`: whether the block evaluation covers
    /// the term ([`columns::covers_node`]).
    fn block_sum(
        &self,
        body: &Node,
        covered: bool,
        var: VarId,
        from: i64,
        frame: &Frame<'_>,
    ) -> Result<T, Box<EvalError>> {
        self.check_clock()?;
        let mut frame = Frame {
            names: frame.names,
            env: frame.env.clone(),
            terms: 0,
        };
        let mut part: Cascade<T> = Cascade::default();
        // The terms a column per node where the block evaluation covers
        // them: a walk of the tree per term cost ten times their
        // arithmetic. A term it leaves unsettled is walked, as all were.
        let terms =
            covered.then(|| self.terms_block(body, var, from, 1 << BLOCK_LEVEL, &frame.env));
        let ks = from..from.saturating_add(1 << BLOCK_LEVEL);
        self.push_terms(body, var, ks, terms.as_ref(), &mut part, &mut frame)?;
        part.finish(|a, b| Ok::<T, ()>(a + b))
            .ok()
            .flatten()
            .ok_or_else(|| {
                Box::new(EvalError::Internal {
                    what: "a block of a sum summed to nothing".to_string(),
                })
            })
    }

    /// Terms `ks` of a sum pushed onto `sum` in order: the `j`-th as
    /// `settled` gives its `j`-th value, else walked (where the block
    /// evaluation left it unsettled, or made no block), erring as one by
    /// one; the clock is looked at as one by one.
    fn push_terms(
        &self,
        body: &Node,
        var: VarId,
        ks: impl Iterator<Item = i64>,
        settled: Option<&columns::Settled<T>>,
        sum: &mut Cascade<T>,
        frame: &mut Frame<'_>,
    ) -> Result<(), Box<EvalError>> {
        for (j, k) in ks.enumerate() {
            if frame.count_term() {
                self.check_clock()?;
            }
            let v = match settled.and_then(|t| t.get(j)) {
                Some(v) => v,
                None => {
                    if let Some(slot) = frame.env.get_mut(var.0) {
                        *slot = k;
                    }
                    self.node(body, frame)?
                }
            };
            sum.push(v, |a, b| Ok::<T, ()>(a + b)).ok();
        }
        Ok(())
    }

    /// A sum's terms `x[A(k)] * c` (or `c * x[A(k)]`) with `c` the factor
    /// hoisted out of the terms ([`Hoist`]): where the read stays in its
    /// tensor at both ends of the range, its offset is affine in k (every
    /// index is) and stays in range in between. `None` where that does not
    /// hold, and the terms are evaluated one by one (which finds the read
    /// that fails).
    fn strided_read<'n>(
        &self,
        hoist: Hoist,
        var: VarId,
        (lo, hi): (i64, i64),
        body: &'n Node,
        frame: &mut Frame<'_>,
    ) -> Option<StridedRead<'n, T>>
    where
        'a: 'n,
    {
        let NodeKind::Binary { lhs, rhs, .. } = &body.node else {
            return None;
        };
        let (read, shared) = match hoist {
            Hoist::None => return None,
            Hoist::Lhs => (rhs, lhs),
            Hoist::Rhs => (lhs, rhs),
        };
        let NodeKind::Tensor { id, indices } = &read.node else {
            return None;
        };
        if lo > hi {
            return None;
        }
        let mut offset_at = |k: i64| {
            *frame.env.get_mut(var.0)? = k;
            self.tensor_offset(read, *id, indices, frame).ok()
        };
        let (first, last) = (offset_at(lo)?, offset_at(hi)?);
        let steps = (hi - lo).max(1);
        let change = i64::try_from(last).ok()? - i64::try_from(first).ok()?;
        Some(StridedRead {
            read,
            values: self.tensors.get(id.0)?,
            first,
            stride: change / steps,
            shared_first: hoist == Hoist::Lhs,
            shared,
            var,
        })
    }

    /// The terms of a [`StridedRead`] sum pushed onto `sum`: the same
    /// products of the same values, in the same order, as the terms one by
    /// one; the shared factor computed at the first term, as there.
    fn strided_sum(
        &self,
        read: StridedRead<'_, T>,
        (lo, hi): (i64, i64),
        sum: &mut Cascade<T>,
        frame: &mut Frame<'_>,
    ) -> Result<(), Box<EvalError>> {
        if let Some(slot) = frame.env.get_mut(read.var.0) {
            *slot = lo;
        }
        let first_value = self.strided_value(&read, 0, frame)?;
        let shared = self.node(read.shared, frame)?;
        let term = |x: T| {
            if read.shared_first {
                shared * x
            } else {
                x * shared
            }
        };
        let add = |a: T, b: T| Ok::<T, ()>(a + b);
        // Term `j` of the sum (from 0), looking at the clock as every term does.
        let term_at = |j: i64, frame: &mut Frame<'_>| -> Result<T, Box<EvalError>> {
            if frame.count_term() {
                self.check_clock()?;
            }
            Ok(term(if j == 0 {
                first_value
            } else {
                self.strided_value(&read, j, frame)?
            }))
        };
        // Whole groups of 8 terms from the first: each is the partial sum
        // of level 3 that pushing its terms one by one would make, by the
        // same additions, pushed at once (see `Cascade::push_partial`).
        let terms = hi.saturating_sub(lo).saturating_add(1);
        let mut step = 0i64;
        while step + 8 <= terms {
            // Read straight from the tensor where the group lies in it (it
            // does, between two offsets the access found): a long sum's
            // terms cost their arithmetic, not a call each.
            let t = match Self::strided_group(&read, step) {
                Some(values) => {
                    if frame.count_terms(8) {
                        self.check_clock()?;
                    }
                    values.map(term)
                }
                None => {
                    let mut t = [first_value; 8];
                    for (j, slot) in (step..).zip(t.iter_mut()) {
                        *slot = term_at(j, frame)?;
                    }
                    t
                }
            };
            let group = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
            sum.push_partial(group, 3, add).ok();
            step += 8;
        }
        for j in step..terms {
            sum.push(term_at(j, frame)?, add).ok();
        }
        Ok(())
    }

    /// The reads of a [`StridedRead`] at terms `step..step + 8` of its sum,
    /// if they all lie in the tensor.
    fn strided_group(read: &StridedRead<'_, T>, step: i64) -> Option<[T; 8]> {
        if read.stride == 1 {
            let from = read.offset(step)?;
            let run: &[T; 8] = read
                .values
                .get(from..from.checked_add(8)?)?
                .try_into()
                .ok()?;
            return Some(*run);
        }
        let mut group = [read.value(step)?; 8];
        for (j, slot) in (step.checked_add(1)?..).zip(&mut group[1..]) {
            *slot = read.value(j)?;
        }
        Some(group)
    }

    /// The read of a [`StridedRead`] at term `step` of its sum.
    fn strided_value(
        &self,
        read: &StridedRead<'_, T>,
        step: i64,
        frame: &Frame<'_>,
    ) -> Result<T, Box<EvalError>> {
        read.value(step)
            .ok_or_else(|| self.missing(read.read, frame))
    }

    /// Where the access `node` of tensor `id` reads, row-major.
    fn tensor_offset(
        &self,
        node: &Node,
        id: TensorId,
        indices: &[Affine],
        frame: &Frame<'_>,
    ) -> Result<usize, Box<EvalError>> {
        let tensor = &self.instance.program.tensors[id.0];
        let target = Target {
            name: &tensor.name,
            declaration: tensor.span,
            axes: &tensor.axes,
        };
        self.offset(
            node,
            &self.instance.tensor_grids[id.0],
            indices,
            frame,
            target,
        )
    }

    /// Where the access `node` of definition `id` reads, row-major.
    fn def_offset(
        &self,
        node: &Node,
        id: DefId,
        indices: &[Affine],
        frame: &Frame<'_>,
    ) -> Result<usize, Box<EvalError>> {
        let def = &self.instance.program.defs[id.0];
        let target = Target {
            name: &def.name,
            declaration: def.name_span,
            axes: &def.axes,
        };
        self.offset(node, &self.instance.def_grids[id.0], indices, frame, target)
    }

    /// One term of a reduction: its body, a product `a * b` evaluated as
    /// [`Evaluation::binary`] does, with the factor `hoist` names taken
    /// from `shared` after the first term.
    fn term(
        &self,
        body: &Node,
        hoist: Hoist,
        shared: &mut Option<T>,
        frame: &mut Frame<'_>,
    ) -> Result<T, Box<EvalError>> {
        // Most sums share nothing: straight to the body, on the hot path.
        let (Hoist::Lhs | Hoist::Rhs, NodeKind::Binary { lhs, rhs, .. }) = (hoist, &body.node)
        else {
            return self.node(body, frame);
        };
        let mut reuse = |factor: &Node, frame: &mut Frame<'_>| match *shared {
            Some(v) => Ok::<T, Box<EvalError>>(v),
            None => {
                let v = self.node(factor, frame)?;
                *shared = Some(v);
                Ok(v)
            }
        };
        if hoist == Hoist::Lhs {
            let a = reuse(lhs, frame)?;
            Ok(a * self.node(rhs, frame)?)
        } else {
            let a = self.node(lhs, frame)?;
            Ok(a * reuse(rhs, frame)?)
        }
    }

    /// A whole-number index's value at the frame's point. One out of its
    /// axis is caught by the access it picks for (`IndexOutOfRange`), as an
    /// overflow is, read as the smallest integer.
    pub(super) fn pick_index(
        &self,
        index: &IndexExpr,
        at: Span,
        frame: &Frame<'_>,
    ) -> Result<i64, Box<EvalError>> {
        match index.eval(self.instance.sizes.values(), &frame.env) {
            Ok(k) => Ok(k),
            Err(IndexFault::Overflow) => Ok(i64::MIN),
            Err(IndexFault::DivisionByZero) => Err(Box::new(EvalError::DivisionByZero {
                expression: self.instance.text_of(at).to_string(),
                at: self.at(frame),
                help: self.index_divisor_help(index),
                span: at.into(),
                divisor: at.into(),
            })),
        }
    }

    /// What keeps a whole-number index's divisor above 0: its sizes'
    /// smallest values, where it has sizes.
    fn index_divisor_help(&self, index: &IndexExpr) -> String {
        let dims = &self.instance.program.dims;
        if index.divisor_reads_indices() {
            return "the divisor reads an index: keep it away from 0 over the index's whole range, or guard the read with a bracket".to_string();
        }
        match index.divisor_dims().first().and_then(|d| dims.get(d.0)) {
            Some(dim) => format!(
                "the divisor is made of sizes and indices: declare the smallest size that keeps it above 0, `dim {} >= {} = {}`",
                dim.name,
                dim.minimum + 1,
                dim.default.max(dim.minimum + 1)
            ),
            None => {
                "the divisor is made of indices: keep it away from 0 over their ranges".to_string()
            }
        }
    }

    /// `lo..=hi` of a reduction variable at the frame's point: the largest
    /// lower bound to the smallest upper bound (empty where `lo > hi`).
    fn reduce_range(&self, range: &VarRange, frame: &Frame<'_>) -> (i64, i64) {
        let sizes = self.instance.sizes.values();
        let lo = range
            .lowers
            .iter()
            .filter_map(|a| a.eval(sizes, &frame.env))
            .max()
            .unwrap_or(1);
        let hi = range
            .uppers
            .iter()
            .filter_map(|a| a.eval(sizes, &frame.env))
            .min()
            .unwrap_or(0);
        (lo, hi)
    }

    fn offset(
        &self,
        node: &Node,
        grid: &Grid,
        indices: &[Affine],
        frame: &Frame<'_>,
        target: Target<'_>,
    ) -> Result<usize, Box<EvalError>> {
        let Target {
            name,
            declaration,
            axes,
        } = target;
        let sizes = self.instance.sizes.values();
        let mut point = [0i64; 8];
        let mut long_point = vec![];
        let point: &mut [i64] = if indices.len() <= 8 {
            &mut point[..indices.len()]
        } else {
            long_point.resize(indices.len(), 0);
            &mut long_point
        };
        for (p, a) in point.iter_mut().zip(indices) {
            *p = a.eval(sizes, &frame.env).unwrap_or(i64::MIN);
        }
        grid.offset(point).ok_or_else(|| -> Box<EvalError> {
            let index = point
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            Box::new(EvalError::IndexOutOfRange {
                access: self.instance.text_of(node.span).to_string(),
                tensor: name.to_string(),
                index,
                extent: grid.describe(),
                guard: guard_hint(indices, axes, frame.names, self.instance.program),
                at: self.at(frame),
                span: node.span.into(),
                declaration: declaration.into(),
            })
        })
    }

    fn missing(&self, node: &Node, frame: &Frame<'_>) -> Box<EvalError> {
        self.non_finite(node.span, f64::NAN, frame)
    }

    fn non_finite(&self, span: Span, value: f64, frame: &Frame<'_>) -> Box<EvalError> {
        Box::new(EvalError::NonFinite {
            expression: self.instance.text_of(span).to_string(),
            value: format_value(value),
            at: self.at(frame),
            span: span.into(),
        })
    }

    fn domain(
        &self,
        node: &Node,
        function: &str,
        value: f64,
        frame: &Frame<'_>,
        help: &str,
    ) -> Box<EvalError> {
        Box::new(EvalError::Domain {
            function: function.to_string(),
            value: format_value(value),
            at: self.at(frame),
            help: help.to_string(),
            span: node.span.into(),
        })
    }

    fn at(&self, frame: &Frame<'_>) -> String {
        frame.describe(&self.instance.sizes)
    }
}

/// A sum's read whose offset steps by a constant stride (see
/// [`Evaluation::strided_read`]).
#[derive(Clone, Copy)]
struct StridedRead<'n, T> {
    /// The access, for an error's span.
    read: &'n Node,
    values: &'n [T],
    first: usize,
    stride: i64,
    /// The shared factor is the product's left operand.
    shared_first: bool,
    shared: &'n Node,
    var: VarId,
}

impl<T: Copy> StridedRead<'_, T> {
    /// Where term `step` of the sum reads, if it is an offset at all.
    fn offset(&self, step: i64) -> Option<usize> {
        let first = i64::try_from(self.first).ok()?;
        usize::try_from(first.checked_add(step.checked_mul(self.stride)?)?).ok()
    }

    /// The value term `step` reads, if it lies in the tensor.
    fn value(&self, step: i64) -> Option<T> {
        self.values.get(self.offset(step)?).copied()
    }
}

/// What keeps a value's divisor away from 0.
pub(crate) const VALUE_DIVISOR_HELP: &str =
    "keep the divisor away from 0: constrain the values that reach it (e.g. `param s > 0`)";

/// Whether a node's value depends on tensor values (not only on indices,
/// sizes, hypers and constants).
/// Whether `node` reads a tensor or definition at all (an exponent that
/// does not is computed from indices and sizes alone).
fn reads_tensors(node: &Node) -> bool {
    let mut reads = false;
    crate::analysis::visit(node, &mut |n| {
        reads |= matches!(n.node, NodeKind::Tensor { .. } | NodeKind::Def { .. });
    });
    reads
}

impl<T: Scalar> Evaluation<'_, T> {
    /// Whether `node` reads a value that a small change can move: a tensor
    /// that is not data, or a definition that reads one. Labels and drawn
    /// data are fixed, so `[c == y[b]]` is no kink.
    fn reads_values(&self, node: &Node) -> bool {
        let program = self.instance.program;
        let mut reads = false;
        crate::analysis::visit(node, &mut |n| {
            reads |= match &n.node {
                NodeKind::Tensor { id, .. } => {
                    program.tensors.get(id.0).is_some_and(|t| !t.is_data())
                }
                NodeKind::Def { id, .. } => self
                    .instance
                    .reads_values
                    .get(id.0)
                    .copied()
                    .unwrap_or(true),
                _ => false,
            };
        });
        reads
    }
}

/// Pairwise (cascade) summation as the terms arrive: two partial sums of
/// 2^k terms each are added as soon as both exist, earlier terms on the
/// left. A sum of n terms then carries rounding of order ε·log n rather
/// than ε·n, and each term reaches the total through log n additions, so
/// a change of one term changes log n partial sums, not every later one
/// (what lets a replay recompute one element's effect on L alone). Up to
/// three terms it is the sequential sum. The evaluator and the moment
/// engine's tapes both sum so, operation for operation.
pub(crate) struct Cascade<V> {
    /// Partial sums with their level (a sum of 2^level terms), levels
    /// decreasing towards the top; held inline, since a sum is taken at
    /// every element of a reduction (no allocation on the evaluator's
    /// hot path). 2^40 terms are far past any size a run allows.
    stack: [Option<(u32, V)>; CASCADE_LEVELS],
    depth: usize,
}

/// Levels a cascade holds: partial sums of up to 2^39 terms each.
const CASCADE_LEVELS: usize = 40;

impl<V: Copy> Default for Cascade<V> {
    fn default() -> Self {
        Self {
            stack: [None; CASCADE_LEVELS],
            depth: 0,
        }
    }
}

impl<V: Copy> Cascade<V> {
    pub(crate) fn push<E>(&mut self, v: V, add: impl FnMut(V, V) -> Result<V, E>) -> Result<(), E> {
        self.push_partial(v, 0, add)
    }

    /// Pushes the sum of 2^`level` terms taken in a cascade of their own:
    /// where the terms before it are a multiple of 2^`level`, the same as
    /// pushing its terms one by one (they meet no earlier partial sum
    /// before they make one of that level, by the same additions).
    pub(crate) fn push_partial<E>(
        &mut self,
        v: V,
        level: u32,
        mut add: impl FnMut(V, V) -> Result<V, E>,
    ) -> Result<(), E> {
        let mut v = v;
        let mut level = level;
        while let Some(Some((l, a))) = self.depth.checked_sub(1).map(|d| self.stack[d])
            && (l == level || self.depth == CASCADE_LEVELS)
        {
            self.depth -= 1;
            v = add(a, v)?;
            level = l + 1;
        }
        self.stack[self.depth] = Some((level, v));
        self.depth += 1;
        Ok(())
    }

    /// The total, left to right over the partial sums; `None` for no terms.
    pub(crate) fn finish<E>(
        &self,
        mut add: impl FnMut(V, V) -> Result<V, E>,
    ) -> Result<Option<V>, E> {
        let mut partials = self.stack[..self.depth].iter().flatten().map(|&(_, v)| v);
        let Some(first) = partials.next() else {
            return Ok(None);
        };
        partials.try_fold(first, &mut add).map(Some)
    }
}

/// Whether `x` is 0, as the evaluator decides it.
#[inline]
fn is_zero<T: Scalar>(x: &T) -> bool {
    x.order(&T::zero()) == Some(Equal)
}

/// Whether `x` is negative or 0, as the evaluator decides it (not for NaN).
#[inline]
fn is_non_positive<T: Scalar>(x: &T) -> bool {
    matches!(x.order(&T::zero()), Some(Less | Equal))
}

/// Whether `x` is positive, as the evaluator decides it (not for NaN).
#[inline]
fn is_positive<T: Scalar>(x: &T) -> bool {
    x.order(&T::zero()) == Some(Greater)
}

/// Where sigmoid switches between its two forms (at −30), each kept from
/// overflowing far out. Between, both are accurate to a few units of
/// rounding (e^30 ≈ 1e13, whose cube in a second derivative is far from
/// overflow). The switch is a decision on the argument, which a replay
/// must take alike at every point it runs (see [`replay`]): at 0, the
/// middle of the values a layer sees, every step of a Taylor ladder that
/// moved one argument across it was evaluated anew by the tree walk, a
/// whole L each (71 of 521 rungs of a sigmoid layer of 10⁵ elements).
const SIGMOID_SWITCH: f64 = -30.0;

/// A function of the spec at `x` (and `y`, for two arguments); `None`
/// outside its domain. Both the evaluator and tapes compute with this.
#[inline]
fn apply<T: Scalar>(function: Function, x: T, y: T) -> Option<T> {
    Some(match function {
        Function::Exp => x.exp(),
        Function::Log => {
            if is_non_positive(&x) {
                return None;
            }
            x.ln()
        }
        Function::Sqrt => {
            if x.order(&T::zero()) == Some(Less) {
                return None;
            }
            x.sqrt()
        }
        Function::Abs => x.abs(),
        Function::Tanh => x.tanh(),
        // 1/(1 + e^-x) overflows its derivative's intermediate (1 + e^-x)²
        // for x below about -355 and gives 0 where e^x is still a normal
        // number: e^x/(1 + e^x) there (see [`SIGMOID_SWITCH`]).
        Function::Sigmoid => {
            if matches!(x.order(&T::constant(SIGMOID_SWITCH)), Some(Greater | Equal)) {
                (T::one() + (-x).exp()).recip()
            } else {
                let e = x.exp();
                e / (T::one() + e)
            }
        }
        Function::Relu => {
            if is_positive(&x) {
                x
            } else {
                T::zero()
            }
        }
        Function::Softplus => {
            // log(1 + e^x) without overflow for large x.
            if is_positive(&x) {
                x + (-x).exp().ln_1p()
            } else {
                x.exp().ln_1p()
            }
        }
        Function::Sin => x.sin(),
        Function::Cos => x.cos(),
        Function::Min | Function::Max => {
            let take_x = matches!(x.order(&y), Some(Less | Equal)) == (function == Function::Min);
            if take_x { x } else { y }
        }
        Function::Pow => {
            if is_non_positive(&x) {
                return None;
            }
            (y * x.ln()).exp()
        }
        Function::Log1p => {
            if matches!(x.order(&T::constant(-1.0)), Some(Less | Equal)) {
                return None;
            }
            x.ln_1p()
        }
        Function::Asin | Function::Acos => {
            if x.order(&T::constant(1.0)) == Some(Greater)
                || x.order(&T::constant(-1.0)) == Some(Less)
            {
                return None;
            }
            x.smooth(if function == Function::Asin {
                Smooth::Asin
            } else {
                Smooth::Acos
            })
        }
        // Piecewise constant: the integer either side is pinned by two
        // decisions, which a replay checks; the value is a constant, whose
        // derivative is 0.
        Function::Sign => match x.order(&T::zero()) {
            Some(Greater) => T::one(),
            Some(Less) => -T::one(),
            Some(Equal) => T::zero(),
            None => x,
        },
        Function::Floor | Function::Round => {
            let v = x.real_guarded_by_caller();
            let (k, lo, hi) = if function == Function::Floor {
                let k = v.floor();
                (k, k, k + 1.0)
            } else {
                let k = v.round();
                (k, k - 0.5, k + 0.5)
            };
            if !k.is_finite() {
                return Some(x);
            }
            // The decisions that pin k: where x is against the ends of
            // k's interval (a recording type notes them as guards).
            x.order(&T::constant(lo));
            x.order(&T::constant(hi));
            T::constant(k)
        }
        // Poles at 0, -1, -2, …: the decision x > 0 is what a replay checks
        // in the common case; elsewhere a step across a pole is a value
        // that is not finite, which the engine reports as such.
        Function::Lgamma | Function::Digamma => {
            let v = x.real_guarded_by_caller();
            if x.order(&T::zero()) != Some(Greater) && v.fract() == 0.0 {
                return None;
            }
            x.smooth(if function == Function::Lgamma {
                Smooth::Lgamma
            } else {
                Smooth::Digamma
            })
        }
        Function::Atan => x.smooth(Smooth::Atan),
        Function::Sinh => x.smooth(Smooth::Sinh),
        Function::Cosh => x.smooth(Smooth::Cosh),
        Function::Expm1 => x.smooth(Smooth::ExpM1),
        Function::Erf => x.smooth(Smooth::Erf),
    })
}

/// Whether `function` of `arity` arguments at (x, y) stands where
/// [`Evaluation::call`] notes a kink or chooses a branch: the guards of its
/// `match`, in one place, so that the block evaluation ([`columns`]) leaves
/// exactly these points to it.
fn at_branch_point<T: Scalar>(function: Function, arity: usize, x: &T, y: &T) -> bool {
    match function {
        Function::Relu | Function::Abs | Function::Sqrt | Function::Sign => is_zero(x),
        Function::Max | Function::Min => arity == 2 && x.order(y) == Some(Equal),
        Function::Asin | Function::Acos => {
            x.order(&T::one()) == Some(Equal) || x.order(&-T::one()) == Some(Equal)
        }
        Function::Floor | Function::Round => at_jump(function, x.real_guarded_by_caller()),
        _ => false,
    }
}

/// Whether `floor` (at whole numbers) or `round` (at halves) jumps at `v`.
fn at_jump(function: Function, v: f64) -> bool {
    match function {
        Function::Floor => v.fract() == 0.0,
        Function::Round => (v - v.trunc()).abs() == 0.5,
        _ => false,
    }
}

/// A reduction's name as the spec writes it.
fn reduce_name(op: ReduceOp) -> &'static str {
    match op {
        ReduceOp::Sum => "sum",
        ReduceOp::Prod => "prod",
        ReduceOp::Mean => "mean",
        ReduceOp::Max => "max",
        ReduceOp::Min => "min",
    }
}

/// A declaration's constraint that keeps draws in a function's domain.
fn domain_constraint(function: Function) -> &'static str {
    match function {
        Function::Asin | Function::Acos => " in (-1, 1)",
        Function::Log1p => " > -1",
        _ => " > 0",
    }
}

/// What a function's domain asks of its argument, as its error's help
/// says; `None` for a function defined everywhere.
fn domain_help(function: Function) -> Option<&'static str> {
    match function {
        Function::Log => Some("log needs a positive argument"),
        Function::Sqrt => Some("sqrt needs a non-negative argument"),
        Function::Pow => Some("pow(x, y) needs x > 0; write x^k with a whole k for other bases"),
        Function::Log1p => Some("log1p needs an argument above -1"),
        Function::Lgamma => Some("lgamma has poles at 0, -1, -2, …"),
        Function::Digamma => Some("digamma has poles at 0, -1, -2, …"),
        Function::Asin => Some("asin needs an argument in [-1, 1]"),
        Function::Acos => Some("acos needs an argument in [-1, 1]"),
        _ => None,
    }
}

impl Def {
    fn body_span(&self) -> Span {
        match &self.body {
            Body::Expr(e) => e.span,
            Body::Cases(c) => c
                .first()
                .zip(c.last())
                .map_or(self.span, |(a, b)| a.span.to(b.span)),
        }
    }
}

/// What an access reads: a tensor or a definition.
#[derive(Clone, Copy)]
struct Target<'a> {
    name: &'a str,
    declaration: Span,
    axes: &'a [AxisRange],
}

/// A condition that keeps an access inside its tensor, in the spec's terms,
/// for the help line: `3 <= j <= N` for `g[j-2]` over `1..=N-2`.
fn guard_hint(
    indices: &[Affine],
    axes: &[AxisRange],
    names: &[String],
    program: &Program,
) -> String {
    let mut guards = vec![];
    for (a, axis) in indices.iter().zip(axes) {
        if let [(v, 1)] = a.vars.as_slice() {
            // index = v + rest, so lo - rest <= v <= hi - rest.
            let rest = a.add_scaled(&Affine::var(*v), -1);
            let bounds = rest.and_then(|rest| {
                Some((
                    axis.lo.add_scaled(&rest, -1)?,
                    axis.hi.add_scaled(&rest, -1)?,
                ))
            });
            if let Some((lo, hi)) = bounds {
                let name = names.get(v.0).map_or("i", String::as_str);
                guards.push(format!(
                    "{} <= {name} <= {}",
                    crate::analysis::show_affine(&lo, program, names),
                    crate::analysis::show_affine(&hi, program, names)
                ));
                continue;
            }
        }
        guards.push(format!(
            "{} <= {} <= {}",
            crate::analysis::show_affine(&axis.lo, program, names),
            crate::analysis::show_affine(a, program, names),
            crate::analysis::show_affine(&axis.hi, program, names)
        ));
    }
    guards.join(" and ")
}

/// A value as reports print it: short, but exact enough to compare.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if v == 0.0 {
        "0".to_string()
    } else if v.abs() >= 1e-3 && v.abs() < 1e6 {
        let s = format!("{v:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.4e}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::{Cascade, Frame};

    /// The order of the additions, written out (terms are indices into
    /// the written forms, so that they are `Copy` as a scalar is).
    fn grouping(terms: &[&str]) -> Option<String> {
        let written =
            std::cell::RefCell::new(terms.iter().map(|t| t.to_string()).collect::<Vec<_>>());
        let add = |a: usize, b: usize| {
            let mut w = written.borrow_mut();
            let sum = format!("({}+{})", w[a], w[b]);
            w.push(sum);
            Ok::<usize, ()>(w.len() - 1)
        };
        let mut sum = Cascade::default();
        for k in 0..terms.len() {
            sum.push(k, add).unwrap();
        }
        let total = sum.finish(add).unwrap()?;
        Some(written.borrow()[total].clone())
    }

    /// `text` analysed, at its largest size, with values drawn from `seed`.
    fn at_largest_size(
        text: &str,
        seed: u64,
        check: impl FnOnce(
            &crate::analysis::program::Program,
            &super::Instance<'_>,
            Vec<ndarray::ArrayD<f64>>,
        ),
    ) {
        use crate::analysis::{analyze, size_sweep};
        use crate::source::Source;
        let source = Source::new("t.dl", text);
        let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let sizes = size_sweep(&program, &[]).unwrap().pop().unwrap();
        let instance = super::Instance::new(&program, &source, sizes, 1 << 20).unwrap();
        let values = super::draw_values(&instance, seed).unwrap();
        check(&program, &instance, values);
    }

    /// A definition of many elements and a sum of many terms are shared
    /// out between threads (see `compute_def_in_chunks`, `sum_in_blocks`):
    /// L is the same bit for bit as one by one (a recording evaluates
    /// in turn, on its own thread's tape), and where elements or terms fail,
    /// the error is the first one's, as one by one.
    #[test]
    fn work_shared_out_gives_the_values_and_errors_of_one_by_one() {
        use crate::eval::record;
        let text = "
            dim N = 70000
            input x[N]
            param w[N] in (0.5, 2)
            let z = sum(k) (log(w[k]) * x[k] + exp(-x[k]))
            y[i] = log(w[i]) * z + x[i] / 3
        ";
        at_largest_size(text, 4, |program, instance, mut values| {
            let shared = instance.evaluation(&values).loss().unwrap();
            let recorded = record::<f64>(instance, &values).unwrap();
            let one_by_one = recorded.value(recorded.output);
            assert_eq!(
                shared.to_bits(),
                one_by_one.to_bits(),
                "{shared} {one_by_one}"
            );
            // Two elements of w out of log's domain, in different chunks and
            // blocks: the first is named, by the sum that reads it first.
            let w = program.tensors.iter().position(|t| t.name == "w").unwrap();
            let slice = values[w].as_slice_memory_order_mut().unwrap();
            slice[50_000] = -2.0;
            slice[20_000] = -1.0;
            let shared = instance.evaluation(&values).loss().unwrap_err().to_string();
            let one_by_one = record::<f64>(instance, &values).err().unwrap().to_string();
            assert_eq!(shared, one_by_one);
            assert!(shared.contains("20001"), "{shared}");
        });
    }

    /// A sum of 32 terms or more whose terms the block evaluation covers
    /// takes them a column per node (`sum_by_columns`): L is the same bit
    /// for bit as the terms one by one (a recording evaluates in turn), in
    /// f64 and double-double, over sums of products, brackets, powers and
    /// functions, ranges bound by an index and terms past a read's end
    /// that a bracket guards; where a term fails, the error is the first
    /// one's, as one by one.
    #[test]
    fn sums_by_columns_give_the_values_and_errors_of_one_by_one() {
        use crate::eval::double_double::Dd;
        use crate::eval::record;
        let text = "
            dim N = 90, M = 40
            input x[N]
            param w[M, N] in (0.5, 2)
            let s[i] = sum(k) (w[i,k] * x[k] + [k > 3] * w[i,k]^2)
            let t[i] = sum(k in 1..=i+40) (log(w[i,k]) * x[k] - tanh(x[k]) / w[i,k])
            let u[i] = sum(k) [k < N] * x[k+1] * exp(-w[i,k])
            y[i] = s[i] / (1 + t[i]^2) + u[i]
        ";
        at_largest_size(text, 6, |program, instance, mut values| {
            let columns = instance.evaluation(&values).loss().unwrap();
            let recorded = record::<f64>(instance, &values).unwrap();
            let one_by_one = recorded.value(recorded.output);
            assert_eq!(columns.to_bits(), one_by_one.to_bits());
            let lifted: Vec<ndarray::ArrayD<Dd>> =
                values.iter().map(|v| v.mapv(Dd::from_f64)).collect();
            let columns = instance.evaluation(&lifted).loss().unwrap();
            let recorded = record::<Dd>(instance, &lifted).unwrap();
            let one_by_one = recorded.value(recorded.output);
            let bits = |d: Dd| (d.hi.to_bits(), d.lo.to_bits());
            assert_eq!(bits(columns), bits(one_by_one));
            // Two elements of w out of log's domain in one row: the first
            // term that reads one is named.
            let w = program.tensors.iter().position(|t| t.name == "w").unwrap();
            let slice = values[w].as_slice_memory_order_mut().unwrap();
            slice[2 * 90 + 30] = -2.0;
            slice[2 * 90 + 10] = -1.0;
            let columns = instance.evaluation(&values).loss().unwrap_err().to_string();
            let one_by_one = record::<f64>(instance, &values).err().unwrap().to_string();
            assert_eq!(columns, one_by_one);
            assert!(columns.contains("k = 11"), "{columns}");
        });
    }

    /// L without the layer's output kept ([`Evaluation::loss_alone`]) is
    /// L bit for bit, on the cores (f64, dual numbers) and in turn (a
    /// recording), over a layer of several blocks and a wave of them; where
    /// elements of the output fail, the error is the first one's; and a
    /// later read of the output computes it then.
    #[test]
    fn loss_alone_is_loss_bit_for_bit() {
        use num_dual::DualSVec64;
        let text = "
            dim N = 150000
            input x[N]
            param w[N] in (0.5, 2)
            let z = sum(k) w[k] * x[k]
            y[i] = log(w[i]) * z + x[i] / 3
        ";
        at_largest_size(text, 5, |program, instance, mut values| {
            let whole64 = instance.evaluation(&values).loss().unwrap();
            let alone = instance.evaluation(&values).loss_alone().unwrap();
            assert_eq!(whole64.to_bits(), alone.to_bits(), "{whole64} {alone}");
            let lifted: Vec<ndarray::ArrayD<DualSVec64<2>>> = values
                .iter()
                .map(|v| {
                    v.mapv(|x| {
                        DualSVec64::from_re(x)
                            + DualSVec64::from_re(0.0).derivative(0) * x
                            + DualSVec64::from_re(0.0).derivative(1)
                    })
                })
                .collect();
            let whole = instance.evaluation(&lifted).loss().unwrap();
            let alone = instance.evaluation(&lifted).loss_alone().unwrap();
            let parts = |d: &DualSVec64<2>| {
                let eps = d.eps.0.as_ref().unwrap();
                [d.re, eps[(0, 0)], eps[(1, 0)]].map(f64::to_bits)
            };
            assert_eq!(parts(&whole), parts(&alone));
            // In turn, as a recording evaluates.
            let mut in_turn = instance
                .evaluation(&values)
                .with_branches(super::BranchPolicy::FollowTangents);
            let alone = in_turn.loss_alone().unwrap();
            assert_eq!(whole64.to_bits(), alone.to_bits());
            // The output was not kept; read later, it is computed then.
            let y = program.output.unwrap().def;
            assert!(matches!(in_turn.defs[y.0], super::DefState::Pending));
            in_turn.compute_defs(true).unwrap();
            assert_eq!(in_turn.def_values(y).unwrap().len(), 150_000);
            // Two elements of the output out of log's domain, in different
            // waves: the first is named, as by `loss`.
            let w = program.tensors.iter().position(|t| t.name == "w").unwrap();
            let slice = values[w].as_slice_memory_order_mut().unwrap();
            slice[140_000] = -2.0;
            slice[100_000] = -1.0;
            let whole = instance.evaluation(&values).loss().unwrap_err().to_string();
            let alone = instance
                .evaluation(&values)
                .loss_alone()
                .unwrap_err()
                .to_string();
            assert_eq!(whole, alone);
            assert!(whole.contains("100001"), "{whole}");
        });
    }

    /// A claim's sum `x[A(k)] * c` with `c` hoisted reads x at a stride, in
    /// groups of 8 terms: the same values bit for bit as the terms one by
    /// one (`1 * x[A(k)]` is not a plain read, so it takes that path), in f64 and in
    /// double-double; and a read that leaves x is reported as the terms
    /// one by one report it.
    #[test]
    fn a_strided_sum_is_the_sum_term_by_term() {
        use crate::analysis::program::ClaimKind;
        use crate::analysis::{analyze, size_sweep};
        use crate::eval::double_double::Dd;
        use crate::source::Source;
        let spec = |n: i64, read: &str| {
            format!(
                "dim n = {n}, m = 4
                 input x[n, m], r[n]
                 param v[m]
                 y[j] = v[j] * sum(k) x[k, j] * r[k]
                 grad v[j] = sum(k in 1..=n-1) {read} * (v[j] / 3 + tanh(v[j]))
                 "
            )
        };
        let claimed = |text: &str| -> Vec<Result<(u64, f64), String>> {
            let source = Source::new("t.dl", text);
            let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
            let sizes = size_sweep(&program, &[]).unwrap().pop().unwrap();
            let instance = super::Instance::new(&program, &source, sizes, 1 << 20).unwrap();
            let values = super::draw_values(&instance, 2).unwrap();
            let precise: Vec<ndarray::ArrayD<Dd>> =
                values.iter().map(|a| a.mapv(Dd::from_f64)).collect();
            let ClaimKind::Grad(claim) = &program.claims[0].kind else {
                panic!("a grad claim")
            };
            let grid = instance.tensor_grid(claim.target);
            let at = |body| {
                let f64s = instance
                    .evaluation(&values)
                    .body_everywhere(body, grid, &claim.var_names, claim.slots)
                    .into_results();
                let dds = instance
                    .evaluation(&precise)
                    .body_everywhere(body, grid, &claim.var_names, claim.slots)
                    .into_results();
                f64s.into_iter()
                    .zip(dds)
                    .map(|(a, b)| match (a, b) {
                        (Ok(a), Ok(b)) => Ok((a.to_bits(), b.to_f64())),
                        // The error's message (its span moves with `1 * `).
                        (a, b) => Err(format!(
                            "{} / {}",
                            a.err().map(|e| e.to_string()).unwrap_or_default(),
                            b.err().map(|e| e.to_string()).unwrap_or_default()
                        )),
                    })
                    .collect::<Vec<_>>()
            };
            at(&claim.body)
        };
        // 8 terms: one whole group of 8; 19: two groups and 3 terms after.
        for n in [9, 20] {
            // Strides of −m, m, 0, 1 (a run of the tensor itself) and −1.
            let reads = [
                "x[n - k, j]",
                "x[k + 1, 5 - j]",
                "x[2, j]",
                "r[k]",
                "r[n - k]",
            ];
            for read in reads {
                let strided = claimed(&spec(n, read));
                assert!(strided.iter().all(Result::is_ok), "{read}: {strided:?}");
                assert_eq!(strided, claimed(&spec(n, &format!("1 * {read}"))), "{read}");
            }
            let outside = claimed(&spec(n, "x[k + 2, j]"));
            assert_eq!(outside, claimed(&spec(n, "1 * x[k + 2, j]")));
            let past = format!("x[{}, ", n + 1);
            assert!(
                outside
                    .iter()
                    .all(|r| r.as_ref().is_err_and(|e| e.contains(&past))),
                "{outside:?}"
            );
        }
    }

    /// Eight terms counted at once look at the clock where counting them
    /// one by one would, at a multiple of 4096 and across the wrap of u32.
    #[test]
    fn terms_counted_eight_at_once_look_at_the_clock_as_one_by_one() {
        let names: Vec<String> = vec![];
        for start in [0, 4090, 4096 - 8, 4096, u32::MAX - 3, u32::MAX - 7] {
            let mut one = Frame::new(&names, 0);
            let mut eight = Frame::new(&names, 0);
            (one.terms, eight.terms) = (start, start);
            let looked = (0..8).fold(false, |looked, _| one.count_term() | looked);
            assert_eq!(eight.count_terms(8), looked, "from {start}");
            assert_eq!(eight.terms, one.terms);
        }
        let mut frame = Frame::new(&names, 0);
        frame.terms = 4090;
        assert!(frame.count_terms(8));
        assert!(!frame.count_terms(8));
    }

    #[test]
    fn a_cascade_adds_pairwise_and_up_to_three_terms_in_order() {
        assert_eq!(grouping(&[]), None);
        assert_eq!(grouping(&["a"]).unwrap(), "a");
        assert_eq!(grouping(&["a", "b", "c"]).unwrap(), "((a+b)+c)");
        assert_eq!(grouping(&["a", "b", "c", "d"]).unwrap(), "((a+b)+(c+d))");
        assert_eq!(
            grouping(&["a", "b", "c", "d", "e", "f", "g"]).unwrap(),
            "((((a+b)+(c+d))+(e+f))+g)"
        );
        // A term reaches the total through log2(n) additions, not n - k.
        let terms: Vec<String> = (0..1024).map(|k| format!("t{k}")).collect();
        let refs: Vec<&str> = terms.iter().map(String::as_str).collect();
        let total = grouping(&refs).unwrap();
        let depth = total.find("t0+").unwrap();
        assert_eq!(depth, 10, "t0 is nested in {depth} additions");
    }
}
