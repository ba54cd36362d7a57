//! What verification found, per file and per claim: the data every report
//! renders. Nothing here formats text for a person; `report` does that.

use crate::analysis::Sizes;
use crate::source::{Source, Span};

/// How one spec file came out.
#[derive(Debug)]
pub struct FileOutcome {
    pub path: String,
    pub source: Option<Source>,
    pub exercise: Option<String>,
    /// Problems that stopped the file (or part of it) from being checked.
    pub diagnostics: Vec<miette::Report>,
    pub sizes: Vec<Sizes>,
    pub claims: Vec<ClaimOutcome>,
    /// Derived gradients at the largest size of the sweep, for `--show-grad`.
    pub derived: Vec<DerivedGradient>,
}

impl FileOutcome {
    pub fn status(&self) -> FileStatus {
        if !self.diagnostics.is_empty() {
            FileStatus::Error
        } else if self.claims.iter().all(|c| c.status().as_expected()) {
            FileStatus::Pass
        } else {
            FileStatus::Fail
        }
    }

    /// A file that parses and passes analysis, with no claim checked.
    pub fn analyzed(source: Source, exercise: Option<String>) -> Self {
        Self {
            path: source.name().to_string(),
            exercise,
            source: Some(source),
            diagnostics: vec![],
            sizes: vec![],
            claims: vec![],
            derived: vec![],
        }
    }

    /// A file that could not be read or parsed: no claims, one diagnostic.
    pub fn unreadable(path: String, source: Option<Source>, diagnostic: miette::Report) -> Self {
        Self {
            path,
            exercise: None,
            source,
            diagnostics: vec![diagnostic],
            sizes: vec![],
            claims: vec![],
            derived: vec![],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileStatus {
    Pass,
    Fail,
    Error,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Pass => "pass",
            FileStatus::Fail => "fail",
            FileStatus::Error => "error",
        }
    }
}

/// What the engine concluded about a claim, before its expectation is applied.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Holds,
    Refuted,
    /// The engine could not decide: its own cross-checks disagree, or the
    /// forward computation failed. The reason says which.
    Undecided(String),
}

/// The verdict read against the claim's `expect fail` mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimStatus {
    Pass,
    Fail,
    ExpectedFail,
    UnexpectedPass,
    Error,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Pass => "pass",
            ClaimStatus::Fail => "fail",
            ClaimStatus::ExpectedFail => "expected-fail",
            ClaimStatus::UnexpectedPass => "unexpected-pass",
            ClaimStatus::Error => "error",
        }
    }

    /// Came out as the spec says it should.
    pub fn as_expected(self) -> bool {
        matches!(self, ClaimStatus::Pass | ClaimStatus::ExpectedFail)
    }
}

