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

use oect_plugin_api::{export_plugin, extractor, Choice, Dim, FeatureValue, Params, Transfer};

use sweep::{DeviceType, Located, Segment, Sweep};

/// Half of the sweep a value is taken from.
#[derive(Choice, Debug, Clone, Copy, Default)]
pub enum Direction {
    /// Samples `0..=(n − 1) / 2`: the first half, including the turning point.
    #[default]
    Forward,
    Reverse,
    /// Both halves: a `[forward, reverse]` pair.
    Both,
}

impl Direction {
    fn segments(self) -> &'static [Segment] {
        match self {
            Direction::Forward => &[Segment::Forward],
            Direction::Reverse => &[Segment::Reverse],
            Direction::Both => &[Segment::Forward, Segment::Reverse],
        }
    }

    fn shape(self) -> Vec<Dim> {
        match self {
            Direction::Both => vec![Dim::Fixed(2)],
            _ => vec![],
        }
    }

    /// The value of each selected half: a scalar for one, a pair for both.
    fn values(self, value: impl Fn(Segment) -> f64) -> FeatureValue {
        match self.segments() {
            [one] => FeatureValue::scalar(value(*one)),
            halves => FeatureValue::vector(halves.iter().map(|&s| value(s)).collect()),
        }
    }
}

/// One half of the sweep, for the coordinate features.
#[derive(Choice, Debug, Clone, Copy, Default)]
pub enum Half {
    #[default]
    Forward,
    Reverse,
}

impl Half {
    fn segment(self) -> Segment {
        match self {
            Half::Forward => Segment::Forward,
            Half::Reverse => Segment::Reverse,
        }
    }
}

/// Device polarity, as the predecessor's configs write it.
#[derive(Choice, Debug, Clone, Copy, Default)]
pub enum Polarity {
    #[default]
    #[choice("N", "n")]
    N,
    #[choice("P", "p")]
    P,
}

impl From<Polarity> for DeviceType {
    fn from(p: Polarity) -> DeviceType {
        match p {
            Polarity::N => DeviceType::N,
            Polarity::P => DeviceType::P,
        }
    }
}

#[derive(Params)]
pub struct GmMax {
    /// half of the sweep: forward (first half incl. the turning point), reverse, or both
    #[param(default)]
    direction: Direction,
    /// accepted for compatibility; does not change this feature
    #[param(default)]
    device_type: Polarity,
}

/// maximum transconductance |dId/dVg| of a sweep half
#[extractor(name = "transfer.gm_max", unit = "S", shape = p.direction.shape(),
    example("steepest at the turning point: 2 mS", vg = [0.0, 0.1, 0.2, 0.1, 0.0],
            id = [0.0, 1e-4, 3e-4, 1e-4, 0.0], output = 2e-3, tolerance = 1e-6),
    example("both halves", vg = [0.0, 0.1, 0.2, 0.1, 0.0], id = [0.0, 1e-4, 3e-4, 1e-4, 0.0],
            params(direction = Direction::Both), output = [2e-3, 1e-3], tolerance = 1e-6))]
fn gm_max(step: Transfer, p: &GmMax) -> Result<FeatureValue, String> {
    let sweep = Sweep::new(step.vg, step.id)?;
    Ok(p.direction.values(|s| sweep.abs_gm_max(s).value))
}

#[derive(Params)]
pub struct Von {
    /// half of the sweep: forward (first half incl. the turning point), reverse, or both
    #[param(default)]
    direction: Direction,
    /// N: Von at the steepest rise of log|Id|; P: at the steepest fall (case-insensitive)
    #[param(default)]
    device_type: Polarity,
}

/// gate voltage of the steepest change of log10|Id| (turn-on voltage)
#[extractor(name = "transfer.Von", unit = "V", shape = p.direction.shape(),
    example("log10|Id| rises fastest around 0.2 V", vg = [0.0, 0.1, 0.2, 0.3, 0.2, 0.1, 0.0],
            id = [1e-9, 1e-9, 1e-7, 1e-6, 1e-7, 1e-9, 1e-9], output = 0.2, tolerance = 1e-6))]
