//! What every claim check may use at one size: the instance, the drawn
//! values, all definitions evaluated in f64, and, computed on first use and
//! shared by every claim, the autodiff gradient and per-tensor probes.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::ArrayD;

use super::Options;
use super::derivation::{Derivation, SharedRecording, derive};
use super::grad::{TensorProbe, probe_tensor};
use super::kinks::{KinkGradients, ValidRange, one_sided_partials};
use super::outcome::{Route, WithoutReverse};
use crate::analysis::program::{Program, TensorId};
use crate::eval::double_double::Dd;
use crate::eval::replay::{Cones, LANES, Lane, Replay};
use crate::eval::{
    EvalError, Evaluation, Instance, KinkCount, Recorded, Scalar, TapeReal, locked, record,
    reverse_adjoints,
};
use crate::source::Source;
use num_dual::DualSVec64;
use rayon::prelude::*;

/// Forward-mode passes of precise partials a call may take; a call that
/// needs more reads one double-double recording and backward sweep, which
/// costs no more than about two ([`SizeContext::precise_partials`]).
const FORWARD_PASSES: usize = 2;

/// A direction over the tensors, row-major per tensor (`None` where it
/// does not move one).
pub type Direction = Vec<Option<ArrayD<f64>>>;

/// dL/dT per tensor (`None` for data) and how it was derived, or why it
/// could not be.
type Derived = Result<Derivation, Box<EvalError>>;

pub struct SizeContext<'a> {
    pub program: &'a Program,
    pub source: &'a Source,
    pub options: &'a Options,
    pub instance: &'a Instance<'a>,
    /// Values of every tensor, indexed by [`TensorId`].
    pub values: &'a [ArrayD<f64>],
    /// The same, row-major: what points built element by element read.
    flat: Vec<&'a [f64]>,
    /// All definitions evaluated in f64, claim-only ones included.
    pub evaluation: &'a Evaluation<'a, f64>,
    /// L at the drawn values, where the spec has a layer or a loss.
    pub loss: Option<f64>,
    /// A magnitude of the terms L sums, for the rounding in L.
    pub loss_magnitude: f64,
    /// Terms in the largest sum at this size: the rounding bound's n.
    pub terms: f64,
    derived: OnceLock<Derived>,
    /// Kinks the forward computation of L meets at the drawn values.
    forward_kinks: OnceLock<KinkCount>,
    /// The valid gradients at the kinks, where they can be enumerated.
    kink_gradients: OnceLock<Option<Arc<KinkGradients>>>,
    /// Valid ranges per (tensor, element), where asked for.
    valid_ranges: Mutex<std::collections::HashMap<(usize, usize), Option<ValidRange>>>,
    probes: Vec<Lazy<Arc<TensorProbe>>>,
    /// L recorded at the drawn values, compiled for replaying, per precision.
    replay64: Lazy<Option<Replay<f64>>>,
    /// The recording reverse mode swept, until it is compiled into
    /// `replay64`; shared with the derivation while it sweeps.
    swept: Mutex<Option<SharedRecording>>,
    replay32: Lazy<Option<Replay<f32>>>,
    /// Each tensor's probe direction, drawn on first use.
    probe_directions: Vec<OnceLock<Arc<Direction>>>,
    /// Each tensor's probe derivative by a replay over dual lanes.
    probe_derivatives: OnceLock<Vec<Option<f64>>>,
    /// The first round of every probe, with the Taylor claims' rounding
    /// points, made in one batch on first use.
    first_probe_round: OnceLock<super::grad::FirstRound>,
    /// The cones the probes' walks replay, found for all at first use.
    probe_cones: OnceLock<super::grad::ProbeCones>,
    /// dL/dT in double-double by one backward sweep, where it serves
    /// ([`SizeContext::precise_partials`]).
    precise_gradient: Lazy<Option<Vec<Option<ArrayD<Dd>>>>>,
    /// The recording reverse mode swept, where it has at most
    /// [`crate::eval::LARGE_RECORDING`] operations: carried out again in
    /// double-double, it gives `precise_gradient` at a pass over the tape.
    recording: OnceLock<SharedRecording>,
    /// Whether a call of [`SizeContext::precise_partials`] past forward
    /// mode's passes came already: only the first tries sweeping back over
    /// what its elements reach (each try carries the recording out again).
    swept_part: AtomicBool,
    /// Ladders of the Taylor claims, shared by those with the same J.
    pub(super) taylor_memo: Mutex<Vec<super::taylor::Memo>>,
}

