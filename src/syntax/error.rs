//! The diagnostics of the syntax stage, `dl::parse::*`, and the translation of
//! pest's errors into them.
//!
//! pest reports an error as a position and the rules it tried there. Users
//! should never see rule names, so [`SyntaxError::from_pest`] turns the rules
//! into words ("an expression", "`=`"), finds the token that stopped the
//! parser so the label can cover it, and adds a help line for the common
//! slips (`=` for `==`, a space before `[`, `2x` for `2 * x`).

use miette::{Diagnostic, NamedSource, SourceSpan};
use pest::error::{ErrorVariant, InputLocation};
use thiserror::Error;

use super::parser::{Rule, code_chars, is_reserved};
use crate::source::{Source, Span};

/// An error in the syntax of a spec. Each variant has a stable code.
#[derive(Debug, Error, Diagnostic)]
pub enum SyntaxError {
    /// Returned when the text does not follow the grammar:
    ///
    /// ```dl
    /// let c = 2 * )
    /// ```
    #[error("expected {expected}, found {found}")]
    #[diagnostic(code(dl::parse::syntax))]
    Syntax {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("expected {expected}")]
        span: SourceSpan,
        /// What the parser could have accepted here, in words.
        expected: String,
        /// The token it found instead, in words.
        found: String,
        #[help]
        help: Option<String>,
    },

    /// Returned when a condition uses `=`, which only defines:
    ///
    /// ```dl
    /// grad x[j] = g[j] if j = 1
    ///                | 0 otherwise
    /// ```
    #[error("`=` cannot compare")]
    #[diagnostic(code(dl::parse::assign_in_condition), help("use `==` to compare"))]
    AssignInCondition {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("`=` in a condition")]
        span: SourceSpan,
    },

    /// Returned when a value stands where a condition is needed:
    ///
    /// ```dl
    /// let c = [x]
    /// ```
    #[error("expected a condition, found a value")]
    #[diagnostic(
        code(dl::parse::not_a_condition),
        help("a condition compares values, like `x > 0` or `i == j`")
    )]
    NotACondition {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("a value, not a condition")]
        span: SourceSpan,
    },

    /// Returned when a parenthesised condition stands where a value is needed:
    ///
    /// ```dl
    /// y[i] = (i < 2) * x[i]
    /// ```
    #[error("a condition cannot be used as a value")]
    #[diagnostic(
        code(dl::parse::condition_as_value),
        help("write it as an Iverson bracket, `[…]`, which is 1 where it holds and 0 elsewhere")
    )]
    ConditionAsValue {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("a condition, not a value")]
        span: SourceSpan,
    },

    /// Returned when a number literal is not a finite 64-bit float:
    ///
    /// ```dl
    /// hyper big = 1e999
    /// ```
    #[error("the number `{text}` is out of range")]
    #[diagnostic(
        code(dl::parse::number),
        help("numbers must be finite 64-bit floats, at most about 1.8e308 in size")
    )]
    Number {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("not a finite number")]
        span: SourceSpan,
        text: String,
    },

    /// Returned when the default of a dim is not a non-negative whole number
    /// that fits in 64 bits:
    ///
    /// ```dl
    /// dim N = 2.5
    /// ```
    #[error("`{text}` is not a valid size for a dim")]
    #[diagnostic(
        code(dl::parse::dim_value),
        help("a dim's default is a size: write a non-negative whole number, like `dim N = 8`")
    )]
    DimValue {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("{problem}")]
        span: SourceSpan,
        text: String,
        /// Why it is not a size: negative, fractional or too large.
        problem: &'static str,
    },

    /// Returned when a reserved word is declared or bound as a name:
    ///
    /// ```dl
    /// param for
    /// ```
    #[error("`{word}` is a reserved word and cannot be used as a name")]
    #[diagnostic(code(dl::parse::keyword_as_name))]
    KeywordAsName {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("reserved word")]
        span: SourceSpan,
        word: String,
        /// Which words are reserved, and why this one is.
        #[help]
        help: String,
    },

    /// Returned when the number of steps of an equivalence claim is not a
    /// whole number of at least 1:
    ///
    /// ```dl
    /// claim A == B over 0 steps
    /// ```
    #[error("`{text}` is not a number of steps")]
    #[diagnostic(
        code(dl::parse::steps),
        help("the number of steps is a whole number ≥ 1, as in `claim A == B over 100 steps`")
    )]
    Steps {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("{problem}")]
        span: SourceSpan,
        text: String,
        /// Why it is not a number of steps: negative, zero, fractional or too large.
        problem: &'static str,
    },

    /// Returned when an optimality claim gives a different number of values
    /// after `at` than names after `over`:
    ///
    /// ```dl
    /// claim minimize f over a, b at (1)
    /// ```
    #[error("{names} after `over`, {values} after `at`")]
    #[diagnostic(
        code(dl::parse::optimum_arity),
        help(
            "give the claimed optimum as one value per name after `over`, in the same order: \
             `over a, b at (1, 2)`, or `over a at 1` for a single name"
        )
    )]
    OptimumArity {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("{names}")]
        over: SourceSpan,
        #[label("{values}")]
        at: SourceSpan,
        /// "2 names"
        names: String,
        /// "1 value"
        values: String,
    },

    /// Returned when the rows of a given list differ in length:
    ///
    /// ```dl
    /// input w[2, 3] = [[1, 2, 3], [4, 5]]
    /// ```
    #[error("a row of {found}, where the first row has {expected}")]
    #[diagnostic(
        code(dl::parse::ragged_list),
        help("give every row the same number of values, one per element of the last axes")
    )]
    RaggedList {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("{found}")]
        row: SourceSpan,
        #[label("{expected}")]
        first: SourceSpan,
        found: String,
        expected: String,
    },

    /// Returned when `max` or `min` is given several indices:
    ///
    /// ```dl
    /// loss L = max(i, j) w[i, j]
    /// ```
    #[error("`{op}` takes one index")]
    #[diagnostic(
        code(dl::parse::one_index_reduction),
        help("nest them, one index each: `{nested} …`; `sum`, `prod` and `mean` take several")
    )]
    OneIndexReduction {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("{count} indices")]
        span: SourceSpan,
        op: String,
        /// `max(i) max(j)`
        nested: String,
        count: usize,
    },

    /// Returned when the text ends, or a statement that cannot stand inside
    /// braces begins, before the `}` of an optimizer:
    ///
    /// ```dl
    /// optimizer A {
    ///   state v[n] = 0
    ///   v[k] = mu * v[k] + gt[k]
    /// claim A == B over 100 steps
    /// ```
    #[error("this `{{` is never closed")]
    #[diagnostic(
        code(dl::parse::unclosed_brace),
        help("close the optimizer's statements with `}}`")
    )]
    UnclosedBrace {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("opened here")]
        open: SourceSpan,
        #[label("{expected}")]
        at: SourceSpan,
        /// Where the `}` is missing, in words.
        expected: String,
    },

    /// Returned when a string has no closing quote on its line:
    ///
    /// ```dl
    /// exercise "Backprop recurrent sequence
    /// ```
    #[error("unterminated string")]
    #[diagnostic(
        code(dl::parse::unterminated_string),
        help("close the string with `\"` on the same line; write `\\\"` for a quote inside it")
    )]
    UnterminatedString {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("this string is still open at the end of the line")]
        span: SourceSpan,
    },

    /// Returned when a string contains a backslash escape other than `\"` or `\\`:
    ///
    /// ```dl
    /// exercise "first line\nsecond line"
    /// ```
    #[error("unknown escape `{escape}` in a string")]
    #[diagnostic(
        code(dl::parse::string_escape),
        help("the only escapes are `\\\"` for a quote and `\\\\` for a backslash")
    )]
    StringEscape {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("unknown escape")]
        span: SourceSpan,
        escape: String,
    },

    /// Returned when a definition has several cases and one of them has
    /// neither `if` nor `otherwise`:
    ///
    /// ```dl
    /// grad x[j] = g[j] if j <= 2
    ///           | 0
    /// ```
    #[error("a case without a condition")]
    #[diagnostic(
        code(dl::parse::case_without_condition),
        help("end every case with `if <condition>`; the last one may end with `otherwise`")
    )]
    CaseWithoutCondition {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("this case needs `if …` or `otherwise`")]
        span: SourceSpan,
    },

    /// Returned when an `otherwise` case is followed by another case:
    ///
    /// ```dl
    /// grad x[j] = 0 otherwise
    ///           | g[j] if j <= 2
    /// ```
    #[error("`otherwise` must be the last case")]
    #[diagnostic(
        code(dl::parse::otherwise_not_last),
        help("move this case to the end of the definition")
    )]
    OtherwiseNotLast {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("more cases follow this one")]
        span: SourceSpan,
    },

    /// Returned when brackets, parentheses, reductions or operator chains nest
    /// more than `limit` levels deep, e.g. 300 `(` in a row:
    ///
    /// ```dl
    /// let c = ((((((((((((((((((((((((((( … 1 … )))))))))))))))))))))))))))
    /// ```
    #[error("nesting deeper than {limit} levels")]
    #[diagnostic(
        code(dl::parse::too_deep),
        help("split the expression into smaller `let` definitions")
    )]
    TooDeep {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("the limit is exceeded here")]
        span: SourceSpan,
        limit: usize,
    },

    /// Returned when the parser meets a parse tree it does not expect. No spec
    /// should trigger it: it means the grammar and the converter disagree.
    #[error("internal error in the parser: {detail}")]
    #[diagnostic(
        code(dl::parse::internal),
        help("this is a bug in dlverify; please report it together with this spec")
    )]
    Internal {
        #[source_code]
        src: NamedSource<crate::source::SpecText>,
        #[label("while reading this")]
        span: SourceSpan,
        detail: String,
    },
}

