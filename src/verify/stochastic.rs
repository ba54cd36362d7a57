//! `claim COND`: a condition at every point of its free indices, where
//! `E[…]` and `Var[…]` take moments over the spec's random tensors.
//!
//! # Taking a moment
//! At each point the moment's body is compiled to a tape (`eval::tape`)
//! whose inputs are exactly the random elements the point reads.
//! - **Exact** when every input has a finite support and the outcomes
//!   number at most [`MAX_OUTCOMES`]: E and Var are sums over every outcome,
//!   weighted by its probability (outcomes of probability 0 never occur and
//!   are not evaluated). A body with no random input is its own expectation,
//!   with variance 0.
//! - **Monte Carlo** otherwise: `Options::samples` draws of the point's
//!   inputs (default [`DEFAULT_SAMPLES`]), from a generator seeded by the
//!   seed, the claim, the size and the point, in chunks that each have a
//!   stream of their own: chunks run in parallel and merge in order, so the
//!   report is byte-identical whatever the number of threads.
//!
//! # Deciding a comparison
//! Exact values (and deterministic ones) are equal when they differ by no
//! more than the rounding allowance `ROUNDING_ULPS · ε · n · S`: n the steps
//! of the tape (or the nodes of the expression), S the largest magnitude
//! among its constants, outcomes and operands (S² for a variance). Values
//! equal to rounding satisfy `==`, `<=`, `>=` and fail `<`, `>`, `!=`: a
//! strict comparison needs a gap above rounding.
//!
//! That allowance sees only the magnitudes of the claim's own expression:
//! rounding inside a `let` it reads, or cancellation deeper than it counts,
//! can exceed it. So a comparison of two deterministic sides (no moment in
//! either) that fails in f64 is redone in double-double arithmetic (about
//! 106 bits), both sides recomputed by the same evaluator from the same
//! values. Rounding shrinks about 2⁵⁰-fold with it, a real difference not
//! at all: the double-double difference is decided as above against the
//! allowance plus [`ROUNDING_SHRINK`] times the f64 difference. Where the
//! recomputation fails, the f64 verdict stands and the report says it was
//! not confirmed.
//!
//! A Monte Carlo estimate comes with a standard error: s/√N for a mean, and
//! √((m₄ − (N−3)/(N−1)·s⁴)/N) for the sample variance s² (m₄ the fourth
//! central moment). A comparison is refuted only when the data contradict
//! it beyond the interval estimate ± (z·SE + allowance):
//! - **the level**: a true claim is refuted with probability at most
//!   α = 10⁻⁶ ([`FALSE_ALARM`]), whatever its number of points: the m
//!   Monte Carlo tests a claim makes over the whole sweep are each run at
//!   α/m, two-sided (Bonferroni, valid under any dependence), so
//!   z = Φ⁻¹(1 − α/(2m)), computed by [`normal_quantile`];
//! - **the power**: a deviation δ is caught with probability at least
//!   1 − β when δ ≥ (z + z_β)·SE. With N = 2¹⁷, m = 100 (z ≈ 5.9) and
//!   β = 10⁻⁶ (z_β ≈ 4.75) that is δ ≥ 0.03·σ for a mean, σ the body's
//!   standard deviation, and about 0.04·σ² for the variance of a normal body.
//!
//! The normal approximation assumes the sample is large against the body's
//! tails (finite fourth moments for a variance): a body dominated by events
//! rarer than 1/N cannot be judged by sampling. `!=` and `not` are never
//! decided by sampling (a test that fails to refute proves nothing), and a
//! sampled moment must be a whole side of its comparison: `E[x - y] == 0`,
//! not `E[x] - E[y] == 0`, which exact moments allow.

use std::fmt::Write;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::{Value, json};

use super::context::SizeContext;
use super::grad::{record_mismatches, record_problems};
use super::outcome::*;
use super::{ClaimCheck, ROUNDING_SHRINK, ROUNDING_SURE, tolerance_ratio};
use crate::analysis::program::*;
use crate::analysis::{Sizes, size_sweep};
use crate::eval::double_double::Dd;
use crate::eval::random::{Law, Laws};
use crate::eval::tape::{LANES, Tape, TapeBuilder};
use crate::eval::{Deadline, EvalError, Evaluation, Frame, Instance, format_value, stream_seed};
use crate::report::plural;
use crate::source::Span;
use crate::syntax::ast::{CompareOp, Moment};
use ndarray::ArrayD;

/// Outcomes enumerated at most per point; more is sampled.
pub const MAX_OUTCOMES: usize = 1 << 12;
/// Monte Carlo samples per point, unless `--samples` says otherwise.
pub const DEFAULT_SAMPLES: u64 = 1 << 17;
/// The probability that a true claim is refuted by sampling, per claim.
pub const FALSE_ALARM: f64 = 1e-6;
/// Units of rounding per operation allowed between exact values.
const ROUNDING_ULPS: f64 = 64.0;
/// Samples per chunk: the unit of parallel work and of generator streams.
const CHUNK: u64 = 1 << 14;
/// Estimates kept in a claim's JSON report.
const ESTIMATES_KEPT: usize = 10_000;
/// Failing points described in the notes.
const FAILURES_NOTED: usize = 4;

/// How a moment was taken at a point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// The body reads no random element.
    Deterministic,
    /// Every outcome enumerated.
    Exact { outcomes: usize },
    /// Monte Carlo, with the estimate's standard error, and the most that
    /// outcomes too rare to be sampled could move it (0 where the body is
    /// unbounded and the normal approximation stands alone).
    Sampled { samples: u64, se: f64, rare: f64 },
}

/// A moment at one point.
#[derive(Clone, Copy, Debug)]
pub struct MomentValue {
    pub value: f64,
    pub method: Method,
    /// What rounding may have moved the value by.
    pub allowance: f64,
}

/// What taking a moment can run into.
pub enum MomentError {
    /// The body is undefined at some outcome: the evaluator's error.
    Undefined(Box<EvalError>),
    /// Out of time, or too large to compile: no verdict.
    Unchecked(Box<EvalError>),
}

/// Everything a moment needs at one size: values, laws, sample count, seed.
pub struct MomentEngine<'e, 'a> {
    pub evaluation: &'e Evaluation<'a, f64>,
    pub laws: &'e Laws,
    pub stochastic: &'e [bool],
    pub samples: u64,
    pub deadline: Option<Deadline>,
    /// Stops the sampling as the deadline does (the language server's next edit).
    pub cancel: Option<crate::eval::Cancel>,
    /// ln(2m/α) for the m tests of the claim: the L of the rare-event term.
    pub log_term: f64,
}

impl MomentEngine<'_, '_> {
    /// `E[body]` or `Var[body]` at the frame's point; `stream` seeds the draws.
    pub fn take(
        &self,
        moment: Moment,
        body: &Node,
        frame: &mut Frame<'_>,
        stream: u64,
    ) -> Result<MomentValue, MomentError> {
        let tape = TapeBuilder::new(self.evaluation, self.stochastic)
            .build(body, frame)
            .map_err(MomentError::Unchecked)?;
        match self.supports(&tape) {
            Some(supports) => self.enumerate(moment, &tape, &supports),
            None => self.sample(moment, &tape, stream),
        }
    }

    /// The inputs' finite supports, if they have them and few outcomes.
    fn supports(&self, tape: &Tape) -> Option<Vec<Vec<(f64, f64)>>> {
        let mut outcomes: usize = 1;
        let mut supports = vec![];
        for &input in tape.inputs() {
            let support = self.laws.get(input)?.support()?;
            outcomes = outcomes.checked_mul(support.len())?;
            if outcomes > MAX_OUTCOMES {
                return None;
            }
            supports.push(support);
        }
        Some(supports)
    }

