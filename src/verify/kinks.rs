//! Kinks: where the forward computation of L is not differentiable (relu
//! or abs at 0, sqrt at 0, a tie in `max` or `min`, a comparison of values
//! at equality), the derivatives a claim may validly give.
//!
//! Where every kink is a branch point the evaluator can steer, the valid
//! gradients come from the branch patterns that steps near the kink
//! realize ([`KinkGradients`]); elsewhere each element's valid range lies
//! between its one-sided derivatives ([`one_sided_partials`]).

use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::context::SizeContext;
use super::grad::unit_direction;
use crate::analysis::program::TensorId;
use crate::eval::{
    BranchPolicy, branches_along, directional_derivative_at, gradient_on_branches, partial_at,
};

/// The range a derivative of L may take at a kink (between `lo` and `hi`,
/// widened by `slack`, the uncertainty of how it was found).
#[derive(Clone, Copy, Debug)]
pub struct ValidRange {
    pub lo: f64,
    pub hi: f64,
    pub slack: f64,
    /// From the realized branch patterns: the whole valid range, even
    /// where it is a single value (kinks that cancel, as in
    /// max(x, 0) + log(1 + e^-|x|)). Else from one-sided derivatives,
    /// which mean something only where they differ.
    pub exact: bool,
    /// With `exact`: outside this range no valid derivative lies (`None`:
    /// not known). Between it and `lo..=hi` the claim cannot be decided.
    pub outer: Option<(f64, f64)>,
}

impl ValidRange {
    pub(super) fn between(a: f64, b: f64, slack: f64) -> Self {
        Self {
            lo: a.min(b),
            hi: a.max(b),
            slack,
            exact: false,
            outer: None,
        }
    }

    /// Whether the range tells the valid derivatives here: exact, or a
    /// real kink between the one-sided derivatives.
    pub(super) fn applies(&self, tolerance: f64) -> bool {
        self.exact || self.is_kink(tolerance)
    }

    /// Whether the range is wider than what the method can resolve: only
    /// then is the point a kink along this element.
    pub(super) fn is_kink(&self, tolerance: f64) -> bool {
        self.hi - self.lo > self.slack + tolerance
    }

    /// How far `v` lies outside the range.
    pub(super) fn distance(&self, v: f64) -> f64 {
        if v.is_nan() {
            f64::INFINITY
        } else {
            (self.lo - v).max(v - self.hi).max(0.0)
        }
    }
}

/// The gradients L may validly have where its computation meets kinks
/// (Clarke's generalized gradient: the hull of the gradients at nearby
/// points where L is differentiable).
///
/// A step from the values along a direction takes one branch at every
/// kink it moves; the evaluator follows it ([`branches_along`]), so every
/// branch pattern found so is one that points near the kink realize.
/// Stepping along each element, both ways, finds which kinks each element
/// moves: kinks moved by a common element are coupled (relu(x) - relu(-x),
/// max(x, 0) beside |x|, overlapping pooling windows), the rest act
/// independently (separate windows, relus of separate elements), and add.
///
/// Per group of coupled kinks two sets bound the valid gradients:
/// - **inner**: the hull of the patterns that steps along every element,
///   both ways, and along random directions realized: valid for certain;
/// - **outer**: the hull of every combination of the group's branches,
///   where there are few enough to enumerate: nothing valid lies outside.
///
/// A claim inside the inner set holds, outside the outer set is refuted,
/// and between the two is left undecided, never guessed.
pub struct KinkGradients {
    base: Vec<Option<ArrayD<f64>>>,
    groups: Vec<KinkGroup>,
}

/// One group of coupled kinks: how its branch patterns change the gradient
/// from the base (the branches a random step takes).
struct KinkGroup {
    inner: Vec<Vec<Option<ArrayD<f64>>>>,
    /// `None` where the group has too many branch points to enumerate.
    outer: Option<Vec<Vec<Option<ArrayD<f64>>>>>,
}

