//! Parsing: the pest grammar (`grammar/dl.pest`) reads the text into a parse
//! tree, and [`Converter`] turns that tree into the AST of [`super::ast`].
//!
//! The grammar decides what is well-formed; the converter adds what a grammar
//! says badly: numbers that overflow, dim defaults that are not sizes,
//! reserved words used as names, unterminated strings, conditions used as
//! values, misplaced `otherwise`.
//!
//! The parser runs on every keystroke in an editor, so no input may make it
//! panic or overflow the stack. pest and the converter recurse once per level
//! of nesting, so nesting is bounded twice: brackets may nest at most
//! [`MAX_DEPTH`] deep, checked on the raw text before pest sees it, and the
//! AST may nest at most [`MAX_DEPTH`] deep, checked while converting (long
//! operator chains and chains of reductions nest in the AST without any
//! bracket, and every later stage recurses over the AST). Within those bounds
//! a debug build still needs more stack than a 2 MiB thread has, so parsing
//! runs on a thread of its own, with [`PARSER_STACK_BYTES`].

use pest::Parser as _;
use pest::iterators::{Pair, Pairs};

use super::ast::*;
use super::error::SyntaxError;
use crate::source::{Source, Span, Spanned};

/// How deep brackets may nest, and separately how deep the AST may nest.
const MAX_DEPTH: usize = 256;

/// The parser thread's stack. Nesting to [`MAX_DEPTH`] takes up to about
/// 8 MiB in a debug build, far less in a release build; the memory is only
/// reserved until touched.
const PARSER_STACK_BYTES: usize = 64 << 20;

#[derive(pest_derive::Parser)]
#[grammar = "grammar/dl.pest"]
struct DlParser;

/// Errors are boxed inside the parser: they travel up through deep recursion,
/// and a large error in every `Result` would multiply the stack it needs.
type Result<T> = std::result::Result<T, Box<SyntaxError>>;

/// Parses a spec file into its AST. An empty file is a valid, empty spec.
#[allow(
    clippy::result_large_err,
    reason = "the error is the stage's diagnostic, built once per parse"
)]
pub fn parse(source: &Source) -> std::result::Result<Spec, SyntaxError> {
    let parsed = std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("dl-parse".to_owned())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, || parse_here(source));
        match thread {
            Ok(thread) => thread.join().unwrap_or_else(|_| {
                Err(SyntaxError::internal(
                    source,
                    Span::default(),
                    "the parser panicked",
                ))
            }),
            // Without a thread of our own, parse on this one: ordinary specs
            // nest far less deeply than the limits allow.
            Err(_) => parse_here(source),
        }
    });
    parsed.map_err(|error| *error)
}

/// Parses on the current thread.
fn parse_here(source: &Source) -> Result<Spec> {
    check_bracket_depth(source)?;
    let mut pairs = DlParser::parse(Rule::spec, source.text())
        .map_err(|error| SyntaxError::from_pest(source, &error, MAX_DEPTH))?;
    let spec = pairs
        .next()
        .ok_or_else(|| SyntaxError::internal(source, Span::default(), "no parse tree"))?;
    Converter { source }.spec(spec)
}

/// Whether `word` is reserved. The grammar's `reserved` rule is the one list
/// of reserved words; this asks it.
pub(super) fn is_reserved(word: &str) -> bool {
    !word.is_empty()
        && DlParser::parse(Rule::reserved, word).is_ok_and(|pairs| pairs.as_str() == word)
}

/// Rejects text whose brackets nest deeper than [`MAX_DEPTH`], before pest
/// recurses once per level. Brackets in comments and strings do not count.
fn check_bracket_depth(source: &Source) -> Result<()> {
    let mut depth = 0usize;
    for (at, c, in_string) in code_chars(source.text()) {
        match c {
            _ if in_string => {}
            '(' | '[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let span = Span::new(at, at + 1);
                    return Err(SyntaxError::too_deep(source, span, MAX_DEPTH));
                }
            }
            ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The characters of `text` outside comments, each with its offset and
/// whether it belongs to a string literal (quotes included). Strings end at
/// their closing quote or, as in the grammar, at the end of the line.
pub(super) fn code_chars(text: &str) -> impl Iterator<Item = (usize, char, bool)> + '_ {
    #[derive(Clone, Copy)]
    enum State {
        Code,
        String,
        Escape,
    }
    let mut chars = text.char_indices();
    let mut state = State::Code;
    std::iter::from_fn(move || {
        let (at, c) = chars.next()?;
        let (next, in_string) = match (state, c) {
            (_, '\n') => (State::Code, false),
            (State::Code, '#') => {
                // A comment runs to the end of its line; the newline is code.
                let newline = chars.by_ref().find(|&(_, c)| c == '\n')?;
                return Some((newline.0, newline.1, false));
            }
            (State::Code, '"') => (State::String, true),
            (State::Code, _) => (State::Code, false),
            (State::String, '\\') => (State::Escape, true),
            (State::String, '"') => (State::Code, true),
            (State::String | State::Escape, _) => (State::String, true),
        };
        state = next;
        Some((at, c, in_string))
    })
}

/// The span of a node's text. pest's own span of a rule may run on over the
/// whitespace and comments skipped before an optional part that did not
/// match (`y[i] = x  # note` before a missing `for`), so the end is taken from
/// the node's last token instead: tokens are atomic and never include any.
fn span_of(pair: &Pair<'_, Rule>) -> Span {
    let mut last = pair.clone();
    while let Some(child) = last.clone().into_inner().next_back() {
        last = child;
    }
    Span::new(pair.as_span().start(), last.as_span().end())
}

/// Rules that are in the tree only so that errors can name them: punctuation
/// and the keywords whose presence the rule around them already implies.
fn is_token(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::assign
            | Rule::comma
            | Rule::lparen
            | Rule::rparen
            | Rule::lbracket
            | Rule::rbracket
            | Rule::case_sep
            | Rule::range_op
            | Rule::lbrace
            | Rule::rbrace
            | Rule::tilde
            | Rule::plus
            | Rule::pm
            | Rule::eq_op
            | Rule::kw_exercise
            | Rule::kw_dim
            | Rule::kw_hyper
            | Rule::kw_let
            | Rule::kw_loss
            | Rule::kw_grad
            | Rule::kw_for
            | Rule::kw_in
            | Rule::kw_if
            | Rule::kw_otherwise
            | Rule::kw_expect
            | Rule::kw_fail
            | Rule::kw_and
            | Rule::kw_or
            | Rule::kw_random
            | Rule::kw_stream
            | Rule::kw_optimizer
            | Rule::kw_state
            | Rule::kw_check
            | Rule::kw_claim
            | Rule::ck_taylor
            | Rule::ck_rate
            | Rule::ck_precision
            | Rule::ck_over
            | Rule::ck_subject
            | Rule::ck_to
            | Rule::ck_at
            | Rule::ck_steps
            | Rule::ck_grad
            | Rule::EOI
    )
}

/// The meaningful children of a parse-tree node, in order.
struct Children<'i, 's> {
    inner: std::iter::Peekable<Pairs<'i, Rule>>,
    parent: Span,
    source: &'s Source,
}

impl<'i, 's> Children<'i, 's> {
    fn peek_rule(&mut self) -> Option<Rule> {
        while let Some(pair) = self.inner.peek() {
            if !is_token(pair.as_rule()) {
                return Some(pair.as_rule());
            }
            self.inner.next();
        }
        None
    }

    fn next(&mut self) -> Option<Pair<'i, Rule>> {
        self.peek_rule()?;
        self.inner.next()
    }

    fn next_if(&mut self, rule: Rule) -> Option<Pair<'i, Rule>> {
        if self.peek_rule() == Some(rule) {
            self.next()
        } else {
            None
        }
    }

    /// The spans of the next children of kind `rule`, taken in a row.
    fn spans_of(&mut self, rule: Rule) -> Vec<Span> {
        let mut spans = Vec::new();
        while let Some(pair) = self.next_if(rule) {
            spans.push(span_of(&pair));
        }
        spans
    }

    /// The remaining children of kind `rule`.
    fn all(self, rule: Rule) -> impl Iterator<Item = Pair<'i, Rule>> {
        self.inner.filter(move |pair| pair.as_rule() == rule)
    }

    /// The remaining children of any of `rules`, in order.
    fn all_of(self, rules: &[Rule]) -> impl Iterator<Item = Pair<'i, Rule>> {
        self.inner
            .filter(move |pair| rules.contains(&pair.as_rule()))
    }

    /// The next child, which the grammar guarantees; its absence is a bug.
    fn required(&mut self, what: &str) -> Result<Pair<'i, Rule>> {
        self.next()
            .ok_or_else(|| SyntaxError::internal(self.source, self.parent, format!("no {what}")))
    }

    /// The next child, which the grammar guarantees to be a `rule`.
    fn required_rule(&mut self, rule: Rule) -> Result<Pair<'i, Rule>> {
        self.next_if(rule)
            .ok_or_else(|| SyntaxError::internal(self.source, self.parent, format!("no {rule:?}")))
    }
}

/// `operand (operator operand)*`, as found in the tree.
type Chain<'i> = (Pair<'i, Rule>, Vec<(Pair<'i, Rule>, Pair<'i, Rule>)>);

/// Builds AST nodes from parse-tree nodes.
///
/// The methods for expressions and conditions take `depth`, how deep in the
/// AST their result will sit, and refuse to go past [`MAX_DEPTH`]. They are
/// the ones that recurse, so they are kept small: in a debug build every
/// local of a function stays on the stack through all the calls below it.
struct Converter<'s> {
    source: &'s Source,
}

