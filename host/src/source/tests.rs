use std::path::{Path, PathBuf};

use hdf5::types::{FixedAscii, VarLenAscii, VarLenUnicode};
use hdf5::{File, H5Type, Location};
use serde_json::Value;

use oect_plugin_api::abi::Channel;

use super::chunked::{ChunkedF64, DirectError, Gaps, Measurement, Slab};
use super::reader::FixedBytes;
use super::*;
use crate::ingest::synth::{generate, DeviceType, Generated, SynthSpec};

/// A per-test scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("oect-source-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The committed fixtures; `OECT_TEST_DATA` overrides the location (for builds outside `host/`).
fn data_dir() -> PathBuf {
    std::env::var_os("OECT_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"))
}

fn truth(g: &Generated) -> Value {
    serde_json::from_slice(&std::fs::read(&g.truth_path).unwrap()).unwrap()
}

/// Both channels of a transient step, as the whole-file tests read them.
const BOTH: [Channel; 2] = [Channel::Time, Channel::Current];

/// A block's first two channels (Vg and Id, or time and current), step by step.
trait Pair {
    fn step(&self, k: usize) -> (&[f64], &[f64]);
    fn x(&self) -> &[f64];
    fn y(&self) -> &[f64];
}

impl Pair for StepBlock {
    fn step(&self, k: usize) -> (&[f64], &[f64]) {
        let channel = |i: usize| self.samples(self.channels[i].0, k).expect("read");
        (channel(0), channel(1))
    }

    fn x(&self) -> &[f64] {
        &self.channels[0].1
    }

    fn y(&self) -> &[f64] {
        &self.channels[1].1
    }
}

fn lengths(block: &StepBlock) -> Vec<usize> {
    block.offsets.windows(2).map(|w| w[1] - w[0]).collect()
}

fn truth_lengths(truth: &Value, kind: &str) -> Vec<usize> {
    truth[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["n_points"].as_u64().unwrap() as usize)
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

/// Asserts that `err` names `path` and contains `problem`.
fn assert_error(err: impl std::fmt::Display, path: &Path, problem: &str) {
    let text = err.to_string();
    assert!(
        text.starts_with(&path.display().to_string()),
        "error does not name the file: {text}"
    );
    assert!(
        text.contains(problem),
        "error {text:?} does not say {problem:?}"
    );
}

fn small_spec() -> SynthSpec {
    SynthSpec {
        n_steps: 4,
        n_cycles: 3,
        ragged: true,
        final_transfer: true,
        seed: 11,
        ..Default::default()
    }
}

#[test]
fn experiment_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Experiment>();
}

#[test]
fn round_trip_attributes_names_and_layout() {
    let dir = TempDir::new("round-trip");
    let spec = SynthSpec {
        n_experiments: 2,
        ..small_spec()
    };
    let generated = generate(&spec, &dir.0).unwrap();
    assert_eq!(generated.len(), 2);
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );

    for (k, g) in generated.iter().enumerate() {
        let truth = truth(g);
        let exp = Experiment::open(&g.path).unwrap();
        assert_eq!(exp.chip_id, format!("#SYN{:04}", k + 1));
        assert_eq!(exp.device_id, (k + 1).to_string());
        let test_id = match &exp.attrs["test_id"] {
            AttrValue::String(s) => s.clone(),
            other => panic!("test_id is {other:?}"),
        };
        let name = format!("{}-{}-synthetic-{test_id}.h5", exp.chip_id, exp.device_id);
        assert_eq!(g.path.file_name().unwrap().to_str().unwrap(), name);
        assert_eq!(truth["h5_file"], name.as_str());
        assert_eq!(exp.attrs["output_filename"], AttrValue::String(name));
        assert_eq!(
            exp.attrs["format_version"],
            AttrValue::String("2.0_direct_new_storage".into())
        );
        assert_eq!(exp.attrs["sync_mode"], AttrValue::Bool(true));
        assert_eq!(exp.attrs["baudrate"], AttrValue::Int(512_000));
        assert_eq!(exp.attrs["total_steps"], AttrValue::Int(9));
        assert_eq!(exp.attrs["completion_percentage"], AttrValue::Float(100.0));
        assert_eq!(
            exp.attrs["test_unit_id"],
            AttrValue::String("Test Unit A1".into())
        );

        // layout and per-step lengths (ragged) against the ground truth
        let tr_len = truth_lengths(&truth, "transfer");
        let ts_len = truth_lengths(&truth, "transient");
        assert_eq!((tr_len.len(), ts_len.len()), (5, 4));
        let transfer = exp.transfer.clone().unwrap();
        assert_eq!(transfer.n_steps, 5);
        assert_eq!(transfer.max_points, *tr_len.iter().max().unwrap());
        let block = exp.read_transfer(0..5).unwrap();
        assert_eq!((block.first_step, lengths(&block)), (0, tr_len.clone()));
        let transient = exp.transient.clone().unwrap();
        assert_eq!(transient.total_points, ts_len.iter().sum::<usize>());
        let ts = exp.read_transient(0..4, &BOTH).unwrap();
        assert_eq!(lengths(&ts), ts_len);

        // a sub-range reads the same steps as the full range
        let part = exp.read_transfer(2..4).unwrap();
        assert_eq!(part.first_step, 2);
        assert_eq!(part.step(1), block.step(3));
        let part = exp.read_transient(1..3, &BOTH).unwrap();
        assert_eq!(part.step(0), ts.step(1));

        // sweep: whole millivolts, forward then reverse
        let (vg, _) = block.step(1);
        assert_eq!(vg.len(), 242);
        assert_eq!((vg[0], vg[120], vg[121], vg[241]), (-0.6, 0.6, 0.6, -0.6));
        // continuous_time: 1 ms grid without gaps across steps, starting at 0
        assert_eq!(ts.x()[0], 0.0);
        assert!(ts
            .x()
            .windows(2)
            .all(|w| ((w[1] - w[0]) - 0.001).abs() < 1e-9));
    }
    // the two experiments are different devices
    let a = Experiment::open(&generated[0].path)
        .unwrap()
        .read_transient(0..1, &BOTH)
        .unwrap();
    let b = Experiment::open(&generated[1].path)
        .unwrap()
        .read_transient(0..1, &BOTH)
        .unwrap();
    assert_ne!(a.y(), b.y());
}

#[test]
fn generation_is_deterministic_per_seed() {
    let (d1, d2) = (TempDir::new("det-1"), TempDir::new("det-2"));
    let spec = SynthSpec {
        n_steps: 2,
        n_cycles: 2,
        ..Default::default()
    };
    let g1 = generate(&spec, &d1.0).unwrap();
    let g2 = generate(&spec, &d2.0).unwrap();
    let other = generate(&SynthSpec { seed: 1, ..spec }, &d2.0).unwrap();
    let read = |g: &Generated| {
        Experiment::open(&g.path)
            .unwrap()
            .read_transient(0..2, &BOTH)
            .unwrap()
    };
    assert_eq!(read(&g1[0]), read(&g2[0]));
    assert_ne!(read(&g1[0]).y(), read(&other[0]).y());
}

/// Noise-free current of the transfer model, as the truth describes it.
fn model_current(vg: f64, vth: f64, truth_step: &Value, sign: f64) -> f64 {
    let (ion, ioff, width) = (
        f(&truth_step["ion_A"]),
        f(&truth_step["ioff_A"]),
        f(&truth_step["width_V"]),
    );
    sign * (ioff + ion / (1.0 + (-sign * (vg - vth) / width).exp()))
}

