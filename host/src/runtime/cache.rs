//! Compiled components kept on disk, so a restart (or a second host on the machine) does not
//! compile a file again.
//!
//! Loading one is loading native code, so nothing is taken on trust: the folder is this
//! user's alone (made 0700; one that another user could write is refused), an artifact is
//! named after the SHA-256 of its component and a hash of the engine's settings and wasmtime's
//! version, and its file starts with both hashes and the SHA-256 of the artifact itself. An
//! artifact whose header does not name the component asked for, or whose bytes do not hash
//! to what the header says (a torn write, another file copied over it), is removed and the
//! component compiled again. Wasmtime then checks the artifact's own header against the
//! engine before it deserializes it.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// What an artifact file starts with.
const MAGIC: &[u8; 8] = b"wharfc1\n";
/// The header: magic, the component's SHA-256, the engine key, the artifact's SHA-256.
const HEADER: usize = MAGIC.len() + 32 + 32 + 32;
/// The largest artifact read back (a component's code is a few times its file at most).
const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// A folder of compiled components for one engine.
pub(crate) struct CompileCache {
    dir: PathBuf,
    /// The hash of the engine's settings and wasmtime's version.
    engine_key: [u8; 32],
}

/// Why a cached artifact was not used.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("it is {0} bytes, more than any artifact")]
    TooLarge(u64),
    #[error("its header is not a wharf artifact's")]
    Header,
    #[error("it was compiled from another component")]
    OtherComponent,
    #[error("it was compiled by another engine")]
    OtherEngine,
    #[error("its bytes do not match their hash")]
    Corrupt,
    #[error("wasmtime refused it: {0}")]
    Deserialize(String),
}

impl CompileCache {
    /// The cache in `dir`, made if missing (0700) and refused if another user could write it.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<CompileCache> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        crate::private::check_private(dir)?;
        Ok(CompileCache {
            dir: dir.to_owned(),
            engine_key: engine_key(engine),
        })
    }

    fn path(&self, component_sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.cwasm",
            hex::encode(component_sha256),
            &hex::encode(self.engine_key)[..16]
        ))
    }

    /// The compiled component of the file with hash `component_sha256`, if a sound artifact
    /// of it is kept. One that is not is removed (and logged).
    pub fn load(&self, engine: &Engine, component_sha256: &[u8; 32]) -> Option<Component> {
        let path = self.path(component_sha256);
        match self.read(engine, &path, component_sha256) {
            Ok(component) => Some(component),
            Err(Refused::Read(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(refused) => {
                tracing::warn!(artifact = %path.display(), %refused, "a cached compiled plugin is not used; compiling it again");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn read(
        &self,
        engine: &Engine,
        path: &Path,
        component_sha256: &[u8; 32],
    ) -> Result<Component, Refused> {
        let size = std::fs::metadata(path)?.len();
        if size > MAX_ARTIFACT_BYTES {
            return Err(Refused::TooLarge(size));
        }
        let bytes = std::fs::read(path)?;
        let (header, artifact) = bytes.split_at_checked(HEADER).ok_or(Refused::Header)?;
        let rest = header.strip_prefix(MAGIC).ok_or(Refused::Header)?;
        let (component, rest) = rest.split_at(32);
        let (engine_hash, artifact_hash) = rest.split_at(32);
        if component != component_sha256 {
            return Err(Refused::OtherComponent);
        }
        if engine_hash != self.engine_key {
            return Err(Refused::OtherEngine);
        }
        if Sha256::digest(artifact).as_slice() != artifact_hash {
            return Err(Refused::Corrupt);
        }
        // SAFETY: the bytes are an artifact this engine's settings produced for this
        // component: they come from a folder only this user can write, and their hash is
        // the one recorded when they were written. Wasmtime checks its own header as well.
        unsafe { Component::deserialize(engine, artifact) }
            .map_err(|e| Refused::Deserialize(e.to_string()))
    }

    /// Keeps `component`, compiled from the file with hash `component_sha256` (best effort:
    /// a cache that cannot be written only means compiling again next time).
    pub fn store(&self, component_sha256: &[u8; 32], component: &Component) {
        let path = self.path(component_sha256);
        if let Err(error) = self.write(&path, component_sha256, component) {
            tracing::warn!(artifact = %path.display(), %error, "cannot keep a compiled plugin");
        }
    }

    fn write(
        &self,
        path: &Path,
        component_sha256: &[u8; 32],
        component: &Component,
    ) -> anyhow::Result<()> {
        use std::io::Write;
        let artifact = component.serialize()?;
        let mut file = tempfile::Builder::new()
            .prefix(".artifact-")
            .tempfile_in(&self.dir)?;
        file.write_all(MAGIC)?;
        file.write_all(component_sha256)?;
        file.write_all(&self.engine_key)?;
        file.write_all(&Sha256::digest(&artifact))?;
        file.write_all(&artifact)?;
        file.as_file().sync_all()?;
        // Renamed into place whole: a reader sees the old file or the new, never a part.
        file.persist(path)?;
        Ok(())
    }
}

/// A hash of what decides whether an artifact fits `engine`: its settings and wasmtime's
/// version, as wasmtime itself reports them.
fn engine_key(engine: &Engine) -> [u8; 32] {
    use std::hash::Hash;
    struct Sha(Sha256);
    impl std::hash::Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.finalize().into()
}
