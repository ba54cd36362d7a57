//! The numerics of a Taylor check, free of the spec: the ladder of steps,
//! the rounding floor, the part of the ladder where truncation dominates,
//! and the rate fitted there.
//!
//! Along a direction u, the remainder r(ε) of a scheme behaves like C·εᵖ
//! (truncation) until it meets the noise that rounding leaves in L's
//! evaluations (the floor F); below that, |r| stays near F whatever ε. On
//! log-log axes the derivative's error r/ε is a V: truncation on the right
//! branch, rounding on the left. The rate is fitted on the right branch only:
//!
//! 1. The floor F is the larger of rounding theory's estimate and the
//!    largest |r| at the ladder's foot ([`floor`]), where nothing but
//!    rounding is left for a right gradient.
//! 2. A point is *truncation-dominated* when |r| > [`ABOVE_FLOOR`]·F. Rounding
//!    then moves log|r| by at most 1/[`ABOVE_FLOOR`], and a least-squares slope
//!    over a decade (five points) by a few hundredths.
//! 3. The *rounding point* is where the last truncation-dominated point (the
//!    smallest ε) gives way to the floor.
//! 4. The *asymptotic run* climbs from there while r keeps its sign: a sign
//!    change is where two Taylor terms cancel, and above it the remainder is
//!    not yet a single power of ε. Near the cancellation the local slope is
//!    far off (aε² − bε³ has slope 1 at half its zero), so when something
//!    other than the ladder's top bounds the run, the window stays below it
//!    by as much as makes the next term a tenth of the leading one: a
//!    decade for the one-sided remainder, half a decade for the central one,
//!    whose terms are two powers apart.
//! 5. The run must descend like a remainder: points at its foot whose local
//!    slope is below [`DESCENT`] (halfway between flat noise, slope 0, and the
//!    slowest rate a differentiable L allows, slope 1) are noise the floor
//!    estimate missed, and are dropped.
//! 6. The rate is the least-squares slope of log|r| against log‖Δw‖ over the
//!    lowest decade of the run ([`WINDOW_DECADES`]): as close to ε → 0 as
//!    rounding allows, so that higher Taylor terms bias it least. Fewer than
//!    [`MIN_POINTS`] points there give no rate, and neither does a window
//!    whose half-decade slopes spread by more than [`SLOPE_SPREAD`]: there
//!    the higher terms still bend the curve (a step near the radius of
//!    convergence, or a wrong gradient's ε¹ meeting its ε² term).

/// Ladder points per decade of ε.
pub const STEPS_PER_DECADE: u32 = 4;
/// The ladder runs from ε = 1 down over this many decades: past the point
/// where rounding dominates in f64 (about 1e-8 one-sided, 1e-5 central), and
/// on to where the step itself is no longer representable.
pub const DECADES: u32 = 16;
/// A point counts as truncation-dominated above this multiple of the floor.
pub const ABOVE_FLOOR: f64 = 10.0;
/// Slowest local slope that still counts as a descending remainder.
pub const DESCENT: f64 = 0.5;
/// The rate is fitted over this many decades at the foot of the run.
pub const WINDOW_DECADES: f64 = 1.0;
/// Fewest points a rate is fitted on.
pub const MIN_POINTS: usize = 3;
/// How far above the truncation threshold a rung must be for a fall to the
/// floor at the next rung to count as a collapse: a fall of 100× over one
/// rung (a factor 10^(1/4) in ε) is a local slope of 8, more than any rate
/// a Taylor check asks about.
pub const COLLAPSE: f64 = 100.0;
/// Rungs a collapse must stay at the floor for below it (a decade).
pub const COLLAPSE_RUNGS: usize = STEPS_PER_DECADE as usize;
/// Largest spread of the half-decade slopes in the window for a settled
/// rate: the rates a smooth L shows are a whole number apart, and rounding
/// moves a half-decade slope by about 0.1 at the window's foot.
pub const SLOPE_SPREAD: f64 = 0.5;

