//! Tapes: one point of an expression over random tensors, compiled to a
//! straight-line program whose inputs are the random elements it reads.
//!
//! Sampling a moment by re-running the evaluator would walk the expression
//! tree once per node per sample. A tape is built once per point by partial
//! evaluation instead: every subexpression that reads no random tensor is
//! evaluated by the evaluator itself (so its value and its errors are
//! exactly the evaluator's) and becomes a constant; what remains mirrors
//! [`Evaluation::node`] step by step: the same f64 operations in the same
//! order, the same domain checks, and the same laziness (the strong zero of
//! `[c] * x`, cases, `and`, `or`, comparison chains) through forward skips.
//! A run with given draws gives bit for bit the value the evaluator would
//! give, or the error it would raise, built from a template recorded with
//! the step (`tests::tape_agrees_with_the_evaluator` holds it to that).
//!
//! Stochastic lets are inlined at the elements read, once per tape. The
//! inputs of a tape are exactly the random elements the point can read:
//! what exact enumeration needs to know.

use std::collections::HashMap;

use super::{
    CLOCK_STRIDE, Cascade, EvalError, Evaluation, Frame, UNBOUND, apply, cases_disagree,
    domain_help, format_value,
};
use crate::analysis::program::*;
use crate::source::Span;
use crate::syntax::ast::{BinaryOp, CompareOp, ReduceOp};

/// A register of a tape: inputs, constants and step results.
type Reg = u32;

/// Samples a batch run takes at once.
pub const LANES: usize = 64;

/// Steps per tape, past which a point is refused rather than compiled.
const MAX_STEPS: usize = 1 << 22;

/// One random element a tape reads: the tensor and the row-major offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RandomElement {
    pub tensor: TensorId,
    pub offset: usize,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Neg(Reg),
    Add(Reg, Reg),
    Sub(Reg, Reg),
    Mul(Reg, Reg),
    /// Faults when the divisor is 0.
    Div(Reg, Reg, u32),
    /// A real power `a ^ b`: faults unless the base is positive.
    Pow(Reg, Reg, u32),
    /// `a ^ k`: faults for a negative power of 0.
    PowInt(Reg, i32, u32),
    /// A function of one or two arguments, with its domain check.
    Call(Function, Reg, Reg, u32),
    /// The running `max` (`min`) of a reduction: the new term where greater (less).
    ReduceMax(Reg, Reg),
    ReduceMin(Reg, Reg),
    /// 1 where the comparison holds, else 0.
    Compare(CompareOp, Reg, Reg),
    Not(Reg),
    /// `cond != 0 ? then : otherwise`.
    Select(Reg, Reg, Reg),
    /// Where `cond` is 0, the next `len` steps are skipped.
    Skip(Reg, u32),
    /// A case that holds: its value where none held before, else the first
    /// value, after checking that the two agree.
    Merge {
        have: Reg,
        first: Reg,
        first_case: Reg,
        value: Reg,
        fault: u32,
    },
    /// Faults where the register holds a value that is not finite.
    Finite(Reg, u32),
    /// Faults where no case held.
    SomeCase(Reg, u32),
    /// Faults whenever reached: an error of the evaluator, recorded.
    Fail(u32),
}

#[derive(Clone, Copy, Debug)]
struct Step {
    op: Op,
    out: Reg,
}

/// How to report a fault: the evaluator's error with the run's values filled in.
#[derive(Clone, Debug)]
enum Fault {
    /// Complete when recorded.
    Fixed(EvalError),
    /// An [`EvalError::Domain`] whose `value` is the faulting operand.
    Domain(EvalError),
    /// An [`EvalError::NonFinite`] whose `value` is the faulting value.
    NonFinite(EvalError),
    /// Two cases disagree: the cases' spans; the first case and both values
    /// come from the run.
    Ambiguous {
        at: String,
        cases: Vec<Span>,
        second: usize,
    },
}

/// A run that stopped at a fault: which one, with the values it needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stop {
    fault: u32,
    values: [f64; 3],
}

/// One point of an expression over random tensors, ready to run.
#[derive(Clone, Debug)]
pub struct Tape {
    steps: Vec<Step>,
    /// The register file before a run: constants in place, the rest NaN.
    registers: Vec<f64>,
    inputs: Vec<RandomElement>,
    input_registers: Vec<Reg>,
    faults: Vec<Fault>,
    output: Reg,
    /// The largest magnitude among the constants: a scale for rounding.
    constant_magnitude: f64,
}

impl Tape {
    /// The random elements the point reads, in input order.
    pub fn inputs(&self) -> &[RandomElement] {
        &self.inputs
    }

