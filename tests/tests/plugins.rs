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

#[test]
fn a_plugin_built_against_another_api_version_is_refused_in_one_line() {
    let dir = scratch("oldapi");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let lib = library("old_api_fixture");
    let copy = plugins.join(lib.file_name().unwrap());
    std::fs::copy(&lib, &copy).unwrap();

    let o = oect(&["plugins", "list", "--plugin-dir", plugins.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("old_api_fixture"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("0.2.0") && lines[0].contains(env!("CARGO_PKG_VERSION")),
        "the line names both versions: {stderr}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("transfer.gm_max"));

    let o = oect(&["plugins", "check", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("0.2.0"),
        "{}",
        show(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
