//! Partial files: outputs being written, renamed into place only when complete.
//!
//! Every output voxswap writes (WAV, PNG, cache files) goes first to a hidden file in the
//! output's folder, which [`PartialFile::persist`] renames over the output. Two things make them
//! more than `tempfile::NamedTempFile`:
//!
//! - **Modes as `cp` makes them.** `tempfile` creates files readable by their owner only (0600)
//!   and a rename keeps that mode; a partial file is created with 0666 less the user's umask
//!   (0644 under the usual 022), the mode any other tool's output gets.
//! - **Nothing left behind on Ctrl-C or SIGTERM.** Every live partial file is registered in this
//!   process; a signal handler calls [`remove_all`], which deletes them (a signal ends the
//!   process without running destructors). Files created after that are deleted at once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The partial files of this process that are still being written.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Set by [`remove_all`]: the process is ending, no new partial file may stay.
static CLOSING: AtomicBool = AtomicBool::new(false);

fn live() -> MutexGuard<'static, Vec<PathBuf>> {
    // A panic while the lock was held leaves a valid list; keep using it.
    LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A hidden file in an output's folder, deleted when dropped unless persisted.
#[derive(Debug)]
pub struct PartialFile {
    tmp: Option<tempfile::NamedTempFile>,
    path: PathBuf,
}

impl PartialFile {
    /// Creates `dir/<prefix>XXXXXX<suffix>` with the mode new files get under the umask.
    ///
    /// # Errors
    /// The I/O error of creating the file; `Interrupted` when [`remove_all`] has run.
    pub fn create(dir: &Path, prefix: &str, suffix: &str) -> std::io::Result<Self> {
        let mut b = tempfile::Builder::new();
        b.prefix(prefix).suffix(suffix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            b.permissions(std::fs::Permissions::from_mode(0o666));
        }
        // Registered under the lock, so a concurrent `remove_all` either sees it or has already
        // set CLOSING, which this checks.
        let mut list = live();
        let tmp = b.tempfile_in(dir)?;
        if CLOSING.load(Ordering::SeqCst) {
            drop(tmp);
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted"));
        }
        let path = tmp.path().to_path_buf();
        list.push(path.clone());
        Ok(Self { tmp: Some(tmp), path })
    }

    /// The partial file's own (hidden) path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file.
    ///
    /// # Panics
    /// Never: the file is only taken by `persist`, which consumes `self`.
    #[allow(clippy::missing_panics_doc)]
    pub fn as_file(&self) -> &File {
        #[allow(clippy::expect_used)]
        self.tmp
            .as_ref()
            .expect("a partial file is open until persisted")
            .as_file()
    }

    /// Flushes the file to disk and renames it to `to`.
    ///
    /// # Errors
    /// The I/O error; the partial file is then deleted and `to` left untouched.
    pub fn persist(mut self, to: &Path) -> std::io::Result<()> {
        let Some(tmp) = self.tmp.take() else {
            return Err(std::io::Error::other("already persisted"));
        };
        tmp.as_file().sync_all()?;
        let list_guard = live();
        let r = tmp.persist(to).map(drop).map_err(|e| e.error);
        drop(list_guard);
        r
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        // The NamedTempFile (if still here) deletes the file; forget it either way.
        drop(self.tmp.take());
        let mut list = live();
        if let Some(i) = list.iter().position(|p| *p == self.path) {
            list.swap_remove(i);
        }
    }
}

/// Deletes every partial file of this process, and every one created from now on. For signal
/// handlers (Ctrl-C, SIGTERM) just before the process exits; returns how many were removed.
pub fn remove_all() -> usize {
    let mut list = live();
    CLOSING.store(true, Ordering::SeqCst);
    let n = list.iter().filter(|p| std::fs::remove_file(p).is_ok()).count();
    list.clear();
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_file_has_the_umask_mode_and_drop_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let f = PartialFile::create(dir.path(), ".x-", ".part").unwrap();
        let hidden = f.path().to_path_buf();
        assert!(hidden.exists());
        let out = dir.path().join("out.bin");
        f.persist(&out).unwrap();
        assert!(!hidden.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // SAFETY-free way to read the umask: create a plain file and look at its mode.
            let probe = dir.path().join("probe");
            std::fs::write(&probe, b"").unwrap();
            let want = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
            let got = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, want, "mode {got:o}, a plain file gets {want:o}");
        }
        let g = PartialFile::create(dir.path(), ".y-", ".part").unwrap();
        let p = g.path().to_path_buf();
        drop(g);
        assert!(!p.exists());
        assert!(!live().contains(&p));
    }
}
