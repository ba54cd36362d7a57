//! Stochastic claims end to end (handout Assignment 4): the bundled spec
//! comes out as marked over 50 seeds, planted mistakes are refuted at every
//! one of 20 seeds, the JSON report carries the evidence, and misplaced
//! randomness or parameters out of their domain are diagnostics.
//!
//! Monte Carlo claims run here with `SAMPLES` = 2¹³ draws per point rather
//! than the default 2¹⁷, to keep the debug build fast. That changes no
//! guarantee the tests rely on: the false-alarm level of a true claim holds
//! at any sample count, and the sampled mistakes planted below move the
//! moment by a sizeable fraction of the body's range (a bias of g − m, a
//! variance off by 2·b·(g − b)), far above the ≈ 0.04·a margin that 2¹³
//! samples leave.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dlverify::check_source;
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{ClaimOutcome, FileOutcome, Verdict};
use serde_json::Value;

const SPEC: &str = include_str!("../specs/a4_gradient_quantization.dl");
const SAMPLES: u64 = 1 << 13;

fn check(text: &str, seed: u64) -> FileOutcome {
    check_source(
        Source::new("a4.dl", text),
        &Options {
            seed,
            samples: SAMPLES,
            ..Options::default()
        },
    )
}

/// The handout's quantizer, with a Monte Carlo twin drawn from a uniform.
fn a4(claims: &str) -> String {
    a4_with(
        "bernoulli([a > 0] * ((g[i] - b) / a))",
        "[a > 0] * ((g[i] - b) / a)",
        claims,
    )
}

fn a4_with(law: &str, threshold: &str, claims: &str) -> String {
    format!(
        "dim n = 8
input g[n]
let lo = min(k) g[k]
let hi = max(k) g[k]
let a = hi - lo
let b = lo
random q[i] ~ {law}
let gq[i] = a * q[i] + b
random u[i] ~ uniform(0, 1) for i in 1..=n
let gu[i] = a * [u[i] < {threshold}] + b
{claims}
"
    )
}

