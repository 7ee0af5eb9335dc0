//! Small statistics for the gate: the Mann–Whitney U rank test (what Kayenta uses to
//! compare a canary with its baseline), medians, and the normal tail it needs.
//!
//! Rank tests suit per-poll latency and error rates: they make no assumption about the
//! distribution, and one wild poll cannot dominate the result the way it can a mean.

/// Result of a one-sided Mann–Whitney U test "green tends to be greater than blue".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankTest {
    /// U statistic of the green sample (how many (green, blue) pairs green wins; ties ½).
    pub u: f64,
    /// Standard score of `u` under "no difference", continuity- and tie-corrected.
    pub z: f64,
    /// One-sided p-value: chance of a `u` this large if green and blue were alike.
    pub p_value: f64,
    pub n_green: usize,
    pub n_blue: usize,
}

impl RankTest {
    /// 1 − p: how sure we are that green is greater.
    pub fn confidence(&self) -> f64 {
        1.0 - self.p_value
    }
}

/// One-sided Mann–Whitney U test of "green > blue", normal approximation with tie
/// correction and a continuity correction of ½.
///
/// None when either side is empty or holds a non-finite value. The normal approximation
/// is rough below about five values a side; callers decide how many they require.
pub fn mann_whitney_greater(green: &[f64], blue: &[f64]) -> Option<RankTest> {
    if green.is_empty() || blue.is_empty() || green.iter().chain(blue).any(|v| !v.is_finite()) {
        return None;
    }
    let (n_g, n_b) = (green.len(), blue.len());
    let n = n_g + n_b;

    // Pool and sort, remembering which side each value came from.
    let mut pooled: Vec<(f64, bool)> = green
        .iter()
        .map(|&v| (v, true))
        .chain(blue.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));

    // Average ranks over runs of ties; accumulate Σ(t³ − t) for the variance correction.
    let mut rank_sum_green = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        // Ranks are 1-based: positions i..j hold ranks i+1..=j, average (i+1+j)/2.
        let rank = (i + 1 + j) as f64 / 2.0;
        rank_sum_green += rank * pooled[i..j].iter().filter(|p| p.1).count() as f64;
        tie_term += t * t * t - t;
        i = j;
    }

    let (ng, nb, nf) = (n_g as f64, n_b as f64, n as f64);
    let u = rank_sum_green - ng * (ng + 1.0) / 2.0;
    let mean = ng * nb / 2.0;
    let variance = ng * nb / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    let (z, p_value) = if variance > 0.0 {
        let z = (u - mean - 0.5) / variance.sqrt();
        (z, normal_sf(z))
    } else {
        // Every value tied: no evidence either way.
        (0.0, 0.5)
    };
    Some(RankTest {
        u,
        z,
        p_value: p_value.clamp(0.0, 1.0),
        n_green: n_g,
        n_blue: n_b,
    })
}

/// Upper tail of the standard normal: P(Z > z).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function, Chebyshev fit (Numerical Recipes `erfcc`), |error| < 1.2e-7:
/// plenty for p-values compared with 0.05 or 0.01.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Median of finite values; None when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normal_tail_matches_tables() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_sf(1.644_853_6) - 0.05).abs() < 1e-6);
        assert!((normal_sf(2.326_347_9) - 0.01).abs() < 1e-6);
        assert!((normal_sf(-1.959_964) - 0.975).abs() < 1e-6);
    }

    #[test]
    fn textbook_example() {
        // Green all above blue, 5 vs 5: U = 25, the largest possible.
        let green = [6.0, 7.0, 8.0, 9.0, 10.0];
        let blue = [1.0, 2.0, 3.0, 4.0, 5.0];
        let t = mann_whitney_greater(&green, &blue).unwrap();
        assert_eq!(t.u, 25.0);
        // z = (25 - 12.5 - 0.5) / sqrt(25 * 11 / 12) = 12 / 4.787 = 2.507
        assert!((t.z - 2.5067).abs() < 1e-3, "{t:?}");
        assert!(t.p_value < 0.01 && t.p_value > 0.005, "{t:?}");
        // The other direction finds nothing.
        let r = mann_whitney_greater(&blue, &green).unwrap();
        assert_eq!(r.u, 0.0);
        assert!(r.p_value > 0.99);
    }

    #[test]
    fn ties_get_average_ranks_and_shrink_the_variance() {
        let t = mann_whitney_greater(&[1.0, 2.0, 2.0], &[2.0, 3.0]).unwrap();
        // Ranks: 1 → 1, the three 2s → 3, 3 → 5. Green: 1 + 3 + 3 = 7, U = 7 - 6 = 1.
        assert_eq!(t.u, 1.0);
        // Σ(t³ - t) = 24; var = 6/12 * (6 - 24/20) = 2.4
        assert!((t.z - (1.0 - 3.0 - 0.5) / 2.4f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn all_tied_is_no_evidence() {
        let t = mann_whitney_greater(&[0.0; 6], &[0.0; 6]).unwrap();
        assert_eq!(t.p_value, 0.5);
        assert_eq!(t.u, 18.0);
    }

    #[test]
    fn empty_or_nan_is_none() {
        assert!(mann_whitney_greater(&[], &[1.0]).is_none());
        assert!(mann_whitney_greater(&[1.0], &[]).is_none());
        assert!(mann_whitney_greater(&[f64::NAN], &[1.0]).is_none());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    fn values() -> impl Strategy<Value = Vec<f64>> {
        // Small integers make ties common, which is the hard case.
        prop::collection::vec((0u8..20).prop_map(f64::from), 1..30)
    }

    proptest! {
        #[test]
        fn u_statistics_add_up(g in values(), b in values()) {
            let gb = mann_whitney_greater(&g, &b).unwrap();
            let bg = mann_whitney_greater(&b, &g).unwrap();
            prop_assert!((gb.u + bg.u - (g.len() * b.len()) as f64).abs() < 1e-9);
            prop_assert!((0.0..=1.0).contains(&gb.p_value));
            // With the continuity correction the two one-sided p-values never both fall
            // below ½: a test can never say "greater" and "smaller" at once.
            prop_assert!(gb.p_value + bg.p_value >= 1.0 - 1e-9);
        }

        #[test]
        fn a_clear_shift_is_significant(b in prop::collection::vec(0.0f64..1.0, 8..30), shift in 2.0f64..100.0) {
            let g: Vec<f64> = b.iter().map(|v| v + shift).collect();
            let t = mann_whitney_greater(&g, &b).unwrap();
            prop_assert!(t.confidence() > 0.99, "{:?}", t);
        }

        #[test]
        fn the_test_only_sees_order(g in values(), b in values()) {
            // A monotone transform (ms → s, or exp) must not change the answer.
            let t1 = mann_whitney_greater(&g, &b).unwrap();
            let g2: Vec<f64> = g.iter().map(|v| (v / 1000.0).exp()).collect();
            let b2: Vec<f64> = b.iter().map(|v| (v / 1000.0).exp()).collect();
            let t2 = mann_whitney_greater(&g2, &b2).unwrap();
            prop_assert!((t1.p_value - t2.p_value).abs() < 1e-9);
        }
    }
}
