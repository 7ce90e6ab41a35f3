use super::*;
use std::collections::BTreeMap;

use arrow_array::types::Float64Type;
use arrow_array::{cast::AsArray, Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oect-sink-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn table() -> Table {
    Table {
        rows: 3,
        columns: vec![
            OutColumn::Float {
                name: "gm".into(),
                values: vec![1.0, f64::NAN, 3.0],
            },
            OutColumn::Nested {
                name: "tau".into(),
                rank: 2,
                rows: vec![
                    Some((vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])),
                    None,
                    Some((vec![1, 2], vec![5.0, 6.0])),
                ],
            },
        ],
        error_counts: BTreeMap::from([("gm".into(), 1), ("tau".into(), 1)]),
        nonfinite_counts: BTreeMap::new(),
        errors: Vec::new(),
        scalar_features: vec!["gm".into()],
        expanded_features: BTreeMap::new(),
        nested_features: vec!["tau".into()],
    }
}

fn sink(dir: &Path, hash8: &str) -> Sink {
    Sink {
        out_dir: dir.to_path_buf(),
        config_name: "cfg".into(),
        hash8: hash8.into(),
    }
}

#[test]
fn round_trip_keeps_values_nesting_and_metadata() {
    let dir = temp_dir("roundtrip");
    let attrs = serde_json::json!({"chip_id": "#C1", "source_hash": "abc"});
    let path = sink(&dir, "12345678")
        .write("#C1", "3", &table(), &attrs)
        .unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("#C1-3-cfg-feat_") && name.ends_with("_12345678.parquet"),
        "{name}"
    );

    let file = File::open(&path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let compression = builder.metadata().row_group(0).column(1).compression();
    assert!(
        matches!(compression, Compression::ZSTD(_)),
        "{compression:?}"
    );
    let batch = builder.build().unwrap().next().unwrap().unwrap();
    let steps = batch
        .column(0)
        .as_primitive::<arrow_array::types::Int64Type>();
    assert_eq!(steps.values().to_vec(), vec![0, 1, 2]);
    let gm = batch.column(1).as_primitive::<Float64Type>();
    assert_eq!(gm.value(0), 1.0);
    assert!(gm.value(1).is_nan());
    let tau = batch.column(2).as_list::<i32>();
    assert!(tau.is_null(1));
    let row0 = tau.value(0);
    let row0 = row0.as_list::<i32>();
    assert_eq!(row0.len(), 2);
    let inner = row0.value(1);
    assert_eq!(
        inner.as_primitive::<Float64Type>().values().to_vec(),
        vec![3.0, 4.0]
    );
    let row2 = tau.value(2);
    assert_eq!(row2.as_list::<i32>().len(), 1);

    assert_eq!(read_attrs(&path).unwrap(), attrs);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn up_to_date_needs_same_hash_and_source_and_rewrite_leaves_one_file() {
    let dir = temp_dir("skip");
    let s = sink(&dir, "aaaaaaaa");
    let attrs = serde_json::json!({"source_hash": "src1"});
    let first = s.write("C", "1", &table(), &attrs).unwrap();
    assert_eq!(s.up_to_date("C", "1", "src1"), Some(first.clone()));
    assert_eq!(s.up_to_date("C", "1", "src2"), None, "source changed");
    assert_eq!(
        sink(&dir, "bbbbbbbb").up_to_date("C", "1", "src1"),
        None,
        "config changed"
    );
    assert_eq!(s.up_to_date("C", "2", "src1"), None, "other device");

    let second = sink(&dir, "bbbbbbbb")
        .write("C", "1", &table(), &attrs)
        .unwrap();
    assert_eq!(s.existing("C", "1"), vec![second]);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_output_is_never_up_to_date() {
    let dir = temp_dir("corrupt");
    let s = sink(&dir, "aaaaaaaa");
    std::fs::write(
        dir.join("C-1-cfg-feat_20250101-000000_aaaaaaaa.parquet"),
        b"PAR1 junk",
    )
    .unwrap();
    assert_eq!(s.up_to_date("C", "1", "src1"), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn names_cannot_escape_the_output_folder() {
    assert_eq!(sanitize("a/b\\c\n"), "a_b_c_");
    assert_eq!(sanitize("#2025-08"), "#2025-08");
}

#[test]
fn stale_temp_files_of_dead_writers_are_removed_live_and_remote_ones_kept() {
    let dir = std::env::temp_dir().join(format!("oect-sink-temps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sink = Sink {
        out_dir: dir.clone(),
        config_name: "c".into(),
        hash8: "00000000".into(),
    };
    // A child that has exited and been reaped: its PID no longer exists.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let mut live = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let host = super::host_name();
    let name = |host: &str, pid: u32| {
        format!(".A-1-c-feat_20260101-000000_00000000.parquet.{host}.{pid}.tmp")
    };
    let files = [
        name(host, dead),
        name(host, std::process::id()),
        name(host, live.id()),
        name("other-node.cluster", dead),
        ".notes.123.tmp".to_string(),
        "A-1-c-feat_20260101-000000_00000000.parquet".to_string(),
    ];
    for f in &files {
        std::fs::write(dir.join(f), b"partial").unwrap();
    }
    let mut removed: Vec<String> = sink
        .remove_stale_temps()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    live.kill().unwrap();
    live.wait().unwrap();
    removed.sort();
    let mut expected = vec![files[0].clone(), files[1].clone()];
    expected.sort();
    assert_eq!(removed, expected);
    for f in &files[2..] {
        assert!(dir.join(f).exists(), "{f} was removed");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