/// Where ⟨G, u⟩ lies over the valid gradients G.
#[derive(Clone, Copy, Debug)]
pub struct Support {
    /// Over gradients valid for certain.
    pub inner: (f64, f64),
    /// Outside this, no valid gradient (`None`: not known).
    pub outer: Option<(f64, f64)>,
}

/// Differentiable elements up to which kinks are resolved into groups
/// (two directional passes per element).
const KINK_ELEMENTS: usize = 512;
/// Random directions stepped along, besides every element both ways.
const KINK_DIRECTIONS: usize = 64;
/// The same where a group of coupled kinks has too many branch points for
/// every combination to be sought (overlapping pooling windows, all tied).
const KINK_DIRECTIONS_LARGE: usize = 2048;
/// Frank–Wolfe steps spent seeking a direction that separates a claim
/// from the valid gradients.
const SEPARATION_STEPS: usize = 500;
/// Branch points per group up to which every combination is enumerated
/// (2⁶ gradients).
const ENUMERATED_BRANCHES: usize = 6;

impl KinkGradients {
    /// Finds the valid gradients, where every kink the forward computation
    /// meets is a branch point; `None` otherwise.
    pub fn find(cx: &SizeContext<'_>) -> Option<Self> {
        let count = cx.forward_kinks();
        if count.met == 0 || count.met != count.branches {
            return None;
        }
        let branches = usize::try_from(count.branches).ok()?;
        let tensors = &cx.program.tensors;
        let elements: Vec<(usize, usize)> = cx
            .values
            .iter()
            .enumerate()
            .filter(|(k, _)| tensors.get(*k).is_some_and(|t| t.is_differentiable()))
            .flat_map(|(k, v)| (0..v.len()).map(move |p| (k, p)))
            .collect();
        if elements.len() > KINK_ELEMENTS {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(crate::eval::stream_seed(
            cx.options.seed,
            "kinks",
            cx.instance.sizes.values(),
        ));
        let random = |rng: &mut ChaCha8Rng| -> Vec<Option<ArrayD<f64>>> {
            cx.values
                .iter()
                .map(|v| ArrayD::from_shape_vec(v.raw_dim(), unit_direction(rng, v.len())).ok())
                .collect()
        };
        let tie_breaker = random(&mut rng);
        let along = |first: &[Option<ArrayD<f64>>]| {
            branches_along(cx.instance, cx.values, first, &tie_breaker)
                .ok()
                .filter(|r| r.len() == branches)
        };
        let base: Vec<bool> = along(&random(&mut rng))?.iter().map(|r| r.other).collect();
        let mut realized: Vec<Vec<bool>> = vec![];
        let mut coupled = UnionFind::new(branches);
        // leans[i][e]: how a step along element e moves branch point i.
        let mut leans = vec![vec![0.0; elements.len()]; branches];
        let unit = |e: usize, sign: f64| -> Vec<Option<ArrayD<f64>>> {
            let mut d: Vec<f64> = vec![0.0; elements.len()];
            d[e] = sign;
            as_direction(cx.values, &elements, &d)
        };
        for (e, _) in elements.iter().enumerate() {
            let mut moved: Option<usize> = None;
            for sign in [1.0, -1.0] {
                let records = along(&unit(e, sign))?;
                for (i, r) in records.iter().enumerate().filter(|(_, r)| r.lean != 0.0) {
                    if sign > 0.0 {
                        leans[i][e] = r.lean;
                    }
                    match moved {
                        Some(j) => coupled.join(i, j),
                        None => moved = Some(i),
                    }
                }
                realized.push(records.iter().map(|r| r.other).collect());
            }
        }
        let groups_found = coupled.groups();
        let classes: Vec<Classes> = groups_found
            .iter()
            .map(|members| Classes::of(members, &leans))
            .collect();
        // A group too large to seek every combination of is sampled more.
        let directions = if classes.iter().any(|c| c.rows.len() > ENUMERATED_BRANCHES) {
            KINK_DIRECTIONS_LARGE
        } else {
            KINK_DIRECTIONS
        };
        for _ in 0..directions {
            realized.push(along(&random(&mut rng))?.iter().map(|r| r.other).collect());
        }
        // Every combination of a small group's branches that some step
        // could take, sought directly: a direction that leans each of its
        // branch points the chosen way (a perceptron, which finds one
        // whenever the combination's cone is open), then stepped along.
        for class in classes
            .iter()
            .filter(|c| c.rows.len() <= ENUMERATED_BRANCHES)
        {
            for bits in 0..1u32 << class.rows.len() {
                if let Some(d) = leaning_direction(&class.leans(bits)) {
                    realized.push(
                        along(&as_direction(cx.values, &elements, &d))?
                            .iter()
                            .map(|r| r.other)
                            .collect(),
                    );
                }
            }
        }
        let gradient_of = |pattern: Vec<bool>| {
            gradient_on_branches(cx.instance, cx.values, &BranchPolicy::Flips(pattern.into())).ok()
        };
        let base_gradient = gradient_of(base.clone())?;
        let mut groups = vec![];
        for (members, class) in groups_found.into_iter().zip(&classes) {
            // The group's branches set to `choice`, the others as in the base.
            let change = |choice: &[bool]| {
                let mut full = base.clone();
                for (&i, &c) in members.iter().zip(choice) {
                    full[i] = c;
                }
                gradient_of(full).map(|g| difference(&g, &base_gradient))
            };
            let mut seen: Vec<Vec<bool>> = vec![members.iter().map(|&i| base[i]).collect()];
            let mut inner = vec![];
            for pattern in &realized {
                let choice: Vec<bool> = members.iter().map(|&i| pattern[i]).collect();
                if !seen.contains(&choice) {
                    inner.push(change(&choice)?);
                    seen.push(choice);
                }
            }
            // Every combination but those no step can take: leans that
            // cancel (max(x, 0) taking x while |x| takes -x).
            let outer = if class.rows.len() <= ENUMERATED_BRANCHES {
                let mut all = vec![];
                let at_base: Vec<bool> = members.iter().map(|&i| base[i]).collect();
                for bits in 0..1u32 << class.rows.len() {
                    let choice = class.choice(bits, &members, &base);
                    // The base's own branches change nothing (every range
                    // starts from 0): no gradient to compute.
                    if choice != at_base && !cannot_lean(&class.leans(bits)) {
                        all.push(change(&choice)?);
                    }
                }
                Some(all)
            } else {
                None
            };
            groups.push(KinkGroup { inner, outer });
        }
        Some(Self {
            base: base_gradient,
            groups,
        })
    }

    /// Where ⟨G, u⟩ lies over the valid gradients G, for `u` over the
    /// elements of `target` (row-major): a sum over the groups.
    pub fn support(&self, target: TensorId, u: &[f64]) -> Option<Support> {
        let inner_product = |g: &[Option<ArrayD<f64>>]| -> Option<f64> {
            let g = g.get(target.0)?.as_ref()?.as_slice_memory_order()?;
            Some(g.iter().zip(u).map(|(a, b)| a * b).sum())
        };
        // The range of ⟨change, u⟩ over some changes, the base's 0 included.
        let range = |changes: &[Vec<Option<ArrayD<f64>>>]| -> Option<(f64, f64)> {
            changes.iter().try_fold((0.0_f64, 0.0_f64), |(lo, hi), c| {
                let v = inner_product(c)?;
                Some((lo.min(v), hi.max(v)))
            })
        };
        let base = inner_product(&self.base)?;
        let mut inner = (base, base);
        let mut outer = Some((base, base));
        for group in &self.groups {
            let (lo, hi) = range(&group.inner)?;
            inner = (inner.0 + lo, inner.1 + hi);
            outer = match (outer, &group.outer) {
                (Some((a, b)), Some(all)) => {
                    let (lo, hi) = range(all)?;
                    Some((a + lo, b + hi))
                }
                _ => None,
            };
        }
        Some(Support { inner, outer })
    }

    /// The valid gradient (its part in `target`) that maximizes ⟨G, u⟩:
    /// over the inner set, or the outer one (`None` where that is unknown).
    fn extreme_point(&self, target: TensorId, u: &[f64], outer: bool) -> Option<Vec<f64>> {
        let part = |g: &[Option<ArrayD<f64>>]| -> Option<Vec<f64>> {
            Some(g.get(target.0)?.as_ref()?.iter().copied().collect())
        };
        let mut point = part(&self.base)?;
        for group in &self.groups {
            let changes = if outer {
                group.outer.as_ref()?
            } else {
                &group.inner
            };
            let mut best: (f64, Option<Vec<f64>>) = (0.0, None);
            for change in changes {
                let c = part(change)?;
                let v: f64 = c.iter().zip(u).map(|(a, b)| a * b).sum();
                if v > best.0 {
                    best = (v, Some(c));
                }
            }
            if let (_, Some(c)) = best {
                point.iter_mut().zip(&c).for_each(|(p, c)| *p += c);
            }
        }
        Some(point)
    }

    /// A direction along which `claimed` lies beyond every valid gradient
    /// by more than `allowance` allows (each element's rounding, summed
    /// along it): Frank and Wolfe's method, stepping from the base towards
    /// the claim through the extreme points the support function gives,
    /// each step's residual a candidate direction. `None` where none was
    /// found in [`SEPARATION_STEPS`] steps: the claim is then, as far as
    /// this can tell, one of the valid gradients.
    pub fn separating_direction(
        &self,
        target: TensorId,
        claimed: &[f64],
        allowance: &[f64],
        outer: bool,
    ) -> Option<Vec<f64>> {
        let mut x = self.extreme_point(target, &vec![0.0; claimed.len()], outer)?;
        for _ in 0..SEPARATION_STEPS {
            let r: Vec<f64> = claimed.iter().zip(&x).map(|(c, x)| c - x).collect();
            let slack: f64 = r
                .iter()
                .zip(allowance)
                .map(|(r, a)| 2.0 * r.abs() * a)
                .sum();
            let beyond: f64 = r.iter().map(|r| r * r).sum();
            if beyond.sqrt() <= slack.max(f64::MIN_POSITIVE) {
                return None;
            }
            let s = self.extreme_point(target, &r, outer)?;
            let claimed_along: f64 = r.iter().zip(claimed).map(|(a, b)| a * b).sum();
            let best_along: f64 = r.iter().zip(&s).map(|(a, b)| a * b).sum();
            if claimed_along > best_along + slack {
                return Some(r);
            }
            let d: Vec<f64> = s.iter().zip(&x).map(|(s, x)| s - x).collect();
            let dd: f64 = d.iter().map(|v| v * v).sum();
            if dd == 0.0 {
                return None;
            }
            let gamma = (r.iter().zip(&d).map(|(a, b)| a * b).sum::<f64>() / dd).clamp(0.0, 1.0);
            x.iter_mut().zip(&d).for_each(|(x, d)| *x += gamma * d);
        }
        None
    }

    /// The range of the partial in element `k` of `target`.
    pub fn element(&self, target: TensorId, k: usize, n: usize) -> Option<ValidRange> {
        let mut u = vec![0.0; n];
        *u.get_mut(k)? = 1.0;
        let support = self.support(target, &u)?;
        let (lo, hi) = support.inner;
        Some(ValidRange {
            exact: true,
            outer: support.outer,
            ..ValidRange::between(lo, hi, 0.0)
        })
    }
}

/// A group's branch points by what they follow: points that lean alike
/// along every element (one relu evaluated once for each output that reads
/// it) can only take their branches together, and points no element moves
/// keep the base's branch (both branches have the same slopes there).
struct Classes {
    /// Per member, its class, or `None` where no element moves it.
    of_member: Vec<Option<usize>>,
    /// Per class, how a step along each element leans it.
    rows: Vec<Vec<f64>>,
}

impl Classes {
    fn of(members: &[usize], leans: &[Vec<f64>]) -> Self {
        let mut rows: Vec<Vec<f64>> = vec![];
        let of_member = members
            .iter()
            .map(|&i| {
                let row = &leans[i];
                if row.iter().all(|&l| l == 0.0) {
                    return None;
                }
                Some(rows.iter().position(|r| r == row).unwrap_or_else(|| {
                    rows.push(row.clone());
                    rows.len() - 1
                }))
            })
            .collect();
        Self { of_member, rows }
    }