/// The constructors return boxes: the parser passes errors up through deep
/// recursion, where a 160-byte error in every `Result` would fill the stack.
impl SyntaxError {
    pub(super) fn not_a_condition(source: &Source, span: Span) -> Box<Self> {
        Box::new(Self::NotACondition {
            src: source.named(),
            span: span.into(),
        })
    }

    pub(super) fn condition_as_value(source: &Source, span: Span) -> Box<Self> {
        Box::new(Self::ConditionAsValue {
            src: source.named(),
            span: span.into(),
        })
    }

    pub(super) fn number(source: &Source, span: Span, text: &str) -> Box<Self> {
        Box::new(Self::Number {
            src: source.named(),
            span: span.into(),
            text: text.to_owned(),
        })
    }

    pub(super) fn dim_value(
        source: &Source,
        span: Span,
        text: &str,
        problem: &'static str,
    ) -> Box<Self> {
        Box::new(Self::DimValue {
            src: source.named(),
            span: span.into(),
            text: text.to_owned(),
            problem,
        })
    }

    pub(super) fn keyword_as_name(source: &Source, span: Span, word: &str) -> Box<Self> {
        let why = match word {
            "E" | "Var" => {
                "`E[…]` is an expectation and `Var[…]` a variance, so `E` and `Var` are \
                 reserved. "
            }
            _ => "",
        };
        let choose = if why.is_empty() { "choose" } else { "Choose" };
        Box::new(Self::KeywordAsName {
            src: source.named(),
            span: span.into(),
            word: word.to_owned(),
            help: format!("{why}{choose} another name; the reserved words are {RESERVED_WORDS}"),
        })
    }