    /// Steps a run takes at most: the n of a rounding bound.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn constant_magnitude(&self) -> f64 {
        self.constant_magnitude
    }

    /// Bounds on the output over every run whose inputs lie in the given
    /// ranges, by interval arithmetic over every step (skipped or not, so
    /// the bounds are conservative); infinite where nothing bounds it.
    pub fn output_range(&self, inputs: &[(f64, f64)]) -> (f64, f64) {
        const ALL: (f64, f64) = (f64::NEG_INFINITY, f64::INFINITY);
        let mut r: Vec<(f64, f64)> = self.registers.iter().map(|&v| (v, v)).collect();
        for (&reg, &range) in self.input_registers.iter().zip(inputs) {
            if let Some(slot) = r.get_mut(reg as usize) {
                *slot = range;
            }
        }
        for step in &self.steps {
            let at = |k: Reg| r.get(k as usize).copied().unwrap_or(ALL);
            let v = match step.op {
                Op::Neg(a) => (-at(a).1, -at(a).0),
                Op::Add(a, b) => (at(a).0 + at(b).0, at(a).1 + at(b).1),
                Op::Sub(a, b) => (at(a).0 - at(b).1, at(a).1 - at(b).0),
                Op::Mul(a, b) => hull_of_products(at(a), at(b), |x, y| x * y),
                Op::Div(a, b, _) => {
                    let d = at(b);
                    if d.0 <= 0.0 && d.1 >= 0.0 {
                        ALL
                    } else {
                        hull_of_products(at(a), d, |x, y| x / y)
                    }
                }
                Op::PowInt(a, k, _) => {
                    let (lo, hi) = at(a);
                    let ends = (lo.powi(k), hi.powi(k));
                    let spans_zero = lo <= 0.0 && hi >= 0.0;
                    match (spans_zero, k) {
                        (true, k) if k < 0 => ALL,
                        (true, k) if k % 2 == 0 => (0.0, ends.0.max(ends.1)),
                        _ => (ends.0.min(ends.1), ends.0.max(ends.1)),
                    }
                }
                Op::Call(f, x, y, _) => call_range(f, at(x), at(y)),
                Op::ReduceMax(a, b) => (at(a).0.max(at(b).0), at(a).1.max(at(b).1)),
                Op::ReduceMin(a, b) => (at(a).0.min(at(b).0), at(a).1.min(at(b).1)),
                Op::Compare(..) | Op::Not(_) => (0.0, 1.0),
                Op::Select(_, a, b)
                | Op::Merge {
                    first: a, value: b, ..
                } => (at(a).0.min(at(b).0), at(a).1.max(at(b).1)),
                Op::Pow(..) => ALL,
                Op::Skip(..) | Op::Finite(..) | Op::SomeCase(..) | Op::Fail(_) => continue,
            };
            let v = if v.0.is_nan() || v.1.is_nan() { ALL } else { v };
            if let Some(slot) = r.get_mut(step.out as usize) {
                *slot = v;
            }
        }
        r.get(self.output as usize).copied().unwrap_or(ALL)
    }

    /// A register file for runs of this tape (constants in place).
    pub fn registers(&self) -> Vec<f64> {
        self.registers.clone()
    }

    /// Sets input `k` (in the order of [`Tape::inputs`]) before a run.
    #[inline]
    pub fn set_input(&self, registers: &mut [f64], k: usize, value: f64) {
        if let Some(slot) = self
            .input_registers
            .get(k)
            .and_then(|&r| registers.get_mut(r as usize))
        {
            *slot = value;
        }
    }

    /// Runs the tape on the inputs set in `r`: the value, or where it stopped.
    pub fn run(&self, r: &mut [f64]) -> Result<f64, Stop> {
        let mut pc = 0;
        while let Some(step) = self.steps.get(pc) {
            pc += 1;
            let at = |k: Reg| r[k as usize];
            let stop = |fault: u32, values: [f64; 3]| Stop { fault, values };
            let v = match step.op {
                Op::Neg(a) => -at(a),
                Op::Add(a, b) => at(a) + at(b),
                Op::Sub(a, b) => at(a) - at(b),
                Op::Mul(a, b) => at(a) * at(b),
                Op::Div(a, b, f) => {
                    if at(b) == 0.0 {
                        return Err(stop(f, [at(a), 0.0, 0.0]));
                    }
                    at(a) / at(b)
                }
                Op::Pow(a, b, f) => {
                    if at(a) <= 0.0 {
                        return Err(stop(f, [at(a), 0.0, 0.0]));
                    }
                    (at(b) * at(a).ln()).exp()
                }
                Op::PowInt(a, k, f) => {
                    if k < 0 && at(a) == 0.0 {
                        return Err(stop(f, [at(a), 0.0, 0.0]));
                    }
                    at(a).powi(k)
                }
                Op::Call(function, x, y, f) => match apply(function, at(x), at(y)) {
                    Some(v) => v,
                    None => return Err(stop(f, [at(x), 0.0, 0.0])),
                },
                Op::ReduceMax(a, v) => {
                    if at(v) > at(a) {
                        at(v)
                    } else {
                        at(a)
                    }
                }
                Op::ReduceMin(a, v) => {
                    if at(v) < at(a) {
                        at(v)
                    } else {
                        at(a)
                    }
                }
                Op::Compare(op, a, b) => f64::from(u8::from(op.holds(at(a), at(b)))),
                Op::Not(a) => f64::from(u8::from(at(a) == 0.0)),
                Op::Select(c, a, b) => {
                    if at(c) != 0.0 {
                        at(a)
                    } else {
                        at(b)
                    }
                }
                Op::Skip(c, len) => {
                    if at(c) == 0.0 {
                        pc += len as usize;
                    }
                    continue;
                }
                Op::Merge {
                    have,
                    first,
                    first_case,
                    value,
                    fault,
                } => {
                    if at(have) == 0.0 {
                        at(value)
                    } else {
                        let (a, b) = (at(first), at(value));
                        if cases_disagree(a, b) {
                            return Err(stop(fault, [a, b, at(first_case)]));
                        }
                        a
                    }
                }
                Op::Finite(a, f) => {
                    if !at(a).is_finite() {
                        return Err(stop(f, [at(a), 0.0, 0.0]));
                    }
                    continue;
                }
                Op::SomeCase(have, f) => {
                    if at(have) == 0.0 {
                        return Err(stop(f, [0.0; 3]));
                    }
                    continue;
                }
                Op::Fail(f) => return Err(stop(f, [0.0; 3])),
            };
            r[step.out as usize] = v;
        }
        Ok(r[self.output as usize])
    }

    /// Whether runs may go [`LANES`] samples at a time: a tape without
    /// skips runs every step for every sample.
    pub fn batchable(&self) -> bool {
        !self.steps.iter().any(|s| matches!(s.op, Op::Skip(..)))
    }

    /// A register file for batch runs: each register's [`LANES`] lanes in a row.
    pub fn batch_registers(&self) -> Vec<f64> {
        self.registers
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v, LANES))
            .collect()
    }

    /// The lanes of input `k`, to fill before a batch run.
    pub fn input_lanes<'r>(&self, registers: &'r mut [f64], k: usize) -> &'r mut [f64] {
        let start = self
            .input_registers
            .get(k)
            .map_or(0, |&r| r as usize * LANES);
        registers.get_mut(start..start + LANES).unwrap_or(&mut [])
    }

    /// The output lanes after a batch run.
    pub fn output_lanes<'r>(&self, registers: &'r [f64]) -> &'r [f64] {
        let start = self.output as usize * LANES;
        registers.get(start..start + LANES).unwrap_or(&[])
    }

    /// Runs [`LANES`] samples at once, step by step over every lane: the
    /// same operations as [`Tape::run`], so the same values. `false` when
    /// some lane would stop: run those lanes one by one to learn where.
    pub fn run_batch(&self, r: &mut [f64]) -> bool {
        type Lanes = [f64; LANES];
        const NANS: Lanes = [f64::NAN; LANES];
        fn lanes(r: &[f64], k: Reg) -> &Lanes {
            let start = k as usize * LANES;
            r.get(start..start + LANES)
                .and_then(|s| <&Lanes>::try_from(s).ok())
                .unwrap_or(&NANS)
        }
        let map1 = |a: &Lanes, f: &dyn Fn(f64) -> f64| -> Lanes { a.map(f) };
        let map2 = |a: &Lanes, b: &Lanes, f: fn(f64, f64) -> f64| -> Lanes {
            let mut out = [0.0; LANES];
            for l in 0..LANES {
                out[l] = f(a[l], b[l]);
            }
            out
        };
        for step in &self.steps {
            let v: Lanes = match step.op {
                Op::Neg(a) => map1(lanes(r, a), &|x| -x),
                Op::Add(a, b) => map2(lanes(r, a), lanes(r, b), |x, y| x + y),
                Op::Sub(a, b) => map2(lanes(r, a), lanes(r, b), |x, y| x - y),
                Op::Mul(a, b) => map2(lanes(r, a), lanes(r, b), |x, y| x * y),
                Op::Div(a, b, _) => {
                    let d = lanes(r, b);
                    if d.contains(&0.0) {
                        return false;
                    }
                    map2(lanes(r, a), d, |x, y| x / y)
                }
                Op::Pow(a, b, _) => {
                    let base = lanes(r, a);
                    if base.iter().any(|&x| x <= 0.0) {
                        return false;
                    }
                    map2(base, lanes(r, b), |x, y| (y * x.ln()).exp())
                }
                Op::PowInt(a, k, _) => {
                    let base = lanes(r, a);
                    if k < 0 && base.contains(&0.0) {
                        return false;
                    }
                    map1(base, &|x| x.powi(k))
                }
                Op::Call(function, x, y, _) => {
                    let (x, y) = (lanes(r, x), lanes(r, y));
                    let mut out = [0.0; LANES];
                    for l in 0..LANES {
                        match apply(function, x[l], y[l]) {
                            Some(v) => out[l] = v,
                            None => return false,
                        }
                    }
                    out
                }
                Op::ReduceMax(a, b) => {
                    map2(lanes(r, a), lanes(r, b), |a, v| if v > a { v } else { a })
                }
                Op::ReduceMin(a, b) => {
                    map2(lanes(r, a), lanes(r, b), |a, v| if v < a { v } else { a })
                }
                Op::Compare(op, a, b) => {
                    let (a, b) = (lanes(r, a), lanes(r, b));
                    let mut out = [0.0; LANES];
                    for l in 0..LANES {
                        out[l] = f64::from(u8::from(op.holds(a[l], b[l])));
                    }
                    out
                }
                Op::Not(a) => map1(lanes(r, a), &|x| f64::from(u8::from(x == 0.0))),
                Op::Select(c, a, b) => {
                    let (c, a, b) = (lanes(r, c), lanes(r, a), lanes(r, b));
                    let mut out = [0.0; LANES];
                    for l in 0..LANES {
                        out[l] = if c[l] != 0.0 { a[l] } else { b[l] };
                    }
                    out
                }
                Op::Merge {
                    have, first, value, ..
                } => {
                    let (h, a, b) = (lanes(r, have), lanes(r, first), lanes(r, value));
                    let mut out = [0.0; LANES];
                    for l in 0..LANES {
                        out[l] = if h[l] == 0.0 {
                            b[l]
                        } else {
                            if cases_disagree(a[l], b[l]) {
                                return false;
                            }
                            a[l]
                        };
                    }
                    out
                }
                Op::Finite(a, _) => {
                    if lanes(r, a).iter().any(|x| !x.is_finite()) {
                        return false;
                    }
                    continue;
                }
                Op::SomeCase(have, _) => {
                    if lanes(r, have).contains(&0.0) {
                        return false;
                    }
                    continue;
                }
                Op::Fail(_) | Op::Skip(..) => return false,
            };
            let start = step.out as usize * LANES;
            if let Some(slot) = r.get_mut(start..start + LANES) {
                slot.copy_from_slice(&v);
            }
        }
        true
    }

    /// The evaluator's error for a stopped run.
    pub fn error(&self, stop: Stop) -> EvalError {
        let [a, b, first_case] = stop.values;
        match self.faults.get(stop.fault as usize) {
            Some(Fault::Fixed(e)) => e.clone(),
            Some(Fault::Domain(e) | Fault::NonFinite(e)) => {
                let mut e = e.clone();
                if let EvalError::Domain { value, .. } | EvalError::NonFinite { value, .. } = &mut e
                {
                    *value = format_value(a);
                }
                e
            }
            Some(Fault::Ambiguous { at, cases, second }) => {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let first = cases.get(first_case as usize).copied().unwrap_or_default();
                let second = cases.get(*second).copied().unwrap_or_default();
                EvalError::AmbiguousCases {
                    at: at.clone(),
                    first_value: format_value(a),
                    second_value: format_value(b),
                    first: first.into(),
                    second: second.into(),
                }
            }
            None => EvalError::Internal {
                what: "a tape stopped at a fault it does not have".to_string(),
            },
        }
    }
}

