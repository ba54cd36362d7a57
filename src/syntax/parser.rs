//! Parsing: the pest grammar (`grammar/dl.pest`) reads the text into a parse
//! tree, and [`Converter`] turns that tree into the AST of [`super::ast`].
//!
//! The grammar decides what is well-formed; the converter adds what a grammar
//! says badly: numbers that overflow, dim defaults that are not sizes,
//! reserved words used as names, unterminated strings, misplaced `otherwise`.
//!
//! The parser runs on every keystroke in an editor, so no input may make it
//! panic or overflow the stack. Two limits see to that: brackets may nest at
//! most [`MAX_DEPTH`] deep (checked on the raw text before pest recurses into
//! them), and the AST may nest at most [`MAX_DEPTH`] deep (checked while
//! converting, because long operator chains and reduction chains nest in the
//! AST without any bracket, and every later stage recurses over the AST).

use pest::Parser as _;
use pest::iterators::{Pair, Pairs};

use super::ast::*;
use super::error::SyntaxError;
use crate::source::{Source, Span, Spanned};

/// How deep brackets, and separately AST nodes, may nest.
const MAX_DEPTH: usize = 256;

#[derive(pest_derive::Parser)]
#[grammar = "grammar/dl.pest"]
struct DlParser;

type Result<T, E = SyntaxError> = std::result::Result<T, E>;

/// Parses a spec file into its AST. An empty file is a valid, empty spec.
pub fn parse(source: &Source) -> Result<Spec> {
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
    DlParser::parse(Rule::reserved, word)
        .is_ok_and(|pairs| pairs.as_str().len() == word.len() && !word.is_empty())
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
                    return Err(SyntaxError::too_deep(
                        source,
                        Span::new(at, at + 1),
                        MAX_DEPTH,
                    ));
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
/// their closing quote or, like the grammar's, at the end of the line.
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
/// and the keywords whose presence is implied by the rule around them.
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
    fn of(pair: Pair<'i, Rule>, source: &'s Source) -> Self {
        Children {
            parent: span_of(&pair),
            inner: pair.into_inner().peekable(),
            source,
        }
    }

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

    /// The next child, which the grammar guarantees; its absence is a bug.
    fn required(&mut self, what: &str) -> Result<Pair<'i, Rule>> {
        self.next().ok_or_else(|| {
            SyntaxError::internal(self.source, self.parent, format!("missing {what}"))
        })
    }

    /// The next child, which must be `rule`.
    fn required_rule(&mut self, rule: Rule) -> Result<Pair<'i, Rule>> {
        self.next_if(rule).ok_or_else(|| {
            SyntaxError::internal(self.source, self.parent, format!("missing {rule:?}"))
        })
    }
}

/// Builds AST nodes from parse-tree nodes. Expression and condition methods
/// take `depth`, how deep in the AST their result will sit, and refuse to
/// build past [`MAX_DEPTH`].
struct Converter<'s> {
    source: &'s Source,
}

