//! Waves: a canary (a count or a share of the selection) and then cumulative shares, each
//! device placed by a hash of the rollout and its id, so the same device is always in the same
//! wave and a device that appears later falls where it would have been.

use sha2::{Digest, Sha256};

/// One wave as an operator writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WaveSpec {
    /// This many devices (the first wave only: the canary).
    Count(u64),
    /// Up to this share of the selection, cumulative (`25%`: the first quarter in all).
    Share(f64),
}

/// Most waves in a rollout.
pub const MAX_WAVES: usize = 20;

/// `"10,25%,50%,100%"`: a canary of ten devices, then a quarter, half and all. The last wave
/// must be `100%`.
pub fn parse(text: &str) -> Result<Vec<WaveSpec>, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return Err("waves: a list such as \"10,25%,50%,100%\"".into());
    }
    if parts.len() > MAX_WAVES {
        return Err(format!("waves: at most {MAX_WAVES}"));
    }
    let mut out = Vec::new();
    let mut last = 0.0;
    for (i, p) in parts.iter().enumerate() {
        if let Some(pct) = p.strip_suffix('%') {
            let v: f64 = pct
                .trim()
                .parse()
                .map_err(|_| format!("waves: {p:?} is not a percentage"))?;
            if !(v > 0.0 && v <= 100.0) || v <= last {
                return Err(format!(
                    "waves: {p:?} must be above the wave before it and at most 100%"
                ));
            }
            last = v;
            out.push(WaveSpec::Share(v / 100.0));
        } else {
            let n: u64 = p
                .parse()
                .map_err(|_| format!("waves: {p:?} is neither a count nor a percentage"))?;
            if i != 0 || n == 0 {
                return Err(format!(
                    "waves: a count ({p}) is allowed only for the first wave (the canary), and must be at least 1"
                ));
            }
            out.push(WaveSpec::Count(n));
        }
    }
    if !matches!(out.last(), Some(WaveSpec::Share(v)) if (*v - 1.0).abs() < 1e-12) {
        return Err("waves: the last wave must be 100%".into());
    }
    Ok(out)
}

/// A device's place in a rollout (given by the rollout's seed): a fraction in [0, 1).
pub fn place(seed: u64, device_id: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(seed.to_be_bytes());
    h.update(device_id.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// The cumulative thresholds of the waves, for a selection whose places are `sorted` (a canary
/// by count takes exactly that many devices of it).
pub fn thresholds(specs: &[WaveSpec], sorted: &[f64]) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::with_capacity(specs.len());
    for s in specs {
        let t = match *s {
            WaveSpec::Share(v) => v,
            WaveSpec::Count(n) => usize::try_from(n)
                .ok()
                .and_then(|n| sorted.get(n))
                .copied()
                .unwrap_or(1.0),
        };
        let prev = out.last().copied().unwrap_or(0.0);
        out.push(t.max(prev));
    }
    if let Some(l) = out.last_mut() {
        *l = 1.0;
    }
    out
}

/// The wave of a device at `place`.
pub fn wave_of(thresholds: &[f64], place: f64) -> usize {
    thresholds
        .iter()
        .position(|t| place < *t)
        .unwrap_or(thresholds.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_parse_and_refuse() {
        assert_eq!(
            parse("10,25%,100%").expect("valid"),
            [
                WaveSpec::Count(10),
                WaveSpec::Share(0.25),
                WaveSpec::Share(1.0)
            ]
        );
        for bad in [
            "",
            "10",
            "25%,10,100%",
            "50%,25%,100%",
            "0,100%",
            "10,50%",
            "x,100%",
            "200%",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_canary_by_count_takes_exactly_that_many_and_places_are_stable() {
        let ids: Vec<String> = (0..1000).map(|i| format!("DEV-{i:04}")).collect();
        let mut places: Vec<f64> = ids.iter().map(|d| place(7, d)).collect();
        places.sort_by(f64::total_cmp);
        let t = thresholds(&parse("10,25%,100%").expect("valid"), &places);
        let counts = ids.iter().fold([0usize; 3], |mut c, d| {
            c[wave_of(&t, place(7, d))] += 1;
            c
        });
        assert_eq!(counts[0], 10);
        assert!((200..300).contains(&(counts[0] + counts[1])), "{counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), 1000);
        assert_eq!(place(7, "DEV-0001"), place(7, "DEV-0001"));
        assert_ne!(place(7, "DEV-0001"), place(8, "DEV-0001"), "per rollout");
    }
}