    pub(super) fn steps(
        source: &Source,
        span: Span,
        text: &str,
        problem: &'static str,
    ) -> Box<Self> {
        Box::new(Self::Steps {
            src: source.named(),
            span: span.into(),
            text: text.to_owned(),
            problem,
        })
    }

    /// `over` and `at` are each the span of the list and its length.
    pub(super) fn optimum_arity(
        source: &Source,
        over: (Span, usize),
        at: (Span, usize),
    ) -> Box<Self> {
        let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        Box::new(Self::OptimumArity {
            src: source.named(),
            over: over.0.into(),
            at: at.0.into(),
            names: count(over.1, "name"),
            values: count(at.1, "value"),
        })
    }

    /// A row of a given list whose shape is not the first row's.
    pub(super) fn ragged_list(
        source: &Source,
        row: Span,
        first: Span,
        shape: &[usize],
        first_shape: &[usize],
    ) -> Box<Self> {
        let show = |s: &[usize]| {
            let values = s.iter().product::<usize>();
            if s.len() == 1 {
                format!("{values} value{}", if values == 1 { "" } else { "s" })
            } else {
                s.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" × ")
            }
        };
        Box::new(Self::RaggedList {
            src: source.named(),
            row: row.into(),
            first: first.into(),
            found: show(shape),
            expected: show(first_shape),
        })
    }

    /// `op` given `names` as indices, spanning `span`.
    pub(super) fn one_index_reduction(
        source: &Source,
        span: Span,
        op: &str,
        names: &[String],
    ) -> Box<Self> {
        Box::new(Self::OneIndexReduction {
            src: source.named(),
            span: span.into(),
            op: op.to_string(),
            nested: names
                .iter()
                .map(|n| format!("{op}({n})"))
                .collect::<Vec<_>>()
                .join(" "),
            count: names.len(),
        })
    }

    pub(super) fn unterminated_string(source: &Source, span: Span) -> Box<Self> {
        Box::new(Self::UnterminatedString {
            src: source.named(),
            span: span.into(),
        })
    }

    pub(super) fn string_escape(source: &Source, span: Span, escape: &str) -> Box<Self> {
        Box::new(Self::StringEscape {
            src: source.named(),
            span: span.into(),
            escape: escape.to_owned(),
        })
    }

    pub(super) fn case_without_condition(source: &Source, span: Span) -> Box<Self> {
        Box::new(Self::CaseWithoutCondition {
            src: source.named(),
            span: span.into(),
        })
    }

    pub(super) fn otherwise_not_last(source: &Source, span: Span) -> Box<Self> {
        Box::new(Self::OtherwiseNotLast {
            src: source.named(),
            span: span.into(),
        })
    }

    pub(super) fn too_deep(source: &Source, span: Span, limit: usize) -> Box<Self> {
        Box::new(Self::TooDeep {
            src: source.named(),
            span: span.into(),
            limit,
        })
    }

    pub(super) fn internal(source: &Source, span: Span, detail: impl Into<String>) -> Box<Self> {
        Box::new(Self::Internal {
            src: source.named(),
            span: span.into(),
            detail: detail.into(),
        })
    }

    /// Translates a pest error: `depth_limit` is reported if pest ran out of
    /// stack (only reductions nest without brackets, so only a long chain of
    /// `sum(k) sum(k) …` gets there).
    pub(super) fn from_pest(
        source: &Source,
        error: &pest::error::Error<Rule>,
        depth_limit: usize,
    ) -> Box<Self> {
        let text = source.text();
        let pos = match error.location {
            InputLocation::Pos(pos) => pos,
            InputLocation::Span((start, _)) => start,
        };
        let pos = floor_char_boundary(text, pos);
        let token = Token::at(text, pos);
        let positives = match &error.variant {
            ErrorVariant::ParsingError { positives, .. } => positives.as_slice(),
            ErrorVariant::CustomError { .. } => {
                return Self::too_deep(source, token.span, depth_limit);
            }
        };
        let expected = Expected::from_rules(positives);
        if expected.contains(Expected::CloseBrace)
            && (token.text.is_empty() || is_top_level_keyword(token.text))
            && let Some(open) = unclosed_brace(text, pos)
        {
            return Box::new(Self::UnclosedBrace {
                src: source.named(),
                open: Span::new(open, open + 1).into(),
                at: token.span.into(),
                expected: if token.text.is_empty() {
                    "`}` expected before the end of the file".to_owned()
                } else {
                    format!("`}}` expected before `{}`", token.text)
                },
            });
        }
        if token.text == "=" && expected.contains(Expected::Comparison) {
            return Box::new(Self::AssignInCondition {
                src: source.named(),
                span: token.span.into(),
            });
        }
        Box::new(Self::Syntax {
            src: source.named(),
            span: token.span.into(),
            help: help_for(text, &token, &expected),
            expected: expected.describe(),
            found: token.description,
        })
    }
}

