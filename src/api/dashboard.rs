//! The live web dashboard at `GET /`: one self-contained HTML page (inline CSS and vanilla JS,
//! no external resources), embedded in the binary from `dashboard.html`.
//!
//! The page polls `/v1/health`, `/v1/members` and `/v1/workers` every second and shows this
//! node, the member and config-version counts, the members with their tags, and every node's
//! workers (state coloured, pid, restarts, time in state, detail) with restart / stop / start
//! buttons that `POST /v1/workers/{name}/{action}?node={row's node}`; a failed action's
//! `{"error": ...}` is shown in the page. Rows carry `data-node` / `data-worker` (workers) and
//! `data-member` (members), cells a class per column, buttons `data-action`, so tests and
//! scripts can find them.

use axum::http::header;
use axum::response::{Html, IntoResponse};

/// The page, as served.
const PAGE: &str = include_str!("dashboard.html");

/// `GET /`: the dashboard page. Not cached, so an upgraded agent serves its own page.
pub(super) async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE))
}
