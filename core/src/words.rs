//! Counts as people read them: "1 finding", "2 findings", "0 hosts".

/// `n` and the noun in the number it needs.
pub fn count(n: impl Into<u64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { singular } else { plural })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        for (n, expected) in [(0u64, "0 findings"), (1, "1 finding"), (2, "2 findings")] {
            assert_eq!(count(n, "finding", "findings"), expected);
        }
    }
}
