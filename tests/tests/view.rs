//! `oect plot` and `oect report` on generated data shaped like the lab's (several chips,
//! several devices per chip, one device tested twice, transfer + transient, ragged steps and
//! a final transfer), with the shipped configs that produce scalar, expanded per-cycle and
//! nested per-cycle features.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use oect_e2e::{generate, oect, parquet_files, run_config, scratch, show};
use parquet::arrow::ArrowWriter;

const CONFIGS: [&str; 3] = ["v2_mixed", "transient_tau", "v2_transient_cycles"];
/// Tableau-10 colours of the first three lines of a feature figure (`view/figure.rs`).
const LINE_COLORS: [[u8; 3]; 3] = [[31, 119, 180], [255, 127, 14], [44, 160, 44]];

struct Fixture {
    /// The experiment files (chip #VW0001: devices 1, 1 again and 3; chip #VW0002: 2 and 4).
    files: Vec<PathBuf>,
    data: PathBuf,
    /// The outputs of every test, one sub-folder per config (two tests of device 1 side by
    /// side: their names differ by test_id).
    features: PathBuf,
}

fn set_text_attr(file: &Path, name: &str, value: &str) {
    let f = hdf5::File::open_rw(file).unwrap();
    f.delete_attr(name).unwrap();
    let v: hdf5::types::VarLenUnicode = value.parse().unwrap();
    f.new_attr::<hdf5::types::VarLenUnicode>()
        .create(name)
        .unwrap()
        .write_scalar(&v)
        .unwrap();
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = scratch("view");
        let data = dir.join("data");
        let shape = [
            "--steps",
            "24",
            "--ragged",
            "--final-transfer",
            "--chip-prefix",
            "#VW",
        ];
        let gen = |sub: &str, n: &str, seed: &str| {
            let mut args = vec!["--experiments", n, "--seed", seed];
            args.extend_from_slice(&shape);
            generate(&data.join(sub), &args)
        };
        let first = gen("a", "2", "1"); // #VW0001 dev 1, #VW0002 dev 2
        let more = gen("b", "2", "2"); // become #VW0001 dev 3, #VW0002 dev 4
        let repeat = gen("c", "1", "3"); // #VW0001 dev 1, tested again
        set_text_attr(&more[0], "device_number", "3");
        set_text_attr(&more[1], "device_number", "4");
        let features = dir.join("features");
        for config in CONFIGS {
            let o = run_config(&data, config, &features, &[]);
            assert!(matches!(o.status.code(), Some(0 | 1)), "{}", show(&o));
            assert_eq!(parquet_files(&features.join(config)).len(), 5);
        }
        let mut files: Vec<PathBuf> = first.into_iter().chain(more).chain(repeat).collect();
        files.sort();
        Fixture {
            files,
            data,
            features,
        }
    })
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Every file under `dir`, relative to it, as `a/b.png` strings.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// A decoded PNG (indexed colours expanded): width, height, RGB pixels.
fn decode_png(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let mut decoder = png::Decoder::new(File::open(path).unwrap());
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder
        .read_info()
        .unwrap_or_else(|e| panic!("{}: not a PNG ({e})", path.display()));
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, pixels)
}

/// A figure is not blank: a fair share of its pixels is ink, and it has many colours
/// (text anti-aliasing, lines, grid), but it is mostly background.
fn assert_not_blank(path: &Path) {
    let (w, h, px) = decode_png(path);
    assert!(w >= 600 && h >= 300, "{}: {w}×{h}", path.display());
    let ink = px.iter().filter(|p| **p != [255, 255, 255]).count() as f64 / px.len() as f64;
    let colours: BTreeSet<[u8; 3]> = px.iter().copied().collect();
    assert!(
        (0.02..0.8).contains(&ink) && colours.len() > 20,
        "{}: {:.1} % ink, {} colours",
        path.display(),
        ink * 100.0,
        colours.len()
    );
}

fn has_colour(path: &Path, c: [u8; 3]) -> bool {
    decode_png(path).2.contains(&c)
}

