//! Gradient checks at scale: the bundled A2 and A3 layers at sizes above
//! their defaults. Forward-mode autodiff costs one pass per eight elements,
//! so these times grow with the square of the size; the figures to watch
//! are the ratios between sizes as the evaluator improves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use dlverify::check_source;
use dlverify::source::Source;
use dlverify::verify::Options;

const A2: &str = include_str!("../specs/a2_weight_normalization.dl");
const A3: &str = include_str!("../specs/a3_recurrent_sequence.dl");
/// Cancellation: layer norm at eps = 1e-5, whose elements the f64 bound
/// flags and double-double clears.
const LAYER_NORM: &str = include_str!("../tests/corpus/layer_norm_n2.dl");
/// Kinks: overlapping max-pooling windows, all tied, where the valid
/// gradients are found by stepping along every element.
const POOL_TIES: &str = include_str!("../tests/corpus/maxpool_overlap_ties.dl");
/// Every outside formula, at one seed.
const CORPUS: &str = "tests/corpus";

fn check(name: &str, text: &str, dims: &[(&str, i64)]) {
    let options = Options {
        dims: dims.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        ..Options::default()
    };
    let outcome = check_source(Source::new(name, text), &options);
    assert!(outcome.diagnostics.is_empty());
    assert!(outcome.claims.iter().all(|c| c.status().as_expected()));
}

fn gradients(c: &mut Criterion) {
    let mut group = c.benchmark_group("gradient claims");
    group.sample_size(10);
    for n in [250, 1000] {
        group.bench_function(format!("A3 at N = {n}"), |b| {
            b.iter(|| check("a3.dl", A3, &[("N", n)]));
        });
    }
    for n in [16, 32] {
        group.bench_function(format!("A2 at n = m = {n}"), |b| {
            b.iter(|| check("a2.dl", A2, &[("n", n), ("m", n)]));
        });
    }
    group.finish();
}

/// What telling rounding and kinks from mistakes costs.
fn verdicts(c: &mut Criterion) {
    let mut group = c.benchmark_group("verdicts");
    group.sample_size(10);
    group.bench_function("layer norm over 2 (rounding cleared)", |b| {
        b.iter(|| check("layer_norm_n2.dl", LAYER_NORM, &[]));
    });
    group.bench_function("overlapping max pooling, all tied", |b| {
        b.iter(|| check("maxpool_overlap_ties.dl", POOL_TIES, &[]));
    });
    group.bench_function("the outside corpus", |b| {
        b.iter(|| {
            let files = dlverify::input::expand_paths(&[std::path::PathBuf::from(CORPUS)]);
            for path in files.into_iter().flatten() {
                let outcome = dlverify::check_path(&path, &Options::default());
                assert!(outcome.claims.iter().all(|c| c.status().as_expected()));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, gradients, verdicts);
criterion_main!(benches);
