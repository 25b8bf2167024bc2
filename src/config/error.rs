//! [`ConfigError`]: why a cluster config or an agent file was rejected, and where.
//!
//! Every error found in a TOML text names its origin (a file path, or "pushed
//! config"), the line and column (1-based, columns counted in characters), the
//! worker when there is one, and the field.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Which part of a file an error is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The top level of the file (or a table that is not a worker).
    File,
    /// The `[[worker]]` with this name.
    Worker(String),
    /// The n-th `[[worker]]` (1-based), when its name is missing or invalid.
    WorkerNumber(usize),
    /// The n-th `[[handler]]` of an agent file (1-based).
    Handler(usize),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::File => f.write_str("top level"),
            Scope::Worker(name) => write!(f, "worker {name:?}"),
            Scope::WorkerNumber(n) => write!(f, "worker #{n}"),
            Scope::Handler(n) => write!(f, "handler #{n}"),
        }
    }
}

/// A cluster config or agent file that cannot be used, with the place and value at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid TOML.
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        /// Where the text came from.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What the TOML parser expected.
        message: String,
    },
    /// A key the format does not know (often a typo).
    #[error("{origin}:{line}:{column}: {}unknown field {field:?}; expected one of {}", prefix(.scope), .expected.join(", "))]
    UnknownField {
        /// Where the text came from.
        origin: String,
        /// 1-based line of the key.
        line: usize,
        /// 1-based column of the key.
        column: usize,
        /// The worker (or top level) holding the key.
        scope: Scope,
        /// The unknown key.
        field: String,
        /// The keys allowed there.
        expected: Vec<String>,
    },
    /// A required key is absent.
    #[error("{origin}:{line}:{column}: {}missing field {field:?}", prefix(.scope))]
    MissingField {
        /// Where the text came from.
        origin: String,
        /// 1-based line of the table that lacks the key.
        line: usize,
        /// 1-based column of the table that lacks the key.
        column: usize,
        /// The worker (or top level) lacking the key.
        scope: Scope,
        /// The missing key.
        field: String,
    },
    /// A key has a value of the wrong type, or one out of range.
    #[error("{origin}:{line}:{column}: {}field {field:?}: {message}", prefix(.scope))]
    InvalidValue {
        /// Where the text came from.
        origin: String,
        /// 1-based line of the value.
        line: usize,
        /// 1-based column of the value.
        column: usize,
        /// The worker (or top level) holding the key.
        scope: Scope,
        /// The key whose value is wrong (`env.KEY` for an entry of a table).
        field: String,
        /// What is wrong with it, quoting the value.
        message: String,
    },
    /// Two workers share a name.
    #[error("{origin}:{line}:{column}: duplicate worker name {name:?}: already used on line {first_line}")]
    DuplicateWorker {
        /// Where the text came from.
        origin: String,
        /// 1-based line of the second use of the name.
        line: usize,
        /// 1-based column of the second use of the name.
        column: usize,
        /// The shared name.
        name: String,
        /// 1-based line of the first use of the name.
        first_line: usize,
    },
    /// The file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn prefix(scope: &Scope) -> String {
    match scope {
        Scope::File => String::new(),
        other => format!("{other}: "),
    }
}

impl ConfigError {
    /// The line the error points at, when it comes from a text.
    pub fn line(&self) -> Option<usize> {
        self.line_column().map(|(line, _)| line)
    }

    /// The column the error points at, when it comes from a text.
    pub fn column(&self) -> Option<usize> {
        self.line_column().map(|(_, column)| column)
    }

    /// The worker the error is about, when it is about a named worker.
    pub fn worker(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownField { scope, .. }
            | ConfigError::MissingField { scope, .. }
            | ConfigError::InvalidValue { scope, .. } => match scope {
                Scope::Worker(name) => Some(name),
                _ => None,
            },
            ConfigError::DuplicateWorker { name, .. } => Some(name),
            ConfigError::Syntax { .. } | ConfigError::Read { .. } => None,
        }
    }

    fn line_column(&self) -> Option<(usize, usize)> {
        match self {
            ConfigError::Syntax { line, column, .. }
            | ConfigError::UnknownField { line, column, .. }
            | ConfigError::MissingField { line, column, .. }
            | ConfigError::InvalidValue { line, column, .. }
            | ConfigError::DuplicateWorker { line, column, .. } => Some((*line, *column)),
            ConfigError::Read { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_field_names_origin_position_worker_and_field() {
        let err = ConfigError::MissingField {
            origin: "cluster.toml".into(),
            line: 12,
            column: 3,
            scope: Scope::Worker("thumbnailer".into()),
            field: "command".into(),
        };
        assert_eq!(
            err.to_string(),
            r#"cluster.toml:12:3: worker "thumbnailer": missing field "command""#
        );
        assert_eq!((err.line(), err.column()), (Some(12), Some(3)));
        assert_eq!(err.worker(), Some("thumbnailer"));
    }

    #[test]
    fn an_error_at_top_level_has_no_scope_prefix() {
        let err = ConfigError::UnknownField {
            origin: "herd.toml".into(),
            line: 1,
            column: 1,
            scope: Scope::File,
            field: "nodeid".into(),
            expected: vec!["node_id".into(), "listen".into()],
        };
        assert_eq!(
            err.to_string(),
            r#"herd.toml:1:1: unknown field "nodeid"; expected one of node_id, listen"#
        );
        assert_eq!(err.worker(), None);
    }

    #[test]
    fn an_unnamed_worker_is_named_by_its_number() {
        let err = ConfigError::MissingField {
            origin: "pushed config".into(),
            line: 4,
            column: 1,
            scope: Scope::WorkerNumber(2),
            field: "name".into(),
        };
        assert_eq!(
            err.to_string(),
            r#"pushed config:4:1: worker #2: missing field "name""#
        );
    }
}
