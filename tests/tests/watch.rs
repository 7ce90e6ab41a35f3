//! `oect watch` on an export that is replayed step by step, as the instrument writes it: step
//! CSVs appearing, `test_info_temp.json` growing, finally `test_info.json`. The watcher is
//! stopped with Ctrl-C (SIGINT) and restarted in the middle. Every wait is for an observable
//! condition with a generous deadline, and a watcher still running when a test fails is killed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use oect_e2e::{attrs, oect, oect_bin, parquet_files, read_table, run_config, scratch, show};

const DEADLINE: Duration = Duration::from_secs(120);

/// A running `oect watch`, killed if still running when dropped.
struct Watch {
    child: Child,
    log: PathBuf,
}

impl Watch {
    fn start(raw: &Path, out: &Path, log: &Path, extra: &[&str]) -> Watch {
        let child = Command::new(oect_bin())
            .args([
                "watch",
                raw.to_str().unwrap(),
                "-c",
                "v2_mixed",
                "-o",
                out.to_str().unwrap(),
            ])
            .args(["--interval", "0.2", "-j", "2"])
            .args(extra)
            .env_remove("OECT_PLUGIN_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log).unwrap())
            .spawn()
            .expect("start oect watch");
        Watch {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `done()` holds; fails with the watcher's log after the deadline.
    fn wait_for(&mut self, what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "oect watch exited ({status}) while waiting for {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {what} after {DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ctrl-C, then the exit status.
    fn interrupt(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self.log());
            }
            assert!(
                start.elapsed() < DEADLINE,
                "oect watch did not stop on SIGINT:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rows and metadata of the one table in `out`, if it is there and readable now.
fn table(out: &Path) -> Option<(usize, serde_json::Value)> {
    let files = parquet_files(out);
    let [path] = &files[..] else { return None };
    let file = File::open(path).ok()?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
    let rows = reader.metadata().file_metadata().num_rows() as usize;
    Some((rows, attrs(path)))
}

/// Every row of a table, each cell rendered (equal renderings mean equal values, NaN
/// included), and the schema's fields (names, types, field metadata).
fn table_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let file = File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let fields = reader
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{f:?}"))
        .collect();
    let mut out = Vec::new();
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        for r in 0..batch.num_rows() {
            out.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| format!("{:?}", c.slice(r, 1)))
                    .collect(),
            );
        }
    }
    (fields, out)
}

/// A table's place under its output folder without the time stamp: config folder, then
/// `<chip>-<device>-<test_id>-feat_` and `_<hash8>.parquet`.
fn naming(out: &Path, table: &Path) -> (PathBuf, String, String) {
    let rel = table.strip_prefix(out).unwrap();
    let name = rel.file_name().unwrap().to_str().unwrap();
    let (stem, rest) = name.split_once("-feat_").unwrap();
    let (_, hash) = rest.rsplit_once('_').unwrap();
    (
        rel.parent().unwrap().to_path_buf(),
        stem.to_owned(),
        hash.to_owned(),
    )
}

/// The metadata without what names the input or the moment of writing.
fn meta_without_input(path: &Path) -> serde_json::Value {
    let mut a = attrs(path);
    for key in ["source_file", "source_hash", "created_at"] {
        a.as_object_mut().unwrap().remove(key).expect(key);
    }
    a
}

/// Copies steps `range` (1-based positions) of the complete export `src` into `dst`, CSVs
/// first, then `test_info_temp.json` listing the steps so far, as the instrument does. The CSVs
/// get a modification time in the past: they are complete, so the watcher need not let them
/// settle.
fn replay(src: &Path, dst: &Path, info: &serde_json::Value, upto: usize) {
    std::fs::create_dir_all(dst).unwrap();
    if !dst.join("workflow.json").exists() {
        std::fs::copy(src.join("workflow.json"), dst.join("workflow.json")).unwrap();
    }
    let steps = info["steps"].as_array().unwrap();
    for step in &steps[..upto] {
        let name = step["data_file"].as_str().unwrap();
        if !dst.join(name).exists() {
            std::fs::copy(src.join(name), dst.join(name)).unwrap();
            let past = SystemTime::now() - Duration::from_secs(10);
            File::options()
                .write(true)
                .open(dst.join(name))
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
    }
    let mut temp = info.clone();
    temp["steps"] = serde_json::Value::Array(steps[..upto].to_vec());
    temp["status"] = "in_progress".into();
    let obj = temp.as_object_mut().unwrap();
    obj.remove("summary");
    obj.remove("completed_at");
    // written whole and renamed, as a JSON file should be read
    let tmp = dst.join(".test_info_temp.json.part");
    std::fs::write(&tmp, temp.to_string()).unwrap();
    std::fs::rename(&tmp, dst.join("test_info_temp.json")).unwrap();
}

#[test]
fn watch_follows_a_running_test_resumes_and_ends_equal_to_convert_and_run() {
    let dir = scratch("watch");
    let src_root = dir.join("src");
    let o = oect(&[
        "generate",
        "--raw-export",
        "-o",
        src_root.to_str().unwrap(),
        "--steps",
        "6",
        "--cycles",
        "10",
        "--ragged",
        "--final-transfer",
        "--seed",
        "4",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let src = std::fs::read_dir(&src_root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("test_info.json")).unwrap()).unwrap();
    assert_eq!(info["steps"].as_array().unwrap().len(), 13);
    let raw = dir.join("raw");
    let dst = raw.join(src.file_name().unwrap());
    let out = dir.join("out");
    std::fs::create_dir_all(&raw).unwrap();

    // first watcher: two loop iterations, then Ctrl-C
    let mut w = Watch::start(&raw, &out, &dir.join("watch1.log"), &[]);
    replay(&src, &dst, &info, 4);
    w.wait_for("a table of 2 rows", || {
        table(&out).is_some_and(|(rows, _)| rows == 2)
    });
    let (_, a) = table(&out).unwrap();
    assert_eq!(a["source_file"], dst.to_str().unwrap());
    assert_eq!(
        a["steps"],
        serde_json::json!({"transfer": 2, "transient": 2})
    );
    let running = parquet_files(&out).remove(0);
    let (running_naming, running_rows, running_meta) = (
        naming(&out, &running),
        table_rows(&running),
        attrs(&running),
    );
    let (code, log) = w.interrupt();
    assert_eq!(code, 130, "{log}");
    assert!(log.contains("stopped;"), "{log}");

    // the test goes on while nobody watches; a new watcher (rescanning instead of using
    // notifications) resumes from the journal
    replay(&src, &dst, &info, 8);
    let mut w = Watch::start(&raw, &out, &dir.join("watch2.log"), &["--poll"]);
    w.wait_for("a table of 4 rows", || {
        table(&out).is_some_and(|(rows, _)| rows == 4)
    });
    assert!(
        w.log()
            .contains("resumed from the journal (2 transfer, 2 transient steps)"),
        "{}",
        w.log()
    );

    // the rest, then the final test_info.json
    replay(&src, &dst, &info, 13);
    std::fs::copy(src.join("test_info.json"), dst.join("test_info.json")).unwrap();
    let h5_dir = out.join("h5");
    w.wait_for("the final table", || {
        table(&out).is_some_and(|(_, a)| {
            a["source_file"]
                .as_str()
                .is_some_and(|s| s.ends_with(".h5"))
        })
    });
    let (rows, a) = table(&out).unwrap();
    assert_eq!(rows, 7);
    assert_eq!(
        a["steps"],
        serde_json::json!({"transfer": 7, "transient": 6})
    );
    let (code, log) = w.interrupt();
    assert_eq!(code, 130, "{log}");
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // equal to convert + run on the complete export
    let conv = dir.join("conv");
    let o = oect(&[
        "convert",
        src_root.to_str().unwrap(),
        "-o",
        conv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let reference = dir.join("reference");
    let o = run_config(&conv, "v2_mixed", &reference, &[]);
    assert!(o.status.success(), "{}", show(&o));
    let watched = parquet_files(&out).remove(0);
    let expected = parquet_files(&reference).remove(0);
    assert_eq!(read_table(&watched), read_table(&expected));
    // the same schema, metadata and naming as run's table
    assert_eq!(table_rows(&watched), table_rows(&expected));
    assert_eq!(meta_without_input(&watched), meta_without_input(&expected));
    assert_eq!(naming(&out, &watched), naming(&reference, &expected));
    // ... and so had the table of the running test, over the steps it had then: the final
    // table's first two rows (loop iterations 1 and 2), keys included, except for
    // decay_normalized, a whole-column expression (z-score over the rows there are)
    let (fields, all_rows) = table_rows(&expected);
    assert_eq!(running_rows.0, fields);
    let names = read_table(&expected).0;
    let whole_column = names.iter().position(|n| n == "decay_normalized").unwrap();
    let per_step = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                r.remove(whole_column);
                r
            })
            .collect()
    };
    assert_eq!(per_step(&running_rows.1), per_step(&all_rows[..2]));
    assert_ne!(running_rows.1[0][whole_column], all_rows[0][whole_column]);
    assert_eq!(running_naming, naming(&reference, &expected));
    let keys = |m: &serde_json::Value| m.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&running_meta), keys(&attrs(&expected)));
    for key in [
        "test_id",
        "test_started_at",
        "config_hash",
        "format_version",
        "units",
        "features",
    ] {
        assert_eq!(running_meta[key], attrs(&expected)[key], "{key}");
    }
    let h5 = std::fs::read_dir(&h5_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "h5"))
        .unwrap();
    assert!(
        conv.join(h5.file_name().unwrap()).is_file(),
        "{}: not the converter's name",
        h5.display()
    );
    // a later `oect run` on the watcher's files finds the table up to date
    let o = run_config(&h5_dir, "v2_mixed", &out, &["--json"]);
    assert!(o.status.success(), "{}", show(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["experiments"][0]["status"], "skipped", "{summary}");

    // a third watcher has nothing left to do
    let before = parquet_files(&out);
    let log3 = dir.join("watch3.log");
    let mut w = Watch::start(&raw, &out, &log3, &[]);
    w.wait_for("the resume message", || {
        std::fs::read_to_string(&log3)
            .unwrap_or_default()
            .contains("resumed from the journal (7 transfer, 6 transient steps, finished)")
    });
    let (code, _) = w.interrupt();
    assert_eq!(code, 130);
    assert_eq!(
        parquet_files(&out),
        before,
        "the final table was left as it was"
    );
}
