//! Secrets at rest: the host's key, and sealing a text with it.
//!
//! What the database holds of connections (passwords in URLs, secret headers, TLS bundle
//! passwords) and of plugin policies (config values, which may be API keys) is sealed with
//! XChaCha20-Poly1305 under the host's secret key before it is written, so a copy of the
//! database (a backup, a dump, the SQLite file) holds none of them in clear. Each sealed text
//! is bound to where it is kept (its table and name, as associated data): moved to another row
//! it no longer opens.
//!
//! The key is 32 random bytes: the file `server.secret_key_file` if set, else
//! `WHARF_SECRET_KEY` (base64), else `secret.key` in the host's state folder, made with mode
//! 0600 on first start when absent. Hosts sharing a database share the key. Rotation:
//! give every host the new key as `secret_key_file` and the old one in
//! `previous_secret_key_files`, then run `wharf secret rotate` (or restart a host, which seals
//! again whatever an older key sealed); then the old key can go.
//!
//! No SQL here and no axum: `store/` calls [`Keyring::seal`] and [`Keyring::open`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// How a sealed text begins: the format's version, then the key's id.
const PREFIX: &str = "wharf-sealed:v1:";

/// The environment variable that gives the key itself (base64 of 32 bytes).
pub const KEY_VARIABLE: &str = "WHARF_SECRET_KEY";

/// What went wrong with a key or a sealed text.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the secret key {source_name}: {problem}")]
    Key {
        source_name: String,
        problem: String,
    },
    #[error(
        "{what} is sealed with key {key_id}, which this host does not have; give it that key (server.secret_key_file, server.previous_secret_key_files or {KEY_VARIABLE})"
    )]
    UnknownKey { what: String, key_id: String },
    #[error("{what} is sealed but does not open with its key: it was damaged or moved")]
    Damaged { what: String },
}

/// One key and its id (the first 8 hex digits of its SHA-256, which names it in sealed texts
/// without revealing it).
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Key {
        Key {
            id: hex::encode(&Sha256::digest(bytes)[..4]),
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

/// The host's keys: the current one seals, every one opens. Cheap to share behind an `Arc`.
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Where the host finds its keys.
#[derive(Debug, Clone, Default)]
pub struct KeySources {
    /// The current key's file; `None`: `WHARF_SECRET_KEY`, else [`default_key_path`].
    pub file: Option<PathBuf>,
    /// Files of keys that sealed what is stored before a rotation.
    pub previous: Vec<PathBuf>,
}

/// `secret.key` in the host's state folder (where it keeps the CLI's token).
pub fn default_key_path() -> Result<PathBuf, SecretError> {
    crate::auth::state_dir()
        .map(|dir| dir.join("secret.key"))
        .map_err(|e| SecretError::Key {
            source_name: "secret.key".into(),
            problem: format!("has no place: {e}"),
        })
}

impl Keyring {
    /// The keys `sources` names; the current key's file is made (0600, in a 0700 folder) when
    /// it does not exist yet.
    pub fn load(sources: &KeySources) -> Result<Keyring, SecretError> {
        let current = match (&sources.file, std::env::var(KEY_VARIABLE)) {
            (None, Ok(text)) => decode(&text, KEY_VARIABLE)?,
            (Some(path), _) => read_or_make(path)?,
            (None, Err(_)) => read_or_make(&default_key_path()?)?,
        };
        let previous = sources
            .previous
            .iter()
            .map(|path| read(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring {
            current: Key::new(&current),
            previous: previous.iter().map(Key::new).collect(),
        })
    }

    /// A keyring of one key given as bytes (tests, tools).
    pub fn from_key(bytes: [u8; 32]) -> Keyring {
        Keyring {
            current: Key::new(&bytes),
            previous: Vec::new(),
        }
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// `text` sealed under the current key, bound to `place` (where it is kept).
    pub fn seal(&self, place: &str, text: &str) -> String {
        let nonce: [u8; 24] = rand::random();
        let sealed = self
            .current
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: text.as_bytes(),
                    aad: place.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any text");
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.current.id, STANDARD.encode(body))
    }

    /// The text `stored` holds: opened if sealed (with whichever key sealed it), as it is if
    /// it was stored in clear (before sealing existed).
    pub fn open(&self, place: &str, stored: &str) -> Result<String, SecretError> {
        let Some((key_id, body)) = sealed_parts(stored) else {
            return Ok(stored.to_owned());
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| SecretError::UnknownKey {
                what: place.to_owned(),
                key_id: key_id.to_owned(),
            })?;
        let damaged = || SecretError::Damaged {
            what: place.to_owned(),
        };
        let body = STANDARD.decode(body).map_err(|_| damaged())?;
        if body.len() < 24 {
            return Err(damaged());
        }
        let (nonce, sealed) = body.split_at(24);
        let text = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| damaged())?;
        String::from_utf8(text).map_err(|_| damaged())
    }

    /// Whether `stored` is sealed with the current key (else it should be sealed again).
    pub fn is_current(&self, stored: &str) -> bool {
        sealed_parts(stored).is_some_and(|(id, _)| id == self.current.id)
    }
}

/// Whether `stored` is a sealed text (rather than one kept in clear).
pub fn is_sealed(stored: &str) -> bool {
    sealed_parts(stored).is_some()
}

fn sealed_parts(stored: &str) -> Option<(&str, &str)> {
    stored.strip_prefix(PREFIX)?.split_once(':')
}

fn decode(text: &str, source_name: &str) -> Result<[u8; 32], SecretError> {
    let bad = |problem: &str| SecretError::Key {
        source_name: source_name.to_owned(),
        problem: problem.to_owned(),
    };
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| bad("is not base64"))?;
    bytes.try_into().map_err(|_| {
        bad("is not 32 bytes (base64 of 32 random bytes, as `openssl rand -base64 32` makes)")
    })
}

/// Reads the key at `path`, refusing a key that another user of the machine could have
/// written (its file or its folder): such a key could be one they chose.
fn read(path: &Path) -> Result<[u8; 32], SecretError> {
    let refused = |e: std::io::Error| SecretError::Key {
        source_name: path.display().to_string(),
        problem: format!("is refused: {e}"),
    };
    crate::private::check_private(path).map_err(refused)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private::check_private(dir).map_err(refused)?;
    }
    let text = std::fs::read_to_string(path).map_err(|e| SecretError::Key {
        source_name: path.display().to_string(),
        problem: format!("cannot be read: {e}"),
    })?;
    decode(&text, &path.display().to_string())
}

