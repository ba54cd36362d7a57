//! A generator of random well-formed layers and losses, written as a user
//! writes a spec: dims with small defaults, inputs and params of rank 0 to
//! 2, `let`s that read each other, affine reads with offsets and strides,
//! sums and means, smooth functions, powers, safe quotients, Iverson
//! brackets and piecewise cases. `derive` is run on them and the engine
//! checks what it derives (`tests/derive_random.rs`).
//!
//! Every read is in bounds by construction, not by luck: a tensor's axes
//! are sized from the reads made of it (the largest of them), a read below
//! 1 is guarded by a bracket or a case, and a `let`'s extent is fixed, so a
//! read past it is guarded too. A range is left to inference only where
//! the language infers exactly the range the generator meant.
//!
//! One seed gives one spec, on any machine, so a failure is reproduced from
//! its seed alone.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The dims a spec may declare, by position in [`Aff`]'s coefficients.
const DIM_NAMES: [&str; 2] = ["n", "m"];

/// An affine expression in the dims, `c0*n + c1*m + c`: a size, a range's
/// end, a constant index.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Aff {
    dims: [i64; 2],
    c: i64,
}

impl Aff {
    fn constant(c: i64) -> Self {
        Aff { dims: [0, 0], c }
    }

    fn dim(d: usize) -> Self {
        let mut a = Aff::constant(0);
        a.dims[d] = 1;
        a
    }

    fn plus(self, c: i64) -> Self {
        Aff {
            c: self.c + c,
            ..self
        }
    }

    fn scaled(self, s: i64) -> Self {
        Aff {
            dims: [self.dims[0] * s, self.dims[1] * s],
            c: self.c * s,
        }
    }

    fn add(self, o: Aff) -> Self {
        Aff {
            dims: [self.dims[0] + o.dims[0], self.dims[1] + o.dims[1]],
            c: self.c + o.c,
        }
    }

    fn sub(self, o: Aff) -> Self {
        self.add(o.scaled(-1))
    }

    /// The least size that holds both: each coefficient at its largest,
    /// which bounds both from above at every size of the sweep.
    fn max(self, o: Aff) -> Self {
        Aff {
            dims: [self.dims[0].max(o.dims[0]), self.dims[1].max(o.dims[1])],
            c: self.c.max(o.c),
        }
    }

    fn at(self, dims: [i64; 2]) -> i64 {
        self.dims[0] * dims[0] + self.dims[1] * dims[1] + self.c
    }

    /// Non-negative at every size from `least` up.
    fn nonneg(self, least: [i64; 2]) -> bool {
        self.dims.iter().all(|&c| c >= 0) && self.at(least) >= 0
    }

    fn same_dims(self, o: Aff) -> bool {
        self.dims == o.dims
    }

    fn render(self) -> String {
        let mut out = String::new();
        for (d, &c) in self.dims.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let name = DIM_NAMES[d];
            let term = if c.abs() == 1 {
                name.to_string()
            } else {
                format!("{}*{name}", c.abs())
            };
            out = match (out.is_empty(), c < 0) {
                (true, false) => term,
                (true, true) => format!("-{term}"),
                (false, false) => format!("{out} + {term}"),
                (false, true) => format!("{out} - {term}"),
            };
        }
        match (out.is_empty(), self.c) {
            (true, c) => c.to_string(),
            (false, 0) => out,
            (false, c) if c > 0 => format!("{out} + {c}"),
            (false, c) => format!("{out} - {}", -c),
        }
    }
}

/// An index variable in scope and the range it runs over.
#[derive(Clone, Debug)]
struct Var {
    name: String,
    lo: i64,
    hi: Aff,
}

/// An index: `2*i + k - 1`, `n`, `3`.
#[derive(Clone, Debug)]
struct Ix {
    vars: Vec<(String, i64)>,
    offset: Aff,
}

impl Ix {
    fn render(&self) -> String {
        let mut out = String::new();
        for (v, c) in &self.vars {
            let term = if *c == 1 {
                v.clone()
            } else {
                format!("{c}*{v}")
            };
            out = if out.is_empty() {
                term
            } else {
                format!("{out}+{term}")
            };
        }
        if out.is_empty() {
            return self.offset.render();
        }
        let off = self.offset.render();
        if self.offset == Aff::constant(0) {
            out
        } else if let Some(neg) = off.strip_prefix('-') {
            format!("{out}-{neg}")
        } else {
            format!("{out}+{off}")
        }
    }

