//! Gradient checks at scale: the bundled A2 and A3 layers at sizes above
//! their defaults, whole specs and the derivation of the gradient alone.
//! Reverse mode derives the gradient for one recorded evaluation and a
//! backward sweep, so `derivation` grows linearly with the size; the whole
//! spec also runs every claim's finite-difference guards and Taylor
//! ladders, a fixed number of forward evaluations each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use dlverify::analysis::{analyze, size_sweep};
use dlverify::check_source;
use dlverify::eval::replay::Replay;
use dlverify::eval::{Instance, draw_values, record, reverse_gradient};
use dlverify::source::Source;
use dlverify::syntax::parse;
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

/// The gradient of L at the drawn values, by reverse mode, at the sizes of
/// the scale targets.
fn derivation(c: &mut Criterion) {
    let mut group = c.benchmark_group("derivation");
    group.sample_size(10);
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, i64)>);
    let cases: [Case; 4] = [
        ("A3 at N = 1e4", A3, vec![("N", 10_000)]),
        ("A3 at N = 1e5", A3, vec![("N", 100_000)]),
        ("A3 at N = 1e6", A3, vec![("N", 1_000_000)]),
        ("A2 at n = m = 512", A2, vec![("n", 512), ("m", 512)]),
    ];
    for (name, text, dims) in cases {
        let source = Source::new("bench.dl", text);
        let program = analyze(&parse(&source).unwrap()).unwrap();
        let dims: Vec<(String, i64)> = dims.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        let sizes = size_sweep(&program, &dims).unwrap().pop().unwrap();
        let instance = Instance::new(&program, &source, sizes, u64::MAX).unwrap();
        let values = draw_values(&instance, 0).unwrap();
        group.bench_function(format!("reverse mode, {name}"), |b| {
            b.iter(|| reverse_gradient::<f64>(&instance, &values).unwrap());
        });
        // What a Taylor rung or a finite difference costs: L at 8 points
        // in one replay of the recording.
        let replay = Replay::compile(record::<f64>(&instance, &values).unwrap()).unwrap();
        let flat: Vec<&[f64]> = values
            .iter()
            .map(|a| a.as_slice_memory_order().unwrap())
            .collect();
        group.bench_function(format!("replay of L at 8 points, {name}"), |b| {
            b.iter(|| replay.run_with(8, |lane, k, p| flat[k][p] * (1.0 + 1e-9 * lane as f64)));
        });
        // A Taylor batch: every rung of every direction in one run.
        group.bench_function(format!("replay of L at 256 points, {name}"), |b| {
            b.iter(|| {
                replay.run_rows(256, |(k, p), row| {
                    for (lane, slot) in row.iter_mut().enumerate() {
                        *slot = flat[k][p] * (1.0 + 1e-9 * lane as f64);
                    }
                })
            });
        });
    }
    group.finish();
}

fn gradients(c: &mut Criterion) {
    let mut group = c.benchmark_group("gradient claims");
    group.sample_size(10);
    group.bench_function("the bundled specs", |b| {
        b.iter(|| {
            let files = dlverify::input::expand_paths(&[std::path::PathBuf::from("specs")]);
            for path in files.into_iter().flatten() {
                let outcome = dlverify::check_path(&path, &Options::default());
                assert!(outcome.claims.iter().all(|c| c.status().as_expected()));
            }
        });
    });
    // The targets: A3 at 10^5 and 10^6, A2 at 512 x 512 (seconds
    // an iteration at the largest sizes: `cargo bench -- "A3 at N = 1000000"`).
    for n in [1000, 10_000, 100_000, 1_000_000] {
        group.bench_function(format!("A3 at N = {n}"), |b| {
            b.iter(|| check("a3.dl", A3, &[("N", n)]));
        });
    }
    for n in [32, 128, 512] {
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

criterion_group!(benches, derivation, gradients, verdicts);
criterion_main!(benches);
