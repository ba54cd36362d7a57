//! Guards: a bracket that is 0 makes its whole product 0, whatever the order
//! and grouping of the factors (issue 9, item 4).
//!
//! Three layers, each written with the bracket first, in the middle, last,
//! in parentheses, under a minus sign and over a divisor:
//! - a 1-d convolution `y[i] = sum(k) w[k] * x[i+k-1]`, whose gradient in
//!   `x` sums over the outputs a kernel tap reaches;
//! - a shift layer `y[i] = [i >= 2] * w[i] * x[i-1]`;
//! - a shifted correlation `y[i] = sum(k) [i+k <= N] * w[k] * x[i+k]`, where
//!   the range of `k` must come from `w` as well as from `x`.
//!
//! Every right claim must hold at several seeds, with nothing undefined;
//! every wrong twin (the same product with a wrong index) must be refuted
//! by its values, not by an access out of range.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dlverify::analysis::program::{Body, NodeKind};
use dlverify::analysis::{analyze, show_affine, visit_body};
use dlverify::check_source;
use dlverify::source::Source;
use dlverify::syntax::parse;
use dlverify::verify::Options;
use dlverify::verify::outcome::{ClaimOutcome, ClaimStatus, FileOutcome, Verdict};

const SEEDS: [u64; 4] = [0, 1, 7, 42];

/// The six ways of writing the product `{b} * {p} * {q}` of a bracket `b`
/// and two factors `p`, `q`: bracket first, in the middle, last, in
/// parentheses with either factor, and negated twice.
fn orders(b: &str, p: &str, q: &str) -> Vec<String> {
    vec![
        format!("{b} * {p} * {q}"),
        format!("{p} * {b} * {q}"),
        format!("{p} * {q} * {b}"),
        format!("{p} * ({b} * {q})"),
        format!("({p} * {q}) * {b}"),
        format!("-{b} * {p} * -{q}"),
    ]
}

fn check(spec: &str, seed: u64) -> FileOutcome {
    let options = Options {
        seed,
        ..Default::default()
    };
    let outcome = check_source(Source::new("guards.dl", spec), &options);
    assert!(
        outcome.diagnostics.is_empty(),
        "seed {seed}: the spec did not check cleanly: {:?}\n{spec}",
        outcome.diagnostics
    );
    outcome
}

fn describe(claim: &ClaimOutcome) -> String {
    let problems: Vec<String> = claim
        .problems
        .iter()
        .map(|p| format!("{:?}", p.diagnostic))
        .collect();
    format!(
        "`{}` (line {}): {:?}, mismatches {:?}, problems {problems:?}",
        claim.head, claim.line, claim.verdict, claim.mismatches
    )
}

/// Every claim of `spec` holds at every seed, with nothing undefined.
fn assert_all_hold(spec: &str) {
    for seed in SEEDS {
        let outcome = check(spec, seed);
        assert!(!outcome.claims.is_empty(), "no claims\n{spec}");
        for claim in &outcome.claims {
            assert!(
                claim.verdict == Verdict::Holds
                    && claim.status() == ClaimStatus::Pass
                    && claim.problems.is_empty(),
                "seed {seed}: a right claim did not hold: {}\n{spec}",
                describe(claim)
            );
        }
    }
}

