//! Kubernetes label-selector syntax over a host's labels and facts:
//! `app=billing,dc in (dc1,dc2),os!=rhel,!decommissioned`. Requirements are
//! ANDed; `!=` and `notin` also match hosts that lack the key, as in Kubernetes.

use std::collections::BTreeSet;

/// A parsed selector. It is kept parsed from the edge where it arrives to
/// where it is used, and stored as its canonical text (`Display`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl TryFrom<String> for Selector {
    type Error = SelectorError;

    fn try_from(text: String) -> Result<Self, SelectorError> {
        Selector::parse(&text)
    }
}

impl From<Selector> for String {
    fn from(selector: Selector) -> String {
        selector.to_string()
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |values: &BTreeSet<String>| values.iter().cloned().collect::<Vec<_>>().join(",");
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let key = &r.key;
            match &r.op {
                Op::In(values) if values.len() == 1 => write!(f, "{key}={}", set(values))?,
                Op::In(values) => write!(f, "{key} in ({})", set(values))?,
                Op::NotIn(values) if values.len() == 1 => write!(f, "{key}!={}", set(values))?,
                Op::NotIn(values) => write!(f, "{key} notin ({})", set(values))?,
                Op::Exists => f.write_str(key)?,
                Op::DoesNotExist => write!(f, "!{key}")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector at position {position}: {message}")]
pub struct SelectorError {
    pub position: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Eq,
    NotEq,
    Bang,
    Open,
    Close,
    Comma,
}

const MAX_SELECTOR: usize = 4096;

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, SelectorError> {
    let err = |position, message: &str| SelectorError {
        position,
        message: message.into(),
    };
    if text.len() > MAX_SELECTOR {
        return Err(err(MAX_SELECTOR, "selector is too long"));
    }
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let token = match c {
            b' ' | b'\t' => {
                i += 1;
                continue;
            }
            b'=' => {
                i += if bytes.get(i + 1) == Some(&b'=') {
                    2
                } else {
                    1
                };
                Token::Eq
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Token::NotEq
            }
            b'!' => {
                i += 1;
                Token::Bang
            }
            b'(' => {
                i += 1;
                Token::Open
            }
            b')' => {
                i += 1;
                Token::Close
            }
            b',' => {
                i += 1;
                Token::Comma
            }
            c if c.is_ascii_alphanumeric() || b"-_./".contains(&c) => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || b"-_./".contains(&bytes[i]))
                {
                    i += 1;
                }
                Token::Word(text[start..i].to_string())
            }
            _ => return Err(err(i, "unexpected character")),
        };
        tokens.push((start, token));
    }
    Ok(tokens)
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let tokens = tokenize(text)?;
        let end = text.len();
        let mut parser = Parser {
            tokens: &tokens,
            index: 0,
            end,
        };
        let mut requirements = Vec::new();
        if tokens.is_empty() {
            return Ok(Self { requirements });
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                None => break,
                Some((_, Token::Comma)) => continue,
                Some((position, _)) => {
                    return Err(SelectorError {
                        position,
                        message: "expected ',' between requirements".into(),
                    });
                }
            }
        }
        Ok(Self { requirements })
    }

    /// `lookup(key)` gives the host's value for a key, if it has one.
    pub fn matches<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| {
            let value = lookup(&r.key);
            match &r.op {
                Op::In(set) => value.is_some_and(|v| set.contains(v)),
                Op::NotIn(set) => value.is_none_or(|v| !set.contains(v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
            }
        })
    }
}

struct Parser<'t> {
    tokens: &'t [(usize, Token)],
    index: usize,
    end: usize,
}

