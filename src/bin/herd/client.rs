//! The CLI's HTTP client for an agent's API, and the table printer its verbs share.

use std::path::PathBuf;
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
    /// The file holding the API's token: `herd agent` creates it when missing (mode 0600) and
    /// asks every request for the token; the other verbs send it (or the token in
    /// HERD_API_TOKEN).
    #[arg(long, global = true, value_name = "PATH")]
    pub api_token_file: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The environment variable the client verbs take the API token from.
const TOKEN_ENV: &str = "HERD_API_TOKEN";

/// A client of one agent's API.
pub struct Client {
    base: String,
    http: ureq::Agent,
    /// The token sent with every request, and where it came from.
    token: Option<(String, String)>,
}

/// The token to send: from `--api-token-file`, else from `HERD_API_TOKEN` (unset or empty:
/// none).
fn token(args: &ApiArgs) -> anyhow::Result<Option<(String, String)>> {
    if let Some(path) = &args.api_token_file {
        let token = herd::api::ApiToken::read(path)?;
        let source = format!("--api-token-file {}", path.display());
        return Ok(Some((token.as_str().to_string(), source)));
    }
    let Some(value) = std::env::var_os(TOKEN_ENV) else {
        return Ok(None);
    };
    let value = value
        .into_string()
        .map_err(|_| anyhow!("{TOKEN_ENV} is not text"))?;
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(anyhow!(
            "{TOKEN_ENV} holds a character an HTTP header cannot carry; a token is one word of visible ASCII"
        ));
    }
    Ok(Some((value.to_string(), TOKEN_ENV.to_string())))
}

impl Client {
    pub fn new(args: &ApiArgs) -> anyhow::Result<Client> {
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
        Ok(Client {
            base,
            http,
            token: token(args)?,
        })
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.finish(path, self.authorize(self.http.get(&self.url(path))).call())
    }

    /// A GET whose JSON answer is wanted whatever its status (a 503 health report, say); the
    /// status comes with it. A 401 is an error, as for [`Client::get`].
    pub fn get_any(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let mut response = self
            .authorize(self.http.get(&self.url(path)))
            .call()
            .map_err(|err| self.unreachable(err))?;
        let status = response.status();
        if status == 401 {
            return self.finish(path, Ok(response)).map(|body| (401, body));
        }
        let body: Value = response.body_mut().read_json().with_context(|| {
            format!("{path}: the API answered {status} with a body that is not JSON")
        })?;
        Ok((status.as_u16(), body))
    }

    fn unreachable(&self, err: ureq::Error) -> anyhow::Error {
        anyhow!("cannot reach the herd API at {}: {err} (is `herd agent` running there? set --api or HERD_API)", self.base)
    }

    /// A POST without a body; it still says JSON, as the API asks of every state change.
    pub fn post(&self, path: &str) -> anyhow::Result<Value> {
        let request = self.json(self.http.post(&self.url(path)));
        self.finish(path, request.send_empty())
    }

    pub fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = self.json(self.http.post(&self.url(path)));
        self.finish(path, request.send_json(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = self.json(self.http.put(&self.url(path)));
        self.finish(path, request.send_json(body))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let request = self.json(self.http.delete(&self.url(path)));
        self.finish(path, request.call())
    }

    /// A GET whose answer is read as it arrives, with no overall time limit (following a
    /// stream); an error status is turned into an error with the API's message.
    pub fn get_stream(&self, path: &str) -> anyhow::Result<ureq::Body> {
        let request = self
            .authorize(self.http.get(&self.url(path)))
            .config()
            .timeout_global(None)
            .build();
        let response = request.call().map_err(|err| self.unreachable(err))?;
        if response.status().is_success() {
            return Ok(response.into_body());
        }
        self.finish(path, Ok(response))?;
        Err(anyhow!("{path}: the API answered with an error"))
    }

    /// The objects of a newline-delimited JSON stream (a `follow=1` answer), keep-alive lines
    /// skipped.
    pub fn follow(
        &self,
        path: &str,
    ) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Value>>> {
        use std::io::BufRead as _;
        let body = self.get_stream(path)?;
        let lines = std::io::BufReader::new(body.into_reader()).lines();
        Ok(lines.filter_map(|line| match line {
            Ok(line) if line.is_empty() => None,
            Ok(line) => Some(serde_json::from_str(&line).map_err(anyhow::Error::from)),
            Err(err) => Some(Err(err.into())),
        }))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Adds the token, if there is one.
    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some((token, _)) => request.header("authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// Adds the token and `Content-Type: application/json`.
    fn json<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        self.authorize(request)
            .header("content-type", "application/json")
    }

    fn finish(
        &self,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut response = response.map_err(|err| self.unreachable(err))?;
        let status = response.status();
        if status == 401 {
            return Err(match &self.token {
                None => anyhow!(
                    "the agent at {} requires an API token: set {TOKEN_ENV} or --api-token-file",
                    self.base
                ),
                Some((_, source)) => anyhow!(
                    "the agent at {} refused the API token from {source} (HTTP 401): is it the \
                     agent's --api-token-file?",
                    self.base
                ),
            });
        }
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
        outln!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints JSON, pretty.
pub fn print_json(value: &Value) {
    outln!(
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
