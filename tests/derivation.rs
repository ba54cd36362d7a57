//! The gradient every claim is judged against is derived twice: by reverse
//! mode (one recording and a backward sweep) and by forward-mode dual
//! numbers, every element at small sizes and along random directions
//! above. These tests hold the two to agreement on every bundled spec and
//! every corpus file, and check that the report says which route derived
//! the gradient at each size.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::specs_in;

use std::path::{Path, PathBuf};
use std::process::Command;

use dlverify::check_source;
use dlverify::eval::TooLargeToRecord;
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{FileOutcome, Route, WithoutReverse};

fn check(name: &str, text: &str, dims: &[(&str, i64)], seed: u64) -> FileOutcome {
    let options = Options {
        seed,
        dims: dims.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        ..Options::default()
    };
    check_source(Source::new(name, text), &options)
}

/// Every gradient claim of every bundled spec and corpus file (at a seed
/// other than the corpus test's default): at each size it was checked at, the report names the route, and
/// wherever reverse mode derived the gradient forward mode checked every
/// element and agreed. Both routes must be exercised: reverse where L is
/// smooth at the drawn values, forward alone at the corpus's kinks.
#[test]
fn reverse_mode_agrees_with_forward_mode_on_every_spec() {
    let files: Vec<PathBuf> = specs_in("specs")
        .into_iter()
        .chain(specs_in("tests/corpus"))
        .collect();
    assert!(files.len() > 200, "the corpus is missing: {}", files.len());
    let (mut reverse, mut forward) = (0usize, 0usize);
    let mut problems = vec![];
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for seed in [7] {
            let outcome = check(&path.display().to_string(), &text, &[], seed);
            for claim in outcome.claims.iter().filter(|c| c.kind == "grad") {
                let place = format!("{}:{} seed {seed}", path.display(), claim.line);
                if claim.routes.len() != claim.sizes.len() {
                    problems.push(format!(
                        "{place}: {} routes for {} sizes",
                        claim.routes.len(),
                        claim.sizes.len()
                    ));
                }
                for r in &claim.routes {
                    match r.route {
                        Route::ReverseCheckedEverywhere => {
                            reverse += 1;
                            if r.compared == 0 {
                                problems.push(format!(
                                    "{place}: reverse mode unchecked at {}",
                                    r.sizes
                                ));
                            }
                        }
                        Route::ReverseCheckedAlong(_) => {
                            problems.push(format!("{place}: a default size above the dense limit"));
                        }
                        Route::ForwardAlone(_) => forward += 1,
                    }
                }
                let derivation = claim.cross_checks.iter().find(|c| c.name == "derivation");
                let reversed = claim
                    .routes
                    .iter()
                    .any(|r| !matches!(r.route, Route::ForwardAlone(_)));
                if reversed != derivation.is_some_and(|d| d.passed) {
                    problems.push(format!("{place}: {derivation:?}"));
                }
                if let dlverify::verify::outcome::Verdict::Undecided(why) = &claim.verdict
                    && why.contains("reverse-mode and forward-mode")
                {
                    problems.push(format!("{place}: {why}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        reverse > 500,
        "reverse mode derived only {reverse} gradients"
    );
    assert!(
        forward > 25,
        "forward mode alone derived only {forward} gradients"
    );
}

const A3: &str = include_str!("../specs/a3_recurrent_sequence.dl");

/// Above the dense limit forward mode checks reverse mode along random
/// directions, and every claim still comes out as marked.
#[test]
fn above_the_dense_limit_the_check_is_along_random_directions() {
    let outcome = check("a3.dl", A3, &[("N", 3000)], 0);
    assert!(outcome.diagnostics.is_empty());
    for claim in outcome.claims.iter().filter(|c| c.kind == "grad") {
        assert!(
            claim.status().as_expected(),
            "{}: {:?}",
            claim.head,
            claim.verdict
        );
        let last = claim.routes.last().unwrap();
        assert_eq!(last.sizes.to_string(), "N = 3000");
        assert_eq!(last.route, Route::ReverseCheckedAlong(2));
        assert_eq!(last.compared, 2);
        // The small sizes of the sweep are still checked element by element.
        assert!(
            claim.routes[..claim.routes.len() - 1]
                .iter()
                .all(|r| r.route == Route::ReverseCheckedEverywhere)
        );
    }
}

/// A forward pass quadratic by definition (a cumulative sum) makes each
/// dense pass quadratic: below the element limit but above the work limit
/// the check goes along random directions, and the small sizes stay dense.
#[test]
fn a_quadratic_forward_pass_is_checked_along_random_directions() {
    let cumulative = "dim N = 8
input x[N]
y[i] = sum(k in 1..=i) x[k]     for i in 1..=N
grad x[j] = sum(i in j..=N) g[i]
grad x[j] = sum(i in 1..=j) g[i]
  expect fail \"a prefix sum where the suffix belongs\"
";
    let outcome = check("cumulative.dl", cumulative, &[("N", 1000)], 0);
    assert!(outcome.diagnostics.is_empty());
    for claim in &outcome.claims {
        assert!(
            claim.status().as_expected(),
            "{}: {:?}",
            claim.head,
            claim.verdict
        );
        let last = claim.routes.last().unwrap();
        assert_eq!(last.sizes.to_string(), "N = 1000");
        assert_eq!(last.route, Route::ReverseCheckedAlong(2));
        assert_eq!(claim.routes[0].route, Route::ReverseCheckedEverywhere);
    }
}

/// A layer whose Jacobian is dense (every output reads every input) is
/// derived by reverse mode like any other, and a wrong formula on it is
/// still refuted at the large size.
#[test]
fn a_dense_layer_verifies_at_a_large_size() {
    let spec = "
        dim n = 4
        input x[n] in (-3, 3)
        let z = sum(k) exp(x[k])
        y[i] = exp(x[i]) / z
        grad x[j] = y[j] * (g[j] - sum(i) g[i] * y[i])
        grad x[j] = y[j] * (g[j] - sum(i) g[i] * y[i] / n)
          expect fail \"the weighted mean replaced by (1/n) sum g y\"
    ";
    let outcome = check("softmax.dl", spec, &[("n", 1500)], 3);
    assert!(outcome.diagnostics.is_empty(), "{:?}", outcome.diagnostics);
    for claim in &outcome.claims {
        assert!(
            claim.status().as_expected(),
            "{}: {:?}",
            claim.head,
            claim.verdict
        );
        assert_eq!(
            claim.routes.last().unwrap().route,
            Route::ReverseCheckedAlong(2)
        );
    }
}

/// A recording past the memory available (made to order here: at most
/// 200 operations, where a cumulative sum at n = 40 records 2,000) is not
/// made: forward mode derives the gradient alone at that size, the report
/// says why, and every verdict and gradient is what reverse mode gives.
#[test]
fn a_recording_too_large_for_memory_leaves_the_gradient_to_forward_mode() {
    let text = std::fs::read_to_string("tests/corpus/cumsum.dl").unwrap();
    let run = |max_operations| {
        let options = Options {
            dims: vec![("n".to_string(), 40)],
            keep_derived: true,
            max_operations,
            ..Options::default()
        };
        check_source(Source::new("cumsum.dl", &text), &options)
    };
    let (free, limited) = (run(None), run(Some(200)));
    assert_eq!(free.claims.len(), 3);
    for (f, l) in free.claims.iter().zip(&limited.claims) {
        assert!(l.status().as_expected(), "{:?}", l.verdict);
        assert_eq!(f.status(), l.status());
        let route_at_40 = |c: &dlverify::verify::outcome::ClaimOutcome| {
            c.routes
                .iter()
                .find(|r| r.sizes.to_string().contains("n = 40"))
                .map(|r| r.route)
        };
        assert!(
            matches!(route_at_40(f), Some(Route::ReverseCheckedEverywhere)),
            "{:?}",
            f.routes
        );
        assert_eq!(
            route_at_40(l),
            Some(Route::ForwardAlone(WithoutReverse::TooLarge(
                TooLargeToRecord { operations: 200 }
            )))
        );
        // The small sizes still fit: reverse mode there.
        assert!(
            l.routes
                .iter()
                .filter(|r| !r.sizes.to_string().contains("n = 40"))
                .all(|r| r.route == Route::ReverseCheckedEverywhere),
            "{:?}",
            l.routes
        );
    }
    // The same gradient, up to the order the two modes add in.
    let gradient = |o: &FileOutcome| o.derived.last().unwrap().values.clone();
    let (a, b) = (gradient(&free), gradient(&limited));
    assert_eq!(a.len(), 40);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-12 * (1.0 + x.abs()), "{x} against {y}");
    }
    // The JSON's route at n = 40 says why, with the limit.
    let report: serde_json::Value = serde_json::from_str(&dlverify::report::json::render(
        std::slice::from_ref(&limited),
    ))
    .unwrap();
    let routes = report["files"][0]["claims"][0]["routes"]
        .as_array()
        .unwrap();
    let last = routes.last().unwrap();
    assert_eq!(last["sizes"]["n"], 40);
    assert_eq!(last["mode"], "forward");
    assert_eq!(last["why"]["reason"], "recording too large");
    assert_eq!(last["why"]["limit"], 200);
    assert!(routes[0].get("why").is_none(), "{routes:?}");
    let human = dlverify::report::human::render(
        &[limited],
        dlverify::report::human::HumanOptions {
            verbose: true,
            ..Default::default()
        },
    );
    assert!(
        human.contains("gradient by forward mode alone (a recording of L for reverse mode would hold more than 200 operations, more than the memory available carries) at (n = 40)"),
        "{human}"
    );
}

/// Where the forward computation meets a kink the tape would hold one
/// branch of several: forward mode, which chooses among them, derives alone.
#[test]
fn at_a_kink_forward_mode_derives_alone() {
    let spec = "
        input x[3] = [-1, 0, 2]
        y[i] = relu(x[i])
        grad x[j] = g[j] * [x[j] > 0]
    ";
    let outcome = check("relu.dl", spec, &[], 0);
    let claim = &outcome.claims[0];
    assert!(claim.status().as_expected(), "{:?}", claim.verdict);
    assert_eq!(claim.routes.len(), 1);
    assert_eq!(
        claim.routes[0].route,
        Route::ForwardAlone(WithoutReverse::Kink)
    );
    let report: serde_json::Value = serde_json::from_str(&dlverify::report::json::render(
        std::slice::from_ref(&outcome),
    ))
    .unwrap();
    let route = &report["files"][0]["claims"][0]["routes"][0];
    assert_eq!(route["mode"], "forward");
    assert_eq!(route["why"]["reason"], "kink");
    // Away from the kink, reverse mode.
    let smooth = spec.replace("[-1, 0, 2]", "[-1, 0.5, 2]");
    let outcome = check("relu.dl", &smooth, &[], 0);
    assert_eq!(
        outcome.claims[0].routes[0].route,
        Route::ReverseCheckedEverywhere
    );
    assert_eq!(outcome.claims[0].routes[0].compared, 3);
}

/// The route is part of the JSON report, per size.
#[test]
fn the_json_report_names_the_route_per_size() {
    let out = Command::new(env!("CARGO_BIN_EXE_dlverify"))
        .args(["--format", "json", "--dim", "N=1500"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/a3_recurrent_sequence.dl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let claim = &report["files"][0]["claims"][0];
    let routes = claim["routes"].as_array().unwrap();
    let last = routes.last().unwrap();
    assert_eq!(last["sizes"]["N"], 1500);
    assert_eq!(last["mode"], "reverse");
    assert_eq!(last["checked"], "random directions");
    assert_eq!(routes[0]["checked"], "every element");
    // x[1..=3], a and b.
    assert_eq!(routes[0]["compared"], 5);
}
