//! `dlverify derive`: the closed-form gradient of L in every input and
//! param, derived from the forward definitions and written in the spec
//! language, for the engine to verify like any hand-written claim.
//!
//! Reverse mode, done symbolically. Every definition gets an adjoint, its
//! gradient of L: `g` for a layer, 1 for a loss, and for a `let` the sum of
//! what its readers send back, written as a `let` of its own (`dnorm[i]`,
//! the handout's ∂L/∂norm[i]). A reader `R[q] = body` sends to each element
//! it reads, `X[A(q, r)]`, the adjoint of `R[q]` times the partial of the
//! body in that read (the chain rule along the path from the body's root,
//! `r` the indices of the reductions on the way). Summed over every `q` and
//! `r` that read `X[p]`, that is the scatter
//!
//! ```text
//! sum(q) sum(r) [A(q, r) == p] * dR[q] * ∂body/∂X[A(q, r)]
//! ```
//!
//! and the Kronecker brackets turn it into a gather: where an index has a
//! coefficient ±1 in `A`, the bracket is solved for it, it is substituted
//! everywhere, and its sum becomes the bracket of the range it ran over
//! (`x[i+2]` under `for i in 1..=N-2` gives `[3 <= j <= N] * g[j-2]`).
//! Brackets that no index solves stay, which is still exact.
//!
//! A max or min sends its adjoint to the values equal to it, split
//! evenly at a tie (`[x[k] == m] / sum(k') [x[k'] == m]`), as PyTorch's
//! `amax` and `maximum` do; the derived lines say so in a comment.
//!
//! A let that reads earlier steps gets an adjoint that reads later ones
//! (`dh[t+1, i]`), which the engine computes backwards; a whole-number
//! index `x[floor((h+1)/2)]` is the single-term sum it reads, whose bracket
//! stays.
//!
//! A product over an index sends each term the product of the others,
//! written `prod(k') [k' == k] + [k' != k] * f(k')` so that a zero among
//! them is no 0/0.
//!
//! What it cannot derive yet (random tensors, functions with jumps) is
//! refused with a
//! diagnostic rather than derived wrong.

mod error;
pub mod sheet;
pub mod sym;

use std::collections::{HashMap, HashSet};

pub use error::DeriveError;
use sym::{Cond, Ix, Sym};

use crate::analysis::program::*;
use crate::analysis::visit_body;
use crate::source::Span;
use crate::syntax::ast::{BinaryOp, CompareOp, ReduceOp};

/// A derivation: the forward definitions it starts from and the lines it
/// derives, each as a structure (for a solution sheet) and as text.
#[derive(Clone, Debug, PartialEq)]
pub struct Derived {
    /// The definitions L depends on, in the spec's order, as written.
    pub forward: Vec<Definition>,
    pub lines: Vec<DerivedLine>,
}

/// One line of a derivation: an adjoint `let`, a `grad` claim or a note.
#[derive(Clone, Debug, PartialEq)]
pub struct DerivedLine {
    pub kind: LineKind,
    /// What the line defines; `None` for a note.
    pub definition: Option<Definition>,
    /// The line as the spec language writes it.
    pub text: String,
}

/// `name[indices] = value` for its indices' ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub role: Role,
    pub name: String,
    pub indices: Vec<String>,
    /// Each index's range where the line states it (a `let`'s `for`).
    pub ranges: Vec<(Ix, Ix)>,
    pub value: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A forward `let`, the layer or the loss.
    Forward(DefKind),
    /// `dnorm[i]`: the adjoint of a forward `let`.
    Adjoint,
    /// The gradient of L in an input or param.
    Grad,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Expr(Sym),
    /// Each case's value and condition; `None` for `otherwise`.
    Cases(Vec<(Sym, Option<Cond>)>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// `let dnorm[i] = …`: a definition's adjoint.
    Adjoint,
    /// `grad w[i, j] = …`, of the tensor named.
    Grad(TensorId),
    /// A comment: a convention the derivation chose.
    Note,
}

/// The convention at a tie, stated wherever a max or min is derived.
pub const TIE_NOTE: &str =
    "# At a tie of max or min, the gradient is split evenly among the tied values.";

/// The gradient of L in every input and param, and the adjoints it reads.
pub fn derive(program: &Program) -> Result<Derived, DeriveError> {
    let output = program.output.ok_or(DeriveError::NoOutput)?;
    let deriver = Deriver::new(program, output);
    deriver.check_supported()?;
    let live = &deriver.live;
    let mut lines = vec![];
    if deriver.meets_a_tie() {
        lines.push(DerivedLine {
            kind: LineKind::Note,
            definition: None,
            text: TIE_NOTE.to_string(),
        });
    }
    // Adjoints from the output back: each reads those of its readers.
    for (k, def) in program.defs.iter().enumerate().rev() {
        if k == output.def.0 || !live[k] || def.local_to.is_some() {
            continue;
        }
        let names = def.var_names.get(..def.rank).unwrap_or(&[]).to_vec();
        let body = deriver
            .gradient_of(Target::Def(DefId(k)), &names, &def.axes)?
            .unprimed(&deriver.scope(&names));
        let definition = Definition {
            role: Role::Adjoint,
            name: deriver.adjoint_names[k].clone(),
            ranges: def
                .axes
                .iter()
                .map(|a| (deriver.ix(&a.lo), deriver.ix(&a.hi)))
                .collect(),
            value: deriver.value(body, &names, &def.axes),
            indices: names,
        };
        lines.push(DerivedLine {
            kind: LineKind::Adjoint,
            text: definition.show(),
            definition: Some(definition),
        });
    }
    for (t, tensor) in program.tensors.iter().enumerate() {
        if !tensor.is_differentiable() {
            continue;
        }
        let names = deriver.tensor_index_names(tensor.axes.len());
        let body = deriver
            .gradient_of(Target::Tensor(TensorId(t)), &names, &tensor.axes)?
            .unprimed(&deriver.scope(&names));
        let definition = Definition {
            role: Role::Grad,
            name: tensor.name.clone(),
            ranges: vec![],
            value: deriver.value(body, &names, &tensor.axes),
            indices: names,
        };
        lines.push(DerivedLine {
            kind: LineKind::Grad(TensorId(t)),
            text: definition.show(),
            definition: Some(definition),
        });
    }
    Ok(Derived {
        forward: deriver.forward()?,
        lines,
    })
}

impl Definition {
    /// `dnorm[i]`, `x[j]`, `L`.
    pub fn head(&self) -> String {
        if self.indices.is_empty() {
            self.name.clone()
        } else {
            format!("{}[{}]", self.name, self.indices.join(", "))
        }
    }

    /// The line as the spec language writes it.
    pub fn show(&self) -> String {
        let lead = match self.role {
            Role::Forward(DefKind::Let) | Role::Adjoint => format!("let {} = ", self.head()),
            Role::Forward(DefKind::Loss) => format!("loss {} = ", self.head()),
            Role::Forward(_) => format!("{} = ", self.head()),
            Role::Grad => format!("grad {} = ", self.head()),
        };
        let value = match &self.value {
            Value::Expr(e) => format!("{lead}{}", e.show()),
            Value::Cases(cases) => show_cases(&lead, cases),
        };
        let ranges: Vec<String> = (self.indices.iter().zip(&self.ranges))
            .map(|(n, (lo, hi))| format!("{n} in {}..={}", lo.show(), hi.show()))
            .collect();
        if ranges.is_empty() {
            value
        } else {
            format!("{value}    for {}", ranges.join(", "))
        }
    }
}

/// Most terms a gradient is split into cases for: 2^terms − 1 sets of
/// terms, most of them contradictory where the brackets exclude one
/// another (`[q == 1]`, `[q == 2]`, …), and most cases written out.
const MOST_CASE_TERMS: usize = 5;
const MOST_CASES: usize = 6;

