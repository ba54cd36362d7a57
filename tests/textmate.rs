//! The TextMate grammar of `.dl` files (`editors/textmate/dl.tmLanguage.json`)
//! run in vscode-textmate on vscode-oniguruma, the engine and regex library VS
//! Code highlights with, through `tests/textmate/tokenize.js`.
//!
//! Every bundled spec and corpus file is tokenized and checked against a
//! small lexer of its own here: comments, strings and their escapes,
//! numbers, operators, Iverson brackets, the reserved words of
//! `grammar/dl.pest`, its contextual words inside `check` and `claim`, the
//! functions and distributions of `src/analysis`, and declared names, each
//! with its scope, and no plain name with a keyword's. The diagnostics
//! fixtures, malformed on purpose, are checked for comments and strings. A
//! generated spec (parsed by dlverify first, so it is real `.dl`) pins the
//! rest: every function and distribution, declaration lists, nested brackets.
//!
//! Needs `node` and `npm ci --prefix tests/textmate`; without them the tests
//! say so and pass, so that `cargo test` works with only what Cargo installs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use dlverify::analysis::program::{DistributionKind, FLOOR_FORMS, Function};
use serde_json::Value;

const GRAMMAR: &str = "editors/textmate/dl.tmLanguage.json";

/// Reserved words by the scope they get. Together they must be exactly the
/// `kw_*` rules of grammar/dl.pest (checked below).
const DECLARATION_WORDS: &[&str] = &[
    "exercise",
    "dim",
    "input",
    "param",
    "hyper",
    "let",
    "loss",
    "random",
    "stream",
    "optimizer",
    "state",
];
const CLAIM_KEYWORDS: &[&str] = &["grad", "check", "claim", "expect", "fail", "E", "Var"];
const CONTROL_WORDS: &[&str] = &["for", "in", "if", "otherwise", "and", "or", "not"];
const RESERVED_REDUCTIONS: &[&str] = &["sum", "prod"];

/// Contextual words (`ck_*` in the pest grammar, less `grad`, which is
/// reserved): keywords inside a `check` or a `claim` statement only.
const CHECK_WORDS: &[&str] = &[
    "taylor",
    "one_sided",
    "central",
    "rate",
    "precision",
    "f32",
    "f64",
];
const CLAIM_WORDS: &[&str] = &[
    "minimize", "maximize", "over", "subject", "to", "at", "steps", "step",
];

/// Statements that take a list of declared names, `dim n = 5, m = 3`.
const LIST_DECLARATIONS: &[&str] = &["dim", "input", "param", "hyper"];
/// Statements whose first name is declared.
const DECLARING: &[&str] = &[
    "dim", "input", "param", "hyper", "let", "loss", "random", "stream", "state",
];

/// Scope prefixes that only a highlighted word may carry.
const WORD_SCOPES: &[&str] = &[
    "keyword.",
    "storage.",
    "support.",
    "constant.",
    "entity.",
    "string.",
    "comment.",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Says on the terminal (past the test harness's capture) why a test did
/// not run.
fn skip(why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "tests/textmate.rs: skipped, {why}. To run it: `npm ci --prefix tests/textmate` (needs node and npm), then `cargo test --test textmate`."
    );
}

/// Runs tokenize.js over the files; `None` (after saying so) where node or
/// the npm packages are missing.
fn tokenize(files: &[PathBuf]) -> Option<Value> {
    let modules = root().join("tests/textmate/node_modules");
    for package in ["vscode-textmate", "vscode-oniguruma"] {
        if !modules.join(package).join("package.json").is_file() {
            skip(&format!("tests/textmate/node_modules/{package} is missing"));
            return None;
        }
    }
    if Command::new("node").arg("--version").output().is_err() {
        skip("`node` is not on PATH");
        return None;
    }
    let out = Command::new("node")
        .current_dir(root())
        .arg("tests/textmate/tokenize.js")
        .arg(GRAMMAR)
        .args(files)
        .output()
        .expect("runs node");
    assert!(
        out.status.success(),
        "tokenize.js failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("tokenize.js prints JSON");
    assert_eq!(json["scopeName"], "source.dl");
    assert_eq!(json["files"].as_array().unwrap().len(), files.len());
    Some(json)
}

/// One line as vscode-textmate tokenized it: its characters, each with the
/// scopes of the token it is in.
struct Line {
    chars: Vec<char>,
    scopes: Vec<Vec<String>>,
    tokens: usize,
}

impl Line {
    fn has(&self, i: usize, scope: &str) -> bool {
        self.scopes[i].iter().any(|s| s == scope)
    }

    fn has_prefix(&self, i: usize, prefix: &str) -> bool {
        self.scopes[i].iter().any(|s| s.starts_with(prefix))
    }

    fn text(&self) -> String {
        self.chars.iter().collect()
    }
}

/// The lines of one tokenized file; checks that the tokens cover every line
/// exactly and that no line was cut short.
fn lines_of(file: &Value, text: &str) -> Vec<Line> {
    let path = file["path"].as_str().unwrap();
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let expected = split_lines(text);
    let lines = file["lines"].as_array().unwrap();
    assert_eq!(
        lines.len(),
        expected.len().max(1),
        "{path}: number of lines"
    );
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(
            line["stoppedEarly"],
            false,
            "{path}:{}: tokenizing stopped early",
            n + 1
        );
        let mut chars = Vec::new();
        let mut scopes = Vec::new();
        let tokens = line["tokens"].as_array().unwrap();
        for token in tokens {
            let names: Vec<String> = token["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            assert_eq!(names.first().map(String::as_str), Some("source.dl"));
            for c in token["text"].as_str().unwrap().chars() {
                chars.push(c);
                scopes.push(names.clone());
            }
        }
        let line = Line {
            chars,
            scopes,
            tokens: tokens.len(),
        };
        assert_eq!(
            line.text(),
            expected.get(n).copied().unwrap_or(""),
            "{path}:{}: the tokens do not cover the line",
            n + 1
        );
        out.push(line);
    }
    out
}

/// A text's lines as VS Code splits them: `\r\n`, `\r` and `\n` end one.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['\r', '\n']) {
        lines.push(&rest[..i]);
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    if !rest.is_empty() || lines.is_empty() {
        lines.push(rest);
    }
    lines
}

// ---------------------------------------------------------------------------
// The lexer the scopes are checked against.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Code,
    Str,
    Escape,
    Comment,
}

