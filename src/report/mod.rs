//! Reporting: renders [`FileOutcome`]s for a person ([`human`]) or a
//! program ([`json`]), and the summary and exit code they share.

pub mod findings;
pub mod human;
pub mod json;
pub mod plot;

use crate::verify::outcome::{ClaimStatus, FileOutcome, FileStatus};

/// Counts over a whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub files: usize,
    pub claims: usize,
    /// Came out as expected: passed, or failed where `expect fail` said so.
    pub passed: usize,
    /// Did not: failed, or passed where `expect fail` said it would not.
    pub failed: usize,
    /// Could not be checked: files with diagnostics and undecided claims.
    pub errors: usize,
    /// Of those passed: claims that hold.
    pub held: usize,
    /// Of those passed: claims refuted where `expect fail` said so.
    pub refuted_as_marked: usize,
    /// Of those failed: claims refuted that should hold.
    pub refuted: usize,
    /// Of those failed: claims that hold though marked `expect fail`.
    pub held_unexpectedly: usize,
}

impl Summary {
    pub fn of(files: &[FileOutcome]) -> Self {
        let mut s = Summary {
            files: files.len(),
            ..Summary::default()
        };
        for file in files {
            if file.status() == FileStatus::Error {
                s.errors += 1;
            }
            for claim in &file.claims {
                s.claims += 1;
                match claim.status() {
                    ClaimStatus::Pass => s.held += 1,
                    ClaimStatus::ExpectedFail => s.refuted_as_marked += 1,
                    ClaimStatus::Fail => s.refuted += 1,
                    ClaimStatus::UnexpectedPass => s.held_unexpectedly += 1,
                    ClaimStatus::Error => s.errors += 1,
                }
            }
        }
        s.passed = s.held + s.refuted_as_marked;
        s.failed = s.refuted + s.held_unexpectedly;
        s
    }

    /// 0: every claim came out as expected; 1: some claim did not;
    /// 2: some file could not be checked.
    pub fn exit_code(files: &[FileOutcome]) -> u8 {
        if files.iter().any(|f| f.status() == FileStatus::Error) {
            2
        } else if files
            .iter()
            .any(|f| f.claims.iter().any(|c| !c.status().as_expected()))
        {
            1
        } else {
            0
        }
    }
}

/// The ending of a count's noun: `1 claim`, `2 claims`.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `dx[7..=8]`, `dw[1..=3, 2]`: a block of elements in the spec's notation.
pub fn block_name(tensor: &str, block: &[(i64, i64)]) -> String {
    if block.is_empty() {
        return format!("d{tensor}");
    }
    let axes: Vec<String> = block
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}..={hi}")
            }
        })
        .collect();
    format!("d{tensor}[{}]", axes.join(", "))
}
