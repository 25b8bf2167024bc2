//! `herd keygen`: new keys. Without flags, a gossip encryption key: 32 random bytes from the
//! operating system, standard base64 with padding, one line. With `--signing`, an ed25519 key
//! pair for signed configs (`herd::config::signature` documents both text forms): the secret key
//! goes to `--out PATH` (created with mode 0600, never overwriting) and the public key, one base64
//! line, to stdout; without `--out` both are printed, labelled.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use anyhow::Context as _;
use herd::config::SecretKey;

/// Options of `herd keygen`.
#[derive(clap::Args)]
pub struct Args {
    /// Make an ed25519 key pair for signing cluster configs instead of a gossip key.
    #[arg(long)]
    signing: bool,
    /// Write the secret signing key to this new file (mode 0600) and print only the public key.
    #[arg(long, requires = "signing", value_name = "PATH")]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.signing {
        outln!("{}", herd::trust::SecretKey::generate().to_base64());
        return Ok(());
    }
    let key = SecretKey::generate();
    match args.out {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| match path.exists() {
                    true => format!(
                        "{} exists; herd keygen never overwrites a key file",
                        path.display()
                    ),
                    false => format!("cannot create {}", path.display()),
                })?;
            file.write_all(key.to_file_text().as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            outln!("{}", key.public());
        }
        None => {
            outln!("# secret key: keep it private; save this line (mode 0600) for `herd config push FILE --sign KEYFILE`");
            out!("{}", key.to_file_text());
            outln!("# public key: for `herd agent --config-signers`");
            outln!("{}", key.public());
        }
    }
    Ok(())
}
