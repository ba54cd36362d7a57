//! Symbolic expressions in the spec language: what a derivation builds and
//! prints. Index expressions are affine over names ([`Ix`]), so that a
//! Kronecker bracket `[i+2 == j]` can be solved for `i` and substituted.

use std::fmt::Write;

use crate::syntax::ast::{CompareOp, ReduceOp};

/// An affine index expression over names (index variables and dims).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ix {
    pub constant: i64,
    /// Sorted by name, no zero coefficients.
    pub terms: Vec<(String, i64)>,
}

impl Ix {
    pub fn constant(c: i64) -> Self {
        Self {
            constant: c,
            terms: vec![],
        }
    }

    pub fn name(name: &str) -> Self {
        Self {
            constant: 0,
            terms: vec![(name.to_string(), 1)],
        }
    }

    /// `self + k * other`; `None` on overflow.
    pub fn plus(&self, other: &Ix, k: i64) -> Option<Ix> {
        let mut out = self.clone();
        out.constant = out.constant.checked_add(other.constant.checked_mul(k)?)?;
        for (name, c) in &other.terms {
            let c = c.checked_mul(k)?;
            match out.terms.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = entry.1.checked_add(c)?,
                None => out.terms.push((name.clone(), c)),
            }
        }
        out.terms.retain(|(_, c)| *c != 0);
        out.terms.sort();
        Some(out)
    }

    pub fn coefficient(&self, name: &str) -> i64 {
        self.terms
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, c)| *c)
    }

    /// `name` replaced by `by`.
    pub fn substitute(&self, name: &str, by: &Ix) -> Option<Ix> {
        let c = self.coefficient(name);
        if c == 0 {
            return Some(self.clone());
        }
        self.plus(&Ix::name(name), -c)?.plus(by, c)
    }

    /// Positive terms first, so that `N-i` reads as written rather than `-i+N`.
    pub fn show(&self) -> String {
        self.show_with(|name| name.to_string(), "*")
    }

    /// [`Ix::show`] with each name written by `name` and `times` between a
    /// coefficient and its name (nothing, in LaTeX: `2k-1`).
    pub fn show_with(&self, name: impl Fn(&str) -> String, times: &str) -> String {
        let mut out = String::new();
        let mut terms: Vec<&(String, i64)> = self.terms.iter().filter(|(_, c)| *c > 0).collect();
        terms.extend(self.terms.iter().filter(|(_, c)| *c < 0));
        for (n, c) in terms {
            let sign = if *c < 0 {
                "-"
            } else if out.is_empty() {
                ""
            } else {
                "+"
            };
            let magnitude = c.unsigned_abs();
            if magnitude == 1 {
                let _ = write!(out, "{sign}{}", name(n));
            } else {
                let _ = write!(out, "{sign}{magnitude}{times}{}", name(n));
            }
        }
        match (out.is_empty(), self.constant) {
            (true, c) => c.to_string(),
            // `2-i` rather than `-i+2`.
            (false, c) if c > 0 && out.starts_with('-') => format!("{c}{out}"),
            (false, 0) => out,
            (false, c) if c > 0 => format!("{out}+{c}"),
            (false, c) => format!("{out}{c}"),
        }
    }
}

/// A condition of a bracket or a case.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    Compare(Box<Sym>, CompareOp, Box<Sym>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

impl Cond {
    /// The condition that holds where this one does not (`not` written out,
    /// which the language reads as comparisons).
    pub fn negated(&self) -> Cond {
        match self {
            Cond::Compare(a, op, b) => {
                let op = match op {
                    CompareOp::Eq => CompareOp::Ne,
                    CompareOp::Ne => CompareOp::Eq,
                    CompareOp::Lt => CompareOp::Ge,
                    CompareOp::Le => CompareOp::Gt,
                    CompareOp::Gt => CompareOp::Le,
                    CompareOp::Ge => CompareOp::Lt,
                };
                Cond::Compare(a.clone(), op, b.clone())
            }
            Cond::And(a, b) => Cond::Or(Box::new(a.negated()), Box::new(b.negated())),
            Cond::Or(a, b) => Cond::And(Box::new(a.negated()), Box::new(b.negated())),
        }
    }

    fn map_syms(&self, f: &mut impl FnMut(&Sym) -> Option<Sym>) -> Option<Cond> {
        Some(match self {
            Cond::Compare(a, op, b) => Cond::Compare(Box::new(f(a)?), *op, Box::new(f(b)?)),
            Cond::And(a, b) => Cond::And(Box::new(a.map_syms(f)?), Box::new(b.map_syms(f)?)),
            Cond::Or(a, b) => Cond::Or(Box::new(a.map_syms(f)?), Box::new(b.map_syms(f)?)),
        })
    }

    pub fn show(&self) -> String {
        match self {
            Cond::Compare(a, op, b) => format!(
                "{} {} {}",
                a.show_at(Level::Sum),
                op.symbol(),
                b.show_at(Level::Sum)
            ),
            Cond::And(..) => self
                .conjuncts()
                .iter()
                .map(|c| match c {
                    Conjunct::Between(lo, x, hi) => format!(
                        "{} <= {} <= {}",
                        lo.show_at(Level::Sum),
                        x.show_at(Level::Sum),
                        hi.show_at(Level::Sum)
                    ),
                    Conjunct::One(c @ Cond::Or(..)) => format!("({})", c.show()),
                    Conjunct::One(c) => c.show(),
                })
                .collect::<Vec<_>>()
                .join(" and "),
            Cond::Or(a, b) => format!("{} or {}", a.show(), b.show()),
        }
    }

