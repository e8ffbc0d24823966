//! The worlds' view of their links (partitions, holds, loss rates), kept so that a host can be
//! crashed silently and the links restored as they were.
//!
//! Why: a turmoil crash drops the host's tasks, and each dropped socket sends a FIN or RST
//! whose latency is drawn from the world's RNG. Tokio drops a runtime's tasks shard by shard,
//! and a task's shard comes from its id, a process-wide counter: the draws, and so the rest of
//! the run, then depend on what ran before in the process, and a seed did not replay. A real
//! crash sends nothing either; so a crash here first stops everything the host sends (and any
//! loss-rate draw on its links), crashes it, and then puts its links back.

use rmq_lifecycle::core::model_trace;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub(crate) struct Links {
    partitioned: BTreeSet<(&'static str, &'static str)>,
    held: BTreeSet<(&'static str, &'static str)>,
    fail_rate: BTreeMap<(&'static str, &'static str), f64>,
}

fn pair(a: &'static str, b: &'static str) -> (&'static str, &'static str) {
    if a < b { (a, b) } else { (b, a) }
}

impl Links {
    pub(crate) fn partition(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        a: &'static str,
        b: &'static str,
    ) {
        sim.partition(a, b);
        self.partitioned.insert(pair(a, b));
    }

    pub(crate) fn repair(&mut self, sim: &mut turmoil::Sim<'_>, a: &'static str, b: &'static str) {
        sim.repair(a, b);
        self.partitioned.remove(&pair(a, b));
        self.held.remove(&pair(a, b));
    }

    pub(crate) fn hold(&mut self, sim: &mut turmoil::Sim<'_>, a: &'static str, b: &'static str) {
        sim.hold(a, b);
        self.held.insert(pair(a, b));
    }

    pub(crate) fn release(&mut self, sim: &mut turmoil::Sim<'_>, a: &'static str, b: &'static str) {
        sim.release(a, b);
        self.held.remove(&pair(a, b));
    }

    pub(crate) fn set_fail_rate(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        a: &'static str,
        b: &'static str,
        rate: f64,
    ) {
        sim.set_link_fail_rate(a, b, rate);
        if rate == 0.0 {
            self.fail_rate.remove(&pair(a, b));
        } else {
            self.fail_rate.insert(pair(a, b), rate);
        }
    }

    /// Crashes `host` (if it runs) without anything it sends on the way down reaching the
    /// network or drawing from the world's RNG; its links to `others` are restored afterwards.
    pub(crate) fn crash(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        host: &'static str,
        others: &[&'static str],
    ) {
        if !sim.is_host_running(host) {
            return;
        }
        let others: Vec<&'static str> = others.iter().copied().filter(|o| *o != host).collect();
        for &o in &others {
            sim.set_link_fail_rate(host, o, 0.0);
            sim.partition_oneway(host, o);
        }
        // Before the crash, so that anything the host's teardown records follows it.
        model_trace::replication_step(|seq| {
            tracing::trace!(target: model_trace::REPLICATION_TARGET, seq, action = "Crash", r = host);
        });
        sim.crash(host);
        for &o in &others {
            sim.repair_oneway(host, o);
            let p = pair(host, o);
            if self.partitioned.contains(&p) {
                sim.partition(host, o);
            } else if self.held.contains(&p) {
                sim.hold(host, o);
            }
            if let Some(&rate) = self.fail_rate.get(&p) {
                sim.set_link_fail_rate(host, o, rate);
            }
        }
    }

    /// Forgets every partition, hold and loss rate (the world healed them all).
    pub(crate) fn healed(&mut self) {
        *self = Links::default();
    }
}