/// The hull of `f` over the corners of two intervals (for `*` and `/`,
/// whose extremes over a box lie at its corners).
fn hull_of_products(a: (f64, f64), b: (f64, f64), f: impl Fn(f64, f64) -> f64) -> (f64, f64) {
    let corners = [f(a.0, b.0), f(a.0, b.1), f(a.1, b.0), f(a.1, b.1)];
    if corners.iter().any(|c| c.is_nan()) {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    corners
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &c| {
            (lo.min(c), hi.max(c))
        })
}

/// Bounds on a function over intervals: monotone functions map the ends.
fn call_range(f: Function, x: (f64, f64), y: (f64, f64)) -> (f64, f64) {
    const ALL: (f64, f64) = (f64::NEG_INFINITY, f64::INFINITY);
    let increasing = |g: fn(f64) -> f64| (g(x.0), g(x.1));
    match f {
        Function::Exp => increasing(f64::exp),
        Function::Log => increasing(|v| if v <= 0.0 { f64::NEG_INFINITY } else { v.ln() }),
        Function::Sqrt => increasing(|v| v.max(0.0).sqrt()),
        Function::Tanh => increasing(f64::tanh),
        Function::Sigmoid => increasing(|v| (1.0 + (-v).exp()).recip()),
        Function::Relu => increasing(|v| v.max(0.0)),
        Function::Softplus => increasing(|v| {
            if v > 0.0 {
                v + (-v).exp().ln_1p()
            } else {
                v.exp().ln_1p()
            }
        }),
        Function::Abs => {
            if x.0 <= 0.0 && x.1 >= 0.0 {
                (0.0, x.0.abs().max(x.1.abs()))
            } else {
                (x.0.abs().min(x.1.abs()), x.0.abs().max(x.1.abs()))
            }
        }
        Function::Sin | Function::Cos => (-1.0, 1.0),
        Function::Min => (x.0.min(y.0), x.1.min(y.1)),
        Function::Max => (x.0.max(y.0), x.1.max(y.1)),
        Function::Pow => ALL,
        Function::Atan => increasing(f64::atan),
        Function::Asin => increasing(|v| v.clamp(-1.0, 1.0).asin()),
        Function::Acos => (x.1.clamp(-1.0, 1.0).acos(), x.0.clamp(-1.0, 1.0).acos()),
        Function::Sinh => increasing(f64::sinh),
        Function::Cosh => {
            let (a, b) = (x.0.cosh(), x.1.cosh());
            if x.0 <= 0.0 && x.1 >= 0.0 {
                (1.0, a.max(b))
            } else {
                (a.min(b), a.max(b))
            }
        }
        Function::Log1p => increasing(|v| {
            if v <= -1.0 {
                f64::NEG_INFINITY
            } else {
                v.ln_1p()
            }
        }),
        Function::Expm1 => increasing(f64::exp_m1),
        Function::Erf => increasing(libm::erf),
        Function::Sign => increasing(|v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
        Function::Floor => increasing(f64::floor),
        Function::Lgamma | Function::Digamma => ALL,
        Function::Round => increasing(f64::round),
    }
}

/// Builds tapes over one evaluation: the values of everything that is not
/// random come from it.
pub struct TapeBuilder<'t, 'a> {
    evaluation: &'t Evaluation<'a, f64>,
    /// Per definition: reads a random tensor (see [`Program::stochastic_defs`]).
    stochastic: &'t [bool],
    steps: Vec<Step>,
    registers: Vec<f64>,
    /// Registers known to hold a constant, with its value.
    constants: HashMap<Reg, f64>,
    inputs: Vec<RandomElement>,
    input_registers: Vec<Reg>,
    input_index: HashMap<RandomElement, Reg>,
    faults: Vec<Fault>,
    /// Stochastic let elements already inlined where the current step runs.
    inlined: HashMap<(usize, usize), Reg>,
    /// The order they were inlined in, to forget those of a skipped region.
    inlined_log: Vec<(usize, usize)>,
}

type Built<T> = Result<T, Box<EvalError>>;

impl<'t, 'a> TapeBuilder<'t, 'a> {
    pub fn new(evaluation: &'t Evaluation<'a, f64>, stochastic: &'t [bool]) -> Self {
        Self {
            evaluation,
            stochastic,
            steps: vec![],
            registers: vec![],
            constants: HashMap::new(),
            inputs: vec![],
            input_registers: vec![],
            input_index: HashMap::new(),
            faults: vec![],
            inlined: HashMap::new(),
            inlined_log: vec![],
        }
    }

    /// The tape of `node` at the frame's point. Errors only when the work
    /// runs out of time or the tape would be too long; the spec's own errors
    /// become faults of the tape.
    pub fn build(mut self, node: &Node, frame: &mut Frame<'_>) -> Built<Tape> {
        let value = self.node(node, frame)?;
        let text = self.evaluation.instance.text_of(node.span).to_string();
        let at = self.evaluation.at(frame);
        let fault = self.fault(Fault::NonFinite(EvalError::NonFinite {
            expression: text,
            value: String::new(),
            at,
            span: node.span.into(),
        }));
        self.check_finite(value, fault);
        let constant_magnitude = self
            .constants
            .values()
            .fold(0.0, |m: f64, v| m.max(v.abs()));
        Ok(Tape {
            steps: self.steps,
            registers: self.registers,
            inputs: self.inputs,
            input_registers: self.input_registers,
            faults: self.faults,
            output: value,
            constant_magnitude,
        })
    }

    fn register(&mut self, initial: f64) -> Reg {
        self.registers.push(initial);
        Reg::try_from(self.registers.len() - 1).unwrap_or(Reg::MAX)
    }

    fn constant(&mut self, v: f64) -> Reg {
        let r = self.register(v);
        self.constants.insert(r, v);
        r
    }

    fn push(&mut self, op: Op) -> Built<Reg> {
        if self.steps.len() >= MAX_STEPS {
            return Err(Box::new(EvalError::TooLarge {
                elements: format!("a tape of more than {MAX_STEPS} steps"),
                limit: MAX_STEPS as u64,
                sizes: self.evaluation.instance.sizes.to_string(),
                span: Span::default().into(),
            }));
        }
        let out = self.register(f64::NAN);
        self.steps.push(Step { op, out });
        Ok(out)
    }

    fn fault(&mut self, fault: Fault) -> u32 {
        self.faults.push(fault);
        u32::try_from(self.faults.len() - 1).unwrap_or(u32::MAX)
    }

    fn check_finite(&mut self, r: Reg, fault: u32) {
        // A register checked by the step just before needs no second check.
        if let Some(Step {
            op: Op::Finite(last, _),
            ..
        }) = self.steps.last()
            && *last == r
        {
            return;
        }
        self.steps.push(Step {
            op: Op::Finite(r, fault),
            out: r,
        });
    }

    /// An error of the evaluator, raised where the run reaches this point.
    fn fail(&mut self, e: Box<EvalError>) -> Built<Reg> {
        if e.is_timeout() {
            return Err(e);
        }
        let fault = self.fault(Fault::Fixed(*e));
        self.steps.push(Step {
            op: Op::Fail(fault),
            out: 0,
        });
        Ok(self.constant(0.0))
    }

    /// A value the evaluator computes now: a constant, or its error.
    fn fold(&mut self, node: &Node, frame: &mut Frame<'_>) -> Built<Reg> {
        match self.evaluation.node(node, frame) {
            Ok(v) => Ok(self.constant(v)),
            Err(e) => self.fail(e),
        }
    }

    fn fold_cond(&mut self, c: &Cond, frame: &mut Frame<'_>) -> Built<Reg> {
        match self.evaluation.cond(c, frame) {
            Ok(holds) => Ok(self.constant(f64::from(u8::from(holds)))),
            Err(e) => self.fail(e),
        }
    }

    /// Steps that run only where `cond` is non-zero. A constant condition
    /// needs no skip: a false one builds nothing (`None`).
    fn region<R>(
        &mut self,
        cond: Reg,
        build: impl FnOnce(&mut Self) -> Built<R>,
    ) -> Built<Option<R>> {
        match self.constants.get(&cond) {
            Some(&0.0) => return Ok(None),
            Some(_) => return build(self).map(Some),
            None => {}
        }
        let skip = self.steps.len();
        self.push(Op::Skip(cond, 0))?;
        let mark = self.inlined_log.len();
        let result = build(self)?;
        // What was inlined inside may not have run: forget it.
        for key in self.inlined_log.drain(mark..) {
            self.inlined.remove(&key);
        }
        let len = self.steps.len() - skip - 1;
        if len == 0 {
            // Nothing to skip: the region folded to constants.
            self.steps.truncate(skip);
        } else if let Some(step) = self.steps.get_mut(skip) {
            step.op = Op::Skip(cond, u32::try_from(len).unwrap_or(u32::MAX));
        }
        Ok(Some(result))
    }

    fn select(&mut self, cond: Reg, then: Option<Reg>, otherwise: Reg) -> Built<Reg> {
        match (self.constants.get(&cond), then) {
            (_, None) => Ok(otherwise),
            (Some(&v), Some(then)) => Ok(if v != 0.0 { then } else { otherwise }),
            (None, Some(then)) => self.push(Op::Select(cond, then, otherwise)),
        }
    }

    fn is_stochastic(&self, node: &Node) -> bool {
        let program = self.evaluation.instance.program;
        let mut found = false;
        crate::analysis::visit(node, &mut |n| match &n.node {
            NodeKind::Tensor { id, .. } => {
                found |= program
                    .tensors
                    .get(id.0)
                    .is_some_and(|t| t.origin == Origin::Random);
            }
            NodeKind::Def { id, .. } => {
                found |= self.stochastic.get(id.0).copied().unwrap_or(false)
            }
            _ => {}
        });
        found
    }

    fn cond_is_stochastic(&self, c: &Cond) -> bool {
        let mut found = false;
        crate::analysis::for_each_cond_expr(c, &mut |e| found = found || self.is_stochastic(e));
        found
    }

    fn node(&mut self, node: &Node, frame: &mut Frame<'_>) -> Built<Reg> {
        if !self.is_stochastic(node) {
            return self.fold(node, frame);
        }
        match &node.node {
            NodeKind::Tensor { id, indices } => self.random_element(node, *id, indices, frame),
            NodeKind::Def { id, indices } => self.stochastic_element(node, *id, indices, frame),
            NodeKind::Neg(a) => {
                let a = self.node(a, frame)?;
                self.push(Op::Neg(a))
            }
            NodeKind::Binary {
                op,
                lhs,
                rhs,
                guarded,
            } => self.binary(node, (*op, *guarded), lhs, rhs, frame),
            NodeKind::PowInt(base, k) => {
                let b = self.node(base, frame)?;
                let fault =
                    self.domain_fault(node, "power", frame, "a negative power of 0 is undefined");
                self.push(Op::PowInt(b, *k, fault))
            }
            NodeKind::Call { function, args } => self.call(node, *function, args, frame),
            NodeKind::Reduce {
                op,
                var,
                range,
                body,
                ..
            } => self.reduce(node, *op, *var, range, body, frame),
            NodeKind::Pick {
                var,
                index,
                at,
                body,
                ..
            } => {
                let Ok(k) = self.evaluation.pick_index(index, *at, frame) else {
                    // The evaluator's error.
                    return self.fold(node, frame);
                };
                if let Some(slot) = frame.env.get_mut(var.0) {
                    *slot = k;
                }
                let v = self.node(body, frame);
                if let Some(slot) = frame.env.get_mut(var.0) {
                    *slot = UNBOUND;
                }
                v
            }
            NodeKind::Iverson(c) => self.cond(c, frame),
            NodeKind::Moment { .. }
            | NodeKind::Const(_)
            | NodeKind::Pi
            | NodeKind::Dim(_)
            | NodeKind::Hyper(_)
            | NodeKind::Index(_) => self.fold(node, frame),
        }
    }

    fn domain_fault(&mut self, node: &Node, function: &str, frame: &Frame<'_>, help: &str) -> u32 {
        let e = self.evaluation.domain(node, function, 0.0, frame, help);
        self.fault(Fault::Domain(*e))
    }

    fn random_element(
        &mut self,
        node: &Node,
        id: TensorId,
        indices: &[Affine],
        frame: &mut Frame<'_>,
    ) -> Built<Reg> {
        let offset = match self.evaluation.tensor_offset(node, id, indices, frame) {
            Ok(o) => o,
            Err(e) => return self.fail(e),
        };
        let element = RandomElement { tensor: id, offset };
        if let Some(&r) = self.input_index.get(&element) {
            return Ok(r);
        }
        let r = self.register(f64::NAN);
        self.inputs.push(element);
        self.input_registers.push(r);
        self.input_index.insert(element, r);
        Ok(r)
    }

    /// An element of a stochastic let: its body inlined at that element,
    /// checked finite as the evaluator checks every element of a let.
    fn stochastic_element(
        &mut self,
        node: &Node,
        id: DefId,
        indices: &[Affine],
        frame: &mut Frame<'_>,
    ) -> Built<Reg> {
        let offset = match self.evaluation.def_offset(node, id, indices, frame) {
            Ok(o) => o,
            Err(e) => return self.fail(e),
        };
        let instance = self.evaluation.instance;
        let def = &instance.program.defs[id.0];
        if let Some(&r) = self.inlined.get(&(id.0, offset)) {
            return Ok(r);
        }
        // A recurrence's element reads the ones before it (or after): build
        // those first, in order, so that each reads inlined elements only and
        // the depth stays one however long the recurrence.
        if let Some(order) = def.recurrence {
            let len = usize::try_from(instance.def_grids[id.0].len().unwrap_or(0)).unwrap_or(0);
            let before: Vec<usize> = match order {
                RecurrenceOrder::Ascending => (0..offset).collect(),
                RecurrenceOrder::Descending => (offset + 1..len).rev().collect(),
            };
            for k in before {
                if !self.inlined.contains_key(&(id.0, k)) {
                    self.inline_element(id, k)?;
                }
            }
        }
        self.inline_element(id, offset)
    }

    /// Builds element `offset` of the stochastic definition `id` from its body.
    fn inline_element(&mut self, id: DefId, offset: usize) -> Built<Reg> {
        let instance = self.evaluation.instance;
        let def = &instance.program.defs[id.0];
        let grid = &instance.def_grids[id.0];
        let mut inner = Frame::new(&def.var_names, def.slots);
        inner.set_point(&grid.point(offset));
        let value = self.body(&def.body, &mut inner)?;
        let e = self.evaluation.non_finite(def.body_span(), 0.0, &inner);
        let fault = self.fault(Fault::NonFinite(*e));
        self.check_finite(value, fault);
        self.inlined.insert((id.0, offset), value);
        self.inlined_log.push((id.0, offset));
        Ok(value)
    }

    fn body(&mut self, body: &Body, frame: &mut Frame<'_>) -> Built<Reg> {
        match body {
            Body::Expr(e) => self.node(e, frame),
            Body::Cases(cases) => self.cases(cases, frame),
        }
    }

    /// Mirrors [`Evaluation::cases`]: every condition in order, each value
    /// where its condition holds, agreement where two hold, some case.
    fn cases(&mut self, cases: &[Case], frame: &mut Frame<'_>) -> Built<Reg> {
        let spans: Vec<Span> = cases.iter().map(|c| c.span).collect();
        let at = self.evaluation.at(frame);
        let mut have = self.constant(0.0);
        let mut value = self.constant(0.0);
        let mut first_case = self.constant(0.0);
        let one = self.constant(1.0);
        for (k, case) in cases.iter().enumerate() {
            let holds = match &case.condition {
                Some(c) => self.cond(c, frame)?,
                None => match self.constants.get(&have) {
                    Some(&v) => self.constant(f64::from(u8::from(v == 0.0))),
                    None => self.push(Op::Not(have))?,
                },
            };
            let fault = self.fault(Fault::Ambiguous {
                at: at.clone(),
                cases: spans.clone(),
                second: k,
            });
            let merged = self.region(holds, |b| {
                let v = b.node(&case.value, frame)?;
                let merged = match b.constants.get(&have) {
                    Some(&0.0) => v,
                    _ => b.push(Op::Merge {
                        have,
                        first: value,
                        first_case,
                        value: v,
                        fault,
                    })?,
                };
                let this = b.constant(k as f64);
                let chosen = b.select(have, Some(first_case), this)?;
                Ok((merged, chosen))
            })?;
            value = self.select(holds, merged.map(|m| m.0), value)?;
            first_case = self.select(holds, merged.map(|m| m.1), first_case)?;
            have = self.select(holds, merged.map(|_| one), have)?;
        }
        if self.constants.get(&have) != Some(&1.0) {
            let span = spans
                .first()
                .zip(spans.last())
                .map_or(Span::default(), |(a, b)| a.to(*b));
            let fault = self.fault(Fault::Fixed(EvalError::NoCase {
                at,
                span: span.into(),
            }));
            self.steps.push(Step {
                op: Op::SomeCase(have, fault),
                out: have,
            });
        }
        Ok(value)
    }

    /// Mirrors [`Evaluation::cond`]: 1 or 0, evaluating no more than it does.
    fn cond(&mut self, c: &Cond, frame: &mut Frame<'_>) -> Built<Reg> {
        if !self.cond_is_stochastic(c) {
            return self.fold_cond(c, frame);
        }
        match &c.node {
            CondKind::Compare { first, rest } => {
                let lhs = self.node(first, frame)?;
                self.chain(lhs, rest, frame)
            }
            CondKind::And(a, b) => {
                let a = self.cond(a, frame)?;
                let zero = self.constant(0.0);
                let b = self.region(a, |s| s.cond(b, frame))?;
                self.select(a, b, zero)
            }
            CondKind::Or(a, b) => {
                let a = self.cond(a, frame)?;
                let not_a = match self.constants.get(&a) {
                    Some(&v) => self.constant(f64::from(u8::from(v == 0.0))),
                    None => self.push(Op::Not(a))?,
                };
                let b = self.region(not_a, |s| s.cond(b, frame))?;
                let one = self.constant(1.0);
                let b = b.unwrap_or(one);
                self.select(a, Some(one), b)
            }
            CondKind::Not(a) => {
                let a = self.cond(a, frame)?;
                self.push(Op::Not(a))
            }
        }
    }

    /// `lhs op1 e1 op2 e2 …`: each operand only while the comparisons before it hold.
    fn chain(&mut self, lhs: Reg, rest: &[(CompareOp, Node)], frame: &mut Frame<'_>) -> Built<Reg> {
        let Some(((op, e), more)) = rest.split_first() else {
            return Ok(self.constant(1.0));
        };
        let rhs = self.node(e, frame)?;
        let holds = self.push(Op::Compare(*op, lhs, rhs))?;
        if more.is_empty() {
            return Ok(holds);
        }
        let zero = self.constant(0.0);
        let tail = self.region(holds, |s| s.chain(rhs, more, frame))?;
        self.select(holds, tail, zero)
    }

    /// Mirrors [`Evaluation::binary`], strong zero included.
    fn binary(
        &mut self,
        node: &Node,
        (op, guarded): (BinaryOp, bool),
        lhs: &Node,
        rhs: &Node,
        frame: &mut Frame<'_>,
    ) -> Built<Reg> {
        if guarded {
            let mut guards = vec![];
            node.for_each_guard(&mut |guard| {
                if let NodeKind::Iverson(c) = &guard.node {
                    guards.push(&**c);
                }
            });
            return self.guarded_product(node, &guards, frame);
        }
        // As the evaluator: an exponent from indices and sizes alone that is
        // a whole number is an integer power.
        if op == BinaryOp::Pow
            && !super::reads_tensors(rhs)
            && let Ok(k) = self.evaluation.node(rhs, frame)
            && k.fract() == 0.0
            && k.abs() < f64::from(i32::MAX)
        {
            let a = self.node(lhs, frame)?;
            let fault =
                self.domain_fault(node, "power", frame, "a negative power of 0 is undefined");
            #[allow(clippy::cast_possible_truncation)]
            return self.push(Op::PowInt(a, k as i32, fault));
        }
        let a = self.node(lhs, frame)?;
        let b = self.node(rhs, frame)?;
        match op {
            BinaryOp::Add => self.push(Op::Add(a, b)),
            BinaryOp::Sub => self.push(Op::Sub(a, b)),
            BinaryOp::Mul => self.push(Op::Mul(a, b)),
            BinaryOp::Div => self.quotient(node, rhs, a, b, frame),
            BinaryOp::Pow => {
                let fault = self.domain_fault(
                    node,
                    "power",
                    frame,
                    "a real power needs a positive base; use an integer exponent for negative bases",
                );
                self.push(Op::Pow(a, b, fault))
            }
        }
    }

    /// Mirrors [`Evaluation::guarded_product`] (and, without guards,
    /// [`Evaluation::factors`]): each guard only where those before it
    /// hold, the factors only where all hold, else 0.
    fn guarded_product(
        &mut self,
        node: &Node,
        guards: &[&Cond],
        frame: &mut Frame<'_>,
    ) -> Built<Reg> {
        let Some((first, rest)) = guards.split_first() else {
            return match self.factors(node, frame)? {
                Some(r) => Ok(r),
                None => Ok(self.constant(1.0)),
            };
        };
        let holds = self.cond(first, frame)?;
        let zero = self.constant(0.0);
        let value = self.region(holds, |s| s.guarded_product(node, rest, frame))?;
        self.select(holds, value, zero)
    }

    /// Mirrors [`Evaluation::factors`]: the product, brackets left out.
    fn factors(&mut self, node: &Node, frame: &mut Frame<'_>) -> Built<Option<Reg>> {
        if node.is_bracket() {
            return Ok(None);
        }
        if !self.is_stochastic(node) {
            // The evaluator's value: its guards hold here too.
            return self.fold(node, frame).map(Some);
        }
        match &node.node {
            NodeKind::Neg(a) => match self.factors(a, frame)? {
                Some(a) => self.push(Op::Neg(a)).map(Some),
                None => Ok(Some(self.constant(-1.0))),
            },
            NodeKind::Binary {
                op: BinaryOp::Mul,
                lhs,
                rhs,
                ..
            } => {
                let a = self.factors(lhs, frame)?;
                let b = self.factors(rhs, frame)?;
                match (a, b) {
                    (Some(a), Some(b)) => self.push(Op::Mul(a, b)).map(Some),
                    (a, None) => Ok(a),
                    (None, b) => Ok(b),
                }
            }
            NodeKind::Binary {
                op: BinaryOp::Div,
                lhs,
                rhs,
                ..
            } => {
                let a = match self.factors(lhs, frame)? {
                    Some(a) => a,
                    None => self.constant(1.0),
                };
                let b = self.node(rhs, frame)?;
                self.quotient(node, rhs, a, b, frame).map(Some)
            }
            _ => self.node(node, frame).map(Some),
        }
    }

    /// Mirrors [`Evaluation::quotient`]: faults where the divisor is 0.
    fn quotient(
        &mut self,
        node: &Node,
        rhs: &Node,
        a: Reg,
        b: Reg,
        frame: &Frame<'_>,
    ) -> Built<Reg> {
        let e = EvalError::DivisionByZero {
            expression: self.evaluation.instance.text_of(node.span).to_string(),
            at: self.evaluation.at(frame),
            help: super::VALUE_DIVISOR_HELP.to_string(),
            span: node.span.into(),
            divisor: rhs.span.into(),
        };
        let fault = self.fault(Fault::Fixed(e));
        self.push(Op::Div(a, b, fault))
    }

    /// Mirrors [`Evaluation::call`]: every argument first, then the domain check.
    fn call(
        &mut self,
        node: &Node,
        function: Function,
        args: &[Node],
        frame: &mut Frame<'_>,
    ) -> Built<Reg> {
        let x = match args.first() {
            Some(a) => self.node(a, frame)?,
            None => self.constant(0.0),
        };
        let y = match args.get(1) {
            Some(a) => self.node(a, frame)?,
            // As the evaluator: `min`/`max` of one argument compare it with
            // itself; `pow` of one raises it to 1.
            None if function == Function::Pow => self.constant(1.0),
            None => x,
        };
        let fault = match domain_help(function) {
            Some(what) => {
                let help =
                    format!("{what}; constrain the values that reach it (e.g. `param s > 0`)");
                self.domain_fault(node, function.name(), frame, &help)
            }
            // Defined everywhere: `call` never stops here.
            None => u32::MAX,
        };
        self.push(Op::Call(function, x, y, fault))
    }

    /// Mirrors [`Evaluation::reduce`], unrolled: the range is known here.
    fn reduce(
        &mut self,
        node: &Node,
        op: ReduceOp,
        var: VarId,
        range: &VarRange,
        body: &Node,
        frame: &mut Frame<'_>,
    ) -> Built<Reg> {
        let (lo, hi) = self.evaluation.reduce_range(range, frame);
        if lo > hi {
            // An empty sum or product is a constant; an empty max the evaluator's error.
            return self.fold(node, frame);
        }
        let mut acc: Option<Reg> = None;
        let summing = matches!(op, ReduceOp::Sum | ReduceOp::Mean);
        let mut sum: Cascade<Reg> = Cascade::default();
        for k in lo..=hi {
            if (k - lo) as usize % CLOCK_STRIDE == CLOCK_STRIDE - 1 {
                self.evaluation.instance.check_clock()?;
            }
            if let Some(slot) = frame.env.get_mut(var.0) {
                *slot = k;
            }
            let v = self.node(body, frame)?;
            if summing {
                // The evaluator's cascade, step for step.
                sum.push(v, |a, b| self.push(Op::Add(a, b)))?;
                continue;
            }
            acc = Some(match acc {
                None => v,
                Some(a) => self.push(match op {
                    // Sums take the cascade above; for completeness.
                    ReduceOp::Sum | ReduceOp::Mean => Op::Add(a, v),
                    ReduceOp::Prod => Op::Mul(a, v),
                    ReduceOp::Max => Op::ReduceMax(a, v),
                    ReduceOp::Min => Op::ReduceMin(a, v),
                })?,
            });
        }
        if let Some(slot) = frame.env.get_mut(var.0) {
            *slot = UNBOUND;
        }
        if summing {
            acc = sum.finish(|a, b| self.push(Op::Add(a, b)))?;
        }
        match acc {
            // The evaluator's division by the count, which is never 0 here.
            #[allow(clippy::cast_precision_loss)]
            Some(r) if op == ReduceOp::Mean => {
                let count = self.constant((hi - lo + 1) as f64);
                let fault = self.fault(Fault::Fixed(EvalError::Internal {
                    what: "a mean divided by a count of 0".to_string(),
                }));
                self.push(Op::Div(r, count, fault))
            }
            Some(r) => Ok(r),
            None => self.fold(node, frame),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::result_large_err
    )]

    use ndarray::ArrayD;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::analysis::{Program, analyze, size_sweep};
    use crate::eval::{Instance, draw_values};
    use crate::source::Source;

    fn program(text: &str) -> (Program, Source) {
        let source = Source::new("tape.dl", text);
        let spec = crate::syntax::parse(&source).unwrap();
        (analyze(&spec).unwrap(), source)
    }

    /// The moment bodies of a spec's claims, in order.
    fn moment_bodies(program: &Program) -> Vec<(&Node, &ClaimPoints)> {
        let mut out = vec![];
        for claim in &program.claims {
            if let ClaimKind::Holds(h) = &claim.kind
                && let CondKind::Compare { first, .. } = &h.condition.node
                && let NodeKind::Moment { body, .. } = &first.node
            {
                out.push((&**body, &h.points));
            }
        }
        out
    }

    /// The evaluator's value of `body` at `point` with the random tensors set.
    fn reference(
        instance: &Instance<'_>,
        values: &[ArrayD<f64>],
        body: &Node,
        points: &ClaimPoints,
        point: &[i64],
    ) -> Result<f64, EvalError> {
        let mut evaluation = instance.evaluation(values);
        evaluation.compute_defs(false).unwrap();
        let mut frame = Frame::new(&points.var_names, points.slots);
        frame.set_point(point);
        let v = evaluation.node(body, &mut frame).map_err(|e| *e)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(EvalError::Internal {
                what: format!("non-finite {v}"),
            })
        }
    }

    const SPEC: &str = "
dim n = 4
input x[n] in (0.5, 2)
random u[i] ~ uniform(-1, 1) for i in 1..=n
random z[i] ~ bernoulli(0.5) for i in 1..=n
let s = sum(k) u[k] * x[k]
let w[i] = u[i] * exp(x[i]) / (1 + u[i]^2)
let c[i] = u[i] if u[i] > 0.5 | -u[i] if u[i] < -0.5 | 0 otherwise
let h[i] = sqrt(u[i] + 1) + log(x[i]) + max(u[i], 0.1) + pow(x[i], u[i]) + sigmoid(u[i]) + softplus(30 * u[i]) + relu(u[i]) + tanh(u[i]) * sin(u[i]) - cos(u[i])
claim E[s + w[i] * c[i] + h[i] + [u[i] > 0] * log(u[i]) + [z[i] == 1 and u[i] < 0] * 2 + max(k) u[k] + min(k) u[k] * z[k] + u[i]^3 + z[i] / (u[i] + 2) + [0 < u[i] < 0.5 or z[i] == 0] * (x[i] + 1) ^ u[i] + u[i] * [u[i] > 0] * log(u[i]) + log(u[i]) / x[i] * [u[i] > 0] + -[z[i] == 1] * u[i] * -x[i] + [u[i] > 0] * x[i] / u[i] * [z[i] == 1] + x[i] * ([x[i] > 0] * 2)] == 0
let d[i] = 1 / z[i]
claim E[d[i]] == 1
claim E[sqrt(u[i])] == 0
let amb[i] = 1 if u[i] > 0 | 2 if u[i] > 0.5 | 0 otherwise
claim E[amb[i]] == 1
";

    /// Draws the random tensors of `program` into `values`.
    fn draw(program: &Program, values: &mut [ArrayD<f64>], rng: &mut ChaCha8Rng) {
        for (k, t) in program.tensors.iter().enumerate() {
            if t.origin != Origin::Random {
                continue;
            }
            let bernoulli = t.name == "z";
            for v in values[k].iter_mut() {
                *v = if bernoulli {
                    f64::from(u8::from(rng.random::<bool>()))
                } else {
                    rng.random_range(-1.0..1.0)
                };
            }
        }
    }

    #[test]
    fn tape_agrees_with_the_evaluator() {
        let (program, source) = program(SPEC);
        let sizes = size_sweep(&program, &[]).unwrap().pop().unwrap();
        let instance = Instance::new(&program, &source, sizes, 1_000_000).unwrap();
        let mut values = draw_values(&instance, 3).unwrap();
        let stochastic = program.stochastic_defs();
        let base = instance.evaluation(&values);
        let mut base = base;
        base.compute_defs(false).unwrap();
        let bodies = moment_bodies(&program);
        let (body, points) = bodies[0];
        let mut tapes = vec![];
        for i in 1..=4 {
            let mut frame = Frame::new(&points.var_names, points.slots);
            frame.set_point(&[i]);
            let tape = TapeBuilder::new(&base, &stochastic)
                .build(body, &mut frame)
                .unwrap();
            // `s`, `max(k)` and `min(k)` read every element: all 8 inputs.
            assert_eq!(tape.inputs().len(), 8);
            tapes.push(tape);
        }
        drop(base);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut compared = 0;
        for _ in 0..300 {
            draw(&program, &mut values, &mut rng);
            for (i, tape) in (1..=4).zip(&tapes) {
                let mut registers = tape.registers();
                for (k, e) in tape.inputs().iter().enumerate() {
                    let v = values[e.tensor.0].as_slice_memory_order().unwrap()[e.offset];
                    tape.set_input(&mut registers, k, v);
                }
                let fast = tape.run(&mut registers).map_err(|s| tape.error(s));
                let slow = reference(&instance, &values, body, points, &[i]);
                match (fast, slow) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a.to_bits(), b.to_bits(), "i = {i}: tape {a}, evaluator {b}");
                        compared += 1;
                    }
                    (a, b) => panic!("i = {i}: tape {a:?}, evaluator {b:?}"),
                }
            }
        }
        assert!(compared > 1000);
    }

    #[test]
    fn tape_raises_the_evaluators_errors() {
        let (program, source) = program(SPEC);
        let sizes = size_sweep(&program, &[]).unwrap().pop().unwrap();
        let instance = Instance::new(&program, &source, sizes, 1_000_000).unwrap();
        let mut values = draw_values(&instance, 3).unwrap();
        let stochastic = program.stochastic_defs();
        let bodies = moment_bodies(&program);
        let mut base = instance.evaluation(&values);
        base.compute_defs(false).unwrap();
        let mut frame = Frame::new(&bodies[1].1.var_names, bodies[1].1.slots);
        frame.set_point(&[1]);
        let tapes: Vec<Tape> = bodies[1..]
            .iter()
            .map(|(body, _)| {
                TapeBuilder::new(&base, &stochastic)
                    .build(body, &mut frame)
                    .unwrap()
            })
            .collect();
        drop(base);
        // Every element alike, so that the evaluator's first failing element is i = 1.
        let cases: [(f64, f64); 4] = [(0.7, 0.0), (-0.3, 1.0), (0.2, 1.0), (0.9, 1.0)];
        let mut errors = 0;
        for (u, z) in cases {
            for (k, t) in program.tensors.iter().enumerate() {
                match t.name.as_str() {
                    "u" => values[k].fill(u),
                    "z" => values[k].fill(z),
                    _ => {}
                }
            }
            for ((body, points), tape) in bodies[1..].iter().zip(&tapes) {
                let mut registers = tape.registers();
                for (k, e) in tape.inputs().iter().enumerate() {
                    let v = values[e.tensor.0].as_slice_memory_order().unwrap()[e.offset];
                    tape.set_input(&mut registers, k, v);
                }
                let fast = tape.run(&mut registers).map_err(|s| tape.error(s));
                let mut evaluation = instance.evaluation(&values);
                evaluation.compute_defs(false).unwrap();
                let mut frame = Frame::new(&points.var_names, points.slots);
                frame.set_point(&[1]);
                let slow = evaluation.node(body, &mut frame).map_err(|e| *e);
                match (&fast, &slow) {
                    (Ok(a), Ok(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                    (Err(a), Err(b)) => {
                        assert_eq!(a, b);
                        errors += 1;
                    }
                    _ => panic!("u = {u}, z = {z}: tape {fast:?}, evaluator {slow:?}"),
                }
            }
        }
        // Division by z = 0, sqrt of u < 0, and the cases that disagree at u = 0.7, 0.9.
        assert!(errors >= 4, "{errors} errors compared");
    }
}
