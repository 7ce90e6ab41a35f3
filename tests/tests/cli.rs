//! The command line's own behaviour, end to end: `oect check`, the suggestions, the
//! completions and the man page, and the options all commands share.

use std::process::Command;

use oect_e2e::{generate, oect, run_config, scratch, show};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn check_reports_every_problem_of_every_config_at_once() {
    let dir = scratch("cli-check");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "features:\n  - {name: g, extractor: transfer.gm_max, input: transfer, parmas: {}}\n  - {name: v, extractor: transfer.no_such, input: transfer}\n  - {name: r, func: 'lambda x: x', input: gm}\n",
    )
    .unwrap();
    let also_bad = dir.join("also_bad.yaml");
    std::fs::write(&also_bad, "data_type: voltage\nfeatures: []\n").unwrap();
    let o = oect(&[
        "check",
        bad.to_str().unwrap(),
        "v2_mixed",
        also_bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = stderr(&o);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    // bad.yaml: the unknown key stops `g` at the schema, before the graph is built; the
    // graph's problems show once the schema is clean (below). also_bad.yaml: two.
    assert_eq!(errors.len(), 3, "{}", show(&o));
    assert!(err.contains("feature 'g': unknown key `parmas`"), "{err}");
    assert!(err.contains("data_type must be one of"), "{err}");
    assert!(err.contains("`features` must not be empty"), "{err}");
    assert!(err.contains("2 of 3 configs invalid: 3 problems"), "{err}");
    // The valid one is summarised on stdout.
    assert!(
        stdout(&o).contains("builtin:v2_mixed: ok — 8 features in 3 layers"),
        "{}",
        show(&o)
    );

    // Schema-valid, graph-invalid: every broken feature at once.
    std::fs::write(
        &bad,
        "features:\n  - {name: g, extractor: transfer.gm_max, input: transfer}\n  - {name: v, extractor: transfer.no_such, input: transfer}\n  - {name: r, func: 'lambda x: x', input: gm}\n  - {name: s, func: 'lambda x: x +', input: g}\n",
    )
    .unwrap();
    let o = oect(&["check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = stderr(&o);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        3,
        "{err}"
    );
    for want in [
        "feature 'v': unknown extractor 'transfer.no_such'",
        "feature 'r': input 'gm' is neither",
        "feature 's': invalid func",
    ] {
        assert!(err.contains(want), "{want} not in\n{err}");
    }
    // `run` lists the same problems and computes nothing.
    let out = dir.join("out");
    let o = oect(&[
        "run",
        dir.to_str().unwrap(),
        "-c",
        bad.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert_eq!(
        stderr(&o)
            .lines()
            .filter(|l| l.starts_with("error: "))
            .count(),
        3,
        "{}",
        show(&o)
    );
    assert!(!out.exists());
}

#[test]
fn check_summarises_a_valid_config_by_layer() {
    let o = oect(&["check", "transient_tau"]);
    assert!(o.status.success(), "{}", show(&o));
    let text = stdout(&o);
    assert!(text.contains("7 features in 2 layers"), "{text}");
    let layer1 = text.split("layer 1:").nth(1).expect("a layer 1");
    assert!(
        text.split("layer 1:")
            .next()
            .unwrap()
            .contains("tau_cycles"),
        "{text}"
    );
    for f in ["tau_on_mean", "tau_off_std", "tau_on_evolution"] {
        assert!(layer1.contains(f), "{f} not in layer 1:\n{text}");
    }
    let o = oect(&["check", "--json", "transient_tau", "v2_quick_analysis"]);
    assert!(o.status.success(), "{}", show(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc[0]["layers"], 2);
    assert_eq!(doc[0]["features"][0]["name"], "tau_cycles");
    assert_eq!(doc[0]["features"][0]["layer"], 0);
    assert_eq!(doc[0]["features"][0]["shape"], "[n_cycles, 2]");
    assert_eq!(doc[1]["features"].as_array().unwrap().len(), 3);
}

#[test]
fn misspelt_names_get_the_nearest_valid_one() {
    let dir = scratch("cli-suggest");
    let config = dir.join("typos.yaml");
    std::fs::write(
        &config,
        "features:\n  - {name: gm, extractor: transfer.gm_maxx, input: transfer}\n  - {name: von, extractor: transfer.Von, input: transfer, params: {dirction: forward, device_type: N}}\n  - {name: i, extractor: transfer.absI_max, input: transfer, params: {device_type: Q}}\n  - {name: g2, extractor: transfer.gm_max, input: transfer, params: {direction: fowrard}}\n  - {name: r, func: 'lambda x: x', input: vonn}\n  - {name: ok, extractor: transfer.absI_max, input: transfer}\n  - {name: z, func: 'lambda gm_value: gm_valeu * 2', input: ok}\n",
    )
    .unwrap();
    let o = oect(&["check", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = stderr(&o);
    for want in [
        "feature 'gm': unknown extractor 'transfer.gm_maxx'; did you mean 'transfer.gm_max'?",
        "feature 'von': transfer.Von: unknown parameter 'dirction'; did you mean 'direction'?",
        "feature 'i': transfer.absI_max: parameter 'device_type': 'Q' is not one of N, n, P, p\n",
        "parameter 'direction': 'fowrard' is not one of forward, reverse, both",
        "did you mean 'forward'?",
        "input 'vonn' is neither a data source (transfer, transient) nor a feature of this config; did you mean 'von'?",
        "unknown name `gm_valeu`; did you mean 'gm_value'?",
    ] {
        assert!(err.contains(want), "{want:?} not in\n{err}");
    }
    let o = oect(&["check", "v2_transfer_basc"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        stderr(&o).contains("did you mean 'v2_transfer_basic'?"),
        "{}",
        show(&o)
    );
    std::fs::write(
        &config,
        "features:\n  - {name: gm, extractor: transfer.gm_max, input: transfer, parmas: {}}\n",
    )
    .unwrap();
    let o = oect(&["check", config.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("unknown key `parmas`; did you mean 'params'?"),
        "{}",
        show(&o)
    );
}

#[test]
fn a_filter_that_matches_nothing_lists_what_there_is() {
    let dir = scratch("cli-filter");
    let data = dir.join("data");
    let out = dir.join("out");
    generate(
        &data,
        &["--experiments", "2", "--steps", "2", "--transfer-only"],
    );
    let o = run_config(&data, "v2_quick_analysis", &out, &["--chip-id", "SYN0001"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains("--chip-id 'SYN0001' matches none of the 2 experiments (chips: #SYN0001, #SYN0002; devices: 1, 2); did you mean '#SYN0001'?"),
        "{}",
        show(&o)
    );
    // With the `#`, it matches one.
    let o = run_config(&data, "v2_quick_analysis", &out, &["--chip-id", "#SYN0001"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(oect_e2e::parquet_files(&out).len(), 1);
}

#[test]
fn completions_know_the_subcommands_and_options() {
    for shell in ["bash", "zsh", "fish"] {
        let o = oect(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", show(&o));
        let script = stdout(&o);
        for word in ["run", "check", "collect", "inspect", "chip-id", "workers"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
    }
    let o = oect(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

#[test]
fn the_man_page_renders() {
    let o = oect(&["man"]);
    assert!(o.status.success(), "{}", show(&o));
    let page = stdout(&o);
    assert!(
        page.starts_with(".ie"),
        "not roff: {}",
        &page[..page.len().min(200)]
    );
    assert!(page.contains(".TH oect 1"), "{page}");
    assert!(
        page.contains("oect\\-run(1)") || page.contains("oect-run(1)"),
        "{page}"
    );
    let dir = scratch("cli-man");
    let o = oect(&["man", "-o", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    for name in [
        "oect.1",
        "oect-run.1",
        "oect-check.1",
        "oect-plugins-list.1",
    ] {
        assert!(dir.join(name).is_file(), "{name} not written: {}", show(&o));
    }
    assert!(!dir.join("oect-__worker.1").exists());
    // `man` itself renders it, where installed.
    match Command::new("man")
        .arg("-l")
        .arg(dir.join("oect-run.1"))
        .env("MANWIDTH", "100")
        .output()
    {
        Ok(m) if m.status.success() => {
            let text = String::from_utf8_lossy(&m.stdout);
            assert!(text.contains("--chip-id"), "{text}");
        }
        _ => println!("SKIPPED: rendering with man(1) (not installed)"),
    }
}

#[test]
fn shared_options_have_one_name_across_subcommands() {
    let help = |cmd: &[&str]| {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = oect(&args);
        assert!(o.status.success(), "{}", show(&o));
        stdout(&o)
    };
    // `-o/--out` wherever a command writes somewhere.
    for cmd in [
        &["run"][..],
        &["demo"],
        &["collect"],
        &["convert"],
        &["watch"],
        &["generate"],
        &["plot"],
        &["report"],
        &["status"],
        &["man"],
    ] {
        let text = help(cmd);
        assert!(text.contains("-o, --out <"), "{cmd:?}:\n{text}");
        assert!(text.contains("Exit codes:"), "{cmd:?}:\n{text}");
        for global in ["-q, --quiet", "-v, --verbose", "--color <WHEN>"] {
            assert!(text.contains(global), "{cmd:?} lacks {global}:\n{text}");
        }
    }
    for cmd in [&["run"][..], &["collect"], &["watch"], &["status"]] {
        assert!(help(cmd).contains("-c, --config <"), "{cmd:?}");
    }
    // `--json` on every listing command.
    for cmd in [
        &["plugins", "list"][..],
        &["configs", "list"],
        &["inspect"],
        &["status"],
        &["check"],
        &["convert"],
    ] {
        assert!(help(cmd).contains("--json"), "{cmd:?}");
    }
    let o = oect(&["configs", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "transient_tau"));
}

#[test]
fn config_names_resolve_alike_everywhere_and_find_local_files() {
    let dir = scratch("cli-config-forms");
    std::fs::write(
        dir.join("features.yaml"),
        "features:\n  - {name: i, extractor: transfer.absI_max, input: transfer}\n",
    )
    .unwrap();
    generate(&dir.join("data"), &["--steps", "2", "--transfer-only"]);
    let in_dir = |args: &[&str]| {
        Command::new(oect_e2e::oect_bin())
            .args(args)
            .current_dir(&dir)
            .env_remove("OECT_PLUGIN_PATH")
            .output()
            .unwrap()
    };
    // A bare name finds ./NAME.yaml in run, check and collect alike.
    let o = in_dir(&["check", "features"]);
    assert!(stdout(&o).contains("features.yaml: ok"), "{}", show(&o));
    let o = in_dir(&["run", "data", "-c", "features", "-o", "out"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(oect_e2e::parquet_files(&dir.join("out/features")).len(), 1);
    for form in ["features", "features.yaml", "./features.yaml"] {
        let o = in_dir(&["collect", "out", "-c", form, "-o", "all.parquet"]);
        assert!(o.status.success(), "{form}: {}", show(&o));
        assert!(stdout(&o).contains("1 experiment, 2 rows"), "{}", show(&o));
    }
}

#[test]
fn quiet_keeps_errors_and_results_only() {
    let dir = scratch("cli-quiet");
    let data = dir.join("data");
    generate(
        &data,
        &["--experiments", "2", "--steps", "2", "--transfer-only"],
    );
    std::fs::write(data.join("broken.h5"), b"not HDF5").unwrap();
    let out = dir.join("out");
    let o = run_config(&data, "v2_quick_analysis", &out, &["-q"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_eq!(stdout(&o), "", "{}", show(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("FAILED ") && err.contains("broken.h5"),
        "{err}"
    );
    // The summary is on stdout without -q, the FAILED line on stderr either way.
    let o = run_config(&data, "v2_quick_analysis", &out, &[]);
    assert!(
        stdout(&o).starts_with("3 experiments: 0 written, 2 skipped (up to date), 1 failed"),
        "{}",
        show(&o)
    );
    assert!(!stdout(&o).contains("FAILED"), "{}", show(&o));
    assert!(stderr(&o).contains("FAILED "), "{}", show(&o));
    // -v lists every experiment.
    let o = run_config(&data, "v2_quick_analysis", &out, &["-v"]);
    assert_eq!(
        stdout(&o).matches("skipped (up to date) ").count(),
        2,
        "{}",
        show(&o)
    );
    // --json is a result: -q keeps it.
    let o = run_config(&data, "v2_quick_analysis", &out, &["-q", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["experiments"].as_array().unwrap().len(), 3);
    // --color always colours the labels, NO_COLOR and --color never do not.
    let o = run_config(
        &data,
        "v2_quick_analysis",
        &out,
        &["-q", "--color", "always"],
    );
    assert!(
        stderr(&o).contains("\u{1b}[1;31mFAILED\u{1b}[0m"),
        "{}",
        show(&o)
    );
    let o = Command::new(oect_e2e::oect_bin())
        .args([
            "run",
            data.to_str().unwrap(),
            "-c",
            "v2_quick_analysis",
            "-o",
        ])
        .arg(&out)
        .args(["-q", "--color", "auto"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!stderr(&o).contains('\u{1b}'), "{}", show(&o));
}

#[test]
fn inspect_takes_folders_and_several_files() {
    let dir = scratch("cli-inspect");
    let files = generate(&dir.join("data"), &["--experiments", "2", "--steps", "2"]);
    let o = oect(&["inspect", dir.join("data").to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        stdout(&o).matches("  chip #SYN000").count(),
        2,
        "{}",
        show(&o)
    );
    let o = oect(&[
        "inspect",
        "--json",
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
    ]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    // A folder without experiment files is one clear line, no HDF5 error dump.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = oect(&["inspect", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert_eq!(
        stderr(&o).trim(),
        format!("error: {}: no .h5 files in this folder", empty.display())
    );
    // A file that is not HDF5 fails by name; the others are shown.
    std::fs::write(dir.join("data/broken.h5"), b"not HDF5").unwrap();
    let o = oect(&["inspect", dir.join("data").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_eq!(
        stdout(&o).matches("  chip #SYN000").count(),
        2,
        "{}",
        show(&o)
    );
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("FAILED ") && err.contains("broken.h5"),
        "{err}"
    );
}
