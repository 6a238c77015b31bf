//! Authentication of API requests.
//!
//! Accepted forms: `Authorization: Basic base64(<any user>:<key>)`, `Authorization: apikey
//! <key>` and `Authorization: Bearer <key or token>`. The scheme name is matched
//! case-insensitively.

use crate::config::FakeConfig;
use crate::problem::Problem;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Checks the credentials of a request and returns the account the key belongs to.
///
/// Errors: no credentials give 401 API Key Missing. An unknown, revoked or wrong-DC key gives
/// 401 API Key Invalid. A key of a disabled account gives 403 User Disabled.
pub(crate) fn authenticate(headers: &HeaderMap, config: &FakeConfig) -> Result<String, Problem> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Problem::api_key_missing());
    };
    let value = value
        .to_str()
        .map_err(|_| Problem::api_key_invalid())?
        .trim();
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    let (key, is_bearer) = match scheme.to_ascii_lowercase().as_str() {
        "basic" => (basic_password(credentials)?, false),
        "apikey" => (credentials.to_string(), false),
        "bearer" => (credentials.to_string(), true),
        _ => return Err(Problem::api_key_invalid()),
    };
    if key.is_empty() {
        return Err(Problem::api_key_missing());
    }

    let Some(entry) = config.keys.iter().find(|entry| entry.key == key) else {
        return Err(Problem::api_key_invalid());
    };
    if !entry.valid {
        return Err(Problem::api_key_invalid());
    }
    match key.rsplit_once('-') {
        Some((_, dc)) if dc != config.dc => return Err(Problem::api_key_invalid()),
        // A key without a data-centre suffix is an OAuth token, valid only as a bearer token.
        None if !is_bearer => return Err(Problem::api_key_invalid()),
        _ => {}
    }
    if entry.disabled {
        return Err(Problem::user_disabled());
    }
    Ok(config.key_accounts.get(&key).cloned().unwrap_or(key))
}

/// Returns the password part of Basic credentials. The user part is ignored.
fn basic_password(credentials: &str) -> Result<String, Problem> {
    let decoded = STANDARD
        .decode(credentials)
        .map_err(|_| Problem::api_key_invalid())?;
    let text = String::from_utf8(decoded).map_err(|_| Problem::api_key_invalid())?;
    match text.split_once(':') {
        Some((_, password)) => Ok(password.to_string()),
        None => Err(Problem::api_key_missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKey, DEFAULT_API_KEY};
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(value).expect("header value");
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    fn title(result: Result<String, Problem>) -> String {
        result.expect_err("authentication should fail").title
    }

    #[test]
    fn accepts_all_three_schemes() {
        let config = FakeConfig::default();
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!("anystring:{DEFAULT_API_KEY}"))
        );
        for value in [
            basic,
            format!("apikey {DEFAULT_API_KEY}"),
            format!("Bearer {DEFAULT_API_KEY}"),
        ] {
            let account = authenticate(&headers(&value), &config);
            assert_eq!(account.as_deref(), Ok(DEFAULT_API_KEY), "header {value}");
        }
    }

    #[test]
    fn token_without_dc_needs_bearer() {
        let config = FakeConfig {
            keys: vec![ApiKey::valid("oauthtoken")],
            ..FakeConfig::default()
        };
        let bearer = authenticate(&headers("Bearer oauthtoken"), &config);
        assert_eq!(bearer.as_deref(), Ok("oauthtoken"));
        let apikey = authenticate(&headers("apikey oauthtoken"), &config);
        assert_eq!(title(apikey), "API Key Invalid");
    }

    #[test]
    fn missing_and_malformed_credentials() {
        let config = FakeConfig::default();
        assert_eq!(
            title(authenticate(&HeaderMap::new(), &config)),
            "API Key Missing"
        );
        assert_eq!(
            title(authenticate(&headers("apikey"), &config)),
            "API Key Missing"
        );
        assert_eq!(
            title(authenticate(&headers("Basic !!!"), &config)),
            "API Key Invalid"
        );
        assert_eq!(
            title(authenticate(&headers("Digest abc"), &config)),
            "API Key Invalid"
        );
    }
}
