//! The scalar types the evaluator computes with.
//!
//! Everything the evaluator needs of a number is in [`Scalar`]: arithmetic,
//! the spec's functions, and the real part for branch choices. num-dual's
//! numbers (`f64`, `f32`, `DualSVec64<N>`, `HyperDual64`, ...) have it
//! through one blanket implementation; the double-double types of
//! [`super::double_double`] implement it directly, so the same evaluator
//! re-runs a computation in about 106 bits where f64 rounding is in doubt.

use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

use num_dual::DualNum;
use num_traits::{Float, NumCast, ToPrimitive};

/// What the evaluator computes with.
pub trait Scalar:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + Send
    + Sync
    + 'static
{
    /// Whether an evaluation over this type may share its work between
    /// threads (the elements of a definition, the blocks of a long sum):
    /// not where every operation is noted, in order, on the tape of the
    /// thread that carries it out.
    const IN_PARALLEL: bool = true;
    /// A constant of the spec in this scalar type (rounded to its precision).
    fn constant(v: f64) -> Self;
    /// For a recording type, whether the thread's recording is void, past
    /// the operations it may hold: what is left of the evaluation would
    /// record nothing, and stops where it looks at the clock.
    fn recording_overflowed() -> bool {
        false
    }
    /// The real part as f64: reports, and the choices of code that is not
    /// the evaluator's (the evaluator decides by [`Scalar::order`]).
    fn real(&self) -> f64;
    /// How `self` compares with `other` where the evaluator decides by it
    /// (a branch, a domain check, a kink); `None` where either is NaN. A
    /// recording type notes each decision, so that a replay at other
    /// values can tell where the evaluator would decide otherwise.
    fn order(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.real().partial_cmp(&other.real())
    }
    /// Whether the value is finite, where the evaluator decides by it.
    fn is_finite_value(&self) -> bool {
        self.real().is_finite()
    }
    /// The first two derivative parts, where the type carries them for
    /// choosing a branch at a kink (zero for everything else).
    fn tangents(&self) -> [f64; 2] {
        [0.0; 2]
    }
    fn zero() -> Self {
        Self::constant(0.0)
    }
    fn one() -> Self {
        Self::constant(1.0)
    }
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    /// ln(1 + x), accurate for small x.
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn tanh(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn recip(self) -> Self;
    fn powi(self, k: i32) -> Self;
    /// One of the smooth functions of [`Smooth`].
    fn smooth(self, f: Smooth) -> Self;
    /// π in this type's precision.
    fn pi() -> Self {
        Self::constant(std::f64::consts::PI)
    }
    /// The real part, read where the caller records the decisions that pin
    /// what it computes from it (`floor` compares `x` with the integers
    /// either side): a recording type need not mark it as read unguarded.
    fn real_guarded_by_caller(&self) -> f64 {
        self.real()
    }
}

/// The smooth functions of one argument that the scalar types have beyond
/// the elementary ones the evaluator needs for its own purposes: the
/// spec's `atan`, `asin`, …, `erf`. One method for all of them keeps every
/// number type's list in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Smooth {
    Atan,
    Asin,
    Acos,
    Sinh,
    Cosh,
    ExpM1,
    Erf,
    /// ln|Γ(x)|.
    Lgamma,
    /// ψ(x) = Γ'(x)/Γ(x).
    Digamma,
    /// ψ'(x): digamma's slope, not a function of the spec.
    Trigamma,
}

impl Smooth {
    pub const ALL: [Smooth; 10] = [
        Smooth::Atan,
        Smooth::Asin,
        Smooth::Acos,
        Smooth::Sinh,
        Smooth::Cosh,
        Smooth::ExpM1,
        Smooth::Erf,
        Smooth::Lgamma,
        Smooth::Digamma,
        Smooth::Trigamma,
    ];
}

/// erf in f64 (within an ulp: FreeBSD's algorithm, as the `libm` crate
/// has it). f32 rounds this (`Real::smooth` for f32, and num-dual's f32
/// here): one definition for every f32 computation, so that a replay and
/// the evaluator agree bit for bit.
pub fn erf_f64(x: f64) -> f64 {
    libm::erf(x)
}

/// `f` at a num-dual number, by its Taylor expansion at the real part:
/// `f(x) = Σₖ f⁽ᵏ⁾(x₀)/k! · dᵏ` with `d = x − x₀`, exact because `d` is
/// nilpotent (`d^(NDERIV+1) = 0`). `value` is f at x₀ in the primitive
/// type; `coefficients(x₀, k)` is f⁽ᵏ⁾(x₀)/k! for k ≥ 1, in f64.
fn by_expansion<T: DualNum + Copy>(
    x: T,
    value: T::Primitive,
    coefficients: impl Fn(f64, usize) -> f64,
) -> T {
    let x0 = x.re();
    let mut result = T::from(value);
    if T::NDERIV == 0 {
        return result;
    }
    let r = x0.to_f64().unwrap_or(f64::NAN);
    let d = x - T::from(x0);
    let mut power = <T as num_traits::One>::one();
    for k in 1..=T::NDERIV {
        power *= d;
        let c =
            <T::Primitive as NumCast>::from(coefficients(r, k)).unwrap_or_else(T::Primitive::nan);
        result += power * T::from(c);
    }
    result
}

/// ln|Γ(x)| (`order` `None`) or ψ⁽ⁿ⁾(x) (`Some(n)`), in f64.
pub fn gamma_family(order: Option<u32>, x: f64) -> f64 {
    match order {
        None => super::gamma::lgamma_f64(x),
        Some(n) => super::gamma::polygamma_f64(n, x),
    }
}