    /// The parts of a conjunction, a lower and an upper bound of the same
    /// value paired as a handout writes them: `3 <= j <= N-2` for
    /// `j <= N-2 and j >= 3`.
    pub fn conjuncts(&self) -> Vec<Conjunct<'_>> {
        fn flatten<'c>(c: &'c Cond, out: &mut Vec<&'c Cond>) {
            match c {
                Cond::And(a, b) => {
                    flatten(a, out);
                    flatten(b, out);
                }
                c => out.push(c),
            }
        }
        let mut parts = vec![];
        flatten(self, &mut parts);
        // `x >= a` as (x, a, lower), `x <= b` as (x, b, upper).
        fn bound_of(c: &Cond) -> Option<(&Sym, &Sym, bool)> {
            match c {
                Cond::Compare(x, CompareOp::Ge, a) => Some((x, a, true)),
                Cond::Compare(x, CompareOp::Le, b) => Some((x, b, false)),
                _ => None,
            }
        }
        let mut used = vec![false; parts.len()];
        let mut out = vec![];
        for i in 0..parts.len() {
            if used[i] {
                continue;
            }
            used[i] = true;
            let paired = bound_of(parts[i]).and_then(|(x, a, lower)| {
                let j = (i + 1..parts.len()).find(|&j| {
                    !used[j] && bound_of(parts[j]).is_some_and(|(y, _, l)| y == x && l != lower)
                })?;
                let (_, b, _) = bound_of(parts[j])?;
                Some((
                    j,
                    if lower {
                        Conjunct::Between(a, x, b)
                    } else {
                        Conjunct::Between(b, x, a)
                    },
                ))
            });
            match paired {
                Some((j, c)) => {
                    used[j] = true;
                    out.push(c);
                }
                None => out.push(Conjunct::One(parts[i])),
            }
        }
        out
    }
}

/// A part of a conjunction ([`Cond::conjuncts`]).
pub enum Conjunct<'c> {
    /// `lo <= x <= hi`.
    Between(&'c Sym, &'c Sym, &'c Sym),
    One(&'c Cond),
}

/// A symbolic expression in the spec language.
#[derive(Clone, Debug, PartialEq)]
pub enum Sym {
    Num(f64),
    /// A dim, a hyper or `pi`, by name.
    Atom(String),
    /// An index expression used as a value.
    Index(Ix),
    Access {
        name: String,
        indices: Vec<Ix>,
    },
    Neg(Box<Sym>),
    Add(Vec<Sym>),
    Mul(Vec<Sym>),
    Div(Box<Sym>, Box<Sym>),
    /// `a ^ b`, a real power.
    Pow(Box<Sym>, Box<Sym>),
    PowInt(Box<Sym>, i32),
    Call(String, Vec<Sym>),
    /// `sum(var in lo..=hi) body`.
    Sum {
        var: String,
        lo: Ix,
        hi: Ix,
        body: Box<Sym>,
    },
    Bracket(Cond),
    /// `max(var in lo..=hi) body`, `min(…)` or `prod(…)`.
    Extreme {
        op: ReduceOp,
        var: String,
        lo: Ix,
        hi: Ix,
        body: Box<Sym>,
    },
}

/// Binding strength, loosest first: what a printed operand must exceed to
/// go without parentheses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Sum,
    Product,
    Unary,
    Power,
    Atom,
}

impl Sym {
    pub fn call(name: &str, arg: Sym) -> Sym {
        Sym::Call(name.to_string(), vec![arg])
    }

    pub fn mul(factors: Vec<Sym>) -> Sym {
        Sym::Mul(factors)
    }

    pub fn quotient(a: Sym, b: Sym) -> Sym {
        Sym::Div(Box::new(a), Box::new(b))
    }

    pub fn negative(a: Sym) -> Sym {
        Sym::Neg(Box::new(a))
    }

    pub fn powi(a: Sym, k: i32) -> Sym {
        Sym::PowInt(Box::new(a), k)
    }

    /// Every index expression with `name` replaced by `by`; `None` on overflow.
    pub fn substitute(&self, name: &str, by: &Ix) -> Option<Sym> {
        let sub = |s: &Sym| s.substitute(name, by);
        let boxed = |s: &Sym| sub(s).map(Box::new);
        Some(match self {
            Sym::Num(_) | Sym::Atom(_) => self.clone(),
            Sym::Index(ix) => Sym::Index(ix.substitute(name, by)?),
            Sym::Access { name: n, indices } => Sym::Access {
                name: n.clone(),
                indices: indices
                    .iter()
                    .map(|ix| ix.substitute(name, by))
                    .collect::<Option<_>>()?,
            },
            Sym::Neg(a) => Sym::Neg(boxed(a)?),
            Sym::Add(terms) => Sym::Add(terms.iter().map(sub).collect::<Option<_>>()?),
            Sym::Mul(factors) => Sym::Mul(factors.iter().map(sub).collect::<Option<_>>()?),
            Sym::Div(a, b) => Sym::Div(boxed(a)?, boxed(b)?),
            Sym::Pow(a, b) => Sym::Pow(boxed(a)?, boxed(b)?),
            Sym::PowInt(a, k) => Sym::PowInt(boxed(a)?, *k),
            Sym::Call(f, args) => {
                Sym::Call(f.clone(), args.iter().map(sub).collect::<Option<_>>()?)
            }
            Sym::Sum { var, lo, hi, body } => Sym::Sum {
                var: var.clone(),
                lo: lo.substitute(name, by)?,
                hi: hi.substitute(name, by)?,
                // The sum binds its own variable: nothing of it to replace.
                body: if var == name {
                    body.clone()
                } else {
                    boxed(body)?
                },
            },
            Sym::Bracket(c) => Sym::Bracket(c.map_syms(&mut |s| s.substitute(name, by))?),
            Sym::Extreme {
                op,
                var,
                lo,
                hi,
                body,
            } => Sym::Extreme {
                op: *op,
                var: var.clone(),
                lo: lo.substitute(name, by)?,
                hi: hi.substitute(name, by)?,
                body: if var == name {
                    body.clone()
                } else {
                    boxed(body)?
                },
            },
        })
    }

