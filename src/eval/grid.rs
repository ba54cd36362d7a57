//! Index grids: the concrete inclusive ranges of a tensor's axes at one size,
//! and the mapping from 1-based points to positions in ndarray storage.

use crate::analysis::Sizes;
use crate::analysis::program::AxisRange;

/// A walk over a grid's points in row-major order, counted up like an
/// odometer in one buffer: no division and no allocation per point.
pub struct Points<'g> {
    axes: &'g [(i64, i64)],
    current: Vec<i64>,
    /// Points not yet handed out.
    left: usize,
    started: bool,
}

impl Points<'_> {
    /// The next point, or `None` past the last.
    pub fn next_point(&mut self) -> Option<&[i64]> {
        if self.left == 0 {
            return None;
        }
        if self.started {
            for (x, &(lo, hi)) in self.current.iter_mut().zip(self.axes).rev() {
                if *x < hi {
                    *x += 1;
                    break;
                }
                *x = lo;
            }
        }
        self.started = true;
        self.left -= 1;
        Some(&self.current)
    }
}

/// Concrete `lo..=hi` per axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grid {
    axes: Vec<(i64, i64)>,
}

impl Grid {
    pub fn new(axes: Vec<(i64, i64)>) -> Self {
        Self { axes }
    }

    /// The ranges of `axes` at concrete sizes (an end that overflows makes
    /// its axis empty).
    pub fn of_axes(axes: &[AxisRange], sizes: &Sizes) -> Self {
        Self::new(
            axes.iter()
                .map(|a| {
                    (
                        a.lo.eval(sizes.values(), &[]).unwrap_or(1),
                        a.hi.eval(sizes.values(), &[]).unwrap_or(0),
                    )
                })
                .collect(),
        )
    }

    pub fn axes(&self) -> &[(i64, i64)] {
        &self.axes
    }

    pub fn rank(&self) -> usize {
        self.axes.len()
    }

    /// Elements per axis (0 for an empty axis, and for one too long to
    /// count, which [`Grid::len`] reports).
    pub fn extents(&self) -> Vec<usize> {
        self.axes
            .iter()
            .map(|&(lo, hi)| usize::try_from(extent(lo, hi).unwrap_or(0)).unwrap_or(0))
            .collect()
    }

    /// Total number of elements, or `None` if it does not fit a u64.
    pub fn len(&self) -> Option<u64> {
        self.axes
            .iter()
            .try_fold(1u64, |acc, &(lo, hi)| acc.checked_mul(extent(lo, hi)?))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Row-major position of a point, or `None` outside the grid.
    pub fn offset(&self, point: &[i64]) -> Option<usize> {
        let mut offset = 0usize;
        for (&axis, &p) in self.axes.iter().zip(point) {
            offset = along_axis(offset, p, axis)?;
        }
        Some(offset)
    }

    /// [`Grid::offset`] of `len` points at once, given by a column of
    /// values per axis (as many as the points have coordinates): the same
    /// offsets, and `None` where a point lies outside.
    pub fn offsets(&self, columns: &[Vec<i64>], len: usize) -> Vec<Option<usize>> {
        let mut offsets = vec![Some(0usize); len];
        for (column, &axis) in columns.iter().zip(&self.axes) {
            for (offset, &p) in offsets.iter_mut().zip(column) {
                *offset = offset.and_then(|o| along_axis(o, p, axis));
            }
        }
        offsets
    }

    /// The point at a row-major position.
    pub fn point(&self, mut offset: usize) -> Vec<i64> {
        let mut point = vec![0; self.axes.len()];
        for (p, &(lo, hi)) in point.iter_mut().zip(&self.axes).rev() {
            let e = usize::try_from(extent(lo, hi).unwrap_or(0))
                .unwrap_or(0)
                .max(1);
            *p = lo + (offset % e) as i64;
            offset /= e;
        }
        point
    }

    /// The points from row-major position `start` on, one at a time in a
    /// buffer of its own ([`Points::next_point`]): what a loop over many
    /// elements reads without a vector per point.
    pub fn points_from(&self, start: usize) -> Points<'_> {
        let n = usize::try_from(self.len().unwrap_or(0)).unwrap_or(0);
        Points {
            axes: &self.axes,
            current: self.point(start),
            left: n.saturating_sub(start),
            started: false,
        }
    }

    /// Every point in row-major order (the points of [`Grid::point`] at
    /// 0, 1, …), counted up like an odometer: no division per point.
    pub fn points(&self) -> impl Iterator<Item = Vec<i64>> + '_ {
        let mut walk = self.points_from(0);
        std::iter::from_fn(move || walk.next_point().map(<[i64]>::to_vec))
    }

    /// `1..=6` or `1..=3, 1..=5`, as the spec writes ranges.
    pub fn describe(&self) -> String {
        self.axes
            .iter()
            .map(|(lo, hi)| format!("{lo}..={hi}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Elements in `lo..=hi`: 0 when it is empty, `None` when there are more
/// than `i64::MAX` (ends far apart at huge sizes).
/// A row-major offset `offset` over the axes before one, carried over
/// that axis `(lo, hi)` to coordinate `p`; `None` where `p` lies outside.
fn along_axis(offset: usize, p: i64, (lo, hi): (i64, i64)) -> Option<usize> {
    if p < lo || p > hi {
        return None;
    }
    let extent = usize::try_from(extent(lo, hi)?).ok()?;
    Some(offset * extent + usize::try_from(p - lo).ok()?)
}

fn extent(lo: i64, hi: i64) -> Option<u64> {
    if hi < lo {
        return Some(0);
    }
    u64::try_from(hi.checked_sub(lo)?.checked_add(1)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_count_up_as_positions_do() {
        for axes in [
            vec![],
            vec![(1, 4)],
            vec![(0, 2), (-1, 1), (3, 4)],
            vec![(1, 3), (2, 1)],
        ] {
            let grid = Grid::new(axes);
            let points: Vec<Vec<i64>> = grid.points().collect();
            let by_position: Vec<Vec<i64>> = (0..points.len()).map(|k| grid.point(k)).collect();
            assert_eq!(points, by_position);
            assert_eq!(Some(points.len() as u64), grid.len());
            for (k, p) in points.iter().enumerate() {
                assert_eq!(grid.offset(p), Some(k));
            }
            // A walk from any position on is the rest of the points.
            for start in 0..=points.len() + 1 {
                let mut walk = grid.points_from(start);
                let mut rest = vec![];
                while let Some(p) = walk.next_point() {
                    rest.push(p.to_vec());
                }
                assert_eq!(rest, points.get(start..).unwrap_or_default());
            }
        }
    }

    /// Offsets of columns of points are `offset` point by point: inside,
    /// outside on either side of either axis, and at the ends of i64 on
    /// an axis as long as i64.
    #[test]
    fn offsets_of_columns_are_offset_point_by_point() {
        let grids = [
            Grid::new(vec![(1, 3), (0, 4)]),
            Grid::new(vec![(i64::MIN, i64::MAX), (2, 2)]),
            Grid::new(vec![(3, 1), (0, 4)]),
        ];
        let columns = vec![
            vec![1, 3, 2, 0, 4, i64::MIN, i64::MAX, 2, 1],
            vec![0, 4, 2, 1, 1, 2, 2, -1, 5],
        ];
        for grid in &grids {
            let offsets = grid.offsets(&columns, 9);
            for (p, got) in offsets.into_iter().enumerate() {
                let point = [columns[0][p], columns[1][p]];
                assert_eq!(got, grid.offset(&point), "{grid:?} at {point:?}");
            }
        }
    }
}
