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

use super::double_double::{Dd, Real};
use super::{EvalError, Instance, KinkCount, Scalar};

/// The node of a constant: it has no entry on the tape.
const CONSTANT: u32 = u32::MAX;

/// Entries a tape may hold: indices are `u32`, and at 24 bytes an entry
/// this is 96 GiB, far past any size `--max-elements` lets through.
const MAX_ENTRIES: usize = (u32::MAX - 1) as usize;

/// A number being recorded: its value and its entry on the tape.
#[derive(Clone, Copy, Debug)]
pub struct Rev<B> {
    value: B,
    node: u32,
}

/// One operation: the entries it read and its partial derivative in each
/// (`CONSTANT` where it read fewer than two).
#[derive(Clone, Copy, Debug)]
struct Entry<B> {
    parents: [u32; 2],
    partials: [B; 2],
}

/// A base type with a thread-local tape of its own.
pub trait TapeReal: Real {
    #[doc(hidden)]
    fn with_tape<R>(f: impl FnOnce(&mut Tape<Self>) -> R) -> R;
    /// tanh as forward mode computes its value over this base, to the
    /// bit: reverse and forward mode must see the same forward pass, or an
    /// ulp apart in `t` becomes a difference far beyond rounding in a
    /// cancelling `1 + t`.
    fn tanh_as_forward(self) -> Self;
}

/// The operations recorded so far, in order.
#[doc(hidden)]
#[derive(Debug)]
pub struct Tape<B> {
    entries: Vec<Entry<B>>,
    /// Whether a recording holds the tape (see [`record`]).
    busy: bool,
    /// More operations were recorded than indices allow: the recording is void.
    overflowed: bool,
}

impl<B> Tape<B> {
    const fn new() -> Self {
        Self {
            entries: Vec::new(),
            busy: false,
            overflowed: false,
        }
    }
}

thread_local! {
    static F64_TAPE: RefCell<Tape<f64>> = const { RefCell::new(Tape::new()) };
    static DD_TAPE: RefCell<Tape<Dd>> = const { RefCell::new(Tape::new()) };
}

impl TapeReal for f64 {
    fn with_tape<R>(f: impl FnOnce(&mut Tape<Self>) -> R) -> R {
        F64_TAPE.with(|t| f(&mut t.borrow_mut()))
    }
    /// The bounded form [`Scalar::tanh`] gives num-dual's numbers.
    fn tanh_as_forward(self) -> Self {
        let (sign, a) = if self < 0.0 {
            (-1.0, -self)
        } else {
            (1.0, self)
        };
        let m = (a * -2.0).exp_m1();
        sign * (-m / (m + 2.0))
    }
}

impl TapeReal for Dd {
    fn with_tape<R>(f: impl FnOnce(&mut Tape<Self>) -> R) -> R {
        DD_TAPE.with(|t| f(&mut t.borrow_mut()))
    }
    /// Double-double duals take `Dd::tanh`.
    fn tanh_as_forward(self) -> Self {
        self.tanh()
    }
}

impl<B: TapeReal> Rev<B> {
    fn constant_of(value: B) -> Self {
        Self {
            value,
            node: CONSTANT,
        }
    }

    /// A new entry reading `parents` with the given partials; a constant
    /// where it reads no recorded number.
    fn push(value: B, parents: [(u32, B); 2]) -> Self {
        let zero = B::of(0.0);
        // A constant operand contributes nothing: keep the others first.
        let mut kept = [(CONSTANT, zero); 2];
        let mut n = 0;
        for p in parents {
            if p.0 != CONSTANT {
                kept[n] = p;
                n += 1;
            }
        }
        if n == 0 {
            return Self::constant_of(value);
        }
        let node = B::with_tape(|tape| {
            if tape.entries.len() >= MAX_ENTRIES {
                tape.overflowed = true;
                return CONSTANT;
            }
            let node = tape.entries.len() as u32;
            tape.entries.push(Entry {
                parents: [kept[0].0, kept[1].0],
                partials: [kept[0].1, kept[1].1],
            });
            node
        });
        Self { value, node }
    }

    /// f(self) with derivative `slope`: the chain rule.
    fn unary(self, value: B, slope: B) -> Self {
        Self::push(value, [(self.node, slope), (CONSTANT, B::of(0.0))])
    }

    /// A leaf: an element the gradient is taken with respect to.
    fn leaf(value: B) -> Self {
        let zero = B::of(0.0);
        let node = B::with_tape(|tape| {
            if tape.entries.len() >= MAX_ENTRIES {
                tape.overflowed = true;
                return CONSTANT;
            }
            let node = tape.entries.len() as u32;
            tape.entries.push(Entry {
                parents: [CONSTANT; 2],
                partials: [zero; 2],
            });
            node
        });
        Self { value, node }
    }
}

