//! Damaged input files: a deterministic byte-flipping fuzzer over generated files, and
//! the damaged files that crashed libhdf5 (kept in `tests/data/damaged/`).
//!
//! Each trial flips 1–16 bytes of one file of a 3-file batch and runs `oect run` on it.
//! The run must neither crash nor hang; the two good files must be written with their
//! exact values; the damaged one must either fail alone, naming the file and a reason, or
//! give exactly the values of the undamaged file. `OECT_FUZZ_TRIALS` sets the number of
//! trials (CI runs the default), `OECT_FUZZ_SEED` the first seed, and `OECT_FUZZ_KEEP` a
//! folder where files whose damage took a worker down are copied (how the regression
//! inputs were found).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use oect_e2e::{attrs, float_columns, generate, oect_bin, parquet_files, scratch, show};

/// Trials of the bounded run in `cargo test` (about 0.3 s each in a debug build).
const DEFAULT_TRIALS: u64 = 40;
/// Wall-clock limit of one run: far above a healthy one, so reaching it is a hang.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// SplitMix64: a small, fixed generator, so a trial is reproducible from its seed alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `bytes` with 1–16 bytes changed, at positions and to values drawn from `seed`.
fn damage(bytes: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = bytes.to_vec();
    let flips = 1 + rng.next() % 16;
    for _ in 0..flips {
        let at = (rng.next() % out.len() as u64) as usize;
        let mask = (1 + rng.next() % 255) as u8;
        out[at] ^= mask;
    }
    out
}

/// The feature values of one output: every Float64 column but `elapsed_s`. The key columns
/// and `elapsed_s` describe the file (chip, device, test id, start time from its root
/// attributes, which the reader takes as "NA" when damaged); the values are what a damaged
/// file must never change silently.
type Table = BTreeMap<String, Vec<f64>>;

/// Source file → feature values, for the outputs in `dir`.
fn values_by_source(dir: &Path) -> BTreeMap<PathBuf, Table> {
    parquet_files(dir)
        .iter()
        .map(|f| {
            let source = PathBuf::from(attrs(f)["source_file"].as_str().unwrap());
            let mut columns = float_columns(f);
            columns.remove("elapsed_s");
            (source, columns)
        })
        .collect()
}

fn same(a: &Table, b: &Table) -> bool {
    !a.is_empty()
        && a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k).is_some_and(|w| {
                v.len() == w.len() && v.iter().zip(w).all(|(x, y)| x.to_bits() == y.to_bits())
            })
        })
}

