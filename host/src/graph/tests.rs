use super::*;
use crate::config::parse;

fn registry() -> Registry {
    // An empty folder: these tests exercise checks that run before any extractor exists.
    let dir = std::env::temp_dir().join("oect-graph-test-empty");
    std::fs::create_dir_all(&dir).unwrap();
    Registry::discover(&[dir])
}

fn build(text: &str) -> Result<FeatureGraph, String> {
    let config = parse("t", "t.yaml", text).unwrap();
    FeatureGraph::build(&config, &registry()).map_err(|e| e.to_string())
}

#[test]
fn kahn_order_is_fifo_in_config_order() {
    // a, v, c independent; d <- a; e <- (a, d); f <- e   (the predecessor's example)
    let f = Input::Feature;
    let s = Input::Source(Source::Transfer);
    let inputs = vec![
        vec![f(5)],       // f <- e  (listed first on purpose)
        vec![s],          // a
        vec![s],          // v
        vec![s],          // c
        vec![f(1)],       // d <- a
        vec![f(1), f(4)], // e <- a, d
    ];
    assert_eq!(topological_order(&inputs), (vec![1, 2, 3, 4, 5, 0], vec![]));
}

#[test]
fn cycles_are_reported_with_their_members() {
    let e = build(
        "features:\n  - {name: a, func: 'lambda x: x', input: b}\n  - {name: b, func: 'lambda x: x', input: a}\n  - {name: c, extractor: transfer.gm_max, input: transfer}\n",
    )
    .err()
    .unwrap();
    assert!(
        e.contains("circular dependency between features: a, b"),
        "{e}"
    );
}

#[test]
fn unknown_inputs_name_the_feature_and_the_candidates() {
    let e = build("features:\n  - {name: r, func: 'lambda x: x', input: gm_max_fwd}\n")
        .err()
        .unwrap();
    assert!(e.contains("feature 'r'"), "{e}");
    assert!(
        e.contains("input 'gm_max_fwd' is neither a data source"),
        "{e}"
    );
}

#[test]
fn unknown_extractors_are_reported_at_build_time() {
    let e = build("features:\n  - {name: g, extractor: transfer.gm_maxx, input: transfer}\n")
        .err()
        .unwrap();
    assert!(
        e.contains("feature 'g'") && e.contains("unknown extractor 'transfer.gm_maxx'"),
        "{e}"
    );
}

#[test]
fn func_features_cannot_read_data_sources() {
    let e = build("features:\n  - {name: r, func: 'lambda x: x', input: transfer}\n")
        .err()
        .unwrap();
    assert!(
        e.contains("feature 'r'") && e.contains("not a data source"),
        "{e}"
    );
}

#[test]
fn every_broken_feature_is_reported_but_not_what_depends_on_it() {
    let e = build(
        "features:\n  - {name: g, extractor: transfer.gm_maxx, input: transfer}\n  - {name: r, func: 'lambda x: x', input: gm_max_fwd}\n  - {name: s, func: 'lambda x: x', input: transfer}\n  - {name: t, func: 'lambda x: x * 2', input: g}\n  - {name: a, func: 'lambda x: x', input: b}\n  - {name: b, func: 'lambda x: x', input: a}\n",
    )
    .err()
    .unwrap();
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 4, "{e}");
    assert!(lines.iter().all(|l| l.starts_with("t.yaml: ")), "{e}");
    for want in [
        "feature 'g': unknown extractor 'transfer.gm_maxx'",
        "feature 'r': input 'gm_max_fwd' is neither",
        "feature 's': a func feature takes other features",
        "circular dependency between features: a, b",
    ] {
        assert!(lines.iter().any(|l| l.contains(want)), "{want} not in\n{e}");
    }
    // t only fails because g does: g's error says so, t adds nothing.
    assert!(!e.contains("feature 't'"), "{e}");
}
