//! Taylor claims (handout Assignment 1): measured rates for right and wrong
//! gradients, the second-order prediction, single precision, the JSON
//! report and the plots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dlverify::check_source;
use dlverify::report;
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{ClaimOutcome, FileOutcome, Verdict};
use serde_json::Value;

/// Logistic regression with weight decay: the bundled A1 spec's loss.
const LOGISTIC: &str = "
dim n = 3
input x[n]
param w[n]
hyper t = 1, lambda = 0.05
let z = sum(k) w[k] * x[k]
loss L = softplus(-t * z) + lambda * sum(k) w[k]^2
grad x[k] = -t * w[k] * sigmoid(-t * z)
";
const LOGISTIC_DW: &str = "grad w[k] = -t * x[k] * sigmoid(-t * z) + 2 * lambda * w[k]";

/// Large curvature: L'' / L' = 6 everywhere.
const STEEP: &str = "
dim n = 3
param w[n]
loss L = sum(k) exp(6 * w[k])
grad w[k] = 6 * exp(6 * w[k])
";

/// Tiny curvature: nearly linear, H about 1e-5.
const FLAT: &str = "
dim n = 3
input x[n]
param w[n]
loss L = sum(k) x[k] * w[k] + 1e-6 * sum(k) w[k]^4
grad w[k] = x[k] + 4e-6 * w[k]^3
grad x[k] = w[k]
";

const EXACT_RATES: &str = "
check taylor one_sided rate ≈ 2 ± 0.15
check taylor central rate ≈ 3 ± 0.15
";

const BOTH_BOUNDS: &str = "
check taylor one_sided rate > 1
check taylor central rate > 2
";

fn check(spec: &str, seed: u64) -> FileOutcome {
    let options = Options {
        seed,
        ..Default::default()
    };
    let outcome = check_source(Source::new("taylor.dl", spec), &options);
    assert!(
        outcome.diagnostics.is_empty(),
        "{spec}\n{:?}",
        outcome.diagnostics
    );
    outcome
}

fn taylor(outcome: &FileOutcome) -> Vec<&ClaimOutcome> {
    outcome
        .claims
        .iter()
        .filter(|c| c.kind == "taylor")
        .collect()
}