/// The `{` that is open at `pos` and never closed after it, if any. Braces
/// in comments and strings do not count.
fn unclosed_brace(text: &str, pos: usize) -> Option<usize> {
    let mut open = Vec::new();
    let mut innermost = None;
    for (at, c, in_string) in code_chars(text) {
        if at >= pos && innermost.is_none() {
            // The brace the error is in; it is unclosed unless a `}` below
            // brings the depth back under it.
            innermost = Some((open.last().copied()?, open.len()));
        }
        match c {
            _ if in_string => {}
            '{' => open.push(at),
            '}' => {
                open.pop();
                if let Some((_, depth)) = innermost
                    && open.len() < depth
                {
                    return None;
                }
            }
            _ => {}
        }
    }
    match innermost {
        Some((brace, _)) => Some(brace),
        // The error is at the end of the text.
        None => open.last().copied(),
    }
}

/// The largest char boundary at or before `pos` (pest positions always are
/// boundaries; this keeps slicing safe whatever it returns).
fn floor_char_boundary(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos = pos.saturating_sub(1);
    }
    pos
}

// ---------------------------------------------------------------------------
// What was expected

/// One thing the parser would have accepted, as the user thinks of it. The
/// order of the variants is the order in which they are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Expected {
    Name,
    Expression,
    Condition,
    /// A number literal, without a sign.
    Number,
    WholeNumber,
    String,
    /// `normal(0, 1)`, `bernoulli(p)`, …
    Distribution,
    Operator,
    Comparison,
    /// `> 0`, `<= 1`, … after a tensor.
    Bound,
    /// A keyword or punctuation, shown in backquotes.
    Token(&'static str),
    /// Alternative keywords or symbols, listed in the order given.
    Group(&'static [&'static str]),
    // The statements of an optimizer, in the order a user would list them.
    State,
    Let,
    Update,
    CloseBrace,
    Statement,
    EndOfFile,
}

const SCHEMES: &[&str] = &["`one_sided`", "`central`"];
const RATE_OPS: &[&str] = &["`>`", "`>=`", "`≈`"];
const FLOAT_TYPES: &[&str] = &["`f32`", "`f64`"];
const SENSES: &[&str] = &["`minimize`", "`maximize`"];

