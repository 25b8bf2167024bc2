//! [`ApiToken`]: the bearer token the HTTP API asks for, kept in a file (`--api-token-file`).
//!
//! The agent calls [`ApiToken::load_or_create`]: a missing file is created (`create_new`, mode
//! 0600; a missing directory too, mode 0700) with a fresh random token, 32 bytes from the operating system's generator written as
//! 64 hex digits and a newline; an existing file is read. The CLI calls [`ApiToken::read`]. A
//! token file holds one line of at most [`MAX_TOKEN_FILE`] bytes; surrounding whitespace is
//! trimmed, and what is left must be non-empty visible ASCII (what an HTTP header can carry).
//! [`ApiToken::matches`] compares in constant time (`subtle`).

use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use subtle::ConstantTimeEq;

/// The largest token file read, in bytes; a longer one is refused.
pub const MAX_TOKEN_FILE: u64 = 4096;

/// A bearer token. Its `Debug` output does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

/// What a token file holds, and whether this call created it.
#[derive(Debug)]
pub struct LoadedToken {
    /// The token.
    pub token: ApiToken,
    /// True when the file did not exist and was created with a new token.
    pub created: bool,
    /// True when the file's mode lets its group or others read or write it.
    pub too_open: bool,
}

/// Why a token file could not be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("cannot read the API token file {path}: {source}")]
    Read {
        /// The token file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file did not exist and could not be created.
    #[error("cannot create the API token file {path}: {source}")]
    Create {
        /// The token file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds nothing but whitespace.
    #[error("the API token file {path} is empty")]
    Empty {
        /// The token file.
        path: PathBuf,
    },
    /// The file is longer than [`MAX_TOKEN_FILE`].
    #[error("the API token file {path} is longer than {MAX_TOKEN_FILE} bytes")]
    TooLarge {
        /// The token file.
        path: PathBuf,
    },
    /// The token has a character an HTTP header cannot carry (a space, a control character,
    /// anything not ASCII).
    #[error(
        "the API token file {path} holds a character an HTTP header cannot carry; \
         a token is one word of visible ASCII"
    )]
    Invalid {
        /// The token file.
        path: PathBuf,
    },
}

impl ApiToken {
    /// A token from text: trimmed; refused when empty or not visible ASCII (`path` names
    /// where it came from in the error).
    pub fn parse(text: &str, path: &Path) -> Result<ApiToken, TokenError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty { path: path.into() });
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Invalid { path: path.into() });
        }
        Ok(ApiToken(token.to_string()))
    }

    /// A new random token: 32 bytes from the operating system, as 64 hex digits.
    pub fn generate() -> ApiToken {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        ApiToken(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Reads the token in the file at `path`.
    pub fn read(path: &Path) -> Result<ApiToken, TokenError> {
        read_file(path).map(|loaded| loaded.token)
    }

    /// Reads the token in `path`, or, when there is no such file, creates it (mode 0600, never
    /// replacing a file another process created meanwhile; its directory, mode 0700, if that
    /// is missing too) with a [generated](Self::generate) token.
    pub fn load_or_create(path: &Path) -> Result<LoadedToken, TokenError> {
        let token = ApiToken::generate();
        let create_error = |source| TokenError::Create {
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(create_error)?;
        }
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| {
                file.write_all(format!("{}\n", token.0).as_bytes())?;
                file.sync_all()
            });
        match created {
            Ok(()) => Ok(LoadedToken {
                token,
                created: true,
                too_open: false,
            }),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => read_file(path),
            Err(source) => Err(create_error(source)),
        }
    }

    /// Whether `presented` is this token, compared in constant time (for tokens of the same
    /// length).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }

    /// The token, to send it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

fn read_file(path: &Path) -> Result<LoadedToken, TokenError> {
    let read_error = |source| TokenError::Read {
        path: path.into(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mode = file.metadata().map_err(read_error)?.permissions().mode();
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_TOKEN_FILE {
        return Err(TokenError::TooLarge { path: path.into() });
    }
    let text = String::from_utf8(bytes).map_err(|_| TokenError::Invalid { path: path.into() })?;
    Ok(LoadedToken {
        token: ApiToken::parse(&text, path)?,
        created: false,
        too_open: mode & 0o077 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_created_private_and_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let first = ApiToken::load_or_create(&path).unwrap();
        assert!(first.created && !first.too_open);
        assert_eq!(first.token.as_str().len(), 64);
        assert!(first.token.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ApiToken::load_or_create(&path).unwrap();
        assert!(!again.created);
        assert_eq!(again.token, first.token);
        assert_eq!(ApiToken::read(&path).unwrap(), first.token);
    }

    #[test]
    fn a_missing_directory_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herd").join("token");
        assert!(ApiToken::load_or_create(&path).unwrap().created);
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn generated_tokens_differ() {
        assert_ne!(ApiToken::generate(), ApiToken::generate());
    }

    #[test]
    fn an_existing_file_is_trimmed_and_its_open_mode_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret-token\n\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = ApiToken::load_or_create(&path).unwrap();
        assert!(!loaded.created && loaded.too_open);
        assert_eq!(loaded.token.as_str(), "s3cret-token");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "  s3cret-token\n\n"
        );
    }

    #[test]
    fn bad_files_are_refused_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        for (text, expected) in [
            (" \n".to_string(), "is empty"),
            ("two words".to_string(), "cannot carry"),
            ("x".repeat(5000), "longer than 4096 bytes"),
        ] {
            std::fs::write(&path, &text).unwrap();
            let err = ApiToken::load_or_create(&path).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(expected), "{err}");
        }
        let under_a_file = path.join("token");
        let err = ApiToken::load_or_create(&under_a_file).unwrap_err();
        assert!(matches!(err, TokenError::Create { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&under_a_file.display().to_string()),
            "{err}"
        );
        let err = ApiToken::read(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(err, TokenError::Read { .. }), "{err}");
    }

    #[test]
    fn only_the_same_bytes_match() {
        let token = ApiToken::parse("abc123", Path::new("t")).unwrap();
        assert!(token.matches(b"abc123"));
        for wrong in [&b"abc124"[..], b"abc12", b"abc1234", b""] {
            assert!(!token.matches(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{token:?}"), "ApiToken(..)");
    }
}