impl<B: TapeReal> Add for Rev<B> {
    type Output = Self;
    fn add(self, b: Self) -> Self {
        let one = B::of(1.0);
        Self::push(self.value + b.value, [(self.node, one), (b.node, one)])
    }
}

impl<B: TapeReal> Sub for Rev<B> {
    type Output = Self;
    fn sub(self, b: Self) -> Self {
        Self::push(
            self.value - b.value,
            [(self.node, B::of(1.0)), (b.node, B::of(-1.0))],
        )
    }
}

impl<B: TapeReal> Mul for Rev<B> {
    type Output = Self;
    fn mul(self, b: Self) -> Self {
        Self::push(
            self.value * b.value,
            [(self.node, b.value), (b.node, self.value)],
        )
    }
}

impl<B: TapeReal> Div for Rev<B> {
    type Output = Self;
    fn div(self, b: Self) -> Self {
        let q = self.value / b.value;
        let r = B::of(1.0) / b.value;
        Self::push(q, [(self.node, r), (b.node, -(q * r))])
    }
}

impl<B: TapeReal> Neg for Rev<B> {
    type Output = Self;
    fn neg(self) -> Self {
        self.unary(-self.value, B::of(-1.0))
    }
}

impl<B: TapeReal> AddAssign for Rev<B> {
    fn add_assign(&mut self, b: Self) {
        *self = *self + b;
    }
}

