//! What an extractor function receives for one step: a typed view of the channels it
//! reads, and the step's [`Context`].
//!
//! The view type in the function's signature is the extractor's declaration of what it
//! reads; the host reads and decodes only those channels and hands them over equally
//! long, so a view never needs checking.

use crate::abi::{
    AttrValue, Attribute, Channel, InputKind, Source, StepArray, StepContext, StepInput,
};
use crate::abi::{FailureKind, StepFailure};

/// What a step view declares: the input kind and the channels, in the order the view
/// takes them. Implemented by the views and by [`Context`] (which reads no channel).
pub trait View {
    /// `None` for [`Context`].
    const INPUT: Option<InputKind>;
    const CHANNELS: &'static [Channel];
}

/// Built from the step the host hands over.
pub trait FromStep<'a>: View + Sized {
    fn from_step(input: &'a StepInput<'a>) -> Result<Self, StepFailure>;
}

/// A view that an example can be written as (the measured views): its arrays in
/// [`View::CHANNELS`] order.
pub trait ExampleView {
    fn arrays(&self) -> Vec<Vec<f64>>;
}

/// The declared channels' data, which the host passes in the declared order.
fn arrays<'a, const N: usize>(input: &'a StepInput<'a>) -> Result<[&'a [f64]; N], StepFailure> {
    let arrays = input.arrays.as_slice();
    if arrays.len() != N {
        return Err(StepFailure::new(
            FailureKind::InvalidInput,
            format!(
                "the host passed {} channels, this extractor reads {N}",
                arrays.len()
            ),
        ));
    }
    Ok(std::array::from_fn(|k| arrays[k].data.as_slice()))
}

/// A transfer step: one gate sweep, forward then reverse. `vg` and `id` are equally
/// long; samples the file pads with NaN are already removed.
#[derive(Debug, Clone, Copy)]
pub struct Transfer<'a> {
    /// Gate voltage, V.
    pub vg: &'a [f64],
    /// Drain current, A.
    pub id: &'a [f64],
}

impl View for Transfer<'_> {
    const INPUT: Option<InputKind> = Some(InputKind::Source(Source::Transfer));
    const CHANNELS: &'static [Channel] = &[Channel::Vg, Channel::Id];
}

impl<'a> FromStep<'a> for Transfer<'a> {
    fn from_step(input: &'a StepInput<'a>) -> Result<Self, StepFailure> {
        let [vg, id] = arrays(input)?;
        Ok(Transfer { vg, id })
    }
}

impl ExampleView for Transfer<'_> {
    fn arrays(&self) -> Vec<Vec<f64>> {
        vec![self.vg.to_vec(), self.id.to_vec()]
    }
}

/// A transient step: a pulse train, time and drain current, equally long.
#[derive(Debug, Clone, Copy)]
pub struct Transient<'a> {
    /// Time of each sample (`continuous_time`), s.
    pub t: &'a [f64],
    /// Drain current, A.
    pub i: &'a [f64],
}

impl View for Transient<'_> {
    const INPUT: Option<InputKind> = Some(InputKind::Source(Source::Transient));
    const CHANNELS: &'static [Channel] = &[Channel::Time, Channel::Current];
}

impl<'a> FromStep<'a> for Transient<'a> {
    fn from_step(input: &'a StepInput<'a>) -> Result<Self, StepFailure> {
        let [t, i] = arrays(input)?;
        Ok(Transient { t, i })
    }
}

impl ExampleView for Transient<'_> {
    fn arrays(&self) -> Vec<Vec<f64>> {
        vec![self.t.to_vec(), self.i.to_vec()]
    }
}

/// A transient step's drain current alone: the host does not read the time channel.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    /// Drain current, A.
    pub i: &'a [f64],
}

impl View for Current<'_> {
    const INPUT: Option<InputKind> = Some(InputKind::Source(Source::Transient));
    const CHANNELS: &'static [Channel] = &[Channel::Current];
}