impl<'a> SizeContext<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        program: &'a Program,
        source: &'a Source,
        options: &'a Options,
        instance: &'a Instance<'a>,
        values: &'a [ArrayD<f64>],
        evaluation: &'a Evaluation<'a, f64>,
        loss: Option<f64>,
        loss_magnitude: f64,
        terms: f64,
    ) -> Self {
        Self {
            program,
            source,
            options,
            instance,
            values,
            flat: values
                .iter()
                .map(|a| a.as_slice_memory_order().unwrap_or(&[]))
                .collect(),
            evaluation,
            loss,
            loss_magnitude,
            terms,
            derived: OnceLock::new(),
            forward_kinks: OnceLock::new(),
            kink_gradients: OnceLock::new(),
            valid_ranges: Mutex::new(std::collections::HashMap::new()),
            probes: (0..program.tensors.len())
                .map(|_| Lazy::default())
                .collect(),
            replay64: Lazy::default(),
            swept: Mutex::new(None),
            replay32: Lazy::default(),
            probe_directions: vec![OnceLock::new(); program.tensors.len()],
            probe_derivatives: OnceLock::new(),
            first_probe_round: OnceLock::new(),
            probe_cones: OnceLock::new(),
            precise_gradient: Lazy::default(),
            recording: OnceLock::new(),
            swept_part: Default::default(),
            taylor_memo: Mutex::new(vec![]),
        }
    }

    /// dL/dT for every tensor by autodiff (`None` for data such as `g`),
    /// computed once per size on first use.
    pub fn derived(&self) -> Result<&[Option<ArrayD<f64>>], Box<EvalError>> {
        self.derivation().map(|d| d.gradient.as_slice())
    }

    /// Operations in the recording reverse mode swept, while it waits to
    /// be compiled.
    pub fn swept_operations(&self) -> Option<usize> {
        locked(&self.swept).as_ref().map(|r| r.len())
    }

    /// The gradient with its route and the agreement of its two
    /// derivations (see [`super::derivation`]).
    pub fn derivation(&self) -> Result<&Derivation, Box<EvalError>> {
        self.derive(None::<fn()>)
    }

    /// [`SizeContext::derivation`]; where it is made here and records at
    /// most [`crate::eval::LARGE_RECORDING`] operations, the recording is
    /// shared for the replay of L in f64 before reverse mode sweeps it,
    /// and `compile` is called to compile the replay from it elsewhere
    /// ([`Replayable::replay`] on a thread of its own) while the sweep goes
    /// on; whoever asks for the replay first compiles it, from a copy made
    /// on its own thread while the sweep still reads the recording.
    /// Returns whether `compile` was called. For a caller with a core to
    /// spare: the copy is made and held beside the sweep.
    pub fn derivation_compiled_beside(&self, compile: impl FnOnce()) -> bool {
        let mut called = false;
        let _ = self.derive(Some(|| {
            compile();
            called = true;
        }));
        called
    }

    fn derive(&self, compile: Option<impl FnOnce()>) -> Result<&Derivation, Box<EvalError>> {
        self.derived
            .get_or_init(|| {
                let mut handed_on = false;
                let beside = |recorded: &SharedRecording| {
                    if let Some(compile) = compile
                        && recorded.len() <= crate::eval::LARGE_RECORDING
                    {
                        *locked(&self.swept) = Some(Arc::clone(recorded));
                        handed_on = true;
                        compile();
                    }
                };
                let (derivation, recorded) = derive(
                    self.instance,
                    self.values,
                    self.terms,
                    self.options.seed,
                    beside,
                );
                // The replays of L in f64 run the recording reverse mode
                // swept, compiled when first needed; one cut short by the
                // clock is no answer.
                let timed_out = matches!(&derivation, Err(e) if e.is_timeout());
                if let Some(recorded) = recorded.as_ref().filter(|_| !timed_out) {
                    self.keep_recording(recorded);
                }
                match recorded {
                    // Kept only for a replay not yet made (a claim may have
                    // recorded and compiled its own before) nor shared
                    // already.
                    Some(recorded) if !timed_out && !handed_on && self.replay64.get().is_none() => {
                        *locked(&self.swept) = Some(recorded);
                    }
                    // A recording past the memory in f64 is one in f32 as
                    // well (the same operations): recording either again
                    // would take time and memory up to the limit for the
                    // same refusal, at a size already slow.
                    None if too_large_to_record(&derivation) => {
                        self.replay64.offer(None);
                        self.replay32.offer(None);
                    }
                    None if !timed_out => self.replay64.offer(None),
                    _ => {}
                }
                derivation
            })
            .as_ref()
            .map_err(|e| e.clone())
    }

    /// Keeps the derivation's recording for [`SizeContext::precise_partials`]
    /// where it is not large: a large one is held no longer than its sweep
    /// and its replay's compiling need it. Kept once the derivation is
    /// done, which dropped its values if nothing else held it then
    /// (carrying it out again does not read them).
    fn keep_recording(&self, recorded: &SharedRecording) {
        if recorded.len() <= crate::eval::LARGE_RECORDING {
            let _ = self.recording.set(Arc::clone(recorded));
        }
    }

    /// The points of non-differentiability the forward computation of L
    /// meets at these values (none where L cannot be computed).
    pub fn forward_kinks(&self) -> KinkCount {
        *self.forward_kinks.get_or_init(|| {
            let mut evaluation = self.instance.evaluation(self.values);
            evaluation
                .loss()
                .map_or(KinkCount::default(), |_| evaluation.kinks())
        })
    }

    /// The kinks the forward computation of L met at these values, where
    /// the caller evaluated L already ([`SizeContext::forward_kinks`]
    /// evaluates it otherwise).
    pub fn met_kinks(&self, kinks: KinkCount) {
        let _ = self.forward_kinks.set(kinks);
    }

    /// The valid gradients at the kinks of L, where every kink is a branch
    /// point; computed once per size.
    pub fn kink_gradients(&self) -> Option<Arc<KinkGradients>> {
        self.kink_gradients
            .get_or_init(|| KinkGradients::find(self).map(Arc::new))
            .clone()
    }

    /// The range the partial of L in element `k` of `target` may validly
    /// take where the forward computation meets a kink: from the
    /// enumerated branches where it can, else from the one-sided
    /// derivatives; `None` where it meets none.
    pub fn valid_range(&self, target: TensorId, k: usize) -> Option<ValidRange> {
        if self.forward_kinks().met == 0 {
            return None;
        }
        let known = locked(&self.valid_ranges).get(&(target.0, k)).copied();
        if let Some(known) = known {
            return known;
        }
        let n = self.values.get(target.0).map_or(0, ArrayD::len);
        let found = match self.kink_gradients() {
            Some(g) => g.element(target, k, n),
            None => one_sided_partials(self, target, k),
        };
        locked(&self.valid_ranges).insert((target.0, k), found);
        found
    }

    /// The exact partials of L in `elements` (tensor, row-major offset),
    /// computed in double-double: where a flagged element's rounding is in
    /// doubt, this is the reference. Forward mode's dual numbers give eight
    /// elements a pass; one double-double recording and backward sweep
    /// (for the adjoints alone) gives them all for no more than about two
    /// passes' cost. So a call for at
    /// most [`FORWARD_PASSES`] passes' elements takes forward mode, and a
    /// larger one reads the sweep, made on first use; the first such call
    /// (often the only one: a claim wrong everywhere is settled by its
    /// first batch) sweeps back over only the operations its elements
    /// reach, where they reach at most a quarter of the recording, which
    /// gives the same partials bit for bit (a later call carries the
    /// recording out once more, for the whole sweep). The values depend on the call
    /// alone, so a claim's values do not depend on which claims asked
    /// before it. Not where the sweep's recording meets a kink (forward
    /// mode's dual numbers pick a tie's branch by their tangents, the tape
    /// by the values) or gives a partial asked for that is not finite:
    /// there forward mode computes every element asked for. Either way a
    /// value is the exact derivative of the same double-double computation,
    /// summed in another order.
    pub fn precise_partials(&self, elements: &[(usize, usize)]) -> Result<Vec<Dd>, Box<EvalError>> {
        let forward = || crate::eval::precise_partials(self.instance, self.values, elements);
        let passes = elements.len().div_ceil(crate::eval::PARTIALS_PER_PASS);
        if passes <= FORWARD_PASSES {
            return forward();
        }
        if self.precise_gradient.get().is_none()
            && !self.swept_part.swap(true, Relaxed)
            && let Some(recording) = self.recording.get().filter(|r| r.kinks.met == 0)
        {
            let lifted: Vec<ArrayD<Dd>> =
                self.values.iter().map(|v| v.mapv(Dd::from_f64)).collect();
            let most = recording.len() / 4;
            if let Some(partials) = recording.partials_in_type::<Dd>(&lifted, elements, most) {
                return Ok(partials);
            }
        }
        let gradient = self
            .precise_gradient
            .get_or_try(|| {
                let lifted: Vec<ArrayD<Dd>> =
                    self.values.iter().map(|v| v.mapv(Dd::from_f64)).collect();
                // The derivation's recording carried out again in
                // double-double where it decides alike: the recording the
                // evaluator would make, without its walk of the tree.
                let again = self
                    .recording
                    .get()
                    .and_then(|r| r.in_type::<Dd>(&lifted))
                    .map(|r| crate::eval::adjoints_of(&r));
                let swept = match again
                    .map_or_else(|| reverse_adjoints::<Dd>(self.instance, &lifted), Ok)
                {
                    Ok(r) => Some(r),
                    Err(e) if e.is_timeout() => return Err(e),
                    Err(_) => None,
                };
                Ok(swept.filter(|r| r.kinks.met == 0).map(|r| r.gradient))
            })?
            .as_ref();
        let read = |&(k, p): &(usize, usize)| {
            gradient?
                .get(k)?
                .as_ref()?
                .as_slice_memory_order()?
                .get(p)
                .copied()
                .filter(|d| d.to_f64().is_finite())
        };
        match elements.iter().map(read).collect::<Option<Vec<Dd>>>() {
            Some(partials) => Ok(partials),
            None => forward(),
        }
    }

    /// Finite-difference guard and directional probe of one tensor, run
    /// once per size for all the claims about it.
    pub fn probe(&self, target: TensorId) -> Arc<TensorProbe> {
        let probe = || Arc::new(probe_tensor(target, self));
        match self.probes.get(target.0) {
            Some(lazy) => lazy.get_or_init(probe).clone(),
            None => probe(),
        }
    }

    /// The cones of the elements every probe walks (see
    /// [`super::grad::ProbeCones`]), found when the first probe asks.
    pub fn probe_cones(&self) -> &super::grad::ProbeCones {
        self.probe_cones
            .get_or_init(|| super::grad::ProbeCones::of_probes(self))
    }

    /// The first round of the probe of every tensor a gradient claim names,
    /// and the Taylor claims' rounding points, made in one batch when the
    /// first probe or Taylor claim asks (see [`super::grad::first_round`]),
    /// under that claim's time limit.
    pub fn first_probe_round(&self) -> &super::grad::FirstRound {
        self.first_probe_round
            .get_or_init(|| super::grad::first_round(self))
    }

    /// L at `count` points, `input(point, tensor, offset)` giving every
    /// element's value (in f64, holding a value of `T`): by replaying the
    /// recorded evaluation wherever a point takes the recording's
    /// decisions, and by the evaluator elsewhere. Either way the value is
    /// the evaluator's in `T`, bit for bit, or its error.
    pub fn losses<T: Replayable>(
        &self,
        count: usize,
        input: impl Points,
    ) -> Vec<Result<f64, Box<EvalError>>> {
        self.losses_in_rows::<T>(count, |points, at, row| input.fill(points, at, row))
    }

    /// [`SizeContext::losses`] in f64 and in f32 at the same points, the
    /// two precisions' replays run at once: a few points cost a run's
    /// reading of every step, whatever their number, so two batches side
    /// by side take the time of one.
    pub fn losses_in_both(
        &self,
        count: usize,
        input: impl Points,
    ) -> [Vec<Result<f64, Box<EvalError>>>; 2] {
        let (r64, r32) = (f64::replay(self), f32::replay(self));
        let fill64 = |points, at, row: &mut [f64]| input.fill(points, at, row);
        let fill32 = |points, at, row: &mut [f32]| input.fill(points, at, row);
        let (l64, l32) = crate::eval::join_if(
            side_by_side((r64, r32), count),
            || replayed(r64, count, fill64),
            || replayed(r32, count, fill32),
        );
        [
            self.or_evaluated(l64, fill64),
            self.or_evaluated(l32, fill32),
        ]
    }

    /// [`SizeContext::losses`] with the points built a row at a time:
    /// `fill(points, (tensor, offset), row)` writes that element's value at
    /// each of `points` into `row`, so that what the points share (the
    /// drawn value, a direction's entry) is looked up once per row.
    pub fn losses_in_rows<T: Replayable>(
        &self,
        count: usize,
        fill: impl Fn(std::ops::Range<usize>, (usize, usize), &mut [T]) + Sync,
    ) -> Vec<Result<f64, Box<EvalError>>> {
        let replayed = replayed(T::replay(self), count, &fill);
        self.or_evaluated(replayed, fill)
    }

    /// The replayed values of L, and the evaluator's where a replay
    /// declined.
    fn or_evaluated<T: Replayable>(
        &self,
        replayed: Vec<Option<T>>,
        fill: impl Fn(std::ops::Range<usize>, (usize, usize), &mut [T]),
    ) -> Vec<Result<f64, Box<EvalError>>> {
        replayed
            .into_iter()
            .enumerate()
            .map(|(point, r)| match r {
                Some(v) => Ok(v.value()),
                None => self.evaluate::<T>(|k, p| {
                    let mut one = [T::of(0.0)];
                    fill(point..point + 1, (k, p), &mut one);
                    one[0].value()
                }),
            })
            .collect()
    }

    /// L by the evaluator at the point `input(tensor, offset)` gives.
    fn evaluate<T: Replayable>(
        &self,
        input: impl Fn(usize, usize) -> f64,
    ) -> Result<f64, Box<EvalError>> {
        let values: Vec<ArrayD<T>> = self
            .values
            .iter()
            .enumerate()
            .map(|(k, a)| {
                let mut p = 0;
                a.mapv(|_| {
                    p += 1;
                    T::constant(input(k, p - 1))
                })
            })
            .collect();
        self.instance.evaluation(&values).loss().map(|v| v.real())
    }

    /// The random direction `target`'s probe checks autodiff along
    /// ([`super::grad::probe_direction`]), drawn on first use: the probe
    /// and the replay of every tensor's probe derivative share it.
    pub fn probe_direction(&self, target: TensorId) -> Arc<Direction> {
        let draw = || Arc::new(super::grad::probe_direction(self, target));
        match self.probe_directions.get(target.0) {
            Some(cell) => cell.get_or_init(draw).clone(),
            None => draw(),
        }
    }

    /// The exact derivative of L along the probe direction of `target`
    /// ([`SizeContext::probe_direction`]) by forward-mode dual numbers, as
    /// [`crate::eval::directional_derivative`] gives it. Where a replay of L
    /// over dual lanes computes the evaluator's value
    /// ([`Replay::lanes_match_evaluator`]), one run gives every tensor's
    /// probe a lane of its own, on first use; else the evaluator derives it.
    pub fn probe_derivative(&self, target: TensorId) -> Result<f64, Box<EvalError>> {
        let replayed = self
            .probe_derivatives
            .get_or_init(|| self.replayed_probe_derivatives());
        match replayed.get(target.0).copied().flatten() {
            Some(d) => Ok(d),
            None => crate::eval::directional_derivative(
                self.instance,
                self.values,
                &self.probe_direction(target),
            ),
        }
    }

    /// Every differentiable tensor's probe derivative (see
    /// [`SizeContext::probe_derivative`]) in one replay, a lane per tensor;
    /// `None` for each where the replay cannot give it.
    fn replayed_probe_derivatives(&self) -> Vec<Option<f64>> {
        let tensors = &self.program.tensors;
        let none = vec![None; tensors.len()];
        let Some(replay) = f64::replay(self).filter(|r| r.lanes_match_evaluator()) else {
            return none;
        };
        // (tensor, its direction) per lane.
        let directions: Vec<(usize, Arc<Direction>)> = (0..tensors.len())
            .filter(|&k| tensors[k].is_differentiable())
            .map(|k| (k, self.probe_direction(TensorId(k))))
            .collect();
        let lanes: Vec<(usize, &[f64])> = directions
            .iter()
            .filter_map(|(k, d)| Some((*k, d.get(*k)?.as_ref()?.as_slice_memory_order()?)))
            .collect();
        if lanes.is_empty() {
            return none;
        }
        let flat = &self.flat;
        // Lifted as the evaluator's pass lifts them: the direction's entry
        // as the one derivative, constants with none at all.
        let out = replay.run_lanes(
            lanes.len(),
            |c| Lane(DualSVec64::<1>::from(c)),
            |(k, p), row| {
                let x = value_at(flat, k, p);
                for (slot, (t, u)) in row.iter_mut().zip(&lanes) {
                    *slot = Lane(if *t == k {
                        let dx = u.get(p).copied().unwrap_or(f64::NAN);
                        DualSVec64::from_re(0.0).derivative(0) * dx + x
                    } else {
                        DualSVec64::from(x)
                    });
                }
            },
        );
        let mut derivatives = none;
        for ((k, _), l) in lanes.iter().zip(out) {
            if let (Some(slot), Some(Lane(l))) = (derivatives.get_mut(*k), l) {
                *slot = Some(l.eps.0.as_ref().map_or(0.0, |m| m[(0, 0)]));
            }
        }
        derivatives
    }

    /// The cones of some elements in the replays of L in f64 and in f32,
    /// for [`SizeContext::moved_losses`], found side by side (each costs
    /// about one run); `None` where L is not replayed in that precision.
    pub fn cones_in_both(
        &self,
        elements: &[(usize, usize)],
    ) -> (Option<Cones<f64>>, Option<Cones<f32>>) {
        let flat = &self.flat;
        let (r64, r32) = (f64::replay(self), f32::replay(self));
        // A scan costs about a replay at one point.
        crate::eval::join_if(
            side_by_side((r64, r32), 1),
            || r64.map(|r| r.cones(elements, |k, p| value_at(flat, k, p))),
            || r32.map(|r| r.cones(elements, |k, p| value_at(flat, k, p))),
        )
    }

    /// L with element `e` of `elements` moved to each value of `moved`
    /// and every other value as drawn: by its cone where it is replayed
    /// (by whole replays where there are no cones), by the evaluator
    /// elsewhere; the evaluator's value either way.
    pub fn moved_losses<T: Replayable>(
        &self,
        cones: Option<&Cones<T>>,
        elements: &[(usize, usize)],
        e: usize,
        moved: &[f64],
    ) -> Vec<Result<f64, Box<EvalError>>> {
        let input = self.moved_point(elements, e, moved);
        let Some(cones) = cones else {
            // No cones: whole replays.
            return self.losses::<T>(moved.len(), input);
        };
        let replayed: Vec<Option<T>> = match T::replay(self) {
            Some(replay) => moved
                .chunks(LANES)
                .flat_map(|chunk| replay.run_cone(cones, e, chunk))
                .collect(),
            None => vec![None; moved.len()],
        };
        self.or_evaluated(replayed, |points, at, row| input.fill(points, at, row))
    }

    /// Point `point` of [`SizeContext::moved_losses`]: element `e` of
    /// `elements` at `moved[point]`, every other value as drawn.
    fn moved_point<'s>(
        &'s self,
        elements: &[(usize, usize)],
        e: usize,
        moved: &'s [f64],
    ) -> MovedPoint<'s> {
        MovedPoint {
            element: elements.get(e).copied().unwrap_or((usize::MAX, 0)),
            moved,
            flat: &self.flat,
        }
    }

    /// [`SizeContext::moved_losses`] in f64 and f32 at once; where neither
    /// has cones, the whole replays of both run side by side.
    pub fn moved_losses_in_both(
        &self,
        (cones64, cones32): (Option<&Cones<f64>>, Option<&Cones<f32>>),
        elements: &[(usize, usize)],
        e: usize,
        moved: &[f64],
    ) -> [Vec<Result<f64, Box<EvalError>>>; 2] {
        if cones64.is_some() || cones32.is_some() {
            return [
                self.moved_losses(cones64, elements, e, moved),
                self.moved_losses(cones32, elements, e, moved),
            ];
        }
        self.losses_in_both(moved.len(), self.moved_point(elements, e, moved))
    }

    /// Every tensor's drawn values, row-major: for building points in
    /// rayon tasks, which read no value the context makes on first use
    /// (one may be in the making on the thread that waits for them).
    pub fn flat_values(&self) -> &[&'a [f64]] {
        &self.flat
    }

    /// The spec's text, for attaching to diagnostics.
    pub fn named_source(&self) -> miette::NamedSource<crate::source::SpecText> {
        self.source.named()
    }
}

