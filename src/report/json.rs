//! The machine-readable report (`--format json`): stable field names, lines
//! and columns 1-based, indices in the spec's 1-based convention.

use serde_json::{Map, Value, json};

use super::{Summary, block_name};
use crate::analysis::Sizes;
use crate::source::Source;
use crate::verify::outcome::*;

/// How the gradient was derived at one size; forward mode alone says why.
fn route(r: &RouteAt) -> Value {
    let mut entry = json!({
        "sizes": sizes(&r.sizes),
        "mode": match r.route {
            Route::ForwardAlone(_) => "forward",
            Route::ReverseCheckedEverywhere | Route::ReverseCheckedAlong(_) => "reverse",
        },
        "checked": match r.route {
            Route::ForwardAlone(_) => Value::Null,
            Route::ReverseCheckedEverywhere => json!("every element"),
            Route::ReverseCheckedAlong(_) => json!("random directions"),
        },
        "compared": r.compared,
    });
    let why = match r.route {
        Route::ForwardAlone(WithoutReverse::Kink) => json!({"reason": "kink"}),
        Route::ForwardAlone(WithoutReverse::TooLarge(too_large)) => json!({
            "reason": "recording too large",
            "limit": too_large.operations,
        }),
        Route::ReverseCheckedEverywhere | Route::ReverseCheckedAlong(_) => return entry,
    };
    if let Some(map) = entry.as_object_mut() {
        map.insert("why".to_string(), why);
    }
    entry
}

pub fn render(files: &[FileOutcome]) -> String {
    let value = json!({
        "files": files.iter().map(file).collect::<Vec<_>>(),
        "summary": Summary::of(files),
    });
    // Serialising a Value built here cannot fail; fall back to its Display.
    serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
}

fn file(f: &FileOutcome) -> Value {
    json!({
        "path": f.path,
        "exercise": f.exercise,
        "status": f.status().as_str(),
        "sizes": f.sizes.iter().map(sizes).collect::<Vec<_>>(),
        "diagnostics": f.diagnostics.iter().map(|d| diagnostic(d, f.source.as_ref())).collect::<Vec<_>>(),
        "claims": f.claims.iter().map(|c| claim(c, f.source.as_ref())).collect::<Vec<_>>(),
        "derived": f.derived.iter().map(derived).collect::<Vec<_>>(),
        "findings": super::findings::findings(f).iter().map(|x| finding(x, f.source.as_ref())).collect::<Vec<_>>(),
    })
}

/// A finding with its place in characters, UTF-16 code units and bytes
/// (lines and columns 1-based), as editors and annotations want it.
fn finding(f: &super::findings::Finding, source: Option<&Source>) -> Value {
    let place = |span: crate::source::Span| {
        source.map(|s| {
            let (start, end) = super::findings::range(s, span);
            json!({ "start": start, "end": end })
        })
    };
    json!({
        "code": f.code,
        "severity": f.severity.as_str(),
        "message": f.message,
        "help": f.help,
        "range": f.span.and_then(place),
        "labels": f.labels.iter().map(|(span, label)| json!({
            "message": label,
            "range": place(*span),
        })).collect::<Vec<_>>(),
    })
}

pub fn sizes(s: &Sizes) -> Value {
    let map: Map<String, Value> = s.named().map(|(n, v)| (n.to_string(), json!(v))).collect();
    Value::Object(map)
}

/// A diagnostic as editors want it: code, message, position, help, labels.
pub fn diagnostic(d: &miette::Report, source: Option<&Source>) -> Value {
    let labels: Vec<Value> = d
        .labels()
        .into_iter()
        .flatten()
        .map(|label| {
            let (line, column) = position(source, label.offset());
            let (end_line, end_column) = position(source, label.offset() + label.len());
            json!({
                "message": label.label(),
                "line": line, "column": column,
                "end_line": end_line, "end_column": end_column,
            })
        })
        .collect();
    let first = labels.first();
    json!({
        "code": d.code().map(|c| c.to_string()),
        "severity": "error",
        "message": d.to_string(),
        "line": first.and_then(|l| l.get("line").cloned()),
        "column": first.and_then(|l| l.get("column").cloned()),
        "help": d.help().map(|h| h.to_string()),
        "labels": labels,
    })
}

fn position(source: Option<&Source>, offset: usize) -> (Option<usize>, Option<usize>) {
    match source {
        Some(s) => {
            let (l, c) = s.line_column(offset);
            (Some(l), Some(c))
        }
        None => (None, None),
    }
}

