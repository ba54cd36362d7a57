//! The gradient of L that every claim is judged against, derived two
//! independent ways that must agree.
//!
//! Reverse mode gives every element for one recorded evaluation and one
//! backward sweep. Forward-mode dual numbers, the engine's first
//! derivation, check it: on every element while that costs no more than
//! [`DENSE_ELEMENTS`] elements' worth of passes and [`DENSE_WORK`]
//! recorded operations in all, and above that along
//! [`DIRECTIONS`] random directions, one pass for both. Where the recording
//! meets a kink (relu at 0, a tie, sqrt at 0), the tape holds one branch of
//! several and forward mode, which can choose among them, derives alone.
//!
//! The two modes compute the same partials from the same f64 values of the
//! forward pass and differ only in the order they add the products along
//! the paths from an element to L. So their difference is bounded by the
//! rounding of a sum of those products: `ROUNDING_ULPS · ε · n` times the
//! sum of their absolute values (the path magnitude reverse mode returns),
//! n the terms of the largest sum as for every comparison of exact formulas.

use std::sync::Arc;

use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::outcome::{Route, WithoutReverse};
use super::{Shrinkage, shrinkage, tolerance_ratio};
use crate::analysis::Sizes;
use crate::eval::double_double::Dd;
use crate::eval::{
    EvalError, Instance, Recorded, ReverseGradient, TooLargeToRecord, directional_derivative,
    directional_derivatives, gradient, gradient_of, precise_directional_derivative,
    precise_partials, record, reverse_adjoints,
};

/// Units of rounding per term allowed between the two modes (as between a
/// closed form and autodiff).
const ROUNDING_ULPS: f64 = 64.0;
/// Largest number of differentiable elements at which forward mode checks
/// reverse mode element by element (a pass per eight elements).
pub const DENSE_ELEMENTS: usize = 1024;
/// Largest work, in recorded operations over all passes, at which forward
/// mode checks reverse mode element by element: 128 passes of a recording
/// of 32768 operations. A layer whose forward pass is quadratic by
/// definition (a cumulative sum `sum(k in 1..=i)` at N = 1000) would
/// otherwise pay a quadratic pass per eight elements, below
/// [`DENSE_ELEMENTS`] only.
pub const DENSE_WORK: usize = 1 << 22;
/// Random directions along which forward mode checks reverse mode above
/// [`DENSE_ELEMENTS`] or [`DENSE_WORK`].
pub const DIRECTIONS: usize = 2;

/// Differentiable elements above which forward mode takes the random
/// directions one pass each rather than two at once: its values then take
/// 24 bytes an element rather than 32, held beside the recording (a pass
/// for both held 32 MB more than one each at A3, N = 10⁶).
const ONE_DIRECTION_A_PASS: usize = 1 << 18;

