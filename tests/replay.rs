//! Replays of a recorded evaluation of L stand in for the evaluator wherever
//! a check evaluates L at many points (Taylor ladders, finite differences).
//! They must give the evaluator's L bit for bit, in f64 and in f32, or
//! decline the point; never another value. Held here on every bundled spec
//! and corpus file, at points near and far from the recorded values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::specs_in;

use std::path::PathBuf;

use dlverify::analysis::{analyze, size_sweep};
use dlverify::eval::replay::{Lane, Replay};
use dlverify::eval::{Instance, draw_values, record};
use dlverify::source::Source;
use ndarray::ArrayD;
use num_dual::HyperDual64;

/// Points along a pseudo-random direction at steps from 1e-12 to 3; the
/// last two move the data (the incoming gradient, given values) too, as
/// rounding every tensor to f32 does.
fn points_near(values: &[ArrayD<f64>], differentiable: &[bool]) -> Vec<Vec<ArrayD<f64>>> {
    [0.0, 1e-12, 1e-7, 1e-3, 0.1, 1.0, 3.0, -0.5, 1e-6]
        .iter()
        .enumerate()
        .map(|(s, &step)| {
            values
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    if !differentiable[k] && s < 7 {
                        return v.clone();
                    }
                    let mut i = 0usize;
                    v.mapv(|x| {
                        i += 1;
                        x + step * ((i * 7 + s * 3 + k) as f64).sin()
                    })
                })
                .collect()
        })
        .collect()
}

