//! Python plugins (`tests/fixtures/python/*.py`): the predecessor's extractor classes run
//! as plugins and give the built-in extractors' values in both modes and with 1 and 2
//! workers; an exception, a wrong shape, a killed Python process and a hung step each
//! cost only their step; `plugins list` and `plugins check` treat the files like libraries.
//!
//! Needs a Python with numpy: `/usr/bin/python3` (Debian's python3-numpy), or the one
//! `OECT_PYTHON` names. Without numpy the tests print SKIPPED, except under `.ci/run`
//! (`OECT_CI` set), where they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use oect_e2e::{attrs, float_column, generate, oect_bin, parquet_files, read_table, scratch, show};

/// The interpreter with numpy, or `None` (and SKIPPED printed) where there is none outside CI.
fn python() -> Option<String> {
    let python = std::env::var("OECT_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("OECT_CI").is_none(),
        "{python} cannot import numpy (.ci/run installs python3-numpy)"
    );
    println!("SKIPPED: {python} cannot import numpy");
    None
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/python")
}

fn oect_py(python: &str, args: &[&str]) -> Output {
    Command::new(oect_bin())
        .args(args)
        .env_remove("OECT_PLUGIN_PATH")
        .env("OECT_PYTHON", python)
        .output()
        .expect("run oect")
}

fn run(python: &str, data: &Path, config: &Path, out: &Path, extra: &[&str]) -> Output {
    run_tagged(python, "", data, config, out, extra)
}

