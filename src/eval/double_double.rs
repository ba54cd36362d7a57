//! Double-double arithmetic: a number as the unevaluated sum `hi + lo` of
//! two f64s, about 106 bits of precision (unit roundoff ≈ 2⁻¹⁰⁴), and a
//! forward-mode dual number over it.
//!
//! Used to tell rounding from mistakes: a difference between two f64
//! computations that is rounding shrinks by about 2⁵⁰ when both are redone
//! here; a real mistake does not shrink at all. The algorithms are the
//! classic error-free transformations (Dekker 1971, Knuth's two-sum, an FMA
//! for the product) and the QD library's (Hida, Li and Bailey 2001)
//! argument reductions for the elementary functions.

use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

use super::scalar::{Scalar, Smooth, erf_f64};

/// Unit roundoff of double-double arithmetic (2⁻¹⁰⁴), for error bounds.
pub const DD_EPSILON: f64 = 4.930380657631324e-32;

/// A double-double number: the value is `hi + lo` with |lo| ≤ ulp(hi)/2.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Dd {
    pub hi: f64,
    pub lo: f64,
}

#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

#[inline]
fn quick_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

#[inline]
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

/// ln 2 and π/2 to double-double precision.
const LN2: Dd = Dd {
    hi: std::f64::consts::LN_2,
    lo: 2.319_046_813_846_299_6e-17,
};
const FRAC_PI_2: Dd = Dd {
    hi: std::f64::consts::FRAC_PI_2,
    lo: 6.123_233_995_736_766e-17,
};

impl Dd {
    pub const ZERO: Dd = Dd { hi: 0.0, lo: 0.0 };
    pub const ONE: Dd = Dd { hi: 1.0, lo: 0.0 };

    pub const fn from_f64(v: f64) -> Dd {
        Dd { hi: v, lo: 0.0 }
    }

    /// The nearest f64 (a zero keeps its sign, as branch choices at a kink
    /// read it).
    pub fn to_f64(self) -> f64 {
        if self.lo == 0.0 {
            self.hi
        } else {
            self.hi + self.lo
        }
    }

    /// One of the functions of [`Smooth`] (see `dd_special.rs`).
    pub fn smooth(self, f: Smooth) -> Dd {
        match f {
            Smooth::Atan => self.atan(),
            Smooth::Asin => self.asin(),
            Smooth::Acos => self.acos(),
            Smooth::Sinh => self.sinh(),
            Smooth::Cosh => self.cosh(),
            Smooth::ExpM1 => self.exp_m1(),
            Smooth::Erf => self.erf(),
            Smooth::Lgamma => self.lgamma(),
            Smooth::Digamma => self.digamma(),
            Smooth::Trigamma => self.trigamma(),
        }
    }

    pub(crate) fn renormalized(hi: f64, lo: f64) -> Dd {
        // A signed zero stays as f64 arithmetic leaves it (-0 · x, -0 + -0):
        // relu, abs and ties at 0 take their branch by it, and double-double
        // must take the branch f64 takes.
        if lo == 0.0 {
            return Dd { hi, lo: 0.0 };
        }
        let (hi, lo) = quick_two_sum(hi, lo);
        // An overflowed or NaN part must not leave a finite-looking pair.
        if hi.is_finite() {
            Dd { hi, lo }
        } else {
            Dd { hi, lo: 0.0 }
        }
    }

    fn is_finite(self) -> bool {
        self.hi.is_finite()
    }

    /// Multiplication by an exact power of two.
    fn ldexp(self, k: i32) -> Dd {
        let f = 2f64.powi(k);
        Dd {
            hi: self.hi * f,
            lo: self.lo * f,
        }
    }

    fn mul_f64(self, b: f64) -> Dd {
        let (p, e) = two_prod(self.hi, b);
        Dd::renormalized(p, e + self.lo * b)
    }

    fn square(self) -> Dd {
        self * self
    }

