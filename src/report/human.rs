//! The report for a person: one line per claim, evidence under the claims
//! that did not come out as expected, diagnostics rendered by miette.

use std::fmt::Write;

use miette::{GraphicalReportHandler, GraphicalTheme};

use super::{Summary, block_name, plural};
use crate::eval::format_value;
use crate::verify::outcome::*;

/// Mismatching elements shown per claim (all are counted).
const ELEMENTS_SHOWN: usize = 4;
/// Index blocks listed per size.
const BLOCKS_SHOWN: usize = 6;

#[derive(Clone, Copy, Debug, Default)]
pub struct HumanOptions {
    /// Show cross-checks and sizes for every claim, not only failing ones.
    pub verbose: bool,
    /// Print the derived gradients as tables.
    pub show_grad: bool,
    /// Colour the verdicts and diagnostics (a terminal, `CLICOLOR_FORCE`).
    pub colour: bool,
    /// Wrap long lines to this many columns (a terminal's width); `None`
    /// keeps each line whole, for pipes, files and snapshots.
    pub width: Option<usize>,
}

pub fn render(files: &[FileOutcome], options: HumanOptions) -> String {
    let mut out = String::new();
    // One column for the claims' verdicts across every file.
    let heads = files
        .iter()
        .flat_map(|f| &f.claims)
        .map(|c| c.head.chars().count())
        .max()
        .unwrap_or(0);
    for file in files {
        render_file(&mut out, file, heads, options);
        out.push('\n');
    }
    let _ = writeln!(out, "{}", summary_line(&Summary::of(files)));
    match options.width {
        Some(width) => wrap(&out, width),
        None => out,
    }
}

/// Long lines broken at the width, each piece indented under its line's
/// text; a diagnostic's source snippet (miette draws it to the width
/// already) is left as it is.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        // miette's gutter: a line number or nothing, then `│`, `·`, `╭`
        // or `╰` (a `·` elsewhere is prose: `64·ε·n·S`).
        let text = line.trim_start();
        let after_number = text.trim_start_matches(|c: char| c.is_ascii_digit());
        let drawn = if after_number.len() == text.len() {
            text.starts_with(['│', '╭', '╰', '·'])
        } else {
            after_number.starts_with(' ')
                && after_number.trim_start().starts_with(['│', '╭', '╰', '·'])
        };
        if drawn || textwrap::core::display_width(line) <= width {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let lead = line.len() - line.trim_start().len();
        let hang = " ".repeat((lead + 4).min(width / 2));
        let options = textwrap::Options::new(width.max(20))
            .initial_indent(&line[..lead])
            .subsequent_indent(&hang);
        out.push_str(&textwrap::fill(line.trim_start(), options));
        out.push('\n');
    }
    out
}

/// `text` in a colour, where colour is on.
fn paint(text: &str, colour: Option<&str>, on: bool) -> String {
    match colour {
        Some(code) if on => format!("\x1b[{code}m{text}\x1b[0m"),
        _ => text.to_string(),
    }
}

const GREEN: Option<&str> = Some("32");
const RED: Option<&str> = Some("1;31");
const YELLOW: Option<&str> = Some("1;33");

/// `dlverify check`: each file's parse and analysis diagnostics, then how
/// many files have any.
pub fn render_check(files: &[FileOutcome]) -> String {
    let mut out = String::new();
    for file in files {
        let n = file.diagnostics.len();
        if n == 0 {
            let _ = writeln!(out, "{}: ok", file.path);
            continue;
        }
        let _ = writeln!(out, "{}: {n} problem{}", file.path, plural(n));
        for diagnostic in &file.diagnostics {
            out.push_str(&indent(&render_diagnostic(diagnostic), "  "));
        }
    }
    let with_problems = files.iter().filter(|f| !f.diagnostics.is_empty()).count();
    let verdict = if with_problems == 0 {
        "no problems".to_string()
    } else {
        format!("{with_problems} with problems")
    };
    let _ = writeln!(
        out,
        "check: {} file{}, {verdict}",
        files.len(),
        plural(files.len())
    );
    out
}

