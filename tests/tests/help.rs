//! What the binaries print for their help and for refused command lines,
//! and the README's `console` examples, checked against the real binaries
//! (trycmd): neither can drift from what the binaries do. The expected
//! outputs are in `tests/cmd/*.md` and in README.md; after a deliberate
//! change, `TRYCMD=overwrite cargo test -p mf-e2e --test help` rewrites them.

#[test]
fn help_and_refusals_are_what_the_binaries_print() {
    let cases = trycmd::TestCases::new();
    for name in ["mfctl", "mf-agent", "mf-coordinator"] {
        cases.register_bin(name, mf_e2e::bin(name));
    }
    cases.case("cmd/*.md");
}

#[test]
fn the_readme_examples_are_what_the_binaries_print() {
    let readme = std::fs::read_to_string("../README.md").expect("README.md");
    assert!(
        readme.contains("```console\n$ mfctl"),
        "the README has no console example left to check"
    );
    let cases = trycmd::TestCases::new();
    for name in ["mfctl", "mf-agent", "mf-coordinator"] {
        cases.register_bin(name, mf_e2e::bin(name));
    }
    cases.case("../README.md");
}
