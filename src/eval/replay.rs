//! Replays: a recorded evaluation of L ([`super::record`]) compiled to a
//! flat program over registers and run at other values of the inputs and
//! params, [`LANES`] points at a time.
//!
//! The recording holds the operations the evaluator carried out and every
//! decision it took on the values (a branch, a domain check, a kink test,
//! the finiteness of a definition). A replay carries out the same
//! operations with the same functions in the same order, so wherever it
//! takes every decision alike its L is the evaluator's bit for bit; where a
//! point would decide otherwise (a relu that changes sides, a log whose
//! argument turns negative) the replay says so and the caller evaluates
//! that point with the evaluator, which also gives the errors their
//! diagnostics. A recording in which the evaluator read a value other than
//! by a decision (two overlapping cases compared) is not replayed at all.
//!
//! Registers are reused once their value is read for the last time, so a
//! replay holds what is live at once (the elements of the definitions the
//! output reads), not every intermediate value.

use std::cmp::Ordering;

use ndarray::ArrayD;

use super::double_double::Real;
use super::reverse::{CONSTANT_BIT, Op, Recorded, TapeReal, Test, apply_op};

/// Points a run evaluates at once: the interpretation of a step is shared
/// by the lanes, and the arithmetic of a lane is a short loop the compiler
/// vectorizes.
pub const LANES: usize = 8;

/// A register, or a constant with `CONSTANT_BIT`.
type Src = u32;

#[derive(Clone, Copy, Debug)]
enum Step {
    Op {
        op: Op,
        a: Src,
        b: Src,
        out: u32,
    },
    Order {
        a: Src,
        b: Src,
        expected: Option<Ordering>,
    },
    Finite {
        a: Src,
        expected: bool,
    },
}

/// A recorded evaluation of L, compiled for replaying.
#[derive(Debug)]
pub struct Replay<B> {
    steps: Vec<Step>,
    registers: usize,
    constants: Vec<B>,
    /// The register of each input element: (register, tensor, row-major offset).
    inputs: Vec<(u32, usize, usize)>,
    output: Src,
}

/// Marks a value as freed in the last-use table.
const FREED: u32 = u32::MAX - 1;
/// The last use of the output: never.
const NEVER: u32 = u32::MAX;

impl<B: TapeReal> Replay<B> {
    /// Compiles a recording; `None` where the evaluator read a recorded
    /// value without a decision a replay could check.
    pub fn compile(recorded: Recorded<B>) -> Option<Self> {
        let mut tape = recorded.tape;
        if tape.unguarded {
            return None;
        }
        // The values are the recording's; a replay computes its own.
        tape.values = Vec::new();
        let len = tape.entries.len();
        let is_entry = |x: u32| x & CONSTANT_BIT == 0;
        // The last time each entry is read: by an entry, or by a guard
        // (which comes before the entry its `after` names).
        let mut last = vec![0u32; len];
        let note = |last: &mut Vec<u32>, x: u32, at: u32| {
            if is_entry(x)
                && let Some(l) = last.get_mut(x as usize)
            {
                *l = (*l).max(at);
            }
        };
        for (n, e) in tape.entries.iter().enumerate() {
            if e.op != Op::Leaf {
                note(&mut last, e.a, n as u32);
                note(&mut last, e.b, n as u32);
            }
        }
        for g in &tape.guards {
            match g.test {
                Test::Order { a, b, .. } => {
                    note(&mut last, a, g.after);
                    note(&mut last, b, g.after);
                }
                Test::Finite { a, .. } => note(&mut last, a, g.after),
            }
        }
        if is_entry(recorded.output)
            && let Some(l) = last.get_mut(recorded.output as usize)
        {
            *l = NEVER;
        }
        let mut register = vec![0u32; len];
        let mut free: Vec<u32> = vec![];
        let mut registers = 0usize;
        let mut allocate = |free: &mut Vec<u32>| {
            free.pop().unwrap_or_else(|| {
                registers += 1;
                (registers - 1) as u32
            })
        };
        let src = |register: &[u32], x: u32| {
            if is_entry(x) {
                register.get(x as usize).copied().unwrap_or(0)
            } else {
                x
            }
        };
        // Frees what dies at `at` among `xs`, once each.
        let release =
            |last: &mut Vec<u32>, register: &[u32], free: &mut Vec<u32>, xs: &[u32], at: u32| {
                for &x in xs {
                    if is_entry(x)
                        && let Some(l) = last.get_mut(x as usize)
                        && *l == at
                    {
                        *l = FREED;
                        free.push(register[x as usize]);
                    }
                }
            };
        let mut steps = Vec::with_capacity(len + tape.guards.len());
        let mut inputs = vec![];
        let mut guards = tape.guards.iter().peekable();
        // Leaves are recorded first, tensor by tensor: entry n < leaves is
        // element leaf_of[n].
        let mut leaf_of: Vec<(usize, usize)> = vec![];
        for (k, t) in recorded.leaves.iter().enumerate() {
            if let Some(t) = t {
                for (p, &n) in t.iter().enumerate() {
                    let n = n as usize;
                    if leaf_of.len() <= n {
                        leaf_of.resize(n + 1, (usize::MAX, 0));
                    }
                    leaf_of[n] = (k, p);
                }
            }
        }
        for n in 0..=len {
            let at = n as u32;
            while let Some(g) = guards.next_if(|g| g.after == at) {
                let operands = match g.test {
                    Test::Order { a, b, expected } => {
                        steps.push(Step::Order {
                            a: src(&register, a),
                            b: src(&register, b),
                            expected,
                        });
                        [a, b]
                    }
                    Test::Finite { a, expected } => {
                        steps.push(Step::Finite {
                            a: src(&register, a),
                            expected,
                        });
                        [a, a]
                    }
                };
                release(&mut last, &register, &mut free, &operands, at);
            }
            let Some(e) = tape.entries.get(n) else {
                break;
            };
            if e.op == Op::Leaf {
                let r = allocate(&mut free);
                register[n] = r;
                if let Some(&(k, p)) = leaf_of.get(n).filter(|(k, _)| *k != usize::MAX) {
                    inputs.push((r, k, p));
                }
                continue;
            }
            let (a, b) = (src(&register, e.a), src(&register, e.b));
            release(&mut last, &register, &mut free, &[e.a, e.b], at);
            // An entry nothing reads (and that is not L) need not run.
            if last[n] == 0 {
                continue;
            }
            let out = allocate(&mut free);
            register[n] = out;
            steps.push(Step::Op {
                op: e.op,
                a,
                b,
                out,
            });
        }
        let output = src(&register, recorded.output);
        Some(Self {
            steps,
            registers,
            constants: tape.constants,
            inputs,
            output,
        })
    }

