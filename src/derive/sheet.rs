//! A derivation as a solution sheet in the handout's notation: the forward
//! definitions, then ∂L/∂x for every input and param with its cases, in
//! Markdown (`$$` display math, as GitHub and KaTeX render it) or as a
//! LaTeX document. The sheet is printed from the same structures as the
//! spec-language lines, which the engine has checked: it says nothing they
//! do not.
//!
//! The printer mirrors [`Sym::show`]'s precedence, with the differences
//! mathematics allows: a fraction needs no parentheses in a product, and a
//! sum (`\sum_k …`) none where nothing follows it, since its body runs to
//! the end of the product as a handout reads it.

use std::fmt::Write;

use super::sym::{Cond, Conjunct, Ix, Sym};
use super::{Definition, Derived, LineKind, Role, Value};
use crate::analysis::program::DefKind;
use crate::syntax::ast::CompareOp;

/// The sheet as Markdown: `##` sections and `$$ … $$` display math.
pub fn markdown(title: &str, derived: &Derived) -> String {
    let sheet = Sheet::of(derived);
    let mut out = format!("# {title}\n\n{INTRO}\n");
    let display = |out: &mut String, eq: &Equation| {
        let _ = write!(out, "\n$$\n{}\n$$\n", eq.plain());
    };
    out.push_str("\n## Forward\n");
    for eq in &sheet.forward {
        display(&mut out, eq);
    }
    if let Some(y) = &sheet.incoming {
        let _ = write!(out, "\ng = ∂{}/∂{y}, the incoming gradient.\n", sheet.of);
    }
    for note in &sheet.notes {
        let _ = write!(out, "\n*Note.* {note}\n");
    }
    if !sheet.adjoints.is_empty() {
        out.push_str("\n## Intermediate adjoints\n");
        for eq in &sheet.adjoints {
            display(&mut out, eq);
        }
    }
    for (tensor, eq) in &sheet.grads {
        let _ = write!(out, "\n## ∂{}/∂{tensor}\n", sheet.of);
        display(&mut out, eq);
    }
    out
}

/// The sheet as a LaTeX document that compiles on its own (`article` and
/// `amsmath`): `\section*` per part, `align*` where equations line up.
pub fn latex(title: &str, derived: &Derived) -> String {
    let sheet = Sheet::of(derived);
    let mut out =
        String::from("\\documentclass{article}\n\\usepackage{amsmath}\n\\allowdisplaybreaks\n\n");
    let _ = write!(
        out,
        "\\title{{{}}}\n\\date{{}}\n\n\\begin{{document}}\n\\maketitle\n\n{}\n",
        escape_text(title),
        INTRO.replace("`dlverify derive`", "\\texttt{dlverify derive}")
    );
    out.push_str("\n\\section*{Forward}\n");
    out.push_str(&align(&sheet.forward));
    if let Some(y) = &sheet.incoming {
        let _ = write!(
            out,
            "\n$g = \\partial {} / \\partial {}$, the incoming gradient.\n",
            name(&sheet.of),
            name(y)
        );
    }
    for note in &sheet.notes {
        let _ = write!(out, "\n\\paragraph{{Note.}} {}\n", escape_text(note));
    }
    if !sheet.adjoints.is_empty() {
        out.push_str("\n\\section*{Intermediate adjoints}\n");
        out.push_str(&align(&sheet.adjoints));
    }
    for (tensor, eq) in &sheet.grads {
        let _ = write!(
            out,
            "\n\\section*{{$\\partial {} / \\partial {}$}}\n\\begin{{equation*}}\n{}\n\\end{{equation*}}\n",
            name(&sheet.of),
            name(tensor),
            eq.plain()
        );
    }
    out.push_str("\n\\end{document}\n");
    out
}

/// What the sheet says of where its formulas come from.
const INTRO: &str = "Derived by `dlverify derive`; every gradient below was checked by the engine before it was printed.";

