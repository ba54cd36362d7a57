//! Why a derivation was refused: `dl::derive::*`.

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

use crate::source::Span;

#[derive(Debug, Error, Diagnostic)]
pub enum DeriveError {
    /// Returned for a spec with no layer or loss: there is no L to differentiate.
    #[error("there is no layer or loss to derive the gradient of")]
    #[diagnostic(
        code(dl::derive::no_output),
        help("define the layer `y[i] = …` or the loss `loss L = …` whose gradient is wanted")
    )]
    NoOutput,

    /// Returned for a construct the derivation does not cover yet: `max(k) x[k]`.
    #[error("derive cannot differentiate {what} yet")]
    #[diagnostic(code(dl::derive::unsupported), help("{help}"))]
    Unsupported {
        what: &'static str,
        #[label("not derived")]
        span: SourceSpan,
        help: &'static str,
    },
}

impl DeriveError {
    pub fn unsupported(what: &'static str, span: Span, help: &'static str) -> Self {
        DeriveError::Unsupported {
            what,
            span: span.into(),
            help,
        }
    }
}
