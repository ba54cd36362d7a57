//! One set of broken specs (`tests/renderings/*.dl`) rendered all three
//! ways a user reads a report: human, short (one line per problem, for
//! editors and CI) and the JSON findings. Each rendering is an insta
//! snapshot, so that none drifts from the others unseen; and the three
//! must name the same problems at the same places.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dlverify::report::{findings, human, json};
use dlverify::source::Source;
use dlverify::verify::Options;
use serde_json::Value;

fn outcomes() -> Vec<(String, dlverify::verify::outcome::FileOutcome)> {
    let mut paths: Vec<_> = std::fs::read_dir("tests/renderings")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dl"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 3, "{paths:?}");
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let source = Source::new(format!("tests/renderings/{name}.dl"), text);
            (name, dlverify::check_source(source, &Options::default()))
        })
        .collect()
}

#[test]
fn human_short_and_json_tell_the_same_story() {
    for (name, outcome) in outcomes() {
        let files = std::slice::from_ref(&outcome);
        let human = human::render(files, human::HumanOptions::default());
        let short = findings::render_short(files);
        let report: Value = serde_json::from_str(&json::render(files)).unwrap();
        let found = report["files"][0]["findings"].clone();
        insta::assert_snapshot!(format!("{name}__human"), human);
        insta::assert_snapshot!(format!("{name}__short"), short);
        insta::assert_snapshot!(
            format!("{name}__json"),
            serde_json::to_string_pretty(&found).unwrap()
        );
        // The same problems, in the same order, at the same places.
        let found = found.as_array().unwrap();
        let lines: Vec<&str> = short.lines().collect();
        assert_eq!(lines.len(), found.len(), "{name}");
        for (line, f) in lines.iter().zip(found) {
            let start = &f["range"]["start"];
            let place = format!(
                "tests/renderings/{name}.dl:{}:{}: error[{}]: ",
                start["line"],
                start["column"],
                f["code"].as_str().unwrap()
            );
            assert!(line.starts_with(&place), "{line} against {place}");
            let code = f["code"].as_str().unwrap();
            assert!(
                human.contains(code) || code.starts_with("dl::claim::"),
                "{name}: {code} not in\n{human}"
            );
        }
    }
}

#[test]
fn columns_count_characters_and_utf16_units_not_bytes() {
    let (_, outcome) = outcomes()
        .into_iter()
        .find(|(n, _)| n == "syntax_after_unicode")
        .unwrap();
    let f = &findings::findings(&outcome)[0];
    let source = outcome.source.as_ref().unwrap();
    let (start, _) = findings::range(source, f.span.unwrap());
    // `check taylor one_sided rate ≈ 2 ± 0.1 precision f16`: `f16` is the
    // 49th character; `≈` takes 3 bytes and `±` 2, one UTF-16 unit each.
    assert_eq!((start.line, start.column, start.column_utf16), (6, 49, 49));
    let line_start = source.text().match_indices('\n').nth(4).unwrap().0 + 1;
    assert_eq!(start.offset - line_start, 48 + 3);
    // The human report's header counts as the JSON does.
    let human = human::render(&[outcome], human::HumanOptions::default());
    assert!(human.contains("syntax_after_unicode.dl:6:49]"), "{human}");
}