/// A gradient whose terms hold on parts of the axis (`[j <= N-2] * …`,
/// `[3 <= j] * …`) as non-overlapping cases, as a handout writes the
/// boundaries: one case per set of terms that hold together, the rest 0.
/// `None` where no term has such a bracket, or there are too many terms.
fn as_cases(
    body: &Sym,
    names: &[String],
    dims: &HashSet<&str>,
    facts: &[Cond],
) -> Option<Vec<(Sym, Option<Cond>)>> {
    let terms: Vec<&Sym> = match body {
        Sym::Add(terms) => terms.iter().collect(),
        other => vec![other],
    };
    if terms.len() > MOST_CASE_TERMS {
        return None;
    }
    // Each term's brackets on the target's indices alone, and the rest.
    let on_axis = |c: &Cond| match c {
        Cond::Compare(a, _, b) => [a, b].iter().all(|s| match s.as_ref() {
            Sym::Index(ix) => ix
                .terms
                .iter()
                .all(|(n, _)| names.contains(n) || dims.contains(n.as_str())),
            _ => false,
        }),
        _ => false,
    };
    let mut split: Vec<(Vec<Cond>, Sym)> = vec![];
    for term in terms {
        let factors = match term {
            Sym::Mul(f) => f.clone(),
            other => vec![other.clone()],
        };
        let (brackets, rest): (Vec<Sym>, Vec<Sym>) = factors
            .into_iter()
            .partition(|f| matches!(f, Sym::Bracket(c) if on_axis(c)));
        let conds = brackets
            .into_iter()
            .filter_map(|b| match b {
                Sym::Bracket(c) => Some(c),
                _ => None,
            })
            .collect();
        split.push((conds, Sym::Mul(rest).simplified()));
    }
    if split.iter().all(|(conds, _)| conds.is_empty()) {
        return None;
    }
    let all = |conds: &[Cond]| {
        conds
            .iter()
            .cloned()
            .reduce(|a, b| Cond::And(Box::new(a), Box::new(b)))
    };
    let mut cases = vec![];
    // The sets of terms, most terms first: where all hold, where all but one…
    let n = split.len();
    let mut subsets: Vec<usize> = (1..1usize << n).collect();
    subsets.sort_by_key(|s| std::cmp::Reverse(s.count_ones()));
    for subset in subsets {
        let mut conds: Vec<Cond> = vec![];
        let mut values = vec![];
        for (k, (term_conds, value)) in split.iter().enumerate() {
            if subset & (1 << k) != 0 {
                conds.extend(term_conds.iter().cloned());
                values.push(value.clone());
            } else {
                match all(term_conds) {
                    Some(c) => conds.push(tidy_all(c.negated(), names)),
                    // A term with no bracket holds everywhere: it is in every set.
                    None => conds.push(Cond::Compare(
                        Box::new(Sym::Num(0.0)),
                        CompareOp::Eq,
                        Box::new(Sym::Num(1.0)),
                    )),
                }
            }
        }
        if conds.iter().any(is_false) {
            continue;
        }
        let Some(conds) = consistent(conds, facts) else {
            continue;
        };
        // A set that holds wherever the axes run leaves no room for others.
        let cond = all(&conds)?;
        cases.push((Sym::Add(values).simplified(), Some(cond)));
    }
    if cases.len() > MOST_CASES {
        return None;
    }
    // Where no term holds: 0, unless the cases cover the axes (`t <= T-1`
    // and `t >= T`): then the last case is the rest.
    let always = split.iter().any(|(term_conds, _)| term_conds.is_empty());
    let none_holds: Vec<Cond> = split
        .iter()
        .filter_map(|(term_conds, _)| all(term_conds).map(|c| tidy_all(c.negated(), names)))
        .collect();
    if !always && consistent(none_holds, facts).is_some() {
        cases.push((Sym::Num(0.0), None));
    } else if let Some(last) = cases.last_mut() {
        last.1 = None;
    }
    Some(cases)
}

/// Terms that differ only in one bracket and its complement as one term
/// without it: the two cases of a definition read alike
/// (`[j >= 2] * X + [j <= 1] * X` is X).
fn merged_cases(mut terms: Vec<Sym>, names: &[String]) -> Vec<Sym> {
    let split = |t: &Sym| -> (Vec<Cond>, Vec<Sym>) {
        let factors = match t {
            Sym::Mul(f) => f.clone(),
            other => vec![other.clone()],
        };
        let mut conds = vec![];
        let mut rest = vec![];
        for f in factors {
            match f {
                Sym::Bracket(c) => conds.push(c),
                f => rest.push(f),
            }
        }
        (conds, rest)
    };
    'search: loop {
        for a in 0..terms.len() {
            for b in a + 1..terms.len() {
                let ((ca, ra), (cb, rb)) = (split(&terms[a]), split(&terms[b]));
                if ra != rb || ca.len() != cb.len() {
                    continue;
                }
                let differing: Vec<usize> = (0..ca.len()).filter(|k| ca[*k] != cb[*k]).collect();
                let [k] = differing.as_slice() else { continue };
                if tidy_all(ca[*k].negated(), names) != cb[*k] {
                    continue;
                }
                let mut factors: Vec<Sym> = ca
                    .into_iter()
                    .enumerate()
                    .filter(|(m, _)| m != k)
                    .map(|(_, c)| Sym::Bracket(c))
                    .collect();
                factors.extend(ra);
                terms[a] = Sym::Mul(factors).simplified();
                terms.remove(b);
                continue 'search;
            }
        }
        return terms;
    }
}

/// A case's conditions with those others imply left out, or `None` where
/// they contradict one another (`j >= 2 and j <= 1`). Comparisons of one
/// index with bounds a constant apart are decided; an `or` is kept only
/// where none of its sides is known.
fn consistent(conds: Vec<Cond>, facts: &[Cond]) -> Option<Vec<Cond>> {
    let mut conjuncts = vec![];
    for c in conds {
        split_and(c, &mut conjuncts);
    }
    // What the axes say goes first, and is not written: it always holds.
    let mut kept: Vec<Cond> = facts.to_vec();
    for c in conjuncts {
        if kept.contains(&c) {
            continue;
        }
        match known(&kept, &c) {
            Some(true) => continue,
            Some(false) => return None,
            None => {}
        }
        // A new bound may make an earlier one redundant (not a fact: those
        // stay first, and are dropped below).
        let mut k = facts.len();
        while k < kept.len() {
            if known(std::slice::from_ref(&c), &kept[k]) == Some(true) {
                kept.remove(k);
            } else {
                k += 1;
            }
        }
        kept.push(c);
    }
    // An `or` whose sides the rest decides.
    let mut out = vec![];
    for (k, c) in kept.iter().enumerate().skip(facts.len()) {
        let others: Vec<Cond> = (kept.iter().enumerate())
            .filter(|(m, _)| *m != k)
            .map(|(_, c)| c.clone())
            .collect();
        match known(&others, c) {
            Some(true) => {}
            Some(false) => return None,
            None => out.push(c.clone()),
        }
    }
    Some(out)
}

/// Whether `c` holds wherever all of `facts` hold (`Some(true)`), nowhere
/// (`Some(false)`), or either.
fn known(facts: &[Cond], c: &Cond) -> Option<bool> {
    match c {
        Cond::Or(a, b) => match (known(facts, a), known(facts, b)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Cond::And(a, b) => match (known(facts, a), known(facts, b)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Cond::Compare(..) => implied_by(facts, c),
    }
}

/// What comparisons of an index expression say of another comparison of
/// it with a bound a constant away from theirs: `j >= 3` makes `j >= 2`
/// hold, `j <= T` and `j >= T` make `j != T` fail.
fn implied_by(facts: &[Cond], c: &Cond) -> Option<bool> {
    let Cond::Compare(cl, cop, cr) = c else {
        return None;
    };
    let (Sym::Index(cl), Sym::Index(cr)) = (cl.as_ref(), cr.as_ref()) else {
        return None;
    };
    // The index less c's bound lies in lo..=hi (None: unbounded); what is
    // excluded of it by `!=` facts, at that offset.
    let (mut lo, mut hi): (Option<i64>, Option<i64>) = (None, None);
    let mut excluded: Vec<i64> = vec![];
    for fact in facts {
        let Cond::Compare(fl, fop, fr) = fact else {
            continue;
        };
        let (Sym::Index(fl), Sym::Index(fr)) = (fl.as_ref(), fr.as_ref()) else {
            continue;
        };
        if fl != cl {
            continue;
        }
        let Some(d) = fr
            .plus(cr, -1)
            .filter(|d| d.terms.is_empty())
            .map(|d| d.constant)
        else {
            continue;
        };
        let raise = |lo: &mut Option<i64>, v: i64| *lo = Some(lo.map_or(v, |l| l.max(v)));
        let lower = |hi: &mut Option<i64>, v: i64| *hi = Some(hi.map_or(v, |h| h.min(v)));
        match fop {
            CompareOp::Eq => {
                raise(&mut lo, d);
                lower(&mut hi, d);
            }
            CompareOp::Ge => raise(&mut lo, d),
            CompareOp::Gt => raise(&mut lo, d + 1),
            CompareOp::Le => lower(&mut hi, d),
            CompareOp::Lt => lower(&mut hi, d - 1),
            CompareOp::Ne => excluded.push(d),
        }
    }
    // An end that is excluded moves in by one (q != 1 with q >= 1).
    while let Some(l) = lo.filter(|l| excluded.contains(l)) {
        lo = Some(l + 1);
    }
    while let Some(h) = hi.filter(|h| excluded.contains(h)) {
        hi = Some(h - 1);
    }
    if let (Some(l), Some(h)) = (lo, hi)
        && l > h
    {
        // The facts contradict one another: nothing holds there.
        return Some(false);
    }
    let at_least = |v: i64| lo.is_some_and(|l| l >= v);
    let at_most = |v: i64| hi.is_some_and(|h| h <= v);
    match cop {
        CompareOp::Ge if at_least(0) => Some(true),
        CompareOp::Ge if at_most(-1) => Some(false),
        CompareOp::Gt if at_least(1) => Some(true),
        CompareOp::Gt if at_most(0) => Some(false),
        CompareOp::Le if at_most(0) => Some(true),
        CompareOp::Le if at_least(1) => Some(false),
        CompareOp::Lt if at_most(-1) => Some(true),
        CompareOp::Lt if at_least(0) => Some(false),
        CompareOp::Eq if at_least(0) && at_most(0) => Some(true),
        CompareOp::Eq if at_least(1) || at_most(-1) || excluded.contains(&0) => Some(false),
        CompareOp::Ne if at_least(1) || at_most(-1) || excluded.contains(&0) => Some(true),
        CompareOp::Ne if at_least(0) && at_most(0) => Some(false),
        _ => None,
    }
}

/// [`tidy`] through `and` and `or`.
fn tidy_all(c: Cond, names: &[String]) -> Cond {
    match c {
        Cond::And(a, b) => Cond::And(Box::new(tidy_all(*a, names)), Box::new(tidy_all(*b, names))),
        Cond::Or(a, b) => Cond::Or(Box::new(tidy_all(*a, names)), Box::new(tidy_all(*b, names))),
        c => tidy(c, names),
    }
}

/// `0 == 1`: the condition of a set that leaves out a term holding everywhere.
fn is_false(c: &Cond) -> bool {
    matches!(c, Cond::Compare(a, CompareOp::Eq, b)
        if matches!((a.as_ref(), b.as_ref()), (Sym::Num(x), Sym::Num(y)) if x != y))
}

/// `head value if c | value if c | 0 otherwise`, one case a line.
fn show_cases(head: &str, cases: &[(Sym, Option<Cond>)]) -> String {
    let values: Vec<String> = cases.iter().map(|(v, _)| v.show()).collect();
    let width = values.iter().map(|v| v.chars().count()).max().unwrap_or(0);
    let indent = " ".repeat(head.chars().count().saturating_sub(2));
    let mut out = String::new();
    for (k, ((_, cond), value)) in cases.iter().zip(&values).enumerate() {
        let guard = match cond {
            Some(c) => format!("if {}", c.show()),
            None => "otherwise".to_string(),
        };
        let lead = if k == 0 {
            head.to_string()
        } else {
            format!("\n{indent}| ")
        };
        out.push_str(&format!("{lead}{value:<width$}   {guard}"));
    }
    out
}

/// What a read reaches: a tensor L is differentiated in, or a definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Tensor(TensorId),
    Def(DefId),
}

/// An index a term still sums over, with the range it runs over.
#[derive(Clone, Debug)]
struct Binder {
    var: String,
    lo: Ix,
    hi: Ix,
}

/// The partial of a body in one of its reads: the read's indices, the
/// chain of local partials from the body's root, and the reductions on
/// the way.
struct Partial {
    target: Target,
    indices: Vec<Ix>,
    factor: Sym,
    binders: Vec<Binder>,
    /// Brackets the reductions' further bounds add (a range inferred from
    /// several accesses runs from the largest lower bound).
    bounds: Vec<Cond>,
}

struct Deriver<'p> {
    program: &'p Program,
    output: Output,
    /// Every name the spec declares: fresh names avoid them.
    taken: HashSet<String>,
    /// The adjoint `let` of each definition, by name.
    adjoint_names: Vec<String>,
    /// Per definition: part of L and depending on an input or param
    /// ([`Deriver::differentiable_defs`]), found once.
    live: Vec<bool>,
}