#[test]
fn noise_free_values_follow_the_model_for_n_and_p() {
    for (device_type, sign) in [(DeviceType::N, 1.0), (DeviceType::P, -1.0)] {
        let dir = TempDir::new(&format!("model-{device_type:?}"));
        let spec = SynthSpec {
            n_steps: 3,
            n_cycles: 2,
            device_type,
            noise_abs: 0.0,
            noise_rel: 0.0,
            seed: 5,
            ..Default::default()
        };
        let g = &generate(&spec, &dir.0).unwrap()[0];
        let truth = truth(g);
        let exp = Experiment::open(&g.path).unwrap();

        // transfer: every point on the sigmoid (reverse branch shifted by the hysteresis),
        // rounded to 6 significant digits like the CSV
        let block = exp.read_transfer(0..3).unwrap();
        for (k, t) in truth["transfer"].as_array().unwrap().iter().enumerate() {
            let (vg, id) = block.step(k);
            for (i, (&v, &c)) in vg.iter().zip(id).enumerate() {
                let vth = if i <= 120 {
                    f(&t["vth_forward_V"])
                } else {
                    f(&t["vth_reverse_V"])
                };
                let expected = model_current(v, vth, t, sign);
                assert!(
                    (c - expected).abs() <= 1e-5 * expected.abs(),
                    "step {k} point {i}: {c} vs {expected}"
                );
            }
            // polarity: N conducts at positive gate and positive current, P the opposite
            let (first, mid) = (id[0], id[120]);
            assert_eq!(mid.abs() > first.abs(), sign > 0.0);
            assert!(id.iter().all(|&c| c.signum() == sign));
        }

        // transient: levels and time constants recovered from the exponential relaxation
        let ts = exp.read_transient(0..3, &BOTH).unwrap();
        for (k, t) in truth["transient"].as_array().unwrap().iter().enumerate() {
            let (_, id) = ts.step(k);
            let (i_bottom, i_top) = (f(&t["i_gate_bottom_A"]), f(&t["i_gate_top_A"]));
            let top_is_on = t["on_phase"] == "top";
            assert_eq!(top_is_on, sign > 0.0);
            // first top phase starts at sample 125 (bottom = 125 ms at 1 kHz), from the settled
            // bottom level; second bottom phase starts at 250 from (almost) the top level
            let tau_at = |k0: usize, target: f64| {
                let (a, b) = (id[k0 + 2] - target, id[k0 + 6] - target);
                0.004 / (a / b).ln()
            };
            let rising_tau = tau_at(125, i_top);
            let (tau_top, tau_bottom) = if top_is_on {
                (f(&t["tau_on_s"]), f(&t["tau_off_s"]))
            } else {
                (f(&t["tau_off_s"]), f(&t["tau_on_s"]))
            };
            assert!(
                (rising_tau / tau_top - 1.0).abs() < 1e-3,
                "step {k}: tau {rising_tau} vs {tau_top}"
            );
            let falling_tau = tau_at(250, i_bottom);
            assert!(
                (falling_tau / tau_bottom - 1.0).abs() < 1e-3,
                "step {k}: tau {falling_tau} vs {tau_bottom}"
            );
            assert!(
                (id[249] - i_top).abs() < 1e-3 * (i_top - i_bottom).abs(),
                "step {k}: top level"
            );
        }
    }
}

#[test]
fn tau_jitter_and_drift_appear_in_the_truth() {
    let dir = TempDir::new("jitter");
    let spec = SynthSpec {
        n_steps: 3,
        n_cycles: 4,
        tau_jitter: 0.2,
        transfer: false,
        ..Default::default()
    };
    let g = &generate(&spec, &dir.0).unwrap()[0];
    let truth = truth(g);
    let steps = truth["transient"].as_array().unwrap();
    let on: Vec<f64> = steps.iter().map(|s| f(&s["tau_on_s"])).collect();
    assert_eq!(on[0], 0.008);
    assert!(
        (on[2] - 0.012).abs() < 1e-12,
        "tau grows by 50 % over the run: {on:?}"
    );
    let cycles = steps[0]["tau_on_per_cycle_s"].as_array().unwrap();
    assert_eq!(cycles.len(), 4);
    assert!(cycles.iter().any(|c| (f(c) - 0.008).abs() > 1e-6));
    assert!(Experiment::open(&g.path).unwrap().transfer.is_none());
}

#[test]
fn sampling_from_json_then_workflow_then_none() {
    let dir = TempDir::new("sampling");
    let spec = SynthSpec {
        n_steps: 2,
        n_cycles: 2,
        period: 0.2,
        sample_rate: 500.0,
        ..Default::default()
    };
    let g = &generate(&spec, &dir.0).unwrap()[0];
    let exp = Experiment::open(&g.path).unwrap();
    let expected = Sampling {
        period: 0.2,
        sample_rate: 500.0,
    };
    assert_eq!(exp.transient_sampling(0), Some(expected));
    assert_eq!(exp.transient_sampling(1), Some(expected));
    assert_eq!(exp.transient_sampling(2), None);
    assert_eq!(
        lengths(&exp.read_transient(0..2, &BOTH).unwrap()),
        vec![200, 200]
    );
    drop(exp);

    // raw/json wins per step: change step 1's parameters only
    {
        let file = File::open_rw(&g.path).unwrap();
        let raw = file.group("raw").unwrap();
        let text = raw
            .dataset("json")
            .unwrap()
            .read_scalar::<VarLenAscii>()
            .unwrap();
        let mut info: Value = serde_json::from_str(text.as_str()).unwrap();
        let step = info["steps"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|s| s["data_file"] == "4_transient.csv")
            .unwrap();
        step["params"]["bottomTime"] = 300.into();
        step["params"]["timeStep"] = 1.into();
        raw.unlink("json").unwrap();
        // rewritten variant-B style: compact, UTF-8
        let v: VarLenUnicode = info.to_string().parse().unwrap();
        raw.new_dataset::<VarLenUnicode>()
            .create("json")
            .unwrap()
            .write_scalar(&v)
            .unwrap();
    }
    let exp = Experiment::open(&g.path).unwrap();
    assert_eq!(exp.transient_sampling(0), Some(expected));
    assert_eq!(
        exp.transient_sampling(1),
        Some(Sampling {
            period: 0.4,
            sample_rate: 1000.0
        })
    );
    drop(exp);

    // without raw/json: the workflow's transient node
    File::open_rw(&g.path)
        .unwrap()
        .group("raw")
        .unwrap()
        .unlink("json")
        .unwrap();
    let exp = Experiment::open(&g.path).unwrap();
    assert_eq!(exp.transient_sampling(1), Some(expected));
    drop(exp);

    File::open_rw(&g.path)
        .unwrap()
        .group("raw")
        .unwrap()
        .unlink("workflow")
        .unwrap();
    let exp = Experiment::open(&g.path).unwrap();
    assert_eq!(exp.transient_sampling(0), None);
    assert_eq!(exp.read_transient(0..2, &BOTH).unwrap().x().len(), 400);
}