fn expected_feature_files(chips: &[&str], ext: &str) -> BTreeSet<String> {
    let features: [(&str, &[&str]); 3] = [
        (
            "v2_mixed",
            &[
                "gm_max_forward",
                "Von_forward",
                "absI_max",
                "transient_peak",
                "transient_tau[tau_on]",
                "transient_tau[tau_off]",
                "transient_decay",
                "gm_to_peak_ratio",
                "decay_normalized",
            ],
        ),
        (
            "transient_tau",
            &[
                "tau_cycles[tau_on]",
                "tau_cycles[tau_off]",
                "tau_on_mean",
                "tau_off_mean",
                "tau_on_std",
                "tau_off_std",
                "tau_on_off_ratio",
                "tau_on_evolution",
            ],
        ),
        (
            "v2_transient_cycles",
            &[
                "transient_cycles",
                "cycle_mean",
                "cycle_std",
                "cycle_decay_rate",
            ],
        ),
    ];
    let mut out = BTreeSet::new();
    for (config, names) in features {
        for chip in chips {
            for f in names {
                out.insert(format!("{config}/{chip}-{f}.{ext}"));
            }
        }
    }
    out
}

fn experiment_files(files: &[PathBuf], ext: &str) -> BTreeSet<String> {
    files
        .iter()
        .flat_map(|f| {
            let stem = f
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches('#')
                .to_string();
            ["transfer", "transient"].map(|k| format!("experiments/{stem}-{k}.{ext}"))
        })
        .collect()
}

