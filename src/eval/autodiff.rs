//! Forward-mode autodiff of L with num-dual. A pass carries `CHUNK`
//! derivative directions at once (`DualSVec64<CHUNK>`), so the gradient of P
//! elements costs P / CHUNK forward passes, each element derived exactly.

use ndarray::ArrayD;
use num_dual::{Dual64, DualSVec64};

use super::{EvalError, Instance};

/// Directions per forward pass: wide enough to amortise the interpreter over
/// several derivatives, narrow enough that each dual number stays small.
const CHUNK: usize = 8;

/// dL/dT for every tensor T (`None` for the incoming gradient, which is data).
pub fn gradient(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
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
        let loss = instance.evaluation(&lifted).loss()?;
        for (slot, &(k, p)) in chunk.iter().enumerate() {
            let d = loss.eps.0.as_ref().map_or(0.0, |m| m[(slot, 0)]);
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

/// The exact derivative of L along `direction` (one array per tensor; the
/// incoming gradient's entry is ignored), in a single dual-number pass.
pub fn directional_derivative(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    direction: &[Option<ArrayD<f64>>],
) -> Result<f64, Box<EvalError>> {
    let lifted: Vec<ArrayD<Dual64>> = values
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
                    .map_collect(|&x, &dx| Dual64::new(x, dx))
            }
            _ => v.mapv(Dual64::from),
        })
        .collect();
    Ok(instance.evaluation(&lifted).loss()?.eps)
}
