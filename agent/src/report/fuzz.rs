//! Mutation fuzzing of both parsers: every real report and a synthetic one,
//! truncated, with bytes flipped, inserted and deleted by a seeded generator.
//! Whatever comes in, the parsers return a value or a clear error; never panic.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{parse_convert2rhel, parse_leapp};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/real");
const CASES_PER_INPUT: usize = 3000;

fn inputs() -> Vec<Vec<u8>> {
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(FIXTURES)
        .expect("fixtures")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| std::fs::read(e.path()).expect("fixture"))
        .collect();
    inputs.push(super::convert2rhel::tests::SAMPLE.as_bytes().to_vec());
    assert!(inputs.len() >= 8, "expected the real reports and schemas");
    inputs
}

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..rng.gen_range(1..8) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.gen_range(0..bytes.len());
        match rng.gen_range(0..5) {
            0 => bytes.truncate(at),
            1 => bytes[at] ^= 1 << rng.gen_range(0..8),
            2 => bytes.insert(
                at,
                *b"{}[]\",:0-e\\u".get(rng.gen_range(0..13)).unwrap_or(&b'x'),
            ),
            3 => {
                bytes.remove(at);
            }
            _ => bytes[at] = rng.r#gen(),
        }
    }
    bytes
}

#[test]
fn mutated_reports_never_panic_either_parser() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut errors = 0usize;
    let mut total = 0usize;
    for input in inputs() {
        for _ in 0..CASES_PER_INPUT {
            let mutated = mutate(&mut rng, &input);
            for result in [
                parse_leapp(&mutated).map(|_| ()),
                parse_convert2rhel(&mutated).map(|_| ()),
            ] {
                total += 1;
                if let Err(e) = result {
                    errors += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
    // Most mutations must be caught: a parser that accepts everything is broken too.
    assert!(errors * 10 > total * 9, "{errors} errors of {total}");
}