#[derive(Debug)]
pub struct ClaimOutcome {
    pub kind: &'static str,
    /// `x` for `grad x[j]`.
    pub target: String,
    /// `grad x[j]`, as written.
    pub head: String,
    pub span: Span,
    pub line: usize,
    pub column: usize,
    /// The reason of `expect fail "…"`, if the claim is marked so.
    pub expect_fail: Option<String>,
    pub verdict: Verdict,
    pub sizes: Vec<Sizes>,
    /// Largest |autodiff − claimed| over every element and size.
    pub max_abs_error: f64,
    /// Largest |autodiff − claimed| / max(|autodiff|, |claimed|).
    pub max_rel_error: f64,
    /// The largest |autodiff − claimed| over its tolerance at any element
    /// and size, each judged as its verdict was (≤ 1 everywhere for a
    /// claim that holds): how near a miss was. `None` for the kinds of claim
    /// judged otherwise (Taylor rates, optima).
    pub worst_ratio: Option<f64>,
    /// Elements where f64 rounding made the claim and autodiff differ
    /// beyond the f64 bound, and double-double arithmetic showed it was
    /// rounding.
    pub rounding: Option<RoundingResolved>,
    /// Elements where L is not differentiable and the claim was judged
    /// against the set of valid derivatives.
    pub kinks: Vec<KinkElement>,
    /// Where the claim is no combination of the valid gradients at a kink.
    pub hull_violations: Vec<HullViolation>,
    /// Elements beyond the f64 bound left unconfirmed in double-double,
    /// once others at the same size were confirmed as mistakes (they are
    /// in `mismatch_groups`, not in `mismatches`).
    pub unconfirmed: usize,
    /// Elements where the claimed value differs from the derived one.
    pub mismatches: Vec<Mismatch>,
    /// How the gradient was derived at each size (gradient claims only).
    pub routes: Vec<RouteAt>,
    /// Mismatching elements grouped into index ranges, per size.
    pub mismatch_groups: Vec<ElementGroup>,
    /// Elements where the claimed formula cannot be evaluated (an access out
    /// of range, cases that disagree, ...), grouped by cause.
    pub problems: Vec<ClaimProblem>,
    /// The engine's guards: finite differences and the directional check.
    pub cross_checks: Vec<CrossCheck>,
    /// Evidence of a kind of claim, one line each, for a person (measured
    /// rates, estimates and intervals, the step where trajectories part).
    pub notes: Vec<String>,
    /// The same evidence for programs: merged into the claim's JSON object.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Series to plot with `--plot` (remainder against ε, deviation against step).
    pub plots: Vec<Plot>,
}

/// One figure: named series of (x, y) points on log or linear axes.
#[derive(Clone, Debug, Default)]
pub struct Plot {
    pub title: String,
    /// File name without extension, unique within the spec.
    pub name: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
}

#[derive(Clone, Debug, Default)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub kind: SeriesKind,
}

/// What a series is, which decides how it is drawn and whether it sets the
/// axes' range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeriesKind {
    /// A measurement: coloured, with markers.
    #[default]
    Measured,
    /// A limit the measurement is judged against (a rounding floor, a
    /// tolerance): dashed black, always in view.
    Bound,
    /// A guide for the eye (a reference slope): dashed grey, clipped to the
    /// range the measurements and bounds span.
    Guide,
}

impl ClaimOutcome {
    pub fn status(&self) -> ClaimStatus {
        match (&self.verdict, self.expect_fail.is_some()) {
            (Verdict::Holds, false) => ClaimStatus::Pass,
            (Verdict::Holds, true) => ClaimStatus::UnexpectedPass,
            (Verdict::Refuted, false) => ClaimStatus::Fail,
            (Verdict::Refuted, true) => ClaimStatus::ExpectedFail,
            (Verdict::Undecided(_), _) => ClaimStatus::Error,
        }
    }
}

/// One element where the claim and the derived gradient differ.
#[derive(Clone, Debug)]
pub struct Mismatch {
    pub sizes: Sizes,
    /// 1-based, as the spec writes indices.
    pub index: Vec<i64>,
    /// The derived (autodiff) value.
    pub expected: f64,
    /// The claimed (closed-form) value.
    pub actual: f64,
    /// |expected − actual| as computed in f64.
    pub difference: f64,
    /// What the difference was judged against, and why it is a mistake.
    pub judged: MismatchBasis,
}

/// Why an element's difference is a mistake, not rounding or a kink.
#[derive(Clone, Debug)]
pub enum MismatchBasis {
    /// Beyond the f64 rounding bound `ulps · ε · terms · scale`, and the
    /// difference stayed when both sides were recomputed in double-double
    /// (`precise_difference`), where rounding would have shrunk ~2⁵⁰-fold.
    Persists {
        tolerance: f64,
        ulps: f64,
        terms: f64,
        scale: f64,
        precise_difference: f64,
    },
    /// L has a kink at this element: the claim lies outside the range of
    /// its valid derivatives there (widened by `slack`).
    OutsideKink { lo: f64, hi: f64, slack: f64 },
}

