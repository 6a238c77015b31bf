//! Sign-in sessions, kept in the browser as one sealed cookie.
//!
//! The session (who, whether an administrator, the CouchDB session, the CSRF token and the
//! end time) is sealed with the deployment's key (XChaCha20-Poly1305, see
//! [`crate::keyring`]), so that any API server of the deployment can read it and nobody else
//! can read or forge it. Nothing is kept on the server, which keeps the API servers stateless.

use crate::keyring::Keyring;
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// Name of the session cookie.
pub const COOKIE: &str = "geoffrey_session";

/// Name of the cookie that carries the sign-in form's CSRF token before a session exists.
pub const SIGN_IN_COOKIE: &str = "geoffrey_sign_in";

/// Associated data of sealed sessions, so that no other sealed value passes as one.
const CONTEXT: &str = "geoffrey ui session";

/// The signed-in person, as sealed into the cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    /// Sees every instance and may create instances: the embedded administrator, or a CouchDB
    /// server admin.
    pub admin: bool,
    /// The CouchDB `AuthSession` cookie, with which access to each database is checked.
    pub couch: Option<String>,
    /// Token every form and every state-changing request must send back.
    pub csrf: String,
    /// End of the session, in Unix seconds.
    pub expires: i64,
    /// For the embedded administrator, a fingerprint of the password hash: a new password
    /// ends every earlier session.
    pub generation: String,
}

impl Session {
    /// Returns the cookie value: the session sealed with the current key.
    pub fn seal(&self, keyring: &Keyring) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        keyring.seal(&json, CONTEXT)
    }

    /// Reads a cookie value written by [`Session::seal`]; `None` when it is damaged, forged
    /// or sealed with a key that is gone.
    pub fn open(value: &str, keyring: &Keyring) -> Option<Self> {
        let json = keyring.open_sealed(value, CONTEXT).ok()?;
        serde_json::from_str(&json).ok()
    }
}

/// The signed-in person of one request, put into the request's extensions by the session
/// layer.
#[derive(Debug)]
pub struct Viewer {
    pub session: Session,
    /// A newer CouchDB session cookie received while handling the request; the session layer
    /// seals it into the response's cookie.
    pub refreshed_couch: Mutex<Option<String>>,
}

impl Viewer {
    pub fn new(session: Session) -> Self {
        Self {
            session,
            refreshed_couch: Mutex::new(None),
        }
    }

    /// Returns the CouchDB session cookie to send, the newest one if it was refreshed.
    pub fn couch_cookie(&self) -> Option<String> {
        let refreshed = self
            .refreshed_couch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        refreshed.clone().or_else(|| self.session.couch.clone())
    }

    pub fn remember_couch_cookie(&self, cookie: String) {
        *self
            .refreshed_couch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(cookie);
    }
}

/// Returns a `Set-Cookie` value: HttpOnly, SameSite=Lax, for the whole site, and `Secure`
/// when `secure`. `max_age` of `None` makes a browser-session cookie; zero removes it.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> String {
    let mut cookie = Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure);
    if let Some(seconds) = max_age {
        cookie = cookie.max_age(cookie::time::Duration::seconds(seconds));
    }
    cookie.build().to_string()
}

/// Finds a cookie's value in a request's `Cookie` headers.
pub fn find_cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_string())
}

/// Returns a random token for CSRF checks and setup links.
pub fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn keyring() -> Keyring {
        let settings = crate::config::Settings {
            secret_key: Some(Secret::generate()),
            ..Default::default()
        };
        Keyring::from_settings(&settings).expect("valid key")
    }

    fn session() -> Session {
        Session {
            user: "admin".into(),
            admin: true,
            couch: None,
            csrf: random_token(),
            expires: 4_000_000_000,
            generation: "g".into(),
        }
    }

    #[test]
    fn sealed_session_opens_with_the_same_key_only() {
        let keyring = keyring();
        let sealed = session().seal(&keyring);
        assert!(!sealed.contains("admin"), "{sealed}");
        let opened = Session::open(&sealed, &keyring).expect("opens");
        assert_eq!(opened.user, "admin");
        assert!(Session::open(&sealed, &self::keyring()).is_none());
    }

    #[test]
    fn plain_json_is_not_a_session() {
        let json = serde_json::to_string(&session()).expect("serializes");
        assert!(Session::open(&json, &keyring()).is_none());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; geoffrey_session=sealed:v1:x:y; b=2"
                .parse()
                .expect("header"),
        );
        assert_eq!(
            find_cookie(&headers, COOKIE).as_deref(),
            Some("sealed:v1:x:y")
        );
        assert_eq!(find_cookie(&headers, "c"), None);
    }

    #[test]
    fn cookie_attributes() {
        let cookie = set_cookie(COOKIE, "v", true, Some(60));
        for part in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=60"] {
            assert!(cookie.contains(part), "{cookie} lacks {part}");
        }
        assert!(!set_cookie(COOKIE, "v", false, None).contains("Secure"));
    }
}