/// Equations that share an `=` to line up at: one `align*`.
fn align(eqs: &[Equation]) -> String {
    let rows: Vec<String> = eqs.iter().map(Equation::aligned).collect();
    format!(
        "\\begin{{align*}}\n{}\n\\end{{align*}}\n",
        rows.join(" \\\\\n")
    )
}

/// The parts of a sheet, each equation printed: read by both formats.
struct Sheet {
    /// What is differentiated: the loss by its name, else `L`, the scalar
    /// whose gradient in the layer's output is `g`.
    of: String,
    forward: Vec<Equation>,
    /// The layer's output, whose gradient `g` is given; none for a loss.
    incoming: Option<String>,
    /// Conventions the derivation chose, without the comment's `#`.
    notes: Vec<String>,
    adjoints: Vec<Equation>,
    /// Each input's or param's name and its gradient.
    grads: Vec<(String, Equation)>,
}

impl Sheet {
    fn of(derived: &Derived) -> Self {
        let of = derived
            .forward
            .iter()
            .find(|d| d.role == Role::Forward(DefKind::Loss))
            .map_or_else(|| "L".to_string(), |d| d.name.clone());
        let printer = Latex::new(derived, name(&of));
        let mut sheet = Sheet {
            of,
            forward: derived
                .forward
                .iter()
                .map(|d| printer.equation(d))
                .collect(),
            incoming: derived
                .forward
                .iter()
                .find(|d| d.role == Role::Forward(DefKind::Layer))
                .map(|d| d.name.clone()),
            notes: vec![],
            adjoints: vec![],
            grads: vec![],
        };
        for line in &derived.lines {
            match (line.kind, &line.definition) {
                (LineKind::Note, _) => sheet
                    .notes
                    .push(line.text.trim_start_matches('#').trim().to_string()),
                (LineKind::Adjoint, Some(d)) => sheet.adjoints.push(printer.equation(d)),
                (LineKind::Grad(_), Some(d)) => {
                    sheet.grads.push((d.name.clone(), printer.equation(d)));
                }
                (_, None) => {}
            }
        }
        sheet
    }
}

/// `lhs = rhs, \quad ranges`, kept apart for `align*`'s `&=`.
struct Equation {
    lhs: String,
    rhs: String,
    ranges: String,
}

impl Equation {
    fn plain(&self) -> String {
        format!("{} = {}{}", self.lhs, self.rhs, self.ranges)
    }

    fn aligned(&self) -> String {
        format!("{} &= {}{}", self.lhs, self.rhs, self.ranges)
    }
}

/// Binding strength in printed mathematics, loosest first: what an operand
/// must reach to go without parentheses. `Frac` sits between a minus sign
/// and a power: `a \frac{b}{c}` needs none, `(\frac{b}{c})^{2}` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Sum,
    Product,
    Unary,
    Frac,
    Power,
    Atom,
}

/// Prints expressions in LaTeX, with each adjoint `let` (`dnorm`) written
/// as the derivative it is (∂L/∂norm).
struct Latex {
    /// Each adjoint's name and the forward definition's it is of.
    adjoints: Vec<(String, String)>,
    /// What is differentiated, printed.
    of: String,
}

/// An expression in LaTeX, as a sheet prints it (no adjoints named).
pub fn to_latex(sym: &Sym) -> String {
    Latex::plain().expr(sym)
}

/// A condition in LaTeX, as a case of `\begin{cases}` reads it.
pub fn cond_to_latex(cond: &Cond) -> String {
    Latex::plain().cond(cond, Logic::Words)
}

/// How `and` and `or` read: words after a case's `if`, symbols in a bracket.
#[derive(Clone, Copy)]
enum Logic {
    Words,
    Symbols,
}

impl Latex {
    fn plain() -> Self {
        Self {
            adjoints: vec![],
            of: "L".to_string(),
        }
    }