    /// The index is exactly the variable `v`.
    fn is_plain(&self, v: &str) -> bool {
        self.offset == Aff::constant(0) && self.vars.len() == 1 && self.vars[0] == (v.into(), 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Tensor(usize),
    Let(usize),
}

#[derive(Clone, Debug)]
enum Expr {
    Num(&'static str),
    Dim(usize),
    Read(Target, Vec<Ix>),
    Neg(Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
    PowInt(Box<Expr>, u32),
    /// A real power of a positive base, written `base^p`.
    PowReal(Box<Expr>, &'static str),
    Call(&'static str, Vec<Expr>),
    Reduce {
        op: &'static str,
        var: Var,
        /// Written as one reduction over several indices with the next.
        merged: bool,
        body: Box<Expr>,
    },
    /// `[cond] * body`: the bracket guards the reads of its product.
    Guard(String, Box<Expr>),
}

/// A case's condition: on indices, or on a value read from a tensor.
#[derive(Clone, Debug)]
enum Cond {
    Index(String),
    Value(Expr, &'static str),
}

#[derive(Clone, Debug)]
enum Body {
    Plain(Expr),
    Cases(Vec<(Expr, Cond)>, Expr),
}

#[derive(Clone, Debug)]
struct Tensor {
    name: &'static str,
    param: bool,
    /// Each axis's size: the largest read made of it.
    axes: Vec<Aff>,
    positive: bool,
    used: bool,
}

#[derive(Clone, Debug)]
struct Def {
    /// `None` for a `loss L`.
    name: String,
    vars: Vec<Var>,
    body: Body,
    is_let: bool,
    is_loss: bool,
}

/// Generation state of one spec.
struct Gen {
    rng: ChaCha8Rng,
    /// Which dims the spec declares (n always), their defaults and least sizes.
    dims: usize,
    defaults: [i64; 2],
    least: [i64; 2],
    tensors: Vec<Tensor>,
    defs: Vec<Def>,
    /// Fresh reduction index names used so far.
    fresh: usize,
    /// Depth budget of the expression being built.
    depth: u32,
    /// Inside an `exp`'s argument: no `exp` and no dim there, so that
    /// `exp(exp(n))` does not overflow at the sizes checked.
    in_exp: u32,
}

/// One random spec: its text, and the seed that made it.
pub fn random_spec(seed: u64) -> String {
    let mut g = Gen::new(seed);
    g.build();
    g.render(seed)
}

impl Gen {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dims = if rng.random_bool(0.4) { 2 } else { 1 };
        let least = [
            if rng.random_bool(0.2) { 2 } else { 1 },
            if rng.random_bool(0.2) { 2 } else { 1 },
        ];
        let defaults = [rng.random_range(3..=5), rng.random_range(2..=4)];
        Gen {
            rng,
            dims,
            defaults,
            least,
            tensors: vec![],
            defs: vec![],
            fresh: 0,
            depth: 0,
            in_exp: 0,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())].clone()
    }

    /// The tensors a spec may read, declared only if read: inputs `x`
    /// (rank 1 or 2) and `z`, params `w` (rank 1 or 2), `v`, the scalars
    /// `a`, `b` and a positive `s`.
    fn declare_pool(&mut self) {
        let rank_x = if self.dims == 2 && self.chance(0.5) {
            2
        } else {
            1
        };
        let rank_w = if self.chance(0.4) { 2 } else { 1 };
        let specs: [(&'static str, bool, usize, bool); 7] = [
            ("x", false, rank_x, false),
            ("z", false, 1, false),
            ("w", true, rank_w, false),
            ("v", true, 1, false),
            ("a", true, 0, false),
            ("b", true, 0, false),
            ("s", true, 0, true),
        ];
        for (name, param, rank, positive) in specs {
            self.tensors.push(Tensor {
                name,
                param,
                axes: vec![Aff::constant(1); rank],
                positive,
                used: false,
            });
        }
    }

    fn dim_range(&mut self) -> Aff {
        let d = self.rng.random_range(0..self.dims);
        let base = Aff::dim(d);
        match self.rng.random_range(0..6) {
            0 => base.plus(1),
            1 if self.least[d] >= 2 => base.plus(-1),
            _ => base,
        }
    }

    fn build(&mut self) {
        self.declare_pool();
        // The output's shape: a loss or a scalar layer (rank 0), a layer of rank 1 or 2.
        let kind = self.rng.random_range(0..10);
        let (is_loss, rank) = match kind {
            0..=2 => (true, 0),
            3 => (false, 0),
            4..=7 => (false, 1),
            _ => (false, if self.dims == 2 { 2 } else { 1 }),
        };
        let out_vars: Vec<Var> = ["i", "j"][..rank]
            .iter()
            .map(|name| Var {
                name: (*name).into(),
                lo: 1,
                hi: self.dim_range(),
            })
            .collect();
        let lets = self.rng.random_range(0..=3);
        for k in 0..lets {
            let name = ["h", "u", "q"][k];
            let let_rank = self.rng.random_range(0..=rank.max(1));
            let vars: Vec<Var> = (0..let_rank)
                .map(|a| {
                    let hi = out_vars.get(a).map_or_else(|| self.dim_range(), |v| v.hi);
                    let hi = if self.chance(0.25) { hi.plus(1) } else { hi };
                    Var {
                        name: ["i", "j"][a].into(),
                        lo: 1,
                        hi,
                    }
                })
                .collect();
            let reduce = let_rank == 0 && self.chance(0.7);
            let body = self.def_body(&vars, reduce);
            self.defs.push(Def {
                name: name.into(),
                vars,
                body,
                is_let: true,
                is_loss: false,
            });
        }
        for _attempt in 0..20 {
            let reduce = rank == 0 && self.chance(0.85);
            let body = self.def_body(&out_vars, reduce);
            let def = Def {
                name: if is_loss {
                    "L".into()
                } else if rank == 0 {
                    "out".into()
                } else {
                    "y".into()
                },
                vars: out_vars.clone(),
                body,
                is_let: false,
                is_loss,
            };
            if self.reads_a_tensor(&def) {
                self.defs.push(def);
                return;
            }
        }
        // A layer that reads no input or param has no gradient: read one.
        let x = self.read_tensor(0, &out_vars, true);
        self.defs.push(Def {
            name: if rank == 0 { "out".into() } else { "y".into() },
            vars: out_vars,
            body: Body::Plain(x),
            is_let: false,
            is_loss: false,
        });
    }

    /// Whether a definition reads an input or param, directly or through lets.
    fn reads_a_tensor(&self, def: &Def) -> bool {
        let mut found = false;
        for_each_expr_of(&def.body, &mut |e| match e {
            Expr::Read(Target::Tensor(_), _) => found = true,
            Expr::Read(Target::Let(l), _) => found |= self.reads_a_tensor(&self.defs[*l]),
            _ => {}
        });
        found
    }

    /// A definition's body: one expression, or cases on its first index or
    /// on a value. A scalar definition whose value must be scalar sums its
    /// terms over a range.
    fn def_body(&mut self, vars: &[Var], reduce_at_top: bool) -> Body {
        self.depth = 0;
        if reduce_at_top {
            return Body::Plain(self.top_reduction(vars));
        }
        if vars.is_empty() || !self.chance(0.3) {
            return Body::Plain(self.def_expr(vars));
        }
        let first = &vars[0];
        if self.chance(0.6) {
            // Cases on the index: a read at i-1 or i-2 under `if i >= 2`.
            let from = self.rng.random_range(2..=3);
            let mut inner = vars.to_vec();
            inner[0].lo = from;
            let cond = match self.rng.random_range(0..3) {
                0 if from == 2 => format!("{} > 1", first.name),
                _ => format!("{} >= {from}", first.name),
            };
            let then = self.def_expr(&inner);
            self.depth = 0;
            let otherwise = self.def_expr(vars);
            Body::Cases(vec![(then, Cond::Index(cond))], otherwise)
        } else {
            // Cases on a value, as elu or a hinge writes them.
            let t = self.pick(&[0usize, 1]);
            let read = self.read_tensor(t, vars, false);
            let op = self.pick(&[">", "<=", ">="]);
            let then = self.def_expr(vars);
            self.depth = 0;
            let otherwise = self.expr(vars);
            Body::Cases(vec![(then, Cond::Value(read, op))], otherwise)
        }
    }

    /// A definition's expression, which mostly reads at each of its indices.
    fn def_expr(&mut self, vars: &[Var]) -> Expr {
        if vars.is_empty() || self.chance(0.15) {
            return self.expr(vars);
        }
        let mut e = self.expr_reading(vars, &vars[0].name);
        for v in &vars[1..] {
            let other = self.expr_reading(vars, &v.name);
            let op = self.pick(&['+', '*']);
            e = Expr::Bin(op, Box::new(e), Box::new(other));
        }
        e
    }

    fn top_reduction(&mut self, vars: &[Var]) -> Expr {
        let r = self.reduction(vars);
        if self.chance(0.3) {
            let other = self.expr(vars);
            Expr::Bin('+', Box::new(r), Box::new(other))
        } else {
            r
        }
    }

    fn fresh_name(&mut self) -> String {
        let name = ["k", "l", "p", "t", "r", "c", "d", "f"][self.fresh % 8].to_string();
        self.fresh += 1;
        if self.fresh > 8 {
            format!("{name}{}", self.fresh / 8)
        } else {
            name
        }
    }

    /// `sum(k in 1..=n) …`, `mean(k) …`, now and then a `max` (which derive
    /// refuses), over a fresh index whose body reads it.
    fn reduction(&mut self, vars: &[Var]) -> Expr {
        let op = match self.rng.random_range(0..60) {
            0 => "max",
            1..=18 => "mean",
            _ => "sum",
        };
        let mut hi = self.dim_range();
        let mut lo = 1;
        if self.chance(0.15) {
            hi = Aff::constant(self.rng.random_range(1..=3));
        } else if op == "sum" && self.chance(0.15) {
            lo = 2; // may be empty at the smallest size: an empty sum is 0
        }
        let var = Var {
            name: self.fresh_name(),
            lo,
            hi,
        };
        let mut inner = vars.to_vec();
        inner.push(var.clone());
        self.depth += 1;
        let mut body = self.expr_reading(&inner, &var.name);
        // Two reductions in a row, now and then written as one: `sum(k, l)`.
        let mut merged = false;
        if op != "max" && self.depth < 3 && self.chance(0.12) {
            let second = self.reduction_over(&inner, op);
            if let Expr::Reduce { .. } = second {
                body = second;
                merged = self.chance(0.5);
            }
        }
        self.depth -= 1;
        Expr::Reduce {
            op,
            var,
            merged,
            body: Box::new(body),
        }
    }

    fn reduction_over(&mut self, vars: &[Var], op: &'static str) -> Expr {
        let var = Var {
            name: self.fresh_name(),
            lo: 1,
            hi: self.dim_range(),
        };
        let mut inner = vars.to_vec();
        inner.push(var.clone());
        let body = self.expr_reading(&inner, &var.name);
        Expr::Reduce {
            op,
            var,
            merged: false,
            body: Box::new(body),
        }
    }

    /// An expression that reads `var` (a reduction's body), as a product
    /// with a read of it.
    fn expr_reading(&mut self, vars: &[Var], var: &str) -> Expr {
        let v = vars.iter().position(|v| v.name == var).unwrap_or(0);
        let read = self.read_with(vars, v);
        if self.chance(0.3) {
            return read;
        }
        let other = self.expr(vars);
        match self.rng.random_range(0..4) {
            0 => Expr::Bin('+', Box::new(read), Box::new(other)),
            1 => Expr::Bin('*', Box::new(other), Box::new(read)),
            _ => Expr::Bin('*', Box::new(read), Box::new(other)),
        }
    }

    /// A read that uses the variable at `v`: of an input or param, or of a let.
    fn read_with(&mut self, vars: &[Var], v: usize) -> Expr {
        let lets: Vec<usize> = (0..self.defs.len())
            .filter(|&l| !self.defs[l].vars.is_empty())
            .collect();
        if !lets.is_empty() && self.chance(0.45) {
            let l = self.pick(&lets);
            return self.read_let(l, vars, Some(v));
        }
        let t = self.pick(&[0usize, 0, 1, 2, 2, 3]);
        self.read_tensor_with(t, vars, Some(v), true)
    }

    fn read_tensor(&mut self, t: usize, vars: &[Var], guards: bool) -> Expr {
        self.read_tensor_with(t, vars, None, guards)
    }

    /// A read of tensor `t`, each axis at an affine index of the variables
    /// in scope (the one at `prefer` first), the tensor sized to hold it.
    /// An index that may fall below 1 is raised, or guarded by a bracket.
    fn read_tensor_with(
        &mut self,
        t: usize,
        vars: &[Var],
        prefer: Option<usize>,
        guards: bool,
    ) -> Expr {
        let rank = self.tensors[t].axes.len();
        self.tensors[t].used = true;
        let mut idx = vec![];
        let mut guard: Option<String> = None;
        let prefer_axis = if rank > 0 {
            self.rng.random_range(0..rank)
        } else {
            0
        };
        for axis in 0..rank {
            let chosen = if axis == prefer_axis && prefer.is_some() {
                prefer
            } else if !vars.is_empty() && self.chance(0.85) {
                Some(self.rng.random_range(0..vars.len()))
            } else {
                None
            };
            let Some(vi) = chosen else {
                // A fixed index: 1, 2 or the last of a dim.
                let off = match self.rng.random_range(0..3) {
                    0 => Aff::constant(2),
                    1 => Aff::dim(self.rng.random_range(0..self.dims)),
                    _ => Aff::constant(1),
                };
                self.grow(t, axis, off);
                idx.push(Ix {
                    vars: vec![],
                    offset: off,
                });
                continue;
            };
            let var = vars[vi].clone();
            let stride = if self.chance(0.2) { 2 } else { 1 };
            let mut terms = vec![(var.name.clone(), stride)];
            let mut lo = stride * var.lo;
            let mut hi = var.hi.scaled(stride);
            // A second index, as a convolution reads x[i+k-1].
            if vars.len() >= 2 && self.chance(0.15) {
                let other = self.rng.random_range(0..vars.len());
                if other != vi {
                    terms.push((vars[other].name.clone(), 1));
                    lo += vars[other].lo;
                    hi = hi.add(vars[other].hi);
                }
            }
            let mut offset = self.rng.random_range(-2..=2);
            if lo + offset < 1 {
                let can_guard = guards && terms.len() == 1 && guard.is_none();
                if can_guard && self.chance(0.5) {
                    let from = (1 - offset + stride - 1) / stride;
                    guard = Some(format!("{} >= {from}", var.name));
                } else {
                    offset = 1 - lo;
                }
            }
            self.grow(t, axis, hi.plus(offset));
            idx.push(Ix {
                vars: terms,
                offset: Aff::constant(offset),
            });
        }
        let read = Expr::Read(Target::Tensor(t), idx);
        match guard {
            Some(g) => Expr::Guard(g, Box::new(read)),
            None => read,
        }
    }

    fn grow(&mut self, t: usize, axis: usize, need: Aff) {
        let a = &mut self.tensors[t].axes[axis];
        *a = a.max(need);
    }

    /// A read of let `l` at the variables in scope: offsets past its
    /// extent are guarded; an axis no variable fits is read at 1 or at its end.
    fn read_let(&mut self, l: usize, vars: &[Var], prefer: Option<usize>) -> Expr {
        let extents: Vec<Var> = self.defs[l].vars.clone();
        let mut idx = vec![];
        let mut conds = vec![];
        for (axis, ext) in extents.iter().enumerate() {
            let fitting: Vec<usize> = (0..vars.len())
                .filter(|&v| vars[v].hi.same_dims(ext.hi))
                .collect();
            let chosen = match prefer {
                Some(p) if axis == 0 && vars[p].hi.same_dims(ext.hi) => Some(p),
                _ if fitting.is_empty() || self.chance(0.1) => None,
                _ => Some(self.pick(&fitting)),
            };
            let Some(vi) = chosen else {
                let off = if self.chance(0.5) {
                    Aff::constant(1)
                } else {
                    ext.hi
                };
                idx.push(Ix {
                    vars: vec![],
                    offset: off,
                });
                continue;
            };
            let var = &vars[vi];
            let mut offset: i64 = self.pick(&[0, 0, 0, 1, -1, 2, -2]);
            let least = self.least;
            let fits = |o: i64| (var.lo + o >= 1, ext.hi.sub(var.hi.plus(o)).nonneg(least));
            if fits(offset) != (true, true) && self.chance(0.3) {
                offset = 0;
            }
            let lo_need = 1 - offset;
            let hi_need = ext.hi.plus(-offset).render();
            match fits(offset) {
                (true, true) => {}
                (false, true) => conds.push(format!("{} >= {lo_need}", var.name)),
                (true, false) => conds.push(format!("{} <= {hi_need}", var.name)),
                (false, false) => conds.push(format!("{lo_need} <= {} <= {hi_need}", var.name)),
            }
            idx.push(Ix {
                vars: vec![(var.name.clone(), 1)],
                offset: Aff::constant(offset),
            });
        }
        let read = Expr::Read(Target::Let(l), idx);
        if conds.is_empty() {
            read
        } else {
            Expr::Guard(conds.join(" and "), Box::new(read))
        }
    }

    /// A random expression over the variables in scope.
    fn expr(&mut self, vars: &[Var]) -> Expr {
        self.depth += 1;
        let leaf = self.depth >= 5 || self.chance(0.25 * f64::from(self.depth - 1));
        let e = if leaf {
            self.leaf(vars)
        } else {
            self.node(vars)
        };
        self.depth -= 1;
        e
    }

    fn leaf(&mut self, vars: &[Var]) -> Expr {
        let lets: Vec<usize> = (0..self.defs.len()).collect();
        match self.rng.random_range(0..20) {
            0 => Expr::Num(self.pick(&["0.5", "2", "1.5", "3", "0.25"])),
            1 if self.in_exp == 0 => Expr::Dim(self.rng.random_range(0..self.dims)),
            1 => Expr::Num("0.5"),
            2..=4 => {
                let t = self.pick(&[4usize, 5, 6]);
                self.read_tensor(t, vars, true)
            }
            5..=9 if !lets.is_empty() => {
                let l = self.pick(&lets);
                self.read_let(l, vars, None)
            }
            _ => {
                let t = self.pick(&[0usize, 0, 1, 2, 2, 3]);
                self.read_tensor(t, vars, true)
            }
        }
    }

    fn node(&mut self, vars: &[Var]) -> Expr {
        match self.rng.random_range(0..30) {
            0..=4 => {
                let op = self.pick(&['+', '-']);
                Expr::Bin(op, Box::new(self.expr(vars)), Box::new(self.expr(vars)))
            }
            5..=9 => Expr::Bin('*', Box::new(self.expr(vars)), Box::new(self.expr(vars))),
            10..=11 => {
                let num = self.expr(vars);
                Expr::Bin('/', Box::new(num), Box::new(self.denominator(vars)))
            }
            12 => Expr::Neg(Box::new(self.expr(vars))),
            13..=14 => {
                let k = self.pick(&[2, 2, 3]);
                Expr::PowInt(Box::new(self.expr(vars)), k)
            }
            15..=19 => self.smooth_call(vars),
            20 => self.kinked_call(vars),
            21 => {
                let base = self.positive(vars);
                Expr::PowReal(Box::new(base), self.pick(&["1.5", "0.5", "2.5"]))
            }
            22..=25 => self.reduction(vars),
            26..=27 if !vars.is_empty() => {
                let cond = self.index_bracket(vars);
                Expr::Guard(cond, Box::new(self.expr(vars)))
            }
            28 if self.chance(0.12) => {
                // min/max of two values: ties are measure-zero, but derive refuses them.
                let f = self.pick(&["min", "max"]);
                Expr::Call(f, vec![self.expr(vars), self.expr(vars)])
            }
            _ => self.smooth_call(vars),
        }
    }

    /// A bracket on the indices in scope: `[i >= 2]`, `[k <= n-1]`, `[i == k]`.
    fn index_bracket(&mut self, vars: &[Var]) -> String {
        let v = self.pick(vars);
        if vars.len() >= 2 && self.chance(0.3) {
            let w = self.pick(vars);
            if w.name != v.name {
                let op = self.pick(&["==", "!=", "<=", "<"]);
                return format!("{} {op} {}", v.name, w.name);
            }
        }
        match self.rng.random_range(0..4) {
            0 => format!("{} >= 2", v.name),
            1 => format!("{} <= {}", v.name, v.hi.plus(-1).render()),
            2 => format!("{} == 1", v.name),
            _ => format!("2 <= {} <= {}", v.name, v.hi.plus(-1).render()),
        }
    }

    fn smooth_call(&mut self, vars: &[Var]) -> Expr {
        let f = self.pick(&[
            "exp", "tanh", "sigmoid", "softplus", "sin", "cos", "atan", "erf", "log", "sqrt",
            "tanh", "exp",
        ]);
        match f {
            "log" | "sqrt" => Expr::Call(f, vec![self.positive(vars)]),
            "exp" => self.exp_of(vars),
            _ => Expr::Call(f, vec![self.expr(vars)]),
        }
    }

    /// `exp(e)`, or `tanh(e)` inside another exp's argument. An argument
    /// that reads a let, a reduction or a power can be large (`exp(h^3)`
    /// with h of a few units overflows): it is bounded, `exp(tanh(e))`.
    fn exp_of(&mut self, vars: &[Var]) -> Expr {
        self.in_exp += 1;
        let mut e = self.expr(vars);
        self.in_exp -= 1;
        if may_be_large(&e) {
            e = Expr::Call("tanh", vec![e]);
        }
        Expr::Call(if self.in_exp > 0 { "tanh" } else { "exp" }, vec![e])
    }

    /// relu or abs, of an argument that is away from the kink at every
    /// draw: random values and a non-zero offset, no brackets or sums that
    /// could make it exactly 0.
    fn kinked_call(&mut self, vars: &[Var]) -> Expr {
        let f = self.pick(&["relu", "abs"]);
        let t = self.pick(&[0usize, 1, 2, 4]);
        let mut arg = self.read_tensor(t, vars, false);
        if self.chance(0.5) {
            let u = self.pick(&[0usize, 3, 5]);
            let other = self.read_tensor(u, vars, false);
            arg = Expr::Bin('*', Box::new(arg), Box::new(other));
        }
        let off = self.pick(&["0.3", "0.1"]);
        Expr::Call(
            f,
            vec![Expr::Bin(
                self.pick(&['+', '-']),
                Box::new(arg),
                Box::new(Expr::Num(off)),
            )],
        )
    }

    /// A value kept positive at every draw: `1 + e^2`, `exp(e)`, `s`,
    /// `2 + tanh(e)`, `sqrt(1 + e^2)`.
    fn positive(&mut self, vars: &[Var]) -> Expr {
        match self.rng.random_range(0..5) {
            0 if self.in_exp == 0 => self.exp_of(vars),
            1 => {
                self.tensors[6].used = true;
                Expr::Read(Target::Tensor(6), vec![])
            }
            k => self.positive_of(k, vars),
        }
    }

    fn positive_of(&mut self, k: u32, vars: &[Var]) -> Expr {
        let e = self.expr(vars);
        match k {
            2 => Expr::Bin(
                '+',
                Box::new(Expr::Num("2")),
                Box::new(Expr::Call("tanh", vec![e])),
            ),
            3 => Expr::Call(
                "sqrt",
                vec![Expr::Bin(
                    '+',
                    Box::new(Expr::Num("1")),
                    Box::new(Expr::PowInt(Box::new(e), 2)),
                )],
            ),
            _ => Expr::Bin(
                '+',
                Box::new(Expr::Num("1")),
                Box::new(Expr::PowInt(Box::new(e), 2)),
            ),
        }
    }

    fn denominator(&mut self, vars: &[Var]) -> Expr {
        match self.rng.random_range(0..6) {
            0 if self.in_exp == 0 => Expr::Dim(self.rng.random_range(0..self.dims)),
            1 => Expr::Num("2"),
            _ => self.positive(vars),
        }
    }

    // ---- rendering ----

    fn render(&self, seed: u64) -> String {
        let mut out = format!(
            "# A random layer of tests/derive_random.rs, seed {seed}.\nexercise \"random layer {seed}\"\n\n"
        );
        let dims: Vec<String> = (0..self.dims)
            .map(|d| {
                let least = if self.least[d] >= 2 { " >= 2" } else { "" };
                format!("{}{least} = {}", DIM_NAMES[d], self.defaults[d])
            })
            .collect();
        out += &format!("dim {}\n", dims.join(", "));
        for t in self.tensors.iter().filter(|t| t.used) {
            let kind = if t.param { "param" } else { "input" };
            let shape = if t.axes.is_empty() {
                String::new()
            } else {
                let sizes: Vec<String> = t.axes.iter().map(|a| a.render()).collect();
                format!("[{}]", sizes.join(", "))
            };
            let domain = if t.positive {
                " > 0"
            } else if t.name == "z" {
                " in (-2, 2)"
            } else {
                ""
            };
            out += &format!("{kind} {}{shape}{domain}\n", t.name);
        }
        out.push('\n');
        for def in &self.defs {
            out += &self.render_def(def);
            out.push('\n');
        }
        out
    }

    fn render_def(&self, def: &Def) -> String {
        let head = if def.is_loss {
            "loss L".to_string()
        } else {
            let prefix = if def.is_let { "let " } else { "" };
            let names: Vec<&str> = def.vars.iter().map(|v| v.name.as_str()).collect();
            if names.is_empty() {
                format!("{prefix}{}", def.name)
            } else {
                format!("{prefix}{}[{}]", def.name, names.join(", "))
            }
        };
        let inferable = !has_guard_or_case(&def.body);
        let ranges: Vec<String> = def
            .vars
            .iter()
            .map(|v| format!("{} in {}..={}", v.name, v.lo, v.hi.render()))
            .collect();
        let infer_all = inferable
            && !def.vars.is_empty()
            && def
                .vars
                .iter()
                .all(|v| self.infers_exactly(v, &body_exprs(&def.body), true));
        let suffix = if ranges.is_empty() || infer_all {
            String::new()
        } else {
            format!("    for {}", ranges.join(", "))
        };
        match &def.body {
            Body::Plain(e) => format!("{head} = {}{suffix}", self.show(e, 0, inferable)),
            Body::Cases(cases, otherwise) => {
                let pad = " ".repeat(head.len() + 1);
                let mut lines = vec![];
                for (k, (e, c)) in cases.iter().enumerate() {
                    let lead = if k == 0 {
                        format!("{head} =")
                    } else {
                        format!("{pad}|")
                    };
                    lines.push(format!(
                        "{lead} {}    if {}",
                        self.show(e, 0, false),
                        self.show_cond(c)
                    ));
                }
                lines.push(format!(
                    "{pad}| {}    otherwise{suffix}",
                    self.show(otherwise, 0, false)
                ));
                lines.join("\n")
            }
        }
    }

    fn show_cond(&self, c: &Cond) -> String {
        match c {
            Cond::Index(s) => s.clone(),
            Cond::Value(e, op) => format!("{} {op} 0", self.show(e, 5, false)),
        }
    }

    /// Whether inference gives `v` exactly the range meant: a read of it
    /// alone on an axis of exactly that size bounds it to that range (every
    /// other read is in bounds over the range, so inference cannot make it
    /// narrower), and every read of it alone is on an axis of that size up to
    /// a constant (TACO's rule, `dl::analysis::shape_mismatch`). A
    /// definition's index (`strict`) takes no intersection of bounds
    /// (`dl::analysis::uninferable_range`): there every read of it at
    /// coefficient 1 must be that exact one.
    fn infers_exactly(&self, v: &Var, scope: &[&Expr], strict: bool) -> bool {
        if v.lo != 1 {
            return false;
        }
        let mut reduced = vec![];
        for e in scope {
            for_each_expr(e, &mut |e| {
                if let Expr::Reduce { var, .. } = e {
                    reduced.push(var.name.clone());
                }
            });
        }
        let mut exact = false;
        let mut clash = false;
        for e in scope {
            for_each_expr(e, &mut |e| {
                let Expr::Read(target, idx) = e else {
                    return;
                };
                for (axis, ix) in idx.iter().enumerate() {
                    let size = match target {
                        Target::Tensor(t) => self.tensors[*t].axes[axis],
                        Target::Let(l) => self.defs[*l].vars[axis].hi,
                    };
                    if ix.is_plain(&v.name) {
                        exact |= size == v.hi;
                        clash |= !size.same_dims(v.hi) || (strict && size != v.hi);
                    } else if strict
                        && ix.vars.iter().any(|(w, c)| *w == v.name && *c == 1)
                        && !ix.vars.iter().any(|(w, _)| reduced.contains(w))
                    {
                        clash = true;
                    }
                }
            });
        }
        exact && !clash
    }

    /// An expression as text, parenthesized where its context binds
    /// tighter: 1 sums, 2 products, 3 unary minus, 4 powers, 5 atoms.
    fn show(&self, e: &Expr, ctx: u8, inferable: bool) -> String {
        let (text, prec) = match e {
            Expr::Num(s) => ((*s).to_string(), 5),
            Expr::Dim(d) => (DIM_NAMES[*d].to_string(), 5),
            Expr::Read(target, idx) => {
                let name = match target {
                    Target::Tensor(t) => self.tensors[*t].name.to_string(),
                    Target::Let(l) => self.defs[*l].name.clone(),
                };
                if idx.is_empty() {
                    (name, 5)
                } else {
                    let ix: Vec<String> = idx.iter().map(Ix::render).collect();
                    (format!("{name}[{}]", ix.join(", ")), 5)
                }
            }
            Expr::Neg(a) => (format!("-{}", self.show(a, 4, inferable)), 3),
            Expr::Bin(op, a, b) => {
                let (p, left, right) = match op {
                    '+' => (1, 1, 1),
                    '-' => (1, 1, 2),
                    '*' => (2, 2, 2),
                    _ => (2, 2, 3),
                };
                (
                    format!(
                        "{} {op} {}",
                        self.show(a, left, inferable),
                        self.show(b, right, inferable)
                    ),
                    p,
                )
            }
            Expr::PowInt(a, k) => (format!("{}^{k}", self.show(a, 5, inferable)), 4),
            Expr::PowReal(a, p) => (format!("{}^{p}", self.show(a, 5, inferable)), 4),
            Expr::Call(f, args) => {
                let args: Vec<String> = args.iter().map(|a| self.show(a, 0, inferable)).collect();
                (format!("{f}({})", args.join(", ")), 5)
            }
            Expr::Reduce { .. } => (self.show_reduce(e, inferable), 1),
            Expr::Guard(cond, a) => (format!("[{cond}] * {}", self.show(a, 2, inferable)), 2),
        };
        // A reduction's body runs to the end of its product: parenthesized
        // as a factor, bare as a term.
        if prec < ctx {
            format!("({text})")
        } else {
            text
        }
    }

    /// `sum(k in 1..=n) body`, `mean(k) body` where inference gives the
    /// range meant, `sum(k in 1..=n, l in 1..=m) body` for two in a row.
    fn show_reduce(&self, e: &Expr, inferable: bool) -> String {
        let mut binders = vec![];
        let mut cur = e;
        let mut op = "";
        while let Expr::Reduce {
            op: o,
            var,
            merged,
            body,
        } = cur
        {
            op = o;
            let range = if inferable && self.infers_exactly(var, &[body], false) {
                var.name.clone()
            } else {
                format!("{} in {}..={}", var.name, var.lo, var.hi.render())
            };
            binders.push(range);
            cur = body;
            if !*merged || !matches!(**body, Expr::Reduce { op: inner, .. } if inner == *o) {
                break;
            }
        }
        // The body is a product of factors: a sum in it is parenthesized.
        format!(
            "{op}({}) {}",
            binders.join(", "),
            self.show(cur, 2, inferable)
        )
    }
}

fn body_exprs(body: &Body) -> Vec<&Expr> {
    match body {
        Body::Plain(e) => vec![e],
        Body::Cases(cases, otherwise) => cases
            .iter()
            .flat_map(|(e, c)| match c {
                Cond::Value(r, _) => vec![e, r],
                Cond::Index(_) => vec![e],
            })
            .chain(std::iter::once(otherwise))
            .collect(),
    }
}

fn has_guard_or_case(body: &Body) -> bool {
    match body {
        Body::Cases(..) => true,
        Body::Plain(e) => {
            let mut found = false;
            for_each_expr(e, &mut |e| found |= matches!(e, Expr::Guard(..)));
            found
        }
    }
}

fn for_each_expr_of(body: &Body, f: &mut dyn FnMut(&Expr)) {
    for e in body_exprs(body) {
        for_each_expr(e, f);
    }
}

fn for_each_expr(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Num(_) | Expr::Dim(_) | Expr::Read(..) => {}
        Expr::Neg(a) | Expr::PowInt(a, _) | Expr::PowReal(a, _) | Expr::Guard(_, a) => {
            for_each_expr(a, f);
        }
        Expr::Bin(_, a, b) => {
            for_each_expr(a, f);
            for_each_expr(b, f);
        }
        Expr::Call(_, args) => args.iter().for_each(|a| for_each_expr(a, f)),
        Expr::Reduce { body, .. } => for_each_expr(body, f),
    }
}

/// Whether an expression may be far from the unit scale of the drawn
/// values: it reads a let, reduces, or raises to a power.
fn may_be_large(e: &Expr) -> bool {
    match e {
        Expr::Num(_) | Expr::Dim(_) => false,
        Expr::Read(Target::Let(_), _) => true,
        Expr::Read(Target::Tensor(_), _) => false,
        Expr::Reduce { .. } | Expr::PowInt(..) | Expr::PowReal(..) => true,
        Expr::Neg(a) | Expr::Guard(_, a) => may_be_large(a),
        Expr::Bin(_, a, b) => may_be_large(a) || may_be_large(b),
        Expr::Call(_, args) => args.iter().any(may_be_large),
    }
}
