//! dlverify checks the mathematics of deep-learning exercises.
//!
//! A `.dl` spec declares a layer in index notation and the author's claims
//! about it. The pipeline, one module per stage:
//! [`syntax`] (text → AST) → [`analysis`] (names, ranges → checked program)
//! → [`eval`] (values and dual-number derivatives) → [`verify`] (a verdict
//! per claim) → [`report`] (human and JSON).
//!
//! ```
//! use dlverify::{check_source, source::Source, verify::Options};
//!
//! let spec = "
//!     dim N = 6
//!     input x[N]
//!     param a, b
//!     y[i] = a * (x[i] + x[i+2]) + b
//!     grad b = sum(i) g[i]
//!     grad a = sum(i) g[i] * (x[i] + x[i+2])
//! ";
//! let outcome = check_source(Source::new("example.dl", spec), &Options::default());
//! assert!(outcome.diagnostics.is_empty());
//! assert!(outcome.claims.iter().all(|c| c.status().as_expected()));
//! ```
#![forbid(unsafe_code)]

pub mod analysis;
pub mod eval;
pub mod input;
pub mod report;
pub mod source;
pub mod syntax;
pub mod verify;

use source::Source;
use verify::Options;
use verify::outcome::FileOutcome;

/// Parses, analyses and verifies one spec.
pub fn check_source(source: Source, options: &Options) -> FileOutcome {
    let path = source.name().to_string();
    if source.text().trim().is_empty() {
        let e = input::InputError::Empty { path: path.clone() };
        return FileOutcome::unreadable(path, Some(source), miette::Report::new(e));
    }
    let spec = match syntax::parse(&source) {
        Ok(spec) => spec,
        Err(e) => {
            let report = miette::Report::new(e);
            return FileOutcome::unreadable(path, Some(source), report);
        }
    };
    match analysis::analyze(&spec) {
        Ok(program) => verify::verify(&program, &source, options),
        Err(errors) => {
            let mut outcome = FileOutcome::unreadable(
                path,
                Some(source.clone()),
                miette::Report::msg("analysis failed"),
            );
            outcome.exercise = spec.items.iter().find_map(|i| match i {
                syntax::ast::Item::Exercise(t) => Some(t.node.clone()),
                _ => None,
            });
            outcome.diagnostics = errors
                .into_iter()
                .map(|e| miette::Report::new(e).with_source_code(source.named()))
                .collect();
            outcome
        }
    }
}

/// Reads and checks one file; an unreadable file is an outcome, not a panic.
pub fn check_path(path: &std::path::Path, options: &Options) -> FileOutcome {
    match input::read_spec(path) {
        Ok(source) => check_source(source, options),
        Err(e) => FileOutcome::unreadable(path.display().to_string(), None, miette::Report::new(e)),
    }
}
