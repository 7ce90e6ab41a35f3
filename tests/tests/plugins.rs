//! Plugin discovery: what `oect plugins list` finds, and where.

use oect_e2e::{library, oect, oect_bin, run_with, scratch, show};

fn extractor_names(listing: &serde_json::Value) -> Vec<String> {
    listing["extractors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn built_in_plugins_are_found_next_to_the_binary() {
    let o = oect(&["plugins", "list", "--json"]);
    assert!(o.status.success(), "{}", show(&o));
    let listing: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names = extractor_names(&listing);
    for e in [
        "transfer.gm_max",
        "transfer.Von",
        "transfer.absI_max",
        "transfer.gm_max_coords",
        "transfer.Von_coords",
        "transient.peak_current",
        "transient.cycles",
        "transient.decay_time",
        "transient.tau_on_off",
    ] {
        assert!(names.contains(&e.to_string()), "{e} missing from {names:?}");
    }
    let transfer = listing["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "oect-transfer")
        .expect("oect-transfer plugin");
    let path = transfer["path"].as_str().unwrap();
    assert!(path.contains("liboect_transfer"), "{path}");
    assert!(
        !names.iter().any(|n| n.starts_with("fixture.")),
        "test fixtures must not load by default"
    );
}

#[test]
fn a_plugin_is_found_exactly_where_it_is_put() {
    let dir = scratch("discovery");
    // A copy of the binary with no plugins beside it.
    let bin = dir.join("bin").join(oect_bin().file_name().unwrap());
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(oect_bin(), &bin).unwrap();
    let o = run_with(&bin, &["plugins", "list", "--json"]);
    assert!(o.status.success(), "{}", show(&o));
    let names = extractor_names(&serde_json::from_slice(&o.stdout).unwrap());
    assert!(names.is_empty(), "{names:?}");

    let plugins = dir.join("my-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let lib = library("oect_transfer");
    std::fs::copy(&lib, plugins.join(lib.file_name().unwrap())).unwrap();
    let o = run_with(
        &bin,
        &[
            "plugins",
            "list",
            "--json",
            "--plugin-dir",
            plugins.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let names = extractor_names(&serde_json::from_slice(&o.stdout).unwrap());
    assert!(names.contains(&"transfer.gm_max".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("transient.")),
        "{names:?}"
    );

    // The same folder through the environment variable.
    let o = std::process::Command::new(&bin)
        .args(["plugins", "list", "--json"])
        .env("OECT_PLUGIN_PATH", &plugins)
        .output()
        .unwrap();
    let names = extractor_names(&serde_json::from_slice(&o.stdout).unwrap());
    assert!(names.contains(&"transfer.Von".to_string()), "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_library_that_is_not_a_plugin_is_skipped_with_one_line() {
    let dir = scratch("notplugin");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let fake = plugins.join(format!("libnotes.{}", std::env::consts::DLL_EXTENSION));
    std::fs::write(&fake, b"plain text, not a shared library").unwrap();
    let o = oect(&["plugins", "list", "--plugin-dir", plugins.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("libnotes")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("warning: ") && lines[0].contains("skipped"),
        "{stderr}"
    );
    // The built-in plugins still load.
    assert!(String::from_utf8_lossy(&o.stdout).contains("transfer.gm_max"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The one warning line `oect plugins list` prints about `lib`, after loading it from a
/// plugin folder of its own, with the built-in plugins still listed.
fn refusal_line(lib: &str) -> (String, std::path::PathBuf) {
    let dir = scratch(lib);
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let built = library(lib);
    let copy = plugins.join(built.file_name().unwrap());
    std::fs::copy(&built, &copy).unwrap();
    let o = oect(&["plugins", "list", "--plugin-dir", plugins.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(lib)).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("transfer.gm_max"), "{stdout}");
    assert!(!stdout.contains("fixture.version_probe"), "{stdout}");
    (lines[0].to_string(), copy)
}

/// A working plugin whose header claims another API version: an older minor (a 0.1
/// plugin), a newer minor and a newer major are refused by the version policy in one
/// line naming both versions; `oect plugins check` refuses them too (exit 2).
#[test]
fn plugins_of_another_api_minor_or_major_are_refused_in_one_line() {
    let host = oect_plugin_api::API_VERSION;
    for (lib, claimed) in [
        ("api_0_1_fixture", "0.1.0"),
        ("api_0_3_fixture", "0.3.0"),
        ("api_1_0_fixture", "1.0.0"),
    ] {
        let (line, copy) = refusal_line(lib);
        assert!(
            line.starts_with("warning: ")
                && line.contains(&format!(
                    "skipped, built against oect-plugin-api {claimed} but this host uses {host}"
                ))
                && line.contains("same minor version"),
            "{line}"
        );
        let o = oect(&["plugins", "check", copy.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(claimed),
            "{}",
            show(&o)
        );
    }
}

/// What the host's own check adds: abi_stable alone loads the newer-minor plugin (its
/// version rule only refuses an older minor), and the plugin would even work.
#[test]
fn abi_stable_alone_would_load_a_newer_minor_plugin() {
    use abi_stable::library::{lib_header_from_path, RootModule};
    let header = lib_header_from_path(&library("api_0_3_fixture")).unwrap();
    assert_eq!(header.version_strings().version.as_str(), "0.3.0");
    let module = header
        .init_root_module::<oect_plugin_api::PluginRef>()
        .expect("abi_stable accepts a newer minor");
    let names: Vec<String> = (module.extractors())()
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, ["fixture.version_probe"]);
    assert_eq!(oect_plugin_api::PluginRef::NAME, "oect_plugin");
}

/// The host's version but another root-module layout: refused by abi_stable's layout
/// check, in one line naming both versions.
#[test]
fn a_plugin_with_another_layout_is_refused_in_one_line() {
    let host = oect_plugin_api::API_VERSION;
    let (line, copy) = refusal_line("bad_layout_fixture");
    assert!(
        line.contains(&format!(
            "incompatible plugin ABI (built against oect-plugin-api {host}, host uses {host})"
        )),
        "{line}"
    );
    let o = oect(&["plugins", "check", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

/// The listing shows what each extractor reads, its parameters' limits and its examples.
#[test]
fn the_listing_shows_channels_limits_and_examples() {
    let o = oect(&["plugins", "list"]);
    assert!(o.status.success(), "{}", show(&o));
    // Nothing in the build folder beside the binary is mistaken for a plugin.
    assert!(o.stderr.is_empty(), "{}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "transient.peak_current   transient (i)",
        "transient.tau_on_off     transient (t, i)",
        "transfer.gm_max          transfer (vg, id)",
        "window_points_step     non-negative integer ≥ 1, default 5",
        "period                 number > 0, or null, default null",
        "e.g. the on-current of a negative pulse: i = [2e-6, -0.00625, 2e-6] → 0.00625",
        "e.g. both halves: vg = [0, 0.1, 0.2, 0.1, 0], id = [0, 1e-4, 3e-4, 1e-4, 0] with {\"direction\":\"both\"} → [0.002, 0.001]",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    let o = oect(&["plugins", "list", "--json"]);
    let listing: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listing["api_version"], oect_plugin_api::API_VERSION);
    let peak = listing["extractors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "transient.peak_current")
        .unwrap();
    assert_eq!(peak["channels"], serde_json::json!(["i"]));
    assert_eq!(
        peak["examples"][1]["params"],
        serde_json::json!({"use_abs": false})
    );
    assert_eq!(peak["examples"][1]["inputs"]["i"][1], -6.25e-3);
}