    fn enumerate(
        &self,
        moment: Moment,
        tape: &Tape,
        supports: &[Vec<(f64, f64)>],
    ) -> Result<MomentValue, MomentError> {
        let mut registers = tape.registers();
        let mut values: Vec<(f64, f64)> = vec![];
        let mut scale = tape.constant_magnitude();
        let mut digits = vec![0usize; supports.len()];
        loop {
            let mut weight = 1.0;
            for (k, (support, &d)) in supports.iter().zip(&digits).enumerate() {
                let (x, p) = support.get(d).copied().unwrap_or((f64::NAN, 0.0));
                weight *= p;
                scale = scale.max(x.abs());
                tape.set_input(&mut registers, k, x);
            }
            if weight > 0.0 {
                let x = tape
                    .run(&mut registers)
                    .map_err(|stop| MomentError::Undefined(Box::new(tape.error(stop))))?;
                scale = scale.max(x.abs());
                values.push((x, weight));
            }
            if !odometer(&mut digits, supports) {
                break;
            }
        }
        let mean: f64 = values.iter().map(|(x, w)| w * x).sum();
        let variance: f64 = values.iter().map(|(x, w)| w * (x - mean).powi(2)).sum();
        let method = if supports.is_empty() {
            Method::Deterministic
        } else {
            Method::Exact {
                outcomes: values.len(),
            }
        };
        Ok(finish(moment, mean, variance, method, tape, scale))
    }

    fn sample(&self, moment: Moment, tape: &Tape, stream: u64) -> Result<MomentValue, MomentError> {
        let laws: Vec<_> = tape
            .inputs()
            .iter()
            .map(|&e| self.laws.get(e).copied())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                MomentError::Unchecked(Box::new(EvalError::Internal {
                    what: "a random element without a law".to_string(),
                }))
            })?;
        let samples = self.samples.max(2);
        let chunks = samples.div_ceil(CHUNK);
        let deadline = self.deadline;
        let cancel = self.cancel.as_ref();
        let chunk_result = |chunk: u64| {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d.at)
                || cancel.is_some_and(crate::eval::Cancel::is_cancelled)
            {
                return ChunkResult::OutOfTime;
            }
            let len = CHUNK.min(samples - chunk * CHUNK);
            let mut rng = ChaCha8Rng::seed_from_u64(stream);
            rng.set_stream(chunk);
            let mut sums = ShiftedSums::default();
            let outcome = if tape.batchable() {
                sample_batches(tape, &laws, len, &mut rng, &mut sums)
            } else {
                sample_one_by_one(tape, &laws, len, &mut rng, &mut sums)
            };
            match outcome {
                Ok(()) => ChunkResult::Done(sums),
                Err(e) => ChunkResult::Stopped(e),
            }
        };
        // One chunk: nothing to share out, the pool would sample it on one
        // thread while this one waits (see `crate::eval::HAND_OVER`).
        let results: Vec<ChunkResult> = if chunks > 1 {
            (0..chunks).into_par_iter().map(chunk_result).collect()
        } else {
            (0..chunks).map(chunk_result).collect()
        };
        let mut total = Moments::default();
        let mut scale = tape.constant_magnitude();
        for result in results {
            match result {
                ChunkResult::Done(sums) => {
                    scale = scale.max(sums.max_abs);
                    total = total.merge(&sums.moments());
                }
                ChunkResult::Stopped(e) => return Err(MomentError::Undefined(e)),
                ChunkResult::OutOfTime => {
                    return Err(MomentError::Unchecked(Box::new(EvalError::Timeout {
                        limit: deadline.map_or_else(String::new, |d| {
                            format!("{} s", format_value(d.limit.as_secs_f64()))
                        }),
                        sizes: self.evaluation.sizes().to_string(),
                        slow: None,
                    })));
                }
            }
        }
        let variance = total.variance();
        let se = match moment {
            Moment::Expectation => (variance / total.n).sqrt(),
            Moment::Variance => total.variance_se(),
        };
        // Empirical Bernstein's range term (Maurer & Pontil, 2009): what
        // outcomes of probability below about L/N, which the sample may
        // miss or catch too often, can move the estimate, for a body that
        // interval arithmetic bounds to a range R.
        let inputs: Vec<(f64, f64)> = laws.iter().map(|l| l.range()).collect();
        let (lo, hi) = tape.output_range(&inputs);
        let range = hi - lo;
        let rare = if range.is_finite() {
            let term = 7.0 * self.log_term / (3.0 * (total.n - 1.0));
            match moment {
                Moment::Expectation => range * term,
                Moment::Variance => range * range * term,
            }
        } else {
            0.0
        };
        let method = Method::Sampled { samples, se, rare };
        Ok(finish(moment, total.mean, variance, method, tape, scale))
    }
}

/// `len` samples, one run each.
fn sample_one_by_one(
    tape: &Tape,
    laws: &[Law],
    len: u64,
    rng: &mut ChaCha8Rng,
    sums: &mut ShiftedSums,
) -> Result<(), Box<EvalError>> {
    let mut registers = tape.registers();
    for _ in 0..len {
        for (k, law) in laws.iter().enumerate() {
            tape.set_input(&mut registers, k, law.sample(rng));
        }
        sums.push(
            tape.run(&mut registers)
                .map_err(|stop| Box::new(tape.error(stop)))?,
        );
    }
    Ok(())
}

/// `len` samples, [`LANES`] per run; a batch in which some sample stops is
/// run again sample by sample, so that the first to stop is reported.
fn sample_batches(
    tape: &Tape,
    laws: &[Law],
    len: u64,
    rng: &mut ChaCha8Rng,
    sums: &mut ShiftedSums,
) -> Result<(), Box<EvalError>> {
    let mut registers = tape.batch_registers();
    let mut single = tape.registers();
    let mut done = 0;
    while done < len {
        let used = usize::try_from((len - done).min(LANES as u64)).unwrap_or(LANES);
        for (k, law) in laws.iter().enumerate() {
            law.fill(rng, tape.input_lanes(&mut registers, k));
        }
        if tape.run_batch(&mut registers) {
            sums.push_all(tape.output_lanes(&registers).get(..used).unwrap_or(&[]));
        } else {
            for lane in 0..used {
                for k in 0..laws.len() {
                    let x = tape.input_lanes(&mut registers, k).get(lane).copied();
                    tape.set_input(&mut single, k, x.unwrap_or(f64::NAN));
                }
                sums.push(
                    tape.run(&mut single)
                        .map_err(|stop| Box::new(tape.error(stop)))?,
                );
            }
        }
        done += used as u64;
    }
    Ok(())
}

/// The moment asked for, with its rounding allowance.
fn finish(
    moment: Moment,
    mean: f64,
    variance: f64,
    method: Method,
    tape: &Tape,
    scale: f64,
) -> MomentValue {
    let steps = (tape.len() + 1) as f64;
    let rounding = ROUNDING_ULPS * f64::EPSILON * steps * scale;
    let (value, allowance) = match moment {
        Moment::Expectation => (mean, rounding),
        Moment::Variance => (variance, rounding * scale),
    };
    MomentValue {
        value,
        method,
        allowance,
    }
}

/// Advances the outcome counter; false once every outcome has been visited.
fn odometer(digits: &mut [usize], supports: &[Vec<(f64, f64)>]) -> bool {
    for (d, support) in digits.iter_mut().zip(supports) {
        *d += 1;
        if *d < support.len() {
            return true;
        }
        *d = 0;
    }
    false
}

enum ChunkResult {
    Done(ShiftedSums),
    Stopped(Box<EvalError>),
    OutOfTime,
}

/// Power sums of `x − shift` over one chunk, the shift being its first
/// value: close enough to the mean that the central moments computed from
/// them keep their precision.
#[derive(Default)]
struct ShiftedSums {
    n: u64,
    shift: f64,
    s: [f64; 4],
    max_abs: f64,
}

