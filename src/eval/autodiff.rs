//! Forward-mode autodiff of L with num-dual. A pass carries `CHUNK`
//! derivative directions at once (`DualSVec64<CHUNK>`), so the gradient of P
//! elements costs P / CHUNK forward passes, each element derived exactly.

use ndarray::ArrayD;
use num_dual::DualSVec64;

use super::double_double::{Dd, DdDual, Dual};
use super::{BranchPolicy, EvalError, Instance};

/// Directions per forward pass: wide enough to amortise the interpreter over
/// several derivatives, narrow enough that each dual number stays small.
pub const CHUNK: usize = 8;

/// dL/dT for every tensor T (`None` for the incoming gradient, which is data).
pub fn gradient(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
) -> Result<Vec<Option<ArrayD<f64>>>, Box<EvalError>> {
    gradient_on_branches(instance, values, &BranchPolicy::Default)
}

/// dL/dT for every tensor T, choosing branches at the branch points
/// (kinks) by `branches`: one of the valid derivatives at a kink.
pub fn gradient_on_branches(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    branches: &BranchPolicy,
) -> Result<Vec<Option<ArrayD<f64>>>, Box<EvalError>> {
    let tensors = &instance.program.tensors;
    // Every differentiable element, as (tensor, position).
    let elements: Vec<(usize, usize)> = tensors
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_differentiable())
        .flat_map(|(k, _)| (0..values.get(k).map_or(0, ArrayD::len)).map(move |p| (k, p)))
        .collect();
    let mut gradient: Vec<Option<ArrayD<f64>>> = tensors
        .iter()
        .zip(values)
        .map(|(t, v)| t.is_differentiable().then(|| ArrayD::zeros(v.raw_dim())))
        .collect();
    let mut lifted: Vec<ArrayD<DualSVec64<CHUNK>>> = values
        .iter()
        .map(|v| v.mapv(DualSVec64::<CHUNK>::from))
        .collect();
    for chunk in elements.chunks(CHUNK) {
        for (slot, &(k, p)) in chunk.iter().enumerate() {
            if let Some(x) = lifted
                .get_mut(k)
                .and_then(|t| t.as_slice_memory_order_mut()?.get_mut(p))
            {
                *x = DualSVec64::from_re(x.re).derivative(slot);
            }
        }
        let loss = instance
            .evaluation(&lifted)
            .with_branches(branches.clone())
            .loss()?;
        for (slot, &(k, p)) in chunk.iter().enumerate() {
            let mut d = loss.eps.0.as_ref().map_or(0.0, |m| m[(slot, 0)]);
            if !d.is_finite() {
                // An infinite partial of another element of the chunk (sqrt'
                // at 0) times this element's zero tangent gives NaN here;
                // alone, with the others constant, it is what it really is.
                d = derivative_alone(instance, values, k, p, branches)?;
            }
            if let Some(g) = gradient
                .get_mut(k)
                .and_then(Option::as_mut)
                .and_then(|g| g.as_slice_memory_order_mut()?.get_mut(p))
            {
                *g = d;
            }
            if let Some(x) = lifted
                .get_mut(k)
                .and_then(|t| t.as_slice_memory_order_mut()?.get_mut(p))
            {
                *x = DualSVec64::from(x.re);
            }
        }
    }
    Ok(gradient)
}

/// dL/d(element `p` of tensor `k`) from a pass that seeds that element
/// alone. `DualSVec64` keeps no derivative part for constants, so nothing
/// else can contribute `inf · 0`.
fn derivative_alone(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    k: usize,
    p: usize,
    branches: &BranchPolicy,
) -> Result<f64, Box<EvalError>> {
    let mut lifted: Vec<ArrayD<DualSVec64<1>>> = values
        .iter()
        .map(|v| v.mapv(DualSVec64::<1>::from))
        .collect();
    if let Some(x) = lifted
        .get_mut(k)
        .and_then(|t| t.as_slice_memory_order_mut()?.get_mut(p))
    {
        *x = DualSVec64::from_re(x.re).derivative(0);
    }
    let loss = instance
        .evaluation(&lifted)
        .with_branches(branches.clone())
        .loss()?;
    Ok(loss.eps.0.as_ref().map_or(0.0, |m| m[(0, 0)]))
}