    /// The leans a step must have for the classes to take branches `bits`.
    fn leans(&self, bits: u32) -> Vec<Vec<f64>> {
        self.rows
            .iter()
            .enumerate()
            .map(|(b, row)| {
                let sign = if bits >> b & 1 == 1 { 1.0 } else { -1.0 };
                row.iter().map(|l| sign * l).collect()
            })
            .collect()
    }

    /// The members' branches for class branches `bits`.
    fn choice(&self, bits: u32, members: &[usize], base: &[bool]) -> Vec<bool> {
        members
            .iter()
            .zip(&self.of_member)
            .map(|(&i, class)| class.map_or(base[i], |c| bits >> c & 1 == 1))
            .collect()
    }
}

/// A direction over the differentiable `elements` as one array per tensor
/// (zeros elsewhere).
fn as_direction(
    values: &[ArrayD<f64>],
    elements: &[(usize, usize)],
    d: &[f64],
) -> Vec<Option<ArrayD<f64>>> {
    let mut out: Vec<Option<ArrayD<f64>>> = values
        .iter()
        .map(|v| Some(ArrayD::zeros(v.raw_dim())))
        .collect();
    for (&(k, p), &x) in elements.iter().zip(d) {
        if let Some(slot) = out
            .get_mut(k)
            .and_then(Option::as_mut)
            .and_then(|a| a.as_slice_memory_order_mut()?.get_mut(p))
        {
            *slot = x;
        }
    }
    out
}

/// Updates the perceptron may make before a combination is given up as
/// one no step takes.
const PERCEPTRON_UPDATES: usize = 4096;

/// A direction d with ⟨row, d⟩ > 0 for every row, if the perceptron finds
/// one (it does whenever one exists with a margin it can reach within
/// [`PERCEPTRON_UPDATES`]; a combination it misses stays out of the inner
/// set, which only leaves claims that need it undecided).
fn leaning_direction(rows: &[Vec<f64>]) -> Option<Vec<f64>> {
    let n = rows.first()?.len();
    let unit = normalized(rows);
    let mut d = vec![0.0; n];
    for r in &unit {
        d.iter_mut().zip(r).for_each(|(d, r)| *d += r);
    }
    for _ in 0..PERCEPTRON_UPDATES {
        let dot = |r: &Vec<f64>| r.iter().zip(&d).map(|(a, b)| a * b).sum::<f64>();
        let norm = d.iter().map(|x| x * x).sum::<f64>().sqrt();
        // A margin well above rounding, so the step really leans each way.
        match unit.iter().find(|r| dot(r) <= 1e-9 * norm) {
            Some(r) => d.iter_mut().zip(r).for_each(|(d, r)| *d += r),
            None => return Some(d),
        }
    }
    None
}

/// Each row scaled to unit length.
fn normalized(rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| {
            let norm = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            r.iter().map(|x| x / norm).collect()
        })
        .collect()
}