impl ShiftedSums {
    #[inline]
    fn push(&mut self, x: f64) {
        if self.n == 0 {
            self.shift = x;
        }
        self.n += 1;
        self.max_abs = self.max_abs.max(x.abs());
        let d = x - self.shift;
        let d2 = d * d;
        self.s[0] += d;
        self.s[1] += d2;
        self.s[2] += d2 * d;
        self.s[3] += d2 * d2;
    }

    /// As many `push`es, with partial sums the compiler can keep in
    /// vector registers (summed in a fixed order: the same on every run).
    fn push_all(&mut self, xs: &[f64]) {
        const WAYS: usize = 8;
        if self.n == 0
            && let Some(&x) = xs.first()
        {
            self.shift = x;
        }
        let shift = self.shift;
        let mut s = [[0.0; WAYS]; 4];
        let mut max_abs = [0.0_f64; WAYS];
        for chunk in xs.chunks(WAYS) {
            for (j, &x) in chunk.iter().enumerate() {
                let d = x - shift;
                let d2 = d * d;
                s[0][j] += d;
                s[1][j] += d2;
                s[2][j] += d2 * d;
                s[3][j] += d2 * d2;
                max_abs[j] = max_abs[j].max(x.abs());
            }
        }
        for (total, partial) in self.s.iter_mut().zip(&s) {
            *total += partial.iter().sum::<f64>();
        }
        self.max_abs = max_abs.iter().fold(self.max_abs, |m, &v| m.max(v));
        self.n += xs.len() as u64;
    }

    fn moments(&self) -> Moments {
        if self.n == 0 {
            return Moments::default();
        }
        let n = self.n as f64;
        let [s1, s2, s3, s4] = self.s;
        let m = s1 / n;
        Moments {
            n,
            mean: self.shift + m,
            m2: (s2 - n * m * m).max(0.0),
            m3: s3 - 3.0 * m * s2 + 2.0 * n * m.powi(3),
            m4: (s4 - 4.0 * m * s3 + 6.0 * m * m * s2 - 3.0 * n * m.powi(4)).max(0.0),
        }
    }
}

/// Count, mean and central sums Σ(x − mean)ᵏ for k = 2, 3, 4.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    pub n: f64,
    pub mean: f64,
    pub m2: f64,
    pub m3: f64,
    pub m4: f64,
}

impl Moments {
    /// The moments of two samples together (Pébay's formulas, 2008).
    pub fn merge(&self, b: &Moments) -> Moments {
        let a = self;
        if a.n == 0.0 {
            return *b;
        }
        if b.n == 0.0 {
            return *a;
        }
        let n = a.n + b.n;
        let d = b.mean - a.mean;
        let (na, nb) = (a.n, b.n);
        Moments {
            n,
            mean: a.mean + d * nb / n,
            m2: a.m2 + b.m2 + d * d * na * nb / n,
            m3: a.m3
                + b.m3
                + d.powi(3) * na * nb * (na - nb) / (n * n)
                + 3.0 * d * (na * b.m2 - nb * a.m2) / n,
            m4: a.m4
                + b.m4
                + d.powi(4) * na * nb * (na * na - na * nb + nb * nb) / n.powi(3)
                + 6.0 * d * d * (na * na * b.m2 + nb * nb * a.m2) / (n * n)
                + 4.0 * d * (na * b.m3 - nb * a.m3) / n,
        }
    }

    /// The unbiased sample variance s².
    pub fn variance(&self) -> f64 {
        if self.n < 2.0 {
            return 0.0;
        }
        self.m2 / (self.n - 1.0)
    }

    /// The standard error of s²: √((m₄ − (N−3)/(N−1)·s⁴)/N).
    pub fn variance_se(&self) -> f64 {
        if self.n < 4.0 {
            return f64::INFINITY;
        }
        let s2 = self.variance();
        let m4 = self.m4 / self.n;
        ((m4 - (self.n - 3.0) / (self.n - 1.0) * s2 * s2).max(0.0) / self.n).sqrt()
    }
}

/// The standard normal quantile Φ⁻¹(p), by Acklam's rational approximation
/// (relative error below 1.2·10⁻⁹ over (0, 1)).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    if p.is_nan() || p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        let r = (-2.0 * q.ln()).sqrt();
        (((((C[0] * r + C[1]) * r + C[2]) * r + C[3]) * r + C[4]) * r + C[5])
            / ((((D[0] * r + D[1]) * r + D[2]) * r + D[3]) * r + 1.0)
    };
    if p < LOW {
        tail(p)
    } else if p > 1.0 - LOW {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The per-test critical value for `tests` two-sided tests sharing α.
pub fn critical_z(tests: usize) -> f64 {
    let m = tests.max(1) as f64;
    normal_quantile(1.0 - FALSE_ALARM / (2.0 * m))
}

/// ln(2m/α): the confidence term of Bernstein-type bounds for m tests.
pub fn log_term(tests: usize) -> f64 {
    (2.0 * tests.max(1) as f64 / FALSE_ALARM).ln()
}

/// One side of a comparison, as taken at a point.
#[derive(Clone, Debug)]
pub struct Operand {
    pub value: f64,
    pub allowance: f64,
    /// The moment this side is, if it is one.
    pub moment: Option<(Moment, MomentValue)>,
    /// Rests on a sampled moment somewhere.
    pub sampled: bool,
}

impl Operand {
    /// The standard error and the rare-event allowance of a sampled
    /// moment; 0 and 0 for any other side.
    fn sampling_error(&self) -> (f64, f64) {
        match self.moment {
            Some((
                _,
                MomentValue {
                    method: Method::Sampled { se, rare, .. },
                    ..
                },
            )) => (se, rare),
            _ => (0.0, 0.0),
        }
    }
}

/// What a condition came to at one point.
#[derive(Clone, Debug)]
pub enum Judgement {
    Holds,
    Refuted,
    /// Undefined at this point: the evaluator's error.
    Undefined(Box<EvalError>),
    /// No verdict: out of time, or a question sampling cannot settle.
    Unsettled(String),
}

/// One comparison decided at a point, for the report.
#[derive(Clone, Debug)]
pub struct Decided {
    pub lhs: Operand,
    pub op: CompareOp,
    pub rhs: Operand,
    pub holds: bool,
    /// The half-width of the interval the comparison was decided with.
    pub margin: f64,
    /// A deterministic comparison that failed in f64, redone in
    /// double-double; `holds` is then its verdict.
    pub precise: Option<Recheck>,
    /// Redone in double-double, it shrank, but not as far as rounding
    /// would: the comparison cannot be decided.
    pub unclear: bool,
}

/// A deterministic comparison redone in double-double.
#[derive(Clone, Debug)]
pub enum Recheck {
    Done {
        /// lhs − rhs in double-double.
        difference: f64,
        /// What rounding in f64 may leave of it: the f64 allowance plus
        /// [`ROUNDING_SHRINK`] times the f64 difference.
        allowed: f64,
        /// The f64 verdict it replaced.
        f64_holds: bool,
    },
    /// The recomputation failed: the f64 verdict stands, unconfirmed.
    Failed(String),
}

impl Decided {
    /// How near the comparison came to failing (or how far past it): its
    /// difference over the interval it was decided with, ≤ 1 where it
    /// holds. For a strict comparison, the interval over the gap.
    pub fn ratio(&self) -> f64 {
        let (diff, margin) = match &self.precise {
            Some(Recheck::Done {
                difference,
                allowed,
                ..
            }) => (*difference, *allowed),
            _ => (self.lhs.value - self.rhs.value, self.margin),
        };
        // A strict comparison needs a gap: the interval over it, and
        // unbounded where there is none.
        let over_gap = |gap: f64| {
            if gap > 0.0 {
                tolerance_ratio(margin, gap)
            } else {
                f64::INFINITY
            }
        };
        match self.op {
            CompareOp::Eq => tolerance_ratio(diff.abs(), margin),
            CompareOp::Le => tolerance_ratio(diff, margin),
            CompareOp::Ge => tolerance_ratio(-diff, margin),
            CompareOp::Lt => over_gap(-diff),
            CompareOp::Gt => over_gap(diff),
            CompareOp::Ne => over_gap(diff.abs()),
        }
    }

    /// Redoes the comparison with lhs − rhs computed in double-double.
    fn recheck(&mut self, difference: Result<f64, String>) {
        self.precise = Some(match difference {
            Ok(difference) => {
                let f64_difference = (self.lhs.value - self.rhs.value).abs();
                let allowed = self.margin + ROUNDING_SHRINK * f64_difference;
                let sure = self.margin + ROUNDING_SURE * f64_difference;
                let f64_holds = self.holds;
                self.holds = exact_holds(self.op, difference, allowed);
                // Holds only with the lenient allowance: cannot be told.
                if self.holds != exact_holds(self.op, difference, sure) {
                    self.unclear = true;
                }
                Recheck::Done {
                    difference,
                    allowed,
                    f64_holds,
                }
            }
            Err(why) => Recheck::Failed(why),
        });
    }
}

/// `<`, `>`, `!=`: they need a gap above rounding, and a gap that f64
/// rounding opened is no gap.
fn is_strict(op: CompareOp) -> bool {
    matches!(op, CompareOp::Lt | CompareOp::Gt | CompareOp::Ne)
}

/// `lhs − rhs = diff` against `op` for exact values, with values within
/// `margin` of each other equal: they satisfy `==`, `<=`, `>=` and fail
/// the strict comparisons.
fn exact_holds(op: CompareOp, diff: f64, margin: f64) -> bool {
    let equal = diff.abs() <= margin;
    match op {
        CompareOp::Eq => equal,
        CompareOp::Ne => !equal,
        CompareOp::Lt => !equal && diff < 0.0,
        CompareOp::Le => equal || diff < 0.0,
        CompareOp::Gt => !equal && diff > 0.0,
        CompareOp::Ge => equal || diff > 0.0,
    }
}

/// The spec's values at one size in double-double, for redoing the
/// deterministic comparisons that fail in f64; its definitions are
/// computed on first use.
pub struct PreciseValues<'a> {
    instance: &'a Instance<'a>,
    values: &'a [ArrayD<Dd>],
    evaluation: Option<Result<Evaluation<'a, Dd>, String>>,
}

