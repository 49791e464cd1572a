//! Closed sets written as one word each: `closed_set!` gives an enum its
//! labels once, with `label()`, `Display` and a `FromStr` whose error lists the
//! choices, so that no label is spelled or parsed in two places.

/// An unknown label for a closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is one of {}, not {text:?}", choices.join(", "))]
pub struct UnknownLabel {
    pub what: &'static str,
    pub text: String,
    pub choices: &'static [&'static str],
}

/// `closed_set!(Type, "what it is", { Type::A => "a", Type::B => "b" })`.
#[macro_export]
macro_rules! closed_set {
    ($ty:ty, $what:literal, { $($variant:path => $label:literal),+ $(,)? }) => {
        impl $ty {
            /// Every label, in declaration order.
            pub const LABELS: &'static [&'static str] = &[$($label),+];

            pub fn label(self) -> &'static str {
                match self {
                    $($variant => $label),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::labels::UnknownLabel;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($label => Ok($variant),)+
                    _ => Err($crate::labels::UnknownLabel {
                        what: $what,
                        text: text.to_string(),
                        choices: Self::LABELS,
                    }),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Colour {
        Red,
        DarkBlue,
    }

    closed_set!(Colour, "a colour", { Colour::Red => "red", Colour::DarkBlue => "dark-blue" });

    #[test]
    fn labels_round_trip_and_unknown_ones_list_the_choices() {
        for colour in [Colour::Red, Colour::DarkBlue] {
            assert_eq!(colour.to_string().parse(), Ok(colour));
        }
        let err = "blue".parse::<Colour>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "a colour is one of red, dark-blue, not \"blue\""
        );
    }
}
