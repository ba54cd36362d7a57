//! The library of classic exercises (`specs/`), the students' slips kept
//! beside it (`tests/library/`), and the authoring guide's examples
//! (`specs/README.md`), each run through the binary at several seeds:
//!
//! - every spec in `specs/` comes out as expected (exit 0) at every seed;
//! - every file in `tests/library/` has a twin in `specs/`, and each of its
//!   claims is a planted mistake, marked `expect fail "mutant: …"`, that the
//!   engine refutes at every seed;
//! - every ```` ```dl ```` block of the guide is a complete spec that comes
//!   out as expected, so the guide cannot go stale;
//! - the guide's table lists every spec in `specs/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{TempDir, specs_in};

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The default seed and two unrelated ones, as the corpus test takes them.
const SEEDS: [u64; 3] = [0, 7, 1234];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary with `--format json` on `path` at `seed`: the exit code
/// and the file's claims.
fn claims_of(path: &str, seed: u64) -> (i32, Vec<Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_dlverify"))
        .current_dir(root())
        .args([path, "--seed", &seed.to_string(), "--format", "json"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{path}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let claims = json["files"][0]["claims"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (out.status.code().expect("exited"), claims)
}

/// A spec given as text, run at seed 0: the exit code and its claims.
fn run_text(tag: &str, text: &str) -> (i32, Vec<Value>) {
    let dir = TempDir::new(tag);
    let path = dir.write(&format!("{tag}.dl"), text);
    claims_of(&path, 0)
}

/// The claims of `path` at `seed` that did not come out as expected, as
/// `line: status`.
fn misses(path: &str, seed: u64) -> Vec<String> {
    let (code, claims) = claims_of(path, seed);
    let mut missed: Vec<String> = claims
        .iter()
        .filter(|c| !matches!(c["status"].as_str(), Some("pass" | "expected-fail")))
        .map(|c| format!("{path}:{} seed {seed}: {}", c["line"], c["status"]))
        .collect();
    if code != 0 && missed.is_empty() {
        missed.push(format!("{path} seed {seed}: exit {code}"));
    }
    missed
}

/// Each claim's status, in order.
fn statuses(claims: &[Value]) -> Vec<&str> {
    claims
        .iter()
        .map(|c| c["status"].as_str().unwrap_or("?"))
        .collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_library_spec_comes_out_as_expected_at_several_seeds() {
    let specs = specs_in("specs");
    assert!(specs.len() >= 25, "{} specs in specs/", specs.len());
    let mut missed = vec![];
    for path in &specs {
        for seed in SEEDS {
            missed.extend(misses(&relative(path), seed));
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}

#[test]
fn every_planted_mistake_is_refuted_at_several_seeds() {
    let mutants = specs_in("tests/library");
    let (mut planted, mut missed) = (0, vec![]);
    for path in &mutants {
        let name = path.file_name().unwrap();
        assert!(
            root().join("specs").join(name).exists(),
            "{}: no spec of that name in specs/",
            relative(path)
        );
        let text = std::fs::read_to_string(path).unwrap();
        let written = text
            .lines()
            .map(str::trim_start)
            .filter(|l| {
                ["grad ", "claim ", "check "]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .count();
        let marked = text.matches("expect fail \"mutant: ").count();
        assert!(
            written > 0 && written == marked,
            "{}: {written} claims, {marked} marked `expect fail \"mutant: …\"`",
            relative(path)
        );
        for seed in SEEDS {
            let (code, claims) = claims_of(&relative(path), seed);
            for c in &claims {
                if c["status"] != "expected-fail" {
                    missed.push(format!(
                        "{}:{} seed {seed}: {}",
                        relative(path),
                        c["line"],
                        c["status"]
                    ));
                }
            }
            if code != 0 && claims.is_empty() {
                missed.push(format!("{} seed {seed}: exit {code}", relative(path)));
            }
        }
        planted += marked;
    }
    assert!(planted >= 60, "{planted} mutants");
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}

/// The complete specs the guide shows, in ```` ```dl ```` blocks.
fn guide_examples() -> Vec<(usize, String)> {
    let guide = std::fs::read_to_string(root().join("specs/README.md")).unwrap();
    let mut examples = vec![];
    let mut current: Option<(usize, String)> = None;
    for (n, line) in guide.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```dl") => current = Some((n + 1, String::new())),
            (Some(_), "```") => examples.extend(current.take()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    examples
}

#[test]
fn the_guides_examples_come_out_as_expected() {
    let examples = guide_examples();
    assert!(examples.len() >= 4, "{} examples", examples.len());
    let dir = TempDir::new("guide");
    let mut missed = vec![];
    for (line, text) in &examples {
        let path = dir.write(&format!("guide_line_{line}.dl"), text);
        for seed in SEEDS {
            let (code, claims) = claims_of(&path, seed);
            assert!(
                !claims.is_empty(),
                "specs/README.md line {line}: the example makes no claim"
            );
            if code != 0 {
                missed.push(format!(
                    "specs/README.md line {line} seed {seed}: exit {code}"
                ));
            }
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}

#[test]
fn the_guides_table_lists_every_spec() {
    let guide = std::fs::read_to_string(root().join("specs/README.md")).unwrap();
    for path in specs_in("specs") {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            guide.contains(&format!("`{name}`")) || guide.contains(&format!("({name})")),
            "specs/README.md does not list {name}"
        );
    }
}

/// `mean`, and sums over several indices, give the values they should: a
/// sum over (i, j) is the double sum, a mean divides by the count, and a
/// wrong value is refuted.
#[test]
fn means_and_sums_over_several_indices_give_their_values() {
    let (code, claims) = run_text(
        "mean",
        "input x[4] = [1, 2, 3, 6]
input w[2, 3] = [1, 2, 3, 4, 5, 6]
claim mean(k) x[k] == 3
claim mean(i, j) w[i, j] == 3.5
claim sum(i, j) w[i, j] * x[j] == 46
claim prod(i, j in 2..=3) w[i, j] == 180
claim mean(k) x[k] == 3.5
  expect fail \"the mean of 1, 2, 3, 6 is 3\"
claim sum(i, j) w[i, j] * x[j] == 44
  expect fail \"(1 + 4) + (2 + 5) * 2 + (3 + 6) * 3 is 46\"
",
    );
    let statuses = statuses(&claims);
    assert_eq!(
        statuses,
        [
            "pass",
            "pass",
            "pass",
            "pass",
            "expected-fail",
            "expected-fail"
        ]
    );
    assert_eq!(code, 0);
}

/// A recurrence computes each element from those before it (or, read the
/// other way, after it): a running sum and a suffix sum of given values,
/// and a two-axis recurrence reading a whole earlier row.
#[test]
fn recurrences_compute_their_elements_in_order() {
    let (code, claims) = run_text(
        "recurrence",
        "input x[4] = [1, 2, 3, 6]
let c[t] = c[t-1] + x[t]   if t >= 2
         | x[t]            otherwise     for t in 1..=4
let s[t] = s[t+1] + x[t]   if t <= 3
         | x[t]            otherwise     for t in 1..=4
let r[t, i] = sum(l) r[t-1, l] + i   if t >= 2
            | i                      otherwise     for t in 1..=3, i in 1..=2
claim c[4] == 12
claim c[2] == 3
claim s[1] == 12
claim s[3] == 9
claim r[2, 1] == 4
claim r[3, 2] == 2 * 4 + 1 + 2
claim c[3] == 5
  expect fail \"1 + 2 + 3 is 6\"
",
    );
    let statuses = statuses(&claims);
    assert_eq!(
        statuses,
        [
            "pass",
            "pass",
            "pass",
            "pass",
            "pass",
            "pass",
            "expected-fail"
        ],
        "{claims:?}"
    );
    assert_eq!(code, 0);
}

#[test]
fn step_groups_compute_each_step_in_order() {
    let (code, claims) = run_text(
        "step_groups",
        "input x[3] = [1, 2, 3]
let a[t] = b[t-1] + 1            if t >= 2
         | 1                     otherwise     for t in 1..=3
let s = sum(t) a[t]
let b[t] = 2 * a[t] + [t >= 2] * b[t-1]        for t in 1..=3
let d[t] = e[t+1] + x[t]         if t <= 2
         | x[t]                  otherwise     for t in 1..=3
let e[t] = 2 * d[t]                            for t in 1..=3
claim a[2] == 3
claim b[3] == 26
claim s == 13
claim d[1] == 17
claim e[2] == 16
claim a[3] == 7
  expect fail \"b[2] is 6 + 2\"
",
    );
    let statuses = statuses(&claims);
    assert_eq!(
        statuses,
        ["pass", "pass", "pass", "pass", "pass", "expected-fail"],
        "{claims:?}"
    );
    assert_eq!(code, 0);
}

/// A bidirectional RNN's two directions, declared interleaved, read no
/// step of each other: two groups, one computed first to last and one last
/// to first, not one group refused for reading both ways.
#[test]
fn chains_that_never_meet_are_groups_of_their_own() {
    let (code, claims) = run_text(
        "bidirectional",
        "input x[3] = [1, 2, 3]
let f[t] = f2[t-1] + x[t]   if t >= 2
         | x[t]             otherwise    for t in 1..=3
let b[t] = b2[t+1] + x[t]   if t <= 2
         | x[t]             otherwise    for t in 1..=3
let f2[t] = 2 * f[t]                     for t in 1..=3
let b2[t] = 2 * b[t]                     for t in 1..=3
claim f[3] == 3 + 2 * (2 + 2 * 1)
claim b[1] == 1 + 2 * (2 + 2 * 3)
",
    );
    assert_eq!(statuses(&claims), ["pass", "pass"], "{claims:?}");
    assert_eq!(code, 0);
}

/// `sum(k) g[k] * (…)` computes the factor without `k` once, not per term
/// (the A2 erratum was cubic): the claim's values must be those of the
/// formula evaluated term by term, bit for bit, and a factor a term never
/// reaches (an empty range) must raise nothing.
#[test]
fn a_factor_shared_by_every_term_gives_the_same_values() {
    let (code, claims) = run_text(
        "shared_factor",
        "dim n = 3, m = 4
input x[n]
param w[m, n], a
let s[i] = sum(k) w[i,k] * x[k]
y[i] = tanh(s[i]) * a
grad w[i,j] = sum(k) g[k] * (x[j] * a * (1 - tanh(s[i])^2))
  expect fail \"the factor is g[i], not a sum over the rows\"
grad w[i,j] = sum(k) g[k] * (x[j] * a * (1 - tanh(s[i])^2)) * 1
  expect fail \"the same, with the factor computed at every term\"
grad a = sum(i) g[i] * tanh(s[i]) + sum(k in 2..=1) g[k] * log(x[1] - 5)
",
    );
    assert_eq!(
        statuses(&claims),
        ["expected-fail", "expected-fail", "pass"],
        "{claims:?}"
    );
    for field in [
        "max_abs_error",
        "max_rel_error",
        "mismatches",
        "mismatch_groups",
    ] {
        assert_eq!(claims[0][field], claims[1][field], "{field}");
    }
    assert!(
        claims[0]["mismatches"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(code, 0);
}

/// A step group in a claim that recomputes lets (an optimum), a member
/// whose failure only a claim-free let would see, and one that only a claim
/// reads: each computed as if the lets were written one after another.
#[test]
fn step_groups_are_computed_whole_wherever_lets_are_recomputed() {
    let (code, claims) = run_text(
        "groups_elsewhere",
        "dim T = 3
input x[T]
param w
let a[t] = w + [t >= 2] * (b[t-1] - w)   for t in 1..=T
let b[t] = a[t] * x[t] / x[t]           for t in 1..=T
let bad[t] = log(x[t] - 100) + [t >= 2] * ok[t-1]  for t in 1..=T
let ok[t] = w * x[t]^2   for t in 1..=T
y[t] = w * x[t]
claim minimize (b[T] - 1)^2 over w at (1)
grad w = sum(t) g[t] * ok[t] / w / x[t]
",
    );
    assert_eq!(statuses(&claims), ["pass", "pass"], "{claims:?}");
    assert_eq!(code, 0);
}

/// An optimum claim over points whose free index appears only inside a
/// whole-number index searches at every point, not once for all.
#[test]
fn an_optimum_reads_its_points_through_a_whole_number_index() {
    let (code, claims) = run_text(
        "optimum_pick",
        "dim N = 3
input x[N], u[2*N]
param w
claim minimize (w - x[floor((i+1)/2)])^2 + u[i]^2 over w at (x[floor((i+1)/2)])
",
    );
    assert_eq!(statuses(&claims), ["pass"], "{claims:?}");
    assert_eq!(code, 0);
}

#[test]
fn whole_number_indices_read_the_elements_they_name() {
    let (code, claims) = run_text(
        "whole_numbers",
        "input x[3] = [10, 20, 30]
let u[i] = x[floor((i+1)/2)]     for i in 1..=6
let v[i] = x[mod(i, 3) + 1]      for i in 1..=3
let w[i] = x[ceil(i/2)]          for i in 1..=5
claim u[4] == 20
claim v[3] == 10
claim w[5] == 30
claim ceil(x[1] / 4) == 3
claim mod(-7, 3) == 2
claim u[3] == 30
  expect fail \"floor(4/2) is 2\"
",
    );
    let statuses = statuses(&claims);
    assert_eq!(
        statuses,
        ["pass", "pass", "pass", "pass", "pass", "expected-fail"],
        "{claims:?}"
    );
    assert_eq!(code, 0);
}

/// A stochastic claim reads a recurrence thousands of elements long, in
/// either order: its elements are built one after another, not by a
/// recursion as deep as the recurrence (which overflowed the stack).
#[test]
fn a_long_random_recurrence_is_built_without_deep_recursion() {
    let dir = TempDir::new("walk");
    for (name, recurrence, claim) in [
        (
            "up.dl",
            "let s[t] = s[t-1] + q[t]  if t >= 2 | q[t] otherwise  for t in 1..=T",
            "claim E[s[T]] == 0",
        ),
        (
            "down.dl",
            "let s[t] = s[t+1] + q[t]  if t < T | q[t] otherwise  for t in 1..=T",
            "claim E[s[1]] == 0",
        ),
    ] {
        let path = dir.write(
            name,
            format!(
                "dim T = 2000\nrandom q[t] ~ rademacher() for t in 1..=T\n{recurrence}\n{claim}\n"
            ),
        );
        let (code, claims) = claims_of(&path, 0);
        assert_eq!(code, 0, "{name}: {claims:?}");
        assert_eq!(claims[0]["status"], "pass", "{name}");
    }
}

/// A gradient that decays through a long recurrence to subnormal numbers,
/// where f64 rounds by an absolute unit, holds: autodiff keeps a few units
/// of 2⁻¹⁰⁷⁴ where the closed form gives 0. A wrong closed form still fails.
#[test]
fn a_gradient_decaying_to_subnormals_holds() {
    let (code, claims) = run_text(
        "subnormal",
        "dim T = 7200
input x[T]
param a = 0.9
let c[t] = a * c[t-1] + x[t]   if t >= 2
         | x[t]                otherwise     for t in 1..=T
loss L = c[T]
grad x[j] = a^(T - j)
grad x[j] = a^(T - j + 1)
  expect fail \"one factor a too many\"
",
    );
    let statuses = statuses(&claims);
    assert_eq!(statuses, ["pass", "expected-fail"], "{claims:?}");
    assert_eq!(code, 0);
}

/// A layer with a scalar output, `out = …`, draws a scalar `g`; and a
/// Taylor check written below an erratum is told that it took the erratum
/// as J.
#[test]
fn a_scalar_output_and_a_taylor_check_below_an_erratum() {
    let (code, claims) = run_text(
        "scalar",
        "input x
param a
out = tanh(a * x)
grad a = g * (1 - out^2) * x
grad x = g * (1 - tanh(a * x)^2) * a
check taylor central rate > 2
grad a = g * (1 - out^2)
  expect fail \"x forgotten\"
check taylor central rate > 2
",
    );
    let statuses = statuses(&claims);
    assert_eq!(
        statuses,
        ["pass", "pass", "pass", "expected-fail", "fail"],
        "{claims:?}"
    );
    assert_eq!(code, 1);
    let notes = |k: usize| claims[k]["notes"].to_string();
    assert!(
        !notes(2).contains("is marked `expect fail`"),
        "{}",
        notes(2)
    );
    assert!(
        notes(4).contains("`grad a` (line 7) is marked `expect fail`"),
        "{}",
        notes(4)
    );
}

/// `y[i, j] = sum(a, b) w[a, b] * x[i+a-1, j+b-1]`: the output's range is
/// inferred through the inner indices, over their full range from `w`, as
/// a valid convolution's `1..=H-K+1`; the gradients then hold, and the
/// adjoint written with the kernel's offsets added, not subtracted, is
/// refuted.
#[test]
fn ranges_are_inferred_through_inner_indices() {
    let (code, claims) = run_text(
        "conv",
        "dim H = 5, K = 2
input x[H, H]
param w[K, K]
y[i, j] = sum(a, b) w[a, b] * x[i+a-1, j+b-1]
grad w[a, b] = sum(i, j) g[i, j] * x[i+a-1, j+b-1]
grad x[p, q] = sum(a, b) [1 <= p-a+1 <= H-K+1 and 1 <= q-b+1 <= H-K+1] * w[a, b] * g[p-a+1, q-b+1]
grad x[p, q] = sum(a, b) [p+a-1 <= H-K+1 and q+b-1 <= H-K+1] * w[a, b] * g[p+a-1, q+b-1]
  expect fail \"the offsets added: a correlation of g, not the adjoint\"
",
    );
    let statuses = statuses(&claims);
    assert_eq!(statuses, ["pass", "pass", "expected-fail"], "{claims:?}");
    assert_eq!(code, 0);
}

/// `pi` is π in every precision: a claim that cancels against erf's own
/// 2/√π holds when written with `pi`, and a wrong one is still refuted.
#[test]
fn pi_is_exact_in_every_precision() {
    let (code, claims) = run_text(
        "pi",
        "input x in (1e-6, 2e-6)
loss L = erf(x) - 2 * x / sqrt(pi)
grad x = 2 / sqrt(pi) * (exp(-x^2) - 1)
grad x = 2 / sqrt(pi) * exp(-x^2)
  expect fail \"the slope of the subtracted line forgotten\"
claim pi ≈ 3.14159265 ± 1e-8
",
    );
    assert_eq!(
        statuses(&claims),
        ["pass", "expected-fail", "pass"],
        "{claims:?}"
    );
    assert_eq!(code, 0);
}
