//! The live token set: loaded at start (a bad file stops the server from starting),
//! then reloaded when the file changes (read each second and compared by SHA-256, which
//! also catches editors that replace the file and mounted secrets that swap a symlink;
//! the file is small) and on SIGHUP. A bad new file keeps the old tokens, logs why and
//! counts the failure, so a typo never locks everyone out nor opens the server.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use super::file::{self, AuthFileError};
use super::{sha256, Tokens};

/// How often the watcher looks at the file.
const POLL: Duration = Duration::from_secs(1);

/// The tokens in force and the file they come from.
#[derive(Debug)]
pub struct Auth {
    path: PathBuf,
    tokens: RwLock<Arc<Tokens>>,
    /// SHA-256 of the text last loaded (or last refused, so a bad file is logged once).
    seen: RwLock<[u8; 32]>,
    /// Reloads that replaced the tokens.
    pub reloads: AtomicU64,
    /// Reloads refused (the old tokens stayed).
    pub reload_failures: AtomicU64,
    hangup: Arc<AtomicBool>,
    /// The file could not be read at the last look (logged once, not every second).
    unreadable: AtomicBool,
}

impl Auth {
    /// Loads `path` (failing on a bad file) and starts watching it; the watcher stops
    /// when the returned `Auth` is dropped.
    pub fn open(path: &Path) -> Result<Arc<Auth>, AuthFileError> {
        let text = read(path)?;
        let tokens = file::parse(&text)?;
        warn_if_exposed(path, &tokens);
        let auth = Arc::new(Auth {
            path: path.to_owned(),
            tokens: RwLock::new(Arc::new(tokens)),
            seen: RwLock::new(sha256(text.as_bytes())),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            hangup: Arc::new(AtomicBool::new(false)),
            unreadable: AtomicBool::new(false),
        });
        // SIGHUP sets a flag the watcher polls; without an auth file SIGHUP keeps its
        // default meaning.
        if let Err(e) =
            signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&auth.hangup))
        {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the auth file is still reloaded when it changes");
        }
        let weak = Arc::downgrade(&auth);
        std::thread::Builder::new()
            .name("embers-auth-watch".into())
            .spawn(move || watch(weak))
            .map_err(|source| AuthFileError::Read {
                path: path.display().to_string(),
                source,
            })?;
        tracing::info!(file = %path.display(), tokens = auth.tokens().len(), "authentication on: requests need a token");
        Ok(auth)
    }

    /// The tokens in force now.
    pub fn tokens(&self) -> Arc<Tokens> {
        Arc::clone(
            &self
                .tokens
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Reads the file again and, if its text changed (or `force`), replaces the tokens
    /// with it, or keeps them if the new text is refused. Returns whether the tokens
    /// were replaced.
    pub fn reload(&self, force: bool) -> bool {
        let text = match read(&self.path) {
            Ok(text) => text,
            Err(e) => {
                if !self.unreadable.swap(true, Ordering::Relaxed) || force {
                    self.refused(&e);
                }
                return false;
            }
        };
        self.unreadable.store(false, Ordering::Relaxed);
        let digest = sha256(text.as_bytes());
        let mut seen = self
            .seen
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *seen == digest && !force {
            return false;
        }
        *seen = digest;
        drop(seen);
        match file::parse(&text) {
            Ok(tokens) => {
                warn_if_exposed(&self.path, &tokens);
                let count = tokens.len();
                *self
                    .tokens
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(tokens);
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(file = %self.path.display(), tokens = count, "auth file reloaded");
                true
            }
            Err(e) => {
                self.refused(&e);
                false
            }
        }
    }

    fn refused(&self, e: &AuthFileError) {
        self.reload_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(file = %self.path.display(), error = %e, "auth file not reloaded; the previous tokens stay in force");
    }
}

/// A file with plain `token` entries that other users may read gives the tokens away:
/// said once per load, so the operator moves to `token_sha256` or tightens the mode.
fn warn_if_exposed(path: &Path, tokens: &Tokens) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if tokens.has_plaintext() && meta.permissions().mode() & 0o044 != 0 {
        tracing::warn!(
            file = %path.display(),
            "the auth file holds tokens in the clear and other users may read it: \
             use token_sha256 entries (embers token new) or chmod 600"
        );
    }
}

fn read(path: &Path) -> Result<String, AuthFileError> {
    std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The watcher thread: a SIGHUP forces a reload, and each [`POLL`] a changed file does.
fn watch(auth: Weak<Auth>) {
    let mut next = Instant::now() + POLL;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let Some(auth) = auth.upgrade() else { return };
        if auth.hangup.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: reloading the auth file");
            auth.reload(true);
            next = Instant::now() + POLL;
        } else if Instant::now() >= next {
            auth.reload(false);
            next = Instant::now() + POLL;
        }
    }
}
