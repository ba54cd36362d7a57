//! Text → AST → checked program: names, indices, ranges and sizes.
#![no_main]

use dlverify::source::Source;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Source::new("fuzz.dl", text);
    let Ok(spec) = dlverify::syntax::parse(&source) else {
        return;
    };
    match dlverify::analysis::analyze(&spec) {
        Ok(program) => {
            // The size sweep is analysis too: it solves the ranges for sizes.
            let _ = dlverify::analysis::size_sweep(&program, &[]);
        }
        Err(errors) => {
            for e in errors {
                let _ = format!(
                    "{:?}",
                    miette::Report::new(e).with_source_code(source.named())
                );
            }
        }
    }
});
