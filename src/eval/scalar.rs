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
    + 'static
{
    /// A constant of the spec in this scalar type (rounded to its precision).
    fn constant(v: f64) -> Self;
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
}

impl<T: DualNum + Copy> Scalar for T {
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
}
