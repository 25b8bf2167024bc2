//! [`ApiError`]: what leaves the process when a request fails. 4xx answers name the bad input;
//! 5xx answers say little, and the details go to the log. Every error body is
//! `{"error": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::agent::AgentError;
use crate::supervisor;

/// A failed API request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// 400: the request itself is wrong; `message` says what and where.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404: no such thing; `message` names it.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// An error with an explicit status, from an action on a worker or node; the message names
    /// the node and worker, so it is kept even for 5xx (503: a node is unreachable).
    pub fn with_status(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }

    /// The status code this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<AgentError> for ApiError {
    fn from(err: AgentError) -> Self {
        let status = match &err {
            AgentError::Config(_) | AgentError::Refused(_) => StatusCode::BAD_REQUEST,
            AgentError::StaleVersion { .. }
            | AgentError::SignedVersion { .. }
            | AgentError::VersionOverflow { .. } => StatusCode::CONFLICT,
            AgentError::NotSynced { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AgentError::Worker(supervisor::Error::UnknownWorker { .. }) => StatusCode::NOT_FOUND,
            AgentError::Worker(supervisor::Error::DuplicateWorker { .. }) => StatusCode::CONFLICT,
            AgentError::Worker(supervisor::Error::Spawn { .. })
            | AgentError::StartFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AgentError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            AgentError::Worker(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %err, "request failed");
            let message = match status {
                // Shutting down, or not synced yet: both say what to do, and nothing secret.
                StatusCode::SERVICE_UNAVAILABLE => err.to_string(),
                _ => "internal error; see the agent's log".to_string(),
            };
            return ApiError { status, message };
        }
        ApiError {
            status,
            message: err.to_string(),
        }
    }
}

impl From<supervisor::Error> for ApiError {
    fn from(err: supervisor::Error) -> Self {
        AgentError::Worker(err).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}
