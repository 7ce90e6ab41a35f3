//! Containment: a plugin that crashes, aborts, exits, hangs, eats memory or prints
//! megabytes costs only its step; stops are prompt; non-regular inputs are refused.
//! Every case runs the real binary on a 5-experiment batch and compares every value with
//! a run where the plugin behaves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use oect_e2e::{
    attrs, float_columns, generate, library, oect_bin, parquet_files, scratch, show,
    tagged_processes,
};

/// The experiment that misbehaves, and its step.
const TARGET: &str = "#SYN0003-3";
const STEP: usize = 3;

fn config(how: &str) -> String {
    format!(
        "features:
  - {{name: bad, extractor: fixture.misbehave, input: transfer, params: {{how: {how}, at: {STEP}, experiment: \"{TARGET}\"}}}}
  - {{name: twice, extractor: fixture.double, input: bad}}
  - {{name: gm, extractor: transfer.gm_max, input: transfer}}
  - {{name: peak, extractor: transient.peak_current, input: transient}}
"
    )
}

struct Batch {
    dir: PathBuf,
    data: PathBuf,
    plugins: PathBuf,
    /// Experiment → column → values, from the run where the plugin behaves.
    reference: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

/// A unique tag in the environment of a run, inherited by its workers.
fn tag(name: &str) -> String {
    format!("oect-contain-{name}-{}", std::process::id())
}

fn oect_tagged(tag: &str, args: &[&str]) -> Output {
    Command::new(oect_bin())
        .args(args)
        .env_remove("OECT_PLUGIN_PATH")
        .env("OECT_TEST_TAG", tag)
        .output()
        .expect("run oect")
}

fn values(dir: &Path) -> BTreeMap<String, BTreeMap<String, Vec<f64>>> {
    parquet_files(dir)
        .iter()
        .map(|f| {
            let a = attrs(f);
            let id = format!(
                "{}-{}",
                a["chip_id"].as_str().unwrap(),
                a["device_id"].as_str().unwrap()
            );
            (id, float_columns(f))
        })
        .collect()
}

fn batch(name: &str) -> Batch {
    let dir = scratch(name);
    let data = dir.join("data");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let fixture = library("faulty_fixture");
    std::fs::copy(&fixture, plugins.join(fixture.file_name().unwrap())).unwrap();
    generate(
        &data,
        &[
            "--experiments",
            "5",
            "--steps",
            "6",
            "--cycles",
            "10",
            "--ragged",
            "--final-transfer",
        ],
    );
    let mut b = Batch {
        dir,
        data,
        plugins,
        reference: BTreeMap::new(),
    };
    let out = b.dir.join("reference");
    let o = b.run("none", &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    b.reference = values(&out);
    assert_eq!(b.reference.len(), 5);
    b
}

impl Batch {
    fn run(&self, how: &str, out: &Path, extra: &[&str]) -> Output {
        let cfg = self.dir.join(format!("{how}.yaml"));
        std::fs::write(&cfg, config(how)).unwrap();
        let mut args = vec![
            "run",
            self.data.to_str().unwrap(),
            "-c",
            cfg.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--plugin-dir",
            self.plugins.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        oect_tagged(&tag(how), &args)
    }

    /// Every value equals the reference, except `bad` and `twice` at the target step,
    /// which are NaN.
    fn assert_only_the_step_lost(&self, out: &Path, context: &str) {
        let got = values(out);
        assert_eq!(got.len(), 5, "{context}: {:?}", got.keys());
        for (exp, columns) in &self.reference {
            for (name, want) in columns {
                let have = &got[exp][name];
                for (i, (h, w)) in have.iter().zip(want).enumerate() {
                    let lost = exp == TARGET && i == STEP && (name == "bad" || name == "twice");
                    if lost {
                        assert!(
                            h.is_nan(),
                            "{context}: {exp} {name}[{i}] = {h}, expected NaN"
                        );
                    } else {
                        assert_eq!(h.to_bits(), w.to_bits(), "{context}: {exp} {name}[{i}]");
                    }
                }
                assert_eq!(have.len(), want.len(), "{context}: {exp} {name}");
            }
        }
    }
}

fn summary(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not the JSON summary ({e})\n{}", show(o)))
}

/// The casualty of the target step, checked against `cause`.
fn assert_casualty(s: &serde_json::Value, causes: &[&str], context: &str) {
    let casualties = s["casualties"].as_array().expect("casualties");
    let c = casualties
        .iter()
        .find(|c| c["feature"] == "bad" && c["step"] == STEP)
        .unwrap_or_else(|| panic!("{context}: no casualty for bad step {STEP}: {s}"));
    assert!(
        c["input"].as_str().unwrap().contains(TARGET),
        "{context}: {c}"
    );
    let cause = c["cause"].as_str().unwrap();
    assert!(
        causes.iter().any(|w| cause.contains(w)),
        "{context}: cause {cause:?} names none of {causes:?}"
    );
    assert_eq!(casualties.len(), 1, "{context}: {s}");
    // The step's error is in the summary with the cause.
    let target = s["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["input"].as_str().unwrap().contains(TARGET))
        .unwrap();
    assert_eq!(target["status"], "written", "{context}: {target}");
    let errors = target["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["feature"] == "bad" && e["step"] == STEP && e["message"] == c["cause"]),
        "{context}: {target}"
    );
}

/// The summary's entry for the experiment whose step misbehaves.
fn target_outcome(s: &serde_json::Value) -> &serde_json::Value {
    s["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["input"].as_str().unwrap().contains(TARGET))
        .unwrap_or_else(|| panic!("no outcome for {TARGET}: {s}"))
}

fn check_fault(how: &str, causes: &[&str], extra: &[&str]) {
    let b = batch(&format!("contain-{how}"));
    for mode in ["step", "experiment"] {
        let out = b.dir.join(format!("out-{mode}"));
        let mut args = vec!["--mode", mode, "-j", "2"];
        args.extend_from_slice(extra);
        let context = format!("{how}, {mode} mode");
        let o = b.run(how, &out, &args);
        assert_eq!(o.status.code(), Some(1), "{context}: {}", show(&o));
        let s = summary(&o);
        assert_casualty(&s, causes, &context);
        // The lost step is a failure of its own kind (the plugin API's `crashed` or
        // `timeout`), and the feature reading it failed for want of its input.
        let kind = if how == "loop" { "timeout" } else { "crashed" };
        assert_eq!(
            target_outcome(&s)["failed_by_kind"],
            serde_json::json!({ kind: 1, "input_failed": 1 }),
            "{context}: {s}"
        );
        b.assert_only_the_step_lost(&out, &context);
        // The file's metadata records the error too.
        let target = parquet_files(&out)
            .into_iter()
            .find(|f| attrs(f)["chip_id"] == "#SYN0003")
            .unwrap();
        assert_eq!(attrs(&target)["feature_errors"]["bad"], 1, "{context}");
        // A rerun finishes without crashing: everything is up to date, and the target's
        // output records its failed step, so the status stays 1 (as for any up-to-date
        // output with failed steps; --force recomputes it).
        let o = b.run(how, &out, &args);
        assert_eq!(o.status.code(), Some(1), "{context}, rerun: {}", show(&o));
        let rerun = summary(&o);
        for e in rerun["experiments"].as_array().unwrap() {
            assert_eq!(e["status"], "skipped", "{context}, rerun: {e}");
            // `bad` and `twice`, which reads it, at the target step.
            let failed = 2 * usize::from(e["input"].as_str().unwrap().contains(TARGET));
            assert_eq!(e["step_errors"], failed, "{context}, rerun: {e}");
        }
        assert!(
            rerun["casualties"].as_array().unwrap().is_empty(),
            "{rerun}"
        );
        assert!(
            tagged_processes(&tag(how)).is_empty(),
            "{context}: workers left behind"
        );
    }
    std::fs::remove_dir_all(&b.dir).unwrap();
}

#[test]
fn a_segfaulting_plugin_costs_its_step() {
    check_fault("segfault", &["SIGSEGV"], &[]);
}

#[test]
fn an_aborting_plugin_costs_its_step() {
    check_fault("abort", &["SIGABRT"], &[]);
}

#[test]
fn a_stack_overflow_costs_its_step() {
    check_fault("stack_overflow", &["SIGABRT", "SIGSEGV"], &[]);
}

#[test]
fn a_panic_in_drop_costs_its_step() {
    check_fault("panic_in_drop", &["SIGABRT"], &[]);
}

#[test]
fn a_failed_allocation_costs_its_step() {
    check_fault("alloc", &["memory allocation of"], &[]);
}

#[test]
fn exit_0_in_a_plugin_costs_its_step_and_exits_1() {
    check_fault("exit0", &["exited with status 0"], &[]);
}

#[test]
fn an_endless_loop_is_ended_by_the_step_timeout() {
    check_fault("loop", &["no answer within 1 s"], &["--step-timeout", "1"]);
}

#[test]
fn runaway_memory_is_ended_at_the_memory_limit() {
    check_fault(
        "hog",
        &["memory limit"],
        &["--max-memory", "300M", "--step-timeout", "60"],
    );
}

#[test]
fn megabytes_on_stdout_do_not_touch_the_json_summary() {
    let b = batch("contain-print");
    for mode in ["step", "experiment"] {
        let out = b.dir.join(format!("out-{mode}"));
        let o = b.run("print", &out, &["--mode", mode]);
        assert_eq!(o.status.code(), Some(0), "{mode}: {}", show(&o));
        let s = summary(&o);
        assert!(s["casualties"].as_array().unwrap().is_empty(), "{s}");
        let w = &s["worker_output"];
        assert!(w["stdout_bytes"].as_u64().unwrap() >= 4 << 20, "{s}");
        let log = std::fs::read_to_string(w["log"].as_str().unwrap()).unwrap();
        let line = log.lines().find(|l| l.contains("stdout: xxxx")).unwrap();
        assert!(
            line.contains(TARGET) && line.contains("bad (fixture.misbehave, faulty-fixture)"),
            "not attributed to the plugin: {line}"
        );
        // Unchanged values: the printing step answers normally.
        let bits = |v: &BTreeMap<String, BTreeMap<String, Vec<f64>>>| {
            v.iter()
                .map(|(e, c)| {
                    let c: BTreeMap<&String, Vec<u64>> = c
                        .iter()
                        .map(|(n, x)| (n, x.iter().map(|f| f.to_bits()).collect()))
                        .collect();
                    (e.clone(), format!("{c:?}"))
                })
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(bits(&values(&out)), bits(&b.reference), "{mode}");
    }
    std::fs::remove_dir_all(&b.dir).unwrap();
}

#[test]
fn known_casualties_are_retried_once_then_skipped_with_their_reason() {
    let b = batch("contain-rerun");
    let out = b.dir.join("out");
    let o = b.run("segfault", &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    // --force retries the known casualty, isolated: it falls again, costing one step.
    let o = b.run("segfault", &out, &["--force"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_casualty(&summary(&o), &["SIGSEGV"], "forced rerun");
    b.assert_only_the_step_lost(&out, "forced rerun");
    // Twice fallen: a rerun that has to compute it skips the call, with the reason.
    for f in parquet_files(&out) {
        std::fs::remove_file(f).unwrap();
    }
    let o = b.run("segfault", &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let s = summary(&o);
    assert!(s["casualties"].as_array().unwrap().is_empty(), "{s}");
    let text = s.to_string();
    assert!(
        text.contains("not run: this call took a worker down in 2 earlier runs")
            && text.contains("SIGSEGV")
            && text.contains("--force retries it"),
        "{s}"
    );
    assert_eq!(
        target_outcome(&s)["failed_by_kind"],
        serde_json::json!({ "crashed": 1, "input_failed": 1 }),
        "{s}"
    );
    b.assert_only_the_step_lost(&out, "skipping rerun");
    std::fs::remove_dir_all(&b.dir).unwrap();
}

/// SIGTERM while the target's worker is stuck as `how` says: the run stops within seconds
/// with status 130, keeps the four experiments already written and leaves no worker.
fn sigterm_stops_a_run_stuck_in_a_plugin(how: &str) {
    let b = batch(&format!("contain-sigterm-{how}"));
    let out = b.dir.join("out");
    let cfg = b.dir.join(format!("{how}.yaml"));
    std::fs::write(&cfg, config(how)).unwrap();
    // Nobody ever opens it for writing: a read of it never returns.
    let fifo = b.dir.join("stalled");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let t = tag(&format!("sigterm-{how}"));
    let child = Command::new(oect_bin())
        .args([
            "run",
            b.data.to_str().unwrap(),
            "-c",
            cfg.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--plugin-dir",
            b.plugins.to_str().unwrap(),
            "-j",
            "2",
        ])
        .env_remove("OECT_PLUGIN_PATH")
        .env("OECT_TEST_TAG", &t)
        .env("OECT_FIXTURE_FIFO", &fifo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the other experiments are written: the target's worker is stuck.
    let deadline = Instant::now() + Duration::from_secs(60);
    while parquet_files(&out).len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(parquet_files(&out).len(), 4);
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    assert_eq!(o.status.code(), Some(130), "{how}: {}", show(&o));
    assert!(
        took < Duration::from_secs(5),
        "{how}: the stop took {took:?}"
    );
    assert!(
        tagged_processes(&t).is_empty(),
        "{how}: workers left behind"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("4 written"), "{how}: {stdout}");
    std::fs::remove_dir_all(&b.dir).unwrap();
}

#[test]
fn sigterm_stops_a_run_stuck_in_a_plugin_promptly_and_leaves_no_process() {
    sigterm_stops_a_run_stuck_in_a_plugin("loop");
}

#[test]
fn sigterm_stops_a_run_blocked_on_a_read_promptly_and_leaves_no_process() {
    sigterm_stops_a_run_stuck_in_a_plugin("block");
}

#[test]
fn fifos_devices_and_sockets_are_refused_by_name_and_links_followed_once() {
    let dir = scratch("contain-special");
    let data = dir.join("data");
    generate(
        &data,
        &["--experiments", "2", "--steps", "3", "--transfer-only"],
    );
    let fifo = data.join("pipe.h5");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let device = data.join("device.h5");
    std::os::unix::fs::symlink("/dev/zero", &device).unwrap();
    let socket = data.join("socket.h5");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // A link loop and a second way into the folder.
    std::os::unix::fs::symlink(".", data.join("again")).unwrap();
    std::os::unix::fs::symlink("b", data.join("a")).unwrap();
    std::os::unix::fs::symlink("a", data.join("b")).unwrap();
    let out = dir.join("out");
    let start = Instant::now();
    let o = Command::new(oect_bin())
        .args([
            "run",
            data.to_str().unwrap(),
            "-c",
            "v2_quick_analysis",
            "-o",
            out.to_str().unwrap(),
        ])
        .env_remove("OECT_PLUGIN_PATH")
        .output()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.starts_with("5 experiments: 2 written"), "{stdout}");
    for (path, what) in [
        (&fifo, "a FIFO (named pipe)"),
        (&device, "a device file"),
        (&socket, "a socket"),
    ] {
        // FAILED lines are on stderr, the summary on stdout.
        let stderr = String::from_utf8_lossy(&o.stderr);
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("FAILED {}:", path.display())))
            .unwrap_or_else(|| panic!("no line for {}\n{stderr}", path.display()));
        assert!(
            line.contains(what) && line.contains("refused without opening it"),
            "{line}"
        );
    }
    assert_eq!(parquet_files(&out).len(), 2);
    // inspect refuses a FIFO the same way instead of blocking.
    let o = Command::new(oect_bin())
        .args(["inspect", fifo.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("a FIFO"),
        "{}",
        show(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `inspect` opens the file in a worker process that has no config: on a healthy file that
/// worker says nothing, so stderr stays empty and stdout is the overview alone.
#[test]
fn inspect_of_a_healthy_file_prints_only_the_overview() {
    let dir = scratch("contain-inspect");
    let files = generate(&dir, &["--steps", "3", "--cycles", "5"]);
    let o = Command::new(oect_bin())
        .args(["inspect", "--json", files[0].to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(o.stderr.is_empty(), "{}", show(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON overview");
    assert_eq!(doc["transfer"]["steps"], 3);
    assert_eq!(doc["transient"]["steps"], 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plugins_check_names_the_extractor_that_takes_the_checker_down() {
    let fixture = library("faulty_fixture");
    let o = Command::new(oect_bin())
        .args([
            "plugins",
            "check",
            fixture.to_str().unwrap(),
            "--json",
            "--timeout",
            "5",
        ])
        .env_remove("OECT_PLUGIN_PATH")
        .output()
        .unwrap();
    // The checks fail (the fixture misbehaves), but the checker itself ends normally.
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON report");
    assert_eq!(report["passed"], false);
    let checks = report["checks"].as_array().unwrap();
    let contained = |name: &str| {
        checks
            .iter()
            .find(|c| c["subject"] == name && c["check"] == "contained")
            .map(|c| c["message"].as_str().unwrap().to_string())
    };
    let crash = contained("fixture.crashes").expect("crashes is a named failure");
    assert!(crash.contains("SIGSEGV"), "{crash}");
    let hang = contained("fixture.spins").expect("spins is a named failure");
    assert!(hang.contains("no answer within 5 s"), "{hang}");
    // Every other extractor was checked, also those after the ones that took a child down.
    for name in ["fixture.double", "fixture.misbehave", "fixture.panic_at"] {
        assert!(
            checks
                .iter()
                .any(|c| c["subject"] == name && c["check"] == "shape"),
            "{name} missing: {report}"
        );
        assert!(contained(name).is_none(), "{name}: {report}");
    }
    assert!(checks
        .iter()
        .any(|c| c["subject"] == "plugin" && c["check"] == "metadata"));
}

/// A worker whose first message is not a readable `init` (a supervisor of another version,
/// a damaged frame) answers `fatal` with the reason and exits with its start-failure status,
/// instead of vanishing with nothing said.
#[test]
fn a_worker_given_an_unreadable_init_says_why() {
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    let frame = |header: &[u8]| {
        let mut f = (header.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(header);
        f
    };
    for (header, expected) in [
        (
            &br#"{"type":"init","config":7}"#[..],
            "unreadable init message",
        ),
        (
            &br#"{"type":"close","path":"x.h5"}"#[..],
            "the first message was not init",
        ),
    ] {
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        let mut child = Command::new(oect_bin())
            .arg("__worker")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        mine.write_all(&frame(header)).unwrap();
        mine.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut lens = [0u8; 8];
        mine.read_exact(&mut lens).unwrap();
        let h = u32::from_le_bytes(lens[..4].try_into().unwrap()) as usize;
        let mut reply = vec![0u8; h];
        mine.read_exact(&mut reply).unwrap();
        let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(reply["type"], "fatal", "{reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
        assert_eq!(child.wait().unwrap().code(), Some(76));
    }
}
