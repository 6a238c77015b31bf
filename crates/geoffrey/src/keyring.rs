//! Encryption of the secrets stored in `CONFIG`, with the operator's key.
//!
//! Each secret is sealed on its own with XChaCha20-Poly1305 (the `chacha20poly1305` crate)
//! and a random nonce, and stored as `sealed:v1:<key id>:<nonce and ciphertext in base64>`.
//! The associated data names the instance, the field and the server the secret is sent to.
//! So a sealed value copied to another instance or field, or left in place while someone
//! changes its server in the database, fails to open instead of reaching that server.
//!
//! The key comes from `GEOFFREY_SECRET_KEY` (64 hexadecimal characters). The embedded mode
//! creates `secret.key` in the data folder when no key is set. During a rotation,
//! `GEOFFREY_PREVIOUS_SECRET_KEY` opens values sealed with the old key, and
//! `geoffrey secrets rotate` seals every secret again with the new one. Values without the
//! `sealed:` prefix were written before encryption existed and are read as they are.

use crate::config::Settings;
use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

const PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 24;
const KEY_FILE: &str = "secret.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{0} is not a valid key; use 64 hexadecimal characters, such as the output of \
         `geoffrey secrets new-key`"
    )]
    Invalid(&'static str),
    #[error(
        "GEOFFREY_SECRET_KEY is not set, and a CouchDB store needs it: every process must seal \
         and open secrets with the same key; create one with `geoffrey secrets new-key`"
    )]
    Missing,
    #[error("cannot read or create the key file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reasons a sealed value cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "it was sealed with key {0}, which this process does not have; set \
         GEOFFREY_SECRET_KEY, or GEOFFREY_PREVIOUS_SECRET_KEY during a rotation, to that key"
    )]
    UnknownKey(String),
    #[error(
        "it does not open with key {0}: it was changed, copied from another field, or its \
         server was changed in the database; enter the secret again"
    )]
    Damaged(String),
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
    /// Key of [`Keyring::sign`], derived so that it differs from the encryption key.
    signing: [u8; 32],
}

impl Key {
    fn from_hex(hex_key: &str, name: &'static str) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = hex::decode(hex_key.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(KeyError::Invalid(name))?;
        let digest = Sha256::new()
            .chain_update(b"geoffrey key id\0")
            .chain_update(bytes)
            .finalize();
        let signing = Sha256::new()
            .chain_update(b"geoffrey signing key\0")
            .chain_update(bytes)
            .finalize();
        Ok(Self {
            id: hex::encode(&digest[..4]),
            cipher: XChaCha20Poly1305::new(&bytes.into()),
            signing: signing.into(),
        })
    }
}

