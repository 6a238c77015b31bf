//! Who may sign in to the web UI, and which instances each person sees.
//!
//! - With CouchDB, CouchDB decides. Signing in posts the name and password to CouchDB's
//!   `_session`, and a person sees an instance when CouchDB lets their session read the
//!   instance's database. Server admins (role `_admin`) see every instance and may create
//!   instances. Access checks are cached for [`ACCESS_TTL`], so a changed `_security` applies
//!   within that time.
//! - The embedded mode has one administrator, kept in `ui-admin.json` in the data folder with
//!   an Argon2id hash of the password.

use crate::config::Settings;
use crate::secret::Secret;
use crate::ui::session::{Session, Viewer};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Time the result of a CouchDB access check for one person and one database is cached.
pub const ACCESS_TTL: Duration = Duration::from_secs(30);

/// Shortest password the setup page accepts.
pub const MIN_PASSWORD_LEN: usize = 10;

const ADMIN_FILE: &str = "ui-admin.json";

/// A successful sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: String,
    pub admin: bool,
    pub couch: Option<String>,
    pub generation: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the name or the password is wrong")]
    Rejected,
    #[error("no administrator exists yet; open the setup link that `geoffrey run` printed")]
    NoAdministrator,
    /// The cause is for the log.
    #[error("the account server did not answer: {0}")]
    Unavailable(String),
}

/// Access of one person to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Not allowed, or no such instance: both look the same to the person.
    Denied,
    /// The CouchDB session ended; the person must sign in again.
    Expired,
}

pub enum Accounts {
    Embedded(AdminFile),
    Couch(CouchAccounts),
}

