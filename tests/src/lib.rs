//! Helpers for the end-to-end tests in `tests/`: they drive the real `oect` binary
//! and the plugin libraries that `cargo test --workspace` builds next to it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// `target/<profile>`, where cargo puts the `oect` binary and the plugin libraries.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps folder");
    deps.parent().expect("profile folder").to_path_buf()
}

/// Builds the workspace's binary and plugin libraries once per test process.
///
/// `cargo test` builds neither a binary of another package nor cdylib-only
/// libraries, so without this the tests could run a stale `oect` or none at all.
fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--workspace", "--quiet"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if target_dir().file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --workspace failed");
    });
}

/// The `oect` binary built by this workspace.
pub fn oect_bin() -> PathBuf {
    ensure_built();
    let bin = target_dir().join(format!("oect{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} not found: run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// A shared library built by this workspace, e.g. `library("oect_transfer")`.
pub fn library(stem: &str) -> PathBuf {
    ensure_built();
    let lib = target_dir().join(format!(
        "{}{stem}.{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_EXTENSION
    ));
    assert!(
        lib.is_file(),
        "{} not found: run the tests with `cargo test --workspace`",
        lib.display()
    );
    lib
}

/// A fresh, empty folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oect-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Runs `bin` with `args`, without inheriting a plugin path from the environment.
pub fn run_with(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("OECT_PLUGIN_PATH")
        .output()
        .expect("run oect")
}

/// Runs the workspace's `oect` with `args`.
pub fn oect(args: &[&str]) -> Output {
    run_with(&oect_bin(), args)
}

/// `oect run INPUT -c CONFIG -o OUT EXTRA...`.
pub fn run_config(input: &Path, config: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        input.to_str().expect("UTF-8 path"),
        "-c",
        config,
        "-o",
        out.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    oect(&args)
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The non-hidden `.parquet` files in `dir` and its sub-folders (`oect run -o dir` writes
/// one sub-folder per config), sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if path.is_dir() {
                walk(&path, out);
            } else if !hidden && path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    files
}

/// Runs `oect generate -o dir ARGS...` and returns the written `.h5` files, sorted.
pub fn generate(dir: &Path, args: &[&str]) -> Vec<PathBuf> {
    let mut all = vec!["generate", "-o", dir.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    let o = oect(&all);
    assert!(o.status.success(), "{}", show(&o));
    let mut files: Vec<PathBuf> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(PathBuf::from)
        .collect();
    files.sort();
    files
}

fn batches(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a Parquet file")
        .build()
        .expect("a reader")
        .map(|b| b.expect("a record batch"))
        .collect()
}

/// Column names, and a rendering of every column's values (equal renderings mean
/// equal values, NaN included).
pub fn read_table(path: &Path) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    for batch in batches(path) {
        names = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        columns.resize(batch.num_columns(), String::new());
        for (i, c) in batch.columns().iter().enumerate() {
            columns[i].push_str(&format!("{c:?}"));
        }
    }
    (names, columns)
}

/// The values of a Float64 column.
pub fn float_column(path: &Path, name: &str) -> Vec<f64> {
    batches(path)
        .iter()
        .flat_map(|b| {
            let col = b
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no column {name}"));
            col.as_primitive::<Float64Type>().values().to_vec()
        })
        .collect()
}

/// Every Float64 column of an output file (features and `elapsed_s`; the key columns of
/// other types are left out), by name.
pub fn float_columns(path: &Path) -> std::collections::BTreeMap<String, Vec<f64>> {
    let mut columns: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for batch in batches(path) {
        let schema = batch.schema();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            if let Some(values) = column.as_primitive_opt::<Float64Type>() {
                columns
                    .entry(field.name().clone())
                    .or_default()
                    .extend_from_slice(values.values());
            }
        }
    }
    columns
}

/// The `PANDAS_ATTRS` metadata of an output file.
pub fn attrs(path: &Path) -> serde_json::Value {
    let file = File::open(path).expect("output file");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("a Parquet file");
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .expect("key-value metadata");
    let text = kv
        .iter()
        .find(|e| e.key == "PANDAS_ATTRS")
        .and_then(|e| e.value.clone())
        .expect("PANDAS_ATTRS metadata");
    serde_json::from_str(&text).expect("JSON metadata")
}

/// Processes whose environment holds `OECT_TEST_TAG=tag`: what a run that set it left
/// behind (its workers and their children inherit the variable).
pub fn tagged_processes(tag: &str) -> Vec<u32> {
    let needle = format!("OECT_TEST_TAG={tag}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(env) = std::fs::read(entry.path().join("environ")) {
            if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
                pids.push(pid);
            }
        }
    }
    pids
}