/// Runs `oect run` with a wall-clock limit; `None` if it had to be killed.
fn run_limited(args: &[&str]) -> Option<Output> {
    let mut child = Command::new(oect_bin())
        .args(args)
        .env_remove("OECT_PLUGIN_PATH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oect");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How a damaged file ended in one run.
#[derive(Debug, PartialEq)]
enum Verdict {
    FailedAlone {
        crashed_a_worker: bool,
        reason: String,
    },
    SameValues,
}

/// Runs the batch in `data` (two good files + `damaged`) and checks the rules.
fn check_batch(
    data: &Path,
    out: &Path,
    damaged: &Path,
    reference: &BTreeMap<PathBuf, Table>,
    undamaged: &Table,
    context: &str,
) -> Verdict {
    let _ = std::fs::remove_dir_all(out);
    let args = [
        "run",
        data.to_str().unwrap(),
        "-c",
        "v2_transfer_basic",
        "-o",
        out.to_str().unwrap(),
        "--json",
        "-j",
        "2",
        "--read-timeout",
        "20",
    ];
    let o = run_limited(&args).unwrap_or_else(|| panic!("{context}: the run hung"));
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{context}: {}",
        show(&o)
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{context}: no JSON summary ({e})\n{}", show(&o)));
    let got = values_by_source(out);
    for (source, want) in reference {
        let have = got
            .get(source)
            .unwrap_or_else(|| panic!("{context}: {} not written", source.display()));
        assert!(
            same(have, want),
            "{context}: {} has other values",
            source.display()
        );
    }
    let entry = summary["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["input"] == damaged.display().to_string())
        .unwrap_or_else(|| panic!("{context}: the damaged file is not in the summary"))
        .clone();
    match entry["status"].as_str().unwrap() {
        "failed" => {
            let reason = entry["reason"].as_str().unwrap();
            assert!(!reason.trim().is_empty(), "{context}: {entry}");
            let crashed = summary["casualties"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["input"] == entry["input"]);
            Verdict::FailedAlone {
                crashed_a_worker: crashed,
                reason: reason.to_string(),
            }
        }
        "written" => {
            let have = &got[damaged];
            assert!(
                same(have, undamaged),
                "{context}: the damaged file was written with other values: {entry}"
            );
            Verdict::SameValues
        }
        other => panic!("{context}: status {other}: {entry}"),
    }
}

struct Setup {
    dir: PathBuf,
    data: PathBuf,
    pristine: Vec<u8>,
    damaged: PathBuf,
    reference: BTreeMap<PathBuf, Table>,
    undamaged: Table,
}

fn setup(name: &str) -> Setup {
    let dir = scratch(name);
    let data = dir.join("data");
    generate(
        &data,
        &[
            "--experiments",
            "2",
            "--steps",
            "5",
            "--transfer-only",
            "--ragged",
            "--final-transfer",
        ],
    );
    let spare = dir.join("spare");
    let made = generate(
        &spare,
        &[
            "--steps",
            "5",
            "--transfer-only",
            "--ragged",
            "--chip-prefix",
            "#DMG",
            "--seed",
            "9",
        ],
    );
    let damaged = data.join("damaged.h5");
    let pristine = std::fs::read(&made[0]).unwrap();
    std::fs::write(&damaged, &pristine).unwrap();
    let out = dir.join("reference");
    let o = oect_e2e::run_config(&data, "v2_transfer_basic", &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let mut reference = values_by_source(&out);
    let undamaged = reference
        .remove(&damaged)
        .expect("the pristine file is written");
    assert_eq!(reference.len(), 2);
    Setup {
        dir,
        data,
        pristine,
        damaged,
        reference,
        undamaged,
    }
}

#[test]
fn byte_flips_never_crash_or_hang_the_run() {
    let s = setup("fuzz");
    let trials: u64 = std::env::var("OECT_FUZZ_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TRIALS);
    let first: u64 = std::env::var("OECT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let keep = std::env::var_os("OECT_FUZZ_KEEP").map(PathBuf::from);
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for seed in first..first + trials {
        let bytes = damage(&s.pristine, seed);
        std::fs::write(&s.damaged, &bytes).unwrap();
        let out = s.dir.join("out");
        let verdict = check_batch(
            &s.data,
            &out,
            &s.damaged,
            &s.reference,
            &s.undamaged,
            &format!("seed {seed}"),
        );
        if let Verdict::FailedAlone {
            crashed_a_worker: true,
            ..
        } = verdict
        {
            if let Some(dir) = &keep {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(dir.join(format!("flip-seed-{seed}.h5")), &bytes).unwrap();
            }
        }
        let class = match &verdict {
            Verdict::FailedAlone {
                crashed_a_worker, ..
            } => format!("failed alone (took a worker down: {crashed_a_worker})"),
            Verdict::SameValues => "same values".into(),
        };
        *tally.entry(class).or_default() += 1;
    }
    eprintln!("{trials} trials from seed {first}: {tally:?}");
    std::fs::remove_dir_all(&s.dir).unwrap();
}

#[test]
fn damaged_files_that_crashed_libhdf5_fail_alone() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/damaged");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        corpus.display()
    );
    let s = setup("fuzz-corpus");
    for file in &files {
        std::fs::copy(file, &s.damaged).unwrap();
        let verdict = check_batch(
            &s.data,
            &s.dir.join("out"),
            &s.damaged,
            &s.reference,
            &s.undamaged,
            &file.display().to_string(),
        );
        let Verdict::FailedAlone { reason, .. } = verdict else {
            panic!("{}: {verdict:?}", file.display());
        };
        // `inspect` and `status` open files in a worker too: one line, no crash.
        let o = run_limited(&["inspect", s.damaged.to_str().unwrap()])
            .unwrap_or_else(|| panic!("{}: inspect hung", file.display()));
        assert_eq!(o.status.code(), Some(1), "{}: {}", file.display(), show(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains(&format!("FAILED {}: ", s.damaged.display())),
            "{}: {stderr}",
            file.display()
        );
        let out = s.dir.join("status-out");
        let o = run_limited(&[
            "status",
            s.data.to_str().unwrap(),
            "-c",
            "v2_transfer_basic",
            "-o",
            out.to_str().unwrap(),
        ])
        .unwrap_or_else(|| panic!("{}: status hung", file.display()));
        assert_eq!(o.status.code(), Some(1), "{}: {}", file.display(), show(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        // Status only opens files: a file whose steps (not metadata) are damaged is
        // missing, one that cannot be opened is failed. Which of the two a damaged file
        // is may differ from the run's verdict: libhdf5 reading a damaged heap either
        // crashes or returns garbage, depending on what lies beyond it in memory (this
        // corpus has files that do both). The other files are missing either way.
        let line = format!("FAILED (shard 0) {}: ", s.damaged.display());
        let failed = stdout.contains(&line);
        let want = if failed {
            "3 experiments: 0 done, 0 done with failed steps, 2 missing, 1 failed"
        } else {
            "3 experiments: 0 done, 0 done with failed steps, 3 missing, 0 failed"
        };
        assert!(
            stdout.starts_with(want),
            "{}: {reason}\n{stdout}",
            file.display()
        );
    }
    std::fs::remove_dir_all(&s.dir).unwrap();
}