/// Every claim of `spec` is refuted at every seed by its values: the
/// product is defined everywhere, its guards keep every access in range.
fn assert_all_refuted(spec: &str) {
    for seed in SEEDS {
        let outcome = check(spec, seed);
        assert!(!outcome.claims.is_empty(), "no claims\n{spec}");
        for claim in &outcome.claims {
            assert!(
                claim.verdict == Verdict::Refuted
                    && claim.status() == ClaimStatus::Fail
                    && claim.problems.is_empty()
                    && !claim.mismatch_groups.is_empty(),
                "seed {seed}: a wrong twin was not refuted by its values: {}\n{spec}",
                describe(claim)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A 1-d convolution: dL/dx[j] = sum over the outputs i that tap j.

fn convolution(claims: &[String]) -> String {
    format!(
        "dim N = 7, K = 3
input x[N]
param w[K]
y[i] = sum(k) w[k] * x[i+k-1]    for i in 1..=N-K+1
{}
",
        claims.join("\n")
    )
}

/// `grad x[j]` with the tap `w[tap]`, in every order, the range of `i`
/// given (so that only the bracket keeps `w` in range) and inferred.
fn convolution_claims(tap: &str) -> Vec<String> {
    let mut claims = vec![];
    for range in ["i in 1..=N-K+1", "i"] {
        for product in orders("[1 <= j-i+1 <= K]", "g[i]", &format!("w[{tap}]")) {
            claims.push(format!("grad x[j] = sum({range}) {product}"));
        }
        // Over a divisor: the bracket guards the quotient's divisor too.
        claims.push(format!(
            "grad x[j] = sum({range}) [1 <= j-i+1 <= K] * g[i] / w[{tap}] * w[{tap}]^2"
        ));
        claims.push(format!(
            "grad x[j] = sum({range}) g[i] * w[{tap}]^2 / w[{tap}] * [1 <= j-i+1 <= K]"
        ));
    }
    claims
}

#[test]
fn a_bracket_guards_the_whole_convolution_product() {
    for claim in convolution_claims("j-i+1") {
        assert_all_hold(&convolution(&[claim]));
    }
}

#[test]
fn a_flipped_kernel_is_refuted_in_every_order() {
    // Correlation for convolution: w[K+1-(j-i+1)], in range where the
    // bracket holds, wrong there.
    for claim in convolution_claims("K+i-j") {
        assert_all_refuted(&convolution(&[claim]));
    }
}

// ---------------------------------------------------------------------------
// A shift layer: y[i] = w[i] * x[i-1], zero at i = 1.

fn shift(layer: &str, claims: &[String]) -> String {
    format!(
        "dim N = 6
input x[N]
param w[N]
y[i] = {layer}    for i in 1..=N
{}
",
        claims.join("\n")
    )
}

#[test]
fn a_bracket_guards_the_whole_shift_product() {
    let layers = orders("[i >= 2]", "w[i]", "x[i-1]");
    let dx = orders("[j <= N-1]", "w[j+1]", "g[j+1]");
    let dw = orders("[j >= 2]", "g[j]", "x[j-1]");
    for (k, layer) in layers.iter().enumerate() {
        // Every order of the layer against every order of the claims would
        // be 216 specs; each layer against all claims of one order, and the
        // first layer against the rest, cover each form.
        let mut claims = vec![
            format!("grad x[j] = {}", dx[k]),
            format!("grad w[j] = {}", dw[k]),
        ];
        if k == 0 {
            claims.extend(dx.iter().map(|p| format!("grad x[j] = {p}")));
            claims.extend(dw.iter().map(|p| format!("grad w[j] = {p}")));
        }
        assert_all_hold(&shift(layer, &claims));
    }
}

#[test]
fn a_shift_by_the_wrong_amount_is_refuted_in_every_order() {
    let layer = "[i >= 2] * w[i] * x[i-1]";
    for product in orders("[j <= N-1]", "w[j]", "g[j+1]") {
        assert_all_refuted(&shift(layer, &[format!("grad x[j] = {product}")]));
    }
    for product in orders("[j >= 2]", "g[j]", "x[j]") {
        assert_all_refuted(&shift(layer, &[format!("grad w[j] = {product}")]));
    }
}

// ---------------------------------------------------------------------------
// A shifted correlation: the bracket first, and `k` bounded by `w` and `x`.

fn correlation(layer: &str, claims: &[String]) -> String {
    format!(
        "dim N = 6, K = 3
input x[N]
param w[K]
y[i] = sum(k) {layer}    for i in 1..=N-1
{}
",
        claims.join("\n")
    )
}

/// The gradients in `w` and `x`, with the tap `w[tap]` and the input
/// `x[input]` of the `w` claim, in every order, ranges given and inferred.
fn correlation_claims(tap: &str, input: &str) -> Vec<String> {
    let mut claims = vec![];
    for range in ["i in 1..=N-1", "i"] {
        for product in orders("[i+k <= N]", "g[i]", &format!("x[{input}]")) {
            claims.push(format!("grad w[k] = sum({range}) {product}"));
        }
    }
    for range in ["k in 1..=K", "k"] {
        for product in orders("[1 <= j-k <= N-1]", "g[j-k]", &format!("w[{tap}]")) {
            claims.push(format!("grad x[j] = sum({range}) {product}"));
        }
    }
    claims
}

#[test]
fn a_bracket_guards_the_whole_correlation_product() {
    let layers = orders("[i+k <= N]", "w[k]", "x[i+k]");
    for layer in &layers {
        assert_all_hold(&correlation(layer, &correlation_claims("k", "i+k")));
    }
}

#[test]
fn wrong_correlation_gradients_are_refuted_in_every_order() {
    let layer = "[i+k <= N] * w[k] * x[i+k]";
    for claim in correlation_claims("K+1-k", "i+k-1") {
        assert_all_refuted(&correlation(layer, &[claim]));
    }
}

/// The inferred range of `k` in `sum(k) [i+k <= N] * w[k] * x[i+k]` honours
/// both `w[1..=K]` and `x[1..=N]`, in every order of the factors: `w[0]` is
/// never read, and the whole of `w` is.
#[test]
fn the_range_of_k_comes_from_every_access_in_any_order() {
    for layer in orders("[i+k <= N]", "w[k]", "x[i+k]") {
        let spec = correlation(&layer, &[]);
        let source = Source::new("guards.dl", spec.as_str());
        let program = analyze(&parse(&source).unwrap()).unwrap();
        let def = program.defs.iter().find(|d| d.name == "y").unwrap();
        let mut ranges = vec![];
        visit_body(&def.body, &mut |node| {
            if let NodeKind::Reduce { range, .. } = &node.node {
                let show = |bounds: &[_]| {
                    let mut shown: Vec<String> = bounds
                        .iter()
                        .map(|a| show_affine(a, &program, &def.var_names))
                        .collect();
                    shown.sort();
                    shown
                };
                ranges.push((show(&range.lowers), show(&range.uppers)));
            }
        });
        assert!(matches!(def.body, Body::Expr(_)));
        assert_eq!(
            ranges,
            vec![(
                vec!["-i+1".to_string(), "1".to_string()],
                vec!["K".to_string(), "N-i".to_string()]
            )],
            "{layer}"
        );
        // And the checks read no w[0]: every claim holds, nothing undefined.
        let claims = [
            "grad w[k] = sum(i) [i+k <= N] * g[i] * x[i+k]".to_string(),
            "grad x[j] = sum(k) [1 <= j-k <= N-1] * g[j-k] * w[k]".to_string(),
        ];
        assert_all_hold(&correlation(&layer, &claims));
    }
}

/// A guard and an unguarded read of the same index: the unguarded one
/// bounds it, the bracket keeps the guarded one in range, in any order.
#[test]
fn unguarded_accesses_bound_the_index_and_the_bracket_the_rest() {
    let layers = orders("[i >= 2]", "a", "x[i-1]");
    let terms = orders("[i >= 2]", "x[i-1]", "1");
    for (layer, term) in layers.iter().zip(&terms) {
        let spec = format!(
            "dim N = 6
input x[N]
param a
y[i] = a * x[i] + {layer}
grad a = sum(i) g[i] * (x[i] + {term})
grad x[j] = a * g[j] + [j <= N-1] * a * g[j+1]
"
        );
        assert_all_hold(&spec);
    }
}

/// The help of an access out of range suggests a bracket, and the product
/// with that bracket anywhere among its factors holds.
#[test]
fn the_suggested_guard_works_anywhere_in_the_product() {
    let layer = "[i >= 2] * w[i] * x[i-1]";
    let spec = shift(layer, &["grad x[j] = w[j+1] * g[j+1]".to_string()]);
    let outcome = check(&spec, 0);
    let claim = &outcome.claims[0];
    assert_ne!(claim.verdict, Verdict::Holds);
    let help = claim
        .problems
        .iter()
        .find_map(|p| p.diagnostic.help().map(|h| h.to_string()))
        .expect("an out-of-range problem with a help");
    assert!(
        help.contains("`[0 <= j <= N-1] * w[j+1]`") && help.contains("anywhere"),
        "unexpected help: {help}"
    );
    for product in orders("[0 <= j <= N-1]", "w[j+1]", "g[j+1]") {
        assert_all_hold(&shift(layer, &[format!("grad x[j] = {product}")]));
    }
}