    /// e^x − 1 for |x| ≤ 1, accurate relative to the result: the argument
    /// is halved nine times, the series summed, and e^(2r) − 1 = s·(s + 2)
    /// undoes the halving without ever forming 1 + s.
    fn expm1_small(self) -> Dd {
        let r = self.ldexp(-9);
        let mut term = r;
        let mut sum = r;
        for n in 2..40 {
            term = term * r / Dd::from_f64(f64::from(n));
            sum += term;
            if term.hi.abs() <= 1e-36 * sum.hi.abs() {
                break;
            }
        }
        for _ in 0..9 {
            sum = sum * (sum + Dd::from_f64(2.0));
        }
        sum
    }

    pub fn exp(self) -> Dd {
        if !self.is_finite() {
            return Dd::from_f64(self.hi.exp());
        }
        if self.hi > 709.8 {
            return Dd::from_f64(f64::INFINITY);
        }
        if self.hi < -745.2 {
            return Dd::ZERO;
        }
        if self.hi.abs() <= 1.0 {
            return self.expm1_small() + Dd::ONE;
        }
        // x = k·ln 2 + r with |r| ≤ ln 2 / 2.
        let k = (self.hi / LN2.hi).round();
        let r = self - LN2.mul_f64(k);
        #[allow(clippy::cast_possible_truncation)]
        let k = k as i32;
        let e = r.expm1_small() + Dd::ONE;
        // 2^k may overflow alone where e·2^k does not: scale in two steps.
        e.ldexp(k / 2).ldexp(k - k / 2)
    }

    pub fn expm1(self) -> Dd {
        if self.hi.abs() <= 1.0 {
            self.expm1_small()
        } else {
            self.exp() - Dd::ONE
        }
    }

    pub fn ln(self) -> Dd {
        if self.hi <= 0.0 || !self.is_finite() {
            return Dd::from_f64(self.hi.ln());
        }
        // Newton on e^y = x converges quadratically: two steps from f64.
        let mut y = Dd::from_f64(self.hi.ln());
        for _ in 0..2 {
            y = y + self * (-y).exp() - Dd::ONE;
        }
        y
    }

    pub fn ln_1p(self) -> Dd {
        if self.hi.abs() > 0.5 || !self.is_finite() {
            return (Dd::ONE + self).ln();
        }
        // Newton on e^y − 1 = x, relative to the result for small x.
        let mut y = Dd::from_f64(self.hi.ln_1p());
        for _ in 0..2 {
            let e = y.expm1();
            y = y - (e - self) / (e + Dd::ONE);
        }
        y
    }

    pub fn sqrt(self) -> Dd {
        if self.hi <= 0.0 || !self.is_finite() {
            return Dd::from_f64(self.hi.sqrt());
        }
        // One Newton step from the f64 root doubles its precision.
        let y = Dd::from_f64(self.hi.sqrt());
        y + (self - y.square()) / y.mul_f64(2.0)
    }

    pub fn abs(self) -> Dd {
        if self.hi < 0.0 { -self } else { self }
    }

    pub fn tanh(self) -> Dd {
        if self.hi.abs() > 40.0 {
            // 1 − tanh(40) ≈ 3.6e-35: below double-double resolution.
            return Dd::from_f64(self.hi.signum());
        }
        if !self.is_finite() {
            return Dd::from_f64(self.hi.tanh());
        }
        let e = self.abs().mul_f64(2.0).expm1();
        let t = e / (e + Dd::from_f64(2.0));
        if self.hi < 0.0 { -t } else { t }
    }

    /// sin and cos of |r| ≤ π/4 by their series.
    fn sin_cos_reduced(r: Dd) -> (Dd, Dd) {
        let r2 = r.square();
        let (mut s, mut c) = (r, Dd::ONE);
        let (mut st, mut ct) = (r, Dd::ONE);
        for n in 1..30 {
            let n = f64::from(n);
            st = -(st * r2) / Dd::from_f64((2.0 * n) * (2.0 * n + 1.0));
            ct = -(ct * r2) / Dd::from_f64((2.0 * n - 1.0) * (2.0 * n));
            s += st;
            c += ct;
            if st.hi.abs() <= 1e-36 && ct.hi.abs() <= 1e-36 {
                break;
            }
        }
        (s, c)
    }