impl Expected {
    /// What a failed `rule` means, `None` for the silent rules, which pest
    /// never reports. Exhaustive, so that a new rule must be given words.
    fn for_rule(rule: Rule) -> Option<Self> {
        use Expected::*;
        Some(match rule {
            Rule::WHITESPACE
            | Rule::COMMENT
            | Rule::statement
            | Rule::init
            | Rule::target
            | Rule::index_names
            | Rule::primary
            | Rule::stream_shape
            | Rule::opt_statement
            | Rule::ident_start
            | Rule::ident_continue
            | Rule::identifier_chars
            // `dim n >= 2 = 5` is rare: a missing `=` is not told `>=`.
            | Rule::dim_minimum
            | Rule::scalar_output
            | Rule::scalar_head
            | Rule::approx_tail
            | Rule::approx_operand => return None,
            Rule::decl_name
            | Rule::decl_head
            | Rule::name
            | Rule::identifier
            | Rule::call_head
            | Rule::access_head
            | Rule::range_binding
            | Rule::dim_decl
            | Rule::tensor_decl
            | Rule::hyper_decl => Name,
            Rule::body
            | Rule::case
            | Rule::expr
            | Rule::term
            | Rule::unary
            | Rule::neg
            | Rule::power
            | Rule::exponent
            | Rule::number
            | Rule::paren
            | Rule::call
            | Rule::access
            | Rule::iverson
            | Rule::reduction
            | Rule::reduce_op
            | Rule::reduce_op_many
            | Rule::reduce_index
            | Rule::kw_sum
            | Rule::kw_prod
            | Rule::moment
            | Rule::moment_head
            | Rule::kw_E
            | Rule::kw_Var
            | Rule::state_axis
            | Rule::at_tuple
            | Rule::index_range => Expression,
            Rule::condition
            | Rule::conjunction
            | Rule::negation
            | Rule::comparison
            | Rule::kw_not
            // `A == B over …` is a condition until `over`.
            | Rule::equivalence
            | Rule::equivalence_start => Condition,
            Rule::number_literal => Number,
            Rule::dim_value | Rule::steps_count => WholeNumber,
            Rule::over_names => Name,
            Rule::distribution | Rule::dist_head => Distribution,
            Rule::taylor_scheme | Rule::ck_one_sided | Rule::ck_central => Group(SCHEMES),
            Rule::rate_bound | Rule::rate_op | Rule::approx_op => Group(RATE_OPS),
            Rule::float_type | Rule::ck_f32 | Rule::ck_f64 => Group(FLOAT_TYPES),
            Rule::optimum | Rule::sense | Rule::ck_minimize | Rule::ck_maximize => Group(SENSES),
            Rule::stream_draw | Rule::init_draw | Rule::tilde => Token("`~`"),
            Rule::index_domain => Token("`in`"),
            Rule::stream_grad => Token("`=`"),
            Rule::ck_grad => Token("`grad`"),
            Rule::plus => Token("`+`"),
            Rule::lbrace => Token("`{`"),
            Rule::eq_op => Token("`==`"),
            Rule::taylor_check | Rule::ck_taylor => Token("`taylor`"),
            Rule::ck_rate => Token("`rate`"),
            Rule::tolerance | Rule::pm => Token("`±`"),
            Rule::precision | Rule::ck_precision => Token("`precision`"),
            Rule::ck_over => Token("`over`"),
            Rule::ck_steps => Token("`steps`"),
            Rule::subject_to | Rule::ck_subject => Token("`subject to`"),
            Rule::ck_to => Token("`to`"),
            Rule::optimum_at | Rule::ck_at => Token("`at`"),
            Rule::state_stmt | Rule::kw_state => State,
            Rule::let_stmt | Rule::kw_let => Let,
            Rule::update_stmt | Rule::update_head | Rule::update_name => Update,
            Rule::rbrace => CloseBrace,
            Rule::string | Rule::string_text | Rule::string_end | Rule::unterminated => String,
            Rule::add_op | Rule::mul_op | Rule::pow_op => Operator,
            Rule::compare_op | Rule::approx_compare => Comparison,
            Rule::domain | Rule::kw_in => Token("`in`"),
            Rule::bound | Rule::bound_op => Bound,
            Rule::init_list | Rule::init_value | Rule::assign => Token("`=`"),
            Rule::lo_open | Rule::lparen => Token("`(`"),
            Rule::lo_closed | Rule::lbracket | Rule::list => Token("`[`"),
            Rule::hi_open | Rule::rparen => Token("`)`"),
            Rule::hi_closed | Rule::rbracket => Token("`]`"),
            Rule::comma => Token("`,`"),
            Rule::case_sep => Token("`|`"),
            Rule::range_op => Token("`..=`"),
            Rule::guard_if | Rule::kw_if => Token("`if`"),
            Rule::guard_otherwise | Rule::kw_otherwise => Token("`otherwise`"),
            Rule::for_clause | Rule::kw_for => Token("`for`"),
            Rule::expect_fail | Rule::kw_expect => Token("`expect fail`"),
            Rule::kw_fail => Token("`fail`"),
            Rule::or_op | Rule::kw_or => Token("`or`"),
            Rule::and_op | Rule::kw_and => Token("`and`"),
            Rule::spec
            | Rule::exercise
            | Rule::dim_stmt
            | Rule::tensor_stmt
            | Rule::hyper_stmt
            | Rule::loss_stmt
            | Rule::layer_stmt
            | Rule::layer_head
            | Rule::grad_stmt
            | Rule::random_stmt
            | Rule::stream_stmt
            | Rule::optimizer_stmt
            | Rule::check_stmt
            | Rule::claim_stmt
            | Rule::reserved
            | Rule::kw_exercise
            | Rule::kw_dim
            | Rule::kw_input
            | Rule::kw_param
            | Rule::kw_hyper
            | Rule::kw_loss
            | Rule::kw_grad
            | Rule::kw_random
            | Rule::kw_stream
            | Rule::kw_optimizer
            | Rule::kw_check
            | Rule::kw_claim => Statement,
            Rule::EOI => EndOfFile,
        })
    }