    /// Every sum, max or min over `var` rebound to `fresh`, so that the
    /// expression can sit inside a reduction over `var` of its own (the
    /// partial of `log(sum(k) …)` carried into that sum's body).
    pub fn rebound(&self, var: &str, fresh: &str) -> Option<Sym> {
        let each = |s: &Sym| s.rebound(var, fresh);
        let boxed = |s: &Sym| each(s).map(Box::new);
        let body_of = |v: &String, body: &Sym| -> Option<(String, Box<Sym>)> {
            let body = body.rebound(var, fresh)?;
            if v == var {
                Some((
                    fresh.to_string(),
                    Box::new(body.substitute(var, &Ix::name(fresh))?),
                ))
            } else {
                Some((v.clone(), Box::new(body)))
            }
        };
        Some(match self {
            Sym::Num(_) | Sym::Atom(_) | Sym::Index(_) | Sym::Access { .. } => self.clone(),
            Sym::Neg(a) => Sym::Neg(boxed(a)?),
            Sym::Add(terms) => Sym::Add(terms.iter().map(each).collect::<Option<_>>()?),
            Sym::Mul(factors) => Sym::Mul(factors.iter().map(each).collect::<Option<_>>()?),
            Sym::Div(a, b) => Sym::Div(boxed(a)?, boxed(b)?),
            Sym::Pow(a, b) => Sym::Pow(boxed(a)?, boxed(b)?),
            Sym::PowInt(a, k) => Sym::PowInt(boxed(a)?, *k),
            Sym::Call(f, args) => {
                Sym::Call(f.clone(), args.iter().map(each).collect::<Option<_>>()?)
            }
            Sym::Bracket(c) => Sym::Bracket(c.map_syms(&mut |s| s.rebound(var, fresh))?),
            Sym::Sum {
                var: v,
                lo,
                hi,
                body,
            } => {
                let (var, body) = body_of(v, body)?;
                Sym::Sum {
                    var,
                    lo: lo.clone(),
                    hi: hi.clone(),
                    body,
                }
            }
            Sym::Extreme {
                op,
                var: v,
                lo,
                hi,
                body,
            } => {
                let (var, body) = body_of(v, body)?;
                Sym::Extreme {
                    op: *op,
                    var,
                    lo: lo.clone(),
                    hi: hi.clone(),
                    body,
                }
            }
        })
    }

    /// Every index name the expression mentions, bound or free.
    pub fn mentions(&self, out: &mut std::collections::HashSet<String>) {
        let ix = |ix: &Ix, out: &mut std::collections::HashSet<String>| {
            out.extend(ix.terms.iter().map(|(n, _)| n.clone()));
        };
        match self {
            Sym::Num(_) | Sym::Atom(_) => {}
            Sym::Index(i) => ix(i, out),
            Sym::Access { indices, .. } => indices.iter().for_each(|i| ix(i, out)),
            Sym::Neg(a) | Sym::PowInt(a, _) => a.mentions(out),
            Sym::Add(v) | Sym::Mul(v) | Sym::Call(_, v) => v.iter().for_each(|s| s.mentions(out)),
            Sym::Div(a, b) | Sym::Pow(a, b) => {
                a.mentions(out);
                b.mentions(out);
            }
            Sym::Bracket(c) => {
                let _ = c.map_syms(&mut |s| {
                    s.mentions(out);
                    Some(s.clone())
                });
            }
            Sym::Sum {
                var, lo, hi, body, ..
            }
            | Sym::Extreme {
                var, lo, hi, body, ..
            } => {
                out.insert(var.clone());
                ix(lo, out);
                ix(hi, out);
                body.mentions(out);
            }
        }
    }

