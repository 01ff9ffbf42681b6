//! Who may do what: roles, password hashes and API tokens. No axum here: `web/` asks this
//! module who a caller is and whether the role suffices; `store/` keeps the rows.
//!
//! - Roles are ordered: **viewer** reads, **operator** also publishes, takes, purges (and,
//!   later, replays and starts or stops units), **admin** may do everything.
//! - Passwords are hashed with argon2id (a fresh salt each), never stored or logged in clear.
//! - An API token is 32 random bytes, shown once as `wharf_…`; the store keeps only its
//!   SHA-256, so a database dump does not hold usable tokens.
//! - The host keeps a token for the CLI on its own machine in a file only its user can read
//!   ([`local_token_path`]); the CLI finds it by the host's address.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;

/// What a user or token may do; each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "`{other}` is not a role: use admin, operator or viewer"
            )),
        }
    }
}

/// Who made a request, once their token or session is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's name, or the token's.
    pub name: String,
    pub role: Role,
    /// Whether `name` is an API token's (else a signed-in user's).
    pub is_token: bool,
}

impl Caller {
    pub fn user(name: &str, role: Role) -> Caller {
        Caller {
            name: name.to_owned(),
            role,
            is_token: false,
        }
    }

    pub fn token(name: &str, role: Role) -> Caller {
        Caller {
            name: name.to_owned(),
            role,
            is_token: true,
        }
    }

    /// Who this is, as the audit log and uploads name them: a user's name, or `token:NAME`.
    pub fn actor(&self) -> String {
        if self.is_token {
            format!("token:{}", self.name)
        } else {
            self.name.clone()
        }
    }
}

/// What is wrong with a password or a name given to create a user.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    #[error("a password is at most {MAX_PASSWORD_BYTES} bytes")]
    PasswordTooLong,
    #[error(
        "a name is 1 to 64 letters, digits, `.`, `_`, `-` or `@` (not `.` or `..` alone); `{0}` is not"
    )]
    BadName(String),
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password accepted (or checked): hashing is not made to work on megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Checks a user's or a token's name: short, printable, no spaces.
pub fn check_name(name: &str) -> Result<(), AuthError> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && !crate::check::is_dot_segment(name)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if fine {
        Ok(())
    } else {
        Err(AuthError::BadName(name.escape_debug().to_string()))
    }
}

/// An argon2id hash of `password` in PHC form (salt and parameters included). Slow on
/// purpose: call it on the blocking pool.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::PasswordTooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::PasswordTooLong);
    }
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AuthError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// A hash no password is known for: checked when a sign-in names no user, so that the answer
/// takes as long as for a real one.
pub static DECOY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let (random, _) = new_token();
    hash_password(&random).expect("a long random password hashes")
});

/// Whether `password` matches `hash` (a PHC string from [`hash_password`]). Slow on purpose.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A new API token: the text to hand out once, and the digest to store.
pub fn new_token() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("wharf_{}", URL_SAFE_NO_PAD.encode(bytes));
    let digest = token_digest(&token);
    (token, digest)
}

/// What the store keeps of a token: its SHA-256, in hex.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Where the host keeps what belongs to its machine (the CLI's token, the secret key):
/// `$WHARF_STATE_DIR`, else `$XDG_STATE_HOME/wharf`, else `~/.local/state/wharf`. With none of
/// them set it is an error, never a shared folder such as `/tmp`, where another user of the
/// machine could plant a key or read a token.
pub fn state_dir() -> std::io::Result<PathBuf> {
    state_dir_from(|name| std::env::var_os(name).filter(|v| !v.is_empty()))
}

fn state_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> std::io::Result<PathBuf> {
    var("WHARF_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| var("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("wharf")))
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".local/state/wharf")))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no state folder: set HOME, XDG_STATE_HOME or WHARF_STATE_DIR (a shared folder such as /tmp is never used)",
            )
        })
}

/// Where the host on `addr` keeps the CLI's token: one file per address in [`state_dir`].
pub fn local_token_path(addr: SocketAddr) -> std::io::Result<PathBuf> {
    let host = addr.ip().to_string().replace(':', "_");
    Ok(state_dir()?.join(format!("token-{host}-{}", addr.port())))
}

/// Writes `token` to `path`, readable and writable by this user only (0600 in a 0700
/// folder), replacing what was there.
pub fn write_local_token(path: &std::path::Path, token: &str) -> std::io::Result<()> {
    let partial = write_private_beside(path, token)?;
    std::fs::rename(&partial, path)
}

/// Writes `contents` to a new file beside `path`, readable and writable by this user only
/// (0600; the folder made 0700 if missing), under a name of its own, and returns its path. The
/// caller renames or links it into place: a reader never sees half of it, and two writers at
/// once do not share one file.
pub fn write_private_beside(path: &std::path::Path, contents: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        crate::private::check_private(dir)?;
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(
        ".{}.{:x}.partial",
        std::process::id(),
        rand::random::<u64>()
    ));
    let partial = PathBuf::from(partial);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .and_then(|mut file| {
            file.write_all(contents.as_bytes())?;
            file.sync_all()
        });
    match written {
        Ok(()) => Ok(partial),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many passwords are being checked at once; try again in a moment")]
    Busy,
    #[error(transparent)]
    Refused(#[from] AuthError),
}

/// Password hashes and checks, a few at a time on the blocking pool: argon2 is slow on
/// purpose, and without a bound a flood of sign-ins would take every core. A caller waits up
/// to [`Hashing::WAIT`] for its turn, then is told to try again.
pub struct Hashing {
    permits: tokio::sync::Semaphore,
}

impl Default for Hashing {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hashing::with_permits(cores.max(2))
    }
}

