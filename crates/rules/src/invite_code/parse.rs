//! Reading codes and nameplates as people type them: trimmed, any case,
//! parts apart by `-`, space, `_` (or a run of them) or by nothing.

use super::{CodeError, InviteCode, InviteSecret, MAX_CODE_INPUT, MalformedCode, Nameplate};

/// A run of letters or of digits in a typed code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Letters(&'a str),
    Digits(&'a str),
}

/// Reads a whole code: one or two words, then the digits.
pub(super) fn code(input: &str) -> Result<InviteCode, CodeError> {
    let text = normalise(input)?;
    let parts = split(&text)?;
    let Some((Part::Digits(digits), words)) = parts.split_last() else {
        return Err(MalformedCode::Shape.into());
    };
    let words = words_of(words)?;
    // The shape is checked in full (digits included) before any word is
    // looked up: a malformed code is malformed whatever its words.
    let secret = InviteSecret::parse(digits)?;
    Ok(InviteCode::new(resolve(&words)?, secret))
}

/// Reads a nameplate alone: one or two words.
pub(super) fn nameplate(input: &str) -> Result<Nameplate, CodeError> {
    let text = normalise(input)?;
    let parts = split(&text)?;
    resolve(&words_of(&parts)?)
}

/// The input trimmed and lower-cased, once every character is one a code
/// may hold. Checked before lower-casing, so nothing outside ASCII can
/// turn into a letter (the Kelvin sign `K` lower-cases to `k` in Unicode).
fn normalise(input: &str) -> Result<String, MalformedCode> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(MalformedCode::Empty);
    }
    if trimmed.len() > MAX_CODE_INPUT {
        return Err(MalformedCode::TooLong);
    }
    if let Some(c) = trimmed
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !is_separator(*c))
    {
        return Err(MalformedCode::Character(c));
    }
    Ok(trimmed.to_ascii_lowercase())
}

fn is_separator(c: char) -> bool {
    matches!(c, '-' | ' ' | '_')
}

/// Splits `text` (normalised) into runs of letters and of digits; a run of
/// separators, or a change from letters to digits, ends a part.
fn split(text: &str) -> Result<Vec<Part<'_>>, MalformedCode> {
    if text.starts_with(is_separator) || text.ends_with(is_separator) {
        return Err(MalformedCode::Shape);
    }
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        let digits = first.is_ascii_digit();
        let end = rest
            .find(|c: char| is_separator(c) || c.is_ascii_digit() != digits)
            .unwrap_or(rest.len());
        let (run, after) = rest.split_at(end);
        parts.push(if digits {
            Part::Digits(run)
        } else {
            Part::Letters(run)
        });
        rest = after.trim_start_matches(is_separator);
    }
    Ok(parts)
}

/// The words of a nameplate's parts: one or two runs of letters.
fn words_of<'a>(parts: &[Part<'a>]) -> Result<Vec<&'a str>, MalformedCode> {
    let words = parts
        .iter()
        .map(|part| match part {
            Part::Letters(word) => Ok(*word),
            Part::Digits(_) => Err(MalformedCode::Shape),
        })
        .collect::<Result<Vec<_>, _>>()?;
    match words.len() {
        0 => Err(MalformedCode::Shape),
        1 | 2 => Ok(words),
        _ => Err(MalformedCode::TooManyWords),
    }
}