/// `summary: 8 files, 54 claims as expected: 38 hold, 16 refuted as marked`,
/// or what did not come out as expected first.
fn summary_line(s: &Summary) -> String {
    let files = format!("{} file{}", s.files, plural(s.files));
    let claims = format!("{} claim{}", s.claims, plural(s.claims));
    let expected = format!("{} hold, {} refuted as marked", s.held, s.refuted_as_marked);
    if s.failed == 0 && s.errors == 0 {
        return format!("summary: {files}, {claims} as expected: {expected}");
    }
    let mut parts = vec![];
    if s.failed > 0 {
        let mut wrong = vec![];
        if s.refuted > 0 {
            wrong.push(format!("{} refuted", s.refuted));
        }
        if s.held_unexpectedly > 0 {
            wrong.push(format!(
                "{} held though marked to fail",
                s.held_unexpectedly
            ));
        }
        parts.push(format!(
            "{} not as expected ({})",
            s.failed,
            wrong.join(", ")
        ));
    }
    if s.errors > 0 {
        parts.push(format!("{} error{}", s.errors, plural(s.errors)));
    }
    parts.push(format!("{} as expected ({expected})", s.passed));
    format!("summary: {files}, {claims}: {}", parts.join(", "))
}

fn short_error(e: f64) -> String {
    if e == 0.0 {
        "0".to_string()
    } else {
        format!("{e:.1e}")
    }
}

/// Renders a diagnostic the same way everywhere: no colour, fixed width, so
/// that output is byte-identical run after run and snapshots are stable.
pub fn render_diagnostic(diagnostic: &miette::Report) -> String {
    render_diagnostic_in(diagnostic, HumanOptions::default())
}