    pub fn sin_cos(self) -> (Dd, Dd) {
        if !self.is_finite() || self.hi.abs() > 1e15 {
            let (s, c) = self.hi.sin_cos();
            return (Dd::from_f64(s), Dd::from_f64(c));
        }
        let k = (self.hi / FRAC_PI_2.hi).round();
        let r = self - FRAC_PI_2.mul_f64(k);
        let (s, c) = Dd::sin_cos_reduced(r);
        #[allow(clippy::cast_possible_truncation)]
        match (k as i64).rem_euclid(4) {
            0 => (s, c),
            1 => (c, -s),
            2 => (-s, -c),
            _ => (-c, s),
        }
    }

    pub fn recip(self) -> Dd {
        Dd::ONE / self
    }

    pub fn powi(self, k: i32) -> Dd {
        let mut base = self;
        let mut n = k.unsigned_abs();
        let mut acc = Dd::ONE;
        while n > 0 {
            if n & 1 == 1 {
                acc = acc * base;
            }
            base = base.square();
            n >>= 1;
        }
        if k < 0 { acc.recip() } else { acc }
    }
}

impl Add for Dd {
    type Output = Dd;
    #[inline]
    fn add(self, b: Dd) -> Dd {
        let (s, e) = two_sum(self.hi, b.hi);
        let (t, f) = two_sum(self.lo, b.lo);
        let (s, e) = quick_two_sum(s, e + t);
        let sum = Dd::renormalized(s, e + f);
        // An exact zero has the sign f64's sum of the leading parts has.
        if sum.hi == 0.0 && sum.lo == 0.0 {
            return Dd {
                hi: self.hi + b.hi,
                lo: 0.0,
            };
        }
        sum
    }
}

impl Sub for Dd {
    type Output = Dd;
    #[inline]
    fn sub(self, b: Dd) -> Dd {
        self + (-b)
    }
}

impl Neg for Dd {
    type Output = Dd;
    #[inline]
    fn neg(self) -> Dd {
        Dd {
            hi: -self.hi,
            lo: -self.lo,
        }
    }
}

impl Mul for Dd {
    type Output = Dd;
    #[inline]
    fn mul(self, b: Dd) -> Dd {
        let (p, e) = two_prod(self.hi, b.hi);
        Dd::renormalized(p, e + (self.hi * b.lo + self.lo * b.hi))
    }
}

impl Div for Dd {
    type Output = Dd;
    #[inline]
    fn div(self, b: Dd) -> Dd {
        let q1 = self.hi / b.hi;
        if !q1.is_finite() || b.hi == 0.0 {
            return Dd::from_f64(q1);
        }
        let r = self - b.mul_f64(q1);
        let q2 = r.hi / b.hi;
        let r = r - b.mul_f64(q2);
        let q3 = r.hi / b.hi;
        let (q1, q2) = quick_two_sum(q1, q2);
        Dd { hi: q1, lo: q2 } + Dd::from_f64(q3)
    }
}

impl AddAssign for Dd {
    #[inline]
    fn add_assign(&mut self, b: Dd) {
        *self = *self + b;
    }
}

/// π to double-double precision.
const PI: (f64, f64) = (std::f64::consts::PI, 1.224_646_799_147_353_2e-16);

impl Scalar for Dd {
    fn constant(v: f64) -> Self {
        Dd::from_f64(v)
    }
    fn pi() -> Self {
        Dd::renormalized(PI.0, PI.1)
    }
    fn real(&self) -> f64 {
        self.to_f64()
    }
    fn exp(self) -> Self {
        Dd::exp(self)
    }
    fn ln(self) -> Self {
        Dd::ln(self)
    }
    fn ln_1p(self) -> Self {
        Dd::ln_1p(self)
    }
    fn sqrt(self) -> Self {
        Dd::sqrt(self)
    }
    fn abs(self) -> Self {
        Dd::abs(self)
    }
    fn tanh(self) -> Self {
        Dd::tanh(self)
    }
    fn sin(self) -> Self {
        self.sin_cos().0
    }
    fn cos(self) -> Self {
        self.sin_cos().1
    }
    fn recip(self) -> Self {
        Dd::recip(self)
    }
    fn powi(self, k: i32) -> Self {
        Dd::powi(self, k)
    }
    fn smooth(self, f: Smooth) -> Self {
        Dd::smooth(self, f)
    }
}

