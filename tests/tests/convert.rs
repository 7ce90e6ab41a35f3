//! `oect convert` and `oect run` on the instrument's raw export folders.
//!
//! Ground truth is `shared/tools/make_synthetic_h5.py --raw-dir`: it writes an export and, beside
//! it, the HDF5 file the predecessor's converter makes from it (checked against the real
//! converter, `specs/hdf5_format.md` §9). The files are compared object by object with
//! `tests/scripts/compare_h5.py` (h5py), which CI installs (`python3-h5py`).

use std::path::{Path, PathBuf};
use std::process::Command;

use oect_e2e::{float_column, oect, parquet_files, read_table, run_config, scratch, show};

/// The interpreter with numpy and h5py: `OECT_PYTHON`, else the system one (Debian's
/// `python3-h5py`), else whatever `python3` is on the path.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OECT_PYTHON") {
        return p.into();
    }
    let system = Path::new("/usr/bin/python3");
    if system.is_file() {
        system.into()
    } else {
        "python3".into()
    }
}

fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OECT_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared"))
        .find(|s| s.join("golden").is_dir())
        .expect("shared/ not found above the crate; set OECT_SHARED_DIR")
}

fn run_python(args: &[&str]) -> String {
    let out = Command::new(python())
        .args(args)
        .output()
        .expect("python3 (with numpy and h5py) is needed: apt-get install python3-h5py");
    assert!(
        out.status.success(),
        "{:?} failed:\n{}{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the predecessor-equivalent tool: HDF5 into `h5_dir`, the export into `raw_dir`.
/// Returns (HDF5 file, export folder).
fn reference(h5_dir: &Path, raw_dir: &Path, args: &[&str]) -> (PathBuf, PathBuf) {
    let tool = shared_dir().join("tools/make_synthetic_h5.py");
    let mut all = vec![
        tool.to_str().unwrap(),
        "--out-dir",
        h5_dir.to_str().unwrap(),
        "--raw-dir",
        raw_dir.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = run_python(&all);
    let wrote = |prefix: &str| -> PathBuf {
        let line = out
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' in {out}"));
        let rest = &line[prefix.len()..];
        PathBuf::from(rest.split("  (").next().unwrap().trim())
    };
    (wrote("wrote "), wrote("wrote raw export "))
}

/// Object-by-object comparison; panics with the differences.
fn assert_same_h5(expected: &Path, actual: &Path, ignore: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/compare_h5.py");
    let mut args = vec![
        script.to_str().unwrap().to_owned(),
        expected.to_str().unwrap().to_owned(),
        actual.to_str().unwrap().to_owned(),
    ];
    for a in ignore {
        args.extend(["--ignore-attr".to_owned(), (*a).to_owned()]);
    }
    let out = Command::new(python())
        .args(&args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{} and {} differ:\n{}{}",
        expected.display(),
        actual.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn convert(inputs: &[&Path], out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["convert".to_owned()];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap().to_owned()));
    args.extend(["-o".to_owned(), out.to_str().unwrap().to_owned()]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    oect(&args)
}

fn h5_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .collect();
    v.sort();
    v
}

fn csv_files(folder: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    v.sort();
    v
}

/// Rewrites every CSV of `folder` the way other tools save them, with the same numbers: odd
/// steps UTF-8 with a BOM and upper-case exponents, even steps GBK with CRLF line ends and an
/// extra Chinese column ("备注" = remark, value "无" = none).
fn resave_csvs(folder: &Path) {
    for (i, path) in csv_files(folder).into_iter().enumerate() {
        let text = std::fs::read_to_string(&path).unwrap();
        let bytes = if i % 2 == 0 {
            let mut b = b"\xef\xbb\xbf".to_vec();
            b.extend(text.replace('e', "E").bytes());
            b
        } else {
            let mut b = Vec::new();
            for (k, line) in text.lines().enumerate() {
                b.extend_from_slice(line.as_bytes());
                // GBK bytes of "备注" and "无"
                b.extend_from_slice(if k == 0 {
                    b",\xb1\xb8\xd7\xa2"
                } else {
                    b",\xce\xde"
                });
                b.extend_from_slice(b"\r\n");
            }
            b
        };
        std::fs::write(&path, bytes).unwrap();
    }
}

#[test]
fn exports_convert_to_the_predecessors_files_and_run_identically() {
    let dir = scratch("convert-ref");
    let (py, raw, out) = (dir.join("py"), dir.join("raw"), dir.join("out"));
    let sets: [&[&str]; 3] = [
        &[
            "--n-steps",
            "6",
            "--n-cycles",
            "10",
            "--ragged",
            "--final-transfer",
            "--description",
            "稳定性测试",
            "--seed",
            "1",
        ],
        &[
            "--n-steps",
            "4",
            "--n-cycles",
            "8",
            "--device-type",
            "P",
            "--ragged",
            "--chip-id",
            "#P7",
            "--seed",
            "2",
        ],
        &[
            "--n-steps",
            "3",
            "--n-cycles",
            "6",
            "--n-points",
            "182",
            "--vg-start",
            "-0.3",
            "--sample-rate",
            "500",
            "--chip-id",
            "#RESAVED",
            "--seed",
            "3",
        ],
    ];
    let refs: Vec<(PathBuf, PathBuf)> = sets.iter().map(|a| reference(&py, &raw, a)).collect();
    // other tools' CSV dialects, same numbers
    resave_csvs(&refs[2].1);
    // a test_info.json already cleaned by the lab's batch_clean_json_files gives the same
    // file: the cleaned form is what the reference stored in raw/json
    let cleaned = dir.join("cleaned").join(refs[0].1.file_name().unwrap());
    std::fs::create_dir_all(&cleaned).unwrap();
    for entry in std::fs::read_dir(&refs[0].1).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, cleaned.join(p.file_name().unwrap())).unwrap();
    }
    let json = run_python(&[
        "-c",
        "import h5py, sys; sys.stdout.write(h5py.File(sys.argv[1], 'r')['raw/json'][()].decode())",
        refs[0].0.to_str().unwrap(),
    ]);
    std::fs::write(cleaned.join("test_info.json"), json).unwrap();

    let o = convert(&[&raw], &out, &[]);
    assert!(o.status.success(), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("3 export folders: 3 converted"), "{stderr}");
    for (h5, _) in &refs {
        let ours = out.join(h5.file_name().unwrap());
        // conversion time differs by nature; everything else, source folder included, is equal
        assert_same_h5(h5, &ours, &["export_time_utc"]);
    }
    // the copy of the cleaned export, alone, differs only in where it came from
    let copy_out = dir.join("copy-out");
    let o = convert(&[&cleaned], &copy_out, &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert_same_h5(
        &refs[0].0,
        &h5_files(&copy_out)[0],
        &[
            "export_time_utc",
            "source_folder_name",
            "source_folder_path",
        ],
    );

    // oect run: identical tables from the reference files and from the converted ones
    for config in ["v2_mixed", "transient_tau"] {
        let (a, b) = (
            dir.join(format!("feat-py-{config}")),
            dir.join(format!("feat-oect-{config}")),
        );
        // both sides exit alike (0, or 1 where a step fails on both)
        let (oa, ob) = (
            run_config(&py, config, &a, &[]),
            run_config(&out, config, &b, &[]),
        );
        assert!(matches!(oa.status.code(), Some(0 | 1)), "{}", show(&oa));
        assert_eq!(
            oa.status.code(),
            ob.status.code(),
            "{}\n{}",
            show(&oa),
            show(&ob)
        );
        let (fa, fb) = (parquet_files(&a), parquet_files(&b));
        assert_eq!(fa.len(), 3);
        assert_eq!(fb.len(), 3);
        for (x, y) in fa.iter().zip(&fb) {
            assert_eq!(
                read_table(x),
                read_table(y),
                "{config}: {} vs {}",
                x.display(),
                y.display()
            );
        }
    }
}

#[test]
fn a_missing_csv_skips_its_step_and_says_so() {
    let dir = scratch("convert-missing");
    let (py, raw, out) = (dir.join("py"), dir.join("raw"), dir.join("out"));
    let (h5, folder) = reference(
        &py,
        &raw,
        &["--n-steps", "4", "--n-cycles", "5", "--seed", "5"],
    );
    std::fs::remove_file(folder.join("4_transient.csv")).unwrap();
    let o = convert(&[&folder], &out, &[]);
    assert!(o.status.success(), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("step 4 (transient, 4_transient.csv): no CSV file, step skipped"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("(4 transfer, 3 transient steps)"));

    let ours = hdf5::File::open(out.join(h5.file_name().unwrap())).unwrap();
    let theirs = hdf5::File::open(&h5).unwrap();
    let data = |f: &hdf5::File| {
        f.dataset("transient/measurement_data")
            .unwrap()
            .read_2d::<f64>()
            .unwrap()
    };
    let (a, b) = (data(&theirs), data(&ours));
    // 5 cycles of 250 points per step; the second step (columns 1250..2500) is gone
    assert_eq!((a.ncols(), b.ncols()), (5000, 3750));
    for row in [1, 2] {
        let kept: Vec<f64> = (0..5000)
            .filter(|c| !(1250..2500).contains(c))
            .map(|c| a[[row, c]])
            .collect();
        assert_eq!(b.row(row).to_vec(), kept, "row {row}");
    }
    // continuous time runs on without a gap: 1 ms apart throughout
    assert!(b
        .row(0)
        .iter()
        .enumerate()
        .all(|(k, t)| (t - k as f64 * 1e-3).abs() < 1e-9));
    let table = ours.dataset("transient/step_info_table").unwrap();
    assert_eq!(table.shape(), [3]);
}

#[test]
fn bad_folders_fail_alone_and_leave_nothing() {
    let dir = scratch("convert-bad");
    let (py, raw, out) = (dir.join("py"), dir.join("raw"), dir.join("out"));
    let (_, good) = reference(
        &py,
        &raw,
        &["--n-steps", "2", "--n-cycles", "4", "--seed", "6"],
    );
    let broken = raw.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("test_info.json"), "{\"steps\": [").unwrap();
    let empty = raw.join("no-steps");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("test_info.json"), "{\"test_id\": \"x\"}").unwrap();
    let o = convert(&[&raw], &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "FAILED {}: test_info.json: not valid JSON",
            broken.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "FAILED {}: test_info.json: no \"steps\" list",
            empty.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("3 export folders: 1 converted, 0 skipped, 2 failed"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the good file, no temporary: {left:?}");
    assert!(good.exists());
    let o = convert(&[&dir.join("nothing-here")], &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

#[test]
fn conflicts_update_skip_overwrite_rename() {
    let dir = scratch("convert-conflict");
    let (raw, out) = (dir.join("raw"), dir.join("out"));
    let o = oect(&[
        "generate",
        "--raw-export",
        "-o",
        raw.to_str().unwrap(),
        "--steps",
        "3",
        "--cycles",
        "4",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let stdout = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let first = convert(&[&raw], &out, &[]);
    assert!(stdout(&first).starts_with("wrote "), "{}", show(&first));
    let file = h5_files(&out).remove(0);
    let again = convert(&[&raw], &out, &[]);
    assert!(
        stdout(&again).contains("up to date with the export"),
        "{}",
        show(&again)
    );
    let skip = convert(&[&raw], &out, &["--on-conflict", "skip"]);
    assert!(
        stdout(&skip).contains("--on-conflict skip"),
        "{}",
        show(&skip)
    );
    // a changed export is converted again by the default strategy
    let export = std::fs::read_dir(&raw)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let csv = export.join("1_transfer.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    std::fs::write(
        &csv,
        text.lines().take(100).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let updated = convert(&[&raw], &out, &[]);
    assert!(stdout(&updated).starts_with("wrote "), "{}", show(&updated));
    let n = hdf5::File::open(&file)
        .unwrap()
        .dataset("transfer/measurement_data")
        .unwrap()
        .shape();
    assert_eq!(n, [3, 2, 242]);
    let overwrite = convert(&[&raw], &out, &["--on-conflict", "overwrite"]);
    assert!(
        stdout(&overwrite).starts_with("wrote "),
        "{}",
        show(&overwrite)
    );
    let rename = convert(&[&raw], &out, &["--on-conflict", "rename"]);
    assert!(stdout(&rename).contains("_2.h5"), "{}", show(&rename));
    assert_eq!(h5_files(&out).len(), 2);
    // two exports of one test in one batch never write the same file
    let copy = raw.join("copy-of-the-export");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&export).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
    }
    let both = convert(&[&raw], &dir.join("out2"), &[]);
    assert_eq!(both.status.code(), Some(1), "{}", show(&both));
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("writes the same file"),
        "{}",
        show(&both)
    );
    assert_eq!(h5_files(&dir.join("out2")).len(), 1);
}

#[test]
fn a_running_test_converts_the_steps_so_far() {
    let dir = scratch("convert-running");
    let (raw, out) = (dir.join("raw"), dir.join("out"));
    let o = oect(&[
        "generate",
        "--raw-export",
        "-o",
        raw.to_str().unwrap(),
        "--steps",
        "4",
        "--cycles",
        "4",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let export = std::fs::read_dir(&raw)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    // as the instrument leaves it after three steps: test_info_temp.json, no test_info.json
    let mut info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.join("test_info.json")).unwrap()).unwrap();
    std::fs::remove_file(export.join("test_info.json")).unwrap();
    info["steps"].as_array_mut().unwrap().truncate(3);
    info["status"] = "in_progress".into();
    info.as_object_mut().unwrap().remove("summary");
    // a null has no HDF5 value (the predecessor stops on it): it is left out
    info["metadata"]["batch_id"] = serde_json::Value::Null;
    std::fs::write(export.join("test_info_temp.json"), info.to_string()).unwrap();
    let o = convert(&[&raw], &out, &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("(2 transfer, 1 transient steps) (test still running)"),
        "{}",
        show(&o)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("still running (test_info_temp.json)"));
    let f = hdf5::File::open(&h5_files(&out)[0]).unwrap();
    let status: hdf5::types::VarLenAscii = f.attr("status").unwrap().read_scalar().unwrap();
    assert_eq!(status.as_str(), "in_progress");
    let json_name: hdf5::types::VarLenUnicode =
        f.attr("source_json_name").unwrap().read_scalar().unwrap();
    assert_eq!(json_name.as_str(), "test_info_temp.json");
}

/// The lab's real transient recording (`Time,Id`, upper-case `E`, 32 610 samples at 1 kHz,
/// 163 cycles of 100 ms off + 100 ms on) in an export folder of one transient step: it converts
/// to one transient step with those samples and AutoTau runs on it, giving a turn-off tau of
/// about 1 ms and a turn-on tau of a few ms (the on-current is negative, so the signal rises at
/// turn-off: column 0 is the rising edge).
#[test]
fn the_real_transient_recording_converts_and_runs() {
    let dir = scratch("convert-real");
    let export = dir.join("raw/Test_Unit_A1_real_autotau");
    std::fs::create_dir_all(&export).unwrap();
    let csv = shared_dir().join("data/real/durian-leader_autotau/transient.csv");
    std::fs::copy(&csv, export.join("1_transient.csv")).unwrap();
    let info = serde_json::json!({
        "test_id": "test_20250321000000_autotau0", "device_id": "Test Unit A1", "test_type": "workflow",
        "name": "autotau example", "description": "real transient",
        "metadata": {"chip_id": "#REAL", "device_number": "1", "sync_mode": false},
        "steps": [{"type": "transient", "params": {"timeStep": 1, "bottomTime": 100, "topTime": 100,
                   "gateVoltageBottom": 0, "gateVoltageTop": 600, "cycles": 163},
                   "reason": "transient", "data_file": "1_transient.csv"}],
        "status": "completed",
    });
    std::fs::write(export.join("test_info.json"), info.to_string()).unwrap();
    let out = dir.join("h5");
    let o = convert(&[&export], &out, &[]);
    assert!(o.status.success(), "{}", show(&o));
    let file = out.join("#REAL-1-real transient-test_20250321000000_autotau0.h5");
    let data = hdf5::File::open(&file)
        .unwrap()
        .dataset("transient/measurement_data")
        .unwrap()
        .read_2d::<f64>()
        .unwrap();
    assert_eq!(data.ncols(), 32_610);
    assert_eq!((data[[1, 0]], data[[1, 32_609]]), (0.001, 32.61));
    assert_eq!(data[[2, 1]], -9.93753e-05);

    let feat = dir.join("features");
    let o = run_config(&out, "transient_tau", &feat, &[]);
    assert!(o.status.success(), "{}", show(&o));
    let table = &parquet_files(&feat)[0];
    let (rising, falling) = (
        float_column(table, "tau_on_mean")[0],
        float_column(table, "tau_off_mean")[0],
    );
    assert!(
        (0.5e-3..2.0e-3).contains(&rising),
        "turn-off (rising) tau {rising}"
    );
    assert!(
        (4.0e-3..12.0e-3).contains(&falling),
        "turn-on (falling) tau {falling}"
    );
}

#[test]
fn run_on_export_folders_converts_then_skips_what_is_up_to_date() {
    let dir = scratch("run-raw");
    let (raw, out) = (dir.join("raw"), dir.join("out"));
    let o = oect(&[
        "generate",
        "--raw-export",
        "-o",
        raw.to_str().unwrap(),
        "--experiments",
        "2",
        "--devices-per-chip",
        "2",
        "--steps",
        "3",
        "--cycles",
        "4",
        "--transfer-only",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let statuses = |o: &std::process::Output| -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", show(o)));
        v["experiments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["status"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = run_config(&raw, "v2_transfer_basic", &out, &["--json"]);
    assert!(first.status.success(), "{}", show(&first));
    assert_eq!(statuses(&first), ["written", "written"]);
    assert_eq!(
        String::from_utf8_lossy(&first.stderr)
            .matches("converted ")
            .count(),
        2
    );
    // two devices of one chip, converted into OUT/h5
    let h5 = h5_files(&out.join("h5"));
    let names: Vec<String> = h5
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names[0].starts_with("#SYN0001-1-") && names[1].starts_with("#SYN0001-2-"),
        "{names:?}"
    );

    let again = run_config(&raw, "v2_transfer_basic", &out, &["--json"]);
    assert!(again.status.success(), "{}", show(&again));
    assert_eq!(statuses(&again), ["skipped", "skipped"]);
    assert!(!String::from_utf8_lossy(&again.stderr).contains("converted "));

    // one export changes: only it is converted and computed again
    let export = std::fs::read_dir(&raw)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .min()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let csv = export.join("1_transfer.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    std::fs::write(
        &csv,
        text.lines().take(150).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let changed = run_config(
        &raw,
        "v2_transfer_basic",
        &out,
        &["--json", "--h5-dir", out.join("h5").to_str().unwrap()],
    );
    assert!(changed.status.success(), "{}", show(&changed));
    let mut s = statuses(&changed);
    s.sort();
    assert_eq!(s, ["skipped", "written"]);
    assert_eq!(
        String::from_utf8_lossy(&changed.stderr)
            .matches("converted ")
            .count(),
        1
    );
}