#[test]
fn transfer_only_and_transient_only_files() {
    let dir = TempDir::new("kinds");
    let spec = SynthSpec {
        n_steps: 2,
        n_cycles: 2,
        transient: false,
        ..Default::default()
    };
    let g = &generate(&spec, &dir.0).unwrap()[0];
    let exp = Experiment::open(&g.path).unwrap();
    assert_eq!(
        exp.transfer,
        Some(TransferLayout {
            n_steps: 2,
            max_points: 242,
            steps_per_chunk: 2,
        })
    );
    assert!(exp.transient.is_none());
    assert_eq!(exp.transient_sampling(0), None);
    assert_error(
        exp.read_transient(0..1, &BOTH).unwrap_err(),
        &g.path,
        "no transient data",
    );

    let dir = TempDir::new("kinds-2");
    let spec = SynthSpec {
        n_steps: 2,
        n_cycles: 2,
        transfer: false,
        final_transfer: true,
        ..Default::default()
    };
    let g = &generate(&spec, &dir.0).unwrap()[0];
    let exp = Experiment::open(&g.path).unwrap();
    assert!(exp.transfer.is_none());
    assert_eq!(
        exp.transient.as_ref().unwrap().steps,
        vec![0..500, 500..1000]
    );
    assert_error(
        exp.read_transfer(0..1).unwrap_err(),
        &g.path,
        "no transfer data",
    );
}

#[test]
fn chunk_shapes_match_h5py() {
    // the spec's table of h5py's choices, reproduced through generated files
    let dir = TempDir::new("chunks");
    let chunk = |spec: SynthSpec, group: &str| {
        let g = &generate(&spec, &dir.0).unwrap()[0];
        File::open(&g.path)
            .unwrap()
            .dataset(&format!("{group}/measurement_data"))
            .unwrap()
            .chunk()
            .unwrap()
    };
    let transfer = SynthSpec {
        transient: false,
        ..Default::default()
    };
    assert_eq!(
        chunk(
            SynthSpec {
                n_steps: 100,
                transfer_points: Some(242),
                seed: 1,
                ..transfer.clone()
            },
            "transfer"
        ),
        [25, 1, 61]
    );
    let sweep_182 = SynthSpec {
        n_steps: 3,
        vg_start: -0.3,
        seed: 2,
        ..transfer
    };
    assert_eq!(chunk(sweep_182, "transfer"), [3, 2, 182]);
    let transient = SynthSpec {
        n_steps: 1,
        transfer: false,
        seed: 3,
        ..Default::default()
    };
    assert_eq!(chunk(transient, "transient"), [1, 1563]);
}

#[test]
fn metadata_text_matches_the_predecessor_conventions() {
    let dir = TempDir::new("text");
    let spec = SynthSpec {
        n_steps: 2,
        n_cycles: 2,
        final_transfer: true,
        chip_prefix: " lab/chip:\tA  ".into(),
        ..Default::default()
    };
    let g = &generate(&spec, &dir.0).unwrap()[0];
    let exp = Experiment::open(&g.path).unwrap();
    // sanitised: separators to '_', whitespace runs to one space, trimmed
    assert_eq!(exp.chip_id, "lab_chip__A 0001");
    assert!(g
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("lab_chip__A 0001-1-synthetic-test_"));

    let file = File::open(&g.path).unwrap();
    let json = file
        .dataset("raw/json")
        .unwrap()
        .read_scalar::<VarLenAscii>()
        .unwrap();
    let json = json.as_str();
    assert!(
        json.starts_with("{\"sync_mode\": true, \"batch_id\": \"batch_20250815134210_"),
        "{}",
        &json[..60]
    );
    assert!(json.contains("\"path_readable\": \"\\u5faa\\u73af[1/2] > \\u8fed\\u4ee31/2 > \\u8f6c\\u79fb\\u7279\\u6027[1/2]\""));
    assert!(json.contains("\"start_time\": \"2025-08-15T13:42:11."));
    let info: Value = serde_json::from_str(json).unwrap();
    assert_eq!(info["chip_id"], " lab/chip:\tA  0001");
    assert_eq!(
        info["steps"][4]["workflow_info"]["iteration_info"],
        Value::Null
    );
    let workflow = file
        .dataset("raw/workflow")
        .unwrap()
        .read_scalar::<VarLenUnicode>()
        .unwrap();
    assert!(workflow.as_str().starts_with(
        "[{\"id\":\"loop-1\",\"type\":\"loop\",\"iterations\":2,\"steps\":[{\"id\":\"transfer-1\""
    ));
    assert!(workflow.as_str().ends_with("\"gateVoltageStep\":10}}]"));
}

#[test]
fn invalid_spec_is_reported() {
    let dir = TempDir::new("bad-spec");
    let err = generate(
        &SynthSpec {
            sample_rate: 300.0,
            ..Default::default()
        },
        &dir.0,
    )
    .unwrap_err();
    assert_error(err, &dir.0, "sample_rate");
    let err = generate(
        &SynthSpec {
            transfer: false,
            transient: false,
            ..Default::default()
        },
        &dir.0,
    )
    .unwrap_err();
    assert_error(err, &dir.0, "enable transfer or transient");
}

// ---- hand-built files: quirks of other writers and broken files ---------------------------

fn put_str(loc: &Location, name: &str, value: &str) {
    let v: VarLenUnicode = value.parse().unwrap();
    loc.new_attr::<VarLenUnicode>()
        .create(name)
        .unwrap()
        .write_scalar(&v)
        .unwrap();
}

fn new_file(path: &Path, version: &str) -> File {
    let file = File::create(path).unwrap();
    put_str(&file, "format_version", version);
    file
}

fn put_transient(file: &File, total: usize) {
    let g = file.create_group("transient").unwrap();
    let data: Vec<f64> = (0..3 * total).map(|i| i as f64).collect();
    g.new_dataset::<f64>()
        .shape([3, total])
        .create("measurement_data")
        .unwrap()
        .write_raw(&data)
        .unwrap();
}

#[derive(H5Type, Clone, Copy)]
#[repr(C)]
struct IndexRowI64 {
    step_index: i64,
    start_data_index: i64,
    end_data_index: i64,
}

fn put_index_table(file: &File, ranges: &[(i64, i64)]) {
    let rows: Vec<IndexRowI64> = ranges
        .iter()
        .enumerate()
        .map(|(i, &(s, e))| IndexRowI64 {
            step_index: i as i64,
            start_data_index: s,
            end_data_index: e,
        })
        .collect();
    let g = file.group("transient").unwrap();
    g.new_dataset::<IndexRowI64>()
        .shape(rows.len())
        .create("step_info_table")
        .unwrap()
        .write_raw(&rows)
        .unwrap();
}