fn von(step: Transfer, p: &Von) -> Result<FeatureValue, String> {
    let sweep = Sweep::new(step.vg, step.id)?;
    let device = p.device_type.into();
    Ok(p.direction.values(|s| sweep.von(s, device).value))
}

#[derive(Params)]
pub struct AbsIMax {
    /// accepted for compatibility; does not change this feature
    #[param(default)]
    device_type: Polarity,
}

/// maximum |Id| of the whole sweep
#[extractor(name = "transfer.absI_max", unit = "A",
    example("a P-type sweep", vg = [0.0, -0.3, -0.6, -0.3, 0.0],
            id = [-1e-9, -2e-4, -1e-3, -3e-4, -1e-9], output = 1e-3, tolerance = 1e-6))]
fn abs_i_max(step: Transfer, _p: &AbsIMax) -> Result<f64, String> {
    Ok(Sweep::new(step.vg, step.id)?.abs_i_max())
}

/// What a coordinates feature returns of the located sample.
fn coords(at: Located, vg_only: bool, id_only: bool) -> FeatureValue {
    if vg_only {
        FeatureValue::scalar(at.vg)
    } else if id_only {
        FeatureValue::scalar(at.id)
    } else {
        FeatureValue::vector(vec![at.vg, at.id])
    }
}

fn coords_shape(vg_only: bool, id_only: bool) -> Vec<Dim> {
    if vg_only || id_only {
        vec![]
    } else {
        vec![Dim::Fixed(2)]
    }
}

#[derive(Params)]
pub struct GmMaxCoords {
    /// half of the sweep: forward (first half incl. the turning point) or reverse
    #[param(default)]
    direction: Half,
    /// accepted for compatibility; does not change this feature
    #[param(default)]
    device_type: Polarity,
    /// return only Vg (wins over return_id_only)
    #[param(default = false)]
    return_vg_only: bool,
    /// return only Id
    #[param(default = false)]
    return_id_only: bool,
}

/// [Vg, Id] of the sample where gm_max occurs
#[extractor(name = "transfer.gm_max_coords", unit = "V, A",
    shape = coords_shape(p.return_vg_only, p.return_id_only),
    example("at the turning point", vg = [0.0, 0.1, 0.2, 0.1, 0.0],
            id = [0.0, 1e-4, 3e-4, 1e-4, 0.0], output = [0.2, 3e-4], tolerance = 1e-6))]
fn gm_max_coords(step: Transfer, p: &GmMaxCoords) -> Result<FeatureValue, String> {
    let at = Sweep::new(step.vg, step.id)?.abs_gm_max(p.direction.segment());
    Ok(coords(at, p.return_vg_only, p.return_id_only))
}

#[derive(Params)]
pub struct VonCoords {
    /// half of the sweep: forward (first half incl. the turning point) or reverse
    #[param(default)]
    direction: Half,
    /// N: Von at the steepest rise of log|Id|; P: at the steepest fall (case-insensitive)
    #[param(default)]
    device_type: Polarity,
    /// return only Vg (wins over return_id_only)
    #[param(default = false)]
    return_vg_only: bool,
    /// return only Id
    #[param(default = false)]
    return_id_only: bool,
}

/// [Vg, Id] of the sample where Von occurs
#[extractor(name = "transfer.Von_coords", unit = "V, A",
    shape = coords_shape(p.return_vg_only, p.return_id_only),
    example("only Id", vg = [0.0, 0.1, 0.2, 0.3, 0.2, 0.1, 0.0],
            id = [1e-9, 1e-9, 1e-7, 1e-6, 1e-7, 1e-9, 1e-9], params(return_id_only = true),
            output = 1e-7, tolerance = 1e-6))]
fn von_coords(step: Transfer, p: &VonCoords) -> Result<FeatureValue, String> {
    let at = Sweep::new(step.vg, step.id)?.von(p.direction.segment(), p.device_type.into());
    Ok(coords(at, p.return_vg_only, p.return_id_only))
}

export_plugin!();