    /// The adjoint names are `d` and the definition's name, with `_`
    /// appended where that was taken: matched against the forward names,
    /// the longest that fits.
    fn new(derived: &Derived, of: String) -> Self {
        let adjoints = derived
            .lines
            .iter()
            .filter(|l| l.kind == LineKind::Adjoint)
            .filter_map(|l| l.definition.as_ref())
            .filter_map(|d| {
                let of = derived
                    .forward
                    .iter()
                    .map(|f| f.name.as_str())
                    .filter(|f| {
                        d.name
                            .strip_prefix('d')
                            .and_then(|rest| rest.strip_prefix(f))
                            .is_some_and(|tail| tail.chars().all(|c| c == '_'))
                    })
                    .max_by_key(|f| f.len())?;
                Some((d.name.clone(), of.to_string()))
            })
            .collect();
        Self { adjoints, of }
    }

    /// `\frac{\partial L}{\partial x_{j}}`: the handout's ∂L/∂x_j.
    fn partial(&self, wrt: &str) -> String {
        format!("\\frac{{\\partial {}}}{{\\partial {wrt}}}", self.of)
    }

    fn adjoint_of(&self, name: &str) -> Option<&str> {
        self.adjoints
            .iter()
            .find(|(a, _)| a == name)
            .map(|(_, of)| of.as_str())
    }

    /// `lhs = rhs, \quad ranges`: a forward definition under its own
    /// name, an adjoint or a gradient as the derivative it is.
    fn equation(&self, d: &Definition) -> Equation {
        let own: Vec<Ix> = d.indices.iter().map(|i| Ix::name(i)).collect();
        let head = access(&d.name, &own);
        let lhs = match (d.role, self.adjoint_of(&d.name)) {
            (Role::Adjoint, Some(of)) => self.partial(&access(of, &own)),
            (Role::Grad, _) => self.partial(&head),
            _ => head,
        };
        let rhs = match &d.value {
            Value::Expr(e) => self.expr(e),
            Value::Cases(cases) => self.cases(cases),
        };
        let ranges: Vec<String> = d
            .indices
            .iter()
            .zip(&d.ranges)
            .map(|(i, (lo, hi))| format!("{} = {},\\dots,{}", name(i), index(lo), index(hi)))
            .collect();
        let ranges = if ranges.is_empty() {
            String::new()
        } else {
            format!(", \\quad {}", ranges.join(",\\; "))
        };
        Equation { lhs, rhs, ranges }
    }

    fn cases(&self, cases: &[(Sym, Option<Cond>)]) -> String {
        let rows: Vec<String> = cases
            .iter()
            .map(|(value, cond)| {
                let guard = match cond {
                    Some(c) => format!("\\text{{if }} {}", self.cond(c, Logic::Words)),
                    None => "\\text{otherwise}".to_string(),
                };
                format!("  {} & {guard}", self.expr(value))
            })
            .collect();
        format!("\\begin{{cases}}\n{}\n\\end{{cases}}", rows.join(" \\\\\n"))
    }

    fn cond(&self, c: &Cond, logic: Logic) -> String {
        let (and, or) = match logic {
            Logic::Words => (" \\text{ and } ", " \\text{ or } "),
            Logic::Symbols => (" \\wedge ", " \\vee "),
        };
        match c {
            Cond::Compare(a, op, b) => {
                format!("{} {} {}", self.expr(a), comparison(*op), self.expr(b))
            }
            Cond::And(..) => c
                .conjuncts()
                .iter()
                .map(|part| match part {
                    Conjunct::Between(lo, x, hi) => format!(
                        "{} \\le {} \\le {}",
                        self.expr(lo),
                        self.expr(x),
                        self.expr(hi)
                    ),
                    Conjunct::One(c @ Cond::Or(..)) => format!("({})", self.cond(c, logic)),
                    Conjunct::One(c) => self.cond(c, logic),
                })
                .collect::<Vec<_>>()
                .join(and),
            Cond::Or(a, b) => format!("{}{or}{}", self.cond(a, logic), self.cond(b, logic)),
        }
    }