/// ε = 1, 10^(-1/4), …, 1e-16: computed once, as every run's report reads
/// it again.
pub fn ladder() -> &'static [f64] {
    static LADDER: std::sync::LazyLock<Vec<f64>> = std::sync::LazyLock::new(|| {
        (0..=STEPS_PER_DECADE * DECADES)
            .map(|k| 10f64.powf(-f64::from(k) / f64::from(STEPS_PER_DECADE)))
            .collect()
    });
    &LADDER
}

/// One rung of the ladder: the step actually taken (after rounding w + εu
/// in the working precision) and the signed remainder there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// ‖Δw‖ as taken; zero when w + εu rounds back to w.
    pub step: f64,
    pub remainder: f64,
}

/// What the ladder of one direction shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fit {
    /// The fitted rate, if enough points are truncation-dominated.
    pub rate: Option<f64>,
    /// Ladder indices the rate was fitted on.
    pub window: Vec<usize>,
    /// Ladder index of the first point below the window, where rounding
    /// takes over; `None` if truncation dominates to the ladder's end.
    pub rounding_index: Option<usize>,
    /// The smallest non-zero |r| the ladder reached.
    pub smallest: Option<f64>,
    /// Why there is no rate.
    pub problem: Option<String>,
    /// Smallest and largest slope over half a decade within the window.
    pub slope_range: Option<(f64, f64)>,
    /// No rung rose above the floor, from ε = 1 (where L was defined) down:
    /// whatever power of ε the remainder has, its coefficient is below
    /// what rounding lets one see (the central remainder of a quadratic L).
    pub at_floor_everywhere: bool,
    /// The remainder fell from far above the floor to it within one rung,
    /// faster than any Taylor term falls, and stayed there: below this
    /// step L is a polynomial along u of the order the scheme cancels
    /// (hardswish, smooth L1, a relu network within one linear piece), and
    /// the rungs above crossed a breakpoint. As `at_floor_everywhere`,
    /// below this step.
    pub at_floor_below: Option<f64>,
}

/// Rungs at the foot of the ladder that show the floor as measured.
pub const FLOOR_RUNGS: usize = 2 * STEPS_PER_DECADE as usize;

/// The rounding floor: the larger of the estimate from rounding theory and
/// what the ladder itself shows at its foot (the largest |r| over the last
/// [`FLOOR_RUNGS`] rungs whose step is not zero). The measured part only
/// ever raises the floor: it guards against a computation whose rounding
/// the theory underestimates, at the price of a shorter fitting window.
pub fn floor(points: &[Option<Point>], theoretical: f64) -> f64 {
    let measured = points
        .iter()
        .rev()
        .flatten()
        .filter(|p| p.step > 0.0 && p.remainder.is_finite())
        .take(FLOOR_RUNGS)
        .map(|p| p.remainder.abs())
        .fold(0.0, f64::max);
    theoretical.max(measured)
}