/// A diagnostic in colour and at a terminal's width where `options` say so.
fn render_diagnostic_in(diagnostic: &miette::Report, options: HumanOptions) -> String {
    if !fits_a_snippet(diagnostic) {
        return render_plain(diagnostic);
    }
    let mut out = String::new();
    let theme = if options.colour {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(options.width.unwrap_or(100))
        .with_links(false);
    if handler
        .render_report(&mut out, diagnostic.as_ref())
        .is_err()
    {
        out = format!("{diagnostic}\n");
    }
    out
}

/// Columns past which miette cannot draw a label (its arithmetic is 16-bit).
const MAX_SNIPPET_COLUMN: usize = 60_000;

/// Whether every label sits where miette can draw it.
fn fits_a_snippet(diagnostic: &miette::Report) -> bool {
    let (Some(source), Some(mut labels)) = (diagnostic.source_code(), diagnostic.labels()) else {
        return true;
    };
    // The column read is in characters, miette's arithmetic in bytes: a
    // character takes at most 4.
    labels.all(|label| {
        source
            .read_span(label.inner(), 0, 0)
            .map_or(true, |contents| 4 * contents.column() < MAX_SNIPPET_COLUMN)
    })
}

/// The diagnostic without a source snippet: code, message, where, help.
fn render_plain(diagnostic: &miette::Report) -> String {
    let mut out = String::new();
    if let Some(code) = diagnostic.code() {
        let _ = writeln!(out, "{code}\n");
    }
    let _ = writeln!(out, "  × {diagnostic}");
    if let (Some(source), Some(labels)) = (diagnostic.source_code(), diagnostic.labels()) {
        for label in labels {
            if let Ok(contents) = source.read_span(label.inner(), 0, 0) {
                let _ = writeln!(
                    out,
                    "  at line {}, column {}: {}",
                    contents.line() + 1,
                    contents.column() + 1,
                    label.label().unwrap_or("here")
                );
            }
        }
    }
    if let Some(help) = diagnostic.help() {
        let _ = writeln!(out, "  help: {help}");
    }
    out
}

fn render_file(out: &mut String, file: &FileOutcome, heads: usize, options: HumanOptions) {
    let title = file.exercise.as_deref().unwrap_or("");
    let status = match file.status() {
        FileStatus::Pass => paint("ok", GREEN, options.colour),
        FileStatus::Fail => paint("FAILED", RED, options.colour),
        FileStatus::Error => paint("NOT CHECKED", YELLOW, options.colour),
    };
    if title.is_empty() {
        let _ = writeln!(out, "{} [{status}]", file.path);
    } else {
        let _ = writeln!(out, "{}: {title} [{status}]", file.path);
    }
    if file.sizes.iter().any(|s| !s.values().is_empty()) {
        let sizes: Vec<String> = file.sizes.iter().map(|s| format!("({s})")).collect();
        let _ = writeln!(out, "  checked at {}", sizes.join(", "));
    } else if !file.sizes.is_empty() {
        let _ = writeln!(out, "  checked once: the spec declares no dims");
    }
    for diagnostic in &file.diagnostics {
        out.push_str(&indent(&render_diagnostic_in(diagnostic, options), "  "));
    }
    for claim in &file.claims {
        render_claim(out, claim, heads, options);
    }
    if options.show_grad {
        for derived in &file.derived {
            render_derived(out, derived);
        }
    }
}

fn render_claim(out: &mut String, claim: &ClaimOutcome, width: usize, options: HumanOptions) {
    let status = claim.status();
    let mark = match status {
        ClaimStatus::Pass => paint("pass", GREEN, options.colour),
        ClaimStatus::ExpectedFail => paint("pass (expected fail)", GREEN, options.colour),
        ClaimStatus::Fail => paint("FAIL", RED, options.colour),
        ClaimStatus::UnexpectedPass => paint("FAIL (unexpected pass)", RED, options.colour),
        ClaimStatus::Error => paint("ERROR", YELLOW, options.colour),
    };
    let head = format!("{:<width$}", claim.head);
    let line = format!(
        "  {head}  line {:<4} {mark}: {}",
        claim.line,
        verdict_text(claim)
    );
    let _ = writeln!(out, "{line}");
    if let Some(reason) = &claim.expect_fail {
        let _ = writeln!(out, "      erratum: {reason}");
    }
    // A claim that holds needs its headline; the rest is for -v or trouble.
    let notes = if status == ClaimStatus::Pass && !options.verbose {
        &claim.notes[..claim.notes.len().min(1)]
    } else {
        &claim.notes[..]
    };
    for note in notes {
        let _ = writeln!(out, "      {note}");
    }
    render_judgements(out, claim, options);
    let show_evidence = !status.as_expected() || options.verbose;
    if show_evidence {
        render_evidence(out, claim);
    }
    if status == ClaimStatus::ExpectedFail
        && !options.verbose
        && let Some(evidence) = first_evidence(claim)
    {
        let _ = writeln!(out, "      evidence: {evidence}");
    }
    // A refuted claim naturally fails the directional check too; only a
    // disagreement that leaves the verdict in doubt is worth a line.
    let in_doubt = matches!(claim.verdict, Verdict::Undecided(_));
    if options.verbose {
        render_routes(out, &claim.routes);
    }
    if options.verbose || in_doubt {
        for check in claim
            .cross_checks
            .iter()
            .filter(|c| options.verbose || c.compared > 0)
        {
            let verdict = if check.passed { "ok" } else { "DISAGREES" };
            let _ = writeln!(out, "      {} {verdict}: {}", check.name, check.detail);
        }
    }
}

/// The verdict in a phrase: what a claim's line says after its mark.
pub(crate) fn verdict_text(claim: &ClaimOutcome) -> String {
    // A check may sum up its verdict itself (stochastic claims do).
    let summary = claim.details.get("summary").and_then(|s| s.as_str());
    match &claim.verdict {
        Verdict::Holds | Verdict::Refuted if summary.is_some() => {
            summary.unwrap_or_default().to_string()
        }
        Verdict::Holds if claim.kind == "grad" => format!(
            "agrees with autodiff at {} size{} (max rel. error {})",
            claim.sizes.len(),
            plural(claim.sizes.len()),
            short_error(claim.max_rel_error)
        ),
        Verdict::Holds => format!(
            "holds at {} size{}",
            claim.sizes.len(),
            plural(claim.sizes.len())
        ),
        Verdict::Refuted => {
            let summary = refutation_summary(claim);
            if summary.is_empty() {
                "refuted".to_string()
            } else {
                summary
            }
        }
        Verdict::Undecided(why) => why.clone(),
    }
}

/// How the gradient was derived, sizes grouped by route:
/// `gradient by reverse mode, checked at every element by forward mode at (N = 3), (N = 4)`.
fn render_routes(out: &mut String, routes: &[RouteAt]) {
    let mut groups: Vec<(Route, Vec<String>)> = vec![];
    for r in routes {
        let sizes = if r.sizes.values().is_empty() {
            r.sizes.to_string()
        } else {
            format!("({})", r.sizes)
        };
        match groups.iter_mut().find(|(route, _)| *route == r.route) {
            Some((_, at)) => at.push(sizes),
            None => groups.push((r.route, vec![sizes])),
        }
    }
    for (route, at) in groups {
        let how = match route {
            Route::ReverseCheckedEverywhere => {
                "reverse mode, checked at every element by forward mode".to_string()
            }
            Route::ReverseCheckedAlong(k) => format!(
                "reverse mode, checked by forward mode along {k} random direction{}",
                plural(k)
            ),
            Route::ForwardAlone(WithoutReverse::Kink) => {
                "forward mode alone (L has a kink there)".to_string()
            }
            Route::ForwardAlone(WithoutReverse::TooLarge(why)) => {
                format!("forward mode alone ({why})")
            }
        };
        let _ = writeln!(out, "      gradient by {how} at {}", at.join(", "));
    }
}

/// A block of a claim's elements: `dx[7..=8]` of a gradient, or the points
/// `i = 3..=5` of a condition's free indices (its target names them).
fn element_name(claim: &ClaimOutcome, block: &[(i64, i64)]) -> String {
    if !matches!(claim.kind, "condition" | "optimum") {
        return block_name(&claim.target, block);
    }
    let range = |&(lo, hi): &(i64, i64)| {
        if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}..={hi}")
        }
    };
    let values: Vec<String> = block.iter().map(range).collect();
    match values.len() {
        0 => "the only point".to_string(),
        1 => format!("{} = {}", claim.target, values.join("")),
        _ => format!("({}) = ({})", claim.target, values.join(", ")),
    }
}

