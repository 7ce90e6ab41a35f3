//! Nothing lost, nothing corrupt: bad inputs, bad configs, kills, Ctrl-C, stale
//! outputs and resource faults, end to end through the real binary.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdf5::H5Type;
use oect_e2e::{generate, oect, oect_bin, parquet_files, run_config, scratch, show};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Transfer and transient features; the exponential decay fit makes a run slow enough
/// to interrupt (about 0.2 s per experiment on one worker in a debug build).
const BOTH: &str = "features:
  - {name: gm, extractor: transfer.gm_max, input: transfer}
  - {name: von, extractor: transfer.Von, input: transfer}
  - {name: peak, extractor: transient.peak_current, input: transient}
  - {name: decay, extractor: transient.decay_time, input: transient, params: {method: exponential}}
";

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("both.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_args<'a>(data: &'a Path, config: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "run",
        data.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-j",
        "1",
    ]
}

fn spawn(args: &[&str]) -> Child {
    Command::new(oect_bin())
        .args(args)
        .env_remove("OECT_PLUGIN_PATH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oect")
}

/// Row count and a printable rendering of every value; panics if the file is not a
/// whole Parquet file.
fn read_table(path: &Path) -> (usize, String) {
    let file = File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap_or_else(|e| panic!("{}: not a readable Parquet file: {e}", path.display()))
        .build()
        .unwrap();
    let (mut rows, mut text) = (0, String::new());
    for batch in reader {
        let batch = batch.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        rows += batch.num_rows();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            text.push_str(&format!("{}={column:?}\n", field.name()));
        }
    }
    (rows, text)
}

/// Output name without its `YYYYmmdd-HHMMSS` stamp → (rows, values).
fn outputs(dir: &Path) -> BTreeMap<String, (usize, String)> {
    parquet_files(dir)
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let at = name.find("-feat_").expect("output name") + "-feat_".len();
            let key = format!("{}{}", &name[..at], &name[at + 15..]);
            (key, read_table(&p))
        })
        .collect()
}

/// Hidden temporary files in `dir` and its config sub-folders.
fn temp_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for d in std::iter::once(dir.to_path_buf()).chain(
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir()),
    ) {
        found.extend(
            std::fs::read_dir(&d)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.') && n.ends_with(".tmp")),
        );
    }
    found
}

/// A PID that no process has: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Runs oect so that file modes apply to it: as root (CI) without the capabilities that
/// read through `chmod 000` (util-linux `setpriv`, in every Debian).
///
/// Without HDF5's file locks: this test writes its damaged files with HDF5 in the test
/// process while sibling tests fork `oect` children, and a child forked while a file was
/// open for writing inherits that descriptor and its exclusive lock (HDF5 does not open
/// with `O_CLOEXEC`), so the run would see "unable to lock file" instead of the damage.
fn without_dac_override(args: &[&str]) -> std::process::Output {
    let mut cmd = if euid() == Some(0) {
        let mut cmd = Command::new("setpriv");
        cmd.arg("--bounding-set=-dac_override,-dac_read_search")
            .arg(oect_bin());
        cmd
    } else {
        Command::new(oect_bin())
    };
    cmd.args(args)
        .env_remove("OECT_PLUGIN_PATH")
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("run oect (through setpriv when root)")
}

#[derive(H5Type, Clone, Copy)]
#[repr(C)]
struct IndexRow {
    start_data_index: i64,
    end_data_index: i64,
}

/// Replaces `/transient/step_info_table` with one holding only `ranges`.
fn put_step_table(file: &hdf5::File, ranges: &[(i64, i64)]) {
    let group = file.group("transient").unwrap();
    group.unlink("step_info_table").unwrap();
    let rows: Vec<IndexRow> = ranges
        .iter()
        .map(|&(s, e)| IndexRow {
            start_data_index: s,
            end_data_index: e,
        })
        .collect();
    group
        .new_dataset::<IndexRow>()
        .shape(rows.len())
        .create("step_info_table")
        .unwrap()
        .write_raw(&rows)
        .unwrap();
}