impl<'a> FromStep<'a> for Current<'a> {
    fn from_step(input: &'a StepInput<'a>) -> Result<Self, StepFailure> {
        let [i] = arrays(input)?;
        Ok(Current { i })
    }
}

impl ExampleView for Current<'_> {
    fn arrays(&self) -> Vec<Vec<f64>> {
        vec![self.i.to_vec()]
    }
}

/// The per-step values of other features (the config's `input:` list, in order).
#[derive(Debug, Clone, Copy)]
pub struct Features<'a> {
    arrays: &'a [StepArray<'a>],
}

/// One input feature's value at this step.
#[derive(Debug, Clone, Copy)]
pub struct FeatureInput<'a> {
    pub name: &'a str,
    /// The feature's per-step shape (`[]` for a scalar).
    pub shape: &'a [u64],
    pub data: &'a [f64],
}

impl<'a> Features<'a> {
    pub fn len(&self) -> usize {
        self.arrays.len()
    }

    pub fn is_empty(&self) -> bool {
        self.arrays.is_empty()
    }

    /// Input `k`, if there is one.
    pub fn get(&self, k: usize) -> Option<FeatureInput<'a>> {
        self.arrays.get(k).map(|a| FeatureInput {
            name: a.name.as_str(),
            shape: a.shape.as_slice(),
            data: a.data.as_slice(),
        })
    }

    /// Input `k` as a number: an error unless it exists and is a scalar.
    pub fn scalar(&self, k: usize) -> Result<f64, String> {
        match self.get(k) {
            Some(FeatureInput {
                shape: [],
                data: [x],
                ..
            }) => Ok(*x),
            Some(f) => Err(format!(
                "input '{}' has shape {:?}, expected a scalar",
                f.name, f.shape
            )),
            None => Err(format!("no input {k} (the feature has {})", self.len())),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = FeatureInput<'a>> + '_ {
        (0..self.len()).filter_map(|k| self.get(k))
    }
}

impl View for Features<'_> {
    const INPUT: Option<InputKind> = Some(InputKind::Features);
    const CHANNELS: &'static [Channel] = &[];
}

impl<'a> FromStep<'a> for Features<'a> {
    fn from_step(input: &'a StepInput<'a>) -> Result<Self, StepFailure> {
        Ok(Features {
            arrays: input.arrays.as_slice(),
        })
    }
}

/// Where a step comes from and what the file records for it, in SI units (V, s, Hz).
/// Each setting is `None` when the file does not record it.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Experiment identifier (`chip-device`), for messages.
    pub experiment: &'a str,
    /// 0-based index of the step within its kind.
    pub step_index: u64,
    pub drain_voltage: Option<f64>,
    pub source_voltage: Option<f64>,
    /// Transfer sweeps: first gate voltage, turning point and increment.
    pub gate_start: Option<f64>,
    pub gate_end: Option<f64>,
    pub gate_step: Option<f64>,
    /// Transfer sweeps: the sweep returns to `gate_start`.
    pub sweep_back: Option<bool>,
    /// Transient pulse trains: gate voltage of the off and on part of each cycle.
    pub gate_bottom: Option<f64>,
    pub gate_top: Option<f64>,
    /// Transient pulse trains: duration of the off and on part of each cycle.
    pub bottom_time: Option<f64>,
    pub top_time: Option<f64>,
    pub cycles: Option<u64>,
    /// Time between samples.
    pub time_step: Option<f64>,
    /// Transient pulse trains: gate square-wave period.
    pub period: Option<f64>,
    /// Samples per second.
    pub sample_rate: Option<f64>,
    /// When the step started, in seconds since 1970-01-01 00:00 on the instrument's clock.
    pub start_time: Option<f64>,
    /// 1-based iteration of the workflow loop the step ran in.
    pub loop_iteration: Option<u64>,
    attributes: &'a [Attribute<'a>],
}

impl<'a> Context<'a> {
    /// The experiment's numeric root attribute `name` (e.g. a channel width the
    /// instrument recorded), if present.
    pub fn number(&self, name: &str) -> Option<f64> {
        match self.attribute(name)? {
            AttrValue::Float(x) => Some(x),
            AttrValue::Int(n) => Some(n as f64),
            AttrValue::Text(s) => s.as_str().trim().parse().ok(),
            AttrValue::Bool(_) => None,
        }
    }

