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
pub mod derive;
pub mod eval;
pub mod explain;
pub mod input;
pub mod lsp;
pub mod report;
pub mod source;
pub mod syntax;
pub mod verify;

#[cfg(test)]
mod test_support;

use source::Source;
use verify::Options;
use verify::outcome::FileOutcome;

/// Parses, analyses and verifies one spec.
pub fn check_source(source: Source, options: &Options) -> FileOutcome {
    match front(source) {
        Ok((program, source)) => verify::verify(&program, &source, options),
        Err(outcome) => *outcome,
    }
}

/// Parses and analyses one spec, checking no claim: its diagnostics, and
/// nothing else (`dlverify check`, an editor as the author types).
pub fn analyze_source(source: Source) -> FileOutcome {
    match front(source) {
        Ok((program, source)) => {
            let mut outcome = FileOutcome::analyzed(source.clone(), program.exercise.clone());
            // The sizes are analysis too: a range empty at every size of
            // the sweep is found here, not only by a full check.
            if let Err(e) = analysis::size_sweep(&program, &[]) {
                outcome
                    .diagnostics
                    .push(miette::Report::new(*e).with_source_code(source.named()));
            }
            outcome
        }
        Err(outcome) => *outcome,
    }
}

/// `dlverify derive` on one spec: what came of it.
pub enum Derivation {
    /// The spec stopped before a program (malformed, failing analysis).
    Invalid(Box<FileOutcome>),
    /// A construct the derivation does not cover.
    Refused(Box<Source>, derive::DeriveError),
    /// The derived lines, and the check of the spec with them appended:
    /// every derived claim must hold (one that does not is a bug).
    Derived {
        derived: derive::Derived,
        check: Box<FileOutcome>,
        /// The appended text's first line: claims from here are derived.
        first_line: usize,
    },
}

impl Derivation {
    /// The outcomes of the derived claims, where lines were derived: those
    /// of the appended lines, not the spec's own.
    pub fn derived_claims(&self) -> Vec<&verify::outcome::ClaimOutcome> {
        match self {
            Derivation::Derived {
                check, first_line, ..
            } => check
                .claims
                .iter()
                .filter(|c| c.line >= *first_line)
                .collect(),
            _ => vec![],
        }
    }

    /// Whether lines were derived and every derived claim holds, with no
    /// diagnostic on the spec they were appended to.
    pub fn holds(&self) -> bool {
        let claims = self.derived_claims();
        matches!(self, Derivation::Derived { check, .. } if check.diagnostics.is_empty())
            && !claims.is_empty()
            && claims
                .iter()
                .all(|c| c.status() == verify::outcome::ClaimStatus::Pass)
    }
}

/// The comment line `dlverify derive` puts above what it appends.
pub const DERIVED_HEADER: &str =
    "# Derived by `dlverify derive`: the gradient of L in every input and param.";

/// The derived lines below their header, as `derive` prints and appends
/// them.
pub fn derived_block(derived: &derive::Derived) -> String {
    let mut out = format!("{DERIVED_HEADER}\n");
    for line in &derived.lines {
        out.push_str(&line.text);
        out.push('\n');
    }
    out
}

/// Derives the gradient of L in every input and param of one spec and
/// checks the derived claims as the spec's own would be checked.
pub fn derive_source(source: Source, options: &Options) -> Derivation {
    let (program, source) = match front(source) {
        Ok(front) => front,
        Err(outcome) => return Derivation::Invalid(outcome),
    };
    let derived = match derive::derive(&program) {
        Ok(derived) => derived,
        Err(e) => return Derivation::Refused(Box::new(source), e),
    };
    let text = source.text().trim_end();
    let first_line = text.lines().count() + 3;
    let appended = format!("{text}\n\n{}", derived_block(&derived));
    let check = check_source(Source::new(source.name(), appended), options);
    Derivation::Derived {
        derived,
        check: Box::new(check),
        first_line,
    }
}

/// The checked program, or the outcome of a spec that stops before it:
/// empty, malformed, or failing analysis.
fn front(source: Source) -> Result<(analysis::Program, Source), Box<FileOutcome>> {
    let path = source.name().to_string();
    if source.text().trim().is_empty() {
        let e = input::InputError::Empty { path: path.clone() };
        return Err(Box::new(FileOutcome::unreadable(
            path,
            Some(source),
            miette::Report::new(e),
        )));
    }
    let spec = match syntax::parse(&source) {
        Ok(spec) => spec,
        Err(e) => {
            let report = miette::Report::new(e);
            return Err(Box::new(FileOutcome::unreadable(
                path,
                Some(source),
                report,
            )));
        }
    };
    match analysis::analyze(&spec) {
        Ok(program) => Ok((program, source)),
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
            Err(Box::new(outcome))
        }
    }
}

/// Reads and checks one file (`-`: standard input); an unreadable file is
/// an outcome, not a panic.
pub fn check_path(path: &std::path::Path, options: &Options) -> FileOutcome {
    match input::read_spec(path) {
        Ok(source) => check_source(source, options),
        Err(e) => FileOutcome::unreadable(display_name(path), None, miette::Report::new(e)),
    }
}

/// A path as reports name it (`<stdin>` for `-`).
fn display_name(path: &std::path::Path) -> String {
    if path == std::path::Path::new(input::STDIN) {
        input::STDIN_NAME.to_string()
    } else {
        path.display().to_string()
    }
}

/// Reads and analyses one file ([`analyze_source`]).
pub fn analyze_path(path: &std::path::Path) -> FileOutcome {
    match input::read_spec(path) {
        Ok(source) => analyze_source(source),
        Err(e) => FileOutcome::unreadable(display_name(path), None, miette::Report::new(e)),
    }
}
