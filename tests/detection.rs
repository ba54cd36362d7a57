//! Detection: planted mistakes in hand-derived gradients must be refuted,
//! at exactly the elements that are wrong, and the correct gradients they
//! were planted in must pass.
//!
//! Every spec is one of the handout's layers plus one `grad` claim:
//! - Assignment 2, weight normalization: `y[i] = (s[i] + b[i]) / norm[i]`,
//!   `n = 5, m = 3`;
//! - Assignment 3, the recurrent sequence:
//!   `y[i] = a * (x[i] + x[i+2]) + b for i in 1..=N-2`, `N = 8`.
//!
//! Each verdict is asserted for 20 seeds, and the wrong elements are worked
//! out by hand from the mistake, then compared with the engine's groups size
//! by size. The sweeps the expectations rely on are themselves asserted in
//! `the_sweeps_are_the_ones_the_expectations_assume`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dlverify::analysis::Sizes;
use dlverify::check_source;
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{ClaimOutcome, ClaimStatus, ElementGroup, FileOutcome, Verdict};

const SEEDS: std::ops::Range<u64> = 0..20;

/// Per axis, an inclusive 1-based `(lo, hi)`; a scalar's block is empty.
type Block = Vec<(i64, i64)>;
/// Blocks of elements per size, the size written `N = 8` or `n = 5, m = 3`.
type Elements = Vec<(String, Vec<Block>)>;
/// Undefined elements per size and cause: (sizes, diagnostic code, blocks).
type Undefined = Vec<(String, String, Vec<Block>)>;

// ---------------------------------------------------------------------------
// The layers.

/// The sizes the A2 layer is checked at: the smallest, the bumps and `n = 5, m = 3`.
const A2_SWEEP: [(i64, i64); 7] = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (4, 4), (5, 3)];
/// The sizes the A3 layer is checked at: `N = 3` is the smallest with an output.
const A3_SWEEP: [i64; 5] = [3, 4, 5, 6, 8];

/// Assignment 2 with one claim.
fn a2(claim: &str) -> String {
    format!(
        "exercise \"A2 with a planted claim\"
dim n = 5, m = 3
input x[n]
param w[m, n], b[m]
let s[i]    = sum(k) w[i,k] * x[k]
let norm[i] = sqrt(sum(k) w[i,k]^2)
y[i] = (s[i] + b[i]) / norm[i]
{claim}
"
    )
}

/// Assignment 2 with a square weight (`m = n`), where transposing `w` is
/// well-formed and so must be caught by the numbers, not by the analysis.
fn a2_square(claim: &str) -> String {
    format!(
        "dim n = 4
input x[n]
param w[n, n], b[n]
let s[i]    = sum(k) w[i,k] * x[k]
let norm[i] = sqrt(sum(k) w[i,k]^2)
y[i] = (s[i] + b[i]) / norm[i]
{claim}
"
    )
}

/// Assignment 3 with one claim.
fn a3(claim: &str) -> String {
    format!(
        "exercise \"A3 with a planted claim\"
dim N = 8
input x[N]
param a, b
y[i] = a * (x[i] + x[i+2]) + b     for i in 1..=N-2
{claim}
"
    )
}

const A2_DB: &str = "grad b[i] = g[i] / norm[i]";
const A2_DX: &str = "grad x[j] = sum(i) g[i] * w[i,j] / norm[i]";
const A2_DW: &str = "grad w[i,j] = g[i] * (x[j] / norm[i] - (s[i] + b[i]) * w[i,j] / norm[i]^3)";

const A3_DB: &str = "grad b = sum(i) g[i]";
const A3_DA: &str = "grad a = sum(i) g[i] * (x[i] + x[i+2])";
/// Eq. (19) corrected for every N >= 3.
const A3_DX: &str = "
grad x[j] = a * (g[j] + g[j-2])   if 3 <= j <= N-2
          | a * g[j]              if j <= 2 and j <= N-2
          | a * g[j-2]            if j >= 3 and j > N-2
          | 0                     otherwise";