/// Fits the rate of `points` (one per ladder rung, `None` where L could not
/// be evaluated) above the rounding floor `floor`. `gap` is how many powers
/// of ε separate consecutive terms of the remainder: 1 for the one-sided
/// one, 2 for the central one (whose even terms cancel).
pub fn fit_rate(points: &[Option<Point>], floor: f64, gap: u32) -> Fit {
    let smallest = points
        .iter()
        .flatten()
        .map(|p| p.remainder.abs())
        .filter(|r| *r > 0.0 && r.is_finite())
        .min_by(f64::total_cmp);
    let threshold = ABOVE_FLOOR * floor;
    let above =
        |k: usize| -> Option<Point> {
            points.get(k).copied().flatten().filter(|p| {
                p.step > 0.0 && p.remainder.is_finite() && p.remainder.abs() > threshold
            })
        };
    let Some(bottom) = (0..points.len()).rev().find(|&k| above(k).is_some()) else {
        return Fit {
            smallest,
            at_floor_everywhere: points.first().is_some_and(Option::is_some),
            problem: Some(format!(
                "rounding dominates everywhere: the remainder never rises above {ABOVE_FLOOR}× the rounding floor {}",
                short(floor)
            )),
            ..Fit::default()
        };
    };
    if let Some(step) = collapse_below(points, bottom, threshold) {
        return Fit {
            smallest,
            rounding_index: Some(bottom + 1),
            at_floor_below: Some(step),
            problem: Some(format!(
                "the remainder falls to the rounding floor below ‖Δw‖ = {} faster than any power of ε: L is a polynomial along u there, and the larger steps cross a breakpoint",
                short(step)
            )),
            ..Fit::default()
        };
    }
    let top = run_top(bottom, &above);
    let foot = descending_foot(top, bottom, &above);
    let span = 10f64.powf(WINDOW_DECADES);
    let foot_step = above(foot).map_or(0.0, |p| p.step);
    // Below a cancellation at ε₀, the next term is (ε/ε₀)^gap of the
    // leading one and bends the slope by about gap·(ε/ε₀)^gap (aε² − bε³
    // has slope 1 at half its zero): keep to where it is a tenth at most.
    let ceiling = match top {
        0 => f64::INFINITY,
        _ => above(top).map_or(0.0, |p| p.step) * 10f64.powf(-1.0 / f64::from(gap.max(1))),
    };
    let window: Vec<usize> = (top..=foot)
        .filter(|&k| above(k).is_some_and(|p| p.step <= (foot_step * span).min(ceiling)))
        .collect();
    let rounding_index = (foot + 1 < points.len()).then_some(foot + 1);
    let samples: Vec<(f64, f64)> = window
        .iter()
        .filter_map(|&k| above(k))
        .map(|p| (p.step.ln(), p.remainder.abs().ln()))
        .collect();
    if samples.len() < MIN_POINTS {
        return Fit {
            window,
            rounding_index,
            smallest,
            problem: Some(format!(
                "too few points where truncation dominates: {} (a rate needs {MIN_POINTS})",
                samples.len()
            )),
            ..Fit::default()
        };
    }
    let slope_range = half_decade_slopes(&window, &above);
    let problem = slope_range
        .filter(|(lo, hi)| hi - lo > SLOPE_SPREAD)
        .map(|(lo, hi)| {
            format!(
                "the remainder has not settled on a rate: its slope runs from {lo:.2} to {hi:.2} within a decade"
            )
        });
    Fit {
        rate: least_squares_slope(&samples).filter(|_| problem.is_none()),
        window,
        rounding_index,
        smallest,
        problem,
        slope_range,
        at_floor_everywhere: false,
        at_floor_below: None,
    }
}

/// The step below which the remainder collapses: the lowest
/// truncation-dominated rung `bottom` is [`COLLAPSE`] times above the
/// threshold, and the next rungs, a decade of them at least, are all at the
/// floor.
fn collapse_below(points: &[Option<Point>], bottom: usize, threshold: f64) -> Option<f64> {
    let last = points.get(bottom).copied().flatten()?;
    if last.remainder.abs() < COLLAPSE * threshold {
        return None;
    }
    let below: Vec<Point> = points
        .get(bottom + 1..)?
        .iter()
        .flatten()
        .filter(|p| p.step > 0.0 && p.remainder.is_finite())
        .copied()
        .collect();
    let first = below.first()?;
    (below.len() >= COLLAPSE_RUNGS && first.remainder.abs() <= threshold).then_some(first.step)
}

/// The highest rung of the run that ends at `bottom`: consecutive
/// truncation-dominated points of one sign.
fn run_top(bottom: usize, above: &impl Fn(usize) -> Option<Point>) -> usize {
    let sign = above(bottom).map_or(0.0, |p| p.remainder.signum());
    let mut top = bottom;
    while top > 0 && above(top - 1).is_some_and(|p| p.remainder.signum() == sign) {
        top -= 1;
    }
    top
}