/// Whether no direction leans positively on every row: proven by Gordan's
/// alternative, a convex combination of the (normalized) rows that is 0,
/// found by nonnegative least squares on ‖Σλ·row‖² + (Σλ − 1)².
fn cannot_lean(rows: &[Vec<f64>]) -> bool {
    if rows.is_empty() {
        return false;
    }
    let unit = normalized(rows);
    // Columns of the least-squares matrix: each row, then a 1 for Σλ.
    let columns: Vec<Vec<f64>> = unit
        .iter()
        .map(|r| r.iter().copied().chain(std::iter::once(1.0)).collect())
        .collect();
    let mut target = vec![0.0; columns[0].len()];
    if let Some(last) = target.last_mut() {
        *last = 1.0;
    }
    let lambda = nonnegative_least_squares(&columns, &target);
    let residual: f64 = (0..target.len())
        .map(|k| {
            let fitted: f64 = columns.iter().zip(&lambda).map(|(c, l)| c[k] * l).sum();
            (fitted - target[k]).powi(2)
        })
        .sum();
    residual <= 1e-20
}

/// Lawson and Hanson's active-set method: the λ ≥ 0 minimizing
/// ‖Σ λ_j·columns_j − target‖, for a handful of columns.
fn nonnegative_least_squares(columns: &[Vec<f64>], target: &[f64]) -> Vec<f64> {
    let n = columns.len();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let residual = |x: &[f64]| -> Vec<f64> {
        (0..target.len())
            .map(|k| target[k] - columns.iter().zip(x).map(|(c, l)| c[k] * l).sum::<f64>())
            .collect()
    };
    let mut x = vec![0.0; n];
    let mut passive = vec![false; n];
    for _ in 0..(3 * n + 3) {
        let r = residual(&x);
        let w: Vec<f64> = columns.iter().map(|c| dot(c, &r)).collect();
        let Some(j) = (0..n)
            .filter(|&j| !passive[j] && w[j] > 1e-15)
            .max_by(|&a, &b| w[a].total_cmp(&w[b]))
        else {
            break;
        };
        passive[j] = true;
        loop {
            let set: Vec<usize> = (0..n).filter(|&j| passive[j]).collect();
            let Some(z) = least_squares(columns, &set, target) else {
                return x;
            };
            if z.iter().all(|&v| v > 0.0) {
                for (&j, &v) in set.iter().zip(&z) {
                    x[j] = v;
                }
                break;
            }
            // Step towards z until a coordinate hits 0; it leaves the set.
            let alpha = set
                .iter()
                .zip(&z)
                .filter(|(_, v)| **v <= 0.0)
                .map(|(&j, &v)| x[j] / (x[j] - v))
                .fold(f64::INFINITY, f64::min);
            for (&j, &v) in set.iter().zip(&z) {
                x[j] += alpha * (v - x[j]);
                if x[j] <= 1e-15 {
                    x[j] = 0.0;
                    passive[j] = false;
                }
            }
        }
    }
    x
}

