//! `X-Discourse-Event-Signature`: `sha256=` and the lowercase hex HMAC-SHA256 of the exact
//! body bytes, keyed with the webhook secret.
//!
//! The check runs on the raw bytes before any parsing, because re-serialized JSON rarely
//! matches the bytes Discourse signed, and compares in constant time so the response time
//! reveals nothing about the expected value.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const PREFIX: &str = "sha256=";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Discourse-Event-Signature header; set the webhook's secret in Discourse")]
    Missing,
    #[error("malformed X-Discourse-Event-Signature header; expected sha256=<64 hex digits>")]
    Malformed,
    #[error(
        "X-Discourse-Event-Signature does not match the body; check that the secret in \
         Discourse equals this instance's webhook secret"
    )]
    Mismatch,
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// Returns the header value Discourse would send for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header against the body.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let digest = header
        .trim()
        .strip_prefix(PREFIX)
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(digest).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Discourse's own spec: secret `my_lovely_secret_for_web_hook`, body `{"ping":"OK"}`.
    const DISCOURSE_VECTOR: &str =
        "sha256=162f107f6b5022353274eb1a7197885cfd35744d8d08e5bcea025d309386b7d6";

    #[test]
    fn matches_discourse_test_vector() {
        let body = br#"{"ping":"OK"}"#;
        assert_eq!(
            sign(b"my_lovely_secret_for_web_hook", body),
            DISCOURSE_VECTOR
        );
        assert_eq!(
            verify(
                b"my_lovely_secret_for_web_hook",
                body,
                Some(DISCOURSE_VECTOR)
            ),
            Ok(())
        );
    }

    #[test]
    fn rejects_changed_body_and_wrong_secret() {
        let body = br#"{"ping":"OK"}"#;
        let header = sign(b"secret-secret", body);
        assert_eq!(
            verify(b"secret-secret", br#"{"ping":"OK "}"#, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other-secret", body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rejects_missing_and_malformed_headers() {
        let body = b"{}";
        assert_eq!(verify(b"k", body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify(b"k", body, Some("md5=00")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"k", body, Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"k", body, Some("sha256=00ff")),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn accepts_uppercase_hex() {
        let body = b"{}";
        let header = sign(b"key-key-key-key", body)
            .to_uppercase()
            .replace("SHA256=", "sha256=");
        assert_eq!(verify(b"key-key-key-key", body, Some(&header)), Ok(()));
    }
}
