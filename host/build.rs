//! Tells the code which HDF5 API it is built against. hdf5-metno-sys reports the linked
//! library's version to its dependents (`DEP_HDF5_VERSION_<major>_<minor>_<micro>`), and
//! HDF5 2.x changed `H5Dread_chunk` (it also takes the buffer's size), so the raw-chunk
//! reader needs `cfg(hdf5_2)` to call it right both for a system 1.10/1.14 and for the
//! HDF5 2.x that the `static-hdf5` feature builds.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hdf5_2)");
    println!("cargo::rerun-if-changed=build.rs");
    let v2 = std::env::vars().any(|(key, _)| {
        key.strip_prefix("DEP_HDF5_VERSION_")
            .is_some_and(|v| v.split('_').next().is_some_and(|major| major != "1"))
    });
    if v2 {
        println!("cargo::rustc-cfg=hdf5_2");
    }
}
