//! The first round of every tensor's finite-difference probe at one size,
//! made in one batch, with the Taylor claims' measurement of L's rounding.
//!
//! A probe's first round is a few whole runs of L at four points each: the
//! walk of each element of a tensor too small for cones (a scalar), and
//! the central difference along the tensor's random direction. A Taylor
//! claim measures L's rounding with one more run at seven points in each
//! precision. A run's cost is mostly its pass over the program's steps,
//! whatever its number of points (at A3's N = 10⁶ a run at 4 points cost
//! about 90 ms, a point in the Taylor ladder's runs about 1.3 ms), so all
//! of these are made together, on first use, and each probe or Taylor
//! claim reads its own. Points are independent lanes of a run: L at each
//! is what a run of its own gives, value or error.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{
    CONES_FROM, Loss, displacements, entries_along, fd_steps, magnitudes, moved_along,
    walked_elements,
};
use crate::analysis::program::{ClaimKind, TensorId};
use crate::verify::context::{Points, Replayable, SizeContext, value_at};
use crate::verify::taylor::{self, RoundingPoints};

/// What a first round moves: by the displacements of the step whose bits
/// are `h` ([`displacements`]), or to the Taylor claims' rounding points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Request {
    /// One element (tensor, offset), walked by whole runs.
    Walk { element: (usize, usize), h: u64 },
    /// A tensor along its probe direction.
    Along { tensor: usize, h: u64 },
    /// Every differentiable tensor to the points of [`RoundingPoints`],
    /// along the first Taylor direction over J's layout (`rounding_layout`).
    Rounding,
}

/// L in f64 and in f32 at the points of each request.
#[derive(Default)]
pub struct FirstRound {
    losses: HashMap<Request, [Vec<Loss>; 2]>,
    /// The layout the rounding points were made for: a Taylor claim whose J
    /// has another makes its own.
    rounding_layout: Vec<(TensorId, usize)>,
    /// The first Taylor direction over `rounding_layout`, until the Taylor
    /// claim that measures takes it.
    rounding_direction: Mutex<Option<Vec<f64>>>,
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

    /// L at the Taylor claims' rounding points for J's `layout`
    /// ([`RoundingPoints`]), if made here.
    pub fn rounding(&self, layout: &[(TensorId, usize)]) -> Option<[Vec<Loss>; 2]> {
        if self.rounding_layout != layout {
            return None;
        }
        self.get(Request::Rounding)
    }

    /// The first Taylor direction over J's `layout`, drawn for the
    /// rounding points, for the first to ask for it.
    pub fn take_rounding_direction(&self, layout: &[(TensorId, usize)]) -> Option<Vec<f64>> {
        if self.rounding_layout != layout {
            return None;
        }
        crate::eval::locked(&self.rounding_direction).take()
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
/// a tensor of more than one element (one element's comes from its walk);
/// and, where the spec has a Taylor claim, L at its rounding points as
/// [`crate::verify::taylor`] would take them. Only where L is replayed in
/// both precisions: the evaluator, which computes points one by one, gains
/// nothing from a batch, and one claim would compute every probe's points
/// in turn.
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
    let rounding_layout = if expands_l(cx) {
        taylor::layout_of(cx)
    } else {
        vec![]
    };
    let total: usize = rounding_layout.iter().map(|(_, n)| n).sum();
    let u = match total {
        0 => vec![],
        _ => taylor::directions(cx, total, 1).pop().unwrap_or_default(),
    };
    if total > 0 {
        let rounding = RoundingPoints::new(cx, &rounding_layout, &u);
        requests.push((Request::Rounding, Move::Rounding(rounding)));
    }
    if requests.is_empty() {
        return FirstRound::default();
    }
    let (requests, moves): (Vec<Request>, Vec<Move>) = requests.into_iter().unzip();
    let counts: Vec<usize> = moves.iter().map(Move::points).collect();
    let points = Moves::new(cx.flat_values(), moves);
    let [l64, l32] = cx.losses_in_both(points.len(), points);
    let mut losses = HashMap::new();
    let (mut l64, mut l32) = (l64.into_iter(), l32.into_iter());
    for (request, n) in requests.into_iter().zip(counts) {
        let batch = [
            l64.by_ref().take(n).collect(),
            l32.by_ref().take(n).collect(),
        ];
        losses.insert(request, batch);
    }
    FirstRound {
        losses,
        rounding_layout,
        rounding_direction: Mutex::new((total > 0).then_some(u)),
        #[cfg(test)]
        hits: Default::default(),
    }
}

/// Whether a Taylor claim will expand L at this size.
fn expands_l(cx: &SizeContext<'_>) -> bool {
    cx.loss.is_some()
        && cx
            .program
            .claims
            .iter()
            .any(|c| matches!(c.kind, ClaimKind::Taylor(_)))
}

/// The tensors gradient claims name, each once, in order.
pub(super) fn probed_tensors(cx: &SizeContext<'_>) -> Vec<usize> {
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
enum Move<'s> {
    /// Element `at` moved to each of `to`.
    Element { at: (usize, usize), to: [f64; 4] },
    /// Tensor `tensor`, drawn at `w`, moved by each of `by` along `u`.
    Along {
        tensor: usize,
        w: Vec<f64>,
        u: Vec<f64>,
        by: [f64; 4],
    },
    /// The Taylor claims' rounding points.
    Rounding(RoundingPoints<'s>),
}

impl Move<'_> {
    /// The points it moves to.
    fn points(&self) -> usize {
        match self {
            Move::Element { .. } | Move::Along { .. } => 4,
            Move::Rounding(_) => RoundingPoints::STEPS,
        }
    }
}

/// The points of every request, one after the other, each request's in
/// its own order (a probe's in the order of [`displacements`]); every
/// element not moved is as drawn.
struct Moves<'s> {
    flat: &'s [&'s [f64]],
    moves: Vec<Move<'s>>,
    /// Where each move's points start, and past the last, where they end.
    starts: Vec<usize>,
    /// By tensor, the moves that may move its elements.
    touching: Vec<Vec<usize>>,
}

