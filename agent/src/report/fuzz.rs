//! Mutation fuzzing of both parsers, each with valid reports of its own kind
//! (the project's fixtures, and the real samples when present): bytes
//! flipped, inserted, deleted and truncated by a seeded generator, and every
//! field changed in turn to each of a set of values (or removed). The
//! unmutated reports must parse; a mutant either parses into findings that
//! keep the parser's invariants (one finding per entry or item, each with a
//! key) or is refused with a JSON or validation error; some mutants must
//! still parse, or the fuzz tests nothing.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Finding, MAX_REPORT_BYTES, ReportError, parse_convert2rhel, parse_leapp};
use crate::fixtures;

const CASES_PER_INPUT: usize = 2000;

type Parser = fn(&[u8]) -> Result<Vec<Finding>, ReportError>;

fn leapp_inputs() -> Vec<Vec<u8>> {
    let mut inputs = vec![
        fixtures::own("leapp/report-1.1.0.json"),
        fixtures::own("leapp/report-1.2.0.json"),
    ];
    if let Some(real) = fixtures::real_samples("fuzz: leapp") {
        for name in [
            "leapp-report__foreman_leapp__report_samples__schema-1.1.0.json",
            "leapp-report__oamg-leapp__tests-stable-key__schema-1.1.0.json",
        ] {
            inputs.push(std::fs::read(real.join(name)).expect("real sample"));
        }
    }
    inputs
}

fn convert2rhel_inputs() -> Vec<Vec<u8>> {
    vec![
        fixtures::own("convert2rhel/pre-conversion.json"),
        super::convert2rhel::tests::SAMPLE.as_bytes().to_vec(),
    ]
}