/// Strings run from `"` to the next unescaped `"` or the end of the line;
/// a `#` outside a string starts a comment.
fn classify(chars: &[char]) -> Vec<Class> {
    let mut out = vec![Class::Code; chars.len()];
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '#' => {
                out[i..].fill(Class::Comment);
                break;
            }
            '"' => {
                out[i] = Class::Str;
                i += 1;
                while i < chars.len() {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        out[i] = Class::Escape;
                        out[i + 1] = Class::Escape;
                        i += 2;
                    } else {
                        out[i] = Class::Str;
                        i += 1;
                        if chars[i - 1] == '"' {
                            break;
                        }
                    }
                }
            }
            _ => i += 1,
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Number,
    Word(String),
    Operator,
    /// Digits running into a name (`2x`): a syntax error, scoped anyhow.
    Malformed,
    Punct(char),
}

#[derive(Clone, Debug)]
struct Lexeme {
    kind: Kind,
    start: usize,
    end: usize,
}

const OPERATORS: &[&str] = &[
    "..=", "..", "==", "!=", "<=", ">=", "~=", "+-", "&&", "||", "≈", "±", "<", ">", "=", "+", "-",
    "*", "/", "^", "|", "~",
];

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The lexemes of a line's code: numbers as grammar/dl.pest's `number`
/// reads them, words, operators, other punctuation.
fn lex(chars: &[char], class: &[Class]) -> Vec<Lexeme> {
    let code = |i: usize| i < chars.len() && class[i] == Class::Code;
    let digit = |i: usize| code(i) && chars[i].is_ascii_digit();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !code(i) || chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let c = chars[i];
        let start = i;
        if c.is_ascii_digit() || (c == '.' && digit(i + 1) && !(i > 0 && chars[i - 1] == '.')) {
            while digit(i) {
                i += 1;
            }
            if code(i) && chars[i] == '.' && digit(i + 1) {
                i += 1;
                while digit(i) {
                    i += 1;
                }
            }
            if code(i) && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if code(j) && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if digit(j) {
                    i = j;
                    while digit(i) {
                        i += 1;
                    }
                }
            }
            let kind = if code(i) && is_word_char(chars[i]) {
                while code(i) && is_word_char(chars[i]) {
                    i += 1;
                }
                Kind::Malformed
            } else {
                Kind::Number
            };
            out.push(Lexeme {
                kind,
                start,
                end: i,
            });
        } else if is_word_start(c) {
            while code(i) && is_word_char(chars[i]) {
                i += 1;
            }
            out.push(Lexeme {
                kind: Kind::Word(chars[start..i].iter().collect()),
                start,
                end: i,
            });
        } else if let Some(op) = OPERATORS.iter().find(|op| {
            let op: Vec<char> = op.chars().collect();
            (0..op.len()).all(|k| code(i + k) && chars[i + k] == op[k])
        }) {
            i += op.chars().count();
            out.push(Lexeme {
                kind: Kind::Operator,
                start,
                end: i,
            });
        } else {
            i += 1;
            out.push(Lexeme {
                kind: Kind::Punct(c),
                start,
                end: i,
            });
        }
    }
    out
}

