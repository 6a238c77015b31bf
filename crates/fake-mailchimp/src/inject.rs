//! Failure injection: the Nth API request that matches a method and a path fragment gets a
//! failure instead of (or before) its normal response.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A failure for one future request.
///
/// Requests are counted from the moment the injection is added, among requests that passed
/// authentication and the concurrency limit. Each injection fires once. When two injections
/// select the same request, the one added first fires and the other fires on the next
/// matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injection {
    /// HTTP method such as `PUT`, compared case-insensitively. Empty or `*` matches any method.
    #[serde(default)]
    pub method: String,
    /// Substring of the request path, such as `/members/`. Empty matches any path.
    #[serde(default)]
    pub path_contains: String,
    /// Position of the failing request among the matching ones, counting from 1. 0 counts as 1.
    #[serde(default)]
    pub nth: usize,
    pub failure: Failure,
}

impl Injection {
    /// Creates an injection for the first request of any method whose path contains
    /// `path_contains`.
    pub fn next(path_contains: impl Into<String>, failure: Failure) -> Self {
        Self {
            method: String::new(),
            path_contains: path_contains.into(),
            nth: 1,
            failure,
        }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        let method_matches = self.method.is_empty()
            || self.method == "*"
            || self.method.eq_ignore_ascii_case(method);
        method_matches && path.contains(&self.path_contains)
    }
}

/// Failure an injected request gets.
///
/// Over HTTP (`POST /_fake/injections`) the variants read `{"status": 500}`,
/// `"bad_gateway_without_json"`, `"bare_forbidden"`, `{"delay": "250ms"}` and
/// `"drop_connection"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// This status with a problem+json body whose title matches it.
    Status(u16),
    /// 502 with an HTML body, as a gateway sends.
    BadGatewayWithoutJson,
    /// 403 with an empty body, as the rate limiter sends under load.
    BareForbidden,
    /// A wait of this length, still counting as in flight, before the normal response.
    Delay(#[serde(with = "humantime_serde")] Duration),
    /// The connection closes without a response.
    DropConnection,
}

/// An injection with its count of matching requests so far.
#[derive(Debug, Clone)]
pub(crate) struct ArmedInjection {
    injection: Injection,
    matched: usize,
}

/// Counts this request against every armed injection and returns the failure it gets, if any.
pub(crate) fn take_failure(
    armed: &mut Vec<ArmedInjection>,
    method: &str,
    path: &str,
) -> Option<Failure> {
    let mut fired = None;
    for (index, entry) in armed.iter_mut().enumerate() {
        if !entry.injection.matches(method, path) {
            continue;
        }
        entry.matched += 1;
        if fired.is_none() && entry.matched >= entry.injection.nth.max(1) {
            fired = Some(index);
        }
    }
    fired.map(|index| armed.remove(index).injection.failure)
}

pub(crate) fn arm(injection: Injection) -> ArmedInjection {
    ArmedInjection {
        injection,
        matched: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_nth_match_only() {
        let injection = Injection {
            method: "put".to_string(),
            path_contains: "/members/".to_string(),
            nth: 2,
            failure: Failure::Status(500),
        };
        let mut armed = vec![arm(injection)];
        assert_eq!(
            take_failure(&mut armed, "PUT", "/3.0/lists/a/members/x"),
            None
        );
        assert_eq!(
            take_failure(&mut armed, "GET", "/3.0/lists/a/members/x"),
            None
        );
        assert_eq!(take_failure(&mut armed, "PUT", "/3.0/ping"), None);
        assert_eq!(
            take_failure(&mut armed, "PUT", "/3.0/lists/a/members/x"),
            Some(Failure::Status(500))
        );
        assert!(armed.is_empty());
        assert_eq!(
            take_failure(&mut armed, "PUT", "/3.0/lists/a/members/x"),
            None
        );
    }

    #[test]
    fn second_injection_waits_for_next_request() {
        let mut armed = vec![
            arm(Injection::next("/ping", Failure::BareForbidden)),
            arm(Injection::next("/ping", Failure::DropConnection)),
        ];
        assert_eq!(
            take_failure(&mut armed, "GET", "/3.0/ping"),
            Some(Failure::BareForbidden)
        );
        assert_eq!(
            take_failure(&mut armed, "GET", "/3.0/ping"),
            Some(Failure::DropConnection)
        );
        assert_eq!(take_failure(&mut armed, "GET", "/3.0/ping"), None);
    }

    #[test]
    fn failure_json_shapes() {
        let delay: Failure = serde_json::from_str(r#"{"delay": "250ms"}"#).expect("delay");
        assert_eq!(delay, Failure::Delay(Duration::from_millis(250)));
        let status: Failure = serde_json::from_str(r#"{"status": 503}"#).expect("status");
        assert_eq!(status, Failure::Status(503));
        let drop: Failure = serde_json::from_str(r#""drop_connection""#).expect("drop");
        assert_eq!(drop, Failure::DropConnection);
    }
}
