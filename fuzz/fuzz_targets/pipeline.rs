//! The whole pipeline at tiny sizes: parse, analyse, evaluate, verify and
//! render both reports, with small limits and a short time limit.
#![no_main]

use std::time::Duration;

use dlverify::report::{human, json};
use dlverify::source::Source;
use dlverify::verify::Options;
use dlverify::verify::outcome::{FileStatus, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let options = Options {
        max_elements: 10_000,
        fd_elements: 8,
        max_steps: 1_000,
        timeout: Duration::from_millis(500),
        keep_derived: true,
        ..Options::default()
    };
    let outcome = dlverify::check_source(Source::new("fuzz.dl", text), &options);
    // The outcome is consistent whatever the input.
    assert_eq!(
        outcome.status() == FileStatus::Error,
        !outcome.diagnostics.is_empty()
    );
    for d in &outcome.diagnostics {
        let code = d.code().map(|c| c.to_string()).unwrap_or_default();
        assert!(
            code.starts_with("dl::"),
            "a diagnostic without a code: {d:?}"
        );
    }
    for claim in &outcome.claims {
        assert!(
            claim.verdict != Verdict::Holds || claim.mismatches.is_empty(),
            "claim {} holds with mismatches",
            claim.head
        );
        // A gradient claim that holds was compared with a finite autodiff
        // gradient (derived is kept at the largest size of the sweep).
        if claim.kind == "grad" && claim.verdict == Verdict::Holds {
            for d in outcome.derived.iter().filter(|d| d.tensor == claim.target) {
                assert!(
                    d.values.iter().all(|v| v.is_finite()),
                    "claim {} holds against a non-finite gradient {:?}",
                    claim.head,
                    d.values
                );
            }
        }
    }
    let outcomes = [outcome];
    let _ = human::render(
        &outcomes,
        human::HumanOptions {
            verbose: true,
            show_grad: false,
        },
    );
    let _ = json::render(&outcomes);
});