/// The lowest rung of the run from which the remainder still descends.
fn descending_foot(top: usize, bottom: usize, above: &impl Fn(usize) -> Option<Point>) -> usize {
    let mut foot = bottom;
    while foot > top {
        let (Some(upper), Some(lower)) = (above(foot - 1), above(foot)) else {
            break;
        };
        if local_slope(upper, lower).is_some_and(|s| s >= DESCENT) {
            break;
        }
        foot -= 1;
    }
    foot
}

/// The range of local slopes between rungs half a decade apart.
fn half_decade_slopes(
    window: &[usize],
    above: &impl Fn(usize) -> Option<Point>,
) -> Option<(f64, f64)> {
    let apart = (STEPS_PER_DECADE / 2) as usize;
    let slopes: Vec<f64> = window
        .iter()
        .filter(|&&k| window.contains(&(k + apart)))
        .filter_map(|&k| local_slope(above(k)?, above(k + apart)?))
        .collect();
    let lo = slopes.iter().copied().min_by(f64::total_cmp)?;
    let hi = slopes.iter().copied().max_by(f64::total_cmp)?;
    Some((lo, hi))
}

/// d log|r| / d log‖Δw‖ between two rungs.
pub fn local_slope(upper: Point, lower: Point) -> Option<f64> {
    let dx = (upper.step / lower.step).ln();
    (dx.abs() > 0.0 && dx.is_finite())
        .then(|| (upper.remainder.abs() / lower.remainder.abs()).ln() / dx)
}