#[test]
fn variant_b_fixed_strings_float_indices_and_interior_nans() {
    #[derive(H5Type)]
    #[repr(C)]
    struct RowB {
        data_file: VarLenUnicode,
        start_data_index: f64,
        end_data_index: f64,
    }
    let dir = TempDir::new("variant-b");
    let path = dir.0.join("b.h5");
    {
        let file = new_file(&path, "2.0_new_storage");
        file.new_attr::<FixedAscii<16>>()
            .create("chip_id")
            .unwrap()
            .write_scalar(&FixedAscii::<16>::from_ascii("#C7").unwrap())
            .unwrap();
        // UTF-8 bytes under the ASCII flag, NUL-padded, as numpy's `S` writes them
        let mut bytes = [0u8; 24];
        bytes[..6].copy_from_slice("描述".as_bytes());
        file.new_attr::<FixedBytes<24, false>>()
            .create("description")
            .unwrap()
            .write_scalar(&FixedBytes::<24, false>(bytes))
            .unwrap();
        file.new_attr::<FixedBytes<8, true>>()
            .create("device_number")
            .unwrap()
            .write_scalar(&FixedBytes::<8, true>(*b"12\0\0\0\0\0\0"))
            .unwrap();
        file.new_attr::<bool>()
            .create("sync_mode")
            .unwrap()
            .write_scalar(&false)
            .unwrap();
        file.new_attr::<u8>()
            .create("small")
            .unwrap()
            .write_scalar(&7)
            .unwrap();
        file.new_attr::<f64>()
            .shape(2)
            .create("array_attr")
            .unwrap()
            .write_raw(&[1.0, 2.0])
            .unwrap();

        let g = file.create_group("transfer").unwrap();
        let nan = f64::NAN;
        #[rustfmt::skip]
        let data = [
            -0.1, 0.0, 0.1, 0.2,   1.0, nan, 3.0, 4.0, // step 0: interior NaN in Id
            -0.1, 0.0, nan, nan,   5.0, 6.0, nan, nan, // step 1: padded to 4
        ];
        g.new_dataset::<f64>()
            .shape([2, 2, 4])
            .create("measurement_data")
            .unwrap()
            .write_raw(&data)
            .unwrap();

        put_transient(&file, 10);
        let rows = [("a.csv", 0.0, 4.0), ("b.csv", 4.0, 10.0)].map(|(n, s, e)| RowB {
            data_file: n.parse().unwrap(),
            start_data_index: s,
            end_data_index: e,
        });
        let t = file.group("transient").unwrap();
        t.new_dataset::<RowB>()
            .shape(2)
            .create("step_info_table")
            .unwrap()
            .write_raw(&rows)
            .unwrap();
        // variant B: compact UTF-8 JSON; a converter-style `parameters` key is accepted too
        let raw = file.create_group("raw").unwrap();
        let json = r#"{"steps":[{"data_file":"b.csv","parameters":{"bottomTime":50,"topTime":150,"timeStep":4}},{"data_file":"a.csv","params":{"bottomTime":10}}]}"#;
        raw.new_dataset::<VarLenUnicode>()
            .create("json")
            .unwrap()
            .write_scalar(&json.parse::<VarLenUnicode>().unwrap())
            .unwrap();
    }
    let exp = Experiment::open(&path).unwrap();
    assert_eq!(
        (exp.chip_id.as_str(), exp.device_id.as_str()),
        ("#C7", "12")
    );
    assert_eq!(exp.attrs["description"], AttrValue::String("描述".into()));
    assert_eq!(exp.attrs["sync_mode"], AttrValue::Bool(false));
    assert_eq!(exp.attrs["small"], AttrValue::Int(7));
    assert!(!exp.attrs.contains_key("array_attr"));

    let block = exp.read_transfer(0..2).unwrap();
    assert_eq!(block.step(0), (&[-0.1, 0.1, 0.2][..], &[1.0, 3.0, 4.0][..]));
    assert_eq!(block.step(1), (&[-0.1, 0.0][..], &[5.0, 6.0][..]));

    assert_eq!(exp.transient.as_ref().unwrap().steps, vec![0..4, 4..10]);
    let ts = exp.read_transient(1..2, &BOTH).unwrap();
    assert_eq!(
        ts.step(0),
        (
            &[4.0, 5.0, 6.0, 7.0, 8.0, 9.0][..],
            &[24.0, 25.0, 26.0, 27.0, 28.0, 29.0][..]
        )
    );
    // a.csv's parameters are incomplete and there is no workflow to fall back on
    assert_eq!(exp.transient_sampling(0), None);
    assert_eq!(
        exp.transient_sampling(1),
        Some(Sampling {
            period: 0.2,
            sample_rate: 250.0
        })
    );
}

#[test]
fn missing_attributes_missing_index_columns_and_gaps() {
    let dir = TempDir::new("fallbacks");
    // no chip/device attributes, a table without start/end: the predecessor's even split
    let path = dir.0.join("split.h5");
    {
        let file = new_file(&path, "2.0_direct_new_storage");
        put_transient(&file, 10);
        let g = file.group("transient").unwrap();
        g.new_dataset::<i64>()
            .shape(3)
            .create("step_info_table")
            .unwrap()
            .write_raw(&[0_i64, 1, 2])
            .unwrap();
    }
    // a plain i64 table is not a compound table: reported
    assert_error(
        Experiment::open(&path).unwrap_err(),
        &path,
        "is not a compound table",
    );

    #[derive(H5Type, Clone, Copy)]
    #[repr(C)]
    struct StepOnly {
        step_index: i64,
    }
    {
        let file = File::open_rw(&path).unwrap();
        let g = file.group("transient").unwrap();
        g.unlink("step_info_table").unwrap();
        let rows = [0, 1, 2].map(|i| StepOnly { step_index: i });
        g.new_dataset::<StepOnly>()
            .shape(3)
            .create("step_info_table")
            .unwrap()
            .write_raw(&rows)
            .unwrap();
        put_str(&file, "chip_id", "");
    }
    let exp = Experiment::open(&path).unwrap();
    assert_eq!((exp.chip_id.as_str(), exp.device_id.as_str()), ("NA", "NA"));
    assert_eq!(
        exp.transient.as_ref().unwrap().steps,
        vec![0..3, 3..6, 6..10]
    );
    assert!(exp.transfer.is_none());

    // gaps between steps are allowed and skipped
    let path = dir.0.join("gaps.h5");
    {
        let file = new_file(&path, "2.0_direct_new_storage");
        put_transient(&file, 10);
        put_index_table(&file, &[(0, 3), (5, 8), (8, 8)]);
    }
    let exp = Experiment::open(&path).unwrap();
    let block = exp.read_transient(0..3, &BOTH).unwrap();
    assert_eq!(block.offsets, vec![0, 3, 6, 6]);
    assert_eq!(block.x(), vec![0.0, 1.0, 2.0, 5.0, 6.0, 7.0]);
    assert_eq!(block.y(), vec![20.0, 21.0, 22.0, 25.0, 26.0, 27.0]);
    assert_eq!(exp.read_transient(2..2, &BOTH).unwrap().n_steps(), 0);
    // only the current, across the gaps too
    let current = exp.read_transient(0..3, &[Channel::Current]).unwrap();
    assert_eq!(current.offsets, block.offsets);
    assert_eq!(
        current.channels,
        vec![(Channel::Current, block.y().to_vec())]
    );
}

/// Only the declared channels are read: the current alone gives the same samples as
/// reading both, in a block holding nothing else; a transfer channel is refused.
#[test]
fn transient_steps_read_only_the_requested_channels() {
    let dir = TempDir::new("channels");
    let g = &generate(&small_spec(), &dir.0).unwrap()[0];
    let exp = Experiment::open(&g.path).unwrap();
    let both = exp.read_transient(0..4, &BOTH).unwrap();
    let current = exp.read_transient(0..4, &[Channel::Current]).unwrap();
    assert_eq!(current.offsets, both.offsets);
    assert_eq!(current.channels.len(), 1);
    for k in 0..4 {
        assert_eq!(current.samples(Channel::Current, k), Some(both.step(k).1));
        assert_eq!(current.samples(Channel::Time, k), None);
        assert_eq!(current.len(k), both.len(k));
    }
    let time = exp.read_transient(1..3, &[Channel::Time]).unwrap();
    assert_eq!(time.samples(Channel::Time, 0), Some(both.step(1).0));
    let e = exp.read_transient(0..1, &[Channel::Vg]).unwrap_err();
    assert_error(e, &g.path, "transient steps have no vg channel");
}

