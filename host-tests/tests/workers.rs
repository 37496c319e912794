//! Several VMs on several threads, as Envoy runs one VM per worker thread,
//! sharing one shared-data store and one metrics registry.

mod common;

use std::sync::Arc;

use common::{exchange_on, options, probe_request, result, start};
use sluice_host::{HttpRequest, Proxy, RequestOutcome};

#[test]
fn workers_on_their_own_threads_share_one_store_and_one_registry() {
    const WORKERS: usize = 4;
    const PER_THREAD: usize = 25;
    let proxy = Arc::new(start(options().workers(WORKERS)));
    let threads: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let proxy = Arc::clone(&proxy);
            std::thread::spawn(move || {
                for n in 0..PER_THREAD {
                    let done = exchange_on(
                        &proxy,
                        worker,
                        probe_request(&[
                            ("x-probe-shared-set", &format!("w{worker}-{n}=v")),
                            ("x-probe-metric", "counter:served:inc:1"),
                        ]),
                    );
                    assert_eq!(
                        result(&done, &format!("shared-set-w{worker}-{n}")).as_deref(),
                        Some("0")
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("the thread finishes");
    }
    assert_eq!(proxy.shared_data().len(), WORKERS * PER_THREAD);
    assert_eq!(
        proxy.metrics().counter("served"),
        Some((WORKERS * PER_THREAD) as u64)
    );
    let cases: Vec<u32> = proxy
        .shared_data()
        .keys()
        .iter()
        .filter_map(|key| proxy.shared_data().get(key).map(|found| found.cas))
        .collect();
    let mut unique = cases.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), cases.len(), "every write took its own cas");
}

#[test]
fn each_worker_runs_its_own_vm_on_its_own_thread() {
    let proxy = start(options().workers(3));
    let mut vms: Vec<_> = proxy
        .logs()
        .records()
        .into_iter()
        .filter(|record| record.message == "probe vm started")
        .map(|record| record.origin.vm())
        .collect();
    vms.sort();
    vms.dedup();
    assert_eq!(vms.len(), 3);
    assert_eq!(
        vms.iter().map(|vm| vm.worker).collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

#[test]
fn round_robin_visits_every_worker_in_turn() {
    let proxy = start(options().workers(3));
    let picks: Vec<usize> = (0..6).map(|_| proxy.next_worker()).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    assert!(matches!(
        proxy.begin(3, HttpRequest::get("/")),
        Err(sluice_host::HostError::NoSuchWorker {
            worker: 3,
            workers: 3
        })
    ));
}

#[test]
fn proxies_and_streams_move_between_threads() {
    fn send_and_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_and_sync::<Proxy>();
    send::<sluice_host::Stream>();

    let proxy = Arc::new(start(options()));
    let (stream, outcome) = proxy
        .begin(0, HttpRequest::get("/"))
        .expect("the stream begins");
    assert!(matches!(outcome, RequestOutcome::Forward(_)));
    let report = std::thread::spawn(move || stream.finish())
        .join()
        .expect("the thread finishes")
        .expect("the stream ends");
    assert_eq!(report.trap, None);
    assert!(proxy.logs().contains("probe on_log 2"));
}