    /// Indices renamed away from a clash (`k_`) given back their plain
    /// name where it is free: in no outer `scope` (which holds the spec's
    /// names) and nowhere in the reduction's body.
    pub fn unprimed(&self, scope: &std::collections::HashSet<String>) -> Sym {
        let each = |s: &Sym| s.unprimed(scope);
        let boxed = |s: &Sym| Box::new(s.unprimed(scope));
        let body_of = |v: &String, body: &Sym| -> (String, Box<Sym>) {
            let mut mentioned = scope.clone();
            body.mentions(&mut mentioned);
            let base = v.trim_end_matches('_').len().max(1);
            let plain = (base..v.len())
                .map(|n| &v[..n])
                .find(|c| !mentioned.contains(*c));
            let (name, body) = match plain {
                Some(c) => (
                    c.to_string(),
                    body.substitute(v, &Ix::name(c))
                        .unwrap_or_else(|| body.clone()),
                ),
                None => (v.clone(), body.clone()),
            };
            let mut inner = scope.clone();
            inner.insert(name.clone());
            (name, Box::new(body.unprimed(&inner)))
        };
        match self {
            Sym::Num(_) | Sym::Atom(_) | Sym::Index(_) | Sym::Access { .. } => self.clone(),
            Sym::Neg(a) => Sym::Neg(boxed(a)),
            Sym::Add(terms) => Sym::Add(terms.iter().map(each).collect()),
            Sym::Mul(factors) => Sym::Mul(factors.iter().map(each).collect()),
            Sym::Div(a, b) => Sym::Div(boxed(a), boxed(b)),
            Sym::Pow(a, b) => Sym::Pow(boxed(a), boxed(b)),
            Sym::PowInt(a, k) => Sym::PowInt(boxed(a), *k),
            Sym::Call(f, args) => Sym::Call(f.clone(), args.iter().map(each).collect()),
            Sym::Bracket(c) => match c.map_syms(&mut |s| Some(s.unprimed(scope))) {
                Some(c) => Sym::Bracket(c),
                None => self.clone(),
            },
            Sym::Sum { var, lo, hi, body } => {
                let (var, body) = body_of(var, body);
                Sym::Sum {
                    var,
                    lo: lo.clone(),
                    hi: hi.clone(),
                    body,
                }
            }
            Sym::Extreme {
                op,
                var,
                lo,
                hi,
                body,
            } => {
                let (var, body) = body_of(var, body);
                Sym::Extreme {
                    op: *op,
                    var,
                    lo: lo.clone(),
                    hi: hi.clone(),
                    body,
                }
            }
        }
    }

    /// The expression as a handout writes it: a factor every term of a
    /// sum shares pulled out (`a * (g[j] + g[j-2])`), a factor that does
    /// not depend on a reduction's index taken out of it
    /// (`dvar[b] * sum(f) …`), and factors common to a quotient's two
    /// sides cancelled (`w / norm` for `2 * w / (2 * norm)`). Brackets are
    /// never cancelled: `[c] / [c]` is 0/0 where c fails.
    pub fn factored(self) -> Sym {
        let s = match self.simplified() {
            Sym::Add(terms) => common_factors(terms.into_iter().map(Sym::factored).collect()),
            Sym::Div(a, b) => cancelled(a.factored(), b.factored()),
            Sym::Sum { var, lo, hi, body } => invariants_out(var, lo, hi, body.factored()),
            // A bracket's condition is left as it is decided and printed.
            b @ Sym::Bracket(_) => b,
            other => other.map_children(&mut Sym::factored),
        };
        s.simplified()
    }

    /// A sum's brackets of indices that do not read its index, taken out of it
    /// (`sum(i) [j >= 2] * …` as `[j >= 2] * sum(i) …`), through nested
    /// sums: the brackets of a term then stand among its factors, where
    /// cases are read from.
    pub fn brackets_out(self) -> Sym {
        let Sym::Sum { var, lo, hi, body } = self else {
            return self;
        };
        let (negative, factors) = signed_factors(body.brackets_out());
        let free = |f: &Sym| {
            let mut names = std::collections::HashSet::new();
            f.mentions(&mut names);
            // A bracket of values reads what the brackets left inside may
            // guard: it stays.
            matches!(f, Sym::Bracket(_)) && !names.contains(&var) && !reads_a_tensor(f)
        };
        let (mut out, inside): (Vec<Sym>, Vec<Sym>) = factors.into_iter().partition(free);
        out.push(Sym::Sum {
            var,
            lo,
            hi,
            body: Box::new(from_factors(negative, inside)),
        });
        Sym::Mul(out).simplified()
    }

    /// Each direct part mapped by `f`: operands, arguments, a reduction's
    /// body (not its bounds), a bracket's two sides.
    fn map_children(self, f: &mut impl FnMut(Sym) -> Sym) -> Sym {
        let boxed = |a: Box<Sym>, f: &mut dyn FnMut(Sym) -> Sym| Box::new(f(*a));
        match self {
            Sym::Num(_) | Sym::Atom(_) | Sym::Index(_) | Sym::Access { .. } => self,
            Sym::Neg(a) => Sym::Neg(boxed(a, f)),
            Sym::Add(v) => Sym::Add(v.into_iter().map(&mut *f).collect()),
            Sym::Mul(v) => Sym::Mul(v.into_iter().map(&mut *f).collect()),
            Sym::Div(a, b) => Sym::Div(boxed(a, f), boxed(b, f)),
            Sym::Pow(a, b) => Sym::Pow(boxed(a, f), boxed(b, f)),
            Sym::PowInt(a, k) => Sym::PowInt(boxed(a, f), k),
            Sym::Call(name, args) => Sym::Call(name, args.into_iter().map(&mut *f).collect()),
            Sym::Sum { var, lo, hi, body } => Sym::Sum {
                var,
                lo,
                hi,
                body: boxed(body, f),
            },
            Sym::Extreme {
                op,
                var,
                lo,
                hi,
                body,
            } => Sym::Extreme {
                op,
                var,
                lo,
                hi,
                body: boxed(body, f),
            },
            Sym::Bracket(c) => {
                let mapped = c.map_syms(&mut |s| Some(f(s.clone())));
                Sym::Bracket(mapped.unwrap_or(c))
            }
        }
    }