fn only_claim(outcome: &FileOutcome) -> &ClaimOutcome {
    assert!(
        outcome.diagnostics.is_empty(),
        "{:?}",
        outcome
            .diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(outcome.claims.len(), 1);
    &outcome.claims[0]
}

#[test]
fn the_bundled_spec_comes_out_as_marked_over_50_seeds() {
    for seed in 0..50 {
        let outcome = check(SPEC, seed);
        assert!(outcome.diagnostics.is_empty(), "seed {seed}");
        assert_eq!(outcome.claims.len(), 13);
        for claim in &outcome.claims {
            assert!(
                claim.status().as_expected(),
                "seed {seed}: {} came out {:?}: {:?}",
                claim.head,
                claim.verdict,
                claim.notes
            );
        }
    }
}

/// Each planted mistake, and what gives it away.
const PLANTED: [(&str, &str); 9] = [
    (
        "a = M, b = 0 claimed optimal",
        "claim minimize Var[gq[i]] over a, b subject to b <= lo, a + b >= hi at (hi, 0)",
    ),
    (
        "the claimed optimum off by 0.1",
        "claim minimize Var[gq[i]] over a, b subject to b <= lo, a + b >= hi at (hi - lo + 0.1, lo - 0.1)",
    ),
    (
        "maximize for minimize",
        "claim maximize Var[gq[i]] over a, b subject to b <= lo, a + b >= hi at (hi - lo, lo)",
    ),
    (
        "eq. (23) with a wrong sign",
        "claim Var[gq[i]] == (g[i] - b) * (a - b - g[i])",
    ),
    (
        "eq. (23) missing the factor a^2",
        "claim a == 0 or Var[gq[i]] == ((g[i] - b) / a) * (1 - (g[i] - b) / a)",
    ),
    (
        "a biased deterministic rounding claimed unbiased",
        "let r[i] = a * [g[i] >= b + a / 2] + b
claim E[r[i]] == g[i]",
    ),
    (
        "the server forgets b",
        "let r[i] = a * q[i]
claim E[r[i]] == g[i]",
    ),
    (
        "eq. (22) with strict inequalities",
        "claim b < g[i] < a + b",
    ),
    (
        "the sampled variance with a wrong sign",
        "claim Var[gu[i]] == (g[i] - b) * (a - b - g[i])",
    ),
];

#[test]
fn planted_mistakes_are_refuted_at_every_seed() {
    for (mistake, claim) in PLANTED {
        for seed in 0..20 {
            let outcome = check(&a4(claim), seed);
            let claim = only_claim(&outcome);
            assert_eq!(
                claim.verdict,
                Verdict::Refuted,
                "{mistake}, seed {seed}: {:?}",
                claim.notes
            );
        }
    }
}

#[test]
fn the_probability_g_over_a_is_caught_exactly_and_by_sampling() {
    for seed in 0..20 {
        // As a Bernoulli parameter it leaves [0, 1]: a diagnostic naming
        // the element and the value, never a clamp.
        let text = a4_with(
            "bernoulli([a > 0] * (g[i] / a))",
            "[a > 0] * ((g[i] - b) / a)",
            "claim E[gq[i]] == g[i]",
        );
        let outcome = check(&text, seed);
        let diagnostic = outcome.diagnostics.first().expect("a diagnostic");
        assert_eq!(
            diagnostic.code().map(|c| c.to_string()).as_deref(),
            Some("dl::eval::distribution_domain"),
            "seed {seed}"
        );
        let message = diagnostic.to_string();
        assert!(
            message.contains("`q[") && message.contains("outside [0, 1]"),
            "{message}"
        );
        // As a threshold on a uniform it is silently clipped by the
        // comparison: the quantizer is then biased, and sampling shows it.
        let text = a4_with(
            "bernoulli([a > 0] * ((g[i] - b) / a))",
            "[a > 0] * (g[i] / a)",
            "claim E[gu[i]] == g[i]",
        );
        let outcome = check(&text, seed);
        assert_eq!(
            only_claim(&outcome).verdict,
            Verdict::Refuted,
            "seed {seed}"
        );
    }
}

fn json_claims(outcome: FileOutcome) -> Vec<Value> {
    let text = dlverify::report::json::render(&[outcome]);
    let value: Value = serde_json::from_str(&text).unwrap();
    value["files"][0]["claims"].as_array().unwrap().clone()
}

fn claim_named<'a>(claims: &'a [Value], head: &str) -> &'a Value {
    claims
        .iter()
        .find(|c| c["claim"] == head)
        .unwrap_or_else(|| panic!("no claim `{head}`"))
}

#[test]
fn the_json_report_carries_estimates_intervals_methods_and_samples() {
    let claims = json_claims(check(SPEC, 3));
    let exact = claim_named(&claims, "claim E[gq[i]] == g[i]");
    assert_eq!(exact["kind"], "condition");
    assert_eq!(exact["method"], "exact");
    let estimates = exact["estimates"].as_array().unwrap();
    // One per point: n = 1, 2, 3, 4 and 8.
    assert_eq!(estimates.len(), 18);
    for e in estimates {
        let (lo, hi) = (e["ci"][0].as_f64().unwrap(), e["ci"][1].as_f64().unwrap());
        let estimate = e["estimate"].as_f64().unwrap();
        let claimed = e["claimed"].as_f64().unwrap();
        assert!(lo <= estimate && estimate <= hi);
        assert!(lo <= claimed && claimed <= hi, "{e}");
        assert_eq!(e["method"], "exact");
        assert!(e["outcomes"].as_u64().unwrap() <= 2);
        assert_eq!(e["holds"], true);
    }
    let sampled = claim_named(&claims, "claim E[gu[i]] == g[i]");
    assert_eq!(sampled["method"], "monte carlo");
    assert_eq!(sampled["samples"], SAMPLES);
    assert_eq!(sampled["level"].as_f64().unwrap(), 1.0 - 1e-6);
    assert_eq!(sampled["tests"], 18);
    let estimates = sampled["estimates"].as_array().unwrap();
    assert_eq!(estimates.len(), 18);
    // Points with 0 < p < 1 vary; the interval is the estimate ± z·SE plus allowances.
    let varying: Vec<&Value> = estimates
        .iter()
        .filter(|e| e["se"].as_f64().unwrap() > 0.0)
        .collect();
    assert!(varying.len() >= 8, "{}", varying.len());
    for e in varying {
        assert_eq!(e["method"], "monte carlo");
        assert_eq!(e["samples"], SAMPLES);
        let width = e["ci"][1].as_f64().unwrap() - e["ci"][0].as_f64().unwrap();
        assert!(
            width > 10.0 * e["se"].as_f64().unwrap() && width < 0.2,
            "{e}"
        );
    }
    let optimum = claim_named(
        &claims,
        "claim minimize Var[gq[i]] over a, b subject to b <= lo, a + b >= hi at (hi - lo, lo)",
    );
    assert_eq!(optimum["kind"], "optimum");
    assert_eq!(optimum["verdict"], "holds");
    assert!(optimum["alternatives"].as_u64().unwrap() > 100);
    assert!(optimum["boundary_alternatives"].as_u64().unwrap() > 10);
    assert!(optimum.get("counterexample").is_none());
}