/// Replaces `/transfer/measurement_data` with an empty dataset of type `T` and `shape`.
fn put_transfer<T: H5Type>(file: &hdf5::File, shape: &[usize]) {
    let group = file.group("transfer").unwrap();
    group.unlink("measurement_data").unwrap();
    group
        .new_dataset::<T>()
        .shape(shape)
        .create("measurement_data")
        .unwrap();
}

#[test]
fn bad_input_files_fail_alone_with_one_line_naming_file_and_problem() {
    let dir = scratch("faults-input");
    let data = dir.join("data");
    let good = generate(
        &data,
        &["--experiments", "2", "--steps", "4", "--cycles", "4"],
    );
    let bad = dir.join("bad");
    let sources = generate(
        &bad,
        &[
            "--experiments",
            "7",
            "--steps",
            "4",
            "--cycles",
            "4",
            "--chip-prefix",
            "#BAD",
        ],
    );
    let transfer_only = generate(
        &bad,
        &["--steps", "2", "--transfer-only", "--chip-prefix", "#NOTR"],
    );
    let named = |i: usize, name: &str| {
        let to = data.join(name);
        std::fs::rename(&sources[i], &to).unwrap();
        to
    };
    let open = |p: &Path| hdf5::File::open_rw(p).unwrap();

    let truncated = named(0, "truncated.h5");
    let len = std::fs::metadata(&truncated).unwrap().len();
    File::options()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let int_dtype = named(1, "int-dtype.h5");
    put_transfer::<i32>(&open(&int_dtype), &[4, 2, 10]);
    let bad_shape = named(2, "bad-shape.h5");
    put_transfer::<f64>(&open(&bad_shape), &[4, 3, 10]);
    let past_end = named(3, "past-end.h5");
    {
        let f = open(&past_end);
        let total = f.dataset("transient/measurement_data").unwrap().shape()[1] as i64;
        put_step_table(&f, &[(0, 10), (10, total + 5)]);
    }
    // NaN and ±inf samples, and zero-length steps, cost those steps, not the file.
    let nonfinite = named(4, "nonfinite.h5");
    {
        let f = open(&nonfinite);
        let ds = f.dataset("transfer/measurement_data").unwrap();
        let mut values = ds.read_dyn::<f64>().unwrap();
        values.slice_mut(ndarray::s![1, .., ..]).fill(f64::NAN);
        values.slice_mut(ndarray::s![2, 1, ..]).fill(f64::INFINITY);
        ds.write(&values).unwrap();
    }
    let zero_length = named(5, "zero-length.h5");
    {
        let f = open(&zero_length);
        let total = f.dataset("transient/measurement_data").unwrap().shape()[1] as i64;
        put_step_table(&f, &[(0, 100), (100, 100), (100, total)]);
    }
    let no_transient = data.join("no-transient.h5");
    std::fs::rename(&transfer_only[0], &no_transient).unwrap();
    std::fs::remove_file(&sources[6]).unwrap();
    let not_hdf5 = data.join("not-hdf5.h5");
    std::fs::write(&not_hdf5, "this is not HDF5\n").unwrap();
    // Unreadable: a link to nothing, and a file with mode 000.
    let vanished = data.join("vanished.h5");
    std::os::unix::fs::symlink(dir.join("nowhere.h5"), &vanished).unwrap();
    let locked = data.join("locked.h5");
    std::fs::copy(&good[0], &locked).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();

    let config = write_config(&dir, BOTH);
    let out = dir.join("out");
    let o = without_dac_override(&run_args(&data, &config, &out));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let failures = [
        (&truncated, "not a readable HDF5 file"),
        (
            &int_dtype,
            "/transfer/measurement_data has element type int32, expected float64",
        ),
        (
            &bad_shape,
            "/transfer/measurement_data has shape [4, 3, 10]",
        ),
        (
            &past_end,
            "/transient/step_info_table row 1: end_data_index",
        ),
        (
            &no_transient,
            "the file has no transient steps, which features peak, decay need",
        ),
        (&not_hdf5, "not a readable HDF5 file"),
        (&vanished, "cannot read file"),
        (&locked, "not a readable HDF5 file"),
    ];
    for (path, problem) in &failures {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("FAILED {}:", path.display())))
            .unwrap_or_else(|| panic!("no FAILED line for {}\n{stderr}", path.display()));
        assert!(line.contains(problem), "{line}");
        assert!(line.contains(&path.display().to_string()), "{line}");
    }
    assert!(
        stdout.contains("4 written") && stdout.contains("failed"),
        "{stdout}"
    );
    // The good files and the damaged-step files are written, with NaN cells.
    let written = outputs(&out);
    assert_eq!(written.len(), 4, "{written:?}");
    assert!(written.values().all(|(rows, _)| *rows > 0));

    let json_out = dir.join("json-out");
    let mut args = run_args(&data, &config, &json_out);
    args.push("--json");
    let o = without_dac_override(&args);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON summary");
    let by_input = |p: &Path| {
        summary["experiments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["input"] == p.display().to_string())
            .unwrap_or_else(|| panic!("{} not in the summary", p.display()))
            .clone()
    };
    for (path, problem) in &failures {
        let e = by_input(path);
        assert_eq!(e["status"], "failed", "{e}");
        assert!(e["reason"].as_str().unwrap().contains(problem), "{e}");
    }
    for path in [&nonfinite, &zero_length] {
        let e = by_input(path);
        assert_eq!(e["status"], "written", "{e}");
        assert!(e["step_errors"].as_u64().unwrap() > 0, "{e}");
    }
    assert_eq!(by_input(&good[0])["step_errors"], 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The committed damaged files of `host/tests/data/damaged` (one bit flipped in the chunk
/// index): HDF5 1.10 and h5py read them without an error and give zeros or garbage for
/// steps 5–8. oect fails exactly those experiments, naming the file and the chunk, writes
/// the others, and exits 1, in both modes. A chunk whose checksum fails is handed to HDF5,
/// which reports it, and the JSON summary counts that fallback.
#[test]
fn a_damaged_chunk_index_fails_the_experiment_instead_of_writing_wrong_values() {
    let dir = scratch("faults-index");
    let damaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/tests/data/damaged");
    let cases = [
        (
            "transfer-index-key-offset.h5",
            "the chunk index has 2 entries, but only 1 of them are where the dataset's 2 chunks are",
        ),
        (
            "transfer-index-filter-mask.h5",
            "the chunk at [5, 0, 0] is marked as stored without its Shuffle filter",
        ),
    ];
    let summary = |o: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", show(o)))
    };
    for (name, problem) in cases {
        let data = dir.join(name).with_extension("");
        // Another chip than the damaged file's #SYN0001, which would be a duplicate.
        generate(
            &data,
            &[
                "--experiments",
                "2",
                "--steps",
                "8",
                "--points",
                "100",
                "--chip-prefix",
                "#OK",
            ],
        );
        let bad = data.join(name);
        std::fs::copy(damaged.join(name), &bad).unwrap();
        for mode in ["step", "experiment"] {
            let out = dir.join(format!("out-{name}-{mode}"));
            let o = run_config(
                &data,
                "v2_transfer_basic",
                &out,
                &["--mode", mode, "--json"],
            );
            assert_eq!(o.status.code(), Some(1), "{}", show(&o));
            let s = summary(&o);
            let experiments = s["experiments"].as_array().unwrap();
            let failed: Vec<&serde_json::Value> = experiments
                .iter()
                .filter(|e| e["status"] == "failed")
                .collect();
            assert_eq!(failed.len(), 1, "{s}");
            assert_eq!(failed[0]["input"], bad.display().to_string(), "{s}");
            let reason = failed[0]["reason"].as_str().unwrap();
            assert!(
                reason.contains("reading transfer steps") && reason.contains(problem),
                "{reason}"
            );
            let written = experiments.iter().filter(|e| e["status"] == "written");
            assert_eq!(written.count(), experiments.len() - 1, "{s}");
            assert_eq!(parquet_files(&out).len(), experiments.len() - 1);
            assert_eq!(s["read_fallbacks"], 0, "{s}");
        }
        // The text summary names the file.
        let o = run_config(&data, "v2_transfer_basic", &dir.join("text"), &["--force"]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains(&format!("FAILED {}: ", bad.display())) && stderr.contains(problem),
            "{stderr}"
        );
    }

    // A damaged chunk body: the direct reader's checksum fails, HDF5 reads it again, fails
    // too, and says so; one read fell back.
    let data = dir.join("checksum");
    let files = generate(
        &data,
        &["--steps", "8", "--points", "100", "--transfer-only"],
    );
    let info = hdf5::File::open(&files[0])
        .unwrap()
        .dataset("transfer/measurement_data")
        .unwrap()
        .chunk_info(0)
        .unwrap();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[(info.addr + info.size / 2) as usize] ^= 0x10;
    std::fs::write(&files[0], bytes).unwrap();
    let o = run_config(
        &data,
        "v2_transfer_basic",
        &dir.join("checksum-out"),
        &["--json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let s = summary(&o);
    let reason = s["experiments"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("Fletcher32") && reason.contains("the chunk at [0, 0, 0]"),
        "{reason}"
    );
    assert_eq!(s["read_fallbacks"], 1, "{s}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_folder_is_a_usage_error() {
    let dir = scratch("faults-empty");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.join("out");
    let o = run_config(&empty, "v2_quick_analysis", &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("{}: no .h5 files", empty.display())),
        "{stderr}"
    );
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_configs_exit_2_before_any_work_naming_the_problem() {
    let dir = scratch("faults-config");
    let data = dir.join("data");
    generate(&data, &["--steps", "2", "--transfer-only"]);
    let out = dir.join("out");
    let cases = [
        (
            "features:\n  - name: g\n    extractor: [transfer.gm_max\n",
            "invalid YAML: did not find expected ',' or ']' at line 4 column 1",
        ),
        (
            "features:\n  - {name: g, extractor: transfer.gm_max, input: transfer, parmas: {}}\n",
            "feature 'g': unknown key `parmas`",
        ),
        (
            "data_source: {experiment_typo: transfer}\nfeatures:\n  - {name: g, extractor: transfer.gm_max, input: transfer}\n",
            "data_source: unknown key `experiment_typo`",
        ),
        (
            "features:\n  - {name: g, extractor: transfer.gm_max, input: transfer, params: {direction: 3}}\n",
            "feature 'g': transfer.gm_max: parameter 'direction'",
        ),
        (
            "features:\n  - {name: g, extractor: transfer.gm_maxx, input: transfer}\n",
            "feature 'g': unknown extractor 'transfer.gm_maxx'; did you mean 'transfer.gm_max'? (available: transfer.Von",
        ),
        (
            "features:\n  - {name: g, extractor: transfer.gm_max, input: transfr}\n",
            "feature 'g': input 'transfr' is neither a data source",
        ),
        (
            "features:\n  - {name: a, func: \"lambda b: b\", input: [b]}\n  - {name: b, func: \"lambda a: a\", input: [a]}\n",
            "circular dependency between features: a, b",
        ),
        (
            "features:\n  - {name: g, extractor: transfer.gm_max, input: transfer}\n  - {name: g, extractor: transfer.Von, input: transfer}\n",
            "feature 'g' is defined twice",
        ),
    ];
    let config = dir.join("c.yaml");
    for (text, problem) in cases {
        std::fs::write(&config, text).unwrap();
        let o = run_config(&data, config.to_str().unwrap(), &out, &[]);
        assert_eq!(o.status.code(), Some(2), "{text}\n{}", show(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains(&format!("{}: {problem}", config.display())),
            "{text}\n{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!out.exists(), "{text}: the output folder was created");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A batch that takes a few seconds, and its uninterrupted result.
struct Batch {
    dir: PathBuf,
    data: PathBuf,
    config: PathBuf,
    reference: BTreeMap<String, (usize, String)>,
    seconds: f64,
}

fn batch(name: &str, experiments: &str) -> Batch {
    let dir = scratch(name);
    let data = dir.join("data");
    generate(
        &data,
        &[
            "--experiments",
            experiments,
            "--steps",
            "40",
            "--cycles",
            "20",
        ],
    );
    let config = write_config(&dir, BOTH);
    let out = dir.join("reference");
    let start = Instant::now();
    let o = oect(&run_args(&data, &config, &out));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let seconds = start.elapsed().as_secs_f64();
    let reference = outputs(&out);
    Batch {
        dir,
        data,
        config,
        reference,
        seconds,
    }
}

/// Every final-named file is whole and equal to the uninterrupted run's.
fn assert_whole(out: &Path, reference: &BTreeMap<String, (usize, String)>) {
    for (key, table) in outputs(out) {
        assert_eq!(
            Some(&table),
            reference.get(&key),
            "{key} differs from the reference"
        );
    }
}

#[test]
fn killed_runs_leave_only_whole_files_and_a_rerun_completes_the_batch() {
    let b = batch("faults-kill", "12");
    let out = b.dir.join("out");
    let args = run_args(&b.data, &b.config, &out);
    let per_experiment = b.seconds / b.reference.len() as f64;
    // Deterministic "random" kill moments: the first early in a run, the others a fraction
    // of an experiment's time after the run wrote its first new file.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..4 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let fraction = (seed >> 33) as f64 / (1u64 << 31) as f64;
        let before = parquet_files(&out).len();
        let mut child = spawn(&args);
        if round == 0 {
            std::thread::sleep(Duration::from_secs_f64(0.05 * b.seconds));
        } else {
            let deadline = Instant::now() + Duration::from_secs(120);
            while parquet_files(&out).len() <= before {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: no output after 120 s"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_secs_f64(per_experiment * fraction));
        }
        // The kill lands mid-run: the run is still going, SIGKILL ends it, and work is
        // left for the next round.
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the run ended before the kill"
        );
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "round {round}: {status:?}"
        );
        let done = parquet_files(&out).len();
        assert!(
            done < b.reference.len(),
            "round {round}: the batch was complete"
        );
        assert_whole(&out, &b.reference);
        eprintln!(
            "round {round}: killed with {done} of {} outputs written ({before} before)",
            b.reference.len()
        );
    }
    // A writer killed mid-file leaves a temp file; the next run removes it.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let stale = out.join("both").join(format!(
        ".X-1-t-feat_20260101-000000_00000000.parquet.{}.{}.tmp",
        host.trim(),
        dead_pid()
    ));
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"PAR1 partial").unwrap();
    let o = oect(&args);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(outputs(&out), b.reference);
    assert_eq!(temp_files(&out), Vec::<String>::new());
    std::fs::remove_dir_all(&b.dir).unwrap();
}

#[test]
fn ctrl_c_stops_cleanly_with_status_130_and_a_rerun_finishes() {
    let b = batch("faults-sigint", "12");
    for mode in ["step", "experiment"] {
        let out = b.dir.join(format!("out-{mode}"));
        let mut args = run_args(&b.data, &b.config, &out);
        args.extend(["--mode", mode]);
        // The experiment-mode round checks the JSON summary.
        let mut first = args.clone();
        if mode == "experiment" {
            first.push("--json");
        }
        let child = spawn(&first);
        let deadline = Instant::now() + Duration::from_secs(60);
        while parquet_files(&out).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let kill = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(130), "{mode}: {}", show(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        if mode == "step" {
            assert!(stdout.contains("written"), "{stdout}");
        } else {
            let summary: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
            assert_eq!(summary["interrupted"], true, "{summary}");
            let status = |s: &str| {
                summary["experiments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["status"] == s)
                    .count()
            };
            assert!(
                status("written") > 0 && status("interrupted") > 0,
                "{summary}"
            );
            assert_eq!(status("written") + status("interrupted"), b.reference.len());
        }
        assert!(
            stderr.contains("interrupted:") && stderr.contains("experiments not done"),
            "{stderr}"
        );
        assert_eq!(temp_files(&out), Vec::<String>::new());
        let done = outputs(&out);
        assert!(
            !done.is_empty() && done.len() < b.reference.len(),
            "{mode}: {} done",
            done.len()
        );
        assert_whole(&out, &b.reference);

        let o = oect(&args);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains(&format!("{} skipped (up to date)", done.len())),
            "{stdout}"
        );
        assert_eq!(outputs(&out), b.reference);
    }
    std::fs::remove_dir_all(&b.dir).unwrap();
}

#[test]
fn stale_outputs_are_recomputed_only_when_source_config_or_plugins_changed() {
    let dir = scratch("faults-stale");
    let data = dir.join("data");
    let files = generate(&data, &["--steps", "3", "--cycles", "4"]);
    let config = write_config(&dir, BOTH);
    let out = dir.join("out");
    let args = run_args(&data, &config, &out);
    let run = |expect: &str| {
        let o = oect(&args);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains(expect), "expected '{expect}'\n{stdout}");
        let written = parquet_files(&out);
        assert_eq!(written.len(), 1, "{written:?}");
        written[0].clone()
    };
    let first = run("1 written");
    run("0 written, 1 skipped (up to date)");

    // Source changed: a re-converted file has a new modification time.
    let mtime = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    File::options()
        .write(true)
        .open(&files[0])
        .unwrap()
        .set_modified(mtime + Duration::from_secs(5))
        .unwrap();
    run("1 written");
    run("0 written, 1 skipped (up to date)");

    // Config content changed (even a comment: the hash covers the text).
    std::fs::write(&config, format!("# tuned\n{BOTH}")).unwrap();
    let after_config = run("1 written");
    assert_ne!(
        after_config.file_name().unwrap().to_str().unwrap()[..]
            .rsplit('_')
            .next(),
        first.file_name().unwrap().to_str().unwrap()[..]
            .rsplit('_')
            .next(),
        "hash8 did not change"
    );
    run("0 written, 1 skipped (up to date)");

    // A plugin version change changes hash8 (it covers every used plugin's name and
    // version); an output under another hash8 is what such a run finds.
    let name = after_config.file_name().unwrap().to_str().unwrap();
    let other = after_config.with_file_name(format!(
        "{}_0badc0de.parquet",
        &name[..name.rfind('_').unwrap()]
    ));
    std::fs::rename(&after_config, &other).unwrap();
    let recomputed = run("1 written");
    assert!(!other.exists(), "the outdated output was not removed");
    assert_ne!(recomputed, other);
    run("0 written, 1 skipped (up to date)");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unwritable_output_folder_fails_naming_the_path() {
    let dir = scratch("faults-unwritable");
    let data = dir.join("data");
    generate(&data, &["--steps", "2", "--transfer-only"]);
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let out = blocker.join("out");
    let o = run_config(&data, "v2_quick_analysis", &out, &[]);
    // Found before any file is read: a usage error.
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: cannot create output folder",
            out.join("v2_quick_analysis").display()
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "needs root with CAP_SYS_ADMIN to mount an 8 KiB tmpfs; .ci/run runs it with --ignored"]
fn a_full_disk_fails_naming_the_file_and_leaves_no_temp_file() {
    let dir = scratch("faults-full");
    let data = dir.join("data");
    generate(&data, &["--steps", "20", "--transfer-only"]);
    let mnt = dir.join("tiny");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=8k",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        mounted,
        "cannot mount a small tmpfs at {} (needs root and CAP_SYS_ADMIN)",
        mnt.display()
    );
    // Fill it, leaving no room for an output file.
    let filler = mnt.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 64 << 10]);
    let o = run_config(&data, "v2_quick_analysis", &mnt, &[]);
    let temps = temp_files(&mnt);
    let outputs = parquet_files(&mnt);
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("FAILED"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains(&format!("{}/", mnt.display())) && line.contains(".parquet"),
        "{line}"
    );
    assert!(line.contains("No space left on device"), "{line}");
    assert_eq!(temps, Vec::<String>::new());
    assert_eq!(outputs, Vec::<PathBuf>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}
