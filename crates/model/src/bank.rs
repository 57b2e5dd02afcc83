//! Speaker banks: named speaker embeddings in a folder, one JSON file per speaker
//! (`<name>.json`), tied to the model that computed them by a fingerprint of its weights.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result, SpeakerEmbedding};

/// One stored speaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankEntry {
    /// The speaker's name (the file stem).
    pub name: String,
    /// Fingerprint of the model weights the embedding belongs to ([`fingerprint`]).
    pub model: String,
    /// The embedding.
    pub embedding: Vec<f32>,
    /// The voice's spectrum correction per mel band (`SpeakerEmbedding::spectrum`); absent in
    /// entries written before voxswap computed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectrum: Option<Vec<f32>>,
    /// The references' long-term average spectrum per mel band (`SpeakerEmbedding::average`);
    /// absent in entries written before voxswap stored one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average: Option<Vec<f32>>,
    /// The reference files it was computed from.
    pub references: Vec<String>,
    /// Seconds of reference audio.
    pub seconds: f64,
}

/// FNV-1a (64 bits) of a file's bytes, as 16 hex digits: which weights an embedding belongs to.
///
/// # Errors
/// [`Error::File`] when the file cannot be read.
pub fn fingerprint(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::File {
        path: path.to_path_buf(),
        detail: format!("cannot read: {e}"),
    })?;
    Ok(fnv1a64(&bytes))
}

/// FNV-1a (64 bits) of `bytes` as 16 hex digits: a short stable fingerprint (weights here, the
/// frontend configuration for the feature cache).
pub fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Checks a speaker name: letters, digits, `_`, `-` and `.`, not starting with `.`, ≤ 64 characters.
///
/// # Errors
/// [`Error::Input`] naming the problem.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "`{name}` is not a speaker name: use 1 to 64 letters, digits, `_`, `-` or `.`"
        )))
    }
}

/// A folder of speakers.
#[derive(Debug, Clone)]
pub struct SpeakerBank {
    dir: PathBuf,
}

impl SpeakerBank {
    /// Opens an existing bank.
    ///
    /// # Errors
    /// [`Error::File`] when `dir` is not a folder.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::File {
                path: dir.to_path_buf(),
                detail: "no speaker bank here (create one with `voxswap embed … --bank DIR`)".into(),
            });
        }
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// Opens a bank, creating its folder if needed.
    ///
    /// # Errors
    /// [`Error::File`] when the folder cannot be created.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::File {
            path: dir.to_path_buf(),
            detail: format!("cannot create speaker bank: {e}"),
        })?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Stores (or replaces) a speaker, atomically.
    ///
    /// # Errors
    /// A bad name, or [`Error::File`] when it cannot be written.
    pub fn put(&self, entry: &BankEntry) -> Result<()> {
        check_name(&entry.name)?;
        let path = self.path(&entry.name);
        let file_err = |e: String| Error::File {
            path: path.clone(),
            detail: e,
        };
        let text = serde_json::to_string_pretty(entry).map_err(|e| file_err(e.to_string()))?;
        let tmp = self
            .dir
            .join(format!(".{}.json.tmp-{}", entry.name, std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| file_err(format!("cannot write: {e}")))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            file_err(format!("cannot write: {e}"))
        })
    }

    /// Reads one speaker.
    ///
    /// # Errors
    /// [`Error::Input`] for an unknown name (listing the known ones), [`Error::File`] for a
    /// damaged entry.
    pub fn get(&self, name: &str) -> Result<BankEntry> {
        check_name(name)?;
        let path = self.path(name);
        if !path.is_file() {
            let known = self.names()?;
            return Err(Error::Input(unknown_speaker(name, &[self.dir.as_path()], &known)));
        }
        read_entry(&path)
    }

    /// Whether the bank has a speaker called `name`.
    pub fn contains(&self, name: &str) -> bool {
        check_name(name).is_ok() && self.path(name).is_file()
    }

    /// The speakers' names, sorted (without reading the entries).
    ///
    /// # Errors
    /// [`Error::File`] when the folder cannot be read.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self
            .entry_paths()?
            .iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect())
    }

    /// Every speaker, sorted by name.
    ///
    /// # Errors
    /// [`Error::File`] when the folder or an entry cannot be read.
    pub fn list(&self) -> Result<Vec<BankEntry>> {
        self.entry_paths()?.iter().map(|p| read_entry(p)).collect()
    }

    fn entry_paths(&self) -> Result<Vec<PathBuf>> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| Error::File {
            path: self.dir.clone(),
            detail: format!("cannot read: {e}"),
        })?;
        let mut paths: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        Ok(paths)
    }
}