/// A precision L can be replayed in: f64 and f32.
pub trait Replayable: Scalar + TapeReal + Send + Sync {
    /// The recording at the drawn values (rounded to this precision),
    /// made on first use; `None` where it cannot be replayed.
    fn replay<'c>(cx: &'c SizeContext<'_>) -> Option<&'c Replay<Self>>;
}

/// Compiles the recording `made` hands over, or else records L at
/// `values` in `T`; `None` where L fails there or the recording cannot be
/// replayed. A recording cut short by the clock is no answer: it is not
/// kept, and the next caller tries again.
fn compiled<'c, T: TapeReal + Scalar>(
    cx: &SizeContext<'_>,
    cell: &'c Lazy<Option<Replay<T>>>,
    made: impl FnOnce() -> Option<Recorded<T>>,
    values: &[ArrayD<T>],
) -> Option<&'c Replay<T>> {
    cell.get_or_try(
        || match made().map_or_else(|| record(cx.instance, values), Ok) {
            Ok(recorded) => Ok(Replay::compile(recorded)),
            Err(e) if e.is_timeout() => Err(()),
            Err(_) => Ok(None),
        },
    )
    .ok()?
    .as_ref()
}

/// The recording to compile, from the one shared with the derivation:
/// itself where nothing else holds it, else a copy without its values (a
/// replay does not read them) while the derivation sweeps it.
fn owned_recording(shared: SharedRecording) -> Recorded<f64> {
    Arc::try_unwrap(shared).unwrap_or_else(|sweeping| sweeping.without_values())
}