/// `y[i, j] =` or `t =` at the start of a line: a layer or an update, which
/// begins a statement without a keyword.
fn starts_layer(chars: &[char], lexemes: &[Lexeme]) -> bool {
    let Some(Lexeme {
        kind: Kind::Word(w),
        end,
        ..
    }) = lexemes.first()
    else {
        return false;
    };
    if reserved_scope(w).is_some() {
        return false;
    }
    let mut k = 1;
    if lexemes
        .get(k)
        .is_some_and(|l| l.kind == Kind::Punct('[') && l.start == *end)
    {
        while lexemes.get(k).is_some_and(|l| l.kind != Kind::Punct(']')) {
            k += 1;
        }
        k += 1;
    }
    lexemes
        .get(k)
        .is_some_and(|l| l.kind == Kind::Operator && chars[l.start..l.end] == ['='])
}

/// What a test counted.
#[derive(Default, Debug)]
struct Counts {
    files: usize,
    lines: usize,
    tokens: usize,
    comments: usize,
    strings: usize,
    escapes: usize,
    numbers: usize,
    operators: usize,
    iversons: usize,
    keywords: usize,
    contextual: usize,
    functions: usize,
    declared: usize,
    names: usize,
}

/// Where the scopes of a file differ from what the lexer expects.
struct Checker<'a> {
    path: &'a str,
    failures: Vec<String>,
    counts: Counts,
    functions: BTreeSet<String>,
    distributions: BTreeSet<String>,
}

