//! The conformance checks (and every declared example) over this plugin's extractors,
//! in-process; `oect plugins check` runs the same on the built library.

use oect_transient as _; // links the plugin's extractor registrations

#[test]
fn the_plugin_conforms() {
    oect_plugin_api::testkit::assert_conforms();
}
