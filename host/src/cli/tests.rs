//! Command-line tests that need the parser itself.

use std::path::PathBuf;
use std::process::Command as Process;

use clap::{ArgAction, CommandFactory, Parser};

use super::*;

/// `run` options that `slurm submit` does not pass on: the batch (passed as absolute paths)
/// and what the script sets for each task.
const SET_BY_THE_SCRIPT: [&str; 5] = ["inputs", "config", "out", "workers", "shard"];

/// A value for `arg` other than its default: a non-default choice, else `7` (which parses
/// as every number and text type `run` has; a new option of another type fails here,
/// asking for its own sample).
fn sample(arg: &clap::Arg) -> Option<String> {
    if !matches!(arg.get_action(), ArgAction::Set | ArgAction::Append) {
        return None;
    }
    let default: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let choice = arg
        .get_possible_values()
        .into_iter()
        .map(|v| v.get_name().to_string())
        .find(|v| !default.contains(v));
    Some(choice.unwrap_or_else(|| "7".into()))
}

/// The words of the `exec` line of `script`, as bash expands them for array task `task`
/// with `cpus` CPUs (everything after the binary).
fn task_command(script: &str, task: usize, cpus: usize) -> Vec<String> {
    let line = script
        .lines()
        .find(|l| l.starts_with("exec "))
        .unwrap_or_else(|| panic!("no exec line in\n{script}"));
    let out = Process::new("bash")
        .arg("-c")
        .arg(format!(
            "set -- {}; shift; printf '%s\\0' \"$@\"",
            &line[5..]
        ))
        .env("SLURM_ARRAY_TASK_ID", task.to_string())
        .env("SLURM_CPUS_PER_TASK", cpus.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_terminator('\0')
        .map(String::from)
        .collect()
}

/// Every option of `run` is accepted by `slurm submit` and reaches each task's command line
/// with the value given: the options are read from the parser, so one added later is
/// covered without changing this test.
#[test]
fn every_run_option_reaches_the_array_tasks() {
    let mut cli = Cli::command();
    cli.build();
    let run = cli.find_subcommand("run").expect("a run command");
    let mut given: Vec<String> = Vec::new();
    let mut covered = Vec::new();
    for arg in run.get_arguments() {
        let id = arg.get_id().as_str();
        if SET_BY_THE_SCRIPT.contains(&id) || arg.is_global_set() {
            continue;
        }
        if matches!(arg.get_action(), ArgAction::Help | ArgAction::Version) {
            continue;
        }
        let long = arg
            .get_long()
            .unwrap_or_else(|| panic!("run option {id} has no long name"));
        match sample(arg) {
            Some(value) => given.extend([format!("--{long}"), value]),
            None => given.push(format!("--{long}")),
        }
        covered.push(id.to_string());
    }
    assert!(covered.len() >= 7, "{covered:?}");

    let dir = std::env::temp_dir().join(format!("oect-cli-forward-{}", std::process::id()));
    let mut argv: Vec<String> = ["oect", "--plugin-dir", "/opt/my plugins", "slurm", "submit"]
        .map(String::from)
        .to_vec();
    argv.extend(["data dir".into(), "-c".into(), "my-config".into()]);
    argv.extend(["-o".into(), dir.join("out").display().to_string()]);
    argv.extend(["--shards", "3", "--cpus-per-task", "5", "--dry-run"].map(String::from));
    argv.extend(given.iter().cloned());
    let submit = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{e}"));
    let Command::Slurm {
        command: SlurmCommand::Submit(args),
    } = &submit.command
    else {
        panic!("not a submit command");
    };
    let (script, indices) = array_script(&submit.plugin_dirs, args).unwrap().unwrap();
    assert_eq!(indices, [0, 1, 2]);

    let mut task = vec!["oect".to_string()];
    task.extend(task_command(&script, 2, 5));
    let parsed = Cli::try_parse_from(&task).unwrap_or_else(|e| panic!("{e}\n{script}"));
    let Command::Run(run) = parsed.command else {
        panic!("the task does not run `oect run`:\n{script}");
    };
    // The same options as given to submit, and given explicitly (not as defaults); a path
    // made absolute, as the batch's are.
    let expected = RunOptionArgs {
        h5_dir: args.options.h5_dir.as_deref().map(absolute),
        ..args.options.clone()
    };
    assert_eq!(run.options, expected, "{script}");
    let by_run = Cli::try_parse_from(
        ["oect", "run", "data", "-c", "c", "-o", "o"]
            .into_iter()
            .map(String::from)
            .chain(given.iter().cloned()),
    )
    .unwrap();
    let Command::Run(mut direct) = by_run.command else {
        unreachable!()
    };
    direct.options.h5_dir = direct.options.h5_dir.as_deref().map(absolute);
    assert_eq!(run.options, direct.options, "{script}");
    for id in &covered {
        let long = format!("--{}", id.replace('_', "-"));
        assert!(
            task.iter().any(|w| w.starts_with(&long)),
            "{long} is not passed on:\n{script}"
        );
    }
    // What the script sets itself, and the batch as absolute paths.
    assert_eq!(run.workers, Some(5));
    assert_eq!(run.shard, Some("2/3".parse().unwrap()));
    assert_eq!(run.batch.config, "my-config");
    assert_eq!(run.batch.out, dir.join("out"));
    let data = std::path::absolute("data dir").unwrap();
    assert_eq!(run.batch.inputs, vec![data]);
    assert_eq!(parsed.plugin_dirs, vec![PathBuf::from("/opt/my plugins")]);
}

/// A run option that `run` would refuse is refused when submitting, not by every task.
#[test]
fn submit_refuses_bad_run_options_before_submitting() {
    let submit = Cli::try_parse_from([
        "oect",
        "slurm",
        "submit",
        "d",
        "-c",
        "c",
        "-o",
        "o",
        "--step-timeout",
        "0",
        "--dry-run",
    ])
    .unwrap();
    let Command::Slurm {
        command: SlurmCommand::Submit(args),
    } = &submit.command
    else {
        panic!("not a submit command");
    };
    let err = array_script(&[], args).unwrap_err().to_string();
    assert!(
        err.contains("--step-timeout must be a positive number"),
        "{err}"
    );
}

#[test]
fn default_workers_use_every_available_core_or_slurms_cpus() {
    assert_eq!(workers_for(None, Some(2)), 2);
    assert_eq!(workers_for(None, Some(1)), 1);
    assert_eq!(workers_for(Some("8"), Some(2)), 8);
    // An unset, empty, zero or garbled SLURM_CPUS_PER_TASK falls back to the cores.
    assert_eq!(workers_for(Some(""), Some(4)), 4);
    assert_eq!(workers_for(Some("0"), Some(4)), 4);
    assert_eq!(workers_for(Some("2(x3)"), Some(4)), 4);
    assert_eq!(workers_for(None, None), 1);
}

/// Every argument and subcommand of every (visible) command says what it is for.
#[test]
fn every_option_and_command_has_help_text() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_name() != "help" {
                missing.push(path.clone());
            }
            walk(sub, &path, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&Cli::command(), "oect", &mut missing);
    assert!(missing.is_empty(), "without help text: {missing:#?}");
}