#[test]
fn a_refuted_optimum_reports_its_best_counterexample() {
    let claim = "claim minimize Var[gq[i]] over a, b subject to b <= lo, a + b >= hi at (hi - lo + 0.1, lo - 0.1)";
    let claims = json_claims(check(&a4(claim), 1));
    let counterexample = &claims[0]["counterexample"];
    let objective = counterexample["objective"].as_f64().unwrap();
    let claimed = counterexample["claimed_objective"].as_f64().unwrap();
    assert!(objective < claimed, "{counterexample}");
    assert_eq!(counterexample["at"].as_array().unwrap().len(), 2);
    assert!(
        claims[0]["notes"]
            .to_string()
            .contains("best counterexample")
    );
}

#[test]
fn several_random_inputs_are_enumerated_exactly_and_normals_sampled() {
    // Hutchinson's trace estimator: E[zᵀ A z] = tr A for Rademacher z,
    // 2^n outcomes at n ≤ 4; normal draws have no finite support.
    let text = "dim n = 4
input A[n, n], mu[n]
hyper s = 0.5
random z[i] ~ rademacher() for i in 1..=n
let t = sum(i) sum(j) z[i] * A[i, j] * z[j]
claim E[t] == sum(i) A[i, i]
random w[i] ~ normal(mu[i], s)
claim E[w[i]^2] == mu[i]^2 + s^2
claim Var[w[i]] == s^2
claim Var[w[i]] == s
";
    for seed in 0..10 {
        let claims = json_claims(check(text, seed));
        let trace = &claims[0];
        assert_eq!(trace["verdict"], "holds", "seed {seed}: {trace}");
        assert_eq!(trace["method"], "exact");
        assert_eq!(trace["max_outcomes"], 16);
        for claim in &claims[1..3] {
            assert_eq!(claim["verdict"], "holds", "seed {seed}: {claim}");
            assert_eq!(claim["method"], "monte carlo");
        }
        assert_eq!(claims[3]["verdict"], "refuted", "seed {seed}");
    }
}

fn diagnostic_codes(text: &str) -> Vec<String> {
    check(text, 0)
        .diagnostics
        .iter()
        .filter_map(|d| d.code().map(|c| c.to_string()))
        .collect()
}

#[test]
fn misplaced_randomness_is_a_diagnostic() {
    let cases = [
        (a4("claim q[i] <= 1"), "dl::analysis::random_read"),
        (a4("claim E[Var[gq[i]]] == 0"), "dl::analysis::nested_moment"),
        (a4("let m = E[gq[1]]\nclaim m == 0"), "dl::analysis::moment_outside_claim"),
        (
            a4("claim minimize Var[gq[i]] over n at (1)"),
            "dl::analysis::optimum_variable",
        ),
        (
            a4("claim minimize Var[gq[i]] over a, b at (1)"),
            // The parser counts the claimed values first.
            "dl::parse::optimum_arity",
        ),
        (
            "dim n = 3\ninput x[n]\nrandom z[i] ~ normal(0, x[i])\nclaim E[z[i]] == 0\n".to_string(),
            "dl::eval::distribution_domain",
        ),
        (
            "dim n = 3\ninput x[n]\nparam w\nrandom z[i] ~ normal(0, 1) for i in 1..=n\nloss L = sum(i) w * z[i] * x[i]\ngrad w = 0\n"
                .to_string(),
            "dl::analysis::random_read",
        ),
    ];
    for (text, code) in cases {
        let codes = diagnostic_codes(&text);
        assert!(
            codes.iter().any(|c| c == code),
            "expected {code}, got {codes:?} for\n{text}"
        );
    }
}