impl Checker<'_> {
    fn fail(&mut self, line_no: usize, line: &Line, at: usize, what: String) {
        self.failures.push(format!(
            "{}:{}:{}: {what}\n    line:   {}\n    scopes: {:?}",
            self.path,
            line_no + 1,
            at + 1,
            line.text(),
            line.scopes.get(at).map(|s| &s[1..]).unwrap_or(&[]),
        ));
    }

    /// Every character of `start..end` carries `scope` exactly.
    fn expect(&mut self, n: usize, line: &Line, start: usize, end: usize, scope: &str) {
        if let Some(i) = (start..end).find(|&i| !line.has(i, scope)) {
            let text: String = line.chars[start..end].iter().collect();
            self.fail(n, line, i, format!("`{text}` should be {scope}"));
        }
    }

    /// No character of `start..end` carries a word's or a literal's scope.
    fn expect_plain(&mut self, n: usize, line: &Line, start: usize, end: usize) {
        for i in start..end {
            if let Some(s) = line.scopes[i]
                .iter()
                .find(|s| WORD_SCOPES.iter().any(|p| s.starts_with(p)))
            {
                let text: String = line.chars[start..end].iter().collect();
                let s = s.clone();
                self.fail(n, line, i, format!("`{text}` is a plain name, not {s}"));
                return;
            }
        }
    }

    /// Checks a file's lines; `words` false checks comments and strings only
    /// (for the diagnostics fixtures, malformed on purpose, where a lexer's
    /// reading of the words is no better than the grammar's).
    fn check_file(&mut self, lines: &[Line], words: bool) {
        self.counts.files += 1;
        // The statement the lexer is in: the last statement keyword seen.
        let mut statement: Option<String> = None;
        // Brackets and parentheses open in the statement (for the commas
        // of a declaration list).
        let mut depth: i64 = 0;
        // Whether the last line's code ended in a comma: a declaration list
        // goes on.
        let mut continued = false;
        for (n, line) in lines.iter().enumerate() {
            self.counts.lines += 1;
            self.counts.tokens += line.tokens;
            let class = classify(&line.chars);
            self.check_literals(n, line, &class);
            if !words {
                continue;
            }
            let lexemes = lex(&line.chars, &class);
            if starts_layer(&line.chars, &lexemes) {
                statement = None;
                depth = 0;
            }
            let continues = continued;
            if let Some(last) = lexemes.last() {
                continued = last.kind == Kind::Punct(',');
            }
            let mut numeric = vec![false; line.chars.len()];
            for (k, lexeme) in lexemes.iter().enumerate() {
                let (start, end) = (lexeme.start, lexeme.end);
                match &lexeme.kind {
                    Kind::Number => {
                        self.counts.numbers += 1;
                        numeric[start..end].fill(true);
                        self.expect(n, line, start, end, "constant.numeric.dl");
                    }
                    Kind::Malformed => numeric[start..end].fill(true),
                    Kind::Operator => {
                        self.counts.operators += 1;
                        if let Some(i) =
                            (start..end).find(|&i| !line.has_prefix(i, "keyword.operator"))
                        {
                            self.fail(n, line, i, "an operator should be keyword.operator".into());
                        }
                    }
                    Kind::Punct(c) => {
                        match c {
                            '[' | '(' => depth += 1,
                            ']' | ')' => depth -= 1,
                            _ => {}
                        }
                        if *c == '[' {
                            self.check_bracket(n, line, &class, &lexemes, k);
                        }
                    }
                    Kind::Word(word) => {
                        let prev = k.checked_sub(1).map(|j| &lexemes[j]);
                        let next = lexemes.get(k + 1);
                        let called = next.is_some_and(|l| l.kind == Kind::Punct('('));
                        let called_at_once = called && next.is_some_and(|l| l.start == end);
                        let w = word.as_str();
                        let prev_word = prev.and_then(|l| match &l.kind {
                            Kind::Word(p) => Some(p.as_str()),
                            _ => None,
                        });
                        let after_comma = prev.is_some_and(|l| l.kind == Kind::Punct(','));
                        let starts_line = prev.is_none() && continues;
                        let in_list = statement
                            .as_deref()
                            .is_some_and(|s| LIST_DECLARATIONS.contains(&s))
                            && depth == 0;
                        if let Some(scope) = reserved_scope(w) {
                            self.counts.keywords += 1;
                            self.expect(n, line, start, end, scope);
                            if DECLARATION_WORDS.contains(&w)
                                || matches!(w, "grad" | "check" | "claim")
                            {
                                statement = Some(w.to_string());
                                depth = 0;
                            }
                        } else if statement.as_deref() == Some("check") && CHECK_WORDS.contains(&w)
                            || statement.as_deref() == Some("claim") && CLAIM_WORDS.contains(&w)
                        {
                            self.counts.contextual += 1;
                            self.expect(n, line, start, end, "keyword.other.dl");
                        } else if (called_at_once
                            && (self.functions.contains(w) || self.distributions.contains(w)))
                            || (called && matches!(w, "max" | "min" | "mean"))
                        {
                            self.counts.functions += 1;
                            self.expect(n, line, start, end, "support.function.dl");
                        } else if prev_word == Some("optimizer") {
                            self.counts.declared += 1;
                            self.expect(n, line, start, end, "entity.name.function.dl");
                        } else if prev_word.is_some_and(|p| DECLARING.contains(&p))
                            || in_list && (after_comma || starts_line)
                        {
                            self.counts.declared += 1;
                            self.expect(n, line, start, end, "entity.name.variable.dl");
                        } else {
                            self.counts.names += 1;
                            self.expect_plain(n, line, start, end);
                        }
                    }
                }
            }
            // Digits elsewhere (`f32`, `x2`) are no numbers.
            for (i, &is_number) in numeric.iter().enumerate() {
                if !is_number && line.has(i, "constant.numeric.dl") {
                    self.fail(n, line, i, "only numbers are constant.numeric".into());
                    break;
                }
            }
        }
    }

    /// Comments and strings: their scopes, and no other inside them; code
    /// carries neither.
    fn check_literals(&mut self, n: usize, line: &Line, class: &[Class]) {
        if let Some(start) = class.iter().position(|&c| c == Class::Comment) {
            self.counts.comments += 1;
            self.expect(
                n,
                line,
                start,
                line.chars.len(),
                "comment.line.number-sign.dl",
            );
            for i in start..line.chars.len() {
                if let Some(s) = line.scopes[i].iter().find(|s| {
                    !(s.as_str() == "source.dl"
                        || s.starts_with("meta.")
                        || s.starts_with("comment.")
                        || s.starts_with("punctuation.definition.comment."))
                }) {
                    let s = s.clone();
                    self.fail(n, line, i, format!("{s} inside a comment"));
                    break;
                }
            }
        }
        let mut i = 0;
        while i < class.len() {
            if class[i] == Class::Code || class[i] == Class::Comment {
                if class[i] == Class::Code
                    && (line.has_prefix(i, "comment.") || line.has_prefix(i, "string."))
                {
                    self.fail(n, line, i, "code inside a comment or string scope".into());
                    return;
                }
                i += 1;
                continue;
            }
            // A string, from its quote.
            self.counts.strings += 1;
            let start = i;
            while i < class.len() && matches!(class[i], Class::Str | Class::Escape) {
                if i > start && class[i] == Class::Str && line.chars[i] == '"' {
                    i += 1;
                    break;
                }
                i += 1;
            }
            self.expect(n, line, start, i, "string.quoted.double.dl");
            for (j, &c) in class.iter().enumerate().take(i).skip(start) {
                if c == Class::Escape {
                    if line.chars[j] == '\\' {
                        self.counts.escapes += 1;
                    }
                    self.expect(n, line, j, j + 1, "constant.character.escape.dl");
                } else if let Some(s) = line.scopes[j].iter().find(|s| {
                    WORD_SCOPES
                        .iter()
                        .any(|p| s.starts_with(p) && !s.starts_with("string."))
                }) {
                    let s = s.clone();
                    self.fail(n, line, j, format!("{s} inside a string"));
                    break;
                }
            }
        }
    }

    /// A `[` that follows no name, `]` or `)` and holds a comparison is an
    /// Iverson bracket, and so is its `]`; any other `[` is not. A `[` after
    /// `in` opens an interval.
    fn check_bracket(
        &mut self,
        n: usize,
        line: &Line,
        class: &[Class],
        lexemes: &[Lexeme],
        k: usize,
    ) {
        const IVERSON: &str = "keyword.operator.iverson.dl";
        let open = lexemes[k].start;
        let after_operand = open > 0
            && class[open - 1] == Class::Code
            && (is_word_char(line.chars[open - 1]) || matches!(line.chars[open - 1], ']' | ')'));
        let after_in = k > 0 && lexemes[k - 1].kind == Kind::Word("in".into());
        // The matching `]` on this line, and whether a condition is inside.
        let mut level = 0;
        let mut close = None;
        let mut condition = false;
        for l in &lexemes[k..] {
            match &l.kind {
                Kind::Punct('[') => level += 1,
                Kind::Punct(']') => {
                    level -= 1;
                    if level == 0 {
                        close = Some(l.start);
                        break;
                    }
                }
                Kind::Operator => {
                    let op: String = line.chars[l.start..l.end].iter().collect();
                    condition |= matches!(
                        op.as_str(),
                        "==" | "!=" | "<=" | ">=" | "<" | ">" | "&&" | "||"
                    );
                }
                Kind::Word(w) => condition |= matches!(w.as_str(), "and" | "or" | "not"),
                _ => {}
            }
        }
        if !after_operand && !after_in && condition {
            if let Some(close) = close {
                self.counts.iversons += 1;
                self.expect(n, line, open, open + 1, IVERSON);
                self.expect(n, line, close, close + 1, IVERSON);
            }
        } else if line.has(open, IVERSON) {
            self.fail(n, line, open, "not an Iverson bracket".into());
        }
    }
}