    /// Every occurrence of `from` replaced by `to`.
    pub fn replaced(&self, from: &Sym, to: &Sym) -> Sym {
        if self == from {
            return to.clone();
        }
        let each = |s: &Sym| s.replaced(from, to);
        let boxed = |s: &Sym| Box::new(s.replaced(from, to));
        match self {
            Sym::Neg(a) => Sym::Neg(boxed(a)),
            Sym::Add(terms) => Sym::Add(terms.iter().map(each).collect()),
            Sym::Mul(factors) => Sym::Mul(factors.iter().map(each).collect()),
            Sym::Div(a, b) => Sym::Div(boxed(a), boxed(b)),
            Sym::Pow(a, b) => Sym::Pow(boxed(a), boxed(b)),
            Sym::PowInt(a, k) => Sym::PowInt(boxed(a), *k),
            Sym::Call(f, args) => Sym::Call(f.clone(), args.iter().map(each).collect()),
            other => other.clone(),
        }
    }

    /// Folds constants and drops the factors and terms that change nothing:
    /// no `0 *`, `1 *`, `+ 0` or `x^1` is left.
    pub fn simplified(self) -> Sym {
        match self {
            Sym::Neg(a) => match a.simplified() {
                Sym::Num(v) => Sym::Num(-v),
                Sym::Neg(b) => *b,
                a => Sym::Neg(Box::new(a)),
            },
            Sym::Add(terms) => {
                let mut out = vec![];
                // Constants folded only where the sum is exact: `1 + 1e-10`
                // written as `1.0000000001` would be another number.
                let mut constant: Option<f64> = None;
                let flush = |out: &mut Vec<Sym>, c: Option<f64>| {
                    if let Some(c) = c.filter(|c| *c != 0.0) {
                        out.push(Sym::Num(c));
                    }
                };
                for t in terms.into_iter().map(Sym::simplified) {
                    match t {
                        Sym::Num(v) => match constant {
                            Some(c) if exact_sum(c, v) => constant = Some(c + v),
                            c => {
                                flush(&mut out, c);
                                constant = Some(v);
                            }
                        },
                        // Terms keep their places: `1 - y^2`, not `-y^2 + 1`.
                        Sym::Add(inner) => {
                            flush(&mut out, constant.take());
                            out.extend(inner);
                        }
                        t => {
                            flush(&mut out, constant.take());
                            out.push(t);
                        }
                    }
                }
                flush(&mut out, constant);
                match out.len() {
                    0 => Sym::Num(0.0),
                    1 => out.pop().unwrap_or(Sym::Num(0.0)),
                    _ => Sym::Add(out),
                }
            }
            Sym::Mul(factors) => {
                let mut out = vec![];
                let mut constant: f64 = 1.0;
                for f in factors.into_iter().map(Sym::simplified) {
                    match f {
                        Sym::Num(v) if constant.mul_add(v, -(constant * v)) == 0.0 => {
                            constant *= v;
                        }
                        Sym::Neg(a) => {
                            constant = -constant;
                            push_factor(&mut out, *a);
                        }
                        f => push_factor(&mut out, f),
                    }
                }
                if constant == 0.0 {
                    return Sym::Num(0.0);
                }
                // `a * (1 / b)` as `a / b`: the divisors after the factors.
                let mut divisors = vec![];
                out.retain(|f| match f {
                    Sym::Div(a, b) if matches!(a.as_ref(), Sym::Num(v) if *v == 1.0) => {
                        divisors.push(b.as_ref().clone());
                        false
                    }
                    _ => true,
                });
                if !divisors.is_empty() {
                    let over = match divisors.len() {
                        1 => divisors.pop().unwrap_or(Sym::Num(1.0)),
                        _ => Sym::Mul(divisors),
                    };
                    let numerator = Sym::Mul(std::mem::take(&mut out));
                    let signed = if constant == -1.0 {
                        Sym::Neg(Box::new(numerator))
                    } else {
                        Sym::Mul(vec![Sym::Num(constant), numerator])
                    };
                    return Sym::Div(Box::new(signed.simplified()), Box::new(over));
                }
                let product = match out.len() {
                    0 => return Sym::Num(constant),
                    1 => out.pop().unwrap_or(Sym::Num(1.0)),
                    _ => Sym::Mul(out),
                };
                if constant == 1.0 {
                    product
                } else if constant == -1.0 {
                    Sym::Neg(Box::new(product))
                } else {
                    match product {
                        Sym::Mul(mut f) => {
                            f.insert(0, Sym::Num(constant));
                            Sym::Mul(f)
                        }
                        p => Sym::Mul(vec![Sym::Num(constant), p]),
                    }
                }
            }
            Sym::Div(a, b) => match (a.simplified(), b.simplified()) {
                (Sym::Num(0.0), _) => Sym::Num(0.0),
                (a, Sym::Num(1.0)) => a,
                (Sym::Neg(a), b) => Sym::Neg(Box::new(Sym::Div(a, Box::new(b)))),
                (a, b) => Sym::Div(Box::new(a), Box::new(b)),
            },
            Sym::PowInt(a, k) => match (a.simplified(), k) {
                (_, 0) => Sym::Num(1.0),
                (a, 1) => a,
                (a, k) => Sym::PowInt(Box::new(a), k),
            },
            s @ (Sym::Pow(..) | Sym::Call(..) | Sym::Extreme { .. }) => {
                s.map_children(&mut Sym::simplified)
            }
            Sym::Sum { var, lo, hi, body } => match body.simplified() {
                Sym::Num(0.0) => Sym::Num(0.0),
                // The sign out of the sum: `- sum(k) …`.
                Sym::Neg(body) => Sym::Neg(Box::new(Sym::Sum { var, lo, hi, body })),
                body => Sym::Sum {
                    var,
                    lo,
                    hi,
                    body: Box::new(body),
                },
            },
            other => other,
        }
    }

    /// The expression as a spec writes it.
    pub fn show(&self) -> String {
        self.show_at(Level::Sum)
    }