    /// Adds how it is listed: one phrase, or one per alternative of a group.
    fn phrases(self, out: &mut Vec<&'static str>) {
        let phrase = match self {
            Expected::Group(tokens) => return out.extend_from_slice(tokens),
            Expected::Token(token) => token,
            Expected::Name => "a name",
            Expected::Expression => "an expression",
            Expected::Condition => "a condition",
            Expected::Number => "a number",
            Expected::WholeNumber => "a whole number",
            Expected::String => "a string in double quotes",
            Expected::Distribution => "a distribution such as `normal(0, 1)`",
            Expected::Operator => "an operator",
            Expected::Comparison => "a comparison operator",
            Expected::Bound => "a bound such as `> 0`",
            Expected::State => "`state`",
            Expected::Let => "`let`",
            Expected::Update => "an update such as `v[k] = …`",
            Expected::CloseBrace => "`}`",
            Expected::Statement => "a statement",
            Expected::EndOfFile => "the end of the file",
        };
        out.push(phrase);
    }

    fn from_rules(rules: &[Rule]) -> ExpectedSet {
        let mut items: Vec<Expected> = rules
            .iter()
            .filter_map(|&rule| Expected::for_rule(rule))
            .collect();
        items.sort();
        items.dedup();
        // Where a new statement may begin, so may the end of the file, and
        // `let` is one of the statements: saying both is noise.
        if items.contains(&Expected::Statement) {
            items.retain(|&item| !matches!(item, Expected::EndOfFile | Expected::Let));
        }
        ExpectedSet(items)
    }
}

struct ExpectedSet(Vec<Expected>);

impl ExpectedSet {
    fn contains(&self, item: Expected) -> bool {
        self.0.contains(&item)
    }

    /// "a", "a or b", "a, b or c".
    fn describe(&self) -> String {
        let mut phrases = Vec::new();
        for item in &self.0 {
            item.phrases(&mut phrases);
        }
        match phrases.split_last() {
            None => "valid syntax".to_owned(),
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        }
    }
}

// ---------------------------------------------------------------------------
// What was found

/// The token at the error position: what to call it and where it is.
struct Token<'t> {
    text: &'t str,
    description: String,
    span: Span,
}

impl<'t> Token<'t> {
    fn at(text: &'t str, pos: usize) -> Self {
        let rest = text.get(pos..).unwrap_or("");
        let Some(first) = rest.chars().next() else {
            // Point just after the last token rather than past trailing blank
            // lines and comments: that is where something is missing.
            let end = end_of_last_token(text);
            return Token {
                text: "",
                description: "the end of the file".to_owned(),
                span: Span::new(end, end),
            };
        };
        let len = token_len(rest, first);
        let token = rest.get(..len).unwrap_or("");
        let description = if first.is_control() && !first.is_whitespace() {
            format!("a control character (U+{:04X})", u32::from(first))
        } else if matches!(first, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}') {
            format!("an invisible character (U+{:04X})", u32::from(first))
        } else if first.is_whitespace() {
            format!("an unusual space character (U+{:04X})", u32::from(first))
        } else if first == '"' {
            "a string".to_owned()
        } else if is_ident_start(first) && is_reserved(token) {
            format!("the reserved word `{token}`")
        } else {
            format!("`{token}`")
        };
        Token {
            text: token,
            description,
            span: Span::new(pos, pos + len),
        }
    }
}

/// The end of the last character that is neither whitespace nor in a comment.
fn end_of_last_token(text: &str) -> usize {
    code_chars(text)
        .filter(|&(_, c, in_string)| in_string || !c.is_whitespace())
        .last()
        .map_or(0, |(at, c, _)| at + c.len_utf8())
}

/// Multi-character operators, longest first, so that a label covers `..=`
/// rather than `.`.
const OPERATORS: [&str; 12] = [
    "..=", "==", "!=", "<=", ">=", "&&", "||", "**", "..", "=>", "~=", "+-",
];

