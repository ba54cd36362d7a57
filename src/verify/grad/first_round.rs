//! The first round of every tensor's finite-difference probe at one size,
//! made in one batch.
//!
//! A probe's first round is a few whole runs of L at four points each: the
//! walk of each element of a tensor too small for cones (a scalar), and
//! the central difference along the tensor's random direction. A run's
//! cost is mostly its pass over the program's steps, whatever its number
//! of points (at A3's N = 10⁶ a run at 4 points cost about 90 ms, a point
//! in the Taylor ladder's runs about 1.3 ms), so the first rounds of every
//! tensor a claim probes are made together, on first use, and each probe
//! reads its own. Points are independent lanes of a run: L at each is what
//! a run of its own gives, value or error.

use std::collections::HashMap;

use super::{CONES_FROM, Loss, displacements, fd_steps, spread_sample};
use crate::analysis::program::{ClaimKind, TensorId};
use crate::verify::context::{Points, Replayable, SizeContext, value_at};

/// What a first round moves, by the displacements of the step whose bits
/// are `h` ([`displacements`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Request {
    /// One element (tensor, offset), walked by whole runs.
    Walk { element: (usize, usize), h: u64 },
    /// A tensor along its probe direction.
    Along { tensor: usize, h: u64 },
}

/// L in f64 and in f32 at the four displacements of each request.
#[derive(Default)]
pub struct FirstRound {
    losses: HashMap<Request, [Vec<Loss>; 2]>,
}

impl FirstRound {
    /// L with `element` moved by the displacements of `h`, if made here.
    pub fn walk(&self, element: (usize, usize), h: f64) -> Option<[Vec<Loss>; 2]> {
        self.get(Request::Walk {
            element,
            h: h.to_bits(),
        })
    }

    /// L with `tensor` moved along its probe direction by the
    /// displacements of `h`, if made here.
    pub fn along(&self, tensor: TensorId, h: f64) -> Option<[Vec<Loss>; 2]> {
        self.get(Request::Along {
            tensor: tensor.0,
            h: h.to_bits(),
        })
    }

    /// A request's values, unless the clock cut one short: that is no
    /// value, and the probe asking, under its own claim's time limit,
    /// makes its own.
    fn get(&self, request: Request) -> Option<[Vec<Loss>; 2]> {
        let losses = self.losses.get(&request)?;
        let timed_out = losses
            .iter()
            .flatten()
            .any(|l| l.as_ref().is_err_and(|e| e.is_timeout()));
        (!timed_out).then(|| losses.clone())
    }
}

/// The first round of the probe of every tensor a gradient claim names, as
/// [`super::probe_tensor`] would make it: the first step of each walk it
/// makes by whole runs, and the first step along the random direction of
/// a tensor of more than one element (one element's comes from its walk).
pub fn first_round(cx: &SizeContext<'_>) -> FirstRound {
    let Ok(derived) = cx.derived() else {
        return FirstRound::default();
    };
    let mut targets: Vec<usize> = cx
        .program
        .claims
        .iter()
        .filter_map(|c| match &c.kind {
            ClaimKind::Grad(g) => Some(g.target.0),
            _ => None,
        })
        .collect();
    targets.sort_unstable();
    targets.dedup();
    let mut requests: Vec<(Request, Move)> = vec![];
    for t in targets {
        let Some(Some(gradient)) = derived.get(t) else {
            continue;
        };
        let Some(values) = cx.values.get(t) else {
            continue;
        };
        let w: Vec<f64> = values.iter().copied().collect();
        let walked: Vec<usize> = spread_sample(gradient.len(), cx.options.fd_elements)
            .into_iter()
            .filter(|&k| k < w.len())
            .collect();
        if walked.len() <= CONES_FROM {
            for k in walked {
                let w0 = w[k];
                let Some(&h) = fd_steps(w0.abs(), w0.abs()).first() else {
                    continue;
                };
                let element = (t, k);
                requests.push((
                    Request::Walk {
                        element,
                        h: h.to_bits(),
                    },
                    Move::Element {
                        at: element,
                        to: displacements(h).map(|d| w0 + d),
                    },
                ));
            }
        }
        if w.len() > 1 {
            let direction = cx.probe_direction(TensorId(t));
            let u: Vec<f64> = direction
                .get(t)
                .and_then(Option::as_ref)
                .map(|u| u.iter().copied().collect())
                .unwrap_or_default();
            let (largest, smallest) = super::magnitudes(&w);
            let Some(&h) = fd_steps(largest, smallest).first() else {
                continue;
            };
            requests.push((
                Request::Along {
                    tensor: t,
                    h: h.to_bits(),
                },
                Move::Along {
                    tensor: t,
                    w,
                    u,
                    by: displacements(h),
                },
            ));
        }
    }
    if requests.is_empty() {
        return FirstRound::default();
    }
    let (requests, moves): (Vec<Request>, Vec<Move>) = requests.into_iter().unzip();
    let points = Moves {
        flat: cx.flat_values(),
        moves,
    };
    let [l64, l32] = cx.losses_in_both(4 * requests.len(), points);
    let losses = requests
        .into_iter()
        .zip(l64.chunks(4).zip(l32.chunks(4)))
        .map(|(request, (a, b))| (request, [a.to_vec(), b.to_vec()]))
        .collect();
    FirstRound { losses }
}