    /// L at each point (every tensor's values, as f64; only the
    /// differentiable ones may differ from the recorded values), or `None`
    /// where the point takes a decision the recording did not.
    pub fn losses(&self, points: &[&[ArrayD<f64>]]) -> Vec<Option<B>> {
        let slices: Vec<Vec<&[f64]>> = points
            .iter()
            .map(|p| {
                p.iter()
                    .map(|a| a.as_slice_memory_order().unwrap_or(&[]))
                    .collect()
            })
            .collect();
        let mut out = Vec::with_capacity(points.len());
        for start in (0..points.len()).step_by(LANES) {
            let lanes = (points.len() - start).min(LANES);
            out.extend(self.run_with(lanes, |l, k, p| {
                slices
                    .get(start + l)
                    .and_then(|s| s.get(k))
                    .and_then(|t| t.get(p))
                    .copied()
                    .unwrap_or(f64::NAN)
            }));
        }
        out
    }

    /// L at up to [`LANES`] points in one run, `input(lane, tensor,
    /// offset)` giving each input element's value (rounded to `B` here).
    pub fn run_with(
        &self,
        lanes: usize,
        input: impl Fn(usize, usize, usize) -> f64,
    ) -> Vec<Option<B>> {
        let zero = B::of(0.0);
        let lanes = lanes.min(LANES);
        let mut regs = vec![[zero; LANES]; self.registers];
        let mut valid = [false; LANES];
        valid[..lanes].fill(true);
        for &(r, k, p) in &self.inputs {
            if let Some(reg) = regs.get_mut(r as usize) {
                for (l, slot) in reg.iter_mut().enumerate().take(lanes) {
                    *slot = B::of(input(l, k, p));
                }
            }
        }
        let fetch = |regs: &[[B; LANES]], x: Src| -> [B; LANES] {
            if x & CONSTANT_BIT != 0 {
                [self.constants
                    .get((x & !CONSTANT_BIT) as usize)
                    .copied()
                    .unwrap_or(zero); LANES]
            } else {
                regs.get(x as usize).copied().unwrap_or([zero; LANES])
            }
        };
        for step in &self.steps {
            match *step {
                Step::Op { op, a, b, out } => {
                    let (a, b) = (fetch(&regs, a), fetch(&regs, b));
                    let value = lanes_of(op, &a, &b);
                    if let Some(reg) = regs.get_mut(out as usize) {
                        *reg = value;
                    }
                }
                Step::Order { a, b, expected } => {
                    let (a, b) = (fetch(&regs, a), fetch(&regs, b));
                    for l in 0..lanes {
                        if a[l].value().partial_cmp(&b[l].value()) != expected {
                            valid[l] = false;
                        }
                    }
                }
                Step::Finite { a, expected } => {
                    let a = fetch(&regs, a);
                    for l in 0..lanes {
                        if a[l].value().is_finite() != expected {
                            valid[l] = false;
                        }
                    }
                }
            }
        }
        let out = fetch(&regs, self.output);
        (0..lanes).map(|l| valid[l].then_some(out[l])).collect()
    }