    fn level(&self, s: &Sym) -> Level {
        match alone(s) {
            Sym::Num(v) => number_level(*v),
            Sym::Index(ix) => index_level(ix),
            Sym::Access { name, .. } if self.adjoint_of(name).is_some() => Level::Frac,
            Sym::Atom(_) | Sym::Access { .. } | Sym::Call(..) | Sym::Bracket(_) => Level::Atom,
            Sym::Neg(_) => Level::Unary,
            Sym::Add(_) | Sym::Sum { .. } | Sym::Extreme { .. } => Level::Sum,
            Sym::Mul(_) => Level::Product,
            Sym::Div(a, b) => {
                let q = self.quotient(a, b);
                if q.negative {
                    Level::Unary
                } else if !q.front.is_empty() {
                    Level::Product
                } else {
                    Level::Frac
                }
            }
            Sym::Pow(..) | Sym::PowInt(..) => Level::Power,
        }
    }

    /// Printed where binding `at` or tighter is needed.
    fn at(&self, s: &Sym, at: Level) -> String {
        let text = self.expr(s);
        if self.level(s) < at {
            parenthesized(&text)
        } else {
            text
        }
    }

    /// After a minus sign: a product or tighter, but not a second sign
    /// (`-(-a)`); a sum over an index runs on to the end as it is.
    fn negated(&self, s: &Sym) -> String {
        let text = self.expr(s);
        let level = self.level(s);
        let signed = text.starts_with('-');
        if is_reduction(s) || (level >= Level::Product && level != Level::Unary && !signed) {
            text
        } else {
            parenthesized(&text)
        }
    }

    /// A factor of a product: a fraction as it is, a sum over an index only
    /// as the last factor, where its body ends with the product.
    fn factor(&self, s: &Sym, last: bool) -> String {
        if last && is_reduction(s) {
            self.expr(s)
        } else if ends_open(s) {
            parenthesized(&self.expr(s))
        } else {
            self.at(s, Level::Frac)
        }
    }

    fn expr(&self, s: &Sym) -> String {
        match alone(s) {
            Sym::Mul(factors) if factors.is_empty() => "1".to_string(),
            Sym::Add(terms) if terms.is_empty() => "0".to_string(),
            Sym::Num(v) => number(*v),
            Sym::Atom(a) if a == "pi" => "\\pi".to_string(),
            Sym::Atom(a) => name(a),
            Sym::Index(ix) => index(ix),
            Sym::Access { name: n, indices } => match self.adjoint_of(n) {
                Some(of) => self.partial(&access(of, indices)),
                None => access(n, indices),
            },
            Sym::Neg(a) => format!("-{}", self.negated(a)),
            Sym::Add(terms) => self.sum_of_terms(terms),
            Sym::Mul(factors) => self.product(factors),
            Sym::Div(a, b) => self.quotient_text(&self.quotient(a, b)),
            Sym::Pow(a, b) => format!("{}^{{{}}}", self.at(a, Level::Atom), self.expr(b)),
            Sym::PowInt(a, k) => format!("{}^{{{k}}}", self.at(a, Level::Atom)),
            Sym::Call(f, args) => self.call(f, args),
            Sym::Sum { var, lo, hi, body } => {
                format!("\\sum_{} {}", limits(var, lo, hi), self.body(body))
            }
            Sym::Extreme {
                op,
                var,
                lo,
                hi,
                body,
            } => format!(
                "\\{}_{} {}",
                super::sym::reduce_name(*op),
                limits(var, lo, hi),
                self.body(body)
            ),
            Sym::Bracket(c) => format!("[\\,{}\\,]", self.cond(c, Logic::Symbols)),
        }
    }

