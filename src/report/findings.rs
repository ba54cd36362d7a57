//! Every problem a run found in a file, in one list: the diagnostics that
//! stopped a file (reading, parsing, analysis, a failed forward
//! computation), the claims that did not come out as expected, and the
//! places where such a claim's formula is undefined. The short format, the
//! JSON `findings` and the language server all read this list, so they
//! never tell different stories.

use std::fmt::Write;

use super::human::{first_evidence, verdict_text};
use crate::source::{Position, Source, Span};
use crate::verify::outcome::{ClaimOutcome, ClaimStatus, FileOutcome};

/// A claim refuted with evidence, not marked `expect fail`.
pub const REFUTED: &str = "dl::claim::refuted";
/// A claim marked `expect fail` that holds.
pub const HELD_UNEXPECTEDLY: &str = "dl::claim::held_unexpectedly";
/// A claim that could not be decided.
pub const UNDECIDED: &str = "dl::claim::undecided";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
        }
    }
}

/// One problem, where it is, and what to do about it.
#[derive(Clone, Debug)]
pub struct Finding {
    pub code: String,
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
    /// The place it is about; `None` for the file as a whole (a file that
    /// cannot be read).
    pub span: Option<Span>,
    /// Further places, each with what it is (the primary place first
    /// where the diagnostic labels it).
    pub labels: Vec<(Span, Option<String>)>,
}

/// The findings of one file, in the order its report shows them.
pub fn findings(file: &FileOutcome) -> Vec<Finding> {
    let mut out: Vec<Finding> = file.diagnostics.iter().map(of_diagnostic).collect();
    for claim in &file.claims {
        out.extend(of_claim(claim));
    }
    out
}

/// A diagnostic as a finding: its code, message, help and labels.
pub fn of_diagnostic(d: &miette::Report) -> Finding {
    let labels: Vec<(Span, Option<String>)> = d
        .labels()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                Span::new(l.offset(), l.offset() + l.len()),
                l.label().map(str::to_string),
            )
        })
        .collect();
    Finding {
        code: d
            .code()
            .map_or_else(|| "dl::internal".to_string(), |c| c.to_string()),
        severity: Severity::Error,
        message: d.to_string(),
        help: d.help().map(|h| h.to_string()),
        span: labels.first().map(|(span, _)| *span),
        labels,
    }
}

/// A claim that did not come out as expected, and where its formula is
/// undefined.
fn of_claim(claim: &ClaimOutcome) -> Vec<Finding> {
    let head = &claim.head;
    let (code, message, help) = match claim.status() {
        ClaimStatus::Pass | ClaimStatus::ExpectedFail => return vec![],
        ClaimStatus::Fail => (
            REFUTED,
            format!("`{head}` is refuted: {}", verdict_text(claim)),
            first_evidence(claim).map(|e| format!("evidence: {e}")),
        ),
        ClaimStatus::UnexpectedPass => (
            HELD_UNEXPECTEDLY,
            format!(
                "`{head}` holds, though marked `expect fail`: {}",
                verdict_text(claim)
            ),
            Some(match &claim.expect_fail {
                Some(reason) => format!(
                    "the mark says \"{reason}\"; if the claim is right, remove `expect fail`"
                ),
                None => "if the claim is right, remove `expect fail`".to_string(),
            }),
        ),
        ClaimStatus::Error => (
            UNDECIDED,
            format!("`{head}` could not be decided: {}", verdict_text(claim)),
            None,
        ),
    };
    let mut out = vec![Finding {
        code: code.to_string(),
        severity: Severity::Error,
        message,
        help,
        span: Some(claim.span),
        labels: vec![(claim.span, None)],
    }];
    out.extend(claim.problems.iter().map(|p| of_diagnostic(&p.diagnostic)));
    out
}

/// `file:line:col: error[code]: message`, one line per finding, columns in
/// characters: what vim's quickfix, Emacs' compile mode and CI annotations
/// read as they are.
pub fn render_short(files: &[FileOutcome]) -> String {
    let mut out = String::new();
    for file in files {
        for f in findings(file) {
            let place = match (f.span, &file.source) {
                (Some(span), Some(source)) => {
                    let p = source.position(span.start);
                    format!("{}:{}:{}", file.path, p.line, p.column)
                }
                _ => file.path.clone(),
            };
            // One line each: a message never spreads over several.
            let message = f.message.replace('\n', " ");
            let _ = writeln!(
                out,
                "{place}: {}[{}]: {message}",
                f.severity.as_str(),
                f.code
            );
        }
    }
    out
}

/// A finding's place in every unit a reader may count in.
pub fn range(source: &Source, span: Span) -> (Position, Position) {
    (source.position(span.start), source.position(span.end))
}
