//! Syntax: the pest grammar (`grammar/dl.pest`) and its conversion into the
//! AST of [`ast`], with spans on every node. Errors: `dl::parse::*`.

pub mod ast;
mod error;
mod parser;

pub use error::SyntaxError;
pub use parser::parse;