/// The scope of a reserved word, or `None` for any other word.
fn reserved_scope(word: &str) -> Option<&'static str> {
    if DECLARATION_WORDS.contains(&word) {
        Some("storage.type.dl")
    } else if CLAIM_KEYWORDS.contains(&word) {
        Some("keyword.other.dl")
    } else if CONTROL_WORDS.contains(&word) {
        Some("keyword.control.dl")
    } else if RESERVED_REDUCTIONS.contains(&word) {
        Some("support.function.dl")
    } else {
        None
    }
}

/// The quoted words of the pest rules whose names start with `prefix`.
fn pest_words(prefix: &str) -> BTreeSet<String> {
    let pest = std::fs::read_to_string(root().join("grammar/dl.pest")).unwrap();
    let mut words = BTreeSet::new();
    for line in pest.lines() {
        let Some(rest) = line.strip_prefix(prefix) else {
            continue;
        };
        let Some((_, body)) = rest.split_once('=') else {
            continue;
        };
        for (i, part) in body.split('"').enumerate() {
            if i % 2 == 1 {
                words.insert(part.to_string());
            }
        }
    }
    assert!(!words.is_empty(), "no {prefix}* rules in grammar/dl.pest");
    words
}

fn names(list: &[&[&str]]) -> BTreeSet<String> {
    list.iter()
        .flat_map(|l| l.iter())
        .map(|s| s.to_string())
        .collect()
}

fn checker(path: &str) -> Checker<'_> {
    Checker {
        path,
        failures: Vec::new(),
        counts: Counts::default(),
        functions: Function::ALL
            .iter()
            .map(|f| f.name().to_string())
            .chain(FLOOR_FORMS.iter().map(|(name, _)| name.to_string()))
            .collect(),
        distributions: DistributionKind::ALL
            .iter()
            .map(|d| d.name().to_string())
            .collect(),
    }
}

fn report(failures: &[String]) -> String {
    let shown: Vec<&str> = failures.iter().take(40).map(String::as_str).collect();
    format!(
        "{} scope(s) wrong (first {} shown):\n{}",
        failures.len(),
        shown.len(),
        shown.join("\n")
    )
}

/// The word lists above are the pest grammar's, no more and no fewer.
#[test]
fn the_word_lists_are_the_pest_grammars() {
    assert_eq!(
        pest_words("kw_"),
        names(&[
            DECLARATION_WORDS,
            CLAIM_KEYWORDS,
            CONTROL_WORDS,
            RESERVED_REDUCTIONS
        ]),
        "grammar/dl.pest's reserved words changed: update the lists here and editors/textmate/dl.tmLanguage.json"
    );
    let mut contextual = pest_words("ck_");
    contextual.remove("grad");
    assert_eq!(
        contextual,
        names(&[CHECK_WORDS, CLAIM_WORDS]),
        "grammar/dl.pest's contextual words changed: update the lists here and editors/textmate/dl.tmLanguage.json"
    );
    assert_eq!(
        pest_words("reduce_op"),
        names(&[&["sum", "prod", "mean", "max", "min"]])
    );
}

