//! Index grids: the concrete inclusive ranges of a tensor's axes at one size,
//! and the mapping from 1-based points to positions in ndarray storage.

/// Concrete `lo..=hi` per axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grid {
    axes: Vec<(i64, i64)>,
}

impl Grid {
    pub fn new(axes: Vec<(i64, i64)>) -> Self {
        Self { axes }
    }

    pub fn axes(&self) -> &[(i64, i64)] {
        &self.axes
    }

    pub fn rank(&self) -> usize {
        self.axes.len()
    }

    /// Elements per axis (0 for an empty axis).
    pub fn extents(&self) -> Vec<usize> {
        self.axes
            .iter()
            .map(|&(lo, hi)| usize::try_from(hi - lo + 1).unwrap_or(0))
            .collect()
    }

    /// Total number of elements, or `None` if it does not fit a u64.
    pub fn len(&self) -> Option<u64> {
        self.extents()
            .iter()
            .try_fold(1u64, |acc, &e| acc.checked_mul(e as u64))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Row-major position of a point, or `None` outside the grid.
    pub fn offset(&self, point: &[i64]) -> Option<usize> {
        let mut offset = 0usize;
        for (&(lo, hi), &p) in self.axes.iter().zip(point) {
            if p < lo || p > hi {
                return None;
            }
            let extent = usize::try_from(hi - lo + 1).ok()?;
            offset = offset * extent + usize::try_from(p - lo).ok()?;
        }
        Some(offset)
    }

    /// The point at a row-major position.
    pub fn point(&self, mut offset: usize) -> Vec<i64> {
        let extents = self.extents();
        let mut point = vec![0; self.axes.len()];
        for k in (0..self.axes.len()).rev() {
            let e = extents[k].max(1);
            point[k] = self.axes[k].0 + (offset % e) as i64;
            offset /= e;
        }
        point
    }

    /// Every point in row-major order.
    pub fn points(&self) -> impl Iterator<Item = Vec<i64>> + '_ {
        let n = usize::try_from(self.len().unwrap_or(0)).unwrap_or(0);
        (0..n).map(|k| self.point(k))
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
