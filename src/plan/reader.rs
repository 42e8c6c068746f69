//! Reading TOML tables key by key, keeping spans and recording every problem.
//!
//! serde with `deny_unknown_fields` stops at the first surprise; a plan author
//! wants all of them at once. [`TableReader`] asks for each key it understands,
//! reports values of the wrong type where they stand, and at the end reports
//! every key nobody asked for, with the closest known key as a suggestion.

use super::diagnostic::Problems;
use crate::model::printable;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// A value with the byte range it was written at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Located<T> {
    pub value: T,
    pub span: Range<usize>,
}

impl<T> Located<T> {
    pub(crate) fn new(value: T, span: Range<usize>) -> Located<T> {
        Located { value, span }
    }
}

/// The JSON schema of a located value is the schema of the value.
impl<T: schemars::JsonSchema> schemars::JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// Plan values end up in cloud calls, tags, file names and terminals, where
/// a control character (CR, LF, NUL, ESC, ...) splits a header, truncates a
/// name or rewrites the screen: none is accepted, in any key or value.
/// Returns the spans of those refused, where later checks only echo this one.
pub(crate) fn refuse_control_characters(table: &DeTable<'_>, problems: &mut Problems) -> Vec<Range<usize>> {
    fn check(text: &str, span: Range<usize>, problems: &mut Problems, refused: &mut Vec<Range<usize>>) {
        let Some(bad) = text.chars().find(|c| c.is_control()) else { return };
        problems
            .error(
                span.clone(),
                format!("`{}` contains the control character {}", printable(text), bad.escape_unicode()),
            )
            .help("plan keys and values are single-line text; remove it");
        refused.push(span);
    }
    fn walk_table(table: &DeTable<'_>, problems: &mut Problems, refused: &mut Vec<Range<usize>>) {
        for (key, value) in table {
            check(key.get_ref(), key.span(), problems, refused);
            walk(value, problems, refused);
        }
    }
    fn walk(value: &Value<'_>, problems: &mut Problems, refused: &mut Vec<Range<usize>>) {
        match value.get_ref() {
            DeValue::String(s) => check(s, value.span(), problems, refused),
            DeValue::Array(items) => items.iter().for_each(|item| walk(item, problems, refused)),
            DeValue::Table(table) => walk_table(table, problems, refused),
            _ => {}
        }
    }
    let mut refused = Vec::new();
    walk_table(table, problems, &mut refused);
    refused
}

type Spanned<T> = toml::Spanned<T>;
pub(crate) type Key<'i> = Spanned<std::borrow::Cow<'i, str>>;
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// Reads the keys of one table. `context` names the table in messages
/// ("fleet `trainers`"); `anchor` is where problems about the table as a whole
/// point (its header or key).
pub(crate) struct TableReader<'t, 'i> {
    table: &'t DeTable<'i>,
    context: String,
    anchor: Range<usize>,
    asked: Vec<&'static str>,
}

impl<'t, 'i> TableReader<'t, 'i> {
    pub(crate) fn new(table: &'t DeTable<'i>, context: impl Into<String>, anchor: Range<usize>) -> Self {
        TableReader { table, context: context.into(), anchor, asked: Vec::new() }
    }

    pub(crate) fn anchor(&self) -> Range<usize> {
        self.anchor.clone()
    }

    pub(crate) fn context(&self) -> &str {
        &self.context
    }

    fn entry(&mut self, key: &'static str) -> Option<(&'t Key<'i>, &'t Value<'i>)> {
        self.asked.push(key);
        self.table.iter().find(|(k, _)| k.get_ref() == key)
    }

    /// Reports a missing required key.
    fn missing(&self, key: &str, example: &str, problems: &mut Problems) {
        problems
            .error(self.anchor.clone(), format!("{} is missing `{key}`", self.context))
            .help(format!("add `{key} = {example}`"))
            .label(format!("`{key}` missing"));
    }

    fn wrong_type(&self, key: &str, expected: &str, value: &Value<'i>, problems: &mut Problems) {
        problems
            .error(
                value.span(),
                format!("`{key}` in {} must be {expected}, found {}", self.context, type_name(value.get_ref())),
            )
            .label(format!("expected {expected}"));
    }