impl Replayable for f64 {
    fn replay<'c>(cx: &'c SizeContext<'_>) -> Option<&'c Replay<Self>> {
        // The derivation's recording where it made one, else a new one.
        let swept = || {
            let shared = locked(&cx.swept).take();
            shared.map(owned_recording)
        };
        compiled(cx, &cx.replay64, swept, cx.values)
    }
}

impl Replayable for f32 {
    fn replay<'c>(cx: &'c SizeContext<'_>) -> Option<&'c Replay<Self>> {
        if let Some(known) = cx.replay32.get() {
            return known.as_ref();
        }
        // f64's program serves where it takes the same decisions at the
        // drawn point rounded to f32: recording and compiling again would
        // give the same steps.
        let flat = &cx.flat;
        let shared = f64::replay(cx)
            .and_then(Replay::in_precision::<f32>)
            .filter(|r| {
                r.run_with(1, |_, k, p| f64::from(f32::constant(value_at(flat, k, p))))
                    .first()
                    .is_some_and(Option::is_some)
            });
        if let Some(shared) = shared {
            cx.replay32.offer(Some(shared));
            return cx.replay32.get().and_then(Option::as_ref);
        }
        let single: Vec<ArrayD<f32>> = cx.values.iter().map(|a| a.mapv(f32::constant)).collect();
        compiled(cx, &cx.replay32, || None, &single)
    }
}

