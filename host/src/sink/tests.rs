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
        keys: RowKeys {
            step_index: vec![0, 1, 2],
            source_steps: None,
            loop_iteration: vec![Some(1), Some(2), None],
            start_time: vec![
                Some(1_755_265_331_123_456),
                None,
                Some(1_755_265_400_000_000),
            ],
            elapsed_s: vec![Some(0.0), None, Some(68.876544)],
        },
        features: vec![
            FeatureData {
                columns: FeatureColumns {
                    feature: "gm".into(),
                    kind: ColumnKind::Scalar,
                    unit: Some("S".into()),
                    components: None,
                },
                values: Values::Float(vec![1.0, f64::NAN, 3.0]),
            },
            FeatureData {
                columns: FeatureColumns {
                    feature: "tau".into(),
                    kind: ColumnKind::Nested(2),
                    unit: Some("s".into()),
                    components: Some(vec!["tau_on".into(), "tau_off".into()]),
                },
                values: Values::Nested(vec![
                    Some((vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])),
                    None,
                    Some((vec![1, 2], vec![5.0, 6.0])),
                ]),
            },
        ],
    }
}

fn meta(chip: &str, source_hash: &str, identity: &str) -> OutputMeta {
    OutputMeta {
        format_version: FORMAT_VERSION,
        chip_id: chip.into(),
        device_id: "3".into(),
        test_id: "test_1".into(),
        config_name: "cfg".into(),
        config_origin: identity.into(),
        config_identity: identity.into(),
        config_hash: "12345678abcd".into(),
        source_file: "x.h5".into(),
        source_hash: source_hash.into(),
        test_started_at: None,
        created_at: "now".into(),
        oect_version: "0".into(),
        plugins: Vec::new(),
        steps: BTreeMap::from([("transfer".into(), 3)]),
        rows: 3,
        alignment: None,
        units: BTreeMap::new(),
        features: Vec::new(),
        feature_errors: BTreeMap::from([("gm".into(), 1)]),
        feature_no_fit: BTreeMap::new(),
        feature_failures: BTreeMap::new(),
        feature_nonfinite: BTreeMap::new(),
        errors: Vec::new(),
    }
}

fn key(chip: &str, test: &str) -> ExperimentKey {
    ExperimentKey {
        chip_id: chip.into(),
        device_id: "3".into(),
        test_id: test.into(),
    }
}

fn sink(dir: &Path, hash8: &str) -> Sink {
    Sink::open(dir, "cfg", "builtin:cfg", hash8).unwrap()
}

