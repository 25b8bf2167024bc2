//! Writing the CLI's output: a closed stdout (the reader, `head` say, went away) ends the process
//! quietly with status 0, as `ls | head` does, instead of a panic; and the error for an outcome
//! some nodes reached and others did not ([`Partial`], exit status 3).

use std::io::Write;

/// The exit status of a partial outcome.
pub const EXIT_PARTIAL: u8 = 3;

/// Some nodes did what was asked and others failed; the message names them. Exits with
/// [`EXIT_PARTIAL`].
#[derive(Debug)]
pub struct Partial(pub String);

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Partial {}

/// Ends a verb that acted on every node: prints `line` (how many nodes did it) unless `json`
/// when none failed; else fails naming the `failed` nodes, as [`Partial`] when `done` > 0.
pub fn fan_out_result(
    line: String,
    failed: &[String],
    done: u64,
    json: bool,
) -> anyhow::Result<()> {
    if failed.is_empty() {
        if !json {
            outln!("{line}");
        }
        return Ok(());
    }
    let message = format!("{line}; failed: {}", failed.join(", "));
    if done > 0 {
        return Err(Partial(message).into());
    }
    anyhow::bail!(message)
}

/// Writes one line to stdout (see [`write_bytes`]).
pub fn write_line(line: std::fmt::Arguments<'_>) {
    let mut text = line.to_string();
    text.push('\n');
    write_bytes(text.as_bytes());
}

/// Writes `bytes` to stdout and flushes; a closed stdout exits with status 0, another write error
/// with status 1 and a message.
pub fn write_bytes(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("herd: cannot write to stdout: {err}");
        std::process::exit(1);
    }
}