/// What a dual number is built over: f64 or double-double, with the
/// elementary functions the spec uses.
pub trait Real:
    Copy
    + std::fmt::Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Send
    + Sync
    + 'static
{
    fn of(v: f64) -> Self;
    fn value(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn sin_cos(self) -> (Self, Self);
    fn powi(self, k: i32) -> Self;
    fn abs(self) -> Self;
    fn recip(self) -> Self {
        Self::of(1.0) / self
    }
    /// One of the functions of [`Smooth`].
    fn smooth(self, f: Smooth) -> Self;
    /// The constant `hi + lo`: double-double keeps both parts, every other
    /// type rounds to `hi`.
    fn of_pair(hi: f64, _lo: f64) -> Self {
        Self::of(hi)
    }
}

/// 2/√π to double-double precision (erf's slope at 0).
const FRAC_2_SQRT_PI: (f64, f64) = (std::f64::consts::FRAC_2_SQRT_PI, 1.533_545_961_316_588e-17);

/// The derivative of a [`Smooth`] function at `x`: reverse mode's partial
/// and a dual number's chain rule alike.
pub fn smooth_slope<B: Real>(f: Smooth, x: B) -> B {
    let one = B::of(1.0);
    match f {
        Smooth::Atan => one / (one + x * x),
        // (1 − x)(1 + x) rather than 1 − x², which loses digits near ±1.
        Smooth::Asin => one / ((one - x) * (one + x)).sqrt(),
        Smooth::Acos => -(one / ((one - x) * (one + x)).sqrt()),
        Smooth::Sinh => x.smooth(Smooth::Cosh),
        Smooth::Cosh => x.smooth(Smooth::Sinh),
        Smooth::ExpM1 => x.exp(),
        Smooth::Erf => B::of_pair(FRAC_2_SQRT_PI.0, FRAC_2_SQRT_PI.1) * (-(x * x)).exp(),
        Smooth::Lgamma => x.smooth(Smooth::Digamma),
        Smooth::Digamma => x.smooth(Smooth::Trigamma),
        // ψ'' is needed of no number type that takes slopes this way.
        Smooth::Trigamma => B::of(super::gamma::polygamma_f64(2, x.value())),
    }
}

/// The [`Smooth`] functions in a primitive float, as num-dual's primitive
/// computes them: the standard library's where it has them, and the rest
/// (erf and the gamma family) in f64, rounded to `F`.
fn smooth_float<F: num_traits::Float>(x: F, f: Smooth) -> F {
    match f {
        Smooth::Atan => x.atan(),
        Smooth::Asin => x.asin(),
        Smooth::Acos => x.acos(),
        Smooth::Sinh => x.sinh(),
        Smooth::Cosh => x.cosh(),
        Smooth::ExpM1 => x.exp_m1(),
        Smooth::Erf | Smooth::Lgamma | Smooth::Digamma | Smooth::Trigamma => {
            let v = x.to_f64().unwrap_or(f64::NAN);
            let value = match f {
                Smooth::Erf => erf_f64(v),
                Smooth::Lgamma => super::scalar::gamma_family(None, v),
                Smooth::Digamma => super::scalar::gamma_family(Some(0), v),
                _ => super::scalar::gamma_family(Some(1), v),
            };
            F::from(value).unwrap_or_else(F::nan)
        }
    }
}

fn smooth_f64(x: f64, f: Smooth) -> f64 {
    smooth_float(x, f)
}

fn smooth_f32(x: f32, f: Smooth) -> f32 {
    smooth_float(x, f)
}

/// `Real` for a type whose inherent methods have the trait's names.
macro_rules! forward_real {
    ($t:ty, $of:path, $pair:path, $value:path, $powi:path, $smooth:path) => {
        impl Real for $t {
            fn of(v: f64) -> Self {
                $of(v)
            }
            fn of_pair(hi: f64, lo: f64) -> Self {
                $pair(hi, lo)
            }
            fn value(self) -> f64 {
                $value(self)
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn sin_cos(self) -> (Self, Self) {
                <$t>::sin_cos(self)
            }
            fn powi(self, k: i32) -> Self {
                $powi(self, k)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn smooth(self, f: Smooth) -> Self {
                $smooth(self, f)
            }
        }
    };
}

forward_real!(
    Dd,
    Dd::from_f64,
    Dd::renormalized,
    Dd::to_f64,
    Dd::powi,
    Dd::smooth
);
forward_real!(
    f64,
    std::convert::identity,
    f64_of_pair,
    std::convert::identity,
    powi_by_squaring,
    smooth_f64
);
forward_real!(
    f32,
    f32_of,
    f32_of_pair,
    f64::from,
    powi_by_squaring,
    smooth_f32
);

/// `hi + lo` in f64: `hi`, the f64 nearest.
fn f64_of_pair(hi: f64, _lo: f64) -> f64 {
    hi
}

/// `hi + lo` in f32, as `Scalar::constant` rounds `hi`.
fn f32_of_pair(hi: f64, _lo: f64) -> f32 {
    f32_of(hi)
}

/// `x^k` by repeated squaring, multiplication for multiplication the
/// algorithm of `f64::powi` and `f32::powi` (compiler-builtins'
/// `__powidf2`, and LLVM's expansion for a constant exponent), so bit for
/// bit their value; written out, a replay's loop over many points inlines
/// it instead of calling the library once per point.
#[inline]
pub fn powi_by_squaring<T>(x: T, k: i32) -> T
where
    T: Copy + Mul<Output = T> + Div<Output = T> + num_traits::One,
{
    let mut base = x;
    let mut n = k.unsigned_abs();
    let mut acc = T::one();
    loop {
        if n & 1 == 1 {
            acc = acc * base;
        }
        n >>= 1;
        if n == 0 {
            break;
        }
        base = base * base;
    }
    if k < 0 { T::one() / acc } else { acc }
}

/// An f64 in f32 as the evaluator's `Scalar::constant` rounds it.
fn f32_of(v: f64) -> f32 {
    <f32 as num_traits::NumCast>::from(v).unwrap_or(f32::NAN)
}

/// A forward-mode dual number over `B` (f64 or double-double) with `N`
/// derivative directions. A constant carries no derivative part at all
/// (`None`), as num-dual's `DualSVec64` does, so an infinite partial
/// elsewhere (sqrt' at 0) never meets a zero tangent as `inf · 0`.
#[derive(Clone, Copy, Debug)]
pub struct Dual<B, const N: usize> {
    pub re: B,
    pub eps: Option<[B; N]>,
}

/// Dual numbers over double-doubles.
pub type DdDual<const N: usize> = Dual<Dd, N>;

impl<B: Real, const N: usize> Dual<B, N> {
    pub fn constant(re: B) -> Self {
        Self { re, eps: None }
    }

    /// `re` seeded in derivative direction `slot`.
    pub fn variable(re: B, slot: usize) -> Self {
        let mut eps = [B::of(0.0); N];
        if let Some(e) = eps.get_mut(slot) {
            *e = B::of(1.0);
        }
        Self { re, eps: Some(eps) }
    }

    /// The derivative in direction `slot` (0 for a constant).
    pub fn derivative(&self, slot: usize) -> B {
        self.eps
            .and_then(|e| e.get(slot).copied())
            .unwrap_or(B::of(0.0))
    }

    /// f(re) with derivative f'(re)·eps: the chain rule.
    fn chain(self, value: B, slope: B) -> Self {
        Self {
            re: value,
            eps: self.eps.map(|e| e.map(|d| d * slope)),
        }
    }
}

fn combine<B: Real, const N: usize>(
    a: Option<[B; N]>,
    b: Option<[B; N]>,
    f: impl Fn(B, B) -> B,
) -> Option<[B; N]> {
    match (a, b) {
        (None, None) => None,
        (a, b) => {
            let a = a.unwrap_or([B::of(0.0); N]);
            let b = b.unwrap_or([B::of(0.0); N]);
            Some(std::array::from_fn(|k| f(a[k], b[k])))
        }
    }
}

impl<B: Real, const N: usize> Add for Dual<B, N> {
    type Output = Self;
    fn add(self, b: Self) -> Self {
        Self {
            re: self.re + b.re,
            eps: combine(self.eps, b.eps, |x, y| x + y),
        }
    }
}

impl<B: Real, const N: usize> Sub for Dual<B, N> {
    type Output = Self;
    fn sub(self, b: Self) -> Self {
        Self {
            re: self.re - b.re,
            eps: combine(self.eps, b.eps, |x, y| x - y),
        }
    }
}

impl<B: Real, const N: usize> Neg for Dual<B, N> {
    type Output = Self;
    fn neg(self) -> Self {
        Self {
            re: -self.re,
            eps: self.eps.map(|e| e.map(|d| -d)),
        }
    }
}

// The product and quotient rules add and subtract inside `mul` and `div`.
#[allow(clippy::suspicious_arithmetic_impl)]
impl<B: Real, const N: usize> Mul for Dual<B, N> {
    type Output = Self;
    fn mul(self, b: Self) -> Self {
        let eps = match (self.eps, b.eps) {
            (None, None) => None,
            (Some(a), None) => Some(a.map(|d| d * b.re)),
            (None, Some(e)) => Some(e.map(|d| d * self.re)),
            (Some(a), Some(e)) => Some(std::array::from_fn(|k| a[k] * b.re + e[k] * self.re)),
        };
        Self {
            re: self.re * b.re,
            eps,
        }
    }
}

#[allow(clippy::suspicious_arithmetic_impl)]
impl<B: Real, const N: usize> Div for Dual<B, N> {
    type Output = Self;
    fn div(self, b: Self) -> Self {
        let re = self.re / b.re;
        let eps = match (self.eps, b.eps) {
            (None, None) => None,
            (Some(a), None) => Some(a.map(|d| d / b.re)),
            (a, Some(e)) => {
                let a = a.unwrap_or([B::of(0.0); N]);
                Some(std::array::from_fn(|k| (a[k] - re * e[k]) / b.re))
            }
        };
        Self { re, eps }
    }
}

impl<B: Real, const N: usize> AddAssign for Dual<B, N> {
    fn add_assign(&mut self, b: Self) {
        *self = *self + b;
    }
}

impl<B: Real, const N: usize> Scalar for Dual<B, N> {
    fn constant(v: f64) -> Self {
        Self::constant(B::of(v))
    }
    fn pi() -> Self {
        Self::constant(B::of_pair(PI.0, PI.1))
    }
    fn real(&self) -> f64 {
        self.re.value()
    }
    fn tangents(&self) -> [f64; 2] {
        [self.derivative(0).value(), self.derivative(1).value()]
    }
    fn exp(self) -> Self {
        let f = self.re.exp();
        self.chain(f, f)
    }
    fn ln(self) -> Self {
        self.chain(self.re.ln(), B::of(1.0) / self.re)
    }
    fn ln_1p(self) -> Self {
        self.chain(self.re.ln_1p(), B::of(1.0) / (B::of(1.0) + self.re))
    }
    fn sqrt(self) -> Self {
        let f = self.re.sqrt();
        self.chain(f, B::of(1.0) / (f + f))
    }
    fn abs(self) -> Self {
        // As num-dual: the positive branch at +0.
        if self.re.value() > 0.0 || (self.re.value() == 0.0 && self.re.value().is_sign_positive()) {
            self
        } else {
            -self
        }
    }
    fn tanh(self) -> Self {
        let t = self.re.tanh();
        self.chain(t, B::of(1.0) - t * t)
    }
    fn sin(self) -> Self {
        let (s, c) = self.re.sin_cos();
        self.chain(s, c)
    }
    fn cos(self) -> Self {
        let (s, c) = self.re.sin_cos();
        self.chain(c, -s)
    }
    fn recip(self) -> Self {
        let r = B::of(1.0) / self.re;
        self.chain(r, -(r * r))
    }
    fn powi(self, k: i32) -> Self {
        if k == 0 {
            return Self::constant(B::of(1.0));
        }
        self.chain(self.re.powi(k), self.re.powi(k - 1) * B::of(f64::from(k)))
    }
    fn smooth(self, f: Smooth) -> Self {
        self.chain(self.re.smooth(f), smooth_slope(f, self.re))
    }
}

/// Helpers the special functions' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use super::Dd;

    /// How many f64 values lie between `a` and `b` (0 for equal ones).
    pub fn ulps(a: f64, b: f64) -> u64 {
        let key = |x: f64| {
            #[allow(clippy::cast_possible_wrap)]
            let i = x.to_bits() as i64;
            if i < 0 { i64::MIN - i } else { i }
        };
        key(a).abs_diff(key(b))
    }

    /// Both parts' bits, to compare signed zeros and NaNs exactly.
    pub fn bits(d: Dd) -> (u64, u64) {
        (d.hi.to_bits(), d.lo.to_bits())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn powers_by_squaring_are_the_library_powers_bit_for_bit() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let special = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
            5e-324,
            1e300,
            -1e-300,
        ];
        let values = special.into_iter().chain(
            (0..2000).map(|_| rng.random_range(-1.0..1.0) * 10f64.powi(rng.random_range(-40..40))),
        );
        let mut compared = 0;
        for x in values {
            for k in -9..=9 {
                let (ours, library) = (powi_by_squaring(x, k), x.powi(k));
                assert!(
                    ours.to_bits() == library.to_bits() || (ours.is_nan() && library.is_nan()),
                    "{x}^{k}: {ours} against {library}"
                );
                let x = x as f32;
                let (ours, library) = (powi_by_squaring(x, k), x.powi(k));
                assert!(
                    ours.to_bits() == library.to_bits() || (ours.is_nan() && library.is_nan()),
                    "{x}^{k} in f32: {ours} against {library}"
                );
                compared += 2;
            }
        }
        assert_eq!(compared, 2011 * 19 * 2);
    }

    /// |a − b| relative to |b|, in double-double.
    fn rel(a: Dd, b: Dd) -> f64 {
        ((a - b).to_f64() / b.to_f64()).abs()
    }

    /// A decimal constant to double-double: the f64 nearest, plus the
    /// f64 nearest to the rest.
    fn dd(hi: f64, lo: f64) -> Dd {
        Dd::renormalized(hi, lo)
    }

    #[test]
    fn arithmetic_is_exact_beyond_f64() {
        // 0.1 + 0.2 − 0.3 is 5.55e-17 in f64, and −2.8e-17 exactly for these
        // three f64 values (their own representation errors remain).
        let s = Dd::from_f64(0.1) + Dd::from_f64(0.2) - Dd::from_f64(0.3);
        assert_eq!(s.to_f64(), 0.1f64 - 0.3 + 0.2);
        // (1 + 2^-40)² − 1 − 2^-39 = 2^-80: lost in f64, kept here.
        let x = Dd::ONE + Dd::from_f64(2f64.powi(-40));
        let r = x * x - Dd::ONE - Dd::from_f64(2f64.powi(-39));
        assert_eq!(r.to_f64(), 2f64.powi(-80));
        // Division and its inverse.
        let q = Dd::from_f64(1.0) / Dd::from_f64(3.0);
        assert!(rel(q * Dd::from_f64(3.0), Dd::ONE) < 1e-31);
    }

    #[test]
    fn zeros_keep_the_sign_f64_gives_them() {
        let minus_zero = Dd::from_f64(-0.0);
        assert!((minus_zero * Dd::from_f64(3.0)).to_f64().is_sign_negative());
        assert!((Dd::from_f64(-1.5) * Dd::ZERO).to_f64().is_sign_negative());
        assert!((minus_zero + minus_zero).to_f64().is_sign_negative());
        assert!((Dd::ONE - Dd::ONE).to_f64().is_sign_positive());
        assert!((minus_zero + Dd::ZERO).to_f64().is_sign_positive());
    }

    #[test]
    fn elementary_functions_match_reference_values() {
        // Reference values to 50 digits (mpmath), split into two f64s.
        let e = dd(std::f64::consts::E, 1.445_646_891_729_250_2e-16);
        assert!(rel(Dd::ONE.exp(), e) < 1e-30, "exp(1)");
        let ln10 = dd(std::f64::consts::LN_10, -2.170_756_223_382_249_4e-16);
        assert!(rel(Dd::from_f64(10.0).ln(), ln10) < 1e-30, "ln(10)");
        let sqrt2 = dd(std::f64::consts::SQRT_2, -9.667_293_313_452_913e-17);
        assert!(rel(Dd::from_f64(2.0).sqrt(), sqrt2) < 1e-30, "sqrt(2)");
        // sin(1) = 0.8414709848078965066525023216302990
        let sin1 = dd(0.841_470_984_807_896_5, 1.776_845_092_935_536e-18);
        assert!(rel(Dd::ONE.sin_cos().0, sin1) < 1e-30, "sin(1)");
    }

    #[test]
    fn identities_hold_to_double_double_precision() {
        for &x in &[
            -30.0, -3.7, -1.0, -0.3, -1e-9, 1e-12, 0.25, 0.9, 1.5, 3.0, 12.5, 100.0,
        ] {
            let d = Dd::from_f64(x);
            // exp then ln loses what 1 + x cannot hold: absolute, not relative.
            let back = (d.exp().ln() - d).to_f64().abs();
            assert!(back < 1e-30 * x.abs().max(1.0), "ln(exp({x}))");
            if x > 0.0 {
                assert!(rel(d.ln().exp(), d) < 1e-29, "exp(ln({x}))");
                assert!(rel(d.sqrt().square(), d) < 1e-30, "sqrt({x})²");
            }
            let (s, c) = d.sin_cos();
            assert!(
                (s.square() + c.square() - Dd::ONE).to_f64().abs() < 1e-30,
                "sin²+cos² at {x}"
            );
            // tanh = (e^2x − 1)/(e^2x + 1) where that form is accurate.
            if x.abs() >= 0.5 && x.abs() <= 20.0 {
                let e2 = d.mul_f64(2.0).exp();
                let t = (e2 - Dd::ONE) / (e2 + Dd::ONE);
                assert!(rel(d.tanh(), t) < 1e-29, "tanh({x})");
            }
            if x.abs() < 0.5 {
                assert!(rel(d.ln_1p().expm1(), d) < 1e-29, "expm1(ln_1p({x}))");
            }
        }
    }

    #[test]
    fn duals_give_exact_derivatives() {
        // d/dx of x·exp(sin x) / (1 + x²) at x = 0.7, against the formula.
        let x = 0.7;
        let v = DdDual::<2>::variable(Dd::from_f64(x), 1);
        let one = <DdDual<2> as Scalar>::one();
        let f = v * v.sin().exp() / (one + v * v);
        let xd = Dd::from_f64(x);
        let (s, c) = xd.sin_cos();
        let q = Dd::ONE + xd.square();
        let expected =
            (s.exp() * (Dd::ONE + xd * c) * q - xd * s.exp() * xd.mul_f64(2.0)) / q.square();
        assert!(rel(f.derivative(1), expected) < 1e-29);
        assert_eq!(f.derivative(0).to_f64(), 0.0);
        assert!(<DdDual<2> as Scalar>::constant(3.0).eps.is_none());
    }
}
