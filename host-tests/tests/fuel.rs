//! Fuel metering: a metered module reports the fuel each stream used, and a
//! callback exceeding its budget traps like any other trap.

mod common;

use common::{exchange, metered_probe, options, probe, probe_request, start};
use sluice_host::{FuelMetering, ProxyOptions, RequestOutcome};

fn metered() -> ProxyOptions {
    ProxyOptions {
        module: metered_probe(),
        ..options()
    }
}

#[test]
fn a_metered_module_reports_the_fuel_of_each_stream() {
    let proxy = start(metered());
    let light = exchange(&proxy, probe_request(&[]));
    let heavy = exchange(&proxy, probe_request(&[("x-probe-log-all", "some work")]));
    let light_fuel = light.report.fuel_consumed.expect("metered");
    let heavy_fuel = heavy.report.fuel_consumed.expect("metered");
    assert!(light_fuel > 0);
    assert!(heavy_fuel > light_fuel, "{heavy_fuel} > {light_fuel}");
}

#[test]
fn an_unmetered_module_reports_no_fuel() {
    let proxy = start(options());
    assert_eq!(probe().metering(), FuelMetering::Off);
    assert_eq!(
        exchange(&proxy, probe_request(&[])).report.fuel_consumed,
        None
    );
}

#[test]
fn a_callback_over_its_fuel_budget_traps() {
    // A plain stream uses under 20 000 units in all; 200 times six log lines
    // take over 400 000 in one callback.
    let proxy = start(metered().fuel_per_callback(100_000));
    let many: Vec<(&str, &str)> = (0..200).map(|_| ("x-probe-log-all", "burn fuel")).collect();
    let done = exchange(&proxy, probe_request(&many));
    let RequestOutcome::Failed(failure) = &done.request else {
        panic!("the callback runs out of fuel, got {:?}", done.request);
    };
    assert!(failure.trap.contains("fuel"), "{}", failure.trap);
    assert_eq!(exchange(&proxy, probe_request(&[])).status(), Some(200));
}