/// Least squares over the columns in `set`, by the normal equations and
/// Gaussian elimination with partial pivoting; `None` where singular.
fn least_squares(columns: &[Vec<f64>], set: &[usize], target: &[f64]) -> Option<Vec<f64>> {
    let m = set.len();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut a: Vec<Vec<f64>> = set
        .iter()
        .map(|&i| {
            let mut row: Vec<f64> = set.iter().map(|&j| dot(&columns[i], &columns[j])).collect();
            row.push(dot(&columns[i], target));
            row
        })
        .collect();
    for c in 0..m {
        let pivot = (c..m).max_by(|&p, &q| a[p][c].abs().total_cmp(&a[q][c].abs()))?;
        if a[pivot][c].abs() < 1e-14 {
            return None;
        }
        a.swap(c, pivot);
        let pivot_row = a[c].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot_row[c];
                for (x, p) in row.iter_mut().zip(&pivot_row).skip(c) {
                    *x -= f * p;
                }
            }
        }
    }
    Some((0..m).map(|r| a[r][m] / a[r][r]).collect())
}

/// `a − b`, tensor by tensor.
fn difference(a: &[Option<ArrayD<f64>>], b: &[Option<ArrayD<f64>>]) -> Vec<Option<ArrayD<f64>>> {
    a.iter()
        .zip(b)
        .map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        })
        .collect()
}

