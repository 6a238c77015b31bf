//! Subscriber hashes, deterministic ids and timestamps.

use md5::{Digest, Md5};
use time::OffsetDateTime;
use time::macros::format_description;

/// Returns the subscriber hash of an address: the MD5 of the trimmed, lower-cased address as
/// 32 lower-case hex digits. The real API uses the same hash as member id and path segment.
pub fn subscriber_hash(email: &str) -> String {
    md5_hex(&email.trim().to_lowercase())
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// Returns whether `text` has the shape of an MD5 hex digest, in either case.
pub(crate) fn is_md5_hex(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Ids of a new member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberIds {
    /// 32 hex digits, independent of the address.
    pub contact_id: String,
    /// 10 hex digits.
    pub unique_email_id: String,
    pub web_id: u64,
}

/// Source of ids that depend only on the seed and on how many ids were handed out before, so
/// a test run gives the same ids every time.
#[derive(Debug, Clone)]
pub(crate) struct IdGenerator {
    seed: u64,
    members: u64,
    requests: u64,
}

impl IdGenerator {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            members: 0,
            requests: 0,
        }
    }

    pub(crate) fn next_member(&mut self) -> MemberIds {
        self.members += 1;
        let n = self.members;
        let unique = md5_hex(&format!("{}:unique_email_id:{n}", self.seed));
        MemberIds {
            contact_id: md5_hex(&format!("{}:contact_id:{n}", self.seed)),
            unique_email_id: unique[..10].to_string(),
            web_id: 100_000 + n,
        }
    }

    /// Returns a UUID-shaped id for `X-Request-Id` and the problem `instance`.
    pub(crate) fn next_request(&mut self) -> String {
        self.requests += 1;
        let digest = Md5::digest(format!("{}:request:{}", self.seed, self.requests).as_bytes());
        uuid::Uuid::from_bytes(digest.into()).to_string()
    }
}

/// Returns the current time in the API's timestamp format, such as `2024-05-01T12:00:00+00:00`.
pub(crate) fn now_timestamp() -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00");
    OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_published_vectors() {
        let cases = [
            (
                "urist.mcvankab@freddiesjokes.com",
                "62eeb292278cc15f5817cb78f7790b08",
            ),
            (
                "Urist.McVankab@freddiesjokes.com",
                "62eeb292278cc15f5817cb78f7790b08",
            ),
            (
                "  Urist.McVankab@freddiesjokes.com\n",
                "62eeb292278cc15f5817cb78f7790b08",
            ),
            (
                "urist.mcvankab+3@freddiesjokes.com",
                "852aaa9532cb36adfb5e9fef7a4206a9",
            ),
            (
                "jane.doe+discourse@example.org",
                "7dfd123d4512cc434fb87de92a3e892a",
            ),
        ];
        for (email, expected) in cases {
            assert_eq!(subscriber_hash(email), expected, "hash of {email:?}");
        }
    }

    #[test]
    fn hash_of_raw_mixed_case_differs() {
        assert_eq!(
            md5_hex("Urist.McVankab@freddiesjokes.com"),
            "47725ae3197e13df436cac6c624f83a0"
        );
    }

    #[test]
    fn md5_hex_shape() {
        assert!(is_md5_hex("62EEB292278cc15f5817cb78f7790b08"));
        assert!(!is_md5_hex("62eeb292278cc15f5817cb78f7790b0"));
        assert!(!is_md5_hex("zzeeb292278cc15f5817cb78f7790b08"));
    }

    #[test]
    fn ids_repeat_for_same_seed() {
        let mut first = IdGenerator::new(7);
        let mut second = IdGenerator::new(7);
        assert_eq!(first.next_member(), second.next_member());
        assert_eq!(first.next_request(), second.next_request());

        let ids = first.next_member();
        assert_eq!(ids.contact_id.len(), 32);
        assert_eq!(ids.unique_email_id.len(), 10);
        assert_eq!(ids.web_id, 100_002);
        assert_ne!(
            IdGenerator::new(8).next_member(),
            IdGenerator::new(7).next_member()
        );
    }
}