impl<B: TapeReal> Scalar for Rev<B> {
    fn constant(v: f64) -> Self {
        Self::constant_of(B::of(v))
    }
    fn real(&self) -> f64 {
        self.value.value()
    }
    fn exp(self) -> Self {
        let e = self.value.exp();
        self.unary(e, e)
    }
    fn ln(self) -> Self {
        self.unary(self.value.ln(), B::of(1.0) / self.value)
    }
    fn ln_1p(self) -> Self {
        self.unary(self.value.ln_1p(), B::of(1.0) / (B::of(1.0) + self.value))
    }
    fn sqrt(self) -> Self {
        let f = self.value.sqrt();
        self.unary(f, B::of(1.0) / (f + f))
    }
    fn abs(self) -> Self {
        // As num-dual and the forward duals: the positive branch at +0.
        let v = self.value.value();
        if v > 0.0 || (v == 0.0 && v.is_sign_positive()) {
            self
        } else {
            -self
        }
    }
    fn tanh(self) -> Self {
        let t = self.value.tanh_as_forward();
        // 1 − t² loses every digit once t rounds to ±1; 4m/(1 + m)² with
        // m = e^(−2|x|) keeps them, as the forward duals' bounded form does.
        let slope = if self.value.value().abs() > 0.5 {
            let a = if self.value.value() < 0.0 {
                -self.value
            } else {
                self.value
            };
            let m = (a * B::of(-2.0)).exp();
            let d = B::of(1.0) + m;
            B::of(4.0) * m / (d * d)
        } else {
            B::of(1.0) - t * t
        };
        self.unary(t, slope)
    }
    fn sin(self) -> Self {
        let (s, c) = self.value.sin_cos();
        self.unary(s, c)
    }
    fn cos(self) -> Self {
        let (s, c) = self.value.sin_cos();
        self.unary(c, -s)
    }
    fn recip(self) -> Self {
        let r = B::of(1.0) / self.value;
        self.unary(r, -(r * r))
    }
    fn powi(self, k: i32) -> Self {
        if k == 0 {
            return Self::constant_of(B::of(1.0));
        }
        self.unary(
            self.value.powi(k),
            self.value.powi(k - 1) * B::of(f64::from(k)),
        )
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
    /// Operations recorded: the cost of the sweep.
    pub entries: usize,
}

/// Holds the thread's tape of `B` for one recording, and clears it after.
struct Recording<B: TapeReal>(std::marker::PhantomData<B>);

impl<B: TapeReal> Recording<B> {
    fn start() -> Result<Self, Box<EvalError>> {
        B::with_tape(|tape| {
            if tape.busy {
                return Err(Box::new(EvalError::Internal {
                    what: "a reverse-mode recording was started inside another".to_string(),
                }));
            }
            tape.busy = true;
            tape.overflowed = false;
            tape.entries.clear();
            Ok(Self(std::marker::PhantomData))
        })
    }
}

impl<B: TapeReal> Drop for Recording<B> {
    fn drop(&mut self) {
        B::with_tape(|tape| {
            tape.busy = false;
            tape.entries = Vec::new();
        });
    }
}

/// dL/dT for every tensor T by one recorded evaluation of L in `B` and one
/// backward sweep, with each element's path magnitude (see
/// [`ReverseGradient::magnitude`]). The values are taken as exact in `B`.
pub fn reverse_gradient<B: TapeReal>(
    instance: &Instance<'_>,
    values: &[ArrayD<B>],
) -> Result<ReverseGradient<B>, Box<EvalError>> {
    let recording = Recording::<B>::start()?;
    let tensors = &instance.program.tensors;
    let lifted: Vec<ArrayD<Rev<B>>> = values
        .iter()
        .enumerate()
        .map(|(k, v)| {
            if tensors.get(k).is_some_and(|t| t.is_differentiable()) {
                v.mapv(Rev::leaf)
            } else {
                v.mapv(Rev::constant_of)
            }
        })
        .collect();
    let (loss, kinks) = {
        let mut evaluation = instance.evaluation(&lifted);
        let loss = evaluation.loss()?;
        (loss, evaluation.kinks())
    };
    let tape = B::with_tape(|tape| {
        if tape.overflowed {
            return Err(Box::new(EvalError::Internal {
                what: format!(
                    "the reverse-mode tape of L needs more than {MAX_ENTRIES} operations"
                ),
            }));
        }
        Ok(std::mem::take(&mut tape.entries))
    })?;
    drop(recording);
    instance.check_clock()?;
    let zero = B::of(0.0);
    // Adjoints first, then (in the same buffer) the path magnitudes.
    let mut adjoint = vec![zero; tape.len()];
    if let Some(a) = adjoint.get_mut(loss.node as usize) {
        *a = B::of(1.0);
    }
    sweep(&tape, &mut adjoint, |a, partial| a * partial);
    let gradient = read_leaves(&lifted, &adjoint, zero);
    adjoint.iter_mut().for_each(|a| *a = zero);
    if let Some(a) = adjoint.get_mut(loss.node as usize) {
        *a = B::of(1.0);
    }
    sweep(&tape, &mut adjoint, |a, partial| {
        B::of((a * partial).value().abs())
    });
    let magnitude = read_leaves(&lifted, &adjoint, zero)
        .into_iter()
        .map(|g| g.map(|g| g.mapv(Real::value)))
        .collect();
    Ok(ReverseGradient {
        gradient,
        magnitude,
        kinks,
        entries: tape.len(),
    })
}

/// The backward sweep: each entry's adjoint, combined with each partial by
/// `term`, added to its parents'. Entries with a zero adjoint are passed
/// over, so an infinite partial that L does not reach gives no `inf · 0`.
fn sweep<B: Real>(tape: &[Entry<B>], adjoint: &mut [B], term: impl Fn(B, B) -> B) {
    for n in (0..tape.len()).rev() {
        let a = adjoint[n];
        if a.value() == 0.0 {
            continue;
        }
        let entry = &tape[n];
        for (&p, &partial) in entry.parents.iter().zip(&entry.partials) {
            if let Some(slot) = adjoint.get_mut(p as usize) {
                *slot = *slot + term(a, partial);
            }
        }
    }
}

/// The adjoints of the leaves, laid out as the tensors are.
fn read_leaves<B: Real>(
    lifted: &[ArrayD<Rev<B>>],
    adjoint: &[B],
    zero: B,
) -> Vec<Option<ArrayD<B>>> {
    lifted
        .iter()
        .map(|t| {
            let leaves = t.iter().any(|x| x.node != CONSTANT);
            leaves.then(|| t.mapv(|x| adjoint.get(x.node as usize).copied().unwrap_or(zero)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Records `f` over leaves at `xs` and returns f and its gradient.
    fn grad_of(xs: &[f64], f: impl Fn(&[Rev<f64>]) -> Rev<f64>) -> (f64, Vec<f64>) {
        let recording = Recording::<f64>::start().unwrap();
        let leaves: Vec<Rev<f64>> = xs.iter().map(|&x| Rev::leaf(x)).collect();
        let y = f(&leaves);
        let tape = f64::with_tape(|t| std::mem::take(&mut t.entries));
        drop(recording);
        let mut adjoint = vec![0.0; tape.len()];
        adjoint[y.node as usize] = 1.0;
        sweep(&tape, &mut adjoint, |a, p| a * p);
        (
            y.value,
            leaves.iter().map(|l| adjoint[l.node as usize]).collect(),
        )
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
        let outer = Recording::<f64>::start().unwrap();
        assert!(Recording::<f64>::start().is_err());
        drop(outer);
        assert!(Recording::<f64>::start().is_ok());
    }
}
