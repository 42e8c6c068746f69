//! Located problems in a plan file, and the error that carries all of them.
//!
//! Validation never stops at the first problem: every check records what it
//! found in a [`Problems`] list, and loading fails with one [`PlanError`] that
//! holds them all, sorted by position. The same error renders two ways: through
//! miette (source snippets, for terminals) and as plain `file:line:col` lines
//! (for logs, CI and editors), see [`PlanError::render_plain`].

use crate::model::printable;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// Where in the plan file a problem is: 1-based line and column (in characters),
/// and the byte range it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub span: Range<usize>,
}

/// One problem found in a plan file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    message: String,
    help: Vec<String>,
    location: Option<Location>,
    label: String,
}

impl Diagnostic {
    /// What is wrong, in one sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to do about it; each entry is one line.
    pub fn help(&self) -> &[String] {
        &self.help
    }

    /// `None` only for problems with the file as a whole (e.g. it cannot be read).
    pub fn location(&self) -> Option<&Location> {
        self.location.as_ref()
    }

    pub fn line(&self) -> Option<usize> {
        self.location.as_ref().map(|l| l.line)
    }

    pub fn column(&self) -> Option<usize> {
        self.location.as_ref().map(|l| l.column)
    }

    fn render_plain(&self, source_name: &str, out: &mut String) {
        match &self.location {
            Some(at) => out.push_str(&format!("{source_name}:{}:{}: error: {}\n", at.line, at.column, self.message)),
            None => out.push_str(&format!("{source_name}: error: {}\n", self.message)),
        }
        for help in &self.help {
            out.push_str(&format!("  help: {help}\n"));
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// Rightmost column a snippet label is drawn at: miette pads up to it with
/// a format width, which Rust caps at 65,535 (tabs count four), and panics
/// beyond. A problem further right is shown without its snippet; its
/// `line:col` still says where.
const MAX_LABELED_COLUMN: usize = 10_000;

impl miette::Diagnostic for Diagnostic {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        (!self.help.is_empty()).then(|| Box::new(self.help.join("\n")) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let at = self.location.as_ref().filter(|at| at.column <= MAX_LABELED_COLUMN)?;
        let label = miette::LabeledSpan::at(at.span.clone(), self.label.clone());
        Some(Box::new(std::iter::once(label)))
    }
}

/// A problem as validation records it: a byte span, not yet a line and column.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    span: Option<Range<usize>>,
    message: String,
    help: Vec<String>,
    label: String,
}

impl Problem {
    /// Adds one line of advice.
    pub(crate) fn help(&mut self, text: impl Into<String>) -> &mut Self {
        self.help.push(text.into());
        self
    }

    /// Sets the short text shown under the source snippet (defaults to "here").
    pub(crate) fn label(&mut self, text: impl Into<String>) -> &mut Self {
        self.label = text.into();
        self
    }
}

/// Everything validation found so far.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    /// Records a problem at `span`; chain `.help(..)` to advise.
    pub(crate) fn error(&mut self, span: Range<usize>, message: impl Into<String>) -> &mut Problem {
        self.push(Some(span), message.into())
    }

    /// Records a problem with the file as a whole.
    pub(crate) fn unlocated(&mut self, message: impl Into<String>) -> &mut Problem {
        self.push(None, message.into())
    }

    fn push(&mut self, span: Option<Range<usize>>, message: String) -> &mut Problem {
        self.list.push(Problem { span, message, help: Vec::new(), label: "here".to_string() });
        let last = self.list.len() - 1;
        &mut self.list[last]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Keeps only the first problem recorded at each of `spans`: later ones
    /// there are echoes of it (a value with a control character is also not
    /// a valid name, image or label).
    pub(crate) fn keep_first_at(&mut self, spans: &[Range<usize>]) {
        let mut seen: Vec<&Range<usize>> = Vec::new();
        self.list.retain(|problem| match problem.span.as_ref().and_then(|s| spans.iter().find(|b| *b == s)) {
            Some(span) if seen.contains(&span) => false,
            Some(span) => {
                seen.push(span);
                true
            }
            None => true,
        });
    }

    /// How many problems were recorded; lets a check tell whether its part added any.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The error for these problems, located in `text`.
    pub(crate) fn into_error(self, source_name: &str, text: &str) -> PlanError {
        let lines = LineIndex::new(text);
        let mut diagnostics: Vec<Diagnostic> = self
            .list
            .into_iter()
            .map(|p| Diagnostic {
                location: p.span.map(|span| lines.locate(text, span)),
                message: printable(&p.message).into_owned(),
                help: p.help.iter().map(|h| printable(h).into_owned()).collect(),
                label: printable(&p.label).into_owned(),
            })
            .collect();
        // Stable: problems at the same place keep the order validation found them in.
        diagnostics.sort_by_key(|d| d.location.as_ref().map(|l| (l.span.start, l.span.end)));
        PlanError::new(source_name, text, diagnostics)
    }
}

/// Byte offsets of line starts, to turn spans into line:column.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { starts }
    }