#[test]
fn broken_files_are_reported_with_file_and_problem() {
    let dir = TempDir::new("broken");
    let case = |name: &str, build: &dyn Fn(&File), problem: &str| {
        let path = dir.0.join(name);
        build(&new_file(&path, "2.0_direct_new_storage"));
        assert_error(Experiment::open(&path).unwrap_err(), &path, problem);
    };
    case(
        "past.h5",
        &|f| {
            put_transient(f, 10);
            put_index_table(f, &[(0, 5), (5, 12)]);
        },
        "end_data_index = 12 runs past the data (10 points)",
    );
    case(
        "decreasing.h5",
        &|f| {
            put_transient(f, 10);
            put_index_table(f, &[(0, 5), (7, 6)]);
        },
        "row 1: decreasing index range 7..6",
    );
    case(
        "overlap.h5",
        &|f| {
            put_transient(f, 10);
            put_index_table(f, &[(0, 5), (4, 8)]);
        },
        "row 1: starts at 4, before the previous step ends at 5",
    );
    case(
        "negative.h5",
        &|f| {
            put_transient(f, 10);
            put_index_table(f, &[(-1, 5)]);
        },
        "start_data_index = -1 is not a valid index",
    );
    case(
        "int-transfer.h5",
        &|f| {
            f.create_group("transfer")
                .unwrap()
                .new_dataset::<i32>()
                .shape([2, 2, 3])
                .create("measurement_data")
                .unwrap();
        },
        "/transfer/measurement_data has element type int32, expected float64",
    );
    case(
        "rank-transfer.h5",
        &|f| {
            f.create_group("transfer")
                .unwrap()
                .new_dataset::<f64>()
                .shape([2, 3, 3])
                .create("measurement_data")
                .unwrap();
        },
        "/transfer/measurement_data has shape [2, 3, 3], expected (n_steps, 2, n_points)",
    );
    case(
        "rank-transient.h5",
        &|f| {
            f.create_group("transient")
                .unwrap()
                .new_dataset::<f64>()
                .shape([10])
                .create("measurement_data")
                .unwrap();
        },
        "/transient/measurement_data has shape [10], expected (3, n_points)",
    );
    case(
        "group-is-dataset.h5",
        &|f| {
            f.new_dataset::<f64>()
                .shape([1])
                .create("transfer")
                .unwrap();
        },
        "/transfer is not a group",
    );

    let path = dir.0.join("old.h5");
    new_file(&path, "1.0_legacy");
    assert_error(
        Experiment::open(&path).unwrap_err(),
        &path,
        "unsupported format_version \"1.0_legacy\"",
    );
    let path = dir.0.join("untagged.h5");
    File::create(&path).unwrap();
    assert_error(
        Experiment::open(&path).unwrap_err(),
        &path,
        "no root attribute format_version",
    );

    let path = dir.0.join("text.h5");
    std::fs::write(&path, "this is not HDF5\n").unwrap();
    assert_error(
        Experiment::open(&path).unwrap_err(),
        &path,
        "not a readable HDF5 file",
    );
    let path = dir.0.join("missing.h5");
    assert_error(
        Experiment::open(&path).unwrap_err(),
        &path,
        "cannot read file",
    );

    // a generated file cut in half
    let g = &generate(
        &SynthSpec {
            n_steps: 3,
            n_cycles: 4,
            ..Default::default()
        },
        &dir.0,
    )
    .unwrap()[0];
    let bytes = std::fs::read(&g.path).unwrap();
    let path = dir.0.join("truncated.h5");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_error(
        Experiment::open(&path).unwrap_err(),
        &path,
        "not a readable HDF5 file",
    );

    // step ranges past the file's steps
    let exp = Experiment::open(&g.path).unwrap();
    assert_error(
        exp.read_transfer(2..4).unwrap_err(),
        &g.path,
        "transfer steps 2..4 requested, but the file has 3 transfer steps",
    );
    assert_error(
        exp.read_transient(0..9, &BOTH).unwrap_err(),
        &g.path,
        "transient steps 0..9 requested, but the file has 3 transient steps",
    );
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 2..1;
    assert_error(
        exp.read_transient(backwards, &BOTH).unwrap_err(),
        &g.path,
        "transient steps 2..1 requested",
    );
}

// ---- fixtures written by the Python predecessor's generator --------------------------------

fn python_fixture(name: &str) -> (Experiment, Value) {
    let dir = data_dir();
    let truth: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.truth.json"))).unwrap())
            .unwrap();
    (Experiment::open(&dir.join(name)).unwrap(), truth)
}

fn check_python_fixture(exp: &Experiment, truth: &Value) {
    assert_eq!(
        (exp.chip_id.as_str(), exp.device_id.as_str()),
        ("#SYN0001", "1")
    );
    let layout = &truth["layout"];
    let n_transfer = layout["n_transfer_steps"].as_u64().unwrap() as usize;
    if n_transfer > 0 {
        let transfer = exp.transfer.as_ref().unwrap();
        assert_eq!(transfer.n_steps, n_transfer);
        assert_eq!(
            transfer.max_points as u64,
            layout["transfer_max_points"].as_u64().unwrap()
        );
        let block = exp.read_transfer(0..n_transfer).unwrap();
        assert_eq!(lengths(&block), truth_lengths(truth, "transfer"));
        let sweep = &truth["transfer_sweep_mV"];
        let (vg, id) = block.step(0);
        assert_eq!(vg[0] * 1000.0, f(&sweep["start"]));
        assert_eq!(vg[1] * 1000.0, f(&sweep["start"]) + f(&sweep["step"]));
        assert!(id.iter().all(|c| c.is_finite()));
    } else {
        assert!(exp.transfer.is_none());
    }
    let transient = exp.transient.as_ref().unwrap();
    let n_transient = layout["n_transient_steps"].as_u64().unwrap() as usize;
    assert_eq!(transient.steps.len(), n_transient);
    assert_eq!(
        transient.total_points as u64,
        layout["transient_total_points"].as_u64().unwrap()
    );
    let ts = exp.read_transient(0..n_transient, &BOTH).unwrap();
    assert_eq!(lengths(&ts), truth_lengths(truth, "transient"));
    assert_eq!(ts.x()[0], 0.0);
    assert!(ts
        .x()
        .windows(2)
        .all(|w| ((w[1] - w[0]) - 0.001).abs() < 1e-9));
    let timing = &truth["transient_timing"];
    for j in 0..n_transient {
        assert_eq!(
            exp.transient_sampling(j),
            Some(Sampling {
                period: f(&timing["period_s"]),
                sample_rate: f(&timing["sample_rate_hz"])
            })
        );
        // the current sits at the gate levels the truth gives
        let (_, id) = ts.step(j);
        let t = &truth["transient"][j];
        let (top, bottom) = (f(&t["i_gate_top_A"]), f(&t["i_gate_bottom_A"]));
        let (settled_bottom, settled_top) = (id[124], id[249]);
        let tolerance = 0.01 * (top - bottom).abs() + 5e-7;
        assert!(
            (settled_top - top).abs() < tolerance,
            "step {j}: {settled_top} vs {top}"
        );
        assert!(
            (settled_bottom - bottom).abs() < tolerance,
            "step {j}: {settled_bottom} vs {bottom}"
        );
    }
}

