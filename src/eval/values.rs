//! The values of inputs, params and the incoming gradient at one size, drawn
//! from a seeded generator so that `--seed` reproduces every run.

use ndarray::{ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::distribution::{check_parameters, sample};
use super::{EvalError, Instance, format_value};
use crate::analysis::program::{TensorId, Values};

/// Draws stay this far inside an interval's ends (as a fraction of its
/// width), so that `log` near a bound of `s > 0` is not pushed to overflow.
const MARGIN: f64 = 0.05;

/// One array per tensor, indexed by [`TensorId`].
pub fn draw_values(instance: &Instance<'_>, seed: u64) -> Result<Vec<ArrayD<f64>>, Box<EvalError>> {
    instance
        .program
        .tensors
        .iter()
        .enumerate()
        .map(|(k, tensor)| {
            let grid = instance.tensor_grid(TensorId(k));
            let n = usize::try_from(grid.len().unwrap_or(0)).unwrap_or(0);
            let data: Vec<f64> = match &tensor.values {
                Values::Fill(v) => vec![*v; n],
                Values::List(list) => {
                    if list.len() != n {
                        return Err(Box::new(EvalError::ListLength {
                            tensor: tensor.name.clone(),
                            expected: n as u64,
                            found: list.len(),
                            sizes: instance.sizes.to_string(),
                            span: tensor.span.into(),
                        }));
                    }
                    list.clone()
                }
                Values::Drawn(spec) => {
                    let params = spec
                        .args
                        .iter()
                        .map(|a| instance.constant_value(a))
                        .collect::<Result<Vec<f64>, _>>()?;
                    check_parameters(spec.kind, &params).map_err(|detail| {
                        Box::new(EvalError::DistributionDomain {
                            element: tensor.name.clone(),
                            distribution: format!(
                                "{}({})",
                                spec.kind.name(),
                                params
                                    .iter()
                                    .map(|p| format_value(*p))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            detail,
                            at: instance.sizes.to_string(),
                            span: spec.span.into(),
                        })
                    })?;
                    let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(
                        seed,
                        &tensor.name,
                        instance.sizes.values(),
                    ));
                    (0..n)
                        .map(|_| sample(spec.kind, &params, &mut rng))
                        .collect()
                }
                Values::Grid(values, shape) => {
                    let extents: Vec<u64> = grid.extents().iter().map(|&e| e as u64).collect();
                    let given: Vec<u64> = shape.iter().map(|&e| e as u64).collect();
                    if extents != given {
                        let show = |s: &[u64]| {
                            s.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(" × ")
                        };
                        return Err(Box::new(EvalError::ListShape {
                            tensor: tensor.name.clone(),
                            expected: show(&extents),
                            found: show(&given),
                            sizes: instance.sizes.to_string(),
                            span: tensor.span.into(),
                        }));
                    }
                    values.clone()
                }
                Values::Indices { lo, hi } => {
                    let sizes = instance.sizes.values();
                    let (Some(lo), Some(hi)) = (lo.eval(sizes, &[]), hi.eval(sizes, &[])) else {
                        return Err(Box::new(EvalError::Internal {
                            what: format!("the range of `{}`'s values at these sizes", tensor.name),
                        }));
                    };
                    if lo > hi {
                        return Err(Box::new(EvalError::Internal {
                            what: format!("`{}`'s values drawn from an empty range", tensor.name),
                        }));
                    }
                    let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(
                        seed,
                        &tensor.name,
                        instance.sizes.values(),
                    ));
                    #[allow(clippy::cast_precision_loss)]
                    (0..n).map(|_| rng.random_range(lo..=hi) as f64).collect()
                }
                Values::Random { lo, hi } => {
                    let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(
                        seed,
                        &tensor.name,
                        instance.sizes.values(),
                    ));
                    (0..n)
                        .map(|_| lo + (hi - lo) * rng.random_range(MARGIN..1.0 - MARGIN))
                        .collect()
                }
            };
            ArrayD::from_shape_vec(IxDyn(&grid.extents()), data).map_err(|_| {
                Box::new(EvalError::ListLength {
                    tensor: tensor.name.clone(),
                    expected: n as u64,
                    found: n,
                    sizes: instance.sizes.to_string(),
                    span: tensor.span.into(),
                })
            })
        })
        .collect()
}

/// A seed of its own for each tensor at each size (FNV-1a), so that adding
/// a tensor or a size to a spec does not change the draws of the others.
pub fn stream_seed(seed: u64, name: &str, sizes: &[i64]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    eat(&seed.to_le_bytes());
    eat(name.as_bytes());
    eat(&[0xff]);
    for s in sizes {
        eat(&s.to_le_bytes());
    }
    h
}
