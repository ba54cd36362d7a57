//! Analysis: names, index ranges and shapes → a checked [`Program`], and the
//! sweep of sizes at which its claims are checked. Errors: `dl::analysis::*`.

mod error;
pub mod program;
mod resolve;
mod sizes;
pub mod taylor;

pub use error::AnalysisError;
pub use program::Program;
pub use resolve::{analyze, for_each_cond_expr, show_affine, visit, visit_body, visit_cond};
pub use sizes::{Sizes, size_sweep};
