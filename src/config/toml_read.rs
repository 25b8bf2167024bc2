//! Reading a TOML text key by key, with every error pinned to its line and column.
//!
//! The text is parsed into toml's spanned tree ([`DeTable`]), where each key and
//! value keeps its byte range. [`Table`] gives typed access to one table's keys
//! and turns unknown keys, missing keys and wrong values into [`ConfigError`]s
//! that name the origin, line, column, scope and field.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{ConfigError, Scope};

/// A TOML text and the name of where it came from.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str, origin: &'a str) -> Self {
        Source { text, origin }
    }

    pub(crate) fn origin(&self) -> String {
        self.origin.to_owned()
    }

    /// Parses the text into its spanned tree; a syntax error points at its place.
    pub(crate) fn parse(&self) -> Result<DeTable<'a>, ConfigError> {
        match DeTable::parse(self.text) {
            Ok(table) => Ok(table.into_inner()),
            Err(err) => {
                let at = err.span().map_or(0, |span| span.start);
                let mut message = err.message().trim().to_owned();
                if message == "duplicate key" {
                    if let Some(key) = err.span().and_then(|span| self.text.get(span)) {
                        message = format!("duplicate key {:?}", key.trim_matches(['"', '\'']));
                    }
                }
                let (line, column) = self.line_column(at);
                Err(ConfigError::Syntax {
                    origin: self.origin(),
                    line,
                    column,
                    message,
                })
            }
        }
    }

    /// 1-based line and column (in characters) of a byte offset; never panics.
    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = &self.text.as_bytes()[..offset.min(self.text.len())];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let is_char_start = |b: &&u8| (**b & 0xC0) != 0x80;
        let column = before[line_start..].iter().filter(is_char_start).count() + 1;
        (line, column)
    }

    /// The source text of a value, shortened for messages.
    fn excerpt(&self, value: &Spanned<DeValue<'_>>) -> String {
        let raw = self.text.get(value.span()).unwrap_or("").trim();
        match raw.char_indices().nth(40) {
            Some((cut, _)) => format!("{}...", &raw[..cut]),
            None => raw.to_owned(),
        }
    }
}

/// Typed access to the keys of one TOML table, for one [`Scope`].
pub(crate) struct Table<'s, 'a> {
    src: Source<'a>,
    entries: &'s DeTable<'a>,
    /// Offset of the table's header: where a missing key is reported.
    at: usize,
    scope: Scope,
    /// Put before field names in errors: `ready.` for the keys of `ready = { ... }`.
    prefix: String,
}

impl<'s, 'a> Table<'s, 'a> {
    pub(crate) fn new(src: Source<'a>, entries: &'s DeTable<'a>, at: usize, scope: Scope) -> Self {
        Table {
            src,
            entries,
            at,
            scope,
            prefix: String::new(),
        }
    }

