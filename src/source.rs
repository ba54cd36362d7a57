//! Source text, byte spans and span-carrying nodes.
//!
//! Every AST node carries the [`Span`] of the text it came from, so that any
//! later stage can point back into the spec. [`Spanned`] compares by value
//! only: tests compare trees without caring about positions.

use std::fmt;
use std::sync::Arc;

/// A spec file's name and text, shared by every diagnostic that points into it.
#[derive(Clone, Debug)]
pub struct Source {
    name: Arc<str>,
    text: Arc<str>,
    /// Where each line starts, found on first use: a position is then a
    /// search, not a scan of the text before it.
    line_starts: Arc<std::sync::OnceLock<Vec<usize>>>,
    /// The file began with a byte-order mark, dropped from `text`: an
    /// editor still counts it on the first line.
    bom: bool,
}

impl Source {
    /// A leading byte-order mark is dropped: it is no part of the spec, and
    /// kept it would shift every column of the first line.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let bom = text.starts_with('\u{FEFF}');
        let text = match text.strip_prefix('\u{FEFF}') {
            Some(rest) => rest.to_string(),
            None => text,
        };
        // Old Mac files end lines with a lone CR: read as LF (one byte for
        // one, so spans keep their offsets), every line gets its own number.
        let text = if text.contains('\r') {
            let bytes = text.as_bytes();
            text.char_indices()
                .map(|(k, c)| {
                    if c == '\r' && bytes.get(k + 1) != Some(&b'\n') {
                        '\n'
                    } else {
                        c
                    }
                })
                .collect()
        } else {
            text
        };
        Self {
            name: Arc::from(name.into()),
            text: Arc::from(text),
            line_starts: Arc::default(),
            bom,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the file began with a byte-order mark (not in [`Source::text`]).
    pub fn had_bom(&self) -> bool {
        self.bom
    }

    /// The text as miette wants it, named so that reports say which file.
    pub fn named(&self) -> miette::NamedSource<SpecText> {
        miette::NamedSource::new(&self.name, SpecText(Arc::clone(&self.text)))
    }

    /// Where a byte offset is, in the units each reader counts in.
    pub fn position(&self, offset: usize) -> Position {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let (line, start) = self.line_of(offset);
        let in_line = self.text.get(start..offset).unwrap_or("");
        Position {
            line,
            column: in_line.chars().count() + 1,
            column_utf16: in_line.encode_utf16().count() + 1,
            offset,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let p = self.position(offset);
        (p.line, p.column)
    }

    /// The 1-based line holding a byte offset, and where that line starts.
    fn line_of(&self, offset: usize) -> (usize, usize) {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(k, _)| k + 1))
                .collect()
        });
        let line = starts.partition_point(|&s| s <= offset).max(1);
        (line, starts.get(line - 1).copied().unwrap_or(0))
    }
}

/// A spec's text as miette reads it. miette counts a column in bytes;
/// every other report counts characters, so the column it is handed is
/// recounted (`≈` is one column, not three).
#[derive(Clone, Debug)]
pub struct SpecText(Arc<str>);

impl miette::SourceCode for SpecText {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let text: &'a str = &self.0;
        let contents = text.read_span(span, context_lines_before, context_lines_after)?;
        let start = contents.span().offset();
        let before = text.get(..start).unwrap_or("");
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count());
        Ok(Box::new(miette::MietteSpanContents::new(
            contents.data(),
            *contents.span(),
            contents.line(),
            column,
            contents.line_count(),
        )))
    }
}

/// A place in a [`Source`]: 1-based line; 1-based column counted in
/// characters (what a person and the reports count) and in UTF-16 code
/// units (what the Language Server Protocol counts); the byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
    pub column_utf16: usize,
    pub offset: usize,
}

/// The largest char boundary at or before `offset`.
fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// A byte range `start..end` in a [`Source`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    pub fn len(self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> Self {
        miette::SourceSpan::new(span.start.into(), span.len())
    }
}

/// A value with the span it was written at. Equality and hashing ignore the span.
#[derive(Clone)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub const fn new(node: T, span: Span) -> Self {
        Self { node, span }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Spanned<U> {
        Spanned::new(f(self.node), self.span)
    }

    pub fn as_ref(&self) -> Spanned<&T> {
        Spanned::new(&self.node, self.span)
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
    }
}

impl<T: Eq> Eq for Spanned<T> {}

impl<T: std::hash::Hash> std::hash::Hash for Spanned<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.node.hash(state);
    }
}

impl<T: fmt::Debug> fmt::Debug for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.node.fmt(f)
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.node
    }
}
