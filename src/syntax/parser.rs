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

    /// The remaining children of kind `rule`.
    fn all(self, rule: Rule) -> impl Iterator<Item = Pair<'i, Rule>> {
        self.inner.filter(move |pair| pair.as_rule() == rule)
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
            _ => Err(self.unexpected(&pair)),
        }
    }

    fn dim_decl(&self, pair: Pair<'_, Rule>) -> Result<DimDecl> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let name = self.decl_name(children.required_rule(Rule::decl_name)?)?;
        let default = self.dim_value(&children.required_rule(Rule::dim_value)?)?;
        Ok(DimDecl {
            name,
            default,
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
        let head = children.required("name")?;
        let name = match head.as_rule() {
            Rule::decl_name => self.decl_name(head)?,
            Rule::decl_head => self.decl_head(head)?,
            _ => return Err(self.unexpected(&head)),
        };
        let mut shape = Vec::new();
        while let Some(size) = children.next_if(Rule::expr) {
            shape.push(self.expr(size, 0)?);
        }
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
                let values = self
                    .children(list)
                    .all(Rule::expr)
                    .map(|value| self.expr(value, 0))
                    .collect::<Result<_>>()?;
                Ok(Init::List(Spanned::new(values, list_span)))
            }
            Rule::init_value => Ok(Init::Value(
                self.expr(children.required_rule(Rule::expr)?, 0)?,
            )),
            _ => Err(SyntaxError::internal(
                self.source,
                span,
                format!("unexpected {rule:?}"),
            )),
        }
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
        let ranges = match children.next_if(Rule::for_clause) {
            Some(clause) => self.for_clause(clause)?,
            None => Vec::new(),
        };
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
        let expect_fail = children
            .next_if(Rule::expect_fail)
            .map(|clause| self.expect_fail(clause))
            .transpose()?;
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

    /// `expect fail "reason"`: the reason, spanned over the whole clause.
    fn expect_fail(&self, pair: Pair<'_, Rule>) -> Result<Spanned<String>> {
        let span = span_of(&pair);
        let reason = self.string(self.children(pair).required_rule(Rule::string)?)?;
        Ok(Spanned::new(reason.node, span))
    }

    /// The left-hand side `name` or `name[i, j]` of a definition or claim.
    fn target(&self, children: &mut Children<'_, '_>) -> Result<(Ident, Vec<Ident>)> {
        let head = children.required("name")?;
        match head.as_rule() {
            Rule::decl_name => Ok((self.decl_name(head)?, Vec::new())),
            Rule::decl_head | Rule::layer_head => {
                let name = self.decl_head(head)?;
                let mut indices = Vec::new();
                while let Some(index) = children.next_if(Rule::decl_name) {
                    indices.push(self.decl_name(index)?);
                }
                Ok((name, indices))
            }
            _ => Err(self.unexpected(&head)),
        }
    }

    fn for_clause(&self, pair: Pair<'_, Rule>) -> Result<Vec<RangeBinding>> {
        let bindings = self.children(pair).all(Rule::range_binding);
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
        let mut prefixes = Vec::new();
        while let Some(pair) = children.next_if(prefix) {
            prefixes.push(span_of(&pair));
        }
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
            let mut negs = Vec::new();
            while let Some(neg) = exponent.next_if(Rule::neg) {
                negs.push(span_of(&neg));
            }
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
            _ => return Err(self.unexpected(&pair)),
        };
        Ok(Spanned::new(kind, span))
    }

    /// `(…)` as a value: it may hold a plain expression only.
    fn paren(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let inner = self.children(pair).required_rule(Rule::condition)?;
        self.logic(inner, depth)?.into_value(self.source)
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

    /// `sum(k) term` or `sum(k in lo..=hi) term`.
    fn reduction(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<ExprKind> {
        let mut children = self.children(pair);
        let op_pair = children.required_rule(Rule::reduce_op)?;
        let op = match op_pair.as_str() {
            "sum" => ReduceOp::Sum,
            "prod" => ReduceOp::Prod,
            "max" => ReduceOp::Max,
            "min" => ReduceOp::Min,
            _ => return Err(self.unexpected(&op_pair)),
        };
        let op = Spanned::new(op, span_of(&op_pair));
        let index = self.decl_name(children.required_rule(Rule::decl_name)?)?;
        let range = match children.next_if(Rule::index_range) {
            Some(range) => Some(Box::new(self.index_range(range, depth + 1)?)),
            None => None,
        };
        let body = self.term(children.required_rule(Rule::term)?, depth + 1)?;
        Ok(ExprKind::Reduce {
            op,
            index,
            range,
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
        ];
        for word in reserved {
            assert!(is_reserved(word), "{word}");
        }
        // Every `kw_*` rule is in `reserved`, and in the list above.
        for rule in Rule::all_rules() {
            let name = format!("{rule:?}");
            if let Some(word) = name.strip_prefix("kw_") {
                assert!(
                    reserved.contains(&word),
                    "{word} is reserved but not listed"
                );
            }
        }
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
            ("y = x + 1", "`let y = …`"),
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
        for (end, _) in RECURRENT.char_indices() {
            let _ = parse_text(RECURRENT.get(..end).unwrap_or(""));
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
        ];
        let mut seed = 7;
        for _ in 0..3000 {
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
        let positions: Vec<usize> = RECURRENT.char_indices().map(|(at, _)| at).collect();
        for _ in 0..1500 {
            let at = positions
                .get(lcg(&mut seed) % positions.len())
                .copied()
                .unwrap_or(0);
            let insert = ["(", ")", "[", "]", "=", "\"", "if", "|", "sum(k) ", "#"]
                .get(lcg(&mut seed) % 10)
                .copied()
                .unwrap_or("");
            let mut text = RECURRENT.to_owned();
            text.insert_str(at, insert);
            if let Err(error) = parse_text(&text) {
                assert_ne!(code(&error), "dl::parse::internal", "{}", render(&error));
            }
        }
    }
}