#[test]
fn plot_png_draws_every_feature_per_chip_and_every_experiment() {
    let fx = fixture();
    let out = scratch("view-png");
    let o = oect(&["plot", s(&fx.features), s(&fx.data), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let mut want = expected_feature_files(&["VW0001", "VW0002"], "png");
    want.extend(experiment_files(&fx.files, "png"));
    assert_eq!(tree(&out), want);
    for f in &want {
        assert_not_blank(&out.join(f));
    }
    // One line per experiment: chip #VW0001 has three (device 1 twice, device 3), #VW0002 two.
    let gm1 = out.join("v2_mixed/VW0001-gm_max_forward.png");
    let gm2 = out.join("v2_mixed/VW0002-gm_max_forward.png");
    assert!(LINE_COLORS.iter().all(|&c| has_colour(&gm1, c)));
    assert!(has_colour(&gm2, LINE_COLORS[1]) && !has_colour(&gm2, LINE_COLORS[2]));
    // Transfer sweeps coloured by step: the colour scale's first (dark violet) and last
    // colours are both drawn.
    let stem = fx.files[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches('#')
        .to_string();
    let (_, _, px) = decode_png(&out.join(format!("experiments/{stem}-transfer.png")));
    let violet = px.iter().any(|p| p[2] > 60 && p[0] > 50 && p[1] < 20);
    // Figures are 256-colour PNGs (a third of the size of RGB ones), the step colours kept.
    let transfer = out.join(format!("experiments/{stem}-transfer.png"));
    let info = png::Decoder::new(File::open(&transfer).unwrap())
        .read_info()
        .unwrap()
        .info()
        .clone();
    assert_eq!(info.color_type, png::ColorType::Indexed);
    let yellowish = px.iter().any(|p| p[0] > 150 && p[1] > 180 && p[2] < 80);
    assert!(violet && yellowish, "the step colours are not all drawn");
    // Same inputs, same bytes.
    let again = scratch("view-png-again");
    let o = oect(&["plot", s(&fx.features), s(&fx.data), "-o", s(&again)]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    for f in tree(&again) {
        assert_eq!(
            std::fs::read(out.join(&f)).unwrap(),
            std::fs::read(again.join(&f)).unwrap(),
            "{f} differs between two runs"
        );
    }
}

#[test]
fn plot_svg_selects_features_and_chip_and_labels_them() {
    let fx = fixture();
    let out = scratch("view-svg");
    let o = oect(&[
        "plot",
        s(&fx.features),
        s(&fx.data),
        "-o",
        s(&out),
        "--format",
        "svg",
        "--feature",
        "gm_max_forward",
        "--feature",
        "tau_cycles",
        "--chip",
        "#VW0001",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let chip1: Vec<PathBuf> = fx
        .files
        .iter()
        .filter(|f| f.to_string_lossy().contains("#VW0001"))
        .cloned()
        .collect();
    assert_eq!(chip1.len(), 3);
    let mut want: BTreeSet<String> = [
        "v2_mixed/VW0001-gm_max_forward.svg",
        "transient_tau/VW0001-tau_cycles[tau_on].svg",
        "transient_tau/VW0001-tau_cycles[tau_off].svg",
    ]
    .map(String::from)
    .into();
    want.extend(experiment_files(&chip1, "svg"));
    assert_eq!(tree(&out), want);
    for f in &want {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(text.trim_start().starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        assert!(
            text.contains("<polyline") || text.contains("<path"),
            "{f}: no line"
        );
    }
    let gm = std::fs::read_to_string(out.join("v2_mixed/VW0001-gm_max_forward.svg")).unwrap();
    assert!(gm.contains("gm_max_forward — chip #VW0001"), "{gm}");
    assert!(gm.contains("config v2_mixed · 3 experiments"));
    assert!(gm.contains("transfer step (transfer_step)"), "{gm}");
    // Device 1 was tested twice: its two lines name their tests; device 3 needs no more.
    assert_eq!(gm.matches("dev 1 · test_").count(), 2, "{gm}");
    assert!(gm.contains("\ndev 3\n"), "{gm}");
    let tau =
        std::fs::read_to_string(out.join("transient_tau/VW0001-tau_cycles[tau_on].svg")).unwrap();
    assert!(tau.contains("per-step median over cycles, band: inter-quartile range"));
    let stem = chip1[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches('#')
        .to_string();
    let transfer =
        std::fs::read_to_string(out.join(format!("experiments/{stem}-transfer.svg"))).unwrap();
    for label in [
        "Vg (V)",
        "|Id| (A)",
        "step_index",
        "Transfer curves — chip #VW0001, device 1",
    ] {
        assert!(
            transfer.contains(label),
            "no {label:?} in the transfer figure"
        );
    }
    assert!(transfer.contains("Id (µA)") || transfer.contains("Id (mA)"));
    let transient =
        std::fs::read_to_string(out.join(format!("experiments/{stem}-transient.svg"))).unwrap();
    for label in [
        "step 0 (first)",
        "(middle)",
        "step 23 (last)",
        "time since the step started (s)",
    ] {
        assert!(
            transient.contains(label),
            "no {label:?} in the transient figure"
        );
    }
}

/// A format-3 output written here directly (`docs/FORMAT.md`): `n` transfer steps of a flat
/// gm with one spike, 30 s apart from 2026-01-01 00:00, with or without the time columns.
/// Steps 3 and 5 have no fit, step 4 failed, and one more no-fit step is counted but not
/// listed (as past the 100 recorded messages).
fn hand_made_output(dir: &Path, n: usize, spike: usize, timed: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let gm: Vec<f64> = (0..n)
        .map(|i| match i {
            3..=5 => f64::NAN,
            _ if i == spike => 10e-3,
            _ => 1e-3 + 1e-5 * (i as f64 * 0.1).sin(),
        })
        .collect();
    let unit = |u: &str| std::collections::HashMap::from([("unit".to_string(), u.to_string())]);
    let attrs = serde_json::json!({
        "format_version": 3,
        "chip_id": "#PS01", "device_id": "7", "test_id": "test_20260101000000_0badcafe",
        "config_name": "hand_made", "config_origin": "hand_made.yaml",
        "config_identity": "/nonexistent/hand_made.yaml",
        "config_hash": "0123456789abcdef", "source_file": "/nonexistent/#PS01-7-x-test_1.h5",
        "source_hash": "0", "test_started_at": "2026-01-01T00:00:00",
        "created_at": "2026-01-02T00:00:00", "oect_version": "0.1.0", "plugins": [],
        "steps": {"transfer": n}, "rows": n, "alignment": null, "units": {"gm": "S"},
        "features": [{"name": "gm", "extractor": "transfer.gm_max", "inputs": [],
            "rows": "transfer", "shape": [], "layout": "scalar", "columns": ["gm"], "unit": "S"}],
        "feature_errors": {"gm": 1}, "feature_no_fit": {"gm": 3},
        "feature_failures": {"gm": {"invalid_input": 1, "no_result": 3}},
        "feature_nonfinite": {"gm": 0}, "errors": [
            {"feature": "gm", "step": 3, "kind": "no_result", "message": "no fit: the sweep never turns on"},
            {"feature": "gm", "step": 4, "kind": "invalid_input", "message": "transfer.gm_max: sweep shorter than 3 points"},
            {"feature": "gm", "step": 5, "kind": "no_result", "message": "no fit: the sweep never turns on"},
        ],
    });
    let meta = std::collections::HashMap::from([("PANDAS_ATTRS".to_string(), attrs.to_string())]);
    let mut fields = vec![Field::new("step_index", DataType::Int64, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(0..n as i64))];
    if timed {
        // 2026-01-01T00:00:00 in µs since the epoch.
        let t0 = 1_767_225_600_000_000i64;
        fields.push(Field::new(
            "start_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ));
        columns.push(Arc::new(TimestampMicrosecondArray::from_iter_values(
            (0..n as i64).map(|i| t0 + i * 30_000_000),
        )));
        fields.push(Field::new("elapsed_s", DataType::Float64, true).with_metadata(unit("s")));
        columns.push(Arc::new(Float64Array::from_iter_values(
            (0..n).map(|i| i as f64 * 30.0),
        )));
    }
    fields.push(Field::new("gm", DataType::Float64, true).with_metadata(unit("S")));
    columns.push(Arc::new(Float64Array::from(gm)));
    let schema = Arc::new(Schema::new(fields).with_metadata(meta));
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let path =
        dir.join("PS01-7-test_20260101000000_0badcafe-feat_20260102-000000_01234567.parquet");
    let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    path
}

#[test]
fn a_spike_among_100000_steps_survives_and_time_and_units_are_used() {
    let dir = scratch("view-spike");
    let (n, spike) = (100_000, 61_234);
    hand_made_output(&dir.join("features"), n, spike, true);
    let out = dir.join("figs");
    let o = oect(&[
        "plot",
        s(&dir.join("features")),
        "-o",
        s(&out),
        "--x",
        "time",
        "--format",
        "svg",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let svg = std::fs::read_to_string(out.join("hand_made/PS01-gm.svg")).unwrap();
    // 100 000 steps × 30 s = 35 days; gm about 1 mS.
    assert!(svg.contains("elapsed time (d)"), "{svg}");
    assert!(svg.contains("gm (mS)"));
    // The line (the polylines of its colour, not the two-point legend sample) is decimated to
    // a few points per pixel column ...
    let lines: Vec<Vec<(i32, i32)>> = svg
        .split("<polyline")
        .skip(1)
        .filter(|p| p.split("/>").next().unwrap().contains("#1F77B4"))
        .map(|p| {
            let pts = p
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            pts.split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .filter(|l: &Vec<(i32, i32)>| l.len() > 2)
        .collect();
    let points: usize = lines.iter().map(Vec::len).sum();
    assert!((100..4 * 1000).contains(&points), "{points} points drawn");
    // ... and still reaches the spike: 10 mS over a 1 mS baseline spans most of the plot.
    let ys: Vec<i32> = lines.iter().flatten().map(|p| p.1).collect();
    let (top, bottom) = (*ys.iter().min().unwrap(), *ys.iter().max().unwrap());
    assert!(
        bottom - top > 300,
        "the spike was flattened: y {top}..{bottom}"
    );

    // PNG: the same spike in pixels of the line colour high up in the figure.
    let png_out = dir.join("png");
    let o = oect(&[
        "plot",
        s(&dir.join("features")),
        "-o",
        s(&png_out),
        "--normalize",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let png = png_out.join("hand_made/PS01-gm.png");
    assert_not_blank(&png);
    let (w, _, px) = decode_png(&png);
    // Rows with the line's colour left of the legend column (190 px).
    let rows: Vec<u32> = px
        .iter()
        .enumerate()
        .filter(|(i, p)| **p == LINE_COLORS[0] && (*i as u32 % w) < w - 190)
        .map(|(i, _)| i as u32 / w)
        .collect();
    let (top, bottom) = (rows.iter().min().unwrap(), rows.iter().max().unwrap());
    assert!(
        *top < 120 && *bottom > 350,
        "line rows {top}..{bottom}: the spike is missing"
    );
    let svg_norm = dir.join("svg-norm");
    let o = oect(&[
        "plot",
        s(&dir.join("features")),
        "-o",
        s(&svg_norm),
        "--normalize",
        "--format",
        "svg",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let svg = std::fs::read_to_string(svg_norm.join("hand_made/PS01-gm.svg")).unwrap();
    assert!(svg.contains("gm / first step") && svg.contains("normalised to the first step"));
    assert!(
        svg.contains("\n10\n"),
        "the spike is 10× the first value: no tick at 10"
    );
}

#[test]
fn x_time_uses_elapsed_s_and_without_it_falls_back_to_steps_and_says_so() {
    let fx = fixture();
    let out = scratch("view-time");
    let o = oect(&[
        "plot",
        s(&fx.features),
        "-o",
        s(&out),
        "--x",
        "time",
        "--feature",
        "absI_max",
        "--format",
        "svg",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("note:"),
        "{}",
        show(&o)
    );
    let svg = std::fs::read_to_string(out.join("v2_mixed/VW0001-absI_max.svg")).unwrap();
    assert!(svg.contains("elapsed time ("), "{svg}");

    let dir = scratch("view-untimed");
    hand_made_output(&dir.join("features"), 50, 10, false);
    let o = oect(&[
        "plot",
        s(&dir.join("features")),
        "-o",
        s(&dir.join("figs")),
        "--x",
        "time",
        "--format",
        "svg",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("note: --x time: 1 of 1 outputs record no step times")
            && err.contains("plotting against step instead"),
        "{err}"
    );
    let svg = std::fs::read_to_string(dir.join("figs/hand_made/PS01-gm.svg")).unwrap();
    assert!(svg.contains("step (step_index)"), "{svg}");
}

#[test]
fn bad_inputs_are_named_and_everything_else_is_drawn() {
    let fx = fixture();
    let dir = scratch("view-bad");
    let mixed = dir.join("in");
    std::fs::create_dir_all(&mixed).unwrap();
    let good = parquet_files(&fx.features.join("v2_mixed")).remove(0);
    std::fs::copy(&good, mixed.join(good.file_name().unwrap())).unwrap();
    std::fs::write(mixed.join("broken.parquet"), b"not parquet at all").unwrap();
    std::fs::write(mixed.join("broken.h5"), b"not hdf5").unwrap();
    let out = dir.join("figs");
    let o = oect(&["plot", s(&mixed), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("broken.parquet: not a readable Parquet file"),
        "{err}"
    );
    assert!(err.contains("broken.h5: not a readable HDF5 file"), "{err}");
    let made = tree(&out);
    assert_eq!(made.len(), 9, "{made:?}");
    assert!(made
        .iter()
        .all(|f| f.starts_with("v2_mixed/") && !f.contains(".tmp")));

    // An unknown feature is named with the ones there are; nothing drawn is exit 2.
    let o = oect(&[
        "plot",
        s(&mixed),
        "-o",
        s(&dir.join("none")),
        "--feature",
        "gm_nope",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--feature gm_nope: no such feature") && err.contains("gm_max_forward"),
        "{err}"
    );
    // A missing input is a usage error.
    let o = oect(&["plot", s(&dir.join("missing")), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing: no such file or folder"));
}

/// Writes the fixture's report and returns its path and text.
fn report() -> &'static (PathBuf, String) {
    static REPORT: OnceLock<(PathBuf, String)> = OnceLock::new();
    REPORT.get_or_init(|| {
        let fx = fixture();
        let dir = scratch("view-report");
        hand_made_output(&dir.join("hand"), 500, 100, true);
        let path = dir.join("report.html");
        let o = oect(&[
            "report",
            s(&fx.features),
            s(&dir.join("hand")),
            "-o",
            s(&path),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text)
    })
}

#[test]
fn the_report_is_one_offline_file_that_names_every_experiment() {
    let fx = fixture();
    let (_, html) = report();
    for f in &fx.files {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            html.contains(name.as_ref()),
            "the report does not name {name}"
        );
    }
    assert!(html.contains("#PS01-7-x-test_1.h5"));
    // Nothing is fetched from anywhere: no URL, no linked resource, images inline.
    for bad in ["http:", "https:", "<link", "@import", "url("] {
        assert!(!html.contains(bad), "the report contains {bad:?}");
    }
    let srcs: Vec<&str> = html.split(" src=\"").skip(1).collect();
    assert_eq!(
        srcs.len(),
        2 * fx.files.len(),
        "one transfer and one transient image per file"
    );
    assert!(srcs.iter().all(|s| s.starts_with("data:image/png;base64,")));
    // The summary: one row per output, grouped by experiment file (5 files × 3 configs, and
    // the hand-made output whose file is missing).
    assert_eq!(html.matches("<tr><td").count(), 15 + 1);
    assert_eq!(html.matches("<tbody>").count(), 5 + 1);
    // Failed and no-fit steps with their reasons, and the no-fit steps past the recorded ones.
    for reason in [
        "gm: no fit: the sweep never turns on (×2)",
        "gm: 1 more step without a fit",
        "gm: transfer.gm_max: sweep shorter than 3 points (×1)",
    ] {
        assert!(html.contains(reason), "no {reason:?} in the report");
    }
    assert!(
        html.contains("2025-08-15"),
        "no time span from the experiment files"
    );
    assert!(
        html.contains("x-test_1.h5 (not found)"),
        "the missing experiment file is not named"
    );
    assert!(
        html.contains("2026-01-01 00:00 → 04:09 (4.2 h)"),
        "no span from the output's start_time"
    );
    for chip in ["Chip #VW0001", "Chip #VW0002", "Chip #PS01"] {
        assert!(html.contains(chip), "no section {chip}");
    }
    // Feature figures inline as SVG with the data frame the pointer read-out uses.
    assert!(html.matches("<figure class=\"plot\" data-frame=").count() >= 2 * 19);
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .map(PathBuf::from)
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[test]
#[ignore = "needs chromium (apt-get install chromium); .ci/run installs it and runs this test"]
fn the_report_renders_in_headless_chromium_without_script_errors() {
    let browser = chromium().expect("chromium is not installed");
    let (path, _) = report();
    let url = format!("file://{}", path.display());
    let headless = |extra: &[&str]| {
        let profile = scratch("view-chromium-profile");
        let o = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium");
        assert!(o.status.success(), "{}", show(&o));
        o
    };
    let dom = headless(&["--virtual-time-budget=5000", "--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("data-ready=\"yes\""),
        "the page script did not finish"
    );
    assert!(
        dom.contains("<p id=\"js-errors\" hidden=\"\"></p>"),
        "script errors on the page"
    );
    let shot = path.with_file_name("report.png");
    headless(&[
        "--window-size=1400,2000",
        &format!("--screenshot={}", shot.display()),
    ]);
    assert_not_blank(&shot);
}