impl<'s> Converter<'s> {
    fn children<'i>(&self, pair: Pair<'i, Rule>) -> Children<'i, 's> {
        Children {
            parent: span_of(&pair),
            inner: pair.into_inner().peekable(),
            source: self.source,
        }
    }

    /// A node the grammar does not put here.
    fn unexpected(&self, pair: &Pair<'_, Rule>) -> Box<SyntaxError> {
        let detail = format!("unexpected {:?}", pair.as_rule());
        SyntaxError::internal(self.source, span_of(pair), detail)
    }

    /// Fails if a node at `depth` would nest too deep.
    fn check_depth(&self, depth: usize, span: Span) -> Result<()> {
        if depth > MAX_DEPTH {
            Err(SyntaxError::too_deep(self.source, span, MAX_DEPTH))
        } else {
            Ok(())
        }
    }

    // -----------------------------------------------------------------------
    // Statements

    fn spec(&self, pair: Pair<'_, Rule>) -> Result<Spec> {
        let mut items = Vec::new();
        let mut children = self.children(pair);
        while let Some(statement) = children.next() {
            items.push(self.statement(statement)?);
        }
        Ok(Spec { items })
    }

    fn statement(&self, pair: Pair<'_, Rule>) -> Result<Item> {
        match pair.as_rule() {
            Rule::exercise => {
                let string = self.children(pair).required_rule(Rule::string)?;
                Ok(Item::Exercise(self.string(string)?))
            }
            Rule::dim_stmt => self
                .children(pair)
                .all(Rule::dim_decl)
                .map(|decl| self.dim_decl(decl))
                .collect::<Result<_>>()
                .map(Item::Dim),
            Rule::tensor_stmt => self.tensor_stmt(pair).map(Item::Tensor),
            Rule::hyper_stmt => self
                .children(pair)
                .all(Rule::hyper_decl)
                .map(|decl| self.hyper_decl(decl))
                .collect::<Result<_>>()
                .map(Item::Hyper),
            Rule::let_stmt => self.definition(pair).map(Item::Let),
            Rule::loss_stmt => self.definition(pair).map(Item::Loss),
            Rule::layer_stmt => self.definition(pair).map(Item::Layer),
            Rule::grad_stmt => self.grad_claim(pair).map(Item::Claim),
            Rule::random_stmt => self.random(pair).map(Item::Random),
            Rule::stream_stmt => self.stream(pair).map(Item::Stream),
            Rule::optimizer_stmt => self.optimizer(pair).map(Item::Optimizer),
            Rule::check_stmt | Rule::claim_stmt => self.claim(pair).map(Item::Claim),
            _ => Err(self.unexpected(&pair)),
        }
    }

    fn dim_decl(&self, pair: Pair<'_, Rule>) -> Result<DimDecl> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let name = self.decl_name(children.required_rule(Rule::decl_name)?)?;
        let minimum = match children.next_if(Rule::dim_minimum) {
            Some(m) => {
                let mut parts = self.children(m);
                Some(self.dim_value(&parts.required_rule(Rule::dim_value)?)?)
            }
            None => None,
        };
        let default = self.dim_value(&children.required_rule(Rule::dim_value)?)?;
        Ok(DimDecl {
            name,
            default,
            minimum,
            span,
        })
    }

    /// A dim's default: a size, so a whole number in `0..=i64::MAX`.
    fn dim_value(&self, pair: &Pair<'_, Rule>) -> Result<Spanned<i64>> {
        let span = span_of(pair);
        let text = pair.as_str();
        let problem = if text.starts_with('-') {
            "a size cannot be negative"
        } else if !text.bytes().all(|b| b.is_ascii_digit()) {
            "a size is a whole number"
        } else {
            match text.parse::<i64>() {
                Ok(value) => return Ok(Spanned::new(value, span)),
                Err(_) => "too large: sizes are at most 9223372036854775807",
            }
        };
        Err(SyntaxError::dim_value(self.source, span, text, problem))
    }

    fn tensor_stmt(&self, pair: Pair<'_, Rule>) -> Result<Vec<TensorDecl>> {
        let mut children = self.children(pair);
        let role_pair = children.required("role")?;
        let role = match role_pair.as_rule() {
            Rule::kw_input => TensorRole::Input,
            Rule::kw_param => TensorRole::Param,
            _ => return Err(self.unexpected(&role_pair)),
        };
        let role = Spanned::new(role, span_of(&role_pair));
        children
            .all(Rule::tensor_decl)
            .map(|decl| self.tensor_decl(role.clone(), decl))
            .collect()
    }

    /// `x`, `x[N]` or `w[m, n]`, with an optional `in (lo, hi)`, `> 0`, `= …`.
    fn tensor_decl(&self, role: Spanned<TensorRole>, pair: Pair<'_, Rule>) -> Result<TensorDecl> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let name = self.declared_name(&mut children)?;
        let shape = self.shape(&mut children)?;
        let init = children.next().map(|init| self.init(init)).transpose()?;
        Ok(TensorDecl {
            role,
            name,
            shape,
            init,
            span,
        })
    }

    fn init(&self, pair: Pair<'_, Rule>) -> Result<Init> {
        let span = span_of(&pair);
        let rule = pair.as_rule();
        let mut children = self.children(pair);
        match rule {
            Rule::domain => {
                let lo_closed = children.required("`(` or `[`")?.as_rule() == Rule::lo_closed;
                let lo = self.expr(children.required_rule(Rule::expr)?, 0)?;
                let hi = self.expr(children.required_rule(Rule::expr)?, 0)?;
                let hi_closed = children.required("`)` or `]`")?.as_rule() == Rule::hi_closed;
                let domain = Domain::Interval {
                    lo,
                    hi,
                    lo_closed,
                    hi_closed,
                };
                Ok(Init::Domain(Spanned::new(domain, span)))
            }
            Rule::bound => {
                let op = self.compare_op(&children.required_rule(Rule::bound_op)?)?;
                let value = self.expr(children.required_rule(Rule::expr)?, 0)?;
                Ok(Init::Domain(Spanned::new(
                    Domain::Bound { op, value },
                    span,
                )))
            }
            Rule::init_list => {
                let list = children.required_rule(Rule::list)?;
                let list_span = span_of(&list);
                let (values, shape) = self.rows(list)?;
                if shape.len() == 1 {
                    Ok(Init::List(Spanned::new(values, list_span)))
                } else {
                    Ok(Init::Grid(Spanned::new(values, list_span), shape))
                }
            }
            Rule::init_value => Ok(Init::Value(
                self.expr(children.required_rule(Rule::expr)?, 0)?,
            )),
            Rule::index_domain => Ok(Init::Indices(
                self.index_range(children.required_rule(Rule::index_range)?, 0)?,
            )),
            Rule::init_draw => Ok(Init::Drawn(
                self.distribution(children.required_rule(Rule::distribution)?)?,
            )),
            _ => Err(SyntaxError::internal(
                self.source,
                span,
                format!("unexpected {rule:?}"),
            )),
        }
    }

    /// A list's values row-major and its extent at each level of nesting;
    /// rows must all have the first row's shape.
    fn rows(&self, list: Pair<'_, Rule>) -> Result<(Vec<Expr>, Vec<usize>)> {
        let mut values = vec![];
        let mut shape: Option<Vec<usize>> = None;
        let mut count = 0;
        let mut first_row = None;
        for child in self.children(list).all_of(&[Rule::list, Rule::expr]) {
            count += 1;
            if child.as_rule() == Rule::expr {
                values.push(self.expr(child, 0)?);
                continue;
            }
            let span = span_of(&child);
            let (row, row_shape) = self.rows(child)?;
            match &shape {
                None => {
                    shape = Some(row_shape);
                    first_row = Some(span);
                }
                Some(s) if *s != row_shape => {
                    return Err(SyntaxError::ragged_list(
                        self.source,
                        span,
                        first_row.unwrap_or(span),
                        &row_shape,
                        s,
                    ));
                }
                Some(_) => {}
            }
            values.extend(row);
        }
        let mut full = vec![count];
        full.extend(shape.unwrap_or_default());
        Ok((values, full))
    }

    fn hyper_decl(&self, pair: Pair<'_, Rule>) -> Result<HyperDecl> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let name = self.decl_name(children.required_rule(Rule::decl_name)?)?;
        let value = self.expr(children.required_rule(Rule::expr)?, 0)?;
        Ok(HyperDecl { name, value, span })
    }

    /// A `let`, `loss` or layer statement.
    fn definition(&self, pair: Pair<'_, Rule>) -> Result<Definition> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let (name, indices) = self.target(&mut children)?;
        let body = self.body(children.required_rule(Rule::body)?)?;
        let ranges = self.for_clause(&mut children)?;
        Ok(Definition {
            name,
            indices,
            body,
            ranges,
            span,
        })
    }

    fn grad_claim(&self, pair: Pair<'_, Rule>) -> Result<Claim> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let (target, indices) = self.target(&mut children)?;
        let body = self.body(children.required_rule(Rule::body)?)?;
        let expect_fail = self.expect_fail(&mut children)?;
        let kind = ClaimKind::Grad(GradClaim {
            target,
            indices,
            body,
        });
        Ok(Claim {
            kind,
            expect_fail,
            span,
        })
    }

    /// An optional `expect fail "reason"`: the reason, spanned over the
    /// whole clause.
    fn expect_fail(&self, children: &mut Children<'_, '_>) -> Result<Option<Spanned<String>>> {
        let Some(clause) = children.next_if(Rule::expect_fail) else {
            return Ok(None);
        };
        let span = span_of(&clause);
        let reason = self.string(self.children(clause).required_rule(Rule::string)?)?;
        Ok(Some(Spanned::new(reason.node, span)))
    }

    /// The left-hand side `name` or `name[i, j]` of a definition or claim.
    fn target(&self, children: &mut Children<'_, '_>) -> Result<(Ident, Vec<Ident>)> {
        let head = children.required("name")?;
        match head.as_rule() {
            Rule::decl_name => Ok((self.decl_name(head)?, Vec::new())),
            Rule::decl_head | Rule::layer_head => {
                let name = self.decl_head(head)?;
                Ok((name, self.index_names(children)?))
            }
            _ => Err(self.unexpected(&head)),
        }
    }

    /// The index names after a head `name[`: `i, j` of `y[i, j]`.
    fn index_names(&self, children: &mut Children<'_, '_>) -> Result<Vec<Ident>> {
        let mut indices = Vec::new();
        while let Some(index) = children.next_if(Rule::decl_name) {
            indices.push(self.decl_name(index)?);
        }
        Ok(indices)
    }

    /// The name of a declaration: `x` or the head `x[` of `x[N]`.
    fn declared_name(&self, children: &mut Children<'_, '_>) -> Result<Ident> {
        let head = children.required("name")?;
        match head.as_rule() {
            Rule::decl_name => self.decl_name(head),
            Rule::decl_head => self.decl_head(head),
            _ => Err(self.unexpected(&head)),
        }
    }

    /// The sizes after a declaration's head: `N, m` of `w[N, m]`.
    fn shape(&self, children: &mut Children<'_, '_>) -> Result<Vec<Expr>> {
        let mut shape = Vec::new();
        while let Some(size) = children.next_if(Rule::expr) {
            shape.push(self.expr(size, 0)?);
        }
        Ok(shape)
    }

    /// An optional `for i in …, j in …`: its bindings, or none.
    fn for_clause(&self, children: &mut Children<'_, '_>) -> Result<Vec<RangeBinding>> {
        let Some(clause) = children.next_if(Rule::for_clause) else {
            return Ok(Vec::new());
        };
        let bindings = self.children(clause).all(Rule::range_binding);
        bindings
            .map(|binding| self.range_binding(binding))
            .collect()
    }

    /// `i in 1..=N-2`
    fn range_binding(&self, pair: Pair<'_, Rule>) -> Result<RangeBinding> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let index = self.decl_name(children.required_rule(Rule::decl_name)?)?;
        let range = self.index_range(children.required_rule(Rule::index_range)?, 0)?;
        Ok(RangeBinding { index, range, span })
    }

    /// `lo..=hi`, whose bounds sit at `depth`.
    fn index_range(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<IndexRangeExpr> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let lo = self.expr(children.required_rule(Rule::expr)?, depth)?;
        let hi = self.expr(children.required_rule(Rule::expr)?, depth)?;
        Ok(IndexRangeExpr { lo, hi, span })
    }

    // -----------------------------------------------------------------------
    // Randomness

    /// `random q[i] ~ bernoulli(p[i]) for i in 1..=n`
    fn random(&self, pair: Pair<'_, Rule>) -> Result<RandomDecl> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let (name, indices) = self.target(&mut children)?;
        let distribution = self.distribution(children.required_rule(Rule::distribution)?)?;
        let ranges = self.for_clause(&mut children)?;
        Ok(RandomDecl {
            name,
            indices,
            distribution,
            ranges,
            span,
        })
    }

    /// `stream gt[n] ~ normal(0, 1)` or `stream gt[n] = grad theta (+ noise)`.
    fn stream(&self, pair: Pair<'_, Rule>) -> Result<StreamDecl> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let name = self.declared_name(&mut children)?;
        let shape = self.shape(&mut children)?;
        let source_pair = children.required("source")?;
        let source = match source_pair.as_rule() {
            Rule::stream_draw => {
                let draw = self
                    .children(source_pair)
                    .required_rule(Rule::distribution)?;
                StreamSource::Draw(self.distribution(draw)?)
            }
            Rule::stream_grad => {
                let mut parts = self.children(source_pair);
                let param = self.decl_name(parts.required_rule(Rule::decl_name)?)?;
                let noise = parts
                    .next_if(Rule::distribution)
                    .map(|noise| self.distribution(noise))
                    .transpose()?;
                StreamSource::Gradient { param, noise }
            }
            _ => return Err(self.unexpected(&source_pair)),
        };
        Ok(StreamDecl {
            name,
            shape,
            source,
            span,
        })
    }

    /// `normal(0, 1)`
    fn distribution(&self, pair: Pair<'_, Rule>) -> Result<Distribution> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let name = self.atomic_head(&children.required_rule(Rule::dist_head)?);
        let args = self.expr_list(children, 0)?;
        Ok(Distribution { name, args, span })
    }

    /// The name in an atomic head `name[` or `name(`, which the grammar has
    /// already checked is not reserved.
    fn atomic_head(&self, pair: &Pair<'_, Rule>) -> Ident {
        let text = pair.as_str();
        let name = text.strip_suffix(['[', '(']).unwrap_or(text);
        let start = pair.as_span().start();
        Spanned::new(name.to_owned(), Span::new(start, start + name.len()))
    }

    // -----------------------------------------------------------------------
    // Update rules

    /// `optimizer A { statements }`
    fn optimizer(&self, pair: Pair<'_, Rule>) -> Result<OptimizerDecl> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let name = self.decl_name(children.required_rule(Rule::decl_name)?)?;
        let mut statements = Vec::new();
        while let Some(statement) = children.next() {
            statements.push(match statement.as_rule() {
                Rule::state_stmt => OptimizerStatement::State(self.state(statement)?),
                Rule::let_stmt => OptimizerStatement::Let(self.definition(statement)?),
                Rule::update_stmt => OptimizerStatement::Update(self.update(statement)?),
                _ => return Err(self.unexpected(&statement)),
            });
        }
        Ok(OptimizerDecl {
            name,
            statements,
            span,
        })
    }

    /// `state v[k in n, m] = init` or `state t = init`.
    fn state(&self, pair: Pair<'_, Rule>) -> Result<StateDecl> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let name = self.declared_name(&mut children)?;
        let mut shape = Vec::new();
        while let Some(axis) = children.next_if(Rule::state_axis) {
            let mut parts = self.children(axis);
            let index = parts
                .next_if(Rule::decl_name)
                .map(|index| self.decl_name(index))
                .transpose()?;
            shape.push((index, self.expr(parts.required_rule(Rule::expr)?, 0)?));
        }
        let init = self.expr(children.required_rule(Rule::expr)?, 0)?;
        Ok(StateDecl {
            name,
            shape,
            init,
            span,
        })
    }

    /// `v[k] = body for …` or `t = body`: a definition of state.
    fn update(&self, pair: Pair<'_, Rule>) -> Result<Definition> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let head = children.required("name")?;
        let name = match head.as_rule() {
            Rule::update_head | Rule::update_name => self.atomic_head(&head),
            _ => return Err(self.unexpected(&head)),
        };
        let indices = self.index_names(&mut children)?;
        let body = self.body(children.required_rule(Rule::body)?)?;
        let ranges = self.for_clause(&mut children)?;
        Ok(Definition {
            name,
            indices,
            body,
            ranges,
            span,
        })
    }

    // -----------------------------------------------------------------------
    // Claims other than `grad`

    /// A `check` or `claim` statement, with its optional `expect fail`.
    fn claim(&self, pair: Pair<'_, Rule>) -> Result<Claim> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let body = children.required("claim")?;
        let kind = match body.as_rule() {
            Rule::taylor_check => ClaimKind::Taylor(self.taylor(body)?),
            Rule::equivalence => ClaimKind::Equivalent(self.equivalence(body)?),
            Rule::optimum => ClaimKind::Optimum(self.optimum(body)?),
            Rule::condition => ClaimKind::Holds(self.condition(body, 0)?),
            _ => return Err(self.unexpected(&body)),
        };
        let expect_fail = self.expect_fail(&mut children)?;
        Ok(Claim {
            kind,
            expect_fail,
            span,
        })
    }

    /// `taylor central rate ≈ 3 ± 0.3 precision f32`
    fn taylor(&self, pair: Pair<'_, Rule>) -> Result<TaylorClaim> {
        let mut children = self.children(pair);
        let scheme = children.required_rule(Rule::taylor_scheme)?;
        let scheme = Spanned::new(
            match scheme.as_str() {
                "one_sided" => TaylorScheme::OneSided,
                "central" => TaylorScheme::Central,
                _ => return Err(self.unexpected(&scheme)),
            },
            span_of(&scheme),
        );
        let rate = self.rate_bound(children.required_rule(Rule::rate_bound)?)?;
        let precision = match children.next_if(Rule::precision) {
            Some(precision) => {
                let float = self.children(precision).required_rule(Rule::float_type)?;
                let value = match float.as_str() {
                    "f32" => Precision::F32,
                    "f64" => Precision::F64,
                    _ => return Err(self.unexpected(&float)),
                };
                Some(Spanned::new(value, span_of(&float)))
            }
            None => None,
        };
        Ok(TaylorClaim {
            scheme,
            rate,
            precision,
        })
    }

    /// `> 1`, `>= 2`, `≈ 3 ± 0.3` (or `~= 3 +- 0.3`).
    fn rate_bound(&self, pair: Pair<'_, Rule>) -> Result<RateBound> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let op_pair = children.required("rate operator")?;
        let op = match op_pair.as_str() {
            ">" => RateOp::Gt,
            ">=" => RateOp::Ge,
            "≈" | "~=" => RateOp::Approx,
            _ => return Err(self.unexpected(&op_pair)),
        };
        let op = Spanned::new(op, span_of(&op_pair));
        let value = self.literal(&children.required_rule(Rule::number_literal)?)?;
        let tolerance = match children.next_if(Rule::tolerance) {
            Some(tolerance) => {
                let literal = self
                    .children(tolerance)
                    .required_rule(Rule::number_literal)?;
                Some(self.literal(&literal)?)
            }
            None => None,
        };
        Ok(RateBound {
            op,
            value,
            tolerance,
            span,
        })
    }

    fn literal(&self, pair: &Pair<'_, Rule>) -> Result<Spanned<f64>> {
        Ok(Spanned::new(self.number(pair)?, span_of(pair)))
    }

    /// `A == B over 100 steps`
    fn equivalence(&self, pair: Pair<'_, Rule>) -> Result<EquivalenceClaim> {
        let mut children = self.children(pair);
        let first = self.decl_name(children.required_rule(Rule::decl_name)?)?;
        let second = self.decl_name(children.required_rule(Rule::decl_name)?)?;
        let steps = self.steps(&children.required_rule(Rule::steps_count)?)?;
        Ok(EquivalenceClaim {
            first,
            second,
            steps,
        })
    }

    /// The number of steps of an equivalence: a whole number in `1..=i64::MAX`.
    fn steps(&self, pair: &Pair<'_, Rule>) -> Result<Spanned<i64>> {
        let span = span_of(pair);
        let text = pair.as_str();
        let problem = if text.starts_with('-') {
            "a number of steps cannot be negative"
        } else if !text.bytes().all(|b| b.is_ascii_digit()) {
            "a number of steps is a whole number"
        } else {
            match text.parse::<i64>() {
                Ok(0) => "zero steps would compare nothing",
                Ok(value) => return Ok(Spanned::new(value, span)),
                Err(_) => "too large: at most 9223372036854775807 steps",
            }
        };
        Err(SyntaxError::steps(self.source, span, text, problem))
    }

    /// `minimize OBJ over a, b subject to C1, C2 at (v1, v2)`: as many
    /// values after `at` as names after `over`.
    fn optimum(&self, pair: Pair<'_, Rule>) -> Result<OptimumClaim> {
        let mut children = self.children(pair);
        let sense_pair = children.required_rule(Rule::sense)?;
        let sense = match sense_pair.as_str() {
            "minimize" => Sense::Minimize,
            "maximize" => Sense::Maximize,
            _ => return Err(self.unexpected(&sense_pair)),
        };
        let sense = Spanned::new(sense, span_of(&sense_pair));
        let objective = self.expr(children.required_rule(Rule::expr)?, 0)?;
        let over_pair = children.required_rule(Rule::over_names)?;
        let over_span = span_of(&over_pair);
        let over = self
            .children(over_pair)
            .all(Rule::decl_name)
            .map(|name| self.decl_name(name))
            .collect::<Result<Vec<_>>>()?;
        let subject_to = match children.next_if(Rule::subject_to) {
            Some(conditions) => self
                .children(conditions)
                .all(Rule::condition)
                .map(|condition| self.condition(condition, 0))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let at_pair = children.required_rule(Rule::optimum_at)?;
        let mut at_children = self.children(at_pair);
        let values = at_children.required("value")?;
        let at_span = span_of(&values);
        let at = match values.as_rule() {
            Rule::expr => vec![self.expr(values, 0)?],
            Rule::at_tuple => self.expr_list(self.children(values), 0)?,
            _ => return Err(self.unexpected(&values)),
        };
        if at.len() != over.len() {
            return Err(SyntaxError::optimum_arity(
                self.source,
                (over_span, over.len()),
                (at_span, at.len()),
            ));
        }
        Ok(OptimumClaim {
            sense,
            objective,
            over,
            subject_to,
            at,
        })
    }

    // -----------------------------------------------------------------------
    // Bodies and cases

    /// A lone expression, or cases each ending in `if …` or `otherwise`
    /// (the last one only).
    fn body(&self, pair: Pair<'_, Rule>) -> Result<Body> {
        let mut cases = Vec::new();
        for case in self.children(pair).all(Rule::case) {
            cases.push(self.case(case)?);
        }
        if let [(_, Guard::None)] = cases.as_slice()
            && let Some((case, _)) = cases.pop()
        {
            return Ok(Body::Expr(case.value));
        }
        let last = cases.len().saturating_sub(1);
        let mut checked = Vec::with_capacity(cases.len());
        for (position, (case, guard)) in cases.into_iter().enumerate() {
            match guard {
                Guard::None => {
                    return Err(SyntaxError::case_without_condition(self.source, case.span));
                }
                Guard::Otherwise if position != last => {
                    return Err(SyntaxError::otherwise_not_last(self.source, case.span));
                }
                Guard::If | Guard::Otherwise => checked.push(case),
            }
        }
        Ok(Body::Cases(checked))
    }

    fn case(&self, pair: Pair<'_, Rule>) -> Result<(Case, Guard)> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let value = self.expr(children.required_rule(Rule::expr)?, 0)?;
        let (condition, guard) = match children.next() {
            None => (None, Guard::None),
            Some(guard) if guard.as_rule() == Rule::guard_otherwise => (None, Guard::Otherwise),
            Some(guard) if guard.as_rule() == Rule::guard_if => {
                let condition = self.children(guard).required_rule(Rule::condition)?;
                (Some(self.condition(condition, 0)?), Guard::If)
            }
            Some(other) => return Err(self.unexpected(&other)),
        };
        let case = Case {
            value,
            condition,
            span,
        };
        Ok((case, guard))
    }

    // -----------------------------------------------------------------------
    // Expressions

    /// `term (+|- term)*`
    fn expr(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        self.arithmetic_chain(pair, depth, Self::term)
    }

    /// `unary (*|/ unary)*`
    fn term(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        self.arithmetic_chain(pair, depth, Self::unary)
    }

    /// `operand (op operand)*`, folded to the left.
    fn arithmetic_chain<'i>(
        &self,
        pair: Pair<'i, Rule>,
        depth: usize,
        operand: fn(&Self, Pair<'i, Rule>, usize) -> Result<Expr>,
    ) -> Result<Expr> {
        let (first, rest) = self.chain(pair, depth)?;
        let count = rest.len();
        let mut lhs = operand(self, first, depth + count)?;
        for (index, (op, rhs)) in rest.into_iter().enumerate() {
            let op = self.binary_op(&op)?;
            let rhs = operand(self, rhs, depth + count - index)?;
            lhs = binary(op, lhs, rhs);
        }
        Ok(lhs)
    }

    /// Splits `operand (op operand)*`. Folded to the left, its first operand
    /// sits `n` levels below `depth` for `n` operators: too deep is refused
    /// here, pointing at the first operator past the limit.
    fn chain<'i>(&self, pair: Pair<'i, Rule>, depth: usize) -> Result<Chain<'i>> {
        self.check_depth(depth, span_of(&pair))?;
        let mut children = self.children(pair);
        let first = children.required("operand")?;
        let mut rest = Vec::new();
        while let Some(op) = children.next() {
            rest.push((op, children.required("operand")?));
        }
        if depth + rest.len() > MAX_DEPTH {
            // The operator at `index` sits `rest.len() - index` levels down.
            let index = (depth + rest.len()).saturating_sub(MAX_DEPTH + 1);
            let span = rest
                .get(index)
                .map_or_else(|| span_of(&first), |(op, _)| span_of(op));
            return Err(SyntaxError::too_deep(self.source, span, MAX_DEPTH));
        }
        Ok((first, rest))
    }

    fn binary_op(&self, pair: &Pair<'_, Rule>) -> Result<BinaryOp> {
        Ok(match pair.as_str() {
            "+" => BinaryOp::Add,
            "-" => BinaryOp::Sub,
            "*" => BinaryOp::Mul,
            "/" => BinaryOp::Div,
            "^" => BinaryOp::Pow,
            _ => return Err(self.unexpected(pair)),
        })
    }

    /// `-* power`: each minus is a level of nesting.
    fn unary(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let (negs, operand) = self.prefixed(pair, Rule::neg, depth)?;
        let operand = self.power(operand, depth + negs.len())?;
        Ok(negate(&negs, operand))
    }

    /// The spans of the `prefix` children of `pair` (minus signs, `not`s)
    /// and the child they apply to, which will sit below them all.
    fn prefixed<'i>(
        &self,
        pair: Pair<'i, Rule>,
        prefix: Rule,
        depth: usize,
    ) -> Result<(Vec<Span>, Pair<'i, Rule>)> {
        let mut children = self.children(pair);
        let prefixes = children.spans_of(prefix);
        let operand = children.required("operand")?;
        self.check_depth(depth + prefixes.len(), span_of(&operand))?;
        Ok((prefixes, operand))
    }

    /// `primary (^ exponent)*`, right-associative: `a^b^c` is `a^(b^c)`,
    /// and an exponent may be negated: `a^-b^c` is `a^(-(b^c))`.
    fn power(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let (base, exponents) = self.power_parts(pair)?;
        if exponents.is_empty() {
            return self.primary(base, depth);
        }
        let base = self.primary(base, depth + 1)?;
        // Going in: each exponent sits below its minus signs, and all but the
        // last are the base of the next `^`.
        let last = exponents.len() - 1;
        let mut at = depth + 1;
        let mut raised = Vec::with_capacity(exponents.len());
        for (index, (negs, operand)) in exponents.into_iter().enumerate() {
            at += negs.len() + usize::from(index != last);
            raised.push((negs, self.primary(operand, at)?));
        }
        Ok(raise(base, raised))
    }

    /// The base of a power and, for each `^`, the exponent's minus signs and
    /// its primary.
    #[allow(clippy::type_complexity)]
    fn power_parts<'i>(
        &self,
        pair: Pair<'i, Rule>,
    ) -> Result<(Pair<'i, Rule>, Vec<(Vec<Span>, Pair<'i, Rule>)>)> {
        let mut children = self.children(pair);
        let base = children.required("base")?;
        let mut exponents = Vec::new();
        while children.next_if(Rule::pow_op).is_some() {
            let mut exponent = self.children(children.required_rule(Rule::exponent)?);
            let negs = exponent.spans_of(Rule::neg);
            exponents.push((negs, exponent.required("exponent")?));
        }
        Ok((base, exponents))
    }

    fn primary(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let span = span_of(&pair);
        self.check_depth(depth, span)?;
        let kind = match pair.as_rule() {
            Rule::number => ExprKind::Number(self.number(&pair)?),
            Rule::name => ExprKind::Name(pair.as_str().to_owned()),
            Rule::paren => return self.paren(pair, depth),
            Rule::access => self.access(pair, depth)?,
            Rule::call => self.call(pair, depth)?,
            Rule::iverson => self.iverson(pair, depth)?,
            Rule::reduction => self.reduction(pair, depth)?,
            Rule::moment => self.moment(pair, depth)?,
            _ => return Err(self.unexpected(&pair)),
        };
        Ok(Spanned::new(kind, span))
    }

    /// `(…)` as a value: it may hold a plain expression only.
    fn paren(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        // The parentheses belong to the expression's span, so that `1 / (a - b)`
        // is shown whole and a label on `(a - b)` covers both ends.
        let span = span_of(&pair);
        let inner = self.children(pair).required_rule(Rule::condition)?;
        let mut expr = self.logic(inner, depth)?.into_value(self.source)?;
        expr.span = span;
        Ok(expr)
    }

    /// `x[i, k+1]`
    fn access(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<ExprKind> {
        let mut children = self.children(pair);
        let tensor = self.head_name(children.required_rule(Rule::access_head)?)?;
        let indices = self.expr_list(children, depth + 1)?;
        Ok(ExprKind::Access { tensor, indices })
    }

    /// `f(a, b)`
    fn call(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<ExprKind> {
        let mut children = self.children(pair);
        let function = self.head_name(children.required_rule(Rule::call_head)?)?;
        let args = self.expr_list(children, depth + 1)?;
        Ok(ExprKind::Call { function, args })
    }

    /// `[condition]`
    fn iverson(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<ExprKind> {
        let condition = self.children(pair).required_rule(Rule::condition)?;
        let condition = self.condition(condition, depth + 1)?;
        Ok(ExprKind::Iverson(Box::new(condition)))
    }

    /// The remaining `expr` children, converted at `depth`.
    fn expr_list(&self, children: Children<'_, '_>, depth: usize) -> Result<Vec<Expr>> {
        children
            .all(Rule::expr)
            .map(|expr| self.expr(expr, depth))
            .collect()
    }

    /// `sum(k) term` or `sum(k in lo..=hi) term`; `sum(i, j) term` is
    /// `sum(i) sum(j) term`, each reduction spanning the whole.
    fn reduction(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<ExprKind> {
        let whole = span_of(&pair);
        let mut children = self.children(pair);
        let op_pair = match children.next_if(Rule::reduce_op_many) {
            Some(op) => op,
            None => children.required_rule(Rule::reduce_op)?,
        };
        let op = match op_pair.as_str() {
            "sum" => ReduceOp::Sum,
            "prod" => ReduceOp::Prod,
            "mean" => ReduceOp::Mean,
            "max" => ReduceOp::Max,
            "min" => ReduceOp::Min,
            _ => return Err(self.unexpected(&op_pair)),
        };
        let op = Spanned::new(op, span_of(&op_pair));
        let mut indices = vec![];
        while let Some(binding) = children.next_if(Rule::reduce_index) {
            let mut parts = self.children(binding);
            let index = self.decl_name(parts.required_rule(Rule::decl_name)?)?;
            let range = match parts.next_if(Rule::index_range) {
                Some(range) => Some(Box::new(self.index_range(range, depth + 1)?)),
                None => None,
            };
            indices.push((index, range));
        }
        if indices.len() > 1 && matches!(op.node, ReduceOp::Max | ReduceOp::Min) {
            let names: Vec<String> = indices.iter().map(|(n, _)| n.node.clone()).collect();
            let span = indices
                .first()
                .zip(indices.last())
                .map_or(op.span, |(a, b)| a.0.span.to(b.0.span));
            return Err(SyntaxError::one_index_reduction(
                self.source,
                span,
                op_pair.as_str(),
                &names,
            ));
        }
        let mut body = self.term(children.required_rule(Rule::term)?, depth + 1)?;
        if indices.is_empty() {
            return Err(self.unexpected(&op_pair));
        }
        let (index, range) = indices.remove(0);
        for (inner, inner_range) in indices.into_iter().rev() {
            body = Expr::new(
                ExprKind::Reduce {
                    op: op.clone(),
                    index: inner,
                    range: inner_range,
                    body: Box::new(body),
                },
                whole,
            );
        }
        Ok(ExprKind::Reduce {
            op,
            index,
            range,
            body: Box::new(body),
        })
    }

    /// `E[body]` or `Var[body]`.
    fn moment(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<ExprKind> {
        let mut children = self.children(pair);
        let head = children.required_rule(Rule::moment_head)?;
        let word = self.atomic_head(&head);
        let moment = match word.node.as_str() {
            "E" => Moment::Expectation,
            "Var" => Moment::Variance,
            _ => return Err(self.unexpected(&head)),
        };
        let body = self.expr(children.required_rule(Rule::expr)?, depth + 1)?;
        Ok(ExprKind::Moment {
            moment: Spanned::new(moment, word.span),
            body: Box::new(body),
        })
    }

    fn number(&self, pair: &Pair<'_, Rule>) -> Result<f64> {
        let text = pair.as_str();
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(value),
            _ => Err(SyntaxError::number(self.source, span_of(pair), text)),
        }
    }

    // -----------------------------------------------------------------------
    // Conditions
    //
    // The grammar reads `(…)` as a condition wherever it appears, a plain
    // expression being the trivial condition (see `paren` in the grammar), so
    // these methods return a `Logic` and their callers insist on one kind.

    /// A condition where one is required: in `[…]` and after `if`.
    fn condition(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Condition> {
        self.logic(pair, depth)?.into_condition(self.source)
    }

    /// `conjunction (or conjunction)*`
    fn logic(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Logic> {
        self.logic_chain(pair, depth, Self::conjunction, ConditionKind::Or)
    }

    /// `negation (and negation)*`
    fn conjunction(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Logic> {
        self.logic_chain(pair, depth, Self::negation, ConditionKind::And)
    }

    /// `operand (op operand)*`, folded to the left with `combine`. With an
    /// operator, every operand must be a condition; without, it passes as is.
    fn logic_chain<'i>(
        &self,
        pair: Pair<'i, Rule>,
        depth: usize,
        operand: fn(&Self, Pair<'i, Rule>, usize) -> Result<Logic>,
        combine: fn(Box<Condition>, Box<Condition>) -> ConditionKind,
    ) -> Result<Logic> {
        let (first, rest) = self.chain(pair, depth)?;
        if rest.is_empty() {
            return operand(self, first, depth);
        }
        let count = rest.len();
        let mut lhs = operand(self, first, depth + count)?.into_condition(self.source)?;
        for (index, (_, rhs)) in rest.into_iter().enumerate() {
            let rhs = operand(self, rhs, depth + count - index)?.into_condition(self.source)?;
            let span = lhs.span.to(rhs.span);
            lhs = Spanned::new(combine(Box::new(lhs), Box::new(rhs)), span);
        }
        Ok(Logic::Condition(lhs))
    }

    /// `not* comparison`: each `not` is a level of nesting.
    fn negation(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Logic> {
        let (nots, operand) = self.prefixed(pair, Rule::kw_not, depth)?;
        let operand = self.comparison(operand, depth + nots.len())?;
        if nots.is_empty() {
            return Ok(operand);
        }
        let negated = nots.iter().rev().try_fold(
            operand.into_condition(self.source)?,
            |condition, &not| -> Result<Condition> {
                let span = not.to(condition.span);
                Ok(Spanned::new(ConditionKind::Not(Box::new(condition)), span))
            },
        )?;
        Ok(Logic::Condition(negated))
    }

    /// A chain `e1 op e2 (op e3)*`; without operators a plain expression,
    /// which may be a parenthesised condition.
    fn comparison(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Logic> {
        let span = span_of(&pair);
        self.check_depth(depth, span)?;
        let mut children = self.children(pair);
        let first = children.required_rule(Rule::expr)?;
        if children.peek_rule().is_none() {
            return match bare_paren(&first) {
                Some(paren) => {
                    self.logic(self.children(paren).required_rule(Rule::condition)?, depth)
                }
                None => self.expr(first, depth).map(Logic::Value),
            };
        }
        let first = self.expr(first, depth + 1)?;
        if let Some(tail) = children.next_if(Rule::approx_tail) {
            return self.approximately(first, tail, span, depth);
        }
        let mut rest = Vec::new();
        while let Some(op) = children.next_if(Rule::compare_op) {
            let op = Spanned::new(self.compare_op(&op)?, span_of(&op));
            rest.push((
                op,
                self.expr(children.required_rule(Rule::expr)?, depth + 1)?,
            ));
        }
        let compare = ConditionKind::Compare { first, rest };
        Ok(Logic::Condition(Spanned::new(compare, span)))
    }

    /// `a ≈ b ± t` as the condition it means, `b - t <= a <= b + t`: a
    /// chain rather than `abs(a - b) <= t`, so that `a` may be a sampled
    /// moment, which stands alone on its side of a comparison.
    fn approximately(
        &self,
        first: Expr,
        tail: Pair<'_, Rule>,
        span: Span,
        depth: usize,
    ) -> Result<Logic> {
        let mut children = self.children(tail);
        let op_span = span_of(&children.required_rule(Rule::approx_compare)?);
        let second = self.expr(children.required_rule(Rule::approx_operand)?, depth + 1)?;
        let tolerance = self.expr(children.required_rule(Rule::expr)?, depth + 1)?;
        let shifted = |op: BinaryOp| {
            Expr::new(
                ExprKind::Binary {
                    op,
                    lhs: Box::new(second.clone()),
                    rhs: Box::new(tolerance.clone()),
                },
                span,
            )
        };
        let compare = ConditionKind::Compare {
            first: shifted(BinaryOp::Sub),
            rest: vec![
                (Spanned::new(CompareOp::Le, op_span), first),
                (Spanned::new(CompareOp::Le, op_span), shifted(BinaryOp::Add)),
            ],
        };
        Ok(Logic::Condition(Spanned::new(compare, span)))
    }

    fn compare_op(&self, pair: &Pair<'_, Rule>) -> Result<CompareOp> {
        Ok(match pair.as_str() {
            "==" => CompareOp::Eq,
            "!=" => CompareOp::Ne,
            "<" => CompareOp::Lt,
            "<=" => CompareOp::Le,
            ">" => CompareOp::Gt,
            ">=" => CompareOp::Ge,
            _ => return Err(self.unexpected(pair)),
        })
    }

    // -----------------------------------------------------------------------
    // Names and strings

    /// A name being declared or bound, which may not be a reserved word.
    fn decl_name(&self, pair: Pair<'_, Rule>) -> Result<Ident> {
        let span = span_of(&pair);
        let word = pair.as_str();
        if is_reserved(word) {
            return Err(SyntaxError::keyword_as_name(self.source, span, word));
        }
        Ok(Spanned::new(word.to_owned(), span))
    }

    /// The declared name in `name[` (a `decl_head` or `layer_head`).
    fn decl_head(&self, pair: Pair<'_, Rule>) -> Result<Ident> {
        self.decl_name(self.children(pair).required_rule(Rule::decl_name)?)
    }

    /// The name in `name[` or `name(` inside an expression; the grammar has
    /// already excluded reserved words.
    fn head_name(&self, pair: Pair<'_, Rule>) -> Result<Ident> {
        let name = self.children(pair).required_rule(Rule::name)?;
        Ok(Spanned::new(name.as_str().to_owned(), span_of(&name)))
    }

    /// A string literal, unescaped, spanned over its quotes.
    fn string(&self, pair: Pair<'_, Rule>) -> Result<Spanned<String>> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let text = children.required_rule(Rule::string_text)?;
        if children.next_if(Rule::unterminated).is_some() {
            return Err(SyntaxError::unterminated_string(self.source, span));
        }
        let value = self.unescape(text.as_str(), span_of(&text).start)?;
        Ok(Spanned::new(value, span))
    }

    /// Resolves `\"` and `\\`; any other escape is an error. `offset` is the
    /// position of `text` in the source, for the error's span.
    fn unescape(&self, text: &str, offset: usize) -> Result<String> {
        let mut value = String::with_capacity(text.len());
        let mut chars = text.char_indices();
        while let Some((at, c)) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                Some((next, other)) => {
                    let end = next + other.len_utf8();
                    let escape = text.get(at..end).unwrap_or("\\");
                    let span = Span::new(offset + at, offset + end);
                    return Err(SyntaxError::string_escape(self.source, span, escape));
                }
                // The grammar reads a string that ends in a lone `\` as
                // unterminated, so this cannot happen; say so all the same.
                None => {
                    let span = Span::new(offset + at, offset + text.len());
                    return Err(SyntaxError::unterminated_string(self.source, span));
                }
            }
        }
        Ok(value)
    }
}

/// How a case ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Guard {
    None,
    If,
    Otherwise,
}

/// A `condition` node once converted: a real condition, or a plain value
/// (the trivial condition without comparisons, as in `(a + b)`).
enum Logic {
    Value(Expr),
    Condition(Condition),
}

impl Logic {
    fn into_condition(self, source: &Source) -> Result<Condition> {
        match self {
            Logic::Condition(condition) => Ok(condition),
            Logic::Value(value) => Err(SyntaxError::not_a_condition(source, value.span)),
        }
    }

    fn into_value(self, source: &Source) -> Result<Expr> {
        match self {
            Logic::Value(value) => Ok(value),
            Logic::Condition(condition) => {
                Err(SyntaxError::condition_as_value(source, condition.span))
            }
        }
    }
}

/// The parenthesis that makes up the whole of `expr`, as in `(i < 2 or i > 5)`.
fn bare_paren<'i>(expr: &Pair<'i, Rule>) -> Option<Pair<'i, Rule>> {
    let mut node = expr.clone();
    for rule in [Rule::term, Rule::unary, Rule::power, Rule::paren] {
        let mut children = node.into_inner();
        let only = children.next()?;
        if children.next().is_some() || only.as_rule() != rule {
            return None;
        }
        node = only;
    }
    Some(node)
}

fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    let span = lhs.span.to(rhs.span);
    let (lhs, rhs) = (Box::new(lhs), Box::new(rhs));
    Spanned::new(ExprKind::Binary { op, lhs, rhs }, span)
}

/// Applies the minus signs at `negs` (in source order) to `operand`.
fn negate(negs: &[Span], operand: Expr) -> Expr {
    negs.iter().rev().fold(operand, |operand, &neg| {
        let span = neg.to(operand.span);
        let operand = Box::new(operand);
        Spanned::new(
            ExprKind::Unary {
                op: UnaryOp::Neg,
                operand,
            },
            span,
        )
    })
}

/// `base ^ e1 ^ e2 …`, right-associative, each exponent with its minus signs.
fn raise(base: Expr, exponents: Vec<(Vec<Span>, Expr)>) -> Expr {
    let exponent = exponents
        .into_iter()
        .rev()
        .fold(None, |inner, (negs, operand)| {
            let raised = match inner {
                None => operand,
                Some(inner) => binary(BinaryOp::Pow, operand, inner),
            };
            Some(negate(&negs, raised))
        });
    match exponent {
        Some(exponent) => binary(BinaryOp::Pow, base, exponent),
        None => base,
    }
}

#[cfg(test)]
#[allow(clippy::panic, reason = "a failing test panics")]
mod tests {
    use miette::Diagnostic;

    use super::*;

    // --- Trees without spans (`Spanned` equality ignores them) -------------

    fn s<T>(node: T) -> Spanned<T> {
        Spanned::new(node, Span::default())
    }

    fn id(name: &str) -> Ident {
        s(name.to_owned())
    }

    fn num(value: f64) -> Expr {
        s(ExprKind::Number(value))
    }

    fn var(name: &str) -> Expr {
        s(ExprKind::Name(name.to_owned()))
    }

    fn at(tensor: &str, indices: Vec<Expr>) -> Expr {
        s(ExprKind::Access {
            tensor: id(tensor),
            indices,
        })
    }

    fn bin(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
        binary(op, lhs, rhs)
    }

    fn add(lhs: Expr, rhs: Expr) -> Expr {
        bin(BinaryOp::Add, lhs, rhs)
    }

    fn sub(lhs: Expr, rhs: Expr) -> Expr {
        bin(BinaryOp::Sub, lhs, rhs)
    }

    fn mul(lhs: Expr, rhs: Expr) -> Expr {
        bin(BinaryOp::Mul, lhs, rhs)
    }

    fn div(lhs: Expr, rhs: Expr) -> Expr {
        bin(BinaryOp::Div, lhs, rhs)
    }

    fn pow(lhs: Expr, rhs: Expr) -> Expr {
        bin(BinaryOp::Pow, lhs, rhs)
    }

    fn neg(operand: Expr) -> Expr {
        negate(&[Span::default()], operand)
    }

    fn call(function: &str, args: Vec<Expr>) -> Expr {
        s(ExprKind::Call {
            function: id(function),
            args,
        })
    }

    fn reduce(op: ReduceOp, index: &str, range: Option<(Expr, Expr)>, body: Expr) -> Expr {
        s(ExprKind::Reduce {
            op: s(op),
            index: id(index),
            range: range.map(|(lo, hi)| Box::new(range_expr(lo, hi))),
            body: Box::new(body),
        })
    }

    fn range_expr(lo: Expr, hi: Expr) -> IndexRangeExpr {
        IndexRangeExpr {
            lo,
            hi,
            span: Span::default(),
        }
    }

    fn iverson(condition: Condition) -> Expr {
        s(ExprKind::Iverson(Box::new(condition)))
    }

    fn compare(first: Expr, rest: Vec<(CompareOp, Expr)>) -> Condition {
        let rest = rest.into_iter().map(|(op, e)| (s(op), e)).collect();
        s(ConditionKind::Compare { first, rest })
    }

    fn cmp(lhs: Expr, op: CompareOp, rhs: Expr) -> Condition {
        compare(lhs, vec![(op, rhs)])
    }

    fn and(lhs: Condition, rhs: Condition) -> Condition {
        s(ConditionKind::And(Box::new(lhs), Box::new(rhs)))
    }

    fn or(lhs: Condition, rhs: Condition) -> Condition {
        s(ConditionKind::Or(Box::new(lhs), Box::new(rhs)))
    }

    fn not(condition: Condition) -> Condition {
        s(ConditionKind::Not(Box::new(condition)))
    }

    fn case(value: Expr, condition: Option<Condition>) -> Case {
        Case {
            value,
            condition,
            span: Span::default(),
        }
    }

    fn definition(name: &str, indices: &[&str], body: Body) -> Definition {
        Definition {
            name: id(name),
            indices: indices.iter().map(|index| id(index)).collect(),
            body,
            ranges: Vec::new(),
            span: Span::default(),
        }
    }

    fn binding(index: &str, lo: Expr, hi: Expr) -> RangeBinding {
        RangeBinding {
            index: id(index),
            range: range_expr(lo, hi),
            span: Span::default(),
        }
    }

    fn tensor(role: TensorRole, name: &str, shape: Vec<Expr>, init: Option<Init>) -> TensorDecl {
        TensorDecl {
            role: s(role),
            name: id(name),
            shape,
            init,
            span: Span::default(),
        }
    }

    /// The `Debug` rendering of a tree without its spans. `Spanned` compares
    /// by value, but the plain `span` fields of `Case`, `Claim`, `TensorDecl`
    /// and the like take part in their derived equality.
    fn shape<T: std::fmt::Debug>(tree: &T) -> String {
        const FIELD: &str = ", span: Span { start: ";
        let mut text = format!("{tree:?}");
        while let Some(start) = text.find(FIELD) {
            let end = text
                .get(start + FIELD.len()..)
                .and_then(|rest| rest.find('}'))
                .map_or(text.len(), |close| start + FIELD.len() + close + 1);
            text.replace_range(start..end, "");
        }
        text
    }

    /// Asserts that two trees are equal but for their spans.
    #[track_caller]
    fn assert_same<T: std::fmt::Debug>(actual: &T, expected: &T, context: &str) {
        assert_eq!(shape(actual), shape(expected), "{context}");
    }

    // --- Running the parser ------------------------------------------------

    fn parse_text(text: &str) -> Result<Spec> {
        parse(&Source::new("test.dl", text)).map_err(Box::new)
    }

    fn items(text: &str) -> Vec<Item> {
        match parse_text(text) {
            Ok(spec) => spec.items,
            Err(error) => panic!("{text:?} did not parse: {}", render(&error)),
        }
    }

    fn item(text: &str) -> Item {
        match items(text).as_slice() {
            [item] => item.clone(),
            other => panic!("{text:?}: expected one item, got {other:?}"),
        }
    }

    /// The body of `let c = <text>`.
    fn expr(text: &str) -> Expr {
        match item(&format!("let c = {text}")) {
            Item::Let(Definition {
                body: Body::Expr(expr),
                ..
            }) => expr,
            other => panic!("{text:?}: expected a plain let, got {other:?}"),
        }
    }

    /// The condition of `[<text>]`.
    fn condition(text: &str) -> Condition {
        match expr(&format!("[{text}]")).node {
            ExprKind::Iverson(condition) => *condition,
            other => panic!("{text:?}: expected an Iverson bracket, got {other:?}"),
        }
    }

    fn error(text: &str) -> SyntaxError {
        match parse_text(text) {
            Ok(spec) => panic!("{text:?} parsed, but should not have: {spec:?}"),
            Err(error) => *error,
        }
    }

    fn code(error: &SyntaxError) -> String {
        error
            .code()
            .map(|code| code.to_string())
            .unwrap_or_default()
    }

    /// The error's label spans, as text.
    fn labelled<'t>(text: &'t str, error: &SyntaxError) -> Vec<&'t str> {
        error
            .labels()
            .into_iter()
            .flatten()
            .map(|label| {
                text.get(label.offset()..label.offset() + label.len())
                    .unwrap_or("?")
            })
            .collect()
    }

    fn render(error: &SyntaxError) -> String {
        let mut out = String::new();
        let theme = miette::GraphicalTheme::unicode_nocolor();
        let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100);
        match handler.render_report(&mut out, error) {
            Ok(()) => out,
            Err(_) => error.to_string(),
        }
    }

    /// Asserts the error code and message of `text`, and that its label
    /// covers `label`.
    fn assert_error(text: &str, expected_code: &str, message: &str, label: &str) {
        let error = error(text);
        assert_eq!(code(&error), expected_code, "{text:?}: {}", render(&error));
        assert_eq!(error.to_string(), message, "{text:?}");
        assert_eq!(labelled(text, &error), vec![label], "{text:?}");
    }

    fn help(error: &SyntaxError) -> String {
        error
            .help()
            .map(|help| help.to_string())
            .unwrap_or_default()
    }

    // --- The handout example ------------------------------------------------

    const RECURRENT: &str = r#"exercise "Backprop recurrent sequence"