    fn level(&self) -> Level {
        match self {
            Sym::Num(v) if *v < 0.0 => Level::Unary,
            Sym::Index(ix) if ix.terms.len() + usize::from(ix.constant != 0) > 1 => Level::Sum,
            Sym::Index(ix) if ix.terms.iter().any(|(_, c)| *c != 1) => Level::Product,
            Sym::Num(_) | Sym::Atom(_) | Sym::Index(_) | Sym::Access { .. } | Sym::Call(..) => {
                Level::Atom
            }
            Sym::Bracket(_) => Level::Atom,
            Sym::Neg(_) => Level::Unary,
            Sym::Add(_) => Level::Sum,
            // A reduction's body runs over the product that follows it:
            // inside anything it is parenthesized.
            Sym::Sum { .. } | Sym::Extreme { .. } => Level::Sum,
            Sym::Mul(_) | Sym::Div(..) => Level::Product,
            Sym::Pow(..) | Sym::PowInt(..) => Level::Power,
        }
    }

    /// Printed where binding `at` or tighter is needed.
    fn show_at(&self, at: Level) -> String {
        let text = self.show_bare();
        if self.level() < at {
            format!("({text})")
        } else {
            text
        }
    }

    fn show_bare(&self) -> String {
        match self {
            Sym::Num(v) => show_number(*v),
            Sym::Atom(name) => name.clone(),
            Sym::Index(ix) => ix.show(),
            Sym::Access { name, indices } if indices.is_empty() => name.clone(),
            Sym::Access { name, indices } => format!(
                "{name}[{}]",
                indices.iter().map(Ix::show).collect::<Vec<_>>().join(", ")
            ),
            Sym::Neg(a) => format!("-{}", a.show_at(Level::Power)),
            Sym::Add(terms) => {
                let mut out = String::new();
                for (k, t) in terms.iter().enumerate() {
                    match t {
                        Sym::Neg(a) if k > 0 => {
                            let _ = write!(out, " - {}", a.show_at(Level::Product));
                        }
                        Sym::Num(v) if k > 0 && *v < 0.0 => {
                            let _ = write!(out, " - {}", show_number(-v));
                        }
                        _ if k > 0 => {
                            let _ = write!(out, " + {}", t.show_at(Level::Product));
                        }
                        _ => out.push_str(&t.show_at(Level::Sum)),
                    }
                }
                out
            }
            Sym::Mul(factors) => factors
                .iter()
                .map(|f| f.show_at(Level::Power))
                .collect::<Vec<_>>()
                .join(" * "),
            Sym::Div(a, b) => format!(
                "{} / {}",
                a.show_at(Level::Product),
                b.show_at(Level::Power)
            ),
            Sym::Pow(a, b) => format!("{}^{}", a.show_at(Level::Atom), b.show_at(Level::Atom)),
            Sym::PowInt(a, k) if *k < 0 => format!("{}^({k})", a.show_at(Level::Atom)),
            Sym::PowInt(a, k) => format!("{}^{k}", a.show_at(Level::Atom)),
            Sym::Call(f, args) => format!(
                "{f}({})",
                args.iter().map(Sym::show).collect::<Vec<_>>().join(", ")
            ),
            Sym::Sum { var, lo, hi, body } => format!(
                "sum({var} in {}..={}) {}",
                lo.show(),
                hi.show(),
                body.show_at(Level::Product)
            ),
            Sym::Bracket(c) => format!("[{}]", c.show()),
            Sym::Extreme {
                op,
                var,
                lo,
                hi,
                body,
            } => format!(
                "{}({var} in {}..={}) {}",
                reduce_name(*op),
                lo.show(),
                hi.show(),
                body.show_at(Level::Product)
            ),
        }
    }
}

/// A term as its sign and factors: `-(a * b / c)` as (true, [a, b, 1/c]).
fn signed_factors(term: Sym) -> (bool, Vec<Sym>) {
    match term {
        Sym::Neg(a) => {
            let (negative, factors) = signed_factors(*a);
            (!negative, factors)
        }
        Sym::Mul(factors) => {
            let mut negative = false;
            let mut out = vec![];
            for f in factors {
                let (n, fs) = signed_factors(f);
                negative ^= n;
                out.extend(fs);
            }
            (negative, out)
        }
        Sym::Div(a, b) if !matches!(a.as_ref(), Sym::Num(v) if *v == 1.0) => {
            let (negative, mut factors) = signed_factors(*a);
            factors.push(Sym::Div(Box::new(Sym::Num(1.0)), b));
            (negative, factors)
        }
        other => (false, vec![other]),
    }
}

/// A product from its sign and factors.
fn from_factors(negative: bool, factors: Vec<Sym>) -> Sym {
    let product = Sym::Mul(factors);
    if negative {
        Sym::Neg(Box::new(product))
    } else {
        product
    }
}