/// Whether work on both precisions' replays, each at `points` points, is
/// worth two threads: where both replay (without a replay one side is no
/// work) and past [`crate::eval::HAND_OVER`] steps in all.
fn side_by_side((r64, r32): (Option<&Replay<f64>>, Option<&Replay<f32>>), points: usize) -> bool {
    match (r64, r32) {
        (Some(a), Some(b)) => points.saturating_mul(a.len() + b.len()) >= crate::eval::HAND_OVER,
        _ => false,
    }
}

/// Whether the derivation went without a recording because L's would not
/// fit in memory, whether or not forward mode then finished in time.
fn too_large_to_record(derivation: &Result<Derivation, Box<EvalError>>) -> bool {
    match derivation {
        Ok(d) => matches!(d.route, Route::ForwardAlone(WithoutReverse::TooLarge(_))),
        Err(e) => matches!(**e, EvalError::Timeout { slow: Some(_), .. }),
    }
}

/// L replayed at `count` points built by `fill` (see
/// [`SizeContext::losses_in_rows`]): `None` at every point where there is
/// no replay or the replay declines. Runs are independent: they share the
/// machine's cores.
fn replayed<T: Replayable>(
    replay: Option<&Replay<T>>,
    count: usize,
    fill: impl Fn(std::ops::Range<usize>, (usize, usize), &mut [T]) + Sync,
) -> Vec<Option<T>> {
    let Some(replay) = replay else {
        return vec![None; count];
    };
    let width = replay.width_for(count, rayon::current_num_threads());
    let starts: Vec<usize> = (0..count).step_by(width).collect();
    let run = |start: usize| {
        let points = start..(start + width).min(count);
        replay.run_rows(points.len(), |at, row| fill(points.clone(), at, row))
    };
    // A single run, or a small one, stays here (see `crate::eval::HAND_OVER`).
    if starts.len() > 1 && count.saturating_mul(replay.len()) >= crate::eval::HAND_OVER {
        starts.into_par_iter().flat_map_iter(run).collect()
    } else {
        starts.into_iter().flat_map(run).collect()
    }
}

/// The points L is evaluated at, element by element: any
/// `Fn(point, tensor, offset) -> f64` is. A row has a slot per point.
pub trait Points: Sync {
    /// Element `p` of tensor `k` at point `point`.
    fn value(&self, point: usize, k: usize, p: usize) -> f64;