impl<'s> Moves<'s> {
    fn new(flat: &'s [&'s [f64]], moves: Vec<Move<'s>>) -> Self {
        let starts = std::iter::once(0)
            .chain(moves.iter().scan(0, |end, moved| {
                *end += moved.points();
                Some(*end)
            }))
            .collect();
        let mut touching = vec![vec![]; flat.len()];
        for (m, moved) in moves.iter().enumerate() {
            let tensors = match moved {
                Move::Element { at: (k, _), .. } | Move::Along { tensor: k, .. } => *k..*k + 1,
                Move::Rounding(_) => 0..flat.len(),
            };
            for k in tensors {
                if let Some(t) = touching.get_mut(k) {
                    t.push(m);
                }
            }
        }
        Self {
            flat,
            moves,
            starts,
            touching,
        }
    }

    /// The number of points.
    fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Element `p` of tensor `k` at the `j`-th point of move `moved`, given
    /// its drawn value.
    fn moved_value(moved: &Move<'_>, drawn: f64, j: usize, (k, p): (usize, usize)) -> f64 {
        match moved {
            Move::Element { at, to } if *at == (k, p) => to[j],
            Move::Along { tensor, w, u, by } if *tensor == k => moved_along(w, u, by[j], p),
            Move::Rounding(rounding) => {
                let row = rounding.row_from(drawn, k, p);
                row.get(j).copied().unwrap_or(drawn)
            }
            _ => drawn,
        }
    }
}

