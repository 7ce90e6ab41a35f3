//! oect plugin: transfer-curve features of one gate sweep.
//!
//! | extractor | per step |
//! |---|---|
//! | `transfer.gm_max` | max \|dId/dVg\| of the forward or reverse half (`[2]` for `both`) |
//! | `transfer.Von` | Vg of the steepest log10\|Id\| change (`[2]` for `both`) |
//! | `transfer.absI_max` | max \|Id\| of the sweep |
//! | `transfer.gm_max_coords` | `[Vg, Id]` where gm_max occurs (or one of them) |
//! | `transfer.Von_coords` | `[Vg, Id]` where Von occurs (or one of them) |
//!
//! Values equal the predecessor's (`specs/algorithms_transfer_transient.md` §2):
//! forward/reverse is the fixed index midpoint, not a turning-point search.

pub mod sweep;

use oect_plugin_api::{
    export_plugin, register_extractor, Dim, ExtractorSpec, FeatureValue, InputKind, ParamKind,
    ParamSpec, Params, StepExtractor, StepInput,
};

use sweep::{DeviceType, Located, Segment, Sweep};

const DIRECTION: ParamSpec = ParamSpec {
    name: "direction",
    kind: ParamKind::Choice(&["forward", "reverse", "both"]),
    default: "\"forward\"",
    doc: "half of the sweep: forward (first half incl. the turning point), reverse, or both",
};
const SINGLE_DIRECTION: ParamSpec = ParamSpec {
    kind: ParamKind::Choice(&["forward", "reverse"]),
    doc: "half of the sweep: forward (first half incl. the turning point) or reverse",
    ..DIRECTION
};
const DEVICE_TYPE: ParamSpec = ParamSpec {
    name: "device_type",
    kind: ParamKind::Choice(&["N", "P", "n", "p"]),
    default: "\"N\"",
    doc: "N: Von at the steepest rise of log|Id|; P: at the steepest fall (case-insensitive)",
};
const DEVICE_TYPE_UNUSED: ParamSpec = ParamSpec {
    doc: "accepted for compatibility; does not change this feature",
    ..DEVICE_TYPE
};
const RETURN_VG_ONLY: ParamSpec = ParamSpec {
    name: "return_vg_only",
    kind: ParamKind::Bool,
    default: "false",
    doc: "return only Vg (wins over return_id_only)",
};
const RETURN_ID_ONLY: ParamSpec = ParamSpec {
    name: "return_id_only",
    kind: ParamKind::Bool,
    default: "false",
    doc: "return only Id",
};

/// The quantity a configured extractor reports.
#[derive(Debug, Clone, Copy)]
enum Quantity {
    GmMax,
    Von(DeviceType),
    AbsIMax,
}

/// What part of the located point is returned.
#[derive(Debug, Clone, Copy)]
enum Output {
    Value,
    Coords,
    VgOnly,
    IdOnly,
}

struct Transfer {
    quantity: Quantity,
    segments: Vec<Segment>,
    output: Output,
}

impl Transfer {
    fn locate(&self, sweep: &Sweep, segment: Segment) -> Located {
        match self.quantity {
            Quantity::GmMax => sweep.abs_gm_max(segment),
            Quantity::Von(device) => sweep.von(segment, device),
            Quantity::AbsIMax => {
                let value = sweep.abs_i_max();
                Located {
                    value,
                    vg: f64::NAN,
                    id: f64::NAN,
                }
            }
        }
    }
}

impl StepExtractor for Transfer {
    fn output_shape(&self) -> Vec<Dim> {
        match (self.output, self.segments.len()) {
            (Output::Coords, _) => vec![Dim::Fixed(2)],
            (_, 1) => vec![],
            (_, n) => vec![Dim::Fixed(n as u64)],
        }
    }

    fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
        let sweep = Sweep::new(input.require("Vg")?, input.require("Id")?)?;
        let located: Vec<Located> = self
            .segments
            .iter()
            .map(|&s| self.locate(&sweep, s))
            .collect();
        Ok(match self.output {
            Output::Coords => FeatureValue::vector(vec![located[0].vg, located[0].id]),
            Output::VgOnly => FeatureValue::scalar(located[0].vg),
            Output::IdOnly => FeatureValue::scalar(located[0].id),
            Output::Value if located.len() == 1 => FeatureValue::scalar(located[0].value),
            Output::Value => FeatureValue::vector(located.iter().map(|l| l.value).collect()),
        })
    }
}

fn segments(params: &Params) -> Result<Vec<Segment>, String> {
    Ok(match params.str("direction")? {
        "forward" => vec![Segment::Forward],
        "reverse" => vec![Segment::Reverse],
        _ => vec![Segment::Forward, Segment::Reverse],
    })
}

fn device(params: &Params) -> Result<DeviceType, String> {
    Ok(match params.str("device_type")? {
        "N" | "n" => DeviceType::N,
        _ => DeviceType::P,
    })
}

fn coords_output(params: &Params) -> Result<Output, String> {
    Ok(if params.bool("return_vg_only")? {
        Output::VgOnly
    } else if params.bool("return_id_only")? {
        Output::IdOnly
    } else {
        Output::Coords
    })
}

register_extractor!(ExtractorSpec {
    name: "transfer.gm_max",
    input: InputKind::Transfer,
    description: "maximum transconductance |dId/dVg| of a sweep half",
    unit: "S",
    params: &[DIRECTION, DEVICE_TYPE_UNUSED],
    create: |p| {
        Ok(Box::new(Transfer {
            quantity: Quantity::GmMax,
            segments: segments(p)?,
            output: Output::Value,
        }))
    },
});

register_extractor!(ExtractorSpec {
    name: "transfer.Von",
    input: InputKind::Transfer,
    description: "gate voltage of the steepest change of log10|Id| (turn-on voltage)",
    unit: "V",
    params: &[DIRECTION, DEVICE_TYPE],
    create: |p| {
        Ok(Box::new(Transfer {
            quantity: Quantity::Von(device(p)?),
            segments: segments(p)?,
            output: Output::Value,
        }))
    },
});

register_extractor!(ExtractorSpec {
    name: "transfer.absI_max",
    input: InputKind::Transfer,
    description: "maximum |Id| of the whole sweep",
    unit: "A",
    params: &[DEVICE_TYPE_UNUSED],
    create: |_| {
        Ok(Box::new(Transfer {
            quantity: Quantity::AbsIMax,
            segments: vec![Segment::Raw],
            output: Output::Value,
        }))
    },
});

register_extractor!(ExtractorSpec {
    name: "transfer.gm_max_coords",
    input: InputKind::Transfer,
    description: "[Vg, Id] of the sample where gm_max occurs",
    unit: "V, A",
    params: &[
        SINGLE_DIRECTION,
        DEVICE_TYPE_UNUSED,
        RETURN_VG_ONLY,
        RETURN_ID_ONLY
    ],
    create: |p| {
        Ok(Box::new(Transfer {
            quantity: Quantity::GmMax,
            segments: segments(p)?,
            output: coords_output(p)?,
        }))
    },
});

register_extractor!(ExtractorSpec {
    name: "transfer.Von_coords",
    input: InputKind::Transfer,
    description: "[Vg, Id] of the sample where Von occurs",
    unit: "V, A",
    params: &[
        SINGLE_DIRECTION,
        DEVICE_TYPE,
        RETURN_VG_ONLY,
        RETURN_ID_ONLY
    ],
    create: |p| {
        Ok(Box::new(Transfer {
            quantity: Quantity::Von(device(p)?),
            segments: segments(p)?,
            output: coords_output(p)?,
        }))
    },
});

export_plugin!();
