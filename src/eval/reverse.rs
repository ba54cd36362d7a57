//! Reverse-mode autodiff: the evaluator runs once over [`Rev`] numbers,
//! each operation writing its local partial derivatives onto a tape, and
//! one backward sweep over the tape gives dL/dw for every element. The
//! whole gradient costs a few forward passes, whatever the number of
//! elements, where forward mode costs one pass per [`CHUNK`](super)
//! elements.
//!
//! The tape is a straight line: it holds the branches the recorded values
//! took. That is all a gradient at those values needs; where the recording
//! meets a point of non-differentiability (relu at 0, sqrt at 0, a tie)
//! the caller uses forward mode, whose branch policies choose among the
//! valid derivatives.
//!
//! The tape is thread-local: the operators of `Rev` have no other way to
//! reach it. [`record`] holds it for one recording at a time.

use std::cell::RefCell;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

use ndarray::ArrayD;

use super::double_double::{Dd, Real, smooth_slope};
use super::scalar::Smooth;
use super::{EvalError, Instance, KinkCount, Scalar};

/// The node of a constant: it has no entry on the tape.
const CONSTANT: u32 = u32::MAX;

/// Marks an operand as an index into the tape's constants.
pub(super) const CONSTANT_BIT: u32 = 1 << 31;

/// Entries (and constants) a tape's indices can name: operands are `u32`
/// with the top bit telling constants from entries. At 20 bytes an entry
/// this is 40 GiB; a forward pass quadratic by definition gets there at
/// sizes `--max-elements` lets through (a cumulative sum at N = 65536),
/// and the memory available stops a recording well before
/// ([`operation_limit`]).
const MAX_ENTRIES: usize = (CONSTANT_BIT - 1) as usize;

/// The error of a recording stopped at `limit` operations.
pub(super) fn recording_too_large(limit: usize) -> Box<EvalError> {
    let operations = limit.min(MAX_ENTRIES);
    Box::new(EvalError::RecordingTooLarge {
        operations,
        bytes: super::memory::BYTES_PER_OPERATION.saturating_mul(operations as u64),
    })
}

/// Operations a recording may hold on this machine: what its indices can
/// name, and no more than the memory available carries
/// ([`super::memory`]).
pub(super) fn operation_limit() -> usize {
    super::memory::operation_limit(MAX_ENTRIES)
}

/// A number being recorded: its value and its entry on the tape.
#[derive(Clone, Copy, Debug)]
pub struct Rev<B> {
    value: B,
    node: u32,
}

/// One recorded operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// An element the gradient is taken with respect to.
    Leaf,
    Add,
    Sub,
    Mul,
    Div,
    Neg,
    Exp,
    Ln,
    Ln1p,
    Sqrt,
    Abs,
    Tanh,
    Sin,
    Cos,
    Recip,
    Powi(i32),
    Smooth(Smooth),
}

/// An operation and its operands: entries, or constants (`CONSTANT_BIT`),
/// in 12 bytes (a tape holds one per operation of L).
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    /// 0 for a leaf, else 1 + the operation's place in [`OPS`].
    code: u32,
    pub(super) a: u32,
    /// The second operand (`a` again for an operation of one), or
    /// `Powi`'s exponent.
    b: u32,
}

/// The code of `Powi` in an entry.
const POWI_CODE: u32 = 1 + op_index(Op::Powi(0)) as u32;

impl Entry {
    pub(super) fn new(op: Op, a: u32, b: u32) -> Self {
        let (index, b) = encode_op(op, b);
        let code = match op {
            Op::Leaf => 0,
            _ => 1 + index as u32,
        };
        Self { code, a, b }
    }

    pub(super) fn op(self) -> Op {
        match self.code.checked_sub(1) {
            None => Op::Leaf,
            Some(index) => decode_op(index as usize, self.b),
        }
    }

    /// The second operand: `a` again for an operation of one.
    pub(super) fn b(self) -> u32 {
        if self.code == POWI_CODE {
            self.a
        } else {
            self.b
        }
    }
}

/// The operations an entry or a step can carry, but a leaf (`Powi`'s
/// exponent is carried in `b`).
pub(super) const OPS: [Op; 25] = [
    Op::Add,
    Op::Sub,
    Op::Mul,
    Op::Div,
    Op::Neg,
    Op::Exp,
    Op::Ln,
    Op::Ln1p,
    Op::Sqrt,
    Op::Abs,
    Op::Tanh,
    Op::Sin,
    Op::Cos,
    Op::Recip,
    Op::Powi(0),
    Op::Smooth(Smooth::Atan),
    Op::Smooth(Smooth::Asin),
    Op::Smooth(Smooth::Acos),
    Op::Smooth(Smooth::Sinh),
    Op::Smooth(Smooth::Cosh),
    Op::Smooth(Smooth::ExpM1),
    Op::Smooth(Smooth::Erf),
    Op::Smooth(Smooth::Lgamma),
    Op::Smooth(Smooth::Digamma),
    Op::Smooth(Smooth::Trigamma),
];

/// `op` as its place in [`OPS`] and the field `b` that goes with it:
/// `Powi`'s exponent rides there, in place of the second operand an
/// operation of one does not have.
pub(super) fn encode_op(op: Op, b: u32) -> (usize, u32) {
    #[allow(clippy::cast_sign_loss)]
    match op {
        Op::Powi(k) => (op_index(op), k as u32),
        _ => (op_index(op), b),
    }
}

/// The operation at place `index` of [`OPS`], with the `b` that
/// [`encode_op`] gave (an index it gave).
pub(super) fn decode_op(index: usize, b: u32) -> Op {
    match OPS[index] {
        #[allow(clippy::cast_possible_wrap)]
        Op::Powi(_) => Op::Powi(b as i32),
        op => op,
    }
}

/// Where `op` is in [`OPS`] (a leaf, which is not there, as `Add`).
pub(super) const fn op_index(op: Op) -> usize {
    match op {
        Op::Add | Op::Leaf => 0,
        Op::Sub => 1,
        Op::Mul => 2,
        Op::Div => 3,
        Op::Neg => 4,
        Op::Exp => 5,
        Op::Ln => 6,
        Op::Ln1p => 7,
        Op::Sqrt => 8,
        Op::Abs => 9,
        Op::Tanh => 10,
        Op::Sin => 11,
        Op::Cos => 12,
        Op::Recip => 13,
        Op::Powi(_) => 14,
        Op::Smooth(f) => 15 + f as usize,
    }
}

/// A decision the evaluator took on recorded values, which a replay at
/// other values must take alike.
#[derive(Clone, Copy, Debug)]
pub(super) struct Guard {
    pub(super) test: Test,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Test {
    Order {
        a: u32,
        b: u32,
        expected: Option<std::cmp::Ordering>,
    },
    Finite {
        a: u32,
        expected: bool,
    },
}

/// A base type with a thread-local tape of its own.
pub trait TapeReal: Real {
    #[doc(hidden)]
    fn with_tape<R>(f: impl FnOnce(&mut Tape<Self>) -> R) -> R;
}

/// The operations recorded so far, in order.
#[doc(hidden)]
#[derive(Debug)]
pub struct Tape<B> {
    pub(super) entries: Vec<Entry>,
    /// The value of each entry.
    pub(super) values: Vec<B>,
    pub(super) constants: Vec<B>,
    pub(super) guards: Vec<Guard>,
    /// The evaluator read a recorded value other than by a decision it
    /// guards (two cases that hold at once, compared): a replay could not
    /// tell where it decides otherwise.
    pub(super) unguarded: bool,
    /// An operation on constants alone other than `+`, `−`, `×` was folded
    /// into a constant in `B`: a number type whose such operations round
    /// otherwise (num-dual divides as `a · (1/b)`) would not get the same
    /// constant, so a replay over it is not the evaluator's (see
    /// [`super::replay::Replay::run_lanes`]).
    pub(super) folded: bool,
    /// A constant was computed in `B` (folded from others, even by `+`, or
    /// π rounded from double-double) rather than rounded from an f64 the
    /// evaluator gave: a recording in another precision would hold it
    /// rounded otherwise (see [`super::replay::Replay::in_precision`]).
    pub(super) computed_constants: bool,
    /// Whether a recording holds the tape (see [`Recording`]).
    busy: bool,
    /// More operations were recorded than indices or the memory allow
    /// ([`Tape::limit`]): the recording is void.
    overflowed: bool,
    /// Entries the recording may hold.
    limit: usize,
}

impl<B> Tape<B> {
    const fn new() -> Self {
        Self {
            entries: Vec::new(),
            values: Vec::new(),
            constants: Vec::new(),
            guards: Vec::new(),
            unguarded: false,
            folded: false,
            computed_constants: false,
            busy: false,
            overflowed: false,
            limit: MAX_ENTRIES,
        }
    }