/// The key that seals secrets, and older keys that may still open them.
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl Keyring {
    /// Builds a keyring from the settings' keys. Without `secret_key`, the embedded mode
    /// reads or creates `secret.key` in the data folder, and the CouchDB store fails.
    pub fn from_settings(settings: &Settings) -> Result<Self, KeyError> {
        let current = match &settings.secret_key {
            Some(key) => Key::from_hex(key.expose(), "GEOFFREY_SECRET_KEY")?,
            None if settings.store.url.is_none() => key_file(&settings.data_dir)?,
            None => return Err(KeyError::Missing),
        };
        let previous = match &settings.previous_secret_key {
            Some(key) => vec![Key::from_hex(key.expose(), "GEOFFREY_PREVIOUS_SECRET_KEY")?],
            None => Vec::new(),
        };
        Ok(Self { current, previous })
    }

    /// Builds a keyring from hexadecimal keys, the first one sealing.
    pub fn from_hex(current: &str, previous: &[&str]) -> Result<Self, KeyError> {
        Ok(Self {
            current: Key::from_hex(current, "the key")?,
            previous: previous
                .iter()
                .map(|key| Key::from_hex(key, "a previous key"))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Returns the id of the sealing key, as written in sealed values.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plain`, bound to `context` (instance, field and destination).
    pub fn seal(&self, plain: &str, context: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload {
            msg: plain.as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption fails only above the cipher's message size limit, about 256 GiB.
        let sealed = self
            .current
            .cipher
            .encrypt(&XNonce::from(nonce), payload)
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!(
            "{PREFIX}{}:{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// Opens a value written by [`Keyring::seal`] with the same `context`. A value without
    /// the sealed prefix is returned as it is.
    pub fn open(&self, value: &str, context: &str) -> Result<String, OpenError> {
        let Some(rest) = value.strip_prefix(PREFIX) else {
            return Ok(value.to_string());
        };
        let (id, encoded) = rest.split_once(':').unwrap_or(("", rest));
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_string()))?;
        let damaged = || OpenError::Damaged(id.to_string());
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| damaged())?;
        if bytes.len() < NONCE_LEN {
            return Err(damaged());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| damaged())?;
        let payload = Payload {
            msg: sealed,
            aad: context.as_bytes(),
        };
        let plain = key
            .cipher
            .decrypt(&XNonce::from(nonce), payload)
            .map_err(|_| damaged())?;
        String::from_utf8(plain).map_err(|_| damaged())
    }

    /// Opens a value that must have been sealed: unlike [`Keyring::open`], a value without
    /// the sealed prefix is an error, so that nobody can pass plain text off as sealed.
    pub fn open_sealed(&self, value: &str, context: &str) -> Result<String, OpenError> {
        if !value.starts_with(PREFIX) {
            return Err(OpenError::Damaged(String::new()));
        }
        self.open(value, context)
    }

    /// Returns a MAC of `message` (HMAC-SHA256, hex) with a key derived from the current
    /// key, so that every process of a deployment can check what another one signed.
    pub fn sign(&self, message: &str) -> String {
        hex::encode(
            signer(&self.current.signing, message)
                .finalize()
                .into_bytes(),
        )
    }

    /// Checks a MAC made by [`Keyring::sign`] with the current key, in constant time.
    pub fn verify(&self, message: &str, mac: &str) -> bool {
        let Ok(bytes) = hex::decode(mac) else {
            return false;
        };
        signer(&self.current.signing, message)
            .verify_slice(&bytes)
            .is_ok()
    }

    /// Returns whether `value` is sealed with the current key; plain values are not.
    pub fn is_current(&self, value: &str) -> bool {
        value
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.current.id)
    }
}

fn signer(key: &[u8; 32], message: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message.as_bytes());
    mac
}

/// Returns a new random key, hex-encoded, for `GEOFFREY_SECRET_KEY`.
pub fn new_key() -> Secret {
    Secret::generate()
}

/// Reads the embedded mode's key file, creating it (readable by its owner only) when
/// missing. Two processes starting at once both end up with the key the first one wrote.
fn key_file(data_dir: &Path) -> Result<Key, KeyError> {
    let path = data_dir.join(KEY_FILE);
    let file_error = |source| KeyError::File {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(file_error)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            let key = new_key();
            file.write_all(key.expose().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(file_error)?;
            tracing::info!(path = %path.display(), "created the key that encrypts stored secrets");
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(file_error(err)),
    }
    let text = std::fs::read_to_string(&path).map_err(file_error)?;
    Key::from_hex(&text, "the key file")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const KEY_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn sealed_value_opens_with_its_context() {
        let keyring = Keyring::from_hex(KEY_A, &[]).expect("valid key");
        let sealed = keyring.seal("hunter2-hunter2", "forum/webhook_secret");
        assert!(sealed.starts_with("sealed:v1:"), "{sealed}");
        assert!(!sealed.contains("hunter2"));
        assert!(keyring.is_current(&sealed));
        let opened = keyring.open(&sealed, "forum/webhook_secret");
        assert_eq!(opened.as_deref(), Ok("hunter2-hunter2"));
    }

    #[test]
    fn sealing_twice_gives_different_values() {
        let keyring = Keyring::from_hex(KEY_A, &[]).expect("valid key");
        assert_ne!(keyring.seal("same", "ctx"), keyring.seal("same", "ctx"));
    }

    #[test]
    fn other_context_fails_to_open() {
        let keyring = Keyring::from_hex(KEY_A, &[]).expect("valid key");
        let sealed = keyring.seal("key-1234", "forum/apps.mailchimp.api_key/\"https://a\"");
        let moved = keyring.open(&sealed, "forum/apps.mailchimp.api_key/\"https://b\"");
        assert!(matches!(moved, Err(OpenError::Damaged(_))), "{moved:?}");
    }

    #[test]
    fn changed_value_fails_to_open() {
        let keyring = Keyring::from_hex(KEY_A, &[]).expect("valid key");
        let mut sealed = keyring.seal("key-1234", "ctx");
        let last = sealed.pop().expect("not empty");
        sealed.push(if last == 'A' { 'B' } else { 'A' });
        assert!(keyring.open(&sealed, "ctx").is_err());
        assert!(keyring.open("sealed:v1:nonsense", "ctx").is_err());
    }

    #[test]
    fn previous_key_opens_but_does_not_seal() {
        let old = Keyring::from_hex(KEY_A, &[]).expect("valid key");
        let sealed = old.seal("key-1234", "ctx");
        let rotated = Keyring::from_hex(KEY_B, &[KEY_A]).expect("valid keys");
        assert_eq!(rotated.open(&sealed, "ctx").as_deref(), Ok("key-1234"));
        assert!(!rotated.is_current(&sealed));
        assert!(rotated.is_current(&rotated.seal("key-1234", "ctx")));

        let new_only = Keyring::from_hex(KEY_B, &[]).expect("valid key");
        let err = new_only
            .open(&sealed, "ctx")
            .expect_err("the old key is gone");
        assert_eq!(err, OpenError::UnknownKey(old.current_id().to_string()));
        assert!(err.to_string().contains("GEOFFREY_PREVIOUS_SECRET_KEY"));
    }

    #[test]
    fn signatures_verify_with_the_same_key_only() {
        let keyring = Keyring::from_hex(KEY_A, &[]).expect("valid key");
        let mac = keyring.sign("forum/apply/1800000000000");
        assert!(keyring.verify("forum/apply/1800000000000", &mac));
        assert!(!keyring.verify("forum/apply/1800000000001", &mac));
        assert!(!keyring.verify("forum/apply/1800000000000", "zz"));
        let other = Keyring::from_hex(KEY_B, &[]).expect("valid key");
        assert!(!other.verify("forum/apply/1800000000000", &mac));
    }

    #[test]
    fn plain_values_are_read_as_they_are() {
        let keyring = Keyring::from_hex(KEY_A, &[]).expect("valid key");
        assert_eq!(keyring.open("legacy", "ctx").as_deref(), Ok("legacy"));
        assert!(!keyring.is_current("legacy"));
    }

    #[test]
    fn invalid_key_is_named_but_not_shown() {
        for bad in ["", "abc", &"g".repeat(64), &"1".repeat(62)] {
            let err = Keyring::from_hex(bad, &[]).err().expect("invalid key");
            assert!(
                err.to_string().contains("64 hexadecimal characters"),
                "{err}"
            );
        }
        let secret_looking = format!("{}zz", "7".repeat(62));
        let err = Keyring::from_hex(&secret_looking, &[])
            .err()
            .expect("invalid key");
        assert!(!err.to_string().contains("7777"), "{err}");
    }

    #[test]
    fn key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let first = key_file(dir.path()).expect("created");
        let second = key_file(dir.path()).expect("read back");
        assert_eq!(first.id, second.id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let metadata = std::fs::metadata(dir.path().join(KEY_FILE)).expect("key file");
            assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn couch_store_needs_a_key() {
        let mut settings = Settings::default();
        settings.store.url = Some(Secret::new("http://admin:pw@127.0.0.1:5984/"));
        let err = Keyring::from_settings(&settings).err().expect("no key");
        assert!(err.to_string().contains("GEOFFREY_SECRET_KEY"), "{err}");
    }
}
