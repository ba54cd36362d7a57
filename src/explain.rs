//! The texts of `dlverify explain CODE`, in the manner of `rustc --explain`:
//! for every diagnostic code, what it means, why the engine insists, how to
//! fix it, and a small spec that produces it beside the same spec corrected.
//!
//! `tests/explain.rs` holds the examples to their codes: every wrong spec
//! must produce its code and every right one must check cleanly, so the
//! texts cannot drift from what the engine does.

/// One code's explanation.
#[derive(Debug)]
pub struct Explanation {
    /// The diagnostic code, e.g. `dl::analysis::unknown_name`.
    pub code: &'static str,
    /// One line: what the diagnostic says.
    pub title: &'static str,
    /// What it means and why the engine insists; how to fix it. Paragraphs
    /// are separated by a blank line and wrapped by [`render`].
    pub text: &'static str,
    /// An example that produces it: a complete `.dl` spec where one can, else
    /// a command line or a description.
    pub wrong: &'static str,
    /// The same example corrected.
    pub right: &'static str,
}

/// Every code the engine emits, sorted by code.
pub fn all() -> &'static [Explanation] {
    EXPLANATIONS
}

/// The explanation of `code`, written in full (`dl::eval::no_case`) or
/// without the leading `dl::` (`eval::no_case`).
pub fn explanation(code: &str) -> Option<&'static Explanation> {
    let code = code.trim();
    let full = if code.starts_with("dl::") {
        code.to_string()
    } else {
        format!("dl::{code}")
    };
    EXPLANATIONS.iter().find(|e| e.code == full)
}

/// The width the text of an explanation is wrapped to.
const WIDTH: usize = 80;

/// The text `dlverify explain CODE` prints: the code and title, the text
/// wrapped to 80 columns, and both examples indented by four spaces.
pub fn render(e: &Explanation) -> String {
    let mut out = format!("{}: {}\n", e.code, e.title);
    for paragraph in e.text.split("\n\n") {
        out.push('\n');
        wrap(paragraph, &mut out);
    }
    out.push_str("\nWrong:\n\n");
    indent(e.wrong, &mut out);
    out.push_str("\nRight:\n\n");
    indent(e.right, &mut out);
    out
}

/// Appends `paragraph` wrapped to [`WIDTH`] columns, never breaking inside
/// a `code span`.
fn wrap(paragraph: &str, out: &mut String) {
    let mut width = 0;
    for unit in units(paragraph) {
        let len = unit.chars().count();
        if width > 0 && width + 1 + len > WIDTH {
            out.push('\n');
            width = 0;
        } else if width > 0 {
            out.push(' ');
            width += 1;
        }
        out.push_str(&unit);
        width += len;
    }
    out.push('\n');
}

/// The words of `paragraph`, a code span with spaces in it kept as one.
fn units(paragraph: &str) -> Vec<String> {
    let mut units: Vec<String> = vec![];
    let mut open = false;
    for word in paragraph.split_whitespace() {
        match units.last_mut() {
            Some(last) if open => {
                last.push(' ');
                last.push_str(word);
            }
            _ => units.push(word.to_string()),
        }
        if word.matches('`').count() % 2 == 1 {
            open = !open;
        }
    }
    units
}