impl<'a> PreciseValues<'a> {
    pub fn new(instance: &'a Instance<'a>, values: &'a [ArrayD<Dd>]) -> Self {
        Self {
            instance,
            values,
            evaluation: None,
        }
    }

    /// The tensor values lifted to double-double.
    pub fn lift(values: &[ArrayD<f64>]) -> Vec<ArrayD<Dd>> {
        values.iter().map(|a| a.mapv(Dd::from_f64)).collect()
    }

    /// lhs − rhs in double-double at the frame's point.
    fn difference(&mut self, lhs: &Node, rhs: &Node, frame: &mut Frame<'_>) -> Result<f64, String> {
        let (instance, values) = (self.instance, self.values);
        let evaluation = self
            .evaluation
            .get_or_insert_with(|| {
                let mut evaluation = instance.evaluation(values);
                evaluation
                    .compute_defs(false)
                    .map(|()| evaluation)
                    .map_err(|e| format!("double-double evaluation failed: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let side = |node: &Node, frame: &mut Frame<'_>| {
            evaluation
                .node(node, frame)
                .map_err(|e| format!("double-double evaluation failed: {e}"))
        };
        let a = side(lhs, frame)?;
        let b = side(rhs, frame)?;
        Ok((a - b).to_f64())
    }
}

/// Decides `lhs op rhs` as the module documentation says.
pub fn compare(lhs: &Operand, op: CompareOp, rhs: &Operand, z: f64) -> Result<Decided, String> {
    let diff = lhs.value - rhs.value;
    let rounding = lhs.allowance + rhs.allowance;
    let sampled = lhs.sampled || rhs.sampled;
    let margin = if sampled {
        let ((lhs_se, lhs_rare), (rhs_se, rhs_rare)) = (lhs.sampling_error(), rhs.sampling_error());
        rounding + z * lhs_se.hypot(rhs_se) + lhs_rare + rhs_rare
    } else {
        rounding
    };
    let holds = if sampled {
        match op {
            CompareOp::Eq => diff.abs() <= margin,
            CompareOp::Le | CompareOp::Lt => diff <= margin,
            CompareOp::Ge | CompareOp::Gt => diff >= -margin,
            CompareOp::Ne => {
                return Err(
                    "`!=` cannot be decided by sampling: an estimate close to a value does not prove them equal"
                        .to_string(),
                );
            }
        }
    } else {
        exact_holds(op, diff, margin)
    };
    Ok(Decided {
        lhs: lhs.clone(),
        op,
        rhs: rhs.clone(),
        holds,
        margin,
        precise: None,
        unclear: false,
    })
}

/// Evaluates claim conditions and objectives at points, moments included.
pub struct Judge<'e, 'a> {
    pub engine: MomentEngine<'e, 'a>,
    pub z: f64,
    /// Seeds the draws of this claim at this size.
    pub stream: u64,
    /// The comparisons decided at the current point, for the report.
    pub decided: Vec<Decided>,
    /// Where deterministic comparisons that fail in f64 are redone in
    /// double-double (`None`: they are not).
    pub precise: Option<&'e mut PreciseValues<'a>>,
}

impl Judge<'_, '_> {
    /// The stream of one moment at one point: independent of every other.
    fn point_stream(&self, node: &Node, frame: &Frame<'_>) -> u64 {
        let point: Vec<String> = frame.env().iter().map(i64::to_string).collect();
        stream_seed(
            self.stream,
            &format!("moment@{}:{}", node.span.start, point.join(",")),
            &[],
        )
    }

    /// A side of a comparison: a moment, an expression with exact moments
    /// in it, or a plain value.
    pub fn operand(&mut self, node: &Node, frame: &mut Frame<'_>) -> Result<Operand, Judgement> {
        if let NodeKind::Moment { moment, body } = &node.node {
            let stream = self.point_stream(node, frame);
            let taken = self
                .engine
                .take(*moment, body, frame, stream)
                .map_err(|e| match e {
                    MomentError::Undefined(e) => Judgement::Undefined(e),
                    MomentError::Unchecked(e) => Judgement::Unsettled(e.to_string()),
                })?;
            return Ok(Operand {
                value: taken.value,
                allowance: taken.allowance,
                moment: Some((*moment, taken)),
                sampled: matches!(taken.method, Method::Sampled { .. }),
            });
        }
        let mut moment_scale: f64 = 0.0;
        // Copied only to put moments' values in: an optimum's search judges
        // the same moment-free constraints thousands of times.
        let substituted = if contains_moment(node) {
            let mut substituted = node.clone();
            let mut failure: Option<Judgement> = None;
            self.substitute_moments(&mut substituted, frame, &mut moment_scale, &mut failure);
            if let Some(failure) = failure {
                return Err(failure);
            }
            std::borrow::Cow::Owned(substituted)
        } else {
            std::borrow::Cow::Borrowed(node)
        };
        let substituted = substituted.as_ref();
        let evaluation = self.engine.evaluation;
        let value = evaluation
            .node(substituted, frame)
            .map_err(Judgement::Undefined)?;
        let (count, magnitude) = size_and_magnitude(evaluation, substituted, frame);
        let scale = magnitude.max(value.abs()).max(moment_scale);
        Ok(Operand {
            value,
            allowance: ROUNDING_ULPS * f64::EPSILON * count as f64 * scale,
            moment: None,
            sampled: false,
        })
    }

    /// Replaces every moment inside `node` by its exact value; a sampled
    /// one inside an expression has no interval and leaves a failure.
    fn substitute_moments(
        &mut self,
        node: &mut Node,
        frame: &mut Frame<'_>,
        scale: &mut f64,
        failure: &mut Option<Judgement>,
    ) {
        if failure.is_some() {
            return;
        }
        if let NodeKind::Moment { moment, body } = &node.node {
            let stream = self.point_stream(node, frame);
            match self.engine.take(*moment, body, frame, stream) {
                Ok(MomentValue {
                    method: Method::Sampled { .. },
                    ..
                }) => {
                    *failure = Some(Judgement::Unsettled(
                        "a sampled moment inside a larger expression has no confidence interval: compare the moment itself, e.g. `E[x - y] == 0` rather than `E[x] - E[y] == 0`".to_string(),
                    ));
                }
                Ok(taken) => {
                    *scale = scale
                        .max(taken.value.abs())
                        .max(taken.allowance / f64::EPSILON);
                    node.node = NodeKind::Const(taken.value);
                }
                Err(MomentError::Undefined(e)) => *failure = Some(Judgement::Undefined(e)),
                Err(MomentError::Unchecked(e)) => {
                    *failure = Some(Judgement::Unsettled(e.to_string()));
                }
            }
            return;
        }
        match &mut node.node {
            NodeKind::Neg(a) | NodeKind::PowInt(a, _) => {
                self.substitute_moments(a, frame, scale, failure);
            }
            NodeKind::Binary { lhs, rhs, .. } => {
                self.substitute_moments(lhs, frame, scale, failure);
                self.substitute_moments(rhs, frame, scale, failure);
            }
            NodeKind::Call { args, .. } => {
                for a in args {
                    self.substitute_moments(a, frame, scale, failure);
                }
            }
            NodeKind::Reduce { body, .. } | NodeKind::Pick { body, .. }
                if contains_moment(body) =>
            {
                *failure = Some(Judgement::Unsettled(
                    "a moment inside a reduction: take the moment of the whole sum".to_string(),
                ));
            }
            NodeKind::Iverson(c) if cond_contains_moment(c) => {
                *failure = Some(Judgement::Unsettled(
                    "a moment inside an Iverson bracket: compare it in the claim's condition"
                        .to_string(),
                ));
            }
            _ => {}
        }
    }

    /// Decides a condition at the frame's point, as lazily as the evaluator:
    /// a chain stops at its first false comparison, `and` and `or` at the
    /// first side that settles them.
    pub fn condition(&mut self, c: &Cond, frame: &mut Frame<'_>) -> Judgement {
        match &c.node {
            CondKind::Compare { first, rest } => {
                let mut lhs = match self.operand(first, frame) {
                    Ok(o) => o,
                    Err(j) => return j,
                };
                let mut lhs_node: &Node = first;
                for (op, e) in rest {
                    let rhs = match self.operand(e, frame) {
                        Ok(o) => o,
                        Err(j) => return j,
                    };
                    let mut decided = match compare(&lhs, *op, &rhs, self.z) {
                        Ok(d) => d,
                        Err(why) => return Judgement::Unsettled(why),
                    };
                    // A failure may be rounding beyond the f64 allowance;
                    // so may the gap a strict comparison passes with.
                    if (!decided.holds || is_strict(*op))
                        && !contains_moment(lhs_node)
                        && !contains_moment(e)
                        && let Some(precise) = self.precise.as_deref_mut()
                    {
                        decided.recheck(precise.difference(lhs_node, e, frame));
                    }
                    lhs_node = e;
                    let holds = decided.holds;
                    let unclear = decided.unclear;
                    self.decided.push(decided);
                    if unclear {
                        return Judgement::Unsettled(
                            "a comparison that failed its f64 rounding allowance shrank in double-double, but not as far as rounding would: neither equal to rounding nor different for certain".to_string(),
                        );
                    }
                    if !holds {
                        return Judgement::Refuted;
                    }
                    lhs = rhs;
                }
                Judgement::Holds
            }
            CondKind::And(a, b) => match self.condition(a, frame) {
                Judgement::Holds => self.condition(b, frame),
                other => other,
            },
            CondKind::Or(a, b) => match self.condition(a, frame) {
                Judgement::Refuted => self.condition(b, frame),
                other => other,
            },
            CondKind::Not(a) => {
                let before = self.decided.len();
                let inner = self.condition(a, frame);
                if self.decided[before..]
                    .iter()
                    .any(|d| d.lhs.sampled || d.rhs.sampled)
                {
                    return Judgement::Unsettled(
                        "`not` of a sampled comparison cannot be decided: failing to refute it proves nothing"
                            .to_string(),
                    );
                }
                match inner {
                    Judgement::Holds => Judgement::Refuted,
                    Judgement::Refuted => Judgement::Holds,
                    other => other,
                }
            }
        }
    }
}

pub fn contains_moment(node: &Node) -> bool {
    let mut found = false;
    crate::analysis::visit(node, &mut |n| {
        found |= matches!(n.node, NodeKind::Moment { .. })
    });
    found
}

pub fn cond_contains_moment(c: &Cond) -> bool {
    let mut found = false;
    crate::analysis::visit_cond(c, &mut |n| {
        found |= matches!(n.node, NodeKind::Moment { .. })
    });
    found
}

/// The comparisons of a condition that involve a moment: its tests per point.
pub fn moment_comparisons(c: &Cond) -> usize {
    match &c.node {
        CondKind::Compare { first, rest } => {
            let mut count = 0;
            let mut previous = contains_moment(first);
            for (_, e) in rest {
                let this = contains_moment(e);
                count += usize::from(previous || this);
                previous = this;
            }
            count
        }
        CondKind::And(a, b) | CondKind::Or(a, b) => moment_comparisons(a) + moment_comparisons(b),
        CondKind::Not(a) => moment_comparisons(a),
    }
}

/// The number of operations in an expression and the largest magnitude of
/// its parts (outside reductions and brackets, which count as one value):
/// the n and S of its rounding allowance.
fn size_and_magnitude(
    evaluation: &Evaluation<'_, f64>,
    node: &Node,
    frame: &mut Frame<'_>,
) -> (usize, f64) {
    let mut count = 0;
    crate::analysis::visit(node, &mut |_| count += 1);
    let mut magnitude: f64 = 0.0;
    let mut parts = vec![node];
    while let Some(n) = parts.pop() {
        if let Ok(v) = evaluation.node(n, frame) {
            magnitude = magnitude.max(v.abs());
        }
        match &n.node {
            NodeKind::Neg(a) | NodeKind::PowInt(a, _) => parts.push(a),
            NodeKind::Binary { lhs, rhs, .. } => parts.extend([&**lhs, &**rhs]),
            NodeKind::Call { args, .. } => parts.extend(args.iter()),
            _ => {}
        }
    }
    (count.max(1), magnitude)
}

/// The points refuted and the points undefined, over the sizes so far.
pub fn failed_points(outcome: &ClaimOutcome) -> (usize, usize) {
    let refuted = outcome.mismatch_groups.iter().map(|g| g.count).sum();
    let undefined = outcome.problems.iter().map(|p| p.elements.count).sum();
    (refuted, undefined)
}

/// The points of a claim's free indices at one size.
pub fn claim_grid(points: &ClaimPoints, sizes: &Sizes) -> crate::eval::Grid {
    crate::eval::Grid::of_axes(&points.axes, sizes)
}

/// Points of a claim over the whole sweep: the m of Bonferroni.
pub fn points_over_sweep(points: &ClaimPoints, cx: &SizeContext<'_>) -> usize {
    let sweep = size_sweep(cx.program, &cx.options.dims).unwrap_or_default();
    let total: u64 = sweep
        .iter()
        .map(|s| claim_grid(points, s).len().unwrap_or(0))
        .sum();
    usize::try_from(total).unwrap_or(usize::MAX).max(1)
}

/// `i = 3, n = 4`: a point and the sizes, in the spec's terms.
pub fn describe_point(names: &[String], point: &[i64], sizes: &Sizes) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(point)
        .map(|(n, v)| format!("{n} = {v}"))
        .collect();
    parts.extend(sizes.named().map(|(n, v)| format!("{n} = {v}")));
    parts.join(", ")
}

/// Counts of how the moments of a claim were taken, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct MethodTally {
    pub deterministic: usize,
    pub exact: usize,
    pub sampled: usize,
    pub max_outcomes: usize,
    pub samples: u64,
}

impl MethodTally {
    pub fn add(&mut self, method: Method) {
        match method {
            Method::Deterministic => self.deterministic += 1,
            Method::Exact { outcomes } => {
                self.exact += 1;
                self.max_outcomes = self.max_outcomes.max(outcomes);
            }
            Method::Sampled { samples, .. } => {
                self.sampled += 1;
                self.samples = samples;
            }
        }
    }