/// The editor files agree with each other, without node: the VS Code
/// extension ships the same grammar, for the language and file extension
/// it declares, with `#` comments.
#[test]
fn the_editor_files_agree() {
    let read = |path: &str| std::fs::read_to_string(root().join(path)).unwrap();
    let json = |path: &str| -> Value {
        serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let grammar = json(GRAMMAR);
    assert_eq!(grammar["scopeName"], "source.dl");
    assert_eq!(
        read("editors/vscode/syntaxes/dl.tmLanguage.json"),
        read(GRAMMAR),
        "editors/vscode/syntaxes/dl.tmLanguage.json is not a copy of {GRAMMAR}: \
         cp {GRAMMAR} editors/vscode/syntaxes/"
    );
    let manifest = json("editors/vscode/package.json");
    let contributes = &manifest["contributes"];
    let language = &contributes["languages"][0];
    assert_eq!(language["id"], "dl");
    assert_eq!(language["extensions"][0], ".dl");
    let grammars = &contributes["grammars"][0];
    assert_eq!(grammars["language"], "dl");
    assert_eq!(grammars["scopeName"], "source.dl");
    let dir = root().join("editors/vscode");
    for file in [
        &grammars["path"],
        &language["configuration"],
        &manifest["main"],
    ] {
        let file = file.as_str().unwrap();
        assert!(dir.join(file).is_file(), "editors/vscode/{file} is missing");
    }
    assert_eq!(
        contributes["configuration"]["properties"]["dlverify.path"]["default"],
        "dlverify"
    );
    assert!(
        manifest["dependencies"]["vscode-languageclient"].is_string(),
        "{manifest}"
    );
    let config = json("editors/vscode/language-configuration.json");
    assert_eq!(config["comments"]["lineComment"], "#");
    let extension = read("editors/vscode/extension.js");
    assert!(extension.contains("'lsp'") && extension.contains("dlverify.path"));
    let nvim = read("editors/nvim/dlverify.lua");
    assert!(nvim.contains(r#"cmd = { exe, "lsp" }"#) && nvim.contains("dl = \"dl\""));
}

/// Every bundled spec and corpus file, in VS Code's TextMate engine; the
/// diagnostics fixtures too, for their comments and strings.
#[test]
fn every_spec_gets_its_scopes() {
    let mut files = Vec::new();
    for dir in [
        "specs",
        "tests/corpus",
        "tests/corpus/limits",
        "tests/diagnostics",
    ] {
        let found = common::specs_in(dir);
        assert!(!found.is_empty(), "no .dl files in {dir}");
        files.extend(found);
    }
    let relative: Vec<PathBuf> = files
        .iter()
        .map(|p| p.strip_prefix(root()).unwrap().to_path_buf())
        .collect();
    let Some(json) = tokenize(&relative) else {
        return;
    };
    let mut failures = Vec::new();
    let mut total = Counts::default();
    for (file, path) in json["files"].as_array().unwrap().iter().zip(&files) {
        let text = std::fs::read_to_string(path).unwrap();
        let name = file["path"].as_str().unwrap().to_string();
        let lines = lines_of(file, &text);
        let mut checker = checker(&name);
        checker.check_file(&lines, !name.starts_with("tests/diagnostics/"));
        failures.extend(checker.failures);
        add(&mut total, &checker.counts);
    }
    let _ = writeln!(std::io::stderr(), "textmate: {total:?}");
    assert!(failures.is_empty(), "{}", report(&failures));
    // The lexer saw every kind of thing it checks.
    assert!(total.files >= 200, "{total:?}");
    for (what, count) in [
        ("comments", total.comments),
        ("strings", total.strings),
        ("escapes", total.escapes),
        ("numbers", total.numbers),
        ("operators", total.operators),
        ("iverson brackets", total.iversons),
        ("keywords", total.keywords),
        ("contextual keywords", total.contextual),
        ("functions", total.functions),
        ("declared names", total.declared),
        ("plain names", total.names),
    ] {
        assert!(count > 0, "no {what} checked: {total:?}");
    }
}

fn add(total: &mut Counts, c: &Counts) {
    total.files += c.files;
    total.lines += c.lines;
    total.tokens += c.tokens;
    total.comments += c.comments;
    total.strings += c.strings;
    total.escapes += c.escapes;
    total.numbers += c.numbers;
    total.operators += c.operators;
    total.iversons += c.iversons;
    total.keywords += c.keywords;
    total.contextual += c.contextual;
    total.functions += c.functions;
    total.declared += c.declared;
    total.names += c.names;
}

/// A spec written for the highlighting, with every function and
/// distribution dlverify knows: real `.dl` (dlverify parses it), then
/// tokenized, checked like the bundled ones and then word by word.
#[test]
fn every_function_and_construct_gets_its_scope() {
    let calls: Vec<String> = Function::ALL
        .iter()
        .map(|f| (f.name(), f.arity()))
        .chain(FLOOR_FORMS)
        .map(|(name, arity)| {
            let args = vec!["s"; arity].join(", ");
            format!("{name}({args})")
        })
        .collect();
    let draws: Vec<String> = DistributionKind::ALL
        .iter()
        .map(|d| {
            let args = vec!["0.5"; d.parameters().len()].join(", ");
            format!("random r_{} ~ {}({args})\n", d.name(), d.name())
        })
        .collect();
    let spec = format!(
        r#"exercise "every \"construct\" \\ once"   # a comment: dim 1.5 "no string" [i == 1]
dim n = 5, m = 3
input x[n] in (-2, 2), t = 1, v[3] = [1, -2.5e-3, .5], # the list goes on
      u[n] in [0, 1)
param w[m, n], b[m], s > 0
hyper alpha = 0.05, mu = max(alpha, 1E+2)
let f = {calls}
let rate = t + 1
let α_2 = rate * 2e3 + t
y[i] = sum(k in 1..=n) w[i, k] * x[k] + [i == 1 and not i > 2] * b[i] for i in 1..=m
let q[i] = [x[i] < [t > 0] * 2] * prod(k) v[k] + max(k) x[k] * min(k) x[k]
let z[i] = v[i] if i <= 2 | 0 otherwise
grad b[i] = y[i] * rate
  expect fail "a reason, with \"quotes\""
check taylor central rate ≈ 3 ± 0.3 precision f32 expect fail "why"
check taylor one_sided rate ~= 2 +- 0.1
check taylor central rate >= 3 precision f64
{draws}stream gt[n] ~ normal(0, 1)
stream gs[n] = grad w + normal(0, 0.1)
optimizer A {{
  state vel[n] = 0
  state tt = 0
  vel[k] = mu * vel[k] + gt[k]
  tt = tt + 1
}}
claim E[q[i]] == Var[q[i]] expect fail "moments"
claim minimize (s - 1)^2 over s subject to s >= 0, s <= 2 at 1
claim A == A over 10 steps
"#,
        calls = calls.join(" + "),
        draws = draws.concat(),
    );
    dlverify::syntax::parse(&dlverify::source::Source::new("golden.dl", spec.clone()))
        .unwrap_or_else(|e| panic!("the generated spec does not parse: {e:?}\n{spec}"));

    let dir = common::TempDir::new("textmate");
    let path = PathBuf::from(dir.write("golden.dl", &spec));
    let Some(json) = tokenize(std::slice::from_ref(&path)) else {
        return;
    };
    let file = &json["files"][0];
    let lines = lines_of(file, &spec);
    let name = path.display().to_string();
    let mut checker = checker(&name);
    checker.check_file(&lines, true);
    let mut failures = checker.failures;

    // Word by word: the line that starts with `head`, the `nth` occurrence
    // of `text` in it, and in that the part between ⟨ and ⟩ (all of it
    // without them) must have `scope`, or no word's scope for `None`.
    let mut expect = |head: &str, text: &str, nth: usize, scope: Option<&str>| {
        let (n, line) = lines
            .iter()
            .enumerate()
            .find(|(_, l)| l.text().starts_with(head))
            .unwrap_or_else(|| panic!("no line starts with {head:?}"));
        let (before, part) = match text.split_once('⟨') {
            Some((before, rest)) => (before, rest.split_once('⟩').unwrap().0),
            None => ("", text),
        };
        let chars: Vec<char> = text.chars().filter(|c| !matches!(c, '⟨' | '⟩')).collect();
        let at = (0..line.chars.len())
            .filter(|&i| line.chars[i..].starts_with(&chars))
            .nth(nth)
            .unwrap_or_else(|| panic!("no {text:?} #{nth} in {:?}", line.text()));
        let (start, end) = (
            at + before.chars().count(),
            at + before.chars().count() + part.chars().count(),
        );
        let mut c = crate::checker(&name);
        match scope {
            Some(scope) => c.expect(n, line, start, end, scope),
            None => c.expect_plain(n, line, start, end),
        }
        failures.extend(c.failures);
    };
    let var = Some("entity.name.variable.dl");
    let num = Some("constant.numeric.dl");
    let op = Some("keyword.operator.dl");
    let iverson = Some("keyword.operator.iverson.dl");
    let function = Some("support.function.dl");
    let other = Some("keyword.other.dl");
    let bracket = Some("punctuation.section.brackets.begin.dl");
    // The title's escapes, and the comment after it.
    expect("exercise", "\\\"", 0, Some("constant.character.escape.dl"));
    expect("exercise", "\\\\", 0, Some("constant.character.escape.dl"));
    expect(
        "exercise",
        "# a comment: dim 1.5 \"no string\" [i == 1]",
        0,
        Some("comment.line.number-sign.dl"),
    );
    // Declaration lists, over two lines.
    expect("dim", "n", 0, var);
    expect("dim", "⟨m⟩ =", 0, var);
    expect("dim", "5", 0, num);
    expect("input", "x", 0, var);
    expect("input", "⟨t⟩ = 1", 0, var);
    expect("input", "⟨v⟩[3]", 0, var);
    expect("input", "x[⟨n⟩]", 0, None);
    expect("input", "⟨-⟩2.5e-3", 0, op);
    expect("input", "-⟨2.5e-3⟩", 0, num);
    expect("input", ".5", 0, num);
    expect("input", "⟨in⟩ (", 0, Some("keyword.control.dl"));
    expect(
        "input",
        "# the list goes on",
        0,
        Some("comment.line.number-sign.dl"),
    );
    expect("      u", "u", 0, var);
    expect("      u", "u[⟨n⟩]", 0, None);
    expect("param", "w", 0, var);
    expect("param", "[⟨m⟩", 0, None);
    expect("param", "⟨n⟩]", 0, None);
    expect("param", "⟨b⟩[", 0, var);
    expect("param", "[⟨m⟩]", 0, None);
    expect("param", "⟨s⟩ >", 0, var);
    expect("hyper", "⟨mu⟩ =", 0, var);
    expect("hyper", "max(⟨alpha⟩", 0, None);
    expect("hyper", "1E+2", 0, num);
    // Contextual words are names outside their statements.
    expect("let rate", "rate", 0, var);
    expect("grad b", "rate", 0, None);
    // Names beyond ASCII; digits in a name are no number.
    expect("let α_2", "α_2", 0, var);
    expect("let α_2", "2e3", 0, num);
    expect("check taylor central rate >=", "f⟨64⟩", 0, other);
    // Brackets.
    expect("y[i]", "⟨[⟩i]", 0, bracket);
    expect("y[i]", "+ ⟨[⟩i ==", 0, iverson);
    expect("y[i]", "⟨]⟩ * b", 0, iverson);
    expect("y[i]", "..=", 0, op);
    expect("y[i]", "..=", 1, op);
    expect("y[i]", "and", 0, Some("keyword.control.dl"));
    expect("y[i]", "not", 0, Some("keyword.control.dl"));
    expect("y[i]", "sum", 0, function);
    expect("let q", "= ⟨[⟩x", 0, iverson);
    expect("let q", "⟨[⟩t > 0", 0, iverson);
    expect("let q", "x⟨[⟩i]", 0, bracket);
    expect("let q", "0⟨]⟩", 0, iverson);
    expect("let q", "2⟨]⟩", 0, iverson);
    expect("let q", "max", 0, function);
    expect("let q", "min", 0, function);
    expect("let q", "prod", 0, function);
    expect("let z", "|", 0, op);
    expect("let z", "if", 0, Some("keyword.control.dl"));
    expect("let z", "otherwise", 0, Some("keyword.control.dl"));
    expect("let z", "<=", 0, op);
    // Check statements.
    for word in [
        "check",
        "taylor",
        "central",
        "rate",
        "precision",
        "f32",
        "expect",
        "fail",
    ] {
        expect("check taylor central rate ≈", word, 0, other);
    }
    expect("check taylor central rate ≈", "≈", 0, op);
    expect("check taylor central rate ≈", "±", 0, op);
    expect("check taylor central rate ≈", "0.3", 0, num);
    expect(
        "check taylor central rate ≈",
        "\"why\"",
        0,
        Some("string.quoted.double.dl"),
    );
    expect("check taylor one_sided", "one_sided", 0, other);
    expect("check taylor one_sided", "~=", 0, op);
    expect("check taylor one_sided", "+-", 0, op);
    expect("check taylor central rate >=", "f64", 0, other);
    expect("check taylor central rate >=", ">=", 0, op);
    // Randomness and update rules.
    for d in DistributionKind::ALL {
        let head = format!("random r_{}", d.name());
        expect(&head, "random", 0, Some("storage.type.dl"));
        expect(&head, &format!("⟨{}⟩(", d.name()), 0, function);
        expect(&head, &format!("⟨r_{}⟩ ", d.name()), 0, var);
        expect(&head, "~", 0, op);
    }
    expect("stream gs", "gs", 0, var);
    expect("stream gs", "grad", 0, other);
    expect("stream gs", "⟨w⟩ +", 0, None);
    expect("optimizer", "A", 0, Some("entity.name.function.dl"));
    expect("  state vel", "vel", 0, var);
    expect("  state tt", "tt", 0, var);
    expect("  vel[k]", "vel", 0, None);
    expect("  tt = tt", "tt", 1, None);
    expect("}", "}", 0, None);
    // Claims.
    expect("claim E", "claim", 0, other);
    expect("claim E", "E", 0, other);
    expect("claim E", "Var", 0, other);
    expect("claim E", "==", 0, op);
    for word in ["minimize", "over", "subject", "to", "at"] {
        expect("claim minimize", &format!("⟨{word}⟩ "), 0, other);
    }
    expect("claim minimize", "over ⟨s⟩", 0, None);
    expect("claim minimize", "at ⟨1⟩", 0, num);
    expect("claim A", "over", 0, other);
    expect("claim A", "steps", 0, other);
    expect("claim A", "10", 0, num);
    expect("claim A", "A", 1, None);
    // Every function, called.
    let names = Function::ALL.iter().map(|f| f.name());
    for name in names.chain(FLOOR_FORMS.iter().map(|(name, _)| *name)) {
        expect("let f", &format!(" ⟨{name}⟩("), 0, function);
    }
    assert!(failures.is_empty(), "{}\n\n{spec}", report(&failures));
}
