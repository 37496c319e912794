//! Keyed GCRA decisions per second: sluice against governor, with the same quota, keys,
//! clock and key distributions, on 1 and 2 threads. Every figure is the median over rounds
//! in which all contenders run back to back; ratios are taken within each round.
//!
//! `cargo bench -p sluice-bench --bench core_vs_governor [-- --rounds N --decisions N]`

use governor::clock::QuantaClock;
use sluice_bench::contenders::{
    BURST, Contender, Governor, MAX_KEYS, QUOTA_PER_SECOND, SluiceDecide, SluiceLimiter,
};
use sluice_bench::keys::{Distribution, KeySet};
use sluice_bench::measure::{Rounds, interleave, run};

struct Settings {
    rounds: usize,
    decisions: usize,
}

fn settings() -> Settings {
    let mut settings = Settings {
        rounds: 15,
        decisions: 1_000_000,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        let value = pair[1].parse::<usize>().ok();
        match (pair[0].as_str(), value) {
            ("--rounds", Some(n)) => settings.rounds = n.max(1),
            ("--decisions", Some(n)) => settings.decisions = n.max(1),
            _ => {}
        }
    }
    settings
}

fn scenario(distribution: Distribution, threads: usize, settings: &Settings) {
    let keys = KeySet::addresses(distribution.key_count());
    let sequence = distribution.sequence(1 << 20, 0x5eed_0f51_15ce);
    let governor = Governor::keyed(keys.clone());
    let limiter = SluiceLimiter::new(&keys, QuantaClock::default());
    let decide = SluiceDecide::new(keys.clone(), QuantaClock::default());
    let per_thread = settings.decisions;
    // Untimed: every key gets its state (and every map its memory) before the rounds.
    let warm = sequence.len().min(per_thread.max(1 << 20));
    run(&governor, threads, &sequence, warm);
    run(&limiter, threads, &sequence, warm);
    run(&decide, threads, &sequence, warm);
    let names = [governor.name(), limiter.name(), decide.name()];
    let rounds: Rounds = interleave(
        settings.rounds,
        &mut [
            &mut || run(&governor, threads, &sequence, per_thread),
            &mut || run(&limiter, threads, &sequence, per_thread),
            &mut || run(&decide, threads, &sequence, per_thread),
        ],
    );
    for (index, name) in names.iter().enumerate() {
        let rate = rounds.median_rate(index);
        let ratio = rounds.median_ratio(index, 0);
        let verdict = match index {
            0 => "baseline".to_string(),
            _ if ratio >= 1.0 => "met (>= 1.00)".to_string(),
            _ => "NOT met (>= 1.00)".to_string(),
        };
        println!(
            "{:<18} {:>7} {:<22} {:>9.2} {:>11.1} {:>8.1}% {:>6.2}x  {}",
            distribution.name(),
            threads,
            name,
            rate / 1e6,
            1e9 / rate,
            rounds.admitted_share(index) * 100.0,
            ratio,
            verdict
        );
    }
    if let Distribution::Uniform { .. } = distribution {
        println!(
            "{:<18} {:>7} (sluice table: {} buckets in the store for {} keys, max_keys {MAX_KEYS})",
            "",
            "",
            limiter.buckets(),
            keys.len()
        );
    }
}

fn main() {
    let settings = settings();
    println!(
        "core vs governor: keyed GCRA, {QUOTA_PER_SECOND} req/s, burst {BURST}, cost 1, one clock \
         read (quanta) per decision; {} rounds x {} decisions per thread",
        settings.rounds, settings.decisions
    );
    println!(
        "ratio = contender's decisions/s over governor's in the same round (median over rounds)"
    );
    println!(
        "{:<18} {:>7} {:<22} {:>9} {:>11} {:>9} {:>7}  target",
        "distribution", "threads", "contender", "Mdec/s", "ns/decision", "admitted", "ratio"
    );
    for distribution in [
        Distribution::HotKey,
        Distribution::Uniform { keys: 100_000 },
    ] {
        for threads in [1, 2] {
            scenario(distribution, threads, &settings);
        }
    }
}