fn mutate_bytes(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
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

/// What a field becomes: another type, an empty or meaningful string, an
/// unclosed placeholder; `None` removes the field.
fn replacements() -> Vec<Option<serde_json::Value>> {
    use serde_json::Value;
    let mut all = vec![
        None,
        Some(Value::Null),
        Some(Value::from(-1)),
        Some(Value::from(3)),
        Some(Value::Array(Vec::new())),
        Some(Value::Object(serde_json::Map::new())),
        Some(Value::Bool(true)),
    ];
    for text in [
        "",
        "high",
        "inhibitor",
        "ERROR",
        "SKIP",
        "SUCCESS",
        "{{x}}",
        "{{",
        "a {{ b",
        "é{{",
    ] {
        all.push(Some(Value::from(text)));
    }
    all
}

/// Every document that differs from `input` in one field: each field of
/// each entry (at every depth) replaced by each of `replacements`, or removed
/// (a removal is not tried on array items).
fn field_mutants(input: &[u8]) -> Vec<Vec<u8>> {
    use serde_json::Value;
    let doc: Value = serde_json::from_slice(input).expect("a valid input");
    let mut slots = Vec::new();
    collect_paths(&doc, &mut Vec::new(), &mut slots);
    let mut mutants = Vec::new();
    for path in &slots {
        let (last, parent) = path.split_last().expect("non-empty path");
        for replacement in replacements() {
            let mut doc = doc.clone();
            let mut node = &mut doc;
            for step in parent {
                node = match step {
                    Step::Key(k) => &mut node[k.as_str()],
                    Step::Index(i) => &mut node[*i],
                };
            }
            match (last, node, replacement) {
                (Step::Key(k), Value::Object(map), None) => {
                    map.remove(k);
                }
                (Step::Index(_), _, None) => continue,
                (Step::Key(k), node, Some(value)) => node[k.as_str()] = value,
                (Step::Index(i), node, Some(value)) => node[*i] = value,
                (Step::Key(_), _, None) => continue,
            }
            mutants.push(serde_json::to_vec(&doc).expect("serialises"));
        }
    }
    mutants
}

enum Step {
    Key(String),
    Index(usize),
}

fn collect_paths(value: &serde_json::Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    let copy = |at: &Vec<Step>| {
        at.iter()
            .map(|s| match s {
                Step::Key(k) => Step::Key(k.clone()),
                Step::Index(i) => Step::Index(*i),
            })
            .collect::<Vec<_>>()
    };
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                at.push(Step::Key(k.clone()));
                out.push(copy(at));
                collect_paths(v, at, out);
                at.pop();
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                at.push(Step::Index(i));
                out.push(copy(at));
                collect_paths(v, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// How many findings a report that parses must give, counted on the JSON
/// itself: nothing is dropped silently.
type Expected = fn(&serde_json::Value) -> Option<usize>;

/// leapp: one finding per entry.
fn leapp_entries(doc: &serde_json::Value) -> Option<usize> {
    doc["entries"].as_array().map(Vec::len)
}

/// convert2rhel: one per action result and message that is not a success.
fn convert2rhel_items(doc: &serde_json::Value) -> Option<usize> {
    let actions = doc["actions"].as_object()?;
    let mut count = 0;
    for action in actions.values() {
        let messages = action["messages"].as_array().into_iter().flatten();
        for item in std::iter::once(&action["result"]).chain(messages) {
            count += usize::from(item["level"] != "SUCCESS");
        }
    }
    Some(count)
}

/// What every parse result must satisfy, whatever the input.
fn check(input: &[u8], expected: Expected, result: Result<Vec<Finding>, ReportError>) -> bool {
    match result {
        Ok(findings) => {
            // serde skips ignored fields without checking their escapes, so
            // a mutant can parse here and not as a whole JSON value.
            if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(input) {
                assert_eq!(
                    Some(findings.len()),
                    expected(&doc),
                    "findings dropped or invented: {findings:#?}"
                );
            }
            for f in &findings {
                assert!(!f.key.is_empty(), "a finding without a key: {f:?}");
            }
            true
        }
        Err(ReportError::Json(e)) => {
            assert!(e.line() >= 1, "a JSON error names its place: {e}");
            false
        }
        Err(ReportError::Invalid(reason)) => {
            assert!(!reason.trim().is_empty(), "an invalid report says why");
            false
        }
        Err(ReportError::TooLarge) => panic!("a small input reported as too large"),
    }
}

fn fuzz(name: &str, parse: Parser, expected: Expected, inputs: Vec<Vec<u8>>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut parsed, mut total) = (0usize, 0usize);
    for input in inputs {
        assert!(
            parse(&input).is_ok_and(|f| !f.is_empty()),
            "{name}: an unmutated input must parse into findings"
        );
        let bytes = (0..CASES_PER_INPUT).map(|_| mutate_bytes(&mut rng, &input));
        for mutated in bytes.chain(field_mutants(&input)) {
            total += 1;
            if check(&mutated, expected, parse(&mutated)) {
                parsed += 1;
            }
        }
    }
    eprintln!("{name}: {parsed} of {total} mutants parsed");
    // A parser that accepts everything is broken, and so is a fuzz whose
    // every mutant fails before reaching the parser's own checks.
    assert!(
        parsed * 10 < total * 9,
        "{name}: {parsed} of {total} parsed"
    );
    assert!(
        parsed * 50 > total,
        "{name}: only {parsed} of {total} parsed"
    );
}

#[test]
fn mutated_leapp_reports_parse_or_are_refused_clearly() {
    fuzz("leapp", parse_leapp, leapp_entries, leapp_inputs(), 0x5eed);
}

#[test]
fn mutated_convert2rhel_reports_parse_or_are_refused_clearly() {
    fuzz(
        "convert2rhel",
        parse_convert2rhel,
        convert2rhel_items,
        convert2rhel_inputs(),
        0xc2a,
    );
}

#[test]
fn reports_over_the_size_limit_are_refused_before_parsing() {
    let mut big = fixtures::own("leapp/report-1.1.0.json");
    big.resize(MAX_REPORT_BYTES + 1, b' ');
    for parse in [parse_leapp as Parser, parse_convert2rhel] {
        assert!(matches!(parse(&big), Err(ReportError::TooLarge)));
    }
    big.truncate(MAX_REPORT_BYTES);
    assert!(parse_leapp(&big).is_ok(), "the limit itself is allowed");
}
