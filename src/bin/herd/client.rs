//! The CLI's HTTP client for an agent's API, and the table printer its verbs share.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use serde_json::Value;

/// Options every client verb takes.
#[derive(clap::Args, Clone, Debug)]
pub struct ApiArgs {
    /// The agent's HTTP API address: where `herd agent` serves it, and where the other verbs
    /// reach it [default: 127.0.0.1:7947].
    #[arg(long, global = true, env = "HERD_API")]
    pub api: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A client of one agent's API.
pub struct Client {
    base: String,
    http: ureq::Agent,
}

impl Client {
    pub fn new(args: &ApiArgs) -> Client {
        let api = args.api.as_deref().unwrap_or(herd::agent::DEFAULT_API);
        let base = if api.starts_with("http://") {
            api.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", api.trim_end_matches('/'))
        };
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client { base, http }
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.finish(path, self.http.get(&self.url(path)).call())
    }

    pub fn post(&self, path: &str) -> anyhow::Result<Value> {
        self.finish(path, self.http.post(&self.url(path)).send_empty())
    }

    pub fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.finish(path, self.http.post(&self.url(path)).send_json(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.finish(path, self.http.put(&self.url(path)).send_json(body))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.finish(path, self.http.delete(&self.url(path)).call())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(
        &self,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut response = response.map_err(|err| {
            anyhow!("cannot reach the herd API at {}: {err} (is `herd agent` running there? set --api or HERD_API)", self.base)
        })?;
        let status = response.status();
        let body: Value = response.body_mut().read_json().with_context(|| {
            format!("{path}: the API answered {status} with a body that is not JSON")
        })?;
        if status.is_success() {
            Ok(body)
        } else {
            let message = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            Err(anyhow!("{message} (HTTP {})", status.as_u16()))
        }
    }
}

/// Prints rows as aligned columns under `headers`.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints JSON, pretty.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// A JSON field as text, or "-".
pub fn field(value: &Value, key: &str) -> String {
    match value.get(key) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// "3m12s" since a Unix time in milliseconds.
pub fn age(since_ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let secs = now.saturating_sub(since_ms) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}
