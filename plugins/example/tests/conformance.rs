//! The oect conformance checks over this plugin's extractors, in-process.

// Links the plugin's extractor registrations into this test binary.
use oect_example as _;

#[test]
fn the_plugin_conforms() {
    oect_plugin_api::testkit::assert_conforms();
}