dim N = 8
input x[N] in (-2, 2)            # values stay where tanh is not flat
param a, b

y[i] = a * (x[i] + x[i+2]) + b     for i in 1..=N-2

grad b      = sum(i) g[i]
grad x[j] = a * g[j]              if j <= 2
          | a * (g[j] + g[j-2])   if 3 <= j <= N-2
          | a * g[j-2]            otherwise
grad a = sum(i) g[i] * (x[i] + x[i+2])
    expect fail "the handout drops a factor"
"#;

    #[test]
    fn parses_the_recurrent_sequence_exercise() {
        let items = items(RECURRENT);
        let xi = |offset: f64| {
            let index = if offset == 0.0 {
                var("i")
            } else {
                add(var("i"), num(offset))
            };
            at("x", vec![index])
        };
        let g = |index: Expr| at("g", vec![index]);
        let expected = vec![
            Item::Exercise(s("Backprop recurrent sequence".to_owned())),
            Item::Dim(vec![DimDecl {
                name: id("N"),
                default: s(8),
                minimum: None,
                span: Span::default(),
            }]),
            Item::Tensor(vec![tensor(
                TensorRole::Input,
                "x",
                vec![var("N")],
                Some(Init::Domain(s(Domain::Interval {
                    lo: neg(num(2.0)),
                    hi: num(2.0),
                    lo_closed: false,
                    hi_closed: false,
                }))),
            )]),
            Item::Tensor(vec![
                tensor(TensorRole::Param, "a", vec![], None),
                tensor(TensorRole::Param, "b", vec![], None),
            ]),
            Item::Layer(Definition {
                ranges: vec![binding("i", num(1.0), sub(var("N"), num(2.0)))],
                ..definition(
                    "y",
                    &["i"],
                    Body::Expr(add(mul(var("a"), add(xi(0.0), xi(2.0))), var("b"))),
                )
            }),
            Item::Claim(Claim {
                kind: ClaimKind::Grad(GradClaim {
                    target: id("b"),
                    indices: vec![],
                    body: Body::Expr(reduce(ReduceOp::Sum, "i", None, g(var("i")))),
                }),
                expect_fail: None,
                span: Span::default(),
            }),
            Item::Claim(Claim {
                kind: ClaimKind::Grad(GradClaim {
                    target: id("x"),
                    indices: vec![id("j")],
                    body: Body::Cases(vec![
                        case(
                            mul(var("a"), g(var("j"))),
                            Some(cmp(var("j"), CompareOp::Le, num(2.0))),
                        ),
                        case(
                            mul(var("a"), add(g(var("j")), g(sub(var("j"), num(2.0))))),
                            Some(compare(
                                num(3.0),
                                vec![
                                    (CompareOp::Le, var("j")),
                                    (CompareOp::Le, sub(var("N"), num(2.0))),
                                ],
                            )),
                        ),
                        case(mul(var("a"), g(sub(var("j"), num(2.0)))), None),
                    ]),
                }),
                expect_fail: None,
                span: Span::default(),
            }),
            Item::Claim(Claim {
                kind: ClaimKind::Grad(GradClaim {
                    target: id("a"),
                    indices: vec![],
                    body: Body::Expr(reduce(
                        ReduceOp::Sum,
                        "i",
                        None,
                        mul(g(var("i")), add(xi(0.0), xi(2.0))),
                    )),
                }),
                expect_fail: Some(s("the handout drops a factor".to_owned())),
                span: Span::default(),
            }),
        ];
        assert_same(&items, &expected, "recurrent sequence");
    }

    #[test]
    fn spans_cover_the_text_of_each_node() {
        let spec = items(RECURRENT);
        let text_of = |span: Span| RECURRENT.get(span.start..span.end).unwrap_or("?");
        let [
            Item::Exercise(title),
            Item::Dim(dims),
            Item::Tensor(inputs),
            _,
            Item::Layer(layer),
            _,
            Item::Claim(cases_claim),
            Item::Claim(erratum),
        ] = spec.as_slice()
        else {
            panic!("unexpected items: {spec:?}");
        };
        assert_eq!(text_of(title.span), "\"Backprop recurrent sequence\"");
        assert_eq!(
            dims.iter().map(|d| text_of(d.span)).collect::<Vec<_>>(),
            ["N = 8"]
        );
        assert_eq!(dims.first().map(|d| text_of(d.default.span)), Some("8"));
        let [x] = inputs.as_slice() else {
            panic!("{inputs:?}")
        };
        assert_eq!(text_of(x.span), "x[N] in (-2, 2)");
        assert_eq!(text_of(x.role.span), "input");
        assert_eq!(
            text_of(layer.span),
            "y[i] = a * (x[i] + x[i+2]) + b     for i in 1..=N-2"
        );
        assert_eq!(text_of(layer.body.span()), "a * (x[i] + x[i+2]) + b");
        let ClaimKind::Grad(grad) = &cases_claim.kind else {
            panic!("{cases_claim:?}")
        };
        let Body::Cases(cases) = &grad.body else {
            panic!("{grad:?}")
        };
        assert_eq!(
            cases.iter().map(|c| text_of(c.span)).collect::<Vec<_>>(),
            [
                "a * g[j]              if j <= 2",
                "a * (g[j] + g[j-2])   if 3 <= j <= N-2",
                "a * g[j-2]            otherwise",
            ]
        );
        assert!(text_of(cases_claim.span).starts_with("grad x[j] = a * g[j]"));
        assert!(text_of(cases_claim.span).ends_with("a * g[j-2]            otherwise"));
        assert!(text_of(erratum.span).starts_with("grad a = "));
        assert!(text_of(erratum.span).ends_with("expect fail \"the handout drops a factor\""));
        assert_eq!(
            erratum
                .expect_fail
                .as_ref()
                .map(|reason| text_of(reason.span)),
            Some("expect fail \"the handout drops a factor\"")
        );
    }

    #[test]
    fn spans_of_expressions_and_operators() {
        let text = "let c = 2 * sum(k) w[i,k]^2 + f(x)";
        let Item::Let(def) = item(text) else { panic!() };
        let text_of = |span: Span| text.get(span.start..span.end).unwrap_or("?");
        let Body::Expr(body) = &def.body else {
            panic!()
        };
        assert_eq!(text_of(body.span), "2 * sum(k) w[i,k]^2 + f(x)");
        let ExprKind::Binary { lhs, rhs, .. } = &body.node else {
            panic!()
        };
        assert_eq!(text_of(lhs.span), "2 * sum(k) w[i,k]^2");
        assert_eq!(text_of(rhs.span), "f(x)");
        let ExprKind::Binary { rhs: reduction, .. } = &lhs.node else {
            panic!()
        };
        let ExprKind::Reduce {
            op, index, body, ..
        } = &reduction.node
        else {
            panic!()
        };
        assert_eq!(text_of(reduction.span), "sum(k) w[i,k]^2");
        assert_eq!(text_of(op.span), "sum");
        assert_eq!(text_of(index.span), "k");
        assert_eq!(text_of(body.span), "w[i,k]^2");
    }

    #[test]
    fn spans_stop_before_trailing_comments() {
        let text = "let c = a + b   # a comment\n\ndim N = 3";
        let Some(Item::Let(def)) = items(text).into_iter().next() else {
            panic!()
        };
        assert_eq!(
            text.get(def.span.start..def.span.end),
            Some("let c = a + b")
        );
    }

    // --- Declarations ---------------------------------------------------------

    #[test]
    fn dims_with_several_sizes() {
        let Item::Dim(dims) = item("dim n = 5, m = 3") else {
            panic!()
        };
        let parsed: Vec<_> = dims
            .iter()
            .map(|d| (d.name.node.as_str(), d.default.node))
            .collect();
        assert_eq!(parsed, [("n", 5), ("m", 3)]);
        let Item::Dim(dims) = item("dim n >= 2 = 5, m = 3") else {
            panic!()
        };
        let minimums: Vec<_> = dims
            .iter()
            .map(|d| (d.default.node, d.minimum.as_ref().map(|m| m.node)))
            .collect();
        assert_eq!(minimums, [(5, Some(2)), (3, None)]);
    }

    #[test]
    fn tensors_with_shapes_and_inits() {
        let interval = |lo_closed, hi_closed| {
            Some(Init::Domain(s(Domain::Interval {
                lo: num(0.0),
                hi: num(1.0),
                lo_closed,
                hi_closed,
            })))
        };
        let bound = |op| {
            Some(Init::Domain(s(Domain::Bound {
                op,
                value: num(0.0),
            })))
        };
        let cases = [
            (
                "param w[m, n], b2[m]",
                vec![
                    tensor(TensorRole::Param, "w", vec![var("m"), var("n")], None),
                    tensor(TensorRole::Param, "b2", vec![var("m")], None),
                ],
            ),
            (
                "input x[N+1]",
                vec![tensor(
                    TensorRole::Input,
                    "x",
                    vec![add(var("N"), num(1.0))],
                    None,
                )],
            ),
            (
                "input u in [0, 1]",
                vec![tensor(TensorRole::Input, "u", vec![], interval(true, true))],
            ),
            (
                "input u in (0, 1]",
                vec![tensor(
                    TensorRole::Input,
                    "u",
                    vec![],
                    interval(false, true),
                )],
            ),
            (
                "input u in [0, 1)",
                vec![tensor(
                    TensorRole::Input,
                    "u",
                    vec![],
                    interval(true, false),
                )],
            ),
            (
                "param s > 0",
                vec![tensor(TensorRole::Param, "s", vec![], bound(CompareOp::Gt))],
            ),
            (
                "param s >= 0",
                vec![tensor(TensorRole::Param, "s", vec![], bound(CompareOp::Ge))],
            ),
            (
                "param s < 0",
                vec![tensor(TensorRole::Param, "s", vec![], bound(CompareOp::Lt))],
            ),
            (
                "param s <= 0",
                vec![tensor(TensorRole::Param, "s", vec![], bound(CompareOp::Le))],
            ),
            (
                "input t = 1",
                vec![tensor(
                    TensorRole::Input,
                    "t",
                    vec![],
                    Some(Init::Value(num(1.0))),
                )],
            ),
            (
                "input v[3] = [1, -2, 3.5]",
                vec![tensor(
                    TensorRole::Input,
                    "v",
                    vec![num(3.0)],
                    Some(Init::List(s(vec![num(1.0), neg(num(2.0)), num(3.5)]))),
                )],
            ),
            (
                "input m = [i == 1]",
                vec![tensor(
                    TensorRole::Input,
                    "m",
                    vec![],
                    Some(Init::Value(iverson(cmp(var("i"), CompareOp::Eq, num(1.0))))),
                )],
            ),
        ];
        for (text, expected) in cases {
            assert_same(&item(text), &Item::Tensor(expected), text);
        }
    }

    #[test]
    fn hypers() {
        let Item::Hyper(hypers) = item("hyper alpha = 0.05, mu = 0.9") else {
            panic!()
        };
        let parsed: Vec<_> = hypers
            .iter()
            .map(|h| (h.name.node.clone(), h.value.clone()))
            .collect();
        assert_eq!(
            parsed,
            [("alpha".to_owned(), num(0.05)), ("mu".to_owned(), num(0.9))]
        );
    }

    // --- Definitions and claims -------------------------------------------------

    #[test]
    fn lets_losses_and_layers() {
        let norm = call(
            "sqrt",
            vec![reduce(
                ReduceOp::Sum,
                "k",
                None,
                pow(at("w", vec![var("i"), var("k")]), num(2.0)),
            )],
        );
        assert_same(
            &item("let norm[i] = sqrt(sum(k) w[i,k]^2)"),
            &Item::Let(definition("norm", &["i"], Body::Expr(norm))),
            "",
        );
        assert_same(
            &item("let q[i] = x[i] for i in 1..=N"),
            &Item::Let(Definition {
                ranges: vec![binding("i", num(1.0), var("N"))],
                ..definition("q", &["i"], Body::Expr(at("x", vec![var("i")])))
            }),
            "",
        );
        assert_same(
            &item("loss L = log(1 + exp(-t * z))"),
            &Item::Loss(definition(
                "L",
                &[],
                Body::Expr(call(
                    "log",
                    vec![add(
                        num(1.0),
                        call("exp", vec![mul(neg(var("t")), var("z"))]),
                    )],
                )),
            )),
            "",
        );
        assert_same(
            &item("loss L[i] = x[i]"),
            &Item::Loss(definition("L", &["i"], Body::Expr(at("x", vec![var("i")])))),
            "",
        );
        assert_same(
            &item("z[i, j] = w[i, j] for i in 1..=m, j in 1..=n"),
            &Item::Layer(Definition {
                ranges: vec![
                    binding("i", num(1.0), var("m")),
                    binding("j", num(1.0), var("n")),
                ],
                ..definition(
                    "z",
                    &["i", "j"],
                    Body::Expr(at("w", vec![var("i"), var("j")])),
                )
            }),
            "",
        );
    }

    #[test]
    fn statements_need_no_newlines_and_accept_many() {
        let all = items("dim N = 3 param a let c = a y[i] = c grad a = 1 loss L = c");
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn an_index_needs_its_name_on_the_same_token() {
        // A layer on the next line ends the expression before it.
        assert_eq!(items("let c = a\ny[i] = c").len(), 2);
        // A bracket after a space does not index the name before it.
        let text = "let d = b\n[j == 1]";
        assert_eq!(labelled(text, &error(text)), ["["]);
    }

    #[test]
    fn a_lone_guarded_case_is_a_case() {
        let Item::Claim(claim) = item("grad x[j] = g[j] if j <= 2") else {
            panic!()
        };
        let ClaimKind::Grad(grad) = claim.kind else {
            panic!("{claim:?}")
        };
        assert_same(
            &grad.body,
            &Body::Cases(vec![case(
                at("g", vec![var("j")]),
                Some(cmp(var("j"), CompareOp::Le, num(2.0))),
            )]),
            "",
        );
    }

    #[test]
    fn expect_fail_with_escapes() {
        let Item::Claim(claim) = item(r#"grad a = 1 expect fail "a \"quoted\" \\ reason""#) else {
            panic!()
        };
        assert_eq!(
            claim.expect_fail.map(|reason| reason.node),
            Some(r#"a "quoted" \ reason"#.to_owned())
        );
    }

    // --- Random tensors, update rules and claims (language.md §5–7) ----------

    fn dist(name: &str, args: Vec<Expr>) -> Distribution {
        Distribution {
            name: id(name),
            args,
            span: Span::default(),
        }
    }

    fn moment(moment: Moment, body: Expr) -> Expr {
        s(ExprKind::Moment {
            moment: s(moment),
            body: Box::new(body),
        })
    }

    fn claim(kind: ClaimKind) -> Item {
        Item::Claim(Claim {
            kind,
            expect_fail: None,
            span: Span::default(),
        })
    }

    fn g(index: Expr) -> Expr {
        at("g", vec![index])
    }

    fn rate(op: RateOp, value: f64, tolerance: Option<f64>) -> RateBound {
        RateBound {
            op: s(op),
            value: s(value),
            tolerance: tolerance.map(s),
            span: Span::default(),
        }
    }

    fn taylor(scheme: TaylorScheme, rate: RateBound, precision: Option<Precision>) -> ClaimKind {
        ClaimKind::Taylor(TaylorClaim {
            scheme: s(scheme),
            rate,
            precision: precision.map(s),
        })
    }

    fn state_decl(name: &str, shape: Vec<(Option<&str>, Expr)>, init: Expr) -> OptimizerStatement {
        OptimizerStatement::State(StateDecl {
            name: id(name),
            shape: shape
                .into_iter()
                .map(|(index, size)| (index.map(id), size))
                .collect(),
            init,
            span: Span::default(),
        })
    }

    /// The kind of the one claim in `text`.
    fn claim_kind(text: &str) -> ClaimKind {
        match item(text) {
            Item::Claim(claim) => claim.kind,
            other => panic!("{text:?}: expected a claim, got {other:?}"),
        }
    }

    #[test]
    fn taylor_checks() {
        // The examples of language.md §5, comments and all.
        let section = "check taylor one_sided rate > 1     # |L(w+Δw) − L(w) − ⟨J,Δw⟩| ≪ ε\n\
                       check taylor central   rate > 2     # |½(L(w+Δw) − L(w−Δw)) − ⟨J,Δw⟩| ≪ ε²\n";
        assert_same(
            &items(section),
            &vec![
                claim(taylor(
                    TaylorScheme::OneSided,
                    rate(RateOp::Gt, 1.0, None),
                    None,
                )),
                claim(taylor(
                    TaylorScheme::Central,
                    rate(RateOp::Gt, 2.0, None),
                    None,
                )),
            ],
            "§5",
        );
        let cases = [
            (
                "check taylor central rate >= 2",
                taylor(TaylorScheme::Central, rate(RateOp::Ge, 2.0, None), None),
            ),
            (
                "check taylor central rate ≈ 3 ± 0.3",
                taylor(
                    TaylorScheme::Central,
                    rate(RateOp::Approx, 3.0, Some(0.3)),
                    None,
                ),
            ),
            (
                "check taylor central rate ~= 3 +- 0.3 precision f32",
                taylor(
                    TaylorScheme::Central,
                    rate(RateOp::Approx, 3.0, Some(0.3)),
                    Some(Precision::F32),
                ),
            ),
            (
                "check taylor one_sided rate ≈ 2 precision f64",
                taylor(
                    TaylorScheme::OneSided,
                    rate(RateOp::Approx, 2.0, None),
                    Some(Precision::F64),
                ),
            ),
            (
                "check taylor one_sided rate>1.5",
                taylor(TaylorScheme::OneSided, rate(RateOp::Gt, 1.5, None), None),
            ),
        ];
        for (text, expected) in cases {
            assert_same(&claim_kind(text), &expected, text);
        }
        let text = "check taylor central rate ≈ 3 ± 0.3 precision f32 expect fail \"f32\"";
        let Item::Claim(check) = item(text) else {
            panic!()
        };
        assert_eq!(
            check.expect_fail.map(|reason| reason.node),
            Some("f32".to_owned())
        );
        let ClaimKind::Taylor(taylor) = check.kind else {
            panic!()
        };
        let text_of = |span: Span| text.get(span.start..span.end).unwrap_or("?");
        assert_eq!(text_of(check.span), text);
        assert_eq!(text_of(taylor.scheme.span), "central");
        assert_eq!(text_of(taylor.rate.span), "≈ 3 ± 0.3");
        assert_eq!(text_of(taylor.rate.op.span), "≈");
        assert_eq!(taylor.rate.tolerance.map(|t| text_of(t.span)), Some("0.3"));
        assert_eq!(taylor.precision.map(|p| text_of(p.span)), Some("f32"));
    }

    const STOCHASTIC: &str = "\
let lo = min(k) g[k]
let hi = max(k) g[k]
let a = hi - lo
let b = lo
random q[i] ~ bernoulli((g[i] - b) / a)
let gq[i] = a * q[i] + b

claim E[gq[i]] == g[i]
claim Var[gq[i]] == (g[i] - b) * (a + b - g[i])
claim minimize Var[gq[i]] over a, b subject to b <= lo, a + b >= hi at (hi - lo, lo)
";

    #[test]
    fn the_stochastic_claims_of_section_6() {
        let (a, b, lo, hi) = (var("a"), var("b"), var("lo"), var("hi"));
        let gi = || g(var("i"));
        let gq = || at("gq", vec![var("i")]);
        let expected = vec![
            Item::Let(definition(
                "lo",
                &[],
                Body::Expr(reduce(ReduceOp::Min, "k", None, g(var("k")))),
            )),
            Item::Let(definition(
                "hi",
                &[],
                Body::Expr(reduce(ReduceOp::Max, "k", None, g(var("k")))),
            )),
            Item::Let(definition(
                "a",
                &[],
                Body::Expr(sub(hi.clone(), lo.clone())),
            )),
            Item::Let(definition("b", &[], Body::Expr(lo.clone()))),
            Item::Random(RandomDecl {
                name: id("q"),
                indices: vec![id("i")],
                distribution: dist("bernoulli", vec![div(sub(gi(), b.clone()), a.clone())]),
                ranges: vec![],
                span: Span::default(),
            }),
            Item::Let(definition(
                "gq",
                &["i"],
                Body::Expr(add(mul(a.clone(), at("q", vec![var("i")])), b.clone())),
            )),
            claim(ClaimKind::Holds(cmp(
                moment(Moment::Expectation, gq()),
                CompareOp::Eq,
                gi(),
            ))),
            claim(ClaimKind::Holds(cmp(
                moment(Moment::Variance, gq()),
                CompareOp::Eq,
                mul(sub(gi(), b.clone()), sub(add(a.clone(), b.clone()), gi())),
            ))),
            claim(ClaimKind::Optimum(OptimumClaim {
                sense: s(Sense::Minimize),
                objective: moment(Moment::Variance, gq()),
                over: vec![id("a"), id("b")],
                subject_to: vec![
                    cmp(b.clone(), CompareOp::Le, lo.clone()),
                    cmp(add(a.clone(), b.clone()), CompareOp::Ge, hi.clone()),
                ],
                at: vec![sub(hi.clone(), lo.clone()), lo.clone()],
            })),
        ];
        assert_same(&items(STOCHASTIC), &expected, "§6");
    }

    const UPDATE_RULES: &str = "\
dim n = 4
param theta[n]
hyper alpha = 0.05, mu = 0.9, lambda = 0.1
stream gt[n] ~ normal(0, 1)          # a stochastic gradient, new draw each step

optimizer A {
  state v[n] = 0
  v[k]     = mu * v[k] + gt[k]
  theta[k] = theta[k] - alpha * (v[k] + lambda * theta[k])
}
optimizer B {
  let mu2 = mu * (1 - alpha * lambda)
  let lambda2 = (1 + mu) * lambda
  state v[n] = 0
  v[k]     = mu2 * v[k] + gt[k] + lambda2 * theta[k]
  theta[k] = theta[k] - alpha * v[k]
}
claim A == B over 100 steps
";

    #[test]
    fn the_update_rules_of_section_7() {
        let k = |name: &str| at(name, vec![var("k")]);
        let update = |name: &str, value: Expr| {
            OptimizerStatement::Update(definition(name, &["k"], Body::Expr(value)))
        };
        let hyper = |name: &str, value: f64| HyperDecl {
            name: id(name),
            value: num(value),
            span: Span::default(),
        };
        let expected = vec![
            Item::Dim(vec![DimDecl {
                name: id("n"),
                default: s(4),
                minimum: None,
                span: Span::default(),
            }]),
            Item::Tensor(vec![tensor(
                TensorRole::Param,
                "theta",
                vec![var("n")],
                None,
            )]),
            Item::Hyper(vec![
                hyper("alpha", 0.05),
                hyper("mu", 0.9),
                hyper("lambda", 0.1),
            ]),
            Item::Stream(StreamDecl {
                name: id("gt"),
                shape: vec![var("n")],
                source: StreamSource::Draw(dist("normal", vec![num(0.0), num(1.0)])),
                span: Span::default(),
            }),
            Item::Optimizer(OptimizerDecl {
                name: id("A"),
                statements: vec![
                    state_decl("v", vec![(None, var("n"))], num(0.0)),
                    update("v", add(mul(var("mu"), k("v")), k("gt"))),
                    update(
                        "theta",
                        sub(
                            k("theta"),
                            mul(var("alpha"), add(k("v"), mul(var("lambda"), k("theta")))),
                        ),
                    ),
                ],
                span: Span::default(),
            }),
            Item::Optimizer(OptimizerDecl {
                name: id("B"),
                statements: vec![
                    OptimizerStatement::Let(definition(
                        "mu2",
                        &[],
                        Body::Expr(mul(
                            var("mu"),
                            sub(num(1.0), mul(var("alpha"), var("lambda"))),
                        )),
                    )),
                    OptimizerStatement::Let(definition(
                        "lambda2",
                        &[],
                        Body::Expr(mul(add(num(1.0), var("mu")), var("lambda"))),
                    )),
                    state_decl("v", vec![(None, var("n"))], num(0.0)),
                    update(
                        "v",
                        add(
                            add(mul(var("mu2"), k("v")), k("gt")),
                            mul(var("lambda2"), k("theta")),
                        ),
                    ),
                    update("theta", sub(k("theta"), mul(var("alpha"), k("v")))),
                ],
                span: Span::default(),
            }),
            claim(ClaimKind::Equivalent(EquivalenceClaim {
                first: id("A"),
                second: id("B"),
                steps: s(100),
            })),
        ];
        assert_same(&items(UPDATE_RULES), &expected, "§7");
    }

    #[test]
    fn spans_of_the_new_forms() {
        let text = UPDATE_RULES;
        let text_of = |span: Span| text.get(span.start..span.end).unwrap_or("?");
        let all = items(text);
        let Some(Item::Optimizer(b)) = all.get(5) else {
            panic!("{all:?}")
        };
        assert!(text_of(b.span).starts_with("optimizer B {"));
        assert!(text_of(b.span).ends_with("alpha * v[k]\n}"));
        let Some(OptimizerStatement::Update(update)) = b.statements.get(3) else {
            panic!("{b:?}")
        };
        assert_eq!(
            text_of(update.span),
            "v[k]     = mu2 * v[k] + gt[k] + lambda2 * theta[k]"
        );
        assert_eq!(text_of(update.name.span), "v");
        let Some(Item::Stream(stream)) = all.get(3) else {
            panic!()
        };
        assert_eq!(text_of(stream.span), "stream gt[n] ~ normal(0, 1)");
        let StreamSource::Draw(normal) = &stream.source else {
            panic!()
        };
        assert_eq!(text_of(normal.span), "normal(0, 1)");
        assert_eq!(text_of(normal.name.span), "normal");
        let Some(Item::Claim(equivalence)) = all.get(6) else {
            panic!()
        };
        assert_eq!(text_of(equivalence.span), "claim A == B over 100 steps");
        let ClaimKind::Equivalent(equivalent) = &equivalence.kind else {
            panic!()
        };
        assert_eq!(text_of(equivalent.steps.span), "100");

        let text = "let c = 2 * Var[x[i]]";
        let Body::Expr(body) = &definition_of(text).body else {
            panic!()
        };
        let ExprKind::Binary { rhs, .. } = &body.node else {
            panic!()
        };
        let ExprKind::Moment { moment, body } = &rhs.node else {
            panic!("{rhs:?}")
        };
        assert_eq!(text.get(rhs.span.start..rhs.span.end), Some("Var[x[i]]"));
        assert_eq!(text.get(moment.span.start..moment.span.end), Some("Var"));
        assert_eq!(text.get(body.span.start..body.span.end), Some("x[i]"));
    }

    fn definition_of(text: &str) -> Definition {
        match item(text) {
            Item::Let(definition) => definition,
            other => panic!("{text:?}: expected a let, got {other:?}"),
        }
    }

    #[test]
    fn random_tensors() {
        let cases = [
            (
                "random z ~ normal(0, 1)",
                RandomDecl {
                    name: id("z"),
                    indices: vec![],
                    distribution: dist("normal", vec![num(0.0), num(1.0)]),
                    ranges: vec![],
                    span: Span::default(),
                },
            ),
            (
                "random u[i, j] ~ uniform(-1, x[i]) for i in 1..=n, j in 1..=m",
                RandomDecl {
                    name: id("u"),
                    indices: vec![id("i"), id("j")],
                    distribution: dist("uniform", vec![neg(num(1.0)), at("x", vec![var("i")])]),
                    ranges: vec![
                        binding("i", num(1.0), var("n")),
                        binding("j", num(1.0), var("m")),
                    ],
                    span: Span::default(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_same(&item(text), &Item::Random(expected), text);
        }
        // Rows: the values row-major, and each level's extent.
        let Item::Tensor(tensors) = item("input w[2, 3] = [[1, 2, 3], [4, 5, 6]]") else {
            panic!()
        };
        let Some(Init::Grid(values, shape)) = &tensors[0].init else {
            panic!("{tensors:?}")
        };
        assert_eq!(shape, &[2, 3]);
        let numbers: Vec<f64> = values
            .node
            .iter()
            .map(|e| match e.node {
                ExprKind::Number(v) => v,
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(numbers, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // A bracket that is no row is a bracket.
        let Item::Tensor(tensors) = item("input v[2] = [[a > 0] * 2, 3]") else {
            panic!()
        };
        assert!(matches!(&tensors[0].init, Some(Init::List(l)) if l.node.len() == 2));
        // `a ≈ b ± t` is `b - t <= a <= b + t`, `+-` the ASCII `±`.
        for text in ["claim s ≈ 6 + 0.05 ± 0.1", "claim s ~= 6 + 0.05 +- 0.1"] {
            let Item::Claim(c) = item(text) else { panic!() };
            let ClaimKind::Holds(cond) = &c.kind else {
                panic!("{c:?}")
            };
            let ConditionKind::Compare { first, rest } = &cond.node else {
                panic!()
            };
            assert!(
                matches!(&first.node, ExprKind::Binary { op: BinaryOp::Sub, rhs, .. } if rhs.node == ExprKind::Number(0.1)),
                "{text}: {first:?}"
            );
            assert!(
                matches!(rest.as_slice(), [(a, s), (b, _)] if a.node == CompareOp::Le && b.node == CompareOp::Le && s.node == ExprKind::Name("s".into())),
                "{text}: {rest:?}"
            );
        }
        // A scalar layer output; `==` after a name is no definition.
        assert!(matches!(
            &item("out = tanh(a * x)"),
            Item::Layer(d) if d.name.node == "out" && d.indices.is_empty()
        ));
        assert!(parse_text("out == tanh(a * x)").is_err());
        // Labels: whole numbers drawn from a range.
        let Item::Tensor(tensors) = item("input y[B] in 1..=C") else {
            panic!()
        };
        assert_same(
            &Item::Tensor(tensors),
            &Item::Tensor(vec![tensor(
                TensorRole::Input,
                "y",
                vec![var("B")],
                Some(Init::Indices(range_expr(num(1.0), var("C")))),
            )]),
            "",
        );
        // Data drawn once: an input's init.
        let Item::Tensor(tensors) = item("input m[n] ~ bernoulli(1 - p)") else {
            panic!()
        };
        assert_same(
            &Item::Tensor(tensors),
            &Item::Tensor(vec![tensor(
                TensorRole::Input,
                "m",
                vec![var("n")],
                Some(Init::Drawn(dist(
                    "bernoulli",
                    vec![sub(num(1.0), var("p"))],
                ))),
            )]),
            "",
        );
    }

    #[test]
    fn streams() {
        let stream = |shape: Vec<Expr>, source: StreamSource| {
            Item::Stream(StreamDecl {
                name: id("gt"),
                shape,
                source,
                span: Span::default(),
            })
        };
        let cases = [
            (
                "stream gt[n] = grad theta",
                stream(
                    vec![var("n")],
                    StreamSource::Gradient {
                        param: id("theta"),
                        noise: None,
                    },
                ),
            ),
            (
                "stream gt[n] = grad theta + normal(0, 0.1)",
                stream(
                    vec![var("n")],
                    StreamSource::Gradient {
                        param: id("theta"),
                        noise: Some(dist("normal", vec![num(0.0), num(0.1)])),
                    },
                ),
            ),
            (
                "stream gt[m, n] ~ normal(0, 1)",
                stream(
                    vec![var("m"), var("n")],
                    StreamSource::Draw(dist("normal", vec![num(0.0), num(1.0)])),
                ),
            ),
            (
                "stream gt ~ uniform(0, 1)",
                stream(
                    vec![],
                    StreamSource::Draw(dist("uniform", vec![num(0.0), num(1.0)])),
                ),
            ),
        ];
        for (text, expected) in cases {
            assert_same(&item(text), &expected, text);
        }
        // A `grad` claim may follow a gradient stream directly.
        let both = items("stream gt = grad w grad w = 2 * w");
        assert!(
            matches!(both.as_slice(), [Item::Stream(_), Item::Claim(_)]),
            "{both:?}"
        );
    }

    #[test]
    fn optimizer_statements() {
        let text = "optimizer C {
            state t = 0
            state v[k in n] = 0.5 * theta[k]
            state w[i in m, n] = [i == 1]
            let u[k] = v[k] if k == 1 | 0 otherwise
            t = t + 1
            v[k] = v[k] / t for k in 1..=n
            theta[k] = theta[k] - u[k] if k <= 2
                     | theta[k] otherwise
        }";
        let expected = Item::Optimizer(OptimizerDecl {
            name: id("C"),
            statements: vec![
                state_decl("t", vec![], num(0.0)),
                state_decl(
                    "v",
                    vec![(Some("k"), var("n"))],
                    mul(num(0.5), at("theta", vec![var("k")])),
                ),
                state_decl(
                    "w",
                    vec![(Some("i"), var("m")), (None, var("n"))],
                    iverson(cmp(var("i"), CompareOp::Eq, num(1.0))),
                ),
                OptimizerStatement::Let(definition(
                    "u",
                    &["k"],
                    Body::Cases(vec![
                        case(
                            at("v", vec![var("k")]),
                            Some(cmp(var("k"), CompareOp::Eq, num(1.0))),
                        ),
                        case(num(0.0), None),
                    ]),
                )),
                OptimizerStatement::Update(definition(
                    "t",
                    &[],
                    Body::Expr(add(var("t"), num(1.0))),
                )),
                OptimizerStatement::Update(Definition {
                    ranges: vec![binding("k", num(1.0), var("n"))],
                    ..definition(
                        "v",
                        &["k"],
                        Body::Expr(div(at("v", vec![var("k")]), var("t"))),
                    )
                }),
                OptimizerStatement::Update(definition(
                    "theta",
                    &["k"],
                    Body::Cases(vec![
                        case(
                            sub(at("theta", vec![var("k")]), at("u", vec![var("k")])),
                            Some(cmp(var("k"), CompareOp::Le, num(2.0))),
                        ),
                        case(at("theta", vec![var("k")]), None),
                    ]),
                )),
            ],
            span: Span::default(),
        });
        assert_same(&item(text), &expected, "");
        assert_same(
            &item("optimizer Empty {}"),
            &Item::Optimizer(OptimizerDecl {
                name: id("Empty"),
                statements: vec![],
                span: Span::default(),
            }),
            "",
        );
        // A statement after the braces is not part of the optimizer.
        let all = items("optimizer A { t = 1 } y[i] = x[i]");
        assert!(
            matches!(all.as_slice(), [Item::Optimizer(_), Item::Layer(_)]),
            "{all:?}"
        );
    }

    #[test]
    fn claims_of_conditions() {
        let (a, b) = (var("a"), var("b"));
        let gi = || g(var("i"));
        let cases = [
            (
                "claim 0 <= (g[i] - b) / a <= 1",
                compare(
                    num(0.0),
                    vec![
                        (CompareOp::Le, div(sub(gi(), b.clone()), a.clone())),
                        (CompareOp::Le, num(1.0)),
                    ],
                ),
            ),
            (
                "claim b <= lo and a + b >= hi",
                and(
                    cmp(b.clone(), CompareOp::Le, var("lo")),
                    cmp(add(a.clone(), b.clone()), CompareOp::Ge, var("hi")),
                ),
            ),
            // Without `over … steps`, `A == B` is a plain condition.
            ("claim a == b", cmp(a.clone(), CompareOp::Eq, b.clone())),
            (
                "claim 2 * Var[x[i]] <= E[x[i]^2]",
                cmp(
                    mul(num(2.0), moment(Moment::Variance, at("x", vec![var("i")]))),
                    CompareOp::Le,
                    moment(Moment::Expectation, pow(at("x", vec![var("i")]), num(2.0))),
                ),
            ),
            (
                "claim E[E[x] * [i == 1]] == 0",
                cmp(
                    moment(
                        Moment::Expectation,
                        mul(
                            moment(Moment::Expectation, var("x")),
                            iverson(cmp(var("i"), CompareOp::Eq, num(1.0))),
                        ),
                    ),
                    CompareOp::Eq,
                    num(0.0),
                ),
            ),
        ];
        for (text, expected) in cases {
            assert_same(&claim_kind(text), &ClaimKind::Holds(expected), text);
        }
        let Item::Claim(with_reason) = item("claim a == b expect fail \"no\"") else {
            panic!()
        };
        assert_eq!(
            with_reason.expect_fail.map(|r| r.node),
            Some("no".to_owned())
        );
    }

    #[test]
    fn optimum_claims() {
        let optimum = |sense, objective, over: &[&str], subject_to, at| {
            ClaimKind::Optimum(OptimumClaim {
                sense: s(sense),
                objective,
                over: over.iter().map(|name| id(name)).collect(),
                subject_to,
                at,
            })
        };
        let cases = [
            (
                "claim maximize f over a at 1",
                optimum(Sense::Maximize, var("f"), &["a"], vec![], vec![num(1.0)]),
            ),
            (
                "claim minimize f over a at (hi - lo) * 2",
                optimum(
                    Sense::Minimize,
                    var("f"),
                    &["a"],
                    vec![],
                    vec![mul(sub(var("hi"), var("lo")), num(2.0))],
                ),
            ),
            (
                "claim minimize f over a, b at (1, -2) expect fail \"x\"",
                optimum(
                    Sense::Minimize,
                    var("f"),
                    &["a", "b"],
                    vec![],
                    vec![num(1.0), neg(num(2.0))],
                ),
            ),
            (
                "claim minimize (x - 1)^2 over x subject to x >= 0 at 1",
                optimum(
                    Sense::Minimize,
                    pow(sub(var("x"), num(1.0)), num(2.0)),
                    &["x"],
                    vec![cmp(var("x"), CompareOp::Ge, num(0.0))],
                    vec![num(1.0)],
                ),
            ),
            // `minimize` alone is an ordinary name.
            (
                "claim minimize == 3",
                ClaimKind::Holds(cmp(var("minimize"), CompareOp::Eq, num(3.0))),
            ),
        ];
        for (text, expected) in cases {
            assert_same(&claim_kind(text), &expected, text);
        }
        let text = "claim minimize Var[gq[i]] over a, b subject to b <= lo at (hi - lo, lo)";
        let Item::Claim(whole) = item(text) else {
            panic!()
        };
        let ClaimKind::Optimum(claim) = whole.kind else {
            panic!()
        };
        let text_of = |span: Span| text.get(span.start..span.end).unwrap_or("?");
        assert_eq!(text_of(claim.sense.span), "minimize");
        assert_eq!(text_of(claim.objective.span), "Var[gq[i]]");
        let ats: Vec<_> = claim.at.iter().map(|value| text_of(value.span)).collect();
        assert_eq!(ats, ["hi - lo", "lo"]);
    }

    #[test]
    fn equivalence_claims() {
        let equivalent = |first: &str, second: &str, steps| {
            ClaimKind::Equivalent(EquivalenceClaim {
                first: id(first),
                second: id(second),
                steps: s(steps),
            })
        };
        for (text, expected) in [
            ("claim A == B over 1 step", equivalent("A", "B", 1)),
            ("claim A==B over 20 steps", equivalent("A", "B", 20)),
            (
                "claim A == B # same\n over 3 steps",
                equivalent("A", "B", 3),
            ),
        ] {
            assert_same(&claim_kind(text), &expected, text);
        }
        let Item::Claim(erratum) = item("claim A == B over 5 steps expect fail \"drift\"") else {
            panic!()
        };
        assert_same(&erratum.kind, &equivalent("A", "B", 5), "");
        assert_eq!(
            erratum.expect_fail.map(|r| r.node),
            Some("drift".to_owned())
        );
    }

    #[test]
    fn contextual_keywords_stay_names() {
        for word in [
            "taylor",
            "one_sided",
            "central",
            "rate",
            "precision",
            "f32",
            "f64",
            "minimize",
            "maximize",
            "over",
            "subject",
            "to",
            "at",
            "steps",
            "step",
            "var",
            "e",
        ] {
            assert!(!is_reserved(word), "{word}");
            assert_same(&expr(word), &var(word), word);
            assert_eq!(items(&format!("param {word}\nlet c = {word}")).len(), 2);
        }
        // Even where they are keywords.
        assert_same(
            &claim_kind("claim minimize rate over at subject to at >= over at to"),
            &ClaimKind::Optimum(OptimumClaim {
                sense: s(Sense::Minimize),
                objective: var("rate"),
                over: vec![id("at")],
                subject_to: vec![cmp(var("at"), CompareOp::Ge, var("over"))],
                at: vec![var("to")],
            }),
            "",
        );
        assert_same(
            &claim_kind("claim over == steps over 2 steps"),
            &ClaimKind::Equivalent(EquivalenceClaim {
                first: id("over"),
                second: id("steps"),
                steps: s(2),
            }),
            "",
        );
        // A layer named like an optional keyword may follow a claim.
        let all = items("check taylor central rate > 2\nprecision[i] = x[i]");
        assert!(
            matches!(all.as_slice(), [Item::Claim(_), Item::Layer(_)]),
            "{all:?}"
        );
    }

    #[test]
    fn moments_are_not_names() {
        for text in [
            "param E",
            "let Var = 1",
            "input x[N], E[N]",
            "y[i] = 1 for E in 1..=3",
        ] {
            let word = if text.contains("Var") { "Var" } else { "E" };
            assert_error(
                text,
                "dl::parse::keyword_as_name",
                &format!("`{word}` is a reserved word and cannot be used as a name"),
                word,
            );
            assert!(help(&error(text)).contains("an expectation"), "{text}");
        }
        assert_error(
            "let c = E * 2",
            "dl::parse::syntax",
            "expected an expression, found the reserved word `E`",
            "E",
        );
        assert!(help(&error("let c = Var [x]")).contains("`Var[…]` is a variance"));
        // Names that merely start like one are fine.
        assert_same(&expr("Ex + Vars"), &add(var("Ex"), var("Vars")), "");
    }

    #[test]
    fn errors_in_the_new_forms() {
        assert_error(
            "check taylor sideways rate > 1",
            "dl::parse::syntax",
            "expected `one_sided` or `central`, found `sideways`",
            "sideways",
        );
        assert!(help(&error("check taylor one-sided rate > 1")).contains("underscore"));
        assert_error(
            "check taylor central rate > 2 precision f16",
            "dl::parse::syntax",
            "expected `f32` or `f64`, found `f16`",
            "f16",
        );
        assert_error(
            "check taylor central rate = 2",
            "dl::parse::syntax",
            "expected `>`, `>=` or `≈`, found `=`",
            "=",
        );
        assert_error(
            "check taylor central rate ≈ three",
            "dl::parse::syntax",
            "expected a number, found `three`",
            "three",
        );
        assert_error(
            "check gradient",
            "dl::parse::syntax",
            "expected `taylor`, found `gradient`",
            "gradient",
        );
        let text = "check taylor central rate > 2 ± 0.1";
        assert_eq!(labelled(text, &error(text)), ["±"]);
        assert!(help(&error(text)).contains("follows `≈` only"));
        assert_error(
            "claim )",
            "dl::parse::syntax",
            "expected a condition, `minimize` or `maximize`, found `)`",
            ")",
        );
        assert_error(
            "claim minimize f over a, b",
            "dl::parse::syntax",
            "expected `,`, `at` or `subject to`, found the end of the file",
            "",
        );
        assert_error(
            "claim A == B over 3 stepz",
            "dl::parse::syntax",
            "expected `steps`, found `stepz`",
            "stepz",
        );
        assert_error(
            "random q ~ bernoulli",
            "dl::parse::syntax",
            "expected a distribution such as `normal(0, 1)`, found `bernoulli`",
            "bernoulli",
        );
        assert!(help(&error("random q ~ normal (0, 1)")).contains("like a call"));
        assert_error(
            "stream g = theta",
            "dl::parse::syntax",
            "expected `grad`, found `theta`",
            "theta",
        );
        assert_error(
            "stream g",
            "dl::parse::syntax",
            "expected `=` or `~`, found the end of the file",
            "",
        );
        assert_error(
            "claim x",
            "dl::parse::not_a_condition",
            "expected a condition, found a value",
            "x",
        );
        assert_error(
            "claim x = 1",
            "dl::parse::assign_in_condition",
            "`=` cannot compare",
            "=",
        );
    }

    #[test]
    fn unknown_statements_in_an_optimizer() {
        for (text, found) in [
            ("optimizer A { foo bar }", "`foo`"),
            ("optimizer A { loss L = 1 }", "the reserved word `loss`"),
            ("optimizer A { state v = 0 x y }", "`x`"),
        ] {
            let error = error(text);
            assert_eq!(code(&error), "dl::parse::syntax", "{text}");
            let message = error.to_string();
            assert!(
                message.contains("`state`, `let`, an update such as `v[k] = …` or `}`"),
                "{text}: {message}"
            );
            assert!(
                message.ends_with(&format!("found {found}")),
                "{text}: {message}"
            );
        }
        assert_error(
            "optimizer A { foo bar }",
            "dl::parse::syntax",
            "expected `state`, `let`, an update such as `v[k] = …` or `}`, found `foo`",
            "foo",
        );
        assert!(help(&error("optimizer A { foo bar }")).contains("inside an optimizer"));
        assert_error(
            "optimizer A { v[k] == 1 }",
            "dl::parse::syntax",
            "expected `=`, found `==`",
            "==",
        );
        assert!(help(&error("optimizer A { v[k] == 1 }")).contains("single `=`"));
        assert_error(
            "optimizer A state v = 0 }",
            "dl::parse::syntax",
            "expected `{`, found the reserved word `state`",
            "state",
        );
        assert_error(
            "optimizer A { let for = 1 }",
            "dl::parse::keyword_as_name",
            "`for` is a reserved word and cannot be used as a name",
            "for",
        );
    }

    #[test]
    fn an_unclosed_optimizer_is_reported_at_its_brace() {
        for (text, at) in [
            ("optimizer A {\n  state v[n] = 0\n  v[k] = v[k] + 1\n", ""),
            (
                "optimizer A {\n  t = t + 1\nclaim A == B over 3 steps",
                "claim",
            ),
            ("optimizer A { t = t + 1\n\nparam w", "param"),
            // A layer after the optimizer reads as an update.
            (
                "optimizer A { t = t + 1 }\noptimizer B { t = 1\ny[i] = x[i]",
                "",
            ),
        ] {
            let error = error(text);
            assert_eq!(
                code(&error),
                "dl::parse::unclosed_brace",
                "{text}: {}",
                render(&error)
            );
            assert_eq!(error.to_string(), "this `{` is never closed");
            assert_eq!(labelled(text, &error), ["{", at], "{text}");
            assert!(help(&error).contains("`}`"), "{text}");
        }
        // Closed later: the statement in the braces is the error.
        let text = "optimizer A { t = 1 claim x > 0 }";
        let error = error(text);
        assert_eq!(code(&error), "dl::parse::syntax");
        assert_eq!(labelled(text, &error), ["claim"]);
    }

    #[test]
    fn optimum_arity() {
        let text = "claim minimize f over a, b at (1)";
        let error = error(text);
        assert_eq!(
            code(&error),
            "dl::parse::optimum_arity",
            "{}",
            render(&error)
        );
        assert_eq!(
            error.to_string(),
            "2 names after `over`, 1 value after `at`"
        );
        assert_eq!(labelled(text, &error), ["a, b", "(1)"]);
        let text = "claim maximize f over a at (1, 2, 3)";
        let single = self::error(text);
        assert_eq!(
            single.to_string(),
            "1 name after `over`, 3 values after `at`"
        );
        assert_eq!(labelled(text, &single), ["a", "(1, 2, 3)"]);
    }

    #[test]
    fn steps_are_whole_numbers_from_one() {
        for (text, value, problem) in [
            ("claim A == B over -3 steps", "-3", "cannot be negative"),
            ("claim A == B over 0 steps", "0", "zero steps"),
            ("claim A == B over 2.5 steps", "2.5", "a whole number"),
            ("claim A == B over 1e3 steps", "1e3", "a whole number"),
            (
                "claim A == B over 99999999999999999999 step",
                "99999999999999999999",
                "too large",
            ),
        ] {
            let error = error(text);
            assert_eq!(
                code(&error),
                "dl::parse::steps",
                "{text}: {}",
                render(&error)
            );
            assert_eq!(
                error.to_string(),
                format!("`{value}` is not a number of steps")
            );
            assert_eq!(labelled(text, &error), [value]);
            let label = error
                .labels()
                .into_iter()
                .flatten()
                .next()
                .and_then(|l| l.label().map(str::to_owned))
                .unwrap_or_default();
            assert!(label.contains(problem), "{text}: {label}");
            assert!(help(&error).contains("whole number ≥ 1"));
        }
        assert_error(
            "claim A == B over x steps",
            "dl::parse::syntax",
            "expected a whole number, found `x`",
            "x",
        );
    }

    // --- Expressions ------------------------------------------------------------

    #[test]
    fn arithmetic_precedence_and_associativity() {
        let (a, b, c) = (var("a"), var("b"), var("c"));
        assert_same(
            &expr("a + b * c"),
            &add(a.clone(), mul(b.clone(), c.clone())),
            "",
        );
        assert_same(
            &expr("a - b - c"),
            &sub(sub(a.clone(), b.clone()), c.clone()),
            "",
        );
        assert_same(
            &expr("a / b / c"),
            &div(div(a.clone(), b.clone()), c.clone()),
            "",
        );
        assert_same(
            &expr("a * b / c"),
            &div(mul(a.clone(), b.clone()), c.clone()),
            "",
        );
        assert_same(
            &expr("(a + b) * c"),
            &mul(add(a.clone(), b.clone()), c.clone()),
            "",
        );
        assert_same(
            &expr("a ^ b ^ c"),
            &pow(a.clone(), pow(b.clone(), c.clone())),
            "",
        );
        assert_same(&expr("-a^2"), &neg(pow(a.clone(), num(2.0))), "");
        assert_same(&expr("-a * b"), &mul(neg(a.clone()), b.clone()), "");
        assert_same(&expr("a * -b"), &mul(a.clone(), neg(b.clone())), "");
        assert_same(&expr("a - -b"), &sub(a.clone(), neg(b.clone())), "");
        assert_same(&expr("--a"), &neg(neg(a.clone())), "");
        assert_same(&expr("2^-1"), &pow(num(2.0), neg(num(1.0))), "");
        assert_same(
            &expr("a^-b^c"),
            &pow(a.clone(), neg(pow(b.clone(), c.clone()))),
            "",
        );
        assert_same(
            &expr("a^b^-c"),
            &pow(a.clone(), pow(b.clone(), neg(c.clone()))),
            "",
        );
        assert_same(&expr("x[i]^2"), &pow(at("x", vec![var("i")]), num(2.0)), "");
    }

    #[test]
    fn numbers() {
        for (text, value) in [
            ("3", 3.0),
            ("0.05", 0.05),
            ("1e-3", 1e-3),
            ("2E+2", 200.0),
            (".5", 0.5),
            ("1e-999", 0.0),
        ] {
            assert_same(&expr(text), &num(value), text);
        }
    }

    #[test]
    fn accesses_and_calls() {
        assert_same(
            &expr("w[i, k+1]"),
            &at("w", vec![var("i"), add(var("k"), num(1.0))]),
            "",
        );
        assert_same(
            &expr("max(a, b)"),
            &call("max", vec![var("a"), var("b")]),
            "",
        );
        assert_same(
            &expr("pow(x, 3)"),
            &call("pow", vec![var("x"), num(3.0)]),
            "",
        );
        assert_same(&expr("rand()"), &call("rand", vec![]), "");
        assert_same(
            &expr("x[y[i]]"),
            &at("x", vec![at("y", vec![var("i")])]),
            "",
        );
    }

    #[test]
    fn reductions() {
        let w_x = mul(at("w", vec![var("i"), var("k")]), at("x", vec![var("k")]));
        assert_same(
            &expr("sum(k) w[i,k] * x[k] + b"),
            &add(reduce(ReduceOp::Sum, "k", None, w_x.clone()), var("b")),
            "",
        );
        let x_y = mul(at("x", vec![var("k")]), at("y", vec![var("k")]));
        assert_same(
            &expr("2 * sum(k) x[k]*y[k]"),
            &mul(num(2.0), reduce(ReduceOp::Sum, "k", None, x_y)),
            "",
        );
        assert_same(
            &expr("sum(k in 1..=n) x[k]"),
            &reduce(
                ReduceOp::Sum,
                "k",
                Some((num(1.0), var("n"))),
                at("x", vec![var("k")]),
            ),
            "",
        );
        for (text, op) in [
            ("prod(k) x[k]", ReduceOp::Prod),
            ("max(k) x[k]", ReduceOp::Max),
            ("min (k) x[k]", ReduceOp::Min),
        ] {
            assert_same(
                &expr(text),
                &reduce(op, "k", None, at("x", vec![var("k")])),
                text,
            );
        }
        assert_same(
            &expr("sum(i) sum(j) a[i, j]"),
            &reduce(
                ReduceOp::Sum,
                "i",
                None,
                reduce(ReduceOp::Sum, "j", None, at("a", vec![var("i"), var("j")])),
            ),
            "",
        );
        // Several indices are nested reductions, outermost first; `mean`
        // takes them too, `max` and `min` one, so `max(a, b) - c` is a call.
        let a_ij = at("a", vec![var("i"), var("j")]);
        assert_same(
            &expr("sum(i, j in 1..=n) a[i, j]"),
            &reduce(
                ReduceOp::Sum,
                "i",
                None,
                reduce(ReduceOp::Sum, "j", Some((num(1.0), var("n"))), a_ij.clone()),
            ),
            "",
        );
        assert_same(
            &expr("mean(i, j) a[i, j]"),
            &reduce(
                ReduceOp::Mean,
                "i",
                None,
                reduce(ReduceOp::Mean, "j", None, a_ij),
            ),
            "",
        );
        assert_same(
            &expr("mean(k) x[k]"),
            &reduce(ReduceOp::Mean, "k", None, at("x", vec![var("k")])),
            "",
        );
        assert_same(
            &expr("max(a, b) - c"),
            &sub(call("max", vec![var("a"), var("b")]), var("c")),
            "",
        );
        // A call before a contextual keyword, or before the next statement,
        // stays a call.
        for text in [
            "claim minimize max(a, b) over a, b at (0, 0)",
            "claim minimize a over a subject to a >= max(a, b) at 0",
            "let m = max(a, b)\ny[i] = x[i] / m",
        ] {
            match parse_text(text) {
                Ok(spec) => assert!(!spec.items.is_empty(), "{text}"),
                Err(e) => panic!("{text}: {e}"),
            }
        }
        assert_same(
            &expr("-sum(k) x[k]^2"),
            &neg(reduce(
                ReduceOp::Sum,
                "k",
                None,
                pow(at("x", vec![var("k")]), num(2.0)),
            )),
            "",
        );
    }

    // --- Conditions -------------------------------------------------------------

    #[test]
    fn conditions() {
        let (i, j) = (var("i"), var("j"));
        assert_same(
            &condition("j == i"),
            &cmp(j.clone(), CompareOp::Eq, i.clone()),
            "",
        );
        assert_same(
            &condition("j != i"),
            &cmp(j.clone(), CompareOp::Ne, i.clone()),
            "",
        );
        assert_same(
            &condition("j > i"),
            &cmp(j.clone(), CompareOp::Gt, i.clone()),
            "",
        );
        assert_same(
            &condition("j >= i"),
            &cmp(j.clone(), CompareOp::Ge, i.clone()),
            "",
        );
        assert_same(
            &condition("j < i"),
            &cmp(j.clone(), CompareOp::Lt, i.clone()),
            "",
        );
        let one = || cmp(var("i"), CompareOp::Eq, num(1.0));
        let two = || cmp(var("j"), CompareOp::Eq, num(2.0));
        let three = || cmp(var("k"), CompareOp::Eq, num(3.0));
        assert_same(
            &condition("i == 1 and j == 2 or k == 3"),
            &or(and(one(), two()), three()),
            "",
        );
        assert_same(
            &condition("i == 1 or j == 2 and k == 3"),
            &or(one(), and(two(), three())),
            "",
        );
        assert_same(
            &condition("i == 1 || j == 2 && k == 3"),
            &or(one(), and(two(), three())),
            "",
        );
        assert_same(
            &condition("(i == 1 or j == 2) and k == 3"),
            &and(or(one(), two()), three()),
            "",
        );
        assert_same(&condition("not i == 1"), &not(one()), "");
        assert_same(&condition("not not i == 1"), &not(not(one())), "");
        assert_same(
            &condition("not (i == 1 or j == 2)"),
            &not(or(one(), two())),
            "",
        );
        assert_same(&condition("((i == 1))"), &one(), "");
        assert_same(
            &condition("(i + 1) * 2 <= n"),
            &cmp(
                mul(add(var("i"), num(1.0)), num(2.0)),
                CompareOp::Le,
                var("n"),
            ),
            "",
        );
        assert_same(
            &condition("[i == 1] == 1"),
            &cmp(iverson(one()), CompareOp::Eq, num(1.0)),
            "",
        );
        assert_same(
            &expr("[j == i] * g[j]"),
            &mul(
                iverson(cmp(var("j"), CompareOp::Eq, var("i"))),
                at("g", vec![var("j")]),
            ),
            "",
        );
    }

    // --- Lexical matters ----------------------------------------------------------

    #[test]
    fn empty_and_comment_only_files_are_empty_specs() {
        for text in [
            "",
            "   \n\t\r\n",
            "# only a comment",
            "# one\n# two\n",
            "\u{FEFF}",
        ] {
            assert_eq!(items(text), vec![], "{text:?}");
        }
    }

    #[test]
    fn crlf_tabs_and_a_byte_order_mark() {
        let text = "\u{FEFF}dim N = 3\r\nparam a\t# comment\r\nlet c = a\r\n";
        assert_eq!(items(text).len(), 3);
    }

    #[test]
    fn unicode_names() {
        assert_same(
            &item("hyper λ = 0.1"),
            &Item::Hyper(vec![HyperDecl {
                name: id("λ"),
                value: num(0.1),
                span: Span::default(),
            }]),
            "",
        );
        assert_same(
            &expr("θ[i] * λ"),
            &mul(at("θ", vec![var("i")]), var("λ")),
            "",
        );
    }

    #[test]
    fn reserved_words_are_whole_words() {
        for name in [
            "index", "iff", "g", "fail2", "inputs", "format", "summary", "order", "max", "min",
            "_in",
        ] {
            assert_same(&expr(name), &var(name), name);
            assert!(!is_reserved(name), "{name}");
        }
    }

    #[test]
    fn the_grammar_reserves_exactly_the_documented_words() {
        let reserved = [
            "exercise",
            "dim",
            "input",
            "param",
            "hyper",
            "let",
            "loss",
            "grad",
            "for",
            "in",
            "if",
            "otherwise",
            "expect",
            "fail",
            "and",
            "or",
            "not",
            "sum",
            "prod",
            "random",
            "stream",
            "optimizer",
            "state",
            "check",
            "claim",
            "E",
            "Var",
        ];
        for word in reserved {
            assert!(is_reserved(word), "{word}");
        }
        // Every `kw_*` rule is in `reserved`, and in the list above; the
        // contextual keywords `ck_*` are not reserved (but for `grad`).
        for rule in Rule::all_rules() {
            let name = format!("{rule:?}");
            if let Some(word) = name.strip_prefix("kw_") {
                assert!(
                    reserved.contains(&word),
                    "{word} is reserved but not listed"
                );
            }
            if let Some(word) = name.strip_prefix("ck_") {
                assert_eq!(is_reserved(word), word == "grad", "{word}");
            }
        }
        let mut listed: Vec<&str> = super::super::error::RESERVED_WORDS
            .split_whitespace()
            .collect();
        listed.sort_unstable();
        let mut sorted = reserved;
        sorted.sort_unstable();
        assert_eq!(listed, sorted);
        // The help of `keyword_as_name` lists them too.
        let listed = help(&error("param for"));
        for word in reserved {
            assert!(
                listed.split_whitespace().any(|w| w == word),
                "{word} missing from {listed:?}"
            );
        }
    }

    // --- Errors -------------------------------------------------------------------

    #[test]
    fn syntax_errors_say_what_was_expected_in_words() {
        assert_error(
            "let c = 2 * )",
            "dl::parse::syntax",
            "expected an expression, found `)`",
            ")",
        );
        assert_error(
            "dim N 8",
            "dl::parse::syntax",
            "expected `=`, found `8`",
            "8",
        );
        assert_error(
            "let c = x[i",
            "dl::parse::syntax",
            "expected an operator, `,` or `]`, found the end of the file",
            "",
        );
        assert_error(
            "dim N = 8 foo",
            "dl::parse::syntax",
            "expected `,` or a statement, found `foo`",
            "foo",
        );
        assert_error(
            "y[i] = x[i] for i in 1..N",
            "dl::parse::syntax",
            "expected an operator or `..=`, found `..`",
            "..",
        );
        assert_error(
            "y[i] = \nlet c = 1",
            "dl::parse::syntax",
            "expected an expression, found the reserved word `let`",
            "let",
        );
        assert_error(
            "exercise Backprop",
            "dl::parse::syntax",
            "expected a string in double quotes, found `Backprop`",
            "Backprop",
        );
        assert_error(
            "grad a = 1 expect \"why\"",
            "dl::parse::syntax",
            "expected `fail`, found a string",
            "\"",
        );
        assert_error(
            "dim N = x",
            "dl::parse::syntax",
            "expected a whole number, found `x`",
            "x",
        );
    }

    #[test]
    fn errors_at_the_end_point_after_the_last_token() {
        let text = "let c = (a + b   # comment\n\n";
        let error = error(text);
        assert_eq!(
            error.to_string(),
            "expected an operator, a comparison operator, `)`, `and` or `or`, \
             found the end of the file"
        );
        let offsets: Vec<_> = error
            .labels()
            .into_iter()
            .flatten()
            .map(|l| l.offset())
            .collect();
        assert_eq!(offsets, [14]);
    }

    #[test]
    fn syntax_errors_help_with_common_slips() {
        let cases = [
            ("param w [m]", "no space"),
            ("let c = f (x)", "no space"),
            ("let c = 2x", "`2 * x`"),
            ("let c = 2 ** 3", "`^`"),
            ("foo bar", "a statement starts with"),
            ("let c = in", "`in` is a reserved word"),
            ("let c = not x", "inside `[…]` or after `if`"),
            ("let c == 3", "single `=`"),
            ("y[i] = i < 2", "Iverson"),
            ("exercise 'title'", "double quotes"),
        ];
        for (text, expected) in cases {
            let error = error(text);
            assert!(
                help(&error).contains(expected),
                "{text:?}: {}",
                render(&error)
            );
        }
    }

    #[test]
    fn assignment_in_a_condition() {
        assert_error(
            "grad x[j] = g[j] if j = 1",
            "dl::parse::assign_in_condition",
            "`=` cannot compare",
            "=",
        );
        assert_error(
            "let c = [j = 1]",
            "dl::parse::assign_in_condition",
            "`=` cannot compare",
            "=",
        );
        assert!(help(&error("let c = [j = 1]")).contains("`==`"));
    }

    #[test]
    fn conditions_and_values_in_the_wrong_place() {
        assert_error(
            "let c = [x]",
            "dl::parse::not_a_condition",
            "expected a condition, found a value",
            "x",
        );
        assert_error(
            "grad a = 1 if a + 1",
            "dl::parse::not_a_condition",
            "expected a condition, found a value",
            "a + 1",
        );
        assert_error(
            "let c = [i < 2 and (j)]",
            "dl::parse::not_a_condition",
            "expected a condition, found a value",
            "j",
        );
        assert_error(
            "let c = [not x]",
            "dl::parse::not_a_condition",
            "expected a condition, found a value",
            "x",
        );
        assert_error(
            "y[i] = (i < 2) * x[i]",
            "dl::parse::condition_as_value",
            "a condition cannot be used as a value",
            "i < 2",
        );
    }

    #[test]
    fn numbers_out_of_range() {
        assert_error(
            "let c = 1e999",
            "dl::parse::number",
            "the number `1e999` is out of range",
            "1e999",
        );
    }

    #[test]
    fn dim_defaults_must_be_sizes() {
        let cases = [
            ("dim N = 2.5", "2.5", "a size is a whole number"),
            ("dim N = 1e3", "1e3", "a size is a whole number"),
            ("dim N = -3", "-3", "a size cannot be negative"),
            (
                "dim N = 99999999999999999999",
                "99999999999999999999",
                "too large",
            ),
        ];
        for (text, value, problem) in cases {
            let error = error(text);
            assert_eq!(code(&error), "dl::parse::dim_value", "{text}");
            assert_eq!(labelled(text, &error), [value]);
            let label = error
                .labels()
                .into_iter()
                .flatten()
                .next()
                .and_then(|l| l.label().map(str::to_owned));
            assert!(label.unwrap_or_default().starts_with(problem), "{text}");
        }
        assert_same(
            &item("dim N = 9223372036854775807"),
            &Item::Dim(vec![DimDecl {
                name: id("N"),
                default: s(i64::MAX),
                minimum: None,
                span: Span::default(),
            }]),
            "",
        );
    }

    #[test]
    fn reserved_words_as_names() {
        let cases = [
            ("param for", "for"),
            ("param a, in", "in"),
            ("input x, sum[3]", "sum"),
            ("dim if = 3", "if"),
            ("hyper not = 1", "not"),
            ("let loss = 1", "loss"),
            ("let c[fail] = 1", "fail"),
            ("loss and = 1", "and"),
            ("grad otherwise = 1", "otherwise"),
            ("for[i] = 1", "for"),
            ("y[i, expect] = 1", "expect"),
            ("y[i] = 1 for prod in 1..=3", "prod"),
            ("let c = sum(or) x", "or"),
        ];
        for (text, word) in cases {
            assert_error(
                text,
                "dl::parse::keyword_as_name",
                &format!("`{word}` is a reserved word and cannot be used as a name"),
                word,
            );
        }
    }

    #[test]
    fn strings() {
        assert_error(
            "exercise \"Backprop\ndim N = 3",
            "dl::parse::unterminated_string",
            "unterminated string",
            "\"Backprop",
        );
        assert_error(
            "exercise \"ends with \\",
            "dl::parse::unterminated_string",
            "unterminated string",
            "\"ends with \\",
        );
        assert_error(
            "grad a = 1 expect fail \"why",
            "dl::parse::unterminated_string",
            "unterminated string",
            "\"why",
        );
        assert_error(
            r#"exercise "one\ntwo""#,
            "dl::parse::string_escape",
            r"unknown escape `\n` in a string",
            r"\n",
        );
        assert_same(
            &item("exercise \"# not a comment\""),
            &Item::Exercise(s("# not a comment".to_owned())),
            "",
        );
    }

    #[test]
    fn cases_need_conditions_and_otherwise_comes_last() {
        assert_error(
            "grad x[j] = g[j] if j <= 2\n | 0",
            "dl::parse::case_without_condition",
            "a case without a condition",
            "0",
        );
        assert_error(
            "grad x[j] = 0 otherwise | g[j] if j <= 2",
            "dl::parse::otherwise_not_last",
            "`otherwise` must be the last case",
            "0 otherwise",
        );
    }

    #[test]
    fn control_characters_are_syntax_errors() {
        for (text, found) in [
            ("dim N = 3\0", "a control character (U+0000)"),
            ("let c = a \u{7} b", "a control character (U+0007)"),
            ("let c = a\u{A0}+ b", "an unusual space character (U+00A0)"),
            ("dim N = 3 \u{FEFF}", "an invisible character (U+FEFF)"),
        ] {
            let error = error(text);
            assert_eq!(code(&error), "dl::parse::syntax", "{text:?}");
            assert!(error.to_string().ends_with(found), "{text:?}: {error}");
        }
    }

    // --- Robustness ---------------------------------------------------------------

    fn assert_too_deep(text: &str) {
        let error = error(text);
        assert_eq!(code(&error), "dl::parse::too_deep", "{}", render(&error));
    }

    #[test]
    fn nesting_within_the_limit_parses() {
        let depth = MAX_DEPTH - 1;
        for text in [
            format!("let c = {}x{}", "(".repeat(depth), ")".repeat(depth)),
            format!(
                "let c = {}i{}",
                "x[".repeat(depth / 2),
                "]".repeat(depth / 2)
            ),
            format!(
                "let c = {}x{}",
                "f(".repeat(depth / 2),
                ")".repeat(depth / 2)
            ),
            format!(
                "let c = {}1{}",
                "[x == ".repeat(depth / 2),
                "]".repeat(depth / 2)
            ),
            format!(
                "let c = [{}x == 1{}]",
                "(".repeat(depth - 1),
                ")".repeat(depth - 1)
            ),
            format!("let c = {}1", "sum(k) ".repeat(depth - 1)),
            format!("let c = x{}", " + x".repeat(depth - 1)),
        ] {
            assert!(
                parse_text(&text).is_ok(),
                "{}",
                text.get(..40).unwrap_or("")
            );
        }
    }

    #[test]
    fn nested_parentheses_in_conditions_parse_in_linear_time() {
        // `(` may open a condition or a value: reading each both ways would
        // take 2^127 steps here.
        let depth = MAX_DEPTH / 2 - 1;
        let text = format!("let c = {}x == 1{}", "[(".repeat(depth), ")]".repeat(depth));
        let start = std::time::Instant::now();
        let _ = parse_text(&text);
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn the_new_forms_parse_nested_brackets_in_linear_time() {
        // Claims try an equivalence, an optimum and a condition in turn, and
        // `at (…)` a value and then a list: none may re-read nested brackets
        // at every level.
        let depth = MAX_DEPTH / 2 - 1;
        let nested = format!("{}x == 1{}", "[(".repeat(depth), ")]".repeat(depth));
        for text in [
            format!("claim {nested}"),
            format!("claim minimize {nested} over a at 1"),
            format!("claim minimize f over a at {nested}"),
            format!("claim minimize f over a, b at ({nested}, {nested}"),
            format!("claim minimize f over a subject to {nested} > 0, at 1"),
            format!("optimizer A {{ v[k] = {nested} }}"),
            format!("random q ~ normal({nested}"),
            format!("let c = {}x{}", "E[(".repeat(depth), ")]".repeat(depth)),
        ] {
            let start = std::time::Instant::now();
            let _ = parse_text(&text);
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "{}",
                text.get(..40).unwrap_or("")
            );
        }
    }

    #[test]
    fn deep_brackets_are_refused_at_the_bracket_past_the_limit() {
        let text = format!("let c = {}x{}", "(".repeat(100_000), ")".repeat(100_000));
        let error = error(&text);
        assert_eq!(code(&error), "dl::parse::too_deep");
        let offsets: Vec<_> = error
            .labels()
            .into_iter()
            .flatten()
            .map(|l| l.offset())
            .collect();
        assert_eq!(offsets, ["let c = ".len() + MAX_DEPTH]);
        // Brackets in comments and strings do not count.
        let commented = format!("# {}\nexercise \"{}\"", "(".repeat(1000), "[".repeat(1000));
        assert_eq!(items(&commented).len(), 1);
    }

    #[test]
    fn deep_nesting_without_brackets_is_refused() {
        assert_too_deep(&format!("let c = {}1", "sum(k) ".repeat(MAX_DEPTH + 1)));
        assert_too_deep(&format!("let c = {}1", "sum(k) ".repeat(20_000)));
        assert_too_deep(&format!("let c = {}x", "-".repeat(20_000)));
        assert_too_deep(&format!("let c = x{}", "+x".repeat(20_000)));
        assert_too_deep(&format!("let c = 2{}", "^2".repeat(20_000)));
        assert_too_deep(&format!("let c = 2{}", "^-2".repeat(200)));
        assert_too_deep(&format!("let c = [{}x == 1]", "not ".repeat(20_000)));
        assert_too_deep(&format!("let c = [x == 1{}]", " or x == 1".repeat(20_000)));
    }

    /// A small deterministic generator, so that the fuzz tests need no crate.
    fn lcg(seed: &mut u64) -> usize {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        usize::try_from(*seed >> 33).unwrap_or(0)
    }

    #[test]
    fn no_prefix_of_a_valid_spec_panics() {
        // An editor parses every intermediate state of the text.
        let section_5 = "check taylor central rate ≈ 3 ± 0.3 precision f32 expect fail \"x\"";
        for spec in [RECURRENT, STOCHASTIC, UPDATE_RULES, section_5] {
            for (end, _) in spec.char_indices() {
                if let Err(error) = parse_text(spec.get(..end).unwrap_or("")) {
                    assert_ne!(code(&error), "dl::parse::internal", "{}", render(&error));
                }
            }
        }
    }

    #[test]
    fn random_token_soup_never_panics() {
        let tokens = [
            "dim",
            "input",
            "param",
            "hyper",
            "let",
            "loss",
            "grad",
            "exercise",
            "expect",
            "fail",
            "for",
            "in",
            "if",
            "otherwise",
            "and",
            "or",
            "not",
            "sum",
            "max",
            "x",
            "y[",
            "i",
            "1",
            "2.5",
            "1e999",
            "-",
            "+",
            "*",
            "/",
            "^",
            "(",
            ")",
            "[",
            "]",
            ",",
            "=",
            "==",
            "<=",
            "<",
            "|",
            "||",
            "..=",
            "\"",
            "\\",
            "#",
            "\n",
            " ",
            "λ",
            "\0",
            "\u{FEFF}",
            "random",
            "stream",
            "optimizer",
            "state",
            "check",
            "claim",
            "taylor",
            "central",
            "rate",
            "≈",
            "±",
            "precision",
            "f32",
            "minimize",
            "over",
            "subject",
            "to",
            "at",
            "steps",
            "~",
            "{",
            "}",
            "E[",
            "Var[",
            "normal(",
        ];
        let mut seed = 7;
        for _ in 0..6000 {
            let len = lcg(&mut seed) % 24;
            let text: String = (0..len)
                .map(|_| {
                    tokens
                        .get(lcg(&mut seed) % tokens.len())
                        .copied()
                        .unwrap_or("")
                })
                .collect();
            if let Err(error) = parse_text(&text) {
                let code = code(&error);
                assert!(code.starts_with("dl::parse::"), "{text:?}");
                assert_ne!(code, "dl::parse::internal", "{text:?}: {}", render(&error));
                let _ = render(&error);
            }
        }
    }

    #[test]
    fn single_edits_of_a_valid_spec_never_panic() {
        let mut seed = 11;
        let inserts = [
            "(", ")", "[", "]", "=", "\"", "if", "|", "sum(k) ", "#", "{", "}", "~", "E[", ",",
        ];
        for spec in [RECURRENT, STOCHASTIC, UPDATE_RULES] {
            let positions: Vec<usize> = spec.char_indices().map(|(at, _)| at).collect();
            for _ in 0..1500 {
                let at = positions
                    .get(lcg(&mut seed) % positions.len())
                    .copied()
                    .unwrap_or(0);
                let insert = inserts
                    .get(lcg(&mut seed) % inserts.len())
                    .copied()
                    .unwrap_or("");
                let mut text = spec.to_owned();
                text.insert_str(at, insert);
                if let Err(error) = parse_text(&text) {
                    assert_ne!(code(&error), "dl::parse::internal", "{}", render(&error));
                }
            }
        }
    }
}