    /// Element `p` of tensor `k` at each of `points`, into `row`.
    fn fill<T: Replayable>(
        &self,
        points: std::ops::Range<usize>,
        at: (usize, usize),
        row: &mut [T],
    ) {
        fill_point_by_point(self, points, at, row);
    }
}

/// A row of `points`, each point's value looked up in turn.
fn fill_point_by_point<T: Replayable>(
    input: &(impl Points + ?Sized),
    points: std::ops::Range<usize>,
    (k, p): (usize, usize),
    row: &mut [T],
) {
    for (slot, point) in row.iter_mut().zip(points) {
        *slot = T::of(input.value(point, k, p));
    }
}

impl<F: Fn(usize, usize, usize) -> f64 + Sync> Points for F {
    fn value(&self, point: usize, k: usize, p: usize) -> f64 {
        self(point, k, p)
    }
}

/// Points where one element moves and every other is as drawn
/// ([`SizeContext::moved_losses`]).
struct MovedPoint<'s> {
    /// (tensor, offset) of the element that moves.
    element: (usize, usize),
    /// Its value at each point.
    moved: &'s [f64],
    flat: &'s [&'s [f64]],
}

impl Points for MovedPoint<'_> {
    fn value(&self, point: usize, k: usize, p: usize) -> f64 {
        if (k, p) == self.element {
            self.moved.get(point).copied().unwrap_or(f64::NAN)
        } else {
            value_at(self.flat, k, p)
        }
    }

    /// Every element but one is the same at every point: looked up once
    /// per row (a few points' row is filled at each of a layer's inputs;
    /// looked up at every point, that took a quarter to a third of a
    /// four-point run at A3's N = 10⁵).
    fn fill<T: Replayable>(
        &self,
        points: std::ops::Range<usize>,
        (k, p): (usize, usize),
        row: &mut [T],
    ) {
        if (k, p) == self.element {
            fill_point_by_point(self, points, (k, p), row);
        } else {
            let value = T::of(value_at(self.flat, k, p));
            for slot in row.iter_mut().take(points.len()) {
                *slot = value;
            }
        }
    }
}

/// A value made on first use and then shared: by one thread at a time,
/// so that a caller arriving while it is made waits for it rather than
/// making it again. An attempt that gives no value
/// ([`Lazy::get_or_try`]'s `Err`, a recording cut short by the clock) is
/// not kept, and the next caller tries again; what [`Lazy::get_or_init`]
/// makes is kept, whatever it is.
pub(super) struct Lazy<T> {
    value: OnceLock<T>,
    making: Mutex<()>,
}

impl<T> Default for Lazy<T> {
    fn default() -> Self {
        Self {
            value: OnceLock::new(),
            making: Mutex::new(()),
        }
    }
}

impl<T> Lazy<T> {
    pub(super) fn get(&self) -> Option<&T> {
        self.value.get()
    }

    /// The value, made by `make` unless it is made already.
    pub(super) fn get_or_try<E>(&self, make: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
        if let Some(known) = self.value.get() {
            return Ok(known);
        }
        let _turn = locked(&self.making);
        if let Some(known) = self.value.get() {
            return Ok(known);
        }
        let made = make()?;
        Ok(self.value.get_or_init(|| made))
    }