/// `a*b + a*c` as `a * (b + c)`: the factors every term has.
fn common_factors(terms: Vec<Sym>) -> Sym {
    if terms.len() < 2 {
        return Sym::Add(terms);
    }
    let mut split: Vec<(bool, Vec<Sym>)> = terms.iter().cloned().map(signed_factors).collect();
    let mut common = vec![];
    let first = split.first().map(|(_, f)| f.clone()).unwrap_or_default();
    for candidate in first {
        if matches!(candidate, Sym::Num(_)) {
            continue;
        }
        if split.iter().all(|(_, fs)| fs.contains(&candidate)) {
            for (_, fs) in &mut split {
                if let Some(k) = fs.iter().position(|f| *f == candidate) {
                    fs.remove(k);
                }
            }
            common.push(candidate);
        }
    }
    // A read leaves its terms only where no bracket stays behind in them:
    // brackets guard the reads of their product (`[j >= 2] * x[j-1]`).
    let guarded = split
        .iter()
        .any(|(_, fs)| fs.iter().any(|f| matches!(f, Sym::Bracket(_))));
    if guarded {
        let (reads, rest): (Vec<Sym>, Vec<Sym>) = common.into_iter().partition(reads_a_tensor);
        for (_, fs) in &mut split {
            fs.extend(reads.iter().cloned());
        }
        common = rest;
    }
    if common.is_empty() {
        return Sym::Add(terms);
    }
    let rest = split
        .into_iter()
        .map(|(negative, fs)| from_factors(negative, fs))
        .collect();
    common.push(Sym::Add(rest));
    Sym::Mul(common)
}

/// `sum(k) a * b[k]` as `a * sum(k) b[k]`: the factors that do not read
/// the reduction's index go out of it (brackets of it stay in).
fn invariants_out(var: String, lo: Ix, hi: Ix, body: Sym) -> Sym {
    let (negative, factors) = signed_factors(body);
    let reads_var = |f: &Sym| {
        let mut names = std::collections::HashSet::new();
        f.mentions(&mut names);
        names.contains(&var)
    };
    // Brackets of the index stay in, and so must every read they guard.
    let guarded = factors
        .iter()
        .any(|f| matches!(f, Sym::Bracket(_)) && reads_var(f));
    let (inside, outside): (Vec<Sym>, Vec<Sym>) = factors
        .into_iter()
        .partition(|f| reads_var(f) || (guarded && reads_a_tensor(f)));
    if inside.is_empty() || outside.is_empty() {
        let mut all = outside;
        all.extend(inside);
        return Sym::Sum {
            var,
            lo,
            hi,
            body: Box::new(from_factors(negative, all)),
        };
    }
    let mut product = outside;
    product.push(Sym::Sum {
        var,
        lo,
        hi,
        body: Box::new(Sym::Mul(inside)),
    });
    from_factors(negative, product)
}

/// Whether an expression reads an element of a tensor or a definition.
fn reads_a_tensor(s: &Sym) -> bool {
    match s {
        Sym::Access { .. } => true,
        Sym::Num(_) | Sym::Atom(_) | Sym::Index(_) => false,
        Sym::Neg(a) | Sym::PowInt(a, _) => reads_a_tensor(a),
        Sym::Add(v) | Sym::Mul(v) | Sym::Call(_, v) => v.iter().any(reads_a_tensor),
        Sym::Div(a, b) | Sym::Pow(a, b) => reads_a_tensor(a) || reads_a_tensor(b),
        Sym::Sum { body, .. } | Sym::Extreme { body, .. } => reads_a_tensor(body),
        Sym::Bracket(c) => {
            let mut reads = false;
            let _ = c.map_syms(&mut |s| {
                reads |= reads_a_tensor(s);
                Some(s.clone())
            });
            reads
        }
    }
}

/// `a * b / (a * c)` as `b / c`, for factors other than brackets.
fn cancelled(numerator: Sym, denominator: Sym) -> Sym {
    let (n_negative, mut top) = signed_factors(numerator.clone());
    let (d_negative, bottom) = signed_factors(denominator.clone());
    let mut kept = vec![];
    let mut any = false;
    for f in bottom {
        let plain = !matches!(f, Sym::Bracket(_) | Sym::Div(..));
        match top.iter().position(|t| *t == f).filter(|_| plain) {
            Some(k) => {
                top.remove(k);
                any = true;
            }
            None => kept.push(f),
        }
    }
    if !any {
        return Sym::Div(Box::new(numerator), Box::new(denominator));
    }
    let quotient = Sym::Div(Box::new(Sym::Mul(top)), Box::new(Sym::Mul(kept)));
    if n_negative != d_negative {
        Sym::Neg(Box::new(quotient))
    } else {
        quotient
    }
}

/// `max`, `min` or `prod`, as the spec writes the reduction.
pub fn reduce_name(op: ReduceOp) -> &'static str {
    match op {
        ReduceOp::Max => "max",
        ReduceOp::Min => "min",
        ReduceOp::Prod => "prod",
        ReduceOp::Sum => "sum",
        ReduceOp::Mean => "mean",
    }
}

/// Whether `a + b` is exact in f64 (Knuth's two-sum has no error).
fn exact_sum(a: f64, b: f64) -> bool {
    let s = a + b;
    let b_virtual = s - a;
    let error = (a - (s - b_virtual)) + (b - b_virtual);
    s.is_finite() && error == 0.0
}

/// A factor into a product, flattening nested products.
fn push_factor(out: &mut Vec<Sym>, f: Sym) {
    match f {
        Sym::Mul(inner) => out.extend(inner),
        f => out.push(f),
    }
}

