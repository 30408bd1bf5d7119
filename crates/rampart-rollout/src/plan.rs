//! The waves of a campaign: how many of its targets each wave reaches, and which devices
//! come first.

use serde::{Deserialize, Serialize};

use crate::SpecError;
use crate::spec::{Gate, MAX_WAVES, PhasePlan, Size};

/// A campaign's waves over a known number of targets, as cumulative device counts: wave `i`
/// reaches the first `bounds[i]` devices of the campaign's order. The last bound is every
/// target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    bounds: Vec<u64>,
}

impl Plan {
    /// The plan for `total` targets. Refuses an empty campaign, and a gate the canary could
    /// never pass (more results required than it has devices).
    pub fn new(phases: &PhasePlan, gate: &Gate, total: u64) -> Result<Plan, SpecError> {
        if total == 0 {
            return Err(SpecError::new(
                "the campaign's targets select no eligible device; check the selection and the policy",
            ));
        }
        let mut bounds = vec![phases.canary.of(total)];
        let push = |bounds: &mut Vec<u64>, n: u64| -> Result<(), SpecError> {
            let n = n.min(total);
            if n > *bounds.last().unwrap_or(&0) {
                if bounds.len() >= MAX_WAVES {
                    return Err(SpecError::new(format!(
                        "the phase plan makes more than {MAX_WAVES} waves for {total} devices; use larger waves or a larger factor"
                    )));
                }
                bounds.push(n);
            }
            Ok(())
        };
        if let Some(e) = phases.exponential {
            let mut size = e.base as f64;
            while *bounds.last().unwrap_or(&0) < total {
                let last = *bounds.last().unwrap_or(&0);
                push(&mut bounds, last.saturating_add(size.ceil() as u64))?;
                size *= e.factor;
            }
        } else {
            for w in &phases.waves {
                push(&mut bounds, w.of(total))?;
            }
            push(&mut bounds, total)?;
        }
        if gate.min_results > bounds[0] {
            return Err(SpecError::new(format!(
                "the gate needs {} results but the canary has only {} device(s), so it could never pass; lower gate.min_results or enlarge the canary",
                gate.min_results, bounds[0]
            )));
        }
        Ok(Plan { bounds })
    }

    /// A stored plan (its cumulative counts), checked: non-empty and strictly increasing.
    pub fn from_bounds(bounds: Vec<u64>) -> Result<Plan, SpecError> {
        if bounds.is_empty() || bounds[0] == 0 || bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(SpecError::new(format!(
                "a stored campaign plan must be increasing device counts, not {bounds:?}"
            )));
        }
        Ok(Plan { bounds })
    }

    /// Number of waves, the canary included.
    pub fn waves(&self) -> usize {
        self.bounds.len()
    }

    /// Cumulative device counts per wave.
    pub fn bounds(&self) -> &[u64] {
        &self.bounds
    }

    pub fn total(&self) -> u64 {
        *self.bounds.last().unwrap_or(&0)
    }

    /// Devices in wave `wave` alone.
    pub fn size_of(&self, wave: usize) -> u64 {
        let end = self.bounds.get(wave).copied().unwrap_or(0);
        let start = if wave == 0 { 0 } else { self.bounds[wave - 1] };
        end.saturating_sub(start)
    }

    /// The wave of the device at `position` (0-based) in the campaign's order.
    pub fn wave_of(&self, position: u64) -> usize {
        self.bounds.partition_point(|&b| b <= position)
    }

    /// "canary", "wave 1", "wave 2", …
    pub fn wave_name(wave: usize) -> String {
        if wave == 0 {
            "canary".to_string()
        } else {
            format!("wave {wave}")
        }
    }
}

/// Where a device falls in a campaign's order. The order is a keyed hash of the campaign and
/// device ids (FNV-1a, 64 bits): it spreads any kind of device (model, region, enrolment time)
/// across the waves, so the canary is a sample of the whole selection rather than its oldest
/// devices, and another campaign over the same devices picks a different canary.
pub fn order_key(campaign_id: &str, device_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in campaign_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(device_id.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Sorts device ids into the campaign's order.
pub fn order_devices(campaign_id: &str, devices: &mut [String]) {
    devices.sort_by_cached_key(|d| (order_key(campaign_id, d), d.clone()));
}

impl Size {
    /// A readable form for plans and reports.
    pub fn describe(self) -> String {
        match self {
            Size::Devices(n) => format!("{n} devices"),
            Size::Percent(p) => format!("{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Exponential;

    fn waves(canary: Size, waves: Vec<Size>) -> PhasePlan {
        PhasePlan {
            canary,
            waves,
            exponential: None,
        }
    }

    #[test]
    fn listed_waves_are_cumulative_and_end_at_every_target() {
        let p = Plan::new(
            &waves(
                Size::Percent(1.0),
                vec![Size::Percent(10.0), Size::Percent(50.0)],
            ),
            &Gate::default(),
            1000,
        )
        .unwrap();
        assert_eq!(p.bounds(), &[10, 100, 500, 1000]);
        assert_eq!(p.size_of(0), 10);
        assert_eq!(p.size_of(3), 500);
        assert_eq!(p.wave_of(0), 0);
        assert_eq!(p.wave_of(9), 0);
        assert_eq!(p.wave_of(10), 1);
        assert_eq!(p.wave_of(999), 3);
    }

    #[test]
    fn tiny_fleets_merge_waves_that_round_to_the_same_size() {
        let p = Plan::new(&PhasePlan::default(), &Gate::default(), 3).unwrap();
        // 1 % and 10 % both round up to one device; 50 % to two.
        assert_eq!(p.bounds(), &[1, 2, 3]);
    }

    #[test]
    fn exponential_waves_grow_by_the_factor() {
        let plan = PhasePlan {
            canary: Size::Devices(5),
            waves: vec![],
            exponential: Some(Exponential {
                base: 10,
                factor: 2.0,
            }),
        };
        let p = Plan::new(&plan, &Gate::default(), 100).unwrap();
        assert_eq!(p.bounds(), &[5, 15, 35, 75, 100]);
    }

    #[test]
    fn a_gate_the_canary_cannot_satisfy_is_refused() {
        let gate = Gate {
            min_results: 20,
            ..Gate::default()
        };
        let e = Plan::new(&waves(Size::Devices(10), vec![]), &gate, 1000).unwrap_err();
        assert!(e.to_string().contains("could never pass"), "{e}");
        assert!(Plan::new(&PhasePlan::default(), &Gate::default(), 0).is_err());
    }

    #[test]
    fn order_is_stable_and_depends_on_the_campaign() {
        let mut a: Vec<String> = (0..50).map(|i| format!("dev-{i}")).collect();
        let mut b = a.clone();
        let mut c = a.clone();
        order_devices("c1", &mut a);
        order_devices("c1", &mut b);
        order_devices("c2", &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Not simply the input order.
        assert_ne!(
            a[..10],
            (0..10).map(|i| format!("dev-{i}")).collect::<Vec<_>>()[..]
        );
    }
}