#[test]
fn python_fixture_ragged_with_final_transfer() {
    let (exp, truth) = python_fixture("#SYN0001-1-synthetic-test_20250815134211_1e4d4a3e.h5");
    assert_eq!(truth["args"]["ragged"], true);
    assert_eq!(exp.attrs["total_steps"], AttrValue::Int(7));
    check_python_fixture(&exp, &truth);
}

#[test]
fn python_fixture_p_type_transient_only() {
    let (exp, truth) = python_fixture("#SYN0001-1-synthetic-test_20250815134211_b3b43484.h5");
    assert_eq!(truth["args"]["device_type"], "P");
    check_python_fixture(&exp, &truth);
    let block = exp.read_transient(0..1, &BOTH).unwrap();
    let (_, id) = block.step(0);
    assert!(id.iter().all(|&c| c < 0.0), "P-type current is negative");
}

mod fuzz {
    use proptest::prelude::*;

    use super::reader::index_ranges;

    /// Index values as step tables hold them: mostly small whole numbers, with negative,
    /// fractional, huge and non-finite ones mixed in.
    fn index() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => (0u32..40).prop_map(f64::from),
            1 => -40.0..40.0f64,
            1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, -f64::INFINITY, 1e300, -0.0, 2f64.powi(64)]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary start/end columns give ranges `read_transient` can use, or an error.
        #[test]
        fn step_table_indices_are_validated_never_trusted(
            rows in prop::collection::vec((index(), index()), 0..12),
            total in 0usize..40,
        ) {
            match index_ranges(&rows, total) {
                Ok(ranges) => {
                    prop_assert_eq!(ranges.len(), rows.len());
                    let mut prev_end = 0;
                    for r in &ranges {
                        prop_assert!(prev_end <= r.start && r.start <= r.end && r.end <= total);
                        prev_end = r.end;
                    }
                }
                Err(e) => prop_assert!(e.starts_with("row "), "{}", e),
            }
        }
    }
}

/// The measurement datasets of every file in `paths`, as HDF5 opens them.
fn measurement_datasets(paths: &[PathBuf]) -> Vec<(String, hdf5::Dataset)> {
    let mut out = Vec::new();
    for path in paths {
        let file = File::open(path).unwrap();
        for group in ["transfer", "transient"] {
            if let Ok(ds) = file.dataset(&format!("{group}/measurement_data")) {
                out.push((format!("{}:{group}", path.display()), ds));
            }
        }
    }
    out
}

/// Slabs that start and end inside, on and across chunk boundaries, plus empty ones.
fn probe_slabs(shape: &[usize], chunk: &[usize]) -> Vec<Slab> {
    let mut slabs = vec![Slab {
        start: vec![0; shape.len()],
        count: shape.to_vec(),
    }];
    for d in 0..shape.len() {
        for (start, end) in [
            (0, 1),
            (chunk[d].saturating_sub(1), chunk[d] + 1),
            (chunk[d], 2 * chunk[d]),
            (1, shape[d]),
            (shape[d] / 3, shape[d] / 3), // empty
            (shape[d].saturating_sub(2), shape[d]),
        ] {
            let (start, end) = (start.min(shape[d]), end.min(shape[d]));
            let mut slab = Slab {
                start: vec![0; shape.len()],
                count: shape.to_vec(),
            };
            slab.start[d] = start.min(end);
            slab.count[d] = end - start.min(end);
            slabs.push(slab);
        }
    }
    slabs
}

#[test]
fn direct_chunk_reads_equal_the_library_reads() {
    let dir = TempDir::new("direct");
    let mut paths: Vec<PathBuf> = generate(
        &SynthSpec {
            n_experiments: 1,
            n_steps: 40,
            n_cycles: 3,
            seed: 11,
            ..Default::default()
        },
        &dir.0,
    )
    .unwrap()
    .into_iter()
    .map(|g| g.path)
    .collect();
    // Written by h5py itself: its chunk shapes and its HDF5 build's filters and checksums.
    for entry in std::fs::read_dir(data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "h5") {
            paths.push(path);
        }
    }
    let datasets = measurement_datasets(&paths);
    assert!(datasets.len() >= 4, "{} datasets", datasets.len());
    for (name, ds) in datasets {
        let direct = ChunkedF64::new(&ds).unwrap_or_else(|| panic!("{name}: not decodable"));
        let (shape, chunk) = (ds.shape(), ds.chunk().unwrap());
        let slabs = probe_slabs(&shape, &chunk);
        let got = direct
            .read(&slabs, &Gaps::of(&ds))
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        for (slab, values) in slabs.iter().zip(got) {
            let r = |d: usize| slab.start[d]..slab.start[d] + slab.count[d];
            let expected = if slab.count.contains(&0) {
                Vec::new()
            } else if shape.len() == 2 {
                let a = ds.read_slice::<f64, _, ndarray::Ix2>((r(0), r(1)));
                a.unwrap().into_raw_vec_and_offset().0
            } else {
                let a = ds.read_slice::<f64, _, ndarray::Ix3>((r(0), r(1), r(2)));
                a.unwrap().into_raw_vec_and_offset().0
            };
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&values), bits(&expected), "{name}: {slab:?}");
        }
    }
}

#[test]
fn datasets_the_direct_path_does_not_decode_are_left_to_hdf5() {
    let dir = TempDir::new("direct-other");
    let file = File::create(dir.0.join("other.h5")).unwrap();
    let data = ndarray::Array2::<f64>::from_shape_fn((3, 50), |(i, j)| (i * 50 + j) as f64);
    let contiguous = file
        .new_dataset_builder()
        .with_data(&data)
        .create("contiguous")
        .unwrap();
    let single = file
        .new_dataset_builder()
        .chunk((1, 10))
        .with_data(&data.mapv(|v| v as f32))
        .create("float32")
        .unwrap();
    let scaled = file
        .new_dataset_builder()
        .chunk((1, 10))
        .scale_offset(hdf5::filters::ScaleOffset::FloatDScale(2))
        .with_data(&data)
        .create("scale_offset")
        .unwrap();
    let plain = file
        .new_dataset_builder()
        .chunk((2, 7))
        .with_data(&data)
        .create("plain")
        .unwrap();
    let shuffled = file
        .new_dataset_builder()
        .chunk((2, 7))
        .shuffle()
        .with_data(&data)
        .create("shuffled")
        .unwrap();
    assert!(ChunkedF64::new(&contiguous).is_none());
    assert!(ChunkedF64::new(&single).is_none());
    assert!(ChunkedF64::new(&scaled).is_none());
    // Without filters there is nothing to decode (and HDF5 would not report the stored
    // size of an index entry, see `stored_size`).
    assert!(ChunkedF64::new(&plain).is_none());
    // Any of the converter's filters is decoded (edge chunks of a 3 x 50 set with 2 x 7
    // chunks).
    let slab = Slab {
        start: vec![1, 3],
        count: vec![2, 47],
    };
    let got = ChunkedF64::new(&shuffled)
        .unwrap()
        .read(std::slice::from_ref(&slab), &Gaps::of(&shuffled))
        .unwrap();
    let expected: Vec<f64> = data
        .slice(ndarray::s![1..3, 3..50])
        .iter()
        .copied()
        .collect();
    assert_eq!(got, vec![expected.clone()]);
    // The reader's entry reads the others through HDF5, with the same slab semantics, and
    // counts those reads.
    for ds in [contiguous, single, plain] {
        let measurement = Measurement::new(ds);
        let got = measurement.read(std::slice::from_ref(&slab)).unwrap();
        assert_eq!(got, vec![expected.clone()]);
        assert_eq!(measurement.fallbacks(), 1);
    }
    let measurement = Measurement::new(shuffled);
    measurement.read(std::slice::from_ref(&slab)).unwrap();
    assert_eq!(measurement.fallbacks(), 0);
    let lossy = Measurement::new(scaled.clone()).read(&[slab]).unwrap();
    let by_hdf5 = scaled
        .read_slice::<f64, _, ndarray::Ix2>((1..3, 3..50))
        .unwrap();
    assert_eq!(lossy[0], by_hdf5.iter().copied().collect::<Vec<f64>>());
}

