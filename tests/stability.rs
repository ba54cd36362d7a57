//! Verdicts that do not depend on luck, and output that does not depend on
//! the run (issue 6).
//!
//! - Determinism (in the normal suite): the same seed gives byte-identical
//!   human and JSON output, run after run and whatever the number of rayon
//!   threads (stochastic claims sample in parallel).
//! - Verdict stability (heavy, ignored): every bundled spec over 200 seeds,
//!   at every size of its sweep, gives every claim the same status each time.
//!   Run it with `cargo test --release --test stability -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dlverify::verify::Options;
use dlverify::verify::outcome::{FileOutcome, FileStatus};

/// Runs the binary from the crate root with `envs`, and fails the test if it
/// has not ended within `limit` (it is killed first).
fn run(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_dlverify"))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // The waiting thread owns the child; kill it by its id.
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            panic!("dlverify {args:?} still running after {limit:?}: killed");
        }
    }
}

// ---------------------------------------------------------------------------
// Determinism

#[test]
fn the_same_seed_gives_byte_identical_output_whatever_the_threads() {
    // Runs of one format at once; the rayon pool has 1 thread, 2 threads and
    // the default (one per core). JSON three times, the human report (a
    // rendering of the same outcomes) twice: `specs/` takes seconds in debug.
    let threads: [&[(&str, &str)]; 3] = [
        &[("RAYON_NUM_THREADS", "1")],
        &[("RAYON_NUM_THREADS", "2")],
        &[],
    ];
    for (format, runs) in [("json", 3), ("human", 2)] {
        let outputs: Vec<Output> = std::thread::scope(|scope| {
            let handles: Vec<_> = threads[..runs]
                .iter()
                .map(|envs| {
                    scope.spawn(move || {
                        run(
                            &["specs/", "--seed", "12345", "--format", format],
                            envs,
                            Duration::from_secs(300),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let first = &outputs[0];
        assert!(!first.stdout.is_empty(), "{format}: no output");
        assert!(
            first.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        for (k, other) in outputs.iter().enumerate().skip(1) {
            assert_eq!(other.status.code(), first.status.code(), "{format}");
            assert!(
                other.stdout == first.stdout,
                "{format}: run {k} ({:?}) differs from run 0 ({:?})\n--- run 0:\n{}\n--- run {k}:\n{}",
                threads[k],
                threads[0],
                String::from_utf8_lossy(&first.stdout),
                String::from_utf8_lossy(&other.stdout)
            );
        }
    }
}

/// A directory's files are checked a file per core, each on one thread;
/// a single file spreads its own work over the threads. That too is the
/// same whatever their number.
#[test]
fn a_single_file_gives_byte_identical_output_whatever_the_threads() {
    for spec in [
        "specs/a2_weight_normalization.dl",
        "specs/a4_gradient_quantization.dl",
    ] {
        let outputs: Vec<Output> = [
            &[("RAYON_NUM_THREADS", "1")][..],
            &[("RAYON_NUM_THREADS", "2")][..],
        ]
        .iter()
        .map(|envs| {
            run(
                &[spec, "--seed", "7", "--format", "json"],
                envs,
                Duration::from_secs(300),
            )
        })
        .collect();
        assert!(!outputs[0].stdout.is_empty(), "{spec}: no output");
        assert!(outputs[0].stdout == outputs[1].stdout, "{spec}");
    }
}

// ---------------------------------------------------------------------------
// Verdict stability

const SEEDS: u64 = 200;

fn bundled_specs() -> Vec<PathBuf> {
    common::specs_in("specs")
}

/// One claim's statuses over every seed: status → the seeds that gave it.
#[derive(Default)]
struct Tally {
    line: usize,
    head: String,
    statuses: BTreeMap<&'static str, Vec<u64>>,
}

struct SpecResult {
    name: String,
    sizes: usize,
    claims: Vec<Tally>,
    /// Seeds at which the file itself was an error, with the first diagnostic.
    errors: Vec<(u64, String)>,
    time: Duration,
}

fn check_seed(path: &std::path::Path, seed: u64) -> FileOutcome {
    let options = Options {
        seed,
        ..Options::default()
    };
    dlverify::check_path(path, &options)
}

/// Checks one spec at every seed, spreading the seeds over the cores.
fn stability_of(path: &std::path::Path) -> SpecResult {
    let start = Instant::now();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let mut outcomes: Vec<(u64, FileOutcome)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    (0..SEEDS)
                        .filter(|s| s % workers == w)
                        .map(|seed| (seed, check_seed(path, seed)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    outcomes.sort_by_key(|(seed, _)| *seed);
    let mut claims: Vec<Tally> = vec![];
    let mut errors = vec![];
    let mut sizes = 0;
    for (seed, outcome) in &outcomes {
        if outcome.status() == FileStatus::Error {
            let first = outcome
                .diagnostics
                .first()
                .map(|d| d.to_string())
                .unwrap_or_default();
            errors.push((*seed, first));
        }
        sizes = sizes.max(outcome.sizes.len());
        for (k, c) in outcome.claims.iter().enumerate() {
            if claims.len() <= k {
                claims.push(Tally {
                    line: c.line,
                    head: c.head.clone(),
                    ..Tally::default()
                });
            }
            claims[k]
                .statuses
                .entry(c.status().as_str())
                .or_default()
                .push(*seed);
        }
    }
    SpecResult {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        sizes,
        claims,
        errors,
        time: start.elapsed(),
    }
}

/// `text` cut to `width` characters, with `…` where it was cut.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        text.chars().take(width - 1).chain(['…']).collect()
    }
}

#[test]
#[ignore = "heavy: run with cargo test --release --test stability -- --ignored"]
fn every_claim_gets_the_same_verdict_at_every_seed() {
    let start = Instant::now();
    let results: Vec<SpecResult> = bundled_specs().iter().map(|p| stability_of(p)).collect();

    println!("\nverdict stability over seeds 0..{SEEDS}, every size of each sweep:\n");
    println!(
        "{:<30} {:>5} {:>5}  {:<40}  statuses",
        "spec", "sizes", "line", "claim"
    );
    let mut unstable = vec![];
    let mut claim_runs = 0;
    for r in &results {
        for c in &r.claims {
            claim_runs += c.statuses.values().map(Vec::len).sum::<usize>();
            let summary: Vec<String> = c
                .statuses
                .iter()
                .map(|(s, seeds)| format!("{s} ×{}", seeds.len()))
                .collect();
            println!(
                "{:<30} {:>5} {:>5}  {:<40}  {}",
                r.name,
                r.sizes,
                c.line,
                shorten(&c.head, 40),
                summary.join(", ")
            );
            if c.statuses.len() > 1 {
                // The seeds of every status but the most common one.
                let mut by_count: Vec<_> = c.statuses.iter().collect();
                by_count.sort_by_key(|(_, seeds)| std::cmp::Reverse(seeds.len()));
                let odd: Vec<String> = by_count[1..]
                    .iter()
                    .map(|(s, seeds)| {
                        let shown: Vec<String> =
                            seeds.iter().take(10).map(u64::to_string).collect();
                        format!("{s} at seeds {}", shown.join(", "))
                    })
                    .collect();
                unstable.push(format!(
                    "{} line {} `{}`: {}",
                    r.name,
                    c.line,
                    c.head,
                    odd.join("; ")
                ));
            }
        }
        println!("{:<30} {:.1?} for {SEEDS} seeds", "", r.time);
        for (seed, e) in r.errors.iter().take(3) {
            unstable.push(format!("{}: an error at seed {seed}: {e}", r.name));
        }
    }
    let claims: usize = results.iter().map(|r| r.claims.len()).sum();
    println!(
        "\n{} specs, {claims} claims × {SEEDS} seeds = {claim_runs} claim checks in {:.1?}; {} unstable",
        results.len(),
        start.elapsed(),
        unstable.len()
    );
    assert_eq!(
        claim_runs,
        claims * SEEDS as usize,
        "a claim went missing at some seed"
    );
    assert!(
        unstable.is_empty(),
        "verdicts that depend on the seed:\n{}",
        unstable.join("\n")
    );
}