    /// A reduction's body: the product that follows it.
    fn body(&self, body: &Sym) -> String {
        if is_reduction(body) {
            self.expr(body)
        } else {
            self.at(body, Level::Product)
        }
    }

    fn sum_of_terms(&self, terms: &[Sym]) -> String {
        let mut out = String::new();
        for (k, t) in terms.iter().enumerate() {
            match t {
                _ if k == 0 => out.push_str(&self.expr(t)),
                Sym::Neg(a) => {
                    let _ = write!(out, " - {}", self.negated(a));
                }
                Sym::Num(v) if *v < 0.0 => {
                    let _ = write!(out, " - {}", number(-v));
                }
                _ if is_reduction(t) => {
                    let _ = write!(out, " + {}", self.expr(t));
                }
                _ => {
                    let text = self.at(t, Level::Product);
                    if text.starts_with('-') {
                        let _ = write!(out, " + {}", parenthesized(&text));
                    } else {
                        let _ = write!(out, " + {text}");
                    }
                }
            }
        }
        out
    }

    fn product(&self, factors: &[Sym]) -> String {
        let mut flat = vec![];
        spliced(factors, &mut flat);
        self.product_of(&flat)
    }

    /// Factors side by side with a thin space; `\cdot` before a number or
    /// between a number and a fraction, where side by side would read as
    /// one number. A sign leads the first factor as it is (`-t\,z`).
    fn product_of(&self, factors: &[&Sym]) -> String {
        let mut out = String::new();
        for (k, f) in factors.iter().enumerate() {
            let last = k + 1 == factors.len();
            let text = if k == 0 && !last && self.level(f) == Level::Unary && !ends_open(f) {
                self.expr(f)
            } else {
                self.factor(f, last)
            };
            if k > 0 {
                let after_number = matches!(factors.get(k - 1), Some(Sym::Num(_)));
                let numeral = |t: &str| t.starts_with(|c: char| c.is_ascii_digit());
                let numeral_over = text.strip_prefix("\\frac{").is_some_and(numeral);
                out.push_str(if numeral(&text) || (after_number && numeral_over) {
                    " \\cdot "
                } else if after_number {
                    " "
                } else {
                    "\\,"
                });
            }
            out.push_str(&text);
        }
        out
    }

    /// `a / b` as a handout writes it: the sign before the fraction, an
    /// adjoint (∂L/∂σ) in front of it rather than in its numerator, and a
    /// fraction over a fraction as one (`\frac{a}{b\,c}`).
    fn quotient(&self, a: &Sym, b: &Sym) -> Quotient {
        let mut negative = false;
        let mut under: Vec<Sym> = vec![];
        let mut numerator = a.clone();
        push_factors(b, &mut under);
        loop {
            match alone(&numerator).clone() {
                Sym::Neg(x) => {
                    negative = !negative;
                    numerator = *x;
                }
                Sym::Num(v) if v < 0.0 => {
                    negative = !negative;
                    numerator = Sym::Num(-v);
                }
                // (x / y) / b is x / (y b).
                Sym::Div(x, y) => {
                    let mut inner = vec![];
                    push_factors(&y, &mut inner);
                    inner.append(&mut under);
                    under = inner;
                    numerator = *x;
                }
                _ => break,
            }
        }
        let mut over = vec![];
        push_factors(&numerator, &mut over);
        let (front, mut over): (Vec<Sym>, Vec<Sym>) = over.into_iter().partition(
            |f| matches!(f, Sym::Access { name, .. } if self.adjoint_of(name).is_some()),
        );
        if over.is_empty() {
            over.push(Sym::Num(1.0));
        }
        Quotient {
            negative,
            front,
            over,
            under,
        }
    }

    fn quotient_text(&self, q: &Quotient) -> String {
        let part = |v: &[Sym]| match v {
            [one] => self.expr(one),
            _ => self.product_of(&refs(v)),
        };
        let fraction = format!("\\frac{{{}}}{{{}}}", part(&q.over), part(&q.under));
        let mut factors: Vec<String> = q.front.iter().map(|f| self.factor(f, false)).collect();
        factors.push(fraction);
        format!(
            "{}{}",
            if q.negative { "-" } else { "" },
            factors.join("\\,")
        )
    }

