//! Progress as a person sees it: long runs in a real terminal (a detached tmux session),
//! whose screen is read while they go on.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use oect_e2e::{generate, oect_bin, scratch};

/// `done/total steps` of a progress line, if it has one (indicatif writes `1,234`).
fn step_count(line: &str) -> Option<(u64, u64)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| w.starts_with("steps"))?;
    let (done, total) = words.get(at.checked_sub(1)?)?.split_once('/')?;
    let number = |s: &str| s.replace(',', "").parse::<u64>().ok();
    Some((number(done)?, number(total)?))
}

/// Whether tmux runs here; outside CI its absence is a visible skip, under `.ci/run`
/// (which installs it, `OECT_CI` set) a failure.
fn has_tmux() -> bool {
    if Command::new("tmux").arg("-V").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("OECT_CI").is_none(),
        "tmux is not installed (.ci/run installs it)"
    );
    println!("SKIPPED: tmux is not installed");
    false
}

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux").args(args).output().expect("run tmux")
}

#[test]
fn the_bar_moves_during_one_long_experiment() {
    if !has_tmux() {
        return;
    }
    let dir = scratch("progress-tmux");
    let data = dir.join("data");
    generate(
        &data,
        &[
            "--experiments",
            "1",
            "--steps",
            "6",
            "--cycles",
            "30",
            "--transient-only",
        ],
    );
    // The predecessor-compatible AutoTau solver takes seconds per step: one experiment
    // whose six steps are computed one chunk at a time.
    let config = dir.join("slow.yaml");
    std::fs::write(
        &config,
        "features:\n  - {name: tau, extractor: transient.tau_on_off, input: transient, params: {solver: compat}}\n",
    )
    .unwrap();
    let out = dir.join("out");
    let done_marker = dir.join("exit-status");
    let q = |p: &Path| format!("'{}'", p.display());
    let script = format!(
        "{} run {} -c {} -o {} -j 2; echo $? > {}; sleep 600",
        q(&oect_bin()),
        q(&data),
        q(&config),
        q(&out),
        q(&done_marker)
    );
    let session = format!("oect-progress-{}", std::process::id());
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "220",
        "-y",
        "20",
        "sh",
        "-c",
        &script,
    ]);
    assert!(started.status.success(), "{started:?}");

    let mut seen: Vec<String> = Vec::new();
    let limit = Instant::now() + Duration::from_secs(600);
    while !done_marker.exists() && Instant::now() < limit {
        let screen = tmux(&["capture-pane", "-p", "-t", &session]);
        let text = String::from_utf8_lossy(&screen.stdout).into_owned();
        for line in text.lines().filter(|l| l.contains(" steps, ")) {
            if seen.last().map(String::as_str) != Some(line.trim_end()) {
                seen.push(line.trim_end().to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = tmux(&["kill-session", "-t", &session]);
    let status = std::fs::read_to_string(&done_marker).unwrap_or_default();
    assert_eq!(status.trim(), "0", "the run did not finish: {seen:#?}");

    // The line changed while the run went on (the clock, and the steps), and it showed a
    // step count part of the way through: the bar moved before the experiment was done.
    assert!(
        seen.len() >= 2,
        "the progress line never changed: {seen:#?}"
    );
    let counts: Vec<(u64, u64)> = seen.iter().filter_map(|l| step_count(l)).collect();
    assert!(
        counts.iter().any(|&(done, total)| done > 0 && done < total),
        "no step count between 0 and the total: {seen:#?}"
    );
    // 0/0 until the file is open, then its 6 steps
    assert!(
        counts
            .iter()
            .all(|&(done, total)| total == 6 || (done, total) == (0, 0)),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("0/1 experiments") && l.contains(".h5")),
        "no line naming the experiment count and the file: {seen:#?}"
    );
}

#[test]
fn generate_shows_the_files_written_so_far() {
    if !has_tmux() {
        return;
    }
    let dir = scratch("progress-generate");
    let done_marker = dir.join("exit-status");
    let q = |p: &Path| format!("'{}'", p.display());
    let script = format!(
        "{} generate -o {} --experiments 12 --steps 300 > {}; echo $? > {}; sleep 600",
        q(&oect_bin()),
        q(&dir.join("data")),
        q(&dir.join("list.txt")),
        q(&done_marker)
    );
    let session = format!("oect-generate-{}", std::process::id());
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "200",
        "-y",
        "20",
        "sh",
        "-c",
        &script,
    ]);
    assert!(started.status.success(), "{started:?}");
    let mut counts = Vec::new();
    let limit = Instant::now() + Duration::from_secs(600);
    while !done_marker.exists() && Instant::now() < limit {
        let screen = tmux(&["capture-pane", "-p", "-t", &session]);
        for line in String::from_utf8_lossy(&screen.stdout).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(at) = words.iter().position(|w| *w == "experiments") {
                if let Some((done, total)) = words[at - 1].split_once('/') {
                    counts.push((done.parse::<u64>().unwrap(), total.parse::<u64>().unwrap()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = tmux(&["kill-session", "-t", &session]);
    let status = std::fs::read_to_string(&done_marker).unwrap_or_default();
    assert_eq!(status.trim(), "0", "generate did not finish: {counts:?}");
    // The files go to stdout (here a file), the bar to the terminal only.
    let list = std::fs::read_to_string(dir.join("list.txt")).unwrap();
    assert_eq!(list.lines().count(), 12, "{list}");
    assert!(!list.contains("experiments written"), "{list}");
    assert!(
        counts
            .iter()
            .any(|&(done, total)| done > 0 && done < total && total == 12),
        "no count part of the way through: {counts:?}"
    );
}