    /// `exact`, `monte carlo`, `mixed` or `deterministic`.
    pub fn name(&self) -> &'static str {
        match (self.exact + self.deterministic > 0, self.sampled > 0) {
            (true, true) => "mixed",
            (false, true) => "monte carlo",
            _ if self.exact > 0 => "exact",
            _ => "deterministic",
        }
    }

    /// One line on how the moments were taken.
    pub fn describe(&self, z: f64, tests: usize) -> String {
        let mut parts = vec![];
        if self.exact > 0 {
            parts.push(format!(
                "exact: {} moment{} over every outcome (at most {} each)",
                self.exact,
                plural(self.exact),
                self.max_outcomes
            ));
        }
        if self.deterministic > 0 {
            parts.push(format!(
                "exact: {} moment{} of a value that reads nothing random",
                self.deterministic,
                plural(self.deterministic)
            ));
        }
        if self.sampled > 0 {
            parts.push(format!(
                "Monte Carlo: {} moment{}, {} samples each, simultaneous level 1 − {:e} (z = {:.2} per test, Bonferroni over {} test{}, plus a rare-event allowance where the body is bounded); a deviation above {:.1} standard errors is caught with probability 1 − {:e} ({:.3} σ for a mean)",
                self.sampled,
                plural(self.sampled),
                self.samples,
                FALSE_ALARM,
                z,
                tests,
                plural(tests),
                z + normal_quantile(1.0 - FALSE_ALARM),
                FALSE_ALARM,
                detectable_effect(z, self.samples)
            ));
        }
        if parts.is_empty() {
            return "deterministic".to_string();
        }
        parts.join("; ")
    }
}