#[test]
fn replays_give_the_evaluators_loss_or_decline() {
    let files: Vec<PathBuf> = specs_in("specs")
        .into_iter()
        .chain(specs_in("tests/corpus"))
        .collect();
    let (mut replayed, mut declined, mut files_replayed) = (0usize, 0usize, 0usize);
    let (mut cone_runs, mut hyper_dual) = (0usize, 0usize);
    let mut wrong = vec![];
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let source = Source::new(path.display().to_string(), &text);
        let Ok(spec) = dlverify::syntax::parse(&source) else {
            continue;
        };
        let Ok(program) = analyze(&spec) else {
            continue;
        };
        if program.output.is_none() {
            continue;
        }
        let differentiable: Vec<bool> = program
            .tensors
            .iter()
            .map(|t| t.is_differentiable())
            .collect();
        for sizes in size_sweep(&program, &[]).unwrap() {
            let instance = Instance::new(&program, &source, sizes.clone(), 1 << 22).unwrap();
            let values = draw_values(&instance, 5).unwrap();
            if instance.evaluation(&values).loss().is_err() {
                continue;
            }
            let points = points_near(&values, &differentiable);
            let refs: Vec<&[ArrayD<f64>]> = points.iter().map(Vec::as_slice).collect();
            // f64.
            let Some(replay) = Replay::compile(record::<f64>(&instance, &values).unwrap()) else {
                continue;
            };
            files_replayed += 1;
            // Moving one element: its cone alone gives the whole replay's L.
            let flat: Vec<&[f64]> = values
                .iter()
                .map(|a| a.as_slice_memory_order().unwrap())
                .collect();
            let elements: Vec<(usize, usize)> = (0..values.len())
                .filter(|&k| differentiable[k])
                .flat_map(|k| (0..values[k].len()).map(move |p| (k, p)))
                .collect();
            let cones = replay.cones(&elements, |k, p| flat[k][p]);
            for (e, &(k, p)) in elements.iter().enumerate() {
                let w = flat[k][p];
                let moved = [w + 1e-6, w - 1e-6, w + 0.3, w * 2.0];
                let by_cone = replay.run_cone(&cones, e, &moved);
                let whole = replay.run_with(moved.len(), |l, kk, pp| {
                    if (kk, pp) == (k, p) {
                        moved[l]
                    } else {
                        flat[kk][pp]
                    }
                });
                cone_runs += 1;
                if by_cone
                    .iter()
                    .map(|v| v.map(f64::to_bits))
                    .ne(whole.iter().map(|v| v.map(f64::to_bits)))
                {
                    wrong.push(format!("{} at {sizes}: cone of element {p} of tensor {k} gives {by_cone:?}, the whole replay {whole:?}", path.display()));
                }
            }
            for (p, l) in points.iter().zip(replay.losses(&refs)) {
                let Some(l) = l else {
                    declined += 1;
                    continue;
                };
                replayed += 1;
                match instance.evaluation(p).loss() {
                    Ok(e) if e.to_bits() == l.to_bits() => {}
                    other => wrong.push(format!(
                        "{} at {sizes} (f64): replay {l:e}, evaluator {other:?}",
                        path.display()
                    )),
                }
            }
            // Hyper-dual lanes (the Taylor check's second order): the
            // evaluator's hyper-dual L, every part bit for bit.
            let directions: Vec<Vec<ArrayD<HyperDual64>>> = (0..3)
                .map(|d| {
                    values
                        .iter()
                        .enumerate()
                        .map(|(k, v)| {
                            let mut i = 0usize;
                            v.mapv(|x| {
                                i += 1;
                                let t = if differentiable[k] {
                                    ((i * 5 + d * 11 + k) as f64).cos()
                                } else {
                                    0.0
                                };
                                HyperDual64::new(x, t, t, 0.0)
                            })
                        })
                        .collect()
                })
                .collect();
            // Where the recording folded constants by a division, a power
            // or a function, hyper-dual arithmetic would fold them
            // otherwise: such replays say so, and are not run over lanes.
            if !replay.lanes_match_evaluator() {
                continue;
            }
            let lanes = replay.run_lanes(
                directions.len(),
                |c| Lane(HyperDual64::from(c)),
                |(k, p), row| {
                    for (slot, d) in row.iter_mut().zip(&directions) {
                        *slot = Lane(d[k].as_slice_memory_order().unwrap()[p]);
                    }
                },
            );
            for (d, lane) in directions.iter().zip(lanes) {
                let Some(Lane(l)) = lane else {
                    declined += 1;
                    continue;
                };
                hyper_dual += 1;
                let bits = |h: HyperDual64| [h.re, h.eps1, h.eps2, h.eps1eps2].map(f64::to_bits);
                match instance.evaluation(d).loss() {
                    Ok(e) if bits(e) == bits(l) => {}
                    other => wrong.push(format!(
                        "{} at {sizes} (hyper-dual): replay {l:?}, evaluator {other:?}",
                        path.display()
                    )),
                }
            }
            // f32, recorded at the values rounded to f32.
            let single: Vec<ArrayD<f32>> = values.iter().map(|a| a.mapv(|x| x as f32)).collect();
            let Ok(recorded) = record::<f32>(&instance, &single) else {
                continue;
            };
            let Some(replay) = Replay::compile(recorded) else {
                continue;
            };
            let points32: Vec<Vec<ArrayD<f64>>> = points
                .iter()
                .map(|p| p.iter().map(|a| a.mapv(|x| f64::from(x as f32))).collect())
                .collect();
            let refs32: Vec<&[ArrayD<f64>]> = points32.iter().map(Vec::as_slice).collect();
            for (p, l) in points32.iter().zip(replay.losses(&refs32)) {
                let Some(l) = l else {
                    declined += 1;
                    continue;
                };
                replayed += 1;
                let p32: Vec<ArrayD<f32>> = p.iter().map(|a| a.mapv(|x| x as f32)).collect();
                match instance.evaluation(&p32).loss() {
                    Ok(e) if e.to_bits() == l.to_bits() => {}
                    other => wrong.push(format!(
                        "{} at {sizes} (f32): replay {l:e}, evaluator {other:?}",
                        path.display()
                    )),
                }
            }
        }
    }
    eprintln!(
        "{files_replayed} recordings, {replayed} points replayed, {declined} declined, {cone_runs} cones, {hyper_dual} hyper-dual runs"
    );
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        files_replayed > 300,
        "only {files_replayed} recordings replayed"
    );
    assert!(
        replayed > 5 * declined,
        "{replayed} replayed, {declined} declined"
    );
    assert!(declined > 0, "no point changed a branch");
    assert!(cone_runs > 1000, "only {cone_runs} cones run");
    assert!(hyper_dual > 1000, "only {hyper_dual} hyper-dual runs");
}

/// Constants folded by a division, a power or a function are `B`'s: a
/// number type that rounds such operations otherwise must not run the
/// recording as the evaluator's (the Taylor check's second order then
/// takes the evaluator).
#[test]
fn folded_constants_keep_other_number_types_off_the_replay() {
    let folds = |text: &str| {
        let source = Source::new("folded.dl", text);
        let program = analyze(&dlverify::syntax::parse(&source).unwrap()).unwrap();
        let sizes = size_sweep(&program, &[]).unwrap().pop().unwrap();
        let instance = Instance::new(&program, &source, sizes, 1 << 20).unwrap();
        let values = draw_values(&instance, 1).unwrap();
        let replay = Replay::compile(record::<f64>(&instance, &values).unwrap()).unwrap();
        !replay.lanes_match_evaluator()
    };
    let spec = |loss: &str| format!("dim n = 3\nparam w[n]\nloss L = {loss}\n");
    assert!(folds(&spec("sum(k) (3/10) * w[k]^3")));
    assert!(folds(&spec("sum(k) tanh(0.7) * w[k]")));
    assert!(folds(&spec("sum(k) 1.1^7 * w[k]")));
    assert!(!folds(&spec("sum(k) (0.3 * w[k]^3 + (2 - 1) * 3 * w[k])")));
}
