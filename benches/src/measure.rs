//! Timing contenders on a shared, noisy machine: rounds in which every contender runs once
//! (in an order that rotates), so that each ratio compares runs made moments apart.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::contenders::Contender;

/// One timed run of one contender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub decisions: u64,
    pub admitted: u64,
    pub elapsed: Duration,
}

impl Run {
    pub fn decisions_per_second(&self) -> f64 {
        self.decisions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `per_thread` decisions on each of `threads` threads at once, thread `t` walking
/// `sequence` from `t × len / threads` (wrapping). Timed from the moment all threads are
/// released to the moment the last one finishes.
pub fn run<C: Contender>(
    contender: &C,
    threads: usize,
    sequence: &[u32],
    per_thread: usize,
) -> Run {
    let threads = threads.max(1);
    let barrier = Barrier::new(threads + 1);
    let (elapsed, admitted) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut worker = contender.worker();
                    let start = t * sequence.len() / threads;
                    barrier.wait();
                    let mut admitted = 0u64;
                    for i in 0..per_thread {
                        let key = sequence[(start + i) % sequence.len()] as usize;
                        if contender.decide(&mut worker, black_box(key)) {
                            admitted += 1;
                        }
                    }
                    admitted
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let admitted: u64 = handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or(0))
            .sum();
        (started.elapsed(), admitted)
    });
    Run {
        decisions: (threads * per_thread) as u64,
        admitted,
        elapsed,
    }
}

/// The runs of every contender, round by round (`runs[contender][round]`).
#[derive(Debug, Clone)]
pub struct Rounds {
    pub runs: Vec<Vec<Run>>,
}

/// `rounds` rounds; in each, every entry of `contenders` runs once, starting with a different
/// one each round.
pub fn interleave(rounds: usize, contenders: &mut [&mut dyn FnMut() -> Run]) -> Rounds {
    let count = contenders.len();
    let mut runs = vec![Vec::with_capacity(rounds); count];
    for round in 0..rounds {
        for offset in 0..count {
            let index = (round + offset) % count;
            let run = (contenders[index])();
            runs[index].push(run);
        }
    }
    Rounds { runs }
}

/// The median of `values` (0 for none).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

impl Rounds {
    /// The median throughput of contender `index`, in decisions per second.
    pub fn median_rate(&self, index: usize) -> f64 {
        let mut rates: Vec<f64> = self.runs[index]
            .iter()
            .map(Run::decisions_per_second)
            .collect();
        median(&mut rates)
    }

    /// The median, over rounds, of contender `index`'s throughput divided by contender
    /// `baseline`'s in the same round.
    pub fn median_ratio(&self, index: usize, baseline: usize) -> f64 {
        let mut ratios: Vec<f64> = self.runs[index]
            .iter()
            .zip(&self.runs[baseline])
            .map(|(run, base)| run.decisions_per_second() / base.decisions_per_second())
            .collect();
        median(&mut ratios)
    }

    /// The share of contender `index`'s decisions that admitted the request.
    pub fn admitted_share(&self, index: usize) -> f64 {
        let (admitted, decisions) = self.runs[index].iter().fold((0u64, 0u64), |(a, d), run| {
            (a + run.admitted, d + run.decisions)
        });
        admitted as f64 / decisions.max(1) as f64
    }
}