impl Parser<'_> {
    fn next(&mut self) -> Option<(usize, Token)> {
        let token = self.tokens.get(self.index).cloned();
        self.index += 1;
        token
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.index).map(|(_, t)| t)
    }

    fn error<T>(&self, position: Option<usize>, message: &str) -> Result<T, SelectorError> {
        Err(SelectorError {
            position: position.unwrap_or(self.end),
            message: message.into(),
        })
    }

    fn word(&mut self, what: &str) -> Result<String, SelectorError> {
        match self.next() {
            Some((_, Token::Word(w))) => Ok(w),
            Some((position, _)) => self.error(Some(position), &format!("expected {what}")),
            None => self.error(None, &format!("expected {what}")),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Some(&Token::Bang) {
            self.next();
            let key = self.word("a key after '!'")?;
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
            });
        }
        let key = self.word("a key")?;
        let op = match self.peek() {
            None | Some(Token::Comma) => Op::Exists,
            Some(Token::Eq) => {
                self.next();
                Op::In(BTreeSet::from([self.word("a value")?]))
            }
            Some(Token::NotEq) => {
                self.next();
                Op::NotIn(BTreeSet::from([self.word("a value")?]))
            }
            Some(Token::Word(w)) if w == "in" || w == "notin" => {
                let negated = w == "notin";
                self.next();
                let values = self.value_set()?;
                if negated {
                    Op::NotIn(values)
                } else {
                    Op::In(values)
                }
            }
            Some(_) => {
                let position = self.tokens.get(self.index).map(|(p, _)| *p);
                return self.error(position, "expected =, ==, !=, in or notin");
            }
        };
        Ok(Requirement { key, op })
    }

    fn value_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        match self.next() {
            Some((_, Token::Open)) => {}
            other => return self.error(other.map(|(p, _)| p), "expected '('"),
        }
        let mut values = BTreeSet::new();
        loop {
            values.insert(self.word("a value")?);
            match self.next() {
                Some((_, Token::Comma)) => continue,
                Some((_, Token::Close)) => return Ok(values),
                other => return self.error(other.map(|(p, _)| p), "expected ',' or ')'"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn check(selector: &str, host: &[(&str, &str)], expected: bool) {
        let map: BTreeMap<&str, &str> = host.iter().copied().collect();
        let parsed = Selector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
        assert_eq!(
            parsed.matches(|k| map.get(k).copied()),
            expected,
            "{selector} against {host:?}"
        );
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        let host = [("app", "billing"), ("dc", "dc1"), ("os", "centos")];
        check("", &host, true);
        check("app=billing", &host, true);
        check("app==billing", &host, true);
        check("app=payroll", &host, false);
        check("app!=payroll", &host, true);
        check("team!=x", &host, true);
        check("dc in (dc1, dc2)", &host, true);
        check("dc in (dc2)", &host, false);
        check("dc notin (dc2,dc3)", &host, true);
        check("team notin (a)", &host, true);
        check("app", &host, true);
        check("!app", &host, false);
        check("!team", &host, true);
        check("app=billing,dc in (dc1,dc2),os!=rhel", &host, true);
        check("app=billing, os=rhel", &host, false);
    }

    #[test]
    fn malformed_selectors_say_where_and_why() {
        let cases = [
            ("app=", 4, "expected a value"),
            ("app billing", 4, "expected =, ==, !=, in or notin"),
            ("dc in dc1", 6, "expected '('"),
            ("dc in (dc1", 10, "expected ',' or ')'"),
            ("app=x y", 6, "expected ','"),
            ("app=x;", 5, "unexpected character"),
            (",", 0, "expected a key"),
            ("!", 1, "expected a key after '!'"),
        ];
        for (text, position, message) in cases {
            let err = Selector::parse(text).expect_err(text);
            assert_eq!(err.position, position, "{text}: {err}");
            assert!(err.message.contains(message), "{text}: {err}");
        }
        assert!(Selector::parse(&"a".repeat(5000)).is_err());
        // The limit itself is allowed.
        let longest = format!(" {}", ["a=b"; 1024].join(","));
        assert_eq!(longest.len(), MAX_SELECTOR);
        assert!(Selector::parse(&longest).is_ok());
        let too_long = Selector::parse(&format!(" {longest}")).expect_err("too long");
        assert!(too_long.message.contains("too long"), "{too_long}");
    }

    #[test]
    fn a_selector_is_stored_as_canonical_text_that_parses_back_to_it() {
        for text in [
            "",
            "app=billing",
            "app=billing,dc in (dc1,dc2),os!=rhel,!decommissioned,tier",
            "dc notin (a,b)",
        ] {
            let selector = Selector::parse(text).expect("parses");
            let again = Selector::parse(&selector.to_string()).expect("canonical text parses");
            assert_eq!(again, selector, "{text} -> {selector}");
        }
        // The canonical text is the shortest form of each requirement.
        for (text, canonical) in [
            ("app in (billing)", "app=billing"),
            ("os notin (rhel)", "os!=rhel"),
            ("os != rhel", "os!=rhel"),
            ("dc notin (b,a)", "dc notin (a,b)"),
            ("!  decommissioned", "!decommissioned"),
        ] {
            let selector = Selector::parse(text).expect("parses");
            assert_eq!(selector.to_string(), canonical, "{text}");
        }
        let json = serde_json::to_string(&Selector::parse("app=a,dc in (x,y)").expect("parses"))
            .expect("serialises");
        assert_eq!(json, "\"app=a,dc in (x,y)\"");
        assert!(serde_json::from_str::<Selector>("\"app in (\"").is_err());
    }
}