/// Reads the key at `path`, or makes it (32 random bytes, base64, mode 0600) if there is no
/// file yet. Two hosts starting at once on one machine end up with the same key: the key is
/// written whole to a file of its own, then linked into place, which fails if another got
/// there first (whose key is then read): no one ever reads half a key.
fn read_or_make(path: &Path) -> Result<[u8; 32], SecretError> {
    if path.exists() {
        return read(path);
    }
    let failed = |e: std::io::Error| SecretError::Key {
        source_name: path.display().to_string(),
        problem: format!("cannot be made: {e}"),
    };
    let key: [u8; 32] = rand::random();
    let partial = crate::auth::write_private_beside(path, &format!("{}\n", STANDARD.encode(key)))
        .map_err(failed)?;
    let linked = std::fs::hard_link(&partial, path);
    let _ = std::fs::remove_file(&partial);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "made the secret key that seals connections' secrets in the database; keep it (hosts sharing the database need it too)");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_texts_open_only_in_their_place_and_with_their_key() {
        let ring = Keyring::from_key([7; 32]);
        let sealed = ring.seal("connections/rabbit", "amqp://guest:hunter2@host");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            ring.seal("connections/rabbit", "amqp://guest:hunter2@host")
        );
        assert_eq!(
            ring.open("connections/rabbit", &sealed).unwrap(),
            "amqp://guest:hunter2@host"
        );
        assert!(matches!(
            ring.open("connections/other", &sealed),
            Err(SecretError::Damaged { .. })
        ));
        let other = Keyring::from_key([8; 32]);
        assert!(matches!(
            other.open("connections/rabbit", &sealed),
            Err(SecretError::UnknownKey { .. })
        ));
        assert_eq!(
            ring.open("x", "{\"plain\": true}").unwrap(),
            "{\"plain\": true}"
        );
    }

    #[test]
    fn a_rotated_ring_opens_what_the_old_key_sealed() {
        let old = Keyring::from_key([1; 32]);
        let sealed = old.seal("p", "secret");
        let rotated = Keyring {
            current: Key::new(&[2; 32]),
            previous: vec![Key::new(&[1; 32])],
        };
        assert_eq!(rotated.open("p", &sealed).unwrap(), "secret");
        assert!(!rotated.is_current(&sealed));
        assert!(rotated.is_current(&rotated.seal("p", "secret")));
    }

    #[test]
    fn the_key_file_is_made_private_and_read_again() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/secret.key");
        let sources = KeySources {
            file: Some(path.clone()),
            previous: Vec::new(),
        };
        let made = Keyring::load(&sources).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Keyring::load(&sources).unwrap();
        assert_eq!(made.current_id(), again.current_id());
        std::fs::write(&path, "short").unwrap();
        assert!(
            Keyring::load(&sources)
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
    }
}
