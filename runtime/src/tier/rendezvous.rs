//! Rendezvous (highest-random-weight) hashing: every parent gets a score for a key, and the
//! parents are tried in descending score. Each key lives on one parent, and removing a parent
//! moves only the keys it had (their next-best parent takes them); adding one takes only the
//! keys it now wins.
//!
//! The score is SHA-256 of the parent and the key, not a `RandomState` hash: every edge of a
//! fleet, in any process, on any version, must pick the same parent for a key.

use sha2::{Digest, Sha256};

/// The score of `parent` for `key`.
pub fn score(key: &str, parent: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(parent.as_bytes());
    // A separator byte that neither a URL nor a key starts with, so ("ab", "c") and
    // ("a", "bc") hash differently.
    hasher.update([0xff]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Indices of `parents`, best first for `key`; ties (which need a 64-bit collision) go to the
/// parent listed first.
pub fn order(key: &str, parents: &[&str]) -> Vec<usize> {
    let mut scored: Vec<(u64, usize)> = parents
        .iter()
        .enumerate()
        .map(|(i, p)| (score(key, p), i))
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENTS: [&str; 3] = [
        "http://rec-0.rec:8080",
        "http://rec-1.rec:8080",
        "http://rec-2.rec:8080",
    ];

    #[test]
    fn balanced_over_three_parents() {
        let mut counts = [0usize; 3];
        for n in 0..10_000 {
            counts[order(&format!("example.com/objects/{n}"), &PARENTS)[0]] += 1;
        }
        for count in counts {
            // Within ±10% of a third (3333 ± 333).
            assert!((3000..=3667).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn removing_a_parent_moves_only_its_keys() {
        let two = [PARENTS[0], PARENTS[2]];
        for n in 0..10_000 {
            let key = format!("example.com/objects/{n}");
            let before = PARENTS[order(&key, &PARENTS)[0]];
            let after = two[order(&key, &two)[0]];
            if before != PARENTS[1] {
                assert_eq!(before, after, "key {key} moved off a parent that stayed");
            }
        }
    }

    #[test]
    fn stable_across_calls_and_list_order() {
        let reversed = [PARENTS[2], PARENTS[1], PARENTS[0]];
        for n in 0..1000 {
            let key = format!("k{n}");
            let a = PARENTS[order(&key, &PARENTS)[0]];
            let b = reversed[order(&key, &reversed)[0]];
            assert_eq!(a, b);
        }
    }
}