    pub(super) fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        match self.get_or_try(|| Ok::<T, std::convert::Infallible>(make())) {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    /// Keeps `value` unless a value is kept already (one made elsewhere,
    /// equal to it).
    pub(super) fn offer(&self, value: T) {
        let _ = self.value.set(value);
    }
}

/// Element `p` (row-major) of tensor `k` among row-major values
/// ([`SizeContext::flat_values`]); NaN outside them.
pub fn value_at(flat: &[&[f64]], k: usize, p: usize) -> f64 {
    flat.get(k)
        .and_then(|s| s.get(p))
        .copied()
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::eval::{draw_values, reverse_gradient};

    /// A moved point's rows are what building them point by point gives:
    /// the moved element at each point, every other element as drawn.
    #[test]
    fn a_moved_points_rows_are_its_values_point_by_point() {
        let (x, w) = ([0.5, -1.25, 3.0], [7.0, 0.1]);
        let flat: [&[f64]; 2] = [&x, &w];
        let moved = [10.0, 1e-9, -0.3];
        let points = MovedPoint {
            element: (1, 1),
            moved: &moved,
            flat: &flat,
        };
        let point_by_point = |k: usize, p: usize| -> Vec<f32> {
            (1..3)
                .map(|point| points.value(point, k, p) as f32)
                .collect()
        };
        for (k, p) in [(0, 0), (0, 2), (1, 0), (1, 1)] {
            let mut row = [f32::NAN; 2];
            points.fill(1..3, (k, p), &mut row);
            assert_eq!(row.to_vec(), point_by_point(k, p), "({k}, {p})");
        }
        let mut row = [0.0f64; 3];
        points.fill(0..3, (1, 1), &mut row);
        assert_eq!(row, moved);
        points.fill(0..3, (1, 0), &mut row);
        assert_eq!(row, [7.0; 3]);
    }

    /// A value is made once however many threads ask at once, and an
    /// attempt that gives none is not kept: the next caller makes it.
    #[test]
    fn a_lazy_value_is_made_once_and_a_failed_attempt_is_not_kept() {
        let lazy: Lazy<usize> = Lazy::default();
        assert_eq!(
            lazy.get_or_try(|| Err::<usize, &str>("cut short")),
            Err("cut short")
        );
        assert_eq!(lazy.get(), None);
        let made = std::sync::atomic::AtomicUsize::new(0);
        let values: Vec<usize> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|k| {
                    let (lazy, made) = (&lazy, &made);
                    scope.spawn(move || {
                        *lazy.get_or_init(|| {
                            made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            k
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(made.into_inner(), 1);
        assert!(values.iter().all(|&v| v == values[0]), "{values:?}");
        // A value offered once one is kept changes nothing.
        lazy.offer(values[0] + 1);
        assert_eq!(lazy.get(), Some(&values[0]));
    }

    /// A replay compiled from a copy of the recording before reverse mode
    /// sweeps it is the one compiled from the recording afterwards: L at
    /// points along a random direction is the same bit for bit (value or
    /// error), and so is the derivation; over every spec with a layer or
    /// loss, most of which replay.
    #[test]
    fn a_replay_compiled_from_a_copy_of_the_recording_is_the_one_compiled_after() {
        let (mut compared, mut beside) = (0, 0);
        for_each_drawn(|path, drawn| {
            let new = || drawn.context();
            let (with, after) = (new(), new());
            let gradient = |d: Result<&Derivation, Box<EvalError>>| {
                d.map(|d| format!("{:?}", d.gradient))
                    .map_err(|e| e.to_string())
            };
            let compile = || {
                let _ = f64::replay(&with);
            };
            let called = with.derivation_compiled_beside(compile);
            assert_eq!(
                gradient(with.derivation()),
                gradient(after.derivation()),
                "{path:?}"
            );
            // Compiled from the copy while the sweep went on, where it
            // recorded and replays: nothing is left kept for a compile.
            if called && matches!(with.replay64.get(), Some(Some(_))) {
                beside += 1;
            }
            assert!(with.swept_operations().is_none(), "{path:?}");
            // Where the compile is not made at once (no thread to be had),
            // the copy waits for the first claim to ask for the replay.
            let waiting = new();
            if waiting.derivation_compiled_beside(|| {}) {
                assert!(waiting.swept_operations().is_some(), "{path:?}");
                let (a, b) = (f64::replay(&waiting), f64::replay(&after));
                assert_eq!(a.is_some(), b.is_some(), "{path:?}");
            }
            let (a, b) = (f64::replay(&with), f64::replay(&after));
            assert_eq!(a.is_some(), b.is_some(), "{path:?}");
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
            let flat = with.flat_values();
            let u: Vec<Vec<f64>> = flat
                .iter()
                .map(|t| crate::verify::grad::unit_direction(&mut rng, t.len()))
                .collect();
            let at = |point: usize, k: usize, p: usize| {
                value_at(flat, k, p) + 1e-3 * point as f64 * u[k][p]
            };
            let bits = |l: Vec<Result<f64, Box<EvalError>>>| -> Vec<Result<u64, String>> {
                l.into_iter()
                    .map(|l| l.map(f64::to_bits).map_err(|e| e.to_string()))
                    .collect()
            };
            assert_eq!(
                bits(with.losses::<f64>(3, at)),
                bits(after.losses::<f64>(3, at)),
                "{path:?}"
            );
            compared += 1;
        });
        assert!(
            compared > 100 && beside * 4 > compared * 3,
            "{beside} of {compared} compiled beside the sweep"
        );
    }

    /// Calls `f` with a context at the values drawn from seed 1, for each
    /// spec with a layer or loss whose L is defined there.
    pub(crate) fn for_each_context(mut f: impl FnMut(&std::path::Path, &SizeContext<'_>)) {
        for_each_drawn(|path, drawn| f(path, &drawn.context()));
    }

    /// A spec's values drawn from seed 1 and L there, from which to make
    /// contexts.
    struct Drawn<'d> {
        source: &'d Source,
        options: Options,
        instance: &'d Instance<'d>,
        values: &'d [ArrayD<f64>],
        evaluation: &'d Evaluation<'d, f64>,
        loss: f64,
    }

    impl Drawn<'_> {
        /// A new context at the drawn values, nothing in it made yet.
        fn context(&self) -> SizeContext<'_> {
            SizeContext::new(
                self.instance.program,
                self.source,
                &self.options,
                self.instance,
                self.values,
                self.evaluation,
                Some(self.loss),
                1.0,
                1.0,
            )
        }
    }

    /// Where L's recording does not fit in memory (a limit of 100
    /// operations, where a cumulative sum at n = 40 records 2,000), the
    /// derivation goes by forward mode and neither replay records L again:
    /// both are known to be none.
    #[test]
    fn a_recording_too_large_is_not_made_again_for_a_replay() {
        crate::test_support::with_instance(crate::test_support::CUMSUM, |source, instance| {
            instance.limit_operations(100);
            let instance = &*instance;
            let values = draw_values(instance, 1).unwrap();
            let mut evaluation = instance.evaluation::<f64>(&values);
            let loss = evaluation.loss().unwrap();
            let options = Options::default();
            let cx = SizeContext::new(
                instance.program,
                source,
                &options,
                instance,
                &values,
                &evaluation,
                Some(loss),
                1.0,
                1.0,
            );
            let derivation = cx.derivation().unwrap();
            assert!(
                matches!(
                    derivation.route,
                    Route::ForwardAlone(WithoutReverse::TooLarge(_))
                ),
                "{:?}",
                derivation.route
            );
            assert!(matches!(cx.replay64.get(), Some(None)));
            assert!(matches!(cx.replay32.get(), Some(None)));
            assert!(f32::replay(&cx).is_none());
        });
        // Forward mode out of time after the refusal is a refusal still;
        // out of time for any other reason is not.
        let timeout = |slow| {
            Err(Box::new(EvalError::Timeout {
                limit: "1 s".to_string(),
                sizes: "n = 40".to_string(),
                slow,
            }))
        };
        let refused = Some(crate::eval::TooLargeToRecord { operations: 100 });
        assert!(too_large_to_record(&timeout(refused)));
        assert!(!too_large_to_record(&timeout(None)));
    }

    /// Calls `f` with the values drawn from seed 1 and L there, for each
    /// spec with a layer or loss whose L is defined there.
    fn for_each_drawn(mut f: impl FnMut(&std::path::Path, &Drawn<'_>)) {
        crate::test_support::for_each_spec_with_a_loss(|path, source, instance| {
            let Ok(values) = draw_values(instance, 1) else {
                return;
            };
            let mut evaluation = instance.evaluation::<f64>(&values);
            let Ok(loss) = evaluation.loss() else {
                return;
            };
            let drawn = Drawn {
                source,
                options: Options::default(),
                instance,
                values: &values,
                evaluation: &evaluation,
                loss,
            };
            f(path, &drawn);
        });
    }

    /// The probes' exact directional derivatives by dual lanes of the
    /// replay (a lane per tensor) are the evaluator's, bit for bit, over
    /// every spec with a layer or loss; and where the recording meets a
    /// kink the replay leaves them to the evaluator, whose dual numbers
    /// pick the branch by their tangents.
    #[test]
    fn directional_derivatives_by_replay_are_the_evaluators() {
        let (mut replayed, mut kinked) = (0, 0);
        for_each_context(|path, cx| {
            let (program, instance, values) = (cx.program, cx.instance, cx.values);
            let Some(replay) = f64::replay(cx) else {
                return;
            };
            if !replay.lanes_match_evaluator() {
                let mut lifted = instance.evaluation(values);
                kinked += usize::from(lifted.loss().is_ok() && lifted.kinks().met > 0);
                return;
            }
            for (k, tensor) in program.tensors.iter().enumerate() {
                if !tensor.is_differentiable() {
                    continue;
                }
                let direction = cx.probe_direction(TensorId(k));
                let by_evaluator =
                    crate::eval::directional_derivative(instance, values, &direction);
                match (cx.probe_derivative(TensorId(k)), by_evaluator) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a.to_bits(), b.to_bits(), "{path:?}: {a} against {b}")
                    }
                    (a, b) => assert_eq!(a.is_ok(), b.is_ok(), "{path:?}"),
                }
                // The replay gave it, not the evaluator.
                assert!(
                    cx.probe_derivatives.get().is_some_and(|d| d[k].is_some()),
                    "{path:?}: tensor {k} has no lane"
                );
            }
            replayed += 1;
        });
        assert!(
            replayed > 100 && kinked > 0,
            "{replayed} replayed, {kinked} at kinks"
        );
    }

    /// The precise partials read from the double-double sweep are forward
    /// mode's, up to double-double rounding, at every
    /// element of every spec with a layer or loss; where the sweep's
    /// recording meets a kink, forward mode gives them. Those swept back
    /// over a part of the recording are the whole sweep's, bit for bit.
    #[test]
    fn precise_partials_by_the_sweep_are_forward_modes() {
        let (mut swept, mut kinked, mut parts) = (0, 0, 0);
        for_each_context(|path, cx| {
            let (program, instance, values) = (cx.program, cx.instance, cx.values);
            let Ok(reverse) = reverse_gradient::<f64>(instance, values) else {
                return;
            };
            // Derived first, as in a check: the sweep then carries the
            // derivation's recording out again where it can (values
            // dropped), and records anew elsewhere.
            let _ = cx.derived();
            let elements: Vec<(usize, usize)> = (0..program.tensors.len())
                .filter(|&k| program.tensors[k].is_differentiable())
                .flat_map(|k| (0..values[k].len()).map(move |p| (k, p)))
                .collect();
            // More elements than forward mode's passes take (repeated where
            // the spec has fewer), so that the sweep serves.
            let asked: Vec<(usize, usize)> = elements
                .iter()
                .cycle()
                .take(
                    elements
                        .len()
                        .max(FORWARD_PASSES * crate::eval::PARTIALS_PER_PASS + 1),
                )
                .copied()
                .collect();
            let Ok(by_forward) = crate::eval::precise_partials(instance, values, &elements) else {
                return;
            };
            let bits = |v: &[Dd]| -> Vec<(u64, u64)> {
                v.iter().map(|d| (d.hi.to_bits(), d.lo.to_bits())).collect()
            };
            // The first call past forward mode's passes sweeps back over
            // what its elements reach, where that is little (a layer's last
            // element, repeated): the partials the whole sweep, made at the
            // next call, gives.
            let last = *elements.last().unwrap();
            let few: Vec<(usize, usize)> = std::iter::repeat_n(last, asked.len()).collect();
            let by_part = cx.precise_partials(&few).ok();
            let part_taken = cx.precise_gradient.get().is_none();
            let Ok(by_sweep) = cx.precise_partials(&asked) else {
                return;
            };
            if let Some(by_part) = by_part {
                parts += usize::from(part_taken);
                assert_eq!(
                    bits(&by_part),
                    bits(&cx.precise_partials(&few).unwrap()),
                    "{path:?}: the part's partials are not the whole sweep's"
                );
            }
            // A call within forward mode's passes takes forward mode, sweep
            // made or not: a claim's values do not depend on the calls
            // before it.
            let few = &elements[..elements.len().min(crate::eval::PARTIALS_PER_PASS)];
            let by_forward_few = crate::eval::precise_partials(instance, values, few).unwrap();
            assert_eq!(
                bits(&cx.precise_partials(few).unwrap()),
                bits(&by_forward_few),
                "{path:?}: a small call after the sweep is not forward mode's"
            );
            match cx.precise_gradient.get() {
                Some(Some(_)) => swept += 1,
                _ => {
                    kinked += usize::from(reverse.kinks.met > 0);
                    // Bit for bit, NaN's sign included.
                    assert_eq!(
                        bits(&cx.precise_partials(&elements).unwrap()),
                        bits(&by_forward),
                        "{path:?}: not swept, yet not forward mode's"
                    );
                    return;
                }
            }
            for ((&(k, p), a), b) in elements.iter().zip(&by_sweep).zip(&by_forward) {
                let magnitude = reverse.magnitude[k]
                    .as_ref()
                    .unwrap()
                    .as_slice_memory_order()
                    .unwrap()[p];
                // Not finite: forward mode's, bit for bit.
                if !(a.to_f64().is_finite() && b.to_f64().is_finite()) {
                    assert_eq!(
                        bits(&[*a]),
                        bits(&[*b]),
                        "{path:?}: element {p} of tensor {k}"
                    );
                    continue;
                }
                let difference = (*a - *b).to_f64().abs();
                // 2⁻⁸⁰ of the larger of the path magnitude and 1 (the scale
                // of the values the derivative computes with, here drawn
                // near 1): 2²⁸ times finer than f64's ε, where the bounds
                // these partials settle start; double-double's own rounding
                // is 2⁻¹⁰⁴ an operation.
                let scale = magnitude.max(1.0);
                assert!(
                    difference <= scale / (1u128 << 80) as f64,
                    "{path:?}: element {p} of tensor {k}: {a:?} against {b:?}, path magnitude {magnitude}"
                );
            }
        });
        assert!(
            swept > 100 && kinked > 0 && parts > 50,
            "{swept} swept, {kinked} at kinks, {parts} parts swept first"
        );
    }
}