/// The first piece of evidence against a claim, in one line.
pub(crate) fn first_evidence(claim: &ClaimOutcome) -> Option<String> {
    if let Some(m) = claim.mismatches.first() {
        return Some(mismatch_line(claim, m));
    }
    if let Some(v) = claim.hull_violations.first() {
        return Some(hull_line(v));
    }
    claim.problems.first().map(|p| p.diagnostic.to_string())
}

/// One wrong element: both values with enough digits to tell them apart,
/// their difference, and what it was judged against.
fn mismatch_line(claim: &ClaimOutcome, m: &Mismatch) -> String {
    let index: Vec<(i64, i64)> = m.index.iter().map(|&i| (i, i)).collect();
    let (expected, actual) = distinct_values(m.expected, m.actual);
    let judged = match &m.judged {
        MismatchBasis::Persists {
            tolerance,
            terms,
            scale,
            precise_difference,
            ..
        } => format!(
            "the f64 rounding bound is {} (64·ε·n·S, n = {}, S = {}), and in double-double they still differ by {}",
            format_value(*tolerance),
            format_value(*terms),
            format_value(*scale),
            format_value(*precise_difference)
        ),
        MismatchBasis::OutsideKink { lo, hi, slack } => format!(
            "L has a kink here and its valid derivatives range over [{}, {}] (± {})",
            format_value(*lo),
            format_value(*hi),
            format_value(*slack)
        ),
    };
    let expected = if m.expected.is_finite() {
        expected
    } else {
        "undefined".to_string()
    };
    let off = match &m.judged {
        MismatchBasis::OutsideKink { lo, hi, .. } => (lo - m.actual).max(m.actual - hi),
        MismatchBasis::Persists { .. } => m.difference,
    };
    format!(
        "{}{}: autodiff {expected}, claimed {actual}, off by {}; {judged}",
        block_name(&claim.target, &index),
        m.sizes.at_clause(),
        format_value(off),
    )
}