impl<'p> Deriver<'p> {
    fn new(program: &'p Program, output: Output) -> Self {
        let mut taken: HashSet<String> = program.dims.iter().map(|d| d.name.clone()).collect();
        taken.extend(program.hypers.iter().map(|h| h.name.clone()));
        taken.extend(program.tensors.iter().map(|t| t.name.clone()));
        taken.extend(program.defs.iter().map(|d| d.name.clone()));
        taken.extend(["pi".to_string(), "g".to_string()]);
        let mut adjoint_names = vec![];
        for def in &program.defs {
            let mut name = format!("d{}", def.name);
            while taken.contains(&name) {
                name.push('_');
            }
            taken.insert(name.clone());
            adjoint_names.push(name);
        }
        let mut deriver = Self {
            program,
            output,
            taken,
            adjoint_names,
            live: vec![],
        };
        deriver.live = deriver.differentiable_defs();
        deriver
    }

    /// Refuses the constructs this derivation does not cover, at the first.
    fn check_supported(&self) -> Result<(), DeriveError> {
        let program = self.program;
        if !program.randoms.is_empty() {
            let span = program.randoms.first().map_or(Span::new(0, 0), |r| r.span);
            return Err(DeriveError::unsupported(
                "a random tensor",
                span,
                "derive works on layers and losses of inputs and params; a stochastic claim is checked, not derived",
            ));
        }
        // Only what carries a gradient: a let of sizes alone (the floor of
        // a pooling window's start) is read as it is, never differentiated.
        for (def, _) in program
            .defs
            .iter()
            .zip(&self.live)
            .filter(|(_, live)| **live)
        {
            if def.local_to.is_some() {
                continue;
            }
            let mut problem = None;
            visit_body(&def.body, &mut |n| {
                if problem.is_none() {
                    problem = unsupported(n);
                }
            });
            if let Some((what, span, help)) = problem {
                return Err(DeriveError::unsupported(what, span, help));
            }
        }
        Ok(())
    }

    /// The definitions L depends on, as the spec writes them.
    fn forward(&self) -> Result<Vec<Definition>, DeriveError> {
        let feeds = self.feeds_output();
        let mut out = vec![];
        for (k, def) in self.program.defs.iter().enumerate() {
            if !feeds[k] || def.local_to.is_some() {
                continue;
            }
            let mut used = self.taken.clone();
            let names = slot_names(def, &mut used);
            let walker = Walker {
                program: self.program,
                names: &names,
                used: &used,
                roots: vec![],
            };
            let value = match &def.body {
                Body::Expr(e) => Value::Expr(walker.sym(e)?),
                Body::Cases(cases) => Value::Cases(
                    cases
                        .iter()
                        .map(|c| {
                            Ok((
                                walker.sym(&c.value)?,
                                c.condition.as_ref().map(|c| walker.cond(c)).transpose()?,
                            ))
                        })
                        .collect::<Result<_, DeriveError>>()?,
                ),
            };
            let explicit = def.kind == DefKind::Let || !def.axes.is_empty();
            out.push(Definition {
                role: Role::Forward(def.kind),
                name: def.name.clone(),
                indices: names.get(..def.rank).unwrap_or(&[]).to_vec(),
                ranges: if explicit {
                    def.axes
                        .iter()
                        .map(|a| (self.ix(&a.lo), self.ix(&a.hi)))
                        .collect()
                } else {
                    vec![]
                },
                value,
            });
        }
        Ok(out)
    }

    /// Whether a definition L depends on takes a max or a min, whose
    /// derivative at a tie is a convention.
    fn meets_a_tie(&self) -> bool {
        let mut found = false;
        for (k, def) in self.program.defs.iter().enumerate() {
            if !self.live[k] {
                continue;
            }
            visit_body(&def.body, &mut |n| {
                found |= matches!(
                    &n.node,
                    NodeKind::Reduce {
                        op: ReduceOp::Max | ReduceOp::Min,
                        ..
                    } | NodeKind::Call {
                        function: Function::Max | Function::Min,
                        ..
                    }
                );
            });
        }
        found
    }

    /// Per definition: whether L reads it (directly or not) and it depends
    /// on an input or param. Lets only claims read (a handout's backward
    /// pass, reading `g`) are no part of L.
    fn differentiable_defs(&self) -> Vec<bool> {
        let depends = self.program.defs_reading(vec![], |node| {
            matches!(&node.node, NodeKind::Tensor { id, .. }
                if self.program.tensors.get(id.0).is_some_and(|t| t.is_differentiable()))
        });
        let feeds = self.feeds_output();
        depends.iter().zip(feeds).map(|(d, f)| *d && f).collect()
    }

    /// Per definition: whether the output reads it, directly or not.
    fn feeds_output(&self) -> Vec<bool> {
        let defs = &self.program.defs;
        let mut feeds = vec![false; defs.len()];
        if let Some(f) = feeds.get_mut(self.output.def.0) {
            *f = true;
        }
        for k in (0..defs.len()).rev() {
            if !feeds[k] {
                continue;
            }
            visit_body(&defs[k].body, &mut |n| {
                if let NodeKind::Def { id, .. } = &n.node
                    && let Some(f) = feeds.get_mut(id.0)
                {
                    *f = true;
                }
            });
        }
        feeds
    }

    /// A derived gradient as a handout writes it: cases where its terms
    /// hold on parts of the axes, common factors out.
    fn value(&self, body: Sym, names: &[String], axes: &[AxisRange]) -> Value {
        let dims: HashSet<&str> = self.program.dims.iter().map(|d| d.name.as_str()).collect();
        let facts: Vec<Cond> = axis_facts(names, axes, self.program)
            .into_iter()
            .flat_map(|(n, lo, hi)| {
                let n = Ix::name(&n);
                [
                    compare(&n, CompareOp::Ge, &lo),
                    compare(&n, CompareOp::Le, &hi),
                ]
            })
            .collect();
        match as_cases(&body, names, &dims, &facts) {
            Some(cases) => {
                Value::Cases(cases.into_iter().map(|(v, c)| (v.factored(), c)).collect())
            }
            None => Value::Expr(body.factored()),
        }
    }

    /// The names a line's reductions must not take: the spec's and the
    /// line's own indices.
    fn scope(&self, names: &[String]) -> HashSet<String> {
        let mut scope = self.taken.clone();
        scope.extend(names.iter().cloned());
        scope
    }

    /// Index names for a tensor's gradient: `j`, then `j, k`, … avoiding
    /// every declared name.
    fn tensor_index_names(&self, rank: usize) -> Vec<String> {
        let mut names = vec![];
        for base in ["j", "k", "l", "m", "n", "p", "q", "r", "s"].iter().cycle() {
            if names.len() == rank {
                break;
            }
            let mut name = base.to_string();
            while self.taken.contains(&name) || names.contains(&name) {
                name.push('_');
            }
            names.push(name);
        }
        names
    }

    /// An affine index over dims alone (a range end), by name.
    fn ix(&self, a: &Affine) -> Ix {
        affine_ix(a, self.program, &[])
    }

    /// dL/dX at the indices `names` (X's axes `axes`): every reader's terms.
    fn gradient_of(
        &self,
        target: Target,
        names: &[String],
        axes: &[AxisRange],
    ) -> Result<Sym, DeriveError> {
        let live = &self.live;
        let mut terms = vec![];
        for (k, def) in self.program.defs.iter().enumerate() {
            if def.local_to.is_some() || !live[k] {
                continue;
            }
            terms.extend(self.terms_from(DefId(k), target, names, axes)?);
        }
        let terms = match Sym::Add(terms).simplified() {
            Sym::Add(terms) => terms,
            one => vec![one],
        };
        let terms = terms.into_iter().map(Sym::brackets_out).collect();
        Ok(Sym::Add(merged_cases(terms, names)).simplified())
    }

