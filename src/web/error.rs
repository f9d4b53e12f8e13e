//! Request-time errors and the one place that maps them to a status and a page.
//!
//! What the member reads (the page) is separate from what the operator reads (the log
//! line); an unexpected error shows a request id that appears in both.

use hyper::StatusCode;

use crate::store::StoreError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("missing or wrong CSRF token")]
    Csrf,
    /// Refused for a reason the member is told (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request conflicts with the current state (409), with what to do.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("session required")]
    SessionRequired,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("request body too slow")]
    RequestTimeout,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("too many request headers")]
    HeadersTooLarge,
    #[error("host not served here")]
    Misdirected,
    #[error("rate limited")]
    TooManyRequests,
    #[error("server busy")]
    Busy,
    /// Unexpected: the detail goes to the log only.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<crate::crypto::CryptoError> for AppError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        AppError::Internal(e.to_string())
    }
}

/// What an error page says.
pub struct ErrorView {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

impl AppError {
    /// Status, title and the member-facing message.
    pub fn view(&self) -> ErrorView {
        use StatusCode as S;
        let (status, title, message): (StatusCode, &str, String) = match self {
            AppError::BadRequest(m) => (S::BAD_REQUEST, "Bad request", m.clone()),
            AppError::Csrf => (
                S::FORBIDDEN,
                "Form expired",
                "This form could not be verified. Go back, reload the page and try again.".into(),
            ),
            AppError::Forbidden(m) => (S::FORBIDDEN, "Not allowed", m.clone()),
            AppError::Conflict(m) => (S::CONFLICT, "Not now", m.clone()),
            AppError::SessionRequired => (
                S::FORBIDDEN,
                "Not logged in",
                "Your session has ended. Log in again to continue.".into(),
            ),
            AppError::NotFound => (S::NOT_FOUND, "Not found", "There is nothing here.".into()),
            AppError::MethodNotAllowed { .. } => (
                S::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "This address does not accept that kind of request.".into(),
            ),
            AppError::RequestTimeout => (
                S::REQUEST_TIMEOUT,
                "Too slow",
                "The request took too long to arrive. Try again.".into(),
            ),
            AppError::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "Too large",
                "What you sent is larger than this server accepts.".into(),
            ),
            AppError::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported form",
                "This address only accepts the form on its page.".into(),
            ),
            AppError::HeadersTooLarge => (
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Too many headers",
                "The request carried more headers than this server accepts.".into(),
            ),
            AppError::Misdirected => (
                S::MISDIRECTED_REQUEST,
                "Wrong address",
                "This server does not answer to that name.".into(),
            ),
            AppError::TooManyRequests => (
                S::TOO_MANY_REQUESTS,
                "Slow down",
                "Too many attempts. Wait a minute and try again.".into(),
            ),
            AppError::Busy => (
                S::SERVICE_UNAVAILABLE,
                "Busy",
                "The server is busy. Try again in a moment.".into(),
            ),
            AppError::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server failed to handle this request. If it happens again, give the operator the request id below."
                    .into(),
            ),
        };
        ErrorView {
            status,
            title,
            message,
        }
    }
}