/// The same with Iverson brackets as zero padding.
const A3_DX_PADDED: &str = "grad x[j] = a * ([j <= N-2] * g[j] + [j >= 3] * g[j-2])";

// ---------------------------------------------------------------------------
// Helpers.

fn options(seed: u64) -> Options {
    Options {
        seed,
        ..Default::default()
    }
}

fn check(spec: &str, seed: u64) -> FileOutcome {
    check_source(Source::new("planted.dl", spec), &options(seed))
}

/// The one claim of `spec`, after checking that nothing stopped the file.
fn the_claim(spec: &str, seed: u64) -> ClaimOutcome {
    the_claim_with(spec, &options(seed))
}

fn the_claim_with(spec: &str, options: &Options) -> ClaimOutcome {
    let mut outcome = check_source(Source::new("planted.dl", spec), options);
    assert!(
        outcome.diagnostics.is_empty(),
        "seed {}: the spec did not check cleanly: {:?}\n{spec}",
        options.seed,
        outcome.diagnostics
    );
    assert_eq!(outcome.claims.len(), 1, "one claim per spec\n{spec}");
    outcome.claims.remove(0)
}

fn sizes_string(sizes: &Sizes) -> String {
    sizes
        .named()
        .map(|(name, value)| format!("{name} = {value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn a2_sizes(n: i64, m: i64) -> String {
    format!("n = {n}, m = {m}")
}

fn a3_sizes(n: i64) -> String {
    format!("N = {n}")
}

/// The elements the engine calls wrong (claimed ≠ autodiff), per size.
fn wrong_elements(claim: &ClaimOutcome) -> Elements {
    claim.mismatch_groups.iter().map(elements).collect()
}

/// The elements where the claimed formula is undefined, per size and cause.
fn undefined_elements(claim: &ClaimOutcome) -> Undefined {
    let mut out: Undefined = claim
        .problems
        .iter()
        .map(|p| {
            let code = p
                .diagnostic
                .code()
                .map_or_else(|| "no code".to_string(), |c| c.to_string());
            let (sizes, blocks) = elements(&p.elements);
            (sizes, code, blocks)
        })
        .collect();
    out.sort();
    out
}

fn elements(group: &ElementGroup) -> (String, Vec<Block>) {
    let count: i64 = group
        .blocks
        .iter()
        .map(|b| b.iter().map(|(lo, hi)| hi - lo + 1).product::<i64>())
        .sum();
    assert_eq!(
        count as usize, group.count,
        "the blocks {:?} at {} do not hold `count` elements",
        group.blocks, group.sizes
    );
    (sizes_string(&group.sizes), group.blocks.clone())
}

/// One block per size: the whole of an A2 tensor of `shape(n, m)`.
fn whole_a2_tensor(
    sizes: impl IntoIterator<Item = (i64, i64)>,
    shape: impl Fn(i64, i64) -> Block,
) -> Elements {
    sizes
        .into_iter()
        .map(|(n, m)| (a2_sizes(n, m), vec![shape(n, m)]))
        .collect()
}

/// One block per size: the whole of an A3 tensor with `len(N)` elements.
fn whole_a3_vector(sizes: impl IntoIterator<Item = i64>, len: impl Fn(i64) -> i64) -> Elements {
    sizes
        .into_iter()
        .map(|n| (a3_sizes(n), vec![vec![(1, len(n))]]))
        .collect()
}

/// A scalar wrong at each of `sizes`.
fn scalar_at(sizes: impl IntoIterator<Item = i64>) -> Elements {
    sizes
        .into_iter()
        .map(|n| (a3_sizes(n), vec![vec![]]))
        .collect()
}

/// The claim holds at every seed: no mismatch, no problem, every guard passes.
fn assert_holds(spec: &str) {
    for seed in SEEDS {
        let claim = the_claim(spec, seed);
        assert_eq!(
            claim.verdict,
            Verdict::Holds,
            "seed {seed}: a correct claim was not accepted: {:?} {:?}\n{spec}",
            claim.mismatches,
            claim.problems
        );
        assert_eq!(claim.status(), ClaimStatus::Pass);
        assert!(claim.mismatch_groups.is_empty() && claim.problems.is_empty());
        for guard in &claim.cross_checks {
            assert!(guard.passed, "seed {seed}: {} failed\n{spec}", guard.name);
            assert!(
                guard.compared > 0,
                "seed {seed}: {} did not run",
                guard.name
            );
        }
    }
}

/// The claim is refuted at every seed, wrong at exactly `wrong` and undefined
/// at exactly `undefined`; autodiff itself stays confirmed by finite
/// differences, so the refutation is the claim's fault.
fn assert_caught(spec: &str, wrong: &Elements, undefined: &Undefined) {
    for seed in SEEDS {
        let claim = the_claim(spec, seed);
        assert_eq!(
            claim.verdict,
            Verdict::Refuted,
            "seed {seed}: the planted mistake was not refuted\n{spec}"
        );
        assert_eq!(claim.status(), ClaimStatus::Fail);
        assert_eq!(
            &wrong_elements(&claim),
            wrong,
            "seed {seed}: wrong elements\n{spec}"
        );
        assert_eq!(
            &undefined_elements(&claim),
            undefined,
            "seed {seed}: undefined elements\n{spec}"
        );
        let fd = claim
            .cross_checks
            .iter()
            .find(|c| c.name == "finite differences")
            .expect("a finite-difference guard");
        assert!(
            fd.passed && fd.compared > 0,
            "seed {seed}: {}\n{spec}",
            fd.detail
        );
        // The listed mismatches are some of the grouped elements, and differ.
        for m in &claim.mismatches {
            let at = sizes_string(&m.sizes);
            let blocks = wrong
                .iter()
                .find(|(s, _)| *s == at)
                .map(|(_, b)| b)
                .unwrap_or_else(|| panic!("seed {seed}: mismatch listed at {at}"));
            assert!(
                blocks.iter().any(|b| inside(&m.index, b)),
                "seed {seed}: mismatch at {:?} outside {blocks:?}",
                m.index
            );
            assert!(m.expected != m.actual);
        }
        let counted: usize = claim.mismatch_groups.iter().map(|g| g.count).sum();
        assert_eq!(claim.mismatches.len(), counted.min(20));
    }
}

fn inside(index: &[i64], block: &Block) -> bool {
    index.len() == block.len()
        && index
            .iter()
            .zip(block)
            .all(|(k, (lo, hi))| lo <= k && k <= hi)
}

fn undefined_at(sizes: String, code: &str, blocks: Vec<Block>) -> (String, String, Vec<Block>) {
    (sizes, code.to_string(), blocks)
}

const OUT_OF_RANGE: &str = "dl::eval::index_out_of_range";
const AMBIGUOUS: &str = "dl::eval::ambiguous_cases";

// ---------------------------------------------------------------------------
// The sweeps and the handout's specs.

#[test]
fn the_sweeps_are_the_ones_the_expectations_assume() {
    let outcome = check(&a2(A2_DB), 0);
    let sizes: Vec<String> = outcome.sizes.iter().map(sizes_string).collect();
    let expected: Vec<String> = A2_SWEEP.iter().map(|&(n, m)| a2_sizes(n, m)).collect();
    assert_eq!(sizes, expected);
    assert_eq!(outcome.claims[0].sizes.len(), A2_SWEEP.len());

    let outcome = check(&a3(A3_DB), 0);
    let sizes: Vec<String> = outcome.sizes.iter().map(sizes_string).collect();
    let expected: Vec<String> = A3_SWEEP.iter().map(|&n| a3_sizes(n)).collect();
    assert_eq!(sizes, expected);
    assert_eq!(outcome.claims[0].sizes.len(), A3_SWEEP.len());
}

#[test]
fn handout_specs_come_out_as_expected_for_every_seed() {
    let specs = [
        (
            "a2_weight_normalization.dl",
            include_str!("../specs/a2_weight_normalization.dl"),
            // 4 gradient claims and 4 Taylor claims.
            8,
        ),
        (
            "a3_recurrent_sequence.dl",
            include_str!("../specs/a3_recurrent_sequence.dl"),
            // 6 gradient claims and 3 Taylor claims.
            9,
        ),
    ];
    for (name, text, claims) in specs {
        for seed in SEEDS {
            let outcome = check_source(Source::new(name, text), &options(seed));
            assert!(outcome.diagnostics.is_empty(), "{name}, seed {seed}");
            assert_eq!(outcome.claims.len(), claims, "{name}");
            for claim in &outcome.claims {
                assert!(
                    claim.status().as_expected(),
                    "{name}, seed {seed}: {} at line {} came out {}",
                    claim.head,
                    claim.line,
                    claim.status().as_str()
                );
                // An erratum is refuted, not left undecided.
                let expected = if claim.expect_fail.is_some() {
                    Verdict::Refuted
                } else {
                    Verdict::Holds
                };
                assert_eq!(claim.verdict, expected, "{name}, line {}", claim.line);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Assignment 3: boundaries and cases of dx.

#[test]
fn correct_a3_gradients_hold() {
    for claim in [A3_DB, A3_DA, A3_DX, A3_DX_PADDED] {
        assert_holds(&a3(claim));
    }
}

#[test]
fn off_by_one_upper_bound_of_the_middle_case_is_caught() {
    // `N-3` for `N-2`: dx[N-2] takes the last case, a*g[N-4], and loses
    // a*g[N-2]. Only when N-2 >= 3 does the middle case exist at all.
    let planted = "
grad x[j] = a * (g[j] + g[j-2])   if 3 <= j <= N-3
          | a * g[j]              if j <= 2 and j <= N-2
          | a * g[j-2]            if j >= 3 and j > N-3
          | 0                     otherwise";
    assert_holds(&a3(A3_DX));
    let wrong: Elements = A3_SWEEP
        .into_iter()
        .filter(|&n| n >= 5)
        .map(|n| (a3_sizes(n), vec![vec![(n - 2, n - 2)]]))
        .collect();
    assert_eq!(wrong.last().unwrap(), &(a3_sizes(8), vec![vec![(6, 6)]]));
    assert_caught(&a3(planted), &wrong, &vec![]);
}

#[test]
fn overlapping_cases_that_disagree_at_n_minus_2_are_caught() {
    // `j >= N-2` in the last case overlaps the middle case at j = N-2,
    // where they give a*g[N-4] and a*(g[N-2] + g[N-4]).
    let planted = "
grad x[j] = a * (g[j] + g[j-2])   if 3 <= j <= N-2
          | a * g[j]              if j <= 2 and j <= N-2
          | a * g[j-2]            if j >= 3 and j >= N-2
          | 0                     otherwise";
    assert_holds(&a3(A3_DX));
    let undefined: Undefined = A3_SWEEP
        .into_iter()
        .filter(|&n| n >= 5)
        .map(|n| undefined_at(a3_sizes(n), AMBIGUOUS, vec![vec![(n - 2, n - 2)]]))
        .collect();
    assert_caught(&a3(planted), &vec![], &undefined);
}

#[test]
fn first_case_reading_g_2_at_the_smallest_size_is_caught() {
    // The brief's form of eq. (19): right for N >= 4, but at N = 3 x[2]
    // feeds no output and the first case reads g[2], past g[1..=1].
    let planted = "
grad x[j] = a * g[j]              if j <= 2
          | a * (g[j] + g[j-2])   if 3 <= j <= N-2
          | a * g[j-2]            otherwise";
    assert_holds(&a3(A3_DX));
    let undefined = vec![undefined_at(a3_sizes(3), OUT_OF_RANGE, vec![vec![(2, 2)]])];
    assert_caught(&a3(planted), &vec![], &undefined);
}

#[test]
fn hard_coded_default_size_is_caught() {
    // `6` for `N-2` is right at N = 8 only. Below, `[j <= 6]` lets `g[j]`
    // read past g[1..=N-2] at j = N-1 and j = N; above, it drops g[7..=N-2].
    let planted = a3("grad x[j] = a * ([j <= 6] * g[j] + [j >= 3] * g[j-2])");
    assert_holds(&a3(A3_DX_PADDED));
    let undefined: Undefined = A3_SWEEP
        .into_iter()
        .filter(|&n| n < 8)
        .map(|n| undefined_at(a3_sizes(n), OUT_OF_RANGE, vec![vec![(n - 1, n)]]))
        .collect();
    assert_caught(&planted, &vec![], &undefined);

    for seed in SEEDS {
        // Past the default, the elements whose g[j] the bracket drops are
        // wrong too. `--dim` raises the largest size, but the small sizes
        // are still checked, so the claim cannot pass by choice of size.
        let at_ten = Options {
            seed,
            dims: vec![("N".to_string(), 10)],
            ..Default::default()
        };
        let claim = the_claim_with(&planted, &at_ten);
        assert_eq!(claim.verdict, Verdict::Refuted, "seed {seed}");
        assert_eq!(
            wrong_elements(&claim),
            vec![(a3_sizes(10), vec![vec![(7, 8)]])]
        );
        assert_eq!(
            claim.problems.len(),
            4,
            "seed {seed}: undefined at N = 3, 4, 5, 6"
        );
    }
}

#[test]
fn shift_in_the_wrong_direction_is_caught() {
    // x[j] feeds y[j-2], not y[j+2]: g[j+2] for g[j-2] (with its guard
    // moved along). The two disagree wherever either term is present:
    // j >= 3 or j <= N-4.
    let planted = a3("grad x[j] = a * ([j <= N-2] * g[j] + [j <= N-4] * g[j+2])");
    assert_holds(&a3(A3_DX_PADDED));
    let wrong: Elements = vec![
        (a3_sizes(3), vec![vec![(3, 3)]]),
        (a3_sizes(4), vec![vec![(3, 4)]]),
        (a3_sizes(5), vec![vec![(1, 1)], vec![(3, 5)]]),
        (a3_sizes(6), vec![vec![(1, 6)]]),
        (a3_sizes(8), vec![vec![(1, 8)]]),
    ];
    assert_caught(&planted, &wrong, &vec![]);
}

#[test]
fn missing_factor_a_in_dx_is_caught() {
    // Everything is off by the factor a, except where dx is zero: x[2] at N = 3.
    let planted = a3("grad x[j] = [j <= N-2] * g[j] + [j >= 3] * g[j-2]");
    assert_holds(&a3(A3_DX_PADDED));
    let mut wrong = whole_a3_vector(A3_SWEEP.into_iter().skip(1), |n| n);
    wrong.insert(0, (a3_sizes(3), vec![vec![(1, 1)], vec![(3, 3)]]));
    assert_caught(&planted, &wrong, &vec![]);
}

// ---------------------------------------------------------------------------
// Assignment 3: the scalar gradients.

#[test]
fn grad_b_as_a_single_term_is_caught() {
    // b feeds every output, so db sums g; g[1] alone is right only when
    // there is one output, at N = 3.
    assert_holds(&a3(A3_DB));
    let wrong = scalar_at(A3_SWEEP.into_iter().filter(|&n| n >= 4));
    assert_caught(&a3("grad b = g[1]"), &wrong, &vec![]);
}

#[test]
fn dropped_term_in_grad_a_is_caught() {
    assert_holds(&a3(A3_DA));
    let wrong = scalar_at(A3_SWEEP);
    assert_caught(&a3("grad a = sum(i) g[i] * x[i]"), &wrong, &vec![]);
}

#[test]
fn factor_of_two_in_grad_a_is_caught() {
    assert_holds(&a3(A3_DA));
    let wrong = scalar_at(A3_SWEEP);
    assert_caught(
        &a3("grad a = 2 * sum(i) g[i] * (x[i] + x[i+2])"),
        &wrong,
        &vec![],
    );
}

#[test]
fn x_i_minus_2_for_x_i_plus_2_in_grad_a_is_caught() {
    // The inferred range of i shrinks to 3..=N-2, so the sum is not even
    // over the outputs; where that range is empty (N = 3, 4) the claim is
    // an empty sum, 0. It is wrong at every size of the sweep.
    let planted = a3("grad a = sum(i) g[i] * (x[i] + x[i-2])");
    assert_holds(&a3(A3_DA));
    let wrong = scalar_at(A3_SWEEP);
    assert_caught(&planted, &wrong, &vec![]);
}
// ---------------------------------------------------------------------------
// Assignment 2: weight normalization.

#[test]
fn correct_a2_gradients_hold() {
    for claim in [A2_DB, A2_DX, A2_DW] {
        assert_holds(&a2(claim));
    }
}

/// Every element of dw, at every size of the sweep.
fn all_of_dw() -> Elements {
    whole_a2_tensor(A2_SWEEP, |n, m| vec![(1, m), (1, n)])
}

#[test]
fn sign_flip_in_dw_is_caught() {
    assert_holds(&a2(A2_DW));
    let planted = "grad w[i,j] = g[i] * (x[j] / norm[i] + (s[i] + b[i]) * w[i,j] / norm[i]^3)";
    assert_caught(&a2(planted), &all_of_dw(), &vec![]);
}

#[test]
fn wrong_power_of_the_norm_in_dw_is_caught() {
    assert_holds(&a2(A2_DW));
    let planted = "grad w[i,j] = g[i] * (x[j] / norm[i] - (s[i] + b[i]) * w[i,j] / norm[i]^2)";
    assert_caught(&a2(planted), &all_of_dw(), &vec![]);
}

#[test]
fn dropped_second_term_of_dw_is_caught() {
    // Forgetting that norm[i] depends on w too.
    assert_holds(&a2(A2_DW));
    let planted = "grad w[i,j] = g[i] * x[j] / norm[i]";
    assert_caught(&a2(planted), &all_of_dw(), &vec![]);
}

#[test]
fn factor_of_two_from_the_square_root_in_dw_is_caught() {
    // d||w||/dw = w/||w||, not 2w/||w||.
    assert_holds(&a2(A2_DW));
    let planted = "grad w[i,j] = g[i] * (x[j] / norm[i] - 2 * (s[i] + b[i]) * w[i,j] / norm[i]^3)";
    assert_caught(&a2(planted), &all_of_dw(), &vec![]);
}

#[test]
fn dropped_bias_in_dw_is_caught() {
    // y's numerator is s + b, not s.
    assert_holds(&a2(A2_DW));
    let planted = "grad w[i,j] = g[i] * (x[j] / norm[i] - s[i] * w[i,j] / norm[i]^3)";
    assert_caught(&a2(planted), &all_of_dw(), &vec![]);
}

#[test]
fn summing_dw_over_the_rows_as_printed_is_caught() {
    // Eq. (15) as printed: sum_k g[k] where g[i] belongs. With one row the
    // sum is g[1] and the claim is right; with two or more, every element
    // is wrong.
    assert_holds(&a2(A2_DW));
    let planted =
        "grad w[i,j] = sum(k) g[k] * (x[j] / norm[i] - (s[i] + b[i]) * w[i,j] / norm[i]^3)";
    let wrong = whole_a2_tensor(A2_SWEEP.into_iter().filter(|&(_, m)| m >= 2), |n, m| {
        vec![(1, m), (1, n)]
    });
    assert_eq!(wrong[0], (a2_sizes(1, 2), vec![vec![(1, 2), (1, 1)]]));
    assert_caught(&a2(planted), &wrong, &vec![]);
}

#[test]
fn missing_norm_in_db_is_caught() {
    assert_holds(&a2(A2_DB));
    let wrong = whole_a2_tensor(A2_SWEEP, |_, m| vec![(1, m)]);
    assert_caught(&a2("grad b[i] = g[i]"), &wrong, &vec![]);
}

#[test]
fn summing_db_over_the_rows_is_caught() {
    // b[i] feeds y[i] only; summing over the rows is right only for m = 1.
    assert_holds(&a2(A2_DB));
    let wrong = whole_a2_tensor(A2_SWEEP.into_iter().filter(|&(_, m)| m >= 2), |_, m| {
        vec![(1, m)]
    });
    assert_caught(&a2("grad b[i] = sum(k) g[k] / norm[k]"), &wrong, &vec![]);
}

#[test]
fn missing_norm_in_dx_is_caught() {
    assert_holds(&a2(A2_DX));
    let wrong = whole_a2_tensor(A2_SWEEP, |n, _| vec![(1, n)]);
    assert_caught(&a2("grad x[j] = sum(i) g[i] * w[i,j]"), &wrong, &vec![]);
}

#[test]
fn transposed_w_in_dx_is_caught() {
    let planted = "grad x[j] = sum(i) g[i] * w[j,i] / norm[i]";

    // With m != n the analysis rejects it before any number is drawn: `i`
    // would run over g's m rows and w's n columns at once.
    for seed in [0, 1] {
        let outcome = check(&a2(planted), seed);
        assert!(outcome.claims.is_empty());
        let codes: Vec<String> = outcome
            .diagnostics
            .iter()
            .filter_map(|d| d.code().map(|c| c.to_string()))
            .collect();
        assert_eq!(codes, vec!["dl::analysis::shape_mismatch".to_string()]);
    }

    // With a square w it is well-formed, and wrong wherever there is more
    // than one row: w[j,i] and w[i,j] coincide only for n = 1.
    let sweep: Vec<String> = check(&a2_square(A2_DX), 0)
        .sizes
        .iter()
        .map(sizes_string)
        .collect();
    assert_eq!(sweep, ["n = 1", "n = 2", "n = 3", "n = 4"]);
    assert_holds(&a2_square(A2_DX));
    let wrong: Elements = (2..=4)
        .map(|n| (format!("n = {n}"), vec![vec![(1, n)]]))
        .collect();
    assert_caught(&a2_square(planted), &wrong, &vec![]);
}

// ---------------------------------------------------------------------------
// Margins: the tolerances are nowhere near the edge.

/// Every correct claim above.
fn correct_specs() -> Vec<String> {
    let mut specs: Vec<String> = [A2_DB, A2_DX, A2_DW].into_iter().map(a2).collect();
    specs.push(a2_square(A2_DX));
    specs.extend([A3_DB, A3_DA, A3_DX, A3_DX_PADDED].into_iter().map(a3));
    specs
}

/// Planted mistakes that are defined everywhere (wrong values, no problems).
fn wrong_value_specs() -> Vec<String> {
    let mut specs: Vec<String> = [
        "grad w[i,j] = g[i] * (x[j] / norm[i] + (s[i] + b[i]) * w[i,j] / norm[i]^3)",
        "grad w[i,j] = g[i] * (x[j] / norm[i] - (s[i] + b[i]) * w[i,j] / norm[i]^2)",
        "grad w[i,j] = g[i] * x[j] / norm[i]",
        "grad b[i] = g[i]",
        "grad b[i] = sum(k) g[k] / norm[k]",
        "grad x[j] = sum(i) g[i] * w[i,j]",
    ]
    .into_iter()
    .map(a2)
    .collect();
    specs.push(a2_square("grad x[j] = sum(i) g[i] * w[j,i] / norm[i]"));
    specs.extend(
        [
            "grad b = g[1]",
            "grad a = sum(i) g[i] * x[i]",
            "grad a = 2 * sum(i) g[i] * (x[i] + x[i+2])",
            "grad x[j] = a * ([j <= N-2] * g[j] + [j <= N-4] * g[j+2])",
            "grad x[j] = [j <= N-2] * g[j] + [j >= 3] * g[j-2]",
            "
grad x[j] = a * (g[j] + g[j-2])   if 3 <= j <= N-3
          | a * g[j]              if j <= 2 and j <= N-2
          | a * g[j-2]            if j >= 3 and j > N-3
          | 0                     otherwise",
        ]
        .into_iter()
        .map(a3),
    );
    specs
}

#[test]
fn correct_claims_pass_with_a_wide_margin() {
    let mut worst_guard: f64 = 0.0;
    let mut worst_rel: f64 = 0.0;
    for spec in correct_specs() {
        for seed in SEEDS {
            let claim = the_claim(&spec, seed);
            assert_eq!(claim.verdict, Verdict::Holds, "seed {seed}\n{spec}");
            worst_rel = worst_rel.max(claim.max_rel_error);
            for guard in &claim.cross_checks {
                worst_guard = worst_guard.max(guard.worst_ratio);
            }
        }
    }
    // Closed form and autodiff agree to a few ulps of a sum, and the
    // finite-difference guards use at most a fraction of their tolerance.
    eprintln!(
        "correct claims: worst relative error {worst_rel:e}, worst guard ratio {worst_guard:.3}"
    );
    assert!(worst_rel < 1e-12, "worst relative error {worst_rel:e}");
    assert!(
        worst_guard < 0.5,
        "a guard used {worst_guard} of its tolerance"
    );
}

#[test]
fn planted_mistakes_miss_by_far_more_than_rounding() {
    let mut least_rel = f64::INFINITY;
    let mut least_directional = f64::INFINITY;
    for spec in wrong_value_specs() {
        for seed in SEEDS {
            let claim = the_claim(&spec, seed);
            assert_eq!(claim.verdict, Verdict::Refuted, "seed {seed}\n{spec}");
            assert!(
                claim.max_rel_error > 1e-6,
                "seed {seed}: only {:e} off\n{spec}",
                claim.max_rel_error
            );
            // Independently of autodiff, finite differences of L along a
            // random direction disagree with the claimed gradient.
            let directional = claim
                .cross_checks
                .iter()
                .find(|c| c.name == "directional")
                .expect("a directional guard");
            assert!(
                !directional.passed && directional.worst_ratio > 1.0,
                "seed {seed}: {}\n{spec}",
                directional.detail
            );
            least_rel = least_rel.min(claim.max_rel_error);
            least_directional = least_directional.min(directional.worst_ratio);
        }
    }
    eprintln!(
        "planted mistakes: least max relative error {least_rel:e}, least directional ratio {least_directional:e}"
    );
}

// ---------------------------------------------------------------------------
// Known engine bug.

#[test]
fn a_claims_sums_do_not_move_the_sweep() {
    // `... x[k-3]`: k runs over 4..=N, empty below N = 4. An empty sum is
    // 0, so the claim's sum must not raise the sizes the file is checked
    // at: the sweep starts at N = 1, where the layer first has an output.
    let layer = "dim N = 8\ninput x[N]\nparam a\ny[i] = a * x[i]\n";
    let inferred =
        format!("{layer}grad a = sum(i) g[i] * x[i] + [N == 4] * sum(k) x[k] * x[k-3]\n");
    let explicit =
        format!("{layer}grad a = sum(i) g[i] * x[i] + [N == 4] * sum(k in 4..=N) x[k] * x[k-3]\n");
    for spec in [&explicit, &inferred] {
        let outcome = check(spec, 0);
        let first = outcome.sizes.first().map(sizes_string);
        assert_eq!(first.as_deref(), Some("N = 1"), "{spec}");
        // The claim is wrong only at N = 4: skipping it lets it pass.
        assert_eq!(outcome.claims[0].verdict, Verdict::Refuted, "{spec}");
        assert_eq!(
            wrong_elements(&outcome.claims[0]),
            vec![(a3_sizes(4), vec![vec![]])]
        );
    }
}