#[test]
fn round_trip_keeps_values_nesting_keys_units_and_metadata() {
    let dir = temp_dir("roundtrip");
    let m = meta("#C1", "abc", "builtin:cfg");
    let path = sink(&dir, "12345678")
        .write(&key("#C1", "test_1"), &table(), &m)
        .unwrap();
    assert_eq!(path.parent().unwrap(), dir.join("cfg"));
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("C1-3-test_1-feat_") && name.ends_with("_12345678.parquet"),
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
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "chip_id",
            "device_id",
            "test_id",
            "step_index",
            "loop_iteration",
            "start_time",
            "elapsed_s",
            "gm",
            "tau"
        ]
    );
    let chip = batch
        .column(0)
        .as_dictionary::<arrow_array::types::Int32Type>();
    assert_eq!(
        chip.values().as_string::<i32>().value(0),
        "#C1",
        "the exact chip id"
    );
    assert_eq!(
        schema.field_with_name("gm").unwrap().metadata()["unit"],
        "S"
    );
    assert_eq!(
        schema.field_with_name("tau").unwrap().metadata()["components"],
        r#"["tau_on","tau_off"]"#
    );
    let steps = batch
        .column(3)
        .as_primitive::<arrow_array::types::Int64Type>();
    assert_eq!(steps.values().to_vec(), vec![0, 1, 2]);
    let start = batch
        .column(5)
        .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    assert!(start.is_null(1) && start.value(0) == 1_755_265_331_123_456);
    let gm = batch.column(7).as_primitive::<Float64Type>();
    assert_eq!(gm.value(0), 1.0);
    assert!(gm.value(1).is_nan());
    let tau = batch.column(8).as_list::<i32>();
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

    assert_eq!(read_meta(&path).unwrap(), m);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn up_to_date_needs_same_hash_and_source_and_rewrite_leaves_one_file() {
    let dir = temp_dir("skip");
    let s = sink(&dir, "aaaaaaaa");
    let m = meta("C", "src1", "builtin:cfg");
    let k = key("C", "t1");
    let first = s.write(&k, &table(), &m).unwrap();
    assert_eq!(s.up_to_date(&k, "src1").map(|u| u.0), Some(first.clone()));
    assert_eq!(s.up_to_date(&k, "src1").unwrap().1.counts().failed_steps, 1);
    assert!(s.up_to_date(&k, "src2").is_none(), "source changed");
    assert!(
        sink(&dir, "bbbbbbbb").up_to_date(&k, "src1").is_none(),
        "config changed"
    );
    assert!(
        s.up_to_date(&key("C", "t2"), "src1").is_none(),
        "other test"
    );

    // Another test of the same device keeps its own file.
    let other = s.write(&key("C", "t2"), &table(), &m).unwrap();
    let second = sink(&dir, "bbbbbbbb").write(&k, &table(), &m).unwrap();
    assert_eq!(s.existing(&k), vec![second]);
    assert_eq!(s.existing(&key("C", "t2")), vec![other]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("cfg"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_config_with_the_same_name_is_refused_naming_both() {
    let dir = temp_dir("clash");
    let a = Sink::open(&dir, "cfg", "/a/cfg.yaml", "aaaaaaaa").unwrap();
    a.write(&key("C", "t1"), &table(), &meta("C", "s", "/a/cfg.yaml"))
        .unwrap();
    let e = Sink::open(&dir, "cfg", "/b/cfg.yaml", "bbbbbbbb").unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("/a/cfg.yaml") && e.contains("/b/cfg.yaml"),
        "{e}"
    );
    assert!(Sink::open(&dir, "cfg", "/a/cfg.yaml", "cccccccc").is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_or_older_output_is_never_up_to_date() {
    let dir = temp_dir("corrupt");
    let s = sink(&dir, "aaaaaaaa");
    std::fs::create_dir_all(s.dir()).unwrap();
    std::fs::write(
        s.dir().join("C-3-t1-feat_20250101-000000_aaaaaaaa.parquet"),
        b"PAR1 junk",
    )
    .unwrap();
    assert!(s.up_to_date(&key("C", "t1"), "src1").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn names_cannot_escape_the_folder_hide_or_start_a_shell_comment() {
    assert_eq!(file_part("a/b\\c\n"), "a_b_c_");
    assert_eq!(file_part("#2025-08"), "2025-08");
    assert_eq!(file_part(".."), "NA");
    assert_eq!(file_part("_x"), "x");
    assert_eq!(file_part("-rf"), "rf");
    assert_eq!(file_part("a#b"), "a#b");
}

#[test]
fn an_unwritable_folder_is_found_before_any_work() {
    let dir = temp_dir("unwritable");
    std::fs::write(dir.join("a-file"), "x").unwrap();
    let s = Sink::open(&dir.join("a-file"), "cfg", "builtin:cfg", "aaaaaaaa").unwrap();
    let e = s.create_folder().unwrap_err().to_string();
    assert!(e.contains("cannot create output folder"), "{e}");
    let ok = sink(&dir, "aaaaaaaa");
    ok.create_folder().unwrap();
    assert!(ok.dir().is_dir());
    assert_eq!(
        std::fs::read_dir(ok.dir()).unwrap().count(),
        0,
        "no probe left"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stale_temp_files_of_dead_writers_are_removed_live_and_remote_ones_kept() {
    let dir = std::env::temp_dir().join(format!("oect-sink-temps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sink = Sink::open(&dir, "c", "builtin:c", "00000000").unwrap();
    std::fs::create_dir_all(sink.dir()).unwrap();
    let dir = sink.dir().to_path_buf();
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
    let _ = std::fs::remove_dir_all(&dir);
}
