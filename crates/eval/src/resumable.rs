//! Finished pieces of a long computation kept on disk (`<out>.partial/`) so that a killed run
//! continues where it stopped; valid only for the same inputs.

use std::path::{Path, PathBuf};

use crate::EvalError;

/// Finished pieces of a long command (`<out>.partial/`), valid only for the same inputs: a
/// `key.json` names them, and a directory with another key is discarded.
///
/// Pieces are JSON files `00000.json`, `00001.json`, ... written atomically
/// ([`advsoup_io::write_atomic`]); [`Resumable::finish`] removes the directory once the whole
/// result is written.
#[derive(Debug)]
pub struct Resumable {
    dir: PathBuf,
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EvalError {
    let path = path.to_path_buf();
    move |source| EvalError::Io {
        action,
        path,
        source,
    }
}

impl Resumable {
    /// Opens (or starts) the pieces of `out` computed under `key`.
    ///
    /// # Errors
    /// When a stale directory cannot be removed or the directory or its key cannot be written.
    pub fn open(out: &Path, key: &serde_json::Value) -> Result<Self, EvalError> {
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let dir = out.with_file_name(name);
        let key_path = dir.join("key.json");
        let same = std::fs::read(&key_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|k| &k == key);
        if !same && dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io("removing stale", &dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        if !same {
            let bytes = serde_json::to_vec_pretty(key).map_err(|source| EvalError::Json {
                path: key_path.clone(),
                source,
            })?;
            advsoup_io::write_atomic(&key_path, &bytes)?;
        }
        Ok(Self { dir })
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{i:05}.json"))
    }

    /// Piece `i`, if it was finished.
    ///
    /// # Errors
    /// When the piece exists but cannot be read or parsed (a damaged piece).
    pub fn get<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<Option<T>, EvalError> {
        let p = self.path(i);
        match std::fs::read(&p) {
            Ok(b) => {
                Ok(Some(serde_json::from_slice(&b).map_err(|source| {
                    EvalError::Damaged { path: p, source }
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &p)(e)),
        }
    }

    /// Records piece `i` (atomically).
    ///
    /// # Errors
    /// When the piece cannot be serialized or written.
    pub fn put<T: serde::Serialize>(&self, i: usize, v: &T) -> Result<(), EvalError> {
        let p = self.path(i);
        let bytes = serde_json::to_vec(v).map_err(|source| EvalError::Json {
            path: p.clone(),
            source,
        })?;
        Ok(advsoup_io::write_atomic(&p, &bytes)?)
    }

    /// Removes the directory if it holds no finished piece (a computation that failed before
    /// finishing any leaves nothing behind); keeps it otherwise, for a later resume.
    pub fn discard_if_empty(self) {
        let pieces = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name() != "key.json")
                    .count()
            })
            .unwrap_or(1);
        if pieces == 0 {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Removes the pieces once the whole result is written.
    ///
    /// # Errors
    /// When the directory cannot be removed.
    pub fn finish(self) -> Result<(), EvalError> {
        std::fs::remove_dir_all(&self.dir).map_err(io("removing", &self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_survive_a_reopen_with_the_same_key_and_not_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("eval.json");
        let key = serde_json::json!({"n": 3});
        let r = Resumable::open(&out, &key).expect("open");
        assert_eq!(r.get::<u32>(0).expect("get"), None);
        r.put(0, &7u32).expect("put");
        let r = Resumable::open(&out, &key).expect("reopen");
        assert_eq!(r.get::<u32>(0).expect("get"), Some(7));
        let partial = dir.path().join("eval.json.partial");
        assert!(partial.join("key.json").exists());
        std::fs::write(partial.join("00001.json"), b"{not json").expect("damage");
        let e = r.get::<u32>(1).expect_err("damaged").to_string();
        assert!(e.contains("00001.json") && e.contains("damaged"), "{e}");
        let r = Resumable::open(&out, &serde_json::json!({"n": 4})).expect("other key");
        assert_eq!(
            r.get::<u32>(0).expect("get"),
            None,
            "a stale piece is discarded"
        );
        r.finish().expect("finish");
        assert!(!partial.exists());
    }
}