    /// An optional inline table or sub-table, whose errors name its keys
    /// `key.FIELD`.
    pub(crate) fn table(&self, key: &str) -> Result<Option<Table<'s, 'a>>, ConfigError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let Some(entries) = value.get_ref().as_table() else {
            return Err(self.wrong_type(key, value, "a table"));
        };
        Ok(Some(Table {
            src: self.src,
            entries,
            at: value.span().start,
            scope: self.scope.clone(),
            prefix: format!("{}{key}.", self.prefix),
        }))
    }

    /// The keys of the table, in text order.
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys: Vec<_> = self.entries.keys().collect();
        keys.sort_by_key(|k| k.span().start);
        keys.into_iter().map(|k| k.get_ref().to_string()).collect()
    }

    /// Names the table in later errors (a worker, once its name is known).
    pub(crate) fn set_scope(&mut self, scope: Scope) {
        self.scope = scope;
    }

    /// Rejects the first key (in text order) that is not in `known`.
    pub(crate) fn deny_unknown(&self, known: &[&str]) -> Result<(), ConfigError> {
        let unknown = self
            .entries
            .keys()
            .filter(|key| !known.contains(&key.get_ref().as_ref()))
            .min_by_key(|key| key.span().start);
        match unknown {
            None => Ok(()),
            Some(key) => {
                let (line, column) = self.src.line_column(key.span().start);
                Err(ConfigError::UnknownField {
                    origin: self.src.origin(),
                    line,
                    column,
                    scope: self.scope.clone(),
                    field: format!("{}{}", self.prefix, key.get_ref()),
                    expected: known.iter().map(|k| k.to_string()).collect(),
                })
            }
        }
    }

    /// The value of a key, with its span.
    pub(crate) fn get(&self, key: &str) -> Option<&'s Spanned<DeValue<'a>>> {
        self.entries.get(key)
    }

    /// An error about the value of `field`, pointing at that value (or at the table).
    pub(crate) fn invalid(&self, field: &str, message: impl Into<String>) -> ConfigError {
        let at = self.get(field).map_or(self.at, |value| value.span().start);
        self.invalid_at(at, field, message)
    }

    fn invalid_at(&self, at: usize, field: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.src.line_column(at);
        ConfigError::InvalidValue {
            origin: self.src.origin(),
            line,
            column,
            scope: self.scope.clone(),
            field: format!("{}{field}", self.prefix),
            message: message.into(),
        }
    }

    /// The error for an absent required key, pointing at the table's header.
    pub(crate) fn missing(&self, field: &str) -> ConfigError {
        let (line, column) = self.src.line_column(self.at);
        ConfigError::MissingField {
            origin: self.src.origin(),
            line,
            column,
            scope: self.scope.clone(),
            field: format!("{}{field}", self.prefix),
        }
    }

    fn wrong_type(&self, field: &str, value: &Spanned<DeValue<'_>>, expected: &str) -> ConfigError {
        self.invalid_at(
            value.span().start,
            field,
            format!("expected {expected}, found {}", self.describe(value)),
        )
    }

    fn describe(&self, value: &Spanned<DeValue<'_>>) -> String {
        match value.get_ref() {
            DeValue::Array(_) => "an array".into(),
            DeValue::Table(_) => "a table".into(),
            other => format!("{} {}", other.type_str(), self.src.excerpt(value)),
        }
    }

    /// An optional string.
    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value.get_ref().as_str() {
            Some(s) => Ok(Some(s.to_owned())),
            None => Err(self.wrong_type(key, value, "a string")),
        }
    }

    /// An optional boolean.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value.get_ref().as_bool() {
            Some(b) => Ok(Some(b)),
            None => Err(self.wrong_type(key, value, "true or false")),
        }
    }

    /// A required string.
    pub(crate) fn required_string(&self, key: &str) -> Result<String, ConfigError> {
        self.string(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional array of strings; empty when absent.
    pub(crate) fn strings(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let Some(value) = self.get(key) else {
            return Ok(Vec::new());
        };
        let Some(items) = value.get_ref().as_array() else {
            return Err(self.wrong_type(key, value, "an array of strings"));
        };
        items
            .iter()
            .map(|item| match item.get_ref().as_str() {
                Some(s) => Ok(s.to_owned()),
                None => Err(self.wrong_type(key, item, "a string")),
            })
            .collect()
    }

    /// An optional table of strings; empty when absent. Errors name `key.ENTRY`.
    pub(crate) fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let Some(value) = self.get(key) else {
            return Ok(BTreeMap::new());
        };
        let Some(entries) = value.get_ref().as_table() else {
            return Err(self.wrong_type(key, value, "a table of strings"));
        };
        entries
            .iter()
            .map(|(name, item)| {
                let field = format!("{key}.{}", name.get_ref());
                match item.get_ref().as_str() {
                    Some(s) => Ok((name.get_ref().to_string(), s.to_owned())),
                    None => Err(self.wrong_type(&field, item, "a string")),
                }
            })
            .collect()
    }

    /// An optional non-negative integer that fits in a `u32`.
    pub(crate) fn u32(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let expected = "an integer from 0 to 4294967295";
        match value.get_ref().as_integer() {
            Some(int) => match u32::from_str_radix(int.as_str(), int.radix()) {
                Ok(n) => Ok(Some(n)),
                Err(_) => Err(self.wrong_type(key, value, expected)),
            },
            None => Err(self.wrong_type(key, value, expected)),
        }
    }

    /// An optional duration written like `"5s"`, `"500ms"` or `"1m 30s"`.
    pub(crate) fn duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let expected = "a duration like \"5s\", \"500ms\" or \"1m 30s\"";
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let Some(text) = value.get_ref().as_str() else {
            return Err(self.wrong_type(key, value, expected));
        };
        match humantime::parse_duration(text.trim()) {
            Ok(duration) => Ok(Some(duration)),
            Err(err) => Err(self.invalid(
                key,
                format!("invalid duration {text:?} ({err}); expected {expected}"),
            )),
        }
    }

    /// An optional string parsed as `T` (an address, say); `what` names `T` in errors.
    pub(crate) fn parsed<T>(&self, key: &str, what: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        match text.trim().parse() {
            Ok(parsed) => Ok(Some(parsed)),
            Err(err) => Err(self.invalid(key, format!("invalid {what} {text:?}: {err}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_of(text: &str) -> DeTable<'_> {
        Source::new(text, "t.toml").parse().expect("valid TOML")
    }

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let src = Source::new("a = 1\nné = \"x\"\n", "t.toml");
        assert_eq!(src.line_column(0), (1, 1));
        assert_eq!(src.line_column(6), (2, 1));
        // "né = " is 6 bytes but 5 characters.
        assert_eq!(src.line_column(12), (2, 6));
        assert_eq!(src.line_column(10_000), (3, 1));
    }

    #[test]
    fn a_syntax_error_names_origin_line_and_column() {
        let err = Source::new("a = 1\nb = \n", "t.toml").parse().unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
        assert!(err.to_string().starts_with("t.toml:2:"), "{err}");
    }

    #[test]
    fn a_duplicate_key_is_named() {
        let err = Source::new("a = 1\na = 2\n", "t.toml").parse().unwrap_err();
        assert_eq!(err.to_string(), "t.toml:2:1: duplicate key \"a\"");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_quoted() {
        let entries = table_of("n = \"five\"\n");
        let table = Table::new(
            Source::new("n = \"five\"\n", "t.toml"),
            &entries,
            0,
            Scope::File,
        );
        let err = table.u32("n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.toml:1:5: field \"n\": expected an integer from 0 to 4294967295, found string \"five\""
        );
    }

    #[test]
    fn negative_and_too_large_integers_are_rejected() {
        for text in ["n = -1\n", "n = 4294967296\n"] {
            let entries = table_of(text);
            let table = Table::new(Source::new(text, "t.toml"), &entries, 0, Scope::File);
            assert!(table.u32("n").is_err(), "{text}");
        }
        let text = "n = 0x10\n";
        let entries = table_of(text);
        let table = Table::new(Source::new(text, "t.toml"), &entries, 0, Scope::File);
        assert_eq!(table.u32("n").unwrap(), Some(16));
    }

    #[test]
    fn the_first_unknown_key_in_text_order_is_reported() {
        let text = "zz = 1\nok = 2\naa = 3\n";
        let entries = table_of(text);
        let table = Table::new(Source::new(text, "t.toml"), &entries, 0, Scope::File);
        let err = table.deny_unknown(&["ok"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.toml:1:1: unknown field \"zz\"; expected one of ok"
        );
    }
}