    fn clear(&mut self) {
        self.entries = Vec::new();
        self.values = Vec::new();
        self.constants = Vec::new();
        self.guards = Vec::new();
        self.unguarded = false;
        self.folded = false;
        self.computed_constants = false;
        self.overflowed = false;
    }

    fn full(&mut self) -> bool {
        let full = self.entries.len() >= self.limit || self.constants.len() >= MAX_ENTRIES;
        self.overflowed |= full;
        full
    }
}

impl<B: Copy> Tape<B> {
    /// An operand for a recorded number: its entry, or a new constant.
    fn operand(&mut self, x: Rev<B>) -> u32 {
        if x.node != CONSTANT {
            return x.node;
        }
        let k = self.constants.len() as u32;
        self.constants.push(x.value);
        k | CONSTANT_BIT
    }
}

thread_local! {
    static F64_TAPE: RefCell<Tape<f64>> = const { RefCell::new(Tape::new()) };
    static F32_TAPE: RefCell<Tape<f32>> = const { RefCell::new(Tape::new()) };
    static DD_TAPE: RefCell<Tape<Dd>> = const { RefCell::new(Tape::new()) };
}

impl TapeReal for f64 {
    fn with_tape<R>(f: impl FnOnce(&mut Tape<Self>) -> R) -> R {
        F64_TAPE.with(|t| f(&mut t.borrow_mut()))
    }
}

impl TapeReal for f32 {
    fn with_tape<R>(f: impl FnOnce(&mut Tape<Self>) -> R) -> R {
        F32_TAPE.with(|t| f(&mut t.borrow_mut()))
    }
}

impl TapeReal for Dd {
    fn with_tape<R>(f: impl FnOnce(&mut Tape<Self>) -> R) -> R {
        DD_TAPE.with(|t| f(&mut t.borrow_mut()))
    }
}

impl<B: TapeReal> Rev<B> {
    fn constant_of(value: B) -> Self {
        Self {
            value,
            node: CONSTANT,
        }
    }

    /// A new entry; a constant where it reads no recorded number.
    fn push(value: B, op: Op, a: Self, b: Self) -> Self {
        if a.node == CONSTANT && b.node == CONSTANT {
            let folded = !matches!(op, Op::Add | Op::Sub | Op::Mul | Op::Neg);
            B::with_tape(|tape| {
                tape.folded |= folded;
                tape.computed_constants = true;
            });
            return Self::constant_of(value);
        }
        let node = B::with_tape(|tape| {
            if tape.full() {
                return CONSTANT;
            }
            let node = tape.entries.len() as u32;
            let a = tape.operand(a);
            let b = if op.is_binary() { tape.operand(b) } else { a };
            tape.entries.push(Entry::new(op, a, b));
            tape.values.push(value);
            node
        });
        Self { value, node }
    }

    /// f(self): one operand.
    fn unary(self, value: B, op: Op) -> Self {
        Self::push(value, op, self, self)
    }

    /// A leaf: an element the gradient is taken with respect to.
    fn leaf(value: B) -> Self {
        let node = B::with_tape(|tape| {
            if tape.full() {
                return CONSTANT;
            }
            let node = tape.entries.len() as u32;
            tape.entries.push(Entry::new(Op::Leaf, 0, 0));
            tape.values.push(value);
            node
        });
        Self { value, node }
    }