    fn call(&self, f: &str, args: &[Sym]) -> String {
        let all = || {
            args.iter()
                .map(|a| self.expr(a))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (f, args) {
            ("sqrt", [a]) => format!("\\sqrt{{{}}}", self.expr(a)),
            ("abs", [a]) => format!("\\left|{}\\right|", self.expr(a)),
            ("floor", [a]) => format!("\\left\\lfloor {} \\right\\rfloor", self.expr(a)),
            ("pow", [a, b]) => format!("{}^{{{}}}", self.at(a, Level::Atom), self.expr(b)),
            _ => format!("{}{}", operator(f), parenthesized(&all())),
        }
    }
}

/// `\exp`, `\tanh`: the functions LaTeX sets upright; the rest by name.
fn operator(f: &str) -> String {
    match f {
        "exp" | "log" | "tanh" | "sin" | "cos" | "sinh" | "cosh" | "min" | "max" => {
            format!("\\{f}")
        }
        "atan" | "asin" | "acos" => format!("\\arc{}", &f[1..]),
        _ => format!("\\operatorname{{{f}}}"),
    }
}

/// `x_{i+2}`, `w_{i,j}`; a name with a subscript of its own braced first.
fn access(n: &str, indices: &[Ix]) -> String {
    let base = name(n);
    if indices.is_empty() {
        return base;
    }
    let subscript = indices.iter().map(index).collect::<Vec<_>>().join(",");
    if base.contains('_') && !base.starts_with("\\mathit") {
        format!("{{{base}}}_{{{subscript}}}")
    } else {
        format!("{base}_{{{subscript}}}")
    }
}

/// `_{k=1}^{N}`: the limits of a sum, max or min.
fn limits(var: &str, lo: &Ix, hi: &Ix) -> String {
    format!("{{{}={}}}^{{{}}}", name(var), index(lo), index(hi))
}

/// A quotient taken apart for printing ([`Latex::quotient`]).
struct Quotient {
    negative: bool,
    /// Adjoints written in front of the fraction.
    front: Vec<Sym>,
    over: Vec<Sym>,
    under: Vec<Sym>,
}

fn refs(v: &[Sym]) -> Vec<&Sym> {
    v.iter().collect()
}

/// The factors of an expression, a product's spliced, as owned values.
fn push_factors(s: &Sym, out: &mut Vec<Sym>) {
    match alone(s) {
        Sym::Mul(inner) => inner.iter().for_each(|f| push_factors(f, out)),
        f => out.push(f.clone()),
    }
}

/// `(…)`, grown with `\left`/`\right` around what is taller than a line.
fn parenthesized(text: &str) -> String {
    let tall = ["\\frac", "\\sum", "\\max_", "\\min_", "\\sqrt"]
        .iter()
        .any(|t| text.contains(t));
    if tall {
        format!("\\left({text}\\right)")
    } else {
        format!("({text})")
    }
}

fn is_reduction(s: &Sym) -> bool {
    matches!(alone(s), Sym::Sum { .. } | Sym::Extreme { .. })
}

/// Whether the printed expression ends in a sum, max or min whose body
/// would run on over what follows it in a product (`-\sum_k x_k`).
fn ends_open(s: &Sym) -> bool {
    match alone(s) {
        Sym::Sum { .. } | Sym::Extreme { .. } => true,
        Sym::Neg(a) => ends_open(a),
        Sym::Mul(v) | Sym::Add(v) => v.last().is_some_and(ends_open),
        _ => false,
    }
}

/// The one term or factor of a sum or product of one: the forward
/// definitions are as the spec writes them, not simplified, and a sum's
/// body is a product of its range's brackets and the body.
fn alone(s: &Sym) -> &Sym {
    match s {
        Sym::Mul(one) | Sym::Add(one) if one.len() == 1 => one.first().map_or(s, alone),
        _ => s,
    }
}

/// The factors of a product with the products among them spliced in.
fn spliced<'s>(factors: &'s [Sym], out: &mut Vec<&'s Sym>) {
    for f in factors {
        match alone(f) {
            Sym::Mul(inner) => spliced(inner, out),
            f => out.push(f),
        }
    }
}

