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

use super::{
    CONES_FROM, Loss, displacements, entries_along, fd_steps, magnitudes, moved_along,
    walked_elements,
};
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
    /// Requests read, for the tests.
    #[cfg(test)]
    hits: std::sync::atomic::AtomicUsize,
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
    /// value, and the probe asking makes its own under the time limit in
    /// force then.
    fn get(&self, request: Request) -> Option<[Vec<Loss>; 2]> {
        let losses = self.losses.get(&request)?;
        let timed_out = losses
            .iter()
            .flatten()
            .any(|l| l.as_ref().is_err_and(|e| e.is_timeout()));
        if timed_out {
            return None;
        }
        #[cfg(test)]
        self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(losses.clone())
    }
}

/// The first round of the probe of every tensor a gradient claim names, as
/// [`super::probe_tensor`] would make it: the first step of each walk it
/// makes by whole runs, and the first step along the random direction of
/// a tensor of more than one element (one element's comes from its walk).
/// Only where L is replayed in both precisions: the evaluator, which
/// computes points one by one, gains nothing from a batch, and one claim
/// would compute every probe's points in turn.
pub fn first_round(cx: &SizeContext<'_>) -> FirstRound {
    let Ok(derived) = cx.derived() else {
        return FirstRound::default();
    };
    if <f64 as Replayable>::replay(cx).is_none() || <f32 as Replayable>::replay(cx).is_none() {
        return FirstRound::default();
    }
    let mut requests: Vec<(Request, Move)> = vec![];
    for t in probed_tensors(cx) {
        let (Some(Some(gradient)), Some(values)) = (derived.get(t), cx.values.get(t)) else {
            continue;
        };
        // As `probe_tensor` reads them.
        let gradient = gradient.as_slice_memory_order().unwrap_or(&[]);
        let w: Vec<f64> = values.iter().copied().collect();
        let walked: Vec<(usize, f64)> = walked_elements(gradient, &w, cx.options.fd_elements)
            .map(|(k, w0, _)| (k, w0))
            .collect();
        if walked.len() <= CONES_FROM {
            for (k, w0) in walked {
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
            let u = entries_along(&cx.probe_direction(TensorId(t)), TensorId(t));
            let (largest, smallest) = magnitudes(&w);
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
    FirstRound {
        losses,
        #[cfg(test)]
        hits: Default::default(),
    }
}

/// The tensors gradient claims name, each once, in order.
fn probed_tensors(cx: &SizeContext<'_>) -> Vec<usize> {
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
    targets
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
            Some(Move::Along { tensor, w, u, by }) if *tensor == k => moved_along(w, u, by[j], p),
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
                                moved_along(&w, &u, by[point], p)
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

    /// A probe reading its first steps from a first round finds what it
    /// finds making every run itself, bit for bit (its guard and its
    /// direction), over every spec with a layer or loss; and most probes
    /// do read from it (its requests are theirs).
    #[test]
    fn probes_find_the_same_with_a_first_round_as_without() {
        let (mut probed, mut read) = (0, 0);
        crate::verify::context::tests::for_each_context(|path, cx| {
            let round = first_round(cx);
            for t in probed_tensors(cx) {
                let alone =
                    super::super::probe_tensor_with(TensorId(t), cx, &FirstRound::default());
                let before = round.hits.load(std::sync::atomic::Ordering::Relaxed);
                let batched = super::super::probe_tensor_with(TensorId(t), cx, &round);
                assert_eq!(
                    format!("{batched:?}"),
                    format!("{alone:?}"),
                    "{path:?}: tensor {t}"
                );
                probed += 1;
                read += usize::from(round.hits.load(std::sync::atomic::Ordering::Relaxed) > before);
            }
        });
        println!("{probed} probes, {read} read from the first round");
        assert!(
            probed > 100 && read * 4 > probed * 3,
            "{probed} probes, {read} read from the first round"
        );
    }
}