    /// Notes a decision on recorded values (none on constants alone).
    fn guard(a: Self, b: Self, test: impl FnOnce(u32, u32) -> Test) {
        if a.node == CONSTANT && b.node == CONSTANT {
            return;
        }
        B::with_tape(|tape| {
            // A guard adds no entry: a tape holding exactly its limit
            // takes it, one already void does not.
            if tape.overflowed || tape.constants.len() >= MAX_ENTRIES {
                tape.overflowed = true;
                return;
            }
            let (a, b) = (tape.operand(a), tape.operand(b));
            tape.guards.push(Guard { test: test(a, b) });
        });
    }
}

impl Op {
    pub(super) fn is_binary(self) -> bool {
        matches!(self, Op::Add | Op::Sub | Op::Mul | Op::Div)
    }
}

impl<B: TapeReal> Add for Rev<B> {
    type Output = Self;
    fn add(self, b: Self) -> Self {
        Self::push(self.value + b.value, Op::Add, self, b)
    }
}

impl<B: TapeReal> Sub for Rev<B> {
    type Output = Self;
    fn sub(self, b: Self) -> Self {
        Self::push(self.value - b.value, Op::Sub, self, b)
    }
}

impl<B: TapeReal> Mul for Rev<B> {
    type Output = Self;
    fn mul(self, b: Self) -> Self {
        Self::push(self.value * b.value, Op::Mul, self, b)
    }
}

impl<B: TapeReal> Div for Rev<B> {
    type Output = Self;
    fn div(self, b: Self) -> Self {
        Self::push(self.value / b.value, Op::Div, self, b)
    }
}

impl<B: TapeReal> Neg for Rev<B> {
    type Output = Self;
    fn neg(self) -> Self {
        self.unary(-self.value, Op::Neg)
    }
}

impl<B: TapeReal> AddAssign for Rev<B> {
    fn add_assign(&mut self, b: Self) {
        *self = *self + b;
    }
}

/// Each operation's value, as the plain scalar computes it: a recording
/// and a replay give L bit for bit as plain evaluation does.
pub(super) fn apply_op<B: Real>(op: Op, a: B, b: B) -> B {
    match op {
        Op::Leaf => a,
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        Op::Div => a / b,
        Op::Neg => -a,
        Op::Exp => a.exp(),
        Op::Ln => a.ln(),
        Op::Ln1p => a.ln_1p(),
        Op::Sqrt => a.sqrt(),
        // The plain type's own abs (signs of zeros and NaNs included); the
        // slope takes num-dual's positive branch at +0 (`partials`).
        Op::Abs => a.abs(),
        Op::Tanh => a.tanh(),
        Op::Sin => a.sin_cos().0,
        Op::Cos => a.sin_cos().1,
        Op::Recip => a.recip(),
        Op::Powi(k) => a.powi(k),
        Op::Smooth(f) => a.smooth(f),
    }
}

/// The partial derivatives of an operation in its operands, from their
/// values and its own.
fn partials<B: Real>(op: Op, a: B, b: B, value: B) -> [B; 2] {
    let zero = B::of(0.0);
    let one = B::of(1.0);
    match op {
        Op::Leaf => [zero, zero],
        Op::Add => [one, one],
        Op::Sub => [one, -one],
        Op::Mul => [b, a],
        Op::Div => {
            let r = one / b;
            [r, -(value * r)]
        }
        Op::Neg => [-one, zero],
        Op::Exp => [value, zero],
        Op::Ln => [one / a, zero],
        Op::Ln1p => [one / (one + a), zero],
        Op::Sqrt => [one / (value + value), zero],
        Op::Abs => {
            let v = a.value();
            let positive = v > 0.0 || (v == 0.0 && v.is_sign_positive());
            [if positive { one } else { -one }, zero]
        }
        Op::Tanh => {
            // 1 − t² loses every digit once t rounds to ±1; 4m/(1 + m)²
            // with m = e^(−2|x|) keeps them.
            let slope = if a.value().abs() > 0.5 {
                let x = if a.value() < 0.0 { -a } else { a };
                let m = (x * B::of(-2.0)).exp();
                let d = one + m;
                B::of(4.0) * m / (d * d)
            } else {
                one - value * value
            };
            [slope, zero]
        }
        Op::Sin => [a.sin_cos().1, zero],
        Op::Cos => [-a.sin_cos().0, zero],
        Op::Recip => [-(value * value), zero],
        Op::Powi(k) => [a.powi(k - 1) * B::of(f64::from(k)), zero],
        Op::Smooth(f) => [smooth_slope(f, a), zero],
    }
}

impl<B: TapeReal> Scalar for Rev<B> {
    const IN_PARALLEL: bool = false;
    fn recording_overflowed() -> bool {
        B::with_tape(|tape| tape.overflowed)
    }
    fn constant(v: f64) -> Self {
        Self::constant_of(B::of(v))
    }
    fn real(&self) -> f64 {
        if self.node != CONSTANT {
            B::with_tape(|tape| tape.unguarded = true);
        }
        self.value.value()
    }
    fn pi() -> Self {
        B::with_tape(|tape| tape.computed_constants = true);
        Self::constant_of(B::of_pair(
            std::f64::consts::PI,
            1.224_646_799_147_353_2e-16,
        ))
    }
    fn real_guarded_by_caller(&self) -> f64 {
        self.value.value()
    }
    fn order(&self, other: &Self) -> Option<std::cmp::Ordering> {
        let expected = self.value.value().partial_cmp(&other.value.value());
        Self::guard(*self, *other, |a, b| Test::Order { a, b, expected });
        expected
    }
    fn is_finite_value(&self) -> bool {
        let expected = self.value.value().is_finite();
        Self::guard(*self, *self, |a, _| Test::Finite { a, expected });
        expected
    }
    fn exp(self) -> Self {
        self.unary(self.value.exp(), Op::Exp)
    }
    fn ln(self) -> Self {
        self.unary(self.value.ln(), Op::Ln)
    }
    fn ln_1p(self) -> Self {
        self.unary(self.value.ln_1p(), Op::Ln1p)
    }
    fn sqrt(self) -> Self {
        self.unary(self.value.sqrt(), Op::Sqrt)
    }
    fn abs(self) -> Self {
        self.unary(apply_op(Op::Abs, self.value, self.value), Op::Abs)
    }
    fn tanh(self) -> Self {
        self.unary(self.value.tanh(), Op::Tanh)
    }
    fn sin(self) -> Self {
        self.unary(self.value.sin_cos().0, Op::Sin)
    }
    fn cos(self) -> Self {
        self.unary(self.value.sin_cos().1, Op::Cos)
    }
    fn recip(self) -> Self {
        self.unary(B::of(1.0) / self.value, Op::Recip)
    }
    fn powi(self, k: i32) -> Self {
        if k == 0 {
            return Self::constant_of(B::of(1.0));
        }
        self.unary(self.value.powi(k), Op::Powi(k))
    }
    fn smooth(self, f: Smooth) -> Self {
        self.unary(self.value.smooth(f), Op::Smooth(f))
    }
}

/// A gradient from one recording and backward sweep.
#[derive(Debug)]
pub struct ReverseGradient<B> {
    /// dL/dT per tensor (`None` for data), as [`super::gradient`] gives it.
    pub gradient: Vec<Option<ArrayD<B>>>,
    /// Per element, the sum over every path from it to L of the absolute
    /// products of the partials along the path: the magnitude of the terms
    /// whichever order of accumulation adds up, so `ε ·` (depth) `·` this
    /// bounds the rounding of any mode's value of the same derivative.
    pub magnitude: Vec<Option<ArrayD<f64>>>,
    /// Kinks the recording met: where there are any, the straight-line
    /// tape holds one branch of several, and forward mode must choose.
    pub kinks: KinkCount,
    /// Σ |∂L/∂v|·|v| over every computed value v, its partial taken as the
    /// path magnitude: each operation rounds its result by up to ε·|v|, so
    /// `ε ·` this bounds L's own rounding to first order. It sees what L's
    /// value hides: the 1 in `log(1 + u²)` with u² below ε rounds L by ε
    /// although L itself is 0.
    pub rounding: f64,
}

/// Holds the thread's tape of `B` for one recording, and clears it after.
struct Recording<B: TapeReal>(std::marker::PhantomData<B>);

impl<B: TapeReal> Recording<B> {
    /// The thread's tape, for a recording of at most `limit` entries.
    fn start(limit: usize) -> Result<Self, Box<EvalError>> {
        B::with_tape(|tape| {
            if tape.busy {
                return Err(Box::new(EvalError::Internal {
                    what: "a recording of L was started inside another".to_string(),
                }));
            }
            tape.clear();
            tape.busy = true;
            tape.limit = limit.min(MAX_ENTRIES);
            Ok(Self(std::marker::PhantomData))
        })
    }

    /// The tape as recorded, leaving the thread's empty.
    fn take(&self) -> Tape<B> {
        B::with_tape(|tape| {
            let mut taken = Tape::new();
            std::mem::swap(&mut taken, tape);
            tape.busy = true;
            taken
        })
    }
}

impl<B: TapeReal> Drop for Recording<B> {
    fn drop(&mut self) {
        B::with_tape(|tape| {
            tape.clear();
            tape.busy = false;
        });
    }
}

/// One evaluation of L, recorded: every operation on the elements of the
/// inputs and params, with its value, and every decision taken on them.
#[derive(Debug)]
pub struct Recorded<B> {
    pub(super) tape: Tape<B>,
    /// The leaf entry of every element of every tensor, data included.
    pub(super) leaves: LeafEntries,
    /// L: an entry, or a constant (`CONSTANT_BIT`).
    pub(super) output: u32,
    /// Kinks the recording met: where there are any, the straight-line
    /// tape holds one branch of several.
    pub kinks: KinkCount,
}

impl<B: Real> Recorded<B> {
    /// This recording carried out again in `C` at `values` (every
    /// tensor's, data included, exact in `C`): the same operations on the
    /// same operands, each computed in `C`. Where `C`'s evaluator takes
    /// every decision alike, it makes this recording bit for bit (the
    /// operations are chosen by the decisions alone), and here at one pass
    /// over the tape instead of a walk of the tree per operation. `None`
    /// where that cannot be told: a value read other than by a guarded
    /// decision, a constant computed in `B` (a fold, π: `C` computes it
    /// otherwise), a recording cut short, or a decision `C`'s values take
    /// otherwise.
    pub fn in_type<C: Real>(&self, values: &[ArrayD<C>]) -> Option<Recorded<C>> {
        let tape = &self.tape;
        let (computed, constants) = self.carried_out(values)?;
        Some(Recorded {
            tape: Tape {
                entries: tape.entries.clone(),
                values: computed,
                constants,
                guards: tape.guards.clone(),
                unguarded: false,
                folded: false,
                computed_constants: false,
                busy: false,
                overflowed: false,
                limit: tape.limit,
            },
            leaves: self.leaves.clone(),
            output: self.output,
            kinks: self.kinks,
        })
    }

