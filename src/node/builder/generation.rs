//! A new incarnation's generation: microseconds of wall clock, raised above the last generation
//! this process gave out and, when the node has a generation file, above the last one kept there,
//! so a restart's generation is higher even when the host's clock went back.
//!
//! The file holds one decimal number and a newline. It is replaced atomically (a temp file of
//! mode 0600 in the same dir, fsynced, renamed over it, the dir fsynced) before gossip starts.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;

/// The longest generation file read, in bytes: a `u64` in decimal and a newline fit with room.
const MAX_FILE: u64 = 64;

/// The last generation given out in this process.
static LAST: AtomicU64 = AtomicU64::new(0);

/// The generation of a node starting now: `forced` as it is (for tests, neither read from nor
/// written to the file), else the highest of the wall clock in microseconds, the last generation
/// of this process plus one, and the file's generation plus one; then saved in the file.
///
/// # Errors
/// [`Error::GenerationFile`] naming the file: it cannot be read, holds no generation, or cannot
/// be replaced. A missing file is no error.
pub(super) fn pick(file: Option<&Path>, forced: Option<u64>) -> Result<u64, Error> {
    if let Some(generation) = forced {
        return Ok(generation);
    }
    let floor = match file {
        Some(path) => match read(path)? {
            Some(last) => last.checked_add(1).ok_or_else(|| {
                file_error(path, "it holds the largest generation there is".into())
            })?,
            None => 0,
        },
        None => 0,
    };
    let generation = next(floor);
    if let Some(path) = file {
        write(path, generation)?;
    }
    Ok(generation)
}

/// The next generation of this process: at least `floor`, and strictly above the last one.
fn next(floor: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1)).max(floor);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => last = actual,
        }
    }
}

/// The generation kept in `path`, or `None` when there is no such file.
fn read(path: &Path) -> Result<Option<u64>, Error> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(file_error(path, format!("cannot open it: {err}"))),
    };
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|err| file_error(path, format!("cannot read it: {err}")))?;
    if text.len() as u64 > MAX_FILE {
        return Err(file_error(
            path,
            format!("it is over {MAX_FILE} bytes; it should hold one generation number"),
        ));
    }
    let number = text.trim();
    number.parse().map(Some).map_err(|_| {
        file_error(
            path,
            format!(
                "it holds {:?}, not a generation number",
                number.chars().take(40).collect::<String>()
            ),
        )
    })
}

/// Replaces `path` with `generation` atomically, mode 0600.
fn write(path: &Path, generation: u64) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "generation".into());
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    // A temp file left by a crashed process with this pid is stale.
    let _ = std::fs::remove_file(&temp);
    crate::config::replace_file(dir, &temp, path, format!("{generation}\n").as_bytes())
        .map_err(|err| file_error(path, format!("cannot write it: {err}")))
}

fn file_error(path: &Path, reason: String) -> Error {
    Error::GenerationFile {
        path: PathBuf::from(path),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generations_strictly_increase() {
        let a = pick(None, None).unwrap();
        let b = pick(None, None).unwrap();
        assert!(b > a);
    }

    #[test]
    fn a_missing_file_is_created_with_the_generation_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generation");
        let generation = pick(Some(&path), None).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{generation}\n")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file is left"
        );
    }

    #[test]
    fn a_generation_in_the_future_of_the_clock_is_still_exceeded() {
        // The last start's clock was far ahead of this one's.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generation");
        let hour = 3_600_000_000;
        let ahead = pick(None, None).unwrap() + hour;
        std::fs::write(&path, format!("{ahead}\n")).unwrap();
        // Other tests of this process may take generations in between: only the order is sure.
        let first = pick(Some(&path), None).unwrap();
        assert!(first > ahead, "{first} after {ahead}");
        let second = pick(Some(&path), None).unwrap();
        assert!(second > first, "{second} after {first}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            second.to_string()
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it_and_is_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generation");
        for (content, expected) in [
            ("twelve\n".to_string(), "not a generation number"),
            ("".to_string(), "not a generation number"),
            ("1".repeat(100), "over 64 bytes"),
            (format!("{}\n", u64::MAX), "the largest generation"),
        ] {
            std::fs::write(&path, &content).unwrap();
            let err = pick(Some(&path), None).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(expected), "{err}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
        }
    }

    #[test]
    fn a_file_in_a_missing_dir_cannot_be_written_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("generation");
        let err = pick(Some(&path), None).unwrap_err().to_string();
        assert!(err.contains("cannot write it"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn a_forced_generation_is_used_as_it_is_and_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generation");
        assert_eq!(pick(Some(&path), Some(5)).unwrap(), 5);
        assert!(!path.exists());
    }
}