impl Points for Moves<'_> {
    fn value(&self, point: usize, k: usize, p: usize) -> f64 {
        let drawn = value_at(self.flat, k, p);
        let m = self
            .starts
            .partition_point(|&s| s <= point)
            .saturating_sub(1);
        match (self.moves.get(m), self.starts.get(m)) {
            (Some(moved), Some(&start)) => Self::moved_value(moved, drawn, point - start, (k, p)),
            _ => drawn,
        }
    }

    /// The drawn value is looked up once per row, and only the moves that
    /// may move the element are looked at, each move's points together: a
    /// row is filled at every input of the layer, and looking up each
    /// point's move took a third of the run (A3 at N = 10⁶, 19 points).
    fn fill<T: Replayable>(
        &self,
        points: std::ops::Range<usize>,
        (k, p): (usize, usize),
        row: &mut [T],
    ) {
        let drawn = value_at(self.flat, k, p);
        row.fill(T::of(drawn));
        for &m in self.touching.get(k).map_or(&[][..], Vec::as_slice) {
            let (Some(moved), Some(&start), Some(&end)) = (
                self.moves.get(m),
                self.starts.get(m),
                self.starts.get(m + 1),
            ) else {
                continue;
            };
            let (from, to) = (start.max(points.start), end.min(points.end));
            let Some(slots) =
                row.get_mut(from.saturating_sub(points.start)..to.saturating_sub(points.start))
            else {
                continue;
            };
            if let Move::Rounding(rounding) = moved {
                rounding.fill(from - start..to - start, (k, p), slots);
                continue;
            }
            for (slot, point) in slots.iter_mut().zip(from..to) {
                *slot = T::of(Self::moved_value(moved, drawn, point - start, (k, p)));
            }
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
    /// the request's four points gives, or the Taylor claims' own run at
    /// their rounding points, bit for bit (value or error), over every spec
    /// with a layer or loss: the batch shares runs, not lanes. Every kind
    /// of request is met, and some in rounds of several.
    #[test]
    fn a_first_round_is_what_each_probe_makes_alone() {
        let (mut walks, mut alongs, mut roundings, mut shared) = (0, 0, 0, 0);
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
                    Request::Rounding => {
                        roundings += 1;
                        // As a Taylor claim draws its first direction.
                        let layout = taylor::layout_of(cx);
                        let total = layout.iter().map(|(_, n)| n).sum();
                        let u = taylor::directions(cx, total, taylor::DIRECTIONS).swap_remove(0);
                        let points = RoundingPoints::new(cx, &layout, &u);
                        cx.losses_in_both(RoundingPoints::STEPS, points)
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
            walks > 50 && alongs > 50 && roundings > 50 && shared > 50,
            "{walks} walks, {alongs} directions, {roundings} roundings, {shared} rounds of several"
        );
    }

    /// A row filled for any range of points, cutting any move, holds what
    /// each point's value is, bit for bit, over every kind of move.
    #[test]
    fn rows_of_any_range_hold_each_points_value() {
        let (w, s, u) = ([0.3, -1.7, 2.5], [0.9], [0.6, -0.8, 0.1, 0.5]);
        let flat: [&[f64]; 3] = [&w, &s, &[4.0, 5.0]];
        let moves = vec![
            Move::Element {
                at: (1, 0),
                to: [1.0, 2.0, 3.0, 4.0],
            },
            Move::Along {
                tensor: 0,
                w: w.to_vec(),
                u: u[..3].to_vec(),
                by: displacements(0.25),
            },
            Move::Rounding(RoundingPoints::over(
                &flat,
                vec![Some(0), Some(3), None],
                &u,
            )),
        ];
        let points = Moves::new(&flat, moves);
        assert_eq!(points.len(), 4 + 4 + RoundingPoints::STEPS);
        let elements = [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1)];
        let mut moved = 0;
        for start in 0..points.len() {
            for end in start + 1..=points.len() {
                for (k, p) in elements {
                    let mut row = vec![f64::NAN; end - start];
                    points.fill::<f64>(start..end, (k, p), &mut row);
                    for (point, v) in (start..end).zip(&row) {
                        let expected = points.value(point, k, p);
                        assert_eq!(v.to_bits(), expected.to_bits(), "{start}..{end} {k} {p}");
                        moved += usize::from(expected != value_at(&flat, k, p));
                    }
                }
            }
        }
        assert!(moved > 1000, "{moved}");
    }

    /// A Taylor claim finds its rounding points in the first round wherever
    /// the spec has one and L replays in both precisions (J's layout is
    /// every differentiable tensor's), and not for another layout.
    #[test]
    fn taylor_claims_read_their_rounding_from_the_first_round() {
        let (mut read, mut expected) = (0, 0);
        crate::verify::context::tests::for_each_context(|path, cx| {
            let replays = <f64 as Replayable>::replay(cx).is_some()
                && <f32 as Replayable>::replay(cx).is_some();
            let layout = taylor::layout_of(cx);
            if !(expands_l(cx) && replays && cx.derived().is_ok()) || layout.is_empty() {
                return;
            }
            expected += 1;
            let round = first_round(cx);
            if round.rounding(&layout).is_some() {
                read += 1;
            }
            let mut other = layout.clone();
            other.pop();
            assert!(
                round.rounding(&other).is_none(),
                "{path:?}: read for another layout"
            );
        });
        assert!(read > 50 && read == expected, "{read} of {expected}");
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
