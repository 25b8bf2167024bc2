//! `herd event NAME [PAYLOAD]`: a user event, recorded by every live member's agent (`user` in
//! its events), where handlers and `events = true` workers see it, as Serf's user events.

use serde_json::json;

use crate::client::{ApiArgs, Client};

/// Options of `herd event`.
#[derive(clap::Args)]
pub struct Args {
    /// The event's name: 1 to 64 of letters, digits, '.', '_', '-'.
    name: String,
    /// Its payload, at most 512 bytes (handlers get it as HERD_PAYLOAD and in the JSON line).
    #[arg(default_value = "")]
    payload: String,
}

pub fn run(args: Args, api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    let body = json!({ "name": args.name, "payload": args.payload });
    let answer = client.post_json("/v1/events", &body)?;
    crate::force_leave::report(&answer, &format!("user event {} sent", args.name), api)
}