    /// The experiment's root attribute `name` as text, if it is a string.
    pub fn text(&self, name: &str) -> Option<&'a str> {
        match self.attribute(name)? {
            AttrValue::Text(s) => Some(s.as_str()),
            _ => None,
        }
    }

    fn attribute(&self, name: &str) -> Option<AttrValue<'a>> {
        self.attributes
            .iter()
            .find(|a| a.name.as_str() == name)
            .map(|a| a.value)
    }
}

impl View for Context<'_> {
    const INPUT: Option<InputKind> = None;
    const CHANNELS: &'static [Channel] = &[];
}

impl<'a> FromStep<'a> for Context<'a> {
    fn from_step(input: &'a StepInput<'a>) -> Result<Self, StepFailure> {
        Ok(Context::from(&input.context))
    }
}

impl<'a> From<&StepContext<'a>> for Context<'a> {
    fn from(c: &StepContext<'a>) -> Self {
        let s = &c.settings;
        Context {
            experiment: c.experiment.as_str(),
            step_index: c.step_index,
            drain_voltage: s.drain_voltage.into_option(),
            source_voltage: s.source_voltage.into_option(),
            gate_start: s.gate_start.into_option(),
            gate_end: s.gate_end.into_option(),
            gate_step: s.gate_step.into_option(),
            sweep_back: s.sweep_back.into_option(),
            gate_bottom: s.gate_bottom.into_option(),
            gate_top: s.gate_top.into_option(),
            bottom_time: s.bottom_time.into_option(),
            top_time: s.top_time.into_option(),
            cycles: s.cycles.into_option(),
            time_step: s.time_step.into_option(),
            period: s.period.into_option(),
            sample_rate: s.sample_rate.into_option(),
            start_time: c.start_time.into_option(),
            loop_iteration: c.loop_iteration.into_option(),
            attributes: c.attributes.as_slice(),
        }
    }
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::{RSlice, RStr};

    use super::*;

    #[test]
    fn views_take_the_declared_channels_in_order() {
        let (a, b) = ([1.0, 2.0], [3.0, 4.0]);
        let shape = [2];
        let arrays = [
            StepArray::new("vg", &shape, &a),
            StepArray::new("id", &shape, &b),
        ];
        let input = StepInput::new(&arrays, StepContext::new("x", 0));
        let t = Transfer::from_step(&input).unwrap();
        assert_eq!((t.vg, t.id), (&a[..], &b[..]));
        let e = Current::from_step(&input).unwrap_err();
        assert_eq!(e.kind, FailureKind::InvalidInput);
        assert!(e.message.contains("passed 2 channels"), "{}", e.message);
    }

    #[test]
    fn the_context_reads_settings_and_attributes() {
        let attrs = [
            Attribute {
                name: RStr::from_str("channel_width_um"),
                value: AttrValue::Float(4000.0),
            },
            Attribute {
                name: RStr::from_str("channel_length_um"),
                value: AttrValue::Text(RStr::from_str(" 20 ")),
            },
            Attribute {
                name: RStr::from_str("description"),
                value: AttrValue::Text(RStr::from_str("stability")),
            },
        ];
        let mut c = StepContext::new("chip-1", 3);
        c.settings.drain_voltage = Some(-0.6).into();
        c.attributes = RSlice::from_slice(&attrs);
        let ctx = Context::from(&c);
        assert_eq!(
            (ctx.step_index, ctx.drain_voltage, ctx.gate_top),
            (3, Some(-0.6), None)
        );
        assert_eq!(ctx.number("channel_width_um"), Some(4000.0));
        assert_eq!(ctx.number("channel_length_um"), Some(20.0));
        assert_eq!(ctx.number("description"), None);
        assert_eq!(ctx.text("description"), Some("stability"));
        assert_eq!(ctx.number("thickness_nm"), None);
    }
}
