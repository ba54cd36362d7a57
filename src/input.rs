//! Finding and reading spec files. Errors: `dl::input::*`.

use std::path::{Path, PathBuf};

use miette::Diagnostic;
use thiserror::Error;

use crate::source::Source;

#[derive(Debug, Error, Diagnostic)]
pub enum InputError {
    /// Returned when a named file does not exist: `dlverify nope.dl`.
    #[error("{path}: no such file or directory")]
    #[diagnostic(
        code(dl::input::not_found),
        help("check the path; a directory is searched for `*.dl` files")
    )]
    NotFound { path: String },

    /// Returned when a file exists but cannot be read (permissions, a device, ...).
    #[error("{path}: cannot be read: {reason}")]
    #[diagnostic(code(dl::input::unreadable), help("check the file's permissions"))]
    Unreadable { path: String, reason: String },

    /// Returned when a file is not UTF-8 text, e.g. a binary file.
    #[error("{path}: not UTF-8 text (invalid byte at offset {offset})")]
    #[diagnostic(
        code(dl::input::not_utf8),
        help("a spec is a UTF-8 text file; is this the right file?")
    )]
    NotUtf8 { path: String, offset: usize },

    /// Returned when a directory holds no `*.dl` files.
    #[error("{path}: no `.dl` spec files in this directory")]
    #[diagnostic(code(dl::input::no_specs), help("spec files end in `.dl`"))]
    NoSpecs { path: String },

    /// Returned when a spec file is empty or holds only white space.
    #[error("{path}: the file is empty")]
    #[diagnostic(
        code(dl::input::empty),
        help(
            "a spec declares sizes, tensors, a layer or loss, and claims; see the README's language reference"
        )
    )]
    Empty { path: String },
}

/// The files to check: each file as given, each directory's `*.dl` files
/// in name order. A path that fails yields an error in its place, so the
/// others are still checked.
pub fn expand_paths(paths: &[PathBuf]) -> Vec<Result<PathBuf, InputError>> {
    let mut out = vec![];
    let mut stdin_named = false;
    for path in paths {
        if path == Path::new(STDIN) {
            // Standard input can be read once.
            if stdin_named {
                out.push(Err(InputError::Unreadable {
                    path: STDIN_NAME.to_string(),
                    reason: "standard input is named twice; it can be read once".to_string(),
                }));
                continue;
            }
            stdin_named = true;
        }
        if path != Path::new(STDIN) && path.is_dir() {
            let mut specs: Vec<PathBuf> = match std::fs::read_dir(path) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    // Everything named `*.dl` but a directory: a broken link or
                    // an unreadable file is an error to report, not skipped.
                    .filter(|p| p.extension().is_some_and(|e| e == "dl") && !p.is_dir())
                    .collect(),
                Err(e) => {
                    out.push(Err(InputError::Unreadable {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    }));
                    continue;
                }
            };
            specs.sort();
            if specs.is_empty() {
                out.push(Err(InputError::NoSpecs {
                    path: path.display().to_string(),
                }));
            }
            out.extend(specs.into_iter().map(Ok));
        } else {
            out.push(Ok(path.clone()));
        }
    }
    out
}

/// The path that names standard input.
pub const STDIN: &str = "-";
/// What reports call standard input.
pub const STDIN_NAME: &str = "<stdin>";

/// Reads a spec as UTF-8 text (`-`: from standard input). A leading byte-order mark is dropped, as
/// editors on Windows write one: it is not part of the text, and columns on
/// the first line count from after it.
pub fn read_spec(path: &Path) -> Result<Source, InputError> {
    let name = if path == Path::new(STDIN) {
        STDIN_NAME.to_string()
    } else {
        path.display().to_string()
    };
    let bytes = if path == Path::new(STDIN) {
        let mut bytes = vec![];
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes).map(|_| bytes)
    } else {
        std::fs::read(path)
    };
    let bytes = bytes.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => InputError::NotFound { path: name.clone() },
        _ => InputError::Unreadable {
            path: name.clone(),
            reason: e.to_string(),
        },
    })?;
    let text = String::from_utf8(bytes).map_err(|e| InputError::NotUtf8 {
        path: name.clone(),
        offset: e.utf8_error().valid_up_to(),
    })?;
    Ok(Source::new(name, text))
}