/// The length in bytes of the token that starts `rest` with `first`.
fn token_len(rest: &str, first: char) -> usize {
    if is_ident_start(first) {
        return rest
            .char_indices()
            .find(|&(_, c)| !is_ident_continue(c))
            .map_or(rest.len(), |(i, _)| i);
    }
    if first.is_ascii_digit() {
        return number_len(rest);
    }
    if let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) {
        return op.len();
    }
    first.len_utf8()
}

/// The length of the number at the start of `rest`, read like the grammar
/// reads one (digits, a fraction, an exponent).
fn number_len(rest: &str) -> usize {
    let bytes = rest.as_bytes();
    let digits_from = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut end = digits_from(0);
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end = digits_from(end + 1);
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
        if bytes.get(end + 1 + sign).is_some_and(u8::is_ascii_digit) {
            end = digits_from(end + 1 + sign);
        }
    }
    end
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

// ---------------------------------------------------------------------------
// Help for common slips

fn help_for(text: &str, token: &Token<'_>, expected: &ExpectedSet) -> Option<String> {
    let before = text.get(..token.span.start).unwrap_or("");
    let previous = before.chars().next_back();
    let wants_operand =
        expected.contains(Expected::Expression) || expected.contains(Expected::Name);

    if matches!(token.text, "[" | "(")
        && previous.is_some_and(char::is_whitespace)
        && before
            .trim_end()
            .chars()
            .next_back()
            .is_some_and(is_ident_continue)
    {
        return Some(if token.text == "[" {
            "to index, write the name and `[` with no space between: `x[i]`".to_owned()
        } else {
            "to call a function, write its name and `(` with no space between: `exp(x)`".to_owned()
        });
    }
    if token.text == ".." && expected.contains(Expected::Token("`..=`")) {
        return Some("ranges include both ends and are written `lo..=hi`".to_owned());
    }
    if token.text == "*" && previous == Some('*') || token.text == "**" {
        return Some("write powers with `^`: `x^2`".to_owned());
    }
    // `2x`: the number itself fails, since a number never runs into a name.
    let after = text.get(token.span.end..).unwrap_or("");
    if token.text.chars().all(|c| c.is_ascii_digit() || c == '.')
        && !token.text.is_empty()
        && after.chars().next().is_some_and(is_ident_start)
    {
        let name: String = after
            .chars()
            .take_while(|&c| is_ident_continue(c))
            .collect();
        return Some(format!(
            "write multiplication with `*`: `{} * {name}`",
            token.text
        ));
    }
    if previous.is_some_and(|c| c.is_ascii_digit())
        && token.text.chars().next().is_some_and(is_ident_start)
    {
        return Some(format!(
            "write multiplication with `*`: `{} * {}`",
            last_number(before),
            token.text
        ));
    }
    // `// note`: a C-style comment, met at its first `/` or, after a value,
    // at its second.
    if token.text.starts_with('/') && (after.starts_with('/') || previous == Some('/'))
        || token.text.starts_with("//")
    {
        return Some("comments start with `#`: `# a note`".to_owned());
    }
    // `E[i, k]` where `E` was meant as a tensor: the moment holds one value.
    if token.text == "," && inside_moment(before) {
        return Some(
            "`E[…]` is an expectation of one value, and `Var[…]` a variance: `E` and `Var` cannot name a tensor; rename it, as `W[i, k]`"
                .to_owned(),
        );
    }
    if token.text == "==" && expected.contains(Expected::Token("`=`")) {
        return Some("a definition takes a single `=`; `==` compares".to_owned());
    }
    if is_comparison(token.text) && expected.contains(Expected::Operator) {
        return Some(
            "a comparison is a condition, not a value: write it in an Iverson bracket, \
             `[i < 2]`, for 1 where it holds and 0 elsewhere"
                .to_owned(),
        );
    }
    if token.text.starts_with('\'') && expected.contains(Expected::String) {
        return Some("strings are written in double quotes: \"…\"".to_owned());
    }
    if wants_operand && matches!(token.text, "E" | "Var") {
        return Some(format!(
            "`{}[…]` is {}: write `[` right after it, with no space, as in `{}[x[i]]`; \
             `E` and `Var` cannot be names",
            token.text,
            if token.text == "E" {
                "an expectation"
            } else {
                "a variance"
            },
            token.text
        ));
    }
    if let Some(help) = help_for_new_forms(text, token, expected) {
        return Some(help);
    }
    if wants_operand && is_reserved(token.text) {
        return match token.text {
            "and" | "or" | "not" => Some(format!(
                "`{}` combines conditions, which stand inside `[…]` or after `if`",
                token.text
            )),
            word if !is_statement_keyword(word) => Some(format!(
                "`{word}` is a reserved word; it cannot be used as a name"
            )),
            _ => None,
        };
    }
    if expected.contains(Expected::Statement)
        && !wants_operand
        && token.text.chars().next().is_some_and(is_ident_start)
        && !is_reserved(token.text)
    {
        // (`y = …` is a scalar layer output, so a name here is followed by
        // something other than `=`.)
        return Some(
            "a statement starts with `exercise`, `dim`, `input`, `param`, `hyper`, `let`, `loss`, \
             `grad`, `random`, `stream`, `optimizer`, `check` or `claim`, or is a layer output \
             such as `y[i] = …` or `y = …`"
                .to_owned(),
        );
    }
    None
}

