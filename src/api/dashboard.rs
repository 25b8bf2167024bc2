//! The live web dashboard at `GET /`: one self-contained HTML page (inline CSS and vanilla JS,
//! no external resources), embedded in the binary from `dashboard.html`.
//!
//! The page polls `/v1/health`, `/v1/members?all=true`, `/v1/workers` and `/v1/events?since=N`
//! every second and shows this node, the member and config-version counts, the health problems
//! when there are any (`#health`), the members with their tags, state (failed and left members
//! stay listed until the agent forgets them) and the config each holds with its workers' state
//! (`td.config`, marked when behind), every node's workers (state coloured, pid, restarts, time
//! in state, detail) with restart / stop / start buttons that
//! `POST /v1/workers/{name}/{action}?node={row's node}`, this node's event feed (`#events`,
//! newest first, the last 200) and, after a click on a worker's name, its last 100 output lines
//! (`#output-text`, from `/v1/workers/{name}/logs`). A failed action's `{"error": ...}` is shown
//! in the page. Rows carry `data-node` / `data-worker` (workers) and `data-member` (members),
//! events `data-seq` / `data-event`, cells a class per column, buttons `data-action` or
//! `data-output`, so tests and scripts can find them.
//!
//! The page holds no data and is served without a token. An agent with a token is opened as
//! `http://<api>/#token=<token>`: the page moves the token from the fragment (which browsers
//! never send) to sessionStorage, takes it out of the visible URL, and sends it as
//! `Authorization: Bearer` with `Content-Type: application/json` on every fetch. When the API
//! answers 401 the page stops polling and shows `#auth`, an "Unauthorised" notice saying how to
//! open it; a `#token=` added to the address later resumes it.

use axum::http::header;
use axum::response::{Html, IntoResponse};

/// The page, as served.
const PAGE: &str = include_str!("dashboard.html");

/// `GET /`: the dashboard page. Not cached, so an upgraded agent serves its own page.
pub(super) async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE))
}