impl Hashing {
    /// How long a hash waits for its turn.
    pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

    pub fn with_permits(permits: usize) -> Hashing {
        Hashing {
            permits: tokio::sync::Semaphore::new(permits),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = tokio::time::timeout(Self::WAIT, self.permits.acquire())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        metrics::counter!(crate::metrics::PASSWORD_HASHES).increment(1);
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| HashError::Busy)
    }

    /// An argon2id hash of `password` (see [`hash_password`]).
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AuthError::PasswordTooShort.into());
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::PasswordTooLong.into());
        }
        Ok(self.run(move || hash_password(&password)).await??)
    }

    /// Whether `password` matches `hash` (see [`verify_password`]).
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, HashError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        self.run(move || verify_password(&password, &hash)).await
    }

    /// Hashes that may run now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// The one-time link that sets up the first admin: made when a host starts on a database
/// without users (and printed, as Jupyter and Grafana do), good until the first admin exists.
/// Only its SHA-256 is kept; it is compared in constant time.
#[derive(Default)]
pub struct SetupLink {
    digest: std::sync::Mutex<Option<String>>,
}

impl SetupLink {
    /// A fresh token (the link's secret), replacing any earlier one.
    pub fn issue(&self) -> String {
        let (token, digest) = new_token();
        *self.digest.lock().unwrap_or_else(|p| p.into_inner()) = Some(digest);
        token
    }

    /// Whether `token` is the live set-up token.
    pub fn accepts(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        let digest = self.digest.lock().unwrap_or_else(|p| p.into_inner());
        digest.as_deref().is_some_and(|d| {
            !token.is_empty() && bool::from(d.as_bytes().ct_eq(token_digest(token).as_bytes()))
        })
    }

    /// The first admin exists: the link works no more.
    pub fn used(&self) {
        *self.digest.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_folder_is_never_a_shared_one() {
        let none = state_dir_from(|_| None).unwrap_err();
        assert!(none.to_string().contains("HOME"), "{none}");
        let home = state_dir_from(|v| (v == "HOME").then(|| "/home/ann".into())).unwrap();
        assert_eq!(home, PathBuf::from("/home/ann/.local/state/wharf"));
        let chosen = state_dir_from(|v| match v {
            "WHARF_STATE_DIR" => Some("/srv/wharf".into()),
            _ => Some("/elsewhere".into()),
        })
        .unwrap();
        assert_eq!(chosen, PathBuf::from("/srv/wharf"));
    }

    #[test]
    fn a_secret_another_user_can_write_is_refused() {
        use crate::private::check_private;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("state");
        let key = folder.join("secret.key");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(&key, "k").unwrap();
        let set = |path: &std::path::Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(&folder, 0o700);
        set(&key, 0o600);
        check_private(&folder).unwrap();
        check_private(&key).unwrap();
        for mode in [0o620, 0o602, 0o666] {
            set(&key, mode);
            let refused = check_private(&key).unwrap_err();
            assert_eq!(refused.kind(), std::io::ErrorKind::PermissionDenied);
            assert!(refused.to_string().contains("chmod go-w"), "{refused}");
        }
        set(&key, 0o600);
        set(&folder, 0o1777);
        check_private(&folder).unwrap();
        set(&folder, 0o777);
        assert!(check_private(&folder).is_err());
        // Writing a token into a folder others can write is refused too.
        assert!(write_private_beside(&folder.join("token"), "t").is_err());
    }

    #[test]
    fn roles_are_ordered_and_parsed() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().unwrap_err().contains("admin"));
    }

    #[test]
    fn passwords_hash_and_verify() {
        assert!(matches!(
            hash_password("short"),
            Err(AuthError::PasswordTooShort)
        ));
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse!", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn tokens_are_random_and_stored_as_digests() {
        let (a, digest) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with("wharf_") && a.len() > 40);
        assert_eq!(token_digest(&a), digest);
        assert!(!digest.contains(&a[6..]));
    }

    #[tokio::test(start_paused = true)]
    async fn hashes_wait_for_their_turn_and_then_give_up() {
        let hashing = std::sync::Arc::new(Hashing::with_permits(1));
        let held = hashing.permits.acquire().await.unwrap();
        let waiting = tokio::spawn({
            let hashing = hashing.clone();
            async move { hashing.hash("long enough password".into()).await }
        });
        tokio::time::advance(Hashing::WAIT + std::time::Duration::from_secs(1)).await;
        assert!(matches!(waiting.await.unwrap(), Err(HashError::Busy)));
        drop(held);
        assert_eq!(hashing.available(), 1);
    }

    #[test]
    fn the_setup_link_works_until_used() {
        let link = SetupLink::default();
        assert!(!link.accepts(""));
        let token = link.issue();
        assert!(link.accepts(&token) && !link.accepts("wharf_guess"));
        link.used();
        assert!(!link.accepts(&token));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("ops.team-1@example").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn the_local_token_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/token-127.0.0.1-8080");
        write_local_token(&path, "wharf_x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "wharf_x");
    }
}