impl<'s> Converter<'s> {
    fn children<'i>(&self, pair: Pair<'i, Rule>) -> Children<'i, 's> {
        Children::of(pair, self.source)
    }

    fn unexpected(&self, pair: &Pair<'_, Rule>) -> SyntaxError {
        SyntaxError::internal(
            self.source,
            span_of(pair),
            format!("unexpected {:?}", pair.as_rule()),
        )
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
        let items = self
            .children(pair)
            .inner
            .filter(|pair| pair.as_rule() != Rule::EOI)
            .map(|pair| self.statement(pair))
            .collect::<Result<_>>()?;
        Ok(Spec { items })
    }

    fn statement(&self, pair: Pair<'_, Rule>) -> Result<Item> {
        match pair.as_rule() {
            Rule::exercise => {
                let mut children = self.children(pair);
                Ok(Item::Exercise(
                    self.string(children.required_rule(Rule::string)?)?,
                ))
            }
            Rule::dim_stmt => self
                .children(pair)
                .inner
                .filter(|p| p.as_rule() == Rule::dim_decl)
                .map(|p| self.dim_decl(p))
                .collect::<Result<_>>()
                .map(Item::Dim),
            Rule::tensor_stmt => self.tensor_stmt(pair).map(Item::Tensor),
            Rule::hyper_stmt => self
                .children(pair)
                .inner
                .filter(|p| p.as_rule() == Rule::hyper_decl)
                .map(|p| self.hyper_decl(p))
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
        let default = self.dim_value(children.required_rule(Rule::dim_value)?)?;
        Ok(DimDecl {
            name,
            default,
            span,
        })
    }

    /// A dim's default: a size, so a whole number in `0..=i64::MAX`.
    fn dim_value(&self, pair: Pair<'_, Rule>) -> Result<Spanned<i64>> {
        let span = span_of(&pair);
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
        let role_pair = children.required("a role")?;
        let role = match role_pair.as_rule() {
            Rule::kw_input => TensorRole::Input,
            Rule::kw_param => TensorRole::Param,
            _ => return Err(self.unexpected(&role_pair)),
        };
        let role = Spanned::new(role, span_of(&role_pair));
        let mut decls = Vec::new();
        while let Some(decl) = children.next() {
            decls.push(self.tensor_decl(role.clone(), decl)?);
        }
        Ok(decls)
    }

    fn tensor_decl(&self, role: Spanned<TensorRole>, pair: Pair<'_, Rule>) -> Result<TensorDecl> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let head = children.required("a name")?;
        let (name, shape) = match head.as_rule() {
            Rule::decl_name => (self.decl_name(head)?, Vec::new()),
            Rule::decl_head => {
                let name = self.decl_head(head)?;
                let mut shape = Vec::new();
                while let Some(size) = children.next_if(Rule::expr) {
                    shape.push(self.expr(size, 0)?);
                }
                (name, shape)
            }
            _ => return Err(self.unexpected(&head)),
        };
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
                let op_pair = children.required_rule(Rule::bound_op)?;
                let op = self.compare_op(&op_pair)?;
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
                    .inner
                    .filter(|p| p.as_rule() == Rule::expr)
                    .map(|p| self.expr(p, 0))
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
        Ok(Claim {
            kind: ClaimKind::Grad(GradClaim {
                target,
                indices,
                body,
            }),
            expect_fail,
            span,
        })
    }

    /// `expect fail "reason"`: the reason, spanned over the whole clause.
    fn expect_fail(&self, pair: Pair<'_, Rule>) -> Result<Spanned<String>> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let reason = self.string(children.required_rule(Rule::string)?)?;
        Ok(Spanned::new(reason.node, span))
    }

    /// The left-hand side `name` or `name[i, j]` of a definition or claim.
    fn target(&self, children: &mut Children<'_, '_>) -> Result<(Ident, Vec<Ident>)> {
        let head = children.required("a name")?;
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
        self.children(pair)
            .inner
            .filter(|p| p.as_rule() == Rule::range_binding)
            .map(|binding| {
                let span = span_of(&binding);
                let mut children = self.children(binding);
                let index = self.decl_name(children.required_rule(Rule::decl_name)?)?;
                let range = self.index_range(children.required_rule(Rule::index_range)?, 0)?;
                Ok(RangeBinding { index, range, span })
            })
            .collect()
    }

    fn index_range(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<IndexRangeExpr> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let lo = self.expr(children.required_rule(Rule::expr)?, depth)?;
        let hi = self.expr(children.required_rule(Rule::expr)?, depth)?;
        Ok(IndexRangeExpr { lo, hi, span })
    }

    // -----------------------------------------------------------------------
    // Bodies and cases

    fn body(&self, pair: Pair<'_, Rule>) -> Result<Body> {
        let mut cases = Vec::new();
        for case in self
            .children(pair)
            .inner
            .filter(|p| p.as_rule() == Rule::case)
        {
            cases.push(self.case(case)?);
        }
        // A lone expression is a plain body; a lone `expr if cond` stays a case.
        if let [(_, false)] = cases.as_slice()
            && let Some((case, _)) = cases.pop()
        {
            return Ok(Body::Expr(case.value));
        }
        let count = cases.len();
        let mut checked = Vec::with_capacity(count);
        for (position, (case, guarded)) in cases.into_iter().enumerate() {
            if !guarded {
                return Err(SyntaxError::case_without_condition(self.source, case.span));
            }
            if case.condition.is_none() && position + 1 < count {
                return Err(SyntaxError::otherwise_not_last(self.source, case.span));
            }
            checked.push(case);
        }
        Ok(Body::Cases(checked))
    }

    /// A case, and whether it has a guard at all (`otherwise` is a guard
    /// without a condition).
    fn case(&self, pair: Pair<'_, Rule>) -> Result<(Case, bool)> {
        let span = span_of(&pair);
        let mut children = self.children(pair);
        let value = self.expr(children.required_rule(Rule::expr)?, 0)?;
        let (condition, guarded) = match children.next() {
            None => (None, false),
            Some(guard) if guard.as_rule() == Rule::guard_otherwise => (None, true),
            Some(guard) if guard.as_rule() == Rule::guard_if => {
                let mut guard = self.children(guard);
                let condition = self.condition(guard.required_rule(Rule::condition)?, 0)?;
                (Some(condition), true)
            }
            Some(other) => return Err(self.unexpected(&other)),
        };
        Ok((
            Case {
                value,
                condition,
                span,
            },
            guarded,
        ))
    }

    // -----------------------------------------------------------------------
    // Expressions

    /// `term (+|- term)*`, folded to the left.
    fn expr(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        self.check_depth(depth, span_of(&pair))?;
        let (first, rest) = self.chain(pair)?;
        self.fold_left(depth, first, rest, Self::term, |op, lhs, rhs| {
            let op = match op.as_str() {
                "+" => BinaryOp::Add,
                _ => BinaryOp::Sub,
            };
            Ok(binary(op, lhs, rhs))
        })
    }

    /// `unary (*|/ unary)*`, folded to the left.
    fn term(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        self.check_depth(depth, span_of(&pair))?;
        let (first, rest) = self.chain(pair)?;
        self.fold_left(depth, first, rest, Self::unary, |op, lhs, rhs| {
            let op = match op.as_str() {
                "*" => BinaryOp::Mul,
                _ => BinaryOp::Div,
            };
            Ok(binary(op, lhs, rhs))
        })
    }

    /// Splits `operand (op operand)*` into the first operand and the
    /// (operator, operand) pairs that follow.
    #[allow(clippy::type_complexity)]
    fn chain<'i>(
        &self,
        pair: Pair<'i, Rule>,
    ) -> Result<(Pair<'i, Rule>, Vec<(Pair<'i, Rule>, Pair<'i, Rule>)>)> {
        let mut children = self.children(pair);
        let first = children.required("an operand")?;
        let mut rest = Vec::new();
        while let Some(op) = children.next() {
            rest.push((op, children.required("an operand")?));
        }
        Ok((first, rest))
    }

    /// Folds `first op1 x1 op2 x2 …` into `((first op1 x1) op2 x2) …`, the
    /// result sitting at `depth`. The first operand ends up deepest, `n`
    /// levels down for `n` operators, which is checked before converting.
    fn fold_left<'i, T>(
        &self,
        depth: usize,
        first: Pair<'i, Rule>,
        rest: Vec<(Pair<'i, Rule>, Pair<'i, Rule>)>,
        operand: fn(&Self, Pair<'i, Rule>, usize) -> Result<T>,
        combine: impl Fn(&Pair<'i, Rule>, T, T) -> Result<T>,
    ) -> Result<T> {
        let count = rest.len();
        if depth + count > MAX_DEPTH {
            // The operator whose operands first pass the limit, counted from
            // the outermost (last) operator inward.
            let index = (depth + count)
                .saturating_sub(MAX_DEPTH + 1)
                .min(count.saturating_sub(1));
            let span = rest
                .get(index)
                .map_or_else(|| span_of(&first), |(op, _)| span_of(op));
            return Err(SyntaxError::too_deep(self.source, span, MAX_DEPTH));
        }
        let mut acc = operand(self, first, depth + count)?;
        for (index, (op, rhs)) in rest.into_iter().enumerate() {
            let rhs = operand(self, rhs, depth + count - index)?;
            acc = combine(&op, acc, rhs)?;
        }
        Ok(acc)
    }

    /// `-* power`: each minus is a level of nesting.
    fn unary(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        self.check_depth(depth, span_of(&pair))?;
        let mut children = self.children(pair);
        let mut negs = Vec::new();
        while let Some(neg) = children.next_if(Rule::neg) {
            negs.push(span_of(&neg));
        }
        self.check_depth(depth + negs.len(), span_of_last(&negs))?;
        let operand = self.power(children.required_rule(Rule::power)?, depth + negs.len())?;
        Ok(negate(&negs, operand))
    }

    /// `primary (^ exponent)*`, right-associative: `a^b^c` is `a^(b^c)`,
    /// and `a^-b^c` is `a^(-(b^c))`.
    fn power(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        self.check_depth(depth, span_of(&pair))?;
        let mut children = self.children(pair);
        let base = children.required("a base")?;
        let mut exponents = Vec::new();
        while children.next_if(Rule::pow_op).is_some() {
            exponents.push(children.required_rule(Rule::exponent)?);
        }
        if exponents.is_empty() {
            return self.primary(base, depth);
        }
        let base = self.primary(base, depth + 1)?;

        // Outside in: exponent k sits below its minus signs, and all but the
        // last are the base of the next `^`.
        let count = exponents.len();
        let mut at = depth + 1;
        let mut converted = Vec::with_capacity(count);
        for (index, exponent) in exponents.into_iter().enumerate() {
            let mut children = self.children(exponent);
            let mut negs = Vec::new();
            while let Some(neg) = children.next_if(Rule::neg) {
                negs.push(span_of(&neg));
            }
            let operand = children.required("an exponent")?;
            at += negs.len() + usize::from(index + 1 < count);
            self.check_depth(at, span_of(&operand))?;
            converted.push((negs, self.primary(operand, at)?));
        }
        let mut exponent: Option<Expr> = None;
        for (negs, operand) in converted.into_iter().rev() {
            let raised = match exponent {
                None => operand,
                Some(exponent) => binary(BinaryOp::Pow, operand, exponent),
            };
            exponent = Some(negate(&negs, raised));
        }
        match exponent {
            Some(exponent) => Ok(binary(BinaryOp::Pow, base, exponent)),
            None => Ok(base),
        }
    }

    fn primary(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let span = span_of(&pair);
        self.check_depth(depth, span)?;
        let kind = match pair.as_rule() {
            Rule::number => ExprKind::Number(self.number(&pair)?),
            Rule::name => ExprKind::Name(pair.as_str().to_owned()),
            Rule::paren => {
                let mut children = self.children(pair);
                return self.expr(children.required_rule(Rule::expr)?, depth);
            }
            Rule::access => {
                let mut children = self.children(pair);
                let tensor = self.head_name(children.required_rule(Rule::access_head)?)?;
                let indices = self.expr_list(children, depth + 1)?;
                ExprKind::Access { tensor, indices }
            }
            Rule::call => {
                let mut children = self.children(pair);
                let function = self.head_name(children.required_rule(Rule::call_head)?)?;
                let args = self.expr_list(children, depth + 1)?;
                ExprKind::Call { function, args }
            }
            Rule::iverson => {
                let mut children = self.children(pair);
                let condition =
                    self.condition(children.required_rule(Rule::condition)?, depth + 1)?;
                ExprKind::Iverson(Box::new(condition))
            }
            Rule::reduction => self.reduction(pair, depth)?,
            _ => return Err(self.unexpected(&pair)),
        };
        Ok(Spanned::new(kind, span))
    }

    /// The remaining `expr` children, each one level below their parent.
    fn expr_list(&self, children: Children<'_, '_>, depth: usize) -> Result<Vec<Expr>> {
        children
            .inner
            .filter(|p| p.as_rule() == Rule::expr)
            .map(|p| self.expr(p, depth))
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
        let range = children
            .next_if(Rule::index_range)
            .map(|range| self.index_range(range, depth + 1).map(Box::new))
            .transpose()?;
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

    /// `conjunction (or conjunction)*`, folded to the left.
    fn condition(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Condition> {
        self.check_depth(depth, span_of(&pair))?;
        let (first, rest) = self.chain(pair)?;
        self.fold_left(depth, first, rest, Self::conjunction, |_, lhs, rhs| {
            let span = lhs.span.to(rhs.span);
            Ok(Spanned::new(
                ConditionKind::Or(Box::new(lhs), Box::new(rhs)),
                span,
            ))
        })
    }

    /// `negation (and negation)*`, folded to the left.
    fn conjunction(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Condition> {
        self.check_depth(depth, span_of(&pair))?;
        let (first, rest) = self.chain(pair)?;
        self.fold_left(depth, first, rest, Self::negation, |_, lhs, rhs| {
            let span = lhs.span.to(rhs.span);
            Ok(Spanned::new(
                ConditionKind::And(Box::new(lhs), Box::new(rhs)),
                span,
            ))
        })
    }

    /// `not* (condition) | not* comparison`.
    fn negation(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Condition> {
        self.check_depth(depth, span_of(&pair))?;
        let mut children = self.children(pair);
        let mut nots = Vec::new();
        while let Some(not) = children.next_if(Rule::kw_not) {
            nots.push(span_of(&not));
        }
        let depth = depth + nots.len();
        self.check_depth(depth, span_of_last(&nots))?;
        let inner = children.required("a condition")?;
        let mut condition = match inner.as_rule() {
            Rule::cond_paren => {
                let mut children = self.children(inner);
                self.condition(children.required_rule(Rule::condition)?, depth)?
            }
            Rule::comparison => self.comparison(inner, depth)?,
            _ => return Err(self.unexpected(&inner)),
        };
        for not in nots.into_iter().rev() {
            let span = not.to(condition.span);
            condition = Spanned::new(ConditionKind::Not(Box::new(condition)), span);
        }
        Ok(condition)
    }

    /// A chain `e1 op e2 (op e3)*`.
    fn comparison(&self, pair: Pair<'_, Rule>, depth: usize) -> Result<Condition> {
        let span = span_of(&pair);
        self.check_depth(depth, span)?;
        let mut children = self.children(pair);
        let first = self.expr(children.required_rule(Rule::expr)?, depth + 1)?;
        let mut rest = Vec::new();
        while let Some(op_pair) = children.next_if(Rule::compare_op) {
            let op = self.compare_op(&op_pair)?;
            let operand = self.expr(children.required_rule(Rule::expr)?, depth + 1)?;
            rest.push((Spanned::new(op, span_of(&op_pair)), operand));
        }
        Ok(Spanned::new(ConditionKind::Compare { first, rest }, span))
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
        let mut children = self.children(pair);
        self.decl_name(children.required_rule(Rule::decl_name)?)
    }

    /// The name in `name[` or `name(` inside an expression; the grammar has
    /// already excluded reserved words.
    fn head_name(&self, pair: Pair<'_, Rule>) -> Result<Ident> {
        let mut children = self.children(pair);
        let name = children.required_rule(Rule::name)?;
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
                Some((next_at, other)) => {
                    let end = next_at + other.len_utf8();
                    let escape = text.get(at..end).unwrap_or("\\");
                    let span = Span::new(offset + at, offset + end);
                    return Err(SyntaxError::string_escape(self.source, span, escape));
                }
                // The grammar marks a string that ends in a lone `\` as
                // unterminated, so this is unreachable; report it as such anyway.
                None => {
                    let span = Span::new(offset + at, offset + text.len());
                    return Err(SyntaxError::unterminated_string(self.source, span));
                }
            }
        }
        Ok(value)
    }
}

fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    let span = lhs.span.to(rhs.span);
    Spanned::new(
        ExprKind::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        },
        span,
    )
}