fn comparison(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => "=",
        CompareOp::Ne => "\\ne",
        CompareOp::Lt => "<",
        CompareOp::Le => "\\le",
        CompareOp::Gt => ">",
        CompareOp::Ge => "\\ge",
    }
}

/// Names a handout writes as a Greek letter.
const GREEK: [&str; 30] = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega",
    "Gamma", "Delta", "Theta", "Lambda", "Sigma", "Phi", "Psi", "Omega",
];

/// A name in math: one letter as it is, a Greek letter's name as the
/// letter, `xhat` as `\hat{x}`, `c0` as `c_{0}`, others upright-italic
/// words (`\mathit{norm}`, not the product n·o·r·m); a trailing `_`, which
/// derive adds to keep names apart, as a prime.
fn name(n: &str) -> String {
    let base = n.trim_end_matches('_');
    let primes = "'".repeat(n.len() - base.len());
    format!("{}{primes}", base_name(base))
}

fn base_name(base: &str) -> String {
    if base.chars().count() == 1 {
        return base.to_string();
    }
    if GREEK.contains(&base) {
        return format!("\\{base}");
    }
    if base == "eps" {
        return "\\epsilon".to_string();
    }
    if let Some(of) = base.strip_suffix("hat").filter(|of| !of.is_empty()) {
        return format!("\\hat{{{}}}", base_name(of));
    }
    let letters = base.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = &base[letters.len()..];
    if !digits.is_empty() && (letters.chars().count() == 1 || GREEK.contains(&letters)) {
        return format!("{}_{{{digits}}}", base_name(letters));
    }
    format!("\\mathit{{{}}}", base.replace('_', "\\_"))
}

/// `2k-1`: an index expression as [`Ix::show`] writes it, without the `*`.
fn index(ix: &Ix) -> String {
    ix.show_with(name, "")
}

/// As [`Sym`]'s printer ranks an index expression used as a value.
fn index_level(ix: &Ix) -> Level {
    if ix.terms.len() + usize::from(ix.constant != 0) > 1 {
        Level::Sum
    } else if ix.terms.iter().any(|(_, c)| *c != 1) {
        Level::Product
    } else if ix.constant < 0 {
        Level::Unary
    } else {
        Level::Atom
    }
}

/// `0.5`, `3`, `10^{-10}`, `2.5 \cdot 10^{-5}`: exact, as the spec's
/// number reads back, with an exponent written as a power of ten.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let shown = format!("{v:?}");
    match shown.split_once('e') {
        Some(("1", e)) => format!("10^{{{e}}}"),
        Some(("-1", e)) => format!("-10^{{{e}}}"),
        Some((m, e)) => format!("{m} \\cdot 10^{{{e}}}"),
        None => shown,
    }
}

fn number_level(v: f64) -> Level {
    let shown = number(v);
    if v < 0.0 {
        Level::Unary
    } else if shown.contains("\\cdot") {
        Level::Product
    } else if shown.contains('^') {
        Level::Power
    } else {
        Level::Atom
    }
}

/// Text for LaTeX outside math: its special characters escaped.
fn escape_text(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '{' | '}' | '$' | '&' | '#' | '_' | '%' => {
                out.push('\\');
                out.push(c);
            }
            '^' => out.push_str("\\^{}"),
            '~' => out.push_str("\\~{}"),
            c => out.push(c),
        }
    }
    out
}
