//! Placement: which workers run which app slots. A pure function of the
//! workers, the placements and the current assignments, so the leader's
//! decision is testable without a cluster.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::{Assignment, Placement, PlacementMode, WorkerRecord};

/// In-flight requests per instance that `--min N --max M` aims for.
pub const TARGET_IN_FLIGHT: u64 = 100;

/// The in-flight sums of load-scaled slots over a recent window: the
/// scale-down stabilisation of `--min N --max M`.
#[derive(Debug, Default)]
pub(crate) struct LoadHistory {
    samples: BTreeMap<(String, String), Vec<(i64, u64)>>,
}

impl LoadHistory {
    /// Records `in_flight` for `app`/`slot` at `now` (ms) and returns the
    /// highest sum of the last `window_ms`: a rise counts at once, a fall
    /// only once it has lasted the whole window.
    pub(crate) fn peak(
        &mut self,
        app: &str,
        slot: &str,
        now: i64,
        in_flight: u64,
        window_ms: i64,
    ) -> u64 {
        let samples = self
            .samples
            .entry((app.to_owned(), slot.to_owned()))
            .or_default();
        samples.retain(|&(at, _)| now - at < window_ms);
        samples.push((now, in_flight));
        samples.iter().map(|&(_, n)| n).max().unwrap_or(in_flight)
    }

    /// Forgets every slot but those of `live` (the load-scaled slots
    /// placed now): a slot whose placement was removed, that is no
    /// longer scaled by load, or whose app is gone keeps no history, and
    /// comes back, if it does, with none (no peak of its past life).
    pub(crate) fn retain(&mut self, live: &BTreeSet<(String, String)>) {
        self.samples.retain(|key, _| live.contains(key));
    }

    /// The slots with a history.
    #[cfg(test)]
    fn slots(&self) -> Vec<(String, String)> {
        self.samples.keys().cloned().collect()
    }
}

/// What one placed app slot runs now.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) placement: Placement,
    pub(crate) deployment: String,
    pub(crate) manifest: String,
    pub(crate) settings_version: String,
    /// Requests in flight over its instances at their last heartbeats.
    pub(crate) in_flight: u64,
}

