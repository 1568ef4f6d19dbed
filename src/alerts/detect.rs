//! The detectors as small pure functions over per-minute counts and running baselines. The
//! scheduler job ([`super::tick`]) feeds them one minute at a time; these functions decide
//! nothing about storage, so they are tested here on synthetic series.

use super::model::Thresholds;
use crate::clock::{DAY, Millis};

/// An exponentially weighted moving mean and variance of one subject's per-minute values.
/// `alpha` is the weight of the newest minute (0.05 remembers roughly the last 20–40
/// minutes), so the baseline follows daily cycles and slow growth but not a sudden burst.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ewma {
    pub mean: f64,
    pub variance: f64,
    /// Minutes folded in so far.
    pub samples: i64,
}

/// Quiet minutes applied at most, after which the baseline is as good as zero anyway.
const MAX_QUIET_STEPS: i64 = 2_000;

impl Ewma {
    /// Folds one minute's value in (West's incremental EWMA mean and variance).
    pub fn update(&mut self, value: f64, alpha: f64) {
        if self.samples == 0 {
            self.mean = value;
            self.variance = 0.0;
        } else {
            let diff = value - self.mean;
            let increment = alpha * diff;
            self.mean += increment;
            self.variance = (1.0 - alpha) * (self.variance + diff * increment);
        }
        self.samples += 1;
    }

    /// Folds in `minutes` minutes of zero (a subject is only stored for minutes it was seen).
    pub fn quiet(&mut self, minutes: i64, alpha: f64) {
        if self.samples == 0 {
            return;
        }
        for _ in 0..minutes.clamp(0, MAX_QUIET_STEPS) {
            self.update(0.0, alpha);
        }
        self.samples += (minutes - MAX_QUIET_STEPS).max(0);
    }

    /// The spread a count is judged against: the EWMA standard deviation, but never below
    /// the Poisson spread of the mean (counts of independent events vary that much anyway)
    /// and never below 1.
    pub fn count_sd(&self) -> f64 {
        self.variance.max(self.mean).max(1.0).sqrt()
    }

    /// How many spreads `value` lies above the mean.
    pub fn z(&self, value: f64) -> f64 {
        (value - self.mean) / self.count_sd()
    }
}

/// A detector's verdict for one subject and minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub value: f64,
    pub mean: f64,
    pub sd: f64,
    pub z: f64,
}

/// Request-rate spike of one key: fires when the minute's count is at least
/// `rate_min_requests` and `z_score` spreads above the key's own baseline, once the baseline
/// has `warmup_minutes` of history. A quiet key going from 3 to 9 requests stays silent.
pub fn rate_spike(baseline: &Ewma, requests: i64, t: &Thresholds) -> Option<Verdict> {
    if baseline.samples < t.warmup_minutes || requests < t.rate_min_requests {
        return None;
    }
    let value = requests as f64;
    let z = baseline.z(value);
    (z >= t.z_score).then_some(Verdict {
        value,
        mean: baseline.mean,
        sd: baseline.count_sd(),
        z,
    })
}

/// Error-rate spike of one key: the minute's share of 4xx/5xx answers rises at least
/// `error_min_share_rise` above the key's baseline share and `z_score` spreads above it (the
/// spread never below the binomial spread of the minute's share), with at least
/// `error_min_requests` requests in the minute.
pub fn error_spike(baseline: &Ewma, requests: i64, errors: i64, t: &Thresholds) -> Option<Verdict> {
    if baseline.samples < t.warmup_minutes || requests < t.error_min_requests || requests == 0 {
        return None;
    }
    let share = errors as f64 / requests as f64;
    let p = baseline.mean.clamp(0.0, 1.0);
    let binomial = (p.max(0.01) * (1.0 - p).max(0.01) / requests as f64).sqrt();
    let sd = baseline.variance.sqrt().max(binomial).max(0.01);
    let z = (share - baseline.mean) / sd;
    (share - baseline.mean >= t.error_min_share_rise && z >= t.z_score).then_some(Verdict {
        value: share,
        mean: baseline.mean,
        sd,
        z,
    })
}

/// Key guessing from one network: at least `guess_min_401` 401 answers in the minute and
/// `z_score` spreads above the network's own 401 baseline (most networks have none).
pub fn key_guess_network(baseline: &Ewma, unauthorized: i64, t: &Thresholds) -> Option<Verdict> {
    if unauthorized < t.guess_min_401 {
        return None;
    }
    let value = unauthorized as f64;
    let z = baseline.z(value);
    (z >= t.z_score).then_some(Verdict {
        value,
        mean: baseline.mean,
        sd: baseline.count_sd(),
        z,
    })
}