/// The message for a speaker that none of `banks` has: the nearest of the `known` names (by
/// edit distance), or where to see them all.
pub fn unknown_speaker(name: &str, banks: &[&Path], known: &[String]) -> String {
    let where_ = banks
        .iter()
        .map(|b| b.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    let near = nearest(name, known);
    if near.is_empty() {
        format!(
            "no speaker `{name}` in {where_} ({} speakers; `voxswap speakers` lists them)",
            known.len()
        )
    } else {
        format!("no speaker `{name}` in {where_}; did you mean {}?", near.join(", "))
    }
}

/// Up to three of `known` closest to `name`: edit distance (case-insensitive) at most a third
/// of the name's length (at least 2), or names that contain it.
pub fn nearest(name: &str, known: &[String]) -> Vec<String> {
    let lower = name.to_lowercase();
    let limit = (name.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &String)> = known
        .iter()
        .filter_map(|k| {
            let kl = k.to_lowercase();
            let d = edit_distance(&lower, &kl);
            if d <= limit {
                Some((d, k))
            } else if lower.len() >= 3 && kl.contains(&lower) {
                Some((limit + 1, k))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, k)| format!("`{k}`")).collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn read_entry(path: &Path) -> Result<BankEntry> {
    let err = |detail: String| Error::File {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let e: BankEntry = serde_json::from_str(&text).map_err(|e| err(format!("not a speaker entry: {e}")))?;
    if e.embedding
        .iter()
        .chain(e.spectrum.iter().flatten())
        .chain(e.average.iter().flatten())
        .any(|v| !v.is_finite())
    {
        return Err(err("embedding holds NaN or infinity".into()));
    }
    Ok(e)
}

impl BankEntry {
    /// The embedding, checked against the model it is used with.
    ///
    /// # Errors
    /// [`Error::Input`] when it belongs to other weights.
    pub fn embedding_for(&self, model_fingerprint: &str) -> Result<SpeakerEmbedding> {
        if self.model != model_fingerprint {
            return Err(Error::Input(format!(
                "speaker `{}` was embedded with another model (weights {}, this model {}); embed it again with this model",
                self.name, self.model, model_fingerprint
            )));
        }
        Ok(SpeakerEmbedding::new(self.embedding.clone())
            .with_spectrum(self.spectrum.clone())
            .with_average(self.average.clone()))
    }
}

/// Parses a speaker mix: `alice` or `alice:0.7,bob:0.3` (weights need not sum to 1).
///
/// # Errors
/// [`Error::Input`] for an empty part, a bad name or a weight that is not a non-negative number.
pub fn parse_mix(spec: &str) -> Result<Vec<(String, f32)>> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let (name, w) = match part.rsplit_once(':') {
            Some((n, w)) => {
                let w = w.trim();
                let v: f32 = w
                    .parse()
                    .ok()
                    .filter(|v: &f32| v.is_finite())
                    .ok_or_else(|| Error::Input(format!("`{part}`: weight `{w}` is not a number")))?;
                (n.trim(), v)
            }
            None => (part, 1.0),
        };
        check_name(name)?;
        if w < 0.0 {
            return Err(Error::Input(format!("`{part}`: a weight must not be negative")));
        }
        out.push((name.to_string(), w));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> BankEntry {
        BankEntry {
            name: name.into(),
            model: "00ff".into(),
            embedding: vec![0.5, -1.0],
            spectrum: Some(vec![0.25; 3]),
            average: Some(vec![-2.0; 3]),
            references: vec!["a.wav".into()],
            seconds: 3.0,
        }
    }

    #[test]
    fn stores_lists_and_reads_speakers() {
        let dir = tempfile::tempdir().unwrap();
        let bank = SpeakerBank::create(&dir.path().join("bank")).unwrap();
        bank.put(&entry("bob")).unwrap();
        bank.put(&entry("alice")).unwrap();
        let names: Vec<_> = bank.list().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert_eq!(bank.get("bob").unwrap(), entry("bob"));
        let e = bank.get("carol").unwrap_err().to_string();
        assert!(
            e.contains("no speaker `carol`") && e.contains("`voxswap speakers` lists"),
            "{e}"
        );
        // A near miss suggests the nearest names, not the whole bank.
        let e = bank.get("alise").unwrap_err().to_string();
        assert!(e.contains("did you mean `alice`?"), "{e}");
        assert_eq!(bank.names().unwrap(), ["alice", "bob"]);
        assert!(bank.contains("bob") && !bank.contains("carol") && !bank.contains("../x"));
        let alice = bank.get("alice").unwrap().embedding_for("00ff").unwrap();
        assert_eq!(alice.spectrum(), Some(&[0.25; 3][..]));
        assert_eq!(alice.average(), Some(&[-2.0; 3][..]));
        // Entries written before spectrum corrections, or before average spectra, load
        // without them.
        let mut old = serde_json::to_value(entry("old")).unwrap();
        old.as_object_mut().unwrap().remove("average");
        std::fs::write(bank.dir().join("old.json"), old.to_string()).unwrap();
        let e = bank.get("old").unwrap().embedding_for("00ff").unwrap();
        assert_eq!((e.spectrum(), e.average()), (Some(&[0.25; 3][..]), None));
        old.as_object_mut().unwrap().remove("spectrum");
        std::fs::write(bank.dir().join("old.json"), old.to_string()).unwrap();
        let e = bank.get("old").unwrap().embedding_for("00ff").unwrap();
        assert_eq!((e.spectrum(), e.average()), (None, None));
        // A malformed average is refused, naming the file.
        let mut bad = serde_json::to_value(entry("bad")).unwrap();
        bad["average"][1] = serde_json::Value::String("x".into());
        std::fs::write(bank.dir().join("bad.json"), bad.to_string()).unwrap();
        let e = bank.get("bad").unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("not a speaker entry"), "{e}");
        std::fs::remove_file(bank.dir().join("bad.json")).unwrap();
        std::fs::remove_file(bank.dir().join("old.json")).unwrap();
        assert!(bank
            .get("alice")
            .unwrap()
            .embedding_for("1234")
            .unwrap_err()
            .to_string()
            .contains("another model"));
        std::fs::write(bank.dir().join("broken.json"), "{").unwrap();
        assert!(bank.list().is_err());
        assert!(SpeakerBank::open(&dir.path().join("none")).is_err());
    }

    #[test]
    fn names_and_mixes() {
        assert!(check_name("p225_mic-1.a").is_ok());
        for bad in ["", "../x", ".hidden", "a b", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_mix("alice").unwrap(), [("alice".to_string(), 1.0)]);
        assert_eq!(
            parse_mix("alice:0.7, bob:0.3").unwrap(),
            [("alice".to_string(), 0.7), ("bob".to_string(), 0.3)]
        );
        assert!(parse_mix("alice:x").is_err());
        for nan in ["alice:nan", "alice:inf"] {
            let e = parse_mix(nan).unwrap_err().to_string();
            assert!(e.contains("is not a number"), "{e}");
        }
        assert_eq!(
            nearest("fe_sl", &["fe_slt".into(), "fe_kal".into(), "mb_us1".into()]),
            ["`fe_slt`", "`fe_kal`"]
        );
        assert!(nearest("zzzzzz", &["fe_slt".into()]).is_empty());
        assert!(parse_mix("alice:-1").is_err());
        assert!(parse_mix("alice,,bob").is_err());
    }
}
