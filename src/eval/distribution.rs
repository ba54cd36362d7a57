//! Sampling from the spec's distributions, their parameter domains, and
//! their exact moments and finite supports (for exact enumeration).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::analysis::program::DistributionKind;

/// Why a parameter is out of its distribution's domain, or `Ok`.
pub fn check_parameters(kind: DistributionKind, params: &[f64]) -> Result<(), String> {
    if let Some(bad) = params.iter().find(|p| !p.is_finite()) {
        return Err(format!("a parameter is {bad}"));
    }
    match (kind, params) {
        (DistributionKind::Bernoulli, &[p]) if !(0.0..=1.0).contains(&p) => {
            Err(format!("the probability {p} is outside [0, 1]"))
        }
        (DistributionKind::Uniform, &[lo, hi]) if lo > hi => {
            Err(format!("the lower end {lo} is above the upper end {hi}"))
        }
        (DistributionKind::Normal, &[_, sd]) if sd < 0.0 => {
            Err(format!("the standard deviation {sd} is negative"))
        }
        (kind, params) if params.len() != kind.parameters().len() => Err(format!(
            "{} takes {} parameters, got {}",
            kind.name(),
            kind.parameters().len(),
            params.len()
        )),
        _ => Ok(()),
    }
}

/// One draw. Parameters must have passed [`check_parameters`].
pub fn sample(kind: DistributionKind, params: &[f64], rng: &mut ChaCha8Rng) -> f64 {
    let p = |k: usize| params.get(k).copied().unwrap_or(f64::NAN);
    match kind {
        DistributionKind::Bernoulli => f64::from(u8::from(rng.random::<f64>() < p(0))),
        DistributionKind::Rademacher => {
            if rng.random::<bool>() {
                1.0
            } else {
                -1.0
            }
        }
        DistributionKind::Uniform => p(0) + (p(1) - p(0)) * rng.random::<f64>(),
        DistributionKind::Normal => p(0) + p(1) * standard_normal(rng),
    }
}

/// A standard normal draw (Box–Muller: rand's core has no normal).
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let (a, b) = box_muller_uniforms(rng);
    box_muller(a, b)
}

/// `n` draws of [`standard_normal`] in turn, the same values, drawn on
/// every core: each draw takes two `u64`s of the stream, so a chunk of the
/// draws starts at a word of the stream known in advance, and each chunk
/// is drawn from a copy of the generator set there. The generator is left
/// where drawing in turn leaves it.
pub fn standard_normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 14;
    let start = rng.get_word_pos();
    let at = |draw: usize| start + draw as u128 * WORDS_PER_DRAW;
    let mut drawn = vec![0.0; n];
    let from: &ChaCha8Rng = rng;
    let fill = |(c, chunk): (usize, &mut [f64])| {
        let mut rng = from.clone();
        rng.set_word_pos(at(c * CHUNK));
        for slot in chunk {
            *slot = standard_normal(&mut rng);
        }
    };
    // One chunk: nothing to share out, the pool would draw it on one
    // thread while this one waits (see `crate::eval::HAND_OVER`).
    if n > CHUNK {
        drawn.par_chunks_mut(CHUNK).enumerate().for_each(fill);
    } else {
        drawn.chunks_mut(CHUNK).enumerate().for_each(fill);
    }
    rng.set_word_pos(at(n));
    drawn
}

/// 32-bit words of the stream one [`standard_normal`] draw takes: two
/// `u64`s.
const WORDS_PER_DRAW: u128 = 4;

/// Moves the generator past `n` draws of [`standard_normal`] without
/// drawing them: it is then where drawing them would leave it.
pub fn skip_standard_normals(rng: &mut ChaCha8Rng, n: usize) {
    rng.set_word_pos(rng.get_word_pos() + n as u128 * WORDS_PER_DRAW);
}

fn box_muller_uniforms(rng: &mut ChaCha8Rng) -> (f64, f64) {
    let a: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let b: f64 = rng.random();
    (a, b)
}

