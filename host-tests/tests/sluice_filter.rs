//! The sluice filter links against this host: every import it makes is a
//! host function the host provides.

use sluice_host::FilterModule;
use sluice_host::test_filters::SLUICE_FILTER_WASM;

#[test]
fn the_sluice_filter_compiles_and_links_against_the_host() {
    let module =
        FilterModule::from_file(SLUICE_FILTER_WASM).expect("the sluice filter compiles and links");
    assert!(
        module.unknown_imports().is_empty(),
        "imports the host does not provide: {:?}",
        module.unknown_imports()
    );
}