/// [`run`] with `OECT_TEST_TAG=tag` in the environment, which its processes inherit.
fn run_tagged(
    python: &str,
    tag: &str,
    data: &Path,
    config: &Path,
    out: &Path,
    extra: &[&str],
) -> Output {
    let plugins = fixtures();
    let mut args = vec![
        "run",
        data.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--plugin-dir",
        plugins.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Command::new(oect_bin())
        .args(args)
        .env_remove("OECT_PLUGIN_PATH")
        .env("OECT_PYTHON", python)
        .env("OECT_TEST_TAG", tag)
        .output()
        .expect("run oect")
}

/// Processes whose environment holds `OECT_TEST_TAG=tag`, once those that are ending are
/// gone.
fn left_behind(tag: &str) -> Vec<u32> {
    // A child killed with its parent (PR_SET_PDEATHSIG) is signalled as the parent exits,
    // and can still be listed for a moment after; give it up to 10 s to be gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let pids = oect_e2e::tagged_processes(tag);
        if pids.is_empty() || std::time::Instant::now() > deadline {
            return pids;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Experiment (`chip-device`) → column name → rendering of the column's values.
type Tables = BTreeMap<String, BTreeMap<String, String>>;

fn tables(out: &Path) -> Tables {
    parquet_files(out)
        .iter()
        .map(|f| {
            let a = attrs(f);
            let id = format!(
                "{}-{}",
                a["chip_id"].as_str().unwrap(),
                a["device_id"].as_str().unwrap()
            );
            let (names, columns) = read_table(f);
            (id, names.into_iter().zip(columns).collect())
        })
        .collect()
}

fn data(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    generate(
        &data,
        &[
            "--experiments",
            "3",
            "--steps",
            "6",
            "--cycles",
            "10",
            "--ragged",
            "--final-transfer",
        ],
    );
    data
}

/// The Python features and, under the same names, the built-ins they imitate; `a` and `b`
/// are the two columns of the `('n_cycles', 2)` feature.
const PYTHON: &str = "features:
  - {name: gm, extractor: transfer.py_gm_max, input: transfer}
  - {name: gm_both, extractor: transfer.py_gm_max, input: transfer, params: {direction: both}}
  - {name: absi, extractor: transfer.py_absI_max, input: transfer}
  - {name: cycles, extractor: transient.py_cycles, input: transient, params: {n_cycles: 10}}
  - {name: pct, extractor: transient.py_cycles, input: transient, params: {n_cycles: 10, method: percentile}}
  - {name: pairs, extractor: transient.py_cycle_pairs, input: transient, params: {n_cycles: 10}}
  - {name: a, func: 'lambda p: p[:, :, 0]', input: pairs, output_shape: [n_steps, n_cycles]}
  - {name: b, func: 'lambda p: p[:, :, 1]', input: pairs, output_shape: [n_steps, n_cycles]}
";
const BUILTIN: &str = "features:
  - {name: gm, extractor: transfer.gm_max, input: transfer}
  - {name: gm_both, extractor: transfer.gm_max, input: transfer, params: {direction: both}}
  - {name: absi, extractor: transfer.absI_max, input: transfer}
  - {name: cycles, extractor: transient.cycles, input: transient, params: {n_cycles: 10, method: fixed_interval}}
  - {name: pct, extractor: transient.cycles, input: transient, params: {n_cycles: 10, method: percentile}}
  - {name: a, extractor: transient.cycles, input: transient, params: {n_cycles: 10, method: fixed_interval}}
  - {name: b, extractor: transient.cycles, input: transient, params: {n_cycles: 10, method: percentile}}
";

#[test]
fn python_extractors_give_the_builtins_values_in_every_mode_and_worker_count() {
    let Some(python) = python() else { return };
    let dir = scratch("pyplug-values");
    let data = data(&dir);
    let (py_cfg, rs_cfg) = (dir.join("py.yaml"), dir.join("rs.yaml"));
    std::fs::write(&py_cfg, PYTHON).unwrap();
    std::fs::write(&rs_cfg, BUILTIN).unwrap();
    let out = dir.join("builtin");
    let o = run(&python, &data, &rs_cfg, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let builtin = tables(&out);
    assert_eq!(builtin.len(), 3);

    let mut first: Option<Tables> = None;
    for mode in ["step", "experiment"] {
        for workers in ["1", "2"] {
            let context = format!("{mode} mode, -j {workers}");
            let out = dir.join(format!("py-{mode}-{workers}"));
            let o = run(
                &python,
                &data,
                &py_cfg,
                &out,
                &["--mode", mode, "-j", workers],
            );
            assert_eq!(o.status.code(), Some(0), "{context}: {}", show(&o));
            let stdout = String::from_utf8_lossy(&o.stdout);
            assert!(stdout.contains(" 0 failed steps"), "{context}: {stdout}");
            let got = tables(&out);
            // Every column of the built-ins' tables (keys and features) is the same here.
            for (exp, columns) in &builtin {
                for (name, values) in columns {
                    assert_eq!(
                        got[exp].get(name),
                        Some(values),
                        "{context}: {exp} column {name}"
                    );
                }
                assert!(got[exp].contains_key("pairs"), "{context}");
            }
            match &first {
                None => first = Some(got),
                Some(f) => assert_eq!(&got, f, "{context}: the tables differ"),
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A class as the predecessor wrote them: no `params` declaration, `params.get` with a
/// default, and the predecessor's import line.
const UNDECLARED: &str = r#"import numpy as np
from infra.features_v2.extractors.base import BaseExtractor, register


@register("transfer.scaled_max")
class ScaledMax(BaseExtractor):
    """max |Id| times a factor"""

    def extract_single_step(self, step_data, params):
        return float(np.max(np.abs(step_data["Id"]))) * params.get("factor", 1.0)

    @property
    def output_shape(self):
        return ()
"#;

#[test]
fn a_class_that_declares_no_params_gets_the_configs_params() {
    let Some(python) = python() else { return };
    let dir = scratch("pyplug-undeclared");
    let data = data(&dir);
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("scaled.py"), UNDECLARED).unwrap();
    let config = dir.join("scaled.yaml");
    std::fs::write(
        &config,
        "features:
  - {name: scaled, extractor: transfer.scaled_max, input: transfer, params: {factor: 2.5}}
  - {name: plain, extractor: transfer.scaled_max, input: transfer}
  - {name: absi, extractor: transfer.absI_max, input: transfer}
",
    )
    .unwrap();
    let out = dir.join("out");
    let o = oect_py(
        &python,
        &[
            "run",
            data.to_str().unwrap(),
            "-c",
            config.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--plugin-dir",
            plugins.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let files = parquet_files(&out);
    assert_eq!(files.len(), 3);
    for f in &files {
        let (scaled, plain) = (float_column(f, "scaled"), float_column(f, "plain"));
        let absi = float_column(f, "absi");
        assert!(!absi.is_empty() && absi.iter().all(|v| v.is_finite() && *v > 0.0));
        // The built-in rounds through float32; the Python class does not.
        let f32_close = |x: f64, y: f64| (x - y).abs() <= y.abs() * f64::from(f32::EPSILON);
        for ((s, p), a) in scaled.iter().zip(&plain).zip(&absi) {
            assert!(
                f32_close(*p, *a),
                "{}: without params {p} != {a}",
                f.display()
            );
            assert!(
                (s - 2.5 * p).abs() <= 1e-12 * p,
                "{}: {s} != 2.5 x {p}",
                f.display()
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The experiment whose step misbehaves, and its step.
const TARGET: &str = "#SYN0002-2";
const STEP: usize = 3;

fn fault_config(how: &str) -> String {
    format!(
        "features:
  - {{name: bad, extractor: pyfault.misbehave, input: transfer, params: {{how: {how}, at: {STEP}, experiment: \"{TARGET}\"}}}}
  - {{name: gm, extractor: transfer.py_gm_max, input: transfer}}
  - {{name: cycles, extractor: transient.py_cycles, input: transient, params: {{n_cycles: 10}}}}
  - {{name: peak, extractor: transient.peak_current, input: transient}}
"
    )
}

#[test]
fn an_exception_a_wrong_shape_a_killed_python_process_and_a_hang_cost_their_step() {
    let Some(python) = python() else { return };
    let dir = scratch("pyplug-faults");
    let data = data(&dir);
    let cfg = |how: &str| {
        let path = dir.join(format!("{how}.yaml"));
        std::fs::write(&path, fault_config(how)).unwrap();
        path
    };
    let out = dir.join("reference");
    let o = run(&python, &data, &cfg("none"), &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let reference = tables(&out);
    for (how, kind, says) in [
        (
            "raise",
            "panic",
            "RuntimeError: fixture failure at step 3 (misbehave.py line",
        ),
        (
            "shape",
            "wrong_shape",
            "returned shape [3] (3 values) but declares a scalar",
        ),
        (
            "kill",
            "crashed",
            "died during this step (killed by SIGKILL)",
        ),
        ("hang", "timeout", "no answer within 2 s (--step-timeout)"),
    ] {
        for mode in ["step", "experiment"] {
            let context = format!("{how}, {mode} mode");
            let out = dir.join(format!("{how}-{mode}"));
            let args = ["--mode", mode, "-j", "2", "--json", "--step-timeout", "2"];
            let tag = format!("oect-pyplug-{how}-{mode}-{}", std::process::id());
            let o = run_tagged(&python, &tag, &data, &cfg(how), &out, &args);
            // The Python process of a worker ended for a hung step went with it.
            assert_eq!(
                left_behind(&tag),
                Vec::<u32>::new(),
                "{context}: left behind"
            );
            assert_eq!(o.status.code(), Some(1), "{context}: {}", show(&o));
            let summary: serde_json::Value = serde_json::from_slice(&o.stdout)
                .unwrap_or_else(|e| panic!("{context}: not JSON ({e}): {}", show(&o)));
            for e in summary["experiments"].as_array().unwrap() {
                let target = e["input"].as_str().unwrap().contains(TARGET);
                let want = if target {
                    serde_json::json!({ kind: 1 })
                } else {
                    serde_json::json!({})
                };
                assert_eq!(e["failed_by_kind"], want, "{context}: {e}");
            }
            // The output records the step's failure, kind and message.
            let file = parquet_files(&out)
                .into_iter()
                .find(|f| attrs(f)["chip_id"] == "#SYN0002")
                .unwrap();
            let meta = attrs(&file);
            assert_eq!(meta["feature_errors"]["bad"], 1, "{context}: {meta}");
            let errors = meta["errors"].as_array().unwrap();
            assert_eq!(errors.len(), 1, "{context}: {errors:?}");
            let e = &errors[0];
            assert_eq!(
                (&e["feature"], &e["step"], &e["kind"]),
                (&"bad".into(), &STEP.into(), &kind.into()),
                "{context}: {e}"
            );
            let message = e["message"].as_str().unwrap();
            assert!(message.contains(says), "{context}: {message}");
            // Everything else is as in the reference run.
            let got = tables(&out);
            assert_eq!(got.len(), 3, "{context}");
            for (exp, columns) in &reference {
                for (name, values) in columns {
                    if exp == TARGET && name == "bad" {
                        assert_ne!(&got[exp][name], values, "{context}: {exp} {name}");
                    } else {
                        assert_eq!(&got[exp][name], values, "{context}: {exp} {name}");
                    }
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plugins_list_shows_python_extractors_and_check_runs_the_kit_on_them() {
    let Some(python) = python() else { return };
    let dir = fixtures();
    let o = oect_py(
        &python,
        &["plugins", "list", "--plugin-dir", dir.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for line in [
        "predecessor_transfer 0.0.0 (plugin API 0.2.0)",
        "transfer.py_gm_max       transfer (vg, id)  maximum transconductance |dId/dVg| of a sweep half [S] (per step: a scalar)",
        "transient.py_cycle_pairs transient (t, i)   per cycle [evenly spaced sample, sample among the largest |I|] [A] (per step: [n_cycles, 2])",
        "n_cycles               non-negative integer, default 100 — most values per step",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }
    // The built-ins keep showing, with their shapes too.
    assert!(out.contains("transient.tau_on_off"), "{out}");
    assert!(out.contains("[s] (per step: [n_cycles, 2])"), "{out}");

    let check = |file: &str| {
        let path = dir.join(file);
        oect_py(
            &python,
            &["plugins", "check", path.to_str().unwrap(), "--json"],
        )
    };
    let o = check("transient_like.py");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["plugin"]["name"], "transient_like", "{report}");
    let items = report["checks"].as_array().unwrap();
    for check in [
        "shape",
        "determinism",
        "threads",
        "edge_inputs",
        "wrong_type",
    ] {
        let item = items
            .iter()
            .find(|i| i["subject"] == "transient.py_cycle_pairs" && i["check"] == check)
            .unwrap_or_else(|| panic!("no {check} item: {report}"));
        assert_eq!(item["result"], "pass", "{item}");
    }
    // A predecessor class that declares no `params` accepts any key: the kit says so.
    let o = check("predecessor_transfer.py");
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let failed: Vec<(&str, &str)> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["result"] == "fail")
        .map(|i| (i["subject"].as_str().unwrap(), i["check"].as_str().unwrap()))
        .collect();
    assert_eq!(
        failed,
        [("transfer.py_absI_max", "unknown_key")],
        "{report}"
    );

    // Without numpy: one line at load time naming the file, not a crash mid-run.
    let o = oect_py(
        "/nonexistent/python3",
        &["plugins", "list", "--plugin-dir", dir.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("transient_like.py"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("skipped, the Python interpreter '/nonexistent/python3' cannot be started"),
        "{line}"
    );
}

/// The `bash` blocks of `docs/WRITING_PLUGINS.md`'s Python section (the Rust guide's
/// blocks are `sh`, run by `tests/guide.rs`).
fn python_guide_script() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(repo.join("docs/WRITING_PLUGINS.md")).unwrap();
    let section = text
        .split("\n## Writing a plugin in Python\n")
        .nth(1)
        .expect("the guide has a Python section");
    let mut script = String::from("set -euo pipefail\n");
    let mut inside = false;
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside && line.trim_start() == "```bash";
            continue;
        }
        if inside {
            script.push_str(line);
            script.push('\n');
        }
    }
    assert!(
        script.contains("plugins check"),
        "the section lost its check step"
    );
    script
}

#[test]
fn the_python_plugin_guide_works_as_written() {
    let Some(python) = python() else { return };
    let work = scratch("pyplug-guide");
    let out = Command::new("bash")
        .arg("-c")
        .arg(python_guide_script())
        .env("OECT", oect_bin())
        .env("WORK", &work)
        .env("OECT_PYTHON", &python)
        .env_remove("OECT_PLUGIN_PATH")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for text in [
        "mylab_py 0.1.0 (plugin API 0.2.0)",
        "mylab.part_means",
        "(per step: [4])",
        "checks: ",
        " 0 failed, 0 skipped",
        "2 written",
        " 0 failed steps",
    ] {
        assert!(stdout.contains(text), "no {text:?} in\n{stdout}");
    }
    let files = parquet_files(&work.join("py-features"));
    assert_eq!(files.len(), 2, "{stdout}");
    for f in &files {
        let columns = oect_e2e::float_columns(f);
        assert!(columns["on_off"].iter().all(|r| *r > 100.0), "{columns:?}");
        for k in 0..5 {
            let part = &columns[&format!("parts_{k}")];
            assert!(part.iter().all(|i| i.is_finite()), "{columns:?}");
        }
    }
    std::fs::remove_dir_all(&work).unwrap();
}
