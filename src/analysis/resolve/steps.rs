//! Step groups as a graph problem: which lets are computed together, one
//! step at a time. A let that reads a let below it (at an earlier step)
//! opens a span of declarations; the lets on paths between such reads are
//! the span's members, split into the chains that read one another.

use crate::analysis::program::DefId;

/// The spans of declarations that reads of a let below cover, overlapping
/// spans merged: `(reader, target)` pairs in, `[first, last]` out.
pub(super) fn forward_spans(reads: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut spans: Vec<(usize, usize)> = reads.iter().copied().filter(|(r, t)| t > r).collect();
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = vec![];
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// A span's groups: the chains of members that read one another, each
/// computed on its own, and the lets that read a member without being
/// read by one, computed after the last chain.
pub(super) struct SpanGroups {
    pub chains: Vec<Vec<DefId>>,
    pub after: Vec<DefId>,
}

/// The groups of the span `[a, b]` of `n` definitions, from the reads
/// (`(reader, target)`) inside it.
pub(super) fn span_groups(
    edges: &[(usize, usize)],
    (a, b): (usize, usize),
    n: usize,
) -> SpanGroups {
    let mut forward = vec![false; n];
    for &(reader, target) in edges.iter().filter(|(r, t)| t > r) {
        forward[reader] = true;
        forward[target] = true;
    }
    // Members lie on a path between forward reads: read by one (directly
    // or not) and reading one.
    let read_by = reach(edges, &forward, false);
    let reading = reach(edges, &forward, true);
    let member: Vec<bool> = (0..n).map(|k| read_by[k] && reading[k]).collect();
    let after = (a..=b)
        .filter(|&k| reading[k] && !member[k])
        .map(DefId)
        .collect();
    SpanGroups {
        chains: chains(edges, &member, (a, b)),
        after,
    }
}

/// Every definition reachable from `seeds` along the reads, forwards
/// (what they read) or backwards (what reads them).
fn reach(edges: &[(usize, usize)], seeds: &[bool], backwards: bool) -> Vec<bool> {
    let mut seen = seeds.to_vec();
    loop {
        let mut changed = false;
        for &(reader, target) in edges {
            let (from, to) = if backwards {
                (target, reader)
            } else {
                (reader, target)
            };
            if seen[from] && !seen[to] {
                seen[to] = true;
                changed = true;
            }
        }
        if !changed {
            return seen;
        }
    }
}

/// The members split into those connected by reads among them: chains
/// that never meet (a bidirectional RNN's two directions) are groups of
/// their own, each with its own order. In declaration order.
fn chains(edges: &[(usize, usize)], member: &[bool], (a, b): (usize, usize)) -> Vec<Vec<DefId>> {
    let mut root: Vec<usize> = (0..member.len()).collect();
    fn find(root: &mut [usize], k: usize) -> usize {
        let mut k = k;
        while root[k] != k {
            root[k] = root[root[k]];
            k = root[k];
        }
        k
    }
    for &(reader, target) in edges {
        if member[reader] && member[target] {
            let (x, y) = (find(&mut root, reader), find(&mut root, target));
            root[x.max(y)] = x.min(y);
        }
    }
    let mut chains: Vec<(usize, Vec<DefId>)> = vec![];
    for k in (a..=b).filter(|&k| member[k]) {
        let r = find(&mut root, k);
        match chains.iter_mut().find(|(root, _)| *root == r) {
            Some((_, chain)) => chain.push(DefId(k)),
            None => chains.push((r, vec![DefId(k)])),
        }
    }
    chains.into_iter().map(|(_, chain)| chain).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_chains_that_never_meet_are_two_groups() {
        // 0 reads 2 (below), 1 reads 3 (below); 2 reads 0, 3 reads 1.
        let edges = [(0, 2), (1, 3), (2, 0), (3, 1)];
        assert_eq!(forward_spans(&edges), [(0, 3)]);
        let groups = span_groups(&edges, (0, 3), 4);
        assert_eq!(
            groups.chains,
            [vec![DefId(0), DefId(2)], vec![DefId(1), DefId(3)]]
        );
        assert!(groups.after.is_empty());
    }

    #[test]
    fn a_let_reading_a_member_unread_comes_after() {
        // 0 reads 2; 1 reads 0 and nothing reads 1; 2 reads 0.
        let edges = [(0, 2), (1, 0), (2, 0)];
        let groups = span_groups(&edges, (0, 2), 3);
        assert_eq!(groups.chains, [vec![DefId(0), DefId(2)]]);
        assert_eq!(groups.after, [DefId(1)]);
    }
}