/// The smallest deviation of a mean, in standard deviations of the body,
/// caught with probability at least 1 − 10⁻⁶ at critical value z.
pub fn detectable_effect(z: f64, samples: u64) -> f64 {
    let z_beta = normal_quantile(1.0 - FALSE_ALARM);
    (z + z_beta) / (samples.max(1) as f64).sqrt()
}

/// A `claim COND`'s findings, gathered over the sizes of the sweep.
pub struct HoldsCheck<'p> {
    claim: &'p HoldsClaim,
    claim_start: usize,
    outcome: ClaimOutcome,
    /// Monte Carlo tests over the sweep and their critical value.
    budget: Option<(usize, f64)>,
    tally: MethodTally,
    points_checked: usize,
    estimates: Vec<Value>,
    failures: Vec<String>,
    /// The largest |moment − other side| of a comparison, and of |diff| / margin.
    closest: (f64, f64),
    /// Deterministic comparisons that failed in f64, redone in double-double.
    rechecks: RecheckTally,
    unsettled: Option<String>,
}

/// What redoing failed deterministic comparisons in double-double found.
#[derive(Debug, Default)]
struct RecheckTally {
    /// Comparisons whose f64 failure was rounding: they hold.
    rounding: usize,
    /// Comparisons that still fail in double-double.
    persist: usize,
    /// Strict comparisons that passed in f64 on a gap that double-double
    /// shows to be rounding.
    no_gap: usize,
    /// The rounding one with the largest f64 difference: that difference,
    /// the f64 allowance, and the double-double difference with what it
    /// was allowed.
    largest: Option<RoundingFigures>,
    /// Comparisons that could not be redone, and the first reason.
    failed: usize,
    failure: Option<String>,
}

#[derive(Clone, Copy, Debug)]
struct RoundingFigures {
    f64_difference: f64,
    f64_allowance: f64,
    precise_difference: f64,
    allowed: f64,
}

impl RecheckTally {
    fn add(&mut self, d: &Decided) {
        match &d.precise {
            None => {}
            Some(Recheck::Failed(why)) => {
                self.failed += 1;
                self.failure.get_or_insert_with(|| why.clone());
            }
            // A strict comparison's gap confirmed: nothing to report.
            Some(Recheck::Done {
                f64_holds: true, ..
            }) if d.holds => {}
            Some(Recheck::Done {
                f64_holds: true, ..
            }) => self.no_gap += 1,
            Some(Recheck::Done { .. }) if !d.holds => self.persist += 1,
            Some(Recheck::Done {
                difference,
                allowed,
                ..
            }) => {
                self.rounding += 1;
                let figures = RoundingFigures {
                    f64_difference: (d.lhs.value - d.rhs.value).abs(),
                    f64_allowance: d.margin,
                    precise_difference: difference.abs(),
                    allowed: *allowed,
                };
                if self
                    .largest
                    .is_none_or(|l| figures.f64_difference > l.f64_difference)
                {
                    self.largest = Some(figures);
                }
            }
        }
    }

    /// Lines for the report.
    fn notes(&self) -> Vec<String> {
        let mut notes = vec![];
        if let Some(l) = self.largest {
            notes.push(format!(
                "double-double: {} comparison{} that failed in f64 beyond the rounding allowance (by up to {}, allowance {}) hold{} when both sides are redone in double-double (difference {}, within the {} rounding could leave): rounding, not a mistake",
                self.rounding,
                plural(self.rounding),
                format_value(l.f64_difference),
                format_value(l.f64_allowance),
                if self.rounding == 1 { "s" } else { "" },
                format_value(l.precise_difference),
                format_value(l.allowed)
            ));
        }
        if self.no_gap > 0 {
            notes.push(format!(
                "double-double: {} strict comparison{} that passed in f64 {} equal to rounding when redone in double-double: the gap was rounding",
                self.no_gap,
                plural(self.no_gap),
                if self.no_gap == 1 { "is" } else { "are" }
            ));
        }
        if self.failed > 0 {
            notes.push(format!(
                "{} comparison{} that failed in f64 could not be redone in double-double, so the f64 verdict stands unconfirmed: {}",
                self.failed,
                plural(self.failed),
                self.failure.as_deref().unwrap_or("")
            ));
        }
        notes
    }

    fn json(&self) -> Option<Value> {
        if self.rounding + self.persist + self.no_gap + self.failed == 0 {
            return None;
        }
        Some(json!({
            "rounding": self.rounding,
            "persist": self.persist,
            "no_gap": self.no_gap,
            "failed": self.failed,
            "failure": self.failure,
            "largest_rounding": self.largest.map(|l| json!({
                "f64_difference": l.f64_difference,
                "f64_allowance": l.f64_allowance,
                "precise_difference": l.precise_difference,
                "allowed": l.allowed,
            })),
        }))
    }
}