/// The two derivations compared: where they parted, if they did.
#[derive(Clone, Debug, Default)]
pub struct Agreement {
    pub compared: usize,
    pub failed: usize,
    pub worst_ratio: f64,
    /// The first comparison that failed: which element or direction, and
    /// both values.
    pub first_failure: Option<Parting>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Parting {
    /// Element of the tensor (by name and row-major offset), or `None` for a
    /// direction.
    pub element: Option<(String, usize)>,
    pub reverse: f64,
    pub forward: f64,
    pub tolerance: f64,
}

/// The gradient of L at one size, how it was derived, and how the two
/// derivations agreed.
#[derive(Debug)]
pub struct Derivation {
    /// dL/dT per tensor (`None` for data).
    pub gradient: Vec<Option<ArrayD<f64>>>,
    pub route: Route,
    pub agreement: Agreement,
    /// L's rounding in f64 over ε, to first order, where reverse mode swept
    /// ([`crate::eval::reverse::ReverseGradient::rounding`]).
    pub loss_rounding: Option<f64>,
}

impl Derivation {
    /// The derivation, or an error where the two modes parted: no claim
    /// may rest on a gradient its two derivations disagree on.
    fn agreed(self, sizes: &Sizes) -> Result<Self, Box<EvalError>> {
        let Some(p) = &self.agreement.first_failure else {
            return Ok(self);
        };
        let place = match &p.element {
            Some((tensor, offset)) => format!("d{tensor} (element {offset})"),
            None => "a random direction".to_string(),
        };
        Err(Box::new(EvalError::Internal {
            what: format!(
                "reverse-mode and forward-mode autodiff disagree on the gradient of L along {place} at {sizes}: {} against {}, beyond the rounding bound {}",
                crate::eval::format_value(p.reverse),
                crate::eval::format_value(p.forward),
                crate::eval::format_value(p.tolerance),
            ),
        }))
    }
}

/// A recording of L shared between the derivation sweeping it and
/// whoever compiles its replay.
pub type SharedRecording = Arc<Recorded<f64>>;

/// Derives the gradient of L at the drawn values (see the module's notes),
/// and hands on the recording reverse mode swept, for compiling into a
/// replay of L when one is first needed (`None` where there is no
/// recording to replay). `share` is handed the recording before reverse
/// mode sweeps it; the values of a recording still shared after the
/// sweep are dropped by whoever holds it last.
pub fn derive(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    terms: f64,
    seed: u64,
    share: impl FnOnce(&SharedRecording),
) -> (Result<Derivation, Box<EvalError>>, Option<SharedRecording>) {
    // Above [`DENSE_ELEMENTS`] forward mode checks along random
    // directions, which need nothing of the recording: that pass runs
    // beside it, on a core the recording leaves free.
    let differentiable: usize = differentiable_shapes(instance, values)
        .into_iter()
        .flatten()
        .sum();
    let (recorded, ahead) = if differentiable > DENSE_ELEMENTS {
        let (recorded, forward) = rayon::join(
            || record(instance, values),
            || along_random_directions(instance, values, seed),
        );
        (recorded, Some(forward))
    } else {
        (record(instance, values), None)
    };
    let recorded = match recorded.and_then(|recorded| {
        instance.check_clock()?;
        Ok(recorded)
    }) {
        Ok(recorded) => recorded,
        Err(e) if e.is_timeout() => return (Err(e), None),
        // A recording the memory (or the tape's indices) cannot hold:
        // forward mode still can.
        Err(e) => match *e {
            EvalError::RecordingTooLarge { operations, .. } => {
                let why = WithoutReverse::TooLarge(TooLargeToRecord { operations });
                let derived = forward_alone(instance, values, None, why).map_err(|e| match *e {
                    EvalError::Timeout { limit, sizes, .. } => Box::new(EvalError::Timeout {
                        limit,
                        sizes,
                        slow: Some(TooLargeToRecord { operations }),
                    }),
                    other => Box::new(other),
                });
                return (derived, None);
            }
            _ => return (Err(e), None),
        },
    };
    let mut recorded = Arc::new(recorded);
    share(&recorded);
    let reverse = gradient_of(&recorded);
    // A replay does not read the recorded values.
    if let Some(recorded) = Arc::get_mut(&mut recorded) {
        drop(recorded.take_values());
    }
    let operations = recorded.len();
    let derivation = checked(instance, values, terms, (seed, ahead), reverse, operations);
    (derivation, Some(recorded))
}

/// Reverse mode's gradient checked by forward mode, where reverse mode
/// can stand in for it.
fn checked(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    terms: f64,
    (seed, ahead): (u64, Option<Forward>),
    reverse: ReverseGradient<f64>,
    operations: usize,
) -> Result<Derivation, Box<EvalError>> {
    let finite = reverse
        .gradient
        .iter()
        .flatten()
        .all(|g| g.iter().all(|v| v.is_finite()));
    if reverse.kinks.met > 0 || !finite {
        return forward_alone(
            instance,
            values,
            Some(reverse.rounding),
            WithoutReverse::Kink,
        );
    }
    let allowance = ROUNDING_ULPS * f64::EPSILON * terms;
    let elements: usize = reverse.gradient.iter().flatten().map(ArrayD::len).sum();
    let dense_work = elements.div_ceil(8).saturating_mul(operations);
    let (comparisons, route) = if elements <= DENSE_ELEMENTS && dense_work <= DENSE_WORK {
        (
            every_element(instance, values, &reverse, allowance)?,
            Route::ReverseCheckedEverywhere,
        )
    } else {
        let forward = match ahead {
            Some(forward) => forward,
            None => along_random_directions(instance, values, seed),
        }?;
        (
            random_directions(forward, &reverse, allowance),
            Route::ReverseCheckedAlong(DIRECTIONS),
        )
    };
    let agreement = settle(instance, values, comparisons, || {
        let lifted: Vec<ArrayD<Dd>> = values.iter().map(|v| v.mapv(Dd::from_f64)).collect();
        Ok(reverse_adjoints::<Dd>(instance, &lifted)?.gradient)
    })?;
    Derivation {
        gradient: reverse.gradient,
        route,
        agreement,
        loss_rounding: Some(reverse.rounding),
    }
    .agreed(&instance.sizes)
}

/// One comparison of reverse mode with forward mode: an element, or a
/// direction.
struct Comparison {
    at: Compared,
    reverse: f64,
    forward: f64,
    tolerance: f64,
}

enum Compared {
    /// Tensor and row-major offset.
    Element(usize, usize),
    Direction(Vec<Option<ArrayD<f64>>>),
}

/// Forward mode's gradient, compared with reverse mode's at every element.
fn every_element(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    reverse: &ReverseGradient<f64>,
    allowance: f64,
) -> Result<Vec<Comparison>, Box<EvalError>> {
    let forward = gradient(instance, values)?;
    let mut comparisons = vec![];
    for (k, (rev, (fwd, mag))) in reverse
        .gradient
        .iter()
        .zip(forward.iter().zip(&reverse.magnitude))
        .enumerate()
    {
        let (Some(rev), Some(fwd), Some(mag)) = (rev, fwd, mag) else {
            continue;
        };
        for (p, ((&r, &f), &m)) in rev.iter().zip(fwd).zip(mag).enumerate() {
            comparisons.push(Comparison {
                at: Compared::Element(k, p),
                reverse: r,
                forward: f,
                tolerance: rounding_bound(allowance, m),
            });
        }
    }
    Ok(comparisons)
}

/// `allowance` units of rounding at magnitude `m`, and as many absolute
/// units below f64's normal range: a gradient of 7e-317 from both modes
/// differs in its last subnormal bits, which a bound relative to m (itself
/// subnormal, or 0) does not allow.
fn rounding_bound(allowance: f64, m: f64) -> f64 {
    allowance * m + allowance / f64::EPSILON * super::SUBNORMAL_UNIT
}

/// The number of elements of each tensor dL/dT is taken in (`None` for
/// data), as reverse mode lays out its gradient.
pub(super) fn differentiable_shapes(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
) -> Vec<Option<usize>> {
    let tensors = &instance.program.tensors;
    values
        .iter()
        .enumerate()
        .map(|(k, v)| {
            tensors
                .get(k)
                .is_some_and(|t| t.is_differentiable())
                .then_some(v.len())
        })
        .collect()
}

/// Forward mode's derivatives along random directions, each with its
/// direction, or why they could not be taken.
type Forward = Result<Vec<(Vec<Option<ArrayD<f64>>>, f64)>, Box<EvalError>>;

/// Forward mode's derivatives along [`DIRECTIONS`] random directions: unit
/// vectors over every differentiable element, drawn from the seed and the
/// sizes, two to a pass (one a pass above [`ONE_DIRECTION_A_PASS`]
/// elements).
fn along_random_directions(instance: &Instance<'_>, values: &[ArrayD<f64>], seed: u64) -> Forward {
    let elements: usize = differentiable_shapes(instance, values)
        .into_iter()
        .flatten()
        .sum();
    along_random_directions_by(instance, values, seed, elements > ONE_DIRECTION_A_PASS)
}

/// [`along_random_directions`], a pass per direction or two at once.
fn along_random_directions_by(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    seed: u64,
    one_a_pass: bool,
) -> Forward {
    let mut rng = ChaCha8Rng::seed_from_u64(crate::eval::stream_seed(
        seed,
        "derivation",
        instance.sizes.values(),
    ));
    let shapes = differentiable_shapes(instance, values);
    let directions: Vec<Vec<Option<ArrayD<f64>>>> = (0..DIRECTIONS)
        .map(|_| {
            shapes
                .iter()
                .zip(values)
                .map(|(n, v)| {
                    n.map(|n| {
                        let u = super::grad::unit_direction(&mut rng, n);
                        ArrayD::from_shape_vec(v.raw_dim(), u)
                            .unwrap_or_else(|_| ArrayD::zeros(v.raw_dim()))
                    })
                })
                .collect()
        })
        .collect();
    // Each direction is handed on, not copied: a copy of a layer's
    // directions was held beside the recording, at its peak.
    let mut along = Vec::with_capacity(directions.len());
    if one_a_pass {
        for direction in directions {
            let forward = directional_derivative(instance, values, &direction)?;
            along.push((direction, forward));
        }
        return Ok(along);
    }
    let mut directions = directions.into_iter();
    while let Some(first) = directions.next() {
        let second = directions.next();
        let forward =
            directional_derivatives(instance, values, &first, second.as_ref().unwrap_or(&first))?;
        along.extend(std::iter::once(first).chain(second).zip(forward));
    }
    Ok(along)
}

/// Forward mode's derivatives along random directions against reverse
/// mode's gradient projected on them.
fn random_directions(
    forward: Vec<(Vec<Option<ArrayD<f64>>>, f64)>,
    reverse: &ReverseGradient<f64>,
    allowance: f64,
) -> Vec<Comparison> {
    forward
        .into_iter()
        .map(|(u, f)| {
            let (r, m) = along(&reverse.gradient, &reverse.magnitude, &u);
            Comparison {
                at: Compared::Direction(u),
                reverse: r,
                forward: f,
                tolerance: rounding_bound(allowance, m),
            }
        })
        .collect()
}

/// Judges every comparison. One beyond its f64 bound may still be
/// rounding: in a partial that cancels (forward mode's slope of tanh far
/// out is `expm1 + 1`), which the path magnitudes do not see. Both modes
/// are then run in double-double, as every comparison of exact formulas
/// is judged ([`super::shrinkage`]): a difference that shrinks with the
/// precision is rounding, one that stays is a fault of a derivation.
///
/// `precise_reverse` gives reverse mode's gradient in double-double, run
/// only if some comparison needs it.
fn settle(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    comparisons: Vec<Comparison>,
    precise_reverse: impl FnOnce() -> Result<Vec<Option<ArrayD<Dd>>>, Box<EvalError>>,
) -> Result<Agreement, Box<EvalError>> {
    let mut agreement = Agreement::default();
    let beyond = |c: &Comparison| tolerance_ratio((c.reverse - c.forward).abs(), c.tolerance) > 1.0;
    let precise_reverse = if comparisons.iter().any(beyond) {
        Some(precise_reverse()?)
    } else {
        None
    };
    // Forward mode's double-double partials of every element beyond its
    // bound, in one batch (eight elements a pass).
    let flagged: Vec<(usize, usize)> = comparisons
        .iter()
        .filter(|c| beyond(c))
        .filter_map(|c| match c.at {
            Compared::Element(k, p) => Some((k, p)),
            Compared::Direction(_) => None,
        })
        .collect();
    let precise_forward: std::collections::HashMap<(usize, usize), Dd> = if flagged.is_empty() {
        Default::default()
    } else {
        flagged
            .iter()
            .copied()
            .zip(precise_partials(instance, values, &flagged)?)
            .collect()
    };
    for c in comparisons {
        let difference = (c.reverse - c.forward).abs();
        let mut error = difference;
        if let (true, Some(precise)) = (beyond(&c), &precise_reverse) {
            let (rev, fwd) = match &c.at {
                Compared::Element(k, p) => (
                    element(precise, *k, *p),
                    precise_forward
                        .get(&(*k, *p))
                        .copied()
                        .unwrap_or(Dd::from_f64(f64::NAN)),
                ),
                Compared::Direction(u) => (
                    along_precise(precise, u),
                    precise_directional_derivative(instance, values, u)?,
                ),
            };
            let remaining = (rev - fwd).to_f64().abs();
            if shrinkage(difference, remaining, c.tolerance) == Shrinkage::Rounding {
                error = remaining.min(c.tolerance);
            }
        }
        let ratio = tolerance_ratio(error, c.tolerance);
        agreement.compared += 1;
        agreement.worst_ratio = agreement.worst_ratio.max(ratio);
        if ratio > 1.0 {
            agreement.failed += 1;
            if agreement.first_failure.is_none() {
                agreement.first_failure = Some(Parting {
                    element: match c.at {
                        Compared::Element(k, p) => {
                            Some((instance.program.tensors[k].name.clone(), p))
                        }
                        Compared::Direction(_) => None,
                    },
                    reverse: c.reverse,
                    forward: c.forward,
                    tolerance: c.tolerance,
                });
            }
        }
    }
    Ok(agreement)
}

fn element(gradient: &[Option<ArrayD<Dd>>], k: usize, p: usize) -> Dd {
    gradient
        .get(k)
        .and_then(Option::as_ref)
        .and_then(|g| g.as_slice_memory_order()?.get(p).copied())
        .unwrap_or(Dd::from_f64(f64::NAN))
}

/// ⟨gradient, u⟩ in double-double.
fn along_precise(gradient: &[Option<ArrayD<Dd>>], u: &[Option<ArrayD<f64>>]) -> Dd {
    let mut dot = Dd::ZERO;
    for (g, u) in gradient.iter().zip(u) {
        if let (Some(g), Some(u)) = (g, u) {
            for (&g, &u) in g.iter().zip(u) {
                dot += g * Dd::from_f64(u);
            }
        }
    }
    dot
}

/// Forward mode alone, where reverse mode cannot stand in for it.
fn forward_alone(
    instance: &Instance<'_>,
    values: &[ArrayD<f64>],
    loss_rounding: Option<f64>,
    why: WithoutReverse,
) -> Result<Derivation, Box<EvalError>> {
    Ok(Derivation {
        gradient: gradient(instance, values)?,
        route: Route::ForwardAlone(why),
        agreement: Agreement::default(),
        loss_rounding,
    })
}

/// ⟨gradient, u⟩ and ⟨path magnitude, |u|⟩.
fn along(
    gradient: &[Option<ArrayD<f64>>],
    magnitude: &[Option<ArrayD<f64>>],
    u: &[Option<ArrayD<f64>>],
) -> (f64, f64) {
    let mut dot = 0.0;
    let mut scale = 0.0;
    for ((g, m), u) in gradient.iter().zip(magnitude).zip(u) {
        let (Some(g), Some(m), Some(u)) = (g, m, u) else {
            continue;
        };
        for ((&g, &m), &u) in g.iter().zip(m).zip(u) {
            dot += g * u;
            scale += m * u.abs();
        }
    }
    (dot, scale)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::analysis::{analyze, size_sweep};
    use crate::eval::{draw_values, reverse_gradient};
    use crate::source::Source;

    const SPEC: &str = "
        dim n = 5
        input x[n] in (-3, 3)
        param w[n]
        y[i] = tanh(w[i] * x[i]) + exp(x[i]) / sum(k) exp(x[k])
    ";

    /// Forward mode along its random directions gives the same derivatives
    /// bit for bit a pass per direction as two at once, on every bundled
    /// spec with a loss at its largest default size.
    #[test]
    fn one_direction_a_pass_gives_what_two_at_once_give() {
        let mut checked = 0;
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/specs")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "dl") {
                continue;
            }
            let source = Source::new(
                path.to_string_lossy(),
                std::fs::read_to_string(&path).unwrap(),
            );
            let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
            if program.output.is_none() {
                continue;
            }
            let sizes = size_sweep(&program, &[]).unwrap().pop().unwrap();
            let instance = Instance::new(&program, &source, sizes, 1 << 20).unwrap();
            let values = draw_values(&instance, 3).unwrap();
            let [apart, together] = [true, false]
                .map(|one| along_random_directions_by(&instance, &values, 3, one).unwrap());
            assert_eq!(apart.len(), DIRECTIONS, "{}", path.display());
            assert_eq!(together.len(), DIRECTIONS, "{}", path.display());
            for ((u, a), (v, b)) in apart.iter().zip(&together) {
                assert_eq!(u, v, "{}", path.display());
                assert_eq!(a.to_bits(), b.to_bits(), "{}: {a} vs {b}", path.display());
            }
            checked += 1;
        }
        assert!(checked >= 20, "{checked} specs with a loss");
    }

    /// A reverse-mode gradient off at one element by far less than the
    /// element itself, in f64 and in double-double alike (as a wrong
    /// partial would be), is caught, by element and along random
    /// directions, named, and stops every claim from resting on it.
    #[test]
    fn a_wrong_reverse_gradient_is_caught() {
        let source = Source::new("t.dl", SPEC);
        let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let sizes = size_sweep(&program, &[]).unwrap().pop().unwrap();
        let instance = Instance::new(&program, &source, sizes, 1 << 20).unwrap();
        let values = draw_values(&instance, 0).unwrap();
        let mut reverse = reverse_gradient::<f64>(&instance, &values).unwrap();
        let allowance = ROUNDING_ULPS * f64::EPSILON * 5.0;
        let lifted: Vec<ArrayD<Dd>> = values.iter().map(|v| v.mapv(Dd::from_f64)).collect();
        let mut precise = reverse_adjoints::<Dd>(&instance, &lifted).unwrap().gradient;
        let compare = |reverse: &ReverseGradient<f64>| {
            every_element(&instance, &values, reverse, allowance).unwrap()
        };
        let good = settle(
            &instance,
            &values,
            compare(&reverse),
            || Ok(precise.clone()),
        )
        .unwrap();
        assert_eq!((good.compared, good.failed), (10, 0));
        let x = program.tensors.iter().position(|t| t.name == "x").unwrap();
        if let (Some(g), Some(p)) = (reverse.gradient[x].as_mut(), precise[x].as_mut()) {
            g[[2]] *= 1.0 + 1e-9;
            p[[2]] = p[[2]] * Dd::from_f64(1.0 + 1e-9);
        }
        let bad = settle(
            &instance,
            &values,
            compare(&reverse),
            || Ok(precise.clone()),
        )
        .unwrap();
        assert_eq!(bad.failed, 1);
        assert_eq!(
            bad.first_failure.as_ref().unwrap().element,
            Some(("x".to_string(), 2))
        );
        let forward = along_random_directions(&instance, &values, 0).unwrap();
        let directions = random_directions(forward, &reverse, allowance);
        let along = settle(&instance, &values, directions, || Ok(precise.clone())).unwrap();
        assert_eq!((along.compared, along.failed), (DIRECTIONS, DIRECTIONS));
        let derivation = Derivation {
            gradient: reverse.gradient,
            route: Route::ReverseCheckedEverywhere,
            agreement: bad,
            loss_rounding: None,
        };
        let error = derivation.agreed(&instance.sizes).unwrap_err().to_string();
        assert!(
            error.contains("disagree") && error.contains("dx (element 2)"),
            "{error}"
        );
    }
}