fn indent(example: &str, out: &mut String) {
    for line in example.trim_end().lines() {
        if !line.is_empty() {
            out.push_str("    ");
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// Up to three codes closest to a mistyped one, closest first, for "did you
/// mean". A code is close when the whole code, or its last part, is a few
/// edits away (`dl::analysis::unknown_nam`, `unknown_fucntion`), or when its
/// last part contains what was typed (`unknown`).
pub fn similar(code: &str) -> Vec<&'static str> {
    let typed = code.trim().to_lowercase();
    let typed = typed.strip_prefix("dl::").unwrap_or(&typed);
    if typed.is_empty() {
        return vec![];
    }
    let typed_last = last_part(typed);
    let limit = (typed_last.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &'static str)> = EXPLANATIONS
        .iter()
        .filter_map(|e| {
            let candidate = e.code.strip_prefix("dl::").unwrap_or(e.code);
            let last = last_part(candidate);
            let mut distance =
                strsim::levenshtein(typed, candidate).min(strsim::levenshtein(typed_last, last));
            if typed_last.chars().count() >= 3 && last.contains(typed_last) {
                distance = distance.min(1);
            }
            (distance <= limit).then_some((distance, e.code))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, code)| code).collect()
}

/// `unknown_name` of `analysis::unknown_name`.
fn last_part(code: &str) -> &str {
    code.rsplit("::").next().unwrap_or(code)
}

static EXPLANATIONS: &[Explanation] = &[
    Explanation {
        code: "dl::analysis::dim_below_minimum",
        title: "a size is below the smallest the spec declares",
        text: "`dim n >= 2 = 5` says that the exercise is meant for n of at least 2: \
              the sizes checked start there, rather than at 1. A default below that \
              smallest size, or a `--dim n=1`, contradicts the declaration.\n\n\
              Raise the default, or the `--dim` value, to the smallest size or above.",
        wrong: r#"dim n >= 2 = 1
input x[n]
let m = sum(k) x[k] / n
loss L = sum(k) (x[k] - m)^2 / (n - 1)
"#,
        right: r#"dim n >= 2 = 5
input x[n]
let m = sum(k) x[k] / n
loss L = sum(k) (x[k] - m)^2 / (n - 1)
"#,
    },
    Explanation {
        code: "dl::analysis::dim_zero",
        title: "a size is zero",
        text: "Sizes count elements from 1, as in `x[1] ... x[N]`, so a dim must be at \
              least 1. With `dim N = 0`, `x[N]` would hold no elements and there would be \
              nothing to check.\n\n\
              Give the dim a default of at least 1. The engine checks the smaller sizes \
              where boundary mistakes show by itself, down to the smallest at which every \
              range is non-empty.",
        wrong: r#"dim N = 0
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::analysis::distribution_arity",
        title: "a distribution gets the wrong number of parameters",
        text: "Each distribution takes a fixed number of parameters: `bernoulli(p)`, \
              `rademacher()`, `uniform(lo, hi)`, `normal(mean, sd)`. The help line shows \
              the form expected.\n\n\
              A random tensor whose distribution is wrong is not defined, so its reads may \
              be reported as well (as used before its definition); fix this diagnostic \
              first.",
        wrong: r#"dim n = 4
random s[i] ~ rademacher(0.5)  for i in 1..=n
claim E[s[i]] == 0
claim Var[s[i]] == 1
"#,
        right: r#"dim n = 4
random s[i] ~ rademacher()  for i in 1..=n
claim E[s[i]] == 0
claim Var[s[i]] == 1
"#,
    },
    Explanation {
        code: "dl::analysis::drawn_param",
        title: "a param is declared as data",
        text: "`~ distribution` and `in 1..=C` draw data: a mask, a target, labels, \
              drawn once per size and never differentiated. A `param` is what L is \
              differentiated in and what an update rule trains, so it cannot be data. \
              Declare drawn data with `input`.",
        wrong: r#"dim n = 4
param m[n] ~ bernoulli(0.5)
input x[n]
y[i] = m[i] * x[i]
"#,
        right: r#"dim n = 4
input m[n] ~ bernoulli(0.5)
input x[n]
y[i] = m[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::analysis::duplicate_exercise",
        title: "a spec has two `exercise` titles",
        text: "A spec file is one exercise and has one title, which reports show next to \
              the file's name. The engine does not pick one of two.\n\n\
              Keep one `exercise` line. To check several exercises, write one file each \
              and name the directory.",
        wrong: r#"exercise "Scaling"
exercise "Scaling by a"
dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
        right: r#"exercise "Scaling by a"
dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::analysis::duplicate_name",
        title: "a name is declared twice",
        text: "Dims, hypers, inputs, params, lets, random tensors, streams and update rules \
              share one namespace, so each name may be declared once. (The `state` and \
              `let` of an update rule are its own: two rules may both have a `v`.)\n\n\
              A second declaration would make every later read ambiguous, so the engine \
              does not let it shadow the first. Rename one of them.",
        wrong: r#"dim N = 4
input x[N]
param w[N]
hyper lambda = 0.1
let lambda = sum(i) w[i]^2
loss L = sum(i) (w[i] - x[i])^2 + 0.1 * lambda
grad w[j] = 2 * (w[j] - x[j]) + 0.2 * w[j]
"#,
        right: r#"dim N = 4
input x[N]
param w[N]
hyper lambda = 0.1
let penalty = sum(i) w[i]^2
loss L = sum(i) (w[i] - x[i])^2 + lambda * penalty
grad w[j] = 2 * (w[j] - x[j]) + 2 * lambda * w[j]
"#,
    },
    Explanation {
        code: "dl::analysis::empty_domain",
        title: "a value constraint admits no value",
        text: "An interval `in (lo, hi)` or `in [lo, hi]` must have its lower end below its \
              upper end, since the engine draws the values from it. `(1, 0)` has no value \
              to draw.\n\n\
              Write the interval with its lower end first. For a one-sided constraint, \
              write `> 0` or `< 0` instead of an interval.",
        wrong: r#"dim N = 4
input x[N] in (1, 0)
param a
y[i] = a * log(x[i])
grad a = sum(i) g[i] * log(x[i])
"#,
        right: r#"dim N = 4
input x[N] in (0, 1)
param a
y[i] = a * log(x[i])
grad a = sum(i) g[i] * log(x[i])
"#,
    },
    Explanation {
        code: "dl::analysis::empty_range",
        title: "a range is empty at the default sizes",
        text: "At the default sizes, a range of the spec (an axis of the layer's output, a \
              `for` range, a reduction) has no element, so there is nothing to compute or \
              check. In `y[i] = x[i] + x[i+2] for i in 1..=N-2`, N = 2 leaves `i` in \
              `1..=0`.\n\n\
              Raise the default size in the `dim` declaration, or the `--dim` value, until \
              every range has an element. The engine still checks the smaller sizes where \
              the ranges are non-empty.",
        wrong: r#"dim N = 2
input x[N]
param a
y[i] = a * (x[i] + x[i+2])  for i in 1..=N-2
grad a = sum(i) g[i] * (x[i] + x[i+2])
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * (x[i] + x[i+2])  for i in 1..=N-2
grad a = sum(i) g[i] * (x[i] + x[i+2])
"#,
    },
    Explanation {
        code: "dl::analysis::grad_target",
        title: "`grad` names something that is not an input or a param",
        text: "L is differentiated in every input and param, and only in those. A dim, a \
              hyper, a let or the incoming gradient `g` is not a variable of L, so it has \
              no gradient to claim.\n\n\
              Claim the gradient of an input or param. If the value should be \
              differentiable, declare it with `param` (or `input`); a hyper is a fixed \
              constant.",
        wrong: r#"dim N = 4
input x[N]
hyper a = 0.5
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::analysis::incoming_in_forward",
        title: "the layer reads the incoming gradient `g`",
        text: "With a layer output `y[i] = ...`, the engine draws the incoming gradient `g` \
              with the output's shape, `g[i] = dL/dy[i]`, and differentiates `L = sum(i) \
              g[i] * y[i]`. `g` exists only after the forward computation, so the layer \
              cannot read it.\n\n\
              Use `g` in `grad` claims and in the lets they read. If the layer needs a \
              tensor of its own, give it another name.\n\n\
              While the layer is in error, claims that read `g[i]` may also be reported \
              with a wrong index count: fix this diagnostic first.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i] * g[i]
grad a = sum(i) g[i] * x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::analysis::index_data_range",
        title: "labels used as an index may fall outside the axis they index",
        text: "`input y[B] in 1..=C` declares labels: whole numbers drawn from `1..=C`. \
              Used as an index, `lp[b, y[b]]`, each label must name an element of the \
              axis it indexes, at every size checked. The engine compares the declared \
              range, shifted by the index's constant (`y[b] + 1`), with the axis.\n\n\
              Declare the labels over the range of the axis they index.",
        wrong: r#"dim B = 3, C = 4
input z[B, C]
input y[B] in 1..=C+1
loss L = -sum(b) z[b, y[b]]
"#,
        right: r#"dim B = 3, C = 4
input z[B, C]
input y[B] in 1..=C
loss L = -sum(b) z[b, y[b]]
"#,
    },
    Explanation {
        code: "dl::analysis::index_shadows_name",
        title: "an index variable has the name of a dim, hyper or tensor",
        text: "An index bound by a reduction, a `for` or a left-hand side must not reuse a \
              declared name. In `sum(N) x[N]`, `N` would mean the size in one place and \
              the running index in another.\n\n\
              Pick another index name, such as `i`, `j` or `k`.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(N) g[N] * x[N]
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(k) g[k] * x[k]
"#,
    },
    Explanation {
        code: "dl::analysis::indexed_loss",
        title: "a loss has indices",
        text: "`loss L = ...` defines L itself, which is a scalar. `loss L[i] = ...` would \
              be a vector.\n\n\
              Sum it to a scalar, `loss L = sum(i) ...`, or make it a layer output without \
              `loss` (`y[i] = ...`): then the engine draws an incoming gradient `g` and \
              differentiates `sum(i) g[i] * y[i]`.",
        wrong: r#"dim N = 4
input x[N]
param w[N]
loss L[i] = (w[i] - x[i])^2
grad w[j] = 2 * (w[j] - x[j])
"#,
        right: r#"dim N = 4
input x[N]
param w[N]
loss L = sum(i) (w[i] - x[i])^2
grad w[j] = 2 * (w[j] - x[j])
"#,
    },
    Explanation {
        code: "dl::analysis::list_depth",
        title: "values given in rows nest to another depth than the tensor has axes",
        text: "Given values in rows nest one level per axis: `[1, 2, 3]` for a vector, \
              `[[1, 2, 3], [4, 5, 6]]` for a 2 × 3 matrix. A list nested deeper or \
              shallower than its tensor has axes cannot be read as it, at any size.",
        wrong: r#"input x[3] = [[1, 2, 3]]
loss L = sum(i) x[i]^2
"#,
        right: r#"input x[3] = [1, 2, 3]
loss L = sum(i) x[i]^2
"#,
    },
    Explanation {
        code: "dl::analysis::moment_outside_claim",
        title: "`E[...]` or `Var[...]` is used outside a claim",
        text: "Expectations and variances are what a stochastic claim checks, exactly or by \
              sampling. They are not values a `let`, the layer or a loss can compute.\n\n\
              State the moment in the claim itself: `claim E[q[i]] == p[i]`. A let may \
              read random tensors; the claim then takes the moment of that let.",
        wrong: r#"dim n = 4
input p[n] in (0, 1)
random q[i] ~ bernoulli(p[i])
let m[i] = E[q[i]]
claim m[i] == p[i]
"#,
        right: r#"dim n = 4
input p[n] in (0, 1)
random q[i] ~ bernoulli(p[i])
claim E[q[i]] == p[i]
"#,
    },
    Explanation {
        code: "dl::analysis::multiple_outputs",
        title: "a spec defines a second output",
        text: "A spec has one output: a layer (`y[i] = ...`) or a loss (`loss L = ...`). L \
              is defined by it, and every gradient claim is about that L.\n\n\
              Keep one. To build the loss from a layer's values, make the layer a `let` \
              and keep the `loss`.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
loss L = sum(i) y[i]^2
grad a = sum(i) g[i] * x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a
let y[i] = a * x[i]
loss L = sum(i) y[i]^2
grad a = sum(i) 2 * y[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::analysis::nested_moment",
        title: "a moment is taken inside another",
        text: "A claim may take one moment of an expression: `E[x^2]` and `Var[x]` are \
              allowed, `E[Var[x]]` is not. A variance is already a number, not a random \
              value, so its expectation adds nothing, and the engine refuses to guess what \
              was meant.\n\n\
              Take the moment of the random expression directly.",
        wrong: r#"dim n = 4
input p[n] in (0, 1)
random q[i] ~ bernoulli(p[i])
claim E[Var[q[i]]] == p[i] * (1 - p[i])
"#,
        right: r#"dim n = 4
input p[n] in (0, 1)
random q[i] ~ bernoulli(p[i])
claim Var[q[i]] == p[i] * (1 - p[i])
"#,
    },
    Explanation {
        code: "dl::analysis::no_output",
        title: "the spec defines no computation to differentiate",
        text: "`grad` claims and Taylor checks are about L, the spec's output: a layer \
              `y[i] = ...` or a `loss L = ...`. This spec has claims that need L and \
              defines neither (or it has no claims at all). A `let` is not an output, even \
              if it is a scalar. A stream `= grad theta` needs an output too.\n\n\
              Add a layer or a loss. A spec whose claims are about random variables or \
              update rules with drawn gradients needs neither.",
        wrong: r#"dim N = 4
input x[N]
param a
let s = sum(i) a * x[i]
grad a = sum(i) x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a
loss s = sum(i) a * x[i]
grad a = sum(i) x[i]
"#,
    },
    Explanation {
        code: "dl::analysis::non_affine_index",
        title: "an index is not an integer affine expression",
        text: "Indices must be affine in the index variables and dims, with whole-number \
              coefficients: `i`, `i+2`, `N-j`, `2*k-1`. Products of two indices (`i*j`, \
              `i*i`), powers and bare division are not allowed.\n\n\
              The engine infers ranges and proves accesses in range from this form.\n\n\
              Two exceptions. Whole-number division and remainders are written \
              `floor(a/b)`, `ceil(a/b)` and `mod(a, b)` (nearest upsampling \
              `x[floor((i+1)/2)]`, circular padding `x[mod(i-2, N)+1]`): such an index \
              is computed exactly at each point and checked in range as it is read, but \
              bounds no range, so give one with `for`. Labels, `input y[B] in 1..=C`, \
              index as `lp[b, y[b]]` or `y[b] + 1`.\n\n\
              Rewrite the index in one of these forms, or give the values you need as a \
              tensor.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i*i]  for i in 1..=2
grad a = sum(i) g[i] * x[i*i]
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * x[2*i]  for i in 1..=2
grad a = sum(i) g[i] * x[2*i]
"#,
    },
    Explanation {
        code: "dl::analysis::non_affine_range",
        title: "a range end or size is not affine in the dims",
        text: "A `for` range, a reduction's range and a tensor's size are built from \
              whole numbers and dims with `+`, `-` and `*` by a constant: `1..=N-K+1`, \
              `2*N`. A product of two dims is not affine: the engine could no longer \
              prove accesses in range for every size.\n\n\
              Declare the product as a dim of its own, or write the range with a \
              constant factor.",
        wrong: r#"dim S = 2, N = 3
input x[N]
y[i] = x[floor((i+S-1)/S)]  for i in 1..=S*N
"#,
        right: r#"dim N = 3
input x[N]
y[i] = x[floor((i+1)/2)]  for i in 1..=2*N
"#,
    },
    Explanation {
        code: "dl::analysis::not_a_value",
        title: "a name that has no value is used in an expression",
        text: "Only dims, hypers, tensors and lets have values. An update rule (`optimizer \
              A { ... }`) is not a value.\n\n\
              A frequent cause is `claim A == B` without `over T steps`: without it, the \
              claim reads as a condition comparing two values. Write `claim A == B over \
              100 steps` to compare the trajectories of two update rules.",
        wrong: r#"dim n = 3
param theta[n]
hyper alpha = 0.1, lambda = 0.01
stream gt[n] ~ normal(0, 1)

optimizer A {
  theta[k] = theta[k] - alpha * (gt[k] + lambda * theta[k])
}
optimizer B {
  theta[k] = (1 - alpha * lambda) * theta[k] - alpha * gt[k]
}
claim A == B
"#,
        right: r#"dim n = 3
param theta[n]
hyper alpha = 0.1, lambda = 0.01
stream gt[n] ~ normal(0, 1)

optimizer A {
  theta[k] = theta[k] - alpha * (gt[k] + lambda * theta[k])
}
optimizer B {
  theta[k] = (1 - alpha * lambda) * theta[k] - alpha * gt[k]
}
claim A == B over 20 steps
"#,
    },
    Explanation {
        code: "dl::analysis::not_an_optimizer",
        title: "`claim A == B` names something that is not an update rule",
        text: "`claim A == B over T steps` compares two update rules declared with \
              `optimizer A { ... }` and `optimizer B { ... }`. One of the names is not an \
              update rule: a typo, or a tensor or let of that name.\n\n\
              Name two declared update rules. The help line lists them.",
        wrong: r#"dim n = 3
param theta[n]
hyper alpha = 0.1, lambda = 0.01
stream gt[n] ~ normal(0, 1)

optimizer A {
  theta[k] = theta[k] - alpha * (gt[k] + lambda * theta[k])
}
optimizer B {
  theta[k] = (1 - alpha * lambda) * theta[k] - alpha * gt[k]
}
claim A == C over 20 steps
"#,
        right: r#"dim n = 3
param theta[n]
hyper alpha = 0.1, lambda = 0.01
stream gt[n] ~ normal(0, 1)

optimizer A {
  theta[k] = theta[k] - alpha * (gt[k] + lambda * theta[k])
}
optimizer B {
  theta[k] = (1 - alpha * lambda) * theta[k] - alpha * gt[k]
}
claim A == B over 20 steps
"#,
    },
    Explanation {
        code: "dl::analysis::not_constant",
        title: "a value that must be fixed depends on data",
        text: "Some values are fixed before anything is drawn, so they cannot depend on \
              tensors or index variables: hypers (numbers, dims and earlier hypers), given \
              values and interval bounds (number expressions), and sizes and range ends \
              (dims only).\n\n\
              Use a number, or make the value a `let` if it should depend on data.",
        wrong: r#"dim N = 4
input x[N]
param a
hyper c = x[1]
y[i] = a * c * x[i]
grad a = sum(i) g[i] * c * x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a
hyper c = 0.5
y[i] = a * c * x[i]
grad a = sum(i) g[i] * c * x[i]
"#,
    },
    Explanation {
        code: "dl::analysis::optimum_point",
        title: "the claimed optimum has not one value per varied name",
        text: "An optimality claim gives one value after `at` per name after `over`, in the \
              same order.\n\n\
              The parser checks the same counts first and reports \
              `dl::parse::optimum_arity`, so a spec reaches this diagnostic only if the \
              two checks part. Give one value per name.",
        wrong: r#"param u, v
let f = (u - 1)^2 + (v + 2)^2
claim minimize f over u, v at (1)
"#,
        right: r#"param u, v
let f = (u - 1)^2 + (v + 2)^2
claim minimize f over u, v at (1, -2)
"#,
    },
    Explanation {
        code: "dl::analysis::optimum_variable",
        title: "an optimality claim varies something it cannot vary",
        text: "`claim minimize OBJ over VARS ...` varies scalar lets, hypers, inputs and \
              params. A dim, an update rule, or a tensor or let with indices cannot be \
              varied: a dim is a size, and a tensor with indices has one value per \
              element.\n\n\
              To claim an optimum per element, vary a scalar and let the claim's free \
              index run over the elements: `claim minimize (w - t[k])^2 over w at t[k]` \
              holds at every `k`.",
        wrong: r#"dim n = 3
input t[n]
param w[n]
claim minimize (w[k] - t[k])^2 over w at t[k]
"#,
        right: r#"dim n = 3
input t[n]
param w
claim minimize (w - t[k])^2 over w at t[k]
"#,
    },
    Explanation {
        code: "dl::analysis::random_read",
        title: "a random tensor is read where a value per draw makes no sense",
        text: "A random tensor has a value per draw only. It, and the lets that read it, \
              may be read by other lets and inside `E[...]` and `Var[...]` of a claim. \
              Nowhere else: not by the layer or loss, a gradient claim, an update rule, a \
              distribution's parameter, nor bare in a claim.\n\n\
              Take a moment: `claim E[q[i]] <= 1`. A claim about every draw is not \
              something sampling can check.",
        wrong: r#"dim n = 4
input p[n] in (0, 1)
random q[i] ~ bernoulli(p[i])
claim q[i] <= 1
"#,
        right: r#"dim n = 4
input p[n] in (0, 1)
random q[i] ~ bernoulli(p[i])
claim E[q[i]] <= 1
"#,
    },
    Explanation {
        code: "dl::analysis::rebound_index",
        title: "an index variable is bound again inside its own scope",
        text: "An index variable is bound once per scope. In `grad w[i,j] = sum(i) ...`, \
              the left-hand side binds `i`, and `sum(i)` binds it again: inside the sum, \
              `i` no longer means the element of `w`.\n\n\
              This is a common slip in transcribing a handout, where the same letter \
              serves both. Use a fresh name for the inner index, or, as here, drop the sum \
              if the left-hand side already fixes the index.",
        wrong: r#"dim n = 3, m = 2
input x[n]
param w[m, n]
y[i] = sum(k) w[i,k] * x[k]
grad w[i,j] = sum(i) g[i] * x[j]
"#,
        right: r#"dim n = 3, m = 2
input x[n]
param w[m, n]
y[i] = sum(k) w[i,k] * x[k]
grad w[i,j] = g[i] * x[j]
"#,
    },
    Explanation {
        code: "dl::analysis::recurrence_needs_range",
        title: "a let that reads its own elements states no range",
        text: "A let may read its own elements, as a recurrence does: `h[t]` from \
              `h[t-1]`. Its elements are then computed one after another, so the range \
              of each index must be known before its body is read: give every index a \
              `for` range. The range cannot be inferred from the body, because the body \
              reads the let itself.",
        wrong: r#"dim T = 5
input x[T]
let c[t] = x[t] + c[t-1]   if t >= 2
         | x[t]            otherwise
loss L = sum(t) c[t]^2
"#,
        right: r#"dim T = 5
input x[T]
let c[t] = x[t] + c[t-1]   if t >= 2
         | x[t]            otherwise       for t in 1..=T
loss L = sum(t) c[t]^2
"#,
    },
    Explanation {
        code: "dl::analysis::recurrence_order",
        title: "a let reads its own elements in no order that computes them first",
        text: "A let that reads its own elements is computed element by element: first to \
              last when it reads only earlier elements (`h[t-1]`, `c[i, j-1]`), last to \
              first when it reads only later ones (a backward pass's `d[t+1]`). Each read \
              must be the let's own index plus a constant on every axis, and not the \
              element itself.\n\n\
              Reading both earlier and later elements, the element itself, or an index \
              such as `2*t`, leaves no order that computes every element before it is \
              read. Split the computation into two lets, one per direction.\n\n\
              Lets that read one another's steps (an LSTM's gates, cell and hidden \
              state) are computed together, one step of their first axis at a time, \
              each step's lets in the order written. A let may read a let below it \
              only at an earlier step (`h[t-1, l]`, or a later one in a backward \
              pass), with the step as the first index of both; all such reads must go \
              the same way. A fixed step (`h[T, l]`) is read after the steps, from a \
              let below them.",
        wrong: r#"dim T = 5
input x[T]
let c[t] = c[t] + x[t]   for t in 1..=T
loss L = sum(t) c[t]^2
"#,
        right: r#"dim T = 5
input x[T]
let c[t] = [t >= 2] * c[t-1] + x[t]   for t in 1..=T
loss L = sum(t) c[t]^2
"#,
    },
    Explanation {
        code: "dl::analysis::repeated_index",
        title: "the same index appears twice on a left-hand side",
        text: "Each axis of a definition needs its own index variable. `y[i, i]` would \
              define only the diagonal of a square tensor, and leave the rest undefined.\n\n\
              Use distinct indices (`y[i, j]`), or define a tensor with fewer axes (`y[i] \
              = w[i, i]` for the diagonal).",
        wrong: r#"dim N = 4
input w[N, N]
param a
let d[i, i] = a * w[i, i]
loss L = sum(i) d[i]^2
grad a = sum(i) 2 * a * w[i, i]^2
"#,
        right: r#"dim N = 4
input w[N, N]
param a
let d[i] = a * w[i, i]
loss L = sum(i) d[i]^2
grad a = sum(i) 2 * a * w[i, i]^2
"#,
    },
    Explanation {
        code: "dl::analysis::repeated_varied",
        title: "an optimality claim names a varied value twice",
        text: "Each name after `over` is varied once, and gets one value after `at`. A \
              repeated name would get two claimed values.\n\n\
              Name each varied value once.",
        wrong: r#"param u, v
let f = (u - 1)^2 + (v + 2)^2
claim minimize f over u, u at (1, -2)
"#,
        right: r#"param u, v
let f = (u - 1)^2 + (v + 2)^2
claim minimize f over u, v at (1, -2)
"#,
    },
    Explanation {
        code: "dl::analysis::reserved_name",
        title: "a layer spec declares its own `g`",
        text: "With a layer output, `g` is the incoming gradient `dL/dy` that the engine \
              draws; `g[i]` in a claim means `dL/dy[i]`. A declared `g` would collide with \
              it.\n\n\
              Rename the declaration. While it is named `g`, its reads are taken as the \
              incoming gradient, so they may be reported as well.",
        wrong: r#"dim N = 4
input x[N]
param g[N]
y[i] = g[i] * x[i]
grad g[j] = x[j]
"#,
        right: r#"dim N = 4
input x[N]
param w[N]
y[i] = w[i] * x[i]
grad w[j] = g[j] * x[j]
"#,
    },
    Explanation {
        code: "dl::analysis::scalar_output_slip",
        title: "a scalar layer output that reads as a slip",
        text: "`out = tanh(a * x)` at the top level defines a layer output with one \
              element, whose incoming gradient `g` is a scalar. Two slips look the same: \
              a loss written without `loss` (`L = …`), which would be differentiated as \
              `g · L`, and a hyper written without `hyper` (`alpha = 0.1`), which would \
              become the spec's output. Both are refused.",
        wrong: r#"dim n = 3
input x[n]
L = sum(i) x[i]^2
grad x[i] = 2 * x[i]
"#,
        right: r#"dim n = 3
input x[n]
loss L = sum(i) x[i]^2
grad x[i] = 2 * x[i]
"#,
    },
    Explanation {
        code: "dl::analysis::shape_mismatch",
        title: "an index runs over axes of different sizes",
        text: "An index used plainly (`k`, not `k+1`) must range over axes of one size. In \
              `sum(k) w[i,k] * x[k]` with `w[m, n]` and `x[m]`, `k` runs over `n` in one \
              access and `m` in the other. Taking the shorter range would silently drop \
              terms, so the engine reports the disagreement, as TACO does.\n\n\
              Check the declarations: usually one shape is wrong. If the offset is meant, \
              write it explicitly.",
        wrong: r#"dim n = 3, m = 2
input x[m]
param w[m, n]
y[i] = sum(k) w[i,k] * x[k]
"#,
        right: r#"dim n = 3, m = 2
input x[n]
param w[m, n]
y[i] = sum(k) w[i,k] * x[k]
grad x[j] = sum(i) g[i] * w[i,j]
"#,
    },
    Explanation {
        code: "dl::analysis::stray_range",
        title: "`for` ranges over an index the left-hand side does not bind",
        text: "`for i in lo..=hi` gives the range of an index bound on the left-hand side. \
              `y[i] = ... for j in ...` ranges over `j`, which the left-hand side does not \
              have.\n\n\
              Use the left-hand side's index name in the `for` clause. The help line lists \
              the indices it binds.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i+1]  for j in 1..=N-1
grad a = sum(i) g[i] * x[i+1]
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i+1]  for i in 1..=N-1
grad a = sum(i) g[i] * x[i+1]
"#,
    },
    Explanation {
        code: "dl::analysis::stream_shape",
        title: "a gradient stream's shape differs from its param's",
        text: "`stream gt[...] = grad theta` is the gradient of the loss in `theta` at each \
              step, so it has `theta`'s shape. A stream of another shape could not hold \
              it.\n\n\
              Declare the stream with the param's shape.",
        wrong: r#"dim n = 3, m = 2
param theta[n]
input x[n]
loss L = sum(k) (theta[k] - x[k])^2
hyper alpha = 0.1
stream gt[m] = grad theta
optimizer A { theta[k] = theta[k] - alpha * gt[k] }
optimizer B { theta[k] = theta[k] - alpha * gt[k] }
claim A == B over 10 steps
"#,
        right: r#"dim n = 3, m = 2
param theta[n]
input x[n]
loss L = sum(k) (theta[k] - x[k])^2
hyper alpha = 0.1
stream gt[n] = grad theta
optimizer A { theta[k] = theta[k] - alpha * gt[k] }
optimizer B { theta[k] = theta[k] - alpha * gt[k] }
claim A == B over 10 steps
"#,
    },
    Explanation {
        code: "dl::analysis::taylor_rate",
        title: "a Taylor claim's rate or tolerance is not a usable number",
        text: "A Taylor claim bounds how fast the remainder vanishes: `rate > v`, `rate >= \
              v`, or `rate ≈ v ± t`. The rate v must be a positive power of ε, and the \
              tolerance t must be above 0 (it defaults to 0.25). A measured rate is never \
              exactly a number, so `± 0` could not hold.\n\n\
              A right gradient measures 2 one-sided and 3 central; the usual claims are \
              `one_sided rate > 1` and `central rate > 2`.",
        wrong: r#"dim n = 3
param w[n]
input x[n]
loss L = sum(k) (w[k] - x[k])^2
grad w[k] = 2 * (w[k] - x[k])
check taylor one_sided rate ≈ 2 ± 0
"#,
        right: r#"dim n = 3
param w[n]
input x[n]
loss L = sum(k) (w[k] - x[k])^2
grad w[k] = 2 * (w[k] - x[k])
check taylor one_sided rate ≈ 2 ± 0.1
"#,
    },
    Explanation {
        code: "dl::analysis::uninferable_range",
        title: "the range of an index cannot be inferred",
        text: "An index without an explicit range gets the largest range that keeps every \
              access using it in bounds. If no access uses the index on its own (`sum(k) \
              1`), or the accesses give bounds that are not fixed by the sizes alone, \
              there is nothing to infer from.\n\n\
              Give the range: `sum(k in 1..=N) ...` for a reduction, `for i in 1..=N` for \
              a left-hand side.",
        wrong: r#"dim N = 4
input x[N]
param a
let count = sum(k) 1
y[i] = a * x[i] / count
grad a = sum(i) g[i] * x[i] / N
"#,
        right: r#"dim N = 4
input x[N]
param a
let count = sum(k in 1..=N) 1
y[i] = a * x[i] / count
grad a = sum(i) g[i] * x[i] / N
"#,
    },
    Explanation {
        code: "dl::analysis::unknown_dim_override",
        title: "`--dim` names a size the spec does not declare",
        text: "`--dim NAME=VALUE` sets the default of a dim declared in the spec. Names are \
              case-sensitive: `--dim n=...` does not set `dim N`.\n\n\
              Use a size the spec declares; the help line suggests the one meant (`--dim \
              N=6` for `--dim n=6`) or lists them. When several files are checked, each \
              must declare the size.",
        wrong: r#"# dlverify layer.dl --dim n=6
dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
        right: r#"# dlverify layer.dl --dim N=6
dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::analysis::unknown_distribution",
        title: "an unknown distribution is named",
        text: "The distributions are `bernoulli(p)`, `rademacher()`, `uniform(lo, hi)` and \
              `normal(mean, sd)`. The help line suggests the closest.\n\n\
              A random tensor whose distribution is unknown is not defined, so its reads \
              may be reported as well; fix this diagnostic first.",
        wrong: r#"dim n = 4
input p[n] in (0, 1)
random q[i] ~ bernouli(p[i])
claim E[q[i]] == p[i]
"#,
        right: r#"dim n = 4
input p[n] in (0, 1)
random q[i] ~ bernoulli(p[i])
claim E[q[i]] == p[i]
"#,
    },
    Explanation {
        code: "dl::analysis::unknown_function",
        title: "an unknown function is called",
        text: "The functions are `exp log sqrt abs tanh sigmoid relu softplus sin cos`, \
              `atan asin acos sinh cosh log1p expm1 erf lgamma digamma sign floor \
              round`, and \
              `min(a, b)`, `max(a, b)`, `pow(x, y)`. The help line suggests the closest \
              name.\n\n\
              Use one of them, or write the function out: `1 / (1 + exp(-x))` is \
              `sigmoid(x)`.",
        wrong: r#"dim N = 4
input x[N]
param w[N]
loss L = sum(i) sigmod(w[i] * x[i])
grad w[j] = x[j] * sigmoid(w[j] * x[j]) * (1 - sigmoid(w[j] * x[j]))
"#,
        right: r#"dim N = 4
input x[N]
param w[N]
loss L = sum(i) sigmoid(w[i] * x[i])
grad w[j] = x[j] * sigmoid(w[j] * x[j]) * (1 - sigmoid(w[j] * x[j]))
"#,
    },
    Explanation {
        code: "dl::analysis::unknown_name",
        title: "a name is used that is declared nowhere",
        text: "Every name in an expression must be a dim, hyper, input, param, let, random \
              tensor, stream, the output, the incoming gradient `g` (with a layer), or an \
              index bound by a reduction, `for` or left-hand side. The help line suggests \
              a close declared name when there is one.\n\n\
              Fix the spelling, or declare the name. In a `grad` claim, the name must be a \
              declared input or param.",
        wrong: r#"dim N = 4
input x[N]
param a, b
y[i] = a * x[i] + b
grad b = sum(i) g[i]
grad c = sum(i) g[i] * x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a, b
y[i] = a * x[i] + b
grad b = sum(i) g[i]
grad a = sum(i) g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::analysis::update_target",
        title: "an update rule changes something that is not a param or its state",
        text: "An update rule (`optimizer A { ... }`) changes params and the rule's own \
              `state`. Inputs, hypers and lets are fixed data; changing them would make \
              the two rules of an equivalence claim run on different problems.\n\n\
              Declare the updated tensor with `param`, or as the rule's `state`.",
        wrong: r#"dim n = 3
input theta[n]
hyper alpha = 0.1
stream gt[n] ~ normal(0, 1)
optimizer A { theta[k] = theta[k] - alpha * gt[k] }
optimizer B { theta[k] = theta[k] - 0.5 * alpha * gt[k] - 0.5 * alpha * gt[k] }
claim A == B over 10 steps
"#,
        right: r#"dim n = 3
param theta[n]
hyper alpha = 0.1
stream gt[n] ~ normal(0, 1)
optimizer A { theta[k] = theta[k] - alpha * gt[k] }
optimizer B { theta[k] = theta[k] - 0.5 * alpha * gt[k] - 0.5 * alpha * gt[k] }
claim A == B over 10 steps
"#,
    },
    Explanation {
        code: "dl::analysis::used_before_definition",
        title: "a let or output is read before its definition",
        text: "Lets and the output may read only lets defined above them, so that the spec \
              reads top to bottom and cannot define a value in terms of itself. \
              (Declarations of dims and tensors may come in any order.)\n\n\
              Move the definition above the line that reads it.",
        wrong: r#"dim N = 4
input x[N]
param w[N]
loss L = sum(i) r[i]^2
let r[i] = w[i] - x[i]
grad w[j] = 2 * (w[j] - x[j])
"#,
        right: r#"dim N = 4
input x[N]
param w[N]
let r[i] = w[i] - x[i]
loss L = sum(i) r[i]^2
grad w[j] = 2 * (w[j] - x[j])
"#,
    },
    Explanation {
        code: "dl::analysis::wrong_arity",
        title: "a function gets the wrong number of arguments",
        text: "Most functions take one argument; `min`, `max` and `pow` take two. `log` is \
              the natural logarithm and takes no base.\n\n\
              Call the function as the help line shows. For a logarithm in base b, write \
              `log(x) / log(b)`.",
        wrong: r#"dim N = 4
input x[N] > 0
param a
loss L = a * sum(i) log(x[i], 2)
grad a = sum(i) log(x[i]) / log(2)
"#,
        right: r#"dim N = 4
input x[N] > 0
param a
loss L = a * sum(i) log(x[i]) / log(2)
grad a = sum(i) log(x[i]) / log(2)
"#,
    },
    Explanation {
        code: "dl::analysis::wrong_index_count",
        title: "a tensor is used with the wrong number of indices",
        text: "A tensor declared with k axes is read with k indices: `w[i, k]` for `param \
              w[m, n]`, `x[k]` for `input x[n]`, and a scalar with none. The engine does \
              not broadcast or flatten.\n\n\
              Write one index per axis, as in the help line. A reported count of 0 for `g` \
              means the layer itself is in error: fix that first.",
        wrong: r#"dim n = 3, m = 2
input x[n]
param w[m, n]
y[i] = sum(k) w[k] * x[k]  for i in 1..=m
"#,
        right: r#"dim n = 3, m = 2
input x[n]
param w[m, n]
y[i] = sum(k) w[i,k] * x[k]
grad w[i,j] = g[i] * x[j]
"#,
    },
    Explanation {
        code: "dl::claim::held_unexpectedly",
        title: "a claim marked `expect fail` holds",
        text: "`expect fail \"reason\"` records a claim that is wrong: an erratum of the \
              source, kept next to the corrected claim. Such a claim passes when the \
              engine refutes it. This one held, so the mark is wrong, or the claim is not \
              the erroneous one the reason describes.\n\n\
              Look at the claim again. If it is right, remove the mark. If the source's \
              formula is wrong, transcribe it literally, mark that with `expect fail`, and \
              write the corrected claim next to it.",
        wrong: r#"dim N = 4
input x[N]
param a, b
y[i] = a * x[i] + b
grad a = sum(i) g[i] * x[i]
  expect fail "the handout forgets x[i]"
"#,
        right: r#"dim N = 4
input x[N]
param a, b
y[i] = a * x[i] + b
grad a = sum(i) g[i]
  expect fail "the handout forgets x[i]"
grad a = sum(i) g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::claim::refuted",
        title: "the engine refuted a claim",
        text: "A claim not marked `expect fail` came out false, with evidence: a gradient \
              that differs from autodiff at some elements (or is undefined at some, out of \
              range or with disagreeing cases), a Taylor remainder that shrinks at the \
              wrong rate, two update rules whose trajectories part, a condition or a \
              moment that fails at some point, or an alternative that beats a claimed \
              optimum.\n\n\
              The report names the sizes, elements and values; `-v` and `--format json` \
              give more. A difference counts only beyond rounding (checked again in \
              double-double where in doubt), and a sampled moment only beyond its \
              confidence interval, so a refutation is not rounding or sampling noise.\n\n\
              Fix the claim. If it is a formula from the source that is wrong, keep it \
              marked `expect fail \"reason\"` next to the corrected claim.",
        wrong: r#"dim N = 4
input x[N]
param a, b
y[i] = a * x[i] + b
grad a = sum(i) g[i]
"#,
        right: r#"dim N = 4
input x[N]
param a, b
y[i] = a * x[i] + b
grad a = sum(i) g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::claim::undecided",
        title: "a claim could not be decided",
        text: "The engine gives no verdict rather than a wrong one. A claim is left \
              undecided when the time limit ran out (`--timeout`), when the forward \
              computation failed at some size (see the diagnostic that comes with it), \
              when values are undefined where the check needs them, when the engine's own \
              cross-checks disagree, when a difference cannot be told from rounding, or \
              when sampling cannot settle the claim (`!=`, `not`, a sampled moment inside \
              a larger expression).\n\n\
              The report gives the reason. Fix the diagnostic, raise the time limit, or \
              restate the claim in a form that can be checked: `E[2 * u] == 1` rather than \
              `2 * E[u] == 1`.",
        wrong: r#"random u ~ uniform(0, 1)
claim 2 * E[u] == 1
"#,
        right: r#"random u ~ uniform(0, 1)
claim E[2 * u] == 1
"#,
    },
    Explanation {
        code: "dl::derive::no_output",
        title: "`dlverify derive` found no layer or loss",
        text: "`dlverify derive` derives the gradient of L, which a layer `y[i] = …` \
              (with L = Σ g·y) or a loss `loss L = …` defines. A spec of stochastic or \
              update-rule claims alone has no L.\n\n\
              Define the layer or the loss whose gradient is wanted.",
        wrong: r#"dim n = 3
input x[n]
let y[i] = tanh(x[i])
"#,
        right: r#"dim n = 3
input x[n]
y[i] = tanh(x[i])
"#,
    },
    Explanation {
        code: "dl::derive::unsupported",
        title: "`dlverify derive` does not cover a construct yet",
        text: "`dlverify derive` differentiates sums, means, products, max and min \
              over an index, the arithmetic operators, pow, smooth functions, relu and \
              abs, cases and brackets, whole-number indices, and lets, recurrent ones \
              included, through the chain rule. Random tensors and functions with \
              jumps (sign, floor or round of a value) are refused rather than derived \
              wrong.\n\n\
              State the gradient of such a spec by hand: `dlverify` checks it like any \
              other claim.",
        wrong: r#"dim n = 4
input x[n]
loss L = sum(k) sign(x[k]) * x[k]
"#,
        right: r#"dim n = 4
input x[n]
loss L = sum(k) x[k]^2
"#,
    },
    Explanation {
        code: "dl::eval::ambiguous_cases",
        title: "two cases hold at a point and disagree",
        text: "Cases may overlap, but where two hold at once their values must agree, to \
              rounding. Here two cases hold at the same point and give different values, \
              so the definition does not say which is meant. The message gives the point, \
              the sizes and both values.\n\n\
              Make the conditions disjoint, or make the cases agree where they overlap. In \
              a claim, the claim is refuted at those elements.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]      if i <= 2
     | 2 * a * x[i]  otherwise
grad x[j] = a * g[j]      if j <= 2
          | 2 * a * g[j]  if j >= 2
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]      if i <= 2
     | 2 * a * x[i]  otherwise
grad x[j] = a * g[j]      if j <= 2
          | 2 * a * g[j]  if j >= 3
"#,
    },
    Explanation {
        code: "dl::eval::distribution_domain",
        title: "a distribution's parameter is out of its domain",
        text: "A distribution's parameters are computed per element and used as computed, \
              never clamped: a probability outside [0, 1], a negative standard deviation, \
              or `uniform(lo, hi)` with lo above hi stops the file at that element. The \
              message gives the element, the value and the sizes.\n\n\
              Check the formula of the parameter, or constrain the values that reach it.",
        wrong: r#"dim n = 4
input x[n] in (0, 2)
random q[i] ~ bernoulli(x[i])
claim E[q[i]] == x[i]
"#,
        right: r#"dim n = 4
input x[n] in (0, 2)
random q[i] ~ bernoulli(x[i] / 2)
claim E[2 * q[i]] == x[i]
"#,
    },
    Explanation {
        code: "dl::eval::division_by_zero",
        title: "a divisor is 0",
        text: "A division met a divisor of exactly 0 at some point of the sweep. The engine \
              checks several sizes, including the smallest, so it may happen at a size you \
              did not think of: with N = 1 a variance over the elements is 0.\n\n\
              Keep the divisor away from 0: add an epsilon, constrain the values that \
              reach it (`param s > 0`), or guard the division with a case or an Iverson \
              bracket.",
        wrong: r#"dim N = 4
input x[N]
param a, b
let mean = sum(k) x[k] / N
let var = sum(k) (x[k] - mean)^2 / N
y[i] = a * (x[i] - mean) / sqrt(var) + b
grad b = sum(i) g[i]
"#,
        right: r#"dim N = 4
input x[N]
param a, b
hyper eps = 1e-5
let mean = sum(k) x[k] / N
let var = sum(k) (x[k] - mean)^2 / N
y[i] = a * (x[i] - mean) / sqrt(var + eps) + b
grad b = sum(i) g[i]
"#,
    },
    Explanation {
        code: "dl::eval::domain",
        title: "a function is applied outside its domain",
        text: "`log` needs a positive argument, `sqrt` a non-negative one, a real power a \
              positive base, and a negative power a non-zero base. Values are drawn from \
              `(-1, 1)` unless the spec constrains them, so `log(x[i])` meets negative \
              values.\n\n\
              Constrain the tensor (`input x[N] > 0`, or an interval `in (0, 1)`), or \
              change the formula. The help line suggests the constraint to add when the \
              argument is a tensor.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * log(x[i])
grad a = sum(i) g[i] * log(x[i])
"#,
        right: r#"dim N = 4
input x[N] > 0
param a
y[i] = a * log(x[i])
grad a = sum(i) g[i] * log(x[i])
"#,
    },
    Explanation {
        code: "dl::eval::empty_reduction",
        title: "`max` or `min` runs over an empty range",
        text: "`max` and `min` of no elements have no value (a `sum` of none is 0 and a \
              `prod` is 1, but there is no such convention for `max`). The range `i+1..=N` \
              is empty at `i = N`.\n\n\
              Check the range, or handle the empty end with a case.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * max(k in i+1..=N) x[k]  for i in 1..=N
grad a = sum(i) g[i] * max(k in i+1..=N) x[k]
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * max(k in i..=N) x[k]  for i in 1..=N
grad a = sum(i) g[i] * max(k in i..=N) x[k]
"#,
    },
    Explanation {
        code: "dl::eval::index_out_of_range",
        title: "an access reads outside its tensor",
        text: "Every access out of its tensor's range is an error, never a silent zero. The \
              message names the access, the element it reads, the tensor's range and the \
              index values and sizes where it happened, such as `g[j-1]` reading `g[0]` at \
              `j = 1`.\n\n\
              Keep the access in range. Where zero padding is meant, say so: with a case, \
              or with an Iverson bracket in the product that reads it (`[j >= 2] * \
              g[j-1]`): a bracket that is 0 makes its whole product 0 without reading the \
              tensor. In a claim, the claim is refuted at those elements.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * (x[i] + x[i+1])
grad x[j] = a * (g[j] + g[j-1])
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * (x[i] + x[i+1])
grad x[j] = a * ([j <= N-1] * g[j] + [j >= 2] * g[j-1])
"#,
    },
    Explanation {
        code: "dl::eval::list_length",
        title: "a given list does not match its tensor's length",
        text: "`input v[N] = [ ... ]` gives one value per element, so the list must be as \
              long as the tensor at the default sizes. The sweep leaves out the smaller \
              sizes, where it does not fit.\n\n\
              Give one value per element, or a single value for all: `input v[N] = 1`.",
        wrong: r#"dim N = 3
input v[N] = [1, 2]
param a
y[i] = a * v[i]
grad a = sum(i) g[i] * v[i]
"#,
        right: r#"dim N = 3
input v[N] = [1, 2, 3]
param a
y[i] = a * v[i]
grad a = sum(i) g[i] * v[i]
"#,
    },
    Explanation {
        code: "dl::eval::list_shape",
        title: "values given in rows do not have their tensor's shape",
        text: "Values given in rows fix each axis: `[[1, 2, 3], [4, 5, 6]]` is 2 × 3. At \
              the sizes checked, the tensor's shape must be the same, axis by axis; the \
              sizes are chosen to fit where the dims allow, and the defaults are always \
              checked. A flat list, `[1, 2, 3, 4, 5, 6]`, fixes only the number of \
              elements, taken row-major.",
        wrong: r#"dim n = 2, m = 3
input w[n, m] = [[1, 2], [3, 4], [5, 6]]
loss L = sum(i, k) w[i, k]^2
"#,
        right: r#"dim n = 2, m = 3
input w[n, m] = [[1, 2, 3], [4, 5, 6]]
loss L = sum(i, k) w[i, k]^2
"#,
    },
    Explanation {
        code: "dl::eval::no_case",
        title: "no case of a piecewise definition holds at a point",
        text: "A piecewise definition must say what it is at every point of its range. At \
              the point in the message, no condition holds.\n\n\
              Add a case for it, or end with `| ... otherwise`. Check the boundaries: `j \
              <= 2` and `j >= 4` leave out `j = 3`. In a claim, the claim is refuted at \
              those elements.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad x[j] = a * g[j]  if j <= 2
          | a * g[j]  if j >= 4
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad x[j] = a * g[j]  if j <= 2
          | a * g[j]  if j >= 3
"#,
    },
    Explanation {
        code: "dl::eval::non_finite",
        title: "a value is NaN or infinite",
        text: "A value overflowed, or an operation had no finite result (infinity over \
              infinity, infinity minus infinity). The engine stops rather than carry NaN \
              or infinity through L.\n\n\
              Rescale or constrain the inputs. A softmax, for example, subtracts the \
              largest input before `exp`.",
        wrong: r#"dim N = 4
input x[N] in (800, 900)
y[i] = exp(x[i]) / sum(k) exp(x[k])
"#,
        right: r#"dim N = 4
input x[N] in (800, 900)
let m = max(k) x[k]
y[i] = exp(x[i] - m) / sum(k) exp(x[k] - m)
grad x[j] = y[j] * (g[j] - sum(k) g[k] * y[k])
"#,
    },
    Explanation {
        code: "dl::eval::recording_too_large",
        title: "a recording of L for reverse mode would not fit in memory",
        text: "Reverse mode records every operation of one evaluation of L, and checking \
              a claim takes 60 to 70 bytes per operation at its peak. A forward pass \
              quadratic by definition records quadratically many: a cumulative sum at \
              N = 30000 records 4.5·10⁸ operations, about 30 GB. Past what the memory available \
              to the process carries (the least of the kernel's `MemAvailable`, its \
              control group's limit and its address-space limit), the recording stops, and forward mode derives the \
              gradient alone: the report's route says so. Nothing is lost but time: \
              forward mode takes a pass per eight elements, and the claim may run out \
              of `--timeout` and be reported undecided, never passed.\n\n\
              Check a smaller size (`--dim`): the boundary mistakes a large size would \
              show, the small sizes of the sweep show too.",
        wrong: r#"$ dlverify tests/corpus/cumsum.dl --dim n=30000
"#,
        right: r#"$ dlverify tests/corpus/cumsum.dl --dim n=4000
"#,
    },
    Explanation {
        code: "dl::eval::timeout",
        title: "checking a claim took longer than `--timeout`",
        text: "Each claim has `--timeout` seconds (default 60) per size. Past it, the claim \
              is not checked at that size and is reported undecided, never passed. Work \
              that every claim shares at a size has the same limit.\n\n\
              Raise `--timeout`, or check at smaller sizes (`--dim`). The small sizes \
              where boundary mistakes show are checked anyway.",
        wrong: r#"$ dlverify specs/a3_recurrent_sequence.dl --dim N=1000000 --timeout 1
"#,
        right: r#"$ dlverify specs/a3_recurrent_sequence.dl --dim N=1000000 --timeout 60
$ dlverify specs/a3_recurrent_sequence.dl --dim N=10000 --timeout 1
"#,
    },
    Explanation {
        code: "dl::eval::too_large",
        title: "the tensors of a spec would exceed the element limit",
        text: "At some size of the sweep the tensors would hold more elements in all than \
              `--max-elements` (default 10,000,000). The engine refuses that size before \
              it allocates anything.\n\n\
              Use smaller sizes: lower the `dim` default or pass `--dim`. Raise \
              `--max-elements` only if the machine has the memory.",
        wrong: r#"dim N = 100000
input w[N, N]
param a
y[i, j] = a * w[i, j]
grad a = sum(i) sum(j) g[i, j] * w[i, j]
"#,
        right: r#"dim N = 100
input w[N, N]
param a
y[i, j] = a * w[i, j]
grad a = sum(i) sum(j) g[i, j] * w[i, j]
"#,
    },
    Explanation {
        code: "dl::input::empty",
        title: "a spec file is empty",
        text: "The file is empty or holds only white space. There is nothing to check, and \
              an empty file is more likely a mistake than a spec.\n\n\
              Write the spec: sizes, tensors, a layer or loss, and claims. See the \
              README's language reference.",
        wrong: r#"$ printf '\n\n' > layer.dl
$ dlverify layer.dl
"#,
        right: r#"$ dlverify layer.dl     # after writing the spec into it
"#,
    },
    Explanation {
        code: "dl::input::no_specs",
        title: "a directory holds no `.dl` files",
        text: "A directory named on the command line is searched for `*.dl` files, not \
              recursively. This one has none.\n\n\
              Spec files end in `.dl`. Rename them, or name the files directly.",
        wrong: r#"$ ls specs/
layer.txt
$ dlverify specs/
"#,
        right: r#"$ mv specs/layer.txt specs/layer.dl
$ dlverify specs/
"#,
    },
    Explanation {
        code: "dl::input::not_found",
        title: "a named file does not exist",
        text: "A path on the command line names no file or directory.\n\n\
              Check the path. A directory is searched for `*.dl` files.",
        wrong: r#"$ dlverify spces/a3_recurrent_sequence.dl
"#,
        right: r#"$ dlverify specs/a3_recurrent_sequence.dl
"#,
    },
    Explanation {
        code: "dl::input::not_utf8",
        title: "a file is not UTF-8 text",
        text: "A spec is a UTF-8 text file. This file has a byte that is not valid UTF-8; \
              the message gives its offset. It may be a binary file, or text saved in \
              another encoding, such as Latin-1 with an accented letter in a comment.\n\n\
              Check that it is the right file, and save it as UTF-8. A leading byte-order \
              mark is fine.",
        wrong: r#"$ file layer.dl
layer.dl: ISO-8859 text
$ dlverify layer.dl
"#,
        right: r#"$ iconv -f latin1 -t utf-8 layer.dl > layer_utf8.dl
$ dlverify layer_utf8.dl
"#,
    },
    Explanation {
        code: "dl::input::unreadable",
        title: "a file exists but cannot be read",
        text: "The file or directory exists, but reading it failed: usually permissions, or \
              a device or a broken link. The message gives the system's reason.\n\n\
              Check the file's permissions.",
        wrong: r#"$ chmod 000 layer.dl
$ dlverify layer.dl
"#,
        right: r#"$ chmod 644 layer.dl
$ dlverify layer.dl
"#,
    },
    Explanation {
        code: "dl::internal",
        title: "internal error",
        text: "The engine contradicted itself: a result that its own construction rules \
              out. No spec should cause this; it is a bug in dlverify.\n\n\
              Please report it with the spec and the command line that caused it, \
              including `--seed`.",
        wrong: r#"No spec is known to produce it: the engine found its own state
contradicting itself, e.g. a random element without a distribution.
"#,
        right: r#"Report it, with the spec and the command line (seed and options) that
caused it.
"#,
    },
    Explanation {
        code: "dl::parse::assign_in_condition",
        title: "`=` used to compare in a condition",
        text: "A condition compares with `==`. A single `=` only defines: it separates a \
              name from its definition, as in `y[i] = ...` or `hyper alpha = 0.5`.\n\n\
              The engine does not read `j = 1` as `j == 1`: a spec reads the same to \
              everyone only if `=` always defines and `==` always compares.\n\n\
              Write `==` wherever a condition is meant: after `if`, inside an Iverson \
              bracket `[...]`, and in `claim`.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad x[j] = a * g[j]  if j = 1
          | a * g[j]  otherwise
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad x[j] = a * g[j]  if j == 1
          | a * g[j]  otherwise
"#,
    },
    Explanation {
        code: "dl::parse::case_without_condition",
        title: "a case of a piecewise definition has no condition",
        text: "In a definition with several cases, separated by `|`, every case must end \
              with `if <condition>`. Only the last one may end with `otherwise` instead.\n\n\
              A case without a condition would hold everywhere, so it would overlap every \
              other case. Rather than pick a meaning, the engine asks you to say where the \
              case applies.\n\n\
              Add `if ...` to the case, or `otherwise` if it is the last one and should \
              cover every point the other cases leave.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]       if i <= 2
     | 2 * a * x[i]
grad a = sum(i) g[i] * x[i] * (1 + [i > 2])
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]       if i <= 2
     | 2 * a * x[i]   otherwise
grad a = sum(i) g[i] * x[i] * (1 + [i > 2])
"#,
    },
    Explanation {
        code: "dl::parse::condition_as_value",
        title: "a condition in parentheses is used as a number",
        text: "A comparison such as `(i <= 2)` is a condition, not a number, so it cannot \
              be multiplied or added.\n\n\
              To use a condition as a number, write it as an Iverson bracket: `[i <= 2]` \
              is 1 where the condition holds and 0 elsewhere. A product with a bracket \
              that is 0 is 0 without evaluating its other factors, which is also how a \
              spec guards an access that would be out of range.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * (i <= 2) * x[i]
grad a = sum(i) [i <= 2] * g[i] * x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * [i <= 2] * x[i]
grad a = sum(i) [i <= 2] * g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::parse::dim_value",
        title: "a dim's default is not a valid size",
        text: "The default of a dim is a number of elements: a non-negative whole number \
              that fits in 64 bits, such as `dim N = 8`. A fraction or a negative number \
              is not a size. (A size of 0 parses, and is then rejected as \
              `dl::analysis::dim_zero`.)\n\n\
              The default is the largest size checked; the engine also checks smaller \
              sizes on its own, so pick the size the exercise is about.",
        wrong: r#"dim N = 2.5
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
        right: r#"dim N = 3
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::parse::internal",
        title: "internal error in the parser",
        text: "The parser met a parse tree it did not expect. No spec should cause this: \
              the grammar and the code that converts its output disagree. It is a bug in \
              dlverify.\n\n\
              Please report it together with the spec. Until it is fixed, writing the \
              statement under the label in another form may get around it.",
        wrong: r#"No spec is known to produce it: it means the grammar accepted text that the
parser's converter does not understand.
"#,
        right: r#"Report it, with the spec that caused it; meanwhile, rewriting the statement
the label points at in another form may avoid it.
"#,
    },
    Explanation {
        code: "dl::parse::keyword_as_name",
        title: "a reserved word is used as a name",
        text: "These words are reserved and cannot name a dim, tensor, hyper, let, loss, \
              index or update rule: exercise dim input param hyper let loss grad random \
              stream optimizer state check claim for in if otherwise expect fail and or \
              not sum prod E Var.\n\n\
              `E` and `Var` are reserved because `E[...]` and `Var[...]` are the \
              expectation and the variance in claims. The words of particular claims \
              (`taylor`, `rate`, `over`, `at`, `steps`, ...) are not reserved and may be \
              used as names.\n\n\
              Choose another name. If the reserved name is also read in an expression, the \
              parser stops there first and reports `dl::parse::syntax` at the use, with a \
              help line saying the word is reserved.",
        wrong: r#"dim N = 4
input x[N]
param w[N]
loss E = sum(i) (w[i] - x[i])^2
grad w[j] = 2 * (w[j] - x[j])
"#,
        right: r#"dim N = 4
input x[N]
param w[N]
loss L = sum(i) (w[i] - x[i])^2
grad w[j] = 2 * (w[j] - x[j])
"#,
    },
    Explanation {
        code: "dl::parse::not_a_condition",
        title: "a value stands where a condition is needed",
        text: "An Iverson bracket `[...]`, a case's `if`, and a `claim` need a condition: a \
              comparison (`x[i] > 0`, `i == j`, `1 <= j <= N-2`), possibly combined with \
              `and`, `or` and `not`.\n\n\
              A bare value has no truth value; the engine does not read a number as \"true \
              if non-zero\". Write the comparison you mean.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * [x[i]] * x[i]
grad a = sum(i) [x[i] > 0] * g[i] * x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * [x[i] > 0] * x[i]
grad a = sum(i) [x[i] > 0] * g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::parse::number",
        title: "a number literal is out of range",
        text: "Numbers in a spec are 64-bit floats, so a literal must be finite: at most \
              about 1.8e308 in size. `1e999` overflows to infinity, and the engine refuses \
              it rather than compute with infinity.\n\n\
              If you meant \"no limit\", leave the limit out; otherwise write a large \
              finite number.",
        wrong: r#"dim N = 4
input x[N]
param a
hyper big = 1e999
loss L = min(big, sum(i) a * x[i])
grad a = sum(i) x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a
hyper big = 1e300
loss L = min(big, sum(i) a * x[i])
grad a = sum(i) x[i]
"#,
    },
    Explanation {
        code: "dl::parse::one_index_reduction",
        title: "`max` or `min` is given several indices",
        text: "`sum`, `prod` and `mean` reduce over several indices at once: `sum(i, j) \
              w[i, j]` is `sum(i) sum(j) w[i, j]`. `max` and `min` take one, because \
              `max(a, b)` is also the larger of two values, and `max(a, b) - c` must stay \
              that.\n\n\
              Nest the reductions, one index each.",
        wrong: r#"dim n = 3, m = 2
input w[n, m]
loss L = max(i, j) w[i, j]
"#,
        right: r#"dim n = 3, m = 2
input w[n, m]
loss L = max(i) max(j) w[i, j]
"#,
    },
    Explanation {
        code: "dl::parse::optimum_arity",
        title: "`over` and `at` give different numbers of names and values",
        text: "`claim minimize OBJ over a, b at (va, vb)` claims that the values after `at` \
              minimise OBJ, one value per name after `over`, in the same order. With one \
              name, the parentheses may be left out: `over a at 1`.\n\n\
              The engine cannot tell which value belongs to which name when the counts \
              differ. Give one value per varied name.",
        wrong: r#"param w
hyper c = 3
let f = (w - c)^2
claim minimize f over w at (c, 0)
"#,
        right: r#"param w
hyper c = 3
let f = (w - c)^2
claim minimize f over w at c
"#,
    },
    Explanation {
        code: "dl::parse::otherwise_not_last",
        title: "an `otherwise` case is followed by another case",
        text: "`otherwise` covers every point that the other cases leave, so it comes last, \
              where a reader looks for it. A case written after it is refused rather than \
              read in some order.\n\n\
              Move the `otherwise` case to the end.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad x[j] = a * g[j]  otherwise
          | a * g[j]  if j <= 2
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad x[j] = a * g[j]  if j <= 2
          | a * g[j]  otherwise
"#,
    },
    Explanation {
        code: "dl::parse::ragged_list",
        title: "the rows of a given list differ in length",
        text: "Values of a matrix may be given in rows, `input w[2, 3] = [[1, 2, 3], [4, 5, \
              6]]`: one row per element of the first axis, each with one value per element \
              of the others. Every row must have the shape of the first.",
        wrong: r#"input w[2, 3] = [[1, 2, 3], [4, 5]]
loss L = sum(i, k) w[i, k]^2
"#,
        right: r#"input w[2, 3] = [[1, 2, 3], [4, 5, 6]]
loss L = sum(i, k) w[i, k]^2
"#,
    },
    Explanation {
        code: "dl::parse::steps",
        title: "the number of steps is not a whole number of at least 1",
        text: "`claim A == B over T steps` runs both update rules for T steps from the same \
              parameters. T must be a whole number of at least 1: zero steps would compare \
              nothing, and fractions or negative numbers are not a number of steps.\n\n\
              The claims are also bounded by `--max-steps` (default 100000): a claim \
              asking for more is not checked.",
        wrong: r#"dim n = 3
param theta[n]
hyper alpha = 0.1, lambda = 0.01
stream gt[n] ~ normal(0, 1)

optimizer A {
  theta[k] = theta[k] - alpha * (gt[k] + lambda * theta[k])
}
optimizer B {
  theta[k] = (1 - alpha * lambda) * theta[k] - alpha * gt[k]
}
claim A == B over 0 steps
"#,
        right: r#"dim n = 3
param theta[n]
hyper alpha = 0.1, lambda = 0.01
stream gt[n] ~ normal(0, 1)

optimizer A {
  theta[k] = theta[k] - alpha * (gt[k] + lambda * theta[k])
}
optimizer B {
  theta[k] = (1 - alpha * lambda) * theta[k] - alpha * gt[k]
}
claim A == B over 20 steps
"#,
    },
    Explanation {
        code: "dl::parse::string_escape",
        title: "a string contains an unknown escape",
        text: "Strings (the `exercise` title, the reason of `expect fail`) have two escapes \
              only: `\\\"` for a quote and `\\\\` for a backslash. Anything else after a \
              backslash, such as `\\n` or `\\t`, is refused rather than kept as two \
              characters or turned into a control character.\n\n\
              Write the text without the escape. A string stays on one line.",
        wrong: r#"exercise "Scaling\nby a"
dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
        right: r#"exercise "Scaling by a"
dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::parse::syntax",
        title: "the text does not follow the grammar",
        text: "The parser expected something else at this point. The message says what it \
              could have accepted (\"an expression\", \"`=`\", \"a condition\") and what \
              it found.\n\n\
              When it recognises a common slip, the help line says so: `2x` for `2 * x` \
              (multiplication is always written), a space between a name and `[` or `(` \
              (`x [i]`, `exp (x)`), `**` for `^`, `..` for `..=`, `==` where a definition \
              takes `=`, and reserved words used as names.\n\n\
              Read the statement at the label against the README's language reference.",
        wrong: r#"dim N = 4
input x[N]
param a
y[i] = 2a * x[i]
grad a = sum(i) 2 * g[i] * x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = 2 * a * x[i]
grad a = sum(i) 2 * g[i] * x[i]
"#,
    },
    Explanation {
        code: "dl::parse::too_deep",
        title: "an expression nests more than 256 levels deep",
        text: "The parser refuses expressions nested more than 256 levels deep, counting \
              parentheses, brackets, reductions and chained operators. This keeps the \
              parser's stack bounded. Such expressions are usually generated by a script, \
              not written by hand.\n\n\
              Split the expression into `let` definitions, or write it in closed form: a \
              power (`a^300`), a reduction (`sum`, `prod`), or a layer over an index \
              instead of a term per element.",
        wrong: r#"dim N = 4
input x[N]
param a
# 300 factors, written out by a script:
y[i] = a * (a * (a * ( … 294 more levels … (a * (a * (a * x[i]))) … )))
grad a = sum(i) g[i] * 300 * a^299 * x[i]
"#,
        right: r#"dim N = 4
input x[N]
param a
y[i] = a^300 * x[i]
grad a = sum(i) g[i] * 300 * a^299 * x[i]
"#,
    },
    Explanation {
        code: "dl::parse::unclosed_brace",
        title: "an optimizer's `{` is never closed",
        text: "An `optimizer NAME { ... }` holds `state`, `let` and update statements, and \
              ends with `}`. The file ended, or a statement that cannot stand inside \
              braces (such as another `optimizer`, a `claim` or a declaration) began, \
              before the `}`.\n\n\
              The first label shows the `{` that is still open; the second shows where the \
              `}` was expected. Add the `}` after the rule's last statement.",
        wrong: r#"dim n = 3
param theta[n]
hyper alpha = 0.1, lambda = 0.01
stream gt[n] ~ normal(0, 1)

optimizer A {
  theta[k] = theta[k] - alpha * (gt[k] + lambda * theta[k])

optimizer B {
  theta[k] = (1 - alpha * lambda) * theta[k] - alpha * gt[k]
}
claim A == B over 20 steps
"#,
        right: r#"dim n = 3
param theta[n]
hyper alpha = 0.1, lambda = 0.01
stream gt[n] ~ normal(0, 1)

optimizer A {
  theta[k] = theta[k] - alpha * (gt[k] + lambda * theta[k])
}
optimizer B {
  theta[k] = (1 - alpha * lambda) * theta[k] - alpha * gt[k]
}
claim A == B over 20 steps
"#,
    },
    Explanation {
        code: "dl::parse::unterminated_string",
        title: "a string has no closing quote on its line",
        text: "A string must end with `\"` on the line where it starts. Without the closing \
              quote, the rest of the file would be read as part of the title or reason, so \
              the engine stops at the end of the line instead.\n\n\
              Close the string. Write `\\\"` for a quote inside it.",
        wrong: r#"exercise "Scaling by a
dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
        right: r#"exercise "Scaling by a"
dim N = 4
input x[N]
param a
y[i] = a * x[i]
grad a = sum(i) g[i] * x[i]
"#,
    },
];
