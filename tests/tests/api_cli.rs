//! What the Python package (`python/oect`) relies on from the command line: progress as
//! JSON lines, per-experiment times in the `--json` summary, and `generate --chip`.

use oect_e2e::{generate, oect, run_config, scratch, show};

fn events(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn progress_json_is_one_event_per_line_on_stderr() {
    let dir = scratch("progress-json");
    let data = dir.join("data");
    let out = dir.join("out");
    generate(
        &data,
        &["--experiments", "3", "--steps", "4", "--transfer-only"],
    );
    std::fs::write(data.join("broken.h5"), b"this is not HDF5").unwrap();
    for mode in ["step", "experiment"] {
        let o = run_config(
            &data,
            "v2_quick_analysis",
            &out,
            &["--progress", "json", "--json", "--mode", mode, "--force"],
        );
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        let all = events(&o.stderr);
        // Step counts: one event per opened experiment and per finished chunk, up to the steps of the
        // experiments opened so far (3 files × 4 steps; the broken one has none).
        let steps: Vec<&serde_json::Value> = all.iter().filter(|e| e["event"] == "steps").collect();
        assert!(!steps.is_empty(), "{mode}: {all:?}");
        let counts: Vec<u64> = steps.iter().map(|e| e["done"].as_u64().unwrap()).collect();
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "{mode}: {counts:?}"
        );
        assert_eq!(counts.last(), Some(&12), "{mode}: {all:?}");
        assert!(
            steps
                .iter()
                .all(|e| e["done"].as_u64() <= e["total"].as_u64()),
            "{all:?}"
        );
        assert!(
            steps
                .iter()
                .all(|e| e["input"].as_str().unwrap().ends_with(".h5")),
            "{all:?}"
        );
        let ev: Vec<serde_json::Value> =
            all.into_iter().filter(|e| e["event"] != "steps").collect();
        assert_eq!(ev.len(), 6, "{mode}: {ev:?}");
        assert_eq!(ev[0]["event"], "start");
        assert_eq!(ev[0]["experiments"], 4);
        let settled = &ev[1..5];
        assert!(settled.iter().all(|e| e["event"] == "experiment"), "{ev:?}");
        let done: Vec<u64> = settled
            .iter()
            .map(|e| e["done"].as_u64().unwrap())
            .collect();
        assert_eq!(done, [1, 2, 3, 4]);
        assert!(settled.iter().all(|e| e["total"] == 4));
        let mut statuses: Vec<&str> = settled
            .iter()
            .map(|e| e["status"].as_str().unwrap())
            .collect();
        statuses.sort();
        assert_eq!(statuses, ["failed", "written", "written", "written"]);
        let broken = settled.iter().find(|e| e["status"] == "failed").unwrap();
        assert!(broken["input"].as_str().unwrap().ends_with("broken.h5"));
        assert_eq!(ev[5]["event"], "finish");
        assert_eq!(ev[5]["done"], 4);
        assert!(ev[5]["seconds"].as_f64().unwrap() > 0.0);

        // The summary on stdout is untouched, with each written file's time.
        let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for e in summary["experiments"].as_array().unwrap() {
            if e["status"] == "written" {
                assert!(e["seconds"].as_f64().unwrap() > 0.0, "{e}");
            }
        }
    }
    // Up-to-date experiments are events too.
    let o = run_config(
        &data,
        "v2_quick_analysis",
        &out,
        &["--progress", "json", "--json"],
    );
    let ev = events(&o.stderr);
    assert_eq!(
        ev.iter().filter(|e| e["status"] == "skipped").count(),
        3,
        "{ev:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn progress_none_and_the_default_off_a_terminal_print_no_progress() {
    let dir = scratch("progress-none");
    let data = dir.join("data");
    generate(&data, &["--steps", "3", "--transfer-only"]);
    for extra in [&["--progress", "none"][..], &[]] {
        let o = run_config(
            &data,
            "v2_quick_analysis",
            &dir.join("out"),
            &[extra, &["--force"][..]].concat(),
        );
        assert!(o.status.success(), "{}", show(&o));
        assert!(o.stderr.is_empty(), "{}", show(&o));
    }
    let o = run_config(
        &data,
        "v2_quick_analysis",
        &dir.join("out"),
        &["--progress", "fancy"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generate_chip_puts_every_experiment_on_one_chip() {
    let dir = scratch("generate-chip");
    let files = generate(
        &dir,
        &[
            "--experiments",
            "3",
            "--steps",
            "2",
            "--transfer-only",
            "--chip",
            "#20250804008",
        ],
    );
    assert_eq!(files.len(), 3);
    let mut devices = Vec::new();
    for f in &files {
        let o = oect(&["inspect", "--json", f.to_str().unwrap()]);
        assert!(o.status.success(), "{}", show(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(doc["chip_id"], "#20250804008");
        devices.push(doc["device_id"].as_str().unwrap().to_string());
    }
    devices.sort();
    assert_eq!(devices, ["1", "2", "3"]);
    // One chip, three devices: three distinct outputs.
    let o = run_config(&dir, "v2_quick_analysis", &dir.join("out"), &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 written"),
        "{}",
        show(&o)
    );
    let o = oect(&["generate", "-o", "x", "--chip", "A", "--chip-prefix", "B"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