/// At a kink, the claim is no combination of the valid gradients.
fn hull_line(v: &HullViolation) -> String {
    let (along, theirs) = match v.direction {
        HullDirection::AllOnes => ("the claimed gradient sums to".to_string(), "sum to"),
        HullDirection::Random(k) => (
            format!("along random direction {}, the claim gives", k + 1),
            "give",
        ),
        HullDirection::Separating => (
            "along a direction that separates it from them, the claim gives".to_string(),
            "give",
        ),
    };
    let valid = if v.lo == v.hi {
        format_value(v.lo)
    } else {
        format!("[{}, {}]", format_value(v.lo), format_value(v.hi))
    };
    format!(
        "L has a kink{}: {along} {}, while its valid gradients {theirs} {valid} (± {}): no valid gradient is the claimed one",
        v.sizes.at_clause(),
        format_value(v.claimed),
        format_value(v.tolerance)
    )
}

/// Two values printed with as many digits as it takes to see them differ.
fn distinct_values(a: f64, b: f64) -> (String, String) {
    let (mut x, mut y) = (format_value(a), format_value(b));
    let mut digits = 6;
    while x == y && a != b && digits <= 17 {
        x = format!("{a:.digits$e}");
        y = format!("{b:.digits$e}");
        digits += 1;
    }
    (x, y)
}

/// One line saying where the claim goes wrong.
fn refutation_summary(claim: &ClaimOutcome) -> String {
    let mut parts = vec![];
    let mismatched: usize = claim.mismatch_groups.iter().map(|g| g.count).sum();
    if mismatched > 0 {
        let first = claim.mismatch_groups.first().map(|g| {
            let blocks: Vec<String> = g
                .blocks
                .iter()
                .take(2)
                .map(|b| element_name(claim, b))
                .collect();
            format!("{} at {}", blocks.join(", "), g.sizes)
        });
        parts.push(format!(
            "differs from autodiff at {mismatched} element{} (first: {})",
            plural(mismatched),
            first.unwrap_or_default()
        ));
    }
    if let Some(v) = claim.hull_violations.first() {
        parts.push(format!(
            "no valid gradient at the kink{}",
            v.sizes.at_clause()
        ));
    }
    let undefined: usize = claim.problems.iter().map(|p| p.elements.count).sum();
    if undefined > 0 {
        parts.push(format!(
            "undefined at {undefined} element{}",
            plural(undefined)
        ));
    }
    parts.join("; ")
}

fn render_evidence(out: &mut String, claim: &ClaimOutcome) {
    for group in &claim.mismatch_groups {
        let blocks: Vec<String> = group
            .blocks
            .iter()
            .take(BLOCKS_SHOWN)
            .map(|b| element_name(claim, b))
            .collect();
        let more = group.blocks.len().saturating_sub(BLOCKS_SHOWN);
        let tail = if more > 0 {
            format!(" and {more} more block{}", plural(more))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "      at {}: wrong at {}{tail}",
            group.sizes,
            blocks.join(", ")
        );
    }
    for m in claim.mismatches.iter().take(ELEMENTS_SHOWN) {
        let _ = writeln!(out, "      {}", mismatch_line(claim, m));
    }
    for v in &claim.hull_violations {
        let _ = writeln!(out, "      {}", hull_line(v));
    }
    if claim.unconfirmed > 0 {
        let _ = writeln!(
            out,
            "      ({} of the wrong elements differ beyond the f64 bound and were not recomputed in double-double: others at the same size were confirmed as mistakes)",
            claim.unconfirmed
        );
    }
    for problem in &claim.problems {
        let blocks: Vec<String> = problem
            .elements
            .blocks
            .iter()
            .take(BLOCKS_SHOWN)
            .map(|b| element_name(claim, b))
            .collect();
        let _ = writeln!(
            out,
            "      at {}: undefined at {}",
            problem.elements.sizes,
            blocks.join(", ")
        );
        out.push_str(&indent(&render_diagnostic(&problem.diagnostic), "        "));
    }
}