/// Whether the text before an error ends inside an unclosed `E[` or
/// `Var[` at the outermost bracket level.
fn inside_moment(before: &str) -> bool {
    let mut depth = 0usize;
    for (k, c) in before.char_indices().rev() {
        match c {
            ']' => depth += 1,
            '[' if depth > 0 => depth -= 1,
            '[' => {
                let head = before[..k].trim_end_matches(is_ident_continue);
                let word = &before[head.len()..k];
                return matches!(word, "E" | "Var");
            }
            '\n' => return false,
            _ => {}
        }
    }
    false
}

/// Help for slips in random tensors, optimizers and the claims of
/// sections 5–7 of the language.
fn help_for_new_forms(text: &str, token: &Token<'_>, expected: &ExpectedSet) -> Option<String> {
    let after = text.get(token.span.end..).unwrap_or("");
    let before = text.get(..token.span.start).unwrap_or("");
    let starts_word = token.text.chars().next().is_some_and(is_ident_start);
    if expected.contains(Expected::Distribution) && starts_word {
        return Some(
            "a distribution is written like a call, with `(` right after its name: \
             `normal(0, 1)`, `bernoulli(p)`"
                .to_owned(),
        );
    }
    if expected.contains(Expected::Update) && starts_word && !is_reserved(token.text) {
        return Some(
            "inside an optimizer, a statement is `state v[n] = …`, `let c = …` or an update \
             such as `v[k] = …` or `t = t + 1`"
                .to_owned(),
        );
    }
    if matches!(token.text, "±" | "+-") {
        // In a Taylor claim's rate, or in a claim's condition.
        let line = before.rsplit('\n').next().unwrap_or("");
        return Some(if line.contains("rate") {
            "a tolerance `± …` follows `≈` only: `rate ≈ 3 ± 0.3`".to_owned()
        } else {
            "a tolerance `± …` follows `≈` only: `claim x ≈ y ± 0.1` (ASCII `~=` and `+-`)"
                .to_owned()
        });
    }
    if expected.contains(Expected::Group(SCHEMES)) && token.text == "one" && after.starts_with('-')
    {
        return Some("write `one_sided`, with an underscore".to_owned());
    }
    if expected.contains(Expected::Group(SCHEMES)) || expected.contains(Expected::Token("`taylor`"))
    {
        return Some(
            "a Taylor check reads `check taylor one_sided rate > 1` or \
             `check taylor central rate ≈ 3 ± 0.3`"
                .to_owned(),
        );
    }
    if expected.contains(Expected::Group(RATE_OPS)) {
        return Some(
            "claim a lower bound, `rate > 1` or `rate >= 2`, or a value, `rate ≈ 3 ± 0.3` \
             (in ASCII `rate ~= 3 +- 0.3`)"
                .to_owned(),
        );
    }
    if expected.contains(Expected::Token("`steps`")) {
        return Some("an equivalence reads `claim A == B over 100 steps`".to_owned());
    }
    None
}

/// The number that ends `before` (for the `2x` help).
fn last_number(before: &str) -> &str {
    let start = before
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    before.get(start..).unwrap_or("")
}

fn is_comparison(token: &str) -> bool {
    matches!(token, "==" | "!=" | "<" | "<=" | ">" | ">=")
}

fn is_statement_keyword(word: &str) -> bool {
    word == "let" || word == "state" || is_top_level_keyword(word)
}

/// The keywords that begin a statement outside an optimizer only.
fn is_top_level_keyword(word: &str) -> bool {
    matches!(
        word,
        "exercise"
            | "dim"
            | "input"
            | "param"
            | "hyper"
            | "loss"
            | "grad"
            | "random"
            | "stream"
            | "optimizer"
            | "check"
            | "claim"
    )
}

/// The reserved words, as the help of `keyword_as_name` lists them. The
/// grammar's `reserved` rule decides; a test checks that the two agree.
pub(super) const RESERVED_WORDS: &str = "exercise dim input param hyper let loss grad random \
     stream optimizer state check claim for in if otherwise expect fail and or not sum prod E Var";
