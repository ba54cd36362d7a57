//! Text → AST: any UTF-8 text parses or gives a diagnostic, never a panic.
#![no_main]

use dlverify::source::Source;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Source::new("fuzz.dl", text);
    if let Err(e) = dlverify::syntax::parse(&source) {
        // Rendering the diagnostic walks its spans: they must lie in the text.
        let _ = format!(
            "{:?}",
            miette::Report::new(e).with_source_code(source.named())
        );
    }
});