    /// The terms the definition `reader` sends to `target[names]`.
    fn terms_from(
        &self,
        reader: DefId,
        target: Target,
        names: &[String],
        axes: &[AxisRange],
    ) -> Result<Vec<Sym>, DeriveError> {
        let def = &self.program.defs[reader.0];
        // The reader's indices, renamed away from the target's.
        let mut used: HashSet<String> = self.taken.clone();
        used.extend(names.iter().cloned());
        let slot_names = slot_names(def, &mut used);
        let own: Vec<String> = slot_names.get(..def.rank).unwrap_or(&[]).to_vec();
        let adjoint = self.adjoint_of(reader, &own);
        let outer: Vec<Binder> = own
            .iter()
            .zip(&def.axes)
            .map(|(var, a)| Binder {
                var: var.clone(),
                lo: self.ix(&a.lo),
                hi: self.ix(&a.hi),
            })
            .collect();
        let mut partials = vec![];
        let this = Sym::Access {
            name: def.name.clone(),
            indices: own.iter().map(|n| Ix::name(n)).collect(),
        };
        let walker = Walker {
            program: self.program,
            names: &slot_names,
            used: &used,
            roots: match &def.body {
                Body::Expr(e) => vec![(e, this)],
                Body::Cases(cases) => cases.iter().map(|c| (&c.value, this.clone())).collect(),
            },
        };
        match &def.body {
            Body::Expr(e) => walker.walk(e, &Sym::Num(1.0), &[], &mut partials)?,
            Body::Cases(cases) => {
                let mut earlier: Vec<Cond> = vec![];
                for case in cases {
                    let mut holds: Vec<Cond> = earlier.iter().map(Cond::negated).collect();
                    if let Some(c) = &case.condition {
                        let c = walker.cond(c)?;
                        holds.push(c.clone());
                        earlier.push(c);
                    }
                    let up = Sym::Mul(holds.into_iter().map(Sym::Bracket).collect());
                    walker.walk(&case.value, &up, &[], &mut partials)?;
                }
            }
        }
        let mut terms = vec![];
        for p in partials.into_iter().filter(|p| p.target == target) {
            let mut binders = outer.clone();
            binders.extend(p.binders);
            let equations: Vec<(Ix, Ix)> = p
                .indices
                .into_iter()
                .zip(names.iter().map(|n| Ix::name(n)))
                .collect();
            let factor = Sym::Mul(vec![adjoint.clone(), p.factor]);
            terms.push(gather(
                binders,
                equations,
                p.bounds,
                factor,
                names,
                axes,
                self.program,
            ));
        }
        Ok(terms)
    }

    /// dL/dR at the indices `names`: `g` for a layer, 1 for a loss, the
    /// adjoint `let` otherwise.
    fn adjoint_of(&self, reader: DefId, names: &[String]) -> Sym {
        let indices: Vec<Ix> = names.iter().map(|n| Ix::name(n)).collect();
        if reader == self.output.def {
            return match self
                .output
                .incoming
                .and_then(|t| self.program.tensors.get(t.0))
            {
                Some(g) => Sym::Access {
                    name: g.name.clone(),
                    indices,
                },
                None => Sym::Num(1.0),
            };
        }
        Sym::Access {
            name: self.adjoint_names[reader.0].clone(),
            indices,
        }
    }
}

/// A definition's index variables by names free in `used` (then taken).
/// The variable of a whole-number index is named by the index as written
/// (`mod(i+k-2, N)+1`): it gets a name of its own, `v`.
fn slot_names(def: &Def, used: &mut HashSet<String>) -> Vec<String> {
    let mut names = vec![];
    for name in &def.var_names {
        let plain = name.chars().all(|c| c.is_alphanumeric() || c == '_');
        let fresh = fresh_name(if plain { name } else { "v" }, used);
        used.insert(fresh.clone());
        names.push(fresh);
    }
    names
}

/// `name`, or `name_`, `name__`, … where it is taken.
fn fresh_name(name: &str, used: &HashSet<String>) -> String {
    let mut fresh = name.to_string();
    while used.contains(&fresh) {
        fresh.push('_');
    }
    fresh
}

/// What this derivation cannot differentiate, with a help: the construct,
/// its span and what to do.
fn unsupported(n: &Node) -> Option<(&'static str, Span, &'static str)> {
    match &n.node {
        NodeKind::Call { function, .. }
            if derivative_of(*function).is_none() && !of_two(*function) =>
        {
            Some((
                "a function with jumps, ties or no derivative in the language",
                n.span,
                "derive covers smooth functions, pow, relu, abs, max and min; state this gradient by hand and let `dlverify` check it",
            ))
        }
        _ => None,
    }
}

/// f' as a function of f's argument, for the functions derive covers.
fn derivative_of(function: Function) -> Option<fn(Sym) -> Sym> {
    Some(match function {
        Function::Exp => |a| Sym::call("exp", a),
        Function::Log => |a| Sym::quotient(Sym::Num(1.0), a),
        Function::Sqrt => |a| {
            Sym::quotient(
                Sym::Num(1.0),
                Sym::Mul(vec![Sym::Num(2.0), Sym::call("sqrt", a)]),
            )
        },
        Function::Tanh => |a| {
            Sym::Add(vec![
                Sym::Num(1.0),
                Sym::negative(Sym::powi(Sym::call("tanh", a), 2)),
            ])
        },
        Function::Sigmoid => |a| {
            Sym::Mul(vec![
                Sym::call("sigmoid", a.clone()),
                Sym::Add(vec![Sym::Num(1.0), Sym::negative(Sym::call("sigmoid", a))]),
            ])
        },
        Function::Softplus => |a| Sym::call("sigmoid", a),
        Function::Sin => |a| Sym::call("cos", a),
        Function::Cos => |a| Sym::negative(Sym::call("sin", a)),
        Function::Atan => |a| {
            Sym::quotient(
                Sym::Num(1.0),
                Sym::Add(vec![Sym::Num(1.0), Sym::powi(a, 2)]),
            )
        },
        Function::Asin => |a| {
            Sym::quotient(
                Sym::Num(1.0),
                Sym::call(
                    "sqrt",
                    Sym::Add(vec![Sym::Num(1.0), Sym::negative(Sym::powi(a, 2))]),
                ),
            )
        },
        Function::Acos => |a| {
            Sym::negative(Sym::quotient(
                Sym::Num(1.0),
                Sym::call(
                    "sqrt",
                    Sym::Add(vec![Sym::Num(1.0), Sym::negative(Sym::powi(a, 2))]),
                ),
            ))
        },
        Function::Sinh => |a| Sym::call("cosh", a),
        Function::Cosh => |a| Sym::call("sinh", a),
        Function::Log1p => |a| Sym::quotient(Sym::Num(1.0), Sym::Add(vec![Sym::Num(1.0), a])),
        Function::Expm1 => |a| Sym::call("exp", a),
        Function::Erf => |a| {
            Sym::Mul(vec![
                Sym::quotient(Sym::Num(2.0), Sym::call("sqrt", Sym::Atom("pi".into()))),
                Sym::call("exp", Sym::negative(Sym::powi(a, 2))),
            ])
        },
        Function::Lgamma => |a| Sym::call("digamma", a),
        // relu' = [x > 0] and abs' = sign(x), 0 at the kink, as frameworks take them.
        Function::Relu => |a| {
            Sym::Bracket(Cond::Compare(
                Box::new(a),
                CompareOp::Gt,
                Box::new(Sym::Num(0.0)),
            ))
        },
        Function::Abs => |a| Sym::call("sign", a),
        Function::Min
        | Function::Max
        | Function::Pow
        | Function::Sign
        | Function::Floor
        | Function::Round
        | Function::Digamma => return None,
    })
}

/// The partials of a function of two arguments in each: `pow(a, b)`,
/// and `max(a, b)`, `min(a, b)`, where at a tie each gets half, as
/// PyTorch's `maximum` and `minimum` split it.
fn pair_partials(function: Function, a: Sym, b: Sym) -> Option<(Sym, Sym)> {
    let compare = |x: &Sym, op, y: &Sym| {
        Sym::Bracket(Cond::Compare(Box::new(x.clone()), op, Box::new(y.clone())))
    };
    let wins = match function {
        Function::Max => CompareOp::Gt,
        Function::Min => CompareOp::Lt,
        Function::Pow => {
            let power = |e: Sym| Sym::Call("pow".to_string(), vec![a.clone(), e]);
            return Some((
                Sym::Mul(vec![
                    b.clone(),
                    power(Sym::Add(vec![b.clone(), Sym::Num(-1.0)])),
                ]),
                Sym::Mul(vec![power(b.clone()), Sym::call("log", a.clone())]),
            ));
        }
        _ => return None,
    };
    let half_tie = Sym::quotient(compare(&a, CompareOp::Eq, &b), Sym::Num(2.0));
    Some((
        Sym::Add(vec![compare(&a, wins, &b), half_tie.clone()]),
        Sym::Add(vec![compare(&b, wins, &a), half_tie]),
    ))
}

/// Whether [`pair_partials`] covers a function.
fn of_two(function: Function) -> bool {
    matches!(function, Function::Max | Function::Min | Function::Pow)
}