impl<'p> HoldsCheck<'p> {
    pub fn new(claim: &'p HoldsClaim, span: Span, outcome: ClaimOutcome) -> Self {
        Self {
            claim,
            claim_start: span.start,
            outcome,
            budget: None,
            tally: MethodTally::default(),
            points_checked: 0,
            estimates: vec![],
            failures: vec![],
            closest: (0.0, 0.0),
            rechecks: RecheckTally::default(),
            unsettled: None,
        }
    }
}

impl ClaimCheck for HoldsCheck<'_> {
    fn check_at(&mut self, cx: &SizeContext<'_>) {
        let (tests, z) = *self.budget.get_or_insert_with(|| {
            let tests = points_over_sweep(&self.claim.points, cx)
                * moment_comparisons(&self.claim.condition).max(1);
            (tests, critical_z(tests))
        });
        let laws = match Laws::of(cx.evaluation) {
            Ok(l) => l,
            Err(e) => {
                self.undecided(e.to_string());
                return;
            }
        };
        let stochastic = cx.program.stochastic_defs();
        let sizes = cx.instance.sizes.clone();
        let lifted = PreciseValues::lift(cx.values);
        let mut precise = PreciseValues::new(cx.instance, &lifted);
        let mut judge = Judge {
            engine: MomentEngine {
                evaluation: cx.evaluation,
                laws: &laws,
                stochastic: &stochastic,
                samples: cx.options.samples,
                deadline: cx.instance.deadline(),
                cancel: cx.instance.cancel_token(),
                log_term: log_term(tests),
            },
            z,
            stream: stream_seed(
                cx.options.seed,
                &format!("claim@{}", self.claim_start),
                sizes.values(),
            ),
            decided: vec![],
            precise: Some(&mut precise),
        };
        let points = &self.claim.points;
        let grid = claim_grid(points, &sizes);
        let names = points.free_names();
        let mut refuted: Vec<Vec<i64>> = vec![];
        let mut undefined: Vec<(Vec<i64>, EvalError)> = vec![];
        let mut frame = Frame::new(&points.var_names, points.slots);
        for point in grid.points() {
            if let Err(e) = cx.instance.check_clock() {
                self.undecided(e.to_string());
                return;
            }
            frame.set_point(&point);
            judge.decided.clear();
            let judgement = judge.condition(&self.claim.condition, &mut frame);
            self.points_checked += 1;
            for d in &judge.decided {
                self.rechecks.add(d);
                for side in [&d.lhs, &d.rhs] {
                    if let Some((_, m)) = side.moment {
                        self.tally.add(m.method);
                    }
                }
                if d.op == CompareOp::Eq && (d.lhs.moment.is_some() || d.rhs.moment.is_some()) {
                    let diff = (d.lhs.value - d.rhs.value).abs();
                    self.closest.0 = self.closest.0.max(diff);
                    if d.margin > 0.0 {
                        self.closest.1 = self.closest.1.max(diff / d.margin);
                    }
                }
                let about_a_moment = d.lhs.moment.is_some() || d.rhs.moment.is_some();
                if about_a_moment && self.estimates.len() < ESTIMATES_KEPT {
                    self.estimates.push(estimate_json(d, &sizes, &point));
                }
            }
            // A comparison that failed inside a condition that holds (one
            // side of an `or`) is no near miss of the claim.
            let counted = judge
                .decided
                .iter()
                .filter(|d| d.holds || matches!(judgement, Judgement::Refuted));
            for d in counted {
                self.outcome.worst_ratio =
                    Some(self.outcome.worst_ratio.unwrap_or(0.0).max(d.ratio()));
            }
            match judgement {
                Judgement::Holds => {}
                Judgement::Refuted => {
                    if self.failures.len() < FAILURES_NOTED
                        && let Some(d) = judge.decided.iter().find(|d| !d.holds)
                    {
                        let at = describe_point(&names, &point, &sizes);
                        // A claim without free indices or dims has no point
                        // to name.
                        self.failures.push(if at.is_empty() {
                            describe_decided(d)
                        } else {
                            format!("at {at}: {}", describe_decided(d))
                        });
                    }
                    refuted.push(point);
                }
                Judgement::Undefined(e) => undefined.push((point, *e)),
                Judgement::Unsettled(why) => {
                    self.unsettled.get_or_insert(why);
                }
            }
        }
        self.outcome.sizes.push(sizes.clone());
        record_mismatches(&mut self.outcome, &sizes, &refuted);
        record_problems(&mut self.outcome, cx, &sizes, undefined);
    }

    fn undecided(&mut self, why: String) {
        self.unsettled.get_or_insert(why);
    }

    fn finish(mut self: Box<Self>) -> ClaimOutcome {
        let (tests, z) = self.budget.unwrap_or((1, critical_z(1)));
        let (refuted_points, undefined_points) = failed_points(&self.outcome);
        let refuted = refuted_points + undefined_points > 0;
        let method = self.tally.describe(z, tests);
        let summary = if refuted {
            let mut s = format!(
                "fails at {refuted_points} of {} point{}",
                self.points_checked,
                plural(self.points_checked)
            );
            if undefined_points > 0 {
                let _ = write!(s, ", undefined at {undefined_points}");
            }
            s
        } else {
            format!(
                "holds at {} point{} over {} size{}",
                self.points_checked,
                plural(self.points_checked),
                self.outcome.sizes.len(),
                plural(self.outcome.sizes.len())
            )
        };
        let has_moments = self.tally.deterministic + self.tally.exact + self.tally.sampled > 0;
        let summary = if has_moments {
            format!("{summary} ({})", self.tally.name())
        } else {
            summary
        };
        self.outcome.verdict = if refuted {
            Verdict::Refuted
        } else if let Some(why) = self.unsettled.take() {
            Verdict::Undecided(why)
        } else {
            Verdict::Holds
        };
        if has_moments {
            self.outcome.notes.push(method);
        }
        if self.closest.0 > 0.0 {
            self.outcome.notes.push(format!(
                "largest |moment − claimed value|: {} ({} of the margin allowed)",
                format_value(self.closest.0),
                format_value(self.closest.1)
            ));
        }
        self.outcome.notes.append(&mut self.failures);
        // First: a passing claim shows its first note only.
        let rechecked = self.rechecks.notes();
        self.outcome.notes.splice(0..0, rechecked);
        let details = &mut self.outcome.details;
        if let Some(rechecks) = self.rechecks.json() {
            details.insert("double_double".to_string(), rechecks);
        }
        details.insert("summary".to_string(), json!(summary));
        details.insert("method".to_string(), json!(self.tally.name()));
        details.insert("points".to_string(), json!(self.points_checked));
        if self.tally.sampled > 0 {
            details.insert("samples".to_string(), json!(self.tally.samples));
            details.insert("level".to_string(), json!(1.0 - FALSE_ALARM));
            details.insert("tests".to_string(), json!(tests));
            details.insert("z".to_string(), json!(z));
        }
        if self.tally.exact > 0 {
            details.insert("max_outcomes".to_string(), json!(self.tally.max_outcomes));
        }
        details.insert(
            "estimates".to_string(),
            Value::Array(std::mem::take(&mut self.estimates)),
        );
        self.outcome
    }
}

fn method_json(method: Method) -> (&'static str, Value) {
    match method {
        Method::Deterministic => ("deterministic", json!({})),
        Method::Exact { outcomes } => ("exact", json!({ "outcomes": outcomes })),
        Method::Sampled { samples, se, rare } => (
            "monte carlo",
            json!({ "samples": samples, "se": se, "rare_event_allowance": rare }),
        ),
    }
}