    /// Steps a run takes: the cost of a replay.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// One operation on every lane; the match is outside the loops, so each
/// loop is straight arithmetic.
#[inline]
fn lanes_of<B: Real>(op: Op, a: &[B; LANES], b: &[B; LANES]) -> [B; LANES] {
    #[inline]
    fn each<B: Copy>(f: impl Fn(usize) -> B) -> [B; LANES] {
        std::array::from_fn(f)
    }
    match op {
        Op::Add => each(|l| a[l] + b[l]),
        Op::Sub => each(|l| a[l] - b[l]),
        Op::Mul => each(|l| a[l] * b[l]),
        Op::Div => each(|l| a[l] / b[l]),
        Op::Neg => each(|l| -a[l]),
        _ => each(|l| apply_op(op, a[l], b[l])),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::analysis::{analyze, size_sweep};
    use crate::eval::{Instance, draw_values, record};
    use crate::source::Source;

    fn instance_of<'a>(program: &'a crate::analysis::Program, source: &'a Source) -> Instance<'a> {
        let sizes = size_sweep(program, &[]).unwrap().pop().unwrap();
        Instance::new(program, source, sizes, 1 << 20).unwrap()
    }

    /// At the recorded values and at points nearby, a replay gives the
    /// evaluator's L bit for bit; at a point that takes another branch it
    /// says so instead of giving a wrong L.
    #[test]
    fn replays_agree_with_the_evaluator_or_decline() {
        let text = "
            dim n = 6
            input x[n] in (-2, 2)
            param w[n] in (0.5, 2)
            let z = sum(k) exp(x[k])
            y[i] = relu(x[i]) * log(w[i]) + tanh(w[i] * x[i]) / z + max(x[i], 0.3) + [x[i] > 0] * x[i]^3
        ";
        let source = Source::new("t.dl", text);
        let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let instance = instance_of(&program, &source);
        let values = draw_values(&instance, 3).unwrap();
        let replay = Replay::compile(record::<f64>(&instance, &values).unwrap()).unwrap();
        let x = program.tensors.iter().position(|t| t.name == "x").unwrap();
        let mut points = vec![values.clone()];
        for (k, scale) in [(0usize, 1e-9), (1, 1e-3), (2, 0.5), (3, 3.0), (4, -2.0)] {
            let mut p = values.clone();
            for (i, v) in p[x].iter_mut().enumerate() {
                *v += scale * ((i + k) as f64).sin();
            }
            points.push(p);
        }
        let refs: Vec<&[ArrayD<f64>]> = points.iter().map(Vec::as_slice).collect();
        let losses = replay.losses(&refs);
        let mut declined = 0;
        for (p, l) in points.iter().zip(&losses) {
            let exact = instance.evaluation(p).loss().unwrap();
            match l {
                Some(l) => assert_eq!(l.to_bits(), exact.to_bits()),
                None => declined += 1,
            }
        }
        assert!(losses[0].is_some() && losses[1].is_some(), "{losses:?}");
        assert!(declined > 0, "the large steps change branches: {losses:?}");
    }

    /// A point where the evaluator fails (log of a negative) is declined.
    #[test]
    fn a_point_outside_the_domain_is_declined() {
        let text = "
            dim n = 3
            param w[n] in (0.5, 2)
            y[i] = log(w[i])
        ";
        let source = Source::new("t.dl", text);
        let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let instance = instance_of(&program, &source);
        let values = draw_values(&instance, 0).unwrap();
        let replay = Replay::compile(record::<f64>(&instance, &values).unwrap()).unwrap();
        let w = program.tensors.iter().position(|t| t.name == "w").unwrap();
        let mut bad = values.clone();
        bad[w][[1]] = -1.0;
        assert!(instance.evaluation(&bad).loss().is_err());
        let losses = replay.losses(&[&values, &bad]);
        assert!(losses[0].is_some());
        assert!(losses[1].is_none());
    }
}
