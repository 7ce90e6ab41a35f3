//! `docs/WRITING_PLUGINS.md`, followed verbatim: its shell blocks build a plugin out
//! of tree (its own cargo workspace and target folder) after the host exists, check
//! it, and run a config that uses it, without rebuilding or relinking the host.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use oect_e2e::{oect, oect_bin, parquet_files, scratch, show};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn guide_script() -> String {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(repo.join("docs/WRITING_PLUGINS.md")).unwrap();
    let mut script = String::from("set -euo pipefail\n");
    let mut inside = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside && line.trim_start() == "```sh";
            continue;
        }
        if inside {
            script.push_str(line);
            script.push('\n');
        }
    }
    assert!(
        script.contains("cargo build --release"),
        "the guide lost its build step"
    );
    script
}

#[test]
fn the_plugin_guide_works_as_written() {
    let bin = oect_bin();
    let host_before = std::fs::metadata(&bin).unwrap().modified().unwrap();
    let work = scratch("guide");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(guide_script())
        .env("OECT", &bin)
        .env("WORK", &work)
        .env("OECT_SRC", &repo)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("OECT_PLUGIN_PATH")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("mylab.subthreshold_swing"), "{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");

    let files = parquet_files(&work.join("features"));
    assert_eq!(files.len(), 1, "{stdout}");
    let batch = ParquetRecordBatchReaderBuilder::try_new(File::open(&files[0]).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let swing = batch
        .column_by_name("ss_forward")
        .unwrap()
        .as_primitive::<Float64Type>();
    // The generator's sigmoid has a width of 70 mV: 70 mV × ln 10 ≈ 161 mV/decade.
    for s in swing.values() {
        assert!((120.0..220.0).contains(s), "swing {s} mV/dec");
    }
    let ratio = batch
        .column_by_name("on_off")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert!(ratio.values().iter().all(|r| *r > 100.0), "{ratio:?}");

    // The host was used as built: the plugin needed no rebuild or relink of it.
    assert_eq!(
        std::fs::metadata(&bin).unwrap().modified().unwrap(),
        host_before
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// The guide's Rust excerpt is the template's code (with the guide's namespace), so the
/// two cannot drift apart.
#[test]
fn the_guide_quotes_the_template() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(repo.join("docs/WRITING_PLUGINS.md")).unwrap();
    let template = std::fs::read_to_string(repo.join("plugins/example/src/lib.rs")).unwrap();
    let template: Vec<&str> = template.lines().collect();
    let mut blocks = 0;
    for block in guide.split("```rust\n").skip(1) {
        let code = block.split("```").next().unwrap();
        let mut at = 0;
        for line in code.lines().filter(|l| !l.starts_with("use ")) {
            let line = line.replace("mylab.", "example.");
            let found = template[at..].iter().position(|t| *t == line);
            let Some(k) = found else {
                panic!("the guide's line {line:?} is not in the template (in this order)")
            };
            at += k + 1;
        }
        blocks += 1;
    }
    assert_eq!(blocks, 1, "the guide quotes the template once");
}

#[test]
fn the_conformance_check_fails_a_misbehaving_plugin_by_name() {
    let o = oect(&[
        "plugins",
        "check",
        oect_e2e::library("faulty_fixture").to_str().unwrap(),
        "--json",
        // The fixture's extractors that sleep or spin count as hung after this.
        "--timeout",
        "10",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let text = report.to_string();
    assert!(text.contains("fixture panic at step 3"), "{text}");
    let o = oect(&[
        "plugins",
        "check",
        oect_e2e::library("oect_transfer").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let o = oect(&[
        "plugins",
        "check",
        oect_e2e::library("oect_transient").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
}