/// How elements that differed in f64 were judged: rounding, or a valid
/// derivative at a kink; and, with -v, how near the claim came to failing.
fn render_judgements(out: &mut String, claim: &ClaimOutcome, options: HumanOptions) {
    if let Some(r) = &claim.rounding {
        let _ = writeln!(
            out,
            "      rounding: {} element{} differ{} from autodiff beyond the f64 bound (by up to {}, bound {}), but by {} in double-double: rounding in cancelling terms, not a mistake",
            r.elements,
            plural(r.elements),
            if r.elements == 1 { "s" } else { "" },
            format_value(r.largest_difference),
            format_value(r.bound),
            format_value(r.precise_difference)
        );
    }
    for k in claim.kinks.iter().take(ELEMENTS_SHOWN) {
        let index: Vec<(i64, i64)> = k.index.iter().map(|&i| (i, i)).collect();
        let _ = writeln!(
            out,
            "      kink: {}{}: claimed {}, autodiff {}; L is not differentiable there and its valid derivatives range over [{}, {}]",
            block_name(&claim.target, &index),
            k.sizes.at_clause(),
            format_value(k.claimed),
            if k.autodiff.is_finite() {
                format!("picks {}", format_value(k.autodiff))
            } else {
                "is undefined".to_string()
            },
            format_value(k.lo),
            format_value(k.hi)
        );
    }
    let more = claim.kinks.len().saturating_sub(ELEMENTS_SHOWN);
    if more > 0 {
        let _ = writeln!(
            out,
            "      kink: {more} more element{} likewise",
            plural(more)
        );
    }
    if options.verbose
        && let Some(ratio) = claim.worst_ratio
    {
        let _ = writeln!(
            out,
            "      worst difference: {}× its tolerance",
            format_value(ratio)
        );
    }
}

fn render_derived(out: &mut String, derived: &DerivedGradient) {
    let _ = writeln!(out, "  dL/d{} at {}:", derived.tensor, derived.sizes);
    let columns = derived
        .axes
        .last()
        .map_or(1, |&(lo, hi)| (hi - lo + 1).max(1) as usize);
    let rows = derived.values.chunks(columns);
    let grid = crate::eval::Grid::new(derived.axes.clone());
    for (r, row) in rows.enumerate() {
        let first = grid.point(r * columns);
        let label = if derived.axes.is_empty() {
            format!("d{}", derived.tensor)
        } else {
            let mut block: Vec<(i64, i64)> = first.iter().map(|&i| (i, i)).collect();
            if let (Some(last), Some(&(lo, hi))) = (block.last_mut(), derived.axes.last()) {
                *last = (lo, hi);
            }
            block_name(&derived.tensor, &block)
        };
        let values: Vec<String> = row.iter().map(|v| format!("{v:>12.6}")).collect();
        let _ = writeln!(out, "    {label} = {}", values.join(" "));
    }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{prefix}{l}\n")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn long_lines_wrap_under_their_text_and_snippets_stay_whole() {
        let long = format!("  grad x[j]  line 3  FAIL: {}", "word ".repeat(30));
        let snippet = format!("   6 │ {}", "x".repeat(150));
        let text = format!("{long}\n{snippet}\nshort\n");
        let wrapped = wrap(&text, 60);
        let lines: Vec<&str> = wrapped.lines().collect();
        assert!(lines.len() > 4, "{wrapped}");
        assert!(lines[0].starts_with("  grad x[j]") && lines[0].len() <= 60);
        for line in &lines[1..lines.len() - 2] {
            assert!(line.starts_with("      word"), "{line:?}");
            assert!(line.len() <= 60, "{line:?}");
        }
        assert_eq!(lines[lines.len() - 2], snippet);
        assert_eq!(lines[lines.len() - 1], "short");
        // A `·` in prose is no snippet's gutter.
        let prose = format!("  grad w  line 3  FAIL: {} 64·ε·n·S", "word ".repeat(20));
        assert!(wrap(&prose, 60).lines().count() > 1);
        let prose = format!("      64·ε·n·S is the bound {}", "word ".repeat(20));
        assert!(wrap(&prose, 60).lines().count() > 1);
        // Colour codes take no columns.
        let painted = paint("FAIL", RED, true);
        assert_eq!(textwrap::core::display_width(&painted), 4);
        assert_eq!(paint("FAIL", RED, false), "FAIL");
    }
}