/// The fitted rates of a claim in its own precision.
fn rates(claim: &ClaimOutcome) -> Vec<f64> {
    let precision = claim.details["precision"].as_str().unwrap().to_string();
    claim.details["rates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["precision"] == precision.as_str())
        .filter_map(|r| r["rate"].as_f64())
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn right_gradients_measure_two_and_three_over_twenty_seeds() {
    let losses = [
        format!("{LOGISTIC}{LOGISTIC_DW}"),
        STEEP.to_string(),
        FLAT.to_string(),
    ];
    for loss in &losses {
        // `≈` implies the bounds; the bounds are checked on the bundled specs.
        let spec = format!("{loss}{EXACT_RATES}");
        for seed in 0..20 {
            let outcome = check(&spec, seed);
            for claim in taylor(&outcome) {
                assert_eq!(
                    claim.verdict,
                    Verdict::Holds,
                    "seed {seed}, {}:\n{loss}\n{:?}",
                    claim.head,
                    claim.notes
                );
                let expected = if claim.head.contains("one_sided") {
                    2.0
                } else {
                    3.0
                };
                for rate in rates(claim) {
                    assert!(
                        (rate - expected).abs() < 0.15,
                        "seed {seed}, {}: {rate}",
                        claim.head
                    );
                }
            }
        }
    }
}

/// Six slips in the logistic loss's gradient, each leaving a first-order term.
const PLANTED: [&str; 7] = [
    // The data term's sign.
    "grad w[k] = t * x[k] * sigmoid(-t * z) + 2 * lambda * w[k]",
    // d(λw²)/dw as λw.
    "grad w[k] = -t * x[k] * sigmoid(-t * z) + lambda * w[k]",
    // The weight decay forgotten.
    "grad w[k] = -t * x[k] * sigmoid(-t * z)",
    // σ(tz) for σ(−tz).
    "grad w[k] = -t * x[k] * sigmoid(t * z) + 2 * lambda * w[k]",
    // w for x in the data term.
    "grad w[k] = -t * w[k] * sigmoid(-t * z) + 2 * lambda * w[k]",
    // Half the data term.
    "grad w[k] = -0.5 * t * x[k] * sigmoid(-t * z) + 2 * lambda * w[k]",
    // The first weight's gradient only, as if the sum had one term.
    "grad w[k] = [k == 1] * (-t * x[k] * sigmoid(-t * z)) + 2 * lambda * w[k]",
];

#[test]
fn planted_wrong_gradients_measure_one_in_both_schemes() {
    for planted in PLANTED {
        let spec = format!("{LOGISTIC}{planted}\n{BOTH_BOUNDS}");
        for seed in 0..3 {
            let outcome = check(&spec, seed);
            for claim in taylor(&outcome) {
                assert_eq!(claim.verdict, Verdict::Refuted, "{planted}, seed {seed}");
                let rate = median(rates(claim));
                assert!((rate - 1.0).abs() < 0.1, "{planted}: {rate}");
                assert!(
                    claim.notes[0].contains("remainder shrinks like ε¹: the gradient is wrong"),
                    "{:?}",
                    claim.notes
                );
            }
        }
    }
}

#[test]
fn the_measured_second_order_term_matches_half_the_hessian_form() {
    for loss in [format!("{LOGISTIC}{LOGISTIC_DW}"), STEEP.to_string()] {
        let spec = format!("{loss}\ncheck taylor one_sided rate > 1");
        for seed in 0..5 {
            let outcome = check(&spec, seed);
            let claim = taylor(&outcome)[0];
            let second = claim.details["second_order"].as_array().unwrap();
            assert!(!second.is_empty());
            for entry in second {
                let predicted = entry["predicted"].as_f64().unwrap();
                // At the top of the fitted window rounding is far below the
                // remainder, and the next Taylor term a decade smaller still.
                let top = entry["measured"][0][1].as_f64().unwrap();
                assert!(
                    (top - predicted).abs() <= 0.02 * predicted.abs(),
                    "seed {seed}: predicted {predicted}, measured {top}\n{loss}"
                );
            }
            assert!(
                claim
                    .notes
                    .iter()
                    .any(|n| n.starts_with("second order (eq. 7)"))
            );
        }
    }
}

#[test]
fn a_wrong_gradient_makes_the_second_order_quotient_grow() {
    let spec = format!("{LOGISTIC}{}\ncheck taylor one_sided rate > 1", PLANTED[1]);
    let outcome = check(&spec, 0);
    let claim = taylor(&outcome)[0];
    for entry in claim.details["second_order"].as_array().unwrap() {
        let predicted = entry["predicted"].as_f64().unwrap().abs();
        let foot = entry["measured"].as_array().unwrap().last().unwrap()[1]
            .as_f64()
            .unwrap()
            .abs();
        assert!(foot > 1e3 * predicted, "{foot} vs {predicted}");
    }
}

/// One weight at a given value: directions are ±1, so nothing but the
/// seed's choice of sign varies.
const SCALAR: &str = "
param w = 0.5
hyper x = 1.5, t = 1, lambda = 0.05, mu = 0.0003
loss L = softplus(-t * x * w) + lambda * w^2 + mu * w
";

#[test]
fn in_f32_only_the_central_check_tells_a_slightly_wrong_gradient() {
    let right = "grad w = -t * x * sigmoid(-t * x * w) + 2 * lambda * w + mu";
    // Off by mu = 3e-4.
    let wrong = "grad w = -t * x * sigmoid(-t * x * w) + 2 * lambda * w";
    let claims = "
check taylor one_sided rate > 1 precision f32
check taylor central rate > 2 precision f32
check taylor one_sided rate > 1
check taylor central rate > 2
";
    for seed in 0..8 {
        let verdicts = |grad: &str| -> Vec<Verdict> {
            let outcome = check(&format!("{SCALAR}{grad}\n{claims}"), seed);
            taylor(&outcome).iter().map(|c| c.verdict.clone()).collect()
        };
        use Verdict::{Holds, Refuted};
        assert_eq!(verdicts(right), [Holds, Holds, Holds, Holds], "seed {seed}");
        // f32 one-sided: the same verdict as for the right gradient.
        assert_eq!(
            verdicts(wrong),
            [Holds, Refuted, Refuted, Refuted],
            "seed {seed}"
        );
    }
}

#[test]
fn in_f32_a_right_gradient_still_passes_both_checks() {
    let spec = format!(
        "{LOGISTIC}{LOGISTIC_DW}
check taylor one_sided rate > 1 precision f32
check taylor central rate > 2 precision f32
"
    );
    for seed in 0..10 {
        let outcome = check(&spec, seed);
        for claim in taylor(&outcome) {
            assert_eq!(
                claim.verdict,
                Verdict::Holds,
                "seed {seed}: {:?}",
                claim.notes
            );
            assert!(
                claim
                    .notes
                    .iter()
                    .any(|n| n.starts_with("in f64 the same check"))
            );
        }
    }
}

#[test]
fn the_command_line_precision_applies_to_claims_that_name_none() {
    let spec = format!("{LOGISTIC}{LOGISTIC_DW}\ncheck taylor central rate > 2");
    let options = Options {
        taylor_precision: Some(dlverify::syntax::ast::Precision::F32),
        ..Default::default()
    };
    let outcome = check_source(Source::new("taylor.dl", &spec), &options);
    let claim = taylor(&outcome)[0];
    assert_eq!(claim.details["precision"], "f32");
    assert_eq!(claim.verdict, Verdict::Holds);
}

#[test]
fn j_is_the_last_grad_claim_above_the_taylor_claim() {
    // The wrong claim comes after the Taylor claim, so J does not use it.
    let spec = format!(
        "{LOGISTIC}{LOGISTIC_DW}\n{BOTH_BOUNDS}\n{}\n  expect fail \"planted\"\n",
        PLANTED[0]
    );
    let outcome = check(&spec, 1);
    for claim in taylor(&outcome) {
        assert_eq!(claim.verdict, Verdict::Holds);
        let sources = claim.details["jacobian"].as_array().unwrap();
        let w = sources.iter().find(|s| s["tensor"] == "w").unwrap();
        assert_eq!(w["source"], "grad w[k] (line 9)");
    }
}

#[test]
fn a_tensor_without_a_grad_claim_uses_autodiff_and_says_so() {
    let spec = "
dim n = 3
input x[n]
param w[n]
loss L = sum(k) exp(w[k] * x[k])
grad w[k] = x[k] * exp(w[k] * x[k])
check taylor one_sided rate > 1
";
    let outcome = check(spec, 0);
    let claim = taylor(&outcome)[0];
    assert_eq!(claim.verdict, Verdict::Holds);
    assert!(
        claim
            .notes
            .iter()
            .any(|n| n.contains("J for x") && n.contains("autodiff")),
        "{:?}",
        claim.notes
    );
}

#[test]
fn an_undefined_closed_form_leaves_the_claim_undecided() {
    let spec = "
dim n = 3
param w[n]
loss L = sum(k) w[k]^2
grad w[k] = 2 * w[k + 1]
  expect fail \"reads past the end\"
check taylor one_sided rate > 1
";
    let outcome = check(spec, 0);
    let claim = taylor(&outcome)[0];
    match &claim.verdict {
        Verdict::Undecided(why) => assert!(why.starts_with("J is undefined"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_quadratic_loss_has_no_central_remainder_to_measure() {
    let spec = "
dim n = 3
input x[n]
param w[n]
loss L = sum(k) ((w[k] - x[k])^2 + w[k] * x[k])
grad w[k] = 2 * (w[k] - x[k]) + x[k]
grad x[k] = 2 * (x[k] - w[k]) + w[k]
check taylor central rate > 2
check taylor central rate ≈ 3
";
    let outcome = check(spec, 0);
    let claims = taylor(&outcome);
    assert_eq!(claims[0].verdict, Verdict::Holds);
    assert!(claims[0].notes[0].contains("at the rounding floor for every ε"));
    assert!(matches!(claims[1].verdict, Verdict::Undecided(_)));
}

#[test]
fn rates_that_are_not_positive_are_diagnosed() {
    for bad in [
        "check taylor central rate > 0",
        "check taylor central rate ≈ 3 ± 0",
    ] {
        let spec = format!("{STEEP}\n{bad}");
        let outcome = check_source(Source::new("bad.dl", &spec), &Options::default());
        let codes: Vec<String> = outcome
            .diagnostics
            .iter()
            .filter_map(|d| d.code().map(|c| c.to_string()))
            .collect();
        assert_eq!(codes, ["dl::analysis::taylor_rate"], "{bad}");
    }
}

#[test]
fn the_json_report_carries_rates_ladder_remainders_and_rounding_point() {
    let spec = format!("{LOGISTIC}{LOGISTIC_DW}\n{BOTH_BOUNDS}");
    let outcome = check(&spec, 0);
    let json: Value = serde_json::from_str(&report::json::render(&[outcome])).unwrap();
    let claims: Vec<&Value> = json["files"][0]["claims"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "taylor")
        .collect();
    assert_eq!(claims.len(), 2);
    for claim in claims {
        let ladder = claim["ladder"].as_array().unwrap();
        assert!(ladder.len() >= 12);
        assert_eq!(ladder[0], 1.0);
        let rates = claim["rates"].as_array().unwrap();
        assert!(!rates.is_empty());
        assert!(
            rates
                .iter()
                .all(|r| r["rate"].is_f64() && r["sizes"].is_object())
        );
        assert!(claim["rate"].is_f64());
        assert!(claim["rounding_point"].as_f64().unwrap() < 1e-3);
        assert!(claim["smallest_remainder"].as_f64().unwrap() > 0.0);
        let remainders = claim["remainders"].as_array().unwrap();
        assert!(!remainders.is_empty());
        for r in remainders {
            let values = r["remainders"].as_array().unwrap();
            assert!(values.len() >= 12 && values.len() <= ladder.len());
            assert!(values.iter().any(Value::is_f64));
        }
        assert!(!claim["second_order"].as_array().unwrap().is_empty());
    }
}

/// A minimal well-formedness check: every tag closes, in order.
fn well_formed(svg: &str) -> Result<usize, String> {
    let mut stack: Vec<String> = vec![];
    let mut elements = 0;
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').ok_or("unclosed tag")? + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or(format!("stray </{name}>"))?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
        } else {
            elements += 1;
            let name = tag
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches('/');
            if !tag.ends_with('/') {
                stack.push(name.to_string());
            }
        }
    }
    if stack.is_empty() {
        Ok(elements)
    } else {
        Err(format!("unclosed {stack:?}"))
    }
}

#[test]
fn plots_are_well_formed_svg_holding_every_series_and_reproducible() {
    let spec = format!(
        "exercise \"Plot test\"\n{LOGISTIC}{LOGISTIC_DW}\ncheck taylor central rate > 2 precision f32\n"
    );
    let dir = std::env::temp_dir().join(format!("dlverify-plots-{}", std::process::id()));
    let mut bytes = vec![];
    for _ in 0..2 {
        let outcome = check(&spec, 3);
        let written = report::plot::write_plots(&dir, &[outcome]).unwrap();
        assert_eq!(written.len(), 1);
        assert!(
            written[0].ends_with("taylor_line11_taylor_central.svg"),
            "{written:?}"
        );
        bytes.push(std::fs::read(&written[0]).unwrap());
    }
    assert_eq!(bytes[0], bytes[1], "the same seed draws the same file");
    let svg = String::from_utf8(bytes.remove(0)).unwrap();
    let elements = well_formed(&svg).unwrap();
    assert!(elements > 50);
    assert!(svg.starts_with("<svg"));
    for label in [
        "one-sided (f64)",
        "central (f64)",
        "one-sided (f32)",
        "central (f32)",
        "slope 1",
        "slope 2",
        "slope 3",
        "rounding floor (f64)",
        "rounding floor (f32)",
        "Plot test: check taylor central rate &gt; 2 precision f32 (line 11)",
    ] {
        assert!(svg.contains(label), "missing {label}");
    }
    // Four measured series drawn as lines, each with a marker per point.
    assert!(svg.matches("<polyline").count() >= 4);
    assert!(svg.matches("<circle").count() > 40);
    std::fs::remove_dir_all(&dir).unwrap();
}
