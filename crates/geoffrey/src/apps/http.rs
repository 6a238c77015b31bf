//! Classifying third parties' HTTP responses into success, transient and permanent failures.

use super::{Attempt, AttemptError};
use crate::outbound::SendError;

/// Maximum length of the response body kept in a log entry, in characters.
pub const MAX_LOGGED_BODY: usize = 500;

/// Builds the attempt record for a response: 2xx succeeds; 408, 429 and 5xx are transient;
/// every other status is permanent.
pub fn attempt_from_response(status: u16, body: &str) -> Attempt {
    let response = Some(truncate(body, MAX_LOGGED_BODY));
    let error = match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some(AttemptError::Transient(format!("HTTP {status}"))),
        _ => Some(AttemptError::Permanent(format!("HTTP {status}"))),
    };
    Attempt {
        status: Some(status),
        response,
        error,
        continue_later: false,
        retry_after: None,
    }
}

/// Builds the attempt record for a request that got no response. A destination rejected by
/// the outbound guard is a configuration error; every other failure (connection refused,
/// DNS, TLS, timeout) is transient.
pub fn attempt_from_error(err: &SendError) -> Attempt {
    let failed = |error| Attempt {
        status: None,
        response: None,
        error: Some(error),
        continue_later: false,
        retry_after: None,
    };
    if let Some(rejected) = err.rejection() {
        return failed(AttemptError::Configuration(rejected.to_string()));
    }
    let SendError::Http(err) = err else {
        return failed(AttemptError::Transient("request failed".to_string()));
    };
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // reqwest's own message includes the URL, which may carry a token, so the message is
    // built from the causes below it, which name the failure (refused, DNS, TLS).
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let message = if causes.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", causes.join(": "))
    };
    failed(AttemptError::Transient(message))
}

/// Returns at most `max` characters of `text`, marking a cut with an ellipsis.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(attempt_from_response(200, "ok").error, None);
        assert_eq!(attempt_from_response(204, "").error, None);
        for status in [408, 429, 500, 502, 503] {
            let error = attempt_from_response(status, "").error;
            assert!(
                matches!(error, Some(AttemptError::Transient(_))),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 410, 301] {
            let error = attempt_from_response(status, "").error;
            assert!(
                matches!(error, Some(AttemptError::Permanent(_))),
                "{status}"
            );
        }
    }

    #[test]
    fn truncate_respects_characters() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo", 2), "hé…");
    }
}