#[test]
fn a_damaged_chunk_is_refused_and_hdf5_reports_it() {
    let dir = TempDir::new("direct-damaged");
    let g = &generate(
        &SynthSpec {
            n_steps: 4,
            n_cycles: 2,
            transfer: false,
            seed: 12,
            ..Default::default()
        },
        &dir.0,
    )
    .unwrap()[0];
    let info = File::open(&g.path)
        .unwrap()
        .dataset("transient/measurement_data")
        .unwrap()
        .chunk_info(0)
        .unwrap();
    let mut bytes = std::fs::read(&g.path).unwrap();
    bytes[(info.addr + info.size / 2) as usize] ^= 0x5a;
    std::fs::write(&g.path, bytes).unwrap();

    let ds = File::open(&g.path)
        .unwrap()
        .dataset("transient/measurement_data")
        .unwrap();
    let err = ChunkedF64::new(&ds)
        .unwrap()
        .read(
            &[Slab {
                start: vec![0, 0],
                count: vec![1, 10],
            }],
            &Gaps::of(&ds),
        )
        .unwrap_err();
    let DirectError::Unsupported(err) = err else {
        panic!("{err:?} is not left to HDF5");
    };
    assert!(
        err.contains("the chunk at [0, 0]")
            && (err.contains("fletcher32") || err.contains("inflate")),
        "{err}"
    );
    // The reader falls back to HDF5, whose own check names the problem; the message says
    // which chunk, and the fallback is counted.
    let exp = Experiment::open(&g.path).unwrap();
    let err = exp.read_transient(0..1, &BOTH).unwrap_err();
    assert_eq!(exp.read_fallbacks(), 1);
    let text = err.to_string();
    assert!(text.contains("the chunk at [0, 0]"), "{text}");
    assert_error(err, &g.path, "reading transient steps 0..1");
}

/// Transfer steps `range` as HDF5 itself reads them (NaN padding kept), C order.
fn hdf5_transfer(path: &Path, range: std::ops::Range<usize>) -> Vec<f64> {
    let ds = File::open(path)
        .unwrap()
        .dataset("transfer/measurement_data")
        .unwrap();
    ds.read_slice::<f64, _, ndarray::Ix3>((range, .., ..))
        .unwrap()
        .into_raw_vec_and_offset()
        .0
}

/// The committed regression inputs (see `tests/data/damaged/README.md`): HDF5 reads wrong
/// values for steps 5–8 without an error; the reader refuses them and reads the intact
/// chunk as before.
#[test]
fn a_damaged_chunk_index_is_an_error_not_fill_values() {
    let dir = data_dir().join("damaged");
    let key = dir.join("transfer-index-key-offset.h5");
    let mask = dir.join("transfer-index-filter-mask.h5");
    // What HDF5 (and so h5py) makes of them.
    let zeros = hdf5_transfer(&key, 5..9);
    assert!(zeros.iter().all(|&v| v == 0.0), "{zeros:?}");
    let garbage = hdf5_transfer(&mask, 5..9);
    assert!(garbage.iter().any(|v| v.abs() > 1e100), "{garbage:?}");
    let intact = hdf5_transfer(&key, 0..5);
    assert_eq!(intact, hdf5_transfer(&mask, 0..5));

    // The moved key: the index no longer answers for every chunk, so none of its reads is
    // trusted.
    let exp = Experiment::open(&key).unwrap();
    for range in [0..9, 0..5, 4..6, 8..9] {
        let err = exp.read_transfer(range.clone()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("the chunk index has 2 entries, but only 1 of them are where the dataset's 2 chunks are"),
            "{text}"
        );
        assert_error(err, &key, &format!("reading transfer steps {range:?}"));
    }
    // The filter mask: the intact chunk reads as before, the other is refused.
    let exp = Experiment::open(&mask).unwrap();
    let first = exp.read_transfer(0..5).unwrap();
    let kept = intact.iter().filter(|v| !v.is_nan()).count();
    assert_eq!(first.x().len() + first.y().len(), kept);
    for range in [0..9, 4..6, 8..9] {
        let err = exp.read_transfer(range.clone()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("the chunk at [5, 0, 0] is marked as stored without its Shuffle filter"),
            "{text}"
        );
        assert_error(err, &mask, &format!("reading transfer steps {range:?}"));
    }
    // Both refused outright: HDF5 would not notice, so it is not asked.
    assert_eq!(exp.read_fallbacks(), 0);
}

/// The v1 B-tree node that indexes `ds`'s chunks: the `TREE` node of raw-data type whose
/// children are exactly the dataset's chunks. Returns the byte range of its keys.
fn chunk_index_keys(bytes: &[u8], ds: &hdf5::Dataset) -> Vec<std::ops::Range<usize>> {
    let n = ds.num_chunks().unwrap();
    let mut chunks: Vec<u64> = (0..n).map(|i| ds.chunk_info(i).unwrap().addr).collect();
    chunks.sort_unstable();
    let key_len = 8 + 8 * (ds.ndim() + 1);
    let u64_at = |p: usize| u64::from_le_bytes(bytes[p..p + 8].try_into().unwrap());
    let mut found = Vec::new();
    for p in (0..bytes.len().saturating_sub(24)).filter(|&p| &bytes[p..p + 4] == b"TREE") {
        let (kind, level) = (bytes[p + 4], bytes[p + 5]);
        let used = u16::from_le_bytes([bytes[p + 6], bytes[p + 7]]) as usize;
        let end = p + 24 + used * (key_len + 8) + key_len;
        if kind != 1 || level != 0 || used != n || end > bytes.len() {
            continue;
        }
        let mut children: Vec<u64> = (0..used)
            .map(|i| u64_at(p + 24 + i * (key_len + 8) + key_len))
            .collect();
        children.sort_unstable();
        if children == chunks {
            found.extend((0..=used).map(|i| {
                let k = p + 24 + i * (key_len + 8);
                k..k + key_len
            }));
        }
    }
    assert!(!found.is_empty(), "no chunk index found");
    found
}