    pub(crate) fn string(&mut self, key: &'static str, problems: &mut Problems) -> Option<Located<String>> {
        let (_, value) = self.entry(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Located::new(s.to_string(), value.span())),
            _ => {
                self.wrong_type(key, "a string", value, problems);
                None
            }
        }
    }

    /// A count (an integer) or a percentage (a string like "25%"), kept as written.
    pub(crate) fn count_or_percent(&mut self, key: &'static str, problems: &mut Problems) -> Option<Located<String>> {
        let (_, value) = self.entry(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Located::new(s.to_string(), value.span())),
            DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(Located::new(n.to_string(), value.span())),
                Err(_) => {
                    problems.error(value.span(), format!("`{key}` in {} is too large", self.context));
                    None
                }
            },
            _ => {
                self.wrong_type(key, "a count or a percentage like \"25%\"", value, problems);
                None
            }
        }
    }

    /// Reads `key` with `read`, reporting it as missing (with `example`) when absent.
    fn require<T>(
        &mut self,
        key: &'static str,
        example: &str,
        problems: &mut Problems,
        read: impl FnOnce(&mut Self, &mut Problems) -> Option<T>,
    ) -> Option<T> {
        let found = self.table.iter().any(|(k, _)| k.get_ref() == key);
        let value = read(self, problems);
        if !found {
            self.missing(key, example, problems);
        }
        value
    }

    pub(crate) fn required_string(
        &mut self,
        key: &'static str,
        example: &str,
        problems: &mut Problems,
    ) -> Option<Located<String>> {
        self.require(key, example, problems, |r, p| r.string(key, p))
    }

    pub(crate) fn required_string_array(
        &mut self,
        key: &'static str,
        example: &str,
        problems: &mut Problems,
    ) -> Option<Located<Vec<Located<String>>>> {
        self.require(key, example, problems, |r, p| r.string_array(key, p))
    }

    /// An integer, kept wide so that range checks can say what was written.
    pub(crate) fn integer(&mut self, key: &'static str, problems: &mut Problems) -> Option<Located<i128>> {
        let (_, value) = self.entry(key)?;
        match value.get_ref() {
            DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(Located::new(n, value.span())),
                Err(_) => {
                    problems.error(value.span(), format!("`{key}` in {} is too large", self.context));
                    None
                }
            },
            _ => {
                self.wrong_type(key, "an integer", value, problems);
                None
            }
        }
    }

    pub(crate) fn required_integer(
        &mut self,
        key: &'static str,
        example: &str,
        problems: &mut Problems,
    ) -> Option<Located<i128>> {
        self.require(key, example, problems, |r, p| r.integer(key, p))
    }

    /// A number; integers are accepted too (`9` means `9.0`). NaN and infinities come
    /// through as written so that the caller can say why they do not fit.
    pub(crate) fn number(&mut self, key: &'static str, problems: &mut Problems) -> Option<Located<f64>> {
        let (_, value) = self.entry(key)?;
        let number = match value.get_ref() {
            DeValue::Float(f) => Some(f.as_str().replace('_', "").parse::<f64>().unwrap_or(f64::NAN)),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(|n| n as f64),
            _ => None,
        };
        if number.is_none() {
            self.wrong_type(key, "a number", value, problems);
        }
        number.map(|n| Located::new(n, value.span()))
    }

    /// An array of strings; each element keeps its own span.
    pub(crate) fn string_array(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<Located<Vec<Located<String>>>> {
        let (_, value) = self.entry(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, "an array of strings", value, problems);
            return None;
        };
        let mut strings = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => strings.push(Located::new(s.to_string(), item.span())),
                other => {
                    problems
                        .error(
                            item.span(),
                            format!("`{key}` in {} must hold strings, found {}", self.context, type_name(other)),
                        )
                        .label("expected a string");
                }
            }
        }
        Some(Located::new(strings, value.span()))
    }

    /// A sub-table, with the span of its key (where problems about it point).
    pub(crate) fn table(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<(Range<usize>, &'t DeTable<'i>)> {
        let (k, value) = self.entry(key)?;
        match value.get_ref() {
            DeValue::Table(t) => Some((k.span(), t)),
            _ => {
                self.wrong_type(key, "a table", value, problems);
                None
            }
        }
    }

    /// Like [`Self::table`], but a missing table is reported.
    pub(crate) fn required_table(
        &mut self,
        key: &'static str,
        example: &str,
        problems: &mut Problems,
    ) -> Option<(Range<usize>, &'t DeTable<'i>)> {
        self.require(key, example, problems, |r, p| r.table(key, p))
    }

    /// An array of tables (`[[key]]`), each with its span.
    pub(crate) fn table_array(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Vec<(Range<usize>, &'t DeTable<'i>)> {
        let Some((_, value)) = self.entry(key) else { return Vec::new() };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, "an array of tables", value, problems);
            return Vec::new();
        };
        let mut tables = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(t) => tables.push((item.span(), t)),
                other => {
                    problems
                        .error(item.span(), format!("`{key}` must hold tables, found {}", type_name(other)))
                        .label("expected a table");
                }
            }
        }
        tables
    }

    /// Reports every key that was not asked for, suggesting the
    /// closest known one.
    pub(crate) fn finish(self, problems: &mut Problems) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref().as_ref();
            if self.asked.contains(&name) {
                continue;
            }
            let problem =
                problems.error(key.span(), format!("unknown key `{name}` in {}", self.context)).label("unknown key");
            match closest(name, self.asked.iter().copied()) {
                Some(suggestion) => problem.help(format!("did you mean `{suggestion}`?")),
                None => problem.help(format!("valid keys are: {}", self.asked.join(", "))),
            };
        }
    }
}

/// How TOML calls the type of a value, for messages.
pub(crate) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The candidate most similar to `word`, if any is similar enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&word_lower, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_and_ignores_unrelated_words() {
        let keys = ["gpu", "gpus_per_node", "nodes", "min_nodes", "placement"];
        assert_eq!(closest("min_node", keys), Some("min_nodes"));
        assert_eq!(closest("placment", keys), Some("placement"));
        assert_eq!(closest("us-est-1", ["us-east-1", "us-west-2"]), Some("us-east-1"));
        assert_eq!(closest("h100", ["H100", "H200"]), Some("H100"));
        assert_eq!(closest("zzzz", keys), None);
    }
}