/// Groups of branch points, joined as they are found coupled.
struct UnionFind(Vec<usize>);

impl UnionFind {
    fn new(n: usize) -> Self {
        Self((0..n).collect())
    }

    fn root(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.root(a), self.root(b));
        self.0[a] = b;
    }

    /// The groups, each its members in order, in order of their first.
    fn groups(&mut self) -> Vec<Vec<usize>> {
        let mut out: Vec<(usize, Vec<usize>)> = vec![];
        for i in 0..self.0.len() {
            let r = self.root(i);
            match out.iter_mut().find(|(root, _)| *root == r) {
                Some((_, members)) => members.push(i),
                None => out.push((r, vec![i])),
            }
        }
        out.into_iter().map(|(_, m)| m).collect()
    }
}

/// Step to either side of a kink, relative to the element's magnitude:
/// small enough to meet no other kink in practice, large enough that the
/// two sides' derivatives are computed at distinct values.
const KINK_STEP: f64 = 1.0 / (1u64 << 26) as f64;

/// The one-sided partials of L in element `k` of `target`, or `None` where
/// L or its derivative is undefined beside the value.
pub fn one_sided_partials(cx: &SizeContext<'_>, target: TensorId, k: usize) -> Option<ValidRange> {
    let w = cx
        .values
        .get(target.0)?
        .as_slice_memory_order()?
        .get(k)
        .copied()?;
    let h = KINK_STEP * w.abs().max(1.0);
    let at = |t: f64| {
        partial_at(cx.instance, cx.values, target.0, k, w + t)
            .ok()
            .filter(|v| v.is_finite())
    };
    from_both_sides(at, h)
}

