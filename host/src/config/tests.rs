use super::*;

fn parse_err(text: &str) -> String {
    parse("t", "t.yaml", text).unwrap_err().to_string()
}

#[test]
fn builtin_configs_parse() {
    for (name, _) in builtin() {
        let c = load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.name, name);
        assert!(!c.features.is_empty());
    }
    let basic = load("v2_transfer_basic").unwrap();
    let names: Vec<&str> = basic.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "gm_max_forward",
            "gm_max_reverse",
            "Von_forward",
            "Von_reverse",
            "absI_max"
        ]
    );
    assert_eq!(basic.features[1].params["direction"], "reverse");
    assert_eq!(basic.features[0].inputs, ["transfer"]);
}

#[test]
fn mapping_form_equals_list_form() {
    let list = parse(
        "t",
        "t",
        "features:\n  - {name: g, extractor: transfer.gm_max, input: transfer, params: {direction: reverse}}\n  - {name: r, func: 'lambda a, b: a / b', input: [g, g]}\n",
    )
    .unwrap();
    let map = parse(
        "t",
        "t",
        "features:\n  g: {extractor: transfer.gm_max, input: transfer, params: {direction: reverse}}\n  r: {func: 'lambda a, b: a / b', input: [g, g]}\n",
    )
    .unwrap();
    assert_eq!(list.features, map.features);
    assert_eq!(
        map.features[1].kind,
        FeatureKind::Func("lambda a, b: a / b".into())
    );
}

#[test]
fn schema_errors_name_the_feature_and_key() {
    let e = parse_err(
        "features:\n  - {name: g, extractor: transfer.gm_max, input: transfer, parmas: {}}\n",
    );
    assert!(
        e.contains("feature 'g'") && e.contains("unknown key `parmas`"),
        "{e}"
    );
    let e =
        parse_err("features:\n  - {name: g, extractor: x, func: 'lambda a: a', input: transfer}\n");
    assert!(e.contains("feature 'g'") && e.contains("not both"), "{e}");
    let e = parse_err("features:\n  - {name: g, input: transfer}\n");
    assert!(e.contains("feature 'g'") && e.contains("required"), "{e}");
    let e = parse_err("features:\n  - {name: g, extractor: x}\n");
    assert!(e.contains("feature 'g'") && e.contains("`input`"), "{e}");
    let e = parse_err("features:\n  - {name: g, extractor: x, input: transfer, params: [1]}\n");
    assert!(e.contains("feature 'g'") && e.contains("`params`"), "{e}");
    let e = parse_err("features:\n  - {name: g, extractor: x, input: transfer}\n  - {name: g, extractor: y, input: transfer}\n");
    assert!(e.contains("feature 'g' is defined twice"), "{e}");
    let e = parse_err("features: []\n");
    assert!(e.contains("must not be empty"), "{e}");
    let e = parse_err("name: x\n");
    assert!(e.contains("missing required key `features`"), "{e}");
    let e = parse_err("data_source: {experiment_type: transfer, mode: x}\nfeatures:\n  - {name: g, extractor: x, input: transfer}\n");
    assert!(e.contains("data_source: unknown key `mode`"), "{e}");
    let e =
        parse_err("data_type: voltage\nfeatures:\n  - {name: g, extractor: x, input: transfer}\n");
    assert!(e.contains("data_type must be one of"), "{e}");
}

#[test]
fn unknown_root_keys_are_accepted_like_the_predecessor() {
    let c = parse(
        "t",
        "t",
        "import_modules: [x]\nconfig_version: '1.0'\nfeatures:\n  - {name: g, extractor: x, input: transfer}\n",
    );
    assert!(c.is_ok());
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    let e = parse_err("features:\n  - name: g\n    input: [transfer\n");
    assert!(e.starts_with("t.yaml: invalid YAML"), "{e}");
    assert!(e.contains("line"), "{e}");
}

#[test]
fn files_are_checked_for_existence_and_format() {
    let e = load("no_such_config").unwrap_err().to_string();
    assert!(
        e.contains("no_such_config") && e.contains("v2_transfer_basic"),
        "{e}"
    );
    let dir = std::env::temp_dir().join(format!("oect-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let txt = dir.join("c.txt");
    std::fs::write(&txt, "features: []").unwrap();
    let e = load(txt.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("unsupported config format '.txt'"), "{e}");
    let yaml = dir.join("mine.yml");
    std::fs::write(
        &yaml,
        "features:\n  - {name: g, extractor: x, input: transfer}\n",
    )
    .unwrap();
    assert_eq!(load(yaml.to_str().unwrap()).unwrap().name, "mine");
    std::fs::remove_dir_all(&dir).unwrap();
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// A valid config to mutate: both forms, params, a derived feature.
    const SEED: &str = "version: 2\ndata_type: transfer\nfeatures:\n  - name: gm\n    extractor: transfer.gm_max\n    input: transfer\n    params: {direction: forward, device_type: N}\n  - name: r\n    func: \"lambda g: g * 2\"\n    input: [gm]\n";

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary text is a config or a clean error, never a panic.
        #[test]
        fn parse_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
            let _ = parse("t", "t.yaml", &text);
        }

        /// Valid configs with a byte range replaced by YAML-ish noise.
        #[test]
        fn parse_never_panics_on_mutated_configs(
            at in 0..SEED.len(),
            cut in 0usize..12,
            noise in "[ \\-:\\[\\]{},'\"\\n#&*!|>%@`a-z0-9]{0,12}",
        ) {
            let mut text = SEED.as_bytes().to_vec();
            let end = (at + cut).min(text.len());
            text.splice(at..end, noise.bytes());
            let text = String::from_utf8_lossy(&text);
            if let Err(e) = parse("t", "t.yaml", &text) {
                prop_assert!(e.to_string().starts_with("t.yaml: "), "{e}");
            }
        }
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let e = parse("t", "t.yaml",
        "data_type: voltage\nfeatures:\n  - {name: g, extractor: transfer.gm_max, parmas: {}}\n  - {name: h, func: 1, input: g, unit: [s]}\n  - {name: g, extractor: transfer.Von, input: transfer}\n",
    )
    .unwrap_err();
    let problems: Vec<&str> = e.problems().collect();
    assert_eq!(problems.len(), 6, "{e}");
    assert!(problems.iter().all(|p| p.starts_with("t.yaml: ")), "{e}");
    for want in [
        "data_type must be one of",
        "feature 'g': unknown key `parmas`",
        "feature 'g': missing required key `input`",
        "feature 'h': `extractor` / `func` must be a string",
        "feature 'h': `unit` must be a string",
        "feature 'g' is defined twice",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{want} not in\n{e}"
        );
    }
}