fn box_muller(a: f64, b: f64) -> f64 {
    (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
}

/// The outcomes and their probabilities, where the support is finite.
pub fn finite_support(kind: DistributionKind, params: &[f64]) -> Option<Vec<(f64, f64)>> {
    match (kind, params) {
        (DistributionKind::Bernoulli, &[p]) => Some(vec![(0.0, 1.0 - p), (1.0, p)]),
        (DistributionKind::Rademacher, _) => Some(vec![(-1.0, 0.5), (1.0, 0.5)]),
        _ => None,
    }
}

/// Exact mean and variance.
pub fn moments(kind: DistributionKind, params: &[f64]) -> (f64, f64) {
    let p = |k: usize| params.get(k).copied().unwrap_or(f64::NAN);
    match kind {
        DistributionKind::Bernoulli => (p(0), p(0) * (1.0 - p(0))),
        DistributionKind::Rademacher => (0.0, 1.0),
        DistributionKind::Uniform => ((p(0) + p(1)) / 2.0, (p(1) - p(0)).powi(2) / 12.0),
        DistributionKind::Normal => (p(0), p(1) * p(1)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;

    /// Drawn at once or one at a time, the normals are the same bit for
    /// bit, and the generator is left in the same state.
    #[test]
    fn normals_drawn_at_once_are_those_drawn_in_turn() {
        // Chunk boundaries (2¹⁴ draws) on either side, and a stream that
        // starts mid-`u64` (a `u32` drawn before).
        for (n, odd) in [(0, false), (1, true), (7, false), (5000, true)]
            .into_iter()
            .chain([16_383, 16_384, 16_385, 50_001].map(|n| (n, n % 2 == 1)))
        {
            let (mut at_once, mut in_turn) = (
                ChaCha8Rng::seed_from_u64(n as u64),
                ChaCha8Rng::seed_from_u64(n as u64),
            );
            if odd {
                assert_eq!(at_once.random::<u32>(), in_turn.random::<u32>());
            }
            let drawn = standard_normals(&mut at_once, n);
            let expected: Vec<f64> = (0..n).map(|_| standard_normal(&mut in_turn)).collect();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&drawn), bits(&expected));
            assert_eq!(at_once.random::<u64>(), in_turn.random::<u64>());
        }
    }

    #[test]
    fn parameters_out_of_domain_are_named() {
        let e = check_parameters(DistributionKind::Bernoulli, &[1.5]).unwrap_err();
        assert!(e.contains("1.5") && e.contains("[0, 1]"), "{e}");
        assert!(check_parameters(DistributionKind::Normal, &[0.0, -1.0]).is_err());
        assert!(check_parameters(DistributionKind::Uniform, &[2.0, 1.0]).is_err());
        assert!(check_parameters(DistributionKind::Normal, &[0.0, f64::NAN]).is_err());
        assert!(check_parameters(DistributionKind::Bernoulli, &[0.0]).is_ok());
        assert!(check_parameters(DistributionKind::Bernoulli, &[1.0]).is_ok());
    }

    #[test]
    fn sample_means_match_the_exact_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let cases: [(DistributionKind, &[f64]); 4] = [
            (DistributionKind::Bernoulli, &[0.3]),
            (DistributionKind::Rademacher, &[]),
            (DistributionKind::Uniform, &[-1.0, 3.0]),
            (DistributionKind::Normal, &[2.0, 0.5]),
        ];
        for (kind, params) in cases {
            let n = 200_000;
            let draws: Vec<f64> = (0..n).map(|_| sample(kind, params, &mut rng)).collect();
            let mean = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let (m, v) = moments(kind, params);
            // Six standard errors: a false alarm about once in 10^9 runs.
            assert!(
                (mean - m).abs() < 6.0 * (v / n as f64).sqrt(),
                "{kind:?} mean {mean}"
            );
            assert!((var - v).abs() < 0.02 * v.max(1e-3), "{kind:?} var {var}");
        }
    }

    #[test]
    fn finite_supports_sum_to_one() {
        for (kind, params) in [
            (DistributionKind::Bernoulli, vec![0.25]),
            (DistributionKind::Rademacher, vec![]),
        ] {
            let support = finite_support(kind, &params).unwrap();
            let total: f64 = support.iter().map(|(_, p)| p).sum();
            assert!((total - 1.0).abs() < 1e-15);
        }
        assert!(finite_support(DistributionKind::Normal, &[0.0, 1.0]).is_none());
    }
}