fn claim(c: &ClaimOutcome, source: Option<&Source>) -> Value {
    let mut value = common_claim_fields(c, source);
    if let Value::Object(map) = &mut value {
        map.insert("notes".to_string(), json!(c.notes));
        for (k, v) in &c.details {
            map.insert(k.clone(), v.clone());
        }
    }
    value
}

fn common_claim_fields(c: &ClaimOutcome, source: Option<&Source>) -> Value {
    let (verdict, reason) = match &c.verdict {
        Verdict::Holds => ("holds", None),
        Verdict::Refuted => ("refuted", None),
        Verdict::Undecided(why) => ("undecided", Some(why.clone())),
    };
    json!({
        "kind": c.kind,
        "target": c.target,
        "claim": c.head,
        "line": c.line,
        "column": c.column,
        "expect": if c.expect_fail.is_some() { "fail" } else { "pass" },
        "expect_reason": c.expect_fail,
        "status": c.status().as_str(),
        "verdict": verdict,
        "undecided_reason": reason,
        "sizes": c.sizes.iter().map(sizes).collect::<Vec<_>>(),
        "max_abs_error": c.max_abs_error,
        "max_rel_error": c.max_rel_error,
        "worst_ratio": c.worst_ratio.map_or(Value::Null, finite_or_null),
        "unconfirmed": c.unconfirmed,
        "rounding": c.rounding.as_ref().map(|r| json!({
            "elements": r.elements,
            "largest_difference": r.largest_difference,
            "bound": r.bound,
            "precise_difference": r.precise_difference,
        })),
        "kinks": c.kinks.iter().map(|k| json!({
            "sizes": sizes(&k.sizes),
            "index": k.index,
            "claimed": k.claimed,
            "autodiff": k.autodiff,
            "valid": [k.lo, k.hi],
        })).collect::<Vec<_>>(),
        "hull_violations": c.hull_violations.iter().map(|v| json!({
            "sizes": sizes(&v.sizes),
            "direction": match v.direction {
                HullDirection::AllOnes => json!("all-ones"),
                HullDirection::Random(k) => json!(format!("random {}", k + 1)),
                HullDirection::Separating => json!("separating"),
            },
            "claimed": v.claimed,
            "valid": [v.lo, v.hi],
            "tolerance": v.tolerance,
        })).collect::<Vec<_>>(),
        "mismatches": c.mismatches.iter().map(|m| {
            let mut entry = json!({
                "sizes": sizes(&m.sizes),
                "index": m.index,
                "expected": m.expected,
                "actual": m.actual,
                "difference": m.difference,
            });
            entry["judged"] = match &m.judged {
                MismatchBasis::Persists { tolerance, ulps, terms, scale, precise_difference } => json!({
                    "basis": "rounding bound, difference persists in double-double",
                    "tolerance": tolerance,
                    "ulps": ulps,
                    "terms": terms,
                    "scale": scale,
                    "precise_difference": precise_difference,
                }),
                MismatchBasis::OutsideKink { lo, hi, slack } => json!({
                    "basis": "outside the valid derivatives at a kink",
                    "valid": [lo, hi],
                    "tolerance": slack,
                }),
            };
            entry
        }).collect::<Vec<_>>(),
        "mismatch_groups": c.mismatch_groups.iter().map(|g| group(&c.target, g)).collect::<Vec<_>>(),
        "problems": c.problems.iter().map(|p| json!({
            "elements": group(&c.target, &p.elements),
            "diagnostic": diagnostic(&p.diagnostic, source),
        })).collect::<Vec<_>>(),
        "routes": c.routes.iter().map(route).collect::<Vec<_>>(),
        "cross_checks": c.cross_checks.iter().map(|x| json!({
            "name": x.name,
            "passed": x.passed,
            "compared": x.compared,
            "worst_ratio": x.worst_ratio,
            "detail": x.detail,
        })).collect::<Vec<_>>(),
    })
}

fn group(target: &str, g: &ElementGroup) -> Value {
    json!({
        "sizes": sizes(&g.sizes),
        "count": g.count,
        "elements": g.blocks.iter().map(|b| block_name(target, b)).collect::<Vec<_>>(),
        "blocks": g.blocks.iter().map(|b| b.iter().map(|&(lo, hi)| json!([lo, hi])).collect::<Vec<_>>()).collect::<Vec<_>>(),
    })
}

fn derived(d: &DerivedGradient) -> Value {
    json!({
        "tensor": d.tensor,
        "sizes": sizes(&d.sizes),
        "axes": d.axes.iter().map(|&(lo, hi)| json!([lo, hi])).collect::<Vec<_>>(),
        "values": d.values,
    })
}

/// JSON has no infinity: an unbounded ratio is `null`.
fn finite_or_null(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}