/// Slope of the least-squares line through `(x, y)` samples.
pub fn least_squares_slope(samples: &[(f64, f64)]) -> Option<f64> {
    let n = samples.len() as f64;
    if n < 2.0 {
        return None;
    }
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let sxx: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    let sxy: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn short(v: f64) -> String {
    format!("{v:.1e}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// |r| = c·ε^p above a flat floor of alternating-sign noise.
    fn synthetic(c: f64, p: f64, noise: f64) -> Vec<Option<Point>> {
        ladder()
            .iter()
            .enumerate()
            .map(|(k, &e)| {
                let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
                Some(Point {
                    step: e,
                    remainder: c * e.powf(p) + sign * noise,
                })
            })
            .collect()
    }

    #[test]
    fn a_clean_power_law_gives_its_exponent() {
        for p in [1.0, 2.0, 3.0] {
            let fit = fit_rate(&synthetic(0.7, p, 1e-16), 1e-16, 1);
            let rate = fit.rate.unwrap();
            // Noise of 1/ABOVE_FLOOR at the foot, alternating: a few hundredths.
            assert!((rate - p).abs() < 0.05, "p = {p}: fitted {rate}");
            assert!(fit.window.len() >= MIN_POINTS);
        }
    }

    #[test]
    fn the_window_sits_at_the_foot_of_the_run_above_the_floor() {
        let floor = 1e-12;
        let fit = fit_rate(&synthetic(1.0, 2.0, floor), floor, 1);
        let ladder = ladder();
        let foot = *fit.window.last().unwrap();
        // 1e-12 · 10 = 1e-11 = ε² at ε ≈ 3.2e-6: the foot is just above it.
        assert!(
            ladder[foot] > 3.0e-6 && ladder[foot] < 1.0e-5,
            "{}",
            ladder[foot]
        );
        assert_eq!(fit.rounding_index, Some(foot + 1));
        assert!((fit.rate.unwrap() - 2.0).abs() < 0.05);
    }

    #[test]
    fn a_collapse_to_the_floor_is_a_polynomial_piece_not_a_rate() {
        // Steps above 0.2 cross a breakpoint (remainder ε²); below it the
        // remainder is rounding only, as for a quadratic piece.
        let floor = 1e-16;
        let points: Vec<Option<Point>> = ladder()
            .iter()
            .enumerate()
            .map(|(k, &e)| {
                let remainder = if e > 0.2 {
                    e * e
                } else {
                    floor * if k % 2 == 0 { 0.5 } else { -0.3 }
                };
                Some(Point { step: e, remainder })
            })
            .collect();
        let fit = fit_rate(&points, floor, 2);
        assert!(fit.at_floor_below.is_some_and(|s| s < 0.2), "{fit:?}");
        assert_eq!(fit.rate, None);
        // A smooth remainder that meets the floor gradually is no collapse.
        let smooth = fit_rate(&synthetic(1.0, 3.0, floor), floor, 2);
        assert_eq!(smooth.at_floor_below, None);
        assert!(smooth.rate.is_some_and(|r| (r - 3.0).abs() < 0.05));
    }

    #[test]
    fn a_sign_change_bounds_the_run() {
        // r = ε − 10 ε²: changes sign at ε = 0.1; the run starts below it.
        let points: Vec<Option<Point>> = ladder()
            .iter()
            .map(|&e| {
                Some(Point {
                    step: e,
                    remainder: e - 10.0 * e * e,
                })
            })
            .collect();
        let fit = fit_rate(&points, 1e-17, 1);
        let ladder = ladder();
        assert!(fit.window.iter().all(|&k| ladder[k] < 0.1));
        assert!((fit.rate.unwrap() - 1.0).abs() < 0.01);
    }

    #[test]
    fn a_cancellation_above_does_not_bend_the_rate() {
        // r = ε² − 10 ε³, zero at ε = 0.1: slope 1 at ε = 0.05, 2 as ε → 0.
        let points: Vec<Option<Point>> = ladder()
            .iter()
            .map(|&e| {
                Some(Point {
                    step: e,
                    remainder: e * e - 10.0 * e * e * e + 1e-17 * e.signum(),
                })
            })
            .collect();
        let fit = fit_rate(&points, 1e-4, 1);
        // The floor leaves ε down to about 3e-2 above 10× it; no decade below
        // the cancellation remains, so there is no rate rather than a wrong one.
        assert_eq!(fit.rate, None, "{fit:?}");
        let fit = fit_rate(&points, 1e-9, 1);
        assert!((fit.rate.unwrap() - 2.0).abs() < 0.1, "{:?}", fit.rate);
        assert!(fit.window.iter().all(|&k| ladder()[k] <= 0.01 + 1e-12));
    }

    #[test]
    fn a_curve_still_bending_has_not_settled() {
        // ε¹ meeting ε⁴ at ε = 1e-2, and a floor that puts the window's foot
        // half a decade below: the slope climbs from about 1 to 3 within it.
        let points: Vec<Option<Point>> = ladder()
            .iter()
            .map(|&e| {
                Some(Point {
                    step: e,
                    remainder: 1e-6 * e + e.powi(4),
                })
            })
            .collect();
        let fit = fit_rate(&points, 3e-10, 1);
        assert_eq!(fit.rate, None, "{fit:?}");
        assert!(fit.problem.unwrap().contains("has not settled"));
    }

    #[test]
    fn noise_the_floor_missed_is_not_fitted() {
        // Truncation ε² over a floor of 1e-10, but the floor is given as 1e-14.
        let points = synthetic(1.0, 2.0, 1e-10);
        let floor = floor(&points, 1e-14);
        assert!(floor >= 1e-10);
        let fit = fit_rate(&points, floor, 1);
        assert!((fit.rate.unwrap() - 2.0).abs() < 0.2, "{:?}", fit.rate);
    }

    #[test]
    fn only_rounding_gives_no_rate_and_says_why() {
        let points = synthetic(0.0, 2.0, 1e-16);
        let fit = fit_rate(&points, 1e-16, 1);
        assert_eq!(fit.rate, None);
        assert!(fit.at_floor_everywhere);
        assert!(
            fit.problem
                .unwrap()
                .starts_with("rounding dominates everywhere")
        );
    }

    #[test]
    fn the_ladder_spans_sixteen_decades() {
        let l = ladder();
        assert_eq!(l.len(), 65);
        assert_eq!(l[0], 1.0);
        assert!((l[64] / 1e-16 - 1.0).abs() < 1e-12);
    }
}