/// The k-th Taylor coefficient (k ≥ 1) of the gamma family member `order`
/// at `x`: ψ⁽ᵏ⁻¹⁾(x)/k! for ln Γ, ψ⁽ⁿ⁺ᵏ⁾(x)/k! for ψ⁽ⁿ⁾. Beyond the
/// polygamma orders computed (3), NaN: no scalar type here carries them.
fn gamma_coefficient(order: Option<u32>, x: f64, k: usize) -> f64 {
    let derivative =
        u32::try_from(k).unwrap_or(u32::MAX).saturating_sub(1) + order.map_or(0, |n| n + 1);
    if derivative > 3 {
        return f64::NAN;
    }
    let factorial: f64 = (1..=k).map(|i| i as f64).product();
    super::gamma::polygamma_f64(derivative, x) / factorial
}

/// erf⁽ᵏ⁾(x)/k! for k ≥ 1: erf⁽ᵏ⁾(x) = 2/√π · e^(−x²) · (−1)^(k−1) · H_(k−1)(x),
/// with the physicists' Hermite polynomials H₀ = 1, H₁ = 2x,
/// H_(n+1) = 2x·H_n − 2n·H_(n−1).
fn erf_coefficient(x: f64, k: usize) -> f64 {
    let (mut h, mut previous) = (1.0, 0.0);
    let mut factorial = 1.0;
    for n in 0..k.saturating_sub(1) {
        #[allow(clippy::cast_precision_loss)]
        let next = 2.0 * x * h - 2.0 * n as f64 * previous;
        previous = h;
        h = next;
    }
    for i in 1..=k {
        #[allow(clippy::cast_precision_loss)]
        let i = i as f64;
        factorial *= i;
    }
    let sign = if k.is_multiple_of(2) { -1.0 } else { 1.0 };
    std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp() * sign * h / factorial
}

impl<T: DualNum + Copy + Send + Sync> Scalar for T {
    #[inline]
    fn constant(v: f64) -> Self {
        T::from(<T::Primitive as NumCast>::from(v).unwrap_or_else(T::Primitive::nan))
    }

    #[inline]
    fn real(&self) -> f64 {
        self.re().to_f64().unwrap_or(f64::NAN)
    }

    #[inline]
    fn zero() -> Self {
        <T as num_traits::Zero>::zero()
    }

    #[inline]
    fn one() -> Self {
        <T as num_traits::One>::one()
    }

    #[inline]
    fn exp(self) -> Self {
        DualNum::exp(&self)
    }

    #[inline]
    fn ln(self) -> Self {
        DualNum::ln(&self)
    }

    #[inline]
    fn ln_1p(self) -> Self {
        DualNum::ln_1p(&self)
    }

    #[inline]
    fn sqrt(self) -> Self {
        DualNum::sqrt(&self)
    }

    #[inline]
    fn abs(self) -> Self {
        num_traits::Signed::abs(&self)
    }

    #[inline]
    fn tanh(self) -> Self {
        if T::NDERIV == 0 {
            return DualNum::tanh(&self);
        }
        // num-dual's tanh is sinh/cosh, which is inf/inf past |x| ≈ 355:
        // -m/(m + 2) with m = e^(-2|x|) - 1 stays bounded, and expm1 keeps
        // it accurate near 0.
        let (sign, a) = if self.real() < 0.0 {
            (-Self::one(), -self)
        } else {
            (Self::one(), self)
        };
        let m = DualNum::exp_m1(&(a * Self::constant(-2.0)));
        sign * (-m / (m + Self::constant(2.0)))
    }

    #[inline]
    fn sin(self) -> Self {
        DualNum::sin(&self)
    }

    #[inline]
    fn cos(self) -> Self {
        DualNum::cos(&self)
    }

    #[inline]
    fn recip(self) -> Self {
        DualNum::recip(&self)
    }

    #[inline]
    fn powi(self, k: i32) -> Self {
        DualNum::powi(&self, k)
    }

    #[inline]
    fn smooth(self, f: Smooth) -> Self {
        match f {
            Smooth::Atan => DualNum::atan(&self),
            Smooth::Asin => DualNum::asin(&self),
            Smooth::Acos => DualNum::acos(&self),
            Smooth::Sinh => DualNum::sinh(&self),
            Smooth::Cosh => DualNum::cosh(&self),
            Smooth::ExpM1 => DualNum::exp_m1(&self),
            Smooth::Erf => {
                // f64's erf, rounded to an f32 primitive as `Real::smooth` does.
                let value = <T::Primitive as NumCast>::from(erf_f64(self.real()));
                by_expansion(
                    self,
                    value.unwrap_or_else(T::Primitive::nan),
                    erf_coefficient,
                )
            }
            // The gamma family in f64, rounded to an f32 primitive; their
            // derivatives are the polygamma functions.
            Smooth::Lgamma | Smooth::Digamma | Smooth::Trigamma => {
                let order = match f {
                    Smooth::Lgamma => None,
                    Smooth::Digamma => Some(0),
                    _ => Some(1),
                };
                let value = <T::Primitive as NumCast>::from(gamma_family(order, self.real()));
                by_expansion(self, value.unwrap_or_else(T::Primitive::nan), |x, k| {
                    gamma_coefficient(order, x, k)
                })
            }
        }
    }
}