/// One request's move (see [`Request`]).
enum Move {
    /// Element `at` moved to each of `to`.
    Element { at: (usize, usize), to: [f64; 4] },
    /// Tensor `tensor`, drawn at `w`, moved by each of `by` along `u`.
    Along {
        tensor: usize,
        w: Vec<f64>,
        u: Vec<f64>,
        by: [f64; 4],
    },
}

/// The points of every request, four each, in the order of
/// [`displacements`]; every element not moved is as drawn.
struct Moves<'s> {
    flat: &'s [&'s [f64]],
    moves: Vec<Move>,
}

impl Moves<'_> {
    /// Element `p` of tensor `k` at `point`, given its drawn value.
    fn value_from(&self, drawn: f64, point: usize, k: usize, p: usize) -> f64 {
        let j = point % 4;
        match self.moves.get(point / 4) {
            Some(Move::Element { at, to }) if *at == (k, p) => to[j],
            Some(Move::Along { tensor, w, u, by }) if *tensor == k => {
                w.get(p).copied().unwrap_or(f64::NAN) + by[j] * u.get(p).copied().unwrap_or(0.0)
            }
            _ => drawn,
        }
    }
}

impl Points for Moves<'_> {
    fn value(&self, point: usize, k: usize, p: usize) -> f64 {
        self.value_from(value_at(self.flat, k, p), point, k, p)
    }

    /// The drawn value is looked up once per row, not at every point.
    fn fill<T: Replayable>(
        &self,
        points: std::ops::Range<usize>,
        (k, p): (usize, usize),
        row: &mut [T],
    ) {
        let drawn = value_at(self.flat, k, p);
        for (slot, point) in row.iter_mut().zip(points) {
            *slot = T::of(self.value_from(drawn, point, k, p));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// L's value or error at a point, comparable bit for bit.
    fn bits(l: &Loss) -> Result<u64, String> {
        l.as_ref().map(|v| v.to_bits()).map_err(|e| e.to_string())
    }

    /// Every value of a first round is what a run of the probe's own at
    /// the request's four points gives, bit for bit (value or error), over
    /// every spec with a layer or loss: the batch shares runs, not lanes.
    /// Both kinds of request are met, and some in rounds of several.
    #[test]
    fn a_first_round_is_what_each_probe_makes_alone() {
        let (mut walks, mut alongs, mut shared) = (0, 0, 0);
        crate::verify::context::tests::for_each_context(|path, cx| {
            let round = first_round(cx);
            shared += usize::from(round.losses.len() > 1);
            let flat = cx.flat_values();
            for (request, batched) in &round.losses {
                let alone = match *request {
                    Request::Walk { element: (k, p), h } => {
                        walks += 1;
                        let w0 = cx.values[k].iter().nth(p).copied().unwrap();
                        let moved = displacements(f64::from_bits(h)).map(|d| w0 + d);
                        cx.moved_losses_in_both((None, None), &[(k, p)], 0, &moved)
                    }
                    Request::Along { tensor, h } => {
                        alongs += 1;
                        let direction = cx.probe_direction(TensorId(tensor));
                        let u: Vec<f64> = direction[tensor]
                            .as_ref()
                            .unwrap()
                            .iter()
                            .copied()
                            .collect();
                        let w: Vec<f64> = cx.values[tensor].iter().copied().collect();
                        let by = displacements(f64::from_bits(h));
                        cx.losses_in_both(4, |point: usize, k: usize, p: usize| {
                            if k == tensor {
                                w[p] + by[point] * u[p]
                            } else {
                                value_at(flat, k, p)
                            }
                        })
                    }
                };
                for (precision, (a, b)) in batched.iter().zip(&alone).enumerate() {
                    let (a, b): (Vec<_>, Vec<_>) =
                        (a.iter().map(bits).collect(), b.iter().map(bits).collect());
                    assert_eq!(a, b, "{path:?}: {request:?}, precision {precision}");
                }
            }
        });
        assert!(
            walks > 50 && alongs > 50 && shared > 50,
            "{walks} walks, {alongs} directions, {shared} rounds of several"
        );
    }
}