/// Applies the minus signs at `negs` (in source order) to `operand`.
fn negate(negs: &[Span], operand: Expr) -> Expr {
    negs.iter().rev().fold(operand, |operand, &neg| {
        let span = neg.to(operand.span);
        Spanned::new(
            ExprKind::Unary {
                op: UnaryOp::Neg,
                operand: Box::new(operand),
            },
            span,
        )
    })
}

fn span_of_last(spans: &[Span]) -> Span {
    spans.last().copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str) -> String {
        match parse(&Source::new("t.dl", text)) {
            Ok(spec) => format!("{spec:#?}"),
            Err(error) => {
                let mut out = String::new();
                let handler = miette::GraphicalReportHandler::new_themed(
                    miette::GraphicalTheme::unicode_nocolor(),
                )
                .with_width(100);
                let _ = handler.render_report(&mut out, &error);
                out
            }
        }
    }

    #[test]
    fn scratch_pest_only() {
        for n in [150usize, 170, 190, 210, 230, 250, 256] {
            let text = format!("let c = {}x{}", "(".repeat(n), ")".repeat(n));
            let result = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    let ok = DlParser::parse(Rule::spec, &text)
                        .map(|_| ())
                        .map_err(|e| format!("{:?}", e.variant));
                    ok
                })
                .map(|h| h.join());
            println!("pest {n}: {:?}", result.map(|r| r.map_err(|_| "panic")));
        }
    }

    #[test]
    fn scratch_deep() {
        let cases = [
            format!("let c = {}x{}", "(".repeat(256), ")".repeat(256)),
            format!("let c = {}x{}", "[".repeat(256), "]".repeat(256)),
            format!("let c = {}x == 1{}", "[(".repeat(128), ")]".repeat(128)),
            format!("let c = {}x{}", "f(".repeat(256), ")".repeat(256)),
            format!("let c = {}1", "sum(k) ".repeat(255)),
            format!("let c = {}1", "sum(k) ".repeat(100_000)),
            format!("let c = {}x", "-".repeat(100_000)),
            format!("let c = x{}", "+x".repeat(100_000)),
            format!("let c = 2{}", "^2".repeat(100_000)),
            format!("let c = [{}x == 1]", "not ".repeat(100_000)),
            format!("let c = {}x{}", "(".repeat(100_000), ")".repeat(100_000)),
        ];
        for text in cases.into_iter().skip(std::env::var("SKIP").ok().and_then(|s| s.parse().ok()).unwrap_or(0)) {
            println!("start {}", &text[..30.min(text.len())]);
            let start = std::time::Instant::now();
            let result = parse(&Source::new("t.dl", text.clone()));
            println!(
                "{} {:?} {:?}",
                &text[..30.min(text.len())],
                result.as_ref().err().map(|e| e.to_string()),
                start.elapsed()
            );
        }
    }

    #[test]
    fn scratch_miette() {
        for (text, at, len) in [
            ("let c = (a + b", 14usize, 0usize),
            ("let c = (a + b\n", 14, 0),
            ("let c = (a + b\n", 15, 0),
            ("let c = (a + b", 13, 1),
            ("let c = (a + b", 13, 0),
        ] {
            let source = Source::new("t.dl", text);
            let error = SyntaxError::too_deep(&source, Span::new(at, at + len), 3);
            let mut out = String::new();
            let handler = miette::GraphicalReportHandler::new_themed(
                miette::GraphicalTheme::unicode_nocolor(),
            )
            .with_width(100);
            let _ = handler.render_report(&mut out, &error);
            println!("{text:?} {at} {len}\n{out}");
        }
    }

    #[test]
    fn scratch() {
        let Ok(inputs) = std::fs::read_to_string("/tmp/dl_scratch.txt") else {
            return;
        };
        for input in inputs.split("\n----\n") {
            println!("=== {input}\n{}", render(input));
        }
    }
}