/// A number as the spec language reads it back exactly.
fn show_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_expressions_read_as_written() {
        let n_minus_i = Ix::name("N").plus(&Ix::name("i"), -1);
        assert_eq!(n_minus_i.map(|ix| ix.show()).as_deref(), Some("N-i"));
        let two_k_less_1 = Ix::name("k")
            .plus(&Ix::name("k"), 1)
            .and_then(|k| k.plus(&Ix::constant(1), -1));
        assert_eq!(two_k_less_1.map(|ix| ix.show()).as_deref(), Some("2*k-1"));
        assert_eq!(Ix::constant(-3).show(), "-3");
    }

    #[test]
    fn substitution_solves_a_kronecker_bracket() {
        // i+2 with i := j-2 is j.
        let i_plus_2 = Ix::name("i").plus(&Ix::constant(2), 1).unwrap_or_default();
        let j_less_2 = Ix::name("j").plus(&Ix::constant(2), -1).unwrap_or_default();
        assert_eq!(i_plus_2.substitute("i", &j_less_2), Some(Ix::name("j")));
    }

    #[test]
    fn simplification_leaves_no_zero_or_one_factors() {
        let g = Sym::Access {
            name: "g".into(),
            indices: vec![Ix::name("j")],
        };
        let e = Sym::Add(vec![
            Sym::Mul(vec![Sym::Num(1.0), g.clone(), Sym::Num(1.0)]),
            Sym::Mul(vec![Sym::Num(0.0), g.clone()]),
            Sym::Neg(Box::new(Sym::Neg(Box::new(Sym::PowInt(Box::new(g), 1))))),
        ]);
        assert_eq!(e.simplified().show(), "g[j] + g[j]");
    }

    #[test]
    fn constants_fold_only_where_the_result_is_exact() {
        let x = Sym::Atom("x".into());
        let sum = Sym::Add(vec![x.clone(), Sym::Num(1.0), Sym::Num(1e-10)]);
        assert_eq!(sum.simplified().show(), "x + 1 + 1e-10");
        let product = Sym::Mul(vec![Sym::Num(2.0), x.clone(), Sym::Num(3.0)]);
        assert_eq!(product.simplified().show(), "6 * x");
        let inexact = Sym::Mul(vec![Sym::Num(0.1), x, Sym::Num(3.0)]);
        assert_eq!(inexact.simplified().show(), "0.1 * x * 3");
    }

    #[test]
    fn factoring_pulls_out_shares_and_cancels_but_never_a_bracket() {
        let at = |name: &str, i: &str| Sym::Access {
            name: name.into(),
            indices: vec![Ix::name(i)],
        };
        let a = Sym::Atom("a".into());
        // a*g[j] - g[k]*a: a shared, the sign kept with its term.
        let shared = Sym::Add(vec![
            Sym::Mul(vec![a.clone(), at("g", "j")]),
            Sym::negative(Sym::Mul(vec![at("g", "k"), a.clone()])),
        ]);
        assert_eq!(shared.factored().show(), "a * (g[j] - g[k])");
        // sum(k) d[b] * x[k] / s: what does not read k goes out.
        let sum = Sym::Sum {
            var: "k".into(),
            lo: Ix::constant(1),
            hi: Ix::name("n"),
            body: Box::new(Sym::quotient(
                Sym::Mul(vec![at("d", "b"), at("x", "k")]),
                a.clone(),
            )),
        };
        assert_eq!(sum.factored().show(), "d[b] * (sum(k in 1..=n) x[k]) / a");
        // 2 * w / (2 * norm): the 2 cancels.
        let quotient = Sym::quotient(
            Sym::Mul(vec![Sym::Num(2.0), at("w", "j")]),
            Sym::Mul(vec![Sym::Num(2.0), at("norm", "j")]),
        );
        assert_eq!(quotient.factored().show(), "w[j] / norm[j]");
        // [c] * x / [c] is 0/0 where c fails: it stays.
        let c = Sym::Bracket(Cond::Compare(
            Box::new(Sym::Index(Ix::name("j"))),
            CompareOp::Ge,
            Box::new(Sym::Index(Ix::constant(2))),
        ));
        let guarded = Sym::quotient(Sym::Mul(vec![c.clone(), at("x", "j")]), c);
        assert_eq!(guarded.factored().show(), "[j >= 2] * x[j] / [j >= 2]");
    }

    #[test]
    fn a_lower_and_an_upper_bound_of_one_index_read_as_a_chain() {
        let ix = |s: &str| Sym::Index(Ix::name(s));
        let cmp = |a: Sym, op, b: Sym| Cond::Compare(Box::new(a), op, Box::new(b));
        let n_less_2 = Sym::Index(Ix::name("N").plus(&Ix::constant(2), -1).unwrap_or_default());
        let three = Sym::Index(Ix::constant(3));
        let both = Cond::And(
            Box::new(cmp(ix("j"), CompareOp::Le, n_less_2)),
            Box::new(cmp(ix("j"), CompareOp::Ge, three.clone())),
        );
        assert_eq!(both.show(), "3 <= j <= N-2");
        // Bounds of two indices stay apart.
        let apart = Cond::And(
            Box::new(cmp(ix("j"), CompareOp::Ge, three.clone())),
            Box::new(cmp(ix("k"), CompareOp::Le, three)),
        );
        assert_eq!(apart.show(), "j >= 3 and k <= 3");
    }

    #[test]
    fn printing_keeps_sums_and_powers_apart() {
        let x = |i: &str| Sym::Access {
            name: "x".into(),
            indices: vec![Ix::name(i)],
        };
        let sum = Sym::Sum {
            var: "k".into(),
            lo: Ix::constant(1),
            hi: Ix::name("N"),
            body: Box::new(Sym::Add(vec![x("k"), Sym::Num(1.0)])),
        };
        let e = Sym::Mul(vec![
            sum,
            Sym::powi(Sym::Add(vec![x("j"), Sym::Num(-2.0)]), 2),
        ]);
        assert_eq!(e.show(), "(sum(k in 1..=N) (x[k] + 1)) * (x[j] - 2)^2");
    }
}
