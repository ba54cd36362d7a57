//! The sizes at which claims are checked: the smallest at which every range
//! is non-empty, a few just above, each size bumped alone, and the defaults.
//! Boundary mistakes show only at some sizes, so one size is never enough.

use std::fmt;

use super::error::AnalysisError;
use super::program::{Affine, DimId, Program};
use super::resolve::suggest;
use crate::source::Span;

/// One value per dim, indexed by [`DimId`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sizes {
    values: Vec<i64>,
    names: Vec<String>,
}

impl Sizes {
    pub fn values(&self) -> &[i64] {
        &self.values
    }

    pub fn get(&self, d: DimId) -> i64 {
        self.values.get(d.0).copied().unwrap_or(0)
    }

    pub fn named(&self) -> impl Iterator<Item = (&str, i64)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().copied())
    }
}

impl fmt::Display for Sizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.values.is_empty() {
            return write!(f, "no sizes");
        }
        let parts: Vec<String> = self.named().map(|(n, v)| format!("{n} = {v}")).collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// A range that must hold at least one element for the spec to mean anything.
struct RequiredRange {
    lowers: Vec<Affine>,
    uppers: Vec<Affine>,
    what: String,
    span: Span,
}

impl RequiredRange {
    fn is_empty_at(&self, sizes: &[i64]) -> bool {
        let lo = self.lowers.iter().filter_map(|a| a.eval(sizes, &[])).max();
        let hi = self.uppers.iter().filter_map(|a| a.eval(sizes, &[])).min();
        match (lo, hi) {
            (Some(lo), Some(hi)) => lo > hi,
            _ => true,
        }
    }
}

fn required_ranges(program: &Program) -> Vec<RequiredRange> {
    let mut out = vec![];
    let mut push_axes = |name: &str, axes: &[super::program::AxisRange]| {
        for (k, axis) in axes.iter().enumerate() {
            out.push(RequiredRange {
                lowers: vec![axis.lo.clone()],
                uppers: vec![axis.hi.clone()],
                what: format!("axis {} of `{name}`", k + 1),
                span: axis.span,
            });
        }
    };
    for t in &program.tensors {
        push_axes(&t.name, &t.axes);
    }
    for d in &program.defs {
        push_axes(&d.name, &d.axes);
    }
    // Reductions are not required to be non-empty: an empty sum is 0, and
    // a claim's sums must not move the sizes at which the whole file is
    // checked. (`max`/`min` over an empty range are reported when evaluated.)
    out
}

/// The sizes to check at. `overrides` (`--dim N=1000`) replace the defaults,
/// the largest sizes checked; the small sizes where boundary mistakes show
/// are checked as well, so a verdict never depends on the override.
pub fn size_sweep(
    program: &Program,
    overrides: &[(String, i64)],
) -> Result<Vec<Sizes>, AnalysisError> {
    let names: Vec<String> = program.dims.iter().map(|d| d.name.clone()).collect();
    let mut overridden: Vec<Option<i64>> = vec![None; names.len()];
    for (name, value) in overrides {
        match names.iter().position(|n| n == name) {
            Some(k) => overridden[k] = Some(*value),
            None => {
                let help = match suggest(name, names.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `--dim {s}={value}`?"),
                    None if names.is_empty() => "this spec declares no sizes".to_string(),
                    None => format!("the spec's sizes are: {}", names.join(", ")),
                };
                return Err(AnalysisError::UnknownDimOverride {
                    name: name.clone(),
                    help,
                    span: program
                        .dims
                        .first()
                        .map_or(Span::default(), |d| d.span)
                        .into(),
                });
            }
        }
    }
    let defaults: Vec<i64> = program
        .dims
        .iter()
        .zip(&overridden)
        .map(|(d, o)| o.unwrap_or(d.default))
        .collect();
    let ranges = required_ranges(program);
    let make = |values: Vec<i64>| Sizes {
        values,
        names: names.clone(),
    };
    if let Some(empty) = ranges.iter().find(|r| r.is_empty_at(&defaults)) {
        let sizes = make(defaults.clone());
        return Err(AnalysisError::EmptyRange {
            detail: format!("{} is empty at the default sizes", empty.what),
            help: "raise the default size in the `dim` declaration (or the `--dim` value)"
                .to_string(),
            span: empty.span.into(),
            sizes: sizes.to_string(),
        });
    }
    let smallest = smallest_sizes(&ranges, &defaults);
    let mut sweep = vec![smallest.clone()];
    let free: Vec<usize> = (0..names.len()).collect();
    for step in 1..=3 {
        let mut bumped = smallest.clone();
        for &k in &free {
            bumped[k] += step;
        }
        sweep.push(bumped);
    }
    if free.len() > 1 {
        for &k in &free {
            let mut bumped = smallest.clone();
            bumped[k] += 1;
            sweep.push(bumped);
        }
    }
    sweep.push(defaults);
    sweep.retain(|s| ranges.iter().all(|r| !r.is_empty_at(s)));
    sweep.sort_by_key(|s| (s.iter().sum::<i64>(), s.clone()));
    sweep.dedup();
    Ok(sweep.into_iter().map(make).collect())
}

/// Grows the free dims from 1 until every range is non-empty, never past the
/// defaults (where every range is known to be non-empty).
fn smallest_sizes(ranges: &[RequiredRange], defaults: &[i64]) -> Vec<i64> {
    let mut sizes: Vec<i64> = vec![1; defaults.len()];
    let limit: i64 = defaults.iter().sum::<i64>() + 1;
    for _ in 0..limit {
        let Some(empty) = ranges.iter().find(|r| r.is_empty_at(&sizes)) else {
            return sizes;
        };
        let mut grew = false;
        let growing = empty
            .uppers
            .iter()
            .flat_map(|a| a.dims.iter().filter(|(_, c)| *c > 0))
            .chain(
                empty
                    .lowers
                    .iter()
                    .flat_map(|a| a.dims.iter().filter(|(_, c)| *c < 0)),
            );
        // Each dim grows by one per step, however many bounds name it.
        let mut dims: Vec<usize> = growing.map(|&(d, _)| d.0).collect();
        dims.sort_unstable();
        dims.dedup();
        for k in dims {
            if sizes[k] < defaults[k] {
                sizes[k] += 1;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    if ranges.iter().any(|r| r.is_empty_at(&sizes)) {
        defaults.to_vec()
    } else {
        sizes
    }
}