/// One comparison at one point: the estimate, its interval and the claimed value.
fn estimate_json(d: &Decided, sizes: &Sizes, point: &[i64]) -> Value {
    let (estimate, claimed, flipped) = match (&d.lhs.moment, &d.rhs.moment) {
        (Some(_), _) | (None, None) => (&d.lhs, &d.rhs, false),
        (None, Some(_)) => (&d.rhs, &d.lhs, true),
    };
    let mut entry = json!({
        "sizes": super::super::report::json::sizes(sizes),
        "index": point,
        "estimate": estimate.value,
        "ci": [estimate.value - d.margin, estimate.value + d.margin],
        "claimed": claimed.value,
        "op": d.op.symbol(),
        "estimate_side": if flipped { "right" } else { "left" },
        "holds": d.holds,
    });
    if let (Value::Object(map), Some((moment, m))) = (&mut entry, estimate.moment) {
        let (method, extra) = method_json(m.method);
        map.insert("moment".to_string(), json!(moment_name(moment)));
        map.insert("method".to_string(), json!(method));
        if let Value::Object(extra) = extra {
            map.extend(extra);
        }
    }
    entry
}

fn moment_name(moment: Moment) -> &'static str {
    match moment {
        Moment::Expectation => "E",
        Moment::Variance => "Var",
    }
}

/// `E = 0.1234 (exact), claimed 0.4567` or with the interval for a sample.
fn describe_decided(d: &Decided) -> String {
    let side = |o: &Operand| match o.moment {
        Some((moment, m)) => {
            let how = match m.method {
                Method::Deterministic => "deterministic".to_string(),
                Method::Exact { outcomes } => {
                    format!("exact over {outcomes} outcome{}", plural(outcomes))
                }
                Method::Sampled { samples, .. } => format!("{samples} samples"),
            };
            format!(
                "{} = {} ({how})",
                moment_name(moment),
                format_value(o.value)
            )
        }
        None => format_value(o.value),
    };
    let interval = if d.lhs.sampled || d.rhs.sampled {
        format!(" ± {}", format_value(d.margin))
    } else {
        String::new()
    };
    let precise = match &d.precise {
        Some(Recheck::Done {
            difference,
            allowed,
            ..
        }) if difference.abs() <= *allowed => format!(
            " (redone in double-double the sides are equal to rounding: difference {}, within the {} rounding could leave{})",
            format_value(*difference),
            format_value(*allowed),
            if is_strict(d.op) {
                "; a strict comparison needs a gap"
            } else {
                ""
            }
        ),
        Some(Recheck::Done {
            difference,
            allowed,
            ..
        }) => format!(
            " (redone in double-double the difference is {}, beyond the {} rounding could leave: not rounding)",
            format_value(*difference),
            format_value(*allowed)
        ),
        Some(Recheck::Failed(why)) => format!(" (in f64; not confirmed in double-double: {why})"),
        None => String::new(),
    };
    format!(
        "{}{interval} {} {} is false{precise}",
        side(&d.lhs),
        d.op.symbol(),
        side(&d.rhs)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn normal_quantiles_match_the_tables() {
        // Φ⁻¹ at familiar levels, to the table's digits.
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_985),
            (0.995, 2.575_829_304),
            (1.0 - 5e-7, 4.891_638_475),
            (1.0 - 1e-9, 5.997_807_015),
            (0.025, -1.959_963_985),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-7, "Φ⁻¹({p})");
        }
    }

    #[test]
    fn the_level_grows_with_the_number_of_tests() {
        let one = critical_z(1);
        let many = critical_z(1000);
        assert!((one - 4.891_638_475).abs() < 1e-7);
        assert!(many > one + 1.0, "{many}");
    }

    #[test]
    fn the_default_sample_count_detects_three_hundredths_of_a_deviation() {
        // The figure the README quotes: m = 100 tests, N = 2^17.
        let effect = detectable_effect(critical_z(100), DEFAULT_SAMPLES);
        assert!((0.025..0.03).contains(&effect), "{effect}");
    }

    #[test]
    fn merged_moments_equal_moments_of_the_whole() {
        let xs: Vec<f64> = (0..1000)
            .map(|k| ((k * 37 % 101) as f64).sqrt() - 3.0)
            .collect();
        let whole = {
            let mut s = ShiftedSums::default();
            xs.iter().for_each(|&x| s.push(x));
            s.moments()
        };
        let mut merged = Moments::default();
        for chunk in xs.chunks(97) {
            let mut s = ShiftedSums::default();
            chunk.iter().for_each(|&x| s.push(x));
            merged = merged.merge(&s.moments());
        }
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let central = |k: i32| xs.iter().map(|x| (x - mean).powi(k)).sum::<f64>();
        for (a, b) in [
            (whole.mean, mean),
            (merged.mean, mean),
            (whole.m2, central(2)),
            (merged.m2, central(2)),
            (merged.m3, central(3)),
            (merged.m4, central(4)),
        ] {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    fn exact(value: f64) -> Operand {
        Operand {
            value,
            allowance: 1e-15,
            moment: None,
            sampled: false,
        }
    }

    #[test]
    fn values_equal_to_rounding_fail_strict_comparisons() {
        let holds = |a, op, b| compare(&exact(a), op, &exact(b), 5.0).unwrap().holds;
        assert!(holds(1.0, CompareOp::Eq, 1.0 + 1e-16));
        assert!(holds(1.0, CompareOp::Le, 1.0 + 1e-16));
        assert!(holds(1.0 + 1e-16, CompareOp::Le, 1.0));
        assert!(!holds(1.0, CompareOp::Lt, 1.0 + 1e-16));
        assert!(!holds(1.0, CompareOp::Ne, 1.0));
        assert!(holds(1.0, CompareOp::Lt, 1.1));
        assert!(!holds(1.1, CompareOp::Le, 1.0));
    }

    #[test]
    fn a_recheck_in_double_double_decides_by_the_shrink_rule() {
        let recheck = |a: f64, op, b: f64, precise: f64| {
            let mut d = compare(&exact(a), op, &exact(b), 5.0).unwrap();
            assert!(!d.holds || is_strict(op));
            d.recheck(Ok(precise));
            d.holds
        };
        // 1e-3 apart in f64, 1e-20 in double-double: rounding.
        assert!(recheck(1.0, CompareOp::Eq, 1.001, 1e-20));
        assert!(recheck(1.001, CompareOp::Le, 1.0, 1e-20));
        // The same difference in double-double: a mistake.
        assert!(!recheck(1.0, CompareOp::Eq, 1.001, -1e-3));
        assert!(!recheck(1.001, CompareOp::Le, 1.0, 1e-3));
        // A gap that double-double closes is no gap for a strict comparison.
        assert!(!recheck(1.0, CompareOp::Lt, 1.001, 1e-20));
        assert!(recheck(1.0, CompareOp::Lt, 1.001, -1e-3));
        // A failed recomputation keeps the f64 verdict.
        let mut d = compare(&exact(1.0), CompareOp::Eq, &exact(2.0), 5.0).unwrap();
        d.recheck(Err("no".to_string()));
        assert!(!d.holds);
    }

    #[test]
    fn sampled_comparisons_refute_only_beyond_the_interval() {
        let sampled = |value, se| Operand {
            value,
            allowance: 0.0,
            moment: Some((
                Moment::Expectation,
                MomentValue {
                    value,
                    method: Method::Sampled {
                        samples: 100,
                        se,
                        rare: 0.0,
                    },
                    allowance: 0.0,
                },
            )),
            sampled: true,
        };
        let holds = |a: Operand, op, b: f64| compare(&a, op, &exact(b), 5.0).unwrap().holds;
        assert!(holds(sampled(1.0, 0.1), CompareOp::Eq, 1.45));
        assert!(!holds(sampled(1.0, 0.1), CompareOp::Eq, 1.55));
        assert!(holds(sampled(1.0, 0.1), CompareOp::Lt, 1.0));
        assert!(!holds(sampled(1.0, 0.1), CompareOp::Lt, 0.4));
        assert!(compare(&sampled(1.0, 0.1), CompareOp::Ne, &exact(0.0), 5.0).is_err());
    }
}