    fn locate(&self, text: &str, span: Range<usize>) -> Location {
        // Spans come from the TOML parser; clamp anyway so a bad span cannot panic.
        let start = floor_char_boundary(text, span.start.min(text.len()));
        let end = floor_char_boundary(text, span.end.clamp(start, text.len()));
        let line_index = self.starts.partition_point(|&s| s <= start).saturating_sub(1);
        let line_start = self.starts[line_index];
        let column = text[line_start..start].chars().count() + 1;
        Location { line: line_index + 1, column, span: start..end }
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// `text` with the user name and password of every URL in it (`scheme://
/// user:pass@host`) masked by as many `*`, so that spans into it still hold.
pub(crate) fn redacted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after.find(|c: char| "/?#\"'".contains(c) || c.is_whitespace()).unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.extend(std::iter::repeat_n('*', userinfo_end));
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Why a plan file could not be loaded: every problem found, each located in the file.
#[derive(Debug, Clone)]
pub struct PlanError {
    source_name: String,
    source: Arc<miette::NamedSource<String>>,
    diagnostics: Vec<Diagnostic>,
}

impl PlanError {
    /// The snippets shown come from `text` with URL credentials masked.
    fn new(source_name: &str, text: &str, diagnostics: Vec<Diagnostic>) -> PlanError {
        PlanError {
            source_name: source_name.to_string(),
            source: Arc::new(miette::NamedSource::new(source_name, redacted(text)).with_language("TOML")),
            diagnostics,
        }
    }

    /// The plan file could not be read at all.
    pub(crate) fn unreadable(source_name: &str, error: &std::io::Error) -> PlanError {
        let mut problems = Problems::default();
        problems.unlocated(format!("cannot read the plan file: {error}"));
        problems.into_error(source_name, "")
    }

    /// Every problem, in file order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The plan file as named in messages (the path it was loaded from).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// One `file:line:col: error: message` line per problem, each followed by
    /// `  help: ...` lines. This is what the CLI prints when stderr is not a
    /// terminal; tools parse it, so its shape is stable.
    pub fn render_plain(&self) -> String {
        let mut out = String::new();
        for diagnostic in &self.diagnostics {
            diagnostic.render_plain(&self.source_name, &mut out);
        }
        out
    }

    fn first(&self) -> Option<&Diagnostic> {
        self.diagnostics.first()
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(first) = self.first() else {
            return write!(f, "{}: invalid plan", self.source_name);
        };
        match first.location() {
            Some(at) => write!(f, "{}:{}:{}: {}", self.source_name, at.line, at.column, first.message)?,
            None => write!(f, "{}: {}", self.source_name, first.message)?,
        }
        match self.diagnostics.len() - 1 {
            0 => Ok(()),
            1 => write!(f, " (and 1 more problem)"),
            more => write!(f, " (and {more} more problems)"),
        }
    }
}

impl std::error::Error for PlanError {}

/// The first problem is the error itself; the others come as related diagnostics,
/// each with its own labeled span in the same source.
impl miette::Diagnostic for PlanError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("gpufleet::plan"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.first().and_then(miette::Diagnostic::help)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.first().and_then(miette::Diagnostic::labels)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source.as_ref())
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.diagnostics.len() < 2 {
            return None;
        }
        Some(Box::new(self.diagnostics[1..].iter().map(|d| d as &dyn miette::Diagnostic)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_spans_as_one_based_line_and_character_column() {
        let text = "name = \"démo\"\nnodes = 5\n";
        let mut problems = Problems::default();
        problems.error(23..24, "the 5 on the second line");
        problems.error(8..13, "inside a string with a two-byte character");
        let error = problems.into_error("p.toml", text);
        let located: Vec<(usize, usize)> =
            error.diagnostics().iter().map(|d| (d.line().unwrap(), d.column().unwrap())).collect();
        assert_eq!(located, [(1, 9), (2, 9)]);
    }

    #[test]
    fn render_plain_prints_location_message_and_help_lines() {
        let mut problems = Problems::default();
        problems.error(0..4, "first").help("do this").help("or that");
        problems.unlocated("whole file");
        let error = problems.into_error("plans/x.toml", "name = 1\n");
        assert_eq!(
            error.render_plain(),
            "plans/x.toml: error: whole file\nplans/x.toml:1:1: error: first\n  help: do this\n  help: or that\n"
        );
        assert_eq!(error.to_string(), "plans/x.toml: whole file (and 1 more problem)");
    }

    #[test]
    fn out_of_range_spans_do_not_panic() {
        let mut problems = Problems::default();
        problems.error(500..900, "past the end");
        let error = problems.into_error("p.toml", "é");
        assert_eq!(error.diagnostics()[0].line(), Some(1));
    }

    #[test]
    fn miette_renders_every_problem_with_its_snippet() {
        let text = "name = \"Demo\"\nnodes = 0\n";
        let mut problems = Problems::default();
        problems.error(7..13, "bad name").help("lowercase");
        problems.error(22..23, "bad nodes");
        let error = problems.into_error("p.toml", text);
        let mut rendered = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .render_report(&mut rendered, &error)
            .unwrap();
        assert!(rendered.contains("bad name") && rendered.contains("bad nodes"), "{rendered}");
        assert!(rendered.contains("nodes = 0"), "related problems show their snippet:\n{rendered}");
    }
}
