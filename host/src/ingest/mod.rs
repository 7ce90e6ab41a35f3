//! Raw instrument exports → HDF5: the first stage of the data path, before [`crate::source`].
//!
//! The MiniTest-OECT instrument writes one folder per test and channel (`test_info.json`, one
//! CSV per step, `workflow.json`); the lab's converter turns it into the HDF5 layout the rest of
//! oect reads (`specs/hdf5_format.md` §7). [`export`] reads a folder, [`csv`] a step's CSV,
//! [`table`] and [`h5`] write the file, [`convert`] runs whole batches, and [`synth`]
//! makes synthetic experiments (as exports or as the converted files). [`follow`] tracks the
//! steps of a running test for `oect watch`.

pub mod convert;
pub mod csv;
pub mod export;
pub mod follow;
pub mod h5;
pub mod json;
pub mod synth;
pub mod table;

pub use convert::{convert_all, Conflict, Converted};
pub use export::{find_exports, is_export, Export, ExportError, Kind};