/// Elements whose f64 difference was rounding, found by recomputing them in
/// double-double.
#[derive(Clone, Debug, Default)]
pub struct RoundingResolved {
    pub elements: usize,
    /// The largest such f64 difference, and the f64 bound it exceeded there.
    pub largest_difference: f64,
    pub bound: f64,
    /// The same element's difference in double-double.
    pub precise_difference: f64,
}

/// An element where L has a kink and the claim is one of its valid
/// derivatives: within `lo..=hi`, the range those take there.
#[derive(Clone, Debug)]
pub struct KinkElement {
    pub sizes: Sizes,
    pub index: Vec<i64>,
    pub claimed: f64,
    /// Autodiff's pick at the kink.
    pub autodiff: f64,
    pub lo: f64,
    pub hi: f64,
}

/// At a kink, a claimed gradient that no combination of the valid
/// gradients gives: its inner product with `direction` lies outside the
/// range theirs take.
#[derive(Clone, Debug)]
pub struct HullViolation {
    pub sizes: Sizes,
    pub direction: HullDirection,
    pub claimed: f64,
    pub lo: f64,
    pub hi: f64,
    pub tolerance: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HullDirection {
    /// Every element weighted 1: the claim's sum.
    AllOnes,
    /// A random unit direction, the k-th drawn.
    Random(usize),
    /// A direction found to separate the claim from the valid gradients.
    Separating,
}

/// Elements of one tensor written as index ranges: `dx[7..=8]` at `N = 8`.
#[derive(Clone, Debug)]
pub struct ElementGroup {
    pub sizes: Sizes,
    /// One entry per block: per axis an inclusive `(lo, hi)`.
    pub blocks: Vec<Vec<(i64, i64)>>,
    pub count: usize,
}

impl ElementGroup {
    /// `points` at `sizes`, in blocks.
    pub fn new(sizes: &Sizes, points: &[Vec<i64>]) -> Self {
        Self {
            sizes: sizes.clone(),
            count: points.len(),
            blocks: super::group_points(points),
        }
    }
}

/// The claimed formula failed to evaluate at some elements, for one cause.
#[derive(Debug)]
pub struct ClaimProblem {
    pub elements: ElementGroup,
    pub diagnostic: miette::Report,
}

#[derive(Clone, Debug)]
pub struct CrossCheck {
    /// `finite differences` or `directional`.
    pub name: &'static str,
    pub passed: bool,
    /// Elements or directions compared, at every size.
    pub compared: usize,
    /// Largest disagreement relative to its tolerance (≤ 1 passes).
    pub worst_ratio: f64,
    pub detail: String,
}

/// How the gradient at one size was derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Reverse mode, checked by forward mode at every element.
    ReverseCheckedEverywhere,
    /// Reverse mode, checked by forward mode along random directions.
    ReverseCheckedAlong(usize),
    /// Forward mode alone, without reverse mode, for the reason given.
    ForwardAlone(WithoutReverse),
}

/// Why the gradient at a size was derived by forward mode alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithoutReverse {
    /// L has a kink at the drawn values (or a partial there is not
    /// finite), where the valid derivatives are chosen branch by branch.
    Kink,
    /// The recording of L would not fit in the memory available
    /// ([`crate::eval::memory`]).
    TooLarge(crate::eval::TooLargeToRecord),
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::ReverseCheckedEverywhere => "reverse mode, checked at every element",
            Route::ReverseCheckedAlong(_) => "reverse mode, checked along random directions",
            Route::ForwardAlone(_) => "forward mode",
        }
    }
}

/// How the gradient a claim was judged against was derived at one size.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteAt {
    pub sizes: Sizes,
    pub route: Route,
    /// Elements or directions at which forward mode checked reverse mode.
    pub compared: usize,
}

/// The autodiff gradient of L in one tensor, for `--show-grad`.
#[derive(Clone, Debug)]
pub struct DerivedGradient {
    pub tensor: String,
    pub sizes: Sizes,
    /// 1-based index ranges per axis.
    pub axes: Vec<(i64, i64)>,
    /// Row-major values.
    pub values: Vec<f64>,
}