/// The assignments every worker should have. `eligible` are the workers
/// that take work (ready, not draining, not stale), by name; every other
/// worker gets none. Instances stay where they are when they may, then go
/// to the workers with the fewest instances, never two of one slot on
/// one worker, never beyond a worker's capacity.
pub(crate) fn place(
    workers: &[WorkerRecord],
    eligible: &BTreeSet<String>,
    targets: &[Target],
    current: &[Assignment],
) -> BTreeMap<String, Vec<Assignment>> {
    let mut out: BTreeMap<String, Vec<Assignment>> = workers
        .iter()
        .map(|w| (w.name.clone(), Vec::new()))
        .collect();
    let capacity: BTreeMap<&str, i64> = workers
        .iter()
        .map(|w| (w.name.as_str(), w.capacity.max(1)))
        .collect();
    for t in targets {
        let p = &t.placement;
        let candidates: Vec<&WorkerRecord> = workers
            .iter()
            .filter(|w| eligible.contains(&w.name))
            .filter(|w| p.labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
            .collect();
        let wanted = match p.mode {
            PlacementMode::Fixed => p.min_instances.max(0) as usize,
            PlacementMode::EveryWorker => candidates.len(),
            PlacementMode::Auto => {
                let by_load = t.in_flight.div_ceil(TARGET_IN_FLIGHT) as i64;
                by_load.clamp(p.min_instances.max(0), p.max_instances.max(p.min_instances)) as usize
            }
        };
        let has = |w: &str| {
            current
                .iter()
                .any(|a| a.worker == w && a.app == p.app && a.slot == p.slot)
        };
        // Where it runs already first, then the least loaded.
        let mut order: Vec<&WorkerRecord> = candidates.clone();
        order.sort_by_key(|w| {
            (
                !has(&w.name),
                out.get(&w.name).map_or(0, Vec::len),
                w.name.clone(),
            )
        });
        let mut placed = 0;
        for w in order {
            if placed == wanted {
                break;
            }
            let list = out.entry(w.name.clone()).or_default();
            if list.len() as i64 >= capacity.get(w.name.as_str()).copied().unwrap_or(1) {
                continue;
            }
            list.push(Assignment {
                worker: w.name.clone(),
                app: p.app.clone(),
                slot: p.slot.clone(),
                deployment: t.deployment.clone(),
                manifest: t.manifest.clone(),
                settings_version: t.settings_version.clone(),
            });
            placed += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::WorkerState;

    fn worker(name: &str, labels: &[(&str, &str)]) -> WorkerRecord {
        WorkerRecord {
            name: name.into(),
            credential_hash: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            capacity: 10,
            state: WorkerState::Ready,
            drain_requested: false,
            status: "{}".into(),
            last_heartbeat: 0,
            registered_at: 0,
            generation: 1,
        }
    }

    fn target(p: Placement) -> Target {
        Target {
            placement: p,
            deployment: "d1".into(),
            manifest: "m1".into(),
            settings_version: "s1".into(),
            in_flight: 0,
        }
    }

    fn count(out: &BTreeMap<String, Vec<Assignment>>) -> Vec<(String, usize)> {
        out.iter().map(|(k, v)| (k.clone(), v.len())).collect()
    }

    #[test]
    fn instances_spread_and_skip_workers_that_take_no_work() {
        let workers = vec![worker("a", &[]), worker("b", &[]), worker("c", &[])];
        let eligible: BTreeSet<String> = ["a", "c"].iter().map(|s| s.to_string()).collect();
        let out = place(
            &workers,
            &eligible,
            &[target(Placement::fixed("app", "production", 3))],
            &[],
        );
        // Two eligible workers: two instances, one each; b (draining or
        // stale) gets nothing.
        assert_eq!(
            count(&out),
            vec![("a".into(), 1), ("b".into(), 0), ("c".into(), 1)]
        );
    }

    #[test]
    fn instances_stay_where_they_run_and_labels_constrain() {
        let workers = vec![
            worker("a", &[("zone", "x")]),
            worker("b", &[("zone", "y")]),
            worker("c", &[("zone", "y")]),
        ];
        let eligible: BTreeSet<String> = workers.iter().map(|w| w.name.clone()).collect();
        let mut labels = BTreeMap::new();
        labels.insert("zone".to_string(), "y".to_string());
        let current = vec![Assignment {
            worker: "c".into(),
            app: "app".into(),
            slot: "production".into(),
            deployment: "d0".into(),
            manifest: "m0".into(),
            settings_version: "s0".into(),
        }];
        let out = place(
            &workers,
            &eligible,
            &[target(
                Placement::fixed("app", "production", 1).with_labels(labels),
            )],
            &current,
        );
        assert_eq!(out["c"].len(), 1);
        assert_eq!(out["c"][0].deployment, "d1", "rolled to the new deployment");
        assert!(out["a"].is_empty() && out["b"].is_empty());
        let every = place(
            &workers,
            &eligible,
            &[target(Placement::every_worker("app", "production"))],
            &[],
        );
        assert_eq!(
            count(&every),
            vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]
        );
    }

    #[test]
    fn load_history_keeps_the_peak_of_the_window() {
        let mut h = LoadHistory::default();
        assert_eq!(h.peak("a", "production", 0, 150, 5000), 150);
        // A dip between two waves does not count until it has lasted
        // the whole window; a rise counts at once.
        assert_eq!(h.peak("a", "production", 1000, 0, 5000), 150);
        assert_eq!(h.peak("a", "production", 2000, 290, 5000), 290);
        assert_eq!(h.peak("a", "production", 7500, 10, 5000), 10);
        // Slots are apart; no window means the load of the moment.
        assert_eq!(h.peak("a", "staging", 7500, 3, 5000), 3);
        assert_eq!(h.peak("b", "production", 0, 300, 0), 300);
        assert_eq!(h.peak("b", "production", 1, 0, 0), 0);
    }

    #[test]
    fn load_history_forgets_slots_no_longer_scaled_by_load() {
        let mut h = LoadHistory::default();
        let window = 30_000;
        h.peak("a", "production", 0, 250, window);
        h.peak("a", "staging", 0, 120, window);
        h.peak("b", "production", 0, 400, window);
        // a/staging was scaled to 0 instances, b deleted: only
        // a/production is still scaled by load.
        let live: BTreeSet<(String, String)> = [("a".to_string(), "production".to_string())]
            .into_iter()
            .collect();
        h.retain(&live);
        assert_eq!(h.slots(), [("a".to_string(), "production".to_string())]);
        // Its history is intact: the peak of the window still counts.
        assert_eq!(h.peak("a", "production", 1000, 0, window), 250);
        // b, created again and scaled by load within the window, starts
        // from its own load, not from the 400 of the deleted app.
        assert_eq!(h.peak("b", "production", 1000, 10, window), 10);
        h.retain(&BTreeSet::new());
        assert!(h.slots().is_empty());
    }

    #[test]
    fn auto_follows_in_flight_between_min_and_max() {
        let workers: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| worker(n, &[]))
            .collect();
        let eligible: BTreeSet<String> = workers.iter().map(|w| w.name.clone()).collect();
        let mut t = target(Placement::auto("app", "production", 1, 3));
        t.in_flight = 250;
        let out = place(&workers, &eligible, &[t.clone()], &[]);
        assert_eq!(out.values().map(Vec::len).sum::<usize>(), 3);
        t.in_flight = 0;
        let out = place(&workers, &eligible, &[t], &[]);
        assert_eq!(out.values().map(Vec::len).sum::<usize>(), 1);
    }
}