/// Walks a body from its root, carrying the partial of the root in the
/// node reached.
struct Walker<'w> {
    program: &'w Program,
    /// The body's slots, by their (renamed) names.
    names: &'w [String],
    /// Every name in use: an index rebound in a partial avoids them.
    used: &'w HashSet<String>,
    /// The body's whole value (each case's, for cases), and the
    /// definition's own element: where the value is one call, `norm[i] =
    /// sqrt(…)`, its derivative reads that element rather than the call
    /// again (`1 / (2 * norm[i])`, `1 - y[i]^2`), as a handout does.
    roots: Vec<(&'w Node, Sym)>,
}

impl Walker<'_> {
    fn walk(
        &self,
        node: &Node,
        up: &Sym,
        binders: &[Binder],
        out: &mut Vec<Partial>,
    ) -> Result<(), DeriveError> {
        let times = |f: Sym| Sym::Mul(vec![up.clone(), f]);
        match &node.node {
            NodeKind::Tensor { id, indices } => {
                if self
                    .program
                    .tensors
                    .get(id.0)
                    .is_some_and(|t| t.is_differentiable())
                {
                    out.push(self.partial(Target::Tensor(*id), indices, up, binders));
                }
            }
            NodeKind::Def { id, indices } => {
                out.push(self.partial(Target::Def(*id), indices, up, binders));
            }
            NodeKind::Neg(a) => self.walk(a, &Sym::negative(up.clone()), binders, out)?,
            NodeKind::Binary { op, lhs, rhs, .. } => {
                let (l, r) = (self.sym(lhs)?, self.sym(rhs)?);
                match op {
                    BinaryOp::Add => {
                        self.walk(lhs, up, binders, out)?;
                        self.walk(rhs, up, binders, out)?;
                    }
                    BinaryOp::Sub => {
                        self.walk(lhs, up, binders, out)?;
                        self.walk(rhs, &Sym::negative(up.clone()), binders, out)?;
                    }
                    BinaryOp::Mul => {
                        self.walk(lhs, &times(r), binders, out)?;
                        self.walk(rhs, &times(l), binders, out)?;
                    }
                    BinaryOp::Div => {
                        self.walk(lhs, &Sym::quotient(up.clone(), r.clone()), binders, out)?;
                        let d = Sym::negative(Sym::quotient(
                            Sym::Mul(vec![up.clone(), l]),
                            Sym::powi(r, 2),
                        ));
                        self.walk(rhs, &d, binders, out)?;
                    }
                    BinaryOp::Pow => {
                        let base = Sym::Mul(vec![
                            r.clone(),
                            Sym::Pow(
                                Box::new(l.clone()),
                                Box::new(Sym::Add(vec![r.clone(), Sym::Num(-1.0)])),
                            ),
                        ]);
                        self.walk(lhs, &times(base), binders, out)?;
                        let exponent = Sym::Mul(vec![
                            Sym::Pow(Box::new(l.clone()), Box::new(r)),
                            Sym::call("log", l),
                        ]);
                        self.walk(rhs, &times(exponent), binders, out)?;
                    }
                }
            }
            NodeKind::PowInt(a, k) => {
                let d = Sym::Mul(vec![
                    Sym::Num(f64::from(*k)),
                    Sym::powi(self.sym(a)?, k - 1),
                ]);
                self.walk(a, &times(d), binders, out)?;
            }
            NodeKind::Call { function, args }
                if let (true, [a, b]) = (of_two(*function), args.as_slice()) =>
            {
                let (mut da, mut db) =
                    pair_partials(*function, self.sym(a)?, self.sym(b)?).ok_or_else(overflow)?;
                if let Some(this) = self.own_element(node) {
                    let whole = self.sym(node)?;
                    da = da.replaced(&whole, this);
                    db = db.replaced(&whole, this);
                }
                self.walk(a, &times(da), binders, out)?;
                self.walk(b, &times(db), binders, out)?;
            }
            NodeKind::Call { function, args } => {
                let derivative = derivative_of(*function).ok_or_else(|| {
                    DeriveError::unsupported(
                        "a function with jumps or ties",
                        node.span,
                        "state this gradient by hand",
                    )
                })?;
                if let [a] = args.as_slice() {
                    let mut d = derivative(self.sym(a)?);
                    if let Some(this) = self.own_element(node) {
                        d = d.replaced(&self.sym(node)?, this);
                    }
                    self.walk(a, &times(d), binders, out)?;
                }
            }
            NodeKind::Reduce {
                op,
                var,
                range,
                body,
                ..
            } => {
                let name = self.var_name(*var);
                let (lo, hi, extra) = self.split_range(*var, range)?;
                let up = match op {
                    ReduceOp::Mean => Sym::quotient(up.clone(), self.count(*var, range)?),
                    // The tied maxima share the gradient evenly, as
                    // PyTorch's `amax` splits it: [b == m] / (number of ties).
                    ReduceOp::Max | ReduceOp::Min => {
                        // Written out, the max binds this index again: rebound.
                        let extreme = self.own_or_sym(node)?;
                        let extreme = extreme
                            .rebound(&name, &self.fresh(&name, &extreme))
                            .ok_or_else(overflow)?;
                        let hit = Sym::Bracket(Cond::Compare(
                            Box::new(self.sym(body)?),
                            CompareOp::Eq,
                            Box::new(extreme),
                        ));
                        let ties = self.sum_over(*var, range, hit.clone())?;
                        Sym::Mul(vec![up.clone(), hit, Sym::quotient(Sym::Num(1.0), ties)])
                    }
                    // The product of the other terms, written so that a
                    // zero among them is no 0/0: ∏ over k' of [k' == k] +
                    // [k' != k] * f(k').
                    ReduceOp::Prod => {
                        if range.lowers.len() != 1 || range.uppers.len() != 1 {
                            return Err(DeriveError::unsupported(
                                "a product over a range of several bounds",
                                node.span,
                                "state this gradient by hand",
                            ));
                        }
                        let other = self.fresh(&name, up);
                        let at_other = |s: Sym| s.substitute(&name, &Ix::name(&other));
                        let this = Sym::Index(Ix::name(&name));
                        let that = Sym::Index(Ix::name(&other));
                        let factor = Sym::Add(vec![
                            Sym::Bracket(Cond::Compare(
                                Box::new(that.clone()),
                                CompareOp::Eq,
                                Box::new(this.clone()),
                            )),
                            Sym::Mul(vec![
                                Sym::Bracket(Cond::Compare(
                                    Box::new(that),
                                    CompareOp::Ne,
                                    Box::new(this),
                                )),
                                at_other(self.sym(body)?).ok_or_else(overflow)?,
                            ]),
                        ]);
                        let (lo, hi, _) = self.split_range(*var, range)?;
                        let others = Sym::Extreme {
                            op: ReduceOp::Prod,
                            var: other,
                            lo,
                            hi,
                            body: Box::new(factor),
                        };
                        Sym::Mul(vec![up.clone(), others])
                    }
                    _ => up.clone(),
                };
                self.walk_inside(Binder { var: name, lo, hi }, extra, body, up, binders, out)?;
            }
            // A whole-number index reads one element: the reduction
            // `sum(v in axis) [v == floor((h+1)/2)] * x[…, v, …]`, whose
            // bracket no substitution solves, so it stays (exactly).
            NodeKind::Pick {
                var,
                index,
                range,
                body,
                ..
            } => {
                let name = self.var_name(*var);
                let (lo, hi, extra) = self.split_range(*var, range)?;
                let up = Sym::Mul(vec![up.clone(), self.picked(&name, index)]);
                self.walk_inside(Binder { var: name, lo, hi }, extra, body, up, binders, out)?;
            }
            // Piecewise constant: brackets and constants pass nothing on.
            NodeKind::Iverson(_)
            | NodeKind::Const(_)
            | NodeKind::Pi
            | NodeKind::Dim(_)
            | NodeKind::Hyper(_)
            | NodeKind::Index(_)
            | NodeKind::Moment { .. } => {}
        }
        Ok(())
    }

    /// The walk into a reduction's body over `binder`, its range's further
    /// bounds `extra` added as brackets.
    fn walk_inside(
        &self,
        binder: Binder,
        extra: Vec<Cond>,
        body: &Node,
        up: Sym,
        binders: &[Binder],
        out: &mut Vec<Partial>,
    ) -> Result<(), DeriveError> {
        // The partial may itself sum over this index's name (the
        // derivative of `log(sum(k) …)`): rebound there, as it sits
        // inside the reduction now.
        let up = up
            .rebound(&binder.var, &self.fresh(&binder.var, &up))
            .ok_or_else(overflow)?;
        let mut inner = binders.to_vec();
        inner.push(binder);
        let before = out.len();
        self.walk(body, &up, &inner, out)?;
        for p in &mut out[before..] {
            p.bounds.extend(extra.iter().cloned());
        }
        Ok(())
    }

    /// The body's (renamed) name of an index variable.
    fn var_name(&self, var: VarId) -> String {
        self.names.get(var.0).cloned().unwrap_or_default()
    }

    /// `[v == floor((h+1)/2)]`: the bracket that picks a whole-number
    /// index's element.
    fn picked(&self, name: &str, index: &IndexExpr) -> Sym {
        Sym::Bracket(Cond::Compare(
            Box::new(Sym::Index(Ix::name(name))),
            CompareOp::Eq,
            Box::new(self.whole(index)),
        ))
    }

    /// A whole-number index as the spec writes it, over the body's names.
    fn whole(&self, e: &IndexExpr) -> Sym {
        let pair = |a: &IndexExpr, b: &IndexExpr| (self.whole(a), self.whole(b));
        match e {
            IndexExpr::Affine(a) => Sym::Index(affine_ix(a, self.program, self.names)),
            IndexExpr::Add(a, b) => {
                let (a, b) = pair(a, b);
                Sym::Add(vec![a, b])
            }
            IndexExpr::Sub(a, b) => {
                let (a, b) = pair(a, b);
                Sym::Add(vec![a, Sym::negative(b)])
            }
            IndexExpr::Mul(a, b) => {
                let (a, b) = pair(a, b);
                Sym::Mul(vec![a, b])
            }
            IndexExpr::FloorDiv(a, b) => {
                let (a, b) = pair(a, b);
                Sym::call("floor", Sym::quotient(a, b))
            }
            IndexExpr::CeilDiv(a, b) => {
                let (a, b) = pair(a, b);
                Sym::call("ceil", Sym::quotient(a, b))
            }
            IndexExpr::Mod(a, b) => {
                let (a, b) = pair(a, b);
                Sym::Call("mod".to_string(), vec![a, b])
            }
        }
    }

    fn partial(&self, target: Target, indices: &[Affine], up: &Sym, binders: &[Binder]) -> Partial {
        Partial {
            target,
            indices: indices
                .iter()
                .map(|a| affine_ix(a, self.program, self.names))
                .collect(),
            factor: up.clone(),
            binders: binders.to_vec(),
            bounds: vec![],
        }
    }

    /// A range as a sum writes it: one lower and one upper bound, and the
    /// other bounds of an inferred range as brackets. The bounds taken are
    /// those of sizes alone where there are such (`1..=2` from `v[k]`
    /// rather than `2-i..` from `x[k+i-1]`), so that a reduction's range
    /// stays apart from the indices a gather solves for.
    fn split_range(
        &self,
        var: VarId,
        range: &VarRange,
    ) -> Result<(Ix, Ix, Vec<Cond>), DeriveError> {
        let ix = |a: &Affine| affine_ix(a, self.program, self.names);
        let lowers = tightest(range.lowers.iter().map(ix).collect(), 1);
        let uppers = tightest(range.uppers.iter().map(ix).collect(), -1);
        let sized = |b: &Ix| b.terms.iter().all(|(n, _)| !self.names.contains(n));
        let main = |bounds: &[Ix]| bounds.iter().position(sized).unwrap_or(0);
        let (l, u) = (main(&lowers), main(&uppers));
        let lo = lowers.get(l).cloned().ok_or_else(overflow)?;
        let hi = uppers.get(u).cloned().ok_or_else(overflow)?;
        let v = Ix::name(&self.var_name(var));
        let lower = (lowers.iter().enumerate())
            .filter(|(k, _)| *k != l)
            .map(|(_, b)| compare(b, CompareOp::Le, &v));
        let upper = (uppers.iter().enumerate())
            .filter(|(k, _)| *k != u)
            .map(|(_, b)| compare(&v, CompareOp::Le, b));
        Ok((lo, hi, lower.chain(upper).collect()))
    }

    /// The number of terms of a mean: `hi - lo + 1`, or where an inferred
    /// range has several bounds, the sum of its brackets.
    fn count(&self, var: VarId, range: &VarRange) -> Result<Sym, DeriveError> {
        let (lo, hi, extra) = self.split_range(var, range)?;
        if extra.is_empty() {
            let count = hi
                .plus(&lo, -1)
                .and_then(|c| c.plus(&Ix::constant(1), 1))
                .ok_or_else(overflow)?;
            return Ok(Sym::Index(count));
        }
        Ok(Sym::Sum {
            var: self.var_name(var),
            lo,
            hi,
            body: Box::new(Sym::Mul(extra.into_iter().map(Sym::Bracket).collect())),
        })
    }

    /// Arithmetic of indices, sizes and whole numbers as one index
    /// expression, so that a substitution folds it (`2*i + k - 3` with
    /// `k := j-2*i+3` is `j`).
    fn index_of(&self, node: &Node) -> Option<Ix> {
        match &node.node {
            NodeKind::Index(v) => Some(Ix::name(self.names.get(v.0)?)),
            NodeKind::Dim(d) => Some(Ix::name(&self.program.dims.get(d.0)?.name)),
            #[allow(clippy::cast_possible_truncation)]
            NodeKind::Const(v) if v.fract() == 0.0 && v.abs() < 1e15 => {
                Some(Ix::constant(*v as i64))
            }
            NodeKind::Neg(a) => Ix::default().plus(&self.index_of(a)?, -1),
            NodeKind::Binary { op, lhs, rhs, .. } => {
                let (l, r) = (self.index_of(lhs)?, self.index_of(rhs)?);
                match op {
                    BinaryOp::Add => l.plus(&r, 1),
                    BinaryOp::Sub => l.plus(&r, -1),
                    BinaryOp::Mul if l.terms.is_empty() => Ix::default().plus(&r, l.constant),
                    BinaryOp::Mul if r.terms.is_empty() => Ix::default().plus(&l, r.constant),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// A node as the spec writes it, with the body's (renamed) indices.
    fn sym(&self, node: &Node) -> Result<Sym, DeriveError> {
        if let Some(ix) = self.index_of(node).filter(|ix| !ix.terms.is_empty()) {
            return Ok(Sym::Index(ix));
        }
        let boxed = |n: &Node| self.sym(n).map(Box::new);
        Ok(match &node.node {
            NodeKind::Const(v) => Sym::Num(*v),
            NodeKind::Pi => Sym::Atom("pi".into()),
            NodeKind::Dim(d) => Sym::Atom(
                self.program
                    .dims
                    .get(d.0)
                    .map(|d| d.name.clone())
                    .unwrap_or_default(),
            ),
            NodeKind::Hyper(h) => Sym::Atom(
                self.program
                    .hypers
                    .get(h.0)
                    .map(|h| h.name.clone())
                    .unwrap_or_default(),
            ),
            NodeKind::Index(v) => Sym::Index(Ix::name(&self.var_name(*v))),
            NodeKind::Tensor { id, indices } => {
                let name = self.program.tensors.get(id.0).map(|t| t.name.as_str());
                self.access(name, indices)
            }
            NodeKind::Def { id, indices } => {
                let name = self.program.defs.get(id.0).map(|d| d.name.as_str());
                self.access(name, indices)
            }
            NodeKind::Neg(a) => Sym::Neg(boxed(a)?),
            NodeKind::Binary { op, lhs, rhs, .. } => {
                let (l, r) = (self.sym(lhs)?, self.sym(rhs)?);
                match op {
                    BinaryOp::Add => Sym::Add(vec![l, r]),
                    BinaryOp::Sub => Sym::Add(vec![l, Sym::negative(r)]),
                    BinaryOp::Mul => Sym::Mul(vec![l, r]),
                    BinaryOp::Div => Sym::quotient(l, r),
                    BinaryOp::Pow => Sym::Pow(Box::new(l), Box::new(r)),
                }
            }
            NodeKind::PowInt(a, k) => Sym::powi(self.sym(a)?, *k),
            NodeKind::Call { function, args } => Sym::Call(
                function.name().to_string(),
                args.iter().map(|a| self.sym(a)).collect::<Result<_, _>>()?,
            ),
            NodeKind::Reduce {
                op,
                var,
                range,
                body,
                ..
            } => {
                let refused = || {
                    DeriveError::unsupported(
                        "a product, max or min over a range of several bounds, inside a partial",
                        node.span,
                        "state this gradient by hand",
                    )
                };
                match op {
                    ReduceOp::Sum => self.sum_over(*var, range, self.sym(body)?)?,
                    ReduceOp::Mean => Sym::quotient(
                        self.sum_over(*var, range, self.sym(body)?)?,
                        self.count(*var, range)?,
                    ),
                    ReduceOp::Max | ReduceOp::Min | ReduceOp::Prod
                        if range.lowers.len() == 1 && range.uppers.len() == 1 =>
                    {
                        let (lo, hi, _) = self.split_range(*var, range)?;
                        Sym::Extreme {
                            op: *op,
                            var: self.var_name(*var),
                            lo,
                            hi,
                            body: Box::new(self.sym(body)?),
                        }
                    }
                    _ => return Err(refused()),
                }
            }
            NodeKind::Iverson(c) => Sym::Bracket(self.cond(c)?),
            NodeKind::Pick {
                var,
                index,
                range,
                body,
                ..
            } => {
                let name = self.var_name(*var);
                let picked = Sym::Mul(vec![self.picked(&name, index), self.sym(body)?]);
                self.sum_over(*var, range, picked)?
            }
            NodeKind::Moment { .. } => {
                return Err(DeriveError::unsupported(
                    "a moment",
                    node.span,
                    "a stochastic claim is checked, not derived",
                ));
            }
        })
    }

    /// `sum(var in lo..=hi) body`, the further bounds of an inferred
    /// range as brackets.
    fn sum_over(&self, var: VarId, range: &VarRange, body: Sym) -> Result<Sym, DeriveError> {
        let (lo, hi, extra) = self.split_range(var, range)?;
        let mut factors: Vec<Sym> = extra.into_iter().map(Sym::Bracket).collect();
        factors.push(body);
        Ok(Sym::Sum {
            var: self.var_name(var),
            lo,
            hi,
            body: Box::new(Sym::Mul(factors)),
        })
    }

    /// `name`, or `name_`, … where that is in use, in the spec or in `within`.
    fn fresh(&self, name: &str, within: &Sym) -> String {
        let mut used = self.used.clone();
        within.mentions(&mut used);
        fresh_name(name, &used)
    }

    /// The definition's own element where `node` is its whole body
    /// (`y[i]` for `y[i] = max(k) …`), the node written out otherwise.
    fn own_or_sym(&self, node: &Node) -> Result<Sym, DeriveError> {
        match self.own_element(node) {
            Some(this) => Ok(this.clone()),
            None => self.sym(node),
        }
    }

    /// The definition's own element, where `node` is its whole value.
    fn own_element(&self, node: &Node) -> Option<&Sym> {
        self.roots
            .iter()
            .find(|(root, _)| std::ptr::eq(*root, node))
            .map(|(_, this)| this)
    }

    /// `x[i+2]` with the body's (renamed) indices.
    fn access(&self, name: Option<&str>, indices: &[Affine]) -> Sym {
        Sym::Access {
            name: name.unwrap_or_default().to_string(),
            indices: indices
                .iter()
                .map(|a| affine_ix(a, self.program, self.names))
                .collect(),
        }
    }

    fn cond(&self, c: &crate::analysis::program::Cond) -> Result<Cond, DeriveError> {
        Ok(match &c.node {
            CondKind::Compare { first, rest } => {
                // Whole numbers compared as indices, so that comparisons
                // fold and solve with them.
                let side = |n: &Node| -> Result<Sym, DeriveError> {
                    Ok(match self.index_of(n) {
                        Some(ix) => Sym::Index(ix),
                        None => self.sym(n)?,
                    })
                };
                let mut left = side(first)?;
                let mut out: Option<Cond> = None;
                for (op, e) in rest {
                    let right = side(e)?;
                    let this = Cond::Compare(Box::new(left), *op, Box::new(right.clone()));
                    out = Some(match out {
                        None => this,
                        Some(prev) => Cond::And(Box::new(prev), Box::new(this)),
                    });
                    left = right;
                }
                out.ok_or_else(overflow)?
            }
            CondKind::And(a, b) => Cond::And(Box::new(self.cond(a)?), Box::new(self.cond(b)?)),
            CondKind::Or(a, b) => Cond::Or(Box::new(self.cond(a)?), Box::new(self.cond(b)?)),
            CondKind::Not(a) => self.cond(a)?.negated(),
        })
    }
}

/// The bounds no other implies: of lower bounds (`sign` 1) a bound is
/// dropped where another is a constant above it (`1..` beside `0..`, from
/// `x[l]` and `w[l+1]`), of upper bounds (`sign` -1) where one is below.
fn tightest(bounds: Vec<Ix>, sign: i64) -> Vec<Ix> {
    let implied = |k: usize, a: &Ix| {
        bounds.iter().enumerate().any(|(m, b)| {
            b.plus(a, -1).is_some_and(|d| {
                d.terms.is_empty() && (d.constant * sign > 0 || (d.constant == 0 && m < k))
            })
        })
    };
    (bounds.iter().enumerate())
        .filter(|(k, a)| !implied(*k, a))
        .map(|(_, a)| a.clone())
        .collect()
}

fn overflow() -> DeriveError {
    DeriveError::unsupported(
        "an index too large to write",
        Span::new(0, 0),
        "use smaller constants",
    )
}

/// An affine index by name: dims by theirs, variables by `names` (slots).
fn affine_ix(a: &Affine, program: &Program, names: &[String]) -> Ix {
    let mut ix = Ix::constant(a.constant);
    for (d, c) in &a.dims {
        let name = program.dims.get(d.0).map_or("?", |d| d.name.as_str());
        ix = ix.plus(&Ix::name(name), *c).unwrap_or_default();
    }
    for (v, c) in &a.vars {
        let name = names.get(v.0).map_or("?", String::as_str);
        ix = ix.plus(&Ix::name(name), *c).unwrap_or_default();
    }
    ix
}

/// The scatter `sum(binders) [A == p] * factor` as a gather: each bracket
/// solved for an index summed over with coefficient ±1, which is then
/// substituted and its sum replaced by the bracket of its range.
fn gather(
    mut binders: Vec<Binder>,
    equations: Vec<(Ix, Ix)>,
    bounds: Vec<Cond>,
    factor: Sym,
    names: &[String],
    axes: &[AxisRange],
    program: &Program,
) -> Sym {
    let mut factor = factor;
    let mut brackets: Vec<Cond> = bounds;
    let mut pending: Vec<(Ix, Ix)> = equations;
    while let Some((lhs, rhs)) = pending.pop() {
        let Some(diff) = lhs.plus(&rhs, -1) else {
            brackets.push(compare(&lhs, CompareOp::Eq, &rhs));
            continue;
        };
        // The innermost first: an inner range may run between bounds of
        // an outer index, never the other way round.
        let solvable = binders
            .iter()
            .rposition(|b| diff.coefficient(&b.var).abs() == 1);
        let Some(k) = solvable else {
            brackets.push(compare(&lhs, CompareOp::Eq, &rhs));
            continue;
        };
        let binder = binders.remove(k);
        let c = diff.coefficient(&binder.var);
        // diff = c*v + rest = 0, so v = -c * rest (c is ±1).
        let solved = diff
            .plus(&Ix::name(&binder.var), -c)
            .and_then(|rest| Ix::default().plus(&rest, -c));
        let Some(solved) = solved else {
            brackets.push(compare(&lhs, CompareOp::Eq, &rhs));
            binders.insert(k, binder);
            continue;
        };
        let v = binder.var.as_str();
        let substituted = (|| {
            let factor = factor.substitute(v, &solved)?;
            let pending: Vec<(Ix, Ix)> = pending
                .iter()
                .map(|(a, b)| Some((a.substitute(v, &solved)?, b.substitute(v, &solved)?)))
                .collect::<Option<_>>()?;
            let brackets: Vec<Cond> = brackets
                .iter()
                .map(|c| {
                    Sym::Bracket(c.clone())
                        .substitute(v, &solved)
                        .and_then(|s| match s {
                            Sym::Bracket(c) => Some(c),
                            _ => None,
                        })
                })
                .collect::<Option<_>>()?;
            let binders: Vec<Binder> = binders
                .iter()
                .map(|b| {
                    Some(Binder {
                        var: b.var.clone(),
                        lo: b.lo.substitute(v, &solved)?,
                        hi: b.hi.substitute(v, &solved)?,
                    })
                })
                .collect::<Option<_>>()?;
            // A range must not come to run between bounds of its own index
            // or of one inside it: then the equation stays a bracket.
            let inside_out = binders.iter().enumerate().any(|(k, b)| {
                binders[k..].iter().any(|inner| {
                    b.lo.coefficient(&inner.var) != 0 || b.hi.coefficient(&inner.var) != 0
                })
            });
            if inside_out {
                return None;
            }
            Some((factor, pending, brackets, binders))
        })();
        let Some((f, p, b, bs)) = substituted else {
            brackets.push(compare(&lhs, CompareOp::Eq, &rhs));
            binders.insert(k, binder);
            continue;
        };
        factor = f;
        pending = p;
        brackets = b;
        binders = bs;
        brackets.push(compare(&binder.lo, CompareOp::Le, &solved));
        brackets.push(compare(&solved, CompareOp::Le, &binder.hi));
    }
    // The factor's brackets of indices alone (a case's guard, a guard of
    // the forward pass) are decided and printed first with the others:
    // brackets run left to right, and one of values (relu's `[x > 0]`) may
    // read what only such a guard keeps in range.
    let factor = hoist_index_brackets(factor.simplified(), &mut brackets).simplified();
    let axis_bounds = axis_facts(names, axes, program);
    let dims: HashSet<&str> = program.dims.iter().map(|d| d.name.as_str()).collect();
    let mut kept: Vec<Cond> = vec![];
    let mut conjuncts = vec![];
    for c in brackets {
        split_and(c, &mut conjuncts);
    }
    for c in conjuncts
        .into_iter()
        .map(|c| tidy(normalized(c, &dims, names), names))
    {
        match decide(&c, &axis_bounds) {
            Some(true) => {}
            Some(false) => return Sym::Num(0.0),
            None if kept.contains(&c) => {}
            None => kept.push(c),
        }
    }
    let minimum: HashMap<String, i64> = program
        .dims
        .iter()
        .map(|d| (d.name.clone(), d.minimum))
        .collect();
    let Some((binders, kept, factor)) = narrowed(binders, kept, factor, &minimum) else {
        return Sym::Num(0.0);
    };
    let mut factors: Vec<Sym> = kept.into_iter().map(Sym::Bracket).collect();
    factors.push(factor);
    binders
        .into_iter()
        .rev()
        .fold(Sym::Mul(factors), |body, b| Sym::Sum {
            var: b.var,
            lo: b.lo,
            hi: b.hi,
            body: Box::new(body),
        })
}

/// The brackets that bound a summed index by a constant offset from its
/// range taken into the range (`sum(t in 1..=T) [t >= 2] * …` as
/// `sum(t in 2..=T) …`), and a sum left with one term written as that term
/// (`[t <= 1]` pins t to 1). `None` where a range comes out empty.
fn narrowed(
    mut binders: Vec<Binder>,
    mut kept: Vec<Cond>,
    mut factor: Sym,
    minimum: &HashMap<String, i64>,
) -> Option<(Vec<Binder>, Vec<Cond>, Sym)> {
    let mut k = binders.len();
    while k > 0 {
        k -= 1;
        let var = Ix::name(&binders[k].var);
        let (mut lo, mut hi) = (binders[k].lo.clone(), binders[k].hi.clone());
        kept.retain(|c| {
            let Cond::Compare(a, op, b) = c else {
                return true;
            };
            let (Sym::Index(a), Sym::Index(b)) = (a.as_ref(), b.as_ref()) else {
                return true;
            };
            // `v op c` with c free of v, or `c op v` mirrored.
            let (bound, op) = match (*a == var, *b == var) {
                (true, false) => (b, *op),
                (false, true) => (
                    a,
                    match op {
                        CompareOp::Le => CompareOp::Ge,
                        CompareOp::Ge => CompareOp::Le,
                        other => *other,
                    },
                ),
                _ => return true,
            };
            // Taken in where it is known to lie inside the range or outside
            // it at every size: sizes are at least their declared minimum.
            let at_least = |a: &Ix, b: &Ix| b.plus(a, -1).and_then(|d| least(&d, minimum));
            match op {
                CompareOp::Ge if at_least(&lo, bound).is_some_and(|d| d >= 0) => {
                    lo = bound.clone();
                    false
                }
                CompareOp::Le if at_least(bound, &hi).is_some_and(|d| d >= 0) => {
                    hi = bound.clone();
                    false
                }
                // Implied by the range.
                CompareOp::Ge if at_least(bound, &lo).is_some_and(|d| d >= 0) => false,
                CompareOp::Le if at_least(&hi, bound).is_some_and(|d| d >= 0) => false,
                CompareOp::Eq
                    if at_least(&lo, bound).is_some_and(|d| d >= 0)
                        && at_least(bound, &hi).is_some_and(|d| d >= 0) =>
                {
                    lo = bound.clone();
                    hi = bound.clone();
                    false
                }
                _ => true,
            }
        });
        let empty = lo.plus(&hi, -1).and_then(|d| least(&d, minimum));
        let single = hi
            .plus(&lo, -1)
            .filter(|d| d.terms.is_empty() && d.constant == 0);
        match (empty, single) {
            (Some(d), _) if d > 0 => return None,
            (_, Some(_)) => {
                let v = binders.remove(k).var;
                factor = factor.substitute(&v, &lo)?;
                kept = kept
                    .into_iter()
                    .map(|c| match Sym::Bracket(c).substitute(&v, &lo) {
                        Some(Sym::Bracket(c)) => Some(c),
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
                for b in &mut binders[k..] {
                    b.lo = b.lo.substitute(&v, &lo)?;
                    b.hi = b.hi.substitute(&v, &lo)?;
                }
            }
            _ => {
                binders[k].lo = lo;
                binders[k].hi = hi;
            }
        }
    }
    Some((binders, kept, factor))
}

/// The least value of an index expression over sizes at least their
/// minimum: `None` unless every term is a size with a positive coefficient.
fn least(ix: &Ix, minimum: &HashMap<String, i64>) -> Option<i64> {
    ix.terms.iter().try_fold(ix.constant, |acc, (name, c)| {
        let m = minimum.get(name)?;
        (*c > 0)
            .then(|| acc.checked_add(c.checked_mul(*m)?))
            .flatten()
    })
}

/// The brackets of indices alone among a product's factors, through
/// parentheses, signs and a quotient's numerator (where a bracket guards
/// the whole quotient), moved to `out`; 1 left in their place.
fn hoist_index_brackets(s: Sym, out: &mut Vec<Cond>) -> Sym {
    match s {
        Sym::Bracket(c) if of_indices(&c) => {
            out.push(c);
            Sym::Num(1.0)
        }
        Sym::Mul(factors) => Sym::Mul(
            factors
                .into_iter()
                .map(|f| hoist_index_brackets(f, out))
                .collect(),
        ),
        Sym::Neg(a) => Sym::Neg(Box::new(hoist_index_brackets(*a, out))),
        Sym::Div(a, b) => Sym::Div(Box::new(hoist_index_brackets(*a, out)), b),
        other => other,
    }
}

/// A condition on indices and sizes alone, which reads no tensor.
fn of_indices(c: &Cond) -> bool {
    match c {
        Cond::Compare(a, _, b) => {
            matches!((a.as_ref(), b.as_ref()), (Sym::Index(_), Sym::Index(_)))
        }
        Cond::And(a, b) | Cond::Or(a, b) => of_indices(a) && of_indices(b),
    }
}

/// `a and b` as the brackets `[a] * [b]`, each then decided on its own.
fn split_and(c: Cond, out: &mut Vec<Cond>) {
    match c {
        Cond::And(a, b) => {
            split_and(*a, out);
            split_and(*b, out);
        }
        c => out.push(c),
    }
}

/// A comparison with the index on the left and `<=`, `>=` for whole
/// numbers: `3 > j` as `j <= 2`.
fn tidy(c: Cond, names: &[String]) -> Cond {
    let Cond::Compare(a, op, b) = &c else {
        return c;
    };
    let (Sym::Index(a), Sym::Index(b)) = (a.as_ref(), b.as_ref()) else {
        return c;
    };
    let named = |ix: &Ix| ix.terms.iter().any(|(n, _)| names.contains(n));
    let (lhs, op, rhs) = if !named(a) && named(b) {
        let mirrored = match op {
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::Le => CompareOp::Ge,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::Ge => CompareOp::Le,
            other => *other,
        };
        (b.clone(), mirrored, a.clone())
    } else {
        (a.clone(), *op, b.clone())
    };
    let shifted = |k: i64| rhs.plus(&Ix::constant(k), 1);
    match op {
        CompareOp::Lt => shifted(-1).map_or(c.clone(), |r| compare(&lhs, CompareOp::Le, &r)),
        CompareOp::Gt => shifted(1).map_or(c.clone(), |r| compare(&lhs, CompareOp::Ge, &r)),
        _ => compare(&lhs, op, &rhs),
    }
}

/// `1 <= j-2` as `3 <= j`: one index alone on its side, sizes and
/// constants on the other, where the comparison allows it.
fn normalized(c: Cond, dims: &HashSet<&str>, names: &[String]) -> Cond {
    let Cond::Compare(a, op, b) = &c else {
        return c;
    };
    let (Sym::Index(a), Sym::Index(b)) = (a.as_ref(), b.as_ref()) else {
        return c;
    };
    let Some(diff) = b.plus(a, -1) else {
        return c;
    };
    // diff = b - a = c·v + rest, rest of sizes and constants.
    let vars: Vec<&(String, i64)> = diff
        .terms
        .iter()
        .filter(|(n, _)| !dims.contains(n.as_str()))
        .collect();
    // One index alone, or of several the target's own (`j >= i` for
    // `j-i+1 >= 1`), the others moved to its other side.
    let alone = match vars.as_slice() {
        [one] => Some(*one),
        several => several
            .iter()
            .find(|(n, k)| names.contains(n) && k.abs() == 1)
            .copied(),
    };
    let Some((v, k)) = alone else {
        return c;
    };
    if k.abs() != 1 {
        return c;
    }
    let Some(rest) = diff.plus(&Ix::name(v), -k) else {
        return c;
    };
    let v = Ix::name(v);
    // a op b  ⇔  0 op b - a = k·v + rest.
    match (k, Ix::default().plus(&rest, -1)) {
        // v + rest ⋄ 0  ⇔  -rest ⋄' v, with the comparison mirrored.
        (1, Some(minus_rest)) => compare(&minus_rest, *op, &v),
        // -v + rest ⋄ 0 ⇔ v ⋄ rest.
        (-1, _) => compare(&v, *op, &rest),
        _ => c.clone(),
    }
}

fn compare(a: &Ix, op: CompareOp, b: &Ix) -> Cond {
    Cond::Compare(
        Box::new(Sym::Index(a.clone())),
        op,
        Box::new(Sym::Index(b.clone())),
    )
}

/// What is known of the target's indices: each runs over its axis.
fn axis_facts(names: &[String], axes: &[AxisRange], program: &Program) -> Vec<(String, Ix, Ix)> {
    names
        .iter()
        .zip(axes)
        .map(|(n, a)| {
            (
                n.clone(),
                affine_ix(&a.lo, program, &[]),
                affine_ix(&a.hi, program, &[]),
            )
        })
        .collect()
}

/// Whether a bracket always holds (or never) given the target's ranges: a
/// comparison of constants, or a target index against its own axis's end.
fn decide(c: &Cond, facts: &[(String, Ix, Ix)]) -> Option<bool> {
    let Cond::Compare(a, op, b) = c else {
        return None;
    };
    let (Sym::Index(a), Sym::Index(b)) = (a.as_ref(), b.as_ref()) else {
        return None;
    };
    let diff = b.plus(a, -1)?;
    if diff.terms.is_empty() {
        // a op b as 0 op b - a.
        return Some(op.holds_for(Some(0.cmp(&diff.constant))));
    }
    // For an index j over lo..=hi, `c <= j` holds everywhere where c is a
    // constant at or below lo, and nowhere where c is above hi; and so on.
    let (a, op, b) = match op {
        CompareOp::Ge => (b, CompareOp::Le, a),
        CompareOp::Gt => (b, CompareOp::Lt, a),
        op => (a, *op, b),
    };
    let below = |x: &Ix, y: &Ix| {
        y.plus(x, -1)
            .filter(|d| d.terms.is_empty())
            .map(|d| d.constant)
    };
    for (name, lo, hi) in facts {
        let j = Ix::name(name);
        // a op b as `gap op' 0` from j's ends: known where j is one side.
        let (always, never) = if *b == j {
            // a <= j: holds if a <= lo; fails if a > hi.
            (below(a, lo), below(hi, a))
        } else if *a == j {
            // j <= b: holds if hi <= b; fails if lo > b.
            (below(hi, b), below(b, lo))
        } else {
            continue;
        };
        let strict = i64::from(op == CompareOp::Lt);
        match op {
            CompareOp::Le | CompareOp::Lt => {
                if always.is_some_and(|d| d >= strict) {
                    return Some(true);
                }
                if never.is_some_and(|d| d + strict > 0) {
                    return Some(false);
                }
            }
            _ => {}
        }
    }
    None
}
