//! Monte Carlo speed: a 1000-element stochastic quantizer whose moments
//! cannot be enumerated (it thresholds a uniform draw), checked with
//! 10⁵ samples per element. The time per element-sample is the figure to
//! watch; `dlverify --samples 1000000 --dim n=1000` on the same spec checks
//! 10⁶ samples of each of the 1000 elements.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use dlverify::check_source;
use dlverify::source::Source;
use dlverify::verify::Options;

const QUANTIZER: &str = "
dim n = 1000
input g[n]
let lo = min(k) g[k]
let hi = max(k) g[k]
let a = hi - lo
let b = lo
random u[i] ~ uniform(0, 1) for i in 1..=n
let gq[i] = a * [u[i] < [a > 0] * ((g[i] - b) / a)] + b
claim E[gq[i]] == g[i]
";

fn sampling(c: &mut Criterion) {
    let options = Options {
        samples: 100_000,
        ..Options::default()
    };
    let mut group = c.benchmark_group("monte carlo");
    group.sample_size(10);
    group.bench_function("1000-element quantizer, 10^5 samples per element", |b| {
        b.iter(|| {
            let outcome = check_source(Source::new("quantizer.dl", QUANTIZER), &options);
            assert!(outcome.claims.iter().all(|c| c.status().as_expected()));
        });
    });
    group.finish();
}

criterion_group!(benches, sampling);
criterion_main!(benches);
