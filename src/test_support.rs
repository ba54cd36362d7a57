//! What unit tests across the stages share: the specs of the project,
//! bundled and test corpora alike, checked as a user's would be.

use crate::analysis::{analyze, size_sweep};
use crate::eval::Instance;
use crate::source::Source;

/// Calls `f` with each spec of `specs/`, `tests/corpus` and `tests/library`
/// that has a layer or loss, at the largest size of its sweep, in path
/// order; specs that do not parse, analyse or instantiate are passed over.
pub(crate) fn for_each_spec_with_a_loss(
    mut f: impl FnMut(&std::path::Path, &Source, &Instance<'_>),
) {
    let mut files: Vec<std::path::PathBuf> = ["specs", "tests/corpus", "tests/library"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "dl"))
        .collect();
    files.sort();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let source = Source::new(path.to_string_lossy().into_owned(), &text);
        let Ok(ast) = crate::syntax::parse(&source) else {
            continue;
        };
        let Ok(program) = analyze(&ast) else { continue };
        if program.output.is_none() {
            continue;
        }
        let Some(sizes) = size_sweep(&program, &[])
            .ok()
            .and_then(|s| s.last().cloned())
        else {
            continue;
        };
        let Ok(instance) = Instance::new(&program, &source, sizes, 1 << 20) else {
            continue;
        };
        f(&path, &source, &instance);
    }
}

/// A cumulative sum at n = 40: a forward pass quadratic by definition,
/// whose recording (about 2,000 operations) the tests of a recording's
/// limit hold against limits made to order.
pub(crate) const CUMSUM: &str =
    "dim n = 40\ninput x[n]\ny[i] = sum(k in 1..=i) x[k]     for i in 1..=n\n";

/// Calls `f` with the spec `text`, parsed, analysed and instantiated at
/// the largest size of its sweep (a spec the caller knows to be good).
#[allow(clippy::unwrap_used)]
pub(crate) fn with_instance<R>(text: &str, f: impl FnOnce(&Source, &mut Instance<'_>) -> R) -> R {
    let source = Source::new("spec.dl", text);
    let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
    let sizes = size_sweep(&program, &[]).unwrap().last().cloned().unwrap();
    let mut instance = Instance::new(&program, &source, sizes, 1 << 20).unwrap();
    f(&source, &mut instance)
}