#[test]
fn a_sampled_moment_inside_an_expression_is_not_decided() {
    let outcome = check(&a4("claim E[gu[i]] - g[i] == 0"), 0);
    let claim = only_claim(&outcome);
    assert!(matches!(&claim.verdict, Verdict::Undecided(why) if why.contains("E[x - y] == 0")));
    // Nor is `not` of a sampled comparison: failing to refute proves nothing.
    let outcome = check(&a4("claim not (E[gu[i]] == g[i] + 1)"), 0);
    let claim = only_claim(&outcome);
    assert!(matches!(&claim.verdict, Verdict::Undecided(why) if why.contains("`not`")));
    // The same with exact moments is fine: they substitute as values.
    let outcome = check(&a4("claim E[gq[i]] - g[i] == 0"), 0);
    assert_eq!(only_claim(&outcome).verdict, Verdict::Holds);
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let render = |seed| dlverify::report::json::render(&[check(SPEC, seed)]);
    assert_eq!(render(5), render(5));
    assert_ne!(render(5), render(6));
}

/// `y = (1 + x)² − x²` with x around 1e8: in f64 the squares (~1e16) round
/// by a few units, far above the allowance the claim's own magnitudes
/// (~1e8) give; in double-double they are exact to about 1e-15.
fn cancelling(claim: &str) -> String {
    format!(
        "dim n = 4
input x[n] in (1e8, 2e8)
let y[i] = (1 + x[i])^2 - x[i]^2
{claim}
"
    )
}

fn first_claim(text: &str, seed: u64) -> ClaimOutcome {
    let mut outcome = check(text, seed);
    assert!(outcome.diagnostics.is_empty(), "{text}");
    outcome.claims.remove(0)
}

#[test]
fn an_identity_that_cancels_in_f64_holds_by_double_double() {
    let mut rounding = 0;
    for seed in 0..10 {
        for claim in [
            "claim y[i] - 2 * x[i] - 1 == 0",
            "claim y[i] <= 2 * x[i] + 1",
            "claim 2 * x[i] + 1 >= y[i]",
        ] {
            let c = first_claim(&cancelling(claim), seed);
            assert_eq!(
                c.verdict,
                Verdict::Holds,
                "{claim}, seed {seed}: {:?}",
                c.notes
            );
            if let Some(found) = c.details.get("double_double") {
                rounding += found["rounding"].as_u64().unwrap();
                assert_eq!(found["persist"], 0);
                assert!(
                    c.notes[0].contains("redone in double-double"),
                    "{:?}",
                    c.notes
                );
            }
        }
    }
    // The f64 comparisons did fail: the old allowance alone would refute.
    assert!(rounding > 50, "{rounding}");
}

#[test]
fn its_wrong_twins_are_refuted() {
    for seed in 0..10 {
        // Off by a thousandth: a real difference survives double-double.
        let c = first_claim(&cancelling("claim y[i] - 2 * x[i] - 1.001 == 0"), seed);
        assert_eq!(c.verdict, Verdict::Refuted, "seed {seed}");
        let refuted: usize = c.mismatch_groups.iter().map(|g| g.count).sum();
        assert_eq!(refuted, 10, "every point, seed {seed}");
        assert!(
            c.notes.iter().any(|n| n.contains("not rounding")),
            "{:?}",
            c.notes
        );
        // Equal to rounding is no gap: a strict comparison fails everywhere,
        // also where f64 rounding made the sides look apart.
        let c = first_claim(&cancelling("claim y[i] < 2 * x[i] + 1"), seed);
        assert_eq!(c.verdict, Verdict::Refuted, "seed {seed}");
        let refuted: usize = c.mismatch_groups.iter().map(|g| g.count).sum();
        assert_eq!(refuted, 10, "every point, seed {seed}");
    }
}
