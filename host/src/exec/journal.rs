//! The crash journal: what crashed or hung a worker, so a rerun does not walk into it blind.
//!
//! `<out>/<config>/.oect/journal.jsonl`, one JSON object per line, only ever appended (runs of
//! several shards may share an output folder; a line is one `write`). A casualty is a file
//! (opening or reading it took a worker down) or one extractor call (feature, step), keyed
//! by the source's fingerprint (and, for calls, the config hash), so an edited file or
//! config starts afresh. A rerun retries a known casualty once, isolated so that a repeat
//! costs only that step; one that took a worker down in two runs is skipped with its
//! recorded reason, unless `--force`. A retry that succeeds records `recovered`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use oect_plugin_api::FailureKind;
use serde::{Deserialize, Serialize};

/// What a casualty is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    pub source_hash: String,
    /// `None` for a file casualty.
    pub config_hash: Option<String>,
    pub feature: Option<String>,
    pub step: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    #[serde(flatten)]
    key: Key,
    input: PathBuf,
    /// `None` on a `recovered` line.
    cause: Option<String>,
    /// The failure kind of a call casualty (`crashed`, `timeout`); absent on other lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    at: String,
}

/// A known casualty: how many runs it took a worker down in, and the last cause and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub runs: usize,
    pub cause: String,
    pub kind: FailureKind,
}

impl Known {
    fn new() -> Known {
        Known {
            runs: 0,
            cause: String::new(),
            kind: FailureKind::Crashed,
        }
    }
}

/// The journal of one output folder.
pub struct Journal {
    path: PathBuf,
    known: HashMap<Key, Known>,
}

impl Journal {
    /// Reads `<dir>/.oect/journal.jsonl` (`dir`: the config's output folder; absent: empty).
    /// Unreadable lines are ignored: the journal only ever makes a rerun more careful.
    pub fn load(out_dir: &Path) -> Journal {
        let path = out_dir.join(".oect").join("journal.jsonl");
        let mut known: HashMap<Key, Known> = HashMap::new();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let Ok(line) = serde_json::from_str::<Line>(line) else {
                continue;
            };
            match line.cause {
                Some(cause) => {
                    let e = known.entry(line.key).or_insert_with(Known::new);
                    e.runs += 1;
                    e.cause = cause;
                    e.kind = line
                        .kind
                        .as_deref()
                        .and_then(FailureKind::parse)
                        .unwrap_or(FailureKind::Crashed);
                }
                None => {
                    known.remove(&line.key);
                }
            }
        }
        Journal { path, known }
    }

    pub fn get(&self, key: &Key) -> Option<&Known> {
        self.known.get(key)
    }

    /// Known call casualties of one experiment under one config: (feature, step) → known.
    pub fn steps_of(&self, source_hash: &str, config_hash: &str) -> Vec<(String, usize, Known)> {
        self.known
            .iter()
            .filter(|(k, _)| {
                k.source_hash == source_hash && k.config_hash.as_deref() == Some(config_hash)
            })
            .filter_map(|(k, v)| Some((k.feature.clone()?, k.step?, v.clone())))
            .collect()
    }

    /// Records a casualty of this run (`kind`: how a call failed; files are `Crashed`).
    pub fn record(&mut self, key: Key, input: &Path, kind: FailureKind, cause: &str) {
        self.append(&key, input, Some((kind, cause)));
        let e = self.known.entry(key).or_insert_with(Known::new);
        e.runs += 1;
        e.cause = cause.to_string();
        e.kind = kind;
    }

    /// Records that a known casualty ran through this time.
    pub fn recovered(&mut self, key: &Key, input: &Path) {
        if self.known.remove(key).is_some() {
            self.append(key, input, None);
        }
    }

    fn append(&self, key: &Key, input: &Path, cause: Option<(FailureKind, &str)>) {
        let line = Line {
            key: key.clone(),
            input: input.to_path_buf(),
            cause: cause.map(|(_, c)| c.to_string()),
            kind: cause.map(|(k, _)| k.as_str().to_string()),
            at: chrono::Local::now().to_rfc3339(),
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.path);
        if let Ok(mut f) = file {
            // One write per line, so lines of runs sharing the folder do not interleave.
            let _ = f.write_all(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casualties_count_runs_and_recover() {
        let dir = std::env::temp_dir().join(format!("oect-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = Key {
            source_hash: "abc".into(),
            config_hash: Some("cfg".into()),
            feature: Some("gm".into()),
            step: Some(3),
        };
        let file_key = Key {
            source_hash: "abc".into(),
            config_hash: None,
            feature: None,
            step: None,
        };
        let input = Path::new("x.h5");
        let mut j = Journal::load(&dir);
        assert!(j.get(&key).is_none());
        j.record(
            key.clone(),
            input,
            FailureKind::Crashed,
            "killed by SIGSEGV",
        );
        j.record(
            file_key.clone(),
            input,
            FailureKind::Crashed,
            "open crashed",
        );
        let mut j = Journal::load(&dir);
        assert_eq!(j.get(&key).unwrap().runs, 1);
        j.record(
            key.clone(),
            input,
            FailureKind::Timeout,
            "no answer within 1 s",
        );
        let j2 = Journal::load(&dir);
        assert_eq!(
            j2.get(&key),
            Some(&Known {
                runs: 2,
                cause: "no answer within 1 s".into(),
                kind: FailureKind::Timeout,
            })
        );
        assert_eq!(j2.steps_of("abc", "cfg").len(), 1);
        assert!(j2.steps_of("abc", "other").is_empty());
        j.recovered(&file_key, input);
        assert!(Journal::load(&dir).get(&file_key).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