    /// The partials of L in some elements (tensor, row-major offset), as
    /// [`Recorded::in_type`] and [`adjoints_of`] give them in `C`, bit for
    /// bit: the recording carried out again in `C` as there (every guard
    /// checked, which may read any value), but swept back over only the
    /// operations the elements reach: every operation that reads a reached
    /// one is reached, so the adjoints of those are the whole sweep's. `None`
    /// where `in_type` refuses, where an element is not a leaf the gradient
    /// is taken in, where the elements reach more than `most` operations
    /// (the whole sweep serves as well), or where a partial is not finite.
    pub fn partials_in_type<C: Real>(
        &self,
        values: &[ArrayD<C>],
        elements: &[(usize, usize)],
        most: usize,
    ) -> Option<Vec<C>> {
        let leaves: Vec<usize> = elements
            .iter()
            .map(|&(k, p)| self.leaves.differentiable_entry(k, p))
            .collect::<Option<_>>()?;
        let reached = reached_from(&self.tape, &leaves, most)?;
        let (computed, constants) = self.carried_out(values)?;
        let operand = |x: u32| -> C {
            if x & CONSTANT_BIT != 0 {
                constants[(x & !CONSTANT_BIT) as usize]
            } else {
                computed[x as usize]
            }
        };
        // As `sweep` adds them up: the operations not reached add nothing
        // to the adjoints of those that are.
        let entries = &self.tape.entries;
        let mut adjoint = vec![C::of(0.0); entries.len()];
        if let Some(seed) = adjoint.get_mut(self.output as usize) {
            *seed = C::of(1.0);
        }
        for n in (0..entries.len()).rev() {
            let a = adjoint[n];
            if !reached[n] || a.value() == 0.0 {
                continue;
            }
            for (x, partial) in entry_partials(entries[n], operand, computed[n]) {
                adjoint[x] = adjoint[x] + a * partial;
            }
        }
        let partials: Vec<C> = leaves.iter().map(|&n| adjoint[n]).collect();
        partials
            .iter()
            .all(|d| d.value().is_finite())
            .then_some(partials)
    }

    /// Every entry's value and every constant in `C`, as
    /// [`Recorded::in_type`] computes them, where it does not refuse.
    fn carried_out<C: Real>(&self, values: &[ArrayD<C>]) -> Option<(Vec<C>, Vec<C>)> {
        let tape = &self.tape;
        if tape.unguarded || tape.folded || tape.computed_constants || tape.overflowed {
            return None;
        }
        let constants: Vec<C> = tape.constants.iter().map(|c| C::of(c.value())).collect();
        let mut computed = vec![C::of(0.0); tape.entries.len()];
        self.leaves.fill(values, &mut computed)?;
        let operand = |computed: &[C], x: u32| -> Option<C> {
            if x & CONSTANT_BIT != 0 {
                constants.get((x & !CONSTANT_BIT) as usize).copied()
            } else {
                computed.get(x as usize).copied()
            }
        };
        for n in 0..computed.len() {
            let e = tape.entries[n];
            let op = e.op();
            if op == Op::Leaf {
                continue;
            }
            let value = apply_op(op, operand(&computed, e.a)?, operand(&computed, e.b())?);
            computed[n] = value;
        }
        let decided_alike = tape.guards.iter().all(|g| match g.test {
            Test::Order { a, b, expected } => {
                let (a, b) = (operand(&computed, a), operand(&computed, b));
                matches!((a, b), (Some(a), Some(b)) if a.value().partial_cmp(&b.value()) == expected)
            }
            Test::Finite { a, expected } => {
                operand(&computed, a).is_some_and(|a| a.value().is_finite() == expected)
            }
        });
        decided_alike.then_some((computed, constants))
    }
}

/// Which entries of `tape` the entries `leaves` reach: themselves, and
/// every operation that reads one reached; `None` where that is more than
/// `most` operations.
fn reached_from<B>(tape: &Tape<B>, leaves: &[usize], most: usize) -> Option<Vec<bool>> {
    let mut reached = vec![false; tape.entries.len()];
    for &n in leaves {
        *reached.get_mut(n)? = true;
    }
    let mut operations = 0usize;
    for n in 0..reached.len() {
        let e = tape.entries[n];
        if e.op() == Op::Leaf {
            continue;
        }
        let reads = |x: u32| x & CONSTANT_BIT == 0 && reached.get(x as usize) == Some(&true);
        if reads(e.a) || reads(e.b()) {
            reached[n] = true;
            operations += 1;
            if operations > most {
                return None;
            }
        }
    }
    Some(reached)
}

impl<B: Copy> Recorded<B> {
    /// The value of each entry, taken out: a replay does not read them.
    pub fn take_values(&mut self) -> Vec<B> {
        std::mem::take(&mut self.tape.values)
    }

    /// A copy of all a replay is compiled from (the values are not), for
    /// compiling while the recording is still swept.
    pub fn without_values(&self) -> Self {
        let tape = &self.tape;
        Self {
            tape: Tape {
                entries: tape.entries.clone(),
                values: Vec::new(),
                constants: tape.constants.clone(),
                guards: tape.guards.clone(),
                unguarded: tape.unguarded,
                folded: tape.folded,
                computed_constants: tape.computed_constants,
                busy: false,
                overflowed: tape.overflowed,
                limit: tape.limit,
            },
            leaves: self.leaves.clone(),
            output: self.output,
            kinks: self.kinks,
        }
    }

    /// The value of an operand.
    pub(super) fn value(&self, x: u32) -> B {
        if x & CONSTANT_BIT != 0 {
            self.tape.constants[(x & !CONSTANT_BIT) as usize]
        } else {
            self.tape.values[x as usize]
        }
    }

    /// Operations recorded: the cost of a sweep or a replay.
    pub fn len(&self) -> usize {
        self.tape.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tape.entries.is_empty()
    }
}

/// Where each element's leaf entry is, and which tensors the gradient is
/// taken in. The evaluator records the leaves first, tensor by tensor in
/// row-major order: element p of tensor k is then entry `starts[k] + p`,
/// and no table of every element (4 bytes each) is held beside the tape.
#[derive(Clone, Debug)]
pub(super) struct LeafEntries {
    /// Each tensor's shape, and whether the gradient is taken in it.
    pub(super) tensors: Vec<(ndarray::IxDyn, bool)>,
    pub(super) layout: LeafLayout,
}

#[derive(Clone, Debug)]
pub(super) enum LeafLayout {
    /// The entry where each tensor's leaves start, and past the last.
    Runs(Vec<usize>),
    /// The entry of each element, per tensor, where they are not in runs.
    Entries(Vec<ArrayD<u32>>),
}

impl LeafEntries {
    pub(super) fn of(nodes: Vec<ArrayD<u32>>, differentiable: impl Fn(usize) -> bool) -> Self {
        let tensors = nodes
            .iter()
            .enumerate()
            .map(|(k, t)| (t.raw_dim(), differentiable(k)))
            .collect();
        let mut starts = vec![0usize];
        let mut next = 0usize;
        let mut in_runs = true;
        for t in &nodes {
            in_runs &= t.iter().enumerate().all(|(p, &n)| n as usize == next + p);
            next += t.len();
            starts.push(next);
        }
        let layout = if in_runs {
            LeafLayout::Runs(starts)
        } else {
            LeafLayout::Entries(nodes)
        };
        Self { tensors, layout }
    }

    /// Every tensor's elements, data included, written into the entries
    /// they are; `None` where the tensors are not the recording's.
    fn fill<C: Copy>(&self, values: &[ArrayD<C>], into: &mut [C]) -> Option<()> {
        if values.len() != self.tensors.len()
            || values
                .iter()
                .zip(&self.tensors)
                .any(|(v, (shape, _))| v.raw_dim() != *shape)
        {
            return None;
        }
        for (k, tensor) in values.iter().enumerate() {
            match &self.layout {
                LeafLayout::Runs(starts) => {
                    let start = *starts.get(k)?;
                    let run = into.get_mut(start..start.checked_add(tensor.len())?)?;
                    for (slot, v) in run.iter_mut().zip(tensor.iter()) {
                        *slot = *v;
                    }
                }
                LeafLayout::Entries(entries) => {
                    for (&n, v) in entries.get(k)?.iter().zip(tensor.iter()) {
                        *into.get_mut(n as usize)? = *v;
                    }
                }
            }
        }
        Some(())
    }