/// Every single-bit flip in the chunk index keys (stored sizes, filter masks, chunk
/// offsets) of both measurement datasets of a small file: the reader either gives exactly
/// the undamaged values or refuses the read. HDF5 1.10 alone reads most of these files
/// without an error and gives zeros or garbage for some steps.
#[test]
fn bit_flips_in_the_chunk_index_never_change_the_values() {
    let dir = TempDir::new("index-flips");
    // Transfer 9 x 2 x 100 in two chunks, transient 3 x 4000 in twelve.
    let spec = SynthSpec {
        n_steps: 8,
        n_cycles: 2,
        transfer_points: Some(100),
        final_transfer: true,
        seed: 5,
        ..Default::default()
    };
    let g = &generate(&spec, &dir.0).unwrap()[0];
    let original = std::fs::read(&g.path).unwrap();
    const DATASETS: [&str; 2] = ["transfer/measurement_data", "transient/measurement_data"];
    // Every value of both datasets, as the reader gives them (bits, so NaN compares).
    let read_all = |path: &Path| -> Result<Vec<Vec<u64>>, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let mut values = Vec::new();
        for name in DATASETS {
            let ds = file.dataset(name).map_err(|e| e.to_string())?;
            let whole = Slab {
                start: vec![0; ds.ndim()],
                count: ds.shape(),
            };
            let read = Measurement::new(ds).read(&[whole])?;
            values.push(read[0].iter().map(|v| v.to_bits()).collect());
        }
        Ok(values)
    };
    let truth = read_all(&g.path).unwrap();
    let file = File::open(&g.path).unwrap();
    let mut keys = Vec::new();
    for name in DATASETS {
        let ds = file.dataset(name).unwrap();
        assert!(ds.num_chunks().unwrap() >= 2, "{name}: one chunk only");
        keys.extend(chunk_index_keys(&original, &ds));
    }
    drop(file);

    // One copy, each flip written into it and undone again (HDF5 closes the file in
    // between: no handle outlives `read_all`).
    let damaged = dir.0.join("damaged.h5");
    std::fs::write(&damaged, &original).unwrap();
    let copy = std::fs::OpenOptions::new()
        .write(true)
        .open(&damaged)
        .unwrap();
    let put = |byte: usize, value: u8| {
        std::os::unix::fs::FileExt::write_all_at(&copy, &[value], byte as u64).unwrap()
    };
    let (mut same, mut refused) = (0, 0);
    for byte in keys.into_iter().flatten() {
        for bit in 0..8 {
            put(byte, original[byte] ^ (1 << bit));
            match read_all(&damaged) {
                Ok(values) => {
                    assert!(values == truth, "byte {byte} bit {bit}: values changed");
                    same += 1;
                }
                Err(_) => refused += 1,
            }
            put(byte, original[byte]);
        }
    }
    // Most flips hit a chunk offset or size, which the reader must notice.
    assert!(refused > same, "{refused} refused, {same} unchanged");
}

/// A chunk that was never written reads as NaN where the dataset's fill value is a
/// user-defined NaN (the format's "no data"), through HDF5; with any other fill value it is
/// an error, on the direct path and on HDF5's.
#[test]
fn unstored_chunks_are_nan_only_where_the_fill_value_is_nan() {
    let dir = TempDir::new("gaps");
    let file = File::create(dir.0.join("gaps.h5")).unwrap();
    let data = ndarray::Array3::<f64>::from_shape_fn((6, 2, 10), |(s, r, p)| {
        (s * 100 + r * 10 + p) as f64 * 1e-6
    });
    let written = data.slice(ndarray::s![0..2, .., ..]);
    let full = Slab {
        start: vec![0, 0, 0],
        count: vec![6, 2, 10],
    };
    let first = Slab {
        start: vec![0, 0, 0],
        count: vec![2, 2, 10],
    };
    for (name, filtered, fill) in [
        ("nan", true, Some(f64::NAN)),
        ("default", true, None),
        ("zero", true, Some(0.0)),
        ("plain-default", false, None),
    ] {
        let mut builder = file
            .new_dataset::<f64>()
            .shape((6, 2, 10))
            .chunk((2, 2, 10));
        if filtered {
            builder = builder.shuffle().deflate(4).fletcher32();
        }
        if let Some(v) = fill {
            builder = builder.fill_value(v);
        }
        let ds = builder.create(name).unwrap();
        ds.write_slice(&written, (0..2, .., ..)).unwrap();
        assert_eq!(ds.num_chunks(), Some(1), "{name}");
        let m = Measurement::new(ds);
        if name == "nan" {
            let got = m.read(std::slice::from_ref(&first)).unwrap();
            assert_eq!(got[0], written.iter().copied().collect::<Vec<f64>>());
            let values = m.read(std::slice::from_ref(&full)).unwrap();
            assert_eq!(values[0][..40], got[0][..]);
            assert!(values[0][40..].iter().all(|v| v.is_nan()));
            assert_eq!(m.fallbacks(), 1, "the gap is read by HDF5");
            continue;
        }
        // Refused as a whole, also where a read touches only the written chunk.
        for slab in [&first, &full] {
            let e = m.read(std::slice::from_ref(slab)).unwrap_err();
            assert!(
                e.contains("the chunk at [2, 0, 0] (and 1 more of the 3 chunks) is not stored")
                    && e.contains("fill value 0"),
                "{name}: {e}"
            );
        }
    }
}

// ---- per-step records ------------------------------------------------------------------------

/// Loop iterations, times and the instrument settings of every step, for files written by
/// `oect generate` and by the predecessor's generator (lab layout).
#[test]
fn step_records_give_iteration_times_and_settings() {
    let dir = TempDir::new("records");
    let spec = SynthSpec {
        n_steps: 3,
        n_cycles: 2,
        final_transfer: true,
        ..Default::default()
    };
    let g = &generate(&spec, &dir.0).unwrap()[0];
    let (python, _) = python_fixture("#SYN0001-1-synthetic-test_20250815134211_1e4d4a3e.h5");
    for exp in [Experiment::open(&g.path).unwrap(), python] {
        let it: Vec<Option<u64>> = exp
            .transfer_steps
            .iter()
            .map(|r| r.loop_iteration)
            .collect();
        assert_eq!(
            it,
            [Some(1), Some(2), Some(3), None],
            "{}",
            exp.path.display()
        );
        let it: Vec<Option<u64>> = exp
            .transient_steps
            .iter()
            .map(|r| r.loop_iteration)
            .collect();
        assert_eq!(it, [Some(1), Some(2), Some(3)]);
        // steps alternate transfer, transient within each iteration, the final transfer last
        let start = |r: &StepRecord| r.start_time.expect("start time");
        let (tr, ts) = (&exp.transfer_steps, &exp.transient_steps);
        for k in 0..3 {
            assert!(start(&tr[k]) < start(&ts[k]));
            assert!(tr[k].end_time.unwrap() <= start(&ts[k]));
        }
        assert!(start(&ts[2]) < start(&tr[3]));
        for r in tr {
            let p = &r.params;
            assert_eq!(p.drain_voltage, Some(0.1));
            assert_eq!((p.gate_start, p.gate_end), (Some(-0.6), Some(0.6)));
            assert_eq!((p.gate_step, p.sweep_back), (Some(0.01), Some(true)));
            assert_eq!(p.time_step, Some(0.3));
            assert!(r
                .data_file
                .as_deref()
                .is_some_and(|f| f.ends_with("_transfer.csv")));
        }
        for r in ts {
            let p = &r.params;
            assert_eq!(p.drain_voltage, Some(0.1));
            assert_eq!((p.gate_bottom, p.gate_top), (Some(-0.3), Some(0.6)));
            assert_eq!((p.bottom_time, p.top_time), (Some(0.125), Some(0.125)));
            assert_eq!(p.cycles, Some(2));
        }
    }
}