/// The exact derivative of L along `direction` (one array per tensor; the
/// incoming gradient's entry is ignored), in a single dual-number pass.
pub fn directional_derivative(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    direction: &[Option<ArrayD<f64>>],
) -> Result<f64, Box<EvalError>> {
    // `DualSVec64` keeps no derivative part for constants, so an infinite
    // partial elsewhere (sqrt' at 0) cannot turn into `inf · 0` here.
    let lifted = lift_along(
        instance,
        values,
        direction,
        |x, dx| DualSVec64::from_re(0.0).derivative(0) * dx + x,
        DualSVec64::<1>::from,
    );
    let loss = instance.evaluation(&lifted).loss_alone()?;
    Ok(loss.eps.0.as_ref().map_or(0.0, |m| m[(0, 0)]))
}

/// The exact derivatives of L along two directions at once, in one
/// dual-number pass: the forward-mode derivation a reverse-mode gradient is
/// held to where checking every element would cost a pass per element.
pub fn directional_derivatives(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    first: &[Option<ArrayD<f64>>],
    second: &[Option<ArrayD<f64>>],
) -> Result<[f64; 2], Box<EvalError>> {
    let lifted = lift_along_two(
        instance,
        values,
        (first, second),
        |x, da, db| {
            DualSVec64::from_re(0.0).derivative(0) * da
                + DualSVec64::from_re(0.0).derivative(1) * db
                + x
        },
        DualSVec64::<2>::from,
    );
    let loss = instance.evaluation(&lifted).loss_alone()?;
    let d = |s: usize| loss.eps.0.as_ref().map_or(0.0, |m| m[(s, 0)]);
    Ok([d(0), d(1)])
}

/// dL/d(element `p` of tensor `k`) with that element set to `at` and every
/// other value as given: one side of a kink, seen from `at`.
pub fn partial_at(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    k: usize,
    p: usize,
    at: f64,
) -> Result<f64, Box<EvalError>> {
    let mut moved = values.to_vec();
    if let Some(x) = moved
        .get_mut(k)
        .and_then(|t| t.as_slice_memory_order_mut()?.get_mut(p))
    {
        *x = at;
    }
    derivative_alone(instance, &moved, k, p, &BranchPolicy::Default)
}

/// The exact derivative of L along `direction` at the values displaced by
/// `t · direction`: one side of a kink along a direction.
pub fn directional_derivative_at(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    direction: &[Option<ArrayD<f64>>],
    t: f64,
) -> Result<f64, Box<EvalError>> {
    let moved: Vec<ArrayD<f64>> = values
        .iter()
        .enumerate()
        .map(|(k, v)| match direction.get(k).and_then(Option::as_ref) {
            Some(d) => ndarray::Zip::from(v)
                .and(d)
                .map_collect(|&x, &dx| x + t * dx),
            None => v.clone(),
        })
        .collect();
    directional_derivative(instance, &moved, direction)
}

/// dL/d(element) for the given `(tensor, position)` elements, in
/// double-double arithmetic, `CHUNK` elements per pass: the reference that
/// tells rounding in the f64 gradient from a real difference.
pub fn precise_partials(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    elements: &[(usize, usize)],
) -> Result<Vec<Dd>, Box<EvalError>> {
    let lifted: Vec<ArrayD<Dd>> = values.iter().map(|v| v.mapv(Dd::from_f64)).collect();
    precise_partials_at(instance, &lifted, elements)
}

