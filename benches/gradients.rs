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

criterion_group!(benches, gradients);
criterion_main!(benches);
