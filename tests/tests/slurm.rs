//! A batch as a Slurm job array on a real one-node cluster
//! (`shared/tools/slurm-local.sh`). It needs root, slurm-wlm and munge, so it is ignored
//! by a plain `cargo test`; `.ci/run` installs them and runs it with `--ignored`, where a
//! missing prerequisite fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oect_e2e::{generate, oect, parquet_files, read_table, run_config, scratch, show};

fn slurm_local() -> Option<PathBuf> {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/tools/slurm-local.sh"))
        .find(|p| p.is_file())
}

fn slurm(script: &Path, verb: &str) -> bool {
    Command::new("bash")
        .arg(script)
        .arg(verb)
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(job: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        let q = Command::new("squeue")
            .args(["-h", "-j", job])
            .output()
            .unwrap();
        if q.status.success() && q.stdout.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("job {job} did not finish within 300 s");
}

fn submit(args: &[&str]) -> String {
    let mut all = vec!["slurm", "submit"];
    all.extend_from_slice(args);
    let o = oect(&all);
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// (experiment name without the timestamp, rendering of every column) per output.
fn tables(dir: &Path) -> Vec<(String, Vec<String>)> {
    parquet_files(dir)
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy();
            let key = name.split("-feat_").next().unwrap().to_string();
            (key, read_table(f).1)
        })
        .collect()
}

#[test]
#[ignore = "needs root, slurm-wlm and munge (a one-node cluster); .ci/run runs it with --ignored"]
fn a_sharded_job_array_equals_a_single_machine_run() {
    assert!(
        Command::new("sbatch").arg("--version").output().is_ok(),
        "Slurm is not installed (apt-get install slurm-wlm munge)"
    );
    let script = slurm_local().expect("shared/tools/slurm-local.sh not found above the repository");
    assert!(
        slurm(&script, "start"),
        "slurm-local.sh could not start a cluster on this machine (it needs root)"
    );
    let dir = scratch("slurm");
    let data = dir.join("data");
    generate(
        &data,
        &[
            "--experiments",
            "5",
            "--steps",
            "6",
            "--transfer-only",
            "--seed",
            "9",
        ],
    );
    let broken = data.join("zz-late.h5");
    std::fs::write(&broken, b"half-copied file").unwrap();
    let out = dir.join("out");
    let common = [
        data.to_str().unwrap(),
        "-c",
        "v2_quick_analysis",
        "-o",
        out.to_str().unwrap(),
        "--shards",
        "3",
    ];

    // Run options reach the tasks (cli::tests checks every one; here on a real cluster).
    let mut first = common.to_vec();
    first.extend([
        "--mode",
        "experiment",
        "--in-flight",
        "2",
        "--step-timeout",
        "60",
    ]);
    let job = submit(&first);
    assert!(job.chars().all(|c| c.is_ascii_digit()), "job id: {job}");
    wait_for(&job);
    let sbatch = std::fs::read_to_string(out.join("slurm-logs/oect-array.sbatch")).unwrap();
    for option in ["--mode=experiment", "--in-flight=2", "--step-timeout=60"] {
        assert!(sbatch.contains(option), "{option} missing:\n{sbatch}");
    }

    let mut status_args = vec!["status"];
    status_args.extend_from_slice(&common);
    status_args.push("--json");
    let o = oect(&status_args);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // zz-late.h5 sorts last: position 5, shard 5 mod 3 = 2.
    assert_eq!(
        status["incomplete_shards"],
        serde_json::json!([2]),
        "{status}"
    );
    let failed: Vec<&serde_json::Value> = status["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"].get("failed").is_some())
        .collect();
    assert_eq!(failed.len(), 1, "{status}");
    assert!(failed[0]["input"].as_str().unwrap().ends_with("zz-late.h5"));
    assert_eq!(parquet_files(&out).len(), 5);

    // The file finishes copying; --resume submits only the shard that needs it.
    let fixed = dir.join("fixed");
    let generated = generate(
        &fixed,
        &[
            "--steps",
            "6",
            "--transfer-only",
            "--chip-prefix",
            "#LATE",
            "--seed",
            "10",
        ],
    );
    std::fs::copy(&generated[0], &broken).unwrap();
    let mut resume = common.to_vec();
    resume.extend(["--resume", "--dry-run"]);
    let o = oect(&{
        let mut a = vec!["slurm", "submit"];
        a.extend_from_slice(&resume);
        a
    });
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("#SBATCH --array=2\n"),
        "{}",
        show(&o)
    );
    resume.pop();
    let job = submit(&resume);
    wait_for(&job);
    let o = oect(&status_args);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(parquet_files(&out).len(), 6);

    // The union of the shards' outputs equals one run on one machine.
    let single = dir.join("single");
    let o = run_config(&data, "v2_quick_analysis", &single, &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(tables(&out), tables(&single));

    // One merged table for analysis.
    let merged = dir.join("batch.parquet");
    let o = oect(&[
        "collect",
        out.to_str().unwrap(),
        "-c",
        "v2_quick_analysis",
        "-o",
        merged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("6 experiments, 36 rows"),
        "{}",
        show(&o)
    );

    assert!(slurm(&script, "stop"), "slurm-local.sh stop failed");
    let running = |daemon: &str| {
        Command::new("pgrep")
            .args(["-x", daemon])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let start = Instant::now();
    while (running("slurmctld") || running("slurmd")) && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !running("slurmctld") && !running("slurmd"),
        "Slurm daemons still running after stop"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