/// [`precise_partials`] at values given in double-double: a computation
/// that is carried out in double-double throughout (an update rule's
/// trajectory) takes its gradients here.
pub fn precise_partials_at(
    instance: &Instance<'_>,
    values: &[ArrayD<Dd>],
    elements: &[(usize, usize)],
) -> Result<Vec<Dd>, Box<EvalError>> {
    let mut lifted: Vec<ArrayD<DdDual<CHUNK>>> =
        values.iter().map(|v| v.mapv(DdDual::constant)).collect();
    let mut partials = Vec::with_capacity(elements.len());
    for chunk in elements.chunks(CHUNK) {
        // Seeds the chunk's elements, one direction each, or unseeds them.
        let seed = |lifted: &mut Vec<ArrayD<DdDual<CHUNK>>>, seeded: bool| {
            for (s, &(k, p)) in chunk.iter().enumerate() {
                if let Some(x) = lifted
                    .get_mut(k)
                    .and_then(|t| t.as_slice_memory_order_mut()?.get_mut(p))
                {
                    *x = if seeded {
                        DdDual::variable(x.re, s)
                    } else {
                        DdDual::constant(x.re)
                    };
                }
            }
        };
        seed(&mut lifted, true);
        instance.check_clock()?;
        let loss = instance.evaluation(&lifted).loss_alone()?;
        partials.extend((0..chunk.len()).map(|s| loss.derivative(s)));
        seed(&mut lifted, false);
    }
    Ok(partials)
}

/// The derivative of L along `direction` in double-double: the reference
/// for a directional derivative whose f64 rounding is in doubt.
pub fn precise_directional_derivative(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    direction: &[Option<ArrayD<f64>>],
) -> Result<Dd, Box<EvalError>> {
    let lifted = lift_along(
        instance,
        values,
        direction,
        |x, dx| DdDual {
            re: Dd::from_f64(x),
            eps: Some([Dd::from_f64(dx)]),
        },
        |x| DdDual::constant(Dd::from_f64(x)),
    );
    Ok(instance.evaluation(&lifted).loss_alone()?.derivative(0))
}

/// The branch taken at every branch point of L when stepping from the
/// values along `first` (ties broken along `second`), one direction per
/// differentiable tensor, with the difference of the branches' slopes along
/// `first` at each: which kinks the direction moves, and to which side.
pub fn branches_along(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    first: &[Option<ArrayD<f64>>],
    second: &[Option<ArrayD<f64>>],
) -> Result<Vec<super::BranchRecord>, Box<EvalError>> {
    let lifted = lift_along_two(
        instance,
        values,
        (first, second),
        |x, da, db| Dual {
            re: x,
            eps: Some([da, db]),
        },
        Dual::constant,
    );
    let mut evaluation = instance
        .evaluation(&lifted)
        .with_branches(BranchPolicy::FollowTangents);
    evaluation.loss()?;
    Ok(evaluation.branch_records())
}

/// A direction in the space of every tensor (`None` where it does not move one).
type Direction<'a> = &'a [Option<ArrayD<f64>>];

/// Every tensor's values in a dual type with two directions: moving along
/// both where they give one for a differentiable tensor (`along(x, da,
/// db)`), constant elsewhere.
fn lift_along_two<T>(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    (first, second): (Direction<'_>, Direction<'_>),
    along: impl Fn(f64, f64, f64) -> T,
    constant: impl Fn(f64) -> T,
) -> Vec<ArrayD<T>> {
    values
        .iter()
        .enumerate()
        .map(|(k, v)| {
            let differentiable = instance
                .program
                .tensors
                .get(k)
                .is_some_and(|t| t.is_differentiable());
            match (
                first.get(k).and_then(Option::as_ref),
                second.get(k).and_then(Option::as_ref),
            ) {
                (Some(a), Some(b)) if differentiable => ndarray::Zip::from(v)
                    .and(a)
                    .and(b)
                    .map_collect(|&x, &da, &db| along(x, da, db)),
                _ => v.mapv(&constant),
            }
        })
        .collect()
}

/// Every tensor's values in a dual type: moving along `direction` where it
/// gives one for a differentiable tensor (`along(x, dx)`), constant
/// elsewhere (the incoming gradient is data).
fn lift_along<T>(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    direction: &[Option<ArrayD<f64>>],
    along: impl Fn(f64, f64) -> T,
    constant: impl Fn(f64) -> T,
) -> Vec<ArrayD<T>> {
    values
        .iter()
        .enumerate()
        .map(|(k, v)| match direction.get(k).and_then(Option::as_ref) {
            Some(d)
                if instance
                    .program
                    .tensors
                    .get(k)
                    .is_some_and(|t| t.is_differentiable()) =>
            {
                ndarray::Zip::from(v)
                    .and(d)
                    .map_collect(|&x, &dx| along(x, dx))
            }
            _ => v.mapv(&constant),
        })
        .collect()
}