/// The nameplate `words` spell: a list word, two list words typed apart,
/// or two typed together (the list lets them split only one way; see the
/// module docs for the rule if it did not).
fn resolve(words: &[&str]) -> Result<Nameplate, CodeError> {
    let nameplate = match words {
        [word] => Nameplate::one(word).or_else(|| {
            (3..=word.len().saturating_sub(3)).find_map(|split| {
                let (first, second) = word.split_at(split);
                Nameplate::two(first, second)
            })
        }),
        [first, second] => Nameplate::two(first, second),
        _ => None,
    };
    nameplate.ok_or(CodeError::UnknownWord)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::invite_code::nameplate_words;

    fn parsed(input: &str) -> Result<(String, String), CodeError> {
        InviteCode::parse(input)
            .map(|c| (c.nameplate().to_string(), c.secret().expose().to_owned()))
    }

    fn ok(nameplate: &str, digits: &str) -> Result<(String, String), CodeError> {
        Ok((nameplate.to_owned(), digits.to_owned()))
    }

    fn malformed(why: MalformedCode) -> Result<(String, String), CodeError> {
        Err(CodeError::Malformed(why))
    }

    #[test]
    fn the_shown_form_reads_back() {
        assert_eq!(parsed("FROG-7421"), ok("frog", "7421"));
        assert_eq!(parsed("FROG-LAMP-7421"), ok("frog-lamp", "7421"));
        assert_eq!(parsed("FROG-LAMP-00012345"), ok("frog-lamp", "00012345"));
    }

    #[test]
    fn case_white_space_at_the_ends_and_every_separator_are_accepted() {
        for input in [
            "frog-7421",
            "Frog_7421",
            "frog 7421",
            "frog7421",
            "  FROG-7421\n",
            "\tfrog7421 ",
            "\u{a0}frog-7421\u{3000}",
        ] {
            assert_eq!(parsed(input), ok("frog", "7421"), "{input:?}");
        }
        for input in [
            "frog-lamp-7421",
            "frog lamp 7421",
            "frog_lamp_7421",
            "froglamp7421",
            "FrogLamp-7421",
            "frog-lamp7421",
            "froglamp 7421",
        ] {
            assert_eq!(parsed(input), ok("frog-lamp", "7421"), "{input:?}");
        }
    }

    #[test]
    fn a_run_of_separators_counts_as_one() {
        assert_eq!(parsed("frog - 7421"), ok("frog", "7421"));
        assert_eq!(parsed("frog--lamp__7421"), ok("frog-lamp", "7421"));
        assert_eq!(parsed("frog   lamp 7421"), ok("frog-lamp", "7421"));
    }

    #[test]
    fn separators_only_go_between_parts() {
        assert_eq!(parsed("-frog-7421"), malformed(MalformedCode::Shape));
        assert_eq!(parsed("frog-7421_"), malformed(MalformedCode::Shape));
        assert_eq!(parsed("---"), malformed(MalformedCode::Shape));
    }

    #[test]
    fn any_other_character_is_malformed_look_alikes_included() {
        for (input, bad) in [
            ("frog.7421", '.'),
            ("frog/7421", '/'),
            ("frog\t7421", '\t'),
            ("frog\u{a0}7421", '\u{a0}'),
            ("fr\u{43e}g-7421", '\u{43e}'),     // Cyrillic о
            ("\u{410}\u{412}-7421", '\u{410}'), // Cyrillic А
            ("frog-\u{ff17}421", '\u{ff17}'),   // full-width 7
            ("frog-\u{663}421", '\u{663}'),     // Arabic-Indic 3
            ("fro\u{212a}-7421", '\u{212a}'),   // Kelvin sign, lower-cases to k
            ("frög-7421", 'ö'),
            ("frog\u{2011}7421", '\u{2011}'), // non-breaking hyphen
        ] {
            assert_eq!(
                parsed(input),
                malformed(MalformedCode::Character(bad)),
                "{input:?}"
            );
        }
    }

    #[test]
    fn empty_and_overlong_input_are_malformed() {
        assert_eq!(parsed(""), malformed(MalformedCode::Empty));
        assert_eq!(parsed(" \n\t "), malformed(MalformedCode::Empty));
        let long = format!("frog{}7421", "-".repeat(MAX_CODE_INPUT));
        assert_eq!(parsed(&long), malformed(MalformedCode::TooLong));
        let at_limit = format!("frog{}7421", "-".repeat(MAX_CODE_INPUT - 8));
        assert_eq!(parsed(&at_limit), ok("frog", "7421"));
    }

    #[test]
    fn a_code_is_words_then_digits() {
        for input in [
            "frog",
            "7421",
            "7421-frog",
            "frog-7421-lamp",
            "frog-74-21",
            "frog-12-lamp-7421",
        ] {
            assert_eq!(parsed(input), malformed(MalformedCode::Shape), "{input:?}");
        }
        assert_eq!(
            parsed("frog-lamp-desk-7421"),
            malformed(MalformedCode::TooManyWords)
        );
    }

    #[test]
    fn four_to_eight_digits_read_whatever_the_current_setting() {
        assert_eq!(parsed("frog-1234"), ok("frog", "1234"));
        assert_eq!(parsed("frog-12345678"), ok("frog", "12345678"));
        assert_eq!(parsed("frog-123"), malformed(MalformedCode::DigitCount(3)));
        assert_eq!(
            parsed("frog-123456789"),
            malformed(MalformedCode::DigitCount(9))
        );
    }

    #[test]
    fn a_well_formed_code_of_other_words_is_unknown() {
        for input in [
            "xyzzy-7421",
            "frog-xyzzy-7421",
            "frogxyzzy7421",
            "fr-og-7421",
            "ab-1234",
            "carpet-7421",
        ] {
            assert_eq!(parsed(input), Err(CodeError::UnknownWord), "{input:?}");
        }
    }

    #[test]
    fn the_shape_is_judged_before_the_words() {
        assert_eq!(parsed("xyzzy-123"), malformed(MalformedCode::DigitCount(3)));
        assert_eq!(
            parsed("xyzzy-a-b-1234"),
            malformed(MalformedCode::TooManyWords)
        );
    }

    #[test]
    fn nameplates_read_alone() {
        assert_eq!(
            Nameplate::parse("frog").map(|n| n.to_string()),
            Ok("frog".to_owned())
        );
        assert_eq!(
            Nameplate::parse(" FROG_Lamp ").map(|n| n.to_string()),
            Ok("frog-lamp".to_owned())
        );
        assert_eq!(
            Nameplate::parse("froglamp").map(|n| n.to_string()),
            Ok("frog-lamp".to_owned())
        );
        assert_eq!(
            Nameplate::parse("frog-7421"),
            Err(MalformedCode::Shape.into())
        );
        assert_eq!(Nameplate::parse("xyzzy"), Err(CodeError::UnknownWord));
    }

    fn word() -> impl Strategy<Value = &'static str> {
        prop::sample::select(nameplate_words())
    }

    fn nameplate() -> impl Strategy<Value = Nameplate> {
        (word(), prop::option::of(word())).prop_map(|(first, second)| {
            match second {
                Some(second) => Nameplate::two(first, second),
                None => Nameplate::one(first),
            }
            .expect("list words")
        })
    }

    fn secret() -> impl Strategy<Value = InviteSecret> {
        "[0-9]{4,8}".prop_map(|digits| InviteSecret::parse(&digits).expect("4 to 8 digits"))
    }

    /// The shown form with its parts apart by `sep` and in a mix of cases.
    fn retyped(code: &InviteCode, sep: &str, upper: &[bool]) -> String {
        let shown = code.reveal().replace('-', sep);
        shown
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, up)| {
                if *up {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn every_code_reads_back_from_its_shown_form(np in nameplate(), secret in secret()) {
            let code = InviteCode::new(np, secret);
            prop_assert_eq!(InviteCode::parse(&code.reveal()), Ok(code.clone()));
            prop_assert_eq!(Nameplate::parse(&np.to_string()), Ok(np));
        }

        #[test]
        fn every_code_reads_back_however_it_is_retyped(
            np in nameplate(),
            secret in secret(),
            sep in prop::sample::select(vec!["", "-", " ", "_", " - ", "__"]),
            upper in prop::collection::vec(any::<bool>(), 1..8),
        ) {
            let code = InviteCode::new(np, secret);
            let input = retyped(&code, sep, &upper);
            prop_assert_eq!(InviteCode::parse(&input), Ok(code), "{:?}", input);
        }

        #[test]
        fn any_input_reads_to_a_code_that_reads_back_or_is_refused(input in "\\PC{0,40}") {
            if let Ok(code) = InviteCode::parse(&input) {
                prop_assert_eq!(InviteCode::parse(&code.reveal()), Ok(code));
            }
        }

        #[test]
        fn non_ascii_anywhere_inside_is_malformed(
            np in nameplate(),
            secret in secret(),
            at in any::<prop::sample::Index>(),
            c in any::<char>().prop_filter("not ASCII or white space", |c| !c.is_ascii() && !c.is_whitespace()),
        ) {
            let shown = InviteCode::new(np, secret).reveal();
            let i = at.index(shown.len() + 1);
            let input = format!("{}{c}{}", &shown[..i], &shown[i..]);
            prop_assert_eq!(InviteCode::parse(&input), Err(MalformedCode::Character(c).into()));
        }
    }
}