impl Accounts {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        match &settings.store.url {
            Some(url) => Ok(Accounts::Couch(CouchAccounts::new(
                url,
                &settings.store.database_prefix,
            )?)),
            None => Ok(Accounts::Embedded(AdminFile::open(
                settings.data_dir.join(ADMIN_FILE),
            ))),
        }
    }

    pub async fn sign_in(&self, user: &str, password: &str) -> Result<SignedIn, SignInError> {
        match self {
            Accounts::Embedded(file) => file.sign_in(user, password).await,
            Accounts::Couch(couch) => couch.sign_in(user, password).await,
        }
    }

    /// Tells whether a session may still be used: for the embedded administrator, the
    /// password has not changed since it was made.
    pub fn is_current(&self, session: &Session) -> bool {
        match self {
            Accounts::Embedded(file) => file
                .generation()
                .is_some_and(|generation| generation == session.generation),
            Accounts::Couch(_) => session.couch.is_some(),
        }
    }

    /// Tells what `viewer` may do with `instance`.
    pub async fn access(&self, viewer: &Viewer, instance: &str) -> Result<Access, String> {
        if viewer.session.admin {
            return Ok(Access::Allowed);
        }
        match self {
            Accounts::Embedded(_) => Ok(Access::Denied),
            Accounts::Couch(couch) => couch.access(viewer, instance).await,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Administrator {
    user: String,
    password_hash: String,
}

/// The embedded mode's administrator account.
pub struct AdminFile {
    path: PathBuf,
    cached: RwLock<Option<Administrator>>,
}

impl AdminFile {
    fn open(path: PathBuf) -> Self {
        let cached = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        Self {
            path,
            cached: RwLock::new(cached),
        }
    }

    pub fn exists(&self) -> bool {
        self.read().is_some()
    }

    fn read(&self) -> Option<Administrator> {
        let cached = self.cached.read().unwrap_or_else(|p| p.into_inner());
        cached.as_ref().map(|admin| Administrator {
            user: admin.user.clone(),
            password_hash: admin.password_hash.clone(),
        })
    }

    fn generation(&self) -> Option<String> {
        self.read().map(|admin| generation_of(&admin.password_hash))
    }

    /// Creates the administrator, unless one exists. Returns whether it created it.
    pub async fn create(&self, user: &str, password: &Secret) -> anyhow::Result<bool> {
        if self.exists() {
            return Ok(false);
        }
        check_password(password.expose()).map_err(|message| anyhow::anyhow!(message))?;
        let password = password.clone();
        let password_hash =
            tokio::task::spawn_blocking(move || hash_password(password.expose())).await??;
        let admin = Administrator {
            user: user.to_string(),
            password_hash,
        };
        write_private(&self.path, &serde_json::to_vec_pretty(&admin)?)?;
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(admin);
        Ok(true)
    }

    async fn sign_in(&self, user: &str, password: &str) -> Result<SignedIn, SignInError> {
        let admin = self.read().ok_or(SignInError::NoAdministrator)?;
        let hash = admin.password_hash.clone();
        let password = Secret::new(password);
        // The hash is checked even for a wrong name, so that the response time reveals nothing.
        let matches =
            tokio::task::spawn_blocking(move || verify_password(password.expose(), &hash))
                .await
                .unwrap_or(false);
        if !matches || user != admin.user {
            return Err(SignInError::Rejected);
        }
        Ok(SignedIn {
            user: admin.user,
            admin: true,
            couch: None,
            generation: generation_of(&admin.password_hash),
        })
    }
}

/// Checks a new administrator password. The error message names what to change.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password is too short; use at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    Ok(())
}

fn hash_password(password: &str) -> anyhow::Result<String> {
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|err| anyhow::anyhow!("hashing the password failed: {err}"))?;
    Ok(hash.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

fn generation_of(password_hash: &str) -> String {
    hex::encode(&sha2::Sha256::digest(password_hash.as_bytes())[..8])
}

/// Writes a file readable by its owner only, through a temporary file and a rename.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// Accounts of a CouchDB server.
pub struct CouchAccounts {
    http: reqwest::Client,
    base: Url,
    prefix: String,
    /// Cached access checks: (session id, instance) to the result and when it was checked.
    checks: Mutex<HashMap<(String, String), (Access, Instant)>>,
}

impl CouchAccounts {
    fn new(url: &Secret, prefix: &str) -> anyhow::Result<Self> {
        let parsed =
            Url::parse(url.expose()).map_err(|err| anyhow::anyhow!("invalid store.url: {err}"))?;
        let base = crate::store::couch::base_url(parsed);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("Geoffrey/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base,
            prefix: prefix.to_string(),
            checks: Mutex::new(HashMap::new()),
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        crate::store::couch::url_of(&self.base, segments)
    }

    async fn sign_in(&self, user: &str, password: &str) -> Result<SignedIn, SignInError> {
        let response = self
            .http
            .post(self.url(&["_session"]))
            .json(&serde_json::json!({ "name": user, "password": password }))
            .send()
            .await
            .map_err(|err| SignInError::Unavailable(err.without_url().to_string()))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(SignInError::Rejected),
            status => {
                return Err(SignInError::Unavailable(format!(
                    "CouchDB returned {status} to a sign-in request"
                )));
            }
        }
        let cookie = auth_session(&response).ok_or_else(|| {
            SignInError::Unavailable("CouchDB sent no AuthSession cookie".to_string())
        })?;
        let body: Value = response
            .json()
            .await
            .map_err(|err| SignInError::Unavailable(err.without_url().to_string()))?;
        let roles = body["roles"].as_array().cloned().unwrap_or_default();
        Ok(SignedIn {
            user: body["name"].as_str().unwrap_or(user).to_string(),
            admin: roles.iter().any(|role| role == "_admin"),
            couch: Some(cookie),
            generation: String::new(),
        })
    }

    async fn access(&self, viewer: &Viewer, instance: &str) -> Result<Access, String> {
        let key = (viewer.session.csrf.clone(), instance.to_string());
        {
            let checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((access, read_at)) = checks.get(&key) {
                if read_at.elapsed() < ACCESS_TTL {
                    return Ok(*access);
                }
            }
        }
        let cookie = viewer.couch_cookie().unwrap_or_default();
        let database = format!("{}{instance}", self.prefix);
        let status = self.ask(viewer, &cookie, &[&database]).await?.0;
        let access = match status {
            StatusCode::OK => Access::Allowed,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                // PouchDB Server returns 401 where CouchDB returns 403, so `_session`
                // distinguishes an ended session from a database the person may not read.
                let (_, body) = self.ask(viewer, &cookie, &["_session"]).await?;
                if body.pointer("/userCtx/name").is_some_and(Value::is_string) {
                    Access::Denied
                } else {
                    Access::Expired
                }
            }
            StatusCode::NOT_FOUND => Access::Denied,
            status => return Err(format!("CouchDB returned {status} to an access check")),
        };
        if access != Access::Expired {
            let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
            checks.retain(|_, (_, read_at)| read_at.elapsed() < ACCESS_TTL);
            checks.insert(key, (access, Instant::now()));
        }
        Ok(access)
    }

    /// Sends a GET with the person's CouchDB session, keeping a refreshed session cookie.
    async fn ask(
        &self,
        viewer: &Viewer,
        cookie: &str,
        segments: &[&str],
    ) -> Result<(StatusCode, Value), String> {
        let response = self
            .http
            .get(self.url(segments))
            .header(reqwest::header::COOKIE, format!("AuthSession={cookie}"))
            .send()
            .await
            .map_err(|err| err.without_url().to_string())?;
        if let Some(refreshed) = auth_session(&response).filter(|value| !value.is_empty()) {
            viewer.remember_couch_cookie(refreshed);
        }
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

/// Finds the `AuthSession` cookie a CouchDB response sets.
fn auth_session(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| cookie::Cookie::parse(value).ok())
        .find(|cookie| cookie.name() == "AuthSession")
        .map(|cookie| cookie.value().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("correct horse battery").expect("hashes");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterx", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
    }

    #[tokio::test]
    async fn administrator_is_created_once_and_signs_in() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join(ADMIN_FILE);
        let file = AdminFile::open(path.clone());
        assert!(matches!(
            file.sign_in("admin", "whatever").await,
            Err(SignInError::NoAdministrator)
        ));
        let short = file.create("admin", &Secret::new("short")).await;
        assert!(
            short
                .expect_err("too short")
                .to_string()
                .contains("at least 10")
        );
        assert!(
            file.create("admin", &Secret::new("a long password"))
                .await
                .expect("creates")
        );
        assert!(
            !file
                .create("admin", &Secret::new("another password"))
                .await
                .expect("exists")
        );

        let reopened = AdminFile::open(path.clone());
        let signed_in = reopened
            .sign_in("admin", "a long password")
            .await
            .expect("signs in");
        assert!(signed_in.admin);
        assert!(matches!(
            reopened.sign_in("admin", "another password").await,
            Err(SignInError::Rejected)
        ));
        assert!(matches!(
            reopened.sign_in("root", "a long password").await,
            Err(SignInError::Rejected)
        ));
        let text = std::fs::read_to_string(&path).expect("readable");
        assert!(!text.contains("a long password"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