/// The range between the derivatives `at(t)` on either side of t = 0, each
/// extrapolated to 0 from steps h and 2h (exact where L is piecewise
/// linear), with the extrapolation's uncertainty as slack.
fn from_both_sides(at: impl Fn(f64) -> Option<f64>, h: f64) -> Option<ValidRange> {
    let (l1, l2, r1, r2) = (at(-h)?, at(-2.0 * h)?, at(h)?, at(2.0 * h)?);
    Some(ValidRange::between(
        2.0 * l1 - l2,
        2.0 * r1 - r2,
        (l1 - l2).abs() + (r1 - r2).abs(),
    ))
}

/// The one-sided derivatives of L along `direction` (a unit vector in the
/// tensor whose values are `w`), where the forward computation meets a kink.
pub(super) fn one_sided_directional(
    cx: &SizeContext<'_>,
    direction: &[Option<ArrayD<f64>>],
    step: f64,
) -> Option<ValidRange> {
    if cx.forward_kinks().met == 0 {
        return None;
    }
    // Well inside the finite-difference step, as the element probes are.
    let h = step * KINK_STEP / f64::EPSILON.cbrt();
    let at = |t: f64| {
        directional_derivative_at(cx.instance, cx.values, direction, t)
            .ok()
            .filter(|v| v.is_finite())
    };
    from_both_sides(at, h)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn opposite_or_cyclic_leans_cannot_all_be_positive() {
        // max(x, 0) taking x while |x| takes -x: one row and its negative.
        assert!(cannot_lean(&[vec![1.0, 0.0], vec![-2.0, 0.0]]));
        // x1 > x2 > x3 > x1: the rows sum to 0.
        let cyclic = [
            vec![1.0, -1.0, 0.0],
            vec![0.0, 1.0, -1.0],
            vec![-1.0, 0.0, 1.0],
        ];
        assert!(cannot_lean(&cyclic));
        assert!(leaning_direction(&cyclic).is_none());
    }

    #[test]
    fn open_cones_are_found_and_not_declared_empty() {
        // x1 > x2 > x3 > x4: the decreasing order, one of 24.
        let chain = [
            vec![1.0, -1.0, 0.0, 0.0],
            vec![0.0, 1.0, -1.0, 0.0],
            vec![0.0, 0.0, 1.0, -1.0],
        ];
        let d = leaning_direction(&chain).expect("a direction");
        assert!(
            chain
                .iter()
                .all(|r| r.iter().zip(&d).map(|(a, b)| a * b).sum::<f64>() > 0.0)
        );
        assert!(!cannot_lean(&chain));
        // Independent kinks lean any way.
        assert!(!cannot_lean(&[vec![1.0, 0.0], vec![0.0, -1.0]]));
    }

    #[test]
    fn groups_join_what_is_coupled() {
        let mut u = UnionFind::new(5);
        u.join(0, 3);
        u.join(3, 4);
        assert_eq!(u.groups(), vec![vec![0, 3, 4], vec![1], vec![2]]);
    }
}