/// Key guessing against one key prefix across networks: at least `prefix_min_networks`
/// distinct networks and `prefix_min_401` refusals together in one minute. `per_network` is
/// the minute's 401 count per network for that prefix.
pub fn key_guess_prefix(per_network: &[i64], t: &Thresholds) -> Option<i64> {
    let networks = per_network.iter().filter(|n| **n > 0).count() as i64;
    let total: i64 = per_network.iter().sum();
    (networks >= t.prefix_min_networks && total >= t.prefix_min_401).then_some(total)
}

/// Staff login failures (per account or per network): the failures within the login window
/// reach `threshold`, which is set below the lock-out so the alert comes first. Fires only in
/// the minute the window first reaches the threshold.
pub fn login_failures(window_total: i64, this_minute: i64, threshold: i64) -> bool {
    this_minute > 0 && window_total >= threshold && window_total - this_minute < threshold
}

/// Demo abuse: one network hit the demo rate limit in at least `demo_limited_minutes` of the
/// last `demo_window_minutes` minutes, and in this one.
pub fn demo_abuse(limited_minutes_in_window: i64, limited_now: bool, t: &Thresholds) -> bool {
    limited_now && limited_minutes_in_window >= t.demo_limited_minutes
}

/// A key used from a network never seen for it, after at least `dormant_days` without any
/// use. `previous_use` is the key's last use before this minute from any other network;
/// a key never used before is not dormant.
pub fn dormant_key(previous_use: Option<Millis>, minute: Millis, t: &Thresholds) -> bool {
    previous_use.is_some_and(|last| minute - last >= t.dormant_days * DAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MINUTE;

    /// Deterministic noise of roughly Poisson size around `mean` (a small LCG, so the tests
    /// are repeatable).
    struct Noise(u64);

    impl Noise {
        fn around(&mut self, mean: f64) -> i64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let unit = ((self.0 >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0; // -1..1
            (mean + unit * 2.0 * mean.sqrt()).round().max(0.0) as i64
        }
    }

    fn fires_rate(series: &[i64]) -> Vec<usize> {
        let t = Thresholds::default();
        let mut baseline = Ewma::default();
        let mut fired = Vec::new();
        for (minute, count) in series.iter().enumerate() {
            if rate_spike(&baseline, *count, &t).is_some() {
                fired.push(minute);
            }
            baseline.update(*count as f64, t.ewma_alpha);
        }
        fired
    }

    fn steady(minutes: usize, mean: f64) -> Vec<i64> {
        let mut noise = Noise(7);
        (0..minutes).map(|_| noise.around(mean)).collect()
    }

    /// Three days of a daily cycle between 20 and 380 requests a minute.
    fn diurnal() -> Vec<i64> {
        let mut noise = Noise(11);
        (0..3 * 1440)
            .map(|m| {
                let phase = (m as f64 / 1440.0) * std::f64::consts::TAU;
                noise.around(200.0 - 180.0 * phase.cos())
            })
            .collect()
    }

    /// Two days growing from 10 to 1 000 requests a minute.
    fn growing() -> Vec<i64> {
        let mut noise = Noise(13);
        (0..2 * 1440)
            .map(|m| noise.around(10.0 + 990.0 * m as f64 / 2880.0))
            .collect()
    }

    #[test]
    fn ewma_tracks_a_constant_and_quiet_minutes_decay_it() {
        let mut e = Ewma::default();
        for _ in 0..500 {
            e.update(100.0, 0.05);
        }
        assert!((e.mean - 100.0).abs() < 1e-6);
        assert!(e.variance < 1e-6);
        e.quiet(200, 0.05);
        assert!(e.mean < 0.01, "{}", e.mean);
        assert_eq!(e.samples, 700);
    }

    #[test]
    fn rate_spike_fires_on_a_sudden_burst_of_one_key() {
        let mut series = steady(300, 100.0);
        series.push(1_000);
        assert_eq!(fires_rate(&series), vec![300]);
    }

    #[test]
    fn rate_spike_stays_silent_on_steady_diurnal_and_slowly_growing_traffic() {
        assert!(fires_rate(&steady(3 * 1440, 100.0)).is_empty());
        assert!(fires_rate(&diurnal()).is_empty());
        assert!(fires_rate(&growing()).is_empty());
    }

    #[test]
    fn a_quiet_key_tripling_its_few_requests_is_not_a_spike() {
        let mut series = vec![3; 300];
        series.push(9);
        assert!(fires_rate(&series).is_empty());
    }

    #[test]
    fn rate_spike_waits_for_the_warm_up() {
        let mut series = vec![5; 10];
        series.push(5_000);
        assert!(fires_rate(&series).is_empty());
    }

    fn fires_error(series: &[(i64, i64)]) -> Vec<usize> {
        let t = Thresholds::default();
        let mut baseline = Ewma::default();
        let mut fired = Vec::new();
        for (minute, (requests, errors)) in series.iter().enumerate() {
            if error_spike(&baseline, *requests, *errors, &t).is_some() {
                fired.push(minute);
            }
            baseline.update(*errors as f64 / *requests as f64, t.ewma_alpha);
        }
        fired
    }

    #[test]
    fn error_spike_fires_when_most_answers_turn_into_errors() {
        let mut noise = Noise(3);
        let mut series: Vec<(i64, i64)> = (0..300).map(|_| (100, noise.around(2.0))).collect();
        series.push((100, 80));
        assert_eq!(fires_error(&series), vec![300]);
    }

    #[test]
    fn error_spike_stays_silent_on_steady_diurnal_and_growing_error_shares() {
        let mut noise = Noise(5);
        let steady: Vec<(i64, i64)> = (0..2880).map(|_| (100, noise.around(5.0))).collect();
        assert!(fires_error(&steady).is_empty());
        let daily: Vec<(i64, i64)> = diurnal()
            .into_iter()
            .map(|r| (r.max(1), noise.around(r as f64 * 0.05).min(r.max(1))))
            .collect();
        assert!(fires_error(&daily).is_empty());
        let slow: Vec<(i64, i64)> = growing()
            .into_iter()
            .enumerate()
            .map(|(m, r)| {
                let share = 0.02 + 0.2 * m as f64 / 2880.0;
                (r.max(1), noise.around(r as f64 * share).min(r.max(1)))
            })
            .collect();
        assert!(fires_error(&slow).is_empty());
    }

    #[test]
    fn key_guessing_fires_on_a_401_burst_from_a_network_without_history() {
        let t = Thresholds::default();
        let none = Ewma::default();
        assert!(key_guess_network(&none, 29, &t).is_none());
        let verdict = key_guess_network(&none, 30, &t).unwrap();
        assert_eq!(verdict.value, 30.0);
        // A network that always sends a few bad keys (a misconfigured client) is judged
        // against its own habit.
        let mut habit = Ewma::default();
        let mut noise = Noise(17);
        let mut fired = 0;
        for minute in 0..2880 {
            let count = noise.around(40.0);
            // Its very first minute is a burst from a network without history: that fires
            // (once; the alert is deduplicated). From then on the habit is the baseline.
            if key_guess_network(&habit, count, &t).is_some() && minute > 0 {
                fired += 1;
            }
            habit.update(count as f64, t.ewma_alpha);
        }
        assert_eq!(fired, 0, "steady 401s of a broken client");
        assert!(key_guess_network(&habit, 400, &t).is_some());
    }

    #[test]
    fn prefix_guessing_needs_several_networks() {
        let t = Thresholds::default();
        assert_eq!(
            key_guess_prefix(&[500], &t),
            None,
            "one network is the other detector"
        );
        assert_eq!(key_guess_prefix(&[4, 3, 3], &t), Some(10));
        assert_eq!(key_guess_prefix(&[3, 3, 3], &t), None);
        assert_eq!(key_guess_prefix(&[5, 5, 0], &t), None);
    }

    #[test]
    fn login_failures_fire_once_at_the_threshold() {
        // Window totals 4, then 5 (fires), then 6 (already fired).
        assert!(!login_failures(4, 1, 5));
        assert!(login_failures(5, 1, 5));
        assert!(!login_failures(6, 1, 5));
        // Crossing by several at once fires.
        assert!(login_failures(7, 4, 5));
        // A minute without failures never fires.
        assert!(!login_failures(9, 0, 5));
        // A steady trickle under the threshold stays silent.
        assert!(!login_failures(3, 1, 5));
    }

    #[test]
    fn demo_abuse_needs_many_limited_minutes() {
        let t = Thresholds::default();
        assert!(!demo_abuse(9, true, &t));
        assert!(demo_abuse(10, true, &t));
        assert!(!demo_abuse(12, false, &t));
    }

    #[test]
    fn dormant_key_counts_whole_days_of_silence_at_the_boundary() {
        let t = Thresholds::default();
        let now = 100 * DAY;
        assert!(!dormant_key(None, now, &t), "a first use is not a return");
        assert!(!dormant_key(Some(now - 30 * DAY + MINUTE), now, &t));
        assert!(dormant_key(Some(now - 30 * DAY), now, &t));
    }
}