    /// The entry element `p` (row-major) of tensor `k` is, where the
    /// gradient is taken in that tensor.
    fn differentiable_entry(&self, k: usize, p: usize) -> Option<usize> {
        let (shape, differentiable) = self.tensors.get(k)?;
        if !differentiable || p >= ndarray::Dimension::size(shape) {
            return None;
        }
        match &self.layout {
            LeafLayout::Runs(starts) => starts.get(k)?.checked_add(p),
            // Read as `read` lays the gradient out.
            LeafLayout::Entries(entries) => entries
                .get(k)?
                .as_slice_memory_order()?
                .get(p)
                .map(|&n| n as usize),
        }
    }

    /// Each differentiable tensor's elements read from the entries they
    /// are (`None` for data), laid out as the tensors are.
    fn read<B: Copy>(&self, at: impl Fn(u32) -> B) -> Vec<Option<ArrayD<B>>> {
        self.tensors
            .iter()
            .enumerate()
            .map(|(k, (shape, differentiable))| {
                if !differentiable {
                    return None;
                }
                match &self.layout {
                    LeafLayout::Runs(starts) => {
                        let start = starts.get(k).copied().unwrap_or(0);
                        let values = (0..ndarray::Dimension::size(shape))
                            .map(|p| at((start + p) as u32))
                            .collect();
                        ArrayD::from_shape_vec(shape.clone(), values).ok()
                    }
                    LeafLayout::Entries(entries) => entries.get(k).map(|t| t.mapv(&at)),
                }
            })
            .collect()
    }
}

/// Records one evaluation of L in `B` at `values` (taken as exact in `B`).
pub fn record<B: TapeReal>(
    instance: &Instance<'_>,
    values: &[ArrayD<B>],
) -> Result<Recorded<B>, Box<EvalError>> {
    let limit = instance.operation_limit();
    let recording = Recording::<B>::start(limit)?;
    let tensors = &instance.program.tensors;
    // Every element is recorded as an input, data (the incoming gradient,
    // given values) as well: a replay then reads all of them from the point
    // it runs at, and no value of a point can be silently the recording's.
    let lifted: Vec<ArrayD<Rev<B>>> = values.iter().map(|v| v.mapv(Rev::leaf)).collect();
    let (loss, kinks) = {
        let mut evaluation = instance.evaluation(&lifted);
        // Not `loss_alone`: summing each block of the output as it is made
        // would interleave the tape's entries, and what is summed over
        // them in tape order (L's rounding) would change in its last bits.
        let loss = evaluation.loss()?;
        (loss, evaluation.kinks())
    };
    let mut tape = recording.take();
    if tape.overflowed {
        return Err(recording_too_large(limit));
    }
    let output = tape.operand(loss);
    drop(recording);
    let nodes: Vec<ArrayD<u32>> = lifted.iter().map(|t| t.mapv(|x| x.node)).collect();
    drop(lifted);
    let leaves = LeafEntries::of(nodes, |k| {
        tensors.get(k).is_some_and(|t| t.is_differentiable())
    });
    Ok(Recorded {
        tape,
        leaves,
        output,
        kinks,
    })
}

/// dL/dT for every tensor T by one recorded evaluation of L in `B` and one
/// backward sweep, with each element's path magnitude (see
/// [`ReverseGradient::magnitude`]). The values are taken as exact in `B`.
pub fn reverse_gradient<B: TapeReal>(
    instance: &Instance<'_>,
    values: &[ArrayD<B>],
) -> Result<ReverseGradient<B>, Box<EvalError>> {
    Ok(gradient_of(&recorded_in_time(instance, values)?))
}

/// L recorded at `values`, unless the clock ran out meanwhile.
fn recorded_in_time<B: TapeReal>(
    instance: &Instance<'_>,
    values: &[ArrayD<B>],
) -> Result<Recorded<B>, Box<EvalError>> {
    let recorded = record(instance, values)?;
    instance.check_clock()?;
    Ok(recorded)
}

/// A gradient alone (see [`reverse_adjoints`]).
pub struct Adjoints<B> {
    /// dL/dT per tensor (`None` for data), as [`ReverseGradient::gradient`].
    pub gradient: Vec<Option<ArrayD<B>>>,
    /// Kinks the recording met (see [`ReverseGradient::kinks`]).
    pub kinks: KinkCount,
}

/// dL/dT for every tensor T as [`reverse_gradient`] gives it, by the
/// adjoints' sweep alone: for a reference gradient (in double-double),
/// whose path magnitudes nobody reads, that sweep would double the cost.
pub fn reverse_adjoints<B: TapeReal>(
    instance: &Instance<'_>,
    values: &[ArrayD<B>],
) -> Result<Adjoints<B>, Box<EvalError>> {
    Ok(adjoints_of(&recorded_in_time(instance, values)?))
}

/// The gradient of a recording by the adjoints' sweep alone.
pub fn adjoints_of<B: TapeReal>(recorded: &Recorded<B>) -> Adjoints<B> {
    let adjoint = adjoint_sweep(recorded, vec![B::of(0.0); recorded.len()]);
    Adjoints {
        gradient: leaf_adjoints(recorded, &adjoint),
        kinks: recorded.kinks,
    }
}

/// Every entry's adjoint, swept into `buffer` (zeros, an entry each).
fn adjoint_sweep<B: TapeReal>(recorded: &Recorded<B>, buffer: Vec<B>) -> Vec<B> {
    swept_into(recorded, buffer, |a, partial| a * partial)
}

/// Operations above which a recording is large: the work on it is then
/// ordered to hold less at once (its two sweeps in turn, its replay
/// compiled before the claims start), as it is then that a large layer's
/// memory peaks.
pub const LARGE_RECORDING: usize = 1 << 21;

/// The gradient of a recording, by its backward sweep: for the adjoints
/// and for the path magnitudes in one pass, both buffers held at once, up
/// to [`LARGE_RECORDING`] operations; above, the two sweeps take turns,
/// one buffer held at a time.
pub fn gradient_of<B: TapeReal>(recorded: &Recorded<B>) -> ReverseGradient<B> {
    gradient_swept(recorded, recorded.len() <= LARGE_RECORDING)
}

/// [`gradient_of`], its two sweeps in one pass or in turn.
fn gradient_swept<B: TapeReal>(recorded: &Recorded<B>, together: bool) -> ReverseGradient<B> {
    let zero = B::of(0.0);
    let len = recorded.len();
    let read = |adjoint: &[B]| leaf_adjoints(recorded, adjoint);
    let (gradient, paths) = if together {
        // A sweep reads an adjoint before it adds to it: in zeroed memory
        // that first read maps a shared page of zeros, and the write then
        // copies it, which while another thread of the process works (the
        // replay's compile, beside the derivation) costs each core a flush
        // of its address cache, page by page. Written zeros have no such
        // cost.
        let zeros = || {
            let mut buffer = Vec::with_capacity(len);
            buffer.resize(len, zero);
            buffer
        };
        let (mut adjoint, mut paths) = (seeded(recorded, zeros()), seeded(recorded, zeros()));
        sweep_together(recorded, &mut adjoint, &mut paths);
        (read(&adjoint), paths)
    } else {
        // In turn, one buffer held at a time; in f64 and f32 zeroed memory,
        // of which only the pages a sweep writes are ever held.
        let gradient = read(&adjoint_sweep(recorded, vec![zero; len]));
        (gradient, swept_into(recorded, vec![zero; len], path_term))
    };
    let magnitude = read(&paths)
        .into_iter()
        .map(|g| g.map(|g| g.mapv(Real::value)))
        .collect();
    let rounding = (recorded.tape.entries.iter().zip(&paths))
        .zip(&recorded.tape.values)
        .filter(|((e, _), _)| e.op() != Op::Leaf)
        .map(|((_, a), v)| a.value() * v.value().abs())
        .filter(|r| r.is_finite())
        .sum();
    ReverseGradient {
        gradient,
        magnitude,
        kinks: recorded.kinks,
        rounding,
    }
}

/// A path magnitude's term: the size of one path's product.
fn path_term<B: Real>(a: B, partial: B) -> B {
    B::of((a * partial).value().abs())
}

/// Each tensor's elements' adjoints, read from every entry's.
fn leaf_adjoints<B: TapeReal>(recorded: &Recorded<B>, adjoint: &[B]) -> Vec<Option<ArrayD<B>>> {
    let zero = B::of(0.0);
    (recorded.leaves).read(|x| adjoint.get(x as usize).copied().unwrap_or(zero))
}

/// Every entry's adjoint, from L's of 1, swept into `adjoint` (zeros, an
/// entry each) by [`sweep`].
fn swept_into<B: Real>(
    recorded: &Recorded<B>,
    adjoint: Vec<B>,
    term: impl Fn(B, B) -> B,
) -> Vec<B> {
    let mut adjoint = seeded(recorded, adjoint);
    sweep(recorded, &mut adjoint, term);
    adjoint
}

/// `adjoint` (zeros, an entry each) with L's of 1, where a sweep starts.
fn seeded<B: Real>(recorded: &Recorded<B>, mut adjoint: Vec<B>) -> Vec<B> {
    if let Some(a) = adjoint.get_mut(recorded.output as usize) {
        *a = B::of(1.0);
    }
    adjoint
}

/// The backward sweep: each entry's adjoint, combined with each partial by
/// `term`, added to its operands'. Entries with a zero adjoint are passed
/// over, so an infinite partial that L does not reach gives no `inf · 0`.
fn sweep<B: Real>(recorded: &Recorded<B>, adjoint: &mut [B], term: impl Fn(B, B) -> B) {
    for n in (0..recorded.tape.entries.len()).rev() {
        let a = adjoint[n];
        if a.value() == 0.0 {
            continue;
        }
        for (x, partial) in operand_partials(recorded, n) {
            if let Some(slot) = adjoint.get_mut(x) {
                *slot = *slot + term(a, partial);
            }
        }
    }
}

/// [`sweep`] into the adjoints and the path magnitudes in one pass, each
/// entry's partials computed once for both. Each buffer takes the same
/// additions in the same order as in a sweep of its own, so the two come
/// out bit for bit as two sweeps would give them.
fn sweep_together<B: Real>(recorded: &Recorded<B>, adjoint: &mut [B], paths: &mut [B]) {
    for n in (0..recorded.tape.entries.len()).rev() {
        let (a, p) = (adjoint[n], paths[n]);
        let (a_on, p_on) = (a.value() != 0.0, p.value() != 0.0);
        if !(a_on || p_on) {
            continue;
        }
        for (x, partial) in operand_partials(recorded, n) {
            if a_on && let Some(slot) = adjoint.get_mut(x) {
                *slot = *slot + a * partial;
            }
            if p_on && let Some(slot) = paths.get_mut(x) {
                *slot = *slot + path_term(p, partial);
            }
        }
    }
}

/// Entry `n`'s operands that are entries (not constants), each with the
/// partial of `n` in it; none for a leaf.
fn operand_partials<B: Real>(recorded: &Recorded<B>, n: usize) -> impl Iterator<Item = (usize, B)> {
    let value = |x: u32| recorded.value(x);
    entry_partials(recorded.tape.entries[n], value, recorded.tape.values[n])
}

/// The operands of entry `e` that are entries, each with the partial of
/// `e` in it, from the values of its operands and its own.
fn entry_partials<B: Real>(
    e: Entry,
    value: impl Fn(u32) -> B,
    own: B,
) -> impl Iterator<Item = (usize, B)> {
    let op = e.op();
    let operands = match op {
        Op::Leaf => 0,
        _ if op.is_binary() => 2,
        _ => 1,
    };
    let d = if operands == 0 {
        [B::of(0.0); 2]
    } else {
        partials(op, value(e.a), value(e.b()), own)
    };
    [e.a, e.b()]
        .into_iter()
        .zip(d)
        .take(operands)
        .filter(|&(x, _)| x & CONSTANT_BIT == 0)
        .map(|(x, partial)| (x as usize, partial))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::eval::double_double::Dd;

    /// An entry is 12 bytes and gives back its operation and operands,
    /// a power's exponent included; an operation of one reads `a` twice.
    #[test]
    fn entries_are_twelve_bytes_and_give_back_what_they_hold() {
        assert_eq!(std::mem::size_of::<Entry>(), 12);
        for (i, &op) in OPS.iter().enumerate() {
            assert_eq!(op_index(op), i, "{op:?}");
        }
        let mut ops: Vec<Op> = OPS.to_vec();
        ops.extend([
            Op::Leaf,
            Op::Powi(-3),
            Op::Powi(i32::MIN),
            Op::Powi(i32::MAX),
        ]);
        for op in ops {
            let e = Entry::new(op, 5, CONSTANT_BIT | 9);
            assert_eq!(e.op(), op);
            assert_eq!(e.a, 5);
            let b = if matches!(op, Op::Powi(_)) {
                5
            } else {
                CONSTANT_BIT | 9
            };
            assert_eq!(e.b(), b, "{op:?}");
        }
    }

    /// The leaves' entries read back per tensor are the entries recorded,
    /// in runs (tensor by tensor, row-major) or not, empty tensors and data
    /// (`None`) included.
    #[test]
    fn leaf_entries_read_back_as_recorded() {
        let tensor =
            |shape: Vec<usize>, entries: Vec<u32>| ArrayD::from_shape_vec(shape, entries).unwrap();
        let in_runs = vec![
            tensor(vec![2, 3], vec![0, 1, 2, 3, 4, 5]),
            tensor(vec![0], vec![]),
            tensor(vec![2], vec![6, 7]),
            tensor(vec![1], vec![8]),
        ];
        let shuffled = vec![
            tensor(vec![2, 2], vec![3, 0, 2, 1]),
            tensor(vec![1], vec![4]),
        ];
        for nodes in [in_runs, shuffled] {
            let differentiable = |k: usize| k != 2;
            let leaves = LeafEntries::of(nodes.clone(), differentiable);
            let read = leaves.read(|x| f64::from(x) + 0.5);
            assert_eq!(read.len(), nodes.len());
            for (k, (read, nodes)) in read.iter().zip(&nodes).enumerate() {
                let expected = differentiable(k).then(|| nodes.mapv(|x| f64::from(x) + 0.5));
                assert_eq!(read, &expected, "tensor {k}");
            }
        }
    }

    /// f recorded over leaves at `xs`, held as one tensor: its value and
    /// the recording.
    fn recorded(xs: &[f64], f: impl Fn(&[Rev<f64>]) -> Rev<f64>) -> (f64, Recorded<f64>) {
        let recording = Recording::<f64>::start(MAX_ENTRIES).unwrap();
        let leaves: Vec<Rev<f64>> = xs.iter().map(|&x| Rev::leaf(x)).collect();
        let y = f(&leaves);
        let nodes = ArrayD::from_shape_vec(vec![xs.len()], leaves.iter().map(|l| l.node).collect())
            .unwrap();
        let recorded = Recorded {
            tape: recording.take(),
            leaves: LeafEntries::of(vec![nodes], |_| true),
            output: y.node,
            kinks: KinkCount::default(),
        };
        drop(recording);
        (y.value, recorded)
    }

    /// Records `f` over leaves at `xs`, held as one tensor, and sweeps
    /// it: f, and its gradient and path magnitudes in the leaves.
    fn swept(xs: &[f64], f: impl Fn(&[Rev<f64>]) -> Rev<f64>) -> (f64, [Vec<f64>; 2]) {
        let (y, recorded) = recorded(xs, f);
        let swept = gradient_of(&recorded);
        let read = |t: &[Option<ArrayD<f64>>]| t[0].as_ref().unwrap().iter().copied().collect();
        (y, [read(&swept.gradient), read(&swept.magnitude)])
    }

    /// f and its gradient, as [`swept`] gives them.
    fn grad_of(xs: &[f64], f: impl Fn(&[Rev<f64>]) -> Rev<f64>) -> (f64, Vec<f64>) {
        let (y, [gradient, _]) = swept(xs, f);
        (y, gradient)
    }

    #[test]
    fn sweeps_give_the_derivatives_of_each_operation() {
        // f = x·exp(sin y) / (1 + x²) − sqrt(y) + tanh(x)·y³
        let (x, y) = (0.7, 1.3);
        let (_, g) = grad_of(&[x, y], |v| {
            let one = Rev::constant(1.0);
            v[0] * v[1].sin().exp() / (one + v[0] * v[0]) - v[1].sqrt() + v[0].tanh() * v[1].powi(3)
        });
        let q = 1.0 + x * x;
        let dx = y.sin().exp() * (q - 2.0 * x * x) / (q * q) + (1.0 - x.tanh().powi(2)) * y.powi(3);
        let dy = x * y.sin().exp() * y.cos() / q - 0.5 / y.sqrt() + x.tanh() * 3.0 * y * y;
        assert!((g[0] - dx).abs() < 1e-14 * dx.abs(), "{} vs {dx}", g[0]);
        assert!((g[1] - dy).abs() < 1e-14 * dy.abs(), "{} vs {dy}", g[1]);
    }

    #[test]
    fn magnitudes_go_on_where_adjoints_cancel() {
        // t = x·y reaches L twice with opposite signs: its adjoint is 0,
        // yet each path through it carries |y| of magnitude to x.
        let (x, y) = (2.0, 3.0);
        let (_, [gradient, magnitude]) = swept(&[x, y], |v| {
            let t = v[0] * v[1];
            t - t + v[0]
        });
        assert_eq!(gradient, vec![1.0, 0.0]);
        assert_eq!(magnitude, vec![2.0 * y + 1.0, 2.0 * x]);
    }

    /// The two sweeps in one pass give what they give in turn, bit for
    /// bit (gradient, path magnitudes and rounding alike), and the
    /// adjoints' sweep alone its gradient: f = Σ x_i·x_(i+1) around a ring
    /// of leaves of both signs, whose gradient x_(i−1) + x_(i+1) and path
    /// magnitudes |x_(i−1)| + |x_(i+1)| differ, plus at every fourth i a
    /// product q − q that cancels: its adjoint is 0 and its paths are not,
    /// so each buffer passes over entries the other takes.
    #[test]
    fn sweeps_in_one_pass_give_what_they_give_in_turn() {
        let n = 8192;
        let xs: Vec<f64> = (0..n)
            .map(|i| if i % 3 == 0 { -0.5 } else { 0.25 } * (1.0 + i as f64 / n as f64))
            .collect();
        let (_, recorded) = recorded(&xs, |v| {
            (0..n).fold(Rev::constant(0.0), |f, i| {
                let product = v[i] * v[(i + 1) % n];
                if i.is_multiple_of(4) {
                    let q = v[i] * v[(i + 1) % n];
                    f + product + (q - q)
                } else {
                    f + product
                }
            })
        });
        assert!(recorded.len() <= LARGE_RECORDING);
        let [together, in_turn] = [true, false].map(|side| gradient_swept(&recorded, side));
        let flat = |t: &[Option<ArrayD<f64>>]| -> Vec<f64> {
            t[0].as_ref().unwrap().iter().copied().collect()
        };
        let (gradient, magnitude) = (flat(&together.gradient), flat(&together.magnitude));
        assert_eq!(gradient, flat(&in_turn.gradient));
        // The adjoints' sweep alone gives the same gradient.
        assert_eq!(gradient, flat(&adjoints_of(&recorded).gradient));
        assert_eq!(magnitude, flat(&in_turn.magnitude));
        assert_eq!(together.rounding.to_bits(), in_turn.rounding.to_bits());
        assert!(together.rounding > 0.0);
        for i in 0..n {
            let (before, after) = (xs[(i + n - 1) % n], xs[(i + 1) % n]);
            assert_eq!(gradient[i], before + after, "gradient at {i}");
            // q − q adds two paths to each of its factors.
            let cancelled = |k: usize, other: f64| {
                if k.is_multiple_of(4) {
                    2.0 * other.abs()
                } else {
                    0.0
                }
            };
            let extra = cancelled(i, after) + cancelled((i + n - 1) % n, before);
            assert_eq!(
                magnitude[i],
                before.abs() + after.abs() + extra,
                "magnitude at {i}"
            );
        }
    }

    #[test]
    fn a_reused_value_gathers_every_path() {
        // f = (x + x)·x − x/x: 4x − 0 at x = 3 (the quotient is constant).
        let (f, g) = grad_of(&[3.0], |v| (v[0] + v[0]) * v[0] - v[0] / v[0]);
        assert_eq!(f, 17.0);
        assert_eq!(g[0], 12.0);
    }

    #[test]
    fn tanh_keeps_its_slope_where_tanh_rounds_to_one() {
        let (_, g) = grad_of(&[20.0], |v| v[0].tanh());
        let exact = 4.0 * (-40f64).exp() / (1.0 + (-40f64).exp()).powi(2);
        assert!(g[0] > 0.0 && (g[0] - exact).abs() < 1e-15 * exact);
    }

    #[test]
    fn a_recording_inside_another_is_refused() {
        let outer = Recording::<f64>::start(MAX_ENTRIES).unwrap();
        assert!(Recording::<f64>::start(MAX_ENTRIES).is_err());
        drop(outer);
        assert!(Recording::<f64>::start(MAX_ENTRIES).is_ok());
    }

    /// A recording holds at most the operations its instance allows: at
    /// exactly what L takes it is made; at one fewer it is refused as too
    /// large for the memory, with the limit it passed.
    #[test]
    fn a_recording_holds_at_most_the_operations_allowed() {
        crate::test_support::with_instance(crate::test_support::CUMSUM, |_, instance| {
            let values = crate::eval::draw_values(instance, 0).unwrap();
            let whole = record(instance, &values).unwrap().len();
            assert!(whole > 40 * 41 / 2, "{whole}");
            instance.limit_operations(whole);
            assert_eq!(record(instance, &values).unwrap().len(), whole);
            instance.limit_operations(whole - 1);
            let refused = record(instance, &values).unwrap_err();
            assert!(
                matches!(*refused, EvalError::RecordingTooLarge { operations, .. } if operations == whole - 1),
                "{refused:?}"
            );
        });
    }

    /// A tape holds exactly its limit of entries, and a decision noted
    /// after the last (a guard adds no entry); the next entry voids it,
    /// and from then on an evaluation over the recording stops where it
    /// looks at the clock.
    #[test]
    fn a_tape_holds_its_limit_and_stops_the_evaluation_past_it() {
        let read = || f64::with_tape(|t| (t.entries.len(), t.guards.len(), t.overflowed));
        let recording = Recording::<f64>::start(2).unwrap();
        let (a, b) = (Rev::leaf(1.0), Rev::leaf(2.0));
        assert_eq!(a.order(&b), Some(std::cmp::Ordering::Less));
        assert_eq!(read(), (2, 1, false));
        assert!(!<Rev<f64> as Scalar>::recording_overflowed());
        let sum = a + b;
        assert_eq!(sum.node, CONSTANT);
        assert_eq!(read(), (2, 1, true));
        assert!(<Rev<f64> as Scalar>::recording_overflowed());
        drop(recording);

        crate::test_support::with_instance(crate::test_support::CUMSUM, |_, instance| {
            let values = crate::eval::draw_values(instance, 0).unwrap();
            for (limit, stops) in [(1000, false), (10, true)] {
                let recording = Recording::<f64>::start(limit).unwrap();
                let lifted: Vec<ArrayD<Rev<f64>>> =
                    values.iter().map(|v| v.mapv(Rev::leaf)).collect();
                let evaluation = instance.evaluation(&lifted);
                let clock = evaluation.check_clock();
                assert_eq!(clock.is_err(), stops, "{clock:?}");
                if let Err(e) = clock {
                    assert!(matches!(*e, EvalError::RecordingTooLarge { .. }), "{e:?}");
                }
                drop(recording);
            }
        });
    }

    /// Calls `f` with L recorded in f64, and the values it was recorded at
    /// in double-double, at values drawn from seeds 1 and 2, for each spec
    /// with a layer or loss where L is defined there.
    fn for_each_recording(
        mut f: impl FnMut(&std::path::Path, &Instance<'_>, Recorded<f64>, &[ArrayD<Dd>]),
    ) {
        crate::test_support::for_each_spec_with_a_loss(|path, _, instance| {
            for seed in [1, 2] {
                let Ok(values) = crate::eval::draw_values(instance, seed) else {
                    return;
                };
                let lifted: Vec<ArrayD<Dd>> = values.iter().map(|v| v.mapv(Dd::from_f64)).collect();
                if let Ok(recorded) = record(instance, &values) {
                    f(path, instance, recorded, &lifted);
                }
            }
        });
    }

    /// The recording in f64 carried out again in double-double is the
    /// recording the evaluator makes in double-double, bit for bit
    /// (entries, values, constants, guards, kinks, and so the gradient),
    /// wherever it is accepted, over every spec with a layer or loss at
    /// values drawn from two seeds; refused where a constant was computed
    /// in f64 or a decision goes the other way.
    #[test]
    fn a_recording_carried_out_in_double_double_is_the_one_made_there() {
        let (mut again, mut refused) = (0, 0);
        for_each_recording(|path, instance, recorded, lifted| {
            let Ok(direct) = record(instance, lifted) else {
                return;
            };
            let Some(carried) = recorded.in_type::<Dd>(lifted) else {
                refused += 1;
                return;
            };
            again += 1;
            let bits = |v: &[Dd]| -> Vec<(u64, u64)> {
                v.iter().map(|d| (d.hi.to_bits(), d.lo.to_bits())).collect()
            };
            let (a, b) = (&carried.tape, &direct.tape);
            assert_eq!(
                format!("{:?}", a.entries),
                format!("{:?}", b.entries),
                "{path:?}"
            );
            assert_eq!(bits(&a.values), bits(&b.values), "{path:?}: values");
            assert_eq!(
                bits(&a.constants),
                bits(&b.constants),
                "{path:?}: constants"
            );
            assert_eq!(
                format!("{:?}", a.guards),
                format!("{:?}", b.guards),
                "{path:?}"
            );
            assert_eq!(carried.output, direct.output, "{path:?}");
            assert_eq!(
                format!("{:?}", carried.kinks),
                format!("{:?}", direct.kinks)
            );
            let gradient = |r: &Recorded<Dd>| -> Vec<Vec<(u64, u64)>> {
                adjoints_of(r)
                    .gradient
                    .iter()
                    .flatten()
                    .map(|g| bits(&g.iter().copied().collect::<Vec<_>>()))
                    .collect()
            };
            assert_eq!(gradient(&carried), gradient(&direct), "{path:?}: gradient");
        });
        assert!(
            again > 300 && refused > 0,
            "{again} carried out again, {refused} refused"
        );
    }

    /// Partials swept back over the operations some elements reach are
    /// those of the whole recording carried out again, bit for bit,
    /// element by element and for elements spread over the tensors;
    /// refused where that is refused, or where they reach more operations
    /// than allowed.
    #[test]
    fn partials_swept_over_what_the_elements_reach_are_the_whole_sweeps() {
        let (mut compared, mut refused_parts) = (0, 0);
        for_each_recording(|path, _, recorded, lifted| {
            let whole = recorded
                .in_type::<Dd>(lifted)
                .map(|r| adjoints_of(&r).gradient);
            let elements: Vec<(usize, usize)> = lifted
                .iter()
                .enumerate()
                .filter(|(k, _)| recorded.leaves.tensors[*k].1)
                .flat_map(|(k, v)| (0..v.len()).map(move |p| (k, p)))
                .collect();
            let bits = |d: &Dd| (d.hi.to_bits(), d.lo.to_bits());
            let from_whole = |(k, p): (usize, usize)| -> Option<Dd> {
                let g = whole.as_ref()?.get(k)?.as_ref()?;
                g.as_slice_memory_order()?.get(p).copied()
            };
            // Each element alone (a few of a large tensor), then every
            // seventh together.
            let step = (elements.len() / 40).max(1);
            let alone = elements.iter().step_by(step).map(std::slice::from_ref);
            let spread: Vec<(usize, usize)> = elements.iter().copied().step_by(7).collect();
            for asked in alone.chain(std::iter::once(spread.as_slice())) {
                if asked.is_empty() {
                    continue;
                }
                let part = recorded.partials_in_type::<Dd>(lifted, asked, usize::MAX);
                let expected: Option<Vec<Dd>> = asked.iter().map(|&e| from_whole(e)).collect();
                let finite = expected
                    .as_ref()
                    .is_some_and(|e| e.iter().all(|d| d.to_f64().is_finite()));
                let expected: Option<Vec<(u64, u64)>> =
                    expected.map(|e| e.iter().map(bits).collect());
                let part_bits = part
                    .as_ref()
                    .map(|p| p.iter().map(bits).collect::<Vec<_>>());
                match part {
                    Some(_) => {
                        compared += 1;
                        assert_eq!(part_bits, expected, "{path:?} {asked:?}");
                    }
                    None => assert!(
                        whole.is_none() || !finite,
                        "{path:?} {asked:?}: refused where the whole recording is carried out"
                    ),
                }
                // Allowed exactly the operations the elements reach,
                // they are carried out; allowed one fewer, refused.
                let leaves: Vec<usize> = asked
                    .iter()
                    .map(|&(k, p)| recorded.leaves.differentiable_entry(k, p).unwrap())
                    .collect();
                let reached = reached_from(&recorded.tape, &leaves, usize::MAX).unwrap();
                let operations = (reached.iter().zip(&recorded.tape.entries))
                    .filter(|&(&r, e)| r && e.op() != Op::Leaf)
                    .count();
                if let Some(fewer) = operations.checked_sub(1) {
                    assert!(
                        recorded
                            .partials_in_type::<Dd>(lifted, asked, fewer)
                            .is_none()
                    );
                    refused_parts += 1;
                }
                let exactly = recorded.partials_in_type::<Dd>(lifted, asked, operations);
                assert_eq!(
                    exactly.map(|p| p.iter().map(bits).collect::<Vec<_>>()),
                    part_bits,
                    "{path:?} {asked:?}"
                );
            }
        });
        assert!(
            compared > 1000 && refused_parts > 1000,
            "{compared} compared, {refused_parts} refused for their size"
        );
    }
}
