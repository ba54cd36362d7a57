//! Claims checked side by side: the report is the one they give one by
//! one, and each claim is still held to its own time limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{render, specs_in};

use std::time::Duration;

use dlverify::report::json;
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{ClaimStatus, FileOutcome, Verdict};

/// Checks `text` with its claims one after another (on a rayon thread,
/// where they go in turn) or, with `beside`, side by side (on a thread of
/// its own, the global pool of two threads doing their parallel work).
fn check(beside: bool, name: &str, text: &str, options: &Options) -> FileOutcome {
    let source = Source::new(name, text.to_string());
    if !beside {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .stack_size(8 << 20)
            .build()
            .unwrap();
        return pool.install(|| dlverify::check_source(source, options));
    }
    // Two threads even on one core (the first call in the process sets it).
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global();
    let options = options.clone();
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            assert!(rayon::current_num_threads() >= 2, "claims would go in turn");
            dlverify::check_source(source, &options)
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Every bundled spec and library layer, at its default sizes and two
/// seeds: the JSON report from claims checked side by side is the report
/// from claims checked in turn, byte for byte.
#[test]
fn claims_side_by_side_report_what_they_report_in_turn() {
    let mut paths = specs_in("specs");
    paths.extend(specs_in("tests/library"));
    assert!(paths.len() > 40, "{paths:?}");
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.to_string_lossy();
        for seed in [0, 3] {
            let options = Options {
                seed,
                ..Options::default()
            };
            let alone = check(false, &name, &text, &options);
            let beside = check(true, &name, &text, &options);
            assert_eq!(
                json::render(std::slice::from_ref(&beside)),
                json::render(std::slice::from_ref(&alone)),
                "{name} at seed {seed}:\n{}",
                render(&beside)
            );
        }
    }
}

/// A cheap derivation, a cheap claim, and a claim whose closed form adds
/// 2.5·10⁷ terms of nothing at each element.
const SLOW_BESIDE_QUICK: &str = "\
dim N = 50, M = 5000
input x[N], z[M]
param w[N, N]
y[i] = sum(j) w[i, j] * x[j]
grad w[i, j] = g[i] * x[j]
grad x[k] = sum(i) g[i] * w[i, k] + 0 * sum(m) sum(n) exp(z[m]) * tanh(z[n])
";

/// Side by side as in turn, the slow claim runs past its limit and gets
/// no verdict, and the quick one beside it is checked to the end: each
/// claim is held to the limit from its own start.
#[test]
fn a_claim_past_its_limit_beside_a_quick_one_is_not_checked_and_the_quick_one_is() {
    let options = Options {
        timeout: Duration::from_secs(1),
        ..Options::default()
    };
    for beside in [false, true] {
        let outcome = check(beside, "slow.dl", SLOW_BESIDE_QUICK, &options);
        let [quick, slow] = &outcome.claims[..] else {
            panic!("{}", render(&outcome));
        };
        assert_eq!(quick.status(), ClaimStatus::Pass, "{}", render(&outcome));
        assert_eq!(slow.status(), ClaimStatus::Error, "{}", render(&outcome));
        let Verdict::Undecided(why) = &slow.verdict else {
            panic!("{}", render(&outcome));
        };
        assert!(why.contains("time limit of 1 s"), "{why}");
    }
}
