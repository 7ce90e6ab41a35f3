//! Every printing command, with a reader that went away before it printed (`oect … |
//! head -1`): it ends quietly, with the status it has when its output is read.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use oect_e2e::{generate, library, oect, oect_bin, run_config, scratch, show};

/// The write end of a pipe whose read end is already closed: every write to it fails with
/// EPIPE, from the first byte on.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a live array of the two ints `pipe` writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe()");
    // SAFETY: both descriptors were just created by `pipe` and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// Runs oect with `args`; stdout (and, if `stderr_too`, stderr) into a closed pipe.
fn run_closed(args: &[&str], stderr_too: bool) -> Output {
    let mut cmd = Command::new(oect_bin());
    cmd.args(args)
        .env_remove("OECT_PLUGIN_PATH")
        .stdout(closed_pipe())
        .stderr(if stderr_too {
            closed_pipe()
        } else {
            Stdio::piped()
        });
    cmd.output().expect("run oect")
}

/// The subcommands `oect --help` lists.
fn subcommands() -> Vec<String> {
    let o = oect(&["--help"]);
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn printing_commands_end_quietly_when_their_reader_has_gone() {
    let dir = scratch("pipes");
    let data = dir.join("data");
    let files = generate(
        &data,
        &["--experiments", "2", "--steps", "4", "--transfer-only"],
    );
    let out = dir.join("out");
    let o = run_config(&data, "v2_transfer_basic", &out, &[]);
    assert!(o.status.success(), "{}", show(&o));
    // A folder with a library built against an older plugin API (0.1): a warning on stderr.
    let old_api = dir.join("old-api");
    std::fs::create_dir_all(&old_api).unwrap();
    let old_lib = library("api_0_1_fixture");
    std::fs::copy(&old_lib, old_api.join(old_lib.file_name().unwrap())).unwrap();

    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (data_s, out_s, file_s) = (s(&data), s(&out), s(&files[0]));
    let transfer = s(&library("oect_transfer"));
    let batch = [
        data_s.as_str(),
        "-c",
        "v2_transfer_basic",
        "-o",
        out_s.as_str(),
    ];
    let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter().chain(tail).map(|a| a.to_string()).collect()
    };
    let demo = s(&dir.join("demo"));
    let generated = s(&dir.join("generated"));
    let merged = s(&dir.join("merged.parquet"));
    let (figures, report) = (s(&dir.join("figures")), s(&dir.join("report.html")));
    let raw = dir.join("raw");
    generate(
        &raw,
        &[
            "--experiments",
            "1",
            "--steps",
            "2",
            "--transfer-only",
            "--raw-export",
        ],
    );
    let (raw_s, converted) = (s(&raw), s(&dir.join("converted")));
    let commands: Vec<Vec<String>> = vec![
        with(&["run"], &batch),
        with(&["run", "--force", "--json"], &batch),
        with(&["demo", "--out", &demo], &[]),
        with(&["generate", "-o", &generated, "--steps", "2"], &[]),
        with(
            &[
                "convert",
                &raw_s,
                "-o",
                &converted,
                "--on-conflict",
                "overwrite",
            ],
            &[],
        ),
        with(&["inspect", &file_s], &[]),
        with(&["inspect", &file_s, "--json"], &[]),
        with(&["plugins", "list"], &[]),
        with(&["plugins", "list", "--json"], &[]),
        with(&["--plugin-dir", &s(&old_api), "plugins", "list"], &[]),
        with(&["plugins", "check", &transfer], &[]),
        with(&["plugins", "check", &transfer, "--json"], &[]),
        with(&["configs", "list"], &[]),
        with(&["configs", "list", "--json"], &[]),
        with(&["check", "v2_mixed", "transient_tau"], &[]),
        with(&["completions", "bash"], &[]),
        with(&["man"], &[]),
        with(&["configs", "show", "v2_transfer_basic"], &[]),
        with(&["configs", "show", "no-such-config"], &[]),
        with(&["status"], &batch),
        with(&["status", "--json"], &batch),
        with(&["slurm", "submit", "--dry-run"], &batch),
        with(
            &["collect", &out_s, "-c", "v2_transfer_basic", "-o", &merged],
            &[],
        ),
        with(&["plot", &out_s, &data_s, "-o", &figures], &[]),
        with(&["report", &out_s, &data_s, "-o", &report], &[]),
    ];
    // `watch` runs until it is stopped and prints only on stderr.
    for name in subcommands().into_iter().filter(|c| c != "watch") {
        assert!(
            commands.iter().any(|c| c.contains(&name)),
            "`oect {name}` prints but is not tried here"
        );
    }

    for args in &commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let read = oect(&args);
        let expected = read.status.code();
        assert!(expected.is_some(), "{args:?}: {}", show(&read));
        let closed = run_closed(&args, false);
        let stderr = String::from_utf8_lossy(&closed.stderr);
        assert_eq!(
            closed.status.code(),
            expected,
            "{args:?}: {}",
            show(&closed)
        );
        for noise in ["panicked", "Broken pipe", "failed printing"] {
            assert!(!stderr.contains(noise), "{args:?}: {stderr}");
        }
        // What it says on stderr is what it says when its output is read.
        assert_eq!(stderr, String::from_utf8_lossy(&read.stderr), "{args:?}");
        let both = run_closed(&args, true);
        assert_eq!(both.status.code(), expected, "{args:?}: {}", show(&both));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The issue's own case, through a shell: `head -1` takes the first line and leaves.
#[test]
fn run_into_head_prints_one_line_and_succeeds() {
    let dir = scratch("pipes-head");
    let data = dir.join("data");
    generate(
        &data,
        &["--experiments", "3", "--steps", "4", "--transfer-only"],
    );
    let script = format!(
        "set -o pipefail; '{}' run '{}' -c v2_transfer_basic -o '{}' --json | head -1",
        oect_bin().display(),
        data.display(),
        dir.join("out").display()
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env_remove("OECT_PLUGIN_PATH")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "{\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    std::fs::remove_dir_all(&dir).unwrap();
}
